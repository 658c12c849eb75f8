//! Every other container and codec through the `ffmpeg` and `ffprobe` programs.
//!
//! We drive FFmpeg's command-line tools instead of linking libav*: any FFmpeg the user has
//! works (4.x to 7.x, static builds, distribution builds), nothing is needed to build this
//! crate, a decoder crash or hang on a damaged file ends one child process (which is killed
//! when it stops making progress) rather than a training run, and FFmpeg's own licence
//! (GPL builds with x264/x265) stays with the program the user installed. The cost is one
//! process per read, small next to decoding.
//!
//! Frames come back as a stream of PPM pictures (`-f image2pipe -c:v ppm`): each carries its
//! size, so rotation (applied by FFmpeg, as phones record it) and scaling need no guessing.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::take::Timeline;
use crate::video::Decode;
use crate::{Clip, VideoError, check_size};

/// How long a child process may go without producing anything before it is killed.
const STALL: Duration = Duration::from_secs(60);
/// At most this many frames at the very end of a video may fail to decode without an error.
pub(crate) const MISSING_AT_END: usize = 2;

/// The FFmpeg programs.
#[derive(Debug)]
pub struct Ffmpeg {
    ffmpeg: PathBuf,
    ffprobe: PathBuf,
    encoders: OnceLock<String>,
    fps_mode: OnceLock<bool>,
}

