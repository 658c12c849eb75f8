//! Stable Diffusion's denoiser in the form of diffusers' `UNet2DConditionModel` (the `unet/`
//! folder), for the SD1.5 layout (1x1-conv projections in the transformers, one head count) and
//! the SD2.1 layout (linear projections, per-block head counts). Field names equal the
//! checkpoint keys (`down_blocks.N.attentions.M.transformer_blocks.0.attn2.to_k`, ...).

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::kernels;
use crate::resnet::{Resnet, conv2d, downsample_conv, upsample_nearest};

/// `attention_head_dim` / `num_attention_heads`: one number for all blocks, or one per block.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
pub enum PerBlock {
    /// The same for every block.
    One(usize),
    /// One per down block.
    Each(Vec<usize>),
}

impl PerBlock {
    fn get(&self, i: usize) -> usize {
        match self {
            Self::One(v) => *v,
            Self::Each(v) => v[i],
        }
    }
}

/// The fields of a diffusers `UNet2DConditionModel` `config.json` the model needs.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct UnetConfig {
    /// Latent channels in.
    pub in_channels: usize,
    /// Channels out.
    pub out_channels: usize,
    /// Width of each resolution level.
    pub block_out_channels: Vec<usize>,
    /// `CrossAttnDownBlock2D` or `DownBlock2D` per level.
    pub down_block_types: Vec<String>,
    /// `UpBlock2D` or `CrossAttnUpBlock2D` per level.
    pub up_block_types: Vec<String>,
    /// ResNet blocks per down level (up levels have one more).
    pub layers_per_block: usize,
    /// GroupNorm groups.
    pub norm_num_groups: usize,
    /// GroupNorm epsilon of the ResNets and the output norm.
    pub norm_eps: f64,
    /// Width of the text states.
    pub cross_attention_dim: usize,
    /// diffusers' name for the number of heads when `num_attention_heads` is unset.
    pub attention_head_dim: PerBlock,
    /// Number of heads (overrides `attention_head_dim`).
    pub num_attention_heads: Option<PerBlock>,
    /// Linear (SD2.x) rather than 1x1-conv (SD1.x) projections in the transformers.
    pub use_linear_projection: bool,
    /// Sinusoidal embedding with cos first.
    pub flip_sin_to_cos: bool,
    /// Shift of the sinusoidal frequencies.
    pub freq_shift: f64,
    /// Transformer layers per attention (only 1).
    pub transformer_layers_per_block: usize,
    /// Default latent height and width (diffusers' pipelines sample `sample_size` latents).
    pub sample_size: usize,
}

impl Default for UnetConfig {
    fn default() -> Self {
        Self {
            in_channels: 4,
            out_channels: 4,
            block_out_channels: vec![320, 640, 1280, 1280],
            down_block_types: vec![
                "CrossAttnDownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
                "DownBlock2D".into(),
            ],
            up_block_types: vec![
                "UpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
            ],
            layers_per_block: 2,
            norm_num_groups: 32,
            norm_eps: 1e-5,
            cross_attention_dim: 1280,
            attention_head_dim: PerBlock::One(8),
            num_attention_heads: None,
            use_linear_projection: false,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            transformer_layers_per_block: 1,
            sample_size: 64,
        }
    }
}

