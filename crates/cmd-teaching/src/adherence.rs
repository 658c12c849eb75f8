//! A deterministic prompt-adherence analyser for the teaching dataset: it finds the object of a
//! clip by colour (pixels far from the background, the per-channel median of each frame), names
//! the nearest colour of [`COLOURS`], and reads the motion from the track of the object's
//! centre.

use crate::dataset::{COLOURS, Motion, Scene};
use cmd_video::Clip;

/// The smallest summed per-channel distance from the background of an object pixel.
const OBJECT_DISTANCE: i32 = 90;
/// Centre displacements below this fraction of the frame width (over the clip) count as
/// staying in place (4 pixels at 64 x 64).
const STILL: f64 = 1.0 / 16.0;

/// What a clip shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Analysis {
    /// The object's colour (index into [`COLOURS`]), or `None` when no object is found.
    pub colour: Option<usize>,
    /// The motion: a direction, or `Rotating` for an object that stays in place.
    pub motion: Option<Motion>,
}

impl Analysis {
    /// Whether the clip shows the colour and the motion of `scene` (a rotating scene must stay
    /// in place).
    pub fn matches(&self, scene: &Scene) -> bool {
        self.colour == Some(scene.colour) && self.motion == Some(scene.motion)
    }
}

/// Analyses a clip.
pub fn analyse(clip: &Clip) -> Analysis {
    let mut sum = [0f64; 3];
    let mut pixels = 0usize;
    let mut centres = Vec::new();
    for frame in &clip.frames {
        let bg: [i32; 3] = std::array::from_fn(|c| {
            let mut v: Vec<u8> = frame.pixels().map(|p| p.0[c]).collect();
            v.sort_unstable();
            v[v.len() / 2] as i32
        });
        let (mut cx, mut cy, mut n) = (0f64, 0f64, 0usize);
        for (x, y, p) in frame.enumerate_pixels() {
            let d: i32 = (0..3).map(|c| (p.0[c] as i32 - bg[c]).abs()).sum();
            if d > OBJECT_DISTANCE {
                cx += x as f64;
                cy += y as f64;
                n += 1;
                for (c, s) in sum.iter_mut().enumerate() {
                    *s += p.0[c] as f64;
                }
            }
        }
        pixels += n;
        if n >= 4 {
            centres.push((cx / n as f64, cy / n as f64));
        }
    }
    if pixels == 0 || centres.len() < 2 {
        return Analysis {
            colour: None,
            motion: None,
        };
    }
    let mean = sum.map(|s| s / pixels as f64);
    let colour = (0..COLOURS.len()).min_by(|a, b| {
        let dist = |i: usize| -> f64 {
            (0..3)
                .map(|c| (mean[c] - COLOURS[i].1[c] as f64).powi(2))
                .sum()
        };
        dist(*a).total_cmp(&dist(*b))
    });
    // Displacement between the mean centre of the first and the last quarter of the track.
    let q = (centres.len() / 4).max(1);
    let avg = |s: &[(f64, f64)]| {
        let n = s.len() as f64;
        (
            s.iter().map(|c| c.0).sum::<f64>() / n,
            s.iter().map(|c| c.1).sum::<f64>() / n,
        )
    };
    let (first, last) = (avg(&centres[..q]), avg(&centres[centres.len() - q..]));
    let (dx, dy) = (last.0 - first.0, last.1 - first.1);
    let motion = if dx.abs().max(dy.abs()) < STILL * clip.width() as f64 {
        Motion::Rotating
    } else if dx.abs() >= dy.abs() {
        if dx < 0.0 {
            Motion::Left
        } else {
            Motion::Right
        }
    } else if dy < 0.0 {
        Motion::Up
    } else {
        Motion::Down
    };
    Analysis {
        colour,
        motion: Some(motion),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::examples;

    #[test]
    fn every_rendered_scene_is_read_back_correctly() {
        for scene in Scene::all() {
            for (seed, size) in [(1, 64), (2, 64), (3, 32), (4, 32)] {
                let clip = scene.render(16, size, seed);
                let got = analyse(&clip);
                assert!(
                    got.matches(&scene),
                    "{} at {size}: {got:?}",
                    scene.caption()
                );
            }
        }
        let (_, clip) = &examples(1, 0, false, 16, 64)[0];
        let blank = Clip::new(vec![image::RgbImage::new(64, 64); 16], 8.0).unwrap();
        assert_eq!(
            analyse(&blank),
            Analysis {
                colour: None,
                motion: None
            }
        );
        assert!(analyse(clip).colour.is_some());
    }
}
