//! Training data at any scale: an index of a folder's clips ([`Index`]), the examples drawn
//! from them ([`Dataset`]), and background workers that decode them ahead of the trainer
//! ([`Loader`]).
//!
//! Examples are numbered: example `p` of a run seeded with `seed` is always the same clip
//! window, crop and flip. Epoch `e` visits every clip once, in an order shuffled from
//! `(seed, e)`; the clip's start frame, crop and flip come from `(seed, p)`. A run that stops
//! after example `p` and resumes at `p + 1` therefore sees what an uninterrupted run sees,
//! whether the clips were decoded ahead into memory ([`Dataset::preload`], for small data) or
//! each example is decoded when it is needed (seeking to it, so memory depends on the frames
//! taken, not on the files' lengths).

mod index;
mod loader;
mod splits;

pub use index::{INDEX_FILE, Index, IndexProgress};
pub use loader::{Loader, LoaderState, Skipped};
pub use splits::read_split;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use image::imageops;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::take::{Start, Take, Timeline};
use crate::video::{Decode, Video};
use crate::{Clip, VideoError};

/// The smallest crop, as a fraction of the largest window of the model's aspect.
pub const MIN_CROP: f64 = 0.8;

/// What one example is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipSpec {
    /// Frames per example.
    pub frames: usize,
    /// Take every `stride`-th frame (or tick, with `fps`).
    pub stride: usize,
    /// Sample the clips at this rate (`None`: their own frames).
    pub fps: Option<f64>,
    /// Example width in pixels.
    pub width: u32,
    /// Example height in pixels.
    pub height: u32,
    /// Random changes.
    pub augment: Augment,
}

impl ClipSpec {
    /// The frames of an example starting at frame `start`.
    fn take(&self, start: usize) -> Take {
        Take::first(self.frames)
            .from(Start::Frame(start))
            .every(self.stride)
            .at_fps(self.fps)
    }

    /// How many start frames of `timeline` give a whole example (0: too short).
    fn starts(&self, timeline: &Timeline) -> usize {
        let fits = |start: usize| self.take(start).indices(timeline).is_ok();
        if !fits(0) {
            return 0;
        }
        // Fitting is monotone in the start: find the last start that fits.
        let (mut lo, mut hi) = (0, timeline.len());
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if fits(mid) { lo = mid } else { hi = mid }
        }
        lo + 1
    }
}

/// Random changes to training examples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// The smallest crop, as a fraction of the largest window (1: whole frames), at least
    /// [`MIN_CROP`] (clips are shrunk as they are decoded to what such a crop needs).
    pub crop_min: f64,
    /// Mirror half of the examples horizontally.
    pub flip: bool,
}

/// One training example.
#[derive(Debug, Clone)]
pub struct Example {
    /// The clip it was cut from (an index into [`Dataset::videos`]).
    pub clip: usize,
    /// The frames, `frames` of `width x height`.
    pub frames: Clip,
}

/// The examples of a set of clips.
pub struct Dataset {
    videos: Vec<Video>,
    /// Whole-example start frames of each clip.
    starts: Vec<usize>,
    spec: ClipSpec,
    seed: u64,
    /// Every clip decoded (shrunk), or why it could not be.
    kept: Option<Vec<Result<Clip, String>>>,
    /// The shuffled orders of the last epochs asked for.
    orders: Mutex<Vec<(u64, Arc<Vec<u32>>)>>,
}

impl Dataset {
    /// The examples `spec` describes from `videos`, seeded. Clips too short for one example
    /// are left out and returned, each with the reason.
    pub fn new(
        videos: Vec<Video>,
        spec: ClipSpec,
        seed: u64,
    ) -> (Self, Vec<(std::path::PathBuf, String)>) {
        let mut kept = Vec::with_capacity(videos.len());
        let mut starts = Vec::with_capacity(videos.len());
        let mut short = Vec::new();
        for video in videos {
            let n = spec.starts(&video.info().timeline);
            if n == 0 {
                let why = spec
                    .take(0)
                    .indices(&video.info().timeline)
                    .err()
                    .unwrap_or_default();
                short.push((video.path().to_path_buf(), format!("too short: {why}")));
            } else {
                kept.push(video);
                starts.push(n);
            }
        }
        let dataset = Self {
            videos: kept,
            starts,
            spec,
            seed,
            kept: None,
            orders: Mutex::new(Vec::new()),
        };
        (dataset, short)
    }

