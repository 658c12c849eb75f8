//! The motion DiT against an independent PyTorch implementation written from the spec and DiT's
//! `models.py` (`tests/reference/make_dit_fixture.py`): rectangular motion grid, rectangular
//! content frame, conditional and null-text outputs. Also: the zero initialisation, the
//! conditioning actually being used, and the presets.

mod common;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use cmd_model::dit::{DitConfig, TextPooling, sincos_2d};
use cmd_model::schedulers::Prediction;
use cmd_model::weights::load_safetensors;
use safetensors::SafeTensors;

/// The fixture's sizes (motion 8 x 16 x 24, content 3 x 32 x 64 in patches of 8, text 12).
fn config() -> DitConfig {
    DitConfig {
        motion_channels: 8,
        frames: 16,
        motion_width: 24,
        patch: 2,
        content_channels: 3,
        content_height: 32,
        content_width: 64,
        content_patch: 8,
        text_dim: 12,
        hidden: 32,
        depth: 2,
        heads: 4,
        text_norm: None,
        prediction: Prediction::Epsilon,
        text_pooling: TextPooling::AllTokens,
    }
}

#[test]
fn motion_dit_matches_pytorch() {
    let device = Device::flex();
    let bytes = std::fs::read(common::reference("dit_small.safetensors")).unwrap();
    let mut model = config().init(&device).unwrap();
    load_safetensors(
        &mut model,
        bytes.clone(),
        "dit_small.safetensors",
        &["motion", "timesteps", "content", "text", "eps"],
        &[("^weights\\.", "")],
    )
    .unwrap();
    let io = SafeTensors::deserialize(&bytes).unwrap();
    let z = common::tensor::<4>(&io, "motion", &device);
    let content = common::tensor::<4>(&io, "content", &device);
    let text = common::tensor::<2>(&io, "text", &device);
    let t: Vec<f64> = common::f32s(&io, "timesteps")
        .0
        .iter()
        .map(|v| *v as f64)
        .collect();
    let eps = model.forward(z.clone(), &t, content.clone(), text.clone());
    common::assert_l2_close(&common::host(eps), &common::f32s(&io, "eps").0, 1e-4, "eps");
    let null = model.forward(z, &t, content, text.zeros_like());
    common::assert_l2_close(
        &common::host(null),
        &common::f32s(&io, "eps_null").0,
        1e-4,
        "null",
    );
}

/// Replaces every parameter by random values (the zero-initialised layers included).
struct Randomize;
impl ModuleMapper for Randomize {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| t.random_like(Distribution::Normal(0.0, 0.1)))
    }
}

#[test]
fn zero_init_then_text_and_content_change_the_output() {
    let device = Device::flex();
    let cfg = config();
    let model = cfg.init(&device).unwrap();
    let z = Tensor::<4>::random([1, 8, 16, 24], Distribution::Default, &device);
    let content = Tensor::<4>::random([1, 3, 32, 64], Distribution::Default, &device);
    let text = Tensor::<2>::random([1, 12], Distribution::Default, &device);
    let out = common::host(model.forward(z.clone(), &[500.0], content.clone(), text.clone()));
    assert!(
        out.iter().all(|v| *v == 0.0),
        "adaLN-Zero: an untrained DiT predicts zero"
    );

    let model = model.map(&mut Randomize);
    let base = common::host(model.forward(z.clone(), &[500.0], content.clone(), text.clone()));
    let other_text =
        common::host(model.forward(z.clone(), &[500.0], content.clone(), text.clone() * -1.0));
    let other_content =
        common::host(model.forward(z.clone(), &[500.0], content.clone() * 0.5, text.clone()));
    let other_t = common::host(model.forward(z, &[10.0], content, text));
    for (what, other) in [
        ("text", other_text),
        ("content", other_content),
        ("timestep", other_t),
    ] {
        assert!(
            common::relative_l2(&other, &base) > 1e-3,
            "{what} must change the output"
        );
    }
}

#[test]
fn positions_encode_columns_then_rows() {
    // Closed form at (row 2, col 3) of a 4 x 5 grid, width 8: [sin, cos](col w) ++ [sin, cos](row w),
    // w = (1, 1/100).
    let pos = sincos_2d(8, 4, 5);
    let at = &pos[(2 * 5 + 3) * 8..(2 * 5 + 4) * 8];
    let want = [
        3f64.sin(),
        (0.03f64).sin(),
        3f64.cos(),
        (0.03f64).cos(),
        2f64.sin(),
        (0.02f64).sin(),
        2f64.cos(),
        (0.02f64).cos(),
    ];
    for (g, w) in at.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-6, "{at:?} vs {want:?}");
    }
}

#[test]
fn presets_and_bad_sizes() {
    let device = Device::flex();
    // UCF-101 at 64x64 with the ucf64 autoencoder: motion 8 x 16 x 64, content 3 x 64 x 64.
    let s = DitConfig::preset("S", [8, 16, 64], [3, 64, 64], 4, 768).unwrap();
    assert_eq!((s.depth, s.hidden, s.heads, s.patch), (12, 384, 6, 2));
    assert_eq!((s.motion_tokens(), s.content_tokens()), (256, 256));
    let xl = DitConfig::preset("XL", [8, 16, 96], [4, 64, 128], 8, 1024).unwrap();
    assert_eq!((xl.depth, xl.hidden, xl.heads), (28, 1152, 16));
    let tiny = DitConfig::preset("tiny", [8, 16, 32], [3, 64, 64], 4, 128).unwrap();
    assert!(tiny.init(&device).unwrap().num_params() < 2_000_000);
    let err = DitConfig::preset("XXL", [8, 16, 32], [3, 64, 64], 4, 128)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'XXL'") && err.contains("tiny, S, B, L, XL"),
        "{err}"
    );
    let err = DitConfig::preset("S", [8, 15, 32], [3, 64, 64], 4, 128)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("15x32") && err.contains("patch size 2"),
        "{err}"
    );
    let err = DitConfig::preset("S", [8, 16, 32], [3, 60, 64], 8, 128)
        .unwrap_err()
        .to_string();
    assert!(err.contains("60x64"), "{err}");
}

