//! AutoencoderKL parity with diffusers 0.35.2 (`tests/reference/make_vae_fixture.py`), loaded
//! from a diffusers `vae/` folder through the same code users use.

mod common;

use burn::tensor::Device;
use cmd_model::vae::VaeConfig;
use cmd_model::weights::load_safetensors;
use safetensors::SafeTensors;

#[test]
fn vae_matches_diffusers() {
    let dir = common::reference("vae");
    let device = Device::flex();
    let config: VaeConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let mut vae = config.init(&device).unwrap();
    let weights = std::fs::read(dir.join("diffusion_pytorch_model.safetensors")).unwrap();
    load_safetensors(
        &mut vae,
        weights,
        "vae/diffusion_pytorch_model.safetensors",
        &[],
        &[],
    )
    .unwrap();

    let io = std::fs::read(dir.join("io.safetensors")).unwrap();
    let io = SafeTensors::deserialize(&io).unwrap();
    let x = common::tensor::<4>(&io, "input", &device);
    let mean = common::tensor::<4>(&io, "mean", &device);
    let got = common::host(vae.encode_mean(x));
    common::assert_l2_close(&got, &common::f32s(&io, "mean").0, 1e-4, "encode");
    let got = common::host(vae.decode(mean));
    common::assert_l2_close(&got, &common::f32s(&io, "decoded").0, 1e-4, "decode");
}

#[test]
fn unsupported_vae_configs_name_the_field() {
    let config = VaeConfig {
        act_fn: "gelu".into(),
        ..VaeConfig::default()
    };
    let err = config.init(&Device::flex()).unwrap_err().to_string();
    assert!(err.contains("'act_fn'") && err.contains("gelu"), "{err}");
    let config = VaeConfig {
        block_out_channels: vec![48],
        ..VaeConfig::default()
    };
    let err = config.init(&Device::flex()).unwrap_err().to_string();
    assert!(err.contains("'norm_num_groups'"), "{err}");
}

#[test]
fn half_precision_weights_load_into_an_f32_model() {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = common::reference("vae");
    let device = Device::flex();
    let config: VaeConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("diffusion_pytorch_model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    // The same weights stored as f16, as many published checkpoints are.
    let halves: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let data = v
                .data()
                .chunks_exact(4)
                .flat_map(|b| {
                    half::f16::from_f32(f32::from_le_bytes(b.try_into().unwrap())).to_le_bytes()
                })
                .collect();
            (k, v.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<(String, TensorView)> = halves
        .iter()
        .map(|(k, s, d)| {
            (
                k.clone(),
                TensorView::new(Dtype::F16, s.clone(), d).unwrap(),
            )
        })
        .collect();
    let f16_file = safetensors::serialize(views, None).unwrap();
    let mut vae = config.init(&device).unwrap();
    load_safetensors(&mut vae, f16_file, "vae-fp16.safetensors", &[], &[]).unwrap();

    let io = std::fs::read(dir.join("io.safetensors")).unwrap();
    let io = SafeTensors::deserialize(&io).unwrap();
    let got = vae.decode(common::tensor::<4>(&io, "mean", &device));
    assert_eq!(got.dtype(), burn::tensor::DType::F32);
    let want = common::f32s(&io, "decoded").0;
    common::assert_l2_close(&common::host(got), &want, 2e-3, "f16 weights");
}

/// Stable Diffusion 1.5's VAE file predates diffusers' attention renaming (`query`, `key`,
/// `value`, `proj_attn`); such files load and decode the same.
#[test]
fn deprecated_attention_names_load() {
    let dir = common::reference("vae");
    let device = Device::flex();
    let bytes = std::fs::read(dir.join("diffusion_pytorch_model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let old_name = |k: &str| {
        k.replace(".to_q.", ".query.")
            .replace(".to_k.", ".key.")
            .replace(".to_v.", ".value.")
            .replace(".to_out.0.", ".proj_attn.")
    };
    let renamed: Vec<(String, safetensors::tensor::TensorView)> = file
        .tensors()
        .into_iter()
        .map(|(k, v)| (old_name(&k), v))
        .collect();
    assert!(renamed.iter().any(|(k, _)| k.contains(".proj_attn.")));
    let old = safetensors::serialize(renamed, None).unwrap();
    let config: VaeConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let mut vae = config.init(&device).unwrap();
    load_safetensors(
        &mut vae,
        old,
        "old.safetensors",
        &[],
        &VaeConfig::key_remapping(),
    )
    .unwrap();
    let io = std::fs::read(dir.join("io.safetensors")).unwrap();
    let io = SafeTensors::deserialize(&io).unwrap();
    let got = common::host(vae.decode(common::tensor::<4>(&io, "mean", &device)));
    common::assert_l2_close(&got, &common::f32s(&io, "decoded").0, 1e-4, "decode");
}
