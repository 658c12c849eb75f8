//! The autoencoder trainer: L1 on pixels, or MSE on the frame latents of a Stable Diffusion
//! VAE in latent mode (spec section 1).

use std::path::PathBuf;

use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use cmd_model::vae::{Vae, VaeConfig};
use cmd_model::{AutoencoderConfig, OutputMode};
use cmd_video::Clip;

use crate::data::{DataConfig, TrainingData, augment};
use crate::error::{Result, Setting, TrainError, ensure};
use crate::event::{Summary, TrainEvent};
use crate::fit::{FitConfig, Plan, Weights, fit};
use crate::parallel::DataParallel;
use crate::run::TrainState;
use crate::tensors::clips_to_tensor;
use crate::vae;

/// What an autoencoder run trains, on what, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct AeTrainConfig {
    /// The training clips.
    pub data: DataConfig,
    /// The autoencoder preset (see `AutoencoderConfig::preset`).
    pub preset: String,
    /// The Stable Diffusion folder or single-file checkpoint whose VAE makes the frame latents
    /// of latent-mode presets.
    pub vae: Option<PathBuf>,
    /// The run folder and the loop (the learning rate is the peak of the schedule).
    pub fit: FitConfig,
    /// Steps of linear learning-rate warm-up (then a cosine decay to a tenth at the end).
    pub warmup: usize,
    /// Adam's first-moment decay (the spec's 0.5).
    pub beta1: f64,
    /// Start a new run from this autoencoder (a run folder, a checkpoint or a model folder)
    /// instead of a fresh initialisation, e.g. to train a shipped model further; its config
    /// must be the preset's.
    pub init: Option<PathBuf>,
}

impl AeTrainConfig {
    /// A `preset` run on `data` with the spec's Adam and a 20-step warm-up.
    pub fn new(preset: &str, data: DataConfig, fit: FitConfig) -> Self {
        Self {
            data,
            preset: preset.to_string(),
            vae: None,
            fit,
            warmup: 20,
            beta1: 0.5,
            init: None,
        }
    }
}

/// Trains an autoencoder from an [`AeTrainConfig`].
pub struct AeTrainer {
    config: AeTrainConfig,
    autoencoder: AutoencoderConfig,
}

/// The optimizer of spec section 1: Adam with betas (`beta1`, 0.9) (the spec's `beta1` is
/// 0.5), no weight decay; gradients clipped to norm 1 for stability at the larger learning
/// rates small models use.
fn optimizer(beta1: f64) -> ModuleOptimizer {
    AdamConfig::new()
        .with_beta_1(beta1 as f32)
        .with_beta_2(0.9)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init()
}

impl AeTrainer {
    /// Checks `config`, naming the setting that is wrong.
    pub fn new(config: AeTrainConfig) -> Result<Self> {
        config.fit.check()?;
        config.data.check()?;
        ensure((0.0..1.0).contains(&config.beta1), Setting::Beta1, || {
            format!("must be at least 0 and less than 1, found {}", config.beta1)
        })?;
        let autoencoder = AutoencoderConfig::preset(&config.preset)?;
        if let (Some(init), true) = (&config.init, config.fit.resume) {
            return Err(TrainError::setting(
                Setting::Init,
                format!(
                    "{}: starts a new run; a resumed run goes on from its own checkpoint",
                    init.display()
                ),
            ));
        }
        let latent = autoencoder.output == OutputMode::Latent;
        match (&config.vae, latent) {
            (None, true) => {
                return Err(TrainError::setting(
                    Setting::Vae,
                    format!(
                        "is needed: the latent-mode preset '{}' trains on Stable Diffusion VAE \
                         latents; give the Stable Diffusion model whose VAE makes them",
                        config.preset
                    ),
                ));
            }
            (Some(vae), false) => {
                return Err(TrainError::setting(
                    Setting::Vae,
                    format!(
                        "{}: the '{}' preset works on pixels; a VAE is for latent presets",
                        vae.display(),
                        config.preset
                    ),
                ));
            }
            _ => {}
        }
        Ok(Self {
            config,
            autoencoder,
        })
    }

