//! Run folders and checkpoints.
//!
//! ```text
//! RUN/config.json                 autoencoder sizes (AutoencoderConfig)
//! RUN/metrics.csv                 step, loss, learning rate, seconds
//! RUN/latest                      name of the newest complete checkpoint
//! RUN/checkpoints/step-000300/    model.bpk, optim.bpk, state.json
//! ```
//!
//! Content-model runs keep `unet.bpk` and `ema.bpk` in place of `model.bpk` (see the
//! `content` module), motion-model runs `dit.bpk` and `ema.bpk` (see `motion`).
//!
//! A checkpoint folder is complete before `latest` points at it (and `latest` is replaced
//! atomically), so an interrupted save never loses the previous checkpoint.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use cmd_model::schedulers::Prediction;
use cmd_model::{Autoencoder, AutoencoderConfig};
use cmd_video::dataset::LoaderState;
use cmd_video::{replace_atomic, write_bytes_atomic};
use serde::{Deserialize, Serialize};

use crate::error::{Result, Setting, TrainError};
use crate::sd_files;

/// How many checkpoints a run keeps.
const KEEP: usize = 2;

/// Progress of a training run, saved with every checkpoint.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TrainState {
    /// Optimisation steps done.
    pub step: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Loss of the last step.
    pub loss: f64,
    /// Where the run is in its data (absent in checkpoints of older versions).
    #[serde(default)]
    pub data: Option<LoaderState>,
}

impl TrainState {
    /// A new run's state.
    pub fn new(seed: u64) -> Self {
        Self {
            step: 0,
            seed,
            loss: f64::NAN,
            data: None,
        }
    }

    /// Where the data loader starts: where the checkpoint says, or (a checkpoint of an older
    /// version) after `batch` examples per step done.
    pub fn data(&self, batch: usize) -> LoaderState {
        self.data.clone().unwrap_or(LoaderState {
            cursor: (self.step * batch) as u64,
            skipped: Vec::new(),
        })
    }
}

/// A run folder.
pub struct Run {
    dir: PathBuf,
}

