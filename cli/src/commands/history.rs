//! `forge history`: show the steps that made an image, newest first, with
//! the size of each step's layer, like `docker history`.

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::Value;

use super::images::{format_id, human_size, read_image, time_ago, write_table};
use crate::Globals;
use crate::names::resolve;

/// Longest `CREATED BY` text shown without `--no-trunc`, in characters.
const CREATED_BY_WIDTH: usize = 45;

/// Arguments of `forge history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The image: a name, `NAME@sha256:...`, a digest or an image id.
    #[arg(value_name = "IMAGE")]
    image: String,

    /// Show whole commands and full image ids.
    #[arg(long)]
    no_trunc: bool,

    /// Print only the IMAGE column.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
}

/// One history entry paired with the layer it made.
#[derive(Debug, PartialEq, Eq)]
struct Step {
    created: Option<String>,
    created_by: String,
    comment: String,
    /// The uncompressed layer size in bytes, or 0 for a step that made no
    /// layer.
    size: u64,
}

/// Runs `forge history`.
pub fn run(globals: &Globals, args: &HistoryArgs) -> anyhow::Result<()> {
    let store = globals.open_store()?;
    let descriptor = resolve(&store, &args.image)?;
    let image = read_image(&store, &descriptor)?;
    let steps = pair_with_layers(image.history(), &image.layer_sizes);

    // Only the newest step is the image itself; Docker shows no id for
    // the steps below it because they are not images of their own.
    let id = format_id(&image.id, args.no_trunc);
    let step_id = |index: usize| {
        if index == 0 {
            id.clone()
        } else {
            "<missing>".to_string()
        }
    };

    let mut out = io::stdout().lock();
    if args.quiet {
        for index in 0..steps.len() {
            writeln!(out, "{}", step_id(index))?;
        }
        return Ok(out.flush()?);
    }

    let now = Utc::now();
    let mut table = vec![
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
            .map(str::to_string)
            .to_vec(),
    ];
    for (index, step) in steps.iter().enumerate() {
        table.push(vec![
            step_id(index),
            created_since(step.created.as_deref(), now),
            truncate(&step.created_by, args.no_trunc),
            human_size(step.size),
            step.comment.clone(),
        ]);
    }
    write_table(&mut out, &table)?;
    Ok(out.flush()?)
}

/// Pairs the config's history entries with the manifest's layers, in
/// order: each entry without `empty_layer` takes the next layer. Layers
/// left over get entries of their own, and so does every layer of an
/// image without history. Returns the steps newest first.
fn pair_with_layers(history: &[Value], layer_sizes: &[u64]) -> Vec<Step> {
    let mut layers = layer_sizes.iter().copied();
    let mut steps = Vec::new();
    for entry in history {
        let text = |name: &str| {
            entry
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let empty = entry
            .get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let size = if empty { 0 } else { layers.next().unwrap_or(0) };
        steps.push(Step {
            created: entry
                .get("created")
                .and_then(Value::as_str)
                .map(str::to_string),
            created_by: text("created_by"),
            comment: text("comment"),
            size,
        });
    }
    for size in layers {
        steps.push(Step {
            created: None,
            created_by: String::new(),
            comment: String::new(),
            size,
        });
    }
    steps.reverse();
    steps
}

fn created_since(created: Option<&str>, now: DateTime<Utc>) -> String {
    created
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map_or_else(|| "N/A".to_string(), |created| time_ago(created, now))
}

/// Shortens a command to [`CREATED_BY_WIDTH`] characters, ending in `…`,
/// unless `no_trunc` is set. Line breaks show as spaces so that each step
/// stays on one line.
fn truncate(text: &str, no_trunc: bool) -> String {
    let text = if no_trunc {
        text.to_string()
    } else {
        text.replace(['\n', '\t'], " ")
    };
    if no_trunc || text.chars().count() <= CREATED_BY_WIDTH {
        return text;
    }
    let mut short: String = text.chars().take(CREATED_BY_WIDTH - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pairing_skips_empty_layers() {
        let history = [
            json!({"created": "2024-01-01T00:00:00Z", "created_by": "ADD rootfs.tar /"}),
            json!({"created_by": "CMD [\"sh\"]", "empty_layer": true, "comment": "note"}),
            json!({"created_by": "RUN make"}),
        ];
        let steps = pair_with_layers(&history, &[100, 20]);
        let sizes: Vec<u64> = steps.iter().map(|step| step.size).collect();
        assert_eq!(sizes, [20, 0, 100]);
        assert_eq!(steps[1].created_by, "CMD [\"sh\"]");
        assert_eq!(steps[1].comment, "note");
        assert_eq!(steps[2].created.as_deref(), Some("2024-01-01T00:00:00Z"));
    }

    #[test]
    fn pairing_adds_layers_without_history() {
        let steps = pair_with_layers(&[], &[5, 7]);
        let sizes: Vec<u64> = steps.iter().map(|step| step.size).collect();
        assert_eq!(sizes, [7, 5]);
        assert!(steps.iter().all(|step| step.created_by.is_empty()));
    }

    #[test]
    fn pairing_with_missing_layer_shows_zero() {
        let history = [
            json!({"created_by": "ADD a /"}),
            json!({"created_by": "ADD b /"}),
        ];
        let steps = pair_with_layers(&history, &[9]);
        let sizes: Vec<u64> = steps.iter().map(|step| step.size).collect();
        assert_eq!(sizes, [0, 9]);
    }

    #[test]
    fn truncate_keeps_short_text() {
        assert_eq!(truncate("CMD [\"sh\"]", false), "CMD [\"sh\"]");
    }

    #[test]
    fn truncate_shortens_long_text() {
        let long = "RUN ".to_string() + &"x".repeat(100);
        let short = truncate(&long, false);
        assert_eq!(short.chars().count(), CREATED_BY_WIDTH);
        assert!(short.ends_with('…'), "{short}");
    }

    #[test]
    fn truncate_no_trunc_keeps_all() {
        let long = "RUN ".to_string() + &"x".repeat(100);
        assert_eq!(truncate(&long, true), long);
    }

    #[test]
    fn created_since_without_time() {
        assert_eq!(created_since(None, Utc::now()), "N/A");
        assert_eq!(created_since(Some("yesterday"), Utc::now()), "N/A");
    }
}
