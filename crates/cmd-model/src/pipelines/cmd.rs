//! CMD's text-to-video sampling (Algorithm 1 of the paper, spec section 4), in one place:
//!
//! 1. prompt -> tokens -> text encoder: the last hidden state (content model's condition) and
//!    its mean over tokens (the motion model's pooled text vector);
//! 2. content frame: the content UNet with classifier-free guidance (empty prompt as null);
//! 3. motion latent: the motion DiT given the clean content frame and the pooled text, with
//!    classifier-free guidance (zero text vector as null, content frame kept);
//! 4. the autoencoder decodes content + motion into frames; in latent mode each frame's latent
//!    then goes through the Stable Diffusion VAE decoder (divided by its scaling factor).
//!
//! Beyond the paper, and natural in this design: image-to-video (a given content frame, only
//! motion sampled) and motion transfer (the content frame of one clip with the motion latent
//! of another). Progress is reported per stage and step through a callback.

use burn::tensor::{Device, Tensor};

use crate::clip::ClipTextModel;
use crate::dit::MotionDit;
use crate::schedulers::{Prediction, SchedulerConfig};
use crate::tokenizer::ClipTokenizer;
use crate::unet::{Unet, UnetConfig};
use crate::vae::{Vae, VaeConfig};
use crate::{Autoencoder, Encoded};

use super::denoise::{Rows, SampleLoop, SamplingOptions, guided, rows_of};
use super::generation::Generation;
use super::noise::standard_normal;
use super::stable_diffusion::{SampleError, encode_prompt};

/// A motion DiT's guided output for `x` at timestep `t` (see [`guided`]), given a clean
/// content frame and a pooled text vector; the null condition is the zero text vector with
/// the content frame kept (spec section 3).
pub fn guided_motion(
    dit: &MotionDit,
    content: &Tensor<4>,
    pooled: &Tensor<2>,
    x: &Tensor<4>,
    t: usize,
    guidance: f64,
) -> Tensor<4> {
    guided(x, t, guidance, &|x, t, rows| {
        motion_rows(dit, content, pooled, x, t, rows)
    })
}

/// The motion DiT's output on `rows` of a guided step (the network of [`guided_motion`]):
/// the null rows take the zero text vector, every row the content frame.
pub(super) fn motion_rows(
    dit: &MotionDit,
    content: &Tensor<4>,
    pooled: &Tensor<2>,
    x: Tensor<4>,
    t: &[f64],
    rows: Rows,
) -> Tensor<4> {
    let null = pooled.zeros_like();
    let contents = rows_of(rows, content, content);
    dit.forward(x, t, contents, rows_of(rows, &null, pooled))
}

/// The network call of a guided sampler step, for a caller that computes its null-condition
/// rows elsewhere while it computes the conditional ones (the browser's second worker): see
/// [`Generation::guided_call`] and [`CmdPipeline::null_prediction`].
///
/// One value per step, so the motion variant's content frame is not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum GuidedCall {
    /// A content-frame step: the content UNet on `x` at timestep `t`.
    Content {
        /// The sample `x_t`.
        x: Tensor<4>,
        /// The timestep.
        t: usize,
    },
    /// A motion step: the motion DiT on `x` at timestep `t`, given the clean content frame.
    Motion {
        /// The sample `x_t`.
        x: Tensor<4>,
        /// The timestep.
        t: usize,
        /// The content frame `[1, C, H, W]`.
        content: Tensor<4>,
    },
}

/// The motion model's noise schedule (spec section 3): linear betas 1e-4 -> 0.02, T = 1000,
/// with the DiT's prediction target (the spec's epsilon, or v). Predicted samples are not
/// clipped, as DiT samples (`clip_denoised=False`): diffusers' DDIM clips the predicted `x₀`
/// but keeps the unclipped noise estimate, and with motion latents near +-1 (tanh) that
/// mismatch adds up over many steps until objects stand still.
pub fn motion_schedule(prediction: Prediction) -> SchedulerConfig {
    SchedulerConfig {
        prediction_type: prediction,
        clip_sample: false,
        ..SchedulerConfig::default()
    }
}

/// A stage of generation, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Encoding the prompt.
    Text,
    /// Sampling the content frame.
    Content,
    /// Sampling the motion latent.
    Motion,
    /// Decoding frames.
    Decode,
}

/// How to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateOptions {
    /// Content-frame sampling (spec: DDIM, 50 steps, guidance 7.5).
    pub content: SamplingOptions,
    /// Motion sampling (spec: DDIM, 100 steps, guidance about 9).
    pub motion: SamplingOptions,
    /// Seed of the starting noise (content from `seed`, motion from `seed + 1`).
    pub seed: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            content: SamplingOptions::default(),
            motion: SamplingOptions {
                steps: 100,
                guidance: 9.0,
                ..SamplingOptions::default()
            },
            seed: 0,
        }
    }
}

