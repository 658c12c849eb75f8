//! The content-model trainer: fine-tunes (or trains from scratch) the content-frame diffusion
//! model on the content frames of a frozen autoencoder (spec section 2): epsilon- (or v-) MSE,
//! empty prompts for classifier-free guidance, an EMA copy for sampling.

use std::path::{Path, PathBuf};

use burn::module::Module;
use cmd_model::OutputMode;
use cmd_model::pipelines::Codec;
use cmd_model::schedulers::{NoiseSchedule, Prediction};

use crate::captions;
use crate::content::{self, ContentRunConfig, PRESET_BASES, text_encoder_path};
use crate::data::TrainingData;
use crate::diffusion::{DiffusionConfig, Draws, denoising_loss};
use crate::error::{Result, TrainError};
use crate::event::{Summary, TrainEvent};
use crate::fit::{Plan, Weights, adam, fit};
use crate::frozen::{EncodingCache, Frozen};
use crate::parallel::DataParallel;
use crate::run::{TrainState, load_autoencoder, load_record, save_record};
use crate::vae::absolute;

/// What a content run trains, on what, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentTrainConfig {
    /// The autoencoder (a run or model folder) whose content frames are the training images.
    pub ae: PathBuf,
    /// Where to start: a diffusers Stable Diffusion folder, a single-file SD 1.x/2.x
    /// checkpoint, or a preset trained from scratch (`tiny`, `teaching`).
    pub base: String,
    /// What the UNet learns to predict (default: the base's own; epsilon for the presets).
    /// A resumed run keeps its own.
    pub prediction: Option<Prediction>,
    /// Data, run folder and optimisation.
    pub train: DiffusionConfig,
}

/// Trains a content model from a [`ContentTrainConfig`].
pub struct ContentTrainer {
    config: ContentTrainConfig,
}

impl ContentTrainer {
    /// Checks `config`, naming the setting that is wrong.
    pub fn new(config: ContentTrainConfig) -> Result<Self> {
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
        let ae_config = ae.config().clone();
        let latent = ae_config.output == OutputMode::Latent;
        if ae_config.height != ae_config.width {
            return Err(TrainError::path(
                &args.ae,
                format!(
                    "content models here take square content frames; the autoencoder's are {}x{}",
                    ae_config.height, ae_config.width
                ),
            ));
        }
        let base = if PRESET_BASES.contains(&args.base.as_str()) {
            args.base.clone()
        } else {
            absolute(Path::new(&args.base))?.display().to_string()
        };
        let run = train.fit.run();

        // Fresh: the base model; resumed: its config, the run's text encoder and the checkpoint.
        device.seed(train.fit.seed);
        let mut model =
            content::from_base(&base, ae_config.channels, ae_config.height, latent, &device)?;
        if let Some(recorded) = crate::vae::recorded(&args.ae)?
            && Path::new(&base) != recorded
        {
            events(TrainEvent::Warning(format!(
                "the autoencoder was trained on latents of {}'s VAE; {}'s VAE encodes the frames \
                 here",
                recorded.display(),
                base
            )));
        }
        if let Some(prediction) = args.prediction {
            model.scheduler.prediction_type = prediction;
        }
        let config = ContentRunConfig {
            ae: absolute(&args.ae)?,
            base,
            latent,
            size: ae_config.height,
            unet: model.unet_config.clone(),
            text_encoder: model.text_config.clone(),
            scheduler: model.scheduler.clone(),
            ema: train.ema,
            empty_prompt: train.empty_prompt,
        };
        let preset = PRESET_BASES.contains(&config.base.as_str());
        let weights = if train.fit.resume {
            let saved = content::read_run_config(&run)?;
            if (&saved.ae, &saved.base) != (&config.ae, &config.base) {
                return Err(TrainError::path(
                    run.config_path(),
                    format!(
                        "the run was started with the autoencoder {} and the base {}, not {} \
                         and {}",
                        saved.ae.display(),
                        saved.base,
                        config.ae.display(),
                        config.base
                    ),
                ));
            }
            run.ensure_prediction_kept(
                args.prediction.is_some(),
                saved.scheduler.prediction_type,
                config.scheduler.prediction_type,
            )?;
            model.scheduler = saved.scheduler;
            let (dir, optim, state) = run.resume_parts(adam())?;
            if preset {
                let path = text_encoder_path(&train.fit.out);
                model.text_encoder =
                    load_record(saved.text_encoder.init(&device), &path, "text encoder")?;
            }
            let unet = load_record(saved.unet.init(&device)?, &dir.join("unet.bpk"), "UNet")?;
            let ema = load_record(saved.unet.init(&device)?, &dir.join("ema.bpk"), "UNet")?;
            Weights {
                model: unet,
                ema: Some(ema.valid()),
                optim,
                state,
            }
        } else {
            run.start(&config)?;
            if preset {
                let json = model.tokenizer.to_json()?;
                cmd_video::write_bytes_atomic(
                    &content::tokenizer_path(&train.fit.out),
                    json.as_bytes(),
                )?;
                let record = model.text_encoder.clone().into_record();
                save_record(&text_encoder_path(&train.fit.out), record)?;
            }
            let unet = model.unet.clone();
            let ema = unet.valid();
            Weights {
                model: unet,
                ema: Some(ema),
                optim: adam(),
                state: TrainState::new(train.fit.seed),
            }
        };
        let frozen = Frozen {
            codec: Codec {
                autoencoder: ae,
                vae: model.vae.clone(),
            },
            text_encoder: model.text_encoder.clone(),
        }
        .on_each(parallel.devices());

        if let Some(done) = train.fit.finished(&weights.state) {
            return Ok(done);
        }
        let pixels =
            (ae_config.height * model.vae.as_ref().map_or(1, |(c, _)| c.scale_factor())) as u32;
        let state = &weights.state;
        let mut data = TrainingData::open(
            &train.data,
            (ae_config.frames, pixels, pixels),
            train.augment()?,
            state.seed,
            &state.data(train.fit.batch),
            &run,
            events,
        )?;
        let captions =
            captions::for_clips(&train.data.data, &data.paths(), train.captions.as_deref())?;
        let schedule = NoiseSchedule::new(&model.scheduler);
        let prediction = model.scheduler.prediction_type;
        let plan = Plan {
            steps: train.fit.steps,
            checkpoint_every: train.fit.checkpoint_every,
            lr: &|_| train.fit.lr,
            ema: train.ema,
            model_file: "unet.bpk",
            model: "the content UNet".into(),
            batch: train.fit.batch,
            parallel,
        };
        let cache = EncodingCache::for_data(&data, events);
        let tokenizer = &model.tokenizer;
        fit(
            &run,
            &plan,
            weights,
            &mut data,
            events,
            &|unet, examples, rng, shard| {
                let draws = Draws::new(rng, train.fit.batch, train.empty_prompt, &schedule);
                // The null condition is the empty prompt.
                let prompts: Vec<String> = examples
                    .iter()
                    .zip(&draws.null)
                    .map(|(e, null)| {
                        if *null {
                            String::new()
                        } else {
                            captions[e.clip].clone()
                        }
                    })
                    .collect();
                let (range, device) = (shard.range.clone(), shard.device);
                let frozen = &frozen[shard.index];
                let (x0, _) =
                    frozen.encode_examples(&examples[range.clone()], cache.as_ref(), device)?;
                let (context, _) = frozen.encode_prompts(tokenizer, &prompts[range], device)?;
                Ok(denoising_loss(
                    &schedule,
                    prediction,
                    x0,
                    &draws,
                    shard,
                    |x_t, t| unet.forward(x_t, t, &context),
                ))
            },
        )
    }
}
