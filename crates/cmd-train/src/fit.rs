//! The one optimisation loop of the three trainers (autoencoder, content model, motion
//! model): a seeded generator per step (so a resumed run draws what an uninterrupted one
//! would), data parallel over several devices, a learning rate per step, an optional EMA copy,
//! a metrics log, atomic checkpoints written only once their weights have given a finite loss,
//! and a clear stop on a non-finite loss naming the checkpoint kept.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::tensor::Tensor;
use rand::SeedableRng;
use rand::rngs::StdRng;

use cmd_video::dataset::Example;

use crate::data::TrainingData;
use crate::ema::{ema_decay, ema_update};
use crate::error::{Result, Setting, TrainError, ensure};
use crate::event::{Summary, TrainEvent};
use crate::parallel::{DataParallel, Shard};
use crate::run::{Run, TrainState};

/// Adam (no weight decay) with gradients clipped to norm 1.
pub fn adam() -> ModuleOptimizer {
    AdamConfig::new()
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init()
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
    /// The model, in words, for [`TrainEvent::Started`].
    pub model: String,
    /// Clips per step.
    pub batch: usize,
    /// The training devices.
    pub parallel: &'a DataParallel,
}

/// The model, its EMA copy (when kept), the optimizer and the state: where a run is.
#[derive(Clone)]
pub struct Weights<M> {
    /// The model trained.
    pub model: M,
    /// Its EMA copy, which sampling uses.
    pub ema: Option<M>,
    /// The optimizer.
    pub optim: ModuleOptimizer,
    /// Steps done, seed, last loss, data position.
    pub state: TrainState,
}

