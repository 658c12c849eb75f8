//! Training data for the three trainers: a folder's clips indexed (once, cached beside the
//! data), fitted to the model as examples, and decoded ahead by background workers; small
//! data is decoded into memory once instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail, ensure};
use cmd_video::dataset::{
    Augment, ClipSpec, Dataset, Example, Index, IndexProgress, Loader, LoaderState, MIN_CROP,
    clips_in,
};
use cmd_video::{Video, VideoReader};

use crate::checkpoint::Run;
use crate::cli::DataArgs;
use crate::progress;

/// Data decoded into memory when it fits in this many bytes (unless `--stream`).
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

impl DataArgs {
    /// Checks the numbers, naming the argument.
    pub fn check(&self) -> Result<()> {
        ensure!(self.stride > 0, "--stride must be positive");
        if let Some(fps) = self.fps {
            ensure!(
                fps.is_finite() && fps > 0.0,
                "--fps must be a positive number, found {fps}"
            );
        }
        Ok(())
    }
}

impl TrainingData {
    /// Indexes `args.data` (reporting unreadable, too-short and ignored files once each),
    /// makes examples of `frames` frames at `width x height`, and starts the loader at
    /// `state` (where a resumed run was).
    pub fn open(
        args: &DataArgs,
        (frames, width, height): (usize, u32, u32),
        augment: Augment,
        seed: u64,
        state: &LoaderState,
        run: &Run,
    ) -> Result<Self> {
        let (videos, notes, unreadable) = index(args)?;
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
            eprintln!("warning: skipping {}: {why}", path.display());
        }
        if dataset.is_empty() {
            bail!(
                "{}: no clip is long enough for one example ({} frames{}{})",
                args.data.display(),
                frames,
                if args.stride > 1 {
                    format!(" at stride {}", args.stride)
                } else {
                    String::new()
                },
                args.fps.map_or(String::new(), |f| format!(" at {f} fps"))
            );
        }
        let bytes = dataset.decoded_bytes();
        let threads = args.workers.unwrap_or_else(default_workers);
        let stream = args.stream || bytes > PRELOAD_BYTES;
        if !stream {
            let bar = progress::bar(dataset.len() as u64, "decode");
            dataset.preload(threads, &mut |done, _| bar.set_position(done as u64));
            bar.finish_and_clear();
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

    /// The next `n` examples. A clip that cannot be decoded is named once (on stderr above
    /// `bar`, and in the run's `data.log`) and skipped from then on.
    pub fn next_batch(&mut self, n: usize, bar: &indicatif::ProgressBar) -> Result<Vec<Example>> {
        let (examples, skipped) = self.loader.next_batch(n)?;
        for s in skipped {
            // Above the bar when it is drawn, on stderr in any case.
            bar.suspend(|| {
                eprintln!(
                    "warning: skipping {} from now on: {}",
                    s.path.display(),
                    s.reason
                )
            });
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

/// Decoding threads when `--workers` is not given: half the cores (the rest train).
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The readable clips of `args.data` (and `--split`), warning once about each file left out,
/// and notes on what was left out.
fn index(args: &DataArgs) -> Result<(Vec<Video>, Vec<String>, usize)> {
    let reader = VideoReader::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bar = progress::bar(0, "index");
    let index = Index::build(&args.data, reader, threads, &mut |p| match p {
        IndexProgress::Probed { done, total } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    })?;
    bar.finish_and_clear();
    let (videos, missing) = clips_in(&index, args.split.as_deref())?;
    let mut notes = Vec::new();
    if let Some(split) = &args.split {
        notes.push(format!("those {} lists", split.display()));
        if !missing.is_empty() {
            eprintln!(
                "warning: {} of the clips {} lists are not readable clips of {} (e.g. '{}')",
                missing.len(),
                split.display(),
                args.data.display(),
                missing[0]
            );
        }
    }
    if videos.is_empty() {
        bail!(
            "{}: no readable clips found (expected {} files, or folders of PNG frames, at the \
             top or in class folders){}",
            args.data.display(),
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
        );
    }
    for (path, why) in &index.unreadable {
        eprintln!("warning: skipping {}: {why}", path.display());
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
    ensure!(
        (MIN_CROP..=1.0).contains(&crop_min),
        "--crop-min must be in [{MIN_CROP}, 1], found {crop_min}"
    );
    Ok(Augment { crop_min, flip })
}
