//! The motion diffusion model (spec section 3): a DiT (Peebles & Xie 2023) over the motion
//! latent, conditioned on the clean content frame and the text.
//!
//! - The motion latent `[B, D, L, H'+W']` is a `D`-channel image of `L x (H'+W')`, cut into
//!   `p x p` patches, embedded, plus fixed 2-D sin-cos positions **on its real rectangular
//!   grid** (the released code only handles square grids).
//! - The content frame `[B, C, H, W]` is cut into `kp x kp` patches with its own embedding and
//!   positions; its tokens are **concatenated** to the motion tokens, full self-attention runs
//!   over both, and only the motion tokens reach the final layer.
//! - adaLN-Zero blocks (six modulation vectors per block, zero-initialised), MLP ratio 4,
//!   tanh-GELU; conditioning `c = timestep embedding + Linear(pooled text)`, where pooled text is
//!   the mean of the text encoder's last hidden state (over all positions, or over the prompt's
//!   own tokens, see [`TextPooling`]; standardised over the training captions in models trained
//!   so, see [`TextNorm`]). The null condition of classifier-free
//!   guidance is a zero text vector, with the content frame kept (the released code drops both
//!   the text and, in its guidance path, the content frame).
//!
//! Field names follow DiT's `models.py` (`x_embedder`, `t_embedder.mlp`, `blocks.N.attn.qkv`,
//! `adaLN_modulation`, `final_layer`), so checkpoints map one to one.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::ae::patch::{patchify, unpatchify};
use crate::kernels;
use crate::schedulers::Prediction;

/// Sizes of a motion DiT.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DitConfig {
    /// Motion-latent channels `D`.
    pub motion_channels: usize,
    /// Frames `L` (the motion image's height).
    pub frames: usize,
    /// `H' + W'` (the motion image's width).
    pub motion_width: usize,
    /// Patch size `p` of the motion image.
    pub patch: usize,
    /// Content-frame channels `C`.
    pub content_channels: usize,
    /// Content-frame height.
    pub content_height: usize,
    /// Content-frame width.
    pub content_width: usize,
    /// Patch size `kp` of the content frame.
    pub content_patch: usize,
    /// Width of the pooled text vector.
    pub text_dim: usize,
    /// Transformer width.
    pub hidden: usize,
    /// Blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// Standardisation of the pooled text before `Linear(pooled text)` (see [`TextNorm`]);
    /// absent in models trained without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_norm: Option<TextNorm>,
    /// What the DiT predicts: the noise (spec; the default, also for models saved without the
    /// field) or the velocity `v` (learns global structure sooner when trained from scratch
    /// for a few thousand steps).
    #[serde(default)]
    pub prediction: Prediction,
    /// Which of the text encoder's output positions the pooled text averages.
    #[serde(default)]
    pub text_pooling: TextPooling,
}

/// Which positions of the text encoder's last hidden state the DiT's pooled text averages.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TextPooling {
    /// All of them, padding included (the spec's "mean of the last hidden state"; models
    /// saved without the field).
    #[default]
    AllTokens,
    /// The prompt's own tokens only (start, words, end): a short prompt's few words are then
    /// not diluted by dozens of padding states. With the teaching model's random text encoder
    /// this makes the direction of a caption readable from its pooled vector 99 % of the time
    /// (nearest class mean, held-out captions), against 90 % over all positions.
    PromptTokens,
}

impl TextPooling {
    /// The pooled text `[B, D]` of a last hidden state `[B, S, D]` whose prompts have `lengths`
    /// own tokens (one per row, each from 1 to `S`).
    pub fn pool(self, last_hidden_state: Tensor<3>, lengths: &[usize]) -> Tensor<2> {
        let [b, s, _] = last_hidden_state.dims();
        match self {
            Self::AllTokens => last_hidden_state.mean_dim(1).squeeze_dim(1),
            Self::PromptTokens => {
                assert_eq!(lengths.len(), b, "one prompt length per row");
                let weights: Vec<f32> = lengths
                    .iter()
                    .flat_map(|&n| {
                        let n = n.clamp(1, s);
                        (0..s).map(move |i| if i < n { 1.0 / n as f32 } else { 0.0 })
                    })
                    .collect();
                let device = last_hidden_state.device();
                let weights = Tensor::<3>::from_data(TensorData::new(weights, [b, s, 1]), &device);
                (last_hidden_state * weights).sum_dim(1).squeeze_dim(1)
            }
        }
    }
}

