//! Training data: every clip in a folder, sampled with random frame offsets, crops and flips.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cmd_video::{Clip, is_clip_file, read_clip};
use image::imageops;
use rand::Rng;

use crate::progress;

/// The smallest crop, as a fraction of the largest window of the model's aspect.
pub const MIN_CROP: f64 = 0.8;

/// The clips of a folder, decoded once and kept in memory, shrunk to the size training needs.
pub struct ClipFolder {
    clips: Vec<Clip>,
    paths: Vec<PathBuf>,
}

impl ClipFolder {
    /// Reads every clip file (y4m, mp4, gif) and every sub-folder of PNG frames in `dir`, and
    /// the same one level down in class folders (UCF-101 style: `DIR/ApplyEyeMakeup/clip.avi`).
    /// Each must hold at least `min_frames` frames. Clips larger than `width x height` needs
    /// are shrunk on loading (to where the smallest random crop still covers `width x height`
    /// pixels), which keeps memory small without losing detail the model would see.
    pub fn load(dir: &Path, min_frames: usize, width: u32, height: u32) -> Result<Self> {
        let mut paths = Vec::new();
        for entry in entries(dir)? {
            if is_clip_file(&entry) || (entry.is_dir() && has_png(&entry)) {
                paths.push(entry);
            } else if entry.is_dir() {
                paths.extend(
                    entries(&entry)?
                        .into_iter()
                        .filter(|p| is_clip_file(p) || (p.is_dir() && has_png(p))),
                );
            }
        }
        paths.sort();
        if paths.is_empty() {
            bail!(
                "{}: no clips found (expected {} files, or folders of PNG frames)",
                dir.display(),
                cmd_video::INPUT_FORMATS
            );
        }
        let mut clips = Vec::with_capacity(paths.len());
        let bar = progress::bar(paths.len() as u64, "load");
        for path in &paths {
            let clip = read_clip(path, None)?;
            bar.inc(1);
            if clip.len() < min_frames {
                bail!(
                    "{}: has {} frames, training needs at least {min_frames}",
                    path.display(),
                    clip.len()
                );
            }
            clips.push(shrink(&clip, width, height));
        }
        bar.finish_and_clear();
        Ok(Self { clips, paths })
    }

    /// The clip files, in the order [`Self::sample`] numbers them.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Number of clips.
    pub fn len(&self) -> usize {
        self.clips.len()
    }

    /// Whether every example [`Self::sample`] draws from a clip is that whole clip: no crops
    /// or flips, every clip of the target aspect and exactly as long as an example needs (no
    /// choice of start frame). Work done on an example can then be kept for the next time.
    pub fn fixed_examples(
        &self,
        frames: usize,
        stride: usize,
        (width, height): (u32, u32),
        augment: Augment,
    ) -> bool {
        let span = stride * (frames - 1) + 1;
        augment.crop_min >= 1.0
            && !augment.flip
            && self
                .clips
                .iter()
                .all(|c| c.len() == span && c.width() * height == c.height() * width)
    }

    /// A random training example of `frames` frames at `stride`, `width x height`: random clip,
    /// random start frame, random crop covering `augment.crop_min`-100 % of the largest window
    /// of the target aspect, and (if `augment.flip`) a random horizontal flip. Returns the
    /// clip's index and the example.
    pub fn sample(
        &self,
        rng: &mut impl Rng,
        frames: usize,
        stride: usize,
        (width, height): (u32, u32),
        augment: Augment,
    ) -> (usize, Clip) {
        let index = rng.random_range(0..self.clips.len());
        let clip = &self.clips[index];
        let span = stride * (frames - 1) + 1;
        let offset = rng.random_range(0..=clip.len() - span);
        let clip = clip
            .sample(frames, stride, offset)
            .expect("clip length checked at load");
        // The largest window of the target aspect, then 80-100 % of it.
        let full = clip.center_crop_to_aspect(width, height);
        let scale = rng.random_range(augment.crop_min..=1.0);
        let cw = ((full.width() as f64 * scale) as u32).max(1);
        let ch = ((full.height() as f64 * scale) as u32).max(1);
        let x = rng.random_range(0..=clip.width() - cw);
        let y = rng.random_range(0..=clip.height() - ch);
        let mut out = clip.crop(x, y, cw, ch).resize(width, height);
        if augment.flip && rng.random_bool(0.5) {
            for f in &mut out.frames {
                imageops::flip_horizontal_in_place(f);
            }
        }
        (index, out)
    }
}

/// Random changes to training examples.
#[derive(Debug, Clone, Copy)]
pub struct Augment {
    /// The smallest crop, as a fraction of the largest window (1: whole frames), at least
    /// [`MIN_CROP`] (clips are shrunk on loading to what such a crop needs).
    pub crop_min: f64,
    /// Mirror half of the examples horizontally.
    pub flip: bool,
}

/// `clip` scaled down (never up) so that a `MIN_CROP` crop of its largest `width : height`
/// window is still at least `width x height`.
fn shrink(clip: &Clip, width: u32, height: u32) -> Clip {
    let window = clip.center_crop_to_aspect(width, height);
    let needed = width as f64 / (MIN_CROP * window.width() as f64);
    if needed >= 1.0 {
        return clip.clone();
    }
    let w = ((clip.width() as f64 * needed).ceil() as u32).max(width);
    let h = ((clip.height() as f64 * needed).ceil() as u32).max(height);
    clip.resize(w, h)
}

/// The entries of a folder.
fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the data folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect())
}

fn has_png(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("png"))
        })
    })
}
