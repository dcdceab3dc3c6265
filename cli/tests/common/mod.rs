//! Helpers shared by the integration tests of the `forge` binary: output
//! checks, a busybox root file system, OCI layout reading and the
//! temporary folder that the registry tests run `forge` in.
//!
//! Each test binary compiles this module with `mod common;` and uses only
//! part of it, so items that some binary leaves unused allow `dead_code`.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use forge_testkit::registry::{Registry, RegistryOptions};

/// Converts process output to a string, replacing invalid UTF-8.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[allow(dead_code)]
pub fn stdout(output: &Output) -> String {
    text(&output.stdout)
}

#[allow(dead_code)]
pub fn stderr(output: &Output) -> String {
    text(&output.stderr)
}

/// Asserts that `output` of the command `what` succeeded, and shows its
/// standard output and standard error when it did not.
#[allow(dead_code)]
pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed\nstdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Asserts that forge succeeded and returns its standard error.
#[allow(dead_code)]
pub fn succeeded(output: &Output) -> String {
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "forge failed:\n{stderr}");
    stderr
}

/// Asserts that forge failed and returns its standard error.
#[allow(dead_code)]
pub fn failed(output: &Output) -> String {
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "forge succeeded:\n{stderr}");
    stderr
}

/// Returns a TCP port on 127.0.0.1 that was free when the call returned.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

/// Writes a busybox root file system tar to `tar` with
/// `testdata/busybox-rootfs.sh`.
#[allow(dead_code)]
pub fn make_busybox_rootfs(tar: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/busybox-rootfs.sh");
    let made = Command::new("bash")
        .arg(&script)
        .arg(tar)
        .output()
        .expect("busybox-rootfs.sh runs");
    assert_success(&made, "busybox-rootfs.sh");
}

/// Returns the manifest of the first image in the OCI layout folder
/// `layout`.
#[allow(dead_code)]
pub fn layout_manifest(layout: &Path) -> serde_json::Value {
    let index = read_json(&layout.join("index.json"));
    read_json(&layout_blob(layout, &index["manifests"][0]["digest"]))
}

/// Returns the path of the blob with `digest` (a JSON string such as
/// `"sha256:HEX"`) in the OCI layout folder `layout`.
#[allow(dead_code)]
pub fn layout_blob(layout: &Path, digest: &serde_json::Value) -> PathBuf {
    let digest = digest.as_str().expect("digest");
    let (algorithm, hex) = digest.split_once(':').expect("algorithm:hex");
    layout.join("blobs").join(algorithm).join(hex)
}

#[allow(dead_code)]
fn read_json(path: &Path) -> serde_json::Value {
    let content = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&content).expect("JSON")
}

/// Returns the digest in `TAG: digest: sha256:... size: N`.
#[allow(dead_code)]
pub fn pushed_digest(output: &Output) -> String {
    let text = stdout(output);
    text.lines()
        .find_map(|line| line.split(": digest: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no digest line in push output:\n{text}"))
}

/// Returns whether `docker-registry` and `skopeo` are installed. With
/// `false` the test skips.
#[allow(dead_code)]
pub fn registry_tools_present() -> bool {
    forge_testkit::require_tool("docker-registry") && forge_testkit::require_tool("skopeo")
}

/// Starts a `docker-registry` without authentication and creates a
/// [`Fixture`] with `context/hello.txt`. Returns `None` when a tool is
/// missing or the registry cannot start, and the test skips.
#[allow(dead_code)]
pub fn start_registry() -> Option<(Registry, Fixture)> {
    if !registry_tools_present() {
        return None;
    }
    let registry = Registry::start(RegistryOptions::default())?;
    Some((registry, Fixture::new()))
}

/// A temporary folder with stores, a Docker configuration folder and a
/// build context. `forge` runs with `HOME` and `DOCKER_CONFIG` in it.
#[allow(dead_code)]
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// Creates the folder with `context/hello.txt`.
    #[allow(dead_code)]
    pub fn new() -> Fixture {
        let fixture = Fixture::with_empty_context();
        std::fs::write(fixture.path("context/hello.txt"), "hello from forge\n")
            .expect("context file");
        fixture
    }

    /// Creates the folder with an empty `context` folder.
    #[allow(dead_code)]
    pub fn with_empty_context() -> Fixture {
        let fixture = Fixture {
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        std::fs::create_dir_all(fixture.path("context")).expect("context folder");
        std::fs::create_dir_all(fixture.path("docker")).expect("docker config folder");
        fixture
    }

    #[allow(dead_code)]
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Returns `forge --root STORE ARGS` with the fixture's Docker
    /// configuration and without forge's variables from the caller.
    #[allow(dead_code)]
    pub fn command(&self, store: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
        command
            .arg("--root")
            .arg(self.path(store))
            .args(args)
            .env_remove("FORGE_ROOT")
            .env_remove("FORGE_INSECURE_REGISTRIES")
            .env("DOCKER_CONFIG", self.path("docker"))
            .env("HOME", self.dir.path());
        command
    }

    /// Runs forge with standard input closed.
    #[allow(dead_code)]
    pub fn forge(&self, store: &str, args: &[&str]) -> Output {
        self.command(store, args)
            .stdin(Stdio::null())
            .output()
            .expect("forge runs")
    }

    #[allow(dead_code)]
    pub fn forge_with_stdin(&self, store: &str, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(store, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("forge starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("forge runs")
    }

    /// Builds `FROM scratch` + `COPY hello.txt /` with the given tag.
    #[allow(dead_code)]
    pub fn build_scratch(&self, store: &str, tag: &str, extra: &[&str]) -> Output {
        let dockerfile = self.path("context/Dockerfile");
        std::fs::write(&dockerfile, "FROM scratch\nCOPY hello.txt /\n").expect("Dockerfile");
        let context = self.path("context");
        let mut args = vec!["build", "--progress", "plain", "-t", tag];
        args.extend_from_slice(extra);
        args.push(context.to_str().expect("UTF-8 path"));
        self.forge(store, &args)
    }
}