#[test]
fn text_standardisation_is_fitted_applied_and_checked() {
    use cmd_model::dit::TextNorm;
    let device = Device::flex();
    // Two dimensions: values {1, 3} and {10, 10.5}: means 2 and 10.25, std 1 and 0.25.
    let norm = TextNorm::fit(&[vec![1.0, 10.0], vec![3.0, 10.5]]).unwrap();
    assert_eq!(norm.mean, [2.0, 10.25]);
    assert_eq!(norm.scale, [1.0, 4.0]);
    let mut cfg = config();
    cfg.text_dim = 2;
    cfg.text_norm = Some(norm);
    let pooled = Tensor::<2>::from_data([[3.0f32, 10.0], [2.0, 10.75]], &device);
    let out = cfg
        .standardise(pooled)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(out, [1.0, -1.0, 0.0, 2.0]);
    // Without it the pooled text passes as it is; old configs (no field) still parse.
    let plain = config();
    let x = Tensor::<2>::from_data([[0.5f32; 12]], &device);
    assert_eq!(
        plain
            .standardise(x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
        [0.5; 12]
    );
    let mut json = serde_json::to_value(&plain).unwrap();
    assert!(json.get("text_norm").is_none());
    json.as_object_mut().unwrap().remove("text_norm");
    assert_eq!(serde_json::from_value::<DitConfig>(json).unwrap(), plain);
    let round: DitConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(round, cfg);
    // Bad input: a standardisation of the wrong width, vectors of mixed widths.
    cfg.text_dim = 3;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("expected text_dim = 3")
    );
    let err = TextNorm::fit(&[vec![1.0], vec![1.0, 2.0]]).unwrap_err();
    assert!(err.to_string().contains("widths [1, 2]"), "{err}");
}

#[test]
fn prediction_target_is_stored_and_defaults_to_epsilon() {
    // Models saved before the field existed predict the noise, as the spec's DiT does.
    let mut json = serde_json::to_value(config()).unwrap();
    assert_eq!(json["prediction"], "epsilon");
    json.as_object_mut().unwrap().remove("prediction");
    let old: DitConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old.prediction, Prediction::Epsilon);
    let v = DitConfig {
        prediction: Prediction::V,
        ..config()
    };
    let round: DitConfig = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
    assert_eq!(round.prediction, Prediction::V);
    // The motion sampler follows the model's target.
    let schedule = cmd_model::pipelines::cmd::motion_schedule(Prediction::V);
    assert_eq!(schedule.prediction_type, Prediction::V);
    assert_eq!((schedule.beta_start, schedule.beta_end), (1e-4, 0.02));
    // No clipping of the predicted sample (DiT's `clip_denoised=False`).
    assert!(!schedule.clip_sample);
}

#[test]
fn pooled_text_averages_all_positions_or_the_prompt_tokens() {
    let device = Device::flex();
    // Two prompts of 4 positions, width 2: row i of prompt b holds (b*10 + i, -i).
    let values: Vec<f32> = (0..2)
        .flat_map(|b| (0..4).flat_map(move |i| [(b * 10 + i) as f32, -(i as f32)]))
        .collect();
    let states = Tensor::<3>::from_data(TensorData::new(values, [2, 4, 2]), &device);
    let pool = |p: TextPooling, lengths: &[usize]| {
        p.pool(states.clone(), lengths)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(
        pool(TextPooling::AllTokens, &[1, 3]),
        [1.5, -1.5, 11.5, -1.5]
    );
    assert_eq!(
        pool(TextPooling::PromptTokens, &[1, 3]),
        [0.0, 0.0, 11.0, -1.0]
    );
    assert_eq!(
        pool(TextPooling::PromptTokens, &[4, 4]),
        pool(TextPooling::AllTokens, &[4, 4])
    );
    // The config's condition pools as the model was trained; older configs pool everything.
    let mut cfg = config();
    cfg.text_dim = 2;
    let condition = |cfg: &DitConfig| {
        cfg.text_condition(states.clone(), &[1, 3])
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(condition(&cfg), [1.5, -1.5, 11.5, -1.5]);
    let mut json = serde_json::to_value(&cfg).unwrap();
    assert_eq!(json["text_pooling"], "all_tokens");
    json.as_object_mut().unwrap().remove("text_pooling");
    assert_eq!(serde_json::from_value::<DitConfig>(json).unwrap(), cfg);
    cfg.text_pooling = TextPooling::PromptTokens;
    assert_eq!(condition(&cfg), [0.0, 0.0, 11.0, -1.0]);
    let json = serde_json::to_string(&cfg).unwrap();
    assert!(
        json.contains("\"text_pooling\":\"prompt_tokens\""),
        "{json}"
    );
}
