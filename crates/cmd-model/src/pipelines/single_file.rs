//! Single-file Stable Diffusion 1.x / 2.x checkpoints: the original CompVis / Stability
//! layout (`v1-5-pruned-emaonly.safetensors`, `v2-1_768-ema-pruned.safetensors`, and the
//! community fine-tunes A1111 and ComfyUI load), read into the same diffusers-form models as a
//! folder.
//!
//! The layout: the UNet under `model.diffusion_model.` (`input_blocks`, `middle_block`,
//! `output_blocks`), the VAE under `first_stage_model.` (`encoder.down.N.block.M`, decoder
//! levels in reverse order, 1x1-conv attention weights), and the text encoder under
//! `cond_stage_model.transformer.` (SD 1.x: transformers' CLIP ViT-L) or
//! `cond_stage_model.model.` (SD 2.x: OpenCLIP ViT-H with fused `in_proj` attention, of which
//! SD 2.x uses the penultimate layer). Sizes come from the tensor shapes; what shapes cannot
//! tell is a constant of the family: SD 1.x has 8 attention heads per UNet block, SD 2.x 64
//! channels per head, CLIP 64 channels per head, GroupNorm 32 groups (or the narrowest width,
//! for test-sized models), and SD 2.x predicts `v` at 768 px unless told otherwise. The key
//! mapping is written from the two layouts.

use burn::tensor::Device;

use crate::clip::{ClipTextConfig, ClipTextModel, HiddenAct};
use crate::schedulers::{Prediction, SchedulerConfig};
use crate::tokenizer::ClipTokenizer;
use crate::unet::{PerBlock, Unet, UnetConfig};
use crate::vae::{Vae, VaeConfig};
use crate::weights::{TensorSet, load_tensors};

use super::stable_diffusion::{LoadError, StableDiffusion, strip_file};

const UNET: &str = "model.diffusion_model.";
const VAE: &str = "first_stage_model.";
const CLIP: &str = "cond_stage_model.transformer.";
const OPEN_CLIP: &str = "cond_stage_model.model.";

/// Which Stable Diffusion a single file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// SD 1.x: CLIP ViT-L text encoder, 1x1-conv projections, 8 heads per block.
    Sd1,
    /// SD 2.x: OpenCLIP ViT-H text encoder (penultimate layer), linear projections, 64-wide
    /// heads.
    Sd2,
}

impl Family {
    /// A name for messages: "SD 1.x" or "SD 2.x".
    pub fn name(self) -> &'static str {
        match self {
            Family::Sd1 => "SD 1.x",
            Family::Sd2 => "SD 2.x",
        }
    }

    /// What the family predicts by default: the noise for SD 1.x, `v` for SD 2.x (its 768-px
    /// models; the 512-px `-base` models predict the noise and need an override).
    pub fn default_prediction(self) -> Prediction {
        match self {
            Family::Sd1 => Prediction::Epsilon,
            Family::Sd2 => Prediction::V,
        }
    }

    /// The tokenizer's pad token: SD 2.x's tokenizer pads with `!`.
    fn pad_token(self) -> &'static str {
        match self {
            Family::Sd1 => "<|endoftext|>",
            Family::Sd2 => "!",
        }
    }
}

/// True when `bytes` start like a pickle or a zip archive (PyTorch's `.ckpt` / `.pt` / `.bin`)
/// rather than a safetensors header.
pub fn looks_like_pickle(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80)
}

/// A single-file checkpoint, read and recognised (only its header is parsed).
#[derive(Debug)]
pub struct SingleFile {
    file: String,
    family: Family,
    tensors: TensorSet,
}

