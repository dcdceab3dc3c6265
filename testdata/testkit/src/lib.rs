//! Locates the shared conformance data for the data-driven tests.

use std::path::PathBuf;

/// Returns the conformance data folder, or `None` when it is missing and
/// the test may skip.
///
/// The folder is `$FORGE_CONFORMANCE_DIR`, or `../shared/conformance` next
/// to the workspace. Under CI (`CI` set) a missing folder fails the test,
/// so conformance tests never skip there.
pub fn conformance_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("FORGE_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    };
    if dir.is_dir() {
        return Some(dir);
    }
    let message = format!(
        "conformance data not found at {}; set FORGE_CONFORMANCE_DIR to the folder that holds dockerfile-parse/, shell-words/, dockerignore/ and oci-schema/",
        dir.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("skipping: {message}");
    None
}
