//! `cmdv adherence`: the share of clips that show the colour and motion their teaching-dataset
//! caption asks for.

use anyhow::{Result, bail};
use cmd_video::adherence::analyse;
use cmd_video::teaching::Scene;
use cmd_video::{is_clip_file, read_clip};

use crate::captions;
use crate::cli::AdherenceArgs;

pub fn run(args: &AdherenceArgs) -> Result<()> {
    let mut paths: Vec<_> = std::fs::read_dir(&args.data)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the folder: {e}", args.data.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_clip_file(p))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("{}: no clips found", args.data.display());
    }
    let captions = captions::for_clips(&args.data, &paths, None)?;
    let (mut colour, mut motion, mut both) = (0usize, 0usize, 0usize);
    for (path, caption) in paths.iter().zip(&captions) {
        let Some(scene) = Scene::parse(caption) else {
            bail!(
                "{}: the caption '{caption}' is not a teaching-dataset caption \
                 (\"a red circle moving left on a gray background\")",
                path.display()
            );
        };
        let got = analyse(&read_clip(path, None)?);
        colour += usize::from(got.colour == Some(scene.colour));
        motion += usize::from(got.motion == Some(scene.motion));
        both += usize::from(got.matches(&scene));
    }
    let n = paths.len() as f64;
    let (c, m, b) = (colour as f64 / n, motion as f64 / n, both as f64 / n);
    if args.json {
        println!(
            "{{\"clips\":{},\"colour\":{c:.4},\"motion\":{m:.4},\"both\":{b:.4}}}",
            paths.len()
        );
    } else {
        println!(
            "{} clips: right colour {:.1} %, right motion {:.1} %, both {:.1} %",
            paths.len(),
            100.0 * c,
            100.0 * m,
            100.0 * b
        );
    }
    Ok(())
}
