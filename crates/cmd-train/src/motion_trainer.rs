//! The motion-model trainer: trains the motion DiT (spec section 3) on the motion latents of a
//! frozen autoencoder, conditioned on its clean content frames (teacher forcing) and the
//! pooled text of the content run's text encoder; a fraction of the text vectors is zeroed
//! for guidance.

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use cmd_model::dit::{DitConfig, TextNorm, TextPooling};
use cmd_model::pipelines::Codec;
use cmd_model::pipelines::cmd::motion_schedule;
use cmd_model::schedulers::{NoiseSchedule, Prediction};
use cmd_model::tokenizer::ClipTokenizer;

use crate::captions;
use crate::content;
use crate::data::TrainingData;
use crate::diffusion::{DiffusionConfig, Draws, denoising_loss};
use crate::error::{Result, Setting, TrainError};
use crate::event::{Summary, TrainEvent};
use crate::fit::{Plan, Weights, adam, fit};
use crate::frozen::{EncodingCache, Frozen};
use crate::motion::{self, MotionRunConfig};
use crate::parallel::DataParallel;
use crate::run::{TrainState, load_autoencoder, load_record};
use crate::tensors::to_vec;
use crate::vae::absolute;

/// What a motion run trains, on what, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionTrainConfig {
    /// The autoencoder whose motion latents (and content frames) are the training data.
    pub ae: PathBuf,
    /// The content run whose text encoder conditions the motion model.
    pub content: PathBuf,
    /// The DiT size (see `DitConfig::preset`).
    pub preset: String,
    /// Patch size of the content frame (spec: 4 for SD1.5 and 64x64 pixels, 8 for SD2.1).
    pub content_patch: usize,
    /// What the DiT learns to predict (default: epsilon). A resumed run keeps its own.
    pub prediction: Option<Prediction>,
    /// Which text-encoder outputs the pooled text averages (default: all tokens, the
    /// spec's). A resumed run keeps its own.
    pub text_pooling: Option<TextPooling>,
    /// Data, run folder and optimisation.
    pub train: DiffusionConfig,
}

/// Trains a motion model from a [`MotionTrainConfig`].
pub struct MotionTrainer {
    config: MotionTrainConfig,
}

impl MotionTrainer {
    /// Checks `config`, naming the setting that is wrong.
    pub fn new(config: MotionTrainConfig) -> Result<Self> {
        config.train.check()?;
        Ok(Self { config })
    }