impl Run {
    /// The run at `dir` (nothing is read or written yet).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// On resume, refuses a setting given again (`given`) with another value than the run was
    /// started with (`same` is false); the error names the setting and the run's value.
    pub fn ensure_kept(
        &self,
        setting: Setting,
        given: bool,
        same: bool,
        started_with: &str,
    ) -> Result<()> {
        if given && !same {
            return Err(TrainError::setting(
                setting,
                format!(
                    "cannot change on resume: the run in {} was started with {started_with}",
                    self.dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// On resume, refuses a prediction target (`given`) other than the run's (`saved`).
    pub fn ensure_prediction_kept(
        &self,
        given: bool,
        saved: Prediction,
        now: Prediction,
    ) -> Result<()> {
        let started_with = format!("{saved:?} prediction").to_lowercase();
        self.ensure_kept(Setting::Prediction, given, saved == now, &started_with)
    }

    /// `RUN/config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// `RUN/metrics.csv`.
    pub fn metrics_path(&self) -> PathBuf {
        self.dir.join("metrics.csv")
    }

    /// The folder of the newest complete checkpoint, if any.
    pub fn latest(&self) -> Option<PathBuf> {
        let name = std::fs::read_to_string(self.dir.join("latest")).ok()?;
        let dir = self.dir.join("checkpoints").join(name.trim());
        dir.join("state.json").exists().then_some(dir)
    }

    /// Starts a new run: refuses a folder that already holds a checkpoint, creates the folder
    /// and writes `config.json`.
    pub fn start<T: Serialize>(&self, config: &T) -> Result<()> {
        if self.latest().is_some() {
            return Err(TrainError::RunExists {
                dir: self.dir.clone(),
            });
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            TrainError::path(&self.dir, format!("cannot create the run folder: {e}"))
        })?;
        write_json(&self.config_path(), config)
    }

    /// Reads `config.json`.
    pub fn read_config(&self) -> Result<AutoencoderConfig> {
        read_config(&self.config_path())
    }

    /// Saves named module records (`unet.bpk`, ...), the optimizer and the state as a new
    /// checkpoint, then points `latest` at it.
    pub fn save(
        &self,
        parts: Vec<(&str, ModuleRecord)>,
        optim: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<PathBuf> {
        let name = format!("step-{:06}", state.step);
        let dir = self.dir.join("checkpoints").join(&name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| TrainError::path(&dir, format!("cannot create the folder: {e}")))?;
        for (file, record) in parts {
            save_record(&dir.join(file), record)?;
        }
        replace_atomic(&dir.join("optim.bpk"), |tmp| {
            optim.save(tmp).map_err(std::io::Error::other)
        })?;
        write_json(&dir.join("state.json"), state)?;
        write_bytes_atomic(&self.dir.join("latest"), name.as_bytes())?;
        self.prune(&name);
        Ok(dir)
    }

    /// Removes all but the newest [`KEEP`] checkpoints (best effort).
    fn prune(&self, newest: &str) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("checkpoints")) else {
            return;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("step-") && n.as_str() <= newest)
            .collect();
        names.sort();
        let excess = names.len().saturating_sub(KEEP);
        for name in &names[..excess] {
            let _ = std::fs::remove_dir_all(self.dir.join("checkpoints").join(name));
        }
    }

    /// Loads the newest checkpoint: model (on `device`), optimizer and state.
    pub fn resume(
        &self,
        config: &AutoencoderConfig,
        optim: ModuleOptimizer,
        device: &Device,
    ) -> Result<(Autoencoder, ModuleOptimizer, TrainState)> {
        let (dir, optim, state) = self.resume_parts(optim)?;
        let model = load_model(config, &dir.join("model.bpk"), device)?;
        Ok((model, optim, state))
    }

    /// The newest checkpoint's folder (for its module records), optimizer and state.
    ///
    /// burn makes the optimizer state on its default device (the first GPU backend compiled
    /// in, unless the `BURN_DEVICE` environment variable names another) and moves it to each
    /// parameter's device at the next step: a front end that trains on the CPU sets
    /// `BURN_DEVICE=flex` before it starts threads, so no GPU driver is opened (`cmdv` does).
    pub fn resume_parts(
        &self,
        optim: ModuleOptimizer,
    ) -> Result<(PathBuf, ModuleOptimizer, TrainState)> {
        let dir = self.latest().ok_or_else(|| TrainError::NothingToResume {
            dir: self.dir.clone(),
        })?;
        let optim_path = dir.join("optim.bpk");
        let optim = optim.load(&optim_path).map_err(|e| {
            TrainError::path(&optim_path, format!("cannot load optimizer state: {e}"))
        })?;
        let state_path = dir.join("state.json");
        let state: TrainState = read_json(&state_path, "training state")?;
        Ok((dir, optim, state))
    }
}

/// Reads a run's JSON config: `kind` names the run in errors.
pub fn read_run_json<T: serde::de::DeserializeOwned>(run: &Run, kind: &str) -> Result<T> {
    let path = run.config_path();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| TrainError::path(&path, format!("cannot read the run config: {e}")))?;
    serde_json::from_str(&text)
        .map_err(|e| TrainError::path(&path, format!("not a {kind} run config: {e}")))
}

/// Reads the JSON file `path`; `what` names its contents in errors.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TrainError::path(path, format!("cannot read the {what}: {e}")))?;
    serde_json::from_str(&text)
        .map_err(|e| TrainError::path(path, format!("not a valid {what}: {e}")))
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).expect("configs serialise");
    Ok(write_bytes_atomic(path, json.as_bytes())?)
}

/// Writes a module record to `path`, atomically.
pub(crate) fn save_record(path: &Path, record: ModuleRecord) -> Result<()> {
    Ok(replace_atomic(path, |tmp| {
        record.save(tmp).map_err(std::io::Error::other)
    })?)
}

/// Fills `module` from the record file `path`, saying which file did not fit.
pub fn load_record<M: Module>(module: M, path: &Path, what: &str) -> Result<M> {
    let record = ModuleRecord::load(path)
        .map_err(|e| TrainError::path(path, format!("cannot read weights: {e}")))?;
    module.try_load_record(record).map_err(|e| {
        TrainError::path(
            path,
            format!("weights do not fit the {what} of its run's config.json: {e}"),
        )
    })
}

