//! `forge ps`: list containers, like `docker ps`.

use std::io::{self, Write};

use clap::Args;
use forge_builder::runner::{ContainerState, Containers, Status};

use crate::Globals;

/// Arguments of `forge ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers; only running ones by default.
    #[arg(short = 'a', long)]
    all: bool,

    /// Print only the container ids.
    #[arg(short = 'q', long)]
    quiet: bool,

    /// Print full container ids and commands.
    #[arg(long = "no-trunc")]
    no_trunc: bool,
}

/// Longest COMMAND shown without `--no-trunc`, in characters.
const COMMAND_WIDTH: usize = 20;

/// Formats a duration in seconds as docker does: `Less than a second`,
/// `5 seconds`, `About a minute`, `3 minutes`, `About an hour`, `2 hours`,
/// `3 days`, `2 weeks`, `4 months`, `2 years`.
pub(crate) fn human_duration(seconds: f64) -> String {
    let seconds = seconds.max(0.0) as u64;
    let minutes = seconds / 60;
    let hours = minutes / 60;
    match seconds {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        2..60 => format!("{seconds} seconds"),
        60..120 => "About a minute".to_string(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if minutes < 120 => "About an hour".to_string(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// Formats the STATUS column: `Created`, `Up 3 seconds`,
/// `Exited (0) 5 seconds ago`.
pub(crate) fn status_text(state: &ContainerState, now: f64) -> String {
    match state.status {
        Status::Created => "Created".to_string(),
        Status::Running => {
            let since = state.started_at.unwrap_or(state.created);
            format!("Up {}", human_duration(now - since))
        }
        Status::Exited => {
            let since = state.finished_at.unwrap_or(state.created);
            format!(
                "Exited ({}) {} ago",
                state.exit_code.unwrap_or(137),
                human_duration(now - since)
            )
        }
    }
}

fn command_text(argv: &[String], no_trunc: bool) -> String {
    let joined = argv.join(" ");
    let shown = if !no_trunc && joined.chars().count() > COMMAND_WIDTH {
        let cut: String = joined.chars().take(COMMAND_WIDTH - 1).collect();
        format!("{cut}…")
    } else {
        joined
    };
    format!("\"{shown}\"")
}

/// Runs `forge ps`.
pub fn run(globals: &Globals, args: &PsArgs) -> anyhow::Result<()> {
    let store = globals.open_store()?;
    let containers = Containers::new(store.root());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut states: Vec<ContainerState> = containers
        .list()?
        .iter()
        .map(ContainerState::effective)
        .filter(|state| args.all || state.status == Status::Running)
        .collect();
    states.reverse();

    let mut out = io::stdout().lock();
    if args.quiet {
        for state in &states {
            let id = if args.no_trunc {
                &state.id
            } else {
                state.short_id()
            };
            writeln!(out, "{id}")?;
        }
        return Ok(out.flush()?);
    }
    let mut rows = vec![[
        "CONTAINER ID".to_string(),
        "IMAGE".to_string(),
        "COMMAND".to_string(),
        "CREATED".to_string(),
        "STATUS".to_string(),
        "PORTS".to_string(),
        "NAMES".to_string(),
    ]];
    for state in &states {
        let ports = if state.status == Status::Running {
            state
                .ports
                .iter()
                .map(|port| port.display())
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            String::new()
        };
        rows.push([
            if args.no_trunc {
                state.id.clone()
            } else {
                state.short_id().to_string()
            },
            state.image.clone(),
            command_text(&state.argv, args.no_trunc),
            format!("{} ago", human_duration(now - state.created)),
            status_text(state, now),
            ports,
            state.name.clone(),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(widths).enumerate() {
            line.push_str(cell);
            if index + 1 < row.len() {
                let pad = width - cell.chars().count() + 3;
                line.push_str(&" ".repeat(pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(out.flush()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human_duration(0.4), "Less than a second");
        assert_eq!(human_duration(1.0), "1 second");
        assert_eq!(human_duration(3.2), "3 seconds");
        assert_eq!(human_duration(90.0), "About a minute");
        assert_eq!(human_duration(600.0), "10 minutes");
        assert_eq!(human_duration(4000.0), "About an hour");
        assert_eq!(human_duration(3.0 * 3600.0), "3 hours");
        assert_eq!(human_duration(3.0 * 86400.0), "3 days");
    }

    #[test]
    fn long_commands_are_cut() {
        let argv = vec!["sh".to_string(), "-c".to_string(), "x".repeat(40)];
        let text = command_text(&argv, false);
        assert_eq!(text.chars().count(), COMMAND_WIDTH + 2);
        assert!(text.ends_with("…\""), "{text}");
        assert_eq!(command_text(&argv, true).len(), 48);
    }
}
