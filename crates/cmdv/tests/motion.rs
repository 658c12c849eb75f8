//! End-to-end tests of the motion model and the whole pipeline from the command line: the
//! teaching dataset, `train-motion` (with resume), `generate` (seeded), `animate`, `transfer`
//! on the bundled real clips, the adherence analyser, and the bad inputs.

mod common;

use std::path::{Path, PathBuf};

use common::{cmdv, fails, fixture, latest, metrics_steps, ok, s, scratch};

struct Runs {
    dir: PathBuf,
    data: PathBuf,
    ae: PathBuf,
    content: PathBuf,
}

/// Teaching clips, and one-step autoencoder and content runs on them.
fn runs(name: &str) -> Runs {
    let dir = scratch(name);
    let data = dir.join("data");
    ok(&[
        "make-teaching-data",
        "--out",
        s(&data),
        "--count",
        "6",
        "--seed",
        "4",
    ]);
    let (ae, content) = (dir.join("ae"), dir.join("content"));
    ok(&[
        "train-ae",
        "--data",
        s(&data),
        "--out",
        s(&ae),
        "--steps",
        "1",
        "--batch",
        "1",
    ]);
    ok(&[
        "train-content",
        "--ae",
        s(&ae),
        "--base",
        "tiny",
        "--data",
        s(&data),
        "--out",
        s(&content),
        "--steps",
        "1",
        "--batch",
        "1",
    ]);
    Runs {
        dir,
        data,
        ae,
        content,
    }
}

/// `train-motion` on the runs' data into `out`, with `extra` arguments.
fn motion_args<'a>(r: &'a Runs, out: &'a Path, steps: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train-motion",
        "--ae",
        s(&r.ae),
        "--content",
        s(&r.content),
        "--data",
        s(&r.data),
        "--out",
        s(out),
        "--steps",
        steps,
    ];
    args.extend(extra);
    args
}

/// Trains (batch 2, a checkpoint every step); returns what the run printed on stderr.
fn train_motion(r: &Runs, out: &Path, steps: &str, extra: &[&str]) -> String {
    let small = [&["--batch", "2", "--checkpoint-every", "1"], extra].concat();
    let args = motion_args(r, out, steps, &small);
    let res = cmdv(&args);
    let stderr = String::from_utf8_lossy(&res.stderr).to_string();
    assert!(res.status.success(), "cmdv {args:?} failed:\n{stderr}");
    stderr
}

#[test]
fn teaching_data_is_captioned_and_scores_full_adherence() {
    let dir = scratch("teaching");
    ok(&[
        "make-teaching-data",
        "--out",
        s(&dir),
        "--count",
        "12",
        "--held-out",
    ]);
    let csv = std::fs::read_to_string(dir.join("captions.csv")).unwrap();
    assert_eq!(csv.lines().count(), 13);
    assert!(
        csv.lines().nth(1).unwrap().starts_with("clip-00000.mp4,a"),
        "{csv}"
    );
    let out = ok(&["adherence", "--data", s(&dir), "--json"]);
    assert!(
        out.contains("\"clips\":12") && out.contains("\"both\":1.0000"),
        "{out}"
    );
    let err = fails(&["make-teaching-data", "--out", s(&dir), "--size", "40"]);
    assert!(err.contains("--size must be a multiple of 16"), "{err}");
    std::fs::write(
        dir.join("captions.csv"),
        "path,caption\nclip-00000.mp4,a dog\n",
    )
    .unwrap();
    let err = fails(&["adherence", "--data", s(&dir)]);
    assert!(
        err.contains("no caption for") || err.contains("not a teaching-dataset caption"),
        "{err}"
    );
}

