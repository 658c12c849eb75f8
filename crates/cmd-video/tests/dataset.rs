//! The training-data pipeline on real files: the cached index of a folder mixing good,
//! damaged and non-video files, examples streamed against examples decoded into memory,
//! background workers, skipped clips, exact resumption, UCF-101 split files.
//!
//! These tests need FFmpeg (`.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cmd_video::VideoReader;
use cmd_video::dataset::{
    Augment, ClipSpec, Dataset, Example, Index, Loader, LoaderState, clips_in,
};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cmd-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn reader() -> VideoReader {
    let reader = VideoReader::new();
    assert!(
        reader.has_ffmpeg(),
        "these tests need FFmpeg: apt install ffmpeg"
    );
    reader
}

/// A UCF-101-style folder: class folders of clips in several formats, one clip that cannot
/// be read at all, one whose frames are cut off, and files that are not videos.
fn mixed_folder(name: &str) -> PathBuf {
    let dir = scratch(name);
    let put = |rel: &str, from: &str| {
        let to = dir.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture(from), to).unwrap();
    };
    put("Walking/v_walk_g01.mp4", "video/h264-high.mp4");
    put("Walking/v_walk_g02.webm", "video/vp9.webm");
    put("Box/v_box_g01.y4m", "clips/box.y4m");
    put("Box/v_box_g02.mov", "video/hevc.mov");
    put("Tree/v_tree_g01.mp4", "clips/tree.mp4");
    std::fs::write(dir.join("Tree/v_tree_g02.avi"), [0x5au8; 4096]).unwrap();
    let cut = std::fs::read(fixture("video/box-faststart.mp4")).unwrap();
    std::fs::write(dir.join("Box/v_box_g03.mp4"), &cut[..cut.len() * 2 / 3]).unwrap();
    std::fs::write(dir.join("README.txt"), "not a video").unwrap();
    std::fs::write(dir.join("Tree/notes.md"), "neither").unwrap();
    dir
}

fn spec(frames: usize) -> ClipSpec {
    ClipSpec {
        frames,
        stride: 1,
        fps: None,
        width: 32,
        height: 32,
        augment: Augment {
            crop_min: 0.8,
            flip: true,
        },
    }
}

fn index(dir: &Path) -> Index {
    Index::build(dir, reader(), 2, &mut |_| {}).unwrap()
}

#[test]
fn the_index_is_built_once_and_names_what_it_left_out() {
    let dir = mixed_folder("index");
    let first = index(&dir);
    let names: Vec<String> = first
        .videos
        .iter()
        .map(|v| v.path().file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "v_box_g01.y4m",
            "v_box_g02.mov",
            "v_box_g03.mp4",
            "v_tree_g01.mp4",
            "v_walk_g01.mp4",
            "v_walk_g02.webm"
        ]
    );
    assert_eq!(first.unreadable.len(), 1, "{:?}", first.unreadable);
    assert!(first.unreadable[0].0.ends_with("Tree/v_tree_g02.avi"));
    assert_eq!(first.ignored, 2);
    assert_eq!(first.probed, 7);
    assert_eq!(
        first.cache.as_deref(),
        Some(dir.join(".cmd-index.json").as_path())
    );
    assert_eq!(first.videos[4].info().frames(), 300);

    // The second time nothing is probed; a changed file is probed again.
    let again = index(&dir);
    assert_eq!(again.probed, 0);
    assert_eq!(again.videos.len(), 6);
    assert_eq!(
        again.unreadable, first.unreadable,
        "failures are cached too"
    );
    std::fs::copy(
        fixture("video/vp8.webm"),
        dir.join("Walking/v_walk_g02.webm"),
    )
    .unwrap();
    let changed = index(&dir);
    assert_eq!(changed.probed, 1);
    assert!(changed.videos[5].info().codec.starts_with("vp8"));
    // A moved folder keeps its cache and reads from where it is now.
    let moved = dir.with_file_name(format!(
        "{}-moved",
        dir.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&moved);
    std::fs::rename(&dir, &moved).unwrap();
    let there = index(&moved);
    assert_eq!(there.probed, 0);
    assert!(there.videos[0].path().starts_with(&moved));
    let (dataset, _) = Dataset::new(there.videos, spec(8), 0);
    dataset.example(0).unwrap();
    std::fs::remove_dir_all(moved).unwrap();
}

