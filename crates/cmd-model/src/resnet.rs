//! Pieces Stable Diffusion's VAE and UNet share: diffusers' `ResnetBlock2D` (with an optional
//! time embedding), "same" convolutions, nearest-neighbour upsampling.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

use crate::kernels;

/// A `k x k` convolution with "same" padding.
pub fn conv2d(cin: usize, cout: usize, k: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
        .init(device)
}

/// A `3 x 3`, stride-2 convolution (the downsamplers; VAE and UNet pad differently).
pub fn downsample_conv(c: usize, padding: PaddingConfig2d, device: &Device) -> Conv2d {
    Conv2dConfig::new([c, c], [3, 3])
        .with_stride([2, 2])
        .with_padding(padding)
        .init(device)
}

/// Nearest-neighbour 2x upsampling: `b c h w -> b c (h 2) (w 2)`.
pub fn upsample_nearest(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1])
        .expand([b, c, h, 2, w, 2])
        .reshape([b, c, 2 * h, 2 * w])
}

/// diffusers' `ResnetBlock2D`: GroupNorm, SiLU, conv, (+ projected time embedding), GroupNorm,
/// SiLU, conv, plus a 1x1-conv shortcut when the width changes.
#[derive(Module, Debug)]
pub struct Resnet {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

impl Resnet {
    /// `cin -> cout` channels; `temb` is the width of the time embedding, if any.
    pub fn new(
        cin: usize,
        cout: usize,
        groups: usize,
        eps: f64,
        temb: Option<usize>,
        device: &Device,
    ) -> Self {
        let norm = |c| {
            GroupNormConfig::new(groups, c)
                .with_epsilon(eps)
                .init(device)
        };
        Self {
            norm1: norm(cin),
            conv1: conv2d(cin, cout, 3, device),
            time_emb_proj: temb.map(|t| LinearConfig::new(t, cout).init(device)),
            norm2: norm(cout),
            conv2: conv2d(cout, cout, 3, device),
            conv_shortcut: (cin != cout).then(|| conv2d(cin, cout, 1, device)),
        }
    }

    /// # Shapes
    /// - x: `[B, cin, H, W]`, temb: `[B, T]`; output `[B, cout, H, W]`
    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let mut h = kernels::conv2d(
            &self.conv1,
            kernels::group_norm(&self.norm1, x.clone(), true),
        );
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let [b, c] = [h.dims()[0], h.dims()[1]];
            h = h + proj.forward(silu(temb.clone())).reshape([b, c, 1, 1]);
        }
        let h = kernels::conv2d(&self.conv2, kernels::group_norm(&self.norm2, h, true));
        let x = match &self.conv_shortcut {
            Some(conv) => kernels::conv2d(conv, x),
            None => x,
        };
        x + h
    }
}
