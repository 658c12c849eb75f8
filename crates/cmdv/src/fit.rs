//! The one optimisation loop of the three trainers (`train-ae`, `train-content`,
//! `train-motion`): a seeded generator per step (so a resumed run draws what an uninterrupted
//! one would), data parallel over several devices, a learning rate per step, an optional EMA
//! copy, a metrics log, atomic checkpoints written only once their weights have given a finite
//! loss, and a clear stop on a non-finite loss naming the checkpoint kept.

use std::io::Write;
use std::time::Instant;

use anyhow::{Result, ensure};
use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::tensor::Tensor;
use rand::SeedableRng;
use rand::rngs::StdRng;

use cmd_video::dataset::{Augment, Example};

use crate::checkpoint::{Run, TrainState};
use crate::cli::DiffusionTrainArgs;
use crate::content::{ema_decay, ema_update};
use crate::data::TrainingData;
use crate::parallel::{DataParallel, Shard};
use crate::progress;

/// Adam (no weight decay) with gradients clipped to norm 1.
pub fn adam() -> ModuleOptimizer {
    AdamConfig::new()
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init()
}

impl DiffusionTrainArgs {
    /// Checks the numbers, naming the argument.
    pub fn check(&self) -> Result<()> {
        ensure!(self.steps > 0, "--steps must be positive");
        ensure!(self.batch > 0, "--batch must be positive");
        ensure!(
            self.checkpoint_every > 0,
            "--checkpoint-every must be positive"
        );
        ensure!(
            self.lr.is_finite() && self.lr > 0.0,
            "--lr must be a positive number, found {}",
            self.lr
        );
        ensure!(
            (0.0..1.0).contains(&self.ema),
            "--ema must be in [0, 1), found {}",
            self.ema
        );
        ensure!(
            (0.0..=1.0).contains(&self.empty_prompt),
            "--empty-prompt must be in [0, 1], found {}",
            self.empty_prompt
        );
        self.augment()?;
        self.data.check()
    }

    /// The augmentation these arguments ask for.
    pub fn augment(&self) -> Result<Augment> {
        crate::data::augment(self.crop_min, self.flip)
    }
}

/// How long and how to optimise.
pub struct Plan<'a> {
    /// Total steps (a resumed run counts the steps done).
    pub steps: usize,
    /// Checkpoint period.
    pub checkpoint_every: usize,
    /// The learning rate of each step (0-based).
    pub lr: &'a (dyn Fn(usize) -> f64 + Sync),
    /// EMA decay (when an EMA copy is kept).
    pub ema: f64,
    /// The checkpoint file of the model (`model.bpk`, `unet.bpk`, `dit.bpk`); the EMA goes to
    /// `ema.bpk`.
    pub model_file: &'a str,
    /// Progress-bar label.
    pub label: &'a str,
    /// Clips per step.
    pub batch: usize,
    /// The training devices.
    pub parallel: &'a DataParallel,
}

/// The generator of step `step` of a run seeded with `seed`.
pub fn step_rng(seed: u64, step: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Optimises `model` (and its EMA copy `ema`, when given) from `state` to `plan.steps` on
/// examples from `data`: the one training loop of all three trainers. `loss_of(model,
/// examples, rng, shard)` is the mean loss over the shard's part of the step's examples; it is
/// called once per device (each in its own thread) with the same generator state, so every
/// shard draws the same noise and keeps its own part.
#[allow(clippy::too_many_arguments)]
pub fn fit<M: Module + Clone>(
    run: &Run,
    plan: &Plan,
    mut model: M,
    mut ema: Option<M>,
    mut optim: ModuleOptimizer,
    mut state: TrainState,
    data: &mut TrainingData,
    loss_of: impl Fn(&M, &[Example], &mut StdRng, &Shard) -> Result<Tensor<1>> + Sync,
) -> Result<()> {
    let mut metrics = open_metrics(run, state.step)?;
    let bar = progress::bar(plan.steps as u64, plan.label);
    bar.set_position(state.step as u64);
    bar.reset_eta();
    let started = Instant::now();
    // As in train-ae: a checkpoint is written only once its weights have given a finite loss
    // (on the next step's batch, or on one more batch at the end), so a blow-up never
    // overwrites good weights.
    let mut pending: Option<(M, Option<M>, ModuleOptimizer, TrainState)> = None;
    let save = |(model, ema, optim, state): (M, Option<M>, ModuleOptimizer, TrainState)| {
        let mut parts = vec![(plan.model_file, model.into_record())];
        parts.extend(ema.map(|ema| ("ema.bpk", ema.into_record())));
        run.save_parts(parts, &optim, &state)
    };
    while state.step < plan.steps {
        let step = state.step;
        let seed = state.seed;
        let examples = data.next_batch(plan.batch, &bar)?;
        let (value, grads) = plan.parallel.step(&model, plan.batch, |replica, shard| {
            loss_of(replica, &examples, &mut step_rng(seed, step), shard)
        })?;
        if !value.is_finite() {
            bar.abandon();
            return Err(blow_up(run, value, step + 1));
        }
        if let Some(checkpoint) = pending.take() {
            save(checkpoint)?;
        }
        let lr = (plan.lr)(step);
        model = optim.step(lr, model, grads);
        ema = ema.map(|ema| ema_update(ema, &model.valid(), ema_decay(plan.ema, step)));
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
        if state.step.is_multiple_of(plan.checkpoint_every) || state.step == plan.steps {
            metrics.flush()?;
            pending = Some((model.clone(), ema.clone(), optim.clone(), state.clone()));
        }
    }
    if let Some(checkpoint) = pending {
        let (step, seed) = (checkpoint.3.step, checkpoint.3.seed);
        let examples = data.next_batch(plan.batch, &bar)?;
        let (value, _) = plan
            .parallel
            .step(&checkpoint.0, plan.batch, |replica, shard| {
                loss_of(replica, &examples, &mut step_rng(seed, step), shard)
            })?;
        if !value.is_finite() {
            bar.abandon();
            return Err(blow_up(run, value, step + 1));
        }
        save(checkpoint)?;
    }
    bar.finish();
    let done = format!(
        "done: {} steps, last loss {:.4}, {:.1} min, {}; checkpoint in {}",
        state.step,
        state.loss,
        started.elapsed().as_secs_f64() / 60.0,
        data.summary(),
        run.dir().display()
    );
    data.log(&done);
    data.flush_log();
    eprintln!("{done}");
    Ok(())
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
fn open_metrics(run: &Run, step: usize) -> Result<std::io::BufWriter<std::fs::File>> {
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
