//! One picture of a decomposition for a slide: the input, what the autoencoder made of it and
//! how well it came back, each part labelled.

use image::{Rgb, RgbImage, imageops};

use crate::Clip;

/// What goes on a slide. The clips all have the same frame size.
#[derive(Debug)]
pub struct Slide<'a> {
    /// The clip that went in.
    pub input: &'a Clip,
    /// Its reconstruction from the content frame and the motion latent.
    pub recon: &'a Clip,
    /// The clip decoded from the content frame alone (zero motion latent).
    pub content_only: &'a Clip,
    /// The content frame.
    pub content: &'a RgbImage,
    /// The importance-weight heat maps ([`weight_maps`](crate::views::weight_maps)).
    pub weights: &'a RgbImage,
    /// The motion planes ([`motion_planes`](crate::views::motion_planes)).
    pub motion: &'a RgbImage,
    /// The headline, e.g. the file name and the PSNR.
    pub title: String,
}

/// Frames of each clip shown in a row.
const SHOWN: usize = 4;
/// Space around and between the parts, in pixels.
const MARGIN: u32 = 12;
/// Text is the 8x8 font drawn at this scale.
const TEXT_SCALE: u32 = 2;
const INK: Rgb<u8> = Rgb([20, 20, 20]);
const PAPER: Rgb<u8> = Rgb([255, 255, 255]);

