//! `cmdv train-ae`: train the autoencoder on a folder of clips (L1 on pixels, or MSE on the
//! frame latents of a Stable Diffusion VAE in latent mode).

use anyhow::{Result, bail, ensure};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use cmd_model::{AutoencoderConfig, OutputMode};
use cmd_video::Clip;

use crate::checkpoint::{Run, TrainState};
use crate::cli::TrainAeArgs;
use crate::data::TrainingData;
use crate::fit::{Plan, fit};
use crate::latents;
use crate::parallel::DataParallel;
use crate::tensor_io::clips_to_tensor;

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

pub fn run(args: &TrainAeArgs) -> Result<()> {
    ensure!(args.steps > 0, "--steps must be positive");
    ensure!(args.batch > 0, "--batch must be positive");
    ensure!(
        args.checkpoint_every > 0,
        "--checkpoint-every must be positive"
    );
    ensure!(
        args.lr.is_finite() && args.lr > 0.0,
        "--lr must be a positive number, found {}",
        args.lr
    );
    ensure!(
        (0.0..1.0).contains(&args.beta1),
        "--beta1 must be at least 0 and less than 1, found {}",
        args.beta1
    );
    args.data.check()?;
    let config = AutoencoderConfig::preset(&args.preset)?;
    let latent = config.output == OutputMode::Latent;
    match (&args.vae, latent) {
        (None, true) => bail!(
            "--preset {}: latent-mode autoencoders train on Stable Diffusion VAE latents; give \
             the Stable Diffusion folder with --vae",
            args.preset
        ),
        (Some(vae), false) => bail!(
            "--vae {}: the '{}' preset works on pixels; --vae is for latent presets",
            vae.display(),
            args.preset
        ),
        _ => {}
    }
    let run = Run::new(&args.out);
    let parallel = DataParallel::open(args.device, args.devices, args.batch)?;
    let devices = parallel.devices();
    let device = parallel.main().clone();
    let vae = match &args.vae {
        Some(folder) => Some(latents::open(folder, &run, args.resume, &device)?),
        None => None,
    };
    let vaes: Vec<_> = devices
        .iter()
        .map(|d| vae.as_ref().map(|v| v.to_device(d)))
        .collect();
    let frames = |clips: &[Clip], index: usize| {
        let x = clips_to_tensor(clips, &devices[index]);
        match &vaes[index] {
            Some(vae) => vae.encode(x),
            None => x,
        }
    };
    // Clips are cut at the size whose latents (or pixels) the autoencoder takes.
    let factor = vae.as_ref().map_or(1, |v| v.config.scale_factor()) as u32;
    let (width, height) = (config.width as u32 * factor, config.height as u32 * factor);

    let (model, optim, state) = if args.resume {
        let saved = run.read_config()?;
        if saved != config {
            bail!(
                "{}: the run was started with preset '{}', but --preset {} was given",
                run.config_path().display(),
                saved.name,
                args.preset
            );
        }
        run.resume(&config, optimizer(args.beta1), &device)?
    } else {
        device.seed(args.seed);
        let model = config.init(&device)?;
        run.start(&config)?;
        let state = TrainState::new(args.seed);
        (model, optimizer(args.beta1), state)
    };
    if state.step >= args.steps {
        eprintln!(
            "{}: already trained for {} steps",
            args.out.display(),
            state.step
        );
        return Ok(());
    }

    // Every example is mirrored at random: an autoencoder has no words to contradict.
    let augment = crate::data::augment(cmd_video::dataset::MIN_CROP, true)?;
    let mut data = TrainingData::open(
        &args.data,
        (config.frames, width, height),
        augment,
        state.seed,
        &state.data(args.batch),
        &run,
    )?;
    eprintln!(
        "training '{}' ({} parameters) on {}",
        config.name,
        burn::module::Module::num_params(&model),
        data.describe()
    );
    let plan = Plan {
        steps: args.steps,
        checkpoint_every: args.checkpoint_every,
        lr: &|step| learning_rate(args.lr, args.warmup, args.steps, step),
        ema: 0.0,
        model_file: "model.bpk",
        label: "train-ae",
        batch: args.batch,
        parallel: &parallel,
    };
    fit(
        &run,
        &plan,
        model,
        None,
        optim,
        state,
        &mut data,
        |replica, examples, _rng, shard| {
            let clips: Vec<Clip> = examples[shard.range.clone()]
                .iter()
                .map(|e| e.frames.clone())
                .collect();
            let x = frames(&clips, shard.index);
            let (_, recon) = replica.forward(x.clone());
            Ok(replica.loss(recon, x))
        },
    )
}

/// Linear warm-up over `--warmup` steps, then a cosine decay to a tenth of `--lr` at `--steps`.
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
