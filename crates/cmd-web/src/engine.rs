//! The engine: load a bundle, generate (text to video, image to video), decompose a clip into
//! content and motion, transfer motion; each result comes with the teaching pictures.

use std::cell::OnceCell;
use std::collections::HashMap;

use burn::tensor::{Device, Tensor, TensorData};
use cmd_model::OutputMode;
use cmd_model::kernels;
use cmd_model::metrics::psnr;
use cmd_model::pipelines::bundle::load_bundle_autoencoder;
use cmd_model::pipelines::generation::Progress;
use cmd_model::pipelines::{
    CmdPipeline, Codec, GenerateOptions, Generation, Sampler, SamplingOptions, Stage, Video,
};
use cmd_video::views::{motion_planes, weight_maps};
use cmd_video::{Clip, gif};
use web_time::Instant;

use crate::helper::{self, Chooser, Helper, NullCall};
use crate::pixels::{clip_from_rgba, clip_tensor, rgba_from_clip, rgba_from_image};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The prompt.
    pub prompt: String,
    /// Seed of the starting noise (content from `seed`, motion from `seed + 1`, as the CLI).
    pub seed: u64,
    /// Content-frame sampler steps.
    pub steps: usize,
    /// Motion sampler steps.
    pub motion_steps: usize,
    /// Guidance scale of the content model.
    pub guidance: f64,
    /// Guidance scale of the motion model.
    pub motion_guidance: f64,
}

/// An RGBA picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height x width x 4` bytes.
    pub rgba: Vec<u8>,
}

impl Picture {
    fn of(image: &image::RgbImage) -> Self {
        Self {
            width: image.width() as usize,
            height: image.height() as usize,
            rgba: rgba_from_image(image),
        }
    }
}

/// A clip and what it is made of.
#[derive(Debug, Clone)]
pub struct Panels {
    /// The clip.
    pub clip: Clip,
    /// The content frame (pixel-mode models: an RGB picture).
    pub content: Picture,
    /// Importance-weight heat maps, one tile per frame (the clip encoded again).
    pub weights: Picture,
    /// The two motion planes of every motion channel.
    pub motion: Picture,
    /// The clip decoded from its content frame with a zero motion latent.
    pub content_only: Clip,
    /// PSNR of `clip` against the input, for reconstructions.
    pub psnr: Option<f64>,
    /// The prompt was longer than 75 tokens and was cut.
    pub truncated: bool,
}

impl Panels {
    /// The clip's frames as RGBA bytes, one frame after the other.
    pub fn clip_rgba(&self) -> Vec<u8> {
        rgba_from_clip(&self.clip)
    }

    /// The content-only clip's frames as RGBA bytes.
    pub fn content_only_rgba(&self) -> Vec<u8> {
        rgba_from_clip(&self.content_only)
    }

    /// The clip as a looping GIF.
    pub fn gif(&self) -> Vec<u8> {
        gif::to_bytes(&self.clip)
    }
}

/// A tensor's data on the host, read asynchronously.
async fn read<const D: usize, K: burn::tensor::kind::Basic>(
    t: Tensor<D, K>,
) -> Result<TensorData, String> {
    t.into_data_async()
        .await
        .map_err(|e| format!("the device failed to compute the result (out of GPU memory?): {e:?}"))
}

/// Fails when a model's output holds NaN or infinity (its weights are broken, e.g. a run that
/// blew up): said plainly, instead of showing black frames.
async fn ensure_finite<const D: usize>(t: &Tensor<D>, what: &str) -> Result<(), String> {
    match host(t.clone()).await?.iter().find(|v| !v.is_finite()) {
        Some(v) => Err(format!(
            "the model produced {v} in its {what}: its weights are broken; nothing is shown"
        )),
        None => Ok(()),
    }
}

/// A tensor's values on the host.
async fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, String> {
    read(t)
        .await?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("unexpected tensor data: {e:?}"))
}

/// Frames `[N, 3, H, W]` in `[-1, 1]` as RGBA bytes, packed on the device (the `rgba8` WGSL
/// kernel on WebGPU) so that a read-back moves 4 bytes per pixel, not 12.
async fn pixels(frames: Tensor<4>) -> Result<Vec<u8>, String> {
    Ok(kernels::rgba8_bytes(read(kernels::rgba8(frames)).await?))
}