/// A generated (or re-combined) clip.
#[derive(Debug, Clone)]
pub struct Video {
    /// Frames `[1, L, 3, H, W]` in `[-1, 1]`.
    pub frames: Tensor<5>,
    /// The content frame `[1, C, H, W]` (the autoencoder's space: pixels or scaled latents).
    pub content: Tensor<4>,
    /// The motion latent `[1, D, L, H'+W']`.
    pub motion: Tensor<4>,
    /// The prompt was longer than 75 tokens and was cut.
    pub truncated: bool,
}

/// The video autoencoder with, in latent mode, Stable Diffusion's VAE: clips to content frames
/// and motion latents and back.
#[derive(Debug)]
pub struct Codec {
    /// The video autoencoder.
    pub autoencoder: Autoencoder,
    /// Stable Diffusion's VAE and its config (latent mode only).
    pub vae: Option<(VaeConfig, Vae)>,
}

impl Codec {
    /// Frames `[B, L, 3, H, W]` in `[-1, 1]` from content frames and motion latents.
    pub fn decode(&self, content: Tensor<4>, motion: Tensor<4>) -> Tensor<5> {
        let x = self.autoencoder.decode(content, motion);
        let frames = match &self.vae {
            Some((config, vae)) => {
                let [b, l, c, h, w] = x.dims();
                let z = x
                    .reshape([b * l, c, h, w])
                    .div_scalar(config.scaling_factor);
                let pixels = vae.decode(z);
                let [_, pc, ph, pw] = pixels.dims();
                pixels.reshape([b, l, pc, ph, pw])
            }
            None => x,
        };
        frames.clamp(-1.0, 1.0)
    }

    /// Frames `[B, L, 3, H, W]` in `[-1, 1]` in the autoencoder's space: unchanged in pixel
    /// mode, scaled VAE latents in latent mode.
    pub fn encode_frames(&self, frames: Tensor<5>) -> Tensor<5> {
        match &self.vae {
            Some((config, vae)) => vae.encode_clips(frames, config.scaling_factor),
            None => frames,
        }
    }

    /// The content frame and motion latent of clips `[B, L, 3, H, W]` in `[-1, 1]`.
    pub fn encode(&self, frames: Tensor<5>) -> Encoded {
        self.autoencoder.encode(self.encode_frames(frames))
    }

    /// The pixel size of the frames the codec takes: `(height, width)`.
    pub fn frame_size(&self) -> (usize, usize) {
        let cfg = self.autoencoder.config();
        let f = self.vae.as_ref().map_or(1, |(c, _)| c.scale_factor());
        (cfg.height * f, cfg.width * f)
    }

    /// Motion transfer: the content frame of clip `a` with the motion latent of clip `b`
    /// (both `[1, L, 3, H, W]` in `[-1, 1]`).
    pub fn transfer(&self, a: Tensor<5>, b: Tensor<5>) -> Video {
        let content = self.encode(a).content;
        let motion = self.encode(b).motion;
        Video {
            frames: self.decode(content.clone(), motion.clone()),
            content,
            motion,
            truncated: false,
        }
    }
}

/// Every network of a CMD model.
#[derive(Debug)]
pub struct CmdPipeline {
    /// The prompt tokenizer.
    pub tokenizer: ClipTokenizer,
    /// The text encoder shared by both diffusion models.
    pub text_encoder: ClipTextModel,
    /// The content-frame UNet.
    pub content_unet: Unet,
    /// Its config.
    pub content_unet_config: UnetConfig,
    /// Its noise schedule.
    pub content_scheduler: SchedulerConfig,
    /// The motion DiT.
    pub dit: MotionDit,
    /// The video autoencoder (and, in latent mode, the VAE).
    pub codec: Codec,
}

/// Progress callback: stage, steps done, steps in the stage.
pub type Progress<'a> = dyn FnMut(Stage, usize, usize) + 'a;

/// A prompt, encoded for both diffusion models.
#[derive(Debug, Clone)]
pub struct Text {
    /// Text states of the prompt `[1, 77, D]` (the content model's condition).
    pub cond: Tensor<3>,
    /// Text states of the empty prompt (the content model's null condition).
    pub uncond: Tensor<3>,
    /// The pooled prompt vector `[1, D]` (the motion model's condition).
    pub pooled: Tensor<2>,
    /// The prompt was longer than 75 tokens and was cut.
    pub truncated: bool,
}

impl CmdPipeline {
    /// Encodes a prompt (and the empty prompt) with the text encoder.
    pub fn text(&self, prompt: &str, device: &Device) -> Result<Text, SampleError> {
        let (cond, tokens) = encode_prompt(&self.tokenizer, &self.text_encoder, prompt, device)?;
        let (uncond, _) = encode_prompt(&self.tokenizer, &self.text_encoder, "", device)?;
        let pooled = self
            .dit
            .config()
            .text_condition(cond.clone(), &[tokens.len]);
        Ok(Text {
            cond,
            uncond,
            pooled,
            truncated: tokens.truncated,
        })
    }

