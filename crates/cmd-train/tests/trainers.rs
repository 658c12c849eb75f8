//! The guarantees of the one training loop, tested once for each trainer, in process: a
//! resumed run computes exactly what an uninterrupted one does, and a blow-up (an absurd
//! learning rate) stops the run with an error naming the kept checkpoint, which loads and
//! holds finite weights only.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use cmd_train::content::load_run;
use cmd_train::motion::load_pipeline;
use cmd_train::run::load_autoencoder;
use cmd_train::tensors::to_vec;
use cmd_train::{
    AeTrainConfig, AeTrainer, ContentTrainConfig, ContentTrainer, DataConfig, DataParallel,
    DiffusionConfig, FitConfig, MotionTrainConfig, MotionTrainer, Run, Summary, TrainError,
    TrainEvent,
};

/// Held by each training test: runs in one process share rayon's thread pool, whose float
/// reductions split work by what the other threads are doing, and Adam's first steps magnify
/// such last-bit differences. One run at a time computes the same numbers every time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cmd-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Two real clips (see `tests/fixtures/clips/README.md`) with captions.
fn data(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clips");
    for clip in ["box.y4m", "tree.mp4"] {
        std::fs::copy(fixtures.join(clip), data.join(clip)).unwrap();
    }
    std::fs::write(
        data.join("captions.csv"),
        "path,caption\nbox.y4m,a box on a table\ntree.mp4,a tree in the wind\n",
    )
    .unwrap();
    data
}

/// The CPU, for a batch of `batch` clips.
fn cpu(batch: usize) -> DataParallel {
    DataParallel::new(vec![Device::flex()], false, batch).unwrap()
}

/// A loop of `steps` steps of one clip, a checkpoint every step.
fn fit(out: &Path, steps: usize, lr: f64, resume: bool) -> FitConfig {
    FitConfig {
        resume,
        checkpoint_every: 1,
        ..FitConfig::new(out, steps, 1, lr)
    }
}

/// The loss column of a run's metrics log.
fn losses(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect()
}

/// Copies a run folder.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Whether every parameter of `module` is finite.
fn finite(module: &impl Module) -> bool {
    struct Check(bool);
    impl ModuleVisitor for Check {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0 &= to_vec(param.val()).unwrap().iter().all(|v| v.is_finite());
        }
    }
    let mut check = Check(true);
    module.visit(&mut check);
    check.0
}

/// Runs `train` twice: straight to 4 steps, and to 2 steps then resumed to 4; both must log
/// the same losses. Returns the resumed run and the events of its second sitting.
fn straight_and_resumed(
    dir: &Path,
    train: impl Fn(FitConfig, &mut dyn FnMut(TrainEvent)) -> Result<Summary, TrainError>,
) -> (PathBuf, Vec<TrainEvent>) {
    let (straight, resumed) = (dir.join("straight"), dir.join("resumed"));
    train(fit(&straight, 4, 1e-3, false), &mut |_| {}).unwrap();
    train(fit(&resumed, 2, 1e-3, false), &mut |_| {}).unwrap();
    let mut events = Vec::new();
    let summary = train(fit(&resumed, 4, 1e-3, true), &mut |e| events.push(e)).unwrap();
    assert_eq!((summary.steps, summary.trained), (4, 2));
    assert_eq!(
        losses(&resumed),
        losses(&straight),
        "resuming changes nothing"
    );
    assert_eq!(
        Run::new(&resumed).latest(),
        Some(resumed.join("checkpoints/step-000004"))
    );
    (resumed, events)
}

/// Resumes a copy of `run` at an absurd learning rate: the run must stop with a non-finite
/// loss, name the checkpoint kept, and leave `latest` pointing at it. Returns the copy.
fn blow_up(
    run: &Path,
    train: impl Fn(FitConfig, &mut dyn FnMut(TrainEvent)) -> Result<Summary, TrainError>,
) -> PathBuf {
    let blown = run.with_file_name("blown");
    copy_dir(run, &blown);
    let err = train(fit(&blown, 12, 1e30, true), &mut |_| {}).unwrap_err();
    let TrainError::NonFinite { kept, step, .. } = &err else {
        panic!("expected a blow-up, got: {err}");
    };
    let latest = Run::new(&blown).latest();
    assert!(latest.is_some() && *kept == latest, "{err}");
    assert!(*step > 4, "{err}");
    assert!(err.to_string().contains("loss became"), "{err}");
    blown
}

