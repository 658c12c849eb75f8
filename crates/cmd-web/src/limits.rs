//! Whether a GPU can hold the model: its largest buffer (WebGPU's `maxBufferSize` and
//! `maxStorageBufferBindingSize`, the smaller of the two) against the largest tensor of the
//! bundle's weight files, read from their safetensors headers.

use std::collections::HashMap;

/// The largest tensor of the bundle's `*.safetensors` files: `(file: tensor, bytes)`.
pub fn largest_tensor(files: &HashMap<String, Vec<u8>>) -> Result<Option<(String, u64)>, String> {
    let mut largest: Option<(String, u64)> = None;
    for (name, bytes) in files.iter().filter(|(n, _)| n.ends_with(".safetensors")) {
        for (tensor, size) in tensor_sizes(bytes).map_err(|e| format!("{name}: {e}"))? {
            if largest.as_ref().is_none_or(|(_, top)| size > *top) {
                largest = Some((format!("{name}: {tensor}"), size));
            }
        }
    }
    Ok(largest)
}

/// `Err` with a plain sentence when a GPU whose buffers hold at most `max_buffer` bytes cannot
/// hold the bundle's largest tensor.
pub fn check_fits(files: &HashMap<String, Vec<u8>>, max_buffer: u64) -> Result<(), String> {
    match largest_tensor(files)? {
        Some((tensor, size)) if size > max_buffer => Err(format!(
            "this GPU cannot hold the model: its largest buffer is {} but {tensor} needs {}",
            human(max_buffer),
            human(size)
        )),
        _ => Ok(()),
    }
}

/// Tensor names and byte sizes in a safetensors file's header.
fn tensor_sizes(bytes: &[u8]) -> Result<Vec<(String, u64)>, String> {
    let len = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .ok_or("not a safetensors file (shorter than its 8-byte header length)")?;
    let header = usize::try_from(len)
        .ok()
        .and_then(|len| bytes.get(8..8usize.checked_add(len)?))
        .ok_or_else(|| {
            format!("not a safetensors file (header of {len} bytes runs past the end)")
        })?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| format!("not a safetensors file (header: {e})"))?;
    header
        .into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, entry)| {
            let offsets = entry["data_offsets"]
                .as_array()
                .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)));
            match offsets {
                Some((start, end)) if end >= start => Ok((name, end - start)),
                _ => Err(format!(
                    "tensor {name}: no valid data_offsets in the header"
                )),
            }
        })
        .collect()
}

/// Bytes in MiB (or KiB below one MiB).
fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file with f32 tensors of the given element counts.
    fn file(tensors: &[(&str, u64)]) -> Vec<u8> {
        let mut at = 0;
        let entries: Vec<String> = tensors
            .iter()
            .map(|(name, n)| {
                let entry = format!(
                    r#""{name}":{{"dtype":"F32","shape":[{n}],"data_offsets":[{at},{}]}}"#,
                    at + 4 * n
                );
                at += 4 * n;
                entry
            })
            .collect();
        let header = format!(
            r#"{{"__metadata__":{{"format":"pt"}},{}}}"#,
            entries.join(",")
        );
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.resize(bytes.len() + at as usize, 0);
        bytes
    }

    fn bundle() -> HashMap<String, Vec<u8>> {
        HashMap::from([
            (
                "unet.safetensors".into(),
                file(&[("conv.weight", 1000), ("bias", 10)]),
            ),
            ("dit.safetensors".into(), file(&[("proj.weight", 300_000)])),
            ("model.json".into(), b"{}".to_vec()),
        ])
    }

    #[test]
    fn the_largest_tensor_is_found_across_files() {
        let largest = largest_tensor(&bundle()).unwrap();
        assert_eq!(
            largest,
            Some(("dit.safetensors: proj.weight".into(), 1_200_000))
        );
    }

    #[test]
    fn a_gpu_with_small_buffers_is_told_plainly() {
        assert!(check_fits(&bundle(), 1_200_000).is_ok());
        let err = check_fits(&bundle(), 1 << 20).unwrap_err();
        assert_eq!(
            err,
            "this GPU cannot hold the model: its largest buffer is 1.0 MiB but \
             dit.safetensors: proj.weight needs 1.1 MiB"
        );
    }

    #[test]
    fn broken_headers_are_named() {
        let mut files = bundle();
        files.insert("vae.safetensors".into(), vec![1, 2, 3]);
        let err = largest_tensor(&files).unwrap_err();
        assert!(
            err.starts_with("vae.safetensors: not a safetensors file"),
            "{err}"
        );
        files.insert(
            "vae.safetensors".into(),
            [&u64::MAX.to_le_bytes()[..], b"{}"].concat(),
        );
        let err = largest_tensor(&files).unwrap_err();
        assert!(err.contains("runs past the end"), "{err}");
    }

    #[test]
    fn the_shipped_model_fits_webgpus_guaranteed_buffer_size() {
        // WebGPU guarantees 128 MiB storage-buffer bindings on every adapter.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/teaching");
        let files = ["unet", "dit", "autoencoder", "text_encoder"]
            .map(|n| {
                let name = format!("{n}.safetensors");
                let bytes = std::fs::read(format!("{dir}/{name}")).unwrap();
                (name, bytes)
            })
            .into_iter()
            .collect();
        check_fits(&files, 128 << 20).unwrap();
    }
}
