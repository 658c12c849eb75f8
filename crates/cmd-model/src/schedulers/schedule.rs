//! Beta schedules, `alphas_cumprod`, and DDPM's forward (noising) process.

use burn::tensor::Tensor;

use super::config::{BetaSchedule, Prediction, SchedulerConfig, Spacing};
use super::per_sample;

/// `ᾱ_t = Π_{s<=t} (1 - β_s)` for `t` in `0..T`, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    /// `ᾱ_t`.
    pub alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    /// The schedule of `config`'s beta settings.
    pub fn new(config: &SchedulerConfig) -> Self {
        let t = config.num_train_timesteps;
        let linspace = |a: f64, b: f64| -> Vec<f64> {
            (0..t)
                .map(|i| a + (b - a) * i as f64 / (t - 1) as f64)
                .collect()
        };
        let betas: Vec<f64> = match config.beta_schedule {
            BetaSchedule::Linear => linspace(config.beta_start, config.beta_end),
            BetaSchedule::ScaledLinear => {
                linspace(config.beta_start.sqrt(), config.beta_end.sqrt())
                    .into_iter()
                    .map(|b| b * b)
                    .collect()
            }
            BetaSchedule::SquaredCosCapV2 => {
                let alpha_bar = |s: f64| {
                    ((s + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..t)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / t as f64, (i + 1) as f64 / t as f64);
                        (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
                    })
                    .collect()
            }
        };
        let alphas_cumprod = betas
            .iter()
            .scan(1.0, |acc, b| {
                *acc *= 1.0 - b;
                Some(*acc)
            })
            .collect();
        Self { alphas_cumprod }
    }

    /// `T`.
    pub fn len(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// Never true for a valid schedule.
    pub fn is_empty(&self) -> bool {
        self.alphas_cumprod.is_empty()
    }

    /// `(sqrt(ᾱ_t), sqrt(1 - ᾱ_t))` for each `t` of a batch.
    fn coefficients(&self, t: &[usize]) -> (Vec<f64>, Vec<f64>) {
        t.iter()
            .map(|t| {
                let a = self.alphas_cumprod[*t];
                (a.sqrt(), (1.0 - a).sqrt())
            })
            .unzip()
    }

    /// `x_t = sqrt(ᾱ_t) x₀ + sqrt(1 - ᾱ_t) ε`, one `t` per sample of the batch.
    pub fn add_noise<const D: usize>(
        &self,
        x0: Tensor<D>,
        noise: Tensor<D>,
        t: &[usize],
    ) -> Tensor<D> {
        let (a, s) = self.coefficients(t);
        per_sample(x0, &a) + per_sample(noise, &s)
    }

    /// `v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x₀`.
    pub fn velocity<const D: usize>(
        &self,
        x0: Tensor<D>,
        noise: Tensor<D>,
        t: &[usize],
    ) -> Tensor<D> {
        let (a, s) = self.coefficients(t);
        per_sample(noise, &a) - per_sample(x0, &s)
    }

    /// What a network trained with `prediction` should output for `(x₀, ε, t)`.
    pub fn training_target<const D: usize>(
        &self,
        prediction: Prediction,
        x0: Tensor<D>,
        noise: Tensor<D>,
        t: &[usize],
    ) -> Tensor<D> {
        match prediction {
            Prediction::Epsilon => noise,
            Prediction::V => self.velocity(x0, noise, t),
        }
    }
}

/// Inference timesteps, high to low, as diffusers' `set_timesteps` makes them. `intervals` is
/// `n` for DDIM and `n + 1` for DPM-Solver (which drops the last point of the grid).
pub(crate) fn spaced_timesteps(
    spacing: Spacing,
    train: usize,
    steps: usize,
    intervals: usize,
    offset: usize,
) -> Vec<usize> {
    match spacing {
        Spacing::Leading => {
            // DPM-Solver's grid has one more point, at 0, which it drops.
            let ratio = train / intervals;
            (intervals - steps..intervals)
                .rev()
                .map(|i| i * ratio + offset)
                .collect()
        }
        Spacing::Trailing => {
            let ratio = train as f64 / steps as f64;
            (0..steps)
                .map(|i| {
                    (round_half_even(train as f64 - i as f64 * ratio) as usize).saturating_sub(1)
                })
                .collect()
        }
        Spacing::Linspace => {
            let last = (train - 1) as f64;
            let grid: Vec<usize> = (0..intervals)
                .map(|i| round_half_even(last * i as f64 / (intervals - 1).max(1) as f64) as usize)
                .collect();
            grid.into_iter().rev().take(steps).collect()
        }
    }
}

/// numpy's `round` (half to even), which diffusers' timestep grids use.
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}
