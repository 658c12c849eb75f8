//! Run folders and checkpoints.
//!
//! ```text
//! RUN/config.json                 autoencoder sizes (AutoencoderConfig)
//! RUN/metrics.csv                 step, loss, learning rate, seconds
//! RUN/latest                      name of the newest complete checkpoint
//! RUN/checkpoints/step-000300/    model.bpk, optim.bpk, state.json
//! ```
//!
//! Content-model runs (`train-content`) keep `unet.bpk` and `ema.bpk` in place of `model.bpk`
//! (see `content.rs`).
//!
//! A checkpoint folder is complete before `latest` points at it (and `latest` is replaced
//! atomically), so an interrupted save never loses the previous checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use cmd_model::schedulers::Prediction;
use cmd_model::{Autoencoder, AutoencoderConfig};
use cmd_video::dataset::LoaderState;
use cmd_video::{replace_atomic, write_bytes_atomic};
use serde::{Deserialize, Serialize};

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
    /// started with (`same` is false); the error names `flag` and the run's value.
    pub fn ensure_kept(
        &self,
        flag: &str,
        given: bool,
        same: bool,
        started_with: &str,
    ) -> Result<()> {
        if given && !same {
            bail!(
                "{flag}: the run in {} was started with {started_with}",
                self.dir.display()
            );
        }
        Ok(())
    }

    /// On resume, refuses a `--prediction` (`given`) other than the run's (`saved`).
    pub fn ensure_prediction_kept(
        &self,
        given: bool,
        saved: Prediction,
        now: Prediction,
    ) -> Result<()> {
        let started_with = format!("{saved:?} prediction").to_lowercase();
        self.ensure_kept("--prediction", given, saved == now, &started_with)
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
            bail!(
                "{}: already holds a checkpoint; pass --resume to continue it, or choose another --out",
                self.dir.display()
            );
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| anyhow!("{}: cannot create the run folder: {e}", self.dir.display()))?;
        let json = serde_json::to_string_pretty(config)?;
        write_bytes_atomic(&self.config_path(), json.as_bytes())?;
        Ok(())
    }

    /// Reads `config.json`.
    pub fn read_config(&self) -> Result<AutoencoderConfig> {
        read_config(&self.config_path())
    }

    /// Saves named module records (`unet.bpk`, ...), the optimizer and the state as a new
    /// checkpoint, then points `latest` at it.
    pub fn save_parts(
        &self,
        parts: Vec<(&str, ModuleRecord)>,
        optim: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<()> {
        let name = format!("step-{:06}", state.step);
        let dir = self.dir.join("checkpoints").join(&name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for (file, record) in parts {
            replace_atomic(&dir.join(file), |tmp| {
                record.save(tmp).map_err(std::io::Error::other)
            })?;
        }
        replace_atomic(&dir.join("optim.bpk"), |tmp| {
            optim.save(tmp).map_err(std::io::Error::other)
        })?;
        let json = serde_json::to_string_pretty(state)?;
        write_bytes_atomic(&dir.join("state.json"), json.as_bytes())?;
        write_bytes_atomic(&self.dir.join("latest"), name.as_bytes())?;
        self.prune(&name);
        Ok(())
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

    /// The newest checkpoint's folder (for its module records), optimizer and state; says on
    /// stderr where the run resumes.
    pub fn resume_parts(
        &self,
        optim: ModuleOptimizer,
    ) -> Result<(PathBuf, ModuleOptimizer, TrainState)> {
        let dir = self.latest().ok_or_else(|| {
            anyhow!(
                "{}: no checkpoint to resume from (run without --resume to start it)",
                self.dir.display()
            )
        })?;
        let optim_path = dir.join("optim.bpk");
        let optim = optim
            .load(&optim_path)
            .map_err(|e| anyhow!("{}: cannot load optimizer state: {e}", optim_path.display()))?;
        let state_path = dir.join("state.json");
        let state = std::fs::read_to_string(&state_path)
            .map_err(anyhow::Error::from)
            .and_then(|s| Ok(serde_json::from_str(&s)?))
            .with_context(|| format!("{}: cannot read training state", state_path.display()))?;
        let state: TrainState = state;
        eprintln!("resuming {} at step {}", self.dir.display(), state.step);
        Ok((dir, optim, state))
    }
}

/// Reads a run's JSON config: `kind` names the run in errors, `command` what writes it.
pub fn read_run_json<T: serde::de::DeserializeOwned>(
    run: &Run,
    kind: &str,
    command: &str,
) -> Result<T> {
    let path = run.config_path();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read the run config", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a {kind} run config (written by `cmdv {command}`)",
            path.display()
        )
    })
}

/// Fills `module` from the record file `path`, saying which file did not fit.
pub fn load_record<M: Module>(module: M, path: &Path, what: &str) -> Result<M> {
    let record = ModuleRecord::load(path)
        .map_err(|e| anyhow!("{}: cannot read weights: {e}", path.display()))?;
    module.try_load_record(record).map_err(|e| {
        anyhow!(
            "{}: weights do not fit the {what} of its run's config.json: {e}",
            path.display()
        )
    })
}

fn read_config(path: &Path) -> Result<AutoencoderConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the autoencoder config", path.display()))?;
    let config: AutoencoderConfig = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid autoencoder config", path.display()))?;
    config
        .validate()
        .with_context(|| format!("{}: invalid autoencoder config", path.display()))?;
    Ok(config)
}

/// Builds the model of `config` and fills it from the weights file `path`.
pub fn load_model(config: &AutoencoderConfig, path: &Path, device: &Device) -> Result<Autoencoder> {
    let record = ModuleRecord::load(path)
        .map_err(|e| anyhow!("{}: cannot read weights: {e}", path.display()))?;
    config.init(device)?.try_load_record(record).map_err(|e| {
        anyhow!(
            "{}: weights do not fit the '{}' autoencoder of its config.json \
                 (a checkpoint of another preset?): {e}",
            path.display(),
            config.name
        )
    })
}

/// Loads an autoencoder from a run folder (its newest checkpoint), a `model.bpk` file whose
/// run's `config.json` is in a parent folder, or a model folder (`model.json`, written by
/// `cmdv export`).
pub fn load_autoencoder(path: &Path, device: &Device) -> Result<Autoencoder> {
    if !path.exists() {
        bail!("{}: no such run folder or checkpoint file", path.display());
    }
    if path.join("model.json").is_file() {
        return cmd_model::pipelines::bundle::load_bundle_autoencoder(
            &mut crate::sd_model::reader(path),
            device,
        )
        .with_context(|| format!("model folder {}", path.display()));
    }
    let (config_path, weights) = if path.is_dir() {
        let run = Run::new(path);
        let latest = run.latest().ok_or_else(|| {
            anyhow!(
                "{}: not a run folder with a checkpoint (expected 'latest' and \
                 checkpoints/step-*/model.bpk written by `cmdv train-ae`)",
                path.display()
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
                anyhow!(
                    "{}: no config.json found beside it or in a parent folder",
                    path.display()
                )
            })?;
        (config, path.to_path_buf())
    };
    let config = read_config(&config_path)?;
    load_model(&config, &weights, device)
}