#[test]
fn motion_training_generation_animation_and_transfer() {
    let r = runs("motion");
    let straight = r.dir.join("straight");
    train_motion(&r, &straight, "3", &[]);
    let resumed = r.dir.join("resumed");
    train_motion(&r, &resumed, "2", &[]);
    train_motion(&r, &resumed, "3", &["--resume"]);
    assert_eq!(metrics_steps(&resumed), [1, 2, 3]);
    assert_eq!(latest(&resumed), "step-000003");
    let losses = |run: &Path| {
        std::fs::read_to_string(run.join("metrics.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        losses(&resumed),
        losses(&straight),
        "resuming changes nothing"
    );
    // The run standardises the pooled text over its training captions.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(straight.join("config.json")).unwrap())
            .unwrap();
    let norm = &config["dit"]["text_norm"];
    let width = config["dit"]["text_dim"].as_u64().unwrap() as usize;
    assert_eq!(norm["mean"].as_array().unwrap().len(), width, "{config}");
    assert!(
        norm["scale"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.as_f64().unwrap() > 0.0),
        "{config}"
    );
    // Data parallel: the batch of 2 split over two (CPU) devices gives the same losses.
    let parallel = r.dir.join("parallel");
    train_motion(&r, &parallel, "3", &["--devices", "2"]);
    for (a, b) in losses(&straight).iter().zip(losses(&parallel)) {
        let (a, b): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1e-3), "{a} vs {b}");
    }
    // v prediction and prompt-token pooling on whole clips (each encoded once and kept):
    // resuming is still exact, the run stores both, and a resumed run cannot change them.
    let v = r.dir.join("v");
    let whole = [
        "--prediction",
        "v",
        "--text-pooling",
        "prompt-tokens",
        "--crop-min",
        "1",
    ];
    let stderr = train_motion(&r, &v, "3", &whole);
    assert!(stderr.contains("each is encoded once and kept"), "{stderr}");
    let v_resumed = r.dir.join("v-resumed");
    train_motion(&r, &v_resumed, "2", &whole);
    train_motion(&r, &v_resumed, "3", &["--crop-min", "1", "--resume"]);
    assert_eq!(losses(&v_resumed), losses(&v), "resuming changes nothing");
    assert_ne!(losses(&v), losses(&straight));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(v.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["dit"]["prediction"], "v_prediction", "{config}");
    assert_eq!(config["dit"]["text_pooling"], "prompt_tokens", "{config}");
    for (flag, value, message) in [
        ("--prediction", "epsilon", "was started with v prediction"),
        (
            "--text-pooling",
            "all-tokens",
            "was started with prompt-tokens pooling",
        ),
    ] {
        let err = fails(&motion_args(&r, &v, "4", &[flag, value, "--resume"]));
        assert!(err.contains(message), "{err}");
    }
    let from_v = r.dir.join("from-v.gif");
    ok(&[
        "generate",
        "--model",
        s(&v),
        "--prompt",
        "a red circle moving up",
        "--steps",
        "2",
        "--motion-steps",
        "2",
        "--out",
        s(&from_v),
    ]);
    assert_eq!(
        cmd_video::read_clip(&from_v, &cmd_video::Take::all())
            .unwrap()
            .len(),
        16
    );

    let generate = |out: &Path, seed: &str, prompt: &str| {
        let res = cmdv(&[
            "generate",
            "--model",
            s(&resumed),
            "--prompt",
            prompt,
            "--steps",
            "3",
            "--motion-steps",
            "3",
            "--seed",
            seed,
            "--out",
            s(out),
        ]);
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        String::from_utf8_lossy(&res.stderr).to_string()
    };
    let prompt = "a green square moving right on a black background";
    let (a, b, c) = (
        r.dir.join("a.gif"),
        r.dir.join("b.gif"),
        r.dir.join("c.gif"),
    );
    generate(&a, "1", prompt);
    generate(&b, "1", prompt);
    generate(&c, "2", prompt);
    let read = |p: &Path| std::fs::read(p).unwrap();
    assert_eq!(read(&a), read(&b), "the same seed gives the same clip");
    assert_ne!(read(&a), read(&c));
    let clip = cmd_video::read_clip(&a, &cmd_video::Take::all()).unwrap();
    assert_eq!((clip.len(), clip.width(), clip.height()), (16, 64, 64));
    let stderr = generate(&r.dir.join("long.gif"), "1", &"moving right ".repeat(60));
    assert!(
        stderr.contains("warning: the prompt is longer than 75 tokens"),
        "{stderr}"
    );

    // Prompt adherence over the 112 held-out teaching prompts (an untrained model: the
    // number is low, the count is what is checked).
    let saved = r.dir.join("held-out");
    let out = ok(&[
        "adherence",
        "--model",
        s(&resumed),
        "--steps",
        "1",
        "--motion-steps",
        "1",
        "--save",
        s(&saved),
        "--json",
    ]);
    assert!(out.contains("\"clips\":112"), "{out}");
    let rescored = ok(&["adherence", "--data", s(&saved), "--json"]);
    assert!(rescored.contains("\"clips\":112"), "{rescored}");

    // Image to video, from a picture of another size.
    let picture = r.dir.join("picture.png");
    image::RgbImage::from_pixel(100, 50, image::Rgb([200, 30, 30]))
        .save(&picture)
        .unwrap();
    let animated = r.dir.join("animated.gif");
    let res = cmdv(&[
        "animate",
        "--model",
        s(&resumed),
        "--image",
        s(&picture),
        "--prompt",
        "moving left",
        "--steps",
        "2",
        "--motion-steps",
        "2",
        "--out",
        s(&animated),
    ]);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{stderr}");
    assert!(
        stderr.contains("100x50 picture centre-cropped and resized to the model's 64x64"),
        "{stderr}"
    );
    assert_eq!(
        cmd_video::read_clip(&animated, &cmd_video::Take::all())
            .unwrap()
            .len(),
        16
    );

    // Motion transfer between two bundled real clips.
    let moved = r.dir.join("moved.mp4");
    ok(&[
        "transfer",
        "--ae",
        s(&r.ae),
        "--content",
        s(&fixture("clips/box.mp4")),
        "--motion",
        s(&fixture("clips/tree.y4m")),
        "--out",
        s(&moved),
    ]);
    assert_eq!(
        cmd_video::read_clip(&moved, &cmd_video::Take::all())
            .unwrap()
            .len(),
        16
    );

    // Bad inputs.
    let other = r.dir.join("other");
    let base = motion_args(&r, &other, "1", &[]);
    let err = fails(&[&base[..], &["--preset", "XXL"]].concat());
    assert!(
        err.contains("unknown preset 'XXL'") && err.contains("tiny, S, B, L, XL"),
        "{err}"
    );
    let err = fails(&[&base[..], &["--content-patch", "5"]].concat());
    assert!(err.contains("content patch size 5"), "{err}");
    let err = fails(&[
        "train-motion",
        "--ae",
        s(&r.ae),
        "--content",
        s(&r.ae),
        "--data",
        s(&r.data),
        "--out",
        s(&other),
    ]);
    assert!(err.contains("not a content-model run config"), "{err}");
    let err = fails(&[
        "generate",
        "--model",
        s(&r.content),
        "--prompt",
        "x",
        "--out",
        s(&a),
    ]);
    assert!(err.contains("not a motion-model run config"), "{err}");
    let err = fails(&[
        "generate",
        "--model",
        s(&resumed),
        "--prompt",
        "x",
        "--out",
        s(&r.dir.join("x.avi")),
    ]);
    assert!(err.contains("cannot write 'avi' clips"), "{err}");
    let missing = r.dir.join("missing.png");
    let err = fails(&[
        "animate",
        "--model",
        s(&resumed),
        "--image",
        s(&missing),
        "--prompt",
        "x",
        "--out",
        s(&a),
    ]);
    assert!(err.contains("missing.png"), "{err}");
    let short = r.dir.join("short");
    std::fs::create_dir_all(&short).unwrap();
    for i in 0..3 {
        image::RgbImage::new(64, 64)
            .save(short.join(format!("f{i}.png")))
            .unwrap();
    }
    let err = fails(&[
        "transfer",
        "--ae",
        s(&r.ae),
        "--content",
        s(&short),
        "--motion",
        s(&fixture("clips/tree.y4m")),
        "--out",
        s(&moved),
    ]);
    assert!(
        err.contains("needs 16 frames") && err.contains("found 3"),
        "{err}"
    );
}

