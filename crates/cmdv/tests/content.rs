//! End-to-end tests of the content-frame model commands: `sample-content` on a Stable Diffusion
//! folder, `train-content` from the `tiny` preset (pixel mode) and from a Stable Diffusion
//! folder (latent mode), resuming, sampling a run, and the bad inputs.

mod common;

use std::path::{Path, PathBuf};

use common::{cmdv, data_dir, fails, fixture, latest, metrics_steps, ok, s, scratch};

fn sd_tiny() -> PathBuf {
    fixture("reference/sd_tiny")
}

/// A data folder of two real clips with a `path,caption` CSV.
fn captioned(name: &str) -> PathBuf {
    let dir = data_dir(name);
    std::fs::write(
        dir.join("captions.csv"),
        "path,caption\nbox.y4m,a box on a table\ntree.mp4,\"a tree, in the wind\"\n",
    )
    .unwrap();
    dir
}

fn png_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap();
    (img.width(), img.height())
}

/// Trains an autoencoder run for one step (`tiny`, or `tiny-latent` on sd_tiny's VAE).
fn autoencoder(data: &Path, dir: &Path, latent: bool) -> PathBuf {
    let run = dir.join(if latent { "ae-latent" } else { "ae" });
    let mut args = vec![
        "train-ae",
        "--data",
        s(data),
        "--out",
        s(&run),
        "--steps",
        "1",
    ];
    let vae = sd_tiny();
    if latent {
        args.extend(["--preset", "tiny-latent", "--vae", s(&vae)]);
    }
    ok(&args);
    run
}

#[test]
fn sample_content_from_a_stable_diffusion_folder() {
    let dir = scratch("sample-sd");
    let sd = sd_tiny();
    let out = |name: &str| dir.join(name);
    let base = [
        "sample-content",
        "--model",
        s(&sd),
        "--prompt",
        "a red circle",
        "--steps",
        "4",
    ];
    let run = |name: &str, extra: &[&str]| {
        let mut args = base.to_vec();
        let path = out(name);
        args.extend(["--out", s(&path)]);
        args.extend(extra);
        ok(&args);
        std::fs::read(path).unwrap()
    };
    let a = run("a.png", &["--seed", "1"]);
    assert_eq!(
        png_size(&out("a.png")),
        (16, 16),
        "the UNet's sample_size in pixels"
    );
    assert_eq!(
        run("b.png", &["--seed", "1"]),
        a,
        "a seed gives the same image"
    );
    assert_ne!(
        run("c.png", &["--seed", "2"]),
        a,
        "another seed, another image"
    );
    run(
        "d.png",
        &["--sampler", "dpm-solver", "--height", "32", "--width", "48"],
    );
    assert_eq!(png_size(&out("d.png")), (48, 32));
    run("half.png", &["--seed", "1", "--half"]);

    let long = "a red circle moving left ".repeat(20);
    let o = out("long.png");
    let res = cmdv(&[
        "sample-content",
        "--model",
        s(&sd),
        "--prompt",
        &long,
        "--steps",
        "2",
        "--out",
        s(&o),
    ]);
    assert!(res.status.success());
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("warning: the prompt is longer than 75 tokens"),
        "{stderr}"
    );

    let err = fails(&[&base[..], &["--height", "24", "--out", s(&o)]].concat());
    assert!(
        err.contains("height 24: must be a positive multiple of 16"),
        "{err}"
    );
    let err = fails(&[
        "sample-content",
        "--model",
        s(&sd),
        "--prompt",
        "x",
        "--steps",
        "0",
        "--out",
        s(&o),
    ]);
    assert!(err.contains("--steps must be positive"), "{err}");
    // A folder whose UNet weights are broken: the file is named.
    let broken = dir.join("broken");
    copy_dir(&sd, &broken);
    std::fs::write(
        broken.join("unet/diffusion_pytorch_model.safetensors"),
        b"not weights",
    )
    .unwrap();
    let err = fails(&[
        "sample-content",
        "--model",
        s(&broken),
        "--prompt",
        "x",
        "--out",
        s(&o),
    ]);
    assert!(
        err.contains("unet/diffusion_pytorch_model.safetensors: not a valid safetensors file"),
        "{err}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn loss_rows(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
        .collect()
}

