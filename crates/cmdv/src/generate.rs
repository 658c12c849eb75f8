//! `cmdv generate`, `animate` and `transfer`: clips from a trained CMD model.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use burn::tensor::{DType, Device, Tensor};
use cmd_model::pipelines::bundle::AutoencoderBundle;
use cmd_model::pipelines::generation::GenerateOption;
use cmd_model::pipelines::{CmdPipeline, Codec, GenerateOptions, SamplingOptions, Stage, Video};
use cmd_video::Clip;
use indicatif::ProgressBar;

use crate::cli::{AnimateArgs, ExportArgs, GenerateArgs, SamplingArgs, TransferArgs};
use crate::reconstruct::read_fitted;
use crate::tensor_io::ensure_finite;
use crate::{device, progress};
use cmd_train::tensors::{clips_to_tensor, to_vec};
use cmd_train::vae::{load_sd_vae, recorded};
use cmd_train::{motion, run, sd_files};

/// Frames per second a picture is given (one frame; the rate is never shown).
const PICTURE_FPS: f32 = 8.0;

/// The generation options of the flags, checked by the model crate's one rule and named by
/// their flag.
fn options(args: &SamplingArgs) -> Result<GenerateOptions> {
    let options = GenerateOptions {
        content: SamplingOptions {
            steps: args.steps,
            guidance: args.guidance,
            sampler: args.sampler,
        },
        motion: SamplingOptions {
            steps: args.motion_steps,
            guidance: args.motion_guidance,
            sampler: args.sampler,
        },
        seed: args.seed,
    };
    options.check().map_err(|e| {
        let flag = match e.option {
            GenerateOption::ContentSteps => "--steps",
            GenerateOption::ContentGuidance => "--guidance",
            GenerateOption::MotionSteps => "--motion-steps",
            GenerateOption::MotionGuidance => "--motion-guidance",
        };
        anyhow::anyhow!("{flag} {}", e.message)
    })?;
    Ok(options)
}

