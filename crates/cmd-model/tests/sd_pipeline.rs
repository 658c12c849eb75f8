//! End-to-end parity with diffusers 0.35.2's `StableDiffusionPipeline`
//! (`tests/reference/make_sd_pipeline_fixture.py`): a tiny but complete diffusers folder is
//! loaded through the folder loader users use, and text-to-image sampling with DDIM and
//! DPM-Solver++, with and without guidance, matches the pipeline's latents and images.

mod common;

use burn::tensor::Device;
use cmd_model::pipelines::stable_diffusion::{LoadError, ReadFile};
use cmd_model::pipelines::{Sampler, SamplingOptions, StableDiffusion};
use safetensors::SafeTensors;

fn load(read: &mut ReadFile) -> Result<StableDiffusion, LoadError> {
    StableDiffusion::load(read, &Device::flex())
}

#[test]
fn text_to_image_matches_diffusers() {
    let dir = common::reference("sd_tiny");
    let device = Device::flex();
    let sd = load(&mut common::disk(&dir)).unwrap();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let io = std::fs::read(dir.join("io.safetensors")).unwrap();
    let io = SafeTensors::deserialize(&io).unwrap();
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
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
        let shape = sd.latent_shape(h, w).unwrap();
        let noise = common::tensor::<4>(&io, &format!("{name}.noise"), &device);
        assert_eq!(noise.dims(), shape, "{name}: latent shape");
        let options = SamplingOptions {
            steps: case["steps"].as_u64().unwrap() as usize,
            guidance: case["guidance"].as_f64().unwrap(),
            sampler: case["sampler"]
                .as_str()
                .unwrap()
                .parse::<Sampler>()
                .unwrap(),
        };
        let mut calls = 0;
        let out = sd
            .text_to_image(prompt, noise, &options, &mut |done, total| {
                calls += 1;
                assert_eq!((done, total), (calls, options.steps));
            })
            .unwrap();
        assert_eq!(calls, options.steps, "{name}: progress calls");
        let want = common::f32s(&io, &format!("{name}.latents")).0;
        common::assert_l2_close(
            &common::host(out.latents),
            &want,
            1e-4,
            &format!("{name}: latents"),
        );
        let want = common::f32s(&io, &format!("{name}.image")).0;
        common::assert_l2_close(
            &common::host(out.image),
            &want,
            1e-4,
            &format!("{name}: image"),
        );
    }
}

#[test]
fn sizes_the_unet_cannot_take_are_refused() {
    let sd = load(&mut common::disk(&common::reference("sd_tiny"))).unwrap();
    assert_eq!(sd.default_size(), (16, 16));
    let err = sd.latent_shape(24, 16).unwrap_err().to_string();
    assert!(
        err.contains("height 24") && err.contains("multiple of 16"),
        "{err}"
    );
}

/// Every part of the folder, missing or broken, is named in the error.
#[test]
fn broken_folders_name_the_file() {
    let dir = common::reference("sd_tiny");
    let cases: [(&str, Option<&[u8]>, &str); 7] = [
        ("unet/config.json", None, "unet/config.json: missing"),
        (
            "unet/diffusion_pytorch_model.safetensors",
            None,
            "unet/diffusion_pytorch_model.safetensors: missing",
        ),
        (
            "vae/config.json",
            Some(b"{\"block_out_channels\": 3}"),
            "vae/config.json: not a valid config",
        ),
        (
            "text_encoder/model.safetensors",
            Some(b"garbage"),
            "text_encoder/model.safetensors: not a valid safetensors file",
        ),
        (
            "tokenizer/merges.txt",
            None,
            "tokenizer/merges.txt: missing (a tokenizer folder needs tokenizer.json",
        ),
        (
            "scheduler/scheduler_config.json",
            Some(b"{\"thresholding\": true}"),
            "scheduler/scheduler_config.json",
        ),
        (
            "tokenizer/tokenizer_config.json",
            Some(b"{\"pad_token\": \"<|nope|>\"}"),
            "tokenizer has no token '<|nope|>'",
        ),
    ];
    for (file, replacement, want) in cases {
        let mut inner = common::disk(&dir);
        let mut read = |path: &str| {
            if path == file {
                Ok(replacement.map(|b| b.to_vec()))
            } else {
                inner(path)
            }
        };
        let err = load(&mut read).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(want), "{file}: {err}");
    }
    let mut failing = |_: &str| Err("permission denied".to_string());
    let err = load(&mut failing).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("permission denied"), "{err}");
}

/// Weights of another model in a part's folder: the key is named.
#[test]
fn weights_of_another_model_name_the_key() {
    let dir = common::reference("sd_tiny");
    let vae_weights = std::fs::read(dir.join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    let mut inner = common::disk(&dir);
    let mut read = |path: &str| {
        if path == "unet/diffusion_pytorch_model.safetensors" {
            Ok(Some(vae_weights.clone()))
        } else {
            inner(path)
        }
    };
    let err = load(&mut read).map(|_| ()).unwrap_err().to_string();
    assert!(
        err.starts_with("unet/diffusion_pytorch_model.safetensors: ")
            && (err.contains("missing key") || err.contains("unexpected key")),
        "{err}"
    );
}