/// A one-step autoencoder run on the clips of `data`.
fn autoencoder(dir: &Path, data: &Path) -> PathBuf {
    let run = dir.join("ae");
    let config = AeTrainConfig::new("tiny", DataConfig::new(data), fit(&run, 1, 2e-3, false));
    AeTrainer::new(config)
        .unwrap()
        .train(&cpu(1), &mut |_| {})
        .unwrap();
    run
}

#[test]
fn autoencoder_runs_resume_exactly_and_survive_a_blow_up() {
    let _one = one_at_a_time();
    let dir = scratch("ae");
    let data = data(&dir);
    let train = |fit: FitConfig, events: &mut dyn FnMut(TrainEvent)| {
        // A warm-up longer than the run: the learning rate of a step then does not depend on
        // the run's length, so a 2-step run is the first half of a 4-step one.
        let config = AeTrainConfig {
            warmup: 10,
            ..AeTrainConfig::new("tiny", DataConfig::new(&data), fit)
        };
        AeTrainer::new(config)?.train(&cpu(1), events)
    };
    let (resumed, events) = straight_and_resumed(&dir, train);
    // The second sitting reports where it starts, each step and each checkpoint.
    assert!(matches!(
        events
            .iter()
            .find(|e| matches!(e, TrainEvent::Started { .. })),
        Some(TrainEvent::Started {
            step: 2,
            steps: 4,
            ..
        })
    ));
    let steps: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Step { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [3, 4]);
    let checkpoints = events
        .iter()
        .filter(|e| matches!(e, TrainEvent::Checkpoint { .. }))
        .count();
    assert_eq!(checkpoints, 2);

    let blown = blow_up(&resumed, train);
    let kept = load_autoencoder(&blown, &Device::flex()).unwrap();
    assert!(finite(&kept));
}

/// Every float parameter of `module`, in visiting order.
fn params(module: &impl Module) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.extend(to_vec(param.val()).unwrap());
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
}

/// The largest absolute difference between two parameter lists of one model.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn an_autoencoder_run_can_start_from_another_autoencoder() {
    let _one = one_at_a_time();
    let dir = scratch("ae-init");
    let data = data(&dir);
    let start = autoencoder(&dir, &data);
    let from_start = params(&load_autoencoder(&start, &Device::flex()).unwrap());
    // One step at a learning rate too small to move anything: the run's weights are the ones
    // it started from, and a fresh run's (another seed) are not.
    let train = |out: &str, init: Option<PathBuf>| {
        let run = dir.join(out);
        let fit = FitConfig {
            seed: 7,
            ..fit(&run, 1, 1e-20, false)
        };
        let config = AeTrainConfig {
            init,
            ..AeTrainConfig::new("tiny", DataConfig::new(&data), fit)
        };
        AeTrainer::new(config)?.train(&cpu(1), &mut |_| {})?;
        Ok::<_, TrainError>(params(&load_autoencoder(&run, &Device::flex()).unwrap()))
    };
    let initialised = train("initialised", Some(start.clone())).unwrap();
    assert!(max_diff(&initialised, &from_start) < 1e-6);
    let fresh = train("fresh", None).unwrap();
    assert!(max_diff(&fresh, &from_start) > 1e-3);

    // Another preset's autoencoder is refused, naming the file and both presets.
    let config = AeTrainConfig {
        init: Some(start.clone()),
        ..AeTrainConfig::new(
            "real64",
            DataConfig::new(&data),
            fit(&dir.join("other"), 1, 1e-3, false),
        )
    };
    let err = AeTrainer::new(config)
        .unwrap()
        .train(&cpu(1), &mut |_| {})
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(
        err,
        TrainError::Setting {
            setting: cmd_train::Setting::Init,
            ..
        }
    ));
    assert!(
        message.contains(&start.display().to_string())
            && message.contains("'tiny'")
            && message.contains("'real64'"),
        "{message}"
    );
    // A resumed run keeps its own weights.
    let config = AeTrainConfig {
        init: Some(start.clone()),
        ..AeTrainConfig::new("tiny", DataConfig::new(&data), fit(&start, 2, 1e-3, true))
    };
    let err = AeTrainer::new(config).err().unwrap();
    assert!(err.to_string().starts_with("init "), "{err}");
}

