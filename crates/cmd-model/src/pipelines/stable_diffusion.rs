//! A diffusers Stable Diffusion folder (`tokenizer/`, `text_encoder/`, `unet/`, `vae/`,
//! `scheduler/`) loaded as-is, and text-to-image sampling with it (diffusers'
//! `StableDiffusionPipeline` without the safety checker).
//!
//! Files are asked for through a reader callback with paths relative to the folder, so the CLI
//! reads them from disk and a browser from its cache with the same code.

use burn::tensor::{Device, Tensor};
use serde::de::DeserializeOwned;

use crate::clip::{ClipTextConfig, ClipTextModel};
use crate::schedulers::{SchedulerConfig, SchedulerError};
use crate::tokenizer::{ClipTokenizer, TokenizerError, Tokens};
use crate::unet::{Unet, UnetConfig};
use crate::vae::{Vae, VaeConfig};
use crate::weights::{TensorSet, load_tensors};

use super::denoise::{SamplingOptions, denoise};

/// Reads a file of the folder by relative path: `Ok(None)` when it does not exist.
pub type ReadFile<'a> = dyn FnMut(&str) -> Result<Option<Vec<u8>>, String> + 'a;

/// Why a model does not load (a diffusers folder, a single-file checkpoint or a CMD bundle):
/// the file (relative to the folder) and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: {message}")]
pub struct LoadError {
    /// The file, e.g. `unet/config.json`.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

fn fail<T>(file: &str, message: impl ToString) -> Result<T, LoadError> {
    Err(LoadError {
        file: file.to_string(),
        message: message.to_string(),
    })
}

/// The first of `names` that exists, with its contents.
fn first_of(read: &mut ReadFile, names: &[&str]) -> Result<(String, Vec<u8>), LoadError> {
    for name in names {
        match read(name) {
            Ok(Some(bytes)) => return Ok((name.to_string(), bytes)),
            Ok(None) => {}
            Err(message) => return fail(name, message),
        }
    }
    fail(names[0], "missing")
}

fn json<T: DeserializeOwned>(read: &mut ReadFile, file: &str) -> Result<T, LoadError> {
    let (_, bytes) = first_of(read, &[file])?;
    serde_json::from_slice(&bytes).or_else(|e| fail(file, format!("not a valid config: {e}")))
}

/// The weights of a diffusers part: `{stem}.safetensors`, its `fp16` variant, or either as
/// shards listed by a `.safetensors.index.json` (full precision first). Pickle files
/// (`.bin`) are refused, never read.
fn weights(read: &mut ReadFile, part: &str, stem: &str) -> Result<(String, TensorSet), LoadError> {
    for variant in ["", ".fp16"] {
        let file = format!("{part}/{stem}{variant}.safetensors");
        if let Some(bytes) = read(&file).or_else(|m| fail(&file, m))? {
            let set = TensorSet::from_safetensors(bytes, &file)
                .or_else(|e| fail(&file, strip_file(e.to_string(), &file)))?;
            return Ok((file, set));
        }
        let index = format!("{part}/{stem}.safetensors.index{variant}.json");
        if let Some(bytes) = read(&index).or_else(|m| fail(&index, m))? {
            return Ok((index.clone(), shards(read, part, &index, &bytes)?));
        }
    }
    // transformers names its pickles `pytorch_model.bin`, diffusers `{stem}.bin`.
    for name in [stem, "pytorch_model"] {
        for variant in ["", ".fp16"] {
            let pickle = format!("{part}/{name}{variant}.bin");
            if read(&pickle).or_else(|m| fail(&pickle, m))?.is_some() {
                return fail(&pickle, PICKLE_REFUSED);
            }
        }
    }
    fail(
        &format!("{part}/{stem}.safetensors"),
        "missing (and no .fp16 variant or .safetensors.index.json of shards either)",
    )
}

/// Why pickle checkpoints are not read, and what to do instead.
pub const PICKLE_REFUSED: &str = "a PyTorch pickle file, which is refused: unpickling it can run \
     arbitrary code. Convert it to safetensors once, in Python: \
     `from safetensors.torch import save_file; import torch; \
     save_file(torch.load(IN, weights_only=True), OUT)` (for a whole checkpoint, save its \
     \"state_dict\"), or with diffusers: `from_single_file(...).save_pretrained(DIR)`";

/// The shards an index (`weight_map`: key -> shard file) names, as one set.
fn shards(
    read: &mut ReadFile,
    part: &str,
    index: &str,
    bytes: &[u8],
) -> Result<TensorSet, LoadError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let map: Index = serde_json::from_slice(bytes)
        .or_else(|e| fail(index, format!("not a shard index (weight_map): {e}")))?;
    let mut files: Vec<&String> = map.weight_map.values().collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return fail(index, "its weight_map is empty");
    }
    let mut set = TensorSet::default();
    for shard in files {
        let file = format!("{part}/{shard}");
        let Some(bytes) = read(&file).or_else(|m| fail(&file, m))? else {
            return fail(&file, format!("missing: a shard named by {index}"));
        };
        let one = TensorSet::from_safetensors(bytes, &file)
            .or_else(|e| fail(&file, strip_file(e.to_string(), &file)))?;
        if let Some((key, _)) = map
            .weight_map
            .iter()
            .find(|(key, s)| *s == shard && one.get(key).is_none())
        {
            return fail(
                &file,
                format!("{index} puts '{key}' in this shard, but it is not there"),
            );
        }
        set.extend(one)
            .or_else(|e| fail(&file, strip_file(e.to_string(), &file)))?;
    }
    Ok(set)
}

