//! YUV4MPEG2 (`.y4m`) reading through the pure-Rust `y4m` crate, 8-bit 4:2:0, 4:2:2, 4:4:4 and
//! mono, BT.601 colours (limited range unless the header says `XCOLORRANGE=FULL`). Frames with
//! a pixel aspect other than 1:1 (`A128:117`) are shown at their square-pixel size, as players
//! show them.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use image::RgbImage;
use y4m::Colorspace;

use crate::take::Timeline;
use crate::video::{Frames, VideoInfo};
use crate::{MAX_PIXELS, VideoError, check_size};

/// Reads the header and counts the frames; true when the pixels are not square (frames are
/// then resized to the size [`VideoInfo`] gives).
pub(crate) fn probe(path: &Path) -> Result<(VideoInfo, bool), VideoError> {
    let mut decoder = Decoder::open(path)?;
    let (size, header) = (decoder.size, decoder.header_len);
    // Frames are `FRAME\n` and the planes, unless a frame header carries parameters: then
    // (or when the sizes do not add up, e.g. a cut file) count them one by one.
    let frame = 6 + decoder.frame_bytes() as u64;
    let frames = if size >= header && (size - header).is_multiple_of(frame) {
        ((size - header) / frame) as usize
    } else {
        let mut n = 0;
        while decoder.next(false)?.is_some() {
            n += 1;
        }
        n
    };
    if frames == 0 {
        return Err(VideoError::new(path, "contains no frames"));
    }
    let aspect = decoder.inner.get_pixel_aspect();
    let (mut width, height) = (decoder.width as u32, decoder.height as u32);
    let anamorphic = aspect.num > 0 && aspect.den > 0 && aspect.num != aspect.den;
    if anamorphic {
        width = ((width as f64 * aspect.num as f64 / aspect.den as f64).round() as u32).max(1);
        check_size(path, width, height)?;
    }
    let info = VideoInfo {
        width,
        height,
        timeline: Timeline::Constant {
            fps: decoder.fps,
            frames,
        },
        codec: "y4m".into(),
        rotation: 0,
    };
    Ok((info, anamorphic))
}

/// Passes frames `first..=last` to `frames`.
pub(crate) fn decode(
    path: &Path,
    (first, last): (usize, usize),
    frames: &mut Frames,
) -> Result<(), VideoError> {
    let mut decoder = Decoder::open(path)?;
    for _ in 0..first {
        if decoder.next(false)?.is_none() {
            return Err(VideoError::new(
                path,
                format!("has fewer than {first} frames"),
            ));
        }
    }
    for i in first..=last {
        match decoder.next(true)? {
            Some(frame) => frames.push(frame),
            None => {
                return Err(VideoError::new(
                    path,
                    format!("has only {i} frames, frame {} was asked for", last + 1),
                ));
            }
        }
    }
    Ok(())
}

/// The stream header line's length, and the frame size it names (checked before anything is
/// allocated for it).
fn read_header(path: &Path) -> Result<u64, VideoError> {
    let err = |m: String| VideoError::new(path, m);
    let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let mut line = Vec::new();
    BufReader::new(file)
        .take(64 << 10)
        .read_until(b'\n', &mut line)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    let field = |tag: u8| {
        line.split(|b| b.is_ascii_whitespace())
            .skip(1)
            .find(|f| f.first() == Some(&tag))
            .and_then(|f| std::str::from_utf8(&f[1..]).ok()?.parse::<u64>().ok())
    };
    if let (Some(w), Some(h)) = (field(b'W'), field(b'H')) {
        let clamp = |v: u64| v.min(u32::MAX as u64) as u32;
        check_size(path, clamp(w), clamp(h))?;
    }
    Ok(line.len() as u64)
}

/// A y4m stream being read frame by frame.
struct Decoder<'p> {
    path: &'p Path,
    inner: y4m::Decoder<Counting<BufReader<File>>>,
    consumed: Rc<Cell<u64>>,
    good_bytes: u64,
    size: u64,
    header_len: u64,
    width: usize,
    height: usize,
    chroma: (usize, usize),
    full_range: bool,
    fps: f64,
    read: usize,
}

