//! Helpers shared by forge's tests: where the conformance data is, and
//! checks for tools and privileges that some tests need.
//!
//! Outside CI a test whose data, tool or privilege is missing says why on
//! standard error and skips. Under CI (`CI` set) it fails instead, so no
//! test skips there silently.

// Tests report skipped checks on standard error.
#![allow(clippy::print_stderr)]

pub mod oci_schema;
pub mod registry;

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Returns the conformance data folder, or `None` when it is missing and
/// the test may skip.
///
/// The folder is `$FORGE_CONFORMANCE_DIR`, or `../shared/conformance` next
/// to the workspace.
///
/// # Panics
///
/// Under CI when the folder is missing.
pub fn conformance_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("FORGE_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    skip_or_fail(&format!(
        "conformance data not found at {}; set FORGE_CONFORMANCE_DIR to the folder that holds dockerfile-parse/, shell-words/, dockerignore/ and oci-schema/",
        dir.display()
    ));
    None
}

/// Checks whether `tool` is a command on `PATH`.
pub fn have_tool(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v '{tool}'"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Returns whether `tool` is installed; `false` means skip.
///
/// # Panics
///
/// Under CI when the tool is missing.
pub fn require_tool(tool: &str) -> bool {
    if have_tool(tool) {
        return true;
    }
    skip_or_fail(&format!(
        "`{tool}` is not installed; `bash .ci/run` installs it"
    ));
    false
}

/// Returns whether the test runs as root; `false` means skip.
///
/// # Panics
///
/// Under CI when not root.
pub fn require_root(test: &str) -> bool {
    if effective_uid() == 0 {
        return true;
    }
    skip_or_fail(&format!("{test} needs root; run the tests as root"));
    false
}

/// Reads the effective user id from `/proc/self/status`, so the kit needs
/// no system-call crate.
fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|euid| euid.parse().ok())
        .unwrap_or(u32::MAX)
}

fn skip_or_fail(message: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("skipping: {message}");
}
