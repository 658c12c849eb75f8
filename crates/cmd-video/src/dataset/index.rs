//! The clips of a data folder, probed once (in parallel) and cached beside the data.
//!
//! A data folder holds clip files and folders of PNG frames at its top level, or in class
//! folders one level down (UCF-101: `DATA/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi`).
//! Probing a video (its size, frame count and frame times) costs a process start or a read
//! of its header; the results are kept in `DATA/.cmd-index.json` (or, where the data folder
//! cannot be written, in the user's cache folder) and reused for every file whose size and
//! modification time are unchanged. A file that cannot be read is named, with the reason, in
//! the index's `unreadable` list; the cache remembers that too until the file changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::video::{Video, VideoReader};
use crate::{VideoError, is_clip_file};

/// The name of the cache file in a data folder.
pub const INDEX_FILE: &str = ".cmd-index.json";

/// Bumped whenever what is cached changes meaning.
const VERSION: u32 = 2;

/// The readable clips of a data folder, and what was left out.
#[derive(Debug)]
pub struct Index {
    /// The data folder.
    pub root: PathBuf,
    /// The readable clips, sorted by path.
    pub videos: Vec<Video>,
    /// Clip files that could not be read, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Files that are not clips (by extension), ignored.
    pub ignored: usize,
    /// How many clips were probed now (the rest came from the cache).
    pub probed: usize,
    /// Where the cache is, if it could be written or read.
    pub cache: Option<PathBuf>,
}

/// Progress of [`Index::build`].
#[derive(Debug, Clone, Copy)]
pub enum IndexProgress {
    /// `done` of `total` files that were not in the cache have been probed.
    Probed {
        /// Files probed so far.
        done: usize,
        /// Files to probe.
        total: usize,
    },
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// Whether FFmpeg probed the entries (its results differ from the built-in decoders').
    ffmpeg: bool,
    entries: Vec<Cached>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Cached {
    /// Relative to the data folder, with `/`.
    path: String,
    size: u64,
    modified: u128,
    video: Result<Video, String>,
}

impl Index {
    /// Lists and probes the clips of `root` (reusing its cache), `threads` at a time.
    pub fn build(
        root: &Path,
        reader: VideoReader,
        threads: usize,
        progress: &mut dyn FnMut(IndexProgress),
    ) -> Result<Index, VideoError> {
        let (files, ignored) = list(root)?;
        let ffmpeg = reader.has_ffmpeg();
        let (cache_path, old) = read_cache(root, ffmpeg);
        let old: HashMap<String, Cached> = old.into_iter().map(|c| (c.path.clone(), c)).collect();
        let mut entries = Vec::with_capacity(files.len());
        let mut to_probe = Vec::new();
        for file in &files {
            let rel = relative(root, file);
            let (size, modified) = stamp(file);
            match old.get(&rel) {
                Some(c) if c.size == size && c.modified == modified => {
                    let mut c = c.clone();
                    if let Ok(v) = &mut c.video {
                        v.set_path(file);
                    }
                    entries.push(Some(c));
                }
                _ => {
                    to_probe.push((entries.len(), file.clone(), rel, size, modified));
                    entries.push(None);
                }
            }
        }
        let probed = to_probe.len();
        if probed > 0 {
            let results = probe_all(&to_probe, reader, threads, progress);
            for ((slot, ..), cached) in to_probe.iter().zip(results) {
                entries[*slot] = Some(cached);
            }
        }
        let entries: Vec<Cached> = entries.into_iter().map(|e| e.expect("filled")).collect();
        let cache = if probed > 0 || entries.len() != old.len() {
            write_cache(root, ffmpeg, &entries)
        } else {
            cache_path
        };
        let mut videos = Vec::new();
        let mut unreadable = Vec::new();
        for (file, entry) in files.iter().zip(entries) {
            match entry.video {
                Ok(v) => videos.push(v),
                Err(reason) => unreadable.push((file.clone(), reason)),
            }
        }
        Ok(Index {
            root: root.to_path_buf(),
            videos,
            unreadable,
            ignored,
            probed,
            cache,
        })
    }
}

/// Probes `files` on `threads` threads, in order.
fn probe_all(
    files: &[(usize, PathBuf, String, u64, u128)],
    reader: VideoReader,
    threads: usize,
    progress: &mut dyn FnMut(IndexProgress),
) -> Vec<Cached> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Cached>>> = Mutex::new(vec![None; files.len()]);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, files.len()) {
            let tx = tx.clone();
            let (next, results) = (&next, &results);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((_, file, rel, size, modified)) = files.get(i) else {
                        break;
                    };
                    let video = reader.open(file).map_err(|e| e.message);
                    let cached = Cached {
                        path: rel.clone(),
                        size: *size,
                        modified: *modified,
                        video,
                    };
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(cached);
                    if tx.send(()).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut done = 0;
        while rx.recv().is_ok() {
            done += 1;
            progress(IndexProgress::Probed {
                done,
                total: files.len(),
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|c| c.expect("every file probed"))
        .collect()
}

/// The clip files and PNG-frame folders of `root` and of its class folders, sorted, and how
/// many other files there are.
fn list(root: &Path) -> Result<(Vec<PathBuf>, usize), VideoError> {
    let mut files = Vec::new();
    let mut ignored = 0;
    for entry in entries(root)? {
        if is_clip_file(&entry) || has_png(&entry) {
            files.push(entry);
        } else if entry.is_dir() {
            for inner in entries(&entry)? {
                if is_clip_file(&inner) || has_png(&inner) {
                    files.push(inner);
                } else {
                    ignored += 1;
                }
            }
        } else {
            ignored += 1;
        }
    }
    files.sort();
    Ok((files, ignored))
}

/// The entries of a folder, leaving out hidden ones (`.cmd-index.json` among them).
fn entries(dir: &Path) -> Result<Vec<PathBuf>, VideoError> {
    Ok(std::fs::read_dir(dir)
        .map_err(|e| VideoError::new(dir, format!("cannot read the data folder: {e}")))?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect())
}

/// A folder holding PNG frames.
fn has_png(dir: &Path) -> bool {
    dir.is_dir()
        && std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                e.path()
                    .extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("png"))
            })
        })
}