    /// The clips.
    pub fn videos(&self) -> &[Video] {
        &self.videos
    }

    /// Number of clips (examples per epoch).
    pub fn len(&self) -> usize {
        self.videos.len()
    }

    /// Whether there are no clips.
    pub fn is_empty(&self) -> bool {
        self.videos.is_empty()
    }

    /// What an example is.
    pub fn spec(&self) -> &ClipSpec {
        &self.spec
    }

    /// Bytes the clips take decoded and shrunk, as [`Self::preload`] keeps them.
    pub fn decoded_bytes(&self) -> u64 {
        self.videos
            .iter()
            .map(|v| {
                let (w, h) = self
                    .decode_size(v)
                    .unwrap_or((v.info().width, v.info().height));
                v.info().frames() as u64 * w as u64 * h as u64 * 3
            })
            .sum()
    }

    /// Decodes every clip (shrunk) into memory, `threads` at a time; `progress(done, total)`.
    /// A clip that fails is kept as failed: its examples are skipped, as a streamed read
    /// of it would be.
    pub fn preload(&mut self, threads: usize, progress: &mut dyn FnMut(usize, usize)) {
        let clips = parallel_map(&self.videos, threads, progress, |video| {
            video
                .read_with(&Take::all(), self.decode(video))
                .map_err(|e| e.message)
        });
        self.kept = Some(clips);
    }

    /// Whether the clips are in memory.
    pub fn is_preloaded(&self) -> bool {
        self.kept.is_some()
    }

    /// Whether every example drawn from a clip is that whole clip: no crops or flips, every
    /// clip of the target aspect and exactly long enough for one example. Work done on an
    /// example can then be kept for the next time.
    pub fn fixed_examples(&self) -> bool {
        let (w, h) = (self.spec.width as u64, self.spec.height as u64);
        self.spec.augment.crop_min >= 1.0
            && !self.spec.augment.flip
            && self.starts.iter().all(|&n| n == 1)
            && self
                .videos
                .iter()
                .all(|v| v.info().width as u64 * h == v.info().height as u64 * w)
    }

    /// The clip of example `position`: epoch `position / len` visits the clips in an order
    /// shuffled from the seed and the epoch.
    pub fn clip_of(&self, position: u64) -> usize {
        let n = self.videos.len() as u64;
        let epoch = position / n;
        let order = self.order(epoch);
        order[(position % n) as usize] as usize
    }

    fn order(&self, epoch: u64) -> Arc<Vec<u32>> {
        let mut orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, order)) = orders.iter().find(|(e, _)| *e == epoch) {
            return order.clone();
        }
        let mut order: Vec<u32> = (0..self.videos.len() as u32).collect();
        order.shuffle(&mut StdRng::seed_from_u64(mix(self.seed, 0x0e90c4, epoch)));
        let order = Arc::new(order);
        orders.push((epoch, order.clone()));
        if orders.len() > 2 {
            orders.remove(0);
        }
        order
    }

    /// Example `position`: its clip's window from a random start, a random crop of
    /// `crop_min`..100 % of the largest window of the target aspect, resized to the target
    /// size, and mirrored at random if asked.
    pub fn example(&self, position: u64) -> Result<Example, VideoError> {
        let index = self.clip_of(position);
        let video = &self.videos[index];
        let mut rng = StdRng::seed_from_u64(mix(self.seed, 0xe8a3, position));
        let start = rng.random_range(0..self.starts[index]);
        let take = self.spec.take(start);
        let timeline = &video.info().timeline;
        let indices = take
            .indices(timeline)
            .map_err(|m| VideoError::new(video.path(), m))?;
        let frames = match &self.kept {
            Some(kept) => {
                let clip = kept[index]
                    .as_ref()
                    .map_err(|m| VideoError::new(video.path(), m.clone()))?;
                indices.iter().map(|&i| clip.frames[i].clone()).collect()
            }
            None => video.frames(&indices, self.decode(video))?,
        };
        let clip = Clip::new(frames, take.output_fps(timeline)).expect("frames of one size");
        Ok(Example {
            clip: index,
            frames: augment(&clip, &self.spec, &mut rng),
        })
    }

    fn decode(&self, video: &Video) -> Decode {
        Decode {
            size: self.decode_size(video),
            threads: Some(1),
        }
    }

    /// The size clips are shrunk to as they are decoded: never up, and only so far that a
    /// [`MIN_CROP`] crop of the largest window of the target aspect still covers the target
    /// size (memory and decoding shrink; no detail the model sees is lost).
    fn decode_size(&self, video: &Video) -> Option<(u32, u32)> {
        let (vw, vh) = (video.info().width, video.info().height);
        let (w, h) = (self.spec.width, self.spec.height);
        let window_w = if vw as u64 * h as u64 > vh as u64 * w as u64 {
            vh as f64 * w as f64 / h as f64
        } else {
            vw as f64
        };
        let needed = w as f64 / (MIN_CROP * window_w);
        if needed >= 1.0 {
            return None;
        }
        let sw = ((vw as f64 * needed).ceil() as u32).max(w);
        let sh = ((vh as f64 * needed).ceil() as u32).max(h);
        Some((sw, sh))
    }
}

