//! The optimisation loop the diffusion models share (`train-content`, `train-motion`): a seeded
//! generator per step (so a resumed run draws what an uninterrupted one would), data parallel
//! over several devices, Adam, an EMA copy, a metrics log, atomic checkpoints of the model and
//! its EMA, and a clear stop on a non-finite loss.
//!
//! Data parallel ([`parallel_step`], also used by `train-ae`): every step, each device gets a
//! copy of the model and its share of the batch; the gradients of the shares are summed on the
//! first device, which takes the optimiser step.

use std::io::Write;
use std::ops::Range;
use std::time::Instant;

use anyhow::{Result, bail, ensure};
use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::checkpoint::{Run, TrainState};
use crate::cli::DiffusionTrainArgs;
use crate::content::{ema_decay, ema_update};
use crate::data::{Augment, MIN_CROP};
use crate::progress;
use crate::tensor_io::to_scalar;
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
            (MIN_CROP..=1.0).contains(&self.crop_min),
            "--crop-min must be in [{MIN_CROP}, 1], found {}",
            self.crop_min
        );
        ensure!(
            (0.0..=1.0).contains(&self.empty_prompt),
            "--empty-prompt must be in [0, 1], found {}",
            self.empty_prompt
        );
        Ok(())
    }

    /// The augmentation these arguments ask for.
    pub fn augment(&self) -> Augment {
        Augment {
            crop_min: self.crop_min,
            flip: self.flip,
        }
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
    /// The training devices (at least one): the first holds the model and the optimiser.
    pub devices: &'a [Device],
}

/// One device's part of a step.
pub struct Shard<'a> {
    /// Which device (an index into [`Plan::devices`]).
    pub index: usize,
    /// The device.
    pub device: &'a Device,
    /// Its clips: a range of the step's batch.
    pub range: Range<usize>,
}

/// Splits `batch` clips over `devices` as evenly as possible (the first get one more).
pub fn split(batch: usize, devices: usize) -> Vec<Range<usize>> {
    let (size, extra) = (batch / devices, batch % devices);
    let mut start = 0;
    (0..devices)
        .map(|i| {
            let len = size + usize::from(i < extra);
            start += len;
            start - len..start
        })
        .collect()
}

/// The generator of step `step` of a run seeded with `seed`.
pub fn step_rng(seed: u64, step: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// One step's loss and gradients, data parallel: each device gets a copy of `model` and its
/// share of the `batch` clips; `loss_of(replica, shard)` is the mean loss over the shard's clips.
/// Each loss is weighted by its share of the batch, so the gradients, summed on the first
/// device, are those of the whole batch's mean loss (returned as a number).
pub fn parallel_step<M: Module + Clone>(
    model: &M,
    devices: &[Device],
    batch: usize,
    mut loss_of: impl FnMut(&M, &Shard) -> Result<Tensor<1>>,
) -> Result<(f64, GradientsParams)> {
    let main = &devices[0];
    let shards = split(batch, devices.len());
    let mut losses = Vec::with_capacity(shards.len());
    let mut sum = GradientsAccumulator::new();
    for (index, (device, range)) in devices.iter().zip(&shards).enumerate() {
        let replica = if index == 0 {
            model.clone()
        } else {
            model.clone().fork(device)
        };
        let shard = Shard {
            index,
            device,
            range: range.clone(),
        };
        let loss = loss_of(&replica, &shard)?;
        let loss = if shards.len() == 1 {
            loss
        } else {
            loss.mul_scalar(range.len() as f64 / batch as f64)
        };
        let grads = GradientsParams::from_grads(loss.backward(), &replica);
        sum.accumulate(model, grads.to_device(main, &replica));
        losses.push(loss.detach().to_device(main));
    }
    Ok((to_scalar(Tensor::cat(losses, 0).sum())?, sum.grads()))
}

/// Optimises `model` from `state` to `plan.steps`. `loss_of(model, rng, shard)` is the mean
/// loss over the shard's clips of the step's batch; it is called once per device with the same
/// generator state, so every shard draws the same batch and keeps its own part.
#[allow(clippy::too_many_arguments)]
pub fn fit<M: Module + Clone>(
    run: &Run,
    plan: &Plan,
    mut model: M,
    mut ema: M,
    mut optim: ModuleOptimizer,
    mut state: TrainState,
    mut loss_of: impl FnMut(&M, &mut StdRng, &Shard) -> Result<Tensor<1>>,
) -> Result<()> {
    let mut metrics = open_metrics(run, state.step)?;
    let bar = progress::bar(plan.steps as u64, plan.label);
    bar.set_position(state.step as u64);
    bar.reset_eta();
    let started = Instant::now();
    while state.step < plan.steps {
        let step = state.step;
        let (value, grads) = parallel_step(&model, plan.devices, plan.batch, |replica, shard| {
            loss_of(replica, &mut step_rng(state.seed, step), shard)
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
    eprintln!(
        "done: {} steps, last loss {:.4}, {:.1} min; checkpoint in {}",
        state.step,
        state.loss,
        started.elapsed().as_secs_f64() / 60.0,
        run.dir().display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn batches_split_evenly_over_devices() {
        assert_eq!(split(4, 1).len(), 1);
        assert_eq!(split(4, 1)[0], 0..4);
        assert_eq!(split(4, 2), [0..2, 2..4]);
        assert_eq!(split(5, 3), [0..2, 2..4, 4..5]);
        assert_eq!(split(3, 3), [0..1, 1..2, 2..3]);
    }
}
