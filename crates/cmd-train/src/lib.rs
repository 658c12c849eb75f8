//! Training CMD models as a library, for `cmdv` and any other front end (a notebook-style
//! runner, a cluster launcher).
//!
//! - Runs and checkpoints ([`run`]): atomic, with a `latest` pointer switched atomically.
//! - One training loop ([`fit`]) for the three trainers: a checkpoint is written only after
//!   its weights gave a finite loss, a NaN or infinite loss stops the run naming the last good
//!   checkpoint, and a resumed run draws exactly what an uninterrupted one would.
//! - Data parallelism over devices ([`parallel`]), the dataset and captions ([`data`],
//!   [`captions`]), frozen encoders built on the model crate's `Codec` ([`frozen`]), the EMA
//!   ([`ema`]) and the diffusion loss, once ([`diffusion`]).
//! - The trainers, each from a typed config: [`AeTrainer`], [`ContentTrainer`],
//!   [`MotionTrainer`].
//!
//! Progress goes to a callback (`FnMut(TrainEvent)`); errors are [`TrainError`]s, which name
//! the setting, file or step concerned.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use cmd_train::{AeTrainConfig, AeTrainer, DataConfig, DataParallel, FitConfig, TrainEvent};
//!
//! let fit = FitConfig::new("runs/ae", 300, 2, 2e-3);
//! let trainer = AeTrainer::new(AeTrainConfig::new("tiny", DataConfig::new("clips/"), fit))?;
//! let devices = DataParallel::new(vec![Device::flex()], false, 2)?;
//! let summary = trainer.train(&devices, &mut |event| {
//!     if let TrainEvent::Step { step, loss, .. } = event {
//!         println!("{step}: {loss:.4}");
//!     }
//! })?;
//! println!("{summary}");
//! # Ok::<(), cmd_train::TrainError>(())
//! ```
#![warn(missing_docs)]

pub mod ae;
pub mod captions;
pub mod content;
pub mod content_trainer;
pub mod data;
pub mod diffusion;
pub mod ema;
pub mod error;
pub mod event;
pub mod fit;
pub mod frozen;
pub mod motion;
pub mod motion_trainer;
pub mod parallel;
pub mod run;
pub mod sd_files;
pub mod tensors;
pub mod vae;

pub use ae::{AeTrainConfig, AeTrainer};
pub use content_trainer::{ContentTrainConfig, ContentTrainer};
pub use data::DataConfig;
pub use diffusion::DiffusionConfig;
pub use error::{Setting, TrainError};
pub use event::{Summary, TrainEvent};
pub use fit::FitConfig;
pub use motion_trainer::{MotionTrainConfig, MotionTrainer};
pub use parallel::DataParallel;
pub use run::{Run, TrainState};
