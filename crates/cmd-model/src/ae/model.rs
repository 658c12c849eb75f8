//! The CMD autoencoder: encoder `f`, content frame, motion latent, decoder `g` (spec section 1).

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};

use super::block::{Positions, Transformer};
use super::config::{AutoencoderConfig, OutputMode, PixelHead};
use super::patch::{patchify, unpatchify};
use super::{init, motion};
use crate::{ModelError, kernels};

/// What the encoder makes of a batch of clips.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Content frames `x̄ = Σ_l w_l x_l`, `[B, C, H, W]`.
    pub content: Tensor<4>,
    /// Importance weights `w` (softmax over frames), `[B, L, C, H, W]`; they sum to 1 over `L`.
    pub weights: Tensor<5>,
    /// Motion latents `z = concat(z_y, z_x)`, `[B, D, L, H' + W']`, values in `(-1, 1)`.
    pub motion: Tensor<4>,
}

/// The CMD autoencoder. Build it with [`AutoencoderConfig::init`].
#[derive(Module, Debug)]
pub struct Autoencoder {
    /// `Linear(C p p -> C')` on every patch of every frame.
    patch_embed: Linear,
    /// Backbone `f_B`.
    encoder: Transformer,
    /// `Linear(C' -> C p p)`: one importance logit per frame, pixel and channel.
    importance_head: Linear,
    /// 1x1 conv `C' -> D` on `ū_y` (a linear layer over channels).
    to_motion_y: Linear,
    /// 1x1 conv `C' -> D` on `ū_x`.
    to_motion_x: Linear,
    /// `Linear(C p p -> C')` on the patchified content frame.
    content_embed: Linear,
    /// 1x1 conv `D -> C'` on `z_y`.
    from_motion_y: Linear,
    /// 1x1 conv `D -> C'` on `z_x`.
    from_motion_x: Linear,
    /// Decoder transformer.
    decoder: Transformer,
    /// `Linear(C' -> C p p)` per token.
    head: Linear,
    #[module(skip)]
    config: AutoencoderConfig,
}

impl AutoencoderConfig {
    /// A freshly initialised autoencoder of this size on `device`.
    ///
    /// The importance head starts at zero, so an untrained model's content frame is the mean
    /// frame, and the decoder starts by showing its content frame for every frame (see
    /// `init.rs`), so an untrained model's reconstruction is the clip's mean frame.
    pub fn init(&self, device: &Device) -> Result<Autoencoder, ModelError> {
        self.validate()?;
        let (c, pd, d) = (self.hidden, self.patch_dim(), self.motion_dim);
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let copies = init::copies(self);
        let from_motion = || match copies {
            true => LinearConfig::new(d, c)
                .with_initializer(Initializer::Zeros)
                .init(device),
            false => linear(d, c),
        };
        Ok(Autoencoder {
            patch_embed: linear(pd, c),
            encoder: Transformer::new(self, device),
            importance_head: LinearConfig::new(c, pd)
                .with_initializer(Initializer::Zeros)
                .init(device),
            to_motion_y: linear(c, d),
            to_motion_x: linear(c, d),
            content_embed: match copies {
                true => init::content_embed(self, device),
                false => linear(pd, c),
            },
            from_motion_y: from_motion(),
            from_motion_x: from_motion(),
            decoder: Transformer::new(self, device),
            head: match copies {
                true => init::head(self, device),
                false => linear(c, pd),
            },
            config: self.clone(),
        })
    }
}

impl Autoencoder {
    /// The sizes this model was built with.
    pub fn config(&self) -> &AutoencoderConfig {
        &self.config
    }

    /// Checks that `x` is a batch of clips of this model's size (`[B, L, C, H, W]`).
    pub fn check_clips(&self, x: &Tensor<5>) -> Result<(), ModelError> {
        let [b, rest @ ..] = x.dims();
        let expected = self.config.clip_shape();
        if rest != expected || b == 0 {
            let mut want = vec![b.max(1)];
            want.extend(expected);
            return Err(ModelError::Shape {
                what: "clips [B, L, C, H, W]",
                expected: want,
                found: x.dims().to_vec(),
            });
        }
        Ok(())
    }

    /// Encodes clips into content frames, importance weights and motion latents.
    ///
    /// # Shapes
    /// - x: `[B, L, C, H, W]` (see [`check_clips`](Self::check_clips))
    pub fn encode(&self, x: Tensor<5>) -> Encoded {
        let cfg = &self.config;
        let (p, gh, gw) = (cfg.patch, cfg.grid_h(), cfg.grid_w());
        let [b, l, _, _, _] = x.dims();
        let positions = Positions::new(cfg, &x.device());

        let tokens = self.patch_embed.forward(patchify(x.clone(), p)); // b l (h w) c'
        let u = self.encoder.forward(tokens, &positions); // b l (h w) c'

        // Importance weights: one logit per frame, pixel and channel, softmax over frames.
        let logits = unpatchify(self.importance_head.forward(u.clone()), p, gh, gw); // b l c h w
        let (content, weights) = kernels::content_frame(x, logits); // b c h w, b l c h w

        // Motion: average over x (-> per row) and over y (-> per column), 1x1 conv, tanh.
        let u = u.reshape([b, l, gh, gw, cfg.hidden]);
        let u_y = u.clone().mean_dim(3).squeeze_dim::<4>(3); // b l h c'
        let u_x = u.mean_dim(2).squeeze_dim::<4>(2); // b l w c'
        let z_y = self.to_motion_y.forward(u_y).tanh().permute([0, 3, 1, 2]); // b d l h
        let z_x = self.to_motion_x.forward(u_x).tanh().permute([0, 3, 1, 2]); // b d l w
        Encoded {
            content,
            weights,
            motion: motion::join(z_y, z_x),
        }
    }

