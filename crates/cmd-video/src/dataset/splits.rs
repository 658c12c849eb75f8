//! UCF-101's official splits: `trainlist0N.txt` (`Class/v_Class_g08_c01.avi 1` per line) and
//! `testlist0N.txt` (`Class/v_Class_g01_c01.avi`).

use std::path::Path;

use crate::VideoError;

/// The clip paths a split file lists (relative to the data folder, with `/`).
pub fn read_split(path: &Path) -> Result<Vec<String>, VideoError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| VideoError::new(path, format!("cannot read the split file: {e}")))?;
    let clips: Vec<String> = text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(|p| p.replace('\\', "/"))
        .collect();
    if clips.is_empty() {
        return Err(VideoError::new(path, "the split file lists no clips"));
    }
    Ok(clips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_split_forms_read() {
        let dir = std::env::temp_dir().join(format!("cmd-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let train = dir.join("trainlist01.txt");
        std::fs::write(
            &train,
            "ApplyEyeMakeup/v_A_g08_c01.avi 1\r\nYoYo\\v_Y_g25_c05.avi 101\n\n",
        )
        .unwrap();
        assert_eq!(
            read_split(&train).unwrap(),
            ["ApplyEyeMakeup/v_A_g08_c01.avi", "YoYo/v_Y_g25_c05.avi"]
        );
        let test = dir.join("testlist01.txt");
        std::fs::write(&test, "ApplyEyeMakeup/v_A_g01_c01.avi\n").unwrap();
        assert_eq!(
            read_split(&test).unwrap(),
            ["ApplyEyeMakeup/v_A_g01_c01.avi"]
        );
        std::fs::write(&test, "\n").unwrap();
        assert!(
            read_split(&test)
                .unwrap_err()
                .to_string()
                .contains("lists no clips")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
