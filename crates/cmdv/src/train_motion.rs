//! `cmdv train-motion`: train the motion DiT (spec section 3) on the motion latents of a frozen
//! autoencoder, conditioned on its clean content frames (teacher forcing) and the pooled text of
//! the content run's text encoder; a fraction of the text vectors is zeroed for guidance.

use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use cmd_model::dit::{DitConfig, TextNorm, TextPooling};
use cmd_model::pipelines::cmd::motion_schedule;
use cmd_model::pipelines::standard_normal;
use cmd_model::schedulers::{NoiseSchedule, Prediction};
use cmd_model::tokenizer::ClipTokenizer;
use rand::Rng;

use crate::captions;
use crate::checkpoint::{Run, TrainState, load_autoencoder, load_record};
use crate::cli::TrainMotionArgs;
use crate::content;
use crate::data::TrainingData;
use crate::fit::{Plan, adam, fit};
use crate::frozen::{EncodingCache, Frozen};
use crate::motion::{self, MotionRunConfig};
use crate::parallel::DataParallel;
use crate::tensor_io::to_vec;

pub fn run(args: &TrainMotionArgs) -> Result<()> {
    args.train.check()?;
    let parallel = DataParallel::open(args.train.device, args.train.devices, args.train.batch)?;
    let device = parallel.main().clone();
    let ae = load_autoencoder(&args.ae, &device)?;
    let (content_config, text) = content::load_run(&args.content, &device)?;
    let ae_path = std::path::absolute(&args.ae)?;
    if content_config.ae != ae_path {
        eprintln!(
            "warning: the content run was trained on the content frames of {}, not of {}",
            content_config.ae.display(),
            ae_path.display()
        );
    }
    let cfg = ae.config().clone();
    device.seed(args.train.seed);
    let factor = text.vae.as_ref().map_or(1, |(c, _)| c.scale_factor());
    let tokenizer = text.tokenizer;
    let frozen = Frozen {
        ae,
        text_encoder: text.text_encoder,
        vae: text.vae,
    }
    .on_each(parallel.devices());
    let pixels = (cfg.height * factor) as u32;
    let run = Run::new(&args.train.out);
    let saved_state = if args.train.resume {
        Some(run.resume_parts(adam())?)
    } else {
        None
    };
    let start = saved_state.as_ref().map_or_else(
        || TrainState::new(args.train.seed),
        |(_, _, state)| state.clone(),
    );
    let mut data = TrainingData::open(
        &args.train.data,
        (cfg.frames, pixels, pixels),
        args.train.augment()?,
        start.seed,
        &start.data(args.train.batch),
        &run,
    )?;
    let captions = captions::for_clips(
        &args.train.data.data,
        &data.paths(),
        args.train.captions.as_deref(),
    )?;
    let dit_config = DitConfig {
        prediction: args.prediction.map_or(Prediction::Epsilon, Into::into),
        text_pooling: args.text_pooling.map_or(TextPooling::AllTokens, Into::into),
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
        content: std::path::absolute(&args.content)?,
        dit: dit_config,
        ema: args.train.ema,
        empty_prompt: args.train.empty_prompt,
    };
    let (dit, ema, optim, state) = if let Some((dir, optim, state)) = saved_state {
        let saved = motion::read_run_config(&run)?;
        run.ensure_prediction_kept(
            args.prediction.is_some(),
            saved.dit.prediction,
            config.dit.prediction,
        )?;
        run.ensure_kept(
            "--text-pooling",
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
            bail!(
                "{}: the run was started with other --ae, --content, --preset or \
                 --content-patch values",
                run.config_path().display()
            );
        }
        let dit = load_record(saved.dit.init(&device)?, &dir.join("dit.bpk"), "DiT")?;
        let ema = load_record(saved.dit.init(&device)?, &dir.join("ema.bpk"), "DiT")?;
        (dit, ema.valid(), optim, state)
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
        (dit, ema, adam(), start)
    };
    if state.step >= args.train.steps {
        eprintln!(
            "{}: already trained for {} steps",
            args.train.out.display(),
            state.step
        );
        return Ok(());
    }
    eprintln!(
        "training the motion DiT '{}' ({} parameters) on {}",
        args.preset,
        dit.num_params(),
        data.describe()
    );
    let prediction = dit.config().prediction;
    let schedule = NoiseSchedule::new(&motion_schedule(prediction));
    let cache = data.fixed_examples().then(|| {
        eprintln!("every example is a whole clip: each is encoded once and kept");
        EncodingCache::default()
    });
    let plan = Plan {
        steps: args.train.steps,
        checkpoint_every: args.train.checkpoint_every,
        lr: &|_| args.train.lr,
        ema: args.train.ema,
        model_file: "dit.bpk",
        label: "motion",
        batch: args.train.batch,
        parallel: &parallel,
    };
    fit(
        &run,
        &plan,
        dit,
        Some(ema),
        optim,
        state,
        &mut data,
        |dit, examples, rng, shard| {
            let prompts: Vec<String> = examples.iter().map(|e| captions[e.clip].clone()).collect();
            let keep: Vec<f32> = (0..args.train.batch)
                .map(|_| {
                    if rng.random_bool(args.train.empty_prompt) {
                        0.0
                    } else {
                        1.0
                    }
                })
                .collect();
            let t: Vec<usize> = (0..args.train.batch)
                .map(|_| rng.random_range(0..schedule.len()))
                .collect();
            let noise_seed = rng.random();
            let (range, device) = (shard.range.clone(), shard.device);
            let frozen = &frozen[shard.index];
            let (content, z0) =
                frozen.encode_examples(&examples[range.clone()], cache.as_ref(), device)?;
            let (text, lengths) =
                frozen.encode_prompts(&tokenizer, &prompts[range.clone()], device)?;
            let keep = TensorData::new(keep[range.clone()].to_vec(), [range.len(), 1]);
            // The null condition is the zero vector.
            let pooled = dit.config().text_condition(text, &lengths);
            let pooled = pooled * Tensor::<2>::from_data(keep, device);
            let mut shape = z0.dims();
            shape[0] = args.train.batch;
            let noise =
                standard_normal(shape, noise_seed, device).narrow(0, range.start, range.len());
            let t = &t[range];
            let z_t = schedule.add_noise(z0.clone(), noise.clone(), t);
            let target = schedule.training_target(prediction, z0, noise, t);
            let t: Vec<f64> = t.iter().map(|t| *t as f64).collect();
            Ok((dit.forward(z_t, &t, content, pooled) - target)
                .powi_scalar(2)
                .mean())
        },
    )
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
