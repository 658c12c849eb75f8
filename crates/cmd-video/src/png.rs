//! Folders of PNG frames (read in file-name order) and single PNG pictures.

use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::take::Timeline;
use crate::video::{Frames, VideoInfo};
use crate::{Clip, VideoError, check_size};

/// Frames per second assumed for a folder of PNG frames.
pub const FOLDER_FPS: f32 = 8.0;

/// The `*.png` files of a folder, sorted by name: the frames of a clip.
pub(crate) fn frame_files(dir: &Path) -> Result<Vec<PathBuf>, VideoError> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| VideoError::new(dir, format!("cannot read folder: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(VideoError::new(dir, "folder holds no .png frames"));
    }
    Ok(files)
}

/// A folder of PNG frames: the first frame's size, [`FOLDER_FPS`].
pub(crate) fn probe(files: &[PathBuf]) -> Result<VideoInfo, VideoError> {
    let (width, height) = image::image_dimensions(&files[0])
        .map_err(|e| VideoError::new(&files[0], format!("cannot read image: {e}")))?;
    check_size(&files[0], width, height)?;
    Ok(VideoInfo {
        width,
        height,
        timeline: Timeline::Constant {
            fps: FOLDER_FPS as f64,
            frames: files.len(),
        },
        codec: "png".into(),
        rotation: 0,
    })
}

/// Passes frames `first..=last` to `out`; each must have the first frame's size.
pub(crate) fn decode(
    files: &[PathBuf],
    (width, height): (u32, u32),
    (first, last): (usize, usize),
    out: &mut Frames,
) -> Result<(), VideoError> {
    for file in &files[first..=last] {
        let frame = read_image(file)?;
        if frame.dimensions() != (width, height) {
            return Err(VideoError::new(
                file,
                format!(
                    "frame is {}x{}, expected {width}x{height} like the first frame",
                    frame.width(),
                    frame.height(),
                ),
            ));
        }
        out.push(frame);
    }
    Ok(())
}

/// Reads one picture (PNG or GIF) as RGB.
pub fn read_image(path: &Path) -> Result<RgbImage, VideoError> {
    image::open(path)
        .map(|img| img.to_rgb8())
        .map_err(|e| VideoError::new(path, format!("cannot read image: {e}")))
}

/// Writes one RGB picture as PNG, atomically.
pub fn write_image(path: &Path, img: &RgbImage) -> Result<(), VideoError> {
    crate::write_atomic(path, |out| {
        img.write_to(out, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
}

/// Writes every frame as `frame_000.png`, `frame_001.png`, ... in `dir`.
pub fn write_folder(dir: &Path, clip: &Clip) -> Result<(), VideoError> {
    for (i, frame) in clip.frames.iter().enumerate() {
        write_image(&dir.join(format!("frame_{i:03}.png")), frame)?;
    }
    Ok(())
}