/// The generator of step `step` of a run seeded with `seed`.
pub fn step_rng(seed: u64, step: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The loss of a step: `loss_of` on every device's shard of the examples.
type LossOf<'a, M> = dyn Fn(&M, &[Example], &mut StdRng, &Shard) -> Result<Tensor<1>> + Sync + 'a;

/// Optimises `weights` from their state to `plan.steps` on examples from `data`: the one
/// training loop of all three trainers. `loss_of(model, examples, rng, shard)` is the mean
/// loss over the shard's part of the step's examples; it is called once per device (each in
/// its own thread) with the same generator state, so every shard draws the same noise and
/// keeps its own part. Progress goes to `events`.
pub fn fit<M: Module + Clone>(
    run: &Run,
    plan: &Plan,
    weights: Weights<M>,
    data: &mut TrainingData,
    events: &mut dyn FnMut(TrainEvent),
    loss_of: &LossOf<M>,
) -> Result<Summary> {
    let Weights {
        mut model,
        mut ema,
        mut optim,
        mut state,
    } = weights;
    let first = state.step;
    let started = Instant::now();
    let summary = |state: &TrainState, data: &TrainingData| Summary {
        steps: state.step,
        trained: state.step - first,
        loss: state.loss,
        seconds: started.elapsed().as_secs_f64(),
        skipped: data.summary(),
        dir: run.dir().to_path_buf(),
    };
    if state.step >= plan.steps {
        return Ok(summary(&state, data));
    }
    let mut metrics = open_metrics(run, state.step)?;
    events(TrainEvent::Started {
        model: plan.model.clone(),
        parameters: model.num_params(),
        data: data.describe().to_string(),
        step: state.step,
        steps: plan.steps,
    });
    // A checkpoint is written only once its weights have given a finite loss (on the next
    // step's batch, or on one more batch at the end), so a blow-up never overwrites good
    // weights.
    let mut pending: Option<Weights<M>> = None;
    while state.step < plan.steps {
        let step = state.step;
        let examples = data.next_batch(plan.batch, events)?;
        let (value, grads) = plan.parallel.step(&model, plan.batch, |replica, shard| {
            loss_of(replica, &examples, &mut step_rng(state.seed, step), shard)
        })?;
        if !value.is_finite() {
            return Err(blow_up(run, value, step + 1));
        }
        if let Some(checkpoint) = pending.take() {
            save(run, plan, checkpoint, events)?;
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
        )
        .map_err(|e| metrics_error(run, e))?;
        events(TrainEvent::Step {
            step: state.step,
            loss: value,
            lr,
        });
        if state.step.is_multiple_of(plan.checkpoint_every) || state.step == plan.steps {
            metrics.flush().map_err(|e| metrics_error(run, e))?;
            pending = Some(Weights {
                model: model.clone(),
                ema: ema.clone(),
                optim: optim.clone(),
                state: state.clone(),
            });
        }
    }
    if let Some(checkpoint) = pending {
        let (step, seed) = (checkpoint.state.step, checkpoint.state.seed);
        let examples = data.next_batch(plan.batch, events)?;
        let (value, _) = plan
            .parallel
            .step(&checkpoint.model, plan.batch, |replica, shard| {
                loss_of(replica, &examples, &mut step_rng(seed, step), shard)
            })?;
        if !value.is_finite() {
            return Err(blow_up(run, value, step + 1));
        }
        save(run, plan, checkpoint, events)?;
    }
    let summary = summary(&state, data);
    data.log(&summary.to_string());
    data.flush_log();
    Ok(summary)
}

/// Writes a checkpoint of `weights` and reports it.
fn save<M: Module>(
    run: &Run,
    plan: &Plan,
    weights: Weights<M>,
    events: &mut dyn FnMut(TrainEvent),
) -> Result<()> {
    let step = weights.state.step;
    let mut parts = vec![(plan.model_file, weights.model.into_record())];
    parts.extend(weights.ema.map(|ema| ("ema.bpk", ema.into_record())));
    let dir = run.save(parts, &weights.optim, &weights.state)?;
    events(TrainEvent::Checkpoint { step, dir });
    Ok(())
}

/// The error for a non-finite loss, naming the checkpoint that was kept.
fn blow_up(run: &Run, value: f64, step: usize) -> TrainError {
    TrainError::NonFinite {
        value,
        step,
        kept: run.latest(),
    }
}

fn metrics_error(run: &Run, e: std::io::Error) -> TrainError {
    TrainError::path(
        run.metrics_path(),
        format!("cannot write the metrics log: {e}"),
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
        .map_err(|e| TrainError::path(&path, format!("cannot open the metrics log: {e}")))?;
    Ok(std::io::BufWriter::new(file))
}

/// The run folder and the loop's settings, shared by the three trainers.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    /// The run folder: checkpoints, config and metrics go here.
    pub out: PathBuf,
    /// Continue the run in `out` from its last checkpoint.
    pub resume: bool,
    /// Seed for initialisation, data sampling and noise.
    pub seed: u64,
    /// Total optimisation steps (a resumed run counts the steps already done).
    pub steps: usize,
    /// Clips per step.
    pub batch: usize,
    /// The (peak) learning rate.
    pub lr: f64,
    /// Write a checkpoint every this many steps (and always at the end).
    pub checkpoint_every: usize,
}

impl FitConfig {
    /// A new run in `out`: `steps` steps of `batch` clips at learning rate `lr`, seed 0, a
    /// checkpoint every 50 steps.
    pub fn new(out: impl Into<PathBuf>, steps: usize, batch: usize, lr: f64) -> Self {
        Self {
            out: out.into(),
            resume: false,
            seed: 0,
            steps,
            batch,
            lr,
            checkpoint_every: 50,
        }
    }

    /// Checks the numbers, naming the setting.
    pub fn check(&self) -> Result<()> {
        let positive = || "must be positive".to_string();
        ensure(self.steps > 0, Setting::Steps, positive)?;
        ensure(self.batch > 0, Setting::Batch, positive)?;
        ensure(
            self.checkpoint_every > 0,
            Setting::CheckpointEvery,
            positive,
        )?;
        ensure(self.lr.is_finite() && self.lr > 0.0, Setting::Lr, || {
            format!("must be a positive number, found {}", self.lr)
        })
    }

    /// The summary of a run that `state` shows has reached its steps already (checked before
    /// its data is indexed and decoded), else none.
    pub fn finished(&self, state: &TrainState) -> Option<Summary> {
        (state.step >= self.steps).then(|| Summary {
            steps: state.step,
            trained: 0,
            loss: state.loss,
            seconds: 0.0,
            skipped: "no clip read".into(),
            dir: self.out.clone(),
        })
    }

    /// The run folder.
    pub fn run(&self) -> Run {
        Run::new(&self.out)
    }
}
