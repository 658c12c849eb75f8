//! The optimisation loop the diffusion models share (`train-content`, `train-motion`): a seeded
//! generator per step (so a resumed run draws what an uninterrupted one would), data parallel
//! over several devices, Adam, an EMA copy, a metrics log, atomic checkpoints of the model and
//! its EMA, and a clear stop on a non-finite loss.

use std::io::Write;
use std::time::Instant;

use anyhow::{Result, bail, ensure};
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
use crate::train::open_metrics;

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
    /// Learning rate.
    pub lr: f64,
    /// EMA decay.
    pub ema: f64,
    /// The checkpoint file of the model (`unet.bpk`, `dit.bpk`); the EMA goes to `ema.bpk`.
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

/// Optimises `model` from `state` to `plan.steps` on examples from `data`. `loss_of(model,
/// examples, rng, shard)` is the mean loss over the shard's part of the step's examples; it is
/// called once per device (each in its own thread) with the same generator state, so every
/// shard draws the same noise and keeps its own part.
#[allow(clippy::too_many_arguments)]
pub fn fit<M: Module + Clone>(
    run: &Run,
    plan: &Plan,
    mut model: M,
    mut ema: M,
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
    while state.step < plan.steps {
        let step = state.step;
        let seed = state.seed;
        let examples = data.next_batch(plan.batch, &bar)?;
        let (value, grads) = plan.parallel.step(&model, plan.batch, |replica, shard| {
            loss_of(replica, &examples, &mut step_rng(seed, step), shard)
        })?;
        if !value.is_finite() {
            bar.abandon();
            bail!(
                "loss became {value} at step {}: training stopped; the last checkpoint is kept \
                 ({}); try a lower --lr",
                step + 1,
                run.latest()
                    .map_or("none yet".into(), |p| p.display().to_string())
            );
        }
        model = optim.step(plan.lr, model, grads);
        ema = ema_update(ema, &model.valid(), ema_decay(plan.ema, step));
        state.step += 1;
        state.loss = value;
        state.data = Some(data.state());
        writeln!(
            metrics,
            "{},{value:.6},{:.3e},{:.1}",
            state.step,
            plan.lr,
            started.elapsed().as_secs_f64()
        )?;
        bar.set_position(state.step as u64);
        bar.set_message(format!("loss {value:.4}"));
        if state.step.is_multiple_of(plan.checkpoint_every) || state.step == plan.steps {
            metrics.flush()?;
            run.save_parts(
                vec![
                    (plan.model_file, model.clone().into_record()),
                    ("ema.bpk", ema.clone().into_record()),
                ],
                &optim,
                &state,
            )?;
        }
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