    /// Decodes content frames and motion latents into clips.
    ///
    /// # Shapes
    /// - content: `[B, C, H, W]`
    /// - motion: `[B, D, L, H' + W']`
    /// - output: `[B, L, C, H, W]`; in `[-1, 1]` in pixel mode
    pub fn decode(&self, content: Tensor<4>, motion: Tensor<4>) -> Tensor<5> {
        let cfg = &self.config;
        let (p, gh, gw, c) = (cfg.patch, cfg.grid_h(), cfg.grid_w(), cfg.hidden);
        let [b, _, l, _] = motion.dims();
        let (z_y, z_x) = motion::split(motion, gh);

        let v_c = self
            .content_embed
            .forward(patchify(content.unsqueeze_dim(1), p)) // b 1 (h w) c'
            .reshape([b, 1, gh, gw, c]);
        let v_y = self
            .from_motion_y
            .forward(z_y.permute([0, 2, 3, 1])) // b l h c'
            .reshape([b, l, gh, 1, c]);
        let v_x = self
            .from_motion_x
            .forward(z_x.permute([0, 2, 3, 1])) // b l w c'
            .reshape([b, l, 1, gw, c]);
        // v[l, h, w] = v_c[h, w] + v_y[l, h] + v_x[l, w]
        let shape = [b, l, gh, gw, c];
        let v = v_c.expand(shape) + v_y.expand(shape) + v_x.expand(shape);

        let positions = Positions::new(cfg, &v.device());
        let h = self
            .decoder
            .forward(v.reshape([b, l, gh * gw, c]), &positions);
        let out = unpatchify(self.head.forward(h), p, gh, gw); // b l c h w
        match (cfg.output, cfg.pixel_head()) {
            (OutputMode::Pixel, PixelHead::Sigmoid) => sigmoid(out).mul_scalar(2.0).sub_scalar(1.0),
            (OutputMode::Pixel, PixelHead::Clamp) => clamp_straight_through(out),
            (OutputMode::Latent, _) => out,
        }
    }

    /// Encodes and decodes: `(encoding, reconstruction)`.
    pub fn forward(&self, x: Tensor<5>) -> (Encoded, Tensor<5>) {
        let encoded = self.encode(x);
        let recon = self.decode(encoded.content.clone(), encoded.motion.clone());
        (encoded, recon)
    }

    /// The training loss of spec section 1: L1 in pixel mode, MSE on latents in latent mode.
    pub fn loss(&self, recon: Tensor<5>, target: Tensor<5>) -> Tensor<1> {
        let diff = recon - target;
        match self.config.output {
            OutputMode::Pixel => diff.abs().mean(),
            OutputMode::Latent => diff.powf_scalar(2.0).mean(),
        }
    }
}