/// `file` relative to `root`, with `/` separators.
pub(crate) fn relative(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Size and modification time (nanoseconds) of a file; for a folder of frames, its number
/// of entries and its own modification time.
fn stamp(path: &Path) -> (u64, u128) {
    let Ok(meta) = std::fs::metadata(path) else {
        return (0, 0);
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let size = if meta.is_dir() {
        std::fs::read_dir(path).map_or(0, |e| e.count() as u64)
    } else {
        meta.len()
    };
    (size, modified)
}

/// The places a data folder's cache may be: in it, or in the user's cache folder.
fn cache_places(root: &Path) -> Vec<PathBuf> {
    let mut places = vec![root.join(INDEX_FILE)];
    let home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(dir) = home {
        let absolute = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        // FNV-1a of the folder's absolute path.
        let hash = absolute
            .to_string_lossy()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
            });
        places.push(dir.join("cmd").join(format!("index-{hash:016x}.json")));
    }
    places
}

/// The first readable cache of `root` made with the same decoders.
fn read_cache(root: &Path, ffmpeg: bool) -> (Option<PathBuf>, Vec<Cached>) {
    for place in cache_places(root) {
        let Ok(text) = std::fs::read(&place) else {
            continue;
        };
        if let Ok(cache) = serde_json::from_slice::<CacheFile>(&text)
            && cache.version == VERSION
            && cache.ffmpeg == ffmpeg
        {
            return (Some(place), cache.entries);
        }
    }
    (None, Vec::new())
}

/// Writes the cache in the first place that takes it.
fn write_cache(root: &Path, ffmpeg: bool, entries: &[Cached]) -> Option<PathBuf> {
    let file = CacheFile {
        version: VERSION,
        ffmpeg,
        entries: entries.to_vec(),
    };
    let json = serde_json::to_vec(&file).ok()?;
    cache_places(root)
        .into_iter()
        .find(|place| crate::write_bytes_atomic(place, &json).is_ok())
}