#[test]
fn content_runs_resume_exactly_and_survive_a_blow_up() {
    let _one = one_at_a_time();
    let dir = scratch("content");
    let data = data(&dir);
    let ae = autoencoder(&dir, &data);
    let train = |fit: FitConfig, events: &mut dyn FnMut(TrainEvent)| {
        let config = ContentTrainConfig {
            ae: ae.clone(),
            base: "tiny".into(),
            prediction: None,
            train: DiffusionConfig::new(DataConfig::new(&data), fit),
        };
        ContentTrainer::new(config)?.train(&cpu(1), events)
    };
    let (resumed, _) = straight_and_resumed(&dir, train);
    let blown = blow_up(&resumed, train);
    let (_, kept) = load_run(&blown, &Device::flex()).unwrap();
    assert!(finite(&kept.unet));
}

#[test]
fn motion_runs_resume_exactly_and_survive_a_blow_up() {
    let _one = one_at_a_time();
    let dir = scratch("motion");
    let data = data(&dir);
    let ae = autoencoder(&dir, &data);
    let content = dir.join("content");
    let config = ContentTrainConfig {
        ae: ae.clone(),
        base: "tiny".into(),
        prediction: None,
        train: DiffusionConfig::new(DataConfig::new(&data), fit(&content, 1, 1e-3, false)),
    };
    ContentTrainer::new(config)
        .unwrap()
        .train(&cpu(1), &mut |_| {})
        .unwrap();
    let train = |fit: FitConfig, events: &mut dyn FnMut(TrainEvent)| {
        let config = MotionTrainConfig {
            ae: ae.clone(),
            content: content.clone(),
            preset: "tiny".into(),
            content_patch: 4,
            prediction: None,
            text_pooling: None,
            train: DiffusionConfig::new(DataConfig::new(&data), fit),
        };
        MotionTrainer::new(config)?.train(&cpu(1), events)
    };
    let (resumed, _) = straight_and_resumed(&dir, train);
    let blown = blow_up(&resumed, train);
    let kept = load_pipeline(&blown, &Device::flex()).unwrap();
    assert!(finite(&kept.dit));
}

#[test]
fn settings_are_checked_and_named() {
    let dir = scratch("settings");
    let data = DataConfig::new(dir.join("data"));
    let ae = |fit: FitConfig| AeTrainer::new(AeTrainConfig::new("tiny", data.clone(), fit));
    let err = ae(FitConfig::new(&dir, 0, 1, 1e-3)).err().unwrap();
    assert_eq!(err.to_string(), "steps must be positive");
    let err = ae(FitConfig::new(&dir, 1, 1, f64::NAN)).err().unwrap();
    assert_eq!(err.to_string(), "lr must be a positive number, found NaN");
    let err = AeTrainer::new(AeTrainConfig {
        beta1: 1.0,
        ..AeTrainConfig::new("tiny", data.clone(), FitConfig::new(&dir, 1, 1, 1e-3))
    })
    .err()
    .unwrap();
    assert!(matches!(
        err,
        TrainError::Setting {
            setting: cmd_train::Setting::Beta1,
            ..
        }
    ));
    let diffusion = DiffusionConfig {
        empty_prompt: 1.5,
        ..DiffusionConfig::new(data.clone(), FitConfig::new(&dir, 1, 1, 1e-3))
    };
    let err = ContentTrainer::new(ContentTrainConfig {
        ae: dir.clone(),
        base: "tiny".into(),
        prediction: None,
        train: diffusion,
    })
    .err()
    .unwrap();
    assert_eq!(err.to_string(), "empty prompt must be in [0, 1], found 1.5");
    // A run folder without data: the folder is named.
    let trainer = ae(FitConfig::new(dir.join("run"), 1, 1, 1e-3)).unwrap();
    let err = trainer.train(&cpu(1), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("data"), "{err}");
}
