//! The Stable Diffusion files people have, against diffusers 0.42.1 and transformers 5.24.0
//! (`tests/reference/make_single_file_fixture.py`): single-file SD 1.x and 2.x checkpoints in
//! the original LDM layout (read by diffusers' `from_single_file` for the reference), the same
//! weights as a diffusers folder saved by transformers 5 (no `text_model.` prefix) and as a
//! sharded folder (`*.safetensors.index.json`); and the files that must be refused.

mod common;

use std::path::Path;

use burn::tensor::Device;
use cmd_model::pipelines::single_file::{Family, SingleFile};
use cmd_model::pipelines::stable_diffusion::{
    LoadError, load_scheduler, load_text_encoder, load_unet, load_vae,
};
use cmd_model::pipelines::{Sampler, SamplingOptions, StableDiffusion};
use cmd_model::schedulers::Prediction;
use cmd_model::tokenizer::{CLIP_TOKENIZER_JSON, ClipTokenizer};
use safetensors::SafeTensors;

fn prediction(name: &str) -> Prediction {
    match name {
        "epsilon" => Prediction::Epsilon,
        "v_prediction" => Prediction::V,
        other => panic!("prediction_type {other}"),
    }
}

fn single_file(model: &str, prediction: Option<Prediction>) -> StableDiffusion {
    let path = common::reference("single_file").join(format!("{model}.safetensors"));
    let file = SingleFile::read(std::fs::read(&path).unwrap(), model).unwrap();
    let family = if model == "sd1" {
        Family::Sd1
    } else {
        Family::Sd2
    };
    assert_eq!(file.family(), family);
    file.load(CLIP_TOKENIZER_JSON, prediction, &Device::flex())
        .unwrap()
}

/// The diffusers form, through the folder loaders, with the bundled tokenizer (the fixture
/// folders carry none).
fn folder(model: &str) -> Result<StableDiffusion, LoadError> {
    let dir = common::reference("single_file").join(model);
    let device = Device::flex();
    let mut read = common::disk(&dir);
    let pad = if model == "sd1" { "<|endoftext|>" } else { "!" };
    let tokenizer = ClipTokenizer::from_json(CLIP_TOKENIZER_JSON, Some(pad)).unwrap();
    let text_encoder = load_text_encoder(&mut read, &device)?;
    let unet = load_unet(&mut read, &device)?;
    let vae = load_vae(&mut read, &device)?;
    let scheduler = load_scheduler(&mut read)?;
    Ok(StableDiffusion::from_parts(tokenizer, text_encoder, unet, vae, scheduler).unwrap())
}

/// Samples every case of `model` with `load(prediction)` and compares with diffusers.
fn check_cases(model: &str, load: &dyn Fn(Prediction) -> StableDiffusion) {
    let dir = common::reference("single_file");
    let device = Device::flex();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let io = std::fs::read(dir.join("io.safetensors")).unwrap();
    let io = SafeTensors::deserialize(&io).unwrap();
    let mut seen = 0;
    for case in cases.as_array().unwrap() {
        if case["model"] != model {
            continue;
        }
        seen += 1;
        let name = case["name"].as_str().unwrap();
        let sd = load(prediction(case["prediction_type"].as_str().unwrap()));
        let prompt = case["prompt"].as_str().unwrap();
        let ids: Vec<u32> = common::f32s(&io, &format!("{name}.ids"))
            .0
            .iter()
            .map(|v| *v as u32)
            .collect();
        assert_eq!(sd.tokenizer.encode(prompt).unwrap().ids, ids, "{name}: ids");
        let (h, w) = (
            case["height"].as_u64().unwrap() as usize,
            case["width"].as_u64().unwrap() as usize,
        );
        let noise = common::tensor::<4>(&io, &format!("{name}.noise"), &device);
        assert_eq!(noise.dims(), sd.latent_shape(h, w).unwrap(), "{name}");
        let options = SamplingOptions {
            steps: case["steps"].as_u64().unwrap() as usize,
            guidance: case["guidance"].as_f64().unwrap(),
            sampler: case["sampler"]
                .as_str()
                .unwrap()
                .parse::<Sampler>()
                .unwrap(),
        };
        let out = sd
            .text_to_image(prompt, noise, &options, &mut |_, _| {})
            .unwrap();
        for (what, got) in [("latents", out.latents), ("image", out.image)] {
            let want = common::f32s(&io, &format!("{name}.{what}")).0;
            common::assert_l2_close(&common::host(got), &want, 1e-4, &format!("{name}: {what}"));
        }
    }
    assert!(seen > 0, "no cases for {model}");
}

#[test]
fn sd1_single_file_matches_diffusers() {
    check_cases("sd1", &|p| single_file("sd1", Some(p)));
}

#[test]
fn sd2_single_file_matches_diffusers_with_v_by_default_and_an_override() {
    // No override: SD 2.x is read as the 768-px v-prediction model.
    let sd = single_file("sd2", None);
    assert_eq!(sd.scheduler.prediction_type, Prediction::V);
    assert_eq!(sd.unet_config.sample_size, 96);
    check_cases("sd2", &|p| single_file("sd2", Some(p)));
}

#[test]
fn transformers5_folder_matches_diffusers() {
    check_cases("sd1", &|_| folder("sd1").unwrap());
}

