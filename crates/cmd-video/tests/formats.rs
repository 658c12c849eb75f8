//! Reading and writing every supported format, on the bundled real clips and on broken files.

use std::path::{Path, PathBuf};

use cmd_video::{Clip, gif, mp4, png, read_clip};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cmd-video-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// PSNR in dB between two clips of the same size.
fn psnr(a: &Clip, b: &Clip) -> f64 {
    let unit =
        |c: &Clip| -> Vec<f32> { c.to_signed_f32().iter().map(|v| (v + 1.0) / 2.0).collect() };
    cmd_model::metrics::psnr(&unit(a), &unit(b))
}

#[test]
fn y4m_and_mp4_of_the_same_clip_agree() {
    for name in ["box", "carphone", "tree", "vtest"] {
        let y = read_clip(&fixture(&format!("clips/{name}.y4m")), None).unwrap();
        let m = read_clip(&fixture(&format!("clips/{name}.mp4")), None).unwrap();
        assert_eq!((y.len(), y.width(), y.height()), (16, 128, 128), "{name}");
        assert_eq!((m.len(), m.width(), m.height()), (16, 128, 128), "{name}");
        // Both keep their source's frame rate.
        let want = match name {
            "tree" => 15.0,
            "vtest" => 10.0,
            _ => 29.97,
        };
        assert!((y.fps - want).abs() < 0.01, "{name}: {}", y.fps);
        assert!((m.fps - want).abs() < 0.01, "{name}: {}", m.fps);
        // Two decoders of one source (one lossy at crf 12): close, not equal.
        let p = psnr(&y, &m);
        assert!(p > 30.0, "{name}: y4m vs mp4 PSNR {p:.1}");
    }
}

#[test]
fn max_frames_limits_what_is_read() {
    let y = read_clip(&fixture("clips/tree.y4m"), Some(5)).unwrap();
    let m = read_clip(&fixture("clips/tree.mp4"), Some(5)).unwrap();
    assert_eq!((y.len(), m.len()), (5, 5));
}

#[test]
fn gif_and_444_y4m_read() {
    let g = read_clip(&fixture("video/box.gif"), None).unwrap();
    assert_eq!((g.len(), g.width(), g.height()), (16, 64, 64));
    let y = read_clip(&fixture("video/box-444.y4m"), None).unwrap();
    assert_eq!((y.len(), y.width(), y.height()), (16, 64, 64));
    // The palette of a GIF costs some accuracy, but it is the same picture.
    assert!(psnr(&g, &y) > 20.0);
}

#[test]
fn high_profile_mp4_is_refused_with_a_clear_message() {
    let path = fixture("video/box-high.mp4");
    let err = read_clip(&path, None).unwrap_err().to_string();
    assert!(err.contains("box-high.mp4"), "{err}");
    assert!(
        err.contains("High profile") && err.contains("Baseline"),
        "{err}"
    );
}

#[test]
fn written_files_read_back() {
    let dir = scratch("roundtrip");
    let clip = read_clip(&fixture("clips/carphone.y4m"), None).unwrap();

    let mp4_path = dir.join("out.mp4");
    mp4::write(&mp4_path, &clip).unwrap();
    let back = read_clip(&mp4_path, None).unwrap();
    assert_eq!(back.len(), 16);
    assert!(
        (back.fps - clip.fps).abs() < 0.05,
        "{} vs {}",
        back.fps,
        clip.fps
    );
    let p = psnr(&clip, &back);
    assert!(p > 32.0, "mp4 round trip PSNR {p:.1}");

    let gif_path = dir.join("out.gif");
    gif::write(&gif_path, &clip).unwrap();
    let back = read_clip(&gif_path, None).unwrap();
    assert_eq!(back.len(), 16);
    assert!(psnr(&clip, &back) > 20.0);

    let frames = dir.join("frames");
    png::write_folder(&frames, &clip).unwrap();
    let back = read_clip(&frames, None).unwrap();
    assert_eq!(back.frames, clip.frames, "PNG is lossless");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes `bytes` as `name` in a scratch folder and returns the reader's error.
fn error_for(name: &str, bytes: &[u8]) -> String {
    let dir = scratch(&format!("bad-{name}"));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = read_clip(&path, None).expect_err(name).to_string();
    assert!(err.contains(name), "the error must name the file: {err}");
    std::fs::remove_dir_all(dir).unwrap();
    err
}

#[test]
fn broken_files_give_clear_errors() {
    let y4m = std::fs::read(fixture("clips/box.y4m")).unwrap();
    let err = error_for("cut.y4m", &y4m[..y4m.len() - 1000]);
    assert!(
        err.contains("truncated") && err.contains("frame 16"),
        "{err}"
    );
    let err = error_for("garbage.y4m", b"not a y4m file at all\n");
    assert!(err.contains("not a valid y4m"), "{err}");

    let mp4 = std::fs::read(fixture("clips/box.mp4")).unwrap();
    error_for("cut.mp4", &mp4[..mp4.len() / 2]);
    error_for("garbage.mp4", &[7u8; 5000]);
    let mut flipped = mp4.clone();
    for b in flipped.iter_mut().skip(2000).step_by(7).take(500) {
        *b ^= 0x5a;
    }
    // Damaged sample data either decodes (H.264 conceals) or fails with a message, never panics.
    let dir = scratch("flipped");
    let path = dir.join("flipped.mp4");
    std::fs::write(&path, &flipped).unwrap();
    if let Err(e) = read_clip(&path, None) {
        assert!(e.to_string().contains("flipped.mp4"));
    }

    let gif_bytes = std::fs::read(fixture("video/box.gif")).unwrap();
    error_for("cut.gif", &gif_bytes[..gif_bytes.len() / 3]);
    let err = error_for("clip.avi", b"RIFF");
    assert!(err.contains("unsupported") && err.contains("y4m"), "{err}");
}

#[test]
fn missing_and_empty_inputs_are_named() {
    let err = read_clip(Path::new("/nonexistent/clip.mp4"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/clip.mp4") && err.contains("not found"),
        "{err}"
    );
    let dir = scratch("empty");
    let err = read_clip(&dir, None).unwrap_err().to_string();
    assert!(err.contains("no .png frames"), "{err}");
}
