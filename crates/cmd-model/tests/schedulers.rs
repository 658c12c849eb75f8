//! Scheduler parity with diffusers 0.35.2 (`tests/reference/make_scheduler_fixture.py`):
//! timesteps, `alphas_cumprod`, DDPM noising, and whole DDIM and DPM-Solver++(2M) trajectories
//! driven by a fixed stand-in model.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use cmd_model::schedulers::{
    BetaSchedule, Ddim, DpmSolver, NoiseSchedule, SchedulerConfig, SchedulerError,
};
use serde_json::Value;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/reference/schedulers.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn tensor(values: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values, shape), &Device::flex())
}

fn host(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

/// The stand-in network of the fixture: eps(x, t) = (0.5 + 0.4 sin(t / 137)) x.
fn fake_model(x: &Tensor<4>, t: usize) -> Tensor<4> {
    x.clone().mul_scalar(0.5 + 0.4 * (t as f64 / 137.0).sin())
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn schedules_match_diffusers() {
    let fx = fixture();
    for (name, schedule) in [
        ("scaled_linear", SchedulerConfig::stable_diffusion()),
        (
            "squaredcos_cap_v2",
            SchedulerConfig {
                beta_schedule: BetaSchedule::SquaredCosCapV2,
                ..SchedulerConfig::default()
            },
        ),
        ("linear", SchedulerConfig::default()),
    ] {
        let acp = NoiseSchedule::new(&schedule).alphas_cumprod;
        let got: Vec<f32> = acp.iter().step_by(111).map(|v| *v as f32).collect();
        assert_close(&got, &floats(&fx["alphas_cumprod"][name]), 1e-5, name);
    }
}

#[test]
fn ddpm_noising_matches_diffusers() {
    let fx = fixture();
    let shape = [1, 2, 3, 3];
    let x0 = tensor(floats(&fx["start"]), shape);
    let noise = tensor(floats(&fx["add_noise"]["noise"]), shape);
    let schedule = NoiseSchedule::new(&SchedulerConfig::stable_diffusion());
    let noisy = schedule.add_noise(x0.clone(), noise.clone(), &[500]);
    assert_close(
        &host(noisy),
        &floats(&fx["add_noise"]["noisy"]),
        1e-5,
        "add_noise",
    );
    let v = schedule.velocity(x0, noise, &[500]);
    assert_close(
        &host(v),
        &floats(&fx["add_noise"]["velocity"]),
        1e-5,
        "velocity",
    );
}

#[test]
fn trajectories_match_diffusers() {
    let fx = fixture();
    let start = floats(&fx["start"]);
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let config: SchedulerConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let steps = case["steps"].as_u64().unwrap() as usize;
        let want_t: Vec<usize> = case["timesteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as usize)
            .collect();
        let mut x = tensor(start.clone(), [1, 2, 3, 3]);
        let mut states = Vec::new();
        match case["kind"].as_str().unwrap() {
            "ddim" => {
                let ddim = Ddim::new(&config, steps).unwrap();
                assert_eq!(ddim.timesteps(), want_t.as_slice(), "{name}");
                for &t in ddim.timesteps() {
                    x = ddim.step(fake_model(&x, t), t, x, 0.0, None);
                    states.push(host(x.clone()));
                }
            }
            "dpmpp2m" => {
                let mut dpm = DpmSolver::<4>::new(&config, steps).unwrap();
                assert_eq!(dpm.timesteps(), want_t.as_slice(), "{name}");
                for t in dpm.timesteps().to_vec() {
                    x = dpm.step(fake_model(&x, t), x);
                    states.push(host(x.clone()));
                }
            }
            other => panic!("unknown kind {other}"),
        }
        for (i, (got, want)) in states
            .iter()
            .zip(case["trajectory"].as_array().unwrap())
            .enumerate()
        {
            assert_close(got, &floats(want), 1e-4, &format!("{name} step {i}"));
        }
    }
}

#[test]
fn unsupported_configs_name_the_field() {
    let text = r#"{"beta_schedule": "scaled_linear", "thresholding": true}"#;
    let config = SchedulerConfig::from_json(text).unwrap();
    let err = Ddim::new(&config, 50).unwrap_err().to_string();
    assert!(err.contains("'thresholding'"), "{err}");
    let config = SchedulerConfig::from_json(r#"{"algorithm_type": "sde-dpmsolver++"}"#).unwrap();
    let err = DpmSolver::<4>::new(&config, 20).unwrap_err().to_string();
    assert!(
        err.contains("'algorithm_type'") && err.contains("sde-dpmsolver++"),
        "{err}"
    );
    let err = SchedulerConfig::from_json(r#"{"beta_schedule": "sigmoid"}"#).unwrap_err();
    assert!(
        matches!(err, SchedulerError::Parse(ref m) if m.contains("sigmoid")),
        "{err}"
    );
    // Unknown fields (diffusers writes many) are ignored.
    let sd15 = r#"{"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": false,
        "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null, "clip_sample": false,
        "lambda_min_clipped": -Infinity, "note": "x: NaN"}"#;
    let config = SchedulerConfig::from_json(sd15).unwrap();
    assert_eq!(config, SchedulerConfig::stable_diffusion());
}