#[test]
fn sharded_folder_matches_diffusers() {
    check_cases("sd2", &|p| {
        let mut sd = folder("sd2").unwrap();
        sd.scheduler.prediction_type = p;
        sd
    });
}

/// A copy of a fixture folder in a fresh temporary directory.
fn copy_folder(model: &str, to: &Path) {
    let from = common::reference("single_file").join(model);
    for part in std::fs::read_dir(&from).unwrap() {
        let part = part.unwrap().path();
        let dest = to.join(part.file_name().unwrap());
        if part.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            for file in std::fs::read_dir(&part).unwrap() {
                let file = file.unwrap().path();
                std::fs::copy(&file, dest.join(file.file_name().unwrap())).unwrap();
            }
        } else {
            std::fs::copy(&part, &dest).unwrap();
        }
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cmd-single-file-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_missing_shard_is_named_with_its_index() {
    let dir = temp("shard");
    copy_folder("sd2", &dir);
    let index = "unet/diffusion_pytorch_model.safetensors.index.json";
    let map: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(index)).unwrap()).unwrap();
    let shard = map["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(dir.join("unet").join(&shard)).unwrap();
    let err = load_unet(&mut common::disk(&dir), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!("unet/{shard}: missing")) && err.contains(index),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pickle_weights_are_refused_unread() {
    // A folder part with only a pickle, and a pickle passed as a single file.
    let dir = temp("pickle");
    copy_folder("sd1", &dir);
    let unet = dir.join("unet");
    std::fs::rename(
        unet.join("diffusion_pytorch_model.safetensors"),
        unet.join("diffusion_pytorch_model.bin"),
    )
    .unwrap();
    let err = load_unet(&mut common::disk(&dir), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("unet/diffusion_pytorch_model.bin: a PyTorch pickle file")
            && err.contains("can run")
            && err.contains("save_file"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let zip = b"PK\x03\x04 a torch.save archive".to_vec();
    let err = SingleFile::read(zip, "model.ckpt").unwrap_err().to_string();
    assert!(
        err.starts_with("model.ckpt: a PyTorch pickle file"),
        "{err}"
    );
}

/// A tensor of a made-up file: name and shape.
type Spec = (&'static str, Vec<usize>);

/// A safetensors file of zero-filled f32 tensors.
fn file_of(tensors: &[Spec]) -> Vec<u8> {
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, shape)| vec![0u8; 4 * shape.iter().product::<usize>()])
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&data)
        .map(|((name, shape), bytes)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .unwrap();
            (name.to_string(), view)
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn other_model_families_are_named() {
    let to_k = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight";
    let cases: [(&[Spec], &str); 5] = [
        (
            &[
                (to_k, vec![320, 2048]),
                (
                    "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
                    vec![768],
                ),
            ],
            "a UNet with 2048-wide cross-attention and text encoders under conditioner.embedders: \
             an SDXL checkpoint, which is not supported",
        ),
        (
            &[
                (to_k, vec![320, 1024]),
                (
                    "model.diffusion_model.label_emb.0.0.weight",
                    vec![1280, 2048],
                ),
                ("first_stage_model.quant_conv.weight", vec![8, 8, 1, 1]),
            ],
            "a UNet with a class embedding (label_emb (2048 wide))",
        ),
        (
            &[
                (
                    "model.diffusion_model.input_blocks.0.0.weight",
                    vec![320, 9, 3, 3],
                ),
                ("first_stage_model.quant_conv.weight", vec![8, 8, 1, 1]),
                (
                    "cond_stage_model.transformer.text_model.final_layer_norm.weight",
                    vec![768],
                ),
            ],
            "its SD 1.x UNet takes 9 input channels, not 4: an inpainting model",
        ),
        (
            &[(
                "model.diffusion_model.input_blocks.0.0.weight",
                vec![320, 4, 3, 3],
            )],
            "no first_stage_model.* (VAE) keys",
        ),
        (
            &[("down_blocks.0.resnets.0.conv1.weight", vec![320, 320, 3, 3])],
            "not a Stable Diffusion checkpoint: no model.diffusion_model.* (UNet) keys among its 1 \
             tensors (it looks like a diffusers part",
        ),
    ];
    for (tensors, want) in cases {
        let err = SingleFile::read(file_of(tensors), "x.safetensors")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("x.safetensors: {want}")), "{err}");
    }
}

#[test]
fn truncated_and_mismatched_single_files_keep_clear_errors() {
    let path = common::reference("single_file").join("sd1.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let err = SingleFile::read(bytes[..bytes.len() / 2].to_vec(), "sd1.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("sd1.safetensors: not a valid safetensors file"),
        "{err}"
    );

    // A tensor the file lacks is named, in diffusers' terms, with its part.
    let full = SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> = full
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "first_stage_model.decoder.up.0.block.1.conv2.weight")
        .collect();
    let file = SingleFile::read(
        safetensors::serialize(kept, None).unwrap(),
        "cut.safetensors",
    )
    .unwrap();
    let err = file
        .vae(&Device::flex())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "cut.safetensors: VAE: missing key 'decoder.up_blocks.2.resnets.1.conv2.weight'"
    );
}
