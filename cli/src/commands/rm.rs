//! `forge rm`: remove containers, like `docker rm`.

use std::io::{self, Write};

use clap::Args;
use forge_builder::runner::{self, Containers};

use crate::Globals;

/// Arguments of `forge rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill running containers first.
    #[arg(short = 'f', long)]
    force: bool,

    /// Container names or ids.
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// Runs `forge rm`: removes each container's folder (its file system
/// changes, log and anonymous volumes) and prints the name given.
pub fn run(globals: &Globals, args: &RmArgs) -> anyhow::Result<()> {
    let store = globals.open_store()?;
    let containers = Containers::new(store.root());
    let mut out = io::stdout().lock();
    let mut errors = Vec::new();
    for key in &args.containers {
        match runner::remove(&containers, key, args.force) {
            Ok(_) => writeln!(out, "{key}")?,
            Err(error) => errors.push(error.into()),
        }
    }
    out.flush()?;
    super::combine_errors(errors)
}
