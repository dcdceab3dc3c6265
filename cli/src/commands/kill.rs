//! `forge kill`: send a signal to running containers, like `docker kill`.

use std::io::{self, Write};

use clap::Args;
use forge_builder::runner::{self, Containers};

use crate::Globals;

/// Arguments of `forge kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send, by name (SIGHUP, TERM) or number.
    #[arg(short = 's', long = "signal", default_value = "KILL")]
    signal: String,

    /// Container names or ids.
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// Runs `forge kill` and prints the name of each container signalled.
pub fn run(globals: &Globals, args: &KillArgs) -> anyhow::Result<()> {
    let store = globals.open_store()?;
    let containers = Containers::new(store.root());
    let mut out = io::stdout().lock();
    let mut errors = Vec::new();
    for key in &args.containers {
        match runner::kill(&containers, key, &args.signal) {
            Ok(_) => writeln!(out, "{key}")?,
            Err(error) => errors.push(error.into()),
        }
    }
    out.flush()?;
    super::combine_errors(errors)
}