impl Ffmpeg {
    /// The FFmpeg of this machine: `CMD_FFMPEG` (the ffmpeg program, with ffprobe beside it or
    /// in `CMD_FFPROBE`), else `ffmpeg` and `ffprobe` on `PATH`. Looked up once per process.
    pub fn find() -> Option<&'static Ffmpeg> {
        static FOUND: OnceLock<Option<Ffmpeg>> = OnceLock::new();
        FOUND.get_or_init(Self::locate).as_ref()
    }

    fn locate() -> Option<Ffmpeg> {
        let exe = |name: &str| format!("{name}{}", std::env::consts::EXE_SUFFIX);
        let ffmpeg = match std::env::var_os("CMD_FFMPEG") {
            Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
            None => on_path(&exe("ffmpeg")),
        }?;
        let ffprobe = match std::env::var_os("CMD_FFPROBE") {
            Some(p) => Some(PathBuf::from(p)),
            None => ffmpeg
                .parent()
                .map(|dir| dir.join(exe("ffprobe")))
                .filter(|p| p.is_file())
                .or_else(|| on_path(&exe("ffprobe"))),
        }
        .filter(|p| p.is_file())?;
        Some(Ffmpeg {
            ffmpeg,
            ffprobe,
            encoders: OnceLock::new(),
            fps_mode: OnceLock::new(),
        })
    }

    /// Reads what a file holds: its first video stream, the size it is shown at, its frames'
    /// times.
    pub(crate) fn probe(&self, path: &Path) -> Result<(FfmpegSource, ProbeInfo), VideoError> {
        let err = |m: String| VideoError::new(path, m);
        // Containers other than MP4's do not say how many frames they hold: list their
        // packets in the same run (MP4 counts them, and reading every packet of a long MP4
        // would read the whole file).
        let mp4 = matches!(
            crate::video::extension(path).as_str(),
            "mp4" | "m4v" | "mov" | "3gp"
        );
        let mut args = vec!["-print_format", "json", "-show_format", "-show_streams"];
        if !mp4 {
            args.extend(["-show_entries", "packet=stream_index,pts_time"]);
        }
        let out = self.run_probe(path, &args)?;
        let json: ProbeJson = serde_json::from_slice(&out)
            .map_err(|e| err(format!("unexpected ffprobe output: {e}")))?;
        let video = json
            .streams
            .iter()
            .find(|s| s.codec_type.as_deref() == Some("video") && !s.is_attached_picture())
            .ok_or_else(|| {
                let kinds: Vec<&str> = json
                    .streams
                    .iter()
                    .filter_map(|s| s.codec_type.as_deref())
                    .collect();
                err(if kinds.is_empty() {
                    "holds no streams at all (not a video file?)".into()
                } else {
                    format!(
                        "has no video stream (found only {}); a video file is needed",
                        kinds.join(", ")
                    )
                })
            })?;
        let (Some(coded_w), Some(coded_h)) = (video.width, video.height) else {
            return Err(err("the video stream does not say its frame size".into()));
        };
        check_size(path, coded_w, coded_h)?;
        let rotation = video.rotation();
        let (mut width, mut height) = if rotation % 180 == 90 {
            (coded_h, coded_w)
        } else {
            (coded_w, coded_h)
        };
        // Non-square pixels are shown stretched: FFmpeg scales them to square ones.
        let sar = video.sample_aspect_ratio.as_deref().and_then(rational);
        let anamorphic = sar.is_some_and(|s| s > 0.0 && (s - 1.0).abs() > 1e-3);
        if let Some(s) = sar.filter(|_| anamorphic) {
            if rotation % 180 == 90 {
                height = ((height as f64 * s).round() as u32).max(1);
            } else {
                width = ((width as f64 * s).round() as u32).max(1);
            }
            check_size(path, width, height)?;
        }
        let format_start = json
            .format
            .as_ref()
            .and_then(|f| f.start_time.as_deref())
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        let stream_start = video
            .start_time
            .as_deref()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(format_start);
        let avg = video.avg_frame_rate.as_deref().and_then(rational);
        let real = video.r_frame_rate.as_deref().and_then(rational);
        // MP4/MOV count the frames they hold; others (AVI counts dropped frames, which decode
        // to nothing) are counted from their packets below.
        let format = json.format.as_ref().and_then(|f| f.format_name.as_deref());
        let in_format =
            |names: &[&str]| format.is_some_and(|f| f.split(',').any(|n| names.contains(&n)));
        let frames = video
            .nb_frames
            .as_deref()
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|_| in_format(&["mov", "mp4"]));
        let constant = match (frames, avg, real) {
            (Some(n), Some(avg), Some(real)) if n > 0 && (avg - real).abs() <= 0.02 * real => {
                Some((n, avg))
            }
            _ => None,
        };
        let (timeline, origin) = match constant {
            Some((frames, fps)) => (Timeline::Constant { fps, frames }, stream_start),
            // The header does not say how many frames there are, or the rate varies: read
            // every packet's time (the container's data, no decoding).
            None => {
                let times = if mp4 {
                    self.packet_times(path, video.index)?
                } else {
                    times_of(&json.packets, video.index)
                };
                if times.is_empty() {
                    return Err(err("the video stream holds no frames".into()));
                }
                match times.iter().copied().collect::<Option<Vec<f64>>>() {
                    Some(times) => {
                        let first = times.iter().copied().fold(f64::INFINITY, f64::min);
                        (Timeline::from_times(times).expect("not empty"), first)
                    }
                    // Some packets carry no time (MPEG program streams): count them, at the
                    // stream's rate.
                    None => {
                        let fps = avg.or(real).unwrap_or(25.0);
                        let frames = times.len();
                        (Timeline::Constant { fps, frames }, stream_start)
                    }
                }
            }
        };
        // Containers with an index seek to the keyframe before a frame; others (MPEG
        // transport and program streams, Ogg) can land past it, so they are decoded from the
        // start, FFmpeg dropping the frames before the first one asked for.
        let indexed = in_format(&["mov", "mp4", "matroska", "webm", "avi"]);
        let codec = match (&video.codec_name, &video.profile) {
            (Some(c), Some(p)) if !p.is_empty() && p != "unknown" => format!("{c} ({p})"),
            (Some(c), _) => c.clone(),
            _ => "unknown codec".into(),
        };
        Ok((
            FfmpegSource {
                stream: video.index,
                origin: origin - format_start,
                display: anamorphic.then_some((width, height)),
                indexed,
            },
            ProbeInfo {
                width,
                height,
                timeline,
                codec,
                rotation,
            },
        ))
    }

    /// Runs ffprobe on `path` with `args` and returns its standard output.
    fn run_probe(&self, path: &Path, args: &[&str]) -> Result<Vec<u8>, VideoError> {
        let mut cmd = Command::new(&self.ffprobe);
        cmd.args(["-v", "error"]).args(args).arg(path);
        let mut out = Vec::new();
        let status = run(&mut cmd, path, "ffprobe", |chunk| {
            out.extend_from_slice(&chunk);
            Ok(())
        })?;
        if !status.success {
            return Err(VideoError::new(
                path,
                format!("not a readable video: {}", status.message("ffprobe", path)),
            ));
        }
        Ok(out)
    }

    /// The presentation time of every packet of stream `index`, in seconds (`None` for a
    /// packet without one).
    fn packet_times(&self, path: &Path, index: usize) -> Result<Vec<Option<f64>>, VideoError> {
        let stream = index.to_string();
        let out = self.run_probe(
            path,
            &[
                "-select_streams",
                &stream,
                "-show_entries",
                "packet=pts_time",
                "-of",
                "json",
            ],
        )?;
        let json: PacketsJson = serde_json::from_slice(&out).map_err(|e| {
            VideoError::new(path, format!("unexpected ffprobe output for packets: {e}"))
        })?;
        Ok(times_of(&json.packets, index))
    }

    /// Decodes the frames `read` asks for, passing each to `sink` in order. Returns how many
    /// frames came. Up to [`MISSING_AT_END`] frames at the end of the video that do not decode
    /// come as copies of the last one that did.
    pub(crate) fn decode(
        &self,
        read: &Request<'_>,
        sink: &mut dyn FnMut(RgbImage),
    ) -> Result<usize, VideoError> {
        let (path, first, count) = (read.path, read.first, read.count);
        let seek = match first {
            0 => Seek::None,
            _ if read.source.indexed => Seek::Input,
            _ => Seek::Output,
        };
        let got = std::cell::Cell::new(0);
        // The last frames are kept in case the video's last frames do not decode.
        let mut last: Option<RgbImage> = None;
        let mut counted = |f: RgbImage| {
            got.set(got.get() + 1);
            if got.get() + MISSING_AT_END >= count {
                last = Some(f.clone());
            }
            sink(f)
        };
        let ended = if seek == Seek::Input {
            // The frames of a seek are held back until FFmpeg has finished, because a seek can
            // land on a keyframe that is not a clean start: an open-GOP I frame whose later
            // frames refer to frames before it (imageio's cockatoo.mp4). FFmpeg then conceals
            // the missing pictures, differently from run to run, and says so on stderr. That,
            // or a seek past the keyframe it needs (no frame at all), decodes from the start.
            let mut held = Vec::new();
            let ended = self.decode_once(read, seek, &mut |f| held.push(f))?;
            if held.is_empty() || !ended.stderr.trim().is_empty() {
                self.decode_once(read, Seek::Output, &mut counted)?
            } else {
                held.into_iter().for_each(&mut counted);
                ended
            }
        } else {
            self.decode_once(read, seek, &mut counted)?
        };
        let mut got = got.get();
        // Packet counts can hold a frame or two at the very end that decode to nothing
        // (opencv-doc's box.mp4, node-opencv's motion.mov): those are shown as the last
        // frame that did decode, as a player shows it.
        if let Some(frame) = last.filter(|_| {
            ended.success
                && got < count
                && got + MISSING_AT_END >= count
                && first + count == read.timeline.len()
        }) {
            while got < count {
                sink(frame.clone());
                got += 1;
            }
        }
        if got < count {
            let why = ended.reason("ffmpeg", path);
            return Err(VideoError::new(
                path,
                if ended.success {
                    format!(
                        "decoded only {got} of the {count} frames from frame {first} (of {}): \
                         the file may be truncated or damaged{}",
                        read.timeline.len(),
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(" ({why})")
                        }
                    )
                } else {
                    format!("cannot decode frame {}: {why}", first + got)
                },
            ));
        }
        Ok(got)
    }

    /// One run of ffmpeg for [`Self::decode`], getting to the first frame by `seek`.
    fn decode_once(
        &self,
        read: &Request<'_>,
        seek: Seek,
        sink: &mut dyn FnMut(RgbImage),
    ) -> Result<Ended, VideoError> {
        let Request {
            path,
            source,
            timeline,
            first,
            count,
            decode,
        } = *read;
        let mut cmd = Command::new(&self.ffmpeg);
        cmd.args(["-nostdin", "-hide_banner", "-v", "error"]);
        if let Some(n) = decode.threads {
            cmd.args(["-threads", &n.to_string()]);
        }
        // Half a frame before the first frame, so it is the first one at or after the time.
        let at = (first > 0).then(|| {
            let gap = timeline.time(first) - timeline.time(first - 1);
            let at = (source.origin + timeline.time(first) - gap / 2.0).max(0.0);
            format!("{at:.6}")
        });
        // Input seeking starts decoding at the keyframe before the time (FFmpeg then drops the
        // frames shown earlier); output seeking decodes from the start and drops them.
        if let (Seek::Input, Some(at)) = (seek, &at) {
            cmd.args(["-ss", at]);
        }
        cmd.arg("-i").arg(path);
        if let (Seek::Output, Some(at)) = (seek, &at) {
            cmd.args(["-ss", at]);
        }
        cmd.args(["-map", &format!("0:{}", source.stream), "-an", "-sn", "-dn"]);
        // Every decoded frame once, none duplicated or dropped for a frame rate.
        cmd.args([self.passthrough_flag(), "passthrough"]);
        if let Some((w, h)) = decode.size.or(source.display) {
            let scale = format!("scale={w}:{h}:flags=area");
            cmd.args(["-vf", &scale, "-filter_threads", "1"]);
        }
        cmd.args(["-frames:v", &count.to_string()]);
        cmd.args([
            "-f",
            "image2pipe",
            "-c:v",
            "ppm",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ]);
        let mut frames = PpmStream::default();
        let mut got = 0;
        run(&mut cmd, path, "ffmpeg", |chunk| {
            for frame in frames.push(&chunk).map_err(|e| VideoError::new(path, e))? {
                if got < count {
                    sink(frame);
                }
                got += 1;
            }
            Ok(())
        })
    }

    /// The option that sets how frames map to output frames: `-fps_mode` (FFmpeg 5.1 and
    /// later; 7 and later know no other), or `-vsync` before it.
    fn passthrough_flag(&self) -> &'static str {
        let new = *self.fps_mode.get_or_init(|| {
            Command::new(&self.ffmpeg)
                .args(["-hide_banner", "-h", "long"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\n-fps_mode"))
        });
        if new { "-fps_mode" } else { "-vsync" }
    }

    /// Whether this FFmpeg has the encoder `name` (e.g. `libx264`).
    pub fn has_encoder(&self, name: &str) -> bool {
        let list = self.encoders.get_or_init(|| {
            Command::new(&self.ffmpeg)
                .args(["-hide_banner", "-encoders"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        });
        list.lines()
            .any(|l| l.split_whitespace().nth(1) == Some(name))
    }

    /// Encodes `clip` into `path` with these output arguments (codec, container), atomically.
    pub(crate) fn encode(
        &self,
        path: &Path,
        clip: &Clip,
        output: &[&str],
    ) -> Result<(), VideoError> {
        let (w, h) = (clip.width() & !1, clip.height() & !1);
        if w == 0 || h == 0 {
            return Err(VideoError::new(
                path,
                format!(
                    "frames of {}x{} are too small to encode",
                    clip.width(),
                    clip.height()
                ),
            ));
        }
        let frames: Vec<Vec<u8>> = clip
            .frames
            .iter()
            .map(|f| {
                image::imageops::crop_imm(f, 0, 0, w, h)
                    .to_image()
                    .into_raw()
            })
            .collect();
        crate::replace_atomic(path, |tmp| {
            let mut cmd = Command::new(&self.ffmpeg);
            cmd.args(["-hide_banner", "-v", "error", "-y"]);
            cmd.args(["-f", "rawvideo", "-pix_fmt", "rgb24"]);
            cmd.args([
                "-s",
                &format!("{w}x{h}"),
                "-r",
                &format!("{}", clip.fps.max(0.1)),
            ]);
            cmd.args(["-i", "pipe:0", "-an"]).args(output).arg(tmp);
            let status =
                run_with_input(&mut cmd, frames).map_err(|e| std::io::Error::other(e.message))?;
            if status.success {
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "ffmpeg could not encode it: {}",
                    status.message("ffmpeg", tmp)
                )))
            }
        })
    }
}

