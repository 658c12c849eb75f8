//! Stable Diffusion's VAE in the form of diffusers' `AutoencoderKL` (the `vae/` folder):
//! encoder (ResNet down blocks, a mid block with one self-attention), diagonal-Gaussian
//! latent, decoder (mid block, ResNet up blocks with nearest-neighbour upsampling). Field names
//! equal the checkpoint keys (`encoder.down_blocks.N.resnets.M.norm1`, ...).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use serde::Deserialize;

use crate::kernels;
use crate::resnet::{Resnet, conv2d, downsample_conv, upsample_nearest};

/// The fields of a diffusers `AutoencoderKL` `config.json` the model needs.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct VaeConfig {
    /// Image channels in.
    pub in_channels: usize,
    /// Image channels out.
    pub out_channels: usize,
    /// Width of each resolution level.
    pub block_out_channels: Vec<usize>,
    /// ResNet blocks per encoder level (the decoder has one more).
    pub layers_per_block: usize,
    /// Latent channels (4 for Stable Diffusion).
    pub latent_channels: usize,
    /// GroupNorm groups.
    pub norm_num_groups: usize,
    /// Latents are multiplied by this before diffusion (0.18215 for SD1.x/2.x).
    pub scaling_factor: f64,
    /// Encoder block types (only `DownEncoderBlock2D`).
    pub down_block_types: Vec<String>,
    /// Decoder block types (only `UpDecoderBlock2D`).
    pub up_block_types: Vec<String>,
    /// Activation (only `silu`).
    pub act_fn: String,
    /// Whether the mid blocks have attention.
    pub mid_block_add_attention: bool,
    /// 1x1 conv on the moments (true for SD).
    pub use_quant_conv: bool,
    /// 1x1 conv on latents before decoding (true for SD).
    pub use_post_quant_conv: bool,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            block_out_channels: vec![64],
            layers_per_block: 1,
            latent_channels: 4,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
            down_block_types: vec!["DownEncoderBlock2D".into()],
            up_block_types: vec!["UpDecoderBlock2D".into()],
            act_fn: "silu".into(),
            mid_block_add_attention: true,
            use_quant_conv: true,
            use_post_quant_conv: true,
        }
    }
}

/// A VAE config this crate cannot build, naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("vae config field '{field}': {message}")]
pub struct VaeConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

const EPS: f64 = 1e-6;

/// Refuses any entry of `types` other than `allowed`, naming `field`.
fn only(field: &'static str, types: &[String], allowed: &str) -> Result<(), VaeConfigError> {
    match types.iter().find(|t| *t != allowed) {
        Some(t) => Err(VaeConfigError {
            field,
            message: format!("'{t}' is not supported ({allowed})"),
        }),
        None => Ok(()),
    }
}

impl VaeConfig {
    /// How much smaller latents are than images: `2^(levels - 1)` (8 for Stable Diffusion).
    pub fn scale_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    /// Renames for checkpoints converted before diffusers renamed the mid-block attention
    /// (`query`, `key`, `value`, `proj_attn`; Stable Diffusion 1.5's own VAE file uses them).
    pub fn key_remapping() -> Vec<(&'static str, &'static str)> {
        vec![
            (r"(attentions\.\d+)\.query\.", "$1.to_q."),
            (r"(attentions\.\d+)\.key\.", "$1.to_k."),
            (r"(attentions\.\d+)\.value\.", "$1.to_v."),
            (r"(attentions\.\d+)\.proj_attn\.", "$1.to_out.0."),
        ]
    }

