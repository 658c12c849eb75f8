//! DDIM sampling (Song, Meng & Ermon, "Denoising Diffusion Implicit Models", 2021), following
//! diffusers' `DDIMScheduler` (eq. 12 of the paper).
//!
//! Glossary: `ᾱ_t` = `alphas_cumprod[t]`, `x₀` = predicted original sample, `ε` = predicted
//! noise, `σ_t = η sqrt((1 - ᾱ_prev)/(1 - ᾱ_t)) sqrt(1 - ᾱ_t/ᾱ_prev)`.

use burn::tensor::Tensor;

use super::config::{Prediction, SchedulerConfig, SchedulerError, Spacing, check_steps};
use super::schedule::{NoiseSchedule, spaced_timesteps};

/// A DDIM sampler for a fixed number of steps.
#[derive(Debug, Clone)]
pub struct Ddim {
    schedule: NoiseSchedule,
    config: SchedulerConfig,
    timesteps: Vec<usize>,
    final_alpha_cumprod: f64,
}

impl Ddim {
    /// A sampler of `steps` steps for `config` (leading spacing unless the config says).
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self, SchedulerError> {
        config.check_common()?;
        let t = config.num_train_timesteps;
        check_steps(steps, t, "between 1 and num_train_timesteps")?;
        let schedule = NoiseSchedule::new(config);
        let spacing = config.timestep_spacing.unwrap_or(Spacing::Leading);
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            schedule.alphas_cumprod[0]
        };
        Ok(Self {
            timesteps: spaced_timesteps(spacing, t, steps, steps, config.steps_offset),
            schedule,
            config: config.clone(),
            final_alpha_cumprod,
        })
    }

    /// The timesteps to visit, high to low.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// The noise schedule.
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// One step from `x_t` to `x_prev` given the network output at `t`. `eta = 0` is
    /// deterministic; for `eta > 0`, `noise` (standard normal, shaped like `sample`) is needed.
    ///
    /// # Panics
    /// If `eta > 0` and `noise` is `None`.
    pub fn step<const D: usize>(
        &self,
        model_output: Tensor<D>,
        t: usize,
        sample: Tensor<D>,
        eta: f64,
        noise: Option<Tensor<D>>,
    ) -> Tensor<D> {
        // 1. Previous timestep (diffusers steps by T / n whatever the spacing).
        let prev_t = t as i64 - (self.config.num_train_timesteps / self.timesteps.len()) as i64;
        // 2. ᾱ_t and ᾱ_prev.
        let a_t = self.schedule.alphas_cumprod[t];
        let a_prev = if prev_t >= 0 {
            self.schedule.alphas_cumprod[prev_t as usize]
        } else {
            self.final_alpha_cumprod
        };
        let b_t = 1.0 - a_t;
        // 3. Predicted x₀ and ε (eq. 12's "predicted x₀").
        let (mut x0, eps) = match self.config.prediction_type {
            Prediction::Epsilon => (
                (sample.clone() - model_output.clone().mul_scalar(b_t.sqrt()))
                    .div_scalar(a_t.sqrt()),
                model_output,
            ),
            Prediction::V => (
                sample.clone().mul_scalar(a_t.sqrt()) - model_output.clone().mul_scalar(b_t.sqrt()),
                model_output.mul_scalar(a_t.sqrt()) + sample.mul_scalar(b_t.sqrt()),
            ),
        };
        // 4. Optional clipping of x₀.
        if self.config.clip_sample {
            let r = self.config.clip_sample_range;
            x0 = x0.clamp(-r, r);
            // ε consistent with the clipped x₀ is not used by diffusers' default path.
        }
        // 5. σ_t (eq. 16) and the direction pointing to x_t.
        let variance = (1.0 - a_prev) / b_t * (1.0 - a_t / a_prev);
        let std = eta * variance.max(0.0).sqrt();
        let direction = eps.mul_scalar((1.0 - a_prev - std * std).max(0.0).sqrt());
        // 6. x_prev = sqrt(ᾱ_prev) x₀ + direction + σ_t z.
        let prev = x0.mul_scalar(a_prev.sqrt()) + direction;
        if eta > 0.0 {
            let noise = noise.expect("DDIM with eta > 0 needs noise");
            prev + noise.mul_scalar(std)
        } else {
            prev
        }
    }
}
