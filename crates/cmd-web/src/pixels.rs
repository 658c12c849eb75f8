//! Between RGBA bytes (what a canvas holds), clips, and the model's `[1, L, 3, H, W]` floats
//! in `[-1, 1]`.

use burn::tensor::{Device, Tensor, TensorData};
use cmd_video::Clip;
use image::RgbImage;

/// RGBA frames (`frames x height x width x 4` bytes) as a clip; the alpha channel is dropped.
pub fn clip_from_rgba(
    rgba: &[u8],
    frames: usize,
    height: usize,
    width: usize,
) -> Result<Clip, String> {
    let expected = frames * height * width * 4;
    if rgba.len() != expected || frames == 0 {
        return Err(format!(
            "expected {frames} RGBA frames of {width}x{height} ({expected} bytes), found {} bytes",
            rgba.len()
        ));
    }
    let images = rgba
        .chunks_exact(height * width * 4)
        .map(|f| {
            let rgb = f.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
            RgbImage::from_raw(width as u32, height as u32, rgb).expect("sized above")
        })
        .collect();
    Ok(Clip::new(images, 8.0).expect("at least one frame"))
}

/// A clip as the model's input `[1, L, 3, H, W]` in `[-1, 1]`.
pub fn clip_tensor(clip: &Clip, device: &Device) -> Tensor<5> {
    let shape = [
        1,
        clip.len(),
        3,
        clip.height() as usize,
        clip.width() as usize,
    ];
    Tensor::from_data(TensorData::new(clip.to_signed_f32(), shape), device)
}

/// A clip's frames as RGBA bytes, one after the other.
pub fn rgba_from_clip(clip: &Clip) -> Vec<u8> {
    clip.frames.iter().flat_map(rgba_from_image).collect()
}

/// A picture as RGBA bytes.
pub fn rgba_from_image(image: &RgbImage) -> Vec<u8> {
    image
        .pixels()
        .flat_map(|p| [p.0[0], p.0[1], p.0[2], 255])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgba_round_trips_through_the_model_layout() {
        let (l, h, w) = (2, 3, 4);
        let rgba: Vec<u8> = (0..l * h * w * 4)
            .map(|i| if i % 4 == 3 { 255 } else { (i * 7 % 256) as u8 })
            .collect();
        let clip = clip_from_rgba(&rgba, l, h, w).unwrap();
        let values = clip.to_signed_f32();
        assert_eq!(values.len(), l * 3 * h * w);
        let back = Clip::from_signed_f32(&values, l, h as u32, w as u32, 8.0);
        assert_eq!(rgba_from_clip(&back), rgba);
    }

    #[test]
    fn wrong_sizes_are_named() {
        let err = clip_from_rgba(&[0; 10], 1, 2, 2).unwrap_err();
        assert!(
            err.contains("1 RGBA frames of 2x2 (16 bytes), found 10"),
            "{err}"
        );
    }
}
