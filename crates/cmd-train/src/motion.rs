//! Motion-model runs and whole CMD models assembled from the three runs.
//!
//! ```text
//! RUN/config.json                 MotionRunConfig (the autoencoder and content runs it uses)
//! RUN/metrics.csv                 step, loss, learning rate, seconds
//! RUN/checkpoints/step-000300/    dit.bpk, ema.bpk, optim.bpk, state.json
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use cmd_model::dit::DitConfig;
use cmd_model::pipelines::{CmdPipeline, Codec};
use serde::{Deserialize, Serialize};

use crate::content;
use crate::error::{Result, TrainError};
use crate::run::{Run, load_autoencoder, load_record, read_run_json};

/// What a motion run was made from.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MotionRunConfig {
    /// The autoencoder run (its encoder's motion latents are the training data).
    pub ae: PathBuf,
    /// The content run (its text encoder conditions the motion model; its UNet makes content
    /// frames when generating).
    pub content: PathBuf,
    /// The DiT.
    pub dit: DitConfig,
    /// EMA decay.
    pub ema: f64,
    /// Fraction of null (zero) text vectors in training.
    pub empty_prompt: f64,
}

/// Reads a motion run's `config.json`.
pub fn read_run_config(run: &Run) -> Result<MotionRunConfig> {
    read_run_json(run, "motion-model")
}

/// The whole model a motion run completes: its autoencoder, its content run (text encoder,
/// EMA UNet, VAE) and its own EMA DiT.
pub fn load_pipeline(dir: &Path, device: &Device) -> Result<CmdPipeline> {
    let run = Run::new(dir);
    let config = read_run_config(&run)?;
    let latest = run
        .latest()
        .ok_or_else(|| TrainError::path(dir, "the run has no checkpoint yet"))?;
    let autoencoder = load_autoencoder(&config.ae, device)?;
    let (_, model) = content::load_run(&config.content, device)?;
    let dit = load_record(config.dit.init(device)?, &latest.join("ema.bpk"), "DiT")?;
    Ok(CmdPipeline {
        tokenizer: model.tokenizer,
        text_encoder: model.text_encoder,
        content_unet: model.unet,
        content_unet_config: model.unet_config,
        content_scheduler: model.scheduler,
        dit,
        codec: Codec {
            autoencoder,
            vae: model.vae,
        },
    })
}