impl SingleFile {
    /// Reads the safetensors `bytes` of `file` (a name for messages) and tells its family,
    /// or says what it is instead.
    pub fn read(bytes: Vec<u8>, file: &str) -> Result<Self, LoadError> {
        let fail = |message: String| LoadError {
            file: file.to_string(),
            message,
        };
        if looks_like_pickle(&bytes) {
            return Err(fail(super::stable_diffusion::PICKLE_REFUSED.to_string()));
        }
        let tensors = TensorSet::from_safetensors(bytes, file)
            .map_err(|e| fail(strip_file(e.to_string(), file)))?;
        let family = detect(&tensors).map_err(fail)?;
        Ok(Self {
            file: file.to_string(),
            family,
            tensors,
        })
    }

    /// The family found.
    pub fn family(&self) -> Family {
        self.family
    }

    fn fail<T>(&self, message: impl ToString) -> Result<T, LoadError> {
        Err(LoadError {
            file: self.file.clone(),
            message: message.to_string(),
        })
    }

    /// The tokenizer: CLIP's 49,408-token BPE (`tokenizer_json`, a `tokenizer.json`), with the
    /// family's pad token.
    pub fn tokenizer(&self, tokenizer_json: &[u8]) -> Result<ClipTokenizer, LoadError> {
        ClipTokenizer::from_json(tokenizer_json, Some(self.family.pad_token()))
            .or_else(|e| self.fail(format!("the bundled CLIP tokenizer: {e}")))
    }

    /// The text encoder, as transformers' `CLIPTextModel`.
    pub fn text_encoder(
        &self,
        device: &Device,
    ) -> Result<(ClipTextConfig, ClipTextModel), LoadError> {
        let (config, tensors) = match self.family {
            Family::Sd1 => {
                let tensors = self.tensors.clone().take_prefix(CLIP);
                (clip_config(&tensors).or_else(|e| self.fail(e))?, tensors)
            }
            Family::Sd2 => {
                let tensors = self.tensors.clone().take_prefix(OPEN_CLIP);
                let config = open_clip_config(&tensors).or_else(|e| self.fail(e))?;
                let tensors = open_clip_to_clip(tensors, config.num_hidden_layers)
                    .or_else(|e| self.fail(e))?;
                (config, tensors)
            }
        };
        let mut model = config.init(device);
        load_tensors(
            &mut model,
            tensors,
            &self.file,
            ClipTextModel::IGNORED_KEYS,
            ClipTextModel::KEY_REMAPPING,
        )
        .or_else(|e| {
            self.fail(format!(
                "text encoder: {}",
                strip_file(e.to_string(), &self.file)
            ))
        })?;
        Ok((config, model))
    }

    /// The UNet, as diffusers' `UNet2DConditionModel`; `prediction` sets its default image size
    /// (SD 2.x's `v` models are 768 px).
    pub fn unet(
        &self,
        prediction: Prediction,
        device: &Device,
    ) -> Result<(UnetConfig, Unet), LoadError> {
        let tensors = self.tensors.clone().take_prefix(UNET);
        let config = unet_config(&tensors, self.family, prediction).or_else(|e| self.fail(e))?;
        let mut unet = config.init(device).or_else(|e| self.fail(e))?;
        let levels = config.block_out_channels.len();
        let tensors = tensors.rename(|k| unet_key(k, config.layers_per_block, levels));
        load_tensors(&mut unet, tensors, &self.file, &[], &config.key_remapping())
            .or_else(|e| self.fail(format!("UNet: {}", strip_file(e.to_string(), &self.file))))?;
        Ok((config, unet))
    }

    /// The VAE, as diffusers' `AutoencoderKL`.
    pub fn vae(&self, device: &Device) -> Result<(VaeConfig, Vae), LoadError> {
        let mut tensors = self.tensors.clone().take_prefix(VAE);
        // Training checkpoints keep the VAE's discriminator.
        drop(tensors.take_prefix("loss."));
        let config = vae_config(&tensors).or_else(|e| self.fail(e))?;
        let mut vae = config.init(device).or_else(|e| self.fail(e))?;
        let tensors = ldm_vae_to_diffusers(tensors, config.block_out_channels.len())
            .or_else(|e| self.fail(e))?;
        load_tensors(&mut vae, tensors, &self.file, &[], &[])
            .or_else(|e| self.fail(format!("VAE: {}", strip_file(e.to_string(), &self.file))))?;
        Ok((config, vae))
    }

