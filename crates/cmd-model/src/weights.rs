//! Loading PyTorch-layout safetensors weights (diffusers and transformers checkpoints) into
//! burn modules, with one clear error naming the key for anything that does not fit.
//!
//! Module fields are named after the checkpoint keys, so the only translation is burn-store's
//! `PyTorchToBurnAdapter`: linear weights are transposed (`[out, in]` -> `[in, out]`) and
//! LayerNorm/GroupNorm `weight`/`bias` become `gamma`/`beta`; f16 and bf16 tensors are cast to
//! f32. Weights come as bytes, so this works the same natively and in a browser.

use burn::tensor::DType;
use burn_store::{
    FloatCastAdapter, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore,
};

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
/// (regex, replacement) where a checkpoint's layout cannot be mirrored by field names.
pub fn load_safetensors<M: ModuleSnapshot>(
    model: &mut M,
    bytes: Vec<u8>,
    file: &str,
    ignore: &[&str],
    remap: &[(&str, &str)],
) -> Result<(), WeightsError> {
    // f16/bf16 checkpoints load into f32 models.
    let adapter = PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32));
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(adapter)
        .allow_partial(true)
        .validate(false);
    for (from, to) in remap {
        store = store.with_key_remapping(*from, *to);
    }
    let file = file.to_string();
    let result = model
        .load_from(&mut store)
        .map_err(|e| WeightsError::Read {
            file: file.clone(),
            message: e.to_string(),
        })?;
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
    Ok(())
}
