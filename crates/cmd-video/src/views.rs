//! Teaching pictures: importance-weight heat maps and motion planes (the CLI writes them as
//! PNGs, the browser shows them).

use image::{Rgb, RgbImage, imageops};

/// A sequential colour map (dark purple -> orange -> pale yellow, like "inferno") for `t` in
/// `[0, 1]`.
fn heat(t: f32) -> Rgb<u8> {
    const STOPS: [[f32; 3]; 5] = [
        [0.0, 0.0, 4.0],
        [87.0, 16.0, 110.0],
        [188.0, 55.0, 84.0],
        [249.0, 142.0, 9.0],
        [252.0, 255.0, 164.0],
    ];
    lerp_stops(&STOPS, t)
}

/// A diverging colour map (blue -> white -> red) for `v` in `[-1, 1]`.
fn diverging(v: f32) -> Rgb<u8> {
    const STOPS: [[f32; 3]; 3] = [
        [33.0, 102.0, 172.0],
        [247.0, 247.0, 247.0],
        [178.0, 24.0, 43.0],
    ];
    lerp_stops(&STOPS, (v + 1.0) / 2.0)
}

fn lerp_stops(stops: &[[f32; 3]], t: f32) -> Rgb<u8> {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (stops.len() - 1) as f32;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f32;
    Rgb(std::array::from_fn(|c| {
        (stops[i][c] + f * (stops[i + 1][c] - stops[i][c])).round() as u8
    }))
}

/// Lays `tiles` (all the same size) out in a grid of `cols` columns with a 2-pixel gap.
fn grid(tiles: &[RgbImage], cols: usize) -> RgbImage {
    let (tw, th) = tiles[0].dimensions();
    let rows = tiles.len().div_ceil(cols);
    let gap = 2;
    let mut out = RgbImage::from_pixel(
        cols as u32 * (tw + gap) - gap,
        rows as u32 * (th + gap) - gap,
        Rgb([255, 255, 255]),
    );
    for (i, tile) in tiles.iter().enumerate() {
        let (x, y) = (
            (i % cols) as u32 * (tw + gap),
            (i / cols) as u32 * (th + gap),
        );
        imageops::replace(&mut out, tile, x as i64, y as i64);
    }
    out
}

/// Heat maps of the importance weights, one tile per frame (mean over channels), on one
/// scale from the smallest to the largest weight of the clip, so tiles compare and small
/// departures from uniform (`1/L`) show. `weights` is `[L, C, H, W]`.
pub fn weight_maps(
    weights: &[f32],
    frames: usize,
    channels: usize,
    h: usize,
    w: usize,
) -> RgbImage {
    let plane = h * w;
    let means: Vec<Vec<f32>> = (0..frames)
        .map(|l| {
            (0..plane)
                .map(|i| {
                    (0..channels)
                        .map(|c| weights[(l * channels + c) * plane + i])
                        .sum::<f32>()
                        / channels as f32
                })
                .collect()
        })
        .collect();
    let max = means.iter().flatten().cloned().fold(f32::MIN, f32::max);
    let min = means.iter().flatten().cloned().fold(f32::MAX, f32::min);
    let range = (max - min).max(f32::EPSILON);
    let tiles: Vec<RgbImage> = means
        .iter()
        .map(|m| {
            RgbImage::from_fn(w as u32, h as u32, |x, y| {
                heat((m[y as usize * w + x as usize] - min) / range)
            })
        })
        .collect();
    grid(&tiles, (frames as f64).sqrt().ceil() as usize)
}

/// The motion latent `[D, L, H' + W']` as pictures: for each channel, the `L x H'` plane
/// (`z_y`, time down, rows across) in the top row and the `L x W'` plane (`z_x`) below,
/// blue for -1 and red for +1, enlarged `scale` times.
pub fn motion_planes(z: &[f32], d: usize, l: usize, gh: usize, gw: usize, scale: u32) -> RgbImage {
    let width = gh + gw;
    let plane = |ch: usize, start: usize, cols: usize| {
        let img = RgbImage::from_fn(cols as u32, l as u32, |x, y| {
            diverging(z[(ch * l + y as usize) * width + start + x as usize])
        });
        imageops::resize(
            &img,
            cols as u32 * scale,
            l as u32 * scale,
            imageops::FilterType::Nearest,
        )
    };
    let ys: Vec<RgbImage> = (0..d).map(|ch| plane(ch, 0, gh)).collect();
    let xs: Vec<RgbImage> = (0..d).map(|ch| plane(ch, gh, gw)).collect();
    let top = grid(&ys, d);
    let bottom = grid(&xs, d);
    let gap = 6;
    let mut out = RgbImage::from_pixel(
        top.width().max(bottom.width()),
        top.height() + gap + bottom.height(),
        Rgb([255, 255, 255]),
    );
    imageops::replace(&mut out, &top, 0, 0);
    imageops::replace(&mut out, &bottom, 0, (top.height() + gap) as i64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_maps_hit_their_end_points() {
        assert_eq!(heat(0.0), Rgb([0, 0, 4]));
        assert_eq!(heat(1.0), Rgb([252, 255, 164]));
        assert_eq!(diverging(0.0), Rgb([247, 247, 247]));
        assert_eq!(diverging(-1.0), Rgb([33, 102, 172]));
        assert_eq!(heat(f32::NAN), heat(0.0));
    }

    #[test]
    fn pictures_have_the_expected_layout() {
        let (l, c, h, w) = (16, 3, 8, 8);
        let weights = vec![1.0 / l as f32; l * c * h * w];
        let img = weight_maps(&weights, l, c, h, w);
        assert_eq!(img.dimensions(), (4 * 8 + 3 * 2, 4 * 8 + 3 * 2));
        let (d, gh, gw) = (2, 4, 6);
        let z = vec![0.5; d * l * (gh + gw)];
        let img = motion_planes(&z, d, l, gh, gw, 2);
        assert_eq!(img.height(), 16 * 2 * 2 + 6);
        assert_eq!(img.width(), (2 * 6 * 2 + 2) as u32);
    }
}