/// A UNet config this crate cannot build, naming the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unet config field '{field}': {message}")]
pub struct UnetConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl UnetConfig {
    /// Builds the model (random weights), or says which field is not supported.
    pub fn init(&self, device: &Device) -> Result<Unet, UnetConfigError> {
        let bad = |field, message: String| Err(UnetConfigError { field, message });
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(
                "down_block_types",
                format!("expected {n} down and up block types"),
            );
        }
        let cross_down = |t: &String| match t.as_str() {
            "CrossAttnDownBlock2D" => Ok(true),
            "DownBlock2D" => Ok(false),
            other => Err(other.to_string()),
        };
        let cross_up = |t: &String| match t.as_str() {
            "CrossAttnUpBlock2D" => Ok(true),
            "UpBlock2D" => Ok(false),
            other => Err(other.to_string()),
        };
        let down_cross: Vec<bool> = match self.down_block_types.iter().map(cross_down).collect() {
            Ok(v) => v,
            Err(t) => return bad("down_block_types", format!("'{t}' is not supported")),
        };
        let up_cross: Vec<bool> = match self.up_block_types.iter().map(cross_up).collect() {
            Ok(v) => v,
            Err(t) => return bad("up_block_types", format!("'{t}' is not supported")),
        };
        if self.transformer_layers_per_block != 1 {
            return bad("transformer_layers_per_block", "only 1 is supported".into());
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
        let heads = self
            .num_attention_heads
            .clone()
            .unwrap_or(self.attention_head_dim.clone());
        let boc = &self.block_out_channels;
        let temb = 4 * boc[0];
        let groups = self.norm_num_groups;
        let resnet = |i, o| Resnet::new(i, o, groups, self.norm_eps, Some(temb), device);
        let transformer = |c: usize, h: usize| Transformer2d::new(c, h, self, device);

        let down_blocks = (0..n)
            .map(|i| {
                let (cin, cout) = (if i == 0 { boc[0] } else { boc[i - 1] }, boc[i]);
                DownBlock {
                    resnets: (0..self.layers_per_block)
                        .map(|j| resnet(if j == 0 { cin } else { cout }, cout))
                        .collect(),
                    attentions: if down_cross[i] {
                        (0..self.layers_per_block)
                            .map(|_| transformer(cout, heads.get(i)))
                            .collect()
                    } else {
                        vec![]
                    },
                    downsamplers: if i + 1 < n {
                        vec![Sampler {
                            conv: downsample_conv(
                                cout,
                                PaddingConfig2d::Explicit(1, 1, 1, 1),
                                device,
                            ),
                        }]
                    } else {
                        vec![]
                    },
                }
            })
            .collect();
        let rev: Vec<usize> = boc.iter().rev().copied().collect();
        let up_blocks = (0..n)
            .map(|i| {
                let prev = if i == 0 { rev[0] } else { rev[i - 1] };
                let (cout, cin) = (rev[i], rev[(i + 1).min(n - 1)]);
                let layers = self.layers_per_block + 1;
                UpBlock {
                    resnets: (0..layers)
                        .map(|j| {
                            let skip = if j + 1 == layers { cin } else { cout };
                            resnet(if j == 0 { prev } else { cout } + skip, cout)
                        })
                        .collect(),
                    attentions: if up_cross[i] {
                        (0..layers)
                            .map(|_| transformer(cout, heads.get(n - 1 - i)))
                            .collect()
                    } else {
                        vec![]
                    },
                    upsamplers: if i + 1 < n {
                        vec![Sampler {
                            conv: conv2d(cout, cout, 3, device),
                        }]
                    } else {
                        vec![]
                    },
                }
            })
            .collect();
        let top = boc[n - 1];
        Ok(Unet {
            conv_in: conv2d(self.in_channels, boc[0], 3, device),
            time_embedding: TimeEmbedding {
                linear_1: LinearConfig::new(boc[0], temb).init(device),
                linear_2: LinearConfig::new(temb, temb).init(device),
            },
            down_blocks,
            mid_block: MidBlock {
                resnets: vec![resnet(top, top), resnet(top, top)],
                attentions: vec![transformer(top, heads.get(n - 1))],
            },
            up_blocks,
            conv_norm_out: GroupNormConfig::new(groups, boc[0])
                .with_epsilon(self.norm_eps)
                .init(device),
            conv_out: conv2d(boc[0], self.out_channels, 3, device),
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
        })
    }
}

/// diffusers' `UNet2DConditionModel`.
#[derive(Module, Debug)]
pub struct Unet {
    conv_in: Conv2d,
    time_embedding: TimeEmbedding,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    flip_sin_to_cos: bool,
    freq_shift: f64,
}

#[derive(Module, Debug)]
struct TimeEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

#[derive(Module, Debug)]
struct DownBlock {
    resnets: Vec<Resnet>,
    attentions: Vec<Transformer2d>,
    downsamplers: Vec<Sampler>,
}