/// Per-dimension standardisation of the pooled text, fitted on a model's training captions:
/// `(pooled - mean) * scale`. It is an affine map in front of the spec's `Linear(pooled text)`,
/// so it changes what the model can express not at all, but it changes what it can learn: the
/// pooled vectors of prompts that differ in one word (a direction) can differ by a few percent
/// of their length, a difference Adam barely sees until the shared part is taken away. The
/// null condition stays the zero vector (after standardisation: the mean caption).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TextNorm {
    /// Mean pooled vector of the training captions.
    pub mean: Vec<f32>,
    /// One over the standard deviation of each dimension.
    pub scale: Vec<f32>,
}

impl TextNorm {
    /// Fits the standardisation to pooled vectors (each of the same width, at least one).
    pub fn fit(pooled: &[Vec<f32>]) -> Result<Self, ModelError> {
        let width = pooled.first().map_or(0, Vec::len);
        if width == 0 || pooled.iter().any(|v| v.len() != width) {
            return Err(ModelError::InvalidConfig {
                model: "motion DiT",
                message: format!(
                    "text standardisation needs pooled vectors of one non-zero width, found \
                     widths {:?}",
                    pooled.iter().map(Vec::len).collect::<Vec<_>>()
                ),
            });
        }
        let n = pooled.len() as f64;
        let mean: Vec<f64> = (0..width)
            .map(|i| pooled.iter().map(|v| f64::from(v[i])).sum::<f64>() / n)
            .collect();
        let scale = (0..width)
            .map(|i| {
                let var = pooled
                    .iter()
                    .map(|v| (f64::from(v[i]) - mean[i]).powi(2))
                    .sum::<f64>()
                    / n;
                (1.0 / var.sqrt().max(1e-6)) as f32
            })
            .collect();
        Ok(Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            scale,
        })
    }
}

/// The DiT sizes of spec section 3 (depth, width, heads), plus our `tiny`.
pub const DIT_PRESETS: [(&str, usize, usize, usize); 5] = [
    ("tiny", 4, 128, 4),
    ("S", 12, 384, 6),
    ("B", 12, 768, 12),
    ("L", 24, 1024, 16),
    ("XL", 28, 1152, 16),
];

impl DitConfig {
    /// The preset `name` (`tiny`, `S`, `B`, `L`, `XL`, all with patch 2) for the given data
    /// shapes: motion `D x L x (H'+W')`, content `C x H x W` cut into `content_patch` patches,
    /// pooled text of width `text_dim`.
    #[allow(clippy::too_many_arguments)]
    pub fn preset(
        name: &str,
        motion: [usize; 3],
        content: [usize; 3],
        content_patch: usize,
        text_dim: usize,
    ) -> Result<Self, ModelError> {
        let Some(&(_, depth, hidden, heads)) = DIT_PRESETS.iter().find(|p| p.0 == name) else {
            return Err(ModelError::UnknownPreset {
                found: name.to_string(),
                expected: DIT_PRESETS.map(|p| p.0).join(", "),
            });
        };
        let config = Self {
            motion_channels: motion[0],
            frames: motion[1],
            motion_width: motion[2],
            patch: 2,
            content_channels: content[0],
            content_height: content[1],
            content_width: content[2],
            content_patch,
            text_dim,
            hidden,
            depth,
            heads,
            text_norm: None,
            prediction: Prediction::Epsilon,
            text_pooling: TextPooling::AllTokens,
        };
        config.validate()?;
        Ok(config)
    }

