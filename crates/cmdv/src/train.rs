//! `cmdv train-ae`: train the autoencoder on a folder of clips (L1 on pixels, or MSE on the
//! frame latents of a Stable Diffusion VAE in latent mode).

use std::io::Write;
use std::time::Instant;

use anyhow::{Result, bail, ensure};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use cmd_model::{Autoencoder, AutoencoderConfig, OutputMode};
use cmd_video::Clip;

use crate::checkpoint::{Run, TrainState};
use crate::cli::TrainAeArgs;
use crate::data::TrainingData;
use crate::parallel::DataParallel;
use crate::tensor_io::{clips_to_tensor, to_scalar};
use crate::{latents, progress};

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

    let (mut model, mut optim, mut state) = if args.resume {
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
    let mut metrics = open_metrics(&run, state.step)?;
    let bar = progress::bar(args.steps as u64, "train-ae");
    bar.set_position(state.step as u64);
    bar.reset_eta();
    let started = Instant::now();

    // A checkpoint is written only once its weights have given a finite loss (on the next
    // step's batch, or on one more batch at the end), so a blow-up never overwrites good weights.
    let mut pending: Option<(Autoencoder, ModuleOptimizer, TrainState)> = None;
    while state.step < args.steps {
        let step = state.step;
        let clips = frames_of(data.next_batch(args.batch, &bar)?);
        let (value, grads) = parallel.step(&model, args.batch, |replica, shard| {
            let x = frames(&clips[shard.range.clone()], shard.index);
            let (_, recon) = replica.forward(x.clone());
            Ok(replica.loss(recon, x))
        })?;
        if !value.is_finite() {
            bar.abandon();
            return Err(blow_up(&run, value, step + 1));
        }
        if let Some((m, o, s)) = pending.take() {
            run.save(&m, &o, &s)?;
        }
        let lr = learning_rate(args.lr, args.warmup, args.steps, step);
        model = optim.step(lr, model, grads);
        state.step += 1;
        state.loss = value;
        state.data = Some(data.state());

        writeln!(
            metrics,
            "{},{value:.6},{lr:.3e},{:.1}",
            state.step,
            started.elapsed().as_secs_f64()
        )?;
        bar.set_position(state.step as u64);
        bar.set_message(format!("loss {value:.4}"));
        if state.step % args.checkpoint_every == 0 || state.step == args.steps {
            metrics.flush()?;
            pending = Some((model.clone(), optim.clone(), state.clone()));
        }
    }
    if let Some((m, o, s)) = pending {
        let x = frames(&frames_of(data.next_batch(args.batch, &bar)?), 0);
        let (_, recon) = m.forward(x.clone());
        let value = to_scalar(m.loss(recon, x))?;
        if !value.is_finite() {
            bar.abandon();
            return Err(blow_up(&run, value, s.step + 1));
        }
        run.save(&m, &o, &s)?;
    }
    bar.finish();
    let done = format!(
        "done: {} steps, last loss {:.4}, {:.1} min, {}; checkpoint in {}",
        state.step,
        state.loss,
        started.elapsed().as_secs_f64() / 60.0,
        data.summary(),
        args.out.display()
    );
    data.log(&done);
    data.flush_log();
    eprintln!("{done}");
    Ok(())
}

/// The frames of a batch of examples.
pub(crate) fn frames_of(examples: Vec<cmd_video::dataset::Example>) -> Vec<Clip> {
    examples.into_iter().map(|e| e.frames).collect()
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

/// The error for a non-finite loss, naming the checkpoint that was kept.
fn blow_up(run: &Run, value: f64, step: usize) -> anyhow::Error {
    let kept = run
        .latest()
        .map_or("none was written yet".to_string(), |p| {
            p.display().to_string()
        });
    anyhow::anyhow!(
        "loss became {value} at step {step}: training stopped. The last good checkpoint is \
         kept ({kept}); try a lower --lr"
    )
}

/// Opens `metrics.csv` for appending. Rows past `step` (logged after the checkpoint a resumed
/// run starts from) are dropped first, so every step appears once.
pub(crate) fn open_metrics(run: &Run, step: usize) -> Result<std::io::BufWriter<std::fs::File>> {
    let path = run.metrics_path();
    const HEADER: &str = "step,loss,lr,seconds";
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let kept: Vec<&str> = old
        .lines()
        .skip(1)
        .filter(|row| {
            row.split(',')
                .next()
                .and_then(|s| s.parse::<usize>().ok())
                .is_some_and(|s| s <= step)
        })
        .collect();
    let text = std::iter::once(HEADER)
        .chain(kept)
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    cmd_video::write_bytes_atomic(&path, text.as_bytes())?;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("{}: cannot open metrics log: {e}", path.display()))?;
    Ok(std::io::BufWriter::new(file))
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