/// What [`Ffmpeg::decode`] reads: `count` frames from `first` (in presentation order) of
/// the stream `source` names, decoded as `decode` says.
#[derive(Clone, Copy)]
pub(crate) struct Request<'a> {
    pub path: &'a Path,
    pub source: &'a FfmpegSource,
    pub timeline: &'a Timeline,
    pub first: usize,
    pub count: usize,
    pub decode: Decode,
}

/// How [`Ffmpeg::decode`] gets to its first frame.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seek {
    /// The first frame is the first.
    None,
    /// From the keyframe before it (fast).
    Input,
    /// Decoding from the start (for containers without an index).
    Output,
}

/// Where a video's frames are, for [`Ffmpeg::decode`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FfmpegSource {
    /// The stream's index in the file.
    stream: usize,
    /// Seconds from the file's start to the first frame.
    origin: f64,
    /// The square-pixel size of a video with non-square pixels.
    display: Option<(u32, u32)>,
    /// Whether the container's index lets FFmpeg seek to a keyframe.
    indexed: bool,
}

/// What [`Ffmpeg::probe`] learns of a video.
pub(crate) struct ProbeInfo {
    pub width: u32,
    pub height: u32,
    pub timeline: Timeline,
    pub codec: String,
    pub rotation: u32,
}

