//! Runs `forge` with and without `FORGE_LOG` and checks which log lines
//! reach standard error.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary folder with a store and a build context of one file.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        let workspace = Workspace {
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        fs::create_dir_all(workspace.context()).expect("context folder");
        fs::write(
            workspace.context().join("Dockerfile"),
            "FROM scratch\nCOPY data.txt /data.txt\n",
        )
        .expect("Dockerfile");
        workspace.write_data("first\n");
        workspace
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn context(&self) -> PathBuf {
        self.dir.path().join("context")
    }

    fn write_data(&self, content: &str) {
        fs::write(self.context().join("data.txt"), content).expect("context file");
    }

    /// Returns `forge --root STORE` without forge's variables from the
    /// caller, so each test sets `FORGE_LOG` itself.
    fn forge(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
        command
            .arg("--root")
            .arg(self.root())
            .env_remove("FORGE_ROOT")
            .env_remove("FORGE_LOG")
            .env_remove("SOURCE_DATE_EPOCH");
        command
    }

    fn build(&self, log_filter: Option<&str>) -> Output {
        let mut command = self.forge();
        command
            .args(["build", "--progress", "plain"])
            .arg(self.context());
        if let Some(filter) = log_filter {
            command.env("FORGE_LOG", filter);
        }
        command.output().expect("forge runs")
    }

    /// Replaces the context hash cache of the store with a folder, so that
    /// the next build that hashes a context file fails to save it and logs
    /// a warning.
    fn block_hash_cache(&self) {
        let forge_dir = self.root().join("forge");
        let caches: Vec<PathBuf> = fs::read_dir(&forge_dir)
            .expect("store's forge folder")
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| is_hash_cache(path))
            .collect();
        assert_eq!(caches.len(), 1, "hash cache files: {caches:?}");
        let cache = caches.first().expect("one hash cache");
        fs::remove_file(cache).expect("remove the hash cache");
        fs::create_dir(cache).expect("folder in place of the hash cache");
        // A changed file is hashed again, so the build saves the cache.
        self.write_data("second\n");
    }
}

fn is_hash_cache(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("context-hashes-") && name.ends_with(".json"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Returns the lines of `text` that the log formatter wrote: a timestamp,
/// then a level.
fn log_lines(text: &str) -> Vec<&str> {
    const LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];
    text.lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            let starts_with_time = words
                .next()
                .is_some_and(|word| word.len() > 10 && word.as_bytes().get(4) == Some(&b'-'));
            starts_with_time && words.next().is_some_and(|word| LEVELS.contains(&word))
        })
        .collect()
}

#[test]
fn warning_reaches_stderr_by_default() {
    let workspace = Workspace::new();
    let first = workspace.build(None);
    let first_stderr = stderr(&first);
    assert!(first.status.success(), "{first_stderr}");
    assert!(log_lines(&first_stderr).is_empty(), "{first_stderr}");

    workspace.block_hash_cache();
    let output = workspace.build(None);
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    let lines = log_lines(&text);
    assert_eq!(lines.len(), 1, "{text}");
    let line = lines.first().copied().unwrap_or_default();
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains("cannot save the context hash cache"),
        "{line}"
    );
    assert!(line.contains("context-hashes-"), "{line}");
    // Standard error is a pipe here, so the line has no colour codes.
    assert!(!text.contains('\u{1b}'), "{text:?}");
}

#[test]
fn error_filter_hides_warning() {
    let workspace = Workspace::new();
    let first = workspace.build(None);
    assert!(first.status.success(), "{}", stderr(&first));

    workspace.block_hash_cache();
    let output = workspace.build(Some("error"));
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    assert!(log_lines(&text).is_empty(), "{text}");
    assert!(
        !text.contains("cannot save the context hash cache"),
        "{text}"
    );
}

#[test]
fn debug_filter_shows_debug_lines() {
    let workspace = Workspace::new();
    let output = workspace
        .forge()
        .arg("images")
        .env("FORGE_LOG", "debug")
        .output()
        .expect("forge runs");
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    let opened = log_lines(&text)
        .into_iter()
        .find(|line| line.contains("store opened"));
    let opened = opened.unwrap_or_else(|| panic!("no `store opened` line in:\n{text}"));
    assert!(opened.contains(" DEBUG "), "{opened}");

    // A directive for another crate leaves forge's debug lines out.
    let output = workspace
        .forge()
        .arg("images")
        .env("FORGE_LOG", "warn,forge_registry=debug")
        .output()
        .expect("forge runs");
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    assert!(log_lines(&text).is_empty(), "{text}");
}

#[test]
fn invalid_filter_is_rejected() {
    let workspace = Workspace::new();
    let output = workspace
        .forge()
        .arg("images")
        .env("FORGE_LOG", "forge_cache=loud")
        .output()
        .expect("forge runs");
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("error: invalid FORGE_LOG `forge_cache=loud`"),
        "{text}"
    );
}

#[test]
fn help_documents_forge_log() {
    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("--help")
        .output()
        .expect("forge runs");
    assert!(output.status.success(), "{}", stderr(&output));
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("FORGE_LOG"), "{help}");
    assert!(help.contains("Default: `warn`"), "{help}");
}
