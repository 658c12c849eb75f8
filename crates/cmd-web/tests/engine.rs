//! The browser engine, run natively on the CPU with the shipped teaching model: generation,
//! image to video, decomposition, transfer, the teaching pictures, guided steps shared with a
//! second engine, and bad requests.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use burn::tensor::Device;
use cmd_model::pipelines::{CmdPipeline, GenerateOptions, Sampler, SamplingOptions, Stage};
use cmd_video::Clip;
use cmd_web::helper::{Chooser, Helper, NullCall, Reply};
use cmd_web::{Engine, Request};

/// The files of a shipped model folder, by name.
fn files(folder: &str) -> HashMap<String, Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(folder);
    let mut files = HashMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        files.insert(name, std::fs::read(&path).unwrap());
    }
    files
}

fn engine() -> Engine {
    Engine::load(files("teaching"), Device::flex()).unwrap()
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
        err.contains("content steps: must be from 1 to 1000, found 0"),
        "{err}"
    );
    let err = match Engine::load(HashMap::new(), Device::flex()) {
        Err(e) => e,
        Ok(_) => panic!("an empty bundle loads"),
    };
    assert!(err.contains("model.json"), "{err}");
}

/// A helper that is a second engine of the same model (as the page's second worker), noting
/// the stage of each call; `fail` makes every answer an error.
struct Second {
    engine: Engine,
    calls: Rc<RefCell<Vec<Stage>>>,
    fail: bool,
}

impl Helper for Second {
    fn ask(&self, call: NullCall) -> Reply {
        self.calls.borrow_mut().push(call.stage);
        let answer = match self.fail {
            true => Err("it stopped".to_string()),
            false => self.engine.null_prediction(&call),
        };
        Box::pin(async move { answer })
    }
}

fn second(fail: bool) -> (Box<Second>, Rc<RefCell<Vec<Stage>>>) {
    let calls = Rc::new(RefCell::new(Vec::new()));
    let helper = Second {
        engine: engine(),
        calls: calls.clone(),
        fail,
    };
    (Box::new(helper), calls)
}

/// The largest difference between two byte strings of one length.
fn byte_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

#[test]
fn guided_steps_shared_with_a_second_engine_give_the_same_clips() {
    let r = request("a red circle moving left on a black background");
    let alone = engine();
    let want = pollster::block_on(alone.generate(&r, &mut |_, _, _| {})).unwrap();
    let shared = engine();
    let (helper, calls) = second(false);
    assert!(shared.set_helper(helper));
    assert!(!shared.set_helper(second(false).0), "one helper only");
    let got = pollster::block_on(shared.generate(&r, &mut |_, _, _| {})).unwrap();
    // Two content and two motion steps: each stage tries one batch here, then the helper.
    assert_eq!(*calls.borrow(), [Stage::Content, Stage::Motion]);
    assert!(byte_diff(&got.clip_rgba(), &want.clip_rgba()) <= 1);
    assert!(byte_diff(&got.content.rgba, &want.content.rgba) <= 1);

    // Image to video: only motion steps.
    calls.borrow_mut().clear();
    let picture = want.content.rgba.clone();
    let animated = pollster::block_on(shared.animate(&picture, &r, &mut |_, _, _| {})).unwrap();
    let alone_animated =
        pollster::block_on(alone.animate(&picture, &r, &mut |_, _, _| {})).unwrap();
    assert_eq!(*calls.borrow(), [Stage::Motion]);
    assert!(byte_diff(&animated.clip_rgba(), &alone_animated.clip_rgba()) <= 1);

    // Guidance off: nothing to share.
    calls.borrow_mut().clear();
    let unguided = Request {
        guidance: 1.0,
        motion_guidance: 1.0,
        ..r.clone()
    };
    pollster::block_on(shared.generate(&unguided, &mut |_, _, _| {})).unwrap();
    assert!(calls.borrow().is_empty());
}

#[test]
fn a_failing_helper_or_a_bad_null_call_is_named() {
    let engine = engine();
    let (helper, _) = second(true);
    assert!(engine.set_helper(helper));
    let err = pollster::block_on(engine.generate(&request("a red circle"), &mut |_, _, _| {}))
        .unwrap_err();
    assert_eq!(err, "the second worker failed: it stopped");

    let call = NullCall {
        stage: Stage::Content,
        x: vec![0.0; 10],
        dims: [1, 3, 32, 32],
        t: 500,
        content: None,
    };
    let err = engine.null_prediction(&call).unwrap_err();
    assert_eq!(err, "x: 10 values for shape [1, 3, 32, 32], expected 3072");
    let motion = NullCall {
        stage: Stage::Motion,
        ..call.clone()
    };
    let err = engine.null_prediction(&motion).unwrap_err();
    assert!(err.contains("needs its content frame"), "{err}");
    let text = NullCall {
        stage: Stage::Text,
        ..call
    };
    let err = engine.null_prediction(&text).unwrap_err();
    assert!(
        err.contains("for a content or motion step, found Text"),
        "{err}"
    );
}

/// The weights of a safetensors file all set to NaN (f16 or f32: every byte 0xFF).
fn broken(file: &[u8]) -> Vec<u8> {
    let header = 8 + u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let mut out = file[..header].to_vec();
    out.resize(file.len(), 0xFF);
    out
}

