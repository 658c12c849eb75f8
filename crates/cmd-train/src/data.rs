//! Training data for the three trainers: a folder's clips indexed (once, cached beside the
//! data), fitted to the model as examples, and decoded ahead by background workers; small
//! data is decoded into memory once instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cmd_video::dataset::{
    Augment, ClipSpec, Dataset, Example, Index, IndexProgress, Loader, LoaderState, MIN_CROP,
    clips_in,
};
use cmd_video::{Video, VideoReader};

use crate::error::{Result, Setting, TrainError, ensure};
use crate::event::TrainEvent;
use crate::run::Run;

/// Data decoded into memory when it fits in this many bytes (unless `stream` is set).
const PRELOAD_BYTES: u64 = 1 << 30;

/// A trainer's examples: the dataset, its loader, and the run log skipped clips go to.
pub struct TrainingData {
    loader: Loader,
    /// The run's `data.log`, and lines not yet written to it (the run folder may not exist
    /// yet when the data is opened).
    log: PathBuf,
    unlogged: Vec<String>,
    description: String,
    /// Clips left out before training: unreadable, too short.
    left_out: (usize, usize),
}

/// Where training clips come from and how they are sampled (all three trainers).
#[derive(Debug, Clone, PartialEq)]
pub struct DataConfig {
    /// Folder of training clips: video files, y4m, gif, or folders of PNG frames, at its top
    /// or in class folders (UCF-101 style). Indexed once; the index is kept in
    /// `DATA/.cmd-index.json`.
    pub data: PathBuf,
    /// Train only on the clips this file lists (UCF-101's `trainlist0N.txt`: paths relative
    /// to `data`, one per line).
    pub split: Option<PathBuf>,
    /// Take every stride-th frame (with `fps`: every stride-th tick).
    pub stride: usize,
    /// Sample the clips at this frame rate, by their timestamps (default: each clip's own
    /// frames).
    pub fps: Option<f64>,
    /// Decode each example when it is needed, in background threads, even when the data
    /// would fit in memory (data over 1 GB decoded is always streamed).
    pub stream: bool,
    /// Decoding threads (default: half the cores).
    pub workers: Option<usize>,
}

impl DataConfig {
    /// The clips of `data`, each frame, decoded the default way.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            split: None,
            stride: 1,
            fps: None,
            stream: false,
            workers: None,
        }
    }

    /// Checks the numbers, naming the setting.
    pub fn check(&self) -> Result<()> {
        ensure(self.stride > 0, Setting::Stride, || {
            "must be positive".into()
        })?;
        if let Some(fps) = self.fps {
            ensure(fps.is_finite() && fps > 0.0, Setting::Fps, || {
                format!("must be a positive number, found {fps}")
            })?;
        }
        Ok(())
    }
}

impl TrainingData {
    /// Indexes `args.data` (reporting unreadable, too-short and ignored files once each),
    /// makes examples of `frames` frames at `width x height`, and starts the loader at
    /// `state` (where a resumed run was).
    pub fn open(
        args: &DataConfig,
        (frames, width, height): (usize, u32, u32),
        augment: Augment,
        seed: u64,
        state: &LoaderState,
        run: &Run,
        events: &mut dyn FnMut(TrainEvent),
    ) -> Result<Self> {
        let (videos, notes, unreadable) = index(args, events)?;
        let spec = ClipSpec {
            frames,
            stride: args.stride,
            fps: args.fps,
            width,
            height,
            augment,
        };
        let (mut dataset, short) = Dataset::new(videos, spec, seed);
        for (path, why) in &short {
            events(TrainEvent::Warning(format!(
                "skipping {}: {why}",
                path.display()
            )));
        }
        if dataset.is_empty() {
            return Err(TrainError::path(
                &args.data,
                format!(
                    "no clip is long enough for one example ({} frames{}{})",
                    frames,
                    if args.stride > 1 {
                        format!(" at stride {}", args.stride)
                    } else {
                        String::new()
                    },
                    args.fps.map_or(String::new(), |f| format!(" at {f} fps"))
                ),
            ));
        }
        let bytes = dataset.decoded_bytes();
        let threads = args.workers.unwrap_or_else(default_workers);
        let stream = args.stream || bytes > PRELOAD_BYTES;
        if !stream {
            dataset.preload(threads, &mut |done, total| {
                events(TrainEvent::Decoding { done, total })
            });
        }
        let workers = if stream { threads } else { 0 };
        let loader = Loader::new(Arc::new(dataset), state, workers, 4 * threads);
        let mut data = Self {
            loader,
            log: run.dir().join("data.log"),
            unlogged: Vec::new(),
            description: String::new(),
            left_out: (unreadable, short.len()),
        };
        let mut notes = notes;
        if !short.is_empty() {
            notes.push(format!("{} too short", short.len()));
        }
        notes.push(if stream {
            format!("streamed by {threads} decoding threads")
        } else {
            format!("{:.0} MB decoded in memory", bytes as f64 / 1e6)
        });
        data.description = format!(
            "{} clips from {} ({})",
            data.loader.dataset().len(),
            args.data.display(),
            notes.join(", ")
        );
        let line = format!(
            "{}, {}",
            data.description,
            if state.cursor > 0 {
                format!("resuming at example {}", state.cursor)
            } else {
                "from the first example".into()
            }
        );
        data.log(&line);
        Ok(data)
    }