#[derive(Deserialize)]
struct ProbeJson {
    #[serde(default)]
    streams: Vec<StreamJson>,
    format: Option<FormatJson>,
    #[serde(default)]
    packets: Vec<PacketJson>,
}

#[derive(Deserialize)]
struct FormatJson {
    format_name: Option<String>,
    start_time: Option<String>,
}

#[derive(Deserialize)]
struct PacketsJson {
    #[serde(default)]
    packets: Vec<PacketJson>,
}

#[derive(Deserialize)]
struct PacketJson {
    stream_index: Option<usize>,
    pts_time: Option<String>,
}

/// The presentation times of stream `index`'s packets (`None` for one without a time).
fn times_of(packets: &[PacketJson], index: usize) -> Vec<Option<f64>> {
    packets
        .iter()
        .filter(|p| p.stream_index.is_none_or(|i| i == index))
        .map(|p| p.pts_time.as_deref().and_then(|t| t.parse::<f64>().ok()))
        .collect()
}

#[derive(Deserialize)]
struct StreamJson {
    index: usize,
    codec_type: Option<String>,
    codec_name: Option<String>,
    profile: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    sample_aspect_ratio: Option<String>,
    r_frame_rate: Option<String>,
    avg_frame_rate: Option<String>,
    nb_frames: Option<String>,
    start_time: Option<String>,
    #[serde(default)]
    disposition: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    tags: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    side_data_list: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl StreamJson {
    /// Cover art in a music or video file is a one-picture "video" stream.
    fn is_attached_picture(&self) -> bool {
        self.disposition
            .get("attached_pic")
            .and_then(serde_json::Value::as_i64)
            == Some(1)
    }

    /// The clockwise rotation (0, 90, 180, 270) that shows the frames upright: from the
    /// display matrix (FFmpeg 5 and later say it counter-clockwise) or the older `rotate` tag.
    fn rotation(&self) -> u32 {
        let matrix = self
            .side_data_list
            .iter()
            .find_map(|d| d.get("rotation").and_then(serde_json::Value::as_f64))
            .map(|ccw| -ccw);
        let tag = self
            .tags
            .get("rotate")
            .and_then(serde_json::Value::as_str)
            .and_then(|s| s.parse::<f64>().ok());
        let degrees = matrix.or(tag).unwrap_or(0.0);
        ((degrees / 90.0).round() as i64).rem_euclid(4) as u32 * 90
    }
}

/// "30000/1001" -> 29.97; `None` for "0/0", "N/A" and the like.
fn rational(s: &str) -> Option<f64> {
    let (n, d) = s.split_once(['/', ':']).unwrap_or((s, "1"));
    let (n, d) = (n.trim().parse::<f64>().ok()?, d.trim().parse::<f64>().ok()?);
    let v = n / d;
    (v.is_finite() && v > 0.0).then_some(v)
}

/// `name` in one of the folders of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// How a child process ended.
struct Ended {
    success: bool,
    code: Option<i32>,
    stderr: String,
}

impl Ended {
    fn new(status: ExitStatus, stderr: String) -> Self {
        Self {
            success: status.success(),
            code: status.code(),
            stderr,
        }
    }