    /// Trains (or resumes) the run on `parallel`'s devices to its steps, reporting to
    /// `events`; the run folder then holds a checkpoint of every `checkpoint_every` steps.
    pub fn train(
        &self,
        parallel: &DataParallel,
        events: &mut dyn FnMut(TrainEvent),
    ) -> Result<Summary> {
        let (args, config) = (&self.config, &self.autoencoder);
        let run = args.fit.run();
        let devices = parallel.devices();
        let device = parallel.main().clone();
        let vae = match &args.vae {
            Some(path) => Some(vae::open(path, &run, args.fit.resume, &device)?),
            None => None,
        };
        let vaes: Vec<Option<(VaeConfig, Vae)>> = devices
            .iter()
            .map(|d| vae.clone().map(|(c, v)| (c, v.to_device(d).no_grad())))
            .collect();
        // Clips are cut at the size whose latents (or pixels) the autoencoder takes.
        let factor = vae.as_ref().map_or(1, |(c, _)| c.scale_factor()) as u32;
        let (width, height) = (config.width as u32 * factor, config.height as u32 * factor);

        let weights = if args.fit.resume {
            let saved = run.read_config()?;
            if saved != *config {
                // A preset of the same name can have changed since the run was started.
                let detail = if saved.name == config.name {
                    format!(" as it was then ({saved:?}; now {config:?})")
                } else {
                    String::new()
                };
                return Err(TrainError::setting(
                    Setting::Preset,
                    format!(
                        "{}: the run in {} was started with preset '{}'{detail}",
                        args.preset,
                        run.dir().display(),
                        saved.name
                    ),
                ));
            }
            let (model, optim, state) = run.resume(config, optimizer(args.beta1), &device)?;
            Weights {
                model,
                ema: None,
                optim,
                state,
            }
        } else {
            device.seed(args.fit.seed);
            let model = match &args.init {
                Some(path) => initial_weights(path, config, &device)?,
                None => config.init(&device)?,
            };
            run.start(config)?;
            Weights {
                model,
                ema: None,
                optim: optimizer(args.beta1),
                state: TrainState::new(args.fit.seed),
            }
        };
        if let Some(done) = args.fit.finished(&weights.state) {
            return Ok(done);
        }
        // Every example is mirrored at random: an autoencoder has no words to contradict.
        let augment = augment(cmd_video::dataset::MIN_CROP, true)?;
        let state = &weights.state;
        let mut data = TrainingData::open(
            &args.data,
            (config.frames, width, height),
            augment,
            state.seed,
            &state.data(args.fit.batch),
            &run,
            events,
        )?;
        let plan = Plan {
            steps: args.fit.steps,
            checkpoint_every: args.fit.checkpoint_every,
            lr: &|step| learning_rate(args.fit.lr, args.warmup, args.fit.steps, step),
            ema: 0.0,
            model_file: "model.bpk",
            model: format!("the autoencoder '{}'", config.name),
            batch: args.fit.batch,
            parallel,
        };
        fit(
            &run,
            &plan,
            weights,
            &mut data,
            events,
            &|replica, examples, _rng, shard| {
                let clips: Vec<Clip> = examples[shard.range.clone()]
                    .iter()
                    .map(|e| e.frames.clone())
                    .collect();
                let x = clips_to_tensor(&clips, &devices[shard.index]);
                let x = match &vaes[shard.index] {
                    Some((config, vae)) => vae.encode_clips(x, config.scaling_factor).detach(),
                    None => x,
                };
                let (_, recon) = replica.forward(x.clone());
                Ok(replica.loss(recon, x))
            },
        )
    }
}

/// The autoencoder at `path`, checked to be `config`'s.
fn initial_weights(
    path: &std::path::Path,
    config: &AutoencoderConfig,
    device: &burn::tensor::Device,
) -> Result<cmd_model::Autoencoder> {
    let model = crate::run::load_autoencoder(path, device)?;
    if model.config() != config {
        return Err(TrainError::setting(
            Setting::Init,
            format!(
                "{}: holds the autoencoder '{}', not the preset '{}' this run trains \
                 ({:?} against {:?})",
                path.display(),
                model.config().name,
                config.name,
                model.config(),
                config
            ),
        ));
    }
    Ok(model)
}

/// Linear warm-up over `warmup` steps, then a cosine decay to a tenth of `peak` at `steps`.
fn learning_rate(peak: f64, warmup: usize, steps: usize, step: usize) -> f64 {
    let warmup = warmup.max(1);
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / steps.saturating_sub(warmup).max(1) as f64;
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
    peak * (0.1 + 0.9 * cosine)
}

#[cfg(test)]
mod tests {
    use super::learning_rate;

    #[test]
    fn schedule_warms_up_then_decays_to_a_tenth() {
        let lr = |step| learning_rate(1e-3, 10, 110, step);
        assert!((lr(0) - 1e-4).abs() < 1e-12);
        assert!((lr(9) - 1e-3).abs() < 1e-12);
        assert!((lr(10) - 1e-3).abs() < 1e-12);
        assert!((lr(60) - 0.55e-3).abs() < 1e-9, "half way: {}", lr(60));
        assert!((lr(110) - 1e-4).abs() < 1e-12);
        assert!(
            (lr(500) - 1e-4).abs() < 1e-12,
            "past the end it stays at the floor"
        );
    }
}
