//! Content-frame models (spec section 2): a text-conditioned UNet over the content frames of a
//! trained autoencoder, started from a Stable Diffusion folder (fine-tuning, no new parameters)
//! or from the small `tiny` preset (trained from scratch, with a frozen random text encoder).
//!
//! ```text
//! RUN/config.json                 ContentRunConfig
//! RUN/text_encoder.bpk            preset bases only: the frozen text encoder
//! RUN/tokenizer.json              preset bases only: its tokenizer
//! RUN/metrics.csv                 step, loss, learning rate, seconds
//! RUN/checkpoints/step-000300/    unet.bpk, ema.bpk, optim.bpk, state.json
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use cmd_model::clip::{ClipTextConfig, ClipTextModel};
use cmd_model::pipelines::stable_diffusion::{
    load_scheduler, load_text_encoder, load_tokenizer, load_unet, load_vae,
};
use cmd_model::schedulers::SchedulerConfig;
use cmd_model::tokenizer::{CLIP_TOKENIZER_JSON, ClipTokenizer};
use cmd_model::unet::{Unet, UnetConfig};
use cmd_model::vae::{Vae, VaeConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Result, Setting, TrainError};
use crate::run::{Run, load_record, read_run_json};
use crate::sd_files;

/// The bases that are not folders: `tiny` (CLIP's vocabulary, for any captions) and
/// `teaching` (a compact vocabulary for the teaching dataset's captions, and a smaller text
/// encoder: what the shipped model uses).
pub const PRESET_BASES: [&str; 2] = ["tiny", "teaching"];

/// What a content run was made from.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ContentRunConfig {
    /// The autoencoder run whose content frames the model learns.
    pub ae: PathBuf,
    /// A preset name or the Stable Diffusion folder it started from.
    pub base: String,
    /// Content frames are Stable Diffusion latents (decoded with the base's VAE).
    pub latent: bool,
    /// Height and width of the content frames.
    pub size: usize,
    /// The UNet.
    pub unet: UnetConfig,
    /// The (frozen) text encoder.
    pub text_encoder: ClipTextConfig,
    /// The noise schedule and prediction target the UNet is trained for.
    pub scheduler: SchedulerConfig,
    /// EMA decay.
    pub ema: f64,
    /// Fraction of empty prompts in training.
    pub empty_prompt: f64,
}

/// A content model: everything needed to train or sample it.
pub struct ContentModel {
    /// The prompt tokenizer.
    pub tokenizer: ClipTokenizer,
    /// The frozen text encoder.
    pub text_encoder: ClipTextModel,
    /// Its config.
    pub text_config: ClipTextConfig,
    /// The denoiser.
    pub unet: Unet,
    /// Its config.
    pub unet_config: UnetConfig,
    /// The noise schedule.
    pub scheduler: SchedulerConfig,
    /// Stable Diffusion's VAE, for latent-mode content frames.
    pub vae: Option<(VaeConfig, Vae)>,
}

