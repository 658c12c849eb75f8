//! `cmdv adherence`: the share of clips that show the colour and motion their teaching-dataset
//! caption asks for: clips of a captioned folder, or clips a model generates for every
//! held-out teaching prompt (prompts the shipped model never saw in training).

use std::path::PathBuf;

use anyhow::{Result, bail};
use cmd_model::pipelines::{GenerateOptions, Sampler, SamplingOptions};
use cmd_teaching::adherence::analyse;
use cmd_teaching::dataset::{Motion, Scene};
use cmd_video::Clip;
use cmd_video::{is_clip_file, read_clip};

use crate::cli::AdherenceArgs;
use crate::generate::{clip_of, load_model};
use cmd_train::captions;

use crate::{device, progress};

/// Counts of clips with the right colour, motion, and both, and which motion each asked-for
/// motion came out as.
#[derive(Default)]
struct Score {
    clips: usize,
    colour: usize,
    motion: usize,
    both: usize,
    /// `confusion[asked][seen]`, motions in [`Motion::ALL`] order; the last column counts clips
    /// where no object was found.
    confusion: [[usize; 6]; 5],
}

impl Score {
    fn add(&mut self, scene: &Scene, clip: &Clip) {
        let got = analyse(clip);
        self.clips += 1;
        self.colour += usize::from(got.colour == Some(scene.colour));
        self.motion += usize::from(got.motion == Some(scene.motion));
        self.both += usize::from(got.matches(scene));
        let index = |m: Motion| Motion::ALL.iter().position(|&a| a == m).unwrap_or(5);
        self.confusion[index(scene.motion)][got.motion.map_or(5, index)] += 1;
    }

    /// The confusion table as text: one row per asked-for motion.
    fn table(&self) -> String {
        let names: Vec<&str> = Motion::ALL.iter().map(|m| m.name()).collect();
        let mut out = format!("{:>13} |", "asked \\ seen");
        for name in names.iter().chain(&["none"]) {
            out += &format!(" {name:>8}");
        }
        for (name, row) in names.iter().zip(&self.confusion) {
            out += &format!("\n{name:>13} |");
            for count in row {
                out += &format!(" {count:>8}");
            }
        }
        out
    }

    fn print(&self, json: bool) {
        let n = self.clips as f64;
        let (c, m, b) = (
            self.colour as f64 / n,
            self.motion as f64 / n,
            self.both as f64 / n,
        );
        if json {
            let rows: Vec<String> = self.confusion.iter().map(|r| format!("{r:?}")).collect();
            println!(
                "{{\"clips\":{},\"colour\":{c:.4},\"motion\":{m:.4},\"both\":{b:.4},\
                 \"motion_confusion\":[{}]}}",
                self.clips,
                rows.join(",")
            );
        } else {
            println!(
                "{} clips: right colour {:.1} %, right motion {:.1} %, both {:.1} %",
                self.clips,
                100.0 * c,
                100.0 * m,
                100.0 * b
            );
            println!("{}", self.table());
        }
    }
}

pub fn run(args: &AdherenceArgs) -> Result<()> {
    let score = match &args.data {
        Some(dir) => score_folder(dir)?,
        None => score_model(args)?,
    };
    score.print(args.json);
    Ok(())
}

fn score_folder(dir: &PathBuf) -> Result<Score> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the folder: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_clip_file(p))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("{}: no clips found", dir.display());
    }
    let captions = captions::for_clips(dir, &paths, None)?;
    let mut score = Score::default();
    for (path, caption) in paths.iter().zip(&captions) {
        let Some(scene) = Scene::parse(caption) else {
            bail!(
                "{}: the caption '{caption}' is not a teaching-dataset caption \
                 (\"a red circle moving left on a gray background\")",
                path.display()
            );
        };
        score.add(&scene, &read_clip(path, &cmd_video::Take::all())?);
    }
    Ok(score)
}

fn score_model(args: &AdherenceArgs) -> Result<Score> {
    let device = device::open(args.device)?;
    let pipeline = load_model(args.model.as_deref(), &device)?;
    let scenes: Vec<Scene> = Scene::all().into_iter().filter(Scene::held_out).collect();
    let sampling = |steps, guidance| SamplingOptions {
        steps,
        guidance,
        sampler: Sampler::Ddim,
    };
    if let Some(dir) = &args.save {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("{}: cannot create the folder: {e}", dir.display()))?;
    }
    let bar = progress::bar(scenes.len() as u64, "clips");
    let mut score = Score::default();
    let mut csv = String::from("path,caption\n");
    for (i, scene) in scenes.iter().enumerate() {
        let options = GenerateOptions {
            content: sampling(args.steps, args.guidance),
            motion: sampling(args.motion_steps, args.motion_guidance),
            seed: i as u64,
        };
        let video = pipeline.generate(&scene.caption(), &options, &device, &mut |_, _, _| {})?;
        let clip = clip_of(&video, 8.0)?;
        score.add(scene, &clip);
        if let Some(dir) = &args.save {
            let name = format!("held-out-{i:03}.gif");
            cmd_video::write_clip(&dir.join(&name), &clip)?;
            csv.push_str(&format!("{name},{}\n", scene.caption()));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(dir) = &args.save {
        cmd_video::write_bytes_atomic(&dir.join("captions.csv"), csv.as_bytes())?;
    }
    Ok(score)
}