/// Lays the slide out: a title, then three rows of frames (input, reconstruction, content
/// only), then the content frame beside the weight maps, then the motion planes. Frames are
/// enlarged to about 160 pixels (nearest neighbour, so the model's pixels show as they are).
pub fn render(slide: &Slide) -> RgbImage {
    let (fw, fh) = (slide.input.width(), slide.input.height());
    let zoom = (160 / fw.max(fh)).max(1);
    let big = |img: &RgbImage| {
        imageops::resize(
            img,
            img.width() * zoom,
            img.height() * zoom,
            imageops::FilterType::Nearest,
        )
    };
    let picked = |clip: &Clip| -> Vec<RgbImage> {
        let n = clip.frames.len();
        frame_numbers(n)
            .iter()
            .map(|&i| big(&clip.frames[i]))
            .collect()
    };
    let shown = frame_numbers(slide.input.frames.len())
        .iter()
        .map(|i| (i + 1).to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut parts: Vec<(String, RgbImage)> = vec![
        (format!("input (frames {shown})"), row(&picked(slide.input))),
        (
            "reconstruction: content frame + motion latent".into(),
            row(&picked(slide.recon)),
        ),
        (
            "content frame alone (motion latent set to zero)".into(),
            row(&picked(slide.content_only)),
        ),
    ];
    let weights_zoom = (fw * zoom * 2).div_ceil(slide.weights.width()).max(1);
    let weights = imageops::resize(
        slide.weights,
        slide.weights.width() * weights_zoom,
        slide.weights.height() * weights_zoom,
        imageops::FilterType::Nearest,
    );
    parts.push((
        "content frame | importance weights per frame (softmax over time)".into(),
        row(&[big(slide.content), weights]),
    ));
    parts.push((
        "motion latent: per channel, time x rows (top), time x columns (below)".into(),
        slide.motion.clone(),
    ));

    let title_h = 8 * TEXT_SCALE * 3 / 2;
    let label_h = 8 * TEXT_SCALE + 6;
    let width = parts
        .iter()
        .map(|(label, img)| img.width().max(text_width(label)))
        .chain([text_width(&slide.title)])
        .max()
        .unwrap_or(0)
        + 2 * MARGIN;
    let height = MARGIN
        + title_h
        + parts
            .iter()
            .map(|(_, img)| MARGIN + label_h + img.height())
            .sum::<u32>()
        + MARGIN;
    let mut out = RgbImage::from_pixel(width, height, PAPER);
    draw_text(&mut out, &slide.title, MARGIN, MARGIN);
    let mut y = MARGIN + title_h;
    for (label, img) in &parts {
        y += MARGIN;
        draw_text(&mut out, label, MARGIN, y);
        y += label_h;
        imageops::replace(&mut out, img, MARGIN as i64, y as i64);
        y += img.height();
    }
    out
}

/// The frames a row shows: the first, the last and evenly between.
fn frame_numbers(frames: usize) -> Vec<usize> {
    let n = SHOWN.min(frames);
    if n <= 1 {
        return vec![0];
    }
    (0..n).map(|k| k * (frames - 1) / (n - 1)).collect()
}

/// Pictures side by side with a gap.
fn row(images: &[RgbImage]) -> RgbImage {
    let gap = MARGIN / 2;
    let width = images.iter().map(|i| i.width()).sum::<u32>() + gap * (images.len() as u32 - 1);
    let height = images.iter().map(|i| i.height()).max().unwrap_or(0);
    let mut out = RgbImage::from_pixel(width, height, PAPER);
    let mut x = 0;
    for img in images {
        imageops::replace(&mut out, img, x as i64, 0);
        x += img.width() + gap;
    }
    out
}

/// Width of `text` drawn by [`draw_text`].
fn text_width(text: &str) -> u32 {
    text.chars().count() as u32 * 8 * TEXT_SCALE
}

/// Draws `text` (ASCII; anything else shows as `?`) with its top left corner at `(x, y)`.
fn draw_text(img: &mut RgbImage, text: &str, x: u32, y: u32) {
    for (k, ch) in text.chars().enumerate() {
        let code = if ch.is_ascii() {
            ch as usize
        } else {
            '?' as usize
        };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..8 {
                if (bits >> gx) & 1 == 0 {
                    continue;
                }
                for dy in 0..TEXT_SCALE {
                    for dx in 0..TEXT_SCALE {
                        let px = x + (k as u32 * 8 + gx) * TEXT_SCALE + dx;
                        let py = y + gy as u32 * TEXT_SCALE + dy;
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, INK);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(value: u8, frames: usize) -> Clip {
        let frames = (0..frames)
            .map(|i| RgbImage::from_pixel(16, 16, Rgb([value, i as u8 * 10, 0])))
            .collect();
        Clip::new(frames, 8.0).unwrap()
    }

    #[test]
    fn every_part_is_on_the_slide_where_the_layout_puts_it() {
        let (input, recon, still) = (clip(200, 16), clip(100, 16), clip(50, 16));
        let content = RgbImage::from_pixel(16, 16, Rgb([1, 2, 3]));
        let weights = RgbImage::from_pixel(70, 70, Rgb([4, 5, 6]));
        let motion = RgbImage::from_pixel(300, 40, Rgb([7, 8, 9]));
        let slide = render(&Slide {
            input: &input,
            recon: &recon,
            content_only: &still,
            content: &content,
            weights: &weights,
            motion: &motion,
            title: "box.mp4: PSNR 30.00 dB".into(),
        });
        // 16-pixel frames are shown 10 times larger; four per row.
        let (title_h, label_h) = (24, 22);
        let first_row = MARGIN + title_h + MARGIN + label_h;
        assert_eq!(slide.get_pixel(MARGIN, first_row), &Rgb([200, 0, 0]));
        // The last frame of the input is the fourth tile.
        let fourth = MARGIN + 3 * (160 + MARGIN / 2);
        assert_eq!(slide.get_pixel(fourth, first_row), &Rgb([200, 150, 0]));
        let second_row = first_row + 160 + MARGIN + label_h;
        assert_eq!(slide.get_pixel(MARGIN, second_row), &Rgb([100, 0, 0]));
        let third_row = second_row + 160 + MARGIN + label_h;
        assert_eq!(slide.get_pixel(MARGIN, third_row), &Rgb([50, 0, 0]));
        let fourth_row = third_row + 160 + MARGIN + label_h;
        assert_eq!(slide.get_pixel(MARGIN, fourth_row), &Rgb([1, 2, 3]));
        assert_eq!(
            slide.get_pixel(MARGIN + 160 + MARGIN / 2, fourth_row),
            &Rgb([4, 5, 6])
        );
        // The weights are enlarged to twice a frame's width: 70 * 5 = 350 rows.
        let fifth_row = fourth_row + 350 + MARGIN + label_h;
        assert_eq!(slide.get_pixel(MARGIN, fifth_row), &Rgb([7, 8, 9]));
        assert_eq!(slide.height(), fifth_row + 40 + MARGIN);
        // The title is drawn in ink, and fits.
        let title = (0..text_width("box.mp4: PSNR 30.00 dB"))
            .flat_map(|x| (0..16).map(move |y| (MARGIN + x, MARGIN + y)))
            .filter(|&(x, y)| slide.get_pixel(x, y) == &INK)
            .count();
        assert!(title > 100, "{title} ink pixels in the title");
        assert!(slide.width() >= text_width("box.mp4: PSNR 30.00 dB") + 2 * MARGIN);
    }

    #[test]
    fn rows_show_first_last_and_between() {
        assert_eq!(frame_numbers(16), vec![0, 5, 10, 15]);
        assert_eq!(frame_numbers(2), vec![0, 1]);
        assert_eq!(frame_numbers(1), vec![0]);
    }
}