/// The tokenizer of `tokenizer/`: its `tokenizer.json`, or `vocab.json` + `merges.txt`, with
/// the pad token of `tokenizer_config.json`.
pub fn load_tokenizer(read: &mut ReadFile) -> Result<ClipTokenizer, LoadError> {
    const CONFIG: &str = "tokenizer/tokenizer_config.json";
    let pad = match read(CONFIG) {
        Ok(Some(bytes)) => {
            let config: serde_json::Value = serde_json::from_slice(&bytes)
                .or_else(|e| fail(CONFIG, format!("not valid JSON: {e}")))?;
            // A string, or (older files) an AddedToken object with `content`.
            let pad = &config["pad_token"];
            pad.as_str()
                .or_else(|| pad["content"].as_str())
                .map(str::to_string)
        }
        Ok(None) => None,
        Err(message) => return fail(CONFIG, message),
    };
    let pad = pad.as_deref();
    let tokenizer_error = |file: &str, e: TokenizerError| fail(file, e);
    match read("tokenizer/tokenizer.json") {
        Ok(Some(bytes)) => ClipTokenizer::from_json(&bytes, pad)
            .or_else(|e| tokenizer_error("tokenizer/tokenizer.json", e)),
        Ok(None) => {
            let text = |read: &mut ReadFile, file: &str| -> Result<String, LoadError> {
                let (_, bytes) = first_of(read, &[file]).or_else(|_| {
                    fail(
                        file,
                        "missing (a tokenizer folder needs tokenizer.json, or vocab.json and merges.txt)",
                    )
                })?;
                String::from_utf8(bytes).or_else(|_| fail(file, "not UTF-8 text"))
            };
            let vocab = text(read, "tokenizer/vocab.json")?;
            let merges = text(read, "tokenizer/merges.txt")?;
            ClipTokenizer::from_vocab_merges(&vocab, &merges, pad)
                .or_else(|e| tokenizer_error("tokenizer/vocab.json + merges.txt", e))
        }
        Err(message) => fail("tokenizer/tokenizer.json", message),
    }
}

/// `text_encoder/`: a transformers `CLIPTextModel`.
pub fn load_text_encoder(
    read: &mut ReadFile,
    device: &Device,
) -> Result<(ClipTextConfig, ClipTextModel), LoadError> {
    let config: ClipTextConfig = json(read, "text_encoder/config.json")?;
    let mut model = config.init(device);
    let (file, tensors) = weights(read, "text_encoder", "model")?;
    load_tensors(
        &mut model,
        tensors,
        &file,
        ClipTextModel::IGNORED_KEYS,
        ClipTextModel::KEY_REMAPPING,
    )
    .or_else(|e| fail(&file, strip_file(e.to_string(), &file)))?;
    Ok((config, model))
}

