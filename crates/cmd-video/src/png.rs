//! Folders of PNG frames (read in file-name order) and single PNG pictures.

use std::path::Path;

use image::RgbImage;

use crate::{Clip, VideoError};

/// Frames per second assumed for a folder of PNG frames.
pub const FOLDER_FPS: f32 = 8.0;

/// Reads up to `max_frames` `*.png` files of a folder, sorted by name.
pub fn read_folder(dir: &Path, max_frames: Option<usize>) -> Result<Clip, VideoError> {
    let err = |p: &Path, m: String| VideoError::new(p, m);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, format!("cannot read folder: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    if let Some(m) = max_frames {
        files.truncate(m);
    }
    if files.is_empty() {
        return Err(err(dir, "folder holds no .png frames".into()));
    }
    let mut frames: Vec<RgbImage> = Vec::with_capacity(files.len());
    for file in &files {
        let frame = read_image(file)?;
        if let Some(first) = frames.first()
            && first.dimensions() != frame.dimensions()
        {
            return Err(err(
                file,
                format!(
                    "frame is {}x{}, expected {}x{} like the first frame",
                    frame.width(),
                    frame.height(),
                    first.width(),
                    first.height()
                ),
            ));
        }
        frames.push(frame);
    }
    Ok(Clip::new(frames, FOLDER_FPS).expect("frames checked non-empty and of one size"))
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