    fn message(&self, program: &str, path: &Path) -> String {
        match (self.reason(program, path), self.code) {
            (why, _) if !why.is_empty() => why,
            (_, Some(code)) => format!("{program} exited with status {code}"),
            (_, None) => format!("{program} was killed"),
        }
    }

    /// What the program said went wrong about `path`, in the words that matter: a truncated
    /// file is called so; otherwise its first error ("" when it said nothing).
    fn reason(&self, program: &str, path: &Path) -> String {
        // "[h264 @ 0x55d5...] Invalid NAL unit size" -> "Invalid NAL unit size", and
        // "FILE: Invalid data" -> "Invalid data" (the error names the file already).
        let file = format!("{}: ", path.display());
        let strip = |line: &str| {
            let line = line.trim();
            let line = match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
                Some((_, rest)) => rest,
                None => line,
            };
            line.strip_prefix(file.as_str()).unwrap_or(line).to_string()
        };
        let lines: Vec<String> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(strip)
            .collect();
        let truncated = ["partial file", "moov atom not found", "End of file"];
        if let Some(line) = lines
            .iter()
            .find(|l| truncated.iter().any(|t| l.contains(t)))
        {
            return format!("the file is truncated ({program}: \"{line}\")");
        }
        lines
            .first()
            .map_or(String::new(), |l| format!("{program} says \"{l}\""))
    }
}

