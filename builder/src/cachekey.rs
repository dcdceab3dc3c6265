//! Step cache keys, and the explanation of a miss.
//!
//! A key is the sha256 of a canonical JSON array of [`KeyInputs`]. The
//! array contains the parent key (the base image's manifest digest for a
//! stage's first step) and the instruction after expansion. It also
//! contains the build arguments and environment variables the step can
//! read and the flags that change its result. For COPY and ADD it adds the
//! digest of every file with the metadata its layer will carry. File mtimes
//! never enter a key.
//!
//! The inputs of every key are recorded next to the step's cache entry
//! and, per Dockerfile and step position, for the latest build, so that a
//! miss can be explained by the input that changed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Version tag hashed into every key; changing the key layout changes it.
const KEY_VERSION: &str = "forge-step-v1";

/// Everything that goes into one step's cache key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInputs {
    /// Key of the previous step, or the base: `scratch`, a manifest digest,
    /// or the key of the last step of an earlier stage.
    pub parent: String,
    /// The instruction after variable expansion.
    pub instruction: String,
    /// Build arguments the step can read, with their values.
    pub args: BTreeMap<String, String>,
    /// Environment variables the step can read, with their values.
    pub env: BTreeMap<String, String>,
    /// Settings that change the result: user, workdir, shell, network,
    /// mounts, and the keys of stages or images the step reads from.
    pub flags: BTreeMap<String, String>,
    /// For COPY and ADD: the digest of the planned files.
    pub files: Option<String>,
    /// For COPY and ADD: each planned path with its content digest or link
    /// target. It explains misses and is not hashed, since `files` covers
    /// it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_summary: Vec<(String, String)>,
}

impl KeyInputs {
    /// Returns the cache key, `sha256:HEX`.
    pub fn key(&self) -> String {
        let canonical = serde_json::json!([
            KEY_VERSION,
            self.parent,
            self.instruction,
            self.args,
            self.env,
            self.flags,
            self.files,
        ]);
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        format!("sha256:{}", hex::encode(digest))
    }

    /// Describes how these inputs differ from `previous`, the inputs of the
    /// same step position in an earlier build. Returns `None` when nothing
    /// that the key hashes differs.
    pub fn explain(&self, previous: &KeyInputs) -> Option<String> {
        let mut reasons = Vec::new();

        if self.instruction != previous.instruction {
            reasons.push(format!(
                "the instruction changed from `{}` to `{}`",
                previous.instruction, self.instruction
            ));
        }
        describe_map("build argument", &previous.args, &self.args, &mut reasons);
        describe_map(
            "environment variable",
            &previous.env,
            &self.env,
            &mut reasons,
        );
        describe_map("setting", &previous.flags, &self.flags, &mut reasons);
        if self.files != previous.files {
            describe_files(&previous.file_summary, &self.file_summary, &mut reasons);
            if reasons.is_empty() {
                reasons.push("the copied files' metadata changed (mode or owner)".to_string());
            }
        }
        if reasons.is_empty() && self.parent != previous.parent {
            reasons.push(format!(
                "the parent changed from {} to {}",
                short(&previous.parent),
                short(&self.parent)
            ));
        }

        if reasons.is_empty() {
            None
        } else {
            Some(reasons.join("; "))
        }
    }
}

fn describe_map(
    what: &str,
    previous: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
    reasons: &mut Vec<String>,
) {
    let names: BTreeSet<&String> = previous.keys().chain(current.keys()).collect();
    for name in names {
        match (previous.get(name), current.get(name)) {
            (Some(old), Some(new)) if old != new => {
                reasons.push(format!("{what} `{name}` changed from `{old}` to `{new}`"));
            }
            (None, Some(new)) => reasons.push(format!("{what} `{name}` is now set to `{new}`")),
            (Some(old), None) => {
                reasons.push(format!("{what} `{name}` is no longer set (was `{old}`)"));
            }
            _ => {}
        }
    }
}

fn describe_files(
    previous: &[(String, String)],
    current: &[(String, String)],
    reasons: &mut Vec<String>,
) {
    let old: BTreeMap<&str, &str> = previous
        .iter()
        .map(|(path, digest)| (path.as_str(), digest.as_str()))
        .collect();
    let new: BTreeMap<&str, &str> = current
        .iter()
        .map(|(path, digest)| (path.as_str(), digest.as_str()))
        .collect();
    let paths: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    for path in paths {
        match (old.get(path), new.get(path)) {
            (Some(before), Some(after)) if before != after => reasons.push(format!(
                "file `{path}` changed ({} -> {})",
                short(before),
                short(after)
            )),
            (None, Some(_)) => reasons.push(format!("file `{path}` was added")),
            (Some(_), None) => reasons.push(format!("file `{path}` was removed")),
            _ => {}
        }
    }
}

/// Shortens a digest to `sha256:` and 12 hex characters for messages.
fn short(text: &str) -> String {
    match text.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => format!("sha256:{}", hex.get(..12).unwrap_or(hex)),
        _ => text.to_string(),
    }
}

/// Returns the step-cache key under which the inputs of the latest build of
/// `dockerfile` at `position` (stage and step) are kept.
pub fn last_build_key(dockerfile: &str, stage: usize, step: usize) -> String {
    format!("forge-last-build\n{dockerfile}\n{stage}\n{step}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KeyInputs {
        KeyInputs {
            parent: "scratch".into(),
            instruction: "COPY a /a".into(),
            args: BTreeMap::from([("V".to_string(), "1".to_string())]),
            ..KeyInputs::default()
        }
    }

    #[test]
    fn key_is_stable_and_prefixed() {
        let key = inputs().key();
        assert!(key.starts_with("sha256:"), "{key}");
        assert_eq!(key.len(), 71);
        assert_eq!(key, inputs().key());
    }

    #[test]
    fn key_ignores_file_summary() {
        let mut changed = inputs();
        changed.file_summary = vec![("a".into(), "sha256:1".into())];
        assert_eq!(changed.key(), inputs().key());
    }

    #[test]
    fn key_changes_with_each_input() {
        let base = inputs().key();
        let mut parent = inputs();
        parent.parent = "other".into();
        assert_ne!(parent.key(), base);
        let mut arg = inputs();
        arg.args.insert("V".into(), "2".into());
        assert_ne!(arg.key(), base);
        let mut files = inputs();
        files.files = Some("sha256:ff".into());
        assert_ne!(files.key(), base);
    }

    #[test]
    fn explain_names_changed_argument() {
        let mut current = inputs();
        current.args.insert("V".into(), "2".into());
        let reason = current.explain(&inputs()).unwrap_or_default();
        assert!(reason.contains("build argument `V`"), "{reason}");
        assert!(reason.contains("`1` to `2`"), "{reason}");
    }

    #[test]
    fn explain_names_changed_file() {
        let mut previous = inputs();
        previous.files = Some("sha256:aa".into());
        previous.file_summary = vec![("app/main.rs".into(), "sha256:111".into())];
        let mut current = previous.clone();
        current.files = Some("sha256:bb".into());
        current.file_summary = vec![("app/main.rs".into(), "sha256:222".into())];
        let reason = current.explain(&previous).unwrap_or_default();
        assert!(reason.contains("file `app/main.rs` changed"), "{reason}");
    }

    #[test]
    fn explain_returns_none_for_same_inputs() {
        assert_eq!(inputs().explain(&inputs()), None);
    }
}
