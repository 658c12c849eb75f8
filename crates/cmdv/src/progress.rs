//! Progress bars with an ETA.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` steps: `label [=====>   ] 12/300 eta 1m 3s  message`.
pub fn bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{bar:30.cyan/blue}] {pos}/{len} {elapsed_precise} eta {eta:<4} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}
