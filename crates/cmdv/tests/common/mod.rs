//! Helpers shared by the `cmdv` end-to-end tests.
// Each test binary uses a different subset of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cmdv-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn cmdv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cmdv"))
        .args(args)
        .output()
        .expect("cmdv runs")
}

pub fn ok(args: &[&str]) -> String {
    let out = cmdv(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cmdv {args:?} failed:\n{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail, checks it failed cleanly (no panic, one error; a run that
/// stops part way may have said what it was doing before), returns its stderr.
pub fn fails(args: &[&str]) -> String {
    let out = cmdv(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "cmdv {args:?} should fail");
    assert!(
        !stderr.contains("panicked"),
        "cmdv {args:?} panicked:\n{stderr}"
    );
    let errors = stderr.lines().filter(|l| l.starts_with("error: ")).count();
    assert!(errors == 1, "one clear error expected:\n{stderr}");
    stderr
}

/// A data folder with two real clips.
pub fn data_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    for clip in ["box.y4m", "tree.mp4"] {
        std::fs::copy(fixture(&format!("clips/{clip}")), dir.join(clip)).unwrap();
    }
    dir
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn metrics_steps(run: &Path) -> Vec<usize> {
    std::fs::read_to_string(run.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

pub fn latest(run: &Path) -> String {
    std::fs::read_to_string(run.join("latest")).unwrap()
}