impl<'p> Decoder<'p> {
    fn open(path: &'p Path) -> Result<Self, VideoError> {
        let err = |m: String| VideoError::new(path, m);
        let header_len = read_header(path)?;
        let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let consumed = Rc::new(Cell::new(0u64));
        let reader = Counting {
            inner: BufReader::new(file),
            count: consumed.clone(),
        };
        // A frame of the largest accepted size in 4:4:4 (16-bit samples count double).
        let limits = y4m::Limits {
            bytes: MAX_PIXELS as usize * 3 * 2,
        };
        let inner = y4m::Decoder::new_with_limits(reader, limits).map_err(|e| match e {
            y4m::Error::OutOfMemory => err(format!(
                "the header's frame size is too large (more than {MAX_PIXELS} pixels)"
            )),
            e => err(format!("not a valid y4m file: {e}")),
        })?;
        let (width, height) = (inner.get_width(), inner.get_height());
        check_size(path, width as u32, height as u32)?;
        let chroma = match inner.get_colorspace() {
            Colorspace::C420
            | Colorspace::C420jpeg
            | Colorspace::C420paldv
            | Colorspace::C420mpeg2 => (width.div_ceil(2), height.div_ceil(2)),
            Colorspace::C422 => (width.div_ceil(2), height),
            Colorspace::C444 => (width, height),
            Colorspace::Cmono => (0, 0),
            other => {
                return Err(err(format!(
                    "unsupported y4m colour space {other:?}: expected 8-bit 4:2:0, 4:2:2, \
                     4:4:4 or mono"
                )));
            }
        };
        let full_range =
            String::from_utf8_lossy(inner.get_raw_params()).contains("XCOLORRANGE=FULL");
        let rate = inner.get_framerate();
        let fps = if rate.den == 0 || rate.num == 0 {
            25.0
        } else {
            rate.num as f64 / rate.den as f64
        };
        let good_bytes = consumed.get();
        Ok(Self {
            path,
            inner,
            consumed,
            good_bytes,
            size,
            header_len,
            width,
            height,
            chroma,
            full_range,
            fps,
            read: 0,
        })
    }

    /// Bytes of one frame's planes.
    fn frame_bytes(&self) -> usize {
        self.width * self.height + 2 * self.chroma.0 * self.chroma.1
    }

    /// The next frame (converted to RGB only when `convert`), `None` at the end.
    fn next(&mut self, convert: bool) -> Result<Option<RgbImage>, VideoError> {
        let err = |m: String| VideoError::new(self.path, m);
        match self.inner.read_frame() {
            Ok(frame) => {
                self.read += 1;
                self.good_bytes = self.consumed.get();
                Ok(Some(if convert {
                    let planes = [
                        frame.get_y_plane(),
                        frame.get_u_plane(),
                        frame.get_v_plane(),
                    ];
                    to_rgb(
                        planes,
                        (self.width, self.height),
                        self.chroma,
                        self.full_range,
                    )
                } else {
                    RgbImage::new(0, 0)
                }))
            }
            Err(y4m::Error::EOF) => {
                // The crate reports a frame cut short as a plain end of file: tell them apart
                // by whether anything was left after the last whole frame.
                if self.good_bytes < self.size {
                    return Err(err(format!(
                        "truncated: frame {} is incomplete ({} of {} bytes are whole frames)",
                        self.read + 1,
                        self.good_bytes,
                        self.size
                    )));
                }
                Ok(None)
            }
            Err(e) => Err(err(format!("corrupt frame {}: {e}", self.read + 1))),
        }
    }
}

/// YCbCr (BT.601) to RGB for one frame; chroma planes of `cw x ch` (0 for mono).
fn to_rgb(
    planes: [&[u8]; 3],
    (w, h): (usize, usize),
    (cw, ch): (usize, usize),
    full: bool,
) -> RgbImage {
    let (sx, sy) = if cw == 0 {
        (1, 1)
    } else {
        (w.div_ceil(cw), h.div_ceil(ch))
    };
    let mut out = RgbImage::new(w as u32, h as u32);
    for y in 0..h {
        for x in 0..w {
            let luma = planes[0][y * w + x] as f32;
            let (cb, cr) = if cw == 0 {
                (128.0, 128.0)
            } else {
                let i = (y / sy) * cw + x / sx;
                (planes[1][i] as f32, planes[2][i] as f32)
            };
            let (yy, scale_c) = if full {
                (luma, 1.0)
            } else {
                ((luma - 16.0) * 255.0 / 219.0, 255.0 / 224.0)
            };
            let (cb, cr) = ((cb - 128.0) * scale_c, (cr - 128.0) * scale_c);
            let r = yy + 1.402 * cr;
            let g = yy - 0.344_136 * cb - 0.714_136 * cr;
            let b = yy + 1.772 * cb;
            let px = [r, g, b].map(|v| v.round().clamp(0.0, 255.0) as u8);
            out.put_pixel(x as u32, y as u32, image::Rgb(px));
        }
    }
    out
}

/// Counts the bytes read through it, so truncation can be told from a clean end.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}