/// `unet/`: a diffusers `UNet2DConditionModel`.
pub fn load_unet(read: &mut ReadFile, device: &Device) -> Result<(UnetConfig, Unet), LoadError> {
    const CONFIG: &str = "unet/config.json";
    let config: UnetConfig = json(read, CONFIG)?;
    let mut unet = config.init(device).or_else(|e| fail(CONFIG, e))?;
    let (file, tensors) = weights(read, "unet", "diffusion_pytorch_model")?;
    load_tensors(&mut unet, tensors, &file, &[], &config.key_remapping())
        .or_else(|e| fail(&file, strip_file(e.to_string(), &file)))?;
    Ok((config, unet))
}

/// `vae/`: a diffusers `AutoencoderKL`.
pub fn load_vae(read: &mut ReadFile, device: &Device) -> Result<(VaeConfig, Vae), LoadError> {
    const CONFIG: &str = "vae/config.json";
    let config: VaeConfig = json(read, CONFIG)?;
    let mut vae = config.init(device).or_else(|e| fail(CONFIG, e))?;
    let (file, tensors) = weights(read, "vae", "diffusion_pytorch_model")?;
    load_tensors(&mut vae, tensors, &file, &[], &VaeConfig::key_remapping())
        .or_else(|e| fail(&file, strip_file(e.to_string(), &file)))?;
    Ok((config, vae))
}

/// `scheduler/scheduler_config.json`.
pub fn load_scheduler(read: &mut ReadFile) -> Result<SchedulerConfig, LoadError> {
    const FILE: &str = "scheduler/scheduler_config.json";
    let (_, bytes) = first_of(read, &[FILE])?;
    let text = String::from_utf8(bytes).or_else(|_| fail(FILE, "not UTF-8 text"))?;
    let config = SchedulerConfig::from_json(&text).or_else(|e| fail(FILE, e))?;
    config.check_common().or_else(|e| fail(FILE, e))?;
    Ok(config)
}

/// `load_safetensors` names the file itself; the folder error names it once.
pub(crate) fn strip_file(message: String, file: &str) -> String {
    message
        .strip_prefix(&format!("{file}: "))
        .map(str::to_string)
        .unwrap_or(message)
}

/// Why sampling cannot run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SampleError {
    /// The prompt cannot be tokenised.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The scheduler refuses the options.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
    /// An image size the model cannot make.
    #[error("{0}")]
    Size(String),
    /// Generation options out of range.
    #[error(transparent)]
    Options(#[from] super::generation::OptionError),
    /// A step that cannot be taken now (see [`Generation::step_guided`](super::Generation::step_guided)).
    #[error("{0}")]
    Step(String),
}

/// Text states of a prompt, `[1, 77, D]`, and its tokens (which say whether the prompt was cut
/// to fit).
pub fn encode_prompt(
    tokenizer: &ClipTokenizer,
    text_encoder: &ClipTextModel,
    prompt: &str,
    device: &Device,
) -> Result<(Tensor<3>, Tokens), TokenizerError> {
    let tokens = tokenizer.encode(prompt)?;
    let states = text_encoder
        .encode(&tokens.ids, tokens.ids.len(), device)
        .last_hidden_state;
    Ok((states, tokens))
}

/// A whole Stable Diffusion model.
#[derive(Debug)]
pub struct StableDiffusion {
    /// The prompt tokenizer.
    pub tokenizer: ClipTokenizer,
    /// The text encoder's config.
    pub text_encoder_config: ClipTextConfig,
    /// The text encoder.
    pub text_encoder: ClipTextModel,
    /// The denoiser's config.
    pub unet_config: UnetConfig,
    /// The denoiser.
    pub unet: Unet,
    /// The image autoencoder's config (`scaling_factor`).
    pub vae_config: VaeConfig,
    /// The image autoencoder.
    pub vae: Vae,
    /// The noise schedule and its options.
    pub scheduler: SchedulerConfig,
}

