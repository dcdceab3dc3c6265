//! Runs two `forge build` processes at once on one store, as root, whose
//! RUN steps use the same cache mount with `sharing=locked`, `shared` or
//! `private`. Each test uses `--root` and `TMPDIR` in a temporary folder and
//! a busybox base made with `forge import`. The two builds differ only in
//! the build argument `NAME`, so neither finds the other's step in the
//! build cache.
//!
//! Each RUN appends `start NAME` to a log in the cache, waits until the
//! log has a second `start` line or a timeout passes, and appends `end
//! NAME`. Steps that run together therefore log both starts before the
//! first end, and steps that exclude each other log start, end, start, end.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// Creates the folder and imports `busybox:latest`. Returns `None` when
    /// the test is not root or busybox is missing, so the test skips.
    fn new(test: &str) -> Option<Workspace> {
        if !forge_testkit::require_root(test) || !forge_testkit::require_tool("busybox") {
            return None;
        }
        let workspace = Workspace {
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        fs::create_dir_all(workspace.path("context")).expect("context folder");
        fs::create_dir_all(workspace.path("tmp")).expect("TMPDIR");
        let rootfs = workspace.path("busybox.tar");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/busybox-rootfs.sh");
        let made = Command::new("bash")
            .arg(&script)
            .arg(&rootfs)
            .output()
            .expect("busybox-rootfs.sh runs");
        assert!(made.status.success(), "{}", text(&made.stderr));
        let imported = workspace
            .forge(&["import", path_str(&rootfs), "busybox"])
            .output()
            .expect("forge import runs");
        assert!(imported.status.success(), "{}", text(&imported.stderr));
        Some(workspace)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn forge(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
        command
            .arg("--root")
            .arg(self.path("store"))
            .args(args)
            .env("TMPDIR", self.path("tmp"))
            .env("DOCKER_CONFIG", self.path("docker"))
            .env_remove("FORGE_ROOT")
            .env_remove("FORGE_INSECURE_REGISTRIES")
            .env_remove("SOURCE_DATE_EPOCH");
        command
    }

    /// Writes `dockerfile` to the context and starts two builds of it at
    /// once, with `NAME=a` and `NAME=b`, each writing its image's file
    /// system to the folder `out-NAME`. Returns both outputs, `a` first.
    fn build_twice_at_once(&self, dockerfile: &str) -> [Output; 2] {
        let context = self.path("context");
        fs::write(context.join("Dockerfile"), dockerfile).expect("Dockerfile");
        let start = |name: &str| -> Child {
            let output = self.path(&format!("out-{name}"));
            let argument = format!("NAME={name}");
            self.forge(&[
                "build",
                "--progress",
                "plain",
                "--build-arg",
                &argument,
                "-o",
                path_str(&output),
                path_str(&context),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("forge build starts")
        };
        let first = start("a");
        let second = start("b");
        let first = first.wait_with_output().expect("forge build a runs");
        let second = second.wait_with_output().expect("forge build b runs");
        for (name, output) in [("a", &first), ("b", &second)] {
            assert!(
                output.status.success(),
                "forge build {name} failed:\n{}",
                text(&output.stderr)
            );
        }
        [first, second]
    }

    /// Returns the cache folders of the store, without the lock files.
    fn cache_folders(&self) -> Vec<PathBuf> {
        let root = self.path("store/forge/cache-mounts");
        let mut folders: Vec<PathBuf> = fs::read_dir(&root)
            .unwrap_or_else(|error| panic!("read {}: {error}", root.display()))
            .map(|entry| entry.expect("cache mount entry").path())
            .filter(|path| path.is_dir())
            .collect();
        folders.sort();
        folders
    }

    /// Returns the lines of the log in the store's only cache folder.
    fn log(&self) -> Vec<String> {
        let folders = self.cache_folders();
        assert_eq!(folders.len(), 1, "{folders:?}");
        let log = folders[0].join("log");
        fs::read_to_string(&log)
            .unwrap_or_else(|error| panic!("read {}: {error}", log.display()))
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Returns a Dockerfile whose RUN logs its start and end in the cache
/// `shared-log` mounted with `sharing`, waiting up to `wait_seconds`
/// between them for the other build's start.
fn logging_dockerfile(sharing: &str, wait_seconds: u32) -> String {
    let tries = wait_seconds * 5;
    format!(
        "FROM busybox\n\
         ARG NAME\n\
         RUN --mount=type=cache,id=shared-log,target=/c,sharing={sharing} \
         echo start $NAME >> /c/log; i=0; \
         while [ $(grep -c start /c/log) -lt 2 ] && [ $i -lt {tries} ]; do sleep 0.2; i=$((i+1)); done; \
         echo end $NAME >> /c/log\n"
    )
}

/// Returns the first word of each log line: `start` or `end`.
fn events(log: &[String]) -> Vec<&str> {
    log.iter()
        .map(|line| line.split_whitespace().next().unwrap_or(""))
        .collect()
}

fn waited(output: &Output) -> bool {
    text(&output.stderr).contains("waiting for the cache mount shared-log, locked by another build")
}

#[test]
fn locked_cache_runs_steps_in_turn() {
    let Some(workspace) = Workspace::new("locked_cache_runs_steps_in_turn") else {
        return;
    };
    let outputs = workspace.build_twice_at_once(&logging_dockerfile("locked", 5));

    let log = workspace.log();
    assert_eq!(events(&log), ["start", "end", "start", "end"], "{log:?}");
    assert_eq!(log[0].replace("start", "end"), log[1], "{log:?}");
    assert_ne!(log[0], log[2], "{log:?}");
    // The later build waited for the earlier one and printed the waiting
    // line once.
    let waits: Vec<bool> = outputs.iter().map(waited).collect();
    assert_eq!(
        waits.iter().filter(|&&waited| waited).count(),
        1,
        "a: {}\nb: {}",
        text(&outputs[0].stderr),
        text(&outputs[1].stderr)
    );
}

#[test]
fn shared_cache_runs_steps_together() {
    let Some(workspace) = Workspace::new("shared_cache_runs_steps_together") else {
        return;
    };
    let outputs = workspace.build_twice_at_once(&logging_dockerfile("shared", 30));

    let log = workspace.log();
    assert_eq!(events(&log), ["start", "start", "end", "end"], "{log:?}");
    for output in &outputs {
        assert!(!waited(output), "{}", text(&output.stderr));
    }
}

#[test]
fn private_cache_gives_concurrent_steps_own_folders() {
    let Some(workspace) = Workspace::new("private_cache_gives_concurrent_steps_own_folders") else {
        return;
    };
    // Each step lists the cache, writes its marker and keeps the cache for
    // 4 seconds, so the two steps overlap.
    let dockerfile = "FROM busybox\n\
         ARG NAME\n\
         RUN --mount=type=cache,id=markers,target=/c,sharing=private \
         ls -A /c > /seen; echo $NAME > /c/marker; sleep 4\n";
    let outputs = workspace.build_twice_at_once(dockerfile);

    for name in ["a", "b"] {
        let seen = workspace.path(&format!("out-{name}/seen"));
        assert_eq!(
            fs::read_to_string(&seen).expect("seen"),
            "",
            "build {name} found files in its private cache"
        );
    }
    let folders = workspace.cache_folders();
    assert_eq!(folders.len(), 2, "{folders:?}");
    let names: Vec<String> = folders
        .iter()
        .map(|folder| folder.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(format!("{}-private-1", names[0]), names[1], "{names:?}");
    let mut markers: Vec<String> = folders
        .iter()
        .map(|folder| fs::read_to_string(folder.join("marker")).expect("marker"))
        .collect();
    markers.sort();
    assert_eq!(markers, ["a\n", "b\n"]);
    for output in &outputs {
        assert!(
            !text(&output.stderr).contains("waiting for the cache mount"),
            "{}",
            text(&output.stderr)
        );
    }
}
