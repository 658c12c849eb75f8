//! `cmdv reconstruct`: a clip -> content frame + motion latent -> clip, with pictures and scores.

use std::path::Path;

use anyhow::{Context, Result, bail};
use cmd_model::metrics::{psnr, ssim};
use cmd_model::pipelines::bundle::AutoencoderBundle;
use cmd_model::{Autoencoder, OutputMode};
use cmd_video::slide::{self, Slide};
use cmd_video::{Clip, Video, gif, png, views};

use cmd_train::run::load_autoencoder;
use cmd_train::tensors::{clips_to_tensor, to_vec};

use crate::cli::{FramesArgs, ReconstructArgs};
use crate::device;

/// The shipped real-video autoencoder (trained on real footage; see its README).
pub const SHIPPED_AUTOENCODER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/real");

/// An autoencoder that clips go through, and how to sample clips for it.
pub struct ClipAutoencoder {
    /// The network.
    pub model: Autoencoder,
    /// The frame rate it was trained at (its model folder's `model.json` says), if known.
    pub fps: Option<f64>,
    /// What to say once the command has done its work (so an error stays the only thing
    /// said): which autoencoder was used when none was named.
    pub note: Option<String>,
}

/// The autoencoder `--ae` names, or the shipped real-video one.
pub fn autoencoder(ae: Option<&Path>, device: &burn::tensor::Device) -> Result<ClipAutoencoder> {
    match ae {
        Some(path) => Ok(ClipAutoencoder {
            model: load_autoencoder(path, device)?,
            fps: trained_fps(path)?,
            note: None,
        }),
        None => {
            let path = Path::new(SHIPPED_AUTOENCODER);
            let model = load_autoencoder(path, device).context(
                "no --ae given, and the shipped real-video autoencoder cannot be loaded",
            )?;
            let cfg = model.config();
            let note = format!(
                "used the shipped real-video autoencoder ('{}', {}x{}; --ae names another)",
                cfg.name, cfg.width, cfg.height
            );
            Ok(ClipAutoencoder {
                fps: trained_fps(path)?,
                model,
                note: Some(note),
            })
        }
    }
}

/// The `fps` of a model folder's `model.json` (`None` for run folders and files).
fn trained_fps(path: &Path) -> Result<Option<f64>> {
    let json = path.join("model.json");
    if !json.is_file() {
        return Ok(None);
    }
    let text = std::fs::read(&json).with_context(|| format!("{}: cannot read", json.display()))?;
    let bundle: AutoencoderBundle = serde_json::from_slice(&text)
        .with_context(|| format!("{}: not a model config", json.display()))?;
    Ok(bundle.fps)
}

/// The frames `frames` selects from the video at `path`, fitted to `width x height`
/// (centre-cropped to that aspect, then resized), saying what was done. Without `--fps`,
/// videos are sampled at `trained_fps` (the autoencoder's) when given and long enough.
pub fn read_fitted(
    path: &Path,
    frames: &FramesArgs,
    count: usize,
    (width, height): (u32, u32),
    trained_fps: Option<f64>,
) -> Result<Clip> {
    let video = Video::open(path)?;
    let info = video.info();
    let mut take = frames.take(count);
    // Said once the frames are read, so that an error stays the only thing said.
    let mut own_rate = None;
    if let (None, Some(fps)) = (frames.fps, trained_fps) {
        let at_fps = take.at_fps(Some(fps));
        match at_fps.indices(&info.timeline) {
            Ok(_) => take = at_fps,
            Err(_) => {
                own_rate = Some(format!(
                    "{}: too short for {count} frames at the autoencoder's {fps} fps; took its \
                     own frames",
                    path.display()
                ))
            }
        }
    }
    let clip = video.read(&take)?;
    if let Some(note) = own_rate {
        eprintln!("{note}");
    }
    eprintln!(
        "{}: {}x{} {}, {} frames at {:.3} fps; took {count} frames at {:.3} fps",
        path.display(),
        info.width,
        info.height,
        info.codec,
        info.frames(),
        info.fps(),
        clip.fps
    );
    if (clip.width(), clip.height()) != (width, height) {
        let window = clip.center_crop_to_aspect(width, height);
        let cropped = if (window.width(), window.height()) != (clip.width(), clip.height()) {
            format!(
                "centre-cropped to {}x{} and ",
                window.width(),
                window.height()
            )
        } else {
            String::new()
        };
        eprintln!(
            "{}: {cropped}resized to the model's {width}x{height}",
            path.display()
        );
        return Ok(window.resize(width, height));
    }
    Ok(clip)
}

