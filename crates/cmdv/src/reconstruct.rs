//! `cmdv reconstruct`: a clip -> content frame + motion latent -> clip, with pictures and scores.

use anyhow::{Context, Result, anyhow, bail};
use cmd_model::OutputMode;
use cmd_model::metrics::{psnr, ssim};
use cmd_video::{Clip, gif, png, read_clip, views};

use crate::checkpoint::load_autoencoder;
use crate::cli::ReconstructArgs;
use crate::device;
use crate::tensor_io::{clips_to_tensor, to_vec};

pub fn run(args: &ReconstructArgs) -> Result<()> {
    let device = device::open(args.device)?;
    let model = load_autoencoder(&args.ae, &device)?;
    let cfg = model.config().clone();
    if cfg.output != OutputMode::Pixel {
        bail!(
            "{}: '{}' is a latent-mode autoencoder; reconstructing video through the Stable \
             Diffusion VAE is not supported yet",
            args.ae.display(),
            cfg.name
        );
    }
    let (l, h, w) = (cfg.frames, cfg.height, cfg.width);
    let needed = args.offset + args.stride.max(1) * (l - 1) + 1;
    let clip = read_clip(&args.input, Some(needed))?
        .sample(l, args.stride, args.offset)
        .map_err(|e| anyhow!("{}: {e}", args.input.display()))?
        .fit(w as u32, h as u32);

    let x = clips_to_tensor(std::slice::from_ref(&clip), &device);
    let (encoded, recon) = model.forward(x);
    let recon = to_vec(recon)?;
    let recon_clip = Clip::from_signed_f32(&recon, l, h as u32, w as u32, clip.fps);
    // Scores on the 8-bit frames a viewer sees, scaled to [0, 1].
    let unit =
        |c: &Clip| -> Vec<f32> { c.to_signed_f32().iter().map(|v| (v + 1.0) / 2.0).collect() };
    let (a, b) = (unit(&clip), unit(&recon_clip));
    let score_psnr = psnr(&a, &b);
    let score_ssim = ssim(&a, &b, h, w);

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

    if args.json {
        let json = serde_json::json!({ "psnr": score_psnr, "ssim": score_ssim, "frames": l });
        println!("{json}");
    } else {
        println!(
            "{}: {l} frames at {w}x{h}: PSNR {score_psnr:.2} dB, SSIM {score_ssim:.4}",
            args.input.display()
        );
        println!(
            "wrote content.png, weights.png, motion.png, input.gif, recon.gif to {}",
            args.out.display()
        );
    }
    Ok(())
}
