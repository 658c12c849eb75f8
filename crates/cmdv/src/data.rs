//! Training data: every clip in a folder, sampled with random frame offsets, crops and flips.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cmd_video::{Clip, is_clip_file, read_clip};
use image::imageops;
use rand::Rng;

/// The clips of a folder, decoded once and kept in memory.
pub struct ClipFolder {
    clips: Vec<(PathBuf, Clip)>,
}

impl ClipFolder {
    /// Reads every clip file (y4m, mp4, gif) and every sub-folder of PNG frames in `dir`.
    /// Each must hold at least `min_frames` frames.
    pub fn load(dir: &Path, min_frames: usize) -> Result<Self> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot read the data folder", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_clip_file(p) || (p.is_dir() && has_png(p)))
            .collect();
        paths.sort();
        if paths.is_empty() {
            bail!(
                "{}: no clips found (expected {} files, or folders of PNG frames)",
                dir.display(),
                cmd_video::INPUT_FORMATS
            );
        }
        let mut clips = Vec::with_capacity(paths.len());
        for path in paths {
            let clip = read_clip(&path, None)?;
            if clip.len() < min_frames {
                bail!(
                    "{}: has {} frames, training needs at least {min_frames}",
                    path.display(),
                    clip.len()
                );
            }
            clips.push((path, clip));
        }
        Ok(Self { clips })
    }

    /// Number of clips.
    pub fn len(&self) -> usize {
        self.clips.len()
    }

    /// A random training example of `frames` frames at `stride`, `width x height`: random clip,
    /// random start frame, random crop covering 80-100 % of the largest window of the target
    /// aspect, random horizontal flip.
    pub fn sample(
        &self,
        rng: &mut impl Rng,
        frames: usize,
        stride: usize,
        width: u32,
        height: u32,
    ) -> Clip {
        let (_, clip) = &self.clips[rng.random_range(0..self.clips.len())];
        let span = stride * (frames - 1) + 1;
        let offset = rng.random_range(0..=clip.len() - span);
        let clip = clip
            .sample(frames, stride, offset)
            .expect("clip length checked at load");
        // The largest window of the target aspect, then 80-100 % of it.
        let full = clip.center_crop_to_aspect(width, height);
        let scale = rng.random_range(0.8..=1.0);
        let cw = ((full.width() as f64 * scale) as u32).max(1);
        let ch = ((full.height() as f64 * scale) as u32).max(1);
        let x = rng.random_range(0..=clip.width() - cw);
        let y = rng.random_range(0..=clip.height() - ch);
        let mut out = clip.crop(x, y, cw, ch).resize(width, height);
        if rng.random_bool(0.5) {
            for f in &mut out.frames {
                imageops::flip_horizontal_in_place(f);
            }
        }
        out
    }
}

fn has_png(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("png"))
        })
    })
}
