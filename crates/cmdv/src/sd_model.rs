//! Stable Diffusion folders on disk (diffusers layout), read through the model crate's loaders.

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::Device;
use cmd_model::pipelines::StableDiffusion;

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

/// Loads the whole folder.
pub fn load(dir: &Path, device: &Device) -> Result<StableDiffusion> {
    StableDiffusion::load(&mut reader(dir), device)
        .with_context(|| format!("Stable Diffusion folder {}", dir.display()))
}
