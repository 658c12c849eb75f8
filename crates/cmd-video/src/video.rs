//! Opening a video of any supported kind and reading some of its frames.
//!
//! y4m, GIF and folders of PNG frames are read in pure Rust; every other container and codec
//! through FFmpeg when it is installed; without FFmpeg, H.264 in MP4/MOV/M4V through the
//! built-in OpenH264 decoder (the `h264` feature). A [`Video`] is opened once (the header and
//! the frame times are read) and then read from as often as needed, each read decoding only
//! from the keyframe before the first frame it asks for.

use std::path::{Path, PathBuf};

use image::RgbImage;
use image::imageops::{self, FilterType};
use serde::{Deserialize, Serialize};

use crate::take::{Take, Timeline};
use crate::{Clip, VideoError};

/// File extensions read through FFmpeg (H.264 MP4/MOV/M4V also without it).
pub const FFMPEG_EXTENSIONS: [&str; 13] = [
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "3gp", "mpg", "mpeg", "ts", "mts", "m2ts", "ogv",
];

/// What a video holds, as far as reading frames needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    /// Frame width as shown (after rotation, in square pixels).
    pub width: u32,
    /// Frame height as shown.
    pub height: u32,
    /// When each frame is shown.
    pub timeline: Timeline,
    /// The codec, e.g. `h264 (High)`, `vp9`, `y4m`.
    pub codec: String,
    /// The clockwise rotation applied to show the frames upright (0, 90, 180 or 270).
    pub rotation: u32,
}

impl VideoInfo {
    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.timeline.len()
    }

    /// Average frames per second.
    pub fn fps(&self) -> f64 {
        self.timeline.fps()
    }

    /// Length in seconds.
    pub fn duration(&self) -> f64 {
        self.timeline.end()
    }
}

/// How frames are decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Decode {
    /// Resize every frame to this `(width, height)` (area-like filter) as it is decoded.
    pub size: Option<(u32, u32)>,
    /// Decoder threads per read (FFmpeg; `None`: its own choice). Data loaders that run many
    /// reads side by side use 1.
    pub threads: Option<usize>,
}

/// Which decoders to use.
#[derive(Debug, Clone, Copy)]
pub struct VideoReader {
    #[cfg(feature = "ffmpeg")]
    ffmpeg: Option<&'static crate::ffmpeg::Ffmpeg>,
}

impl Default for VideoReader {
    fn default() -> Self {
        Self::new()
    }
}

impl VideoReader {
    /// FFmpeg when it is installed (see [`crate::ffmpeg::Ffmpeg::find`]), else the built-in
    /// decoders.
    pub fn new() -> Self {
        Self {
            #[cfg(feature = "ffmpeg")]
            ffmpeg: crate::ffmpeg::Ffmpeg::find(),
        }
    }

    /// Only the built-in decoders, as on a machine without FFmpeg.
    pub fn built_in() -> Self {
        Self {
            #[cfg(feature = "ffmpeg")]
            ffmpeg: None,
        }
    }

    /// Whether FFmpeg is used.
    pub fn has_ffmpeg(&self) -> bool {
        #[cfg(feature = "ffmpeg")]
        return self.ffmpeg.is_some();
        #[cfg(not(feature = "ffmpeg"))]
        false
    }

    /// Opens the video at `path` (a file, or a folder of PNG frames): reads its header and its
    /// frames' times.
    pub fn open(&self, path: &Path) -> Result<Video, VideoError> {
        let (source, info) = self.probe(path)?;
        Ok(Video {
            path: path.to_path_buf(),
            info,
            source,
        })
    }

    fn probe(&self, path: &Path) -> Result<(Source, VideoInfo), VideoError> {
        if path.is_dir() {
            let files = crate::png::frame_files(path)?;
            let info = crate::png::probe(&files)?;
            let names = files
                .iter()
                .filter_map(|f| f.file_name())
                .map(PathBuf::from);
            return Ok((Source::Png(names.collect()), info));
        }
        let meta = std::fs::metadata(path).map_err(|e| {
            VideoError::new(
                path,
                if e.kind() == std::io::ErrorKind::NotFound {
                    "file not found".to_string()
                } else {
                    format!("cannot open: {e}")
                },
            )
        })?;
        if meta.len() == 0 {
            return Err(VideoError::new(path, "empty file (0 bytes)"));
        }
        let ext = extension(path);
        match ext.as_str() {
            "y4m" => {
                let (info, anamorphic) = crate::y4m::probe(path)?;
                return Ok((Source::Y4m { anamorphic }, info));
            }
            "gif" => return Ok((Source::Gif, crate::gif::probe(path)?)),
            _ => {}
        }
        if !FFMPEG_EXTENSIONS.contains(&ext.as_str()) {
            return Err(VideoError::new(
                path,
                format!(
                    "unsupported video format '{ext}': expected {}",
                    crate::INPUT_FORMATS
                ),
            ));
        }
        #[cfg(feature = "ffmpeg")]
        if let Some(ffmpeg) = self.ffmpeg {
            let (source, p) = ffmpeg.probe(path)?;
            let info = VideoInfo {
                width: p.width,
                height: p.height,
                timeline: p.timeline,
                codec: p.codec,
                rotation: p.rotation,
            };
            return Ok((Source::Ffmpeg(source), info));
        }
        #[cfg(feature = "h264")]
        if matches!(ext.as_str(), "mp4" | "m4v" | "mov") {
            let (track, info) = crate::mp4::probe(path)?;
            return Ok((Source::H264(Box::new(track)), info));
        }
        Err(VideoError::new(
            path,
            format!(
                "reading .{ext} files needs FFmpeg, which was not found; {}. Without it, \
                 y4m, GIF, PNG frames and H.264 in mp4/mov/m4v are read",
                crate::INSTALL_HINT
            ),
        ))
    }
}

