//! Divided space-time transformer blocks (TimeSformer, Bertasius et al. 2021) as used by
//! PVDM and CMD: pre-LayerNorm temporal attention, spatial attention and a GEGLU feed-forward,
//! each with a residual connection. Attention projections have no bias.
//!
//! Decision: the last layer of every residual branch starts at zero, so a fresh block is the
//! identity (as DiT's adaLN-Zero, ReZero and SkipInit do). With random branches a fresh
//! decoder scrambles the content frame it is given, and a small model spends its first
//! thousand steps undoing that; the measurements are in `docs/training.md` ("Fitting real clips").

use burn::module::Module;
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::config::AutoencoderConfig;
use super::rope::Rotary;
use crate::kernels;

/// The LayerNorms' epsilon (PyTorch's default).
const NORM_EPS: f64 = 1e-5;

/// A LayerNorm over `dim` channels with [`NORM_EPS`].
fn layer_norm(dim: usize, device: &Device) -> LayerNorm {
    LayerNormConfig::new(dim)
        .with_epsilon(NORM_EPS)
        .init(device)
}

/// Multi-head self-attention with rotary positions on queries and keys.
#[derive(Module, Debug)]
pub struct Attention {
    norm: LayerNorm,
    to_qkv: Linear,
    to_out: Linear,
    heads: usize,
}

impl Attention {
    /// A pre-norm attention of `heads x head_dim` over tokens of width `dim`.
    pub fn new(dim: usize, heads: usize, head_dim: usize, device: &Device) -> Self {
        let inner = heads * head_dim;
        Self {
            norm: layer_norm(dim, device),
            to_qkv: LinearConfig::new(dim, 3 * inner)
                .with_bias(false)
                .init(device),
            to_out: LinearConfig::new(inner, dim)
                .with_initializer(Initializer::Zeros)
                .init(device),
            heads,
        }
    }

    /// `x + attention(norm(x))`.
    ///
    /// # Shapes
    /// - x: `[batch, n, dim]`, with `n` the positions of `rope`
    /// - output: `[batch, n, dim]`
    pub fn forward(&self, x: Tensor<3>, rope: &Rotary) -> Tensor<3> {
        let qkv = kernels::linear(
            &self.to_qkv,
            kernels::layer_norm(&self.norm, x.clone(), NORM_EPS),
        ); // b n (three h dh)
        let out = rope.attention(qkv, self.heads); // b n (h dh)
        kernels::linear_add(&self.to_out, out, x)
    }
}

/// `Linear(dim -> 2 * 4 dim)`, GEGLU, `Linear(4 dim -> dim)`, with pre-norm and residual.
#[derive(Module, Debug)]
pub struct FeedForward {
    norm: LayerNorm,
    proj_in: Linear,
    proj_out: Linear,
}

impl FeedForward {
    /// A GEGLU feed-forward with hidden width `4 * dim`.
    pub fn new(dim: usize, device: &Device) -> Self {
        Self {
            norm: layer_norm(dim, device),
            proj_in: LinearConfig::new(dim, 8 * dim).init(device),
            proj_out: LinearConfig::new(4 * dim, dim)
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }

    /// `x + W_out (a * gelu(g))` where `[a, g] = W_in norm(x)`.
    ///
    /// # Shapes
    /// - x: `[..., dim]`, output the same
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let h = kernels::linear(
            &self.proj_in,
            kernels::layer_norm(&self.norm, x.clone(), NORM_EPS),
        );
        kernels::linear_add(&self.proj_out, kernels::geglu(h), x)
    }
}

/// One divided space-time block: temporal attention, spatial attention, feed-forward.
#[derive(Module, Debug)]
pub struct SpaceTimeBlock {
    time_attn: Attention,
    space_attn: Attention,
    ff: FeedForward,
}

impl SpaceTimeBlock {
    /// A block of the width and heads of `config`.
    pub fn new(config: &AutoencoderConfig, device: &Device) -> Self {
        let (dim, heads, head_dim) = (config.hidden, config.heads, config.head_dim);
        Self {
            time_attn: Attention::new(dim, heads, head_dim, device),
            space_attn: Attention::new(dim, heads, head_dim, device),
            ff: FeedForward::new(dim, device),
        }
    }

    /// # Shapes
    /// - x: `[B, L, N, C']` with `N = H' W'` tokens per frame in row-major order
    /// - output: `[B, L, N, C']`
    pub fn forward(&self, x: Tensor<4>, positions: &Positions) -> Tensor<4> {
        let [b, l, n, c] = x.dims();
        // b l n c -> (b n) l c: attend over time at each position.
        let x = x.swap_dims(1, 2).reshape([b * n, l, c]);
        let x = self.time_attn.forward(x, &positions.time);
        // (b n) l c -> (b l) n c: attend over space within each frame.
        let x = x
            .reshape([b, n, l, c])
            .swap_dims(1, 2)
            .reshape([b * l, n, c]);
        let x = self.space_attn.forward(x, &positions.space);
        self.ff.forward(x.reshape([b, l, n, c]))
    }
}

/// The rotary tables a stack of blocks needs: over the `L` frames and over the `H' x W'` grid.
#[derive(Debug, Clone)]
pub struct Positions {
    time: Rotary,
    space: Rotary,
}

impl Positions {
    /// Tables for clips of `config`'s size.
    pub fn new(config: &AutoencoderConfig, device: &Device) -> Self {
        let (dh, base) = (config.head_dim, config.rope_base);
        Self {
            time: Rotary::temporal(config.frames, dh, base, device),
            space: Rotary::axial(config.grid_h(), config.grid_w(), dh, base, device),
        }
    }
}

/// A stack of [`SpaceTimeBlock`]s followed by a final LayerNorm.
#[derive(Module, Debug)]
pub struct Transformer {
    blocks: Vec<SpaceTimeBlock>,
    norm: LayerNorm,
}

impl Transformer {
    /// `config.depth` blocks.
    pub fn new(config: &AutoencoderConfig, device: &Device) -> Self {
        Self {
            blocks: (0..config.depth)
                .map(|_| SpaceTimeBlock::new(config, device))
                .collect(),
            norm: layer_norm(config.hidden, device),
        }
    }

    /// # Shapes
    /// - x: `[B, L, N, C']`, output the same
    pub fn forward(&self, x: Tensor<4>, positions: &Positions) -> Tensor<4> {
        let x = self
            .blocks
            .iter()
            .fold(x, |x, block| block.forward(x, positions));
        kernels::layer_norm(&self.norm, x, NORM_EPS)
    }
}
