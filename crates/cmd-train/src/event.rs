//! What a training run reports while it works, to a callback (`FnMut(TrainEvent)`), as the
//! generation pipelines report their progress: the library draws nothing itself.

use std::path::PathBuf;

/// One thing a trainer reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// The data folder is being indexed: `done` of `total` files probed.
    Indexing {
        /// Files probed so far.
        done: usize,
        /// Files to probe.
        total: usize,
    },
    /// Small data is being decoded into memory: `done` of `total` clips.
    Decoding {
        /// Clips decoded so far.
        done: usize,
        /// Clips to decode.
        total: usize,
    },
    /// Something the user should know that does not stop the run (a clip skipped, a model
    /// that was trained on other data), in words.
    Warning(String),
    /// A note on what the run does (resuming, encodings kept), in words.
    Note(String),
    /// The optimisation loop starts at `step` (0 for a new run) of `steps`.
    Started {
        /// The model trained, in words (e.g. "the motion DiT 'tiny'").
        model: String,
        /// Its trainable parameters.
        parameters: usize,
        /// The data, in words (clips, where from, what was left out).
        data: String,
        /// Steps already done.
        step: usize,
        /// Steps the run goes to.
        steps: usize,
    },
    /// Optimisation step `step` (1-based) is done.
    Step {
        /// Steps done.
        step: usize,
        /// The step's loss.
        loss: f64,
        /// The step's learning rate.
        lr: f64,
    },
    /// A checkpoint was written and `latest` points at it.
    Checkpoint {
        /// The step it holds.
        step: usize,
        /// Its folder.
        dir: PathBuf,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Steps done (over all sittings of the run).
    pub steps: usize,
    /// Steps done in this call (0 when the run had already reached its steps).
    pub trained: usize,
    /// The last step's loss.
    pub loss: f64,
    /// Seconds this call trained for.
    pub seconds: f64,
    /// What was left out of the data, in words ("no clip skipped", ...).
    pub skipped: String,
    /// The run folder.
    pub dir: PathBuf,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.trained == 0 {
            return write!(
                f,
                "{}: already trained for {} steps",
                self.dir.display(),
                self.steps
            );
        }
        write!(
            f,
            "done: {} steps, last loss {:.4}, {:.1} min, {}; checkpoint in {}",
            self.steps,
            self.loss,
            self.seconds / 60.0,
            self.skipped,
            self.dir.display()
        )
    }
}