/// Waits until the device has computed `x`: a barrier on WebGPU (nothing read back), else one
/// value read back.
async fn settle(x: &Tensor<4>) -> Result<(), String> {
    if let Some(barrier) = kernels::wgpu_barrier(&x.device()) {
        return barrier.await;
    }
    host(x.clone().slice([0..1, 0..1, 0..1, 0..1]))
        .await
        .map(drop)
}

/// The model and its device.
pub struct Engine {
    pipeline: CmdPipeline,
    device: Device,
    /// The autoencoder that decomposes and transfers real clips, once loaded (until then the
    /// bundle's own does).
    clips: OnceCell<Codec>,
    /// Where the null rows of guided steps are computed, once set (see [`crate::helper`]).
    helper: OnceCell<Box<dyn Helper>>,
    /// The empty prompt's text states, once a [`null_prediction`](Self::null_prediction)
    /// needed them.
    null_text: OnceCell<Tensor<3>>,
}

impl Engine {
    /// Loads a model bundle (`model.json`, `tokenizer.json` and the weight files, by name).
    pub fn load(mut files: HashMap<String, Vec<u8>>, device: Device) -> Result<Self, String> {
        let mut read = |name: &str| Ok::<_, String>(files.remove(name));
        let pipeline = CmdPipeline::from_bundle(&mut read, &device).map_err(|e| e.to_string())?;
        Ok(Self {
            pipeline,
            device,
            clips: OnceCell::new(),
            helper: OnceCell::new(),
            null_text: OnceCell::new(),
        })
    }

    /// From now on, the null rows of guided steps go to `helper` (another engine of the same
    /// model, in a second worker) while this engine computes the conditional rows; the clips
    /// are the same. Only on the CPU, where both engines get a core each (on a GPU one batch
    /// of both rows is faster than two calls). Returns whether it was taken: not on other
    /// devices, nor when a helper is set already.
    pub fn set_helper(&self, helper: Box<dyn Helper>) -> bool {
        kernels::runs_cpu(&self.device) && self.helper.set(helper).is_ok()
    }

    /// The null-condition prediction of a guided step for an engine whose
    /// [helper](Self::set_helper) this one is: the values of the prediction, in the sample's
    /// shape.
    pub fn null_prediction(&self, call: &NullCall) -> Result<Vec<f32>, String> {
        let guided = call.to_guided(&self.device)?;
        let null_text = match self.null_text.get() {
            Some(text) => text,
            None => {
                let text = self.pipeline.null_text(&self.device);
                let text = text.map_err(|e| e.to_string())?;
                self.null_text.get_or_init(|| text)
            }
        };
        helper::values(&self.pipeline.null_prediction(&guided, null_text))
    }

    /// Runs the null predictions of a content step and of a motion step `rounds` times on
    /// zero inputs, for an engine that is to be a [helper](Self::set_helper): a fresh
    /// WebAssembly instance runs its first calls on baseline code, and guided steps shared with
    /// a cold helper are slower than they will be (which would mislead the choice of
    /// [`Chooser`]).
    pub fn warm_up(&self, rounds: usize) -> Result<(), String> {
        let p = &self.pipeline;
        let (ae, dit) = (p.codec.autoencoder.config(), p.dit.config());
        let content = [1, ae.channels, ae.height, ae.width];
        let motion = [1, dit.motion_channels, dit.frames, dit.motion_width];
        let zeros = |dims: [usize; 4]| vec![0.0; dims.iter().product()];
        let calls = [
            NullCall {
                stage: Stage::Content,
                x: zeros(content),
                dims: content,
                t: 500,
                content: None,
            },
            NullCall {
                stage: Stage::Motion,
                x: zeros(motion),
                dims: motion,
                t: 500,
                content: Some((zeros(content), content)),
            },
        ];
        for _ in 0..rounds {
            for call in &calls {
                self.null_prediction(call)?;
            }
        }
        Ok(())
    }

    /// Loads the autoencoder for real clips (`model.json` and `autoencoder.safetensors` of
    /// an autoencoder folder): [`decompose`](Self::decompose) and
    /// [`transfer`](Self::transfer) use it from then on. Loading it again does nothing.
    pub fn load_clip_autoencoder(&self, mut files: HashMap<String, Vec<u8>>) -> Result<(), String> {
        if self.clips.get().is_some() {
            return Ok(());
        }
        let mut read = |name: &str| Ok::<_, String>(files.remove(name));
        let autoencoder =
            load_bundle_autoencoder(&mut read, &self.device).map_err(|e| e.to_string())?;
        if autoencoder.config().output != OutputMode::Pixel {
            return Err(format!(
                "'{}' is a latent-mode autoencoder; clips are decomposed in pixels",
                autoencoder.config().name
            ));
        }
        let _ = self.clips.set(Codec {
            autoencoder,
            vae: None,
        });
        Ok(())
    }

