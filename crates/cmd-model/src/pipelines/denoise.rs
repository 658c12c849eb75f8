//! The sampling loop of a text-conditioned UNet with classifier-free guidance, as in diffusers'
//! `StableDiffusionPipeline`: the unconditional and conditional predictions come from one
//! batched UNet call (on the CPU: two calls at once, see [`guided`]), are combined as
//! `e_u + s (e_c - e_u)`, and the scheduler steps.

use std::str::FromStr;

use burn::tensor::Tensor;

use crate::kernels;
use crate::schedulers::{
    Ddim, DpmSolver, SchedulerConfig, SchedulerError, classifier_free_guidance,
};
use crate::unet::Unet;

/// Which scheduler samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sampler {
    /// DDIM with `eta = 0` (the paper's sampler).
    #[default]
    Ddim,
    /// DPM-Solver++(2M): good samples in fewer steps.
    DpmSolver,
}

impl FromStr for Sampler {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ddim" => Ok(Self::Ddim),
            "dpm-solver" => Ok(Self::DpmSolver),
            _ => Err(format!(
                "unknown sampler '{s}'; expected ddim or dpm-solver"
            )),
        }
    }
}

/// How to sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingOptions {
    /// Scheduler steps.
    pub steps: usize,
    /// Guidance scale `s`; at most 1 means no guidance (one UNet call per step, as diffusers).
    pub guidance: f64,
    /// The scheduler.
    pub sampler: Sampler,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self {
            steps: 50,
            guidance: 7.5,
            sampler: Sampler::Ddim,
        }
    }
}

/// The scheduler of a [`SampleLoop`].
enum Stepper {
    Ddim(Ddim),
    DpmSolver(Box<DpmSolver<4>>),
}

/// A sampling run taken one step at a time, so a caller can wait, report or stop between
/// steps (the browser awaits the GPU after each one): from standard-normal noise to a sample,
/// asking a network for its output at each timestep.
pub struct SampleLoop {
    stepper: Stepper,
    timesteps: Vec<usize>,
    done: usize,
    x: Tensor<4>,
}

impl SampleLoop {
    /// A run of `options.steps` steps of `options.sampler` from `noise`.
    pub fn new(
        scheduler: &SchedulerConfig,
        noise: Tensor<4>,
        options: &SamplingOptions,
    ) -> Result<Self, SchedulerError> {
        let (stepper, timesteps, x) = match options.sampler {
            Sampler::Ddim => {
                let ddim = Ddim::new(scheduler, options.steps)?;
                let timesteps = ddim.timesteps().to_vec();
                (Stepper::Ddim(ddim), timesteps, noise)
            }
            Sampler::DpmSolver => {
                let dpm = DpmSolver::<4>::new(scheduler, options.steps)?;
                let timesteps = dpm.timesteps().to_vec();
                let x = noise.mul_scalar(dpm.init_noise_sigma());
                (Stepper::DpmSolver(Box::new(dpm)), timesteps, x)
            }
        };
        Ok(Self {
            stepper,
            timesteps,
            done: 0,
            x,
        })
    }

    /// Steps taken.
    pub fn done(&self) -> usize {
        self.done
    }

    /// Steps in the run.
    pub fn total(&self) -> usize {
        self.timesteps.len()
    }

    /// Whether every step has been taken.
    pub fn is_finished(&self) -> bool {
        self.done == self.timesteps.len()
    }

    /// The timestep of the next step (`None` once finished).
    pub fn timestep(&self) -> Option<usize> {
        self.timesteps.get(self.done).copied()
    }

    /// The current sample (the final one once finished).
    pub fn sample(&self) -> &Tensor<4> {
        &self.x
    }

    /// Takes the next step with `predict(x_t, t)`, the network output; does nothing once
    /// finished.
    pub fn step(&mut self, predict: &mut dyn FnMut(&Tensor<4>, usize) -> Tensor<4>) {
        let Some(&t) = self.timesteps.get(self.done) else {
            return;
        };
        let out = predict(&self.x, t);
        let x = self.x.clone();
        self.x = match &mut self.stepper {
            Stepper::Ddim(ddim) => ddim.step(out, t, x, 0.0, None),
            Stepper::DpmSolver(dpm) => dpm.step(out, x),
        };
        self.done += 1;
    }
}

/// The whole scheduler loop: from `noise` (standard normal) to a sample, asking
/// `predict(x_t, t)` for the network output at each step. `progress(done, total)` is called
/// after every step.
pub fn sample_loop(
    scheduler: &SchedulerConfig,
    noise: Tensor<4>,
    options: &SamplingOptions,
    predict: &mut dyn FnMut(&Tensor<4>, usize) -> Tensor<4>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, SchedulerError> {
    let mut run = SampleLoop::new(scheduler, noise, options)?;
    while !run.is_finished() {
        run.step(predict);
        progress(run.done(), run.total());
    }
    Ok(run.x)
}

/// The rows a network call of a guided step computes (see [`guided`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// The null-condition rows, then the conditional ones, in one batch of `2B` (`[x; x]`).
    Both,
    /// The null-condition rows alone.
    Null,
    /// The conditional rows alone (the only call when guidance is off).
    Cond,
}

/// A network of a guided step: its output for `x` at `timesteps` (one per row) on `rows`.
pub type GuidedNetwork<'a> = dyn Fn(Tensor<4>, &[f64], Rows) -> Tensor<4> + Sync + 'a;

