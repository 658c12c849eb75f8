//! `cmdv reconstruct`: a clip -> content frame + motion latent -> clip, with pictures and scores.

use std::path::Path;

use anyhow::{Context, Result, bail};
use cmd_model::metrics::{psnr, ssim};
use cmd_model::{Autoencoder, OutputMode};
use cmd_video::{Clip, Video, gif, png, views};

use crate::checkpoint::load_autoencoder;
use crate::cli::{FramesArgs, ReconstructArgs};
use crate::device;
use crate::generate::SHIPPED_MODEL;
use crate::tensor_io::{clips_to_tensor, to_vec};

/// The autoencoder `--ae` names, or the shipped model's, with a note to show once the
/// command has done its work (so an error stays the only thing said).
pub fn autoencoder(
    ae: Option<&Path>,
    device: &burn::tensor::Device,
) -> Result<(Autoencoder, Option<String>)> {
    match ae {
        Some(path) => Ok((load_autoencoder(path, device)?, None)),
        None => {
            let path = Path::new(SHIPPED_MODEL);
            let model = load_autoencoder(path, device)
                .context("no --ae given, and the shipped model's autoencoder cannot be loaded")?;
            let cfg = model.config();
            let note = format!(
                "used the shipped model's autoencoder ('{}', {}x{}; --ae names another)",
                cfg.name, cfg.width, cfg.height
            );
            Ok((model, Some(note)))
        }
    }
}

/// The frames `frames` selects from the video at `path`, fitted to `width x height`
/// (centre-cropped to that aspect, then resized), saying what was done.
pub fn read_fitted(
    path: &Path,
    frames: &FramesArgs,
    count: usize,
    (width, height): (u32, u32),
) -> Result<Clip> {
    let video = Video::open(path)?;
    let info = video.info();
    let clip = video.read(&frames.take(count))?;
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
    let (model, note) = autoencoder(args.ae.as_deref(), &device)?;
    let cfg = model.config().clone();
    if cfg.output != OutputMode::Pixel {
        bail!(
            "'{}' is a latent-mode autoencoder; reconstructing video through the Stable \
             Diffusion VAE is not supported yet",
            cfg.name
        );
    }
    let (l, h, w) = (cfg.frames, cfg.height, cfg.width);
    let clip = read_fitted(&args.input, &args.frames, l, (w as u32, h as u32))?;

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

    if let Some(note) = note {
        eprintln!("{note}");
    }
    if args.json {
        let json = serde_json::json!({
            "psnr": score_psnr,
            "ssim": score_ssim,
            "psnr_content_only": still_psnr,
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
            "wrote content.png, weights.png, motion.png, input.gif, recon.gif, \
             content-only.gif to {}",
            args.out.display()
        );
    }
    Ok(())
}