    /// The codec that decomposes clips: the real-clip autoencoder once loaded, else the
    /// bundle's.
    fn clip_codec(&self) -> &Codec {
        self.clips.get().unwrap_or(&self.pipeline.codec)
    }

    /// Frame size `(height, width)`, frames per clip and name of the autoencoder that
    /// decomposes clips.
    pub fn decompose_size(&self) -> (usize, usize, usize, String) {
        let codec = self.clip_codec();
        let (h, w, l) = shape(codec);
        (h, w, l, codec.autoencoder.config().name.clone())
    }

    /// Frame size `(height, width)` and frames per clip.
    pub fn clip_size(&self) -> (usize, usize, usize) {
        shape(&self.pipeline.codec)
    }

    /// Runs a generation to the end, waiting for the device after each step (the same
    /// [`Generation`] the CLI runs through, so a seed gives the same clip). The end of the
    /// decode stage is left to the caller, which still has the teaching panels to make.
    async fn drive(
        &self,
        mut generation: Generation<'_>,
        progress: &mut dyn FnMut(Stage, usize, usize),
    ) -> Result<Video, String> {
        let mut stage = None;
        let mut chooser = Chooser::default();
        while let Some(next) = generation.next() {
            if stage != Some(next.stage) {
                stage = Some(next.stage);
                progress(next.stage, next.done, next.total);
            }
            let helper = self
                .helper
                .get()
                .filter(|_| generation.guided_call().is_some());
            let share = helper.is_some() && chooser.share(next.stage);
            let start = Instant::now();
            let done = match helper {
                Some(helper) if share => {
                    shared_step(helper.as_ref(), &mut generation, &self.device).await?
                }
                _ => generation.step().map_err(|e| e.to_string())?,
            };
            if let Some(x) = generation.latest() {
                settle(x).await?;
            }
            if helper.is_some() {
                chooser.took(share, start.elapsed());
            }
            if done.stage != Stage::Decode {
                progress(done.stage, done.done, done.total);
            }
        }
        generation
            .into_video()
            .ok_or_else(|| "the generation stopped before its clip".to_string())
    }

    /// Text to video.
    pub async fn generate(
        &self,
        request: &Request,
        progress: &mut dyn FnMut(Stage, usize, usize),
    ) -> Result<Panels, String> {
        let generation = Generation::text_to_video(
            &self.pipeline,
            &request.prompt,
            &options(request),
            &self.device,
        )
        .map_err(|e| e.to_string())?;
        let video = self.drive(generation, progress).await?;
        self.video_panels(video, progress).await
    }

    /// Image to video: the picture (`height x width` RGBA at the model's frame size) is the
    /// content frame; only the motion is sampled.
    pub async fn animate(
        &self,
        rgba: &[u8],
        request: &Request,
        progress: &mut dyn FnMut(Stage, usize, usize),
    ) -> Result<Panels, String> {
        let (h, w, _) = self.clip_size();
        let picture = clip_from_rgba(rgba, 1, h, w)?;
        let content = clip_tensor(&picture, &self.device).squeeze_dim::<4>(1);
        let generation =
            Generation::image_to_video(&self.pipeline, content, &request.prompt, &options(request))
                .map_err(|e| e.to_string())?;
        let video = self.drive(generation, progress).await?;
        self.video_panels(video, progress).await
    }

    /// The panels of a generated clip; ends the decode stage.
    async fn video_panels(
        &self,
        video: Video,
        progress: &mut dyn FnMut(Stage, usize, usize),
    ) -> Result<Panels, String> {
        let p = &self.pipeline;
        ensure_finite(&video.content, "content frame").await?;
        ensure_finite(&video.motion, "motion latent").await?;
        let clip = self.to_clip(video.frames).await?;
        // The importance weights belong to an encoding: encode the generated clip again.
        let weights = p.codec.encode(clip_tensor(&clip, &self.device)).weights;
        let mut panels = self
            .panels(&p.codec, clip, video.content, video.motion, weights, None)
            .await?;
        panels.truncated = video.truncated;
        progress(Stage::Decode, 1, 1);
        Ok(panels)
    }

