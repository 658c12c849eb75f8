//! YUV4MPEG2 (`.y4m`) reading through the pure-Rust `y4m` crate, 8-bit 4:2:0, 4:2:2, 4:4:4 and
//! mono, BT.601 colours (limited range unless the header says `XCOLORRANGE=FULL`).

use std::cell::Cell;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use image::RgbImage;
use y4m::Colorspace;

use crate::{Clip, VideoError};

/// Reads up to `max_frames` frames of a y4m file.
pub fn read(path: &Path, max_frames: Option<usize>) -> Result<Clip, VideoError> {
    let err = |m: String| VideoError::new(path, m);
    let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let consumed = Rc::new(Cell::new(0u64));
    let reader = Counting {
        inner: BufReader::new(file),
        count: consumed.clone(),
    };
    let mut decoder =
        y4m::Decoder::new(reader).map_err(|e| err(format!("not a valid y4m file: {e}")))?;
    let (w, h) = (decoder.get_width(), decoder.get_height());
    let colorspace = decoder.get_colorspace();
    let (cw, ch) = match colorspace {
        Colorspace::C420 | Colorspace::C420jpeg | Colorspace::C420paldv | Colorspace::C420mpeg2 => {
            (w.div_ceil(2), h.div_ceil(2))
        }
        Colorspace::C422 => (w.div_ceil(2), h),
        Colorspace::C444 => (w, h),
        Colorspace::Cmono => (0, 0),
        other => {
            return Err(err(format!(
                "unsupported y4m colour space {other:?}: expected 8-bit 4:2:0, 4:2:2, 4:4:4 or mono"
            )));
        }
    };
    let full_range = String::from_utf8_lossy(decoder.get_raw_params()).contains("XCOLORRANGE=FULL");
    let fps = decoder.get_framerate();
    let fps = if fps.den == 0 {
        25.0
    } else {
        fps.num as f32 / fps.den as f32
    };

    let mut frames = Vec::new();
    let mut good_bytes = consumed.get();
    while max_frames.is_none_or(|m| frames.len() < m) {
        match decoder.read_frame() {
            Ok(frame) => {
                let planes = [
                    frame.get_y_plane(),
                    frame.get_u_plane(),
                    frame.get_v_plane(),
                ];
                frames.push(to_rgb(planes, w, h, cw, ch, full_range));
                good_bytes = consumed.get();
            }
            Err(y4m::Error::EOF) => {
                // The crate reports a frame cut short as a plain end of file: tell them apart
                // by whether anything was left after the last whole frame.
                if good_bytes < size {
                    return Err(err(format!(
                        "truncated: frame {} is incomplete ({} of {size} bytes are whole frames)",
                        frames.len() + 1,
                        good_bytes
                    )));
                }
                break;
            }
            Err(e) => return Err(err(format!("corrupt frame {}: {e}", frames.len() + 1))),
        }
    }
    Clip::new(frames, fps).ok_or_else(|| err("contains no frames".into()))
}

/// YCbCr (BT.601) to RGB for one frame; chroma planes of `cw x ch` (0 for mono).
fn to_rgb(planes: [&[u8]; 3], w: usize, h: usize, cw: usize, ch: usize, full: bool) -> RgbImage {
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