    /// Stable Diffusion's own noise schedule (scaled-linear betas 0.00085..0.012, 1000 steps)
    /// predicting `prediction`.
    pub fn scheduler(&self, prediction: Prediction) -> SchedulerConfig {
        SchedulerConfig {
            prediction_type: prediction,
            ..SchedulerConfig::stable_diffusion()
        }
    }

    /// The whole model; `prediction` overrides the family's default
    /// ([`Family::default_prediction`]).
    pub fn load(
        self,
        tokenizer_json: &[u8],
        prediction: Option<Prediction>,
        device: &Device,
    ) -> Result<StableDiffusion, LoadError> {
        let prediction = prediction.unwrap_or(self.family.default_prediction());
        StableDiffusion::from_parts(
            self.tokenizer(tokenizer_json)?,
            self.text_encoder(device)?,
            self.unet(prediction, device)?,
            self.vae(device)?,
            self.scheduler(prediction),
        )
        .or_else(|message| self.fail(message))
    }
}

/// The family of a checkpoint from its keys and shapes, or what it is instead.
fn detect(t: &TensorSet) -> Result<Family, String> {
    let cross = t
        .shape("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight")
        .and_then(|s| s.get(1).copied());
    let has = |prefix: &str| t.names().any(|k| k.starts_with(prefix));
    if has("conditioner.embedders.") {
        let width = cross
            .map(|c| format!(" with {c}-wide cross-attention"))
            .unwrap_or_default();
        return Err(format!(
            "a UNet{width} and text encoders under conditioner.embedders: an SDXL checkpoint, \
             which is not supported (only Stable Diffusion 1.x and 2.x)"
        ));
    }
    if !has(UNET) {
        let hint = if has("down_blocks.") || has("unet.") {
            " (it looks like a diffusers part: pass the diffusers folder instead)"
        } else {
            ""
        };
        return Err(format!(
            "not a Stable Diffusion checkpoint: no {UNET}* (UNet) keys among its {} tensors{hint}",
            t.len()
        ));
    }
    if has("model.diffusion_model.label_emb.") {
        let width = t
            .shape("model.diffusion_model.label_emb.0.0.weight")
            .and_then(|s| s.get(1).copied())
            .map(|c| format!(" ({c} wide)"))
            .unwrap_or_default();
        return Err(format!(
            "a UNet with a class embedding (label_emb{width}): an SDXL or unCLIP checkpoint, \
             which is not supported (only Stable Diffusion 1.x and 2.x)"
        ));
    }
    if !has(VAE) {
        return Err(format!(
            "no {VAE}* (VAE) keys: a UNet-only file; use a full checkpoint"
        ));
    }
    let family = if has(CLIP) {
        Family::Sd1
    } else if has(OPEN_CLIP) {
        Family::Sd2
    } else {
        return Err(format!(
            "no text encoder ({CLIP}* for SD 1.x or {OPEN_CLIP}* for SD 2.x)"
        ));
    };
    let in_channels = t
        .shape("model.diffusion_model.input_blocks.0.0.weight")
        .and_then(|s| s.get(1).copied());
    if let Some(c) = in_channels.filter(|c| *c != 4) {
        let kind = match c {
            9 => "an inpainting model",
            5 => "a depth-to-image model",
            8 => "an instruct-pix2pix model",
            _ => "not a text-to-image model",
        };
        return Err(format!(
            "its {} UNet takes {c} input channels, not 4: {kind}, which text-to-image sampling \
             cannot use",
            family.name()
        ));
    }
    Ok(family)
}