#[derive(Module, Debug)]
struct UpBlock {
    resnets: Vec<Resnet>,
    attentions: Vec<Transformer2d>,
    upsamplers: Vec<Sampler>,
}

#[derive(Module, Debug)]
struct MidBlock {
    resnets: Vec<Resnet>,
    attentions: Vec<Transformer2d>,
}

#[derive(Module, Debug)]
struct Sampler {
    conv: Conv2d,
}

/// diffusers' `Transformer2DModel` with one `BasicTransformerBlock`.
#[derive(Module, Debug)]
struct Transformer2d {
    norm: GroupNorm,
    proj_in: Projection,
    transformer_blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

/// 1x1 conv (SD1.x) or linear (SD2.x) projection.
#[derive(Module, Debug)]
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

#[derive(Module, Debug)]
struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: CrossAttention,
    norm2: LayerNorm,
    attn2: CrossAttention,
    norm3: LayerNorm,
    ff: FeedForward,
}

#[derive(Module, Debug)]
struct CrossAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Vec<Linear>,
    heads: usize,
}

/// GEGLU feed-forward; checkpoint keys `ff.net.0.proj` and `ff.net.2` are renamed on load
/// (see [`UnetConfig::key_remapping`]).
#[derive(Module, Debug)]
struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl UnetConfig {
    /// The factor latent heights and widths must be multiples of: `2^(levels - 1)`.
    pub fn size_multiple(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }

    /// Our small UNet for content frames trained from scratch on a CPU: three levels of width
    /// 32/64/64 (cross-attention on the two coarser ones, linear projections, 4 heads), one
    /// ResNet per level, text states of width 128 ([`ClipTextConfig::tiny`](crate::clip::ClipTextConfig::tiny)).
    pub fn tiny(channels: usize, sample_size: usize) -> Self {
        Self {
            in_channels: channels,
            out_channels: channels,
            block_out_channels: vec![32, 64, 64],
            down_block_types: vec![
                "DownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
                "CrossAttnDownBlock2D".into(),
            ],
            up_block_types: vec![
                "CrossAttnUpBlock2D".into(),
                "CrossAttnUpBlock2D".into(),
                "UpBlock2D".into(),
            ],
            layers_per_block: 1,
            norm_num_groups: 8,
            cross_attention_dim: 128,
            attention_head_dim: PerBlock::One(4),
            use_linear_projection: true,
            sample_size,
            ..Self::default()
        }
    }

    /// The shipped teaching model's UNet: [`Self::tiny`] reading text states of width 64
    /// ([`ClipTextConfig::teaching`](crate::clip::ClipTextConfig::teaching)).
    pub fn teaching(channels: usize, sample_size: usize) -> Self {
        Self {
            cross_attention_dim: 64,
            ..Self::tiny(channels, sample_size)
        }
    }

    /// Stable Diffusion 1.5's `unet/config.json` (CLIP ViT-L text states of width 768).
    pub fn sd15() -> Self {
        Self {
            cross_attention_dim: 768,
            ..Self::default()
        }
    }

    /// Stable Diffusion 2.1(-base)'s `unet/config.json` (OpenCLIP ViT-H text states of width
    /// 1024, per-block heads, linear projections).
    pub fn sd21() -> Self {
        Self {
            cross_attention_dim: 1024,
            attention_head_dim: PerBlock::Each(vec![5, 10, 20, 20]),
            use_linear_projection: true,
            ..Self::default()
        }
    }

    /// Checkpoint key renames this layout needs: diffusers' `ff.net.0.proj` / `ff.net.2`
    /// (a list with a dropout in between) and the conv-or-linear `proj_in` / `proj_out`.
    pub fn key_remapping(&self) -> Vec<(&'static str, &'static str)> {
        // Only the Transformer2D projections (directly under `attentions.N`), not the
        // feed-forward's renamed `ff.proj_in`.
        let projection = if self.use_linear_projection {
            (
                "\\.attentions\\.(\\d+)\\.(proj_in|proj_out)\\.",
                ".attentions.$1.$2.Linear.",
            )
        } else {
            (
                "\\.attentions\\.(\\d+)\\.(proj_in|proj_out)\\.",
                ".attentions.$1.$2.Conv.",
            )
        };
        vec![
            ("\\.ff\\.net\\.0\\.proj\\.", ".ff.proj_in."),
            ("\\.ff\\.net\\.2\\.", ".ff.proj_out."),
            projection,
        ]
    }
}

