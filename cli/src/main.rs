//! The `forge` command: wires the parser, builder, store and registry
//! crates to a docker-compatible command line.

mod commands;
mod exit;
mod names;
mod progress;

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
    /// Build an image from a Dockerfile and a context.
    Build(commands::build::BuildArgs),
    /// List images.
    Images(commands::images::ImagesArgs),
    /// Show the manifest, config, names and size of images as JSON.
    Inspect(commands::inspect::InspectArgs),
    /// Show the steps that made an image.
    History(commands::history::HistoryArgs),
    /// Give an image another name.
    Tag(commands::tag::TagArgs),
    /// Remove image names; `forge prune` then frees their blobs.
    Rmi(commands::rmi::RmiArgs),
    /// Remove blobs, layers and build cache that no image name reaches.
    Prune(commands::prune::PruneArgs),
    /// Check or repair the store.
    Store(commands::store::StoreArgs),
    /// Make an image from a root file system tar.
    Import(commands::import::ImportArgs),
    /// Write images to an OCI archive, an OCI layout folder or a docker-archive.
    Save(commands::save::SaveArgs),
    /// Read images from an archive or OCI layout folder into the store.
    Load(commands::load::LoadArgs),
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
        Command::Build(args) => commands::build::run(&globals, &args),
        Command::Images(args) => commands::images::run(&globals, &args),
        Command::Inspect(args) => commands::inspect::run(&globals, &args),
        Command::History(args) => commands::history::run(&globals, &args),
        Command::Tag(args) => commands::tag::run(&globals, &args),
        Command::Rmi(args) => commands::rmi::run(&globals, &args),
        Command::Prune(args) => commands::prune::run(&globals, &args),
        Command::Store(args) => commands::store::run(&globals, &args),
        Command::Import(args) => commands::import::run(&globals, &args),
        Command::Save(args) => commands::save::run(&globals, &args),
        Command::Load(args) => commands::load::run(&globals, &args),
    };
    exit::report(result)
}
