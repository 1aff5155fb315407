//! The `streamstats` binary: parses the command line, sets up logging and
//! runs one subcommand. Everything else lives in `streamstats-actors`.

mod cli;
mod generate;
mod http;
mod migrate;
mod replay;
mod retention;
mod serve;
mod stack;

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: events are parsed on the consumer's
/// thread and freed on the window actors', and glibc's arenas spent about
/// half of a replay's CPU on such cross-thread frees (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    // Milliseconds: checkpoints and restarts are timed in them.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Migrate(args) => migrate::run(args).map_err(Into::into),
        Command::Generate(args) => generate::run(args).map_err(Into::into),
        Command::Serve(args) => serve::run(args).map_err(Into::into),
        Command::Replay(args) => replay::run(args).map_err(Into::into),
        Command::Stack(args) => stack::run(args).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("streamstats stopped: {err}");
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
