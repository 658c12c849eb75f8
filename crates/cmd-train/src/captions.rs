//! Captions of training clips: from a CSV (WebVid's `videoid,name`, or `path,caption`) or from
//! the class folder a clip sits in (UCF-101 style: `ApplyEyeMakeup/` -> "apply eye makeup").

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};

/// The caption of each clip in `paths` (clips of the data folder `data`), in order. `csv` is
/// the captions file; without one, `DATA/captions.csv` is used if it exists, else class folders.
pub fn for_clips(data: &Path, paths: &[PathBuf], csv: Option<&Path>) -> Result<Vec<String>> {
    let default = data.join("captions.csv");
    let csv = csv
        .map(Path::to_path_buf)
        .or_else(|| default.is_file().then_some(default));
    match csv {
        Some(csv) => from_csv(data, paths, &csv),
        None => paths.iter().map(|p| from_class_folder(data, p)).collect(),
    }
}

/// "ApplyEyeMakeup", "apply_eye-makeup" -> "apply eye makeup".
pub fn class_caption(name: &str) -> String {
    let mut out = String::new();
    let mut prev: Option<char> = None;
    for c in name.chars() {
        let c = if c == '_' || c == '-' { ' ' } else { c };
        if c.is_uppercase() && prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit()) {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
        prev = Some(c);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn from_class_folder(data: &Path, clip: &Path) -> Result<String> {
    match clip.parent() {
        Some(parent) if parent != data => {
            let name = parent.file_name().unwrap_or_default().to_string_lossy();
            Ok(class_caption(&name))
        }
        _ => Err(TrainError::path(
            clip,
            format!(
                "no caption: put clips in class folders (UCF-101 style, the folder name is the \
                 caption) or give a captions CSV ({}/captions.csv, or one named in the config)",
                data.display()
            ),
        )),
    }
}

/// A clip's name for matching WebVid ids: its file stem (or folder name for PNG frames).
fn stem(clip: &Path) -> String {
    clip.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn from_csv(data: &Path, paths: &[PathBuf], csv: &Path) -> Result<Vec<String>> {
    let fail = |message: String| TrainError::path(csv, message);
    let mut reader = csv::Reader::from_path(csv)
        .map_err(|e| fail(format!("cannot read the captions CSV: {e}")))?;
    let headers = reader
        .headers()
        .map_err(|e| fail(format!("cannot read the CSV header: {e}")))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (key, caption, by_id) = match (
        column("videoid"),
        column("name"),
        column("path"),
        column("caption"),
    ) {
        (Some(k), Some(c), _, _) => (k, c, true),
        (_, _, Some(k), Some(c)) => (k, c, false),
        _ => {
            return Err(fail(format!(
                "expected the columns videoid,name (WebVid) or path,caption; found {}",
                headers.iter().collect::<Vec<_>>().join(",")
            )));
        }
    };
    let mut table = HashMap::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| fail(format!("row {} is not valid CSV: {e}", row + 2)))?;
        let (Some(k), Some(c)) = (record.get(key), record.get(caption)) else {
            return Err(fail(format!("row {} has too few columns", row + 2)));
        };
        table.insert(k.trim().replace('\\', "/"), c.trim().to_string());
    }
    paths
        .iter()
        .map(|clip| {
            let keys = if by_id {
                vec![stem(clip)]
            } else {
                let relative = clip.strip_prefix(data).unwrap_or(clip);
                vec![
                    relative.to_string_lossy().replace('\\', "/"),
                    clip.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                ]
            };
            keys.iter()
                .find_map(|k| table.get(k))
                .cloned()
                .ok_or_else(|| {
                    fail(format!(
                        "no caption for {} (looked for {} '{}')",
                        clip.display(),
                        if by_id { "videoid" } else { "path" },
                        keys[0]
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_become_captions() {
        assert_eq!(class_caption("ApplyEyeMakeup"), "apply eye makeup");
        assert_eq!(class_caption("YoYo"), "yo yo");
        assert_eq!(class_caption("a_red-circle  moving"), "a red circle moving");
        assert_eq!(class_caption("Jump2Rope"), "jump2 rope");
    }

    fn folder(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cmd-train-captions-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("Walk")).unwrap();
        dir
    }

    #[test]
    fn csv_forms_and_class_folders() {
        let dir = folder("forms");
        let clips = vec![dir.join("1066.mp4"), dir.join("Walk/v_1.y4m")];
        std::fs::write(
            dir.join("webvid.csv"),
            "videoid,contentUrl,name\n1066,x,\"a cat, sleeping\"\nv_1,y,walking\n",
        )
        .unwrap();
        let got = for_clips(&dir, &clips, Some(&dir.join("webvid.csv"))).unwrap();
        assert_eq!(got, ["a cat, sleeping", "walking"]);
        std::fs::write(
            dir.join("captions.csv"),
            "path,caption\n1066.mp4,one\nWalk/v_1.y4m,two\n",
        )
        .unwrap();
        assert_eq!(for_clips(&dir, &clips, None).unwrap(), ["one", "two"]);
        std::fs::remove_file(dir.join("captions.csv")).unwrap();
        assert_eq!(for_clips(&dir, &clips[1..], None).unwrap(), ["walk"]);
        let err = for_clips(&dir, &clips, None).unwrap_err().to_string();
        assert!(err.contains("1066.mp4: no caption"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_csvs_are_named() {
        let dir = folder("bad");
        let clips = vec![dir.join("a.mp4")];
        let csv = dir.join("c.csv");
        std::fs::write(&csv, "file,text\na.mp4,x\n").unwrap();
        let err = for_clips(&dir, &clips, Some(&csv)).unwrap_err().to_string();
        assert!(
            err.contains("c.csv") && err.contains("found file,text"),
            "{err}"
        );
        std::fs::write(&csv, "path,caption\nb.mp4,x\n").unwrap();
        let err = for_clips(&dir, &clips, Some(&csv)).unwrap_err().to_string();
        assert!(
            err.contains("no caption for") && err.contains("'a.mp4'"),
            "{err}"
        );
        let err = for_clips(&dir, &clips, Some(&dir.join("missing.csv")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.csv: cannot read"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
