//! `forge store`: maintenance of the store itself. `forge store check`
//! re-hashes every blob and lists damaged entries.

use std::io::{self, Write};

use clap::{Args, Subcommand};
use forge_cache::store::{CheckProblem, ProblemKind};

use super::images::human_size;
use crate::Globals;

/// Arguments of `forge store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Re-hash every blob and look for damaged images, names and build
    /// cache entries. Fails while problems remain.
    Check(CheckArgs),
}

/// Arguments of `forge store check`.
#[derive(Debug, Args)]
struct CheckArgs {
    /// Remove each damaged entry: corrupt blobs, leftovers of interrupted
    /// writes, names of incomplete images and broken cache entries.
    #[arg(long)]
    repair: bool,
}

/// Runs `forge store`.
pub fn run(globals: &Globals, args: &StoreArgs) -> anyhow::Result<()> {
    match &args.command {
        StoreCommand::Check(check) => run_check(globals, check),
    }
}

/// Prints one line per problem and a summary, and fails while any problem
/// was not repaired.
fn run_check(globals: &Globals, args: &CheckArgs) -> anyhow::Result<()> {
    let store = globals.open_store()?;
    let report = store.check(args.repair)?;

    let mut out = io::stdout().lock();
    for problem in &report.problems {
        writeln!(out, "{}", describe(problem))?;
    }
    let repaired = report
        .problems
        .iter()
        .filter(|problem| problem.repaired)
        .count();
    let remaining = report.problems.len() - repaired;
    writeln!(
        out,
        "Checked {} blobs ({}): {} problems, {repaired} repaired",
        report.blobs_checked,
        human_size(report.bytes_checked),
        report.problems.len(),
    )?;
    out.flush()?;

    if remaining > 0 {
        let hint = if args.repair {
            "the entries could not be removed; check the store's permissions"
        } else {
            "run `forge store check --repair` to remove the damaged entries"
        };
        anyhow::bail!("{remaining} problems remain in the store; {hint}");
    }
    Ok(())
}

/// Formats a problem as `KIND: SUBJECT: DETAIL`, with `(removed)` when it
/// was repaired.
fn describe(problem: &CheckProblem) -> String {
    let state = if problem.repaired { " (removed)" } else { "" };
    format!(
        "{}: {}: {}{state}",
        kind_name(problem.kind),
        problem.subject,
        problem.detail
    )
}

fn kind_name(kind: ProblemKind) -> &'static str {
    match kind {
        ProblemKind::CorruptBlob => "corrupt blob",
        ProblemKind::UnreadableBlob => "unreadable blob",
        ProblemKind::TempFile => "temporary file",
        ProblemKind::StrayFile => "stray file",
        ProblemKind::DanglingName => "dangling name",
        ProblemKind::MissingBlob => "missing blob",
        ProblemKind::BadManifest => "unreadable manifest",
        ProblemKind::BadStepEntry => "damaged cache entry",
        ProblemKind::StepMissingLayer => "cache entry without layer",
        _ => "problem",
    }
}