pub fn run(args: &ReconstructArgs) -> Result<()> {
    let device = device::open(args.device)?;
    let ClipAutoencoder { model, fps, note } = autoencoder(args.ae.as_deref(), &device)?;
    let cfg = model.config().clone();
    if cfg.output != OutputMode::Pixel {
        bail!(
            "'{}' is a latent-mode autoencoder; reconstructing video through the Stable \
             Diffusion VAE is not supported yet",
            cfg.name
        );
    }
    let (l, h, w) = (cfg.frames, cfg.height, cfg.width);
    let clip = read_fitted(&args.input, &args.frames, l, (w as u32, h as u32), fps)?;

    let x = clips_to_tensor(std::slice::from_ref(&clip), &device);
    let (encoded, recon) = model.forward(x);
    let as_clip = |frames| -> Result<Clip> {
        Ok(Clip::from_signed_f32(
            &to_vec(frames)?,
            l,
            h as u32,
            w as u32,
            clip.fps,
        ))
    };
    let recon_clip = as_clip(recon)?;
    // What the content frame carries alone: the clip decoded with a zero motion latent.
    let still = model.decode(encoded.content.clone(), encoded.motion.zeros_like());
    let still_clip = as_clip(still)?;
    // Scores on the 8-bit frames a viewer sees, scaled to [0, 1].
    let unit =
        |c: &Clip| -> Vec<f32> { c.to_signed_f32().iter().map(|v| (v + 1.0) / 2.0).collect() };
    let (a, b) = (unit(&clip), unit(&recon_clip));
    let score_psnr = psnr(&a, &b);
    let score_ssim = ssim(&a, &b, h, w);
    let still_psnr = psnr(&a, &unit(&still_clip));
    let mean_psnr = psnr(&a, &mean_frame(&a, l));

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create output folder", args.out.display()))?;
    let content = Clip::from_signed_f32(&to_vec(encoded.content)?, 1, h as u32, w as u32, clip.fps);
    png::write_image(&args.out.join("content.png"), &content.frames[0])?;
    let weights = views::weight_maps(&to_vec(encoded.weights)?, l, cfg.channels, h, w);
    png::write_image(&args.out.join("weights.png"), &weights)?;
    let scale = (128 / cfg.grid_h().max(cfg.frames)).max(1) as u32;
    let motion = views::motion_planes(
        &to_vec(encoded.motion)?,
        cfg.motion_dim,
        l,
        cfg.grid_h(),
        cfg.grid_w(),
        scale,
    );
    png::write_image(&args.out.join("motion.png"), &motion)?;
    gif::write(&args.out.join("input.gif"), &clip)?;
    gif::write(&args.out.join("recon.gif"), &recon_clip)?;
    gif::write(&args.out.join("content-only.gif"), &still_clip)?;
    let name = args.input.file_name().map_or_else(
        || args.input.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let picture = slide::render(&Slide {
        input: &clip,
        recon: &recon_clip,
        content_only: &still_clip,
        content: &content.frames[0],
        weights: &weights,
        motion: &motion,
        title: format!(
            "{name}: PSNR {score_psnr:.2} dB, SSIM {score_ssim:.3}; content frame alone \
             {still_psnr:.2} dB ('{}' autoencoder, {w}x{h})",
            cfg.name
        ),
    });
    png::write_image(&args.out.join("slide.png"), &picture)?;

    if let Some(note) = note {
        eprintln!("{note}");
    }
    if args.json {
        let json = serde_json::json!({
            "psnr": score_psnr,
            "ssim": score_ssim,
            "psnr_content_only": still_psnr,
            "psnr_mean_frame": mean_psnr,
            "frames": l,
        });
        println!("{json}");
    } else {
        println!(
            "{}: {l} frames at {w}x{h}: PSNR {score_psnr:.2} dB, SSIM {score_ssim:.4}",
            args.input.display()
        );
        println!(
            "decoded from the content frame alone (zero motion): PSNR {still_psnr:.2} dB, \
             {:.2} dB less",
            score_psnr - still_psnr
        );
        println!(
            "for comparison, the clip's mean frame shown for every frame: PSNR {mean_psnr:.2} dB"
        );
        println!(
            "wrote slide.png, content.png, weights.png, motion.png, input.gif, recon.gif, \
             content-only.gif to {}",
            args.out.display()
        );
    }
    Ok(())
}

/// `frames` frames of values (one after the other) replaced by their mean frame: the
/// reconstruction of a model that keeps no motion at all, a baseline to compare with.
fn mean_frame(values: &[f32], frames: usize) -> Vec<f32> {
    let size = values.len() / frames;
    let mean: Vec<f32> = (0..size)
        .map(|i| (0..frames).map(|l| values[l * size + i]).sum::<f32>() / frames as f32)
        .collect();
    mean.repeat(frames)
}

#[cfg(test)]
mod tests {
    use super::mean_frame;

    #[test]
    fn mean_frame_repeats_the_average_of_each_value() {
        let clip = [0.0, 1.0, 2.0, 4.0, 4.0, 1.0];
        assert_eq!(mean_frame(&clip, 3), vec![2.0, 2.0, 2.0, 2.0, 2.0, 2.0]);
    }
}
