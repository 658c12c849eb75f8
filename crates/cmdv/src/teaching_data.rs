//! `cmdv make-teaching-data`: write the procedural teaching dataset to a folder.

use anyhow::{Context, Result, ensure};
use cmd_teaching::dataset as teaching;

use crate::cli::MakeTeachingDataArgs;
use crate::progress;

pub fn run(args: &MakeTeachingDataArgs) -> Result<()> {
    ensure!(args.count > 0, "--count must be positive");
    ensure!(args.frames > 0, "--frames must be positive");
    ensure!(
        args.size >= 16 && args.size.is_multiple_of(16),
        "--size must be a multiple of 16 (H.264 macroblocks), found {}",
        args.size
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create the folder", args.out.display()))?;
    let bar = progress::bar(args.count as u64, "clips");
    let mut csv = String::from("path,caption\n");
    let examples = teaching::examples(args.count, args.seed, args.held_out, args.frames, args.size);
    for (i, (caption, clip)) in examples.iter().enumerate() {
        let name = format!("clip-{i:05}.mp4");
        cmd_video::mp4::write(&args.out.join(&name), clip)?;
        csv.push_str(&format!("{name},{caption}\n"));
        bar.inc(1);
    }
    cmd_video::write_bytes_atomic(&args.out.join("captions.csv"), csv.as_bytes())?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} {} clips and captions.csv to {}",
        args.count,
        if args.held_out {
            "held-out"
        } else {
            "training"
        },
        args.out.display()
    );
    Ok(())
}
