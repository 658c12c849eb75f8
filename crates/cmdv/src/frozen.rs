//! The frozen parts a diffusion trainer runs on every training device: the autoencoder that
//! makes content frames and motion latents, the text encoder, and (latent mode) Stable
//! Diffusion's VAE.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use cmd_model::clip::ClipTextModel;
use cmd_model::tokenizer::ClipTokenizer;
use cmd_model::vae::{Vae, VaeConfig};
use cmd_model::{Autoencoder, Encoded};

/// Frozen models on one device.
#[derive(Clone)]
pub struct Frozen {
    /// The autoencoder.
    pub ae: Autoencoder,
    /// The text encoder.
    pub text_encoder: ClipTextModel,
    /// Stable Diffusion's VAE (latent mode).
    pub vae: Option<(VaeConfig, Vae)>,
}

impl Frozen {
    /// The same models, gradient-free, on each of `devices`.
    pub fn on_each(self, devices: &[Device]) -> Vec<Self> {
        devices
            .iter()
            .map(|device| Self {
                ae: self.ae.clone().to_device(device).no_grad(),
                text_encoder: self.text_encoder.clone().to_device(device).no_grad(),
                vae: self
                    .vae
                    .clone()
                    .map(|(c, vae)| (c, vae.to_device(device).no_grad())),
            })
            .collect()
    }

    /// Content frames and motion latents of clips `[B, L, 3, H, W]` (in latent mode the frames
    /// go through the VAE first, scaled by its `scaling_factor`), detached.
    pub fn encode(&self, x: Tensor<5>) -> Encoded {
        let x = match &self.vae {
            Some((config, vae)) => vae.encode_clips(x, config.scaling_factor),
            None => x,
        };
        let encoded = self.ae.encode(x);
        Encoded {
            content: encoded.content.detach(),
            weights: encoded.weights.detach(),
            motion: encoded.motion.detach(),
        }
    }

    /// Text states for prompts, `[B, 77, D]` (prompts longer than 75 tokens are cut).
    pub fn encode_prompts(
        &self,
        tokenizer: &ClipTokenizer,
        prompts: &[String],
        device: &Device,
    ) -> Result<Tensor<3>> {
        let mut ids = Vec::with_capacity(prompts.len() * ClipTokenizer::MAX_LEN);
        for prompt in prompts {
            ids.extend(tokenizer.encode(prompt)?.ids);
        }
        Ok(self
            .text_encoder
            .encode(&ids, ClipTokenizer::MAX_LEN, device)
            .last_hidden_state)
    }
}