#[test]
fn broken_weights_stop_generation_with_a_clear_error() {
    let mut files = files("teaching");
    let dit = broken(&files["dit.safetensors"]);
    files.insert("dit.safetensors".into(), dit);
    let engine = Engine::load(files, Device::flex()).unwrap();
    let err = pollster::block_on(engine.generate(&request("a red circle"), &mut |_, _, _| {}))
        .unwrap_err();
    assert!(
        err.contains("the model produced NaN in its motion latent"),
        "{err}"
    );
}

#[test]
fn real_clips_are_decomposed_by_the_real_video_autoencoder_once_loaded() {
    let engine = engine();
    let (h, w, l, name) = engine.decompose_size();
    assert_eq!((h, w, l, name.as_str()), (32, 32, 16, "teaching"));

    // A bad folder is named and changes nothing.
    let err = engine.load_clip_autoencoder(HashMap::new()).unwrap_err();
    assert!(err.contains("model.json"), "{err}");
    let mut broken = files("real");
    broken.insert("autoencoder.safetensors".into(), vec![0; 16]);
    let err = engine.load_clip_autoencoder(broken).unwrap_err();
    assert!(err.contains("autoencoder.safetensors"), "{err}");
    assert_eq!(engine.decompose_size().3, "teaching");

    engine.load_clip_autoencoder(files("real")).unwrap();
    let (h, w, l, name) = engine.decompose_size();
    assert_eq!((h, w, l, name.as_str()), (64, 64, 16, "real64"));
    // Generation keeps the teaching model's size.
    assert_eq!(engine.clip_size(), (32, 32, 16));

    // A real clip (opencv-doc's vtest, pedestrians) at the autoencoder's size.
    let clip = cmd_video::read_clip(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clips/vtest.y4m"),
        &cmd_video::Take::first(l),
    )
    .unwrap()
    .fit(w as u32, h as u32);
    let rgba: Vec<u8> = clip
        .frames
        .iter()
        .flat_map(|f| f.pixels().flat_map(|p| [p[0], p[1], p[2], 255]))
        .collect();
    let decomposed = pollster::block_on(engine.decompose(&rgba)).unwrap();
    let psnr = decomposed.psnr.unwrap();
    assert!(psnr > 24.0, "PSNR {psnr}");
    assert_eq!(decomposed.clip_rgba().len(), rgba.len());
    let moved = pollster::block_on(engine.transfer(&rgba, &rgba)).unwrap();
    assert_eq!(moved.clip_rgba().len(), rgba.len());
    let err = pollster::block_on(engine.decompose(&rgba[..32 * 32 * 4 * 16])).unwrap_err();
    assert!(err.contains("expected 16 RGBA frames of 64x64"), "{err}");
}

/// The browser and the CLI drive one `Generation`: a seed gives the same clip in both.
#[test]
fn the_engine_and_the_pipeline_make_the_same_clip_for_a_seed() {
    let engine = engine();
    let r = request("a blue square moving right on a white background");
    let panels = pollster::block_on(engine.generate(&r, &mut |_, _, _| {})).unwrap();

    let device = Device::flex();
    let mut files = files("teaching");
    let mut read = |name: &str| Ok::<_, String>(files.remove(name));
    let pipeline = CmdPipeline::from_bundle(&mut read, &device).unwrap();
    let sampling = |steps, guidance| SamplingOptions {
        steps,
        guidance,
        sampler: Sampler::Ddim,
    };
    let options = GenerateOptions {
        content: sampling(r.steps, r.guidance),
        motion: sampling(r.motion_steps, r.motion_guidance),
        seed: r.seed,
    };
    let video = pipeline
        .generate(&r.prompt, &options, &device, &mut |_, _, _| {})
        .unwrap();
    let [_, l, _, h, w] = video.frames.dims();
    let values = video.frames.into_data().try_to_vec::<f32>().unwrap();
    let cli = Clip::from_signed_f32(&values, l, h as u32, w as u32, 8.0);
    assert_eq!(panels.clip.frames.len(), cli.frames.len());
    let max = panels
        .clip
        .frames
        .iter()
        .zip(&cli.frames)
        .flat_map(|(a, b)| {
            a.as_raw()
                .iter()
                .zip(b.as_raw())
                .map(|(x, y)| x.abs_diff(*y))
        })
        .max()
        .unwrap();
    // The page turns frames into bytes with its own kernel: rounding may differ by one.
    assert!(max <= 1, "the clips differ by up to {max} of 255");
}

#[test]
fn each_stage_keeps_the_faster_way_after_trying_both() {
    let ms = std::time::Duration::from_millis;
    let mut chooser = Chooser::default();
    // Content: batched 80 then 70 ms, shared 50 then 52 ms: shared from then on.
    let mut ways = Vec::new();
    for time in [80, 50, 70, 52, 0, 0] {
        let share = chooser.share(Stage::Content);
        ways.push(share);
        chooser.took(share, ms(time));
    }
    assert_eq!(ways, [false, true, false, true, true, true]);
    // A new stage starts over; motion: batched 20 ms, shared 30 ms: batched from then on.
    ways.clear();
    for time in [20, 30, 20, 30, 0] {
        let share = chooser.share(Stage::Motion);
        ways.push(share);
        chooser.took(share, ms(time));
    }
    assert_eq!(ways, [false, true, false, true, false]);
    assert_eq!(Chooser::PROBES, 2);
}