/// `y` clamped to `[-1, 1]`, with the gradient of the identity on an autodiff device (the
/// value then equals the clamp up to rounding).
fn clamp_straight_through<const D: usize>(y: Tensor<D>) -> Tensor<D> {
    let clamped = y.clone().clamp(-1.0, 1.0);
    if y.is_autodiff() {
        y.clone() + (clamped - y).detach()
    } else {
        clamped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn small(name: &str) -> AutoencoderConfig {
        // The paper presets at reduced depth and width keep the shapes and run fast.
        let mut c = AutoencoderConfig::preset(name).unwrap();
        c.depth = 1;
        c.hidden = 32;
        c.heads = 2;
        c.head_dim = 8;
        c
    }

    fn clips(cfg: &AutoencoderConfig, b: usize, dev: &Device) -> Tensor<5> {
        let [l, c, h, w] = cfg.clip_shape();
        Tensor::random([b, l, c, h, w], Distribution::Uniform(-1.0, 1.0), dev)
    }

    #[test]
    fn the_clamped_head_clamps_and_passes_gradients_unchanged() {
        let dev = Device::flex().autodiff();
        let values = vec![-3.0f32, -1.0, -0.25, 0.0, 0.5, 1.0, 2.0, 7.0];
        let y = Tensor::<1>::from_floats(values.as_slice(), &dev).require_grad();
        let out = clamp_straight_through(y.clone());
        let got = out.clone().into_data().try_to_vec::<f32>().unwrap();
        let want: Vec<f32> = values.iter().map(|v| v.clamp(-1.0, 1.0)).collect();
        assert_eq!(got, want);
        // d/dy of sum(k * out) is k everywhere, the clamped entries included.
        let k = Tensor::<1>::from_floats([1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &dev);
        let grads = (out * k).sum().backward();
        let grad = y
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(grad, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        // Without autodiff it is the plain clamp.
        let plain = Tensor::<1>::from_floats(values.as_slice(), &Device::flex());
        let plain = clamp_straight_through(plain)
            .into_data()
            .try_to_vec::<f32>();
        assert_eq!(plain.unwrap(), want);
    }

    #[test]
    fn every_preset_gives_the_spec_shapes() {
        let dev = Device::flex();
        for name in ["tiny", "ucf64", "sd15-512", "sd21-512x1024"] {
            let cfg = if name == "tiny" {
                AutoencoderConfig::preset(name).unwrap()
            } else {
                small(name)
            };
            let model = cfg.init(&dev).unwrap();
            let x = clips(&cfg, 1, &dev);
            model.check_clips(&x).unwrap();
            let (enc, recon) = model.forward(x);
            let [c, h, w] = cfg.content_shape();
            let [d, l, hw] = cfg.motion_shape();
            assert_eq!(enc.content.dims(), [1, c, h, w], "{name}");
            assert_eq!(enc.weights.dims(), [1, l, c, h, w], "{name}");
            assert_eq!(enc.motion.dims(), [1, d, l, hw], "{name}");
            assert_eq!(recon.dims(), [1, l, c, h, w], "{name}");
        }
    }

    #[test]
    fn content_frame_is_a_convex_combination_of_the_frames() {
        let dev = Device::flex();
        let cfg = AutoencoderConfig::preset("tiny").unwrap();
        let mut model = cfg.init(&dev).unwrap();
        // Non-zero importance logits, so the weights are not trivially uniform.
        model.importance_head = LinearConfig::new(cfg.hidden, cfg.patch_dim())
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 1.0,
            })
            .init(&dev);
        let x = clips(&cfg, 2, &dev);
        let enc = model.encode(x.clone());

        let sums = enc
            .weights
            .clone()
            .sum_dim(1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
        let w = enc.weights.into_data().try_to_vec::<f32>().unwrap();
        assert!(w.iter().all(|v| *v >= 0.0));
        let spread = w.iter().cloned().fold(0.0f32, f32::max);
        assert!(
            spread > 1.5 / cfg.frames as f32,
            "weights should not be uniform"
        );

        let lo = x
            .clone()
            .min_dim(1)
            .squeeze_dim::<4>(1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let hi = x
            .max_dim(1)
            .squeeze_dim::<4>(1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let content = enc.content.into_data().try_to_vec::<f32>().unwrap();
        for ((c, lo), hi) in content.iter().zip(&lo).zip(&hi) {
            assert!(*c >= lo - 1e-5 && *c <= hi + 1e-5, "{lo} <= {c} <= {hi}");
        }
    }

    #[test]
    fn untrained_content_frame_is_the_mean_frame_and_motion_is_bounded() {
        let dev = Device::flex();
        let cfg = AutoencoderConfig::preset("tiny").unwrap();
        let model = cfg.init(&dev).unwrap();
        let x = clips(&cfg, 1, &dev);
        let enc = model.encode(x.clone());
        let mean = x
            .mean_dim(1)
            .squeeze_dim::<4>(1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let content = enc.content.into_data().try_to_vec::<f32>().unwrap();
        for (a, b) in content.iter().zip(&mean) {
            assert!((a - b).abs() < 1e-5);
        }
        let z = enc.motion.into_data().try_to_vec::<f32>().unwrap();
        assert!(z.iter().all(|v| v.abs() < 1.0));
    }

    #[test]
    fn motion_changes_the_decoded_clip() {
        let dev = Device::flex();
        let cfg = small("sd21-512x1024");
        let mut model = cfg.init(&dev).unwrap();
        // Trained weights, not the fresh decoder's zero motion projections.
        for layer in [&mut model.from_motion_y, &mut model.from_motion_x] {
            *layer = LinearConfig::new(cfg.motion_dim, cfg.hidden).init(&dev);
        }
        let enc = model.encode(clips(&cfg, 1, &dev));
        let out = model.decode(enc.content.clone(), enc.motion.clone());
        let zero = model.decode(enc.content, enc.motion.zeros_like());
        let diff = (out - zero).abs().max().into_scalar::<f32>();
        assert!(diff > 1e-4, "motion must change the decoded clip");
    }

    #[test]
    fn pixel_output_is_in_range_and_shape_errors_are_clear() {
        let dev = Device::flex();
        let cfg = AutoencoderConfig::preset("tiny").unwrap();
        let model = cfg.init(&dev).unwrap();
        let (_, recon) = model.forward(clips(&cfg, 1, &dev));
        let v = recon.into_data().try_to_vec::<f32>().unwrap();
        assert!(v.iter().all(|v| (-1.0..=1.0).contains(v)));

        let wrong = Tensor::<5>::zeros([1, 8, 3, 64, 64], &dev);
        let msg = model.check_clips(&wrong).unwrap_err().to_string();
        assert!(
            msg.contains("[1, 16, 3, 64, 64]") && msg.contains("[1, 8, 3, 64, 64]"),
            "{msg}"
        );
    }
}
