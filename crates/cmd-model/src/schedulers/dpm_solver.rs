//! DPM-Solver++(2M) (Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
//! Probabilistic Models", 2022), following diffusers' `DPMSolverMultistepScheduler` with
//! `algorithm_type = "dpmsolver++"`, `solver_type = "midpoint"`, `final_sigmas_type = "zero"`.
//!
//! Glossary: `σ = sqrt((1 - ᾱ)/ᾱ)`, `α_t = 1/sqrt(σ² + 1)`, `σ_t = σ α_t`,
//! `λ = log α_t - log σ_t`, `h = λ_t - λ_s`; the solver works on data predictions `x₀`.

use burn::tensor::Tensor;

use super::config::{
    Prediction, SchedulerConfig, SchedulerError, Spacing, check_steps, unsupported,
};
use super::schedule::{NoiseSchedule, spaced_timesteps};

/// A DPM-Solver++ sampler (order 1 or 2) for a fixed number of steps. It keeps the previous
/// data prediction between steps, so call [`step`](Self::step) once per timestep, in order.
#[derive(Debug, Clone)]
pub struct DpmSolver<const D: usize> {
    prediction: Prediction,
    order: usize,
    timesteps: Vec<usize>,
    /// σ at each timestep, then 0 for the end.
    sigmas: Vec<f64>,
    step_index: usize,
    previous_x0: Option<Tensor<D>>,
}

/// `(α_t, σ_t, λ)` of a sigma.
fn alpha_sigma_lambda(sigma: f64) -> (f64, f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    let sigma_t = sigma * alpha;
    (alpha, sigma_t, alpha.ln() - sigma_t.ln())
}

impl<const D: usize> DpmSolver<D> {
    /// A sampler of `steps` steps for `config` (linspace spacing unless the config says).
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self, SchedulerError> {
        config.check_common()?;
        if config.algorithm_type != "dpmsolver++" {
            return Err(unsupported(
                "algorithm_type",
                &config.algorithm_type,
                "\"dpmsolver++\"",
            ));
        }
        if !(1..=2).contains(&config.solver_order) {
            return Err(unsupported(
                "solver_order",
                &config.solver_order.to_string(),
                "1 or 2",
            ));
        }
        if config.solver_type != "midpoint" {
            return Err(unsupported(
                "solver_type",
                &config.solver_type,
                "\"midpoint\"",
            ));
        }
        if config.final_sigmas_type != "zero" {
            return Err(unsupported(
                "final_sigmas_type",
                &config.final_sigmas_type,
                "\"zero\"",
            ));
        }
        let t = config.num_train_timesteps;
        check_steps(steps, t - 1, "between 1 and num_train_timesteps - 1")?;
        let schedule = NoiseSchedule::new(config);
        let spacing = config.timestep_spacing.unwrap_or(Spacing::Linspace);
        let timesteps = spaced_timesteps(spacing, t, steps, steps + 1, config.steps_offset);
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|t| {
                let a = schedule.alphas_cumprod[*t];
                ((1.0 - a) / a).sqrt()
            })
            .collect();
        sigmas.push(0.0);
        Ok(Self {
            prediction: config.prediction_type,
            order: config.solver_order,
            timesteps,
            sigmas,
            step_index: 0,
            previous_x0: None,
        })
    }

    /// The timesteps to visit, high to low.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// The noise level the sampler starts from, for scaling the initial noise (1 for these
    /// variance-preserving schedules).
    pub fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    /// One step from the current sample given the network output at the current timestep.
    ///
    /// # Panics
    /// If called more times than there are timesteps.
    pub fn step(&mut self, model_output: Tensor<D>, sample: Tensor<D>) -> Tensor<D> {
        let i = self.step_index;
        assert!(
            i < self.timesteps.len(),
            "DpmSolver::step called past the last timestep"
        );
        // 1. Data prediction x₀ from the network output.
        let (alpha_s, sigma_s, lambda_s) = alpha_sigma_lambda(self.sigmas[i]);
        let x0 = match self.prediction {
            Prediction::Epsilon => {
                (sample.clone() - model_output.mul_scalar(sigma_s)).div_scalar(alpha_s)
            }
            Prediction::V => sample.clone().mul_scalar(alpha_s) - model_output.mul_scalar(sigma_s),
        };
        // 2. First order on the first and the last step (σ = 0 at the end), second otherwise.
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(self.sigmas[i + 1]);
        let h = lambda_t - lambda_s;
        let decay = alpha_t * ((-h).exp() - 1.0); // α_t (e^{-h} - 1)
        let ratio = if self.sigmas[i + 1] == 0.0 {
            0.0
        } else {
            sigma_t / sigma_s
        };
        let last = i + 1 == self.timesteps.len();
        let next = match (&self.previous_x0, self.order, last) {
            (Some(prev_x0), 2, false) => {
                // 3. Midpoint second-order update with D1 = (x₀ - x₀_prev) / r0.
                let (_, _, lambda_prev) = alpha_sigma_lambda(self.sigmas[i - 1]);
                let r0 = (lambda_s - lambda_prev) / h;
                let d1 = (x0.clone() - prev_x0.clone()).div_scalar(r0);
                sample.mul_scalar(ratio) - x0.clone().mul_scalar(decay) - d1.mul_scalar(0.5 * decay)
            }
            _ => sample.mul_scalar(ratio) - x0.clone().mul_scalar(decay),
        };
        self.previous_x0 = Some(x0);
        self.step_index += 1;
        next
    }
}
