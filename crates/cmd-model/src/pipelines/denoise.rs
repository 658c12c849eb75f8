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

/// The scheduler loop: from `noise` (standard normal) to a sample, asking `predict(x_t, t)` for
/// the network output at each step. `progress(done, total)` is called after every step.
pub fn sample_loop(
    scheduler: &SchedulerConfig,
    noise: Tensor<4>,
    options: &SamplingOptions,
    predict: &mut dyn FnMut(&Tensor<4>, usize) -> Tensor<4>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor<4>, SchedulerError> {
    let mut x = noise;
    match options.sampler {
        Sampler::Ddim => {
            let ddim = Ddim::new(scheduler, options.steps)?;
            let total = ddim.timesteps().len();
            for (i, &t) in ddim.timesteps().iter().enumerate() {
                x = ddim.step(predict(&x, t), t, x, 0.0, None);
                progress(i + 1, total);
            }
        }
        Sampler::DpmSolver => {
            let mut dpm = DpmSolver::<4>::new(scheduler, options.steps)?;
            x = x.mul_scalar(dpm.init_noise_sigma());
            let timesteps = dpm.timesteps().to_vec();
            for (i, &t) in timesteps.iter().enumerate() {
                let out = predict(&x, t);
                x = dpm.step(out, x);
                progress(i + 1, timesteps.len());
            }
        }
    }
    Ok(x)
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
