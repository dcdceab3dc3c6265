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
#[command(
    name = "forge",
    version,
    about,
    max_term_width = 100,
    after_help = "Environment:\n  \
        FORGE_ROOT  Store folder, as --root.\n  \
        FORGE_LOG   Which log messages reach standard error, in the syntax of\n              \
                    tracing-subscriber's EnvFilter: a level (`error`, `warn`, `info`,\n              \
                    `debug`, `trace`) or TARGET=LEVEL pairs separated by commas, such\n              \
                    as `warn,forge_cache=debug`. Default: `warn`."
)]
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
    #[command(after_long_help = "Environment:\n  \
        FORGE_SNAPSHOTTER  How RUN steps record their changes. `overlay` (the default) \
        mounts an overlay over the parent layers and falls back to `copy` when the kernel \
        rejects the mount. `copy` copies the root file system for each RUN step and \
        compares it with the parent layers afterwards, which is slower.")]
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
    /// Download an image from a registry into the store.
    Pull(commands::pull::PullArgs),
    /// Upload an image from the store to a registry.
    Push(commands::push::PushArgs),
    /// Check and store credentials for a registry.
    Login(commands::login::LoginArgs),
    /// Remove stored credentials for a registry.
    Logout(commands::logout::LogoutArgs),
    /// Run a command in a new container from an image.
    Run(commands::run::RunArgs),
    /// List containers.
    Ps(commands::ps::PsArgs),
    /// Print the output of a container.
    Logs(commands::logs::LogsArgs),
    /// Stop running containers: the stop signal, then SIGKILL.
    Stop(commands::stop::StopArgs),
    /// Send a signal to running containers.
    Kill(commands::kill::KillArgs),
    /// Remove containers.
    Rm(commands::rm::RmArgs),
    /// Supervise a created container (started by `run -d`).
    #[command(hide = true)]
    SuperviseContainer(commands::run::SuperviseArgs),
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
        let root = self
            .root
            .clone()
            .unwrap_or_else(forge_cache::store::default_root);
        forge_cache::store::Store::open(&root).with_context(|| {
            format!(
                "cannot use the store at `{}`; pass another folder with --root or FORGE_ROOT",
                root.display()
            )
        })
    }
}

/// Environment variable holding the log filter.
const LOG_FILTER_VAR: &str = "FORGE_LOG";

/// Sends `tracing` events to standard error, filtered by `FORGE_LOG`
/// (default `warn`). Colours are used only when standard error is a
/// terminal.
fn init_logging() -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;

    let filter = match std::env::var(LOG_FILTER_VAR) {
        Ok(value) if !value.trim().is_empty() => EnvFilter::try_new(&value).with_context(|| {
            format!(
                "invalid {LOG_FILTER_VAR} `{value}`: write a level such as `debug`, or TARGET=LEVEL pairs separated by commas"
            )
        })?,
        _ => EnvFilter::new("warn"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = init_logging() {
        return exit::report(Err(error));
    }
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
        Command::Pull(args) => commands::pull::run(&globals, &args),
        Command::Push(args) => commands::push::run(&globals, &args),
        Command::Login(args) => commands::login::run(&args),
        Command::Logout(args) => commands::logout::run(&args),
        Command::Run(args) => commands::run::run(&globals, &args),
        Command::Ps(args) => commands::ps::run(&globals, &args),
        Command::Logs(args) => commands::logs::run(&globals, &args),
        Command::Stop(args) => commands::stop::run(&globals, &args),
        Command::Kill(args) => commands::kill::run(&globals, &args),
        Command::Rm(args) => commands::rm::run(&globals, &args),
        Command::SuperviseContainer(args) => commands::run::supervise(&globals, &args),
    };
    exit::report(result)
}
