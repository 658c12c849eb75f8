//! Parity with an independent PyTorch implementation of the autoencoder
//! (`tests/reference/make_ae_fixture.py`): same weights, same input, same outputs.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use cmd_model::weights::load_safetensors;
use cmd_model::{AutoencoderConfig, OutputMode};
use safetensors::SafeTensors;

const FIXTURE: &str = "../../tests/fixtures/reference/ae_small.safetensors";

/// The config of the fixture (`CFG` in the script): H' = 4, W' = 2.
fn config() -> AutoencoderConfig {
    AutoencoderConfig::new(3, 4, 16, 8, 4, 32, 4, 2, 2, 8, OutputMode::Pixel)
}

/// A named f32 tensor of the fixture, with its shape.
fn io(file: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let view = file.tensor(name).unwrap();
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (values, view.shape().to_vec())
}

/// ‖a - b‖ / ‖b‖.
fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (diff / norm).sqrt()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

#[test]
fn autoencoder_matches_pytorch() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let device = Device::flex();
    let mut model = config().init(&device).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // The fixture also holds the reference inputs and outputs under `io.`.
    load_safetensors(&mut model, bytes.clone(), FIXTURE, &["io."], &[]).unwrap();

    let file = SafeTensors::deserialize(&bytes).unwrap();
    let (x, shape) = io(&file, "io.input");
    let shape: [usize; 5] = shape.try_into().unwrap();
    let x = Tensor::<5>::from_data(TensorData::new(x, shape), &device);
    let (encoded, recon) = model.forward(x);

    for (name, got) in [
        ("io.content", values(encoded.content)),
        ("io.weights", values(encoded.weights)),
        ("io.motion", values(encoded.motion)),
        ("io.recon", values(recon)),
    ] {
        let (want, _) = io(&file, name);
        let err = relative_l2(&got, &want);
        assert!(err < 1e-4, "{name}: relative L2 error {err:e}");
    }
}
