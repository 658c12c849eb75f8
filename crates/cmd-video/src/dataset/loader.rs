//! Examples in order, decoded ahead by background workers into a bounded queue.
//!
//! The loader hands out examples `cursor, cursor + 1, ...` of a [`Dataset`] in that order,
//! whatever order the workers finish them in. A clip whose example fails to decode is named
//! once ([`Skipped`]) and skipped from then on: its examples are passed over (at the place
//! they come in the order, so which examples a run sees does not depend on timing), and the
//! run fails only when no clip is left. The cursor and the skipped clips are what a
//! checkpoint keeps to resume exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use super::{Dataset, Example};
use crate::VideoError;

/// A clip the loader stopped using.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// The clip file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// Where a loader is: what a checkpoint keeps to resume exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoaderState {
    /// The next example.
    pub cursor: u64,
    /// The clips given up on, in path order.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

type Job = u64;
type Done = (u64, Result<Example, VideoError>);

/// Examples of a dataset, in order, decoded ahead.
pub struct Loader {
    dataset: Arc<Dataset>,
    /// The next example handed out.
    cursor: u64,
    /// The next example given to a worker.
    issued: u64,
    /// How many examples may be decoded ahead.
    depth: u64,
    /// Finished examples not handed out yet.
    ready: BTreeMap<u64, Result<Example, VideoError>>,
    /// Clips no longer used, by index, with why.
    skipped: HashMap<usize, String>,
    workers: Option<Workers>,
}

struct Workers {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
}

impl Loader {
    /// Hands out examples from where `state` says (a checkpoint's, or the default for a new
    /// run), leaving out the clips it gave up on. `workers` threads decode up to `depth`
    /// examples ahead; with 0 the examples are made when asked for (right for preloaded
    /// data).
    pub fn new(dataset: Arc<Dataset>, state: &LoaderState, workers: usize, depth: usize) -> Self {
        let cursor = state.cursor;
        let skipped = state
            .skipped
            .iter()
            .filter_map(|s| {
                let i = dataset.videos.iter().position(|v| v.path() == s.path)?;
                Some((i, s.reason.clone()))
            })
            .collect();
        let workers = (workers > 0).then(|| spawn(&dataset, workers));
        Self {
            dataset,
            cursor,
            issued: cursor,
            depth: depth.max(1) as u64,
            ready: BTreeMap::new(),
            skipped,
            workers,
        }
    }

    /// Where the loader is (what a checkpoint keeps).
    pub fn state(&self) -> LoaderState {
        LoaderState {
            cursor: self.cursor,
            skipped: self.skipped(),
        }
    }

    /// The clips no longer used, in path order.
    pub fn skipped(&self) -> Vec<Skipped> {
        let mut out: Vec<Skipped> = self
            .skipped
            .iter()
            .map(|(&i, reason)| Skipped {
                path: self.dataset.videos[i].path().to_path_buf(),
                reason: reason.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// The dataset.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// The next example, and the clips newly given up on the way to it. Fails when every
    /// clip has been given up.
    pub fn next_example(&mut self) -> Result<(Example, Vec<Skipped>), VideoError> {
        let mut newly = Vec::new();
        loop {
            if self.skipped.len() >= self.dataset.len() {
                return Err(self.nothing_readable());
            }
            let position = self.cursor;
            let clip = self.dataset.clip_of(position);
            if self.skipped.contains_key(&clip) {
                self.ready.remove(&position);
                self.cursor += 1;
                continue;
            }
            let result = self.take(position);
            self.cursor += 1;
            match result {
                Ok(example) => return Ok((example, newly)),
                Err(e) => {
                    let skip = Skipped {
                        path: e.path.clone(),
                        reason: e.message.clone(),
                    };
                    self.skipped.insert(clip, e.message);
                    newly.push(skip);
                }
            }
        }
    }

    /// `n` examples (see [`Self::next_example`]).
    pub fn next_batch(&mut self, n: usize) -> Result<(Vec<Example>, Vec<Skipped>), VideoError> {
        let mut examples = Vec::with_capacity(n);
        let mut skipped = Vec::new();
        for _ in 0..n {
            let (example, newly) = self.next_example()?;
            examples.push(example);
            skipped.extend(newly);
        }
        Ok((examples, skipped))
    }

    /// Example `position`, from the workers or made now.
    fn take(&mut self, position: u64) -> Result<Example, VideoError> {
        if self.workers.is_none() {
            return self.dataset.example(position);
        }
        self.issue();
        loop {
            if let Some(done) = self.ready.remove(&position) {
                return done;
            }
            let workers = self.workers.as_ref().expect("checked above");
            match workers.done.recv() {
                // Examples of clips given up on after they were issued are dropped here.
                Ok((p, result)) if p >= self.cursor => {
                    self.ready.insert(p, result);
                }
                Ok(_) => {}
                // Only a worker that panicked ends the channel early.
                Err(_) => return self.dataset.example(position),
            }
        }
    }

    /// Gives the workers every example up to `depth` ahead whose clip is still used.
    fn issue(&mut self) {
        let Some(workers) = &self.workers else { return };
        let Some(jobs) = &workers.jobs else { return };
        self.issued = self.issued.max(self.cursor);
        while self.issued < self.cursor + self.depth {
            let clip = self.dataset.clip_of(self.issued);
            if !self.skipped.contains_key(&clip) && jobs.send(self.issued).is_err() {
                break;
            }
            self.issued += 1;
        }
    }

    fn nothing_readable(&self) -> VideoError {
        let (path, reason) = self
            .skipped
            .iter()
            .next()
            .map(|(&i, r)| (self.dataset.videos[i].path().to_path_buf(), r.clone()))
            .unwrap_or_default();
        VideoError::new(
            &path,
            format!(
                "none of the {} clips can be read (this one: {reason})",
                self.dataset.len()
            ),
        )
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        if let Some(mut workers) = self.workers.take() {
            // Closing the job queue ends each worker after its current example.
            workers.jobs = None;
            drop(workers.done);
            for t in workers.threads {
                let _ = t.join();
            }
        }
    }
}

fn spawn(dataset: &Arc<Dataset>, n: usize) -> Workers {
    let (jobs, queue) = channel::<Job>();
    let (done_tx, done) = channel::<Done>();
    let queue = Arc::new(Mutex::new(queue));
    let threads = (0..n)
        .map(|i| {
            let (dataset, queue, done_tx) = (dataset.clone(), queue.clone(), done_tx.clone());
            std::thread::Builder::new()
                .name(format!("clip-decoder-{i}"))
                .spawn(move || {
                    loop {
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(position) = job else { break };
                        let result = dataset.example(position);
                        if done_tx.send((position, result)).is_err() {
                            break;
                        }
                    }
                })
                .expect("a thread can be started")
        })
        .collect();
    Workers {
        jobs: Some(jobs),
        done,
        threads,
    }
}
