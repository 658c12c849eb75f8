//! `scheduler_config.json`, as diffusers writes it.

use serde::{Deserialize, Serialize};

/// How betas grow over the training timesteps.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `linspace(beta_start, beta_end)`.
    Linear,
    /// `linspace(sqrt(beta_start), sqrt(beta_end))²` (Stable Diffusion).
    ScaledLinear,
    /// The cosine schedule of Nichol & Dhariwal 2021, betas capped at 0.999.
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredCosCapV2,
}

/// What the network predicts.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prediction {
    /// The noise `ε`.
    #[default]
    #[serde(rename = "epsilon")]
    Epsilon,
    /// The velocity `v = sqrt(ᾱ) ε - sqrt(1 - ᾱ) x₀` (Salimans & Ho 2022).
    #[serde(rename = "v_prediction")]
    V,
}

/// How inference timesteps are spread (Table 2 of Lin et al. 2023).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Spacing {
    /// Multiples of `T / n` from 0, plus `steps_offset`.
    Leading,
    /// Multiples of `T / n` down from `T`, minus one.
    Trailing,
    /// Evenly spaced over `[0, T - 1]`.
    Linspace,
}

/// The fields of a diffusers scheduler config this crate reads; unknown fields are ignored,
/// and fields it cannot honour are refused by the scheduler that would need them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct SchedulerConfig {
    /// `T`, the number of training timesteps.
    pub num_train_timesteps: usize,
    /// First beta.
    pub beta_start: f64,
    /// Last beta.
    pub beta_end: f64,
    /// Beta schedule.
    pub beta_schedule: BetaSchedule,
    /// Prediction target.
    pub prediction_type: Prediction,
    /// Timestep spacing; `None` means the scheduler's own default (as in diffusers).
    pub timestep_spacing: Option<Spacing>,
    /// Added to leading-spaced timesteps.
    pub steps_offset: usize,
    /// DDIM: `ᾱ` before the first step is 1 (else `ᾱ_0`).
    pub set_alpha_to_one: bool,
    /// DDIM: clip the predicted `x₀` to `[-clip_sample_range, clip_sample_range]`.
    pub clip_sample: bool,
    /// Clip range for `clip_sample`.
    pub clip_sample_range: f64,
    /// Dynamic thresholding (not implemented: must be false).
    pub thresholding: bool,
    /// Karras sigmas (not implemented: must be false).
    pub use_karras_sigmas: bool,
    /// DPM-Solver variant (only `dpmsolver++`).
    pub algorithm_type: String,
    /// DPM-Solver order (1 or 2).
    pub solver_order: usize,
    /// DPM-Solver second-order update (only `midpoint`).
    pub solver_type: String,
    /// DPM-Solver's last sigma (only `zero`).
    pub final_sigmas_type: String,
}

impl Default for SchedulerConfig {
    /// diffusers' defaults.
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            prediction_type: Prediction::Epsilon,
            timestep_spacing: None,
            steps_offset: 0,
            set_alpha_to_one: true,
            clip_sample: true,
            clip_sample_range: 1.0,
            thresholding: false,
            use_karras_sigmas: false,
            algorithm_type: "dpmsolver++".into(),
            solver_order: 2,
            solver_type: "midpoint".into(),
            final_sigmas_type: "zero".into(),
        }
    }
}

/// A scheduler config that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchedulerError {
    /// Not JSON, or a field of the wrong type.
    #[error("invalid scheduler config: {0}")]
    Parse(String),
    /// A field whose value this crate does not implement.
    #[error("scheduler config field '{field}' = {found} is not supported; expected {expected}")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// Its value.
        found: String,
        /// What would work.
        expected: &'static str,
    },
}

impl SchedulerConfig {
    /// Stable Diffusion's schedule (scaled-linear betas 0.00085 -> 0.012, T = 1000, leading
    /// spacing with offset 1, epsilon prediction), as in its `scheduler_config.json`.
    pub fn stable_diffusion() -> Self {
        Self {
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            steps_offset: 1,
            set_alpha_to_one: false,
            clip_sample: false,
            ..Self::default()
        }
    }

    /// Parses the text of a `scheduler_config.json`. Python's `json` writes infinities as
    /// bare `Infinity`/`-Infinity` (diffusers' `lambda_min_clipped`), which JSON lacks; such
    /// values of fields this crate does not read are accepted.
    pub fn from_json(text: &str) -> Result<Self, SchedulerError> {
        serde_json::from_str(&python_non_finite_to_null(text))
            .map_err(|e| SchedulerError::Parse(e.to_string()))
    }

    /// Checks the fields every scheduler here needs.
    pub(crate) fn check_common(&self) -> Result<(), SchedulerError> {
        if self.thresholding {
            return Err(unsupported("thresholding", "true", "false"));
        }
        if self.use_karras_sigmas {
            return Err(unsupported("use_karras_sigmas", "true", "false"));
        }
        if self.num_train_timesteps < 2 {
            return Err(unsupported(
                "num_train_timesteps",
                &self.num_train_timesteps.to_string(),
                "at least 2",
            ));
        }
        Ok(())
    }
}

/// Refuses a number of inference steps outside `1..=max` (`expected` says the range in words).
pub(crate) fn check_steps(
    steps: usize,
    max: usize,
    expected: &'static str,
) -> Result<(), SchedulerError> {
    if steps == 0 || steps > max {
        return Err(unsupported(
            "num_inference_steps",
            &steps.to_string(),
            expected,
        ));
    }
    Ok(())
}

/// Replaces `-Infinity`, `Infinity` and `NaN` values (after a `:`) by `null`.
fn python_non_finite_to_null(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(colon) = rest.find(':') {
        out.push_str(&rest[..=colon]);
        rest = &rest[colon + 1..];
        let value = rest.trim_start();
        out.push_str(&rest[..rest.len() - value.len()]);
        rest = value;
        for token in ["-Infinity", "Infinity", "NaN"] {
            if let Some(after) = rest.strip_prefix(token) {
                out.push_str("null");
                rest = after;
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

pub(crate) fn unsupported(
    field: &'static str,
    found: &str,
    expected: &'static str,
) -> SchedulerError {
    SchedulerError::Unsupported {
        field,
        found: found.to_string(),
        expected,
    }
}