/// The network's output for `x` at timestep `t` with classifier-free guidance: the null and
/// conditional predictions combined as `e_u + s (e_c - e_u)`, or the conditional one alone
/// when `guidance <= 1`. The two predictions come from one batched call ([`Rows::Both`], as in
/// diffusers), or, where that is slower ([`kernels::runs_side_by_side`]: the CPU), from two
/// calls at once, one per thread.
pub fn guided(x: &Tensor<4>, t: usize, guidance: f64, network: &GuidedNetwork<'_>) -> Tensor<4> {
    let b = x.dims()[0];
    if guidance <= 1.0 {
        return network(x.clone(), &vec![t as f64; b], Rows::Cond);
    }
    let (u, c) = if kernels::runs_side_by_side(&x.device()) {
        let timesteps = vec![t as f64; b];
        let call = |rows| network(x.clone(), &timesteps, rows);
        kernels::join(|| call(Rows::Null), || call(Rows::Cond))
    } else {
        let out = network(
            Tensor::cat(vec![x.clone(), x.clone()], 0),
            &vec![t as f64; 2 * b],
            Rows::Both,
        );
        let mut halves = out.chunk(2, 0).into_iter();
        (halves.next().unwrap(), halves.next().unwrap())
    };
    classifier_free_guidance(u, c, guidance)
}

/// `[null; cond]` for [`Rows::Both`], `null` or `cond` for the single rows: the conditioning a
/// [`GuidedNetwork`] call takes.
pub fn rows_of<const D: usize>(rows: Rows, null: &Tensor<D>, cond: &Tensor<D>) -> Tensor<D> {
    match rows {
        Rows::Both => Tensor::cat(vec![null.clone(), cond.clone()], 0),
        Rows::Null => null.clone(),
        Rows::Cond => cond.clone(),
    }
}

/// Denoises `noise` (`[B, C, h, w]`, standard normal) into a sample of the UNet's data.
///
/// `cond` and `uncond` are the text states of the prompt and of the empty prompt (`[B, S, D]`);
/// `uncond` is not used when `options.guidance <= 1`. `progress(done, total)` is called after
/// every step.
pub fn denoise(
    unet: &Unet,
    scheduler: &SchedulerConfig,
    cond: &Tensor<3>,
    uncond: &Tensor<3>,
    noise: Tensor<4>,
    options: &SamplingOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, SchedulerError> {
    let network = |x, t: &[f64], rows| unet.forward(x, t, &rows_of(rows, uncond, cond));
    let mut predict = |x: &Tensor<4>, t: usize| guided(x, t, options.guidance, &network);
    sample_loop(scheduler, noise, options, &mut predict, progress)
}

#[cfg(all(test, feature = "cpu", threads))]
mod tests {
    use std::sync::Mutex;

    use burn::tensor::{Device, Distribution};

    use super::*;
    use crate::unet::UnetConfig;

    /// Runs `f` on a rayon pool of `threads` threads.
    fn on_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads);
        pool.build().unwrap().install(f)
    }

    #[test]
    fn guided_side_by_side_equals_one_batch() {
        let device = Device::flex();
        let cfg = UnetConfig::tiny(4, 8);
        let unet = cfg.init(&device).unwrap();
        let normal = Distribution::Normal(0.0, 1.0);
        let x = Tensor::<4>::random([1, 4, 8, 8], normal, &device);
        let cond = Tensor::<3>::random([1, 7, cfg.cross_attention_dim], normal, &device);
        let uncond = Tensor::<3>::random([1, 7, cfg.cross_attention_dim], normal, &device);
        let calls = Mutex::new(Vec::new());
        let network = |x, t: &[f64], rows| {
            calls.lock().unwrap().push((rows, t.len()));
            unet.forward(x, t, &rows_of(rows, &uncond, &cond))
        };
        // Two threads on the CPU: two calls at once, one row each.
        assert!(on_pool(2, || kernels::runs_side_by_side(&device)));
        let split = on_pool(2, || guided(&x, 500, 7.5, &network));
        let mut seen = std::mem::take(&mut *calls.lock().unwrap());
        seen.sort_by_key(|(rows, _)| *rows as u8);
        assert_eq!(seen, [(Rows::Null, 1), (Rows::Cond, 1)]);
        // One thread: one batch of the two rows.
        assert!(!on_pool(1, || kernels::runs_side_by_side(&device)));
        let batched = on_pool(1, || guided(&x, 500, 7.5, &network));
        assert_eq!(*calls.lock().unwrap(), [(Rows::Both, 2)]);
        // And by hand: e_u + s (e_c - e_u).
        let e_u = unet.forward(x.clone(), &[500.0], &uncond);
        let e_c = unet.forward(x.clone(), &[500.0], &cond);
        let by_hand = e_u.clone() + (e_c - e_u) * 7.5;
        for other in [batched, by_hand] {
            let diff: f32 = (split.clone() - other).abs().max().into_scalar();
            assert!(diff < 1e-4, "guided outputs differ by {diff}");
        }
        // Guidance off: the conditional rows alone, in one call.
        calls.lock().unwrap().clear();
        on_pool(2, || guided(&x, 500, 1.0, &network));
        assert_eq!(*calls.lock().unwrap(), [(Rows::Cond, 1)]);
    }
}
