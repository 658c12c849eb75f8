//! The procedural teaching dataset: one coloured shape moving in a named direction (or
//! rotating) over a plain, lightly textured background, with a caption that says so ("a red
//! circle moving left on a gray background"). Every clip follows from a seed.
//!
//! The prompts split into a training part and a held-out part (about a third of the
//! combinations of colour, shape, motion and background, chosen so every colour, shape, motion
//! and background is still seen in training), for measuring prompt adherence on prompts the
//! model never saw.

use image::{Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use cmd_video::Clip;

/// Object colours: name and RGB.
pub const COLOURS: [(&str, [u8; 3]); 6] = [
    ("red", [220, 40, 40]),
    ("green", [40, 190, 60]),
    ("blue", [50, 90, 230]),
    ("yellow", [235, 215, 50]),
    ("purple", [150, 60, 200]),
    ("orange", [240, 140, 30]),
];

/// Shapes.
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];

/// Background colours: name and RGB.
pub const BACKGROUNDS: [(&str, [u8; 3]); 4] = [
    ("black", [15, 15, 15]),
    ("gray", [110, 110, 110]),
    ("white", [235, 235, 235]),
    ("brown", [95, 65, 40]),
];

/// Every word of the captions (for a compact tokenizer).
pub fn vocabulary() -> Vec<&'static str> {
    let mut words = vec![
        "a",
        "an",
        "on",
        "background",
        "moving",
        "rotating",
        "left",
        "right",
        "up",
        "down",
    ];
    words.extend(COLOURS.iter().map(|c| c.0));
    words.extend(SHAPES);
    words.extend(BACKGROUNDS.iter().map(|b| b.0));
    words
}

/// What the object does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Motion {
    /// Moving towards smaller x.
    Left,
    /// Moving towards larger x.
    Right,
    /// Moving towards smaller y.
    Up,
    /// Moving towards larger y.
    Down,
    /// Turning in place (squares and triangles only: a turning circle looks still).
    Rotating,
}

impl Motion {
    /// Every motion.
    pub const ALL: [Motion; 5] = [
        Self::Left,
        Self::Right,
        Self::Up,
        Self::Down,
        Self::Rotating,
    ];

    /// The caption's words: "moving left", ..., "rotating".
    pub fn words(self) -> &'static str {
        match self {
            Self::Left => "moving left",
            Self::Right => "moving right",
            Self::Up => "moving up",
            Self::Down => "moving down",
            Self::Rotating => "rotating",
        }
    }

    /// A one-word name: "left", "right", "up", "down", "rotating".
    pub fn name(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Right => "right",
            Self::Up => "up",
            Self::Down => "down",
            Self::Rotating => "rotating",
        }
    }

    /// Unit step in pixels `(dx, dy)` of a moving object; zero when rotating.
    fn direction(self) -> (f64, f64) {
        match self {
            Self::Left => (-1.0, 0.0),
            Self::Right => (1.0, 0.0),
            Self::Up => (0.0, -1.0),
            Self::Down => (0.0, 1.0),
            Self::Rotating => (0.0, 0.0),
        }
    }
}

/// One combination of colour, shape, motion and background (indices into the tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scene {
    /// Index into [`COLOURS`].
    pub colour: usize,
    /// Index into [`SHAPES`].
    pub shape: usize,
    /// The motion.
    pub motion: Motion,
    /// Index into [`BACKGROUNDS`].
    pub background: usize,
}

impl Scene {
    /// Every scene (circles do not rotate): 6 x 3 x 4 x 4 + 6 x 2 x 4 = 336.
    pub fn all() -> Vec<Scene> {
        let mut out = Vec::new();
        for colour in 0..COLOURS.len() {
            for (shape, name) in SHAPES.iter().enumerate() {
                for motion in Motion::ALL {
                    if motion == Motion::Rotating && *name == "circle" {
                        continue;
                    }
                    for background in 0..BACKGROUNDS.len() {
                        out.push(Scene {
                            colour,
                            shape,
                            motion,
                            background,
                        });
                    }
                }
            }
        }
        out
    }

    /// Whether the scene's prompt is held out of training (about a third of them).
    pub fn held_out(&self) -> bool {
        let m = Motion::ALL
            .iter()
            .position(|m| *m == self.motion)
            .unwrap_or(0);
        (self.colour + 2 * self.shape + 3 * m + 5 * self.background).is_multiple_of(3)
    }

    /// "a red circle moving left on a gray background" ("an orange ...").
    pub fn caption(&self) -> String {
        let colour = COLOURS[self.colour].0;
        let article = if colour.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!(
            "{article} {colour} {} {} on a {} background",
            SHAPES[self.shape],
            self.motion.words(),
            BACKGROUNDS[self.background].0
        )
    }

    /// The scene a caption of this dataset describes (`None` for any other text).
    pub fn parse(caption: &str) -> Option<Scene> {
        Self::all()
            .into_iter()
            .find(|s| s.caption() == caption.trim())
    }

