//! `forge stop`: stop running containers, like `docker stop`.

use std::io::{self, Write};
use std::time::Duration;

use clap::Args;
use forge_builder::runner::{self, Containers};

use crate::Globals;

/// Arguments of `forge stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before sending SIGKILL.
    #[arg(
        short = 't',
        long = "time",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    time: u64,

    /// Container names or ids.
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// Runs `forge stop`: sends each container's STOPSIGNAL (SIGTERM by
/// default), then SIGKILL after the timeout, and prints the name given.
pub fn run(globals: &Globals, args: &StopArgs) -> anyhow::Result<()> {
    let store = globals.open_store()?;
    let containers = Containers::new(store.root());
    let mut out = io::stdout().lock();
    let mut errors = Vec::new();
    for key in &args.containers {
        match runner::stop(&containers, key, Duration::from_secs(args.time)) {
            Ok(_) => writeln!(out, "{key}")?,
            Err(error) => errors.push(error.into()),
        }
    }
    out.flush()?;
    super::combine_errors(errors)
}
