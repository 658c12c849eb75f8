//! Stable Diffusion models on disk: diffusers folders and single-file SD 1.x / 2.x
//! checkpoints, read through the model crate's loaders.

use std::path::Path;

use burn::tensor::Device;
use cmd_model::pipelines::StableDiffusion;
use cmd_model::pipelines::single_file::{Family, SingleFile};
use cmd_model::pipelines::stable_diffusion::PICKLE_REFUSED;
use cmd_model::schedulers::Prediction;
use cmd_model::tokenizer::CLIP_TOKENIZER_JSON;

use crate::error::{Result, TrainError};

/// True when `dir` looks like a diffusers Stable Diffusion folder.
pub fn is_sd_folder(dir: &Path) -> bool {
    dir.join("unet").join("config.json").is_file()
}

/// Reads files of `dir` by relative path for the model crate's loaders.
pub fn reader(dir: &Path) -> impl FnMut(&str) -> Result<Option<Vec<u8>>, String> + '_ {
    move |path: &str| match std::fs::read(dir.join(path)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read: {e}")),
    }
}

/// Reads a single-file checkpoint; a pickle (`.ckpt`, `.pt`, `.pth`, `.bin`) is refused
/// before it is read.
pub fn read_single_file(path: &Path) -> Result<SingleFile> {
    let name = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if matches!(ext.as_deref(), Some("ckpt" | "pt" | "pth" | "bin" | "pkl")) {
        return Err(TrainError::path(path, PICKLE_REFUSED));
    }
    let bytes =
        std::fs::read(path).map_err(|e| TrainError::path(path, format!("cannot read: {e}")))?;
    Ok(SingleFile::read(bytes, &name)?)
}

/// The error for a diffusers folder that does not load.
pub(crate) fn folder_error(
    dir: &Path,
) -> impl FnOnce(cmd_model::pipelines::stable_diffusion::LoadError) -> TrainError + '_ {
    move |source| TrainError::Load {
        what: format!("Stable Diffusion folder {}", dir.display()),
        source,
    }
}

/// Loads a whole model: a diffusers folder or a single file (whose family is returned too).
/// `prediction` overrides what the model predicts (a folder's scheduler config; a single
/// file's family default).
pub fn load(
    path: &Path,
    prediction: Option<Prediction>,
    device: &Device,
) -> Result<(StableDiffusion, Option<Family>)> {
    if is_sd_folder(path) {
        let mut sd =
            StableDiffusion::load(&mut reader(path), device).map_err(folder_error(path))?;
        if let Some(p) = prediction {
            sd.scheduler.prediction_type = p;
        }
        return Ok((sd, None));
    }
    let file = read_single_file(path)?;
    let family = file.family();
    let sd = file.load(CLIP_TOKENIZER_JSON, prediction, device)?;
    Ok((sd, Some(family)))
}