/// Examples 0..n of a dataset through a loader.
fn examples(dataset: &Arc<Dataset>, state: &LoaderState, workers: usize, n: usize) -> Vec<Example> {
    let mut loader = Loader::new(dataset.clone(), state, workers, 6);
    (0..n).map(|_| loader.next_example().unwrap().0).collect()
}

fn same(a: &[Example], b: &[Example]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.clip, y.clip, "example {i}");
        assert_eq!(x.frames, y.frames, "example {i}");
    }
}

#[test]
fn streamed_examples_equal_examples_decoded_in_memory() {
    let dir = mixed_folder("streamed");
    let mut videos = index(&dir).videos;
    // Only wholly readable clips here: a damaged one is skipped in both, but a streamed read
    // can get frames from it that a whole decode cannot.
    videos.retain(|v| !v.path().ends_with("Box/v_box_g03.mp4"));
    let (streamed, short) = Dataset::new(videos.clone(), spec(16), 7);
    assert!(short.is_empty());
    let (mut preloaded, _) = Dataset::new(videos, spec(16), 7);
    preloaded.preload(2, &mut |_, _| {});
    assert!(preloaded.is_preloaded() && !streamed.is_preloaded());
    let (streamed, preloaded) = (Arc::new(streamed), Arc::new(preloaded));
    let start = LoaderState::default();
    let n = 2 * streamed.len() + 3;
    let a = examples(&streamed, &start, 2, n);
    let b = examples(&preloaded, &start, 0, n);
    same(&a, &b);
    // Each epoch visits every clip once, in its own order.
    let epoch = |e: &[Example]| {
        let mut clips: Vec<usize> = e.iter().map(|x| x.clip).collect();
        clips.sort();
        clips
    };
    let len = streamed.len();
    assert_eq!(epoch(&a[..len]), (0..len).collect::<Vec<_>>());
    assert_eq!(epoch(&a[len..2 * len]), (0..len).collect::<Vec<_>>());
    let order = |e: &[Example]| e.iter().map(|x| x.clip).collect::<Vec<_>>();
    assert_ne!(order(&a[..len]), order(&a[len..2 * len]));
    for x in &a {
        assert_eq!(
            (x.frames.len(), x.frames.width(), x.frames.height()),
            (16, 32, 32)
        );
    }
    // Another seed, other examples.
    let (other, _) = Dataset::new(streamed.videos().to_vec(), spec(16), 8);
    let c = examples(&Arc::new(other), &start, 0, n);
    assert!(a.iter().zip(&c).any(|(x, y)| x.frames != y.frames));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn damaged_clips_are_skipped_once_and_resumption_is_exact() {
    let dir = mixed_folder("skip");
    let videos = index(&dir).videos;
    let (dataset, _) = Dataset::new(videos, spec(16), 3);
    let dataset = Arc::new(dataset);
    let damaged = dataset
        .videos()
        .iter()
        .position(|v| v.path().ends_with("Box/v_box_g03.mp4"))
        .unwrap();
    let mut loader = Loader::new(dataset.clone(), &LoaderState::default(), 2, 6);
    let mut all = Vec::new();
    let mut skipped = Vec::new();
    let mut states = Vec::new();
    for _ in 0..20 {
        states.push(loader.state());
        let (example, newly) = loader.next_example().unwrap();
        assert_ne!(example.clip, damaged);
        all.push(example);
        skipped.extend(newly);
    }
    assert_eq!(skipped.len(), 1, "named once: {skipped:?}");
    assert!(
        skipped[0].path.ends_with("Box/v_box_g03.mp4"),
        "{skipped:?}"
    );
    assert!(
        skipped[0].reason.contains("truncated") || skipped[0].reason.contains("decoded"),
        "{}",
        skipped[0].reason
    );
    assert_eq!(loader.state().skipped, skipped);
    // 20 examples of 6 clips, one skipped each epoch: 4 epochs of 6 positions (the last
    // one not yet passed if the damaged clip comes last).
    assert!(
        (23..=24).contains(&loader.state().cursor),
        "{}",
        loader.state().cursor
    );

    // Resumed from any point (before or after the damaged clip was met), the same examples.
    for at in [0, 3, 7, 13, 19] {
        let rest = examples(&dataset, &states[at], 1, 20 - at);
        same(&rest, &all[at..]);
    }
    // A saved state serialises (it goes into checkpoints).
    let json = serde_json::to_string(&states[13]).unwrap();
    assert_eq!(
        serde_json::from_str::<LoaderState>(&json).unwrap(),
        states[13]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_run_fails_only_when_nothing_is_readable() {
    let dir = scratch("nothing");
    let cut = std::fs::read(fixture("video/box-faststart.mp4")).unwrap();
    std::fs::write(dir.join("a.mp4"), &cut[..cut.len() * 2 / 3]).unwrap();
    std::fs::write(dir.join("b.mp4"), &cut[..cut.len() * 3 / 4]).unwrap();
    let (dataset, _) = Dataset::new(index(&dir).videos, spec(16), 0);
    let mut loader = Loader::new(Arc::new(dataset), &LoaderState::default(), 1, 4);
    let err = loader.next_example().unwrap_err().to_string();
    assert!(err.contains("none of the 2 clips can be read"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn short_clips_target_rates_and_split_files() {
    let dir = mixed_folder("split");
    let idx = index(&dir);
    // 40 frames: only the 300-frame clip is long enough.
    let (dataset, short) = Dataset::new(idx.videos.clone(), spec(40), 0);
    assert_eq!(dataset.len(), 1);
    assert_eq!(short.len(), 5);
    assert!(
        short
            .iter()
            .all(|(_, why)| why.starts_with("too short: needs 40 frames"))
    );
    // At 5 fps, 8 frames span 1.6 s: the 2 s clips at 10 fps and the long one qualify.
    let spec5 = ClipSpec {
        fps: Some(5.0),
        ..spec(8)
    };
    let (dataset, short) = Dataset::new(idx.videos.clone(), spec5, 0);
    assert_eq!(dataset.len(), 3, "{short:?}");
    let example = dataset.example(0).unwrap();
    assert_eq!(example.frames.fps, 5.0);
    assert!(dataset.decoded_bytes() > 0);

    // UCF-101 split files name the clips to use.
    let list = dir.join("trainlist01.txt");
    std::fs::write(
        &list,
        "Walking/v_walk_g01.mp4 1\nBox/v_box_g01.y4m 2\nBox/gone.avi 2\n",
    )
    .unwrap();
    let (videos, missing) = clips_in(&idx, Some(&list)).unwrap();
    assert_eq!(videos.len(), 2);
    assert!(videos[0].path().ends_with("Walking/v_walk_g01.mp4"));
    assert_eq!(missing, ["Box/gone.avi"]);
    std::fs::write(&list, "Nope/none.avi\n").unwrap();
    let err = clips_in(&idx, Some(&list)).unwrap_err().to_string();
    assert!(
        err.contains("trainlist01.txt") && err.contains("none of its 1 clips"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn whole_clip_examples_are_fixed() {
    let dir = scratch("fixed");
    std::fs::copy(fixture("clips/box.y4m"), dir.join("box.y4m")).unwrap();
    std::fs::copy(fixture("clips/vtest.mp4"), dir.join("vtest.mp4")).unwrap();
    let videos = index(&dir).videos;
    let whole = ClipSpec {
        augment: Augment {
            crop_min: 1.0,
            flip: false,
        },
        ..spec(16)
    };
    assert!(Dataset::new(videos.clone(), whole, 0).0.fixed_examples());
    assert!(!Dataset::new(videos.clone(), spec(16), 0).0.fixed_examples());
    assert!(
        !Dataset::new(videos, ClipSpec { frames: 8, ..whole }, 0)
            .0
            .fixed_examples()
    );
    std::fs::remove_dir_all(dir).unwrap();
}
