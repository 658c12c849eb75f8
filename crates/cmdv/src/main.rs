//! `cmdv`: train, inspect, reconstruct and benchmark CMD video autoencoders.

mod bench;
mod checkpoint;
mod cli;
mod data;
mod device;
mod info;
mod progress;
mod reconstruct;
mod tensor_io;
mod train;
mod viz;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Info(args) => info::run(&args),
        cli::Command::TrainAe(args) => train::run(&args),
        cli::Command::Reconstruct(args) => reconstruct::run(&args),
        cli::Command::Bench(args) => bench::run(&args),
    }
}
