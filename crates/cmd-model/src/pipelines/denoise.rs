//! The sampling loop of a text-conditioned UNet with classifier-free guidance, as in diffusers'
//! `StableDiffusionPipeline`: the unconditional and conditional predictions come from one
//! batched UNet call, are combined as `e_u + s (e_c - e_u)`, and the scheduler steps.

use std::str::FromStr;

use burn::tensor::Tensor;

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

/// Runs `network(x, t)` on the unconditional and conditional rows of one batch and combines
/// them with classifier-free guidance (or only on the conditional rows when `guidance <= 1`).
/// `network` gets `[x; x]` (`2B` rows: unconditional first) or `x`, and the timestep.
pub fn guided(
    x: &Tensor<4>,
    t: usize,
    guidance: f64,
    network: &mut dyn FnMut(Tensor<4>, &[f64]) -> Tensor<4>,
) -> Tensor<4> {
    let b = x.dims()[0];
    if guidance > 1.0 {
        let out = network(
            Tensor::cat(vec![x.clone(), x.clone()], 0),
            &vec![t as f64; 2 * b],
        );
        let mut halves = out.chunk(2, 0).into_iter();
        let (u, c) = (halves.next().unwrap(), halves.next().unwrap());
        classifier_free_guidance(u, c, guidance)
    } else {
        network(x.clone(), &vec![t as f64; b])
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
    let context = if options.guidance > 1.0 {
        Tensor::cat(vec![uncond.clone(), cond.clone()], 0)
    } else {
        cond.clone()
    };
    let mut network = |x: Tensor<4>, t: &[f64]| unet.forward(x, t, &context);
    let mut predict = |x: &Tensor<4>, t: usize| guided(x, t, options.guidance, &mut network);
    sample_loop(scheduler, noise, options, &mut predict, progress)
}