/// Pixel mode from the `tiny` preset: an interrupted and resumed run takes exactly the steps an
/// uninterrupted one takes, and the run samples content frames.
#[test]
fn train_content_resume_and_sample() {
    let dir = scratch("content-tiny");
    let data = captioned("content-tiny-data");
    let ae = autoencoder(&data, &dir, false);
    let train_args = |out: &Path, steps: &str, batch: &str, extra: &[&str]| -> Vec<String> {
        let mut args = vec![
            "train-content",
            "--ae",
            s(&ae),
            "--base",
            "tiny",
            "--data",
            s(&data),
            "--out",
            s(out),
            "--steps",
            steps,
            "--batch",
            batch,
        ];
        for (flag, default) in [("--checkpoint-every", "2"), ("--lr", "1e-3")] {
            if !extra.contains(&flag) {
                args.extend([flag, default]);
            }
        }
        args.extend(extra);
        args.into_iter().map(String::from).collect()
    };
    let train = |out: &Path, steps: &str, batch: &str, extra: &[&str]| {
        let args = train_args(out, steps, batch, extra);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    };
    let straight = dir.join("straight");
    train(&straight, "4", "1", &[]);
    let resumed = dir.join("resumed");
    train(&resumed, "2", "1", &[]);
    train(&resumed, "4", "1", &["--resume"]);
    assert_eq!(metrics_steps(&resumed), [1, 2, 3, 4]);
    assert_eq!(latest(&resumed), "step-000004");
    assert_eq!(
        loss_rows(&resumed),
        loss_rows(&straight),
        "resuming changes nothing"
    );

    let png = dir.join("frame.png");
    ok(&[
        "sample-content",
        "--model",
        s(&resumed),
        "--prompt",
        "a box on a table",
        "--steps",
        "3",
        "--out",
        s(&png),
    ]);
    assert_eq!(
        png_size(&png),
        (64, 64),
        "the autoencoder's content-frame size"
    );
    let err = fails(&[
        "sample-content",
        "--model",
        s(&resumed),
        "--prompt",
        "x",
        "--height",
        "64",
        "--out",
        s(&png),
    ]);
    assert!(err.contains("--height/--width"), "{err}");

    // Data parallel: a batch split over two (CPU) devices takes the steps one device takes.
    let one = dir.join("one-device");
    let two = dir.join("two-devices");
    train(&one, "2", "2", &[]);
    train(&two, "2", "2", &["--devices", "2"]);
    let losses = |run: &Path| -> Vec<f64> {
        loss_rows(run)
            .iter()
            .map(|row| row.split(',').nth(1).unwrap().parse().unwrap())
            .collect()
    };
    let (a, b) = (losses(&one), losses(&two));
    assert_eq!(a.len(), 2);
    for (a, b) in a.iter().zip(&b) {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1e-3), "{a} vs {b}");
    }

    // Bad inputs.
    let common = ["--ae", s(&ae), "--data", s(&data), "--steps", "1"];
    let other = dir.join("other");
    fn tc<'a>(common: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [&["train-content"][..], common, extra].concat()
    }
    let sd = sd_tiny();
    let err = fails(&tc(&common, &["--base", "nope", "--out", s(&other)]));
    assert!(
        err.contains("--base")
            && err.contains("neither a preset (tiny, teaching), a Stable Diffusion folder"),
        "{err}"
    );
    let err = fails(&tc(&common, &["--base", s(&sd), "--out", s(&other)]));
    assert!(
        err.contains("its UNet takes 4 channels") && err.contains("3 (pixel mode)"),
        "{err}"
    );
    let err = fails(&tc(&common, &["--base", "tiny", "--out", s(&straight)]));
    assert!(err.contains("already holds a checkpoint"), "{err}");
    let err = fails(&tc(
        &common,
        &["--base", "tiny", "--out", s(&other), "--resume"],
    ));
    assert!(
        err.contains("config.json: cannot read the run config"),
        "{err}"
    );
    let err = fails(&tc(
        &common,
        &["--base", "tiny", "--out", s(&other), "--ema", "1.5"],
    ));
    assert!(err.contains("--ema must be in [0, 1)"), "{err}");
    let err = fails(&tc(
        &common,
        &["--base", "tiny", "--out", s(&other), "--empty-prompt=-1"],
    ));
    assert!(err.contains("--empty-prompt must be in [0, 1]"), "{err}");
    let err = fails(&tc(
        &common,
        &["--base", "tiny", "--out", s(&other), "--crop-min", "0.5"],
    ));
    assert!(err.contains("--crop-min must be in [0.8, 1]"), "{err}");
    let err = fails(&tc(
        &common,
        &[
            "--base",
            "tiny",
            "--out",
            s(&other),
            "--batch",
            "1",
            "--devices",
            "2",
        ],
    ));
    assert!(
        err.contains("--batch 1 is smaller than the 2 devices"),
        "{err}"
    );
    let err = fails(&tc(
        &common,
        &[
            "--base",
            "tiny",
            "--out",
            s(&resumed),
            "--resume",
            "--prediction",
            "v",
        ],
    ));
    assert!(
        err.contains("--prediction cannot change on resume: the run")
            && err.contains("with epsilon prediction"),
        "{err}"
    );
    let err = fails(&tc(
        &common,
        &[
            "--base",
            "tiny",
            "--out",
            s(&other),
            "--captions",
            "/nonexistent.csv",
        ],
    ));
    assert!(
        err.contains("/nonexistent.csv: cannot read the captions CSV"),
        "{err}"
    );
    std::fs::remove_file(data.join("captions.csv")).unwrap();
    let err = fails(&tc(&common, &["--base", "tiny", "--out", s(&other)]));
    assert!(err.contains("box.y4m: no caption"), "{err}");
    let err = fails(&[
        "sample-content",
        "--model",
        s(&ae),
        "--prompt",
        "x",
        "--out",
        s(&png),
    ]);
    assert!(err.contains("not a content-model run config"), "{err}");
}

