//! `cmdv`: train, inspect, reconstruct, sample and benchmark CMD models.

mod adherence;
mod bench;
mod cli;
mod device;
mod generate;
mod info;
mod progress;
mod reconstruct;
mod sample_content;
mod teaching_data;
mod tensor_io;
mod train;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc keeps freed memory for the next allocation of the same size: with the system
/// allocator a model's large activations went back to the kernel after every operation and
/// came back as page faults (7 % of the `tiny` autoencoder's time in `perf`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (between `mi_option_eager_commit_delay`, 14, and
/// `mi_option_use_numa_nodes`, 16, in `mimalloc.h`; the Rust bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Never hand freed memory back to the kernel: by default mimalloc does after a second,
    // and the `ucf64` autoencoder's activations (up to 200 MB) then came back as fresh pages
    // to zero on every pass (19 % of its time in `perf`, encode 4.3 -> 2.2 s).
    // SAFETY: sets one of the allocator's options; any value is valid for it.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    end_quietly_on_closed_pipe();
    let cli = cli::Cli::parse();
    pin_default_device(&cli.command);
    match on_compute_pool(|| run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `work` on a worker of a thread pool of its own (`RAYON_NUM_THREADS` threads, else one
/// per core), which the CPU backend's parallel operations then share. Called from any other
/// thread, each parallel operation is handed to the pool and waited for: two thread wake-ups
/// per operation, even for one that runs as a single task (about 10 % of a DiT step in `perf`).
/// From a worker, small operations run in place and large ones are shared with the others.
/// Threads that `work` starts itself (video decoding) use rayon's global pool, so they never
/// wait on this one.
fn on_compute_pool<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    match rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("cmdv-compute-{i}"))
        // The main thread's usual stack, not rayon's 2 MiB: `work` is the whole command.
        .stack_size(8 << 20)
        .build()
    {
        Ok(pool) => pool.install(work),
        // No threads could be started: the calling thread does the work alone.
        Err(_) => work(),
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

/// burn makes a resumed run's optimizer state on its default device (the first GPU backend
/// compiled in, unless `BURN_DEVICE` says otherwise) before moving it to the parameters'
/// device. A trainer pins that default to its `--device`, so a CPU run never opens a GPU
/// driver (nor prints the driver's complaints).
fn pin_default_device(command: &cli::Command) {
    let device = match command {
        cli::Command::TrainAe(args) => args.device,
        cli::Command::TrainContent(args) => args.train.device,
        cli::Command::TrainMotion(args) => args.train.device,
        _ => return,
    };
    if std::env::var_os("BURN_DEVICE").is_some() {
        return;
    }
    let name = match device {
        cli::DeviceArg::Cpu => "flex",
        cli::DeviceArg::Wgpu => "wgpu",
        cli::DeviceArg::Vulkan => "vulkan",
        cli::DeviceArg::Cuda => "cuda",
    };
    // SAFETY: called from `main` before any other thread exists (argument parsing starts
    // none), so nothing reads the environment concurrently.
    unsafe {
        std::env::set_var("BURN_DEVICE", name);
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Info(args) => info::run(&args),
        cli::Command::TrainAe(args) => train::ae(&args),
        cli::Command::Reconstruct(args) => reconstruct::run(&args),
        cli::Command::TrainContent(args) => train::content(&args),
        cli::Command::SampleContent(args) => sample_content::run(&args),
        cli::Command::TrainMotion(args) => train::motion(&args),
        cli::Command::Generate(args) => generate::generate(&args),
        cli::Command::Animate(args) => generate::animate(&args),
        cli::Command::Transfer(args) => generate::transfer(&args),
        cli::Command::Export(args) => generate::export(&args),
        cli::Command::MakeTeachingData(args) => teaching_data::run(&args),
        cli::Command::Adherence(args) => adherence::run(&args),
        cli::Command::Bench(args) => bench::run(&args),
    }
}

#[cfg(test)]
mod tests {
    /// Guards the option's number against a new mimalloc: 1000 ms is the default of the purge
    /// delay and of no other option.
    #[test]
    fn the_allocator_option_set_is_the_purge_delay() {
        // SAFETY: reads one of the allocator's options.
        let value = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(value, 1000);
    }
}