#[test]
fn bench_generate_prints_every_stage() {
    let out = ok(&[
        "bench",
        "generate",
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--motion-steps",
        "1",
    ]);
    for row in [
        "| text | 1 |",
        "| content | 2 |",
        "| motion | 1 |",
        "| decode | 1 |",
    ] {
        assert!(out.contains(row), "{row}: {out}");
    }
    // The shipped model, one step each, with `extra` flags.
    let run_shipped = |extra: &[&str]| {
        let mut args = vec![
            "bench",
            "generate",
            "--preset",
            "teaching",
            "--steps",
            "1",
            "--motion-steps",
            "1",
        ];
        args.extend(extra);
        ok(&args)
    };
    let shipped = run_shipped(&[]);
    let half = run_shipped(&["--half"]);
    assert!(
        shipped.starts_with("the shipped teaching model"),
        "{shipped}"
    );
    assert!(shipped.contains("| content | 1 |"), "{shipped}");
    assert!(shipped.contains("device Cpu f32,"), "{shipped}");
    // --half computes in f16 (the teaching model's f16 weights stay f16).
    assert!(half.contains("device Cpu f16,"), "{half}");
    assert!(half.contains("| decode | 1 |"), "{half}");
    let err = fails(&["bench", "generate", "--preset", "ucf64"]);
    assert!(
        err.contains("takes teaching (the shipped model), tiny, sd15-512 or sd21-512x1024"),
        "{err}"
    );
}

