//! The decoder's starting weights: a fresh autoencoder decodes every clip as its content frame
//! (the mean frame, while the importance weights are uniform) shown for every frame.
//!
//! Decision: a decoder with random weights scrambles the content frame it is given, and a
//! small model spends its first thousands of steps learning to copy it back; until then it
//! reconstructs real clips worse than their plain mean frame (measured in `docs/training.md`,
//! "Fitting real clips"). So the copy is built in, with the paper's layers unchanged:
//!
//! - `content_embed` writes a patch `p` as `[p + s t, -p + s t]` (zeros beyond `2 C p p`), `t`
//!   a fixed unit vector with mean zero and `s` large enough that the decoder's final
//!   LayerNorm divides every token by nearly the same number;
//! - the motion projections into the decoder start at zero (they learn from the first step);
//! - the residual branches of the blocks start at zero (see `block.rs`), so tokens reach the
//!   final LayerNorm unchanged;
//! - `head` takes half the difference of the two halves, `k p`: the patch itself in latent
//!   mode and behind a clamped pixel head (`k = 1`, an exact copy), and
//!   `2 sigmoid(k p) - 1 = tanh(k p / 2)` behind the spec's sigmoid head with `k = 2.2`,
//!   within 0.05 of `p` for `|p| <= 0.7` but 0.2 short of black and white.
//!
//! It needs `C' >= 2 C p p` (every preset but `tiny-latent`); narrower models keep random
//! weights.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};

use super::config::{AutoencoderConfig, OutputMode, PixelHead};

/// The bias direction's length relative to the largest patch (`sqrt(C p p)` in `[-1, 1]`):
/// the LayerNorm's divisor then varies by at most `1 / (2 RATIO^2)` with the patch.
const RATIO: f64 = 4.0;

/// Whether `config` is wide enough for the copying start.
pub(super) fn copies(config: &AutoencoderConfig) -> bool {
    config.hidden >= 2 * config.patch_dim()
}

/// The fixed direction `t`: alternating signs, mean zero, unit length, `pd` values.
fn direction(pd: usize) -> Vec<f64> {
    let mut t: Vec<f64> = (0..pd)
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let mean = t.iter().sum::<f64>() / pd as f64;
    t.iter_mut().for_each(|v| *v -= mean);
    let norm = t.iter().map(|v| v * v).sum::<f64>().sqrt();
    t.iter().map(|v| v / norm).collect()
}

fn linear(weight: Vec<f32>, bias: Vec<f32>, [i, o]: [usize; 2], device: &Device) -> Linear {
    Linear {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight, [i, o]), device)),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [o]),
            device,
        ))),
    }
}

/// `content_embed`: `Linear(C p p -> C')`, patch `p` to `[p + s t, -p + s t, 0...]`.
pub(super) fn content_embed(config: &AutoencoderConfig, device: &Device) -> Linear {
    let (pd, c) = (config.patch_dim(), config.hidden);
    let s = scale(pd);
    let t = direction(pd);
    // burn's weight is [d_input, d_output].
    let mut weight = vec![0.0f32; pd * c];
    let mut bias = vec![0.0f32; c];
    for i in 0..pd {
        weight[i * c + i] = 1.0;
        weight[i * c + pd + i] = -1.0;
        bias[i] = (s * t[i]) as f32;
        bias[pd + i] = (s * t[i]) as f32;
    }
    linear(weight, bias, [pd, c], device)
}

/// `head`: `Linear(C' -> C p p)`, half the difference of the two halves of a normalised token,
/// scaled back to `k p`.
pub(super) fn head(config: &AutoencoderConfig, device: &Device) -> Linear {
    let (pd, c) = (config.patch_dim(), config.hidden);
    let k = match (config.output, config.pixel_head()) {
        (OutputMode::Pixel, PixelHead::Sigmoid) => 2.2,
        (OutputMode::Pixel, PixelHead::Clamp) | (OutputMode::Latent, _) => 1.0,
    };
    // The LayerNorm divides `[p + s t, -p + s t, 0...]` by its root mean square,
    // about `s sqrt(2 / C')`.
    let divisor = scale(pd) * (2.0 / c as f64).sqrt();
    let a = (k * divisor / 2.0) as f32;
    let mut weight = vec![0.0f32; c * pd];
    for i in 0..pd {
        weight[i * pd + i] = a;
        weight[(pd + i) * pd + i] = -a;
    }
    linear(weight, vec![0.0; pd], [c, pd], device)
}