/// Latent mode: an autoencoder on sd_tiny's VAE latents, a content UNet fine-tuned from sd_tiny,
/// and content frames decoded by its VAE.
#[test]
fn latent_mode_fine_tunes_a_stable_diffusion_folder() {
    let dir = scratch("content-latent");
    let data = captioned("content-latent-data");
    let ae = autoencoder(&data, &dir, true);
    let sd = sd_tiny();
    let run = dir.join("content");
    ok(&[
        "train-content",
        "--ae",
        s(&ae),
        "--base",
        s(&sd),
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--steps",
        "2",
        "--batch",
        "2",
    ]);
    assert_eq!(metrics_steps(&run), [1, 2]);
    let png = dir.join("frame.png");
    ok(&[
        "sample-content",
        "--model",
        s(&run),
        "--prompt",
        "a box",
        "--steps",
        "3",
        "--out",
        s(&png),
    ]);
    assert_eq!(png_size(&png), (64, 64), "32x32 latents through a 2x VAE");

    let err = fails(&[
        "train-content",
        "--ae",
        s(&ae),
        "--base",
        "tiny",
        "--data",
        s(&data),
        "--out",
        s(&dir.join("x")),
    ]);
    assert!(
        err.contains("a preset has no Stable Diffusion VAE"),
        "{err}"
    );
    let err = fails(&[
        "train-ae",
        "--data",
        s(&data),
        "--preset",
        "tiny-latent",
        "--out",
        s(&dir.join("y")),
    ]);
    assert!(
        err.contains("--vae is needed: the latent-mode preset"),
        "{err}"
    );
    let err = fails(&[
        "train-ae",
        "--data",
        s(&data),
        "--vae",
        s(&sd),
        "--out",
        s(&dir.join("z")),
    ]);
    assert!(err.contains("a VAE is for latent presets"), "{err}");
    let other = sd.join("unet");
    let err = fails(&[
        "train-ae",
        "--data",
        s(&data),
        "--preset",
        "tiny-latent",
        "--vae",
        s(&other),
        "--out",
        s(&ae),
        "--steps",
        "2",
        "--resume",
    ]);
    assert!(
        err.contains("neither a Stable Diffusion folder (no vae/config.json)"),
        "{err}"
    );
}

/// `--model`, `--base` and `--vae` take a single-file SD 1.x/2.x checkpoint wherever they take a
/// folder; pickles are refused.
#[test]
fn single_file_checkpoints_work_wherever_a_folder_does() {
    let dir = scratch("single-file");
    let sd1 = fixture("reference/single_file/sd1.safetensors");
    let sd2 = fixture("reference/single_file/sd2.safetensors");
    let sample = |model: &Path, png: &Path, extra: &[&str]| -> String {
        let mut args = vec![
            "sample-content",
            "--model",
            s(model),
            "--prompt",
            "a red circle",
            "--steps",
            "2",
            "--height",
            "32",
            "--width",
            "32",
            "--out",
            s(png),
        ];
        args.extend(extra);
        let out = cmdv(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?}:\n{stderr}");
        assert_eq!(png_size(png), (32, 32));
        stderr
    };
    let err = sample(&sd1, &dir.join("sd1.png"), &[]);
    assert!(err.contains("a single-file SD 1.x checkpoint"), "{err}");
    let err = sample(&sd2, &dir.join("sd2.png"), &[]);
    assert!(
        err.contains("a single-file SD 2.x checkpoint, predicting v at 768 px"),
        "{err}"
    );
    let err = sample(&sd2, &dir.join("sd2-eps.png"), &["--prediction", "epsilon"]);
    assert!(!err.contains("predicting v"), "{err}");
    assert!(
        mean_abs_diff(&dir.join("sd2.png"), &dir.join("sd2-eps.png")) > 0.0,
        "--prediction changes the sampler"
    );

    let data = captioned("single-file-data");
    let ae = dir.join("ae");
    ok(&[
        "train-ae",
        "--data",
        s(&data),
        "--out",
        s(&ae),
        "--steps",
        "1",
        "--preset",
        "tiny-latent",
        "--vae",
        s(&sd1),
    ]);
    let run = dir.join("content");
    ok(&[
        "train-content",
        "--ae",
        s(&ae),
        "--base",
        s(&sd1),
        "--data",
        s(&data),
        "--out",
        s(&run),
        "--steps",
        "1",
        "--batch",
        "1",
    ]);
    let png = dir.join("run.png");
    ok(&[
        "sample-content",
        "--model",
        s(&run),
        "--prompt",
        "a box",
        "--steps",
        "2",
        "--out",
        s(&png),
    ]);

    let ckpt = dir.join("v1-5-pruned-emaonly.ckpt");
    std::fs::write(&ckpt, b"PK\x03\x04 not read").unwrap();
    let err = fails(&[
        "sample-content",
        "--model",
        s(&ckpt),
        "--prompt",
        "x",
        "--out",
        s(&png),
    ]);
    assert!(
        err.contains("a PyTorch pickle file, which is refused: unpickling it can run"),
        "{err}"
    );
}