    /// The clips, where from, what was left out and how they are decoded, in words.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The clip files, in the order examples number them.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.loader
            .dataset()
            .videos()
            .iter()
            .map(|v| v.path().to_path_buf())
            .collect()
    }

    /// Whether every example of a clip is that whole clip (see `Dataset::fixed_examples`).
    pub fn fixed_examples(&self) -> bool {
        self.loader.dataset().fixed_examples()
    }

    /// The next `n` examples. A clip that cannot be decoded is named once (as a warning, and
    /// in the run's `data.log`) and skipped from then on.
    pub fn next_batch(
        &mut self,
        n: usize,
        events: &mut dyn FnMut(TrainEvent),
    ) -> Result<Vec<Example>> {
        let (examples, skipped) = self.loader.next_batch(n)?;
        for s in skipped {
            events(TrainEvent::Warning(format!(
                "skipping {} from now on: {}",
                s.path.display(),
                s.reason
            )));
            self.log(&format!("skipped {}: {}", s.path.display(), s.reason));
        }
        self.flush_log();
        Ok(examples)
    }

    /// Where the run is in its data.
    pub fn state(&self) -> LoaderState {
        self.loader.state()
    }

    /// The words for the final line: how many clips were skipped, and why.
    pub fn summary(&self) -> String {
        let (unreadable, short) = self.left_out;
        let damaged = self.loader.skipped().len();
        let parts: Vec<String> = [
            (unreadable, "unreadable"),
            (short, "too short"),
            (damaged, "failed to decode while training"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect();
        match unreadable + short + damaged {
            0 => "no clip skipped".into(),
            1 => format!("1 clip skipped ({})", parts.join(", ")),
            n => format!("{n} clips skipped ({})", parts.join(", ")),
        }
    }

    /// Appends a line to the run's `data.log` (written with the next batch, or by
    /// [`Self::flush_log`]).
    pub fn log(&mut self, line: &str) {
        self.unlogged.push(line.to_string());
    }

    /// Writes the lines logged so far, once the run folder exists (best effort: the log is
    /// for reading, nothing depends on it).
    pub fn flush_log(&mut self) {
        if self.unlogged.is_empty() || !self.log.parent().is_some_and(Path::is_dir) {
            return;
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
        {
            for line in self.unlogged.drain(..) {
                let _ = writeln!(f, "{line}");
            }
        }
    }
}

/// Decoding threads when `workers` is not given: half the cores (the rest train).
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The readable clips of `args.data` (and `args.split`), warning once about each file left out,
/// and notes on what was left out.
fn index(
    args: &DataConfig,
    events: &mut dyn FnMut(TrainEvent),
) -> Result<(Vec<Video>, Vec<String>, usize)> {
    let reader = VideoReader::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let index = Index::build(&args.data, reader, threads, &mut |p| match p {
        IndexProgress::Probed { done, total } => events(TrainEvent::Indexing { done, total }),
    })?;
    let (videos, missing) = clips_in(&index, args.split.as_deref())?;
    let mut notes = Vec::new();
    if let Some(split) = &args.split {
        notes.push(format!("those {} lists", split.display()));
        if !missing.is_empty() {
            events(TrainEvent::Warning(format!(
                "{} of the clips {} lists are not readable clips of {} (e.g. '{}')",
                missing.len(),
                split.display(),
                args.data.display(),
                missing[0]
            )));
        }
    }
    if videos.is_empty() {
        return Err(TrainError::path(
            &args.data,
            format!(
                "no readable clips found (expected {} files, or folders of PNG frames, at the \
             top or in class folders){}",
                cmd_video::INPUT_FORMATS,
                match &index.unreadable[..] {
                    [] => String::new(),
                    [(path, why)] => format!("; 1 could not be read: {}: {why}", path.display()),
                    [(path, why), rest @ ..] => format!(
                        "; {} could not be read, e.g. {}: {why}",
                        rest.len() + 1,
                        path.display()
                    ),
                }
            ),
        ));
    }
    for (path, why) in &index.unreadable {
        events(TrainEvent::Warning(format!(
            "skipping {}: {why}",
            path.display()
        )));
    }
    if !index.unreadable.is_empty() {
        notes.push(format!("{} unreadable", index.unreadable.len()));
    }
    match index.ignored {
        0 => {}
        1 => notes.push("1 other file ignored".into()),
        n => notes.push(format!("{n} other files ignored")),
    }
    if !reader.has_ffmpeg() {
        notes.push("FFmpeg not found: built-in decoders only".into());
    }
    Ok((videos, notes, index.unreadable.len()))
}

/// The augmentation of a trainer: crops from `crop_min`, flips if asked.
pub fn augment(crop_min: f64, flip: bool) -> Result<Augment> {
    ensure(
        (MIN_CROP..=1.0).contains(&crop_min),
        Setting::CropMin,
        || format!("must be in [{MIN_CROP}, 1], found {crop_min}"),
    )?;
    Ok(Augment { crop_min, flip })
}