    /// The DiT's text condition `[B, text_dim]` of the text encoder's last hidden state
    /// `[B, S, text_dim]` for prompts of `lengths` own tokens: pooled as the model pools
    /// ([`TextPooling`]), then standardised as it was trained ([`Self::standardise`]).
    pub fn text_condition(&self, last_hidden_state: Tensor<3>, lengths: &[usize]) -> Tensor<2> {
        self.standardise(self.text_pooling.pool(last_hidden_state, lengths))
    }

    /// Pooled text `[B, text_dim]` standardised when the model was trained so (see
    /// [`TextNorm`]), else as it is.
    pub fn standardise(&self, pooled: Tensor<2>) -> Tensor<2> {
        let Some(norm) = &self.text_norm else {
            return pooled;
        };
        let device = pooled.device();
        let row =
            |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, v.len()]), &device);
        (pooled - row(&norm.mean)) * row(&norm.scale)
    }

    /// Checks that the sizes fit together.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |message: String| {
            Err(ModelError::InvalidConfig {
                model: "motion DiT",
                message,
            })
        };
        if let Some(norm) = &self.text_norm
            && (norm.mean.len() != self.text_dim || norm.scale.len() != self.text_dim)
        {
            return bad(format!(
                "text_norm has {} means and {} scales, expected text_dim = {} of each",
                norm.mean.len(),
                norm.scale.len(),
                self.text_dim
            ));
        }
        if self.patch == 0
            || !self.frames.is_multiple_of(self.patch)
            || !self.motion_width.is_multiple_of(self.patch)
        {
            return bad(format!(
                "motion image {}x{} must be a multiple of the patch size {}",
                self.frames, self.motion_width, self.patch
            ));
        }
        if self.content_patch == 0
            || !self.content_height.is_multiple_of(self.content_patch)
            || !self.content_width.is_multiple_of(self.content_patch)
        {
            return bad(format!(
                "content frame {}x{} must be a multiple of the content patch size {}",
                self.content_height, self.content_width, self.content_patch
            ));
        }
        if self.heads == 0
            || !self.hidden.is_multiple_of(self.heads)
            || !self.hidden.is_multiple_of(4)
        {
            return bad(format!(
                "hidden width {} must be a multiple of 4 and of the {} heads",
                self.hidden, self.heads
            ));
        }
        Ok(())
    }

    /// Motion tokens: `(L / p) * ((H'+W') / p)`.
    pub fn motion_tokens(&self) -> usize {
        (self.frames / self.patch) * (self.motion_width / self.patch)
    }

    /// Content tokens: `(H / kp) * (W / kp)`.
    pub fn content_tokens(&self) -> usize {
        (self.content_height / self.content_patch) * (self.content_width / self.content_patch)
    }

    /// Builds the model: random weights, adaLN-Zero modulations and the output layer at zero.
    pub fn init(&self, device: &Device) -> Result<MotionDit, ModelError> {
        self.validate()?;
        let d = self.hidden;
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let zeros = |i, o| {
            LinearConfig::new(i, o)
                .with_initializer(Initializer::Zeros)
                .init(device)
        };
        let blocks = (0..self.depth)
            .map(|_| DitBlock {
                attn: SelfAttention {
                    qkv: linear(d, 3 * d),
                    proj: linear(d, d),
                    heads: self.heads,
                },
                mlp: Mlp {
                    fc1: linear(d, 4 * d),
                    fc2: linear(4 * d, d),
                },
                adaln_modulation: zeros(d, 6 * d),
            })
            .collect();
        let (p, kp) = (self.patch, self.content_patch);
        Ok(MotionDit {
            x_embedder: linear(self.motion_channels * p * p, d),
            content_embedder: linear(self.content_channels * kp * kp, d),
            t_embedder: TimestepEmbedder {
                linear_1: linear(FREQUENCY_DIM, d),
                linear_2: linear(d, d),
            },
            y_embedder: linear(self.text_dim, d),
            blocks,
            final_layer: FinalLayer {
                linear: zeros(d, p * p * self.motion_channels),
                adaln_modulation: zeros(d, 2 * d),
            },
            config: self.clone(),
        })
    }
}