impl Transformer2d {
    fn new(c: usize, heads: usize, cfg: &UnetConfig, device: &Device) -> Self {
        let projection = || {
            if cfg.use_linear_projection {
                Projection::Linear(LinearConfig::new(c, c).init(device))
            } else {
                Projection::Conv(conv2d(c, c, 1, device))
            }
        };
        let ln = || {
            LayerNormConfig::new(c)
                .with_epsilon(LAYER_NORM_EPS)
                .init(device)
        };
        Self {
            norm: GroupNormConfig::new(cfg.norm_num_groups, c)
                .with_epsilon(1e-6)
                .init(device),
            proj_in: projection(),
            transformer_blocks: vec![BasicTransformerBlock {
                norm1: ln(),
                attn1: CrossAttention::new(c, c, heads, device),
                norm2: ln(),
                attn2: CrossAttention::new(c, cfg.cross_attention_dim, heads, device),
                norm3: ln(),
                ff: FeedForward {
                    proj_in: LinearConfig::new(c, 8 * c).init(device),
                    proj_out: LinearConfig::new(4 * c, c).init(device),
                },
            }],
            proj_out: projection(),
        }
    }

    /// # Shapes
    /// - x: `[B, C, H, W]`, context: `[B, S, cross_attention_dim]`; output like x
    fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let normed = kernels::group_norm(&self.norm, x.clone(), false);
        // b c h w -> b (h w) c, with the projection before (conv) or after (linear).
        let to_tokens = |t: Tensor<4>| t.reshape([b, c, h * w]).swap_dims(1, 2);
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(conv.forward(normed)),
            Projection::Linear(linear) => linear.forward(to_tokens(normed)),
        };
        for block in &self.transformer_blocks {
            tokens = block.forward(tokens, context);
        }
        let to_map = |t: Tensor<3>| t.swap_dims(1, 2).reshape([b, c, h, w]);
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(to_map(tokens)),
            Projection::Linear(linear) => to_map(linear.forward(tokens)),
        };
        x + out
    }
}

/// The transformer blocks' LayerNorm epsilon (diffusers' default).
const LAYER_NORM_EPS: f64 = 1e-5;

impl BasicTransformerBlock {
    fn forward(&self, x: Tensor<3>, context: &Tensor<3>) -> Tensor<3> {
        let norm =
            |norm: &LayerNorm, x: &Tensor<3>| kernels::layer_norm(norm, x.clone(), LAYER_NORM_EPS);
        let n1 = norm(&self.norm1, &x);
        let x = self.attn1.forward(n1.clone(), &n1, x);
        let x = self.attn2.forward(norm(&self.norm2, &x), context, x);
        self.ff.forward(norm(&self.norm3, &x), x)
    }
}

impl CrossAttention {
    fn new(dim: usize, context_dim: usize, heads: usize, device: &Device) -> Self {
        let no_bias = |i| LinearConfig::new(i, dim).with_bias(false).init(device);
        Self {
            to_q: no_bias(dim),
            to_k: no_bias(context_dim),
            to_v: no_bias(context_dim),
            to_out: vec![LinearConfig::new(dim, dim).init(device)],
            heads,
        }
    }

    /// `residual +` what x `[B, N, dim]` draws from context `[B, S, context_dim]`.
    fn forward(&self, x: Tensor<3>, context: &Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let h = self.heads;
        let split = |t: Tensor<3>| {
            let [b, s, d] = t.dims();
            t.reshape([b, s, h, d / h]).swap_dims(1, 2) // b h s dh
        };
        let q = split(kernels::linear(&self.to_q, x));
        let k = split(kernels::linear(&self.to_k, context.clone()));
        let v = split(kernels::linear(&self.to_v, context.clone()));
        let out = kernels::attention(q, k, v);
        kernels::linear_add(
            &self.to_out[0],
            out.swap_dims(1, 2).reshape([b, n, d]),
            residual,
        )
    }
}

