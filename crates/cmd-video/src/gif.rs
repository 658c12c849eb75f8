//! Animated GIF reading and writing through the `image` crate.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::{AnimationDecoder, Delay, DynamicImage, Frame, ImageDecoder};

use crate::take::Timeline;
use crate::video::{Frames, VideoInfo};
use crate::{Clip, VideoError, check_size};

/// Reads the frame size and every frame's time (a GIF's frames can each have their own delay).
pub(crate) fn probe(path: &Path) -> Result<VideoInfo, VideoError> {
    let mut delays = Vec::new();
    let (width, height) = frames(path, |_, delay| {
        delays.push(delay);
        true
    })?;
    let mut times = Vec::with_capacity(delays.len());
    let mut t = 0.0;
    for delay in &delays {
        times.push(t);
        t += delay;
    }
    let timeline = if delays.iter().all(|d| (d - delays[0]).abs() < 1e-9) {
        Timeline::Constant {
            fps: 1.0 / delays[0],
            frames: delays.len(),
        }
    } else {
        Timeline::Variable {
            times,
            last: *delays.last().expect("at least one frame"),
        }
    };
    Ok(VideoInfo {
        width,
        height,
        timeline,
        codec: "gif".into(),
        rotation: 0,
    })
}

/// Passes frames `first..=last` to `out`.
pub(crate) fn decode(
    path: &Path,
    (first, last): (usize, usize),
    out: &mut Frames,
) -> Result<(), VideoError> {
    let mut i = 0;
    frames(path, |frame, _| {
        if i >= first {
            out.push(DynamicImage::ImageRgba8(frame.into_buffer()).to_rgb8());
        }
        i += 1;
        i <= last
    })?;
    if i <= last {
        return Err(VideoError::new(
            path,
            format!("has only {i} frames, frame {} was asked for", last + 1),
        ));
    }
    Ok(())
}

/// Decodes frames (each composited to a full frame) and passes each with its delay in seconds
/// to `each` until it returns false. Returns the frame size.
fn frames(path: &Path, mut each: impl FnMut(Frame, f64) -> bool) -> Result<(u32, u32), VideoError> {
    let err = |m: String| VideoError::new(path, m);
    let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let decoder =
        GifDecoder::new(BufReader::new(file)).map_err(|e| err(format!("not a valid GIF: {e}")))?;
    let (width, height) = decoder.dimensions();
    check_size(path, width, height)?;
    let mut n = 0;
    for (i, frame) in decoder.into_frames().enumerate() {
        let frame = frame.map_err(|e| err(format!("corrupt frame {}: {e}", i + 1)))?;
        let (num, den) = frame.delay().numer_denom_ms();
        let ms = num as f64 / den.max(1) as f64;
        // Browsers show frames without a delay for 0.1 s.
        let delay = if ms > 0.0 { ms / 1000.0 } else { 0.1 };
        n += 1;
        if !each(frame, delay) {
            break;
        }
    }
    if n == 0 {
        return Err(err("contains no frames".into()));
    }
    Ok((width, height))
}

/// Writes a looping animated GIF.
pub fn write(path: &Path, clip: &Clip) -> Result<(), VideoError> {
    crate::write_atomic(path, |out| encode(clip, out))
}

/// A looping animated GIF of `clip`, in memory (for downloads in the browser).
pub fn to_bytes(clip: &Clip) -> Vec<u8> {
    let mut out = Vec::new();
    encode(clip, &mut out).expect("writing to memory does not fail");
    out
}

fn encode(clip: &Clip, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let delay = Delay::from_numer_denom_ms((1000.0 / clip.fps.max(0.1)).round() as u32, 1);
    let mut encoder = GifEncoder::new_with_speed(out, 10);
    encoder
        .set_repeat(Repeat::Infinite)
        .map_err(std::io::Error::other)?;
    let frames = clip.frames.iter().map(|f| {
        let rgba = DynamicImage::ImageRgb8(f.clone()).to_rgba8();
        Frame::from_parts(rgba, 0, 0, delay)
    });
    encoder.encode_frames(frames).map_err(std::io::Error::other)
}