/// Width of the sinusoidal timestep features (DiT's `frequency_embedding_size`).
const FREQUENCY_DIM: usize = 256;

/// The motion DiT.
#[derive(Module, Debug)]
pub struct MotionDit {
    x_embedder: Linear,
    content_embedder: Linear,
    t_embedder: TimestepEmbedder,
    y_embedder: Linear,
    blocks: Vec<DitBlock>,
    final_layer: FinalLayer,
    #[module(skip)]
    config: DitConfig,
}

#[derive(Module, Debug)]
struct TimestepEmbedder {
    linear_1: Linear,
    linear_2: Linear,
}

#[derive(Module, Debug)]
struct DitBlock {
    attn: SelfAttention,
    mlp: Mlp,
    adaln_modulation: Linear,
}

#[derive(Module, Debug)]
struct SelfAttention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
}

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

#[derive(Module, Debug)]
struct FinalLayer {
    linear: Linear,
    adaln_modulation: Linear,
}

/// DiT's LayerNorm without learned scale and bias (`elementwise_affine=False`): eps 1e-6.
const NORM_EPS: f64 = 1e-6;

impl SelfAttention {
    /// The heads' outputs side by side, before `proj` (the block applies it with its gate).
    fn heads(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let (h, dh) = (self.heads, d / self.heads);
        let qkv = kernels::linear(&self.qkv, x)
            .reshape([b, n, 3, h, dh])
            .permute([2, 0, 3, 1, 4]);
        let part = |i| qkv.clone().narrow(0, i, 1).squeeze_dim::<4>(0);
        let out = kernels::attention(part(0), part(1), part(2));
        out.swap_dims(1, 2).reshape([b, n, d])
    }
}

impl DitBlock {
    fn forward(&self, x: Tensor<3>, c: &Tensor<2>) -> Tensor<3> {
        let m = self.adaln_modulation.forward(silu(c.clone())).chunk(6, 1);
        let [
            shift_msa,
            scale_msa,
            gate_msa,
            shift_mlp,
            scale_mlp,
            gate_mlp,
        ] = <[Tensor<2>; 6]>::try_from(m).expect("six modulation vectors");
        let h = self.attn.heads(kernels::modulated_norm(
            x.clone(),
            shift_msa,
            scale_msa,
            NORM_EPS,
        ));
        let x = kernels::gated_linear_add(&self.attn.proj, h, gate_msa, x);
        let h = kernels::modulated_norm(x.clone(), shift_mlp, scale_mlp, NORM_EPS);
        let h = kernels::gelu_tanh(kernels::linear(&self.mlp.fc1, h));
        kernels::gated_linear_add(&self.mlp.fc2, h, gate_mlp, x)
    }
}

/// DiT's 1-D sin-cos embedding of positions: `[sin(pos * w), cos(pos * w)]`, `w_i = 10000^(-i / (dim/2))`.
fn sincos_1d(dim: usize, positions: &[f64]) -> Vec<Vec<f64>> {
    let half = dim / 2;
    positions
        .iter()
        .map(|p| {
            let angles = (0..half).map(|i| p / 10000f64.powf(i as f64 / half as f64));
            let angles: Vec<f64> = angles.collect();
            angles
                .iter()
                .map(|a| a.sin())
                .chain(angles.iter().map(|a| a.cos()))
                .collect()
        })
        .collect()
}

/// Fixed 2-D sin-cos positions of a `rows x cols` grid of tokens (row-major), `[rows * cols,
/// dim]`: the first half of each vector encodes the column, the second half the row (DiT's
/// `get_2d_sincos_pos_embed`, generalised to rectangles).
pub fn sincos_2d(dim: usize, rows: usize, cols: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols * dim);
    let col_emb = sincos_1d(dim / 2, &(0..cols).map(|c| c as f64).collect::<Vec<_>>());
    let row_emb = sincos_1d(dim / 2, &(0..rows).map(|r| r as f64).collect::<Vec<_>>());
    for row in &row_emb {
        for col in &col_emb {
            out.extend(col.iter().chain(row).map(|v| *v as f32));
        }
    }
    out
}

