//! AutoencoderKL parity with diffusers 0.35.2 (`tests/reference/make_vae_fixture.py`), loaded
//! from a diffusers `vae/` folder through the same code users use.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use cmd_model::vae::VaeConfig;
use cmd_model::weights::load_safetensors;
use safetensors::SafeTensors;

fn tensor4(file: &SafeTensors, name: &str, device: &Device) -> (Tensor<4>, Vec<f32>) {
    let view = file.tensor(name).unwrap();
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let shape: [usize; 4] = view.shape().try_into().unwrap();
    (
        Tensor::from_data(TensorData::new(values.clone(), shape), device),
        values,
    )
}

fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (d / n).sqrt()
}

#[test]
fn vae_matches_diffusers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference/vae");
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
    let (x, _) = tensor4(&io, "input", &device);
    let (mean, want_mean) = tensor4(&io, "mean", &device);
    let (_, want_decoded) = tensor4(&io, "decoded", &device);

    let got = vae
        .encode_mean(x)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let err = relative_l2(&got, &want_mean);
    assert!(err < 1e-4, "encode: relative L2 {err:e}");
    let got = vae.decode(mean).into_data().try_into_vec::<f32>().unwrap();
    let err = relative_l2(&got, &want_decoded);
    assert!(err < 1e-4, "decode: relative L2 {err:e}");
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
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/reference/vae");
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
    let (mean, _) = tensor4(&io, "mean", &device);
    let (_, want) = tensor4(&io, "decoded", &device);
    let got = vae.decode(mean);
    assert_eq!(got.dtype(), burn::tensor::DType::F32);
    let got = got.into_data().try_into_vec::<f32>().unwrap();
    let err = relative_l2(&got, &want);
    assert!(err < 2e-3, "f16 weights: relative L2 {err:e}");
}