fn read_config(path: &Path) -> Result<AutoencoderConfig> {
    let config: AutoencoderConfig = read_json(path, "autoencoder config")?;
    config.validate().map_err(|e| TrainError::path(path, e))?;
    Ok(config)
}

/// Builds the model of `config` and fills it from the weights file `path`.
pub fn load_model(config: &AutoencoderConfig, path: &Path, device: &Device) -> Result<Autoencoder> {
    let record = ModuleRecord::load(path)
        .map_err(|e| TrainError::path(path, format!("cannot read weights: {e}")))?;
    config.init(device)?.try_load_record(record).map_err(|e| {
        TrainError::path(
            path,
            format!(
                "weights do not fit the '{}' autoencoder of its config.json (a checkpoint of \
                 another preset?): {e}",
                config.name
            ),
        )
    })
}

/// Loads an autoencoder from a run folder (its newest checkpoint), a `model.bpk` file whose
/// run's `config.json` is in a parent folder, or a model folder (`model.json`, written by
/// `cmdv export`).
pub fn load_autoencoder(path: &Path, device: &Device) -> Result<Autoencoder> {
    if !path.exists() {
        return Err(TrainError::path(
            path,
            "no such run folder or checkpoint file",
        ));
    }
    if path.join("model.json").is_file() {
        return cmd_model::pipelines::bundle::load_bundle_autoencoder(
            &mut sd_files::reader(path),
            device,
        )
        .map_err(|source| TrainError::Load {
            what: format!("model folder {}", path.display()),
            source,
        });
    }
    let (config_path, weights) = if path.is_dir() {
        let run = Run::new(path);
        let latest = run.latest().ok_or_else(|| {
            TrainError::path(
                path,
                "not a run folder with a checkpoint (expected 'latest' and \
                 checkpoints/step-*/model.bpk written by the autoencoder trainer)",
            )
        })?;
        (run.config_path(), latest.join("model.bpk"))
    } else {
        let config = path
            .ancestors()
            .skip(1)
            .map(|dir| dir.join("config.json"))
            .find(|p| p.exists())
            .ok_or_else(|| {
                TrainError::path(path, "no config.json found beside it or in a parent folder")
            })?;
        (config, path.to_path_buf())
    };
    let config = read_config(&config_path)?;
    load_model(&config, &weights, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::optim::AdamConfig;

    fn adam() -> ModuleOptimizer {
        AdamConfig::new().init()
    }

    #[test]
    fn latest_moves_only_to_complete_checkpoints_and_two_are_kept() {
        let dir = std::env::temp_dir().join(format!("cmd-train-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let run = Run::new(&dir);
        assert_eq!(run.latest(), None);
        run.start(&serde_json::json!({"model": "linear"})).unwrap();
        let model = LinearConfig::new(2, 1).init(&Device::flex());
        for step in 1..=3 {
            let state = TrainState {
                step,
                loss: 0.5,
                ..TrainState::new(7)
            };
            let saved = run
                .save(
                    vec![("model.bpk", model.clone().into_record())],
                    &adam(),
                    &state,
                )
                .unwrap();
            assert_eq!(run.latest(), Some(saved));
        }
        let kept: Vec<_> = std::fs::read_dir(dir.join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(kept.len(), KEEP, "{kept:?}");
        // A save cut short (no state.json yet) is never resumed from.
        let partial = dir.join("checkpoints/step-000004");
        std::fs::create_dir_all(&partial).unwrap();
        std::fs::write(partial.join("model.bpk"), b"half").unwrap();
        std::fs::write(dir.join("latest"), "step-000004").unwrap();
        assert_eq!(
            run.latest(),
            None,
            "a checkpoint without its state is not complete"
        );
        std::fs::write(dir.join("latest"), "step-000003").unwrap();
        let (resumed, _, state) = run.resume_parts(adam()).unwrap();
        assert_eq!(
            (resumed.file_name().unwrap().to_str(), state.step),
            (Some("step-000003"), 3)
        );
        // Starting again over it is refused; a folder without checkpoints cannot be resumed.
        assert!(matches!(run.start(&1), Err(TrainError::RunExists { .. })));
        let empty = Run::new(&dir.join("empty"));
        assert!(matches!(
            empty.resume_parts(adam()),
            Err(TrainError::NothingToResume { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
