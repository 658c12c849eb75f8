//! Diffusion schedulers: small pure objects with diffusers' names and behaviour.
//!
//! The noise schedule lives on the host (`Vec<f64>` of `alphas_cumprod`); only samples are
//! tensors. Each scheduler reads a diffusers `scheduler_config.json`
//! ([`SchedulerConfig`]) and refuses, naming the field, the options it does not implement.
//!
//! - [`schedule`]: beta schedules, `alphas_cumprod`, DDPM training noise and targets.
//! - [`ddim`]: DDIM sampling (Song et al. 2021) with `eta`.
//! - [`dpm_solver`]: DPM-Solver++(2M) (Lu et al. 2022), the faster sampler.
//! - [`classifier_free_guidance`]: `e_u + s (e_c - e_u)`.

pub mod config;
pub mod ddim;
pub mod dpm_solver;
pub mod schedule;

pub use config::{BetaSchedule, Prediction, SchedulerConfig, SchedulerError, Spacing};
pub use ddim::Ddim;
pub use dpm_solver::DpmSolver;
pub use schedule::NoiseSchedule;

use burn::tensor::Tensor;

/// Classifier-free guidance (Ho & Salimans 2022): `uncond + scale * (cond - uncond)`.
/// `scale = 1` gives the conditional prediction, `scale = 0` the unconditional one.
pub fn classifier_free_guidance<const D: usize>(
    uncond: Tensor<D>,
    cond: Tensor<D>,
    scale: f64,
) -> Tensor<D> {
    uncond.clone() + (cond - uncond).mul_scalar(scale)
}

/// Multiplies every sample of a batch by its own coefficient: `x[b] * coef[b]`.
pub(crate) fn per_sample<const D: usize>(x: Tensor<D>, coef: &[f64]) -> Tensor<D> {
    let device = x.device();
    let mut shape = [1usize; D];
    shape[0] = coef.len();
    let values: Vec<f32> = coef.iter().map(|c| *c as f32).collect();
    let coef = Tensor::<1>::from_data(burn::tensor::TensorData::new(values, [coef.len()]), &device);
    x * coef.reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn guidance_is_the_standard_form() {
        let dev = Device::flex();
        let u = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), &dev);
        let c = Tensor::<1>::from_data(TensorData::new(vec![3.0f32, 0.0], [2]), &dev);
        let g = classifier_free_guidance(u, c, 7.5).into_data();
        assert_eq!(g.try_to_vec::<f32>().unwrap(), vec![16.0, -13.0]);
    }
}