/// Runs `cmd`, passing its standard output to `sink` as it comes and keeping the end of its
/// standard error. The process is killed if it goes [`STALL`] without output, and when `sink`
/// fails.
fn run(
    cmd: &mut Command,
    path: &Path,
    program: &str,
    mut sink: impl FnMut(Vec<u8>) -> Result<(), VideoError>,
) -> Result<Ended, VideoError> {
    let mut child = spawn(
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()),
        path,
        program,
    )?;
    let stderr = read_stderr(child.stderr.take());
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = sync_channel::<Vec<u8>>(4);
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let outcome = loop {
        match rx.recv_timeout(STALL) {
            Ok(chunk) => {
                if let Err(e) = sink(chunk) {
                    break Err(e);
                }
            }
            Err(RecvTimeoutError::Disconnected) => break Ok(()),
            Err(RecvTimeoutError::Timeout) => {
                break Err(VideoError::new(
                    path,
                    format!(
                        "{program} produced nothing for {} s and was stopped",
                        STALL.as_secs()
                    ),
                ));
            }
        }
    };
    if outcome.is_err() {
        let _ = child.kill();
    }
    drop(rx);
    let _ = reader.join();
    let status = wait(&mut child, path, program)?;
    outcome?;
    Ok(Ended::new(status, stderr.join().unwrap_or_default()))
}

/// Runs `cmd` with `frames` written to its standard input, killing it if it stops taking them
/// for [`STALL`].
fn run_with_input(cmd: &mut Command, frames: Vec<Vec<u8>>) -> Result<Ended, VideoError> {
    let path = Path::new("ffmpeg");
    let mut child = spawn(
        cmd.stdin(Stdio::piped()).stdout(Stdio::null()),
        path,
        "ffmpeg",
    )?;
    let stderr = read_stderr(child.stderr.take());
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let (tx, rx) = sync_channel::<()>(frames.len() + 1);
    let writer = std::thread::spawn(move || {
        for frame in &frames {
            if stdin.write_all(frame).is_err() {
                break;
            }
            let _ = tx.send(());
        }
        // Closing stdin tells ffmpeg the input has ended.
    });
    loop {
        match rx.recv_timeout(STALL) {
            Ok(()) => {}
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                break;
            }
        }
    }
    let _ = writer.join();
    let status = wait(&mut child, path, "ffmpeg")?;
    Ok(Ended::new(status, stderr.join().unwrap_or_default()))
}

fn spawn(cmd: &mut Command, path: &Path, program: &str) -> Result<Child, VideoError> {
    cmd.stderr(Stdio::piped())
        .spawn()
        .map_err(|e| VideoError::new(path, format!("cannot run {program}: {e}")))
}

/// Waits for `child`, killing it after [`STALL`].
fn wait(child: &mut Child, path: &Path, program: &str) -> Result<ExitStatus, VideoError> {
    let deadline = Instant::now() + STALL;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(VideoError::new(
                    path,
                    format!("{program} did not finish and was stopped"),
                ));
            }
            Err(e) => {
                return Err(VideoError::new(path, format!("waiting for {program}: {e}")));
            }
        }
    }
}

