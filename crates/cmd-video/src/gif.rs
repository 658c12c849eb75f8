//! Animated GIF reading and writing through the `image` crate.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::{AnimationDecoder, Delay, DynamicImage, Frame};

use crate::{Clip, VideoError};

/// Reads up to `max_frames` frames of an animated GIF (each composited to a full RGB frame).
pub fn read(path: &Path, max_frames: Option<usize>) -> Result<Clip, VideoError> {
    let err = |m: String| VideoError::new(path, m);
    let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
    let decoder =
        GifDecoder::new(BufReader::new(file)).map_err(|e| err(format!("not a valid GIF: {e}")))?;
    let mut frames = Vec::new();
    let mut delay_ms = 0.0;
    for (i, frame) in decoder.into_frames().enumerate() {
        if max_frames.is_some_and(|m| frames.len() >= m) {
            break;
        }
        let frame = frame.map_err(|e| err(format!("corrupt frame {}: {e}", i + 1)))?;
        let (num, den) = frame.delay().numer_denom_ms();
        delay_ms = num as f32 / den.max(1) as f32;
        frames.push(DynamicImage::ImageRgba8(frame.into_buffer()).to_rgb8());
    }
    let fps = if delay_ms > 0.0 {
        1000.0 / delay_ms
    } else {
        10.0
    };
    Clip::new(frames, fps).ok_or_else(|| err("contains no frames".into()))
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