    /// Builds the model (random weights), or says which field is not supported.
    pub fn init(&self, device: &Device) -> Result<Vae, VaeConfigError> {
        let bad = |field, message: String| Err(VaeConfigError { field, message });
        let levels = self.block_out_channels.len();
        if levels == 0 {
            return bad("block_out_channels", "must not be empty".into());
        }
        if self.down_block_types.len() != levels || self.up_block_types.len() != levels {
            return bad(
                "down_block_types",
                format!("expected {levels} entries, one per level"),
            );
        }
        only(
            "down_block_types",
            &self.down_block_types,
            "DownEncoderBlock2D",
        )?;
        only("up_block_types", &self.up_block_types, "UpDecoderBlock2D")?;
        if self.act_fn != "silu" {
            return bad(
                "act_fn",
                format!("'{}' is not supported (silu)", self.act_fn),
            );
        }
        if let Some(c) = self
            .block_out_channels
            .iter()
            .find(|c| *c % self.norm_num_groups != 0)
        {
            return bad(
                "norm_num_groups",
                format!("{} does not divide {c}", self.norm_num_groups),
            );
        }
        let boc = &self.block_out_channels;
        let top = boc[levels - 1];
        let conv = |i, o, k| conv2d(i, o, k, device);
        let norm = |c| {
            GroupNormConfig::new(self.norm_num_groups, c)
                .with_epsilon(EPS)
                .init(device)
        };
        let mid = || MidBlock {
            resnets: vec![
                Resnet::new(top, top, self.norm_num_groups, EPS, None, device),
                Resnet::new(top, top, self.norm_num_groups, EPS, None, device),
            ],
            attentions: if self.mid_block_add_attention {
                vec![SpatialAttention::new(top, self, device)]
            } else {
                vec![]
            },
        };
        let down_blocks = (0..levels)
            .map(|i| {
                let (cin, cout) = (if i == 0 { boc[0] } else { boc[i - 1] }, boc[i]);
                DownBlock {
                    resnets: (0..self.layers_per_block)
                        .map(|j| {
                            Resnet::new(
                                if j == 0 { cin } else { cout },
                                cout,
                                self.norm_num_groups,
                                EPS,
                                None,
                                device,
                            )
                        })
                        .collect(),
                    downsamplers: if i + 1 < levels {
                        vec![Downsample {
                            conv: downsample_conv(
                                cout,
                                PaddingConfig2d::Explicit(0, 0, 1, 1),
                                device,
                            ),
                        }]
                    } else {
                        vec![]
                    },
                }
            })
            .collect();
        let reversed: Vec<usize> = boc.iter().rev().copied().collect();
        let up_blocks = (0..levels)
            .map(|i| {
                let (cin, cout) = (
                    if i == 0 { reversed[0] } else { reversed[i - 1] },
                    reversed[i],
                );
                UpBlock {
                    resnets: (0..=self.layers_per_block)
                        .map(|j| {
                            Resnet::new(
                                if j == 0 { cin } else { cout },
                                cout,
                                self.norm_num_groups,
                                EPS,
                                None,
                                device,
                            )
                        })
                        .collect(),
                    upsamplers: if i + 1 < levels {
                        vec![Upsample {
                            conv: conv(cout, cout, 3),
                        }]
                    } else {
                        vec![]
                    },
                }
            })
            .collect();
        let z = self.latent_channels;
        Ok(Vae {
            encoder: VaeEncoder {
                conv_in: conv(self.in_channels, boc[0], 3),
                down_blocks,
                mid_block: mid(),
                conv_norm_out: norm(top),
                conv_out: conv(top, 2 * z, 3),
            },
            decoder: VaeDecoder {
                conv_in: conv(z, top, 3),
                mid_block: mid(),
                up_blocks,
                conv_norm_out: norm(boc[0]),
                conv_out: conv(boc[0], self.out_channels, 3),
            },
            quant_conv: self.use_quant_conv.then(|| conv(2 * z, 2 * z, 1)),
            post_quant_conv: self.use_post_quant_conv.then(|| conv(z, z, 1)),
            latent_channels: z,
        })
    }
}

/// diffusers' `AutoencoderKL`.
#[derive(Module, Debug)]
pub struct Vae {
    encoder: VaeEncoder,
    decoder: VaeDecoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    latent_channels: usize,
}