/// The random crop, resize and flip of an example.
fn augment(clip: &Clip, spec: &ClipSpec, rng: &mut StdRng) -> Clip {
    let (width, height) = (spec.width, spec.height);
    let full = clip.center_crop_to_aspect(width, height);
    let scale = rng.random_range(spec.augment.crop_min..=1.0);
    let cw = ((full.width() as f64 * scale) as u32).max(1);
    let ch = ((full.height() as f64 * scale) as u32).max(1);
    let x = rng.random_range(0..=clip.width() - cw);
    let y = rng.random_range(0..=clip.height() - ch);
    let mut out = clip.crop(x, y, cw, ch).resize(width, height);
    if spec.augment.flip && rng.random_bool(0.5) {
        for f in &mut out.frames {
            imageops::flip_horizontal_in_place(f);
        }
    }
    out
}

/// A seed from a run's seed, a purpose and a number (SplitMix64 finaliser).
fn mix(seed: u64, purpose: u64, n: u64) -> u64 {
    let mut z = seed
        ^ purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ n.wrapping_mul(0xBF58_476D_1CE4_E5B9).rotate_left(31);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `f` of every item, `threads` at a time, in order; `progress(done, total)` as they finish.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    progress: &mut dyn FnMut(usize, usize),
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, R)>();
    let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            let (tx, next, f) = (tx.clone(), &next, &f);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if tx.send((i, f(item))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for (i, r) in rx {
            out[i] = Some(r);
            done += 1;
            progress(done, items.len());
        }
    });
    out.into_iter()
        .map(|r| r.expect("every item mapped"))
        .collect()
}

/// The readable clips of a data folder as a dataset: `split` (UCF-101's `trainlist0N.txt` /
/// `testlist0N.txt`, paths relative to the folder) limits them to those it lists. Also
/// returns the listed clips that are not readable clips of the folder.
pub fn clips_in(
    index: &Index,
    split: Option<&Path>,
) -> Result<(Vec<Video>, Vec<String>), VideoError> {
    match split {
        None => Ok((index.videos.clone(), Vec::new())),
        Some(list) => {
            let wanted = read_split(list)?;
            let found: std::collections::HashMap<String, &Video> = index
                .videos
                .iter()
                .map(|v| (index::relative(&index.root, v.path()), v))
                .collect();
            let (listed, missing): (Vec<_>, Vec<_>) =
                wanted.iter().partition(|rel| found.contains_key(*rel));
            let videos: Vec<Video> = listed.iter().map(|rel| found[*rel].clone()).collect();
            let missing = missing.into_iter().cloned().collect();
            if videos.is_empty() {
                return Err(VideoError::new(
                    list,
                    format!(
                        "none of its {} clips is a readable clip of {} (e.g. '{}')",
                        wanted.len(),
                        index.root.display(),
                        wanted.first().map_or("", String::as_str)
                    ),
                ));
            }
            Ok((videos, missing))
        }
    }
}
