//! `forge prune`: remove blobs, unpacked layers and build-cache entries
//! that no image name reaches.

use std::io::{self, Write};

use anyhow::Context;
use clap::Args;
use forge_cache::store::PruneOptions;

use super::images::human_size;
use crate::Globals;

/// Arguments of `forge prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove the whole build cache too, with the folders of
    /// `RUN --mount=type=cache`, keeping only what image names reach.
    #[arg(short = 'a', long = "all")]
    all: bool,

    /// Keep at most this much build cache that no image name reaches,
    /// removing the least recently used entries first. Units are powers of
    /// 1024: `500MiB`, `10GB`, `1g`; a plain number is bytes.
    #[arg(long, value_name = "SIZE", value_parser = parse_keep_storage)]
    keep_storage: Option<u64>,

    /// Print what would be removed without removing it.
    #[arg(long)]
    dry_run: bool,

    /// Do not ask for confirmation. forge never prompts, so this changes
    /// nothing; it is accepted for Docker compatibility.
    #[arg(short = 'f', long = "force")]
    force: bool,
}

fn parse_keep_storage(text: &str) -> Result<u64, String> {
    forge_parser::instructions::parse_size(text)
}

/// Runs `forge prune` and prints the counts and the space freed.
pub fn run(globals: &Globals, args: &PruneArgs) -> anyhow::Result<()> {
    let _ = args.force;
    let store = globals.open_store()?;
    let options = PruneOptions {
        all: args.all,
        keep_storage: args.keep_storage,
        dry_run: args.dry_run,
    };
    let report = store
        .prune(&options)
        .context("prune stopped; run `forge store check --repair` if the store is damaged")?;

    let verb = if args.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{verb} {} unnamed images, {} blobs, {} unpacked layers, {} build cache entries, {} cache mounts, {} temporary files",
        report.unnamed_removed,
        report.blobs_removed,
        report.unpacked_removed,
        report.steps_removed,
        report.cache_mounts_removed,
        report.temp_removed
    )?;
    let total = if args.dry_run {
        "Total space to reclaim"
    } else {
        "Total reclaimed space"
    };
    writeln!(out, "{total}: {}", human_size(report.bytes_freed))?;
    Ok(out.flush()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_storage_units_are_binary() {
        assert_eq!(parse_keep_storage("500MiB"), Ok(500 << 20));
        assert_eq!(parse_keep_storage("10GB"), Ok(10 << 30));
        assert_eq!(parse_keep_storage("1024"), Ok(1024));
    }

    #[test]
    fn keep_storage_rejects_words() {
        let error = parse_keep_storage("lots").unwrap_err();
        assert!(error.contains("lots"), "{error}");
    }
}