fn need<'a>(t: &'a TensorSet, key: &str, part: &str) -> Result<&'a [usize], String> {
    t.shape(key)
        .ok_or_else(|| format!("{part}: missing key '{key}'"))
}

/// Heads of a CLIP text encoder: 64 channels each (ViT-L: 12, ViT-H: 16).
fn clip_heads(width: usize) -> usize {
    (width / 64).max(1)
}

/// GroupNorm groups: SD's 32, or the narrowest width when that is smaller (test models).
fn groups(widths: &[usize]) -> usize {
    widths.iter().copied().min().unwrap_or(32).min(32)
}

fn count(t: &TensorSet, key: impl Fn(usize) -> String) -> usize {
    (0..).take_while(|i| t.get(&key(*i)).is_some()).count()
}

/// SD 1.x's text encoder (transformers' layout, with or without `text_model.`).
fn clip_config(t: &TensorSet) -> Result<ClipTextConfig, String> {
    let part = "text encoder";
    let prefix = if t
        .get("text_model.embeddings.token_embedding.weight")
        .is_some()
    {
        "text_model."
    } else {
        ""
    };
    let tokens = need(
        t,
        &format!("{prefix}embeddings.token_embedding.weight"),
        part,
    )?;
    let positions = need(
        t,
        &format!("{prefix}embeddings.position_embedding.weight"),
        part,
    )?;
    let fc1 = need(t, &format!("{prefix}encoder.layers.0.mlp.fc1.weight"), part)?;
    let layers = count(t, |i| format!("{prefix}encoder.layers.{i}.mlp.fc1.weight"));
    Ok(ClipTextConfig {
        vocab_size: tokens[0],
        hidden_size: tokens[1],
        intermediate_size: fc1[0],
        num_hidden_layers: layers,
        num_attention_heads: clip_heads(tokens[1]),
        max_position_embeddings: positions[0],
        hidden_act: HiddenAct::QuickGelu,
        ..ClipTextConfig::default()
    })
}

/// SD 2.x's OpenCLIP text encoder as a `CLIPTextModel`: one layer fewer than the file holds
/// (SD 2.x conditions on the penultimate layer, as diffusers stores it).
fn open_clip_config(t: &TensorSet) -> Result<ClipTextConfig, String> {
    let part = "OpenCLIP text encoder";
    let tokens = need(t, "token_embedding.weight", part)?;
    let positions = need(t, "positional_embedding", part)?;
    let fc = need(t, "transformer.resblocks.0.mlp.c_fc.weight", part)?;
    let blocks = count(t, |i| format!("transformer.resblocks.{i}.mlp.c_fc.weight"));
    if blocks < 2 {
        return Err(format!(
            "{part}: {blocks} residual block(s); SD 2.x uses the penultimate of at least 2"
        ));
    }
    Ok(ClipTextConfig {
        vocab_size: tokens[0],
        hidden_size: tokens[1],
        intermediate_size: fc[0],
        num_hidden_layers: blocks - 1,
        num_attention_heads: clip_heads(tokens[1]),
        max_position_embeddings: positions[0],
        hidden_act: HiddenAct::Gelu,
        ..ClipTextConfig::default()
    })
}

