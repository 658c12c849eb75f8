//! Helpers shared by the parity tests: reading reference tensors and comparing results.
// Each test binary uses a different subset of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::SafeTensors;

/// `tests/fixtures/reference/<name>` of the repository.
pub fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/reference")
        .join(name)
}

/// A little-endian f32 tensor of a safetensors file: values and shape.
pub fn f32s(file: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let view = file.tensor(name).unwrap();
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (values, view.shape().to_vec())
}

/// The same tensor on `device`.
pub fn tensor<const D: usize>(file: &SafeTensors, name: &str, device: &Device) -> Tensor<D> {
    let (values, shape) = f32s(file, name);
    let shape: [usize; D] = shape.try_into().unwrap();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A tensor's values on the host.
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

/// `‖a - b‖ / ‖b‖`.
pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (diff / norm).sqrt()
}

/// Asserts `relative_l2(got, want) < tol`, naming `what`.
pub fn assert_l2_close(got: &[f32], want: &[f32], tol: f64, what: &str) {
    let err = relative_l2(got, want);
    assert!(err < tol, "{what}: relative L2 error {err:e}");
}

/// Reads files of `dir` by relative path, as the folder loaders ask (`Ok(None)`: no such file).
pub fn disk(dir: &Path) -> impl FnMut(&str) -> Result<Option<Vec<u8>>, String> + '_ {
    move |path: &str| match std::fs::read(dir.join(path)) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}
