//! `cmdv train-ae`, `train-content` and `train-motion`: the flags become the training
//! library's typed configs, its events a progress bar with an ETA, and its errors name the
//! flag concerned.

use anyhow::Result;
use burn::tensor::Device;
use cmd_train::{
    AeTrainConfig, AeTrainer, ContentTrainConfig, ContentTrainer, DataConfig, DataParallel,
    DiffusionConfig, FitConfig, MotionTrainConfig, MotionTrainer, Setting, Summary, TrainError,
    TrainEvent,
};
use indicatif::ProgressBar;

use crate::cli::{
    DataArgs, DeviceArg, DiffusionTrainArgs, TrainAeArgs, TrainContentArgs, TrainMotionArgs,
};
use crate::{device, progress};

/// `cmdv train-ae`.
pub fn ae(args: &TrainAeArgs) -> Result<()> {
    let config = AeTrainConfig {
        data: data_config(&args.data),
        preset: args.preset.clone(),
        vae: args.vae.clone(),
        fit: FitConfig {
            out: args.out.clone(),
            resume: args.resume,
            seed: args.seed,
            steps: args.steps,
            batch: args.batch,
            lr: args.lr,
            checkpoint_every: args.checkpoint_every,
        },
        warmup: args.warmup,
        beta1: args.beta1,
        init: args.init.clone(),
    };
    let trainer = AeTrainer::new(config).map_err(flagged)?;
    let parallel = parallel(args.device, args.devices, args.batch)?;
    drive("train-ae", |events| trainer.train(&parallel, events))
}

/// `cmdv train-content`.
pub fn content(args: &TrainContentArgs) -> Result<()> {
    let config = ContentTrainConfig {
        ae: args.ae.clone(),
        base: args.base.clone(),
        prediction: args.prediction.map(Into::into),
        train: diffusion_config(&args.train),
    };
    let trainer = ContentTrainer::new(config).map_err(flagged)?;
    let parallel = parallel(args.train.device, args.train.devices, args.train.batch)?;
    drive("content", |events| trainer.train(&parallel, events))
}

/// `cmdv train-motion`.
pub fn motion(args: &TrainMotionArgs) -> Result<()> {
    let config = MotionTrainConfig {
        ae: args.ae.clone(),
        content: args.content.clone(),
        preset: args.preset.clone(),
        content_patch: args.content_patch,
        prediction: args.prediction.map(Into::into),
        text_pooling: args.text_pooling.map(Into::into),
        train: diffusion_config(&args.train),
    };
    let trainer = MotionTrainer::new(config).map_err(flagged)?;
    let parallel = parallel(args.train.device, args.train.devices, args.train.batch)?;
    drive("motion", |events| trainer.train(&parallel, events))
}

fn data_config(args: &DataArgs) -> DataConfig {
    DataConfig {
        data: args.data.clone(),
        split: args.split.clone(),
        stride: args.stride,
        fps: args.fps,
        stream: args.stream,
        workers: args.workers,
    }
}

fn diffusion_config(args: &DiffusionTrainArgs) -> DiffusionConfig {
    DiffusionConfig {
        data: data_config(&args.data),
        captions: args.captions.clone(),
        fit: FitConfig {
            out: args.out.clone(),
            resume: args.resume,
            seed: args.seed,
            steps: args.steps,
            batch: args.batch,
            lr: args.lr,
            checkpoint_every: args.checkpoint_every,
        },
        ema: args.ema,
        empty_prompt: args.empty_prompt,
        flip: args.flip,
        crop_min: args.crop_min,
    }
}

/// The training devices `--device` and `--devices` name; CUDA GPUs all-reduce.
fn parallel(arg: DeviceArg, count: usize, batch: usize) -> Result<DataParallel> {
    let devices: Vec<Device> = device::open_many(arg, count)?;
    DataParallel::new(devices, arg == DeviceArg::Cuda, batch).map_err(flagged)
}

