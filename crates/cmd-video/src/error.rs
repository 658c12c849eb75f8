//! The one error type of the video crate: a file and what is wrong with it.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with a clip file; the message always names the file.
#[derive(Debug)]
pub struct VideoError {
    /// The file (or folder) concerned.
    pub path: PathBuf,
    /// What went wrong, in words.
    pub message: String,
}

impl VideoError {
    /// An error about `path`.
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

impl fmt::Display for VideoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for VideoError {}
