//! The tensors of one or more safetensors files, by name, before they go into a model.
//!
//! Only headers are parsed up front; each tensor's bytes are copied out when the model takes
//! them. Names can be rewritten, and a tensor can be cut into row blocks or given another
//! shape of the same size, without touching the data: what a single-file checkpoint's layout
//! (fused attention projections, 1x1-conv attention weights) needs to meet a diffusers model,
//! and what shards need to act as one file.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::tensor::{Bytes, DType, TensorData};
use burn_store::bridge;
use burn_store::burn_pack::{Error as PackError, Tensor as PackTensor};

use super::WeightsError;

/// One tensor: where its bytes lie in a file held in memory, its type and shape.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The file the tensor comes from (for messages).
    pub file: Arc<str>,
    bytes: Arc<Vec<u8>>,
    start: usize,
    end: usize,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
}

impl Entry {
    /// The tensor cut into `parts` equal blocks of rows (along the first axis), e.g. a fused
    /// `[3D, D]` attention projection into its `q`, `k` and `v`; `None` if the rows do not
    /// divide.
    pub fn split_rows(&self, parts: usize) -> Option<Vec<Entry>> {
        let rows = *self.shape.first()?;
        if parts == 0 || !rows.is_multiple_of(parts) {
            return None;
        }
        let step = (self.end - self.start) / parts;
        let mut shape = self.shape.clone();
        shape[0] = rows / parts;
        Some(
            (0..parts)
                .map(|i| Entry {
                    start: self.start + i * step,
                    end: self.start + (i + 1) * step,
                    shape: shape.clone(),
                    ..self.clone()
                })
                .collect(),
        )
    }

    /// The same data under another shape with as many elements; `None` if the counts differ.
    pub fn reshaped(&self, shape: Vec<usize>) -> Option<Entry> {
        (shape.iter().product::<usize>() == self.shape.iter().product::<usize>()).then(|| Entry {
            shape,
            ..self.clone()
        })
    }

    fn into_pack(self, name: String) -> PackTensor {
        let (dtype, shape) = (self.dtype, self.shape.clone());
        bridge::deferred(name, dtype, shape.clone().into(), None, move || {
            let bytes = Bytes::from_bytes_vec(self.bytes[self.start..self.end].to_vec());
            TensorData::try_from_bytes(bytes, shape.clone(), dtype)
                .map_err(|e| PackError::TensorBytesSizeMismatch(e.to_string()))
        })
    }
}

/// Named tensors from safetensors files (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct TensorSet {
    tensors: BTreeMap<String, Entry>,
}

impl TensorSet {
    /// Reads the header of the safetensors `bytes` of `file` (a name for messages).
    pub fn from_safetensors(bytes: Vec<u8>, file: &str) -> Result<Self, WeightsError> {
        let read_error = |message: String| WeightsError::Read {
            file: file.to_string(),
            message,
        };
        let (header, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| read_error(e.to_string()))?;
        let data = 8 + header;
        let name: Arc<str> = Arc::from(file);
        let mut found = Vec::new();
        for (key, info) in meta.tensors() {
            let dtype = dtype_of(info.dtype).ok_or_else(|| {
                read_error(format!("'{key}': unsupported dtype {:?}", info.dtype))
            })?;
            let (start, end) = info.data_offsets;
            found.push((key, dtype, info.shape.clone(), data + start, data + end));
        }
        let bytes = Arc::new(bytes);
        let tensors = found
            .into_iter()
            .map(|(key, dtype, shape, start, end)| {
                let entry = Entry {
                    file: name.clone(),
                    bytes: bytes.clone(),
                    start,
                    end,
                    dtype,
                    shape,
                };
                (key, entry)
            })
            .collect();
        Ok(Self { tensors })
    }

    /// Adds the tensors of `other` (another shard); a name in both is an error naming both
    /// files.
    pub fn extend(&mut self, other: TensorSet) -> Result<(), WeightsError> {
        for (name, entry) in other.tensors {
            if let Some(first) = self.tensors.get(&name) {
                return Err(WeightsError::Read {
                    file: entry.file.to_string(),
                    message: format!("'{name}' is also in {}", first.file),
                });
            }
            self.tensors.insert(name, entry);
        }
        Ok(())
    }

    /// The tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.tensors.get(name)
    }

    /// The shape of the tensor called `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.get(name).map(|e| e.shape.as_slice())
    }

    /// Removes and returns the tensor called `name`.
    pub fn remove(&mut self, name: &str) -> Option<Entry> {
        self.tensors.remove(name)
    }

    /// Adds (or replaces) a tensor.
    pub fn insert(&mut self, name: String, entry: Entry) {
        self.tensors.insert(name, entry);
    }

    /// The tensors whose names start with `prefix`, with the prefix cut off; they leave `self`.
    pub fn take_prefix(&mut self, prefix: &str) -> TensorSet {
        let names: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        let mut taken = TensorSet::default();
        for name in names {
            let entry = self.tensors.remove(&name).expect("listed above");
            taken
                .tensors
                .insert(name[prefix.len()..].to_string(), entry);
        }
        taken
    }

    /// Renames every tensor by `rename` (which returns the new name).
    pub fn rename(self, mut rename: impl FnMut(&str) -> String) -> TensorSet {
        let tensors = self
            .tensors
            .into_iter()
            .map(|(name, entry)| (rename(&name), entry))
            .collect();
        TensorSet { tensors }
    }

    pub(super) fn into_pack(self) -> Vec<PackTensor> {
        self.tensors
            .into_iter()
            .map(|(name, entry)| entry.into_pack(name))
            .collect()
    }
}

fn dtype_of(dtype: safetensors::Dtype) -> Option<DType> {
    use safetensors::Dtype as S;
    Some(match dtype {
        S::F64 => DType::F64,
        S::F32 => DType::F32,
        S::F16 => DType::F16,
        S::BF16 => DType::BF16,
        S::I64 => DType::I64,
        S::I32 => DType::I32,
        S::I16 => DType::I16,
        S::I8 => DType::I8,
        S::U64 => DType::U64,
        S::U32 => DType::U32,
        S::U8 => DType::U8,
        _ => return None,
    })
}