/// Mean absolute difference of two PNGs of one size, in `[0, 1]`.
fn mean_abs_diff(a: &Path, b: &Path) -> f64 {
    let (a, b) = (
        image::open(a).unwrap().to_rgb8(),
        image::open(b).unwrap().to_rgb8(),
    );
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum();
    sum / a.as_raw().len() as f64 / 255.0
}

/// Training and sampling agree: a content model trained on one clip (v-prediction, no EMA, no
/// augmentation) samples that clip's content frame, and it gets closer as it trains.
#[test]
fn a_model_trained_on_one_clip_samples_its_content_frame() {
    let dir = scratch("content-overfit");
    let data = dir.join("data");
    let (ae, rec) = (dir.join("ae"), dir.join("rec"));
    ok(&[
        "make-teaching-data",
        "--out",
        s(&data),
        "--count",
        "1",
        "--size",
        "32",
        "--seed",
        "3",
    ]);
    let caption = "a green triangle moving right on a brown background";
    let captions = std::fs::read_to_string(data.join("captions.csv")).unwrap();
    assert!(captions.contains(caption), "{captions}");
    ok(&[
        "train-ae",
        "--data",
        s(&data),
        "--preset",
        "teaching",
        "--out",
        s(&ae),
        "--steps",
        "1",
    ]);
    let clip = data.join("clip-00000.mp4");
    ok(&[
        "reconstruct",
        "--ae",
        s(&ae),
        "--input",
        s(&clip),
        "--out",
        s(&rec),
    ]);
    let run = dir.join("content");
    let error_after = |steps: &str| {
        let mut args = vec![
            "train-content",
            "--ae",
            s(&ae),
            "--base",
            "teaching",
            "--prediction",
            "v",
            "--data",
            s(&data),
            "--out",
            s(&run),
            "--steps",
            steps,
            "--batch",
            "4",
            "--lr",
            "1e-3",
            "--ema",
            "0",
            "--empty-prompt",
            "0",
            "--crop-min",
            "1",
        ];
        if run.exists() {
            args.push("--resume");
        }
        ok(&args);
        let png = dir.join(format!("sample-{steps}.png"));
        ok(&[
            "sample-content",
            "--model",
            s(&run),
            "--prompt",
            caption,
            "--steps",
            "20",
            "--guidance",
            "1",
            "--out",
            s(&png),
        ]);
        mean_abs_diff(&png, &rec.join("content.png"))
    };
    let early = error_after("30");
    let late = error_after("300");
    assert!(late < 0.05, "mean error {late:.3} after 300 steps");
    assert!(
        late < early * 0.7,
        "error {early:.3} after 30 steps, {late:.3} after 300"
    );
}

/// A model whose weights are NaN (what a blown-up run used to keep) stops sampling with a clear
/// error instead of writing a black picture.
#[test]
fn broken_weights_stop_sampling_with_a_clear_error() {
    let dir = scratch("nan-weights");
    let sd = dir.join("sd");
    copy_dir(&sd_tiny(), &sd);
    let unet = sd.join("unet/diffusion_pytorch_model.safetensors");
    let mut bytes = std::fs::read(&unet).unwrap();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for value in bytes[header..].chunks_exact_mut(4) {
        value.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(&unet, bytes).unwrap();
    let png = dir.join("x.png");
    let err = fails(&[
        "sample-content",
        "--model",
        s(&sd),
        "--prompt",
        "x",
        "--steps",
        "2",
        "--out",
        s(&png),
    ]);
    assert!(
        err.contains("the model produced NaN in its image latents"),
        "{err}"
    );
    assert!(!png.exists());
}
