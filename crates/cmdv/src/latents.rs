//! Stable Diffusion VAE latents of frames, for latent-mode autoencoders (spec: C = 4, H/8 x W/8).
//! A latent-mode run records the folder of its VAE in `RUN/vae.json`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use cmd_model::pipelines::stable_diffusion::load_vae;
use cmd_model::vae::{Vae, VaeConfig};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Run;
use crate::sd_model;

/// `RUN/vae.json`.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct VaeRecord {
    /// The Stable Diffusion folder (absolute).
    folder: PathBuf,
}

/// A frozen Stable Diffusion VAE.
pub struct FrameVae {
    /// Its folder (absolute).
    pub folder: PathBuf,
    /// Its config (`scaling_factor`, scale factor).
    pub config: VaeConfig,
    vae: Vae,
}

impl FrameVae {
    /// Loads the VAE of the Stable Diffusion folder `folder`, frozen.
    pub fn load(folder: &Path, device: &Device) -> Result<Self> {
        let folder =
            std::path::absolute(folder).with_context(|| format!("--vae {}", folder.display()))?;
        let (config, vae) = if folder.is_file() {
            sd_model::read_single_file(&folder)?.vae(device)?
        } else if folder.join("vae").join("config.json").is_file() {
            load_vae(&mut sd_model::reader(&folder), device)
                .with_context(|| format!("Stable Diffusion folder {}", folder.display()))?
        } else {
            bail!(
                "--vae {}: neither a Stable Diffusion folder (no vae/config.json) nor a \
                 single-file checkpoint",
                folder.display()
            );
        };
        Ok(Self {
            folder,
            config,
            vae: vae.no_grad(),
        })
    }

    /// The same VAE on `device`.
    pub fn to_device(&self, device: &Device) -> Self {
        Self {
            folder: self.folder.clone(),
            config: self.config.clone(),
            vae: self.vae.clone().to_device(device).no_grad(),
        }
    }

    /// The VAE itself.
    pub fn into_vae(self) -> Vae {
        self.vae
    }

    /// Scaled latents of clips: `[B, L, 3, H, W]` -> `[B, L, 4, H/f, W/f]`.
    pub fn encode(&self, x: Tensor<5>) -> Tensor<5> {
        self.vae
            .encode_clips(x, self.config.scaling_factor)
            .detach()
    }
}

/// The VAE of a latent-mode training run: for a new run it is recorded in `RUN/vae.json`; a
/// resumed run must use the one it started with.
pub fn open(folder: &Path, run: &Run, resume: bool, device: &Device) -> Result<FrameVae> {
    let vae = FrameVae::load(folder, device)?;
    let path = run.dir().join("vae.json");
    if resume {
        if let Some(recorded) = recorded(run.dir())?
            && recorded != vae.folder
        {
            bail!(
                "{}: the run was started with --vae {}, not {}",
                path.display(),
                recorded.display(),
                vae.folder.display()
            );
        }
    } else if run.latest().is_none() {
        std::fs::create_dir_all(run.dir())
            .with_context(|| format!("cannot create {}", run.dir().display()))?;
        let json = serde_json::to_string_pretty(&VaeRecord {
            folder: vae.folder.clone(),
        })?;
        cmd_video::write_bytes_atomic(&path, json.as_bytes())?;
    }
    Ok(vae)
}

/// The VAE folder a run recorded, if any.
pub fn recorded(run_dir: &Path) -> Result<Option<PathBuf>> {
    let path = run_dir.join("vae.json");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let record: VaeRecord = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a VAE record", path.display()))?;
    Ok(Some(record.folder))
}