/// OpenCLIP's names to transformers' `CLIPTextModel`, splitting the fused `in_proj` into
/// `q`, `k`, `v` and leaving out the layers after `layers` and the projection heads.
fn open_clip_to_clip(mut t: TensorSet, layers: usize) -> Result<TensorSet, String> {
    let mut out = TensorSet::default();
    for i in 0..layers {
        let block = format!("transformer.resblocks.{i}.attn.");
        let layer = format!("text_model.encoder.layers.{i}.self_attn.");
        for (fused, kind) in [("in_proj_weight", "weight"), ("in_proj_bias", "bias")] {
            let key = format!("{block}{fused}");
            let entry = t
                .remove(&key)
                .ok_or_else(|| format!("OpenCLIP text encoder: missing key '{key}'"))?;
            let parts = entry.split_rows(3).ok_or_else(|| {
                format!(
                    "OpenCLIP text encoder: '{key}' has shape {:?}, not 3 stacked projections",
                    entry.shape
                )
            })?;
            for (proj, part) in ["q_proj", "k_proj", "v_proj"].iter().zip(parts) {
                out.insert(format!("{layer}{proj}.{kind}"), part);
            }
        }
    }
    let names: Vec<String> = t.names().map(str::to_string).collect();
    for name in names {
        let entry = t.remove(&name).expect("listed");
        let new = if let Some(rest) = name.strip_prefix("transformer.resblocks.") {
            let (index, rest) = rest.split_once('.').unwrap_or((rest, ""));
            match index.parse::<usize>() {
                Ok(i) if i >= layers => continue,
                Ok(i) => {
                    let rest = rest
                        .replacen("ln_1.", "layer_norm1.", 1)
                        .replacen("ln_2.", "layer_norm2.", 1)
                        .replacen("attn.out_proj.", "self_attn.out_proj.", 1)
                        .replacen("mlp.c_fc.", "mlp.fc1.", 1)
                        .replacen("mlp.c_proj.", "mlp.fc2.", 1);
                    format!("text_model.encoder.layers.{i}.{rest}")
                }
                Err(_) => name,
            }
        } else {
            match name.as_str() {
                "token_embedding.weight" => "text_model.embeddings.token_embedding.weight".into(),
                "positional_embedding" => "text_model.embeddings.position_embedding.weight".into(),
                "text_projection" | "logit_scale" | "attn_mask" => continue,
                _ if name.starts_with("visual.") => continue,
                _ => match name.strip_prefix("ln_final.") {
                    Some(rest) => format!("text_model.final_layer_norm.{rest}"),
                    None => name,
                },
            }
        };
        out.insert(new, entry);
    }
    Ok(out)
}

/// The UNet's sizes from its shapes.
fn unet_config(
    t: &TensorSet,
    family: Family,
    prediction: Prediction,
) -> Result<UnetConfig, String> {
    let part = "UNet";
    let conv_in = need(t, "input_blocks.0.0.weight", part)?;
    let conv_out = need(t, "out.2.weight", part)?;
    // input_blocks 1.. are ResNets (with a transformer at .1 when the level attends), a
    // downsampler (`op`) closing every level but the last.
    let mut levels: Vec<(usize, usize, bool)> = Vec::new(); // (width, resnets, attends)
    let (mut width, mut resnets, mut attends) = (0, 0, false);
    for k in 1.. {
        if t.get(&format!("input_blocks.{k}.0.op.weight")).is_some() {
            levels.push((width, resnets, attends));
            resnets = 0;
            continue;
        }
        let Some(shape) = t.shape(&format!("input_blocks.{k}.0.in_layers.2.weight")) else {
            break;
        };
        width = shape[0];
        resnets += 1;
        attends = t.get(&format!("input_blocks.{k}.1.norm.weight")).is_some();
    }
    if resnets == 0 {
        return Err(format!(
            "{part}: no ResNet blocks after the last downsampler"
        ));
    }
    levels.push((width, resnets, attends));
    let layers = levels[0].1;
    if let Some(level) = levels.iter().position(|l| l.1 != layers) {
        return Err(format!(
            "{part}: level {level} has {} ResNet blocks but level 0 has {layers}; \
             diffusers' UNet needs the same number at every level",
            levels[level].1
        ));
    }
    let first_attention = (1..)
        .take(levels.len() * (layers + 1))
        .find(|k| t.get(&format!("input_blocks.{k}.1.norm.weight")).is_some())
        .map(|k| format!("input_blocks.{k}.1."))
        .unwrap_or_else(|| "middle_block.1.".into());
    let to_k = need(
        t,
        &format!("{first_attention}transformer_blocks.0.attn2.to_k.weight"),
        part,
    )?;
    let proj_in = need(t, &format!("{first_attention}proj_in.weight"), part)?;
    if t.get(&format!(
        "{first_attention}transformer_blocks.1.norm1.weight"
    ))
    .is_some()
    {
        return Err(format!(
            "{part}: more than one transformer layer per attention block is not supported"
        ));
    }
    let widths: Vec<usize> = levels.iter().map(|l| l.0).collect();
    let attention_head_dim = match family {
        Family::Sd1 => PerBlock::One(8),
        Family::Sd2 => PerBlock::Each(widths.iter().map(|w| (w / 64).max(1)).collect()),
    };
    let down = |a: bool| {
        if a {
            "CrossAttnDownBlock2D"
        } else {
            "DownBlock2D"
        }
    };
    let up = |a: bool| if a { "CrossAttnUpBlock2D" } else { "UpBlock2D" };
    let vae_scale = 8;
    let side = match (family, prediction) {
        (Family::Sd2, Prediction::V) => 768,
        _ => 512,
    };
    Ok(UnetConfig {
        in_channels: conv_in[1],
        out_channels: conv_out[0],
        block_out_channels: widths.clone(),
        down_block_types: levels.iter().map(|l| down(l.2).to_string()).collect(),
        up_block_types: levels.iter().rev().map(|l| up(l.2).to_string()).collect(),
        layers_per_block: layers,
        norm_num_groups: groups(&widths),
        cross_attention_dim: to_k[1],
        attention_head_dim,
        use_linear_projection: proj_in.len() == 2,
        sample_size: side / vae_scale,
        ..UnetConfig::default()
    })
}

