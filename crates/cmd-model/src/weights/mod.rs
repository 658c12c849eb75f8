//! Loading PyTorch-layout safetensors weights (diffusers and transformers checkpoints) into
//! burn modules, with one clear error naming the key for anything that does not fit.
//!
//! Module fields are named after the checkpoint keys, so the only translation is burn-store's
//! `PyTorchToBurnAdapter`: linear weights are transposed (`[out, in]` -> `[in, out]`) and
//! LayerNorm/GroupNorm `weight`/`bias` become `gamma`/`beta`; every float tensor is cast to the
//! model's own float type, so f16/bf16 files load into f32 models and f32 files into half models
//! (built on a device configured for f16). Weights come as bytes, so this works the same
//! natively and in a browser.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{DType, Tensor};
use burn_store::{
    BurnToPyTorchAdapter, FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot,
    PyTorchToBurnAdapter, SafetensorsStore,
};

mod set;

pub use set::{Entry, TensorSet};

/// Why a weights file does not fit a model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WeightsError {
    /// Not a readable safetensors file.
    #[error("{file}: not a valid safetensors file: {message}")]
    Read {
        /// The file.
        file: String,
        /// What the reader said.
        message: String,
    },
    /// A tensor the model needs is absent.
    #[error("{file}: missing key '{key}'")]
    Missing {
        /// The file.
        file: String,
        /// The model's key.
        key: String,
    },
    /// A tensor the model has no place for.
    #[error("{file}: unexpected key '{key}' (the file is for another model or configuration)")]
    Unexpected {
        /// The file.
        file: String,
        /// The file's key.
        key: String,
    },
    /// A tensor of the wrong shape or type.
    #[error("{file}: {message}")]
    Mismatch {
        /// The file.
        file: String,
        /// Key, expected and found, in burn-store's words.
        message: String,
    },
}

/// Fills `model` from the safetensors `bytes` of `file` (a name for messages). Keys listed in
/// `ignore` (by prefix) may be present without a place in the model; `remap` renames file keys
/// (regex, replacement) where a checkpoint's layout cannot be mirrored by field names. On a
/// wgpu device the convolution weights are then stored channels last
/// ([`channels_last`](crate::kernels::channels_last)).
pub fn load_safetensors<M: ModuleSnapshot>(
    model: &mut M,
    bytes: Vec<u8>,
    file: &str,
    ignore: &[&str],
    remap: &[(&str, &str)],
) -> Result<(), WeightsError> {
    let tensors = TensorSet::from_safetensors(bytes, file)?;
    load_tensors(model, tensors, file, ignore, remap)
}

/// Fills `model` from `tensors` (one file, its shards, or part of a single-file checkpoint,
/// named `file` in messages), as [`load_safetensors`] does.
pub fn load_tensors<M: ModuleSnapshot>(
    model: &mut M,
    tensors: TensorSet,
    file: &str,
    ignore: &[&str],
    remap: &[(&str, &str)],
) -> Result<(), WeightsError> {
    let mut tensors = tensors.into_pack();
    if !remap.is_empty() {
        let remapper =
            KeyRemapper::from_patterns(remap.to_vec()).map_err(|e| WeightsError::Read {
                file: file.to_string(),
                message: format!("bad key remapping: {e}"),
            })?;
        tensors = remapper.remap(tensors).0;
    }
    let adapter = PyTorchToBurnAdapter.chain(FloatCastAdapter::to(float_dtype(model)));
    let result = model.apply(tensors, None, Some(Box::new(adapter)), false);
    let file = file.to_string();
    if let Some(error) = result.errors.first() {
        return Err(WeightsError::Mismatch {
            file,
            message: error.to_string(),
        });
    }
    if let Some((key, _)) = result.missing.first() {
        return Err(WeightsError::Missing {
            file,
            key: key.clone(),
        });
    }
    if let Some(key) = result
        .unused
        .iter()
        .find(|k| !ignore.iter().any(|p| k.starts_with(p)))
    {
        return Err(WeightsError::Unexpected {
            file,
            key: key.clone(),
        });
    }
    *model = crate::kernels::channels_last(model.clone());
    Ok(())
}

/// The float type of a model's parameters (that of its first one; f32 for a model without).
pub fn float_dtype<M: Module>(model: &M) -> DType {
    struct First(Option<DType>);
    impl ModuleVisitor for First {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.get_or_insert(param.val().dtype());
        }
    }
    let mut first = First(None);
    model.visit(&mut first);
    first.0.unwrap_or(DType::F32)
}

/// A model's weights as safetensors bytes in PyTorch layout (the inverse of
/// [`load_safetensors`] without key remapping), stored as `dtype` (e.g. f16 to halve the file).
pub fn save_safetensors<M: ModuleSnapshot>(model: &M, dtype: DType) -> Result<Vec<u8>, String> {
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter.chain(FloatCastAdapter::to(dtype)));
    model.save_into(&mut store).map_err(|e| e.to_string())?;
    store.get_bytes().map_err(|e| e.to_string())
}
