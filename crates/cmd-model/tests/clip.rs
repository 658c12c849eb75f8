//! CLIP text encoder parity with transformers 4.57.1 and 5.24.0
//! (`tests/reference/make_clip_fixture.py`), loaded from diffusers-style `text_encoder/` folders
//! through the same code users use, and the weight-loading errors.

mod common;

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Device;
use cmd_model::clip::{ClipTextConfig, ClipTextModel};
use cmd_model::pipelines::stable_diffusion::load_text_encoder;
use cmd_model::weights::{WeightsError, load_safetensors};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

fn config(dir: &Path) -> ClipTextConfig {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// Loads a `text_encoder/` folder the way a Stable Diffusion folder's is loaded.
fn load_folder(dir: &Path, device: &Device) -> ClipTextModel {
    let mut read = |path: &str| -> Result<Option<Vec<u8>>, String> {
        let file = dir.join(path.strip_prefix("text_encoder/").unwrap());
        Ok(std::fs::read(file).ok())
    };
    load_text_encoder(&mut read, device).unwrap().1
}

/// Both key layouts: transformers 4.x (`text_model.` prefix) and 5.x (none).
#[test]
fn text_encoders_match_transformers_4_and_5() {
    let device = Device::flex();
    for name in [
        "clip_text_quick_gelu",
        "clip_text_gelu",
        "clip_text_quick_gelu_tf5",
        "clip_text_gelu_tf5",
    ] {
        let dir = common::reference(name);
        let model = load_folder(&dir, &device);
        let io = std::fs::read(dir.join("io.safetensors")).unwrap();
        let io = SafeTensors::deserialize(&io).unwrap();
        let ids: Vec<u32> = io
            .tensor("ids")
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect();
        let out = model.encode(&ids, 77, &device);
        for (key, got) in [
            ("last_hidden_state", common::host(out.last_hidden_state)),
            ("penultimate", common::host(out.penultimate)),
            ("pooled", common::host(out.pooled)),
        ] {
            let what = format!("{name} {key}");
            common::assert_l2_close(&got, &common::f32s(&io, key).0, 1e-4, &what);
        }
    }
}

/// The fixture's tensors, to re-serialise with changes.
fn tensors(dir: &Path) -> HashMap<String, (Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(k, v)| (k, (v.shape().to_vec(), v.data().to_vec())))
        .collect()
}

fn serialize(tensors: &HashMap<String, (Vec<usize>, Vec<u8>)>) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, (shape, data))| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

fn load_bytes(dir: &Path, bytes: Vec<u8>) -> WeightsError {
    let mut model = config(dir).init(&Device::flex());
    load_safetensors(
        &mut model,
        bytes,
        "text_encoder/model.safetensors",
        &[],
        &[],
    )
    .unwrap_err()
}

#[test]
fn bad_weight_files_are_named() {
    let dir = common::reference("clip_text_gelu");
    let good = tensors(&dir);

    let mut missing = good.clone();
    missing.remove("text_model.final_layer_norm.weight");
    let err = load_bytes(&dir, serialize(&missing)).to_string();
    assert!(
        err.contains("text_encoder/model.safetensors") && err.contains("final_layer_norm"),
        "{err}"
    );

    let mut extra = good.clone();
    extra.insert("text_model.extra.weight".into(), (vec![1], vec![0; 4]));
    let err = load_bytes(&dir, serialize(&extra)).to_string();
    assert!(
        err.contains("unexpected key 'text_model.extra.weight'"),
        "{err}"
    );

    let mut wrong = good.clone();
    wrong.insert(
        "text_model.embeddings.position_embedding.weight".into(),
        (vec![76, 32], vec![0; 76 * 32 * 4]),
    );
    let err = load_bytes(&dir, serialize(&wrong)).to_string();
    assert!(
        err.contains("position_embedding") && err.contains("76"),
        "{err}"
    );

    let err = load_bytes(&dir, b"definitely not safetensors".to_vec()).to_string();
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

/// Configs saved by old transformers versions (Stable Diffusion 1.5's) say `eos_token_id: 2`;
/// transformers then pools at the row's highest id, the end-of-text token of these prompts.
#[test]
fn legacy_eos_id_pools_at_the_highest_id() {
    let device = Device::flex();
    let dir = common::reference("clip_text_quick_gelu");
    let mut model = ClipTextConfig {
        eos_token_id: 2,
        ..config(&dir)
    }
    .init(&device);
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    load_safetensors(&mut model, bytes, "model.safetensors", &[], &[]).unwrap();
    let io = std::fs::read(dir.join("io.safetensors")).unwrap();
    let io = SafeTensors::deserialize(&io).unwrap();
    let ids: Vec<u32> = io
        .tensor("ids")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect();
    assert!(
        !ids.contains(&2),
        "the fixture's prompts must not hold id 2"
    );
    let pooled = common::host(model.encode(&ids, 77, &device).pooled);
    common::assert_l2_close(
        &pooled,
        &common::f32s(&io, "pooled").0,
        1e-4,
        "legacy pooled",
    );
}

/// Configs name the weights' type `torch_dtype` (transformers before 4.56) or `dtype` (later);
/// the file's own tensors say what they hold, so both read alike.
#[test]
fn configs_with_torch_dtype_or_dtype_read_alike() {
    let dir = common::reference("clip_text_gelu_tf5");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(json["dtype"], "float32", "transformers 5 writes dtype");
    let new: ClipTextConfig = serde_json::from_value(json.clone()).unwrap();
    let map = json.as_object_mut().unwrap();
    let dtype = map.remove("dtype").unwrap();
    map.insert("torch_dtype".into(), dtype);
    let old: ClipTextConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old, new);
    assert_eq!(new.hidden_size, 32);
}
