//! Errors of the training library.

use std::fmt;
use std::path::PathBuf;

use cmd_model::ModelError;
use cmd_model::pipelines::stable_diffusion::LoadError;
use cmd_model::tokenizer::TokenizerError;
use cmd_model::unet::UnetConfigError;
use cmd_video::VideoError;

/// A setting of a trainer's config, named in [`TrainError::Setting`] so that a front end can
/// say it in its own terms (a flag, a form field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// The data folder.
    Data,
    /// Frames between the frames taken.
    Stride,
    /// The frame rate clips are sampled at.
    Fps,
    /// Total optimisation steps.
    Steps,
    /// Clips per step.
    Batch,
    /// The learning rate.
    Lr,
    /// Adam's first-moment decay.
    Beta1,
    /// Steps between checkpoints.
    CheckpointEvery,
    /// The EMA decay.
    Ema,
    /// The fraction of null conditions.
    EmptyPrompt,
    /// The smallest random crop.
    CropMin,
    /// The training devices.
    Devices,
    /// The autoencoder preset or DiT size.
    Preset,
    /// The Stable Diffusion model whose VAE makes frame latents.
    Vae,
    /// The base a content model starts from.
    Base,
    /// What a diffusion model predicts.
    Prediction,
    /// How the motion model pools its text.
    TextPooling,
    /// The weights a new run starts from.
    Init,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Data => "data",
            Self::Stride => "stride",
            Self::Fps => "fps",
            Self::Steps => "steps",
            Self::Batch => "batch",
            Self::Lr => "lr",
            Self::Beta1 => "beta1",
            Self::CheckpointEvery => "checkpoint every",
            Self::Ema => "ema",
            Self::EmptyPrompt => "empty prompt",
            Self::CropMin => "crop min",
            Self::Devices => "devices",
            Self::Preset => "preset",
            Self::Vae => "vae",
            Self::Base => "base",
            Self::Prediction => "prediction",
            Self::TextPooling => "text pooling",
            Self::Init => "init",
        })
    }
}

/// Everything training can refuse or fail at, naming the setting, file or step concerned.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting whose value cannot be used (or, on resume, differs from the run's).
    #[error("{setting} {message}")]
    Setting {
        /// The setting.
        setting: Setting,
        /// What is wrong with it, e.g. "must be positive".
        message: String,
    },
    /// A file or folder that cannot be read, written or used.
    #[error("{}: {message}", path.display())]
    Path {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong, e.g. "cannot read the run config: No such file".
        message: String,
    },
    /// A new run in a folder that already holds a checkpoint.
    #[error("{}: already holds a checkpoint; resume it, or start the run in another folder", dir.display())]
    RunExists {
        /// The run folder.
        dir: PathBuf,
    },
    /// A resumed run whose folder holds no checkpoint.
    #[error("{}: no checkpoint to resume from; start the run first", dir.display())]
    NothingToResume {
        /// The run folder.
        dir: PathBuf,
    },
    /// The loss became NaN or infinite: training stopped, the last good checkpoint is kept.
    #[error(
        "loss became {value} at step {step}: training stopped. The last good checkpoint is kept \
         ({}); try a lower learning rate",
        kept.as_ref().map_or("none was written yet".to_string(), |p| p.display().to_string())
    )]
    NonFinite {
        /// The loss.
        value: f64,
        /// The step (1-based) whose loss it was.
        step: usize,
        /// The newest checkpoint, which holds weights that gave a finite loss.
        kept: Option<PathBuf>,
    },
    /// A training device failed: an error or a panic in its thread, or a computation that
    /// could not finish (out of memory on a GPU).
    #[error("training on device {index} failed: {message}")]
    Device {
        /// Which device.
        index: usize,
        /// What happened.
        message: String,
    },
    /// A device could not compute a result (out of memory on a GPU?).
    #[error("the device failed to compute the result (out of memory on a GPU?): {0}")]
    Compute(String),
    /// A file of a model folder that does not load (a Stable Diffusion folder, a model folder).
    #[error("{what}: {source}")]
    Load {
        /// The folder or file, in words.
        what: String,
        /// What is wrong in it.
        source: LoadError,
    },
    /// A model file that does not load, named in the error (a single-file checkpoint).
    #[error(transparent)]
    ModelFile(#[from] LoadError),
    /// A clip or data folder that cannot be read.
    #[error(transparent)]
    Video(#[from] VideoError),
    /// A model config whose numbers do not fit together.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A UNet config whose numbers do not fit together.
    #[error(transparent)]
    Unet(#[from] UnetConfigError),
    /// A tokenizer that cannot be built or used.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

impl TrainError {
    /// A [`TrainError::Setting`].
    pub fn setting(setting: Setting, message: impl Into<String>) -> Self {
        Self::Setting {
            setting,
            message: message.into(),
        }
    }

    /// A [`TrainError::Path`].
    pub fn path(path: impl Into<PathBuf>, message: impl fmt::Display) -> Self {
        Self::Path {
            path: path.into(),
            message: message.to_string(),
        }
    }
}

/// Results of the training library.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Checks a setting: `Ok` when `ok`, else the setting's error with `message`.
pub(crate) fn ensure(ok: bool, setting: Setting, message: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(TrainError::setting(setting, message()))
    }
}