/// The result of [`StableDiffusion::text_to_image`].
#[derive(Debug, Clone)]
pub struct TextToImage {
    /// Final (scaled) latents, `[1, 4, h, w]`.
    pub latents: Tensor<4>,
    /// The decoded image in `[0, 1]`, `[1, 3, H, W]`.
    pub image: Tensor<4>,
    /// The prompt was longer than 75 tokens and was cut.
    pub truncated: bool,
}

impl StableDiffusion {
    /// Loads every part of a folder, checking that they fit together.
    pub fn load(read: &mut ReadFile, device: &Device) -> Result<Self, LoadError> {
        let tokenizer = load_tokenizer(read)?;
        let text_encoder = load_text_encoder(read, device)?;
        let unet = load_unet(read, device)?;
        let vae = load_vae(read, device)?;
        let scheduler = load_scheduler(read)?;
        Self::from_parts(tokenizer, text_encoder, unet, vae, scheduler)
            .or_else(|message| fail("unet/config.json", message))
    }

    /// A model of loaded parts, or why they do not fit together.
    pub fn from_parts(
        tokenizer: ClipTokenizer,
        (text_encoder_config, text_encoder): (ClipTextConfig, ClipTextModel),
        (unet_config, unet): (UnetConfig, Unet),
        (vae_config, vae): (VaeConfig, Vae),
        scheduler: SchedulerConfig,
    ) -> Result<Self, String> {
        if unet_config.cross_attention_dim != text_encoder_config.hidden_size {
            return Err(format!(
                "the UNet's cross_attention_dim is {} but the text encoder's hidden_size is {}",
                unet_config.cross_attention_dim, text_encoder_config.hidden_size
            ));
        }
        if unet_config.in_channels != vae_config.latent_channels {
            return Err(format!(
                "the UNet's in_channels is {} but the VAE's latent_channels is {}",
                unet_config.in_channels, vae_config.latent_channels
            ));
        }
        Ok(Self {
            tokenizer,
            text_encoder_config,
            text_encoder,
            unet_config,
            unet,
            vae_config,
            vae,
            scheduler,
        })
    }

    /// The default image size, `(height, width)`: the UNet's `sample_size` in pixels.
    pub fn default_size(&self) -> (usize, usize) {
        let side = self.unet_config.sample_size * self.vae_config.scale_factor();
        (side, side)
    }

    /// The latent shape of one image, or why the size does not work.
    pub fn latent_shape(&self, height: usize, width: usize) -> Result<[usize; 4], SampleError> {
        let multiple = self.vae_config.scale_factor() * self.unet_config.size_multiple();
        for (name, v) in [("height", height), ("width", width)] {
            if v == 0 || !v.is_multiple_of(multiple) {
                return Err(SampleError::Size(format!(
                    "{name} {v}: must be a positive multiple of {multiple} for this model"
                )));
            }
        }
        let f = self.vae_config.scale_factor();
        Ok([1, self.unet_config.in_channels, height / f, width / f])
    }

    /// Samples an image for `prompt` from `noise` (standard normal, shaped by
    /// [`Self::latent_shape`]); `progress(done, total)` is called after each step.
    pub fn text_to_image(
        &self,
        prompt: &str,
        noise: Tensor<4>,
        options: &SamplingOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<TextToImage, SampleError> {
        let device = noise.device();
        let (cond, tokens) = encode_prompt(&self.tokenizer, &self.text_encoder, prompt, &device)?;
        let truncated = tokens.truncated;
        let (uncond, _) = encode_prompt(&self.tokenizer, &self.text_encoder, "", &device)?;
        let latents = denoise(
            &self.unet,
            &self.scheduler,
            &cond,
            &uncond,
            noise,
            options,
            progress,
        )?;
        let image = self.decode(latents.clone());
        Ok(TextToImage {
            latents,
            image,
            truncated,
        })
    }

    /// Decodes scaled latents to images in `[0, 1]`.
    pub fn decode(&self, latents: Tensor<4>) -> Tensor<4> {
        let z = latents.div_scalar(self.vae_config.scaling_factor);
        self.vae
            .decode(z)
            .div_scalar(2.0)
            .add_scalar(0.5)
            .clamp(0.0, 1.0)
    }
}