/// An LDM UNet key (without `model.diffusion_model.`) as diffusers names it.
fn unet_key(key: &str, layers: usize, levels: usize) -> String {
    let resnet = |rest: &str| {
        rest.replacen("in_layers.0.", "norm1.", 1)
            .replacen("in_layers.2.", "conv1.", 1)
            .replacen("emb_layers.1.", "time_emb_proj.", 1)
            .replacen("out_layers.0.", "norm2.", 1)
            .replacen("out_layers.3.", "conv2.", 1)
            .replacen("skip_connection.", "conv_shortcut.", 1)
    };
    let split = |rest: &str| -> Option<(usize, usize, String)> {
        let mut parts = rest.splitn(3, '.');
        let k = parts.next()?.parse().ok()?;
        let j = parts.next()?.parse().ok()?;
        Some((k, j, parts.next()?.to_string()))
    };
    let per_level = layers + 1;
    let renamed = [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
    ];
    for (from, to) in renamed {
        if let Some(rest) = key.strip_prefix(from) {
            return format!("{to}{rest}");
        }
    }
    if let Some((k, j, rest)) = key.strip_prefix("input_blocks.").and_then(split) {
        if k == 0 {
            return format!("conv_in.{rest}");
        }
        let (level, i) = ((k - 1) / per_level, (k - 1) % per_level);
        return match (i == layers, j) {
            (true, _) => format!(
                "down_blocks.{level}.downsamplers.0.conv.{}",
                rest.strip_prefix("op.").unwrap_or(&rest)
            ),
            (false, 0) => format!("down_blocks.{level}.resnets.{i}.{}", resnet(&rest)),
            (false, _) => format!("down_blocks.{level}.attentions.{i}.{rest}"),
        };
    }
    if let Some((k, rest)) = key
        .strip_prefix("middle_block.")
        .and_then(|r| r.split_once('.'))
    {
        return match k {
            "0" => format!("mid_block.resnets.0.{}", resnet(rest)),
            "1" => format!("mid_block.attentions.0.{rest}"),
            _ => format!("mid_block.resnets.1.{}", resnet(rest)),
        };
    }
    if let Some((k, j, rest)) = key.strip_prefix("output_blocks.").and_then(split) {
        let (level, i) = (k / per_level, k % per_level);
        // The upsampler (`conv` only) follows the ResNet, or its transformer; the last level
        // has none.
        let upsampler = j == 2 || (j == 1 && rest.starts_with("conv.") && level + 1 < levels);
        return if j == 0 {
            format!("up_blocks.{level}.resnets.{i}.{}", resnet(&rest))
        } else if upsampler {
            format!("up_blocks.{level}.upsamplers.0.{rest}")
        } else {
            format!("up_blocks.{level}.attentions.{i}.{rest}")
        };
    }
    key.to_string()
}

