//! The browser engine, run natively on the CPU with the shipped teaching model: generation,
//! image to video, decomposition, transfer, the teaching pictures, and bad requests.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Device;
use cmd_model::pipelines::Stage;
use cmd_web::{Engine, Request};

fn engine() -> Engine {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/teaching");
    let mut files = HashMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        files.insert(name, std::fs::read(&path).unwrap());
    }
    Engine::load(files, Device::flex()).unwrap()
}

fn request(prompt: &str) -> Request {
    Request {
        prompt: prompt.into(),
        seed: 1,
        steps: 2,
        motion_steps: 2,
        guidance: 3.0,
        motion_guidance: 3.0,
    }
}

#[test]
fn generates_decomposes_and_transfers() {
    let engine = engine();
    let (h, w, l) = engine.clip_size();
    let mut stages = Vec::new();
    let panels = pollster::block_on(engine.generate(
        &request("a red circle moving left on a black background"),
        &mut |stage, done, total| stages.push((stage, done, total)),
    ))
    .unwrap();
    assert_eq!(stages.first(), Some(&(Stage::Text, 0, 1)));
    assert!(stages.contains(&(Stage::Content, 2, 2)));
    assert!(stages.contains(&(Stage::Motion, 2, 2)));
    assert_eq!(stages.last(), Some(&(Stage::Decode, 1, 1)));
    let clip = panels.clip_rgba();
    assert_eq!(clip.len(), l * h * w * 4);
    assert_eq!(panels.content_only_rgba().len(), clip.len());
    assert_eq!(panels.content.rgba.len(), h * w * 4);
    assert_eq!(
        panels.weights.rgba.len(),
        panels.weights.width * panels.weights.height * 4
    );
    assert!(panels.motion.width > 0 && panels.psnr.is_none());
    assert_eq!(&panels.gif()[..6], b"GIF89a");

    // The same seed gives the same clip.
    let again = pollster::block_on(engine.generate(
        &request("a red circle moving left on a black background"),
        &mut |_, _, _| {},
    ))
    .unwrap();
    assert_eq!(again.clip_rgba(), clip);

    // Decomposing a clip reconstructs it (and says how well).
    let decomposed = pollster::block_on(engine.decompose(&clip)).unwrap();
    let psnr = decomposed.psnr.unwrap();
    assert!(psnr.is_finite() && psnr > 10.0, "PSNR {psnr}");
    let moved = pollster::block_on(engine.transfer(&clip, &again.clip_rgba())).unwrap();
    assert_eq!(moved.clip_rgba().len(), clip.len());

    // Image to video keeps the picture as the content frame.
    let picture = &clip[..h * w * 4];
    let animated = pollster::block_on(engine.animate(
        picture,
        &request("a red circle moving up on a black background"),
        &mut |_, _, _| {},
    ))
    .unwrap();
    let content: Vec<u8> = animated.content.rgba.clone();
    let diff = content
        .iter()
        .zip(picture)
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .max()
        .unwrap();
    assert!(
        diff <= 1,
        "the content frame is the picture (max difference {diff})"
    );
}

#[test]
fn bad_requests_are_named() {
    let engine = engine();
    let (h, w, l) = engine.clip_size();
    let err = pollster::block_on(engine.decompose(&[0; 12])).unwrap_err();
    let expected = format!("expected {l} RGBA frames of {w}x{h}");
    assert!(err.contains(&expected), "{err}");
    let mut bad = request("a red circle");
    bad.steps = 0;
    let err = pollster::block_on(engine.generate(&bad, &mut |_, _, _| {})).unwrap_err();
    assert!(
        err.contains("steps must be between 1 and 1000, found 0"),
        "{err}"
    );
    let err = match Engine::load(HashMap::new(), Device::flex()) {
        Err(e) => e,
        Ok(_) => panic!("an empty bundle loads"),
    };
    assert!(err.contains("model.json"), "{err}");
}
