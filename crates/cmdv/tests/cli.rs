//! End-to-end tests of the `cmdv` binary: training, resuming, reconstructing, and every bad
//! input giving one clear error. Run them in release mode (`cargo test --release`).

mod common;

use std::path::Path;

use common::{data_dir, fails, fixture, latest, metrics_steps, ok, s, scratch};

#[test]
fn info_describes_every_preset() {
    for (preset, motion) in [
        ("tiny", "8 x 16 x 32"),
        ("ucf64", "8 x 16 x 64"),
        ("sd15-512", "8 x 16 x 64"),
        ("sd21-512x1024", "8 x 16 x 96"),
    ] {
        let out = ok(&["info", "--preset", preset]);
        assert!(out.contains(&format!("motion latent   {motion}")), "{out}");
        assert!(out.contains("parameters") && out.contains("GFLOP"), "{out}");
    }
    let err = fails(&["info", "--preset", "giant"]);
    assert!(
        err.contains("'giant'") && err.contains("sd21-512x1024"),
        "{err}"
    );
}

#[test]
fn a_closed_output_pipe_ends_the_program_quietly() {
    // As `cmdv info | head -0`: the reader is gone before anything is written.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cmdv"))
        .args(["info", "--preset", "sd21-512x1024"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}

#[test]
fn train_resume_and_reconstruct() {
    let data = data_dir("train");
    let work = scratch("train-run");
    let run = work.join("run");
    let common = ["--data", s(&data), "--preset", "tiny", "--batch", "1"];

    // Train 3 steps with a checkpoint every 2: checkpoints at 2 and at the end (3).
    let mut args = vec![
        "train-ae",
        "--out",
        s(&run),
        "--steps",
        "3",
        "--checkpoint-every",
        "2",
    ];
    args.extend(common);
    ok(&args);
    assert_eq!(latest(&run), "step-000003");
    assert_eq!(metrics_steps(&run), vec![1, 2, 3]);

    // Data parallel: a batch of 2 split over two (CPU) devices gives the losses of one device.
    let losses = |run: &Path| -> Vec<f64> {
        std::fs::read_to_string(run.join("metrics.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect()
    };
    let pair = |out: &Path, devices: &str| {
        ok(&[
            "train-ae",
            "--out",
            s(out),
            "--steps",
            "2",
            "--data",
            s(&data),
            "--preset",
            "teaching",
            "--batch",
            "2",
            "--devices",
            devices,
        ]);
        losses(out)
    };
    let (one, two) = (pair(&work.join("one"), "1"), pair(&work.join("two"), "2"));
    assert_eq!(one.len(), 2);
    for (a, b) in one.iter().zip(&two) {
        assert!((a - b).abs() <= 1e-4 * a.abs(), "{a} vs {b}");
    }

    // Starting again over it would lose the run: refused.
    let err = fails(&args);
    assert!(
        err.contains("already holds a checkpoint") && err.contains("--resume"),
        "{err}"
    );

    // Resume to 5 steps: the optimizer state and the step count carry on.
    let mut resume = vec!["train-ae", "--out", s(&run), "--steps", "5", "--resume"];
    resume.extend(common);
    // A CPU run opens no GPU driver, even where resuming loads the optimizer state (burn
    // makes it on its default device): no Vulkan driver lines on stderr.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cmdv"))
        .args(&resume)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("BURN_DEVICE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
    assert_eq!(latest(&run), "step-000005");
    assert_eq!(metrics_steps(&run), vec![1, 2, 3, 4, 5]);
    let state = std::fs::read_to_string(run.join("checkpoints/step-000005/state.json")).unwrap();
    assert!(state.contains("\"step\": 5"), "{state}");

    // Resuming with another preset is refused, naming both.
    let err = fails(&[
        "train-ae",
        "--out",
        s(&run),
        "--resume",
        "--data",
        s(&data),
        "--preset",
        "ucf64",
    ]);
    assert!(err.contains("'tiny'") && err.contains("ucf64"), "{err}");

    // Reconstruct from the run folder and from the weights file.
    let out_dir = work.join("recon");
    let json = ok(&[
        "reconstruct",
        "--ae",
        s(&run),
        "--input",
        s(&fixture("clips/vtest.mp4")),
        "--out",
        s(&out_dir),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["frames"], 16);
    assert!(v["psnr"].as_f64().unwrap() > 5.0 && v["ssim"].as_f64().unwrap() <= 1.0);
    for f in [
        "content.png",
        "weights.png",
        "motion.png",
        "input.gif",
        "recon.gif",
    ] {
        assert!(out_dir.join(f).exists(), "{f} missing");
    }
    let weights = run.join("checkpoints/step-000005/model.bpk");
    let text = ok(&[
        "reconstruct",
        "--ae",
        s(&weights),
        "--input",
        s(&fixture("clips/box.y4m")),
        "--out",
        s(&out_dir),
    ]);
    assert!(text.contains("PSNR") && text.contains("SSIM"), "{text}");

    // Exported on its own (as models/real is), the autoencoder reconstructs the same clip to
    // within f16 rounding, and clips are sampled at the frame rate its model.json records.
    let folder = work.join("exported");
    ok(&["export", "--ae", s(&run), "--fps", "8", "--out", s(&folder)]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("model.json")).unwrap()).unwrap();
    assert_eq!(config["fps"], 8.0);
    assert_eq!(config["autoencoder"]["name"], "tiny");
    let high = fixture("video/h264-high.mp4");
    let score = |ae: &Path, extra: &[&str]| -> (f64, String) {
        let mut args = vec![
            "reconstruct",
            "--ae",
            s(ae),
            "--input",
            s(&high),
            "--out",
            s(&out_dir),
            "--json",
        ];
        args.extend(extra);
        let o = common::cmdv(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let said = String::from_utf8_lossy(&o.stderr).into_owned();
        (v["psnr"].as_f64().unwrap(), said)
    };
    let (exported, said) = score(&folder, &[]);
    assert!(said.contains("took 16 frames at 8.000 fps"), "{said}");
    let (original, said) = score(&run, &["--fps", "8"]);
    assert!(said.contains("took 16 frames at 8.000 fps"), "{said}");
    assert!(
        (exported - original).abs() < 0.05,
        "{exported} vs {original}"
    );
    let (_, said) = score(&run, &[]);
    assert!(said.contains("took 16 frames at 29.970 fps"), "{said}");
    let err = fails(&["export", "--out", s(&folder)]);
    assert!(err.contains("--ae") || err.contains("--model"), "{err}");
    let err = fails(&["export", "--ae", s(&run), "--fps", "0", "--out", s(&folder)]);
    assert!(err.contains("--fps must be a positive number"), "{err}");

    // A blow-up (absurd learning rate) stops training and keeps the last good checkpoint.
    let mut blow = vec![
        "train-ae",
        "--out",
        s(&run),
        "--steps",
        "9",
        "--resume",
        "--lr",
        "1e30",
        "--warmup",
        "1",
        "--checkpoint-every",
        "1",
    ];
    blow.extend(common);
    let err = fails(&blow);
    assert!(
        err.contains("loss became") && err.contains("step-000005"),
        "{err}"
    );
    assert_eq!(latest(&run), "step-000005");
    ok(&resume); // still loads

    // Weights of another preset under this config: a clear error, not a panic.
    let foreign = work.join("foreign");
    std::fs::create_dir_all(foreign.join("checkpoints/step-000001")).unwrap();
    let ucf = std::fs::read_to_string(run.join("config.json"))
        .unwrap()
        .replace("\"tiny\"", "\"ucf64\"")
        .replace("\"patch\": 4", "\"patch\": 2");
    std::fs::write(foreign.join("config.json"), ucf).unwrap();
    std::fs::copy(&weights, foreign.join("checkpoints/step-000001/model.bpk")).unwrap();
    let state = weights.with_file_name("state.json");
    std::fs::copy(&state, foreign.join("checkpoints/step-000001/state.json")).unwrap();
    std::fs::write(foreign.join("latest"), "step-000001").unwrap();
    let err = fails(&[
        "reconstruct",
        "--ae",
        s(&foreign),
        "--input",
        s(&fixture("clips/box.y4m")),
        "--out",
        s(&out_dir),
    ]);
    assert!(
        err.contains("do not fit") && err.contains("model.bpk"),
        "{err}"
    );

    std::fs::remove_dir_all(work).unwrap();
    std::fs::remove_dir_all(data).unwrap();
}

#[test]
fn bad_inputs_give_one_clear_error() {
    let work = scratch("bad");
    let out = work.join("out");
    let clip = fixture("clips/box.y4m");

    let err = fails(&[
        "reconstruct",
        "--ae",
        "/no/such/run",
        "--input",
        s(&clip),
        "--out",
        s(&out),
    ]);
    assert!(err.contains("/no/such/run"), "{err}");

    let empty_run = work.join("empty-run");
    std::fs::create_dir_all(&empty_run).unwrap();
    let err = fails(&[
        "reconstruct",
        "--ae",
        s(&empty_run),
        "--input",
        s(&clip),
        "--out",
        s(&out),
    ]);
    assert!(err.contains("not a run folder with a checkpoint"), "{err}");

    let empty_data = work.join("no-clips");
    std::fs::create_dir_all(&empty_data).unwrap();
    let err = fails(&[
        "train-ae",
        "--data",
        s(&empty_data),
        "--out",
        s(&work.join("r")),
    ]);
    assert!(err.contains("no readable clips found"), "{err}");

    let corrupt = work.join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("broken.mp4"), [0u8; 300]).unwrap();
    // (extra train-ae arguments, what the error must say)
    let cases: [(&[&str], &str); 4] = [
        (&[], "broken.mp4"),
        (&["--preset", "mega"], "'mega'"),
        (&["--preset", "sd15-512"], "latent-mode"),
        (&["--lr=-1"], "--lr"),
    ];
    for (i, (extra, expected)) in cases.iter().enumerate() {
        let run = work.join(format!("r{i}"));
        let mut args = vec!["train-ae", "--data", s(&corrupt), "--out", s(&run)];
        args.extend_from_slice(extra);
        let err = fails(&args);
        assert!(err.contains(expected), "{extra:?}: {err}");
    }

    let err = fails(&["bench", "unet", "--height", "30"]);
    assert!(err.contains("--height") && err.contains("30x64"), "{err}");

    #[cfg(not(feature = "cuda"))]
    {
        let err = fails(&["bench", "ae", "--device", "cuda"]);
        assert!(err.contains("--features cuda"), "{err}");
    }
    std::fs::remove_dir_all(work).unwrap();
}

/// The wgpu path (WGSL shaders; on a machine without a GPU, Mesa's lavapipe Vulkan device)
/// reconstructs exactly like the CPU. Set CMD_SKIP_WGPU_TESTS=1 where no Vulkan driver exists.
#[test]
fn wgpu_matches_cpu() {
    if std::env::var_os("CMD_SKIP_WGPU_TESTS").is_some() {
        eprintln!("skipped: CMD_SKIP_WGPU_TESTS is set");
        return;
    }
    let data = data_dir("wgpu");
    let work = scratch("wgpu-run");
    let run = work.join("run");
    ok(&[
        "train-ae",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--steps",
        "2",
        "--batch",
        "1",
    ]);
    let score = |device: &str| -> serde_json::Value {
        let out = ok(&[
            "reconstruct",
            "--ae",
            s(&run),
            "--input",
            s(&fixture("clips/box.mp4")),
            "--out",
            s(&work.join(device)),
            "--json",
            "--device",
            device,
        ]);
        serde_json::from_str(out.trim()).unwrap()
    };
    let (cpu, gpu) = (score("cpu"), score("wgpu"));
    let (a, b) = (cpu["psnr"].as_f64().unwrap(), gpu["psnr"].as_f64().unwrap());
    assert!((a - b).abs() < 0.01, "cpu PSNR {a} vs wgpu PSNR {b}");
    let (a, b) = (cpu["ssim"].as_f64().unwrap(), gpu["ssim"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-3, "cpu SSIM {a} vs wgpu SSIM {b}");
    std::fs::remove_dir_all(work).unwrap();
    std::fs::remove_dir_all(data).unwrap();
}

/// A fresh `tiny` reconstructs the four real clips as their mean frames (its decoder starts by
/// copying the content frame), and 60 steps of training take the L1 loss well below that.
#[test]
fn training_on_real_clips_reduces_the_loss() {
    let data = scratch("learn-data");
    for clip in ["box", "carphone", "tree", "vtest"] {
        let name = format!("{clip}.y4m");
        std::fs::copy(fixture(&format!("clips/{name}")), data.join(&name)).unwrap();
    }
    let work = scratch("learn-run");
    let run = work.join("run");
    ok(&[
        "train-ae",
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--steps",
        "60",
        "--batch",
        "2",
    ]);
    let losses: Vec<f64> = std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 60);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let (start, end) = (mean(&losses[..3]), mean(&losses[50..]));
    assert!(start < 0.1, "a fresh model's L1 is {start:.4}");
    assert!(
        end < 0.9 * start,
        "L1 went from {start:.4} to {end:.4} only"
    );
    std::fs::remove_dir_all(work).unwrap();
    std::fs::remove_dir_all(data).unwrap();
}

/// Generation options are checked by the model crate's one rule and named by their flag.
#[test]
fn generation_options_are_named_by_their_flag() {
    let out = scratch("generation-options").join("x.gif");
    let base = ["generate", "--prompt", "a red circle", "--out", s(&out)];
    for (flag, want) in [
        ("--steps=0", "--steps must be from 1 to 1000, found 0"),
        (
            "--motion-steps=1001",
            "--motion-steps must be from 1 to 1000, found 1001",
        ),
        (
            "--guidance=nan",
            "--guidance must be a number of at least 0, found NaN",
        ),
        (
            "--motion-guidance=-1",
            "--motion-guidance must be a number of at least 0, found -1",
        ),
    ] {
        let err = fails(&[&base[..], &[flag]].concat());
        assert!(err.contains(want), "{flag}: {err}");
    }
    assert!(!out.exists());
}
