//! `cmdv`: train, inspect, reconstruct, sample and benchmark CMD models.

mod adherence;
mod bench;
mod captions;
mod checkpoint;
mod cli;
mod content;
mod data;
mod device;
mod fit;
mod frozen;
mod generate;
mod info;
mod latents;
mod motion;
mod parallel;
mod progress;
mod reconstruct;
mod sample_content;
mod sd_model;
mod teaching_data;
mod tensor_io;
mod train;
mod train_content;
mod train_motion;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    end_quietly_on_closed_pipe();
    let cli = cli::Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Gives SIGPIPE back its default action (Rust's runtime ignores it, which makes `println!`
/// panic when the reader has gone): `cmdv adherence | head -1` then ends quietly, as other
/// Unix tools do.
fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called first in `main`, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Info(args) => info::run(&args),
        cli::Command::TrainAe(args) => train::run(&args),
        cli::Command::Reconstruct(args) => reconstruct::run(&args),
        cli::Command::TrainContent(args) => train_content::run(&args),
        cli::Command::SampleContent(args) => sample_content::run(&args),
        cli::Command::TrainMotion(args) => train_motion::run(&args),
        cli::Command::Generate(args) => generate::generate(&args),
        cli::Command::Animate(args) => generate::animate(&args),
        cli::Command::Transfer(args) => generate::transfer(&args),
        cli::Command::Export(args) => generate::export(&args),
        cli::Command::MakeTeachingData(args) => teaching_data::run(&args),
        cli::Command::Adherence(args) => adherence::run(&args),
        cli::Command::Bench(args) => bench::run(&args),
    }
}
