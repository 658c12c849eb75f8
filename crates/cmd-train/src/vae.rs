//! Stable Diffusion's VAE, frozen, for latent-mode autoencoders (spec: C = 4, H/8 x W/8). A
//! latent-mode run records the model it took the VAE from in `RUN/vae.json`.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use cmd_model::pipelines::stable_diffusion::load_vae;
use cmd_model::vae::{Vae, VaeConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Result, Setting, TrainError};
use crate::run::{Run, read_json, write_json};
use crate::sd_files;

/// `RUN/vae.json`.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct VaeRecord {
    /// The Stable Diffusion folder or single file (absolute).
    folder: PathBuf,
}

/// The VAE of the Stable Diffusion folder or single-file checkpoint `path`, frozen.
pub fn load_sd_vae(path: &Path, device: &Device) -> Result<(VaeConfig, Vae)> {
    let (config, vae) = if path.is_file() {
        sd_files::read_single_file(path)?.vae(device)?
    } else if path.join("vae").join("config.json").is_file() {
        load_vae(&mut sd_files::reader(path), device).map_err(sd_files::folder_error(path))?
    } else {
        return Err(TrainError::setting(
            Setting::Vae,
            format!(
                "{}: neither a Stable Diffusion folder (no vae/config.json) nor a single-file \
                 checkpoint",
                path.display()
            ),
        ));
    };
    Ok((config, vae.no_grad()))
}

/// The VAE of a latent-mode training run, from `path`: a new run records it in
/// `RUN/vae.json`; a resumed run must use the one it started with.
pub fn open(path: &Path, run: &Run, resume: bool, device: &Device) -> Result<(VaeConfig, Vae)> {
    let path = absolute(path)?;
    let vae = load_sd_vae(&path, device)?;
    let record = run.dir().join("vae.json");
    if resume {
        if let Some(recorded) = recorded(run.dir())?
            && recorded != path
        {
            return Err(TrainError::setting(
                Setting::Vae,
                format!(
                    "{}: the run was started with the VAE of {}",
                    path.display(),
                    recorded.display()
                ),
            ));
        }
    } else if run.latest().is_none() {
        std::fs::create_dir_all(run.dir())
            .map_err(|e| TrainError::path(run.dir(), format!("cannot create the folder: {e}")))?;
        write_json(&record, &VaeRecord { folder: path })?;
    }
    Ok(vae)
}

/// The Stable Diffusion model whose VAE a run recorded, if any.
pub fn recorded(run_dir: &Path) -> Result<Option<PathBuf>> {
    let path = run_dir.join("vae.json");
    if !path.exists() {
        return Ok(None);
    }
    let record: VaeRecord = read_json(&path, "VAE record")?;
    Ok(Some(record.folder))
}

/// A path as a run records it (absolute, so the run can be used from anywhere).
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| TrainError::path(path, e))
}