    /// Renders `frames` frames of `size x size` pixels; `seed` picks the size, start, speed
    /// and background texture.
    pub fn render(&self, frames: usize, size: u32, seed: u64) -> Clip {
        let mut rng = StdRng::seed_from_u64(seed);
        let s = size as f64;
        let radius = s * rng.random_range(0.17..0.22);
        let speed = s * rng.random_range(0.020..0.026); // pixels per frame
        let travel = speed * (frames.saturating_sub(1)) as f64;
        let (dx, dy) = self.motion.direction();
        // Start so the whole path stays inside the frame.
        let mut span = |d: f64| {
            let lo = radius + 1.0 + if d < 0.0 { travel } else { 0.0 };
            let hi = s - radius - 1.0 - if d > 0.0 { travel } else { 0.0 };
            rng.random_range(lo..hi.max(lo + 1e-3))
        };
        let (x0, y0) = (span(dx), span(dy));
        let angle0 = rng.random_range(0.0..std::f64::consts::TAU);
        let turn = rng.random_range(0.12..0.2) * if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let bg = BACKGROUNDS[self.background].1;
        let texture: Vec<i16> = (0..size * size).map(|_| rng.random_range(-6..=6)).collect();
        let colour = COLOURS[self.colour].1;
        let images = (0..frames)
            .map(|f| {
                let f = f as f64;
                let (cx, cy) = (x0 + dx * speed * f, y0 + dy * speed * f);
                let angle = if self.motion == Motion::Rotating {
                    angle0 + turn * f
                } else {
                    angle0
                };
                RgbImage::from_fn(size, size, |x, y| {
                    // 4x4 supersampling for smooth edges.
                    let mut cover = 0.0;
                    for i in 0..4 {
                        for j in 0..4 {
                            let px = x as f64 + (i as f64 + 0.5) / 4.0 - cx;
                            let py = y as f64 + (j as f64 + 0.5) / 4.0 - cy;
                            if inside(SHAPES[self.shape], px, py, radius, angle) {
                                cover += 1.0 / 16.0;
                            }
                        }
                    }
                    let t = texture[(y * size + x) as usize];
                    Rgb(std::array::from_fn(|c| {
                        let back = (bg[c] as i16 + t).clamp(0, 255) as f64;
                        (back * (1.0 - cover) + colour[c] as f64 * cover).round() as u8
                    }))
                })
            })
            .collect();
        Clip::new(images, 8.0).expect("frames of one size")
    }
}

/// Whether the point `(x, y)` (relative to the centre) is inside the shape of circumradius
/// `r` turned by `angle`.
fn inside(shape: &str, x: f64, y: f64, r: f64, angle: f64) -> bool {
    let (sin, cos) = angle.sin_cos();
    let (u, v) = (x * cos + y * sin, -x * sin + y * cos);
    match shape {
        "circle" => u * u + v * v <= r * r,
        "square" => u.abs() <= r * 0.8 && v.abs() <= r * 0.8,
        _ => {
            // Equilateral triangle with circumradius r: inside all three edge half-planes.
            (0..3).all(|k| {
                let a = std::f64::consts::TAU * k as f64 / 3.0;
                u * a.cos() + v * a.sin() >= -r * 0.5
            })
        }
    }
}

/// `count` training examples (or, with `held_out`, examples of the held-out prompts), cycling
/// through the scenes of that part in a seeded order: `(caption, clip)` pairs.
pub fn examples(
    count: usize,
    seed: u64,
    held_out: bool,
    frames: usize,
    size: u32,
) -> Vec<(String, Clip)> {
    let scenes: Vec<Scene> = Scene::all()
        .into_iter()
        .filter(|s| s.held_out() == held_out)
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..scenes.len()).collect();
    (0..count)
        .map(|i| {
            if i % scenes.len() == 0 {
                // A new shuffled pass over the scenes.
                for k in (1..order.len()).rev() {
                    order.swap(k, rng.random_range(0..=k));
                }
            }
            let scene = scenes[order[i % scenes.len()]];
            (scene.caption(), scene.render(frames, size, rng.random()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_captions_and_the_held_out_split() {
        let all = Scene::all();
        assert_eq!(all.len(), 336);
        let held: Vec<&Scene> = all.iter().filter(|s| s.held_out()).collect();
        assert!(held.len() >= 100, "{} held-out prompts", held.len());
        // Every value of every attribute is still trained on.
        let train: Vec<&Scene> = all.iter().filter(|s| !s.held_out()).collect();
        for c in 0..COLOURS.len() {
            assert!(train.iter().any(|s| s.colour == c));
        }
        for m in Motion::ALL {
            assert!(train.iter().any(|s| s.motion == m));
        }
        for b in 0..BACKGROUNDS.len() {
            assert!(train.iter().any(|s| s.background == b));
        }
        let s = all[7];
        assert_eq!(Scene::parse(&s.caption()), Some(s));
        let words = vocabulary();
        for scene in &all {
            assert!(
                scene.caption().split(' ').all(|w| words.contains(&w)),
                "{}",
                scene.caption()
            );
        }
        assert_eq!(Scene::parse("a dog"), None);
        assert_eq!(
            Scene {
                colour: 0,
                shape: 0,
                motion: Motion::Left,
                background: 1
            }
            .caption(),
            "a red circle moving left on a gray background"
        );
    }

    #[test]
    fn rendering_is_deterministic_and_sized() {
        let scene = Scene {
            colour: 2,
            shape: 2,
            motion: Motion::Rotating,
            background: 0,
        };
        let a = scene.render(16, 64, 9);
        assert_eq!((a.len(), a.width(), a.height()), (16, 64, 64));
        assert_eq!(a, scene.render(16, 64, 9));
        assert_ne!(a, scene.render(16, 64, 10));
        assert_ne!(a.frames[0], a.frames[15], "the triangle turns");
        let ex = examples(5, 3, true, 16, 32);
        assert_eq!(ex.len(), 5);
        assert!(
            ex.iter()
                .all(|(c, _)| Scene::parse(c).is_some_and(|s| s.held_out()))
        );
        assert_eq!(ex, examples(5, 3, true, 16, 32));
    }
}
