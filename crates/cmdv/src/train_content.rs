//! `cmdv train-content`: fine-tune (or train from scratch) the content-frame diffusion model on
//! the content frames of a frozen autoencoder (spec section 2): epsilon- (or v-) MSE, empty
//! prompts for classifier-free guidance, an EMA copy for sampling, atomic checkpoints, resume.

use std::path::Path;

use anyhow::{Result, bail, ensure};
use burn::module::Module;
use cmd_model::OutputMode;
use cmd_model::pipelines::standard_normal;
use cmd_model::schedulers::NoiseSchedule;
use rand::Rng;

use crate::captions;
use crate::checkpoint::{Run, TrainState, load_autoencoder, load_record};
use crate::cli::TrainContentArgs;
use crate::content::{self, ContentRunConfig, PRESET_BASES, text_encoder_path};
use crate::data::TrainingData;
use crate::fit::{Plan, adam, fit};
use crate::frozen::{EncodingCache, Frozen};
use crate::parallel::DataParallel;

/// A folder path as the run records it (absolute, so the run can be sampled from anywhere).
fn absolute(path: &Path) -> Result<std::path::PathBuf> {
    std::path::absolute(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

pub fn run(args: &TrainContentArgs) -> Result<()> {
    args.train.check()?;
    let parallel = DataParallel::open(args.train.device, args.train.devices, args.train.batch)?;
    let device = parallel.main().clone();
    let ae = load_autoencoder(&args.ae, &device)?;
    let ae_config = ae.config().clone();
    let latent = ae_config.output == OutputMode::Latent;
    ensure!(
        ae_config.height == ae_config.width,
        "{}: content models here take square content frames; the autoencoder's are {}x{}",
        args.ae.display(),
        ae_config.height,
        ae_config.width
    );
    let base = if PRESET_BASES.contains(&args.base.as_str()) {
        args.base.clone()
    } else {
        absolute(Path::new(&args.base))?.display().to_string()
    };
    let run = Run::new(&args.train.out);

    // Fresh: the base model; resumed: its config, the run's text encoder and the checkpoint.
    device.seed(args.train.seed);
    let mut model =
        content::from_base(&base, ae_config.channels, ae_config.height, latent, &device)?;
    if let Some(recorded) = crate::latents::recorded(&args.ae)?
        && Path::new(&base) != recorded
    {
        eprintln!(
            "warning: the autoencoder was trained on latents of {}'s VAE; {}'s VAE encodes the \
             frames here",
            recorded.display(),
            base
        );
    }
    if let Some(prediction) = args.prediction {
        model.scheduler.prediction_type = prediction.into();
    }
    let config = ContentRunConfig {
        ae: absolute(&args.ae)?,
        base,
        latent,
        size: ae_config.height,
        unet: model.unet_config.clone(),
        text_encoder: model.text_config.clone(),
        scheduler: model.scheduler.clone(),
        ema: args.train.ema,
        empty_prompt: args.train.empty_prompt,
    };
    let preset = PRESET_BASES.contains(&config.base.as_str());
    let (unet, ema, optim, state) = if args.train.resume {
        let saved = content::read_run_config(&run)?;
        if (&saved.ae, &saved.base) != (&config.ae, &config.base) {
            bail!(
                "{}: the run was started with --ae {} --base {}, not --ae {} --base {}",
                run.config_path().display(),
                saved.ae.display(),
                saved.base,
                config.ae.display(),
                config.base
            );
        }
        run.ensure_prediction_kept(
            args.prediction.is_some(),
            saved.scheduler.prediction_type,
            config.scheduler.prediction_type,
        )?;
        model.scheduler = saved.scheduler;
        let (dir, optim, state) = run.resume_parts(adam())?;
        if preset {
            let path = text_encoder_path(&args.train.out);
            model.text_encoder =
                load_record(saved.text_encoder.init(&device), &path, "text encoder")?;
        }
        let unet = load_record(saved.unet.init(&device)?, &dir.join("unet.bpk"), "UNet")?;
        let ema = load_record(saved.unet.init(&device)?, &dir.join("ema.bpk"), "UNet")?;
        (unet, ema.valid(), optim, state)
    } else {
        run.start(&config)?;
        if preset {
            let json = model.tokenizer.to_json()?;
            cmd_video::write_bytes_atomic(
                &content::tokenizer_path(&args.train.out),
                json.as_bytes(),
            )?;
            let record = model.text_encoder.clone().into_record();
            cmd_video::replace_atomic(&text_encoder_path(&args.train.out), |tmp| {
                record.save(tmp).map_err(std::io::Error::other)
            })?;
        }
        let unet = model.unet.clone();
        let ema = unet.valid();
        (unet, ema, adam(), TrainState::new(args.train.seed))
    };
    let frozen = Frozen {
        ae,
        text_encoder: model.text_encoder.clone(),
        vae: model.vae.clone(),
    }
    .on_each(parallel.devices());
    if state.step >= args.train.steps {
        eprintln!(
            "{}: already trained for {} steps",
            args.train.out.display(),
            state.step
        );
        return Ok(());
    }

    let pixels =
        (ae_config.height * model.vae.as_ref().map_or(1, |(c, _)| c.scale_factor())) as u32;
    let mut data = TrainingData::open(
        &args.train.data,
        (ae_config.frames, pixels, pixels),
        args.train.augment()?,
        state.seed,
        &state.data(args.train.batch),
        &run,
    )?;
    let captions = captions::for_clips(
        &args.train.data.data,
        &data.paths(),
        args.train.captions.as_deref(),
    )?;
    eprintln!(
        "training the content UNet ({} parameters) on {}",
        unet.num_params(),
        data.describe()
    );
    let schedule = NoiseSchedule::new(&model.scheduler);
    let plan = Plan {
        steps: args.train.steps,
        checkpoint_every: args.train.checkpoint_every,
        lr: &|_| args.train.lr,
        ema: args.train.ema,
        model_file: "unet.bpk",
        label: "content",
        batch: args.train.batch,
        parallel: &parallel,
    };
    let cache = data.fixed_examples().then(|| {
        eprintln!("every example is a whole clip: each is encoded once and kept");
        EncodingCache::default()
    });
    let train = &args.train;
    fit(
        &run,
        &plan,
        unet,
        Some(ema),
        optim,
        state,
        &mut data,
        |unet, examples, rng, shard| {
            // The null condition (the empty prompt) for a fraction of the examples.
            let prompts: Vec<String> = examples
                .iter()
                .map(|e| {
                    if rng.random_bool(train.empty_prompt) {
                        String::new()
                    } else {
                        captions[e.clip].clone()
                    }
                })
                .collect();
            let t: Vec<usize> = (0..args.train.batch)
                .map(|_| rng.random_range(0..schedule.len()))
                .collect();
            let noise_seed = rng.random();
            let (range, device) = (shard.range.clone(), shard.device);
            let frozen = &frozen[shard.index];
            let (x0, _) =
                frozen.encode_examples(&examples[range.clone()], cache.as_ref(), device)?;
            let (context, _) =
                frozen.encode_prompts(&model.tokenizer, &prompts[range.clone()], device)?;
            let t = &t[range.clone()];
            let mut shape = x0.dims();
            shape[0] = args.train.batch;
            let noise =
                standard_normal(shape, noise_seed, device).narrow(0, range.start, range.len());
            let x_t = schedule.add_noise(x0.clone(), noise.clone(), t);
            let target = schedule.training_target(model.scheduler.prediction_type, x0, noise, t);
            let t: Vec<f64> = t.iter().map(|t| *t as f64).collect();
            Ok((unet.forward(x_t, &t, &context) - target)
                .powi_scalar(2)
                .mean())
        },
    )
}
