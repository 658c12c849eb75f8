//! A whole pixel-mode CMD model in one folder of plain files, the form the CLI ships and a
//! browser fetches:
//!
//! ```text
//! model.json                  configs of every network and the content scheduler
//! tokenizer.json              the prompt tokenizer
//! autoencoder.safetensors     the video autoencoder
//! text_encoder.safetensors    the text encoder
//! unet.safetensors            the content UNet (EMA weights)
//! dit.safetensors             the motion DiT (EMA weights)
//! ```
//!
//! Weights are stored in PyTorch layout, in f16 or f32; they load into models of either type.
//!
//! An autoencoder ships on its own in the same form: a folder of `model.json` (its
//! [`AutoencoderBundle`]) and `autoencoder.safetensors`.

use burn::tensor::{DType, Device};
use burn_store::ModuleSnapshot;
use serde::{Deserialize, Serialize};

use crate::clip::ClipTextConfig;
use crate::dit::DitConfig;
use crate::schedulers::SchedulerConfig;
use crate::tokenizer::ClipTokenizer;
use crate::unet::UnetConfig;
use crate::weights::{load_safetensors, save_safetensors};
use crate::{Autoencoder, AutoencoderConfig};

use super::cmd::{CmdPipeline, Codec};
use super::stable_diffusion::{LoadError, ReadFile, strip_file};

/// `model.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct BundleConfig {
    /// The video autoencoder.
    pub autoencoder: AutoencoderConfig,
    /// The text encoder.
    pub text_encoder: ClipTextConfig,
    /// The content UNet.
    pub unet: UnetConfig,
    /// The content model's noise schedule.
    pub content_scheduler: SchedulerConfig,
    /// The motion DiT.
    pub dit: DitConfig,
}

/// `model.json` of a folder holding only an autoencoder.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AutoencoderBundle {
    /// The video autoencoder.
    pub autoencoder: AutoencoderConfig,
    /// The frame rate its training clips were sampled at, the rate to sample clips at for it
    /// (absent: clips were taken frame by frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
}

impl AutoencoderBundle {
    /// The files of an autoencoder folder (name, contents), weights stored as `dtype`.
    pub fn files(
        autoencoder: &Autoencoder,
        fps: Option<f64>,
        dtype: DType,
    ) -> Result<Vec<(String, Vec<u8>)>, String> {
        let config = Self {
            autoencoder: autoencoder.config().clone(),
            fps,
        };
        let json = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
        Ok(vec![
            ("model.json".into(), json.into_bytes()),
            (
                WEIGHT_FILES[0].into(),
                save_safetensors(autoencoder, dtype)?,
            ),
        ])
    }
}

/// The weight files of a bundle.
pub const WEIGHT_FILES: [&str; 4] = [
    "autoencoder.safetensors",
    "text_encoder.safetensors",
    "unet.safetensors",
    "dit.safetensors",
];

fn fail<T>(file: &str, message: impl ToString) -> Result<T, LoadError> {
    Err(LoadError {
        file: file.to_string(),
        message: message.to_string(),
    })
}

fn read(read: &mut ReadFile, file: &str) -> Result<Vec<u8>, LoadError> {
    match read(file) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => fail(file, "missing"),
        Err(message) => fail(file, message),
    }
}

/// Fills `model` from the bundle file `file`.
fn load_part<M: ModuleSnapshot>(
    model: &mut M,
    files: &mut ReadFile,
    file: &str,
) -> Result<(), LoadError> {
    let bytes = read(files, file)?;
    load_safetensors(model, bytes, file, &[], &[])
        .or_else(|e| fail(file, strip_file(e.to_string(), file)))
}

/// The autoencoder of a model folder: `model.json`'s `autoencoder` and
/// `autoencoder.safetensors` (a folder holding only these two is an autoencoder on its own).
pub fn load_bundle_autoencoder(
    files: &mut ReadFile,
    device: &Device,
) -> Result<Autoencoder, LoadError> {
    let config: AutoencoderBundle = serde_json::from_slice(&read(files, "model.json")?)
        .or_else(|e| fail("model.json", format!("not a model config: {e}")))?;
    let mut autoencoder = config
        .autoencoder
        .init(device)
        .or_else(|e| fail("model.json", e))?;
    load_part(&mut autoencoder, files, WEIGHT_FILES[0])?;
    Ok(autoencoder)
}

impl CmdPipeline {
    /// The bundle's files (name, contents), weights stored as `dtype` (f16 or f32). Only
    /// pixel-mode models can be bundled.
    pub fn to_bundle(&self, dtype: DType) -> Result<Vec<(String, Vec<u8>)>, String> {
        if self.codec.vae.is_some() {
            return Err(
                "latent-mode models (with a Stable Diffusion VAE) cannot be bundled".into(),
            );
        }
        let config = BundleConfig {
            autoencoder: self.codec.autoencoder.config().clone(),
            text_encoder: self.text_encoder.config().clone(),
            unet: self.content_unet_config.clone(),
            content_scheduler: self.content_scheduler.clone(),
            dit: self.dit.config().clone(),
        };
        let json = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
        Ok(vec![
            ("model.json".into(), json.into_bytes()),
            (
                "tokenizer.json".into(),
                self.tokenizer
                    .to_json()
                    .map_err(|e| e.to_string())?
                    .into_bytes(),
            ),
            (
                WEIGHT_FILES[0].into(),
                save_safetensors(&self.codec.autoencoder, dtype)?,
            ),
            (
                WEIGHT_FILES[1].into(),
                save_safetensors(&self.text_encoder, dtype)?,
            ),
            (
                WEIGHT_FILES[2].into(),
                save_safetensors(&self.content_unet, dtype)?,
            ),
            (WEIGHT_FILES[3].into(), save_safetensors(&self.dit, dtype)?),
        ])
    }

    /// Loads a bundle; the networks take the device's float type.
    pub fn from_bundle(files: &mut ReadFile, device: &Device) -> Result<Self, LoadError> {
        let config: BundleConfig = serde_json::from_slice(&read(files, "model.json")?)
            .or_else(|e| fail("model.json", format!("not a model config: {e}")))?;
        let tokenizer = ClipTokenizer::from_json(&read(files, "tokenizer.json")?, None)
            .or_else(|e| fail("tokenizer.json", e))?;
        let mut autoencoder = config
            .autoencoder
            .init(device)
            .or_else(|e| fail("model.json", e))?;
        let mut text_encoder = config.text_encoder.init(device);
        let mut unet = config
            .unet
            .init(device)
            .or_else(|e| fail("model.json", e))?;
        let mut dit = config.dit.init(device).or_else(|e| fail("model.json", e))?;
        let [ae_file, text_file, unet_file, dit_file] = WEIGHT_FILES;
        load_part(&mut autoencoder, files, ae_file)?;
        load_part(&mut text_encoder, files, text_file)?;
        load_part(&mut unet, files, unet_file)?;
        load_part(&mut dit, files, dit_file)?;
        Ok(Self {
            tokenizer,
            text_encoder,
            content_unet: unet,
            content_unet_config: config.unet,
            content_scheduler: config.content_scheduler,
            dit,
            codec: Codec {
                autoencoder,
                vae: None,
            },
        })
    }
}