/// `s`: [`RATIO`] times the length of the largest patch.
fn scale(pd: usize) -> f64 {
    RATIO * (pd as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// A clip whose frames all show one picture: a fresh model's reconstruction is that
    /// picture (latent mode, clamped pixel head) or `tanh(1.1 x)` of it (sigmoid pixel head).
    fn still(cfg: &AutoencoderConfig, dev: &Device) -> (Tensor<5>, Vec<f32>) {
        let [l, c, h, w] = cfg.clip_shape();
        let frame = Tensor::<4>::random([1, c, h, w], Distribution::Uniform(-0.9, 0.9), dev);
        let values = frame.clone().into_data().try_to_vec::<f32>().unwrap();
        (frame.unsqueeze_dim::<5>(1).repeat_dim(1, l), values)
    }

    #[test]
    fn a_fresh_decoder_shows_the_content_frame() {
        let dev = Device::flex();
        let mut latent = AutoencoderConfig::preset("sd15-512").unwrap();
        (latent.depth, latent.hidden, latent.heads, latent.head_dim) = (1, 32, 2, 8);
        let tiny = AutoencoderConfig::preset("tiny").unwrap();
        assert_eq!(tiny.pixel_head(), PixelHead::Clamp);
        let sigmoid = tiny.clone().with_pixel_head(Some(PixelHead::Sigmoid));
        for (cfg, curve) in [(sigmoid, true), (tiny, false), (latent, false)] {
            let name = cfg.name.clone();
            assert!(copies(&cfg));
            let model = cfg.init(&dev).unwrap();
            let (x, frame) = still(&cfg, &dev);
            let (_, recon) = model.forward(x);
            let recon = recon.into_data().try_to_vec::<f32>().unwrap();
            let size = frame.len();
            let worst = recon
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let p = frame[i % size];
                    let want = if curve { (1.1 * p).tanh() } else { p };
                    (r - want).abs()
                })
                .fold(0.0f32, f32::max);
            assert!(worst < 0.02, "{name}: off by {worst}");
        }
    }

    /// Black, white and grey: the clamped head gives them back, the sigmoid head's curve cannot.
    #[test]
    fn a_fresh_clamped_decoder_shows_black_and_white() {
        let dev = Device::flex();
        let tiny = AutoencoderConfig::preset("tiny").unwrap();
        let [l, c, h, w] = tiny.clip_shape();
        let frame: Vec<f32> = (0..c * h * w)
            .map(|i| [-1.0, 0.0, 1.0][i * 7 % 3])
            .collect();
        let clip = Tensor::<4>::from_data(TensorData::new(frame.clone(), [1, c, h, w]), &dev)
            .unsqueeze_dim::<5>(1)
            .repeat_dim(1, l);
        let worst = |cfg: AutoencoderConfig| {
            let (_, recon) = cfg.init(&dev).unwrap().forward(clip.clone());
            let recon = recon.into_data().try_to_vec::<f32>().unwrap();
            let size = frame.len();
            recon
                .iter()
                .enumerate()
                .map(|(i, r)| (r - frame[i % size]).abs())
                .fold(0.0f32, f32::max)
        };
        let clamped = worst(tiny.clone());
        assert!(clamped < 0.035, "clamped head: off by {clamped}");
        let sigmoid = worst(tiny.with_pixel_head(Some(PixelHead::Sigmoid)));
        assert!(sigmoid > 0.15, "sigmoid head: off by only {sigmoid}");
    }

    #[test]
    fn the_direction_has_mean_zero_and_unit_length() {
        for pd in [3, 12, 48] {
            let t = direction(pd);
            assert!(t.iter().sum::<f64>().abs() < 1e-12);
            assert!((t.iter().map(|v| v * v).sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }
}