/// Runs a trainer with a progress bar, then says how it ended.
fn drive(
    label: &'static str,
    train: impl FnOnce(&mut dyn FnMut(TrainEvent)) -> Result<Summary, TrainError>,
) -> Result<()> {
    let mut bars = Bars {
        label,
        phase: None,
        training: None,
    };
    let result = train(&mut |event| bars.show(event));
    bars.end(result.is_ok());
    let summary = result.map_err(flagged)?;
    eprintln!("{summary}");
    Ok(())
}

/// The library's error in the terms of the command line: a setting is named by its flag.
fn flagged(err: TrainError) -> anyhow::Error {
    match err {
        TrainError::Setting { setting, message } => {
            anyhow::anyhow!("{} {message}", flag(setting))
        }
        TrainError::RunExists { dir } => anyhow::anyhow!(
            "{}: already holds a checkpoint; pass --resume to continue it, or choose another --out",
            dir.display()
        ),
        TrainError::NothingToResume { dir } => anyhow::anyhow!(
            "{}: no checkpoint to resume from (run without --resume to start it)",
            dir.display()
        ),
        other => other.into(),
    }
}

/// The flag of a setting.
fn flag(setting: Setting) -> &'static str {
    match setting {
        Setting::Data => "--data",
        Setting::Stride => "--stride",
        Setting::Fps => "--fps",
        Setting::Steps => "--steps",
        Setting::Batch => "--batch",
        Setting::Lr => "--lr",
        Setting::Beta1 => "--beta1",
        Setting::CheckpointEvery => "--checkpoint-every",
        Setting::Ema => "--ema",
        Setting::EmptyPrompt => "--empty-prompt",
        Setting::CropMin => "--crop-min",
        Setting::Devices => "--devices",
        Setting::Preset => "--preset",
        Setting::Vae => "--vae",
        Setting::Base => "--base",
        Setting::Prediction => "--prediction",
        Setting::TextPooling => "--text-pooling",
        Setting::Init => "--init",
    }
}

/// The bars of a run: one for the current preparation phase (indexing, decoding), then the
/// training bar. Messages go above them.
struct Bars {
    label: &'static str,
    phase: Option<(&'static str, ProgressBar)>,
    training: Option<ProgressBar>,
}

impl Bars {
    fn show(&mut self, event: TrainEvent) {
        match event {
            TrainEvent::Indexing { done, total } => self.prepare("index", done, total),
            TrainEvent::Decoding { done, total } => self.prepare("decode", done, total),
            TrainEvent::Warning(text) => self.say(&format!("warning: {text}")),
            TrainEvent::Note(text) => self.say(&text),
            TrainEvent::Started {
                model,
                parameters,
                data,
                step,
                steps,
            } => {
                self.end_phase();
                if step > 0 {
                    eprintln!("resuming at step {step}");
                }
                eprintln!("training {model} ({parameters} parameters) on {data}");
                let bar = progress::bar(steps as u64, self.label);
                bar.set_position(step as u64);
                bar.reset_eta();
                self.training = Some(bar);
            }
            TrainEvent::Step { step, loss, .. } => {
                if let Some(bar) = &self.training {
                    bar.set_position(step as u64);
                    bar.set_message(format!("loss {loss:.4}"));
                }
            }
            TrainEvent::Checkpoint { .. } => {}
        }
    }

    fn prepare(&mut self, phase: &'static str, done: usize, total: usize) {
        if self.phase.as_ref().is_none_or(|(p, _)| *p != phase) {
            self.end_phase();
            self.phase = Some((phase, progress::bar(total as u64, phase)));
        }
        if let Some((_, bar)) = &self.phase {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    }

    fn end_phase(&mut self) {
        if let Some((_, bar)) = self.phase.take() {
            bar.finish_and_clear();
        }
    }

    /// A line above the bars (on stderr in any case).
    fn say(&self, line: &str) {
        match (&self.training, &self.phase) {
            (Some(bar), _) | (None, Some((_, bar))) => bar.suspend(|| eprintln!("{line}")),
            (None, None) => eprintln!("{line}"),
        }
    }

    /// Finishes the bars, or leaves the training bar where it stopped.
    fn end(&mut self, finished: bool) {
        self.end_phase();
        if let Some(bar) = self.training.take() {
            if finished {
                bar.finish();
            } else {
                bar.abandon();
            }
        }
    }
}
