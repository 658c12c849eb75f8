//! Reading and writing every supported format, on the bundled real clips, on small files of
//! every common container and codec (tests/fixtures/video/make.sh), and on broken files.
//!
//! These tests need FFmpeg (`ffmpeg` and `ffprobe` on PATH); `.ci/run` installs it. The
//! built-in decoders are tested too, as on a machine without FFmpeg.

use std::path::{Path, PathBuf};

use cmd_video::{
    Clip, Decode, Start, Take, Timeline, VideoReader, gif, png, read_clip, write_clip,
};

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

/// The reader with FFmpeg, which these tests need.
fn ffmpeg() -> VideoReader {
    let reader = VideoReader::new();
    assert!(
        reader.has_ffmpeg(),
        "these tests need FFmpeg (`ffmpeg` and `ffprobe` on PATH): apt install ffmpeg"
    );
    reader
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
        let y = read_clip(&fixture(&format!("clips/{name}.y4m")), &Take::all()).unwrap();
        let m = read_clip(&fixture(&format!("clips/{name}.mp4")), &Take::all()).unwrap();
        // Carphone's pixels are 128:117 (from its QCIF source): shown 140 wide, as players do.
        let width = if name == "carphone" { 140 } else { 128 };
        assert_eq!((y.len(), y.width(), y.height()), (16, width, 128), "{name}");
        assert_eq!((m.len(), m.width(), m.height()), (16, width, 128), "{name}");
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

/// Every container and codec of the fixtures: size as shown, frame count, rate, codec.
#[test]
fn every_common_container_and_codec_reads() {
    let reader = ffmpeg();
    let cases = [
        ("h264-high.mp4", (160, 120), 300, 29.97, "h264 (High)"),
        ("box-high.mp4", (64, 64), 16, 29.97, "h264 (High)"),
        ("h264-main-720p.mp4", (1280, 720), 16, 29.97, "h264 (Main)"),
        ("h264.m4v", (160, 120), 20, 10.0, "h264 (High)"),
        ("h264.mkv", (160, 120), 20, 10.0, "h264 (High)"),
        ("h264.ts", (160, 120), 20, 10.0, "h264 (High)"),
        ("h264.3gp", (160, 120), 20, 10.0, "h264 (High)"),
        ("hevc.mov", (160, 120), 20, 10.0, "hevc (Main)"),
        ("vp9.webm", (160, 120), 20, 10.0, "vp9 (Profile 0)"),
        ("vp8.webm", (160, 120), 20, 10.0, "vp8"),
        ("av1.mkv", (160, 120), 20, 10.0, "av1 (Main)"),
        ("mpeg2.mpg", (160, 120), 20, 10.0, "mpeg2video"),
        ("theora.ogv", (160, 120), 20, 10.0, "theora"),
        ("mjpeg.avi", (64, 48), 20, 10.0, "mjpeg"),
        ("rotated.mp4", (96, 160), 20, 10.0, "h264 (High)"),
        ("anamorphic.mp4", (64, 64), 16, 29.97, "h264 (High)"),
    ];
    for (name, size, frames, fps, codec) in cases {
        let path = fixture(&format!("video/{name}"));
        let video = reader.open(&path).unwrap_or_else(|e| panic!("{e}"));
        let info = video.info();
        assert_eq!((info.width, info.height), size, "{name}");
        assert_eq!(info.frames(), frames, "{name}");
        assert!(
            (info.fps() - fps).abs() < 0.01,
            "{name}: {} fps",
            info.fps()
        );
        assert!(info.codec.starts_with(codec), "{name}: {}", info.codec);
        let clip = video.read(&Take::all()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(clip.len(), frames, "{name}: every frame decodes");
        assert_eq!((clip.width(), clip.height()), size, "{name}");
        // Real pictures, not blank frames.
        let first = clip.frames[0].as_raw();
        let mean = first.iter().map(|&v| v as f64).sum::<f64>() / first.len() as f64;
        assert!((20.0..235.0).contains(&mean), "{name}: mean {mean}");
    }
}

/// Frames read from the middle (by seeking) are the frames a read from the start gives.
#[test]
fn seeking_gives_the_same_frames_as_decoding_from_the_start() {
    let reader = ffmpeg();
    for (name, first) in [
        ("h264-high.mp4", 200),
        ("h264-high.mp4", 59),
        ("h264-high.mp4", 299),
        ("vp9.webm", 13),
        ("hevc.mov", 7),
        ("h264.ts", 11),
        ("mpeg2.mpg", 9),
        ("vfr.mp4", 5),
    ] {
        let video = reader.open(&fixture(&format!("video/{name}"))).unwrap();
        let all = video.read(&Take::all()).unwrap();
        let n = (video.info().frames() - first).min(4);
        let part = video
            .read(&Take::first(n).from(Start::Frame(first)))
            .unwrap();
        assert_eq!(
            part.frames,
            all.frames[first..first + n],
            "{name} from {first}"
        );
    }
}

/// A seek that lands on a keyframe which is not a clean start (an open-GOP I frame that later
/// frames refer past, as in imageio's cockatoo.mp4) gives the frames a read from the start
/// gives, every time (FFmpeg alone conceals the missing pictures, differently from run to run).
#[test]
fn seeking_to_an_unclean_keyframe_gives_the_frames_from_the_start() {
    let video = ffmpeg().open(&fixture("video/open-gop-444.mp4")).unwrap();
    assert!(
        video.info().codec.contains("4:4:4"),
        "{}",
        video.info().codec
    );
    let small = Decode {
        size: Some((160, 90)),
        threads: None,
    };
    // Frame 124 (6.2 s) is after the keyframe at 3.8 s, whose GOP refers to earlier frames.
    let first = 124;
    let all = video.read_with(&Take::first(first + 16), small).unwrap();
    for run in 0..3 {
        let part = video
            .read_with(&Take::first(16).from(Start::Frame(first)), small)
            .unwrap();
        assert!(
            part.frames == all.frames[first..],
            "run {run}: frames {first}.. differ from a read from the start"
        );
    }
}

/// Without FFmpeg, H.264 of every profile (B-frames, CABAC) decodes with OpenH264, seeks,
/// and turns rotated video upright, agreeing with FFmpeg up to colour conversion.
#[test]
fn built_in_h264_reads_every_profile_and_agrees_with_ffmpeg() {
    let built_in = VideoReader::built_in();
    let reader = ffmpeg();
    for (name, first, n) in [
        ("box-high.mp4", 0, 16),
        ("h264-high.mp4", 200, 16),
        ("h264-high.mp4", 61, 3),
        ("h264-main-720p.mp4", 0, 16),
        ("h264.m4v", 5, 5),
        ("rotated.mp4", 3, 4),
        ("vfr.mp4", 0, 16),
        ("../clips/box.mp4", 4, 4),
    ] {
        let path = fixture(&format!("video/{name}"));
        let take = Take::first(n).from(Start::Frame(first));
        let a = built_in.open(&path).unwrap().read(&take).unwrap();
        let b = reader.open(&path).unwrap().read(&take).unwrap();
        assert_eq!((a.width(), a.height(), a.len()), (b.width(), b.height(), n));
        let p = psnr(&a, &b);
        assert!(
            p > 40.0,
            "{name} from {first}: built-in vs FFmpeg PSNR {p:.1}"
        );
        assert!((a.fps - b.fps).abs() < 0.01, "{name}");
    }
    // Other codecs need FFmpeg, and say so.
    for name in ["hevc.mov", "vp9.webm", "av1.mkv", "mjpeg.avi"] {
        let err = built_in
            .open(&fixture(&format!("video/{name}")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(name) && err.contains("needs FFmpeg") && err.contains("apt install"),
            "{err}"
        );
    }
}

#[test]
fn rotation_metadata_turns_the_frames_upright() {
    let path = fixture("video/rotated.mp4");
    let video = ffmpeg().open(&path).unwrap();
    assert_eq!(video.info().rotation, 90);
    let clip = video.read(&Take::first(1)).unwrap();
    assert_eq!((clip.width(), clip.height()), (96, 160));
}

#[test]
fn variable_frame_rate_video_is_sampled_by_time() {
    let video = ffmpeg().open(&fixture("video/vfr.mp4")).unwrap();
    let Timeline::Variable { times, .. } = &video.info().timeline else {
        panic!(
            "expected a variable frame rate: {:?}",
            video.info().timeline
        );
    };
    // Frames at 0, 1, 3, 4, 6, 7, ... thirtieths of a second.
    for (n, t) in times.iter().enumerate() {
        assert!(
            (t - (n + n / 2) as f64 / 30.0).abs() < 1e-3,
            "frame {n} at {t}"
        );
    }
    // At 10 fps every third thirtieth: frames 0, 2, 4, ...
    let all = video.read(&Take::all()).unwrap();
    let sampled = video.read(&Take::first(5).at_fps(Some(10.0))).unwrap();
    assert_eq!(sampled.fps, 10.0);
    for (k, frame) in sampled.frames.iter().enumerate() {
        assert_eq!(frame, &all.frames[2 * k], "tick {k}");
    }
}

#[test]
fn a_target_rate_and_a_start_in_seconds() {
    let video = ffmpeg().open(&fixture("video/h264-high.mp4")).unwrap();
    let all = video.read(&Take::all()).unwrap();
    // 29.97 fps at 10 fps from 5 s: the frames nearest 5.0, 5.1, ... s.
    let take = Take::first(4).from(Start::Seconds(5.0)).at_fps(Some(10.0));
    let clip = video.read(&take).unwrap();
    let fps = 30000.0 / 1001.0;
    for (k, frame) in clip.frames.iter().enumerate() {
        let first = (5.0f64 * fps).ceil();
        let want = (first / fps + k as f64 / 10.0) * fps;
        assert_eq!(frame, &all.frames[want.round() as usize], "tick {k}");
    }
    // Scaled while decoding.
    let small = video
        .read_with(
            &Take::first(2),
            Decode {
                size: Some((40, 30)),
                threads: Some(1),
            },
        )
        .unwrap();
    assert_eq!((small.width(), small.height()), (40, 30));
    let err = video
        .read(&Take::first(16).from(Start::Seconds(9.9)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("h264-high.mp4") && err.contains("found 300"),
        "{err}"
    );
}

#[test]
fn gif_and_444_y4m_read() {
    let g = read_clip(&fixture("video/box.gif"), &Take::all()).unwrap();
    assert_eq!((g.len(), g.width(), g.height()), (16, 64, 64));
    let y = read_clip(&fixture("video/box-444.y4m"), &Take::all()).unwrap();
    assert_eq!((y.len(), y.width(), y.height()), (16, 64, 64));
    // The palette of a GIF costs some accuracy, but it is the same picture.
    assert!(psnr(&g, &y) > 20.0);
    // Frames from the middle of the pure-Rust formats.
    let part = read_clip(
        &fixture("video/box.gif"),
        &Take::first(3).from(Start::Frame(5)),
    )
    .unwrap();
    assert_eq!(part.frames, g.frames[5..8]);
    let part = read_clip(&fixture("clips/tree.y4m"), &Take::first(5).every(3)).unwrap();
    let all = read_clip(&fixture("clips/tree.y4m"), &Take::all()).unwrap();
    assert_eq!(part.frames[4], all.frames[12]);
    assert!((part.fps - 15.0 / 3.0).abs() < 1e-3, "{}", part.fps);
}

#[test]
fn written_files_read_back() {
    let reader = ffmpeg();
    let dir = scratch("roundtrip");
    let clip = read_clip(&fixture("clips/carphone.y4m"), &Take::all()).unwrap();

    // mp4 through FFmpeg's libx264 (High profile), webm (VP9), and OpenH264's Baseline.
    for (name, min_psnr, codec) in [("out.mp4", 34.0, "h264 (High)"), ("out.webm", 30.0, "vp9")] {
        let path = dir.join(name);
        write_clip(&path, &clip).unwrap();
        let video = reader.open(&path).unwrap();
        assert!(
            video.info().codec.starts_with(codec),
            "{}",
            video.info().codec
        );
        let back = video.read(&Take::all()).unwrap();
        assert_eq!(back.len(), 16);
        assert!(
            (back.fps - clip.fps).abs() < 0.05,
            "{} vs {}",
            back.fps,
            clip.fps
        );
        let p = psnr(&clip, &back);
        assert!(p > min_psnr, "{name} round trip PSNR {p:.1}");
    }
    let baseline = dir.join("baseline.mp4");
    cmd_video::mp4::write(&baseline, &clip).unwrap();
    let back = VideoReader::built_in().open(&baseline).unwrap();
    assert_eq!(back.info().codec, "h264 (Baseline)");
    assert!(psnr(&clip, &back.read(&Take::all()).unwrap()) > 32.0);

    let gif_path = dir.join("out.gif");
    gif::write(&gif_path, &clip).unwrap();
    let back = read_clip(&gif_path, &Take::all()).unwrap();
    assert_eq!(back.len(), 16);
    assert!(psnr(&clip, &back) > 20.0);

    let frames = dir.join("frames");
    png::write_folder(&frames, &clip).unwrap();
    let back = read_clip(&frames, &Take::all()).unwrap();
    assert_eq!(back.frames, clip.frames, "PNG is lossless");

    // Nothing is left behind by a write that fails.
    let err = write_clip(&dir.join("out.avi"), &clip)
        .unwrap_err()
        .to_string();
    assert!(err.contains("out.avi") && err.contains(".webm"), "{err}");
    let tiny = Clip::new(vec![image::RgbImage::new(1, 1)], 8.0).unwrap();
    assert!(write_clip(&dir.join("tiny.mp4"), &tiny).is_err());
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with('.') || n.starts_with("tiny")),
        "{names:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes `bytes` as `name` in a scratch folder and returns the error of reading it (with
/// FFmpeg, or with the built-in decoders).
fn error_for(reader: VideoReader, name: &str, bytes: &[u8]) -> String {
    let dir = scratch(&format!("bad-{name}"));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = reader
        .open(&path)
        .and_then(|v| v.read(&Take::all()))
        .expect_err(name)
        .to_string();
    assert!(err.contains(name), "the error must name the file: {err}");
    std::fs::remove_dir_all(dir).unwrap();
    err
}

#[test]
fn broken_files_give_one_clear_error() {
    let reader = ffmpeg();
    for reader in [reader, VideoReader::built_in()] {
        let y4m = std::fs::read(fixture("clips/box.y4m")).unwrap();
        let err = error_for(reader, "cut.y4m", &y4m[..y4m.len() - 1000]);
        assert!(
            err.contains("truncated") && err.contains("frame 16"),
            "{err}"
        );
        let err = error_for(reader, "garbage.y4m", b"not a y4m file at all\n");
        assert!(err.contains("not a valid y4m"), "{err}");

        // An mp4 cut in the middle of a frame: its index (at the front) names frames that
        // are not there.
        let mp4 = std::fs::read(fixture("video/box-faststart.mp4")).unwrap();
        let err = error_for(reader, "cut.mp4", &mp4[..mp4.len() * 2 / 3]);
        assert!(
            err.contains("truncated") || err.contains("missing"),
            "cut in a frame: {err}"
        );
        // Cut before the index (at the end, as most encoders write it).
        let mp4 = std::fs::read(fixture("video/box-high.mp4")).unwrap();
        error_for(reader, "cut-index.mp4", &mp4[..mp4.len() / 2]);
        error_for(reader, "garbage.mp4", &[7u8; 5000]);
        let err = error_for(reader, "empty.mp4", b"");
        assert!(err.contains("empty file"), "{err}");
        let audio = std::fs::read(fixture("video/audio-only.mp4")).unwrap();
        let err = error_for(reader, "audio.mp4", &audio);
        assert!(err.contains("no video"), "{err}");

        let gif_bytes = std::fs::read(fixture("video/box.gif")).unwrap();
        error_for(reader, "cut.gif", &gif_bytes[..gif_bytes.len() / 3]);
        let err = error_for(reader, "notes.txt", b"hello");
        assert!(err.contains("unsupported video format 'txt'"), "{err}");
    }
    let err = error_for(ffmpeg(), "clip.avi", b"RIFF");
    assert!(err.contains("not a readable video"), "{err}");
    let mut webm = std::fs::read(fixture("video/vp9.webm")).unwrap();
    webm.truncate(webm.len() / 2);
    error_for(ffmpeg(), "cut.webm", &webm);
}

#[test]
fn damaged_frame_data_decodes_or_fails_clearly() {
    let mp4 = std::fs::read(fixture("clips/box.mp4")).unwrap();
    let mut flipped = mp4.clone();
    for b in flipped.iter_mut().skip(2000).step_by(7).take(500) {
        *b ^= 0x5a;
    }
    let dir = scratch("flipped");
    let path = dir.join("flipped.mp4");
    std::fs::write(&path, &flipped).unwrap();
    // H.264 conceals damage, or the reader says what failed; it never panics.
    for reader in [ffmpeg(), VideoReader::built_in()] {
        if let Err(e) = reader.open(&path).and_then(|v| v.read(&Take::all())) {
            assert!(e.to_string().contains("flipped.mp4"), "{e}");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn absurd_frame_sizes_are_refused_before_anything_is_allocated() {
    let reader = ffmpeg();
    let err = error_for(
        reader,
        "huge.y4m",
        b"YUV4MPEG2 W100000 H100000 F25:1 C420jpeg\nFRAME\n",
    );
    assert!(
        err.contains("100000x100000") && err.contains("larger than any video"),
        "{err}"
    );
    // A GIF whose screen is 65535 x 65535.
    let mut gif_bytes = std::fs::read(fixture("video/box.gif")).unwrap();
    gif_bytes[6..10].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    let err = error_for(reader, "huge.gif", &gif_bytes);
    assert!(err.contains("65535x65535"), "{err}");
    // A folder of PNG frames whose first frame's header says 60000 x 60000.
    let dir = scratch("huge-png");
    std::fs::copy(fixture("video/huge-header.png"), dir.join("frame_000.png")).unwrap();
    let err = reader.open(&dir).unwrap_err().to_string();
    assert!(
        err.contains("frame_000.png") && err.contains("60000x60000"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_and_empty_inputs_are_named() {
    let err = read_clip(Path::new("/nonexistent/clip.mp4"), &Take::all())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/clip.mp4") && err.contains("not found"),
        "{err}"
    );
    let dir = scratch("empty");
    let err = read_clip(&dir, &Take::all()).unwrap_err().to_string();
    assert!(err.contains("no .png frames"), "{err}");
}