impl FeedForward {
    /// GEGLU: `residual + proj_out(a * gelu(g))` with `[a, g] = proj_in(x)`.
    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        let h = kernels::geglu(kernels::linear(&self.proj_in, x));
        kernels::linear_add(&self.proj_out, h, residual)
    }
}

impl Unet {
    /// Sinusoidal timestep embedding (diffusers' `get_timestep_embedding`), `[B, dim]`.
    fn timestep_features(&self, timesteps: &[f64], dim: usize, device: &Device) -> Tensor<2> {
        let half = dim / 2;
        let mut values = Vec::with_capacity(timesteps.len() * dim);
        for t in timesteps {
            let angles: Vec<f64> = (0..half)
                .map(|i| {
                    let exponent = -(10000f64.ln()) * i as f64 / (half as f64 - self.freq_shift);
                    t * exponent.exp()
                })
                .collect();
            let (sin, cos) = (
                angles.iter().map(|a| a.sin()),
                angles.iter().map(|a| a.cos()),
            );
            let row: Vec<f64> = if self.flip_sin_to_cos {
                cos.chain(sin).collect()
            } else {
                sin.chain(cos).collect()
            };
            values.extend(row.into_iter().map(|v| v as f32));
        }
        Tensor::from_data(TensorData::new(values, [timesteps.len(), dim]), device)
    }

    /// Predicts the noise (or v) of latents `sample` at `timesteps` given text states.
    ///
    /// # Shapes
    /// - sample: `[B, in_channels, H, W]` with `H, W` divisible by `2^(levels - 1)`
    /// - timesteps: `B` values
    /// - context: `[B, S, cross_attention_dim]`
    /// - output: `[B, out_channels, H, W]`
    pub fn forward(&self, sample: Tensor<4>, timesteps: &[f64], context: &Tensor<3>) -> Tensor<4> {
        let device = sample.device();
        // 1. Time embedding.
        let dim = self.time_embedding.linear_1.weight.dims()[0];
        let t = self.timestep_features(timesteps, dim, &device);
        let temb = self
            .time_embedding
            .linear_2
            .forward(silu(self.time_embedding.linear_1.forward(t)));
        // 2. Down path, keeping every intermediate state for the skips.
        let mut h = kernels::conv2d(&self.conv_in, sample);
        let mut skips = vec![h.clone()];
        for block in &self.down_blocks {
            for (j, resnet) in block.resnets.iter().enumerate() {
                h = resnet.forward(h, Some(&temb));
                if let Some(attn) = block.attentions.get(j) {
                    h = attn.forward(h, context);
                }
                skips.push(h.clone());
            }
            for down in &block.downsamplers {
                h = kernels::conv2d(&down.conv, h);
                skips.push(h.clone());
            }
        }
        // 3. Middle.
        let mid = &self.mid_block;
        h = mid.resnets[0].forward(h, Some(&temb));
        h = mid.attentions[0].forward(h, context);
        h = mid.resnets[1].forward(h, Some(&temb));
        // 4. Up path, concatenating skips in reverse order.
        for block in &self.up_blocks {
            for (j, resnet) in block.resnets.iter().enumerate() {
                let skip = skips.pop().expect("one skip per up resnet");
                h = resnet.forward(Tensor::cat(vec![h, skip], 1), Some(&temb));
                if let Some(attn) = block.attentions.get(j) {
                    h = attn.forward(h, context);
                }
            }
            for up in &block.upsamplers {
                h = kernels::conv2d(&up.conv, upsample_nearest(h));
            }
        }
        // 5. Output.
        kernels::conv2d(
            &self.conv_out,
            kernels::group_norm(&self.conv_norm_out, h, true),
        )
    }
}