    /// Trains (or resumes) the run on `parallel`'s devices to its steps, reporting to
    /// `events`.
    pub fn train(
        &self,
        parallel: &DataParallel,
        events: &mut dyn FnMut(TrainEvent),
    ) -> Result<Summary> {
        let args = &self.config;
        let train = &args.train;
        let device = parallel.main().clone();
        let ae = load_autoencoder(&args.ae, &device)?;
        let (content_config, text) = content::load_run(&args.content, &device)?;
        let ae_path = absolute(&args.ae)?;
        if content_config.ae != ae_path {
            events(TrainEvent::Warning(format!(
                "the content run was trained on the content frames of {}, not of {}",
                content_config.ae.display(),
                ae_path.display()
            )));
        }
        let cfg = ae.config().clone();
        device.seed(train.fit.seed);
        let factor = text.vae.as_ref().map_or(1, |(c, _)| c.scale_factor());
        let tokenizer = text.tokenizer;
        let frozen = Frozen {
            codec: Codec {
                autoencoder: ae,
                vae: text.vae,
            },
            text_encoder: text.text_encoder,
        }
        .on_each(parallel.devices());
        let pixels = (cfg.height * factor) as u32;
        let run = train.fit.run();
        let saved = if train.fit.resume {
            Some(run.resume_parts(adam())?)
        } else {
            None
        };
        let start = saved.as_ref().map_or_else(
            || TrainState::new(train.fit.seed),
            |(_, _, state)| state.clone(),
        );
        if let Some(done) = train.fit.finished(&start) {
            return Ok(done);
        }
        let mut data = TrainingData::open(
            &train.data,
            (cfg.frames, pixels, pixels),
            train.augment()?,
            start.seed,
            &start.data(train.fit.batch),
            &run,
            events,
        )?;
        let captions =
            captions::for_clips(&train.data.data, &data.paths(), train.captions.as_deref())?;
        let dit_config = DitConfig {
            prediction: args.prediction.unwrap_or(Prediction::Epsilon),
            text_pooling: args.text_pooling.unwrap_or(TextPooling::AllTokens),
            ..DitConfig::preset(
                &args.preset,
                [cfg.motion_dim, cfg.frames, cfg.grid_h() + cfg.grid_w()],
                [cfg.channels, cfg.height, cfg.width],
                args.content_patch,
                content_config.text_encoder.hidden_size,
            )?
        };
        let mut config = MotionRunConfig {
            ae: ae_path,
            content: absolute(&args.content)?,
            dit: dit_config,
            ema: train.ema,
            empty_prompt: train.empty_prompt,
        };
        let weights = if let Some((dir, optim, state)) = saved {
            let saved = motion::read_run_config(&run)?;
            run.ensure_prediction_kept(
                args.prediction.is_some(),
                saved.dit.prediction,
                config.dit.prediction,
            )?;
            run.ensure_kept(
                Setting::TextPooling,
                args.text_pooling.is_some(),
                saved.dit.text_pooling == config.dit.text_pooling,
                match saved.dit.text_pooling {
                    TextPooling::AllTokens => "all-tokens pooling",
                    TextPooling::PromptTokens => "prompt-tokens pooling",
                },
            )?;
            let sizes = DitConfig {
                text_norm: None,
                prediction: config.dit.prediction,
                text_pooling: config.dit.text_pooling,
                ..saved.dit.clone()
            };
            if (&saved.ae, &saved.content, &sizes) != (&config.ae, &config.content, &config.dit) {
                return Err(TrainError::path(
                    run.config_path(),
                    "the run was started with another autoencoder, content run, DiT size or \
                     content patch",
                ));
            }
            let dit = load_record(saved.dit.init(&device)?, &dir.join("dit.bpk"), "DiT")?;
            let ema = load_record(saved.dit.init(&device)?, &dir.join("ema.bpk"), "DiT")?;
            Weights {
                model: dit,
                ema: Some(ema.valid()),
                optim,
                state,
            }
        } else {
            config.dit.text_norm = Some(fit_text_norm(
                &frozen[0],
                &tokenizer,
                &captions,
                config.dit.text_pooling,
                &device,
            )?);
            run.start(&config)?;
            let dit = config.dit.init(&device)?;
            let ema = dit.valid();
            Weights {
                model: dit,
                ema: Some(ema),
                optim: adam(),
                state: start,
            }
        };
        let prediction = weights.model.config().prediction;
        let schedule = NoiseSchedule::new(&motion_schedule(prediction));
        let cache = EncodingCache::for_data(&data, events);
        let plan = Plan {
            steps: train.fit.steps,
            checkpoint_every: train.fit.checkpoint_every,
            lr: &|_| train.fit.lr,
            ema: train.ema,
            model_file: "dit.bpk",
            model: format!("the motion DiT '{}'", args.preset),
            batch: train.fit.batch,
            parallel,
        };
        fit(
            &run,
            &plan,
            weights,
            &mut data,
            events,
            &|dit, examples, rng, shard| {
                let draws = Draws::new(rng, train.fit.batch, train.empty_prompt, &schedule);
                let prompts: Vec<String> =
                    examples.iter().map(|e| captions[e.clip].clone()).collect();
                let (range, device) = (shard.range.clone(), shard.device);
                let frozen = &frozen[shard.index];
                let (content, z0) =
                    frozen.encode_examples(&examples[range.clone()], cache.as_ref(), device)?;
                let (text, lengths) =
                    frozen.encode_prompts(&tokenizer, &prompts[range.clone()], device)?;
                // The null condition is the zero vector.
                let keep: Vec<f32> = draws.null[range.clone()]
                    .iter()
                    .map(|null| if *null { 0.0 } else { 1.0 })
                    .collect();
                let keep = TensorData::new(keep, [range.len(), 1]);
                let pooled = dit.config().text_condition(text, &lengths);
                let pooled = pooled * Tensor::<2>::from_data(keep, device);
                Ok(denoising_loss(
                    &schedule,
                    prediction,
                    z0,
                    &draws,
                    shard,
                    |z_t, t| dit.forward(z_t, t, content, pooled),
                ))
            },
        )
    }
}

/// The standardisation of the pooled text (see `TextNorm`) over the distinct training captions.
fn fit_text_norm(
    frozen: &Frozen,
    tokenizer: &ClipTokenizer,
    captions: &[String],
    pooling: TextPooling,
    device: &Device,
) -> Result<TextNorm> {
    let mut distinct: Vec<String> = captions.to_vec();
    distinct.sort();
    distinct.dedup();
    let mut pooled = Vec::with_capacity(distinct.len());
    for chunk in distinct.chunks(32) {
        let (states, lengths) = frozen.encode_prompts(tokenizer, chunk, device)?;
        let text = pooling.pool(states, &lengths);
        let [n, width] = text.dims();
        let values = to_vec(text)?;
        pooled.extend((0..n).map(|i| values[i * width..(i + 1) * width].to_vec()));
    }
    Ok(TextNorm::fit(&pooled)?)
}
