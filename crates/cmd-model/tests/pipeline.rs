//! The CMD pipeline on small random networks: seeded and deterministic, progress reported per
//! stage in order, image-to-video keeps the given content frame, and motion transfer combines
//! the content of one clip with the motion of the other.

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use cmd_model::clip::ClipTextConfig;
use cmd_model::dit::DitConfig;
use cmd_model::pipelines::stable_diffusion::load_tokenizer;
use cmd_model::pipelines::{
    CmdPipeline, Codec, GenerateOptions, Generation, GuidedCall, Sampler, SamplingOptions, Stage,
};
use cmd_model::schedulers::SchedulerConfig;
use cmd_model::unet::UnetConfig;
use cmd_model::{AutoencoderConfig, OutputMode};

fn pipeline(device: &Device) -> CmdPipeline {
    let dir = common::reference("sd_tiny");
    let mut read = |path: &str| Ok(std::fs::read(dir.join(path)).ok());
    let tokenizer = load_tokenizer(&mut read).unwrap();
    let text = ClipTextConfig {
        vocab_size: 555,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        eos_token_id: 554,
        ..ClipTextConfig::default()
    };
    // Frames 4 x 16 x 16, patch 4: H' = W' = 4, motion 4 x 4 x 8.
    let ae = AutoencoderConfig::new(3, 4, 16, 16, 4, 16, 4, 1, 2, 8, OutputMode::Pixel);
    let unet = UnetConfig {
        cross_attention_dim: 16,
        ..UnetConfig::tiny(3, 16)
    };
    let dit = DitConfig::preset("tiny", [4, 4, 8], [3, 16, 16], 4, 16).unwrap();
    CmdPipeline {
        tokenizer,
        text_encoder: text.init(device),
        content_unet: unet.init(device).unwrap(),
        content_unet_config: unet.clone(),
        content_scheduler: SchedulerConfig::stable_diffusion(),
        dit: randomized(dit.init(device).unwrap()),
        codec: Codec {
            autoencoder: ae.init(device).unwrap(),
            vae: None,
        },
    }
}

/// The DiT's zero-initialised layers get random values, so its output depends on its inputs.
fn randomized(dit: cmd_model::dit::MotionDit) -> cmd_model::dit::MotionDit {
    use burn::module::{Module, ModuleMapper, Param};
    struct Randomize;
    impl ModuleMapper for Randomize {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            p.map(|t| t.random_like(Distribution::Normal(0.0, 0.05)))
        }
    }
    dit.map(&mut Randomize)
}

fn options(seed: u64) -> GenerateOptions {
    let steps = |steps| SamplingOptions {
        steps,
        guidance: 3.0,
        sampler: Sampler::Ddim,
    };
    GenerateOptions {
        content: steps(3),
        motion: steps(4),
        seed,
    }
}

#[test]
fn generation_is_seeded_and_reports_every_stage() {
    let device = Device::flex();
    let p = pipeline(&device);
    let mut stages = Vec::new();
    let a = p
        .generate("a red circle", &options(1), &device, &mut |s, d, t| {
            stages.push((s, d, t))
        })
        .unwrap();
    assert_eq!(a.frames.dims(), [1, 4, 3, 16, 16]);
    assert_eq!(a.motion.dims(), [1, 4, 4, 8]);
    let b = p
        .generate("a red circle", &options(1), &device, &mut |_, _, _| {})
        .unwrap();
    let c = p
        .generate("a red circle", &options(2), &device, &mut |_, _, _| {})
        .unwrap();
    let (fa, fb, fc) = (
        common::host(a.frames),
        common::host(b.frames),
        common::host(c.frames),
    );
    assert_eq!(fa, fb, "the same seed gives the same clip");
    assert_ne!(fa, fc, "another seed, another clip");
    let order: Vec<Stage> = stages.iter().map(|s| s.0).collect();
    let mut dedup = order.clone();
    dedup.dedup();
    assert_eq!(
        dedup,
        [Stage::Text, Stage::Content, Stage::Motion, Stage::Decode]
    );
    assert!(stages.contains(&(Stage::Content, 3, 3)) && stages.contains(&(Stage::Motion, 4, 4)));
    assert!(!a.truncated);
    let long = "red ".repeat(100);
    let d = p
        .generate(&long, &options(1), &device, &mut |_, _, _| {})
        .unwrap();
    assert!(d.truncated, "a prompt over 75 tokens is cut and says so");
}

