//! The `forge` command: wires the parser, builder, store and registry
//! crates to a docker-compatible command line.

mod commands;
mod exit;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Build OCI container images from Dockerfiles, without a daemon.
#[derive(Debug, Parser)]
#[command(name = "forge", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse a Dockerfile and print its instructions.
    Parse(commands::parse::ParseArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Parse(args) => commands::parse::run(&args),
    };
    exit::report(result)
}
