//! `cmdv info`: what a preset is.

use anyhow::Result;
use burn::module::Module;
use burn::tensor::Device;
use cmd_model::AutoencoderConfig;

use crate::cli::InfoArgs;

pub fn run(args: &InfoArgs) -> Result<()> {
    let cfg = AutoencoderConfig::preset(&args.preset)?;
    // Parameters are counted on a real (CPU) model, so the count cannot drift from the code.
    let params = cfg.init(&Device::flex())?.num_params();
    let (enc, dec) = cfg.flops_per_clip();
    let [c, h, w] = cfg.content_shape();
    let [d, l, hw] = cfg.motion_shape();
    let video = (cfg.frames * c * h * w) as f64;
    let latent = (c * h * w + d * l * hw) as f64;
    println!("preset          {}", cfg.name);
    println!(
        "input clip      {} x {} x {} x {} ({:?} mode)",
        cfg.frames, c, h, w, cfg.output
    );
    println!(
        "transformer     width {}, depth {} + {}, {} heads x {}, patch {}",
        cfg.hidden, cfg.depth, cfg.depth, cfg.heads, cfg.head_dim, cfg.patch
    );
    println!("parameters      {params} ({:.2} M)", params as f64 / 1e6);
    println!("content frame   {c} x {h} x {w}");
    println!(
        "motion latent   {d} x {l} x {hw}  (z_y {d} x {l} x {}, z_x {d} x {l} x {})",
        cfg.grid_h(),
        cfg.grid_w()
    );
    println!(
        "latent numbers  {latent} ({:.1}x fewer than the clip)",
        video / latent
    );
    println!(
        "forward FLOPs   {:.2} GFLOP per clip (encode {:.2}, decode {:.2})",
        (enc + dec) as f64 / 1e9,
        enc as f64 / 1e9,
        dec as f64 / 1e9
    );
    Ok(())
}
