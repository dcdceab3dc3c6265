//! `forge logs`: print a container's output, like `docker logs`.

use std::io::{self, Write};
use std::time::Duration;

use clap::Args;
use forge_builder::runner::{Containers, LogStream, Status, read_logs};

use crate::Globals;

/// How often `logs -f` looks for new output.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

/// Arguments of `forge logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container exits.
    #[arg(short = 'f', long)]
    follow: bool,

    /// Container name or id.
    #[arg(value_name = "CONTAINER")]
    container: String,
}

/// Runs `forge logs`: standard output records go to standard output and
/// standard error records to standard error.
pub fn run(globals: &Globals, args: &LogsArgs) -> anyhow::Result<()> {
    let store = globals.open_store()?;
    let containers = Containers::new(store.root());
    let state = containers.find(&args.container)?;
    let path = containers.log_path(&state.id);
    let mut stdout = io::stdout().lock();
    let mut stderr = io::stderr().lock();
    let mut offset = 0;
    loop {
        // The state is read before the log, so output written before the
        // exit is printed by the last round.
        let running = args.follow
            && containers
                .load(&state.id)
                .is_ok_and(|state| state.effective().status == Status::Running);
        let (records, next) = read_logs(&path, offset)?;
        offset = next;
        for record in records {
            match record.stream {
                LogStream::Stdout => stdout.write_all(record.log.as_bytes())?,
                LogStream::Stderr => stderr.write_all(record.log.as_bytes())?,
            }
        }
        stdout.flush()?;
        stderr.flush()?;
        if !running {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}
