//! # cmd-video
//!
//! Reading and writing short clips for CMD: y4m (pure Rust), H.264 mp4 (OpenH264), animated
//! GIF and folders of PNG frames; clip sampling (frames at a stride from an offset, crops,
//! resizing) and conversion to and from the `[-1, 1]` float layout the model uses.
//!
//! Also the teaching dataset, its adherence analyser, and the teaching pictures (importance
//! weight heat maps, motion planes). Without the default `h264` feature (the browser build)
//! there is no mp4 support.
//!
//! Every error names the file it is about. Files are written atomically (temporary file, then
//! rename), so an interrupted write never leaves a half-written output in place.

pub mod adherence;
pub mod atomic;
pub mod clip;
pub mod error;
pub mod gif;
#[cfg(feature = "h264")]
pub mod mp4;
pub mod png;
pub mod teaching;
pub mod views;
pub mod y4m;

pub use atomic::{replace_atomic, write_atomic, write_bytes_atomic};
pub use clip::Clip;
pub use error::VideoError;

use std::path::Path;

/// The kinds of input `read_clip` understands, by file extension (or a directory of PNGs).
pub const INPUT_FORMATS: &str = "y4m, mp4, gif, or a folder of PNG frames";

/// Reads up to `max_frames` frames (all when `None`) of the clip at `path`, choosing the format
/// by extension; a directory is read as a folder of PNG frames.
pub fn read_clip(path: &Path, max_frames: Option<usize>) -> Result<Clip, VideoError> {
    if path.is_dir() {
        return png::read_folder(path, max_frames);
    }
    if !path.exists() {
        return Err(VideoError::new(path, "file not found"));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("y4m") => y4m::read(path, max_frames),
        #[cfg(feature = "h264")]
        Some("mp4") | Some("m4v") => mp4::read(path, max_frames),
        Some("gif") => gif::read(path, max_frames),
        other => Err(VideoError::new(
            path,
            format!(
                "unsupported clip format '{}': expected {INPUT_FORMATS}",
                other.unwrap_or("")
            ),
        )),
    }
}

/// True for paths [`read_clip`] can read as a file (by extension).
pub fn is_clip_file(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("y4m" | "mp4" | "m4v" | "gif")
    )
}

/// Writes a clip, choosing the format by extension: `.gif`, `.mp4`, or (no extension) a folder
/// of PNG frames. Files are written atomically.
pub fn write_clip(path: &Path, clip: &Clip) -> Result<(), VideoError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("gif") => gif::write(path, clip),
        #[cfg(feature = "h264")]
        Some("mp4") => mp4::write(path, clip),
        None => png::write_folder(path, clip),
        Some(other) => Err(VideoError::new(
            path,
            format!("cannot write '{other}' clips: expected .gif, .mp4, or a folder name"),
        )),
    }
}
