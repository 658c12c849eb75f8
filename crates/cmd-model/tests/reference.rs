//! Parity with an independent PyTorch implementation of the autoencoder
//! (`tests/reference/make_ae_fixture.py`): same weights, same input, same outputs.

mod common;

use burn::tensor::Device;
use cmd_model::weights::load_safetensors;
use cmd_model::{AutoencoderConfig, OutputMode};
use safetensors::SafeTensors;

/// The config of the fixture (`CFG` in the script): H' = 4, W' = 2.
fn config() -> AutoencoderConfig {
    AutoencoderConfig::new(3, 4, 16, 8, 4, 32, 4, 2, 2, 8, OutputMode::Pixel)
}

#[test]
fn autoencoder_matches_pytorch() {
    let path = common::reference("ae_small.safetensors");
    let device = Device::flex();
    let mut model = config().init(&device).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // The fixture also holds the reference inputs and outputs under `io.`.
    load_safetensors(
        &mut model,
        bytes.clone(),
        "ae_small.safetensors",
        &["io."],
        &[],
    )
    .unwrap();

    let file = SafeTensors::deserialize(&bytes).unwrap();
    let x = common::tensor::<5>(&file, "io.input", &device);
    let (encoded, recon) = model.forward(x);

    for (name, got) in [
        ("io.content", common::host(encoded.content)),
        ("io.weights", common::host(encoded.weights)),
        ("io.motion", common::host(encoded.motion)),
        ("io.recon", common::host(recon)),
    ] {
        common::assert_l2_close(&got, &common::f32s(&file, name).0, 1e-4, name);
    }
}