/// One progress bar per stage, made when the stage starts.
#[derive(Default)]
struct StageBars(HashMap<&'static str, ProgressBar>);

impl StageBars {
    fn report(&mut self, stage: Stage, done: usize, total: usize) {
        let label = match stage {
            Stage::Text => "text",
            Stage::Content => "content",
            Stage::Motion => "motion",
            Stage::Decode => "decode",
        };
        let bar = self
            .0
            .entry(label)
            .or_insert_with(|| progress::bar(total as u64, label));
        bar.set_position(done as u64);
        if done == total {
            bar.finish();
        }
    }
}

/// The frames of a video (`[1, L, 3, H, W]` in `[-1, 1]`) as a clip playing at `fps`.
pub fn clip_of(video: &Video, fps: f32) -> Result<Clip> {
    ensure_finite(&video.content, "content frame")?;
    ensure_finite(&video.motion, "motion latent")?;
    let [_, l, _, h, w] = video.frames.dims();
    let values = to_vec(video.frames.clone())?;
    Ok(Clip::from_signed_f32(&values, l, h as u32, w as u32, fps))
}

/// Writes the frames of a video, to play at `fps`.
fn write(video: &Video, out: &Path, fps: f32) -> Result<()> {
    ensure!(
        fps.is_finite() && fps > 0.0,
        "--fps must be a positive number, found {fps}"
    );
    cmd_video::write_clip(out, &clip_of(video, fps)?)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn warn_truncated(video: &Video) {
    if video.truncated {
        eprintln!("warning: the prompt is longer than 75 tokens; its end was cut");
    }
}

/// The teaching model shipped in the repository, the default of `--model`.
pub const SHIPPED_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/teaching");

/// A model folder (`model.json`), a motion run, or (`None`) the shipped model.
pub fn load_model(model: Option<&Path>, device: &Device) -> Result<CmdPipeline> {
    let path = model.unwrap_or(Path::new(SHIPPED_MODEL));
    if model.is_none() && !path.join("model.json").is_file() {
        bail!(
            "no --model given, and the shipped teaching model is not at {} (train it with \
             scripts/train-teaching-model.sh, or pass --model)",
            path.display()
        );
    }
    if path.join("model.json").is_file() {
        CmdPipeline::from_bundle(&mut sd_files::reader(path), device)
            .with_context(|| format!("model folder {}", path.display()))
    } else {
        Ok(motion::load_pipeline(path, device)?)
    }
}

pub fn export(args: &ExportArgs) -> Result<()> {
    let device = Device::flex();
    let dtype = if args.f32 { DType::F32 } else { DType::F16 };
    let files = match (&args.model, &args.ae) {
        (Some(model), _) => motion::load_pipeline(model, &device)?
            .to_bundle(dtype)
            .map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?,
        (None, Some(ae)) => {
            if let Some(fps) = args.fps {
                ensure!(
                    fps.is_finite() && fps > 0.0,
                    "--fps must be a positive number, found {fps}"
                );
            }
            let autoencoder = run::load_autoencoder(ae, &device)?;
            AutoencoderBundle::files(&autoencoder, args.fps, dtype)
                .map_err(|e| anyhow::anyhow!("{}: {e}", ae.display()))?
        }
        (None, None) => bail!("give --model (a motion run) or --ae (an autoencoder run)"),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create the folder", args.out.display()))?;
    let mut total = 0;
    for (name, bytes) in &files {
        cmd_video::write_bytes_atomic(&args.out.join(name), bytes)?;
        total += bytes.len();
    }
    eprintln!(
        "wrote {} ({:.1} MB, {dtype:?} weights)",
        args.out.display(),
        total as f64 / 1e6
    );
    Ok(())
}

pub fn generate(args: &GenerateArgs) -> Result<()> {
    let s = &args.sampling;
    let options = options(s)?;
    let device = device::open(s.device)?;
    let pipeline = load_model(s.model.as_deref(), &device)?;
    let mut bars = StageBars::default();
    let video = pipeline.generate(&s.prompt, &options, &device, &mut |st, d, t| {
        bars.report(st, d, t)
    })?;
    warn_truncated(&video);
    write(&video, &s.out, s.fps)
}

/// A picture as a content frame of the codec: centre-cropped to its aspect, resized, and in
/// latent mode encoded by the VAE.
fn picture_to_content(codec: &Codec, path: &Path, device: &Device) -> Result<Tensor<4>> {
    let image = cmd_video::png::read_image(path)?;
    let (h, w) = codec.frame_size();
    if (image.width(), image.height()) != (w as u32, h as u32) {
        eprintln!(
            "{}: {}x{} picture centre-cropped and resized to the model's {w}x{h}",
            path.display(),
            image.width(),
            image.height()
        );
    }
    let clip = Clip::new(vec![image], PICTURE_FPS)
        .expect("one frame")
        .fit(w as u32, h as u32);
    let x = clips_to_tensor(&[clip], device); // [1, 1, 3, H, W]
    Ok(codec.encode_frames(x).squeeze_dim::<4>(1))
}

pub fn animate(args: &AnimateArgs) -> Result<()> {
    let s = &args.sampling;
    let options = options(s)?;
    let device = device::open(s.device)?;
    let pipeline = load_model(s.model.as_deref(), &device)?;
    let content = picture_to_content(&pipeline.codec, &args.image, &device)?;
    let mut bars = StageBars::default();
    let video = pipeline.animate(content, &s.prompt, &options, &mut |st, d, t| {
        bars.report(st, d, t)
    })?;
    warn_truncated(&video);
    write(&video, &s.out, s.fps)
}

pub fn transfer(args: &TransferArgs) -> Result<()> {
    let device = device::open(args.device)?;
    let crate::reconstruct::ClipAutoencoder {
        model: autoencoder,
        fps: trained_fps,
        note,
    } = crate::reconstruct::autoencoder(args.ae.as_deref(), &device)?;
    let vae = match args.ae.as_deref().map(recorded).transpose()?.flatten() {
        Some(folder) => Some(load_sd_vae(&folder, &device)?),
        None => None,
    };
    let codec = Codec { autoencoder, vae };
    let frames = codec.autoencoder.config().frames;
    let (h, w) = codec.frame_size();
    let read = |path: &Path| {
        read_fitted(
            path,
            &args.frames,
            frames,
            (w as u32, h as u32),
            trained_fps,
        )
        .map(|clip| {
            (
                clips_to_tensor(std::slice::from_ref(&clip), &device),
                clip.fps,
            )
        })
    };
    let (a, _) = read(&args.content)?;
    let (b, fps) = read(&args.motion)?;
    write(&codec.transfer(a, b), &args.out, fps)?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    Ok(())
}