    /// Splits a clip (`frames x height x width` RGBA at the model's size) into content and
    /// motion and decodes it back; the panels carry the reconstruction and its PSNR.
    pub async fn decompose(&self, rgba: &[u8]) -> Result<Panels, String> {
        let codec = self.clip_codec();
        let (h, w, l) = shape(codec);
        let input = clip_from_rgba(rgba, l, h, w)?;
        let x = clip_tensor(&input, &self.device);
        let encoded = codec.encode(x);
        let frames = codec.decode(encoded.content.clone(), encoded.motion.clone());
        let clip = self.to_clip(frames).await?;
        let score = psnr(&unit(&clip), &unit(&input));
        let (content, motion) = (encoded.content, encoded.motion);
        self.panels(codec, clip, content, motion, encoded.weights, Some(score))
            .await
    }

    /// The content frame of clip `a` with the motion of clip `b` (both as for
    /// [`decompose`](Self::decompose)).
    pub async fn transfer(&self, a: &[u8], b: &[u8]) -> Result<Panels, String> {
        let codec = self.clip_codec();
        let (h, w, l) = shape(codec);
        let a = clip_tensor(&clip_from_rgba(a, l, h, w)?, &self.device);
        let b = clip_tensor(&clip_from_rgba(b, l, h, w)?, &self.device);
        let video = codec.transfer(a, b);
        let clip = self.to_clip(video.frames).await?;
        let weights = codec.encode(clip_tensor(&clip, &self.device)).weights;
        self.panels(codec, clip, video.content, video.motion, weights, None)
            .await
    }

    /// Frames `[1, L, 3, H, W]` as a clip.
    async fn to_clip(&self, frames: Tensor<5>) -> Result<Clip, String> {
        let [_, l, _, h, w] = frames.dims();
        clip_from_rgba(&pixels(frames.squeeze_dim::<4>(0)).await?, l, h, w)
    }

    /// The teaching pictures of a clip.
    async fn panels(
        &self,
        codec: &Codec,
        clip: Clip,
        content: Tensor<4>,
        motion: Tensor<4>,
        weights: Tensor<5>,
        psnr: Option<f64>,
    ) -> Result<Panels, String> {
        let cfg = codec.autoencoder.config();
        let still = codec.decode(content.clone(), motion.zeros_like());
        let content_only = self.to_clip(still).await?;
        let [_, c, h, w] = content.dims();
        let [_, d, l, width] = motion.dims();
        let content_picture = Picture {
            width: w,
            height: h,
            rgba: pixels(content).await?,
        };
        let weights = weight_maps(&host(weights).await?, l, c, h, w);
        let motion = motion_planes(
            &host(motion).await?,
            d,
            l,
            cfg.grid_h(),
            width - cfg.grid_h(),
            4,
        );
        Ok(Panels {
            clip,
            content: content_picture,
            weights: Picture::of(&weights),
            motion: Picture::of(&motion),
            content_only,
            psnr,
            truncated: false,
        })
    }
}

/// Frame size `(height, width)` and frames per clip of the clips `codec` takes.
fn shape(codec: &Codec) -> (usize, usize, usize) {
    let (h, w) = codec.frame_size();
    (h, w, codec.autoencoder.config().frames)
}

/// A clip's values in `[0, 1]`.
fn unit(clip: &Clip) -> Vec<f32> {
    clip.to_signed_f32()
        .iter()
        .map(|v| (v + 1.0) / 2.0)
        .collect()
}

/// DDIM sampling options, checked.
/// The generation options of a request (checked by [`Generation`], as the CLI's are).
fn options(request: &Request) -> GenerateOptions {
    let sampling = |steps, guidance| SamplingOptions {
        steps,
        guidance,
        sampler: Sampler::Ddim,
    };
    GenerateOptions {
        content: sampling(request.steps, request.guidance),
        motion: sampling(request.motion_steps, request.motion_guidance),
        seed: request.seed,
    }
}

/// Takes a generation's next step, a guided sampler step, with its null rows computed by
/// `helper` while the conditional rows are computed here.
async fn shared_step(
    helper: &dyn Helper,
    generation: &mut Generation<'_>,
    device: &Device,
) -> Result<Progress, String> {
    let call = generation
        .guided_call()
        .ok_or("the next step is not a guided sampler step")?;
    let reply = helper.ask(NullCall::of(&call)?);
    let cond = generation
        .cond_prediction()
        .ok_or("a guided step without its conditional rows")?;
    let null = reply
        .await
        .map_err(|e| format!("the second worker failed: {e}"))?;
    let null = helper::tensor("the second worker's prediction", &null, cond.dims(), device)?;
    generation
        .step_guided(null, cond)
        .map_err(|e| e.to_string())
}