impl MotionDit {
    /// The model's sizes.
    pub fn config(&self) -> &DitConfig {
        &self.config
    }

    fn positions(&self, rows: usize, cols: usize, device: &Device) -> Tensor<3> {
        let d = self.config.hidden;
        Tensor::from_data(
            TensorData::new(sincos_2d(d, rows, cols), [1, rows * cols, d]),
            device,
        )
    }

    /// DiT's timestep features: `[cos(t w), sin(t w)]`, `w_i = 10000^(-i / 128)`, `[B, 256]`.
    fn timestep_features(timesteps: &[f64], device: &Device) -> Tensor<2> {
        let half = FREQUENCY_DIM / 2;
        let mut values = Vec::with_capacity(timesteps.len() * FREQUENCY_DIM);
        for t in timesteps {
            let angles: Vec<f64> = (0..half)
                .map(|i| t * (-(10000f64.ln()) * i as f64 / half as f64).exp())
                .collect();
            values.extend(angles.iter().map(|a| a.cos() as f32));
            values.extend(angles.iter().map(|a| a.sin() as f32));
        }
        Tensor::from_data(
            TensorData::new(values, [timesteps.len(), FREQUENCY_DIM]),
            device,
        )
    }

    /// The network's prediction for motion latents `z_t` at `timesteps` (the noise, or `v`
    /// for v-prediction schedulers: whatever it was trained on), given the clean content
    /// frame and the pooled text vector (zeros for the null condition).
    ///
    /// # Shapes
    /// - motion: `[B, D, L, H'+W']`; content: `[B, C, H, W]`; text: `[B, text_dim]`
    /// - output: `[B, D, L, H'+W']`
    pub fn forward(
        &self,
        motion: Tensor<4>,
        timesteps: &[f64],
        content: Tensor<4>,
        text: Tensor<2>,
    ) -> Tensor<4> {
        let cfg = &self.config;
        let device = motion.device();
        let (p, kp) = (cfg.patch, cfg.content_patch);
        let (rows, cols) = (cfg.frames / p, cfg.motion_width / p);
        let (crows, ccols) = (cfg.content_height / kp, cfg.content_width / kp);
        // 1. Tokens: motion patches and content patches, each with its own positions.
        let x = patchify(motion.unsqueeze_dim(1), p).squeeze_dim::<3>(1);
        let x = self.x_embedder.forward(x) + self.positions(rows, cols, &device);
        let y = patchify(content.unsqueeze_dim(1), kp).squeeze_dim::<3>(1);
        let y = self.content_embedder.forward(y) + self.positions(crows, ccols, &device);
        let n = rows * cols;
        let mut h = Tensor::cat(vec![x, y], 1);
        // 2. Conditioning vector.
        let t = Self::timestep_features(timesteps, &device);
        let t = self
            .t_embedder
            .linear_2
            .forward(silu(self.t_embedder.linear_1.forward(t)));
        let c = t + self.y_embedder.forward(text);
        // 3. Blocks over motion and content tokens together.
        for block in &self.blocks {
            h = block.forward(h, &c);
        }
        // 4. Final layer on the motion tokens only.
        let f = &self.final_layer;
        let [shift, scale] =
            <[Tensor<2>; 2]>::try_from(f.adaln_modulation.forward(silu(c)).chunk(2, 1))
                .expect("two modulation vectors");
        let h = h.narrow(1, 0, n);
        let out = f
            .linear
            .forward(kernels::modulated_norm(h, shift, scale, NORM_EPS));
        unpatchify(out.unsqueeze_dim(1), p, rows, cols).squeeze_dim::<4>(1)
    }
}