#[derive(Module, Debug)]
struct VaeEncoder {
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

#[derive(Module, Debug)]
struct VaeDecoder {
    conv_in: Conv2d,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

#[derive(Module, Debug)]
struct DownBlock {
    resnets: Vec<Resnet>,
    downsamplers: Vec<Downsample>,
}

#[derive(Module, Debug)]
struct UpBlock {
    resnets: Vec<Resnet>,
    upsamplers: Vec<Upsample>,
}

#[derive(Module, Debug)]
struct MidBlock {
    resnets: Vec<Resnet>,
    attentions: Vec<SpatialAttention>,
}

#[derive(Module, Debug)]
struct Downsample {
    conv: Conv2d,
}

#[derive(Module, Debug)]
struct Upsample {
    conv: Conv2d,
}

/// Single-head self-attention over the pixels of a feature map, with residual.
#[derive(Module, Debug)]
struct SpatialAttention {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Vec<Linear>,
}

impl SpatialAttention {
    fn new(c: usize, cfg: &VaeConfig, device: &Device) -> Self {
        let linear = || LinearConfig::new(c, c).init(device);
        Self {
            group_norm: GroupNormConfig::new(cfg.norm_num_groups, c)
                .with_epsilon(EPS)
                .init(device),
            to_q: linear(),
            to_k: linear(),
            to_v: linear(),
            to_out: vec![linear()],
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        // b c h w -> b 1 (h w) c
        let tokens = kernels::group_norm(&self.group_norm, x.clone(), false)
            .reshape([b, c, h * w])
            .swap_dims(1, 2);
        let heads = |lin: &Linear| lin.forward(tokens.clone()).unsqueeze_dim::<4>(1);
        let out = kernels::attention(heads(&self.to_q), heads(&self.to_k), heads(&self.to_v));
        let out = self.to_out[0].forward(out.squeeze_dim::<3>(1)); // b (h w) c
        x + out.swap_dims(1, 2).reshape([b, c, h, w])
    }
}

impl MidBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.resnets[0].forward(x, None);
        let x = match self.attentions.first() {
            Some(attn) => attn.forward(x),
            None => x,
        };
        self.resnets[1].forward(x, None)
    }
}

impl Vae {
    /// The mean of the latent distribution (unscaled), `[B, z, H/2^(n-1), W/2^(n-1)]`.
    ///
    /// # Shapes
    /// - x: `[B, C, H, W]` in `[-1, 1]`
    pub fn encode_mean(&self, x: Tensor<4>) -> Tensor<4> {
        let e = &self.encoder;
        let mut h = kernels::conv2d(&e.conv_in, x);
        for block in &e.down_blocks {
            for resnet in &block.resnets {
                h = resnet.forward(h, None);
            }
            for down in &block.downsamplers {
                h = kernels::conv2d(&down.conv, h);
            }
        }
        let h = e.mid_block.forward(h);
        let moments = kernels::conv2d(&e.conv_out, kernels::group_norm(&e.conv_norm_out, h, true));
        let moments = match &self.quant_conv {
            Some(conv) => conv.forward(moments),
            None => moments,
        };
        moments.narrow(1, 0, self.latent_channels)
    }

    /// Scaled latents of every frame of clips (CMD's latent mode): `[B, L, C, H, W]` in
    /// `[-1, 1]` -> `[B, L, z, h, w]`, multiplied by `scaling_factor`.
    pub fn encode_clips(&self, x: Tensor<5>, scaling_factor: f64) -> Tensor<5> {
        let [b, l, c, h, w] = x.dims();
        let z = self
            .encode_mean(x.reshape([b * l, c, h, w]))
            .mul_scalar(scaling_factor);
        let [_, zc, zh, zw] = z.dims();
        z.reshape([b, l, zc, zh, zw])
    }

    /// Decodes (unscaled) latents to images in about `[-1, 1]`.
    ///
    /// # Shapes
    /// - z: `[B, z, h, w]`; output `[B, C, h 2^(n-1), w 2^(n-1)]`
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        let d = &self.decoder;
        let z = match &self.post_quant_conv {
            Some(conv) => conv.forward(z),
            None => z,
        };
        let mut h = d.mid_block.forward(kernels::conv2d(&d.conv_in, z));
        for block in &d.up_blocks {
            for resnet in &block.resnets {
                h = resnet.forward(h, None);
            }
            for up in &block.upsamplers {
                h = kernels::conv2d(&up.conv, upsample_nearest(h));
            }
        }
        kernels::conv2d(&d.conv_out, kernels::group_norm(&d.conv_norm_out, h, true))
    }
}