/// Null rows computed apart (as the browser's second worker does) give the clip of the plain
/// steps: the same calls, with the guidance combined in the same place.
#[test]
fn guided_steps_from_rows_computed_apart_give_the_same_clip() {
    let device = Device::flex();
    let p = pipeline(&device);
    let whole = p
        .generate("a red circle", &options(5), &device, &mut |_, _, _| {})
        .unwrap();
    let null_text = p.null_text(&device).unwrap();
    let mut generation =
        Generation::text_to_video(&p, "a red circle", &options(5), &device).unwrap();
    // The prompt comes first: not a guided step.
    assert!(generation.guided_call().is_none() && generation.cond_prediction().is_none());
    let zeros = Tensor::<4>::zeros([1, 3, 16, 16], &device);
    let err = generation
        .step_guided(zeros.clone(), zeros.clone())
        .unwrap_err();
    assert!(
        err.to_string().contains("not a guided sampler step"),
        "{err}"
    );
    let mut stages = Vec::new();
    while !generation.is_finished() {
        match generation.guided_call() {
            Some(call) => {
                stages.push(match &call {
                    GuidedCall::Content { x, .. } => (Stage::Content, x.dims()),
                    GuidedCall::Motion { x, content, .. } => {
                        assert_eq!(content.dims(), [1, 3, 16, 16]);
                        (Stage::Motion, x.dims())
                    }
                });
                let null = p.null_prediction(&call, &null_text);
                let cond = generation.cond_prediction().unwrap();
                // A prediction of the wrong shape is refused, and the step not taken.
                let wrong = Tensor::<4>::zeros([1, 1, 2, 2], &device);
                let err = generation.step_guided(wrong, cond.clone()).unwrap_err();
                assert!(err.to_string().contains("expected the sample's"), "{err}");
                generation.step_guided(null, cond).unwrap();
            }
            None => {
                generation.step().unwrap();
            }
        }
    }
    let content_steps = stages.iter().filter(|s| s.0 == Stage::Content).count();
    assert_eq!((content_steps, stages.len()), (3, 7));
    assert!(stages.contains(&(Stage::Motion, [1, 4, 4, 8])));
    let apart = generation.into_video().unwrap();
    let max_diff = |a, b| {
        let (a, b) = (common::host::<4>(a), common::host::<4>(b));
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    let frames = |v: cmd_model::pipelines::Video| v.frames.reshape([4, 3, 16, 16]);
    assert!(max_diff(whole.motion.clone(), apart.motion.clone()) < 1e-4);
    let diff = max_diff(frames(whole), frames(apart));
    assert!(diff < 1e-4, "clips differ by {diff}");
    // Guidance off: no guided calls.
    let mut off = options(5);
    off.content.guidance = 1.0;
    off.motion.guidance = 1.0;
    let mut generation = Generation::text_to_video(&p, "a red circle", &off, &device).unwrap();
    while !generation.is_finished() {
        assert!(generation.guided_call().is_none());
        generation.step().unwrap();
    }
}

#[test]
fn animate_keeps_the_content_frame_and_transfer_mixes_clips() {
    let device = Device::flex();
    let p = pipeline(&device);
    let picture = Tensor::<4>::random([1, 3, 16, 16], Distribution::Uniform(-1.0, 1.0), &device);
    let video = p
        .animate(
            picture.clone(),
            "moving left",
            &options(3),
            &mut |_, _, _| {},
        )
        .unwrap();
    assert_eq!(common::host(video.content), common::host(picture));
    let text_changes = p
        .animate(
            video_content(&device),
            "moving right",
            &options(3),
            &mut |_, _, _| {},
        )
        .unwrap();
    let same_text = p
        .animate(
            video_content(&device),
            "moving left",
            &options(3),
            &mut |_, _, _| {},
        )
        .unwrap();
    assert_ne!(
        common::host(text_changes.motion),
        common::host(same_text.motion),
        "the prompt steers the motion"
    );

    let clip = |seed: f64| {
        Tensor::<5>::random(
            [1, 4, 3, 16, 16],
            Distribution::Uniform(-seed, seed),
            &device,
        )
    };
    let (a, b) = (clip(1.0), clip(0.5));
    let mixed = p.codec.transfer(a.clone(), b.clone());
    let ea = p.codec.encode(a);
    let eb = p.codec.encode(b);
    assert_eq!(
        common::host(mixed.content.clone()),
        common::host(ea.content.clone())
    );
    assert_eq!(common::host(mixed.motion.clone()), common::host(eb.motion));
    let decoded = p.codec.decode(ea.content, mixed.motion);
    assert_eq!(common::host(mixed.frames), common::host(decoded));
}

fn video_content(device: &Device) -> Tensor<4> {
    Tensor::<4>::ones([1, 3, 16, 16], device).mul_scalar(0.25)
}

#[test]
fn bundles_round_trip_in_f32_and_f16() {
    use burn::tensor::DType;
    let device = Device::flex();
    let p = pipeline(&device);
    let want = common::host(
        p.generate("a blue square", &options(5), &device, &mut |_, _, _| {})
            .unwrap()
            .frames,
    );
    for (dtype, tol) in [(DType::F32, 0.0), (DType::F16, 1e-2)] {
        let files = p.to_bundle(dtype).unwrap();
        let mut read = |name: &str| Ok(files.iter().find(|f| f.0 == name).map(|f| f.1.clone()));
        let q = CmdPipeline::from_bundle(&mut read, &device).unwrap();
        let got = common::host(
            q.generate("a blue square", &options(5), &device, &mut |_, _, _| {})
                .unwrap()
                .frames,
        );
        let err = common::relative_l2(&got, &want);
        assert!(err <= tol, "{dtype:?}: relative L2 {err:e}");
    }
    let files = p.to_bundle(DType::F16).unwrap();
    for broken in ["dit.safetensors", "model.json"] {
        let mut read = |name: &str| {
            Ok(files.iter().find(|f| f.0 == name).map(|f| {
                if name == broken {
                    b"{}".to_vec()
                } else {
                    f.1.clone()
                }
            }))
        };
        let err = CmdPipeline::from_bundle(&mut read, &device)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.file, broken, "{err}");
    }
}