/// The model `base` names, for content frames of `channels x size x size` (`latent`: SD
/// latents). Preset parts are random (seed the device first).
pub fn from_base(
    base: &str,
    channels: usize,
    size: usize,
    latent: bool,
    device: &Device,
) -> Result<ContentModel> {
    let refuse = |message: String| TrainError::setting(Setting::Base, message);
    if PRESET_BASES.contains(&base) {
        if latent {
            return Err(refuse(format!(
                "{base}: a preset has no Stable Diffusion VAE; latent-mode autoencoders need a \
                 Stable Diffusion model as their base"
            )));
        }
        let (tokenizer, text_config, unet_config) = if base == "teaching" {
            let tokenizer = ClipTokenizer::for_words(&cmd_teaching::dataset::vocabulary())?;
            let text = ClipTextConfig::teaching(tokenizer.vocab_size(), tokenizer.eos_id());
            (tokenizer, text, UnetConfig::teaching(channels, size))
        } else {
            let tokenizer = ClipTokenizer::from_json(CLIP_TOKENIZER_JSON, None)?;
            (
                tokenizer,
                ClipTextConfig::tiny(),
                UnetConfig::tiny(channels, size),
            )
        };
        return Ok(ContentModel {
            tokenizer,
            text_encoder: text_config.init(device),
            text_config,
            unet: unet_config.init(device)?,
            unet_config,
            scheduler: SchedulerConfig::stable_diffusion(),
            vae: None,
        });
    }
    let dir = Path::new(base);
    let (tokenizer, (text_config, text_encoder), (unet_config, unet), scheduler, vae) =
        if dir.is_file() {
            let file = sd_files::read_single_file(dir)?;
            let prediction = file.family().default_prediction();
            let vae = if latent {
                Some(file.vae(device)?)
            } else {
                None
            };
            (
                file.tokenizer(CLIP_TOKENIZER_JSON)?,
                file.text_encoder(device)?,
                file.unet(prediction, device)?,
                file.scheduler(prediction),
                vae,
            )
        } else if sd_files::is_sd_folder(dir) {
            let context = sd_files::folder_error;
            let mut read = sd_files::reader(dir);
            let tokenizer = load_tokenizer(&mut read).map_err(context(dir))?;
            let text = load_text_encoder(&mut read, device).map_err(context(dir))?;
            let unet = load_unet(&mut read, device).map_err(context(dir))?;
            let scheduler = load_scheduler(&mut read).map_err(context(dir))?;
            let vae = if latent {
                Some(load_vae(&mut read, device).map_err(context(dir))?)
            } else {
                None
            };
            (tokenizer, text, unet, scheduler, vae)
        } else {
            return Err(refuse(format!(
                "{base}: neither a preset ({}), a Stable Diffusion folder (no unet/config.json) \
                 nor a single-file checkpoint",
                PRESET_BASES.join(", ")
            )));
        };
    if unet_config.in_channels != channels || unet_config.out_channels != channels {
        return Err(refuse(format!(
            "{base}: its UNet takes {} channels, but the autoencoder's content frames have \
             {channels} ({}); use the tiny preset as the base of pixel-mode autoencoders",
            unet_config.in_channels,
            if latent { "latent mode" } else { "pixel mode" }
        )));
    }
    Ok(ContentModel {
        tokenizer,
        text_encoder,
        text_config,
        unet,
        unet_config,
        scheduler,
        vae,
    })
}

/// Reads a content run's `config.json`.
pub fn read_run_config(run: &Run) -> Result<ContentRunConfig> {
    read_run_json(run, "content-model")
}

/// `RUN/text_encoder.bpk`.
pub fn text_encoder_path(dir: &Path) -> PathBuf {
    dir.join("text_encoder.bpk")
}

/// `RUN/tokenizer.json`: preset runs keep their tokenizer with their text encoder.
pub fn tokenizer_path(dir: &Path) -> PathBuf {
    dir.join("tokenizer.json")
}

/// Loads a content run for sampling: its base's parts and the newest checkpoint's EMA UNet.
pub fn load_run(dir: &Path, device: &Device) -> Result<(ContentRunConfig, ContentModel)> {
    let run = Run::new(dir);
    let config = read_run_config(&run)?;
    let latest = run
        .latest()
        .ok_or_else(|| TrainError::path(dir, "the run has no checkpoint yet"))?;
    let channels = config.unet.in_channels;
    let mut model = from_base(&config.base, channels, config.size, config.latent, device)?;
    if PRESET_BASES.contains(&config.base.as_str()) {
        let path = tokenizer_path(dir);
        let json = std::fs::read(&path).map_err(|e| {
            TrainError::path(&path, format!("cannot read the run's tokenizer: {e}"))
        })?;
        model.tokenizer = ClipTokenizer::from_json(&json, None)
            .map_err(|e| TrainError::path(&path, format!("not a tokenizer: {e}")))?;
        model.text_encoder = load_record(
            config.text_encoder.init(device),
            &text_encoder_path(dir),
            "text encoder",
        )?;
    }
    model.unet = load_record(config.unet.init(device)?, &latest.join("ema.bpk"), "UNet")?;
    model.unet_config = config.unet.clone();
    model.scheduler = config.scheduler.clone();
    Ok((config, model))
}