/// `bench kernels` times each WGSL kernel against its tensor version; the kernels run on wgpu
/// (lavapipe where there is no GPU) and nowhere else.
#[test]
fn bench_kernels_compares_each_kernel_with_its_tensor_version() {
    for (device, kernels) in [("wgpu", "kernels on"), ("cpu", "kernels off")] {
        let out = ok(&[
            "bench", "kernels", "--preset", "teaching", "--device", device, "--iters", "1",
        ]);
        assert!(out.contains(kernels), "{out}");
        for row in [
            "| content frame [1, 16, 3, 32, 32] |",
            "| rgba8 + read back [16, 3, 32, 32] |",
        ] {
            assert!(out.contains(row), "{row}: {out}");
        }
    }
}

/// The shipped teaching model is the default of `generate`: the newcomer's command works with
/// no other setup.
#[test]
fn generate_uses_the_shipped_model_by_default() {
    let dir = scratch("shipped");
    let clip = dir.join("clip.gif");
    ok(&[
        "generate",
        "--prompt",
        "a green square moving right on a black background",
        "--steps",
        "4",
        "--motion-steps",
        "4",
        "--out",
        s(&clip),
    ]);
    let clip = cmd_video::read_clip(&clip, &cmd_video::Take::all()).unwrap();
    assert_eq!((clip.len(), clip.width(), clip.height()), (16, 32, 32));
    let frames: std::collections::HashSet<_> =
        clip.frames.iter().map(|f| f.as_raw().clone()).collect();
    assert!(frames.len() > 1, "the frames differ");
}

/// The shipped model makes the clip it made before the training code moved into its own crate
/// (`tests/fixtures/shipped/README.md`): the same frames for the same prompt and seed, up to
/// one level of rounding where another CPU sums in another order.
#[test]
fn the_shipped_model_makes_the_same_clip_as_before() {
    let out = scratch("shipped-golden").join("clip");
    ok(&[
        "generate",
        "--prompt",
        "a green square moving right on a black background",
        "--steps",
        "4",
        "--motion-steps",
        "4",
        "--seed",
        "3",
        "--out",
        s(&out),
    ]);
    let expected = fixture("shipped/teaching-seed3");
    let read = |dir: &Path| cmd_video::read_clip(dir, &cmd_video::Take::all()).unwrap();
    let (got, want) = (read(&out), read(&expected));
    assert_eq!(got.len(), want.len());
    let mut worst = 0;
    for (a, b) in got.frames.iter().zip(&want.frames) {
        for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
            worst = worst.max(x.abs_diff(*y));
        }
    }
    assert!(worst <= 1, "frames differ by up to {worst} levels");
}