/// Reads a child's standard error in a thread (so a chatty child never blocks on a full
/// pipe), keeping its last 8 KiB.
fn read_stderr(stderr: Option<ChildStderr>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let Some(stderr) = stderr else {
            return String::new();
        };
        let mut kept: Vec<u8> = Vec::new();
        let mut reader = BufReader::new(stderr);
        loop {
            match reader.fill_buf() {
                Ok([]) | Err(_) => break,
                Ok(buf) => {
                    kept.extend_from_slice(buf);
                    let n = buf.len();
                    reader.consume(n);
                    if kept.len() > 16 << 10 {
                        kept.drain(..kept.len() - (8 << 10));
                    }
                }
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

/// Splits a byte stream of binary PPM (`P6`, 8-bit) pictures into frames.
#[derive(Default)]
struct PpmStream {
    buf: Vec<u8>,
}

impl PpmStream {
    /// Adds bytes and returns the frames they complete.
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<RgbImage>, String> {
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while let Some((w, h, start)) = ppm_header(&self.buf)? {
            let end = start + (w as usize) * (h as usize) * 3;
            if self.buf.len() < end {
                break;
            }
            let pixels = self.buf[start..end].to_vec();
            self.buf.drain(..end);
            frames.push(RgbImage::from_raw(w, h, pixels).expect("w * h * 3 bytes"));
        }
        Ok(frames)
    }
}

/// The size and the data offset of the PPM picture at the start of `buf`, if its header is
/// complete.
fn ppm_header(buf: &[u8]) -> Result<Option<(u32, u32, usize)>, String> {
    let mut fields = Vec::with_capacity(4);
    let mut i = 0;
    while fields.len() < 4 {
        while i < buf.len() && buf[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < buf.len() && !buf[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= buf.len() {
            return Ok(None);
        }
        fields.push(&buf[start..i]);
    }
    let number = |f: &[u8]| -> Result<u32, String> {
        std::str::from_utf8(f)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                format!(
                    "unexpected frame data from ffmpeg: {:?}",
                    String::from_utf8_lossy(f)
                )
            })
    };
    if fields[0] != b"P6" {
        return Err("unexpected frame data from ffmpeg (not PPM)".into());
    }
    let (w, h, max) = (number(fields[1])?, number(fields[2])?, number(fields[3])?);
    if max != 255 || w == 0 || h == 0 {
        return Err(format!("unexpected {w}x{h} frame (max {max}) from ffmpeg"));
    }
    // One whitespace byte ends the header.
    Ok(Some((w, h, i + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_frames_split_across_chunks() {
        let mut bytes = Vec::new();
        for v in [10u8, 20] {
            bytes.extend_from_slice(b"P6\n2 1\n255\n");
            bytes.extend_from_slice(&[v; 6]);
        }
        let mut stream = PpmStream::default();
        let mut frames = Vec::new();
        for chunk in bytes.chunks(5) {
            frames.extend(stream.push(chunk).unwrap());
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].get_pixel(1, 0).0, [20, 20, 20]);
        assert!(PpmStream::default().push(b"P5\n1 1\n255\n\0").is_err());
    }

    #[test]
    fn rates_and_rotations() {
        assert!((rational("30000/1001").unwrap() - 29.97).abs() < 1e-3);
        assert_eq!(rational("0/0"), None);
        assert_eq!(rational("N/A"), None);
        assert_eq!(rational("4:3"), Some(4.0 / 3.0));
        let stream = |json: &str| -> StreamJson { serde_json::from_str(json).unwrap() };
        let s = stream(r#"{"index":0,"side_data_list":[{"rotation":-90}]}"#);
        assert_eq!(s.rotation(), 90);
        let s = stream(r#"{"index":0,"tags":{"rotate":"270"}}"#);
        assert_eq!(s.rotation(), 270);
        let s = stream(r#"{"index":0,"side_data_list":[{"rotation":180}]}"#);
        assert_eq!(s.rotation(), 180);
        let s = stream(r#"{"index":0,"disposition":{"attached_pic":1}}"#);
        assert!(s.is_attached_picture());
    }
}