/// The VAE's sizes from its shapes.
fn vae_config(t: &TensorSet) -> Result<VaeConfig, String> {
    let part = "VAE";
    let conv_in = need(t, "encoder.conv_in.weight", part)?;
    let conv_out = need(t, "decoder.conv_out.weight", part)?;
    let latent = need(t, "decoder.conv_in.weight", part)?;
    let levels = count(t, |i| format!("encoder.down.{i}.block.0.conv1.weight"));
    let layers = count(t, |j| format!("encoder.down.0.block.{j}.conv1.weight"));
    if levels == 0 || layers == 0 {
        return Err(format!(
            "{part}: missing key 'encoder.down.0.block.0.conv1.weight'"
        ));
    }
    let widths: Vec<usize> = (0..levels)
        .map(|i| need(t, &format!("encoder.down.{i}.block.0.conv1.weight"), part).map(|s| s[0]))
        .collect::<Result<_, _>>()?;
    Ok(VaeConfig {
        in_channels: conv_in[1],
        out_channels: conv_out[0],
        block_out_channels: widths.clone(),
        layers_per_block: layers,
        latent_channels: latent[1],
        norm_num_groups: groups(&widths),
        scaling_factor: 0.18215,
        down_block_types: vec!["DownEncoderBlock2D".into(); levels],
        up_block_types: vec!["UpDecoderBlock2D".into(); levels],
        mid_block_add_attention: t.get("encoder.mid.attn_1.q.weight").is_some(),
        use_quant_conv: t.get("quant_conv.weight").is_some(),
        use_post_quant_conv: t.get("post_quant_conv.weight").is_some(),
        ..VaeConfig::default()
    })
}