    /// A content-frame sampling run from the noise of `seed`; step it with
    /// [`predict_content`](Self::predict_content).
    pub fn content_loop(
        &self,
        options: &SamplingOptions,
        seed: u64,
        device: &Device,
    ) -> Result<SampleLoop, SampleError> {
        let cfg = self.codec.autoencoder.config();
        let noise = standard_normal([1, cfg.channels, cfg.height, cfg.width], seed, device);
        Ok(SampleLoop::new(&self.content_scheduler, noise, options)?)
    }

    /// The content UNet's guided output for `x` at timestep `t` (the empty prompt is the null
    /// condition).
    pub fn predict_content(
        &self,
        text: &Text,
        x: &Tensor<4>,
        t: usize,
        guidance: f64,
    ) -> Tensor<4> {
        guided(x, t, guidance, &|x, t, rows| {
            self.content_rows(&text.uncond, &text.cond, x, t, rows)
        })
    }

    /// The content UNet's output on `rows` of a guided step (the network of
    /// [`predict_content`](Self::predict_content)).
    pub(super) fn content_rows(
        &self,
        uncond: &Tensor<3>,
        cond: &Tensor<3>,
        x: Tensor<4>,
        t: &[f64],
        rows: Rows,
    ) -> Tensor<4> {
        self.content_unet
            .forward(x, t, &rows_of(rows, uncond, cond))
    }

    /// Text states of the empty prompt `[1, 77, D]`: the content model's null condition, which
    /// [`null_prediction`](Self::null_prediction) takes.
    pub fn null_text(&self, device: &Device) -> Result<Tensor<3>, SampleError> {
        Ok(encode_prompt(&self.tokenizer, &self.text_encoder, "", device)?.0)
    }

    /// The null-condition prediction of a guided step (its [`Rows::Null`] rows), given the
    /// empty prompt's text states ([`null_text`](Self::null_text)): with the conditional
    /// prediction of [`Generation::cond_prediction`], what [`Generation::step_guided`] takes.
    pub fn null_prediction(&self, call: &GuidedCall, null_text: &Tensor<3>) -> Tensor<4> {
        match call {
            GuidedCall::Content { x, t } => {
                let t = vec![*t as f64; x.dims()[0]];
                self.content_rows(null_text, null_text, x.clone(), &t, Rows::Null)
            }
            GuidedCall::Motion { x, t, content } => {
                let t = vec![*t as f64; x.dims()[0]];
                let text_dim = self.dit.config().text_dim;
                let null = Tensor::zeros([content.dims()[0], text_dim], &x.device());
                motion_rows(&self.dit, content, &null, x.clone(), &t, Rows::Null)
            }
        }
    }

    /// A motion-latent sampling run from the noise of `seed`; step it with
    /// [`predict_motion`](Self::predict_motion).
    pub fn motion_loop(
        &self,
        options: &SamplingOptions,
        seed: u64,
        device: &Device,
    ) -> Result<SampleLoop, SampleError> {
        let cfg = self.dit.config();
        let shape = [1, cfg.motion_channels, cfg.frames, cfg.motion_width];
        let noise = standard_normal(shape, seed, device);
        Ok(SampleLoop::new(
            &motion_schedule(cfg.prediction),
            noise,
            options,
        )?)
    }

    /// The motion DiT's guided output for `x` at timestep `t`, given a clean content frame and
    /// a pooled text vector (null condition: the zero vector, the content frame kept).
    pub fn predict_motion(
        &self,
        content: &Tensor<4>,
        pooled: &Tensor<2>,
        x: &Tensor<4>,
        t: usize,
        guidance: f64,
    ) -> Tensor<4> {
        guided_motion(&self.dit, content, pooled, x, t, guidance)
    }

    /// Text to video (a [`Generation`] run to the end).
    pub fn generate(
        &self,
        prompt: &str,
        options: &GenerateOptions,
        device: &Device,
        progress: &mut Progress,
    ) -> Result<Video, SampleError> {
        Generation::text_to_video(self, prompt, options, device)?.run(progress)
    }

    /// Image to video: `content` (`[1, C, H, W]`, the autoencoder's space) is the content frame;
    /// only the motion is sampled (a [`Generation`] run to the end).
    pub fn animate(
        &self,
        content: Tensor<4>,
        prompt: &str,
        options: &GenerateOptions,
        progress: &mut Progress,
    ) -> Result<Video, SampleError> {
        Generation::image_to_video(self, content, prompt, options)?.run(progress)
    }
}
