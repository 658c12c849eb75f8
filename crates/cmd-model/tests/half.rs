//! Half precision: on a device configured for f16 (the CPU, and wgpu's `shader-f16`; its own
//! test process, since a device's float type is set once for the whole process), the f32
//! Stable Diffusion folder loads into f16 weights and text-to-image sampling stays close to
//! diffusers' f32 result.

mod common;

use burn::tensor::{DType, Device, FloatDType};
use cmd_model::pipelines::{Sampler, SamplingOptions, StableDiffusion};
use safetensors::SafeTensors;

#[test]
fn half_precision_sampling_is_close_to_the_f32_reference() {
    let mut device = Device::flex();
    device
        .configure(FloatDType::F16)
        .expect("the CPU backend computes in f16");
    sample_in_half(device);
}

/// The same on wgpu (on a machine without a GPU, Mesa's lavapipe), where f16 runs as WGSL's
/// `shader-f16`, the path `--half` takes on a GPU.
#[cfg(feature = "wgsl")]
#[test]
fn half_precision_sampling_on_wgpu_is_close_to_the_f32_reference() {
    let mut device = Device::wgpu_options()
        .init()
        .expect("a wgpu adapter (on Debian, mesa-vulkan-drivers gives a software one)");
    device
        .configure(FloatDType::F16)
        .expect("the wgpu adapter computes in f16 (shader-f16)");
    sample_in_half(device);
}

/// Loads the f32 folder into f16 on `device` and samples, within 1e-2 of diffusers' f32 image.
fn sample_in_half(device: Device) {
    let dir = common::reference("sd_tiny");
    let mut read = |path: &str| Ok(std::fs::read(dir.join(path)).ok());
    let sd = StableDiffusion::load(&mut read, &device).unwrap();
    assert_eq!(
        cmd_model::weights::float_dtype(&sd.unet),
        DType::F16,
        "weights loaded as f16"
    );
    let io = std::fs::read(dir.join("io.safetensors")).unwrap();
    let io = SafeTensors::deserialize(&io).unwrap();
    // The "ddim" case of make_sd_pipeline_fixture.py.
    let noise = common::tensor::<4>(&io, "ddim.noise", &device);
    let options = SamplingOptions {
        steps: 8,
        guidance: 7.5,
        sampler: Sampler::Ddim,
    };
    let out = sd
        .text_to_image("a red circle moving left", noise, &options, &mut |_, _| {})
        .unwrap();
    assert_eq!(out.image.dtype(), DType::F16, "computed in f16");
    let got = out
        .image
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let err = common::relative_l2(&got, &common::f32s(&io, "ddim.image").0);
    assert!(
        err < 1e-2,
        "f16 image vs diffusers f32: relative L2 {err:e}"
    );
}