/// LDM VAE names to diffusers', with the decoder's levels reversed and the mid-block
/// attention's 1x1-conv weights as linear ones.
fn ldm_vae_to_diffusers(mut t: TensorSet, levels: usize) -> Result<TensorSet, String> {
    let mut out = TensorSet::default();
    let names: Vec<String> = t.names().map(str::to_string).collect();
    for name in names {
        let mut entry = t.remove(&name).expect("listed");
        let (coder, rest) = name.split_once('.').unwrap_or(("", name.as_str()));
        let mut new = name.clone();
        if let Some(rest) = rest
            .strip_prefix("down.")
            .or_else(|| rest.strip_prefix("up."))
        {
            let (i, rest) = rest.split_once('.').unwrap_or((rest, ""));
            let i: usize = i
                .parse()
                .map_err(|_| format!("VAE: unexpected key '{name}'"))?;
            let level = if coder == "decoder" {
                levels
                    .checked_sub(i + 1)
                    .ok_or_else(|| format!("VAE: unexpected key '{name}'"))?
            } else {
                i
            };
            let blocks = if coder == "decoder" {
                "up_blocks"
            } else {
                "down_blocks"
            };
            let rest = rest
                .replacen("block.", "resnets.", 1)
                .replacen("downsample.", "downsamplers.0.", 1)
                .replacen("upsample.", "upsamplers.0.", 1);
            new = format!("{coder}.{blocks}.{level}.{rest}");
        } else if let Some(rest) = rest.strip_prefix("mid.") {
            let attention = [
                ("attn_1.norm.", "attentions.0.group_norm."),
                ("attn_1.q.", "attentions.0.to_q."),
                ("attn_1.k.", "attentions.0.to_k."),
                ("attn_1.v.", "attentions.0.to_v."),
                ("attn_1.proj_out.", "attentions.0.to_out.0."),
            ];
            let rest =
                rest.replacen("block_1.", "resnets.0.", 1)
                    .replacen("block_2.", "resnets.1.", 1);
            let mut renamed = rest.clone();
            for (from, to) in attention {
                if let Some(tail) = rest.strip_prefix(from) {
                    renamed = format!("{to}{tail}");
                    // [C, C, 1, 1] conv weights of LDM are diffusers' [C, C] linear ones.
                    if to != "attentions.0.group_norm." && entry.shape.len() == 4 {
                        let shape = entry.shape[..2].to_vec();
                        entry = entry
                            .reshaped(shape)
                            .ok_or_else(|| format!("VAE: '{name}' is not a 1x1 convolution"))?;
                    }
                }
            }
            new = format!("{coder}.mid_block.{renamed}");
        } else if let Some(rest) = rest.strip_prefix("norm_out.") {
            new = format!("{coder}.conv_norm_out.{rest}");
        }
        out.insert(new.replacen("nin_shortcut.", "conv_shortcut.", 1), entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unet_keys_follow_diffusers_numbering() {
        // SD's own layout: 2 ResNets per level, 4 levels.
        let cases = [
            ("time_embed.0.weight", "time_embedding.linear_1.weight"),
            ("time_embed.2.bias", "time_embedding.linear_2.bias"),
            ("input_blocks.0.0.weight", "conv_in.weight"),
            (
                "input_blocks.2.0.in_layers.2.weight",
                "down_blocks.0.resnets.1.conv1.weight",
            ),
            (
                "input_blocks.2.1.proj_in.weight",
                "down_blocks.0.attentions.1.proj_in.weight",
            ),
            (
                "input_blocks.3.0.op.weight",
                "down_blocks.0.downsamplers.0.conv.weight",
            ),
            (
                "input_blocks.4.0.skip_connection.bias",
                "down_blocks.1.resnets.0.conv_shortcut.bias",
            ),
            (
                "input_blocks.11.0.emb_layers.1.weight",
                "down_blocks.3.resnets.1.time_emb_proj.weight",
            ),
            (
                "middle_block.1.norm.weight",
                "mid_block.attentions.0.norm.weight",
            ),
            (
                "middle_block.2.out_layers.3.weight",
                "mid_block.resnets.1.conv2.weight",
            ),
            (
                "output_blocks.2.1.conv.weight",
                "up_blocks.0.upsamplers.0.conv.weight",
            ),
            (
                "output_blocks.5.1.norm.bias",
                "up_blocks.1.attentions.2.norm.bias",
            ),
            (
                "output_blocks.5.2.conv.bias",
                "up_blocks.1.upsamplers.0.conv.bias",
            ),
            (
                "output_blocks.11.1.proj_out.weight",
                "up_blocks.3.attentions.2.proj_out.weight",
            ),
            (
                "output_blocks.11.0.out_layers.0.weight",
                "up_blocks.3.resnets.2.norm2.weight",
            ),
            ("out.0.weight", "conv_norm_out.weight"),
            ("out.2.bias", "conv_out.bias"),
        ];
        for (ldm, diffusers) in cases {
            assert_eq!(unet_key(ldm, 2, 4), diffusers, "{ldm}");
        }
    }

    #[test]
    fn pickles_are_recognised_by_their_first_bytes() {
        assert!(looks_like_pickle(b"PK\x03\x04rest of a zip"));
        assert!(looks_like_pickle(&[0x80, 0x02, b'}']));
        assert!(!looks_like_pickle(&[16, 0, 0, 0, 0, 0, 0, 0, b'{']));
    }
}