/// How a video's frames are decoded.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Source {
    /// Resized to the square-pixel size when `anamorphic`.
    Y4m {
        anamorphic: bool,
    },
    Gif,
    /// The frame files' names.
    Png(Vec<PathBuf>),
    #[cfg(feature = "ffmpeg")]
    Ffmpeg(crate::ffmpeg::FfmpegSource),
    #[cfg(feature = "h264")]
    H264(Box<crate::mp4::H264Track>),
}

/// An opened video. It serialises (what was read when opening), so a data index can keep
/// it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Video {
    path: PathBuf,
    info: VideoInfo,
    source: Source,
}

impl Video {
    /// Opens `path` with FFmpeg if it is installed (see [`VideoReader`]).
    pub fn open(path: &Path) -> Result<Self, VideoError> {
        VideoReader::new().open(path)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The same video, found at `path` now (its folder moved).
    pub(crate) fn set_path(&mut self, path: &Path) {
        self.path = path.to_path_buf();
    }

    /// What it holds.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// The frames `take` asks for, at the video's size.
    pub fn read(&self, take: &Take) -> Result<Clip, VideoError> {
        self.read_with(take, Decode::default())
    }

    /// The frames `take` asks for, decoded as `decode` says.
    pub fn read_with(&self, take: &Take, decode: Decode) -> Result<Clip, VideoError> {
        let indices = take
            .indices(&self.info.timeline)
            .map_err(|m| VideoError::new(&self.path, m))?;
        let frames = self.frames(&indices, decode)?;
        Ok(Clip::new(frames, take.output_fps(&self.info.timeline))
            .expect("frames of one video have one size"))
    }

    /// The frames at `indices` (presentation order, not decreasing), decoded as `decode`
    /// says. Only the frames from the keyframe before the first to the last are decoded, and
    /// only those asked for are kept.
    pub fn frames(&self, indices: &[usize], decode: Decode) -> Result<Vec<RgbImage>, VideoError> {
        let (Some(&first), Some(&last)) = (indices.first(), indices.last()) else {
            return Ok(Vec::new());
        };
        let len = self.info.frames();
        if indices.windows(2).any(|w| w[1] < w[0]) || last >= len {
            return Err(VideoError::new(
                &self.path,
                format!("frames {first}..={last} asked for, but it has {len}"),
            ));
        }
        let range = (first, last);
        let mut out = Frames::new(indices, decode.size);
        match &self.source {
            Source::Y4m { anamorphic } => {
                if *anamorphic && out.size.is_none() {
                    out.size = Some((self.info.width, self.info.height));
                }
                crate::y4m::decode(&self.path, range, &mut out)?
            }
            Source::Gif => crate::gif::decode(&self.path, range, &mut out)?,
            Source::Png(names) => {
                let files: Vec<PathBuf> = names.iter().map(|n| self.path.join(n)).collect();
                let size = (self.info.width, self.info.height);
                crate::png::decode(&files, size, range, &mut out)?
            }
            #[cfg(feature = "ffmpeg")]
            Source::Ffmpeg(source) => {
                let ffmpeg = crate::ffmpeg::Ffmpeg::find()
                    .ok_or_else(|| VideoError::new(&self.path, "FFmpeg is no longer installed"))?;
                // FFmpeg scales as it decodes.
                out.size = None;
                let read = crate::ffmpeg::Request {
                    path: &self.path,
                    source,
                    timeline: &self.info.timeline,
                    first,
                    count: last + 1 - first,
                    decode,
                };
                ffmpeg.decode(&read, &mut |frame| out.push(frame))?;
            }
            #[cfg(feature = "h264")]
            Source::H264(track) => crate::mp4::decode(&self.path, track, range, &mut out)?,
        }
        out.finish(&self.path)
    }
}

/// The decoded frames a read keeps: those at its indices, resized if asked. Decoders push
/// every frame from the read's first index on, in order.
pub(crate) struct Frames<'a> {
    indices: &'a [usize],
    /// The index of the next frame pushed.
    next: usize,
    /// How many of `indices` are done.
    done: usize,
    size: Option<(u32, u32)>,
    out: Vec<RgbImage>,
}

impl<'a> Frames<'a> {
    fn new(indices: &'a [usize], size: Option<(u32, u32)>) -> Self {
        Self {
            indices,
            next: indices[0],
            done: 0,
            size,
            out: Vec::with_capacity(indices.len()),
        }
    }

    /// The next decoded frame.
    pub(crate) fn push(&mut self, frame: RgbImage) {
        let wanted = self.indices[self.done..]
            .iter()
            .take_while(|&&i| i == self.next)
            .count();
        if wanted > 0 {
            let frame = match self.size {
                Some((w, h)) if (w, h) != frame.dimensions() => {
                    imageops::resize(&frame, w, h, FilterType::Triangle)
                }
                _ => frame,
            };
            for _ in 1..wanted {
                self.out.push(frame.clone());
            }
            self.out.push(frame);
            self.done += wanted;
        }
        self.next += 1;
    }

    fn finish(self, path: &Path) -> Result<Vec<RgbImage>, VideoError> {
        if self.done < self.indices.len() {
            return Err(VideoError::new(
                path,
                format!(
                    "decoded {} of the {} frames asked for",
                    self.done,
                    self.indices.len()
                ),
            ));
        }
        Ok(self.out)
    }
}

/// The lower-case extension of `path` ("" without one).
pub(crate) fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default()
}
