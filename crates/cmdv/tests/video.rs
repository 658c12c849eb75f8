//! `cmdv` on the videos people have, as a new user runs it: phone and web exports of every
//! common format, with and without FFmpeg, whole and damaged, one clip or a folder of them.
//!
//! These tests need FFmpeg (`.ci/run` installs it); one runs cmdv with FFmpeg hidden.

mod common;

use std::path::Path;
use std::process::Command;

use common::{fails, fixture, latest, metrics_steps, ok, s, scratch};

/// cmdv run with nothing on PATH, as on a machine without FFmpeg.
fn without_ffmpeg(args: &[&str]) -> std::process::Output {
    let empty = scratch("no-ffmpeg-path");
    Command::new(env!("CARGO_BIN_EXE_cmdv"))
        .args(args)
        .env("PATH", &empty)
        .env_remove("CMD_FFMPEG")
        .output()
        .expect("cmdv runs")
}

#[test]
fn reconstruct_takes_every_common_video_with_no_other_setup() {
    let work = scratch("recon-formats");
    for name in [
        "h264-high.mp4", // H.264 High with B-frames and an audio track (phone/web export)
        "h264-main-720p.mp4", // 1280x720 Main profile
        "vp9.webm",
        "hevc.mov",
        "av1.mkv",
        "mjpeg.avi",
        "rotated.mp4",
    ] {
        let out = work.join(name);
        let json = ok(&[
            "reconstruct",
            "--input",
            s(&fixture(&format!("video/{name}"))),
            "--out",
            s(&out),
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(v["frames"], 16, "{name}");
        let psnr = v["psnr"].as_f64().unwrap();
        assert!(psnr.is_finite() && psnr > 5.0, "{name}: {psnr}");
        for f in [
            "slide.png",
            "content.png",
            "weights.png",
            "motion.png",
            "input.gif",
            "recon.gif",
            "content-only.gif",
        ] {
            assert!(out.join(f).exists(), "{name}: {f} missing");
        }
        let still = v["psnr_content_only"].as_f64().unwrap();
        assert!(still.is_finite() && still > 5.0, "{name}: {still}");
    }
    std::fs::remove_dir_all(work).unwrap();
}

#[test]
fn reconstruct_takes_frames_from_anywhere_at_any_rate() {
    let work = scratch("recon-take");
    let input = fixture("video/h264-high.mp4");
    let out = work.join("late");
    let stderr = |args: &[&str]| {
        let o = common::cmdv(args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let said = stderr(&[
        "reconstruct",
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--start",
        "7.5",
        "--fps",
        "8",
    ]);
    assert!(
        said.contains("160x120 h264 (High), 300 frames at 29.970 fps"),
        "{said}"
    );
    assert!(said.contains("took 16 frames at 8.000 fps"), "{said}");
    assert!(
        said.contains("centre-cropped to 120x120 and resized to the model's 64x64"),
        "{said}"
    );
    assert!(
        said.contains("used the shipped real-video autoencoder ('real64', 64x64"),
        "{said}"
    );
    // Without --fps, clips are sampled at the rate the shipped autoencoder was trained at;
    // where that runs past the end, at the video's own rate, and it says so.
    let said = stderr(&["reconstruct", "--input", s(&input), "--out", s(&out)]);
    assert!(said.contains("took 16 frames at 10.000 fps"), "{said}");
    let said = stderr(&[
        "reconstruct",
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--offset",
        "280",
    ]);
    assert!(
        said.contains("too short for 16 frames at the autoencoder's 10 fps")
            && said.contains("took 16 frames at 29.970 fps"),
        "{said}"
    );

    let err = fails(&[
        "reconstruct",
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--offset",
        "290",
    ]);
    assert!(
        err.contains("h264-high.mp4") && err.contains("needs 306 frames"),
        "{err}"
    );
    let err = fails(&[
        "reconstruct",
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--fps",
        "0",
    ]);
    assert!(err.contains("--fps must be a positive number"), "{err}");
    let err = fails(&[
        "reconstruct",
        "--input",
        s(&input),
        "--out",
        s(&out),
        "--start",
        "1",
        "--offset",
        "3",
    ]);
    assert!(err.contains("--start") && err.contains("--offset"), "{err}");
    std::fs::remove_dir_all(work).unwrap();
}

#[test]
fn bad_videos_give_one_clear_error_naming_the_file() {
    let work = scratch("recon-bad");
    let out = work.join("out");
    let error_for = |input: &Path| fails(&["reconstruct", "--input", s(input), "--out", s(&out)]);
    let err = error_for(&fixture("video/audio-only.mp4"));
    assert!(
        err.contains("audio-only.mp4") && err.contains("no video stream"),
        "{err}"
    );
    let empty = work.join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let err = error_for(&empty);
    assert!(err.contains("empty.mp4: empty file (0 bytes)"), "{err}");
    let cut = work.join("cut.mp4");
    let bytes = std::fs::read(fixture("video/box-faststart.mp4")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = error_for(&cut);
    assert!(
        err.contains("cut.mp4") && err.contains("truncated"),
        "{err}"
    );
    let huge = work.join("huge.y4m");
    std::fs::write(&huge, b"YUV4MPEG2 W100000 H100000 F25:1\nFRAME\n").unwrap();
    let err = error_for(&huge);
    assert!(
        err.contains("huge.y4m") && err.contains("larger than any video"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written for a bad input");
    std::fs::remove_dir_all(work).unwrap();
}

#[test]
fn without_ffmpeg_h264_still_reads_and_other_codecs_say_what_to_install() {
    let work = scratch("recon-built-in");
    let out = work.join("out");
    let high = fixture("video/h264-high.mp4");
    let run = without_ffmpeg(&["reconstruct", "--input", s(&high), "--out", s(&out)]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("PSNR"));
    let webm = fixture("video/vp9.webm");
    let run = without_ffmpeg(&["reconstruct", "--input", s(&webm), "--out", s(&out)]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        err.starts_with("error: ")
            && err.contains("vp9.webm")
            && err.contains("needs FFmpeg")
            && err.contains("apt install ffmpeg"),
        "{err}"
    );
    // Writing webm needs FFmpeg too; mp4 falls back to the built-in encoder.
    let generate = |out: &Path| {
        without_ffmpeg(&[
            "generate",
            "--prompt",
            "a red circle moving up on a white background",
            "--steps",
            "2",
            "--motion-steps",
            "2",
            "--out",
            s(out),
        ])
    };
    let run = generate(&work.join("clip.webm"));
    assert!(String::from_utf8_lossy(&run.stderr).contains("writing .webm needs FFmpeg"));
    assert!(generate(&work.join("clip.mp4")).status.success());
    std::fs::remove_dir_all(work).unwrap();
}

#[test]
fn generated_clips_are_written_as_mp4_webm_and_gif_at_any_rate() {
    let work = scratch("gen-formats");
    for name in ["clip.mp4", "clip.webm", "clip.gif"] {
        let path = work.join(name);
        ok(&[
            "generate",
            "--prompt",
            "a blue square moving left on a black background",
            "--steps",
            "2",
            "--motion-steps",
            "2",
            "--fps",
            "12",
            "--out",
            s(&path),
        ]);
        let clip = cmd_video::read_clip(&path, &cmd_video::Take::all()).unwrap();
        assert_eq!(clip.len(), 16, "{name}");
        // GIF delays are whole hundredths of a second: 1/12 s is stored as 0.08 s.
        let want = if name.ends_with(".gif") { 12.5 } else { 12.0 };
        assert!((clip.fps - want).abs() < 0.01, "{name}: {} fps", clip.fps);
    }
    let video = cmd_video::Video::open(&work.join("clip.mp4")).unwrap();
    assert_eq!(video.info().codec, "h264 (High)");
    std::fs::remove_dir_all(work).unwrap();
}

/// A folder of class folders with clips in several formats, a file that is no video at all,
/// one cut off in its frames, one too short, and notes.
fn mixed_data(name: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    let put = |rel: &str, from: &str| {
        let to = dir.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture(from), to).unwrap();
    };
    put("Walking/v_walk_g01.mp4", "video/h264-high.mp4");
    put("Walking/v_walk_g02.webm", "video/vp9.webm");
    put("Boxing/v_box_g01.y4m", "clips/box.y4m");
    put("Boxing/v_box_g02.mov", "video/hevc.mov");
    put("Trees/v_tree_g01.mp4", "clips/tree.mp4");
    put("Trees/v_tree_g02.avi", "video/mjpeg.avi");
    std::fs::write(dir.join("Trees/v_tree_g03.avi"), [0x5au8; 4096]).unwrap();
    let cut = std::fs::read(fixture("video/box-faststart.mp4")).unwrap();
    std::fs::write(dir.join("Boxing/v_box_g03.mp4"), &cut[..cut.len() * 2 / 3]).unwrap();
    let short = cmd_video::read_clip(&fixture("clips/box.y4m"), &cmd_video::Take::first(8));
    cmd_video::write_clip(&dir.join("Boxing/v_box_g04.gif"), &short.unwrap()).unwrap();
    std::fs::write(dir.join("README.txt"), "not a video").unwrap();
    dir
}

#[test]
fn train_ae_streams_a_mixed_folder_survives_bad_files_and_resumes_exactly() {
    let data = mixed_data("stream-data");
    let work = scratch("stream-runs");
    let train = |out: &Path, steps: &str, extra: &[&str]| {
        let mut args = vec![
            "train-ae",
            "--data",
            s(&data),
            "--preset",
            "teaching",
            "--out",
            s(out),
            "--steps",
            steps,
            "--batch",
            "2",
            "--checkpoint-every",
            "2",
            "--stream",
            "--workers",
            "2",
        ];
        args.extend(extra);
        let o = common::cmdv(&args);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{stderr}");
        stderr
    };
    let whole = work.join("whole");
    let said = train(&whole, "6", &[]);
    // Each bad file is named once, and the count is in the final line and the run's log.
    assert_eq!(said.matches("v_tree_g03.avi").count(), 1, "{said}");
    assert_eq!(said.matches("v_box_g03.mp4").count(), 1, "{said}");
    assert_eq!(said.matches("v_box_g04.gif").count(), 1, "{said}");
    assert!(said.contains("too short"), "{said}");
    assert!(said.contains("1 other file ignored"), "{said}");
    assert!(
        said.contains(
            "3 clips skipped (1 unreadable, 1 too short, 1 failed to decode while training)"
        ),
        "{said}"
    );
    let log = std::fs::read_to_string(whole.join("data.log")).unwrap();
    assert!(
        log.contains("skipped") && log.contains("v_box_g03.mp4"),
        "{log}"
    );
    assert!(log.contains("3 clips skipped"), "{log}");
    assert!(data.join(".cmd-index.json").exists());

    // Interrupted after 2 steps and resumed: the same losses as the uninterrupted run.
    let parts = work.join("parts");
    train(&parts, "2", &[]);
    train(&parts, "6", &["--resume"]);
    assert_eq!(latest(&parts), "step-000006");
    assert_eq!(metrics_steps(&parts), vec![1, 2, 3, 4, 5, 6]);
    let losses = |run: &Path| -> Vec<String> {
        std::fs::read_to_string(run.join("metrics.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().to_string())
            .collect()
    };
    assert_eq!(losses(&parts), losses(&whole));

    // In memory (the default for small data) the same examples, so the same losses.
    let memory = work.join("memory");
    let mut args = vec![
        "train-ae",
        "--data",
        s(&data),
        "--preset",
        "teaching",
        "--out",
        s(&memory),
        "--steps",
        "6",
        "--batch",
        "2",
    ];
    let o = common::cmdv(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("decoded in memory"));
    assert_eq!(losses(&memory), losses(&whole));

    // A UCF-101 split file picks the clips.
    let list = data.join("trainlist01.txt");
    std::fs::write(&list, "Walking/v_walk_g01.mp4 1\nBoxing/v_box_g01.y4m 2\n").unwrap();
    let split = work.join("split");
    args = vec![
        "train-ae",
        "--data",
        s(&data),
        "--split",
        s(&list),
        "--preset",
        "teaching",
        "--out",
        s(&split),
        "--steps",
        "1",
        "--batch",
        "1",
    ];
    let o = common::cmdv(&args);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("on 2 clips from"), "{said}");
    std::fs::remove_dir_all(work).unwrap();
    std::fs::remove_dir_all(data).unwrap();
}

#[test]
fn a_folder_with_nothing_readable_is_one_error() {
    let data = scratch("nothing-readable");
    std::fs::write(data.join("a.mp4"), [1u8; 100]).unwrap();
    std::fs::write(data.join("notes.txt"), "x").unwrap();
    let out = data.join("run");
    let err = fails(&[
        "train-ae",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--preset",
        "teaching",
    ]);
    assert!(
        err.contains("no readable clips found")
            && err.contains("1 could not be read")
            && err.contains("a.mp4: not a readable video"),
        "{err}"
    );
    std::fs::remove_dir_all(data).unwrap();
}
