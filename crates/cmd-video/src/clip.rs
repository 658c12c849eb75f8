//! A clip in memory and the ways to cut it down to what a model takes.

use image::RgbImage;
use image::imageops::{self, FilterType};

/// A short video: RGB frames of one size, and the rate to play them at.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// The frames, all `width x height`.
    pub frames: Vec<RgbImage>,
    /// Frames per second.
    pub fps: f32,
}

impl Clip {
    /// A clip from frames of equal size. Returns `None` if there are none or sizes differ.
    pub fn new(frames: Vec<RgbImage>, fps: f32) -> Option<Self> {
        let first = frames.first()?.dimensions();
        frames
            .iter()
            .all(|f| f.dimensions() == first)
            .then_some(Self { frames, fps })
    }

    /// Frame width in pixels.
    pub fn width(&self) -> u32 {
        self.frames[0].width()
    }

    /// Frame height in pixels.
    pub fn height(&self) -> u32 {
        self.frames[0].height()
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Always false: a clip has at least one frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The `w x h` window at `(x, y)` of every frame (clamped to the frame).
    pub fn crop(&self, x: u32, y: u32, w: u32, h: u32) -> Clip {
        let frames = self
            .frames
            .iter()
            .map(|f| imageops::crop_imm(f, x, y, w, h).to_image())
            .collect();
        Clip {
            frames,
            fps: self.fps,
        }
    }

    /// The largest centred window with the aspect ratio `w : h`.
    pub fn center_crop_to_aspect(&self, w: u32, h: u32) -> Clip {
        let (fw, fh) = (self.width() as u64, self.height() as u64);
        // Largest (cw, ch) with cw / ch = w / h inside the frame.
        let (cw, ch) = if fw * h as u64 > fh * w as u64 {
            ((fh * w as u64 / h as u64) as u32, fh as u32)
        } else {
            (fw as u32, (fw * h as u64 / w as u64) as u32)
        };
        let (cw, ch) = (cw.max(1), ch.max(1));
        self.crop((self.width() - cw) / 2, (self.height() - ch) / 2, cw, ch)
    }

    /// Every frame resized to `w x h` (area-like filter when shrinking).
    pub fn resize(&self, w: u32, h: u32) -> Clip {
        if (w, h) == (self.width(), self.height()) {
            return self.clone();
        }
        let frames = self
            .frames
            .iter()
            .map(|f| imageops::resize(f, w, h, FilterType::Triangle))
            .collect();
        Clip {
            frames,
            fps: self.fps,
        }
    }

    /// Centre crop to the aspect of `w x h`, then resize to it: how a clip is fitted to a model.
    pub fn fit(&self, w: u32, h: u32) -> Clip {
        self.center_crop_to_aspect(w, h).resize(w, h)
    }

    /// The clip as `f32` in `[-1, 1]`, laid out `[L, 3, H, W]`.
    pub fn to_signed_f32(&self) -> Vec<f32> {
        let (w, h) = (self.width() as usize, self.height() as usize);
        let mut out = vec![0.0; self.len() * 3 * h * w];
        for (l, frame) in self.frames.iter().enumerate() {
            for (i, px) in frame.pixels().enumerate() {
                for c in 0..3 {
                    out[(l * 3 + c) * h * w + i] = px[c] as f32 / 127.5 - 1.0;
                }
            }
        }
        out
    }

    /// The inverse of [`to_signed_f32`](Self::to_signed_f32): values are clamped to `[-1, 1]`.
    ///
    /// # Panics
    /// If `data` is not `frames * 3 * height * width` long.
    pub fn from_signed_f32(data: &[f32], frames: usize, height: u32, width: u32, fps: f32) -> Clip {
        let plane = (height * width) as usize;
        assert_eq!(
            data.len(),
            frames * 3 * plane,
            "from_signed_f32: bad length"
        );
        let to_u8 = |v: f32| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
        let frames = (0..frames)
            .map(|l| {
                RgbImage::from_fn(width, height, |x, y| {
                    let i = (y * width + x) as usize;
                    image::Rgb(std::array::from_fn(|c| {
                        to_u8(data[(l * 3 + c) * plane + i])
                    }))
                })
            })
            .collect();
        Clip { frames, fps }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(n: usize, w: u32, h: u32) -> Clip {
        let frames = (0..n)
            .map(|i| RgbImage::from_fn(w, h, |x, y| image::Rgb([i as u8, x as u8, y as u8])))
            .collect();
        Clip::new(frames, 30.0).unwrap()
    }

    #[test]
    fn fit_crops_the_centre_then_resizes() {
        let clip = numbered(2, 40, 20);
        let c = clip.center_crop_to_aspect(1, 1);
        assert_eq!((c.width(), c.height()), (20, 20));
        // The window starts at x = 10: its first pixel has x = 10.
        assert_eq!(c.frames[0].get_pixel(0, 0)[1], 10);
        let f = clip.fit(8, 8);
        assert_eq!((f.width(), f.height(), f.len()), (8, 8, 2));
    }

    #[test]
    fn float_conversion_round_trips() {
        let clip = numbered(3, 5, 4);
        let data = clip.to_signed_f32();
        assert_eq!(data.len(), 3 * 3 * 4 * 5);
        assert!(data.iter().all(|v| (-1.0..=1.0).contains(v)));
        let back = Clip::from_signed_f32(&data, 3, 4, 5, 30.0);
        assert_eq!(back, clip);
    }

    #[test]
    fn frames_of_different_sizes_are_not_a_clip() {
        let a = RgbImage::new(4, 4);
        let b = RgbImage::new(4, 5);
        assert!(Clip::new(vec![a, b], 30.0).is_none());
        assert!(Clip::new(vec![], 30.0).is_none());
    }
}
