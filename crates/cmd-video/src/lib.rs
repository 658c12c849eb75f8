//! # cmd-video
//!
//! Video in and out for CMD: every common container and codec through FFmpeg's programs
//! ([`ffmpeg`]), y4m, animated GIF and folders of PNG frames in pure Rust, and H.264 in
//! MP4/MOV/M4V through the built-in OpenH264 decoder ([`mp4`]) where FFmpeg is missing. A
//! [`Video`] is opened once and read from by [`Take`]s (a start frame or time, a count, a
//! stride or a target frame rate), each read decoding only from the keyframe before its first
//! frame. [`dataset`] turns folders of clips into training examples at any scale.
//!
//! Also clip sampling and conversion to and from the `[-1, 1]` float layout the model uses,
//! and the teaching pictures (importance weight
//! heat maps, motion planes). Without the default `h264` and `ffmpeg` features (the browser
//! build) only y4m, GIF and PNG are read.
//!
//! Every error names the file it is about. Files are written atomically (temporary file, then
//! rename), so an interrupted write never leaves a half-written output in place.

#![warn(missing_docs)]

pub mod atomic;
pub mod clip;
pub mod dataset;
pub mod error;
#[cfg(feature = "ffmpeg")]
pub mod ffmpeg;
pub mod gif;
#[cfg(feature = "h264")]
pub mod mp4;
pub mod png;
pub mod slide;
pub mod take;
pub mod video;
pub mod views;
pub mod y4m;

pub use atomic::{replace_atomic, write_atomic, write_bytes_atomic};
pub use clip::Clip;
pub use error::VideoError;
pub use take::{Start, Take, Timeline};
pub use video::{Decode, Video, VideoInfo, VideoReader};

use std::path::Path;

/// The kinds of input [`read_clip`] understands.
pub const INPUT_FORMATS: &str = "a video file (mp4, mov, m4v, mkv, webm, avi, 3gp, mpg, ts, \
    ogv: H.264, HEVC, VP8, VP9, AV1, MJPEG and whatever else FFmpeg reads), \
    y4m, gif, or a folder of PNG frames";

/// What to install when FFmpeg is missing.
pub const INSTALL_HINT: &str = "install FFmpeg (Debian/Ubuntu: `sudo apt install ffmpeg`, \
    Fedora: `sudo dnf install ffmpeg`, macOS: `brew install ffmpeg`, Windows: `winget install \
    ffmpeg`), or set CMD_FFMPEG to the path of the ffmpeg program";

/// The largest frame side the readers accept.
pub const MAX_SIDE: u32 = 16_384;

/// The most pixels per frame the readers accept (8192 x 8192).
pub const MAX_PIXELS: u64 = 8192 * 8192;

/// Refuses a frame size no real video has, before anything is allocated for it.
pub fn check_size(path: &Path, width: u32, height: u32) -> Result<(), VideoError> {
    if width == 0 || height == 0 {
        return Err(VideoError::new(
            path,
            format!("the header says the frames are {width}x{height}"),
        ));
    }
    if width > MAX_SIDE || height > MAX_SIDE || width as u64 * height as u64 > MAX_PIXELS {
        return Err(VideoError::new(
            path,
            format!(
                "the header says the frames are {width}x{height}, larger than any video \
                 (at most {MAX_SIDE} a side and {MAX_PIXELS} pixels are read)"
            ),
        ));
    }
    Ok(())
}

/// Reads the frames `take` asks for from the video at `path` (a file, or a folder of PNG
/// frames), with FFmpeg when it is installed.
pub fn read_clip(path: &Path, take: &Take) -> Result<Clip, VideoError> {
    Video::open(path)?.read(take)
}

/// True for paths [`read_clip`] can read as a file (by extension).
pub fn is_clip_file(path: &Path) -> bool {
    let ext = video::extension(path);
    ext == "y4m" || ext == "gif" || video::FFMPEG_EXTENSIONS.contains(&ext.as_str())
}

/// Output formats of [`write_clip`].
pub const OUTPUT_FORMATS: &str = ".mp4 (H.264), .webm (VP9, needs FFmpeg), .gif, or a folder \
    name for PNG frames";

/// Writes a clip, choosing the format by extension: `.mp4` (H.264 High through FFmpeg's
/// libx264 when present, else OpenH264's Baseline; both play in browsers), `.webm` (VP9
/// through FFmpeg), `.gif`, or (no extension) a folder of PNG frames. Files are written
/// atomically.
pub fn write_clip(path: &Path, clip: &Clip) -> Result<(), VideoError> {
    match video::extension(path).as_str() {
        "gif" => gif::write(path, clip),
        "mp4" => write_mp4(path, clip),
        "webm" => write_webm(path, clip),
        "" => png::write_folder(path, clip),
        other => Err(VideoError::new(
            path,
            format!("cannot write '{other}' clips: expected {OUTPUT_FORMATS}"),
        )),
    }
}

#[cfg_attr(not(feature = "h264"), allow(unused_variables))]
fn write_mp4(path: &Path, clip: &Clip) -> Result<(), VideoError> {
    #[cfg(feature = "ffmpeg")]
    if let Some(ffmpeg) = ffmpeg::Ffmpeg::find().filter(|f| f.has_encoder("libx264")) {
        return ffmpeg.encode(
            path,
            clip,
            &[
                "-c:v",
                "libx264",
                "-profile:v",
                "high",
                "-preset",
                "medium",
                "-crf",
                "16",
                "-pix_fmt",
                "yuv420p",
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
            ],
        );
    }
    #[cfg(feature = "h264")]
    {
        mp4::write(path, clip)
    }
    #[cfg(not(feature = "h264"))]
    {
        Err(VideoError::new(
            path,
            format!("writing .mp4 needs FFmpeg with libx264; {INSTALL_HINT}"),
        ))
    }
}

#[cfg_attr(not(feature = "ffmpeg"), allow(unused_variables))]
fn write_webm(path: &Path, clip: &Clip) -> Result<(), VideoError> {
    #[cfg(feature = "ffmpeg")]
    if let Some(ffmpeg) = ffmpeg::Ffmpeg::find().filter(|f| f.has_encoder("libvpx-vp9")) {
        return ffmpeg.encode(
            path,
            clip,
            &[
                "-c:v",
                "libvpx-vp9",
                "-crf",
                "24",
                "-b:v",
                "0",
                "-row-mt",
                "1",
                "-deadline",
                "good",
                "-cpu-used",
                "4",
                "-pix_fmt",
                "yuv420p",
                "-f",
                "webm",
            ],
        );
    }
    Err(VideoError::new(
        path,
        format!("writing .webm needs FFmpeg with libvpx (VP9); {INSTALL_HINT}"),
    ))
}
