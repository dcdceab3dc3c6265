//! The `forge` command: wires the parser, builder, store and registry
//! crates to a docker-compatible command line.

mod commands;
mod exit;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Build OCI container images from Dockerfiles, without a daemon.
#[derive(Debug, Parser)]
#[command(name = "forge", version, about, max_term_width = 100)]
struct Cli {
    /// Store folder for images, layers and the build cache. Default:
    /// `$XDG_DATA_HOME/forge`, or `/var/lib/forge` as root.
    #[arg(long, global = true, env = "FORGE_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse a Dockerfile and print its instructions.
    Parse(commands::parse::ParseArgs),
}

/// Options every command may need, taken from the global flags.
#[derive(Debug)]
pub struct Globals {
    root: Option<PathBuf>,
}

impl Globals {
    /// Opens the store at `--root` (or the default root), creating it on
    /// first use.
    pub fn open_store(&self) -> anyhow::Result<forge_cache::store::Store> {
        let root = self.root.clone().unwrap_or_else(forge_cache::store::default_root);
        forge_cache::store::Store::open(&root).with_context(|| {
            format!(
                "cannot use the store at `{}`; pass another folder with --root or FORGE_ROOT",
                root.display()
            )
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let globals = Globals { root: cli.root };
    let result = match cli.command {
        Command::Parse(args) => commands::parse::run(&args),
    };
    let _ = &globals;
    exit::report(result)
}
