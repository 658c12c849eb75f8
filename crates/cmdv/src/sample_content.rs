//! `cmdv sample-content`: one image from a Stable Diffusion folder or single file (text-to-image,
//! decoded with its VAE), or one content frame from a `train-content` run.

use std::path::Path;

use anyhow::{Result, bail, ensure};
use burn::tensor::Tensor;
use cmd_model::pipelines::stable_diffusion::encode_prompt;
use cmd_model::pipelines::{SamplingOptions, denoise, standard_normal};
use image::RgbImage;

use cmd_model::pipelines::single_file::Family;
use cmd_model::schedulers::Prediction;
use cmd_train::content::load_run;
use cmd_train::sd_files;
use cmd_train::tensors::to_vec;

use crate::cli::SampleContentArgs;
use crate::tensor_io::ensure_finite;
use crate::{device, progress};

pub fn run(args: &SampleContentArgs) -> Result<()> {
    ensure!(args.steps > 0, "--steps must be positive");
    ensure!(
        args.guidance.is_finite(),
        "--guidance must be a number, found {}",
        args.guidance
    );
    if !args.model.exists() {
        bail!(
            "--model {}: no such file or folder (expected a Stable Diffusion folder, a \
             single-file SD 1.x/2.x .safetensors checkpoint, or a train-content run)",
            args.model.display()
        );
    }
    let stable_diffusion = sd_files::is_sd_folder(&args.model) || args.model.is_file();
    if !stable_diffusion && args.prediction.is_some() {
        bail!("--prediction: a train-content run samples with its own; leave it out");
    }
    let device = device::open_with_precision(args.device, args.half)?;
    let options = SamplingOptions {
        steps: args.steps,
        guidance: args.guidance,
        sampler: args.sampler,
    };
    let bar = progress::bar(args.steps as u64, "sample");
    let mut report = |done: usize, _total: usize| bar.set_position(done as u64);
    let image = if stable_diffusion {
        let prediction = args.prediction.map(Into::into);
        let (sd, family) = sd_files::load(&args.model, prediction, &device)?;
        if let Some(family) = family {
            note_family(&args.model, family, prediction);
        }
        let (dh, dw) = sd.default_size();
        let shape = sd.latent_shape(args.height.unwrap_or(dh), args.width.unwrap_or(dw))?;
        let noise = standard_normal(shape, args.seed, &device);
        let out = sd.text_to_image(&args.prompt, noise, &options, &mut report)?;
        ensure_finite(&out.latents, "image latents")?;
        warn_truncated(out.truncated);
        out.image
    } else {
        if args.height.is_some() || args.width.is_some() {
            bail!(
                "--height/--width: a train-content run samples content frames at its \
                 autoencoder's size; leave them out"
            );
        }
        let (config, model) = load_run(&args.model, &device)?;
        let (cond, tokens) =
            encode_prompt(&model.tokenizer, &model.text_encoder, &args.prompt, &device)?;
        warn_truncated(tokens.truncated);
        let (uncond, _) = encode_prompt(&model.tokenizer, &model.text_encoder, "", &device)?;
        let (c, s) = (config.unet.in_channels, config.size);
        let noise = standard_normal([1, c, s, s], args.seed, &device);
        let x0 = denoise(
            &model.unet,
            &model.scheduler,
            &cond,
            &uncond,
            noise,
            &options,
            &mut report,
        )?;
        ensure_finite(&x0, "content frame")?;
        match &model.vae {
            Some((vae_config, vae)) => vae
                .decode(x0.div_scalar(vae_config.scaling_factor))
                .div_scalar(2.0)
                .add_scalar(0.5)
                .clamp(0.0, 1.0),
            None => x0.div_scalar(2.0).add_scalar(0.5).clamp(0.0, 1.0),
        }
    };
    bar.finish_and_clear();
    cmd_video::png::write_image(&args.out, &to_image(image)?)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn warn_truncated(truncated: bool) {
    if truncated {
        eprintln!("warning: the prompt is longer than 75 tokens; its end was cut");
    }
}

/// `[1, 3, H, W]` in `[0, 1]` as an RGB picture.
fn to_image(image: Tensor<4>) -> Result<RgbImage> {
    let [_, c, h, w] = image.dims();
    ensure!(
        c == 3,
        "the model made {c}-channel images; only RGB can be written as PNG"
    );
    let values = to_vec(image)?;
    Ok(RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let at = |ch: usize| {
            let v = values[ch * h * w + y as usize * w + x as usize];
            (v * 255.0).round().clamp(0.0, 255.0) as u8
        };
        image::Rgb([at(0), at(1), at(2)])
    }))
}

/// Says which model a single file was read as, and (for SD 2.x) what it is assumed to predict.
fn note_family(path: &Path, family: Family, prediction: Option<Prediction>) {
    let assumed = match (family, prediction) {
        (Family::Sd2, None) => {
            ", predicting v at 768 px (the 768-v models; give --prediction epsilon for a \
             512-px -base model)"
        }
        _ => "",
    };
    eprintln!(
        "note: {}: a single-file {} checkpoint{assumed}",
        path.display(),
        family.name()
    );
}
