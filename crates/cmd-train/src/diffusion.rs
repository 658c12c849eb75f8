//! What the content and motion trainers share: their config, the draws of a step and the
//! denoising loss (spec sections 2 and 3: epsilon- or v-MSE at uniform timesteps, a fraction
//! of null conditions for classifier-free guidance).

use std::path::PathBuf;

use burn::tensor::Tensor;
use cmd_model::pipelines::standard_normal;
use cmd_model::schedulers::{NoiseSchedule, Prediction};
use cmd_video::dataset::{Augment, MIN_CROP};
use rand::Rng;
use rand::rngs::StdRng;

use crate::data::{DataConfig, augment};
use crate::error::{Result, Setting, ensure};
use crate::fit::FitConfig;
use crate::parallel::Shard;

/// Data, run folder and optimisation settings of a diffusion trainer (content or motion).
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionConfig {
    /// The training clips.
    pub data: DataConfig,
    /// Captions CSV (`videoid,name` as WebVid, or `path,caption`); default:
    /// `DATA/captions.csv` if it exists, else each clip's class-folder name (UCF-101 style).
    pub captions: Option<PathBuf>,
    /// The run folder and the loop.
    pub fit: FitConfig,
    /// Decay of the exponential moving average of the weights that sampling uses.
    pub ema: f64,
    /// Fraction of captions replaced by the null condition (for classifier-free guidance).
    pub empty_prompt: f64,
    /// Also train on horizontally mirrored clips (a mirrored clip no longer shows what a
    /// caption that says "left" or "right" describes).
    pub flip: bool,
    /// The smallest random crop, as a fraction of the frame (0.8 to 1; 1: whole frames).
    pub crop_min: f64,
}

impl DiffusionConfig {
    /// The spec's settings (EMA 0.999, 10% null conditions, no flips) for `fit` on `data`.
    pub fn new(data: DataConfig, fit: FitConfig) -> Self {
        Self {
            data,
            captions: None,
            fit,
            ema: 0.999,
            empty_prompt: 0.1,
            flip: false,
            crop_min: MIN_CROP,
        }
    }

    /// Checks the numbers, naming the setting.
    pub fn check(&self) -> Result<()> {
        self.fit.check()?;
        ensure((0.0..1.0).contains(&self.ema), Setting::Ema, || {
            format!("must be in [0, 1), found {}", self.ema)
        })?;
        ensure(
            (0.0..=1.0).contains(&self.empty_prompt),
            Setting::EmptyPrompt,
            || format!("must be in [0, 1], found {}", self.empty_prompt),
        )?;
        self.augment()?;
        self.data.check()
    }

    /// The augmentation of the examples.
    pub fn augment(&self) -> Result<Augment> {
        augment(self.crop_min, self.flip)
    }
}

/// What a step draws for its whole batch, in this order from the step's generator: which
/// examples get the null condition, their timesteps, and the seed of their noise. Every
/// device draws the same and keeps its shard's part.
pub struct Draws {
    /// Per example: trained on the null condition.
    pub null: Vec<bool>,
    /// Per example: the timestep.
    pub t: Vec<usize>,
    /// The seed of the whole batch's noise.
    pub noise_seed: u64,
}

impl Draws {
    /// The draws of a step of `batch` examples, `empty_prompt` of them null on average.
    pub fn new(
        rng: &mut StdRng,
        batch: usize,
        empty_prompt: f64,
        schedule: &NoiseSchedule,
    ) -> Self {
        let null = (0..batch).map(|_| rng.random_bool(empty_prompt)).collect();
        let t = (0..batch)
            .map(|_| rng.random_range(0..schedule.len()))
            .collect();
        Self {
            null,
            t,
            noise_seed: rng.random(),
        }
    }
}

/// The denoising loss of a shard: the clean `x0` of its examples noised at their timesteps,
/// and the mean squared error of `denoise(x_t, t)` against what `prediction` asks for.
pub fn denoising_loss(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    x0: Tensor<4>,
    draws: &Draws,
    shard: &Shard,
    denoise: impl FnOnce(Tensor<4>, &[f64]) -> Tensor<4>,
) -> Tensor<1> {
    let range = shard.range.clone();
    let mut shape = x0.dims();
    shape[0] = draws.t.len();
    let noise =
        standard_normal(shape, draws.noise_seed, shard.device).narrow(0, range.start, range.len());
    let t = &draws.t[range];
    let x_t = schedule.add_noise(x0.clone(), noise.clone(), t);
    let target = schedule.training_target(prediction, x0, noise, t);
    let t: Vec<f64> = t.iter().map(|t| *t as f64).collect();
    (denoise(x_t, &t) - target).powi_scalar(2).mean()
}
