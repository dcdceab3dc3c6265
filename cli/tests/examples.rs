//! Builds each example under `examples/` end to end with the `forge`
//! binary: a cold build, a rebuild where every step comes from the cache, a
//! rebuild after one source file changed (only the steps from that file's
//! COPY on run again), then the image runs under podman and its output is
//! checked. Each image is also pushed to a docker-registry on a loopback
//! port, pulled by podman and run again.
//!
//! Each test copies its example into a temporary folder, so editing the
//! source never touches the checkout, and uses its own store. The Debian
//! base comes from `testdata/debian-base.sh`, which caches the debootstrap
//! tar under `FORGE_TESTDATA_CACHE`. The tests need root, podman, runc,
//! docker-registry and (for the Debian examples) debootstrap and the apt
//! mirror of the host.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Returns the checkout's root folder.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command` and returns its output, failing the test with the
/// command's standard error when it exits with an error.
fn run_ok(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed with {}:\n{}\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// Copies the folder `from` into `to`, files and subfolders.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create the destination folder");
    for entry in fs::read_dir(from).expect("read the example folder") {
        let entry = entry.expect("read an example entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("entry type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy an example file");
        }
    }
}

/// Whether a build took a step from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `FROM`: loads the base and has no cache entry of its own.
    Base,
    Hit,
    Miss,
}

/// One step of a build as the JSON progress events report it.
#[derive(Debug, Clone)]
struct Step {
    number: u64,
    text: String,
    outcome: Outcome,
}

/// Reads the steps of a build from `--progress json` lines on standard
/// error, in step order.
fn steps_of(stderr: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in stderr.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let number = event["step"]["number"].as_u64().unwrap_or(0);
        match event["event"].as_str() {
            Some("step_started") => steps.push(Step {
                number,
                text: event["text"].as_str().unwrap_or_default().to_string(),
                outcome: Outcome::Base,
            }),
            Some(kind @ ("cache_hit" | "cache_miss")) => {
                let step = steps
                    .iter_mut()
                    .find(|step| step.number == number)
                    .unwrap_or_else(|| panic!("{kind} for step {number}, which never started"));
                step.outcome = if kind == "cache_hit" {
                    Outcome::Hit
                } else {
                    Outcome::Miss
                };
            }
            _ => {}
        }
    }
    steps.sort_by_key(|step| step.number);
    steps
}

/// Steps that are not `FROM`.
fn cacheable(steps: &[Step]) -> impl Iterator<Item = &Step> {
    steps.iter().filter(|step| step.outcome != Outcome::Base)
}

/// Checks that the steps before the one whose text is `changed` came from
/// the cache and that it and every later step ran.
fn assert_reruns_from(steps: &[Step], changed: &str) {
    let position = steps
        .iter()
        .position(|step| step.text == changed)
        .unwrap_or_else(|| panic!("no step `{changed}` in {steps:#?}"));
    let (before, after) = steps.split_at(position);
    for step in cacheable(before) {
        assert_eq!(
            step.outcome,
            Outcome::Hit,
            "step {} `{}` ran although only `{changed}` changed",
            step.number,
            step.text
        );
    }
    for step in cacheable(after) {
        assert_eq!(
            step.outcome,
            Outcome::Miss,
            "step {} `{}` came from the cache after `{changed}` changed",
            step.number,
            step.text
        );
    }
}

/// One example copied into a temporary folder, with its own store.
struct Example {
    dir: tempfile::TempDir,
}

impl Example {
    fn new(name: &str) -> Example {
        let example = Example {
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        copy_tree(&repo().join("examples").join(name), &example.context());
        example
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn context(&self) -> PathBuf {
        self.dir.path().join("context")
    }

    fn forge(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
        command
            .arg("--root")
            .arg(self.root())
            .env_remove("SOURCE_DATE_EPOCH");
        command
    }

    /// Imports a busybox base as `busybox`.
    fn import_busybox(&self) {
        let tar = self.dir.path().join("busybox.tar");
        run_ok(Command::new(repo().join("testdata/busybox-rootfs.sh")).arg(&tar));
        run_ok(self.forge().arg("import").arg(&tar).arg("busybox"));
    }

    /// Imports the debootstrap base as `debian:bookworm`.
    fn import_debian(&self) {
        run_ok(
            Command::new(repo().join("testdata/debian-base.sh"))
                .env("FORGE", env!("CARGO_BIN_EXE_forge"))
                .env("FORGE_ROOT", self.root()),
        );
    }

    /// Builds the context as `tag` and returns its steps.
    fn build(&self, tag: &str) -> Vec<Step> {
        self.build_with(tag, &[])
    }

    /// Builds the context as `tag` with extra `forge build` flags and
    /// returns its steps.
    fn build_with(&self, tag: &str, flags: &[&str]) -> Vec<Step> {
        let output = run_ok(
            self.forge()
                .args(["build", "--progress", "json", "-t", tag])
                .args(flags)
                .arg(self.context()),
        );
        let steps = steps_of(&text(&output.stderr));
        assert!(
            steps.len() > 1,
            "no steps in the progress events:\n{}",
            text(&output.stderr)
        );
        steps
    }

    /// Builds cold, then again from the cache, and checks both.
    fn build_cold_then_cached(&self, tag: &str) -> Vec<Step> {
        self.build_cold_then_cached_with(tag, &[])
    }

    /// Builds cold, then again from the cache, with extra `forge build`
    /// flags, and checks both.
    fn build_cold_then_cached_with(&self, tag: &str, flags: &[&str]) -> Vec<Step> {
        let cold = self.build_with(tag, flags);
        for step in cacheable(&cold) {
            assert_eq!(
                step.outcome,
                Outcome::Miss,
                "step {} `{}` hit a cache in an empty store",
                step.number,
                step.text
            );
        }

        let cached = self.build_with(tag, flags);
        assert_eq!(cached.len(), cold.len(), "the rebuild has other steps");
        for step in cacheable(&cached) {
            assert_eq!(
                step.outcome,
                Outcome::Hit,
                "step {} `{}` ran again with nothing changed",
                step.number,
                step.text
            );
        }
        cached
    }

    /// Replaces `from` with `to` in the context file `path`.
    fn edit(&self, path: &str, from: &str, to: &str) {
        let path = self.context().join(path);
        let source = fs::read_to_string(&path).expect("read the source file");
        assert!(source.contains(from), "`{from}` not in {}", path.display());
        fs::write(&path, source.replacen(from, to, 1)).expect("write the source file");
    }

    /// Writes `tag` as a docker-archive and loads it into `podman`.
    fn load_into(&self, podman: &Podman, tag: &str) -> String {
        // podman reads a colon in the path as a reference separator.
        let archive = self
            .dir
            .path()
            .join(format!("{}.tar", tag.replace(':', "-")));
        run_ok(
            self.forge()
                .args(["save", "--format", "docker", "-o"])
                .arg(&archive)
                .arg(tag),
        );
        podman.load(&archive)
    }
}

/// podman with its own store in a temporary folder, runc and vfs.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        Podman {
            dir: tempfile::tempdir().expect("temporary folder"),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"]);
        command
    }

    /// Loads a docker-archive and returns the image name podman gave it.
    fn load(&self, archive: &Path) -> String {
        let output = run_ok(
            self.command()
                .args(["load", "--quiet", "--input"])
                .arg(archive),
        );
        let stdout = text(&output.stdout);
        stdout
            .lines()
            .find_map(|line| line.split_once("Loaded image").map(|(_, rest)| rest))
            .and_then(|rest| {
                rest.split_once(':')
                    .map(|(_, name)| name.trim().to_string())
            })
            .unwrap_or_else(|| panic!("podman load printed no image name: {stdout}"))
    }

    /// Runs `image` in the foreground with no network and returns its
    /// standard output.
    fn run(&self, image: &str, args: &[&str]) -> String {
        let output = run_ok(
            self.command()
                .args(["run", "--rm", "--network", "none"])
                .args([
                    "--ulimit",
                    "nofile=20000:20000",
                    "--ulimit",
                    "nproc=4096:4096",
                ])
                .arg(image)
                .args(args),
        );
        text(&output.stdout)
    }
}

/// A registry on a loopback port with one image that forge pushed, and a
/// podman store that pulled it.
struct Pushed {
    _registry: forge_testkit::registry::Registry,
    podman: Podman,
    remote: String,
}

/// Pushes `tag` with `forge push` to a new registry and pulls it into a
/// new podman store. `None` when the registry cannot start outside CI.
fn push_and_pull(example: &Example, tag: &str) -> Option<Pushed> {
    let registry = forge_testkit::registry::Registry::start(
        forge_testkit::registry::RegistryOptions::default(),
    )?;
    let remote = format!("{}/examples/{tag}:latest", registry.host);
    run_ok(example.forge().args(["push", tag, &remote]));
    let podman = Podman::new();
    run_ok(
        podman
            .command()
            .args(["pull", "--quiet", "--tls-verify=false", &remote]),
    );
    Some(Pushed {
        _registry: registry,
        podman,
        remote,
    })
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers keep mounts under the run root, so they go first and
        // the temporary folder can be removed after them.
        let _ = self.command().args(["rm", "--all", "--force"]).output();
        let _ = self.command().args(["rmi", "--all", "--force"]).output();
    }
}

/// Checks the tools every example needs; `false` means skip.
fn prerequisites(test: &str, tools: &[&str]) -> bool {
    forge_testkit::require_root(test) && tools.iter().all(|tool| forge_testkit::require_tool(tool))
}

/// Returns a loopback port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// Fetches `url` with curl and returns the HTTP status and the body, or
/// `None` when no HTTP response arrived.
fn http_get(url: &str) -> Option<(u16, Vec<u8>)> {
    let output = Command::new("curl")
        .args(["--silent", "--max-time", "5", "--output", "-"])
        .args(["--write-out", "\n%{http_code}"])
        .arg(url)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let mut body = output.stdout;
    let split = body.iter().rposition(|byte| *byte == b'\n')?;
    let status = text(&body[split + 1..]).parse().ok()?;
    body.truncate(split);
    Some((status, body))
}

#[test]
fn quickstart_builds_caches_and_runs() {
    if !prerequisites(
        "quickstart_builds_caches_and_runs",
        &["busybox", "podman", "runc", "docker-registry"],
    ) {
        return;
    }
    let example = Example::new("quickstart");
    example.import_busybox();
    let steps = example.build_cold_then_cached("quickstart");
    let texts: Vec<&str> = steps.iter().map(|step| step.text.as_str()).collect();
    for instruction in ["RUN ", "COPY ", "ENV ", "WORKDIR ", "ENTRYPOINT "] {
        assert!(
            texts.iter().any(|text| text.starts_with(instruction)),
            "the quickstart has no {instruction}step: {texts:?}"
        );
    }

    example.edit("greet.sh", "\"$GREETING, ", "\"$GREETING again, ");
    let edited = example.build("quickstart");
    assert_reruns_from(&edited, "COPY greet.sh ./");

    let podman = Podman::new();
    let image = example.load_into(&podman, "quickstart");
    let output = podman.run(&image, &["forge"]);
    let mut lines = output.lines();
    assert_eq!(lines.next(), Some("Hello again, forge!"), "{output}");
    assert_eq!(
        lines.next(),
        Some(format!("built by forge on {}", std::env::consts::ARCH).as_str()),
        "{output}"
    );

    // forge's own runtime prints the same.
    let forge_run = run_ok(example.forge().args(["run", "--rm", "quickstart", "forge"]));
    assert_eq!(
        text(&forge_run.stdout),
        output,
        "forge run and podman differ"
    );

    // Through a registry: forge push, podman pull.
    let Some(pushed) = push_and_pull(&example, "quickstart") else {
        return;
    };
    let pulled_output = pushed.podman.run(&pushed.remote, &["forge"]);
    assert_eq!(
        pulled_output, output,
        "the pulled image prints something else"
    );
}

#[test]
fn multistage_builds_caches_and_runs() {
    if !prerequisites(
        "multistage_builds_caches_and_runs",
        &["debootstrap", "podman", "runc", "docker-registry"],
    ) {
        return;
    }
    let example = Example::new("multistage");
    example.import_debian();
    example.build_cold_then_cached("hello");

    // The apt cache mount kept the downloaded packages outside the layers.
    let cache_mounts = example.root().join("forge/cache-mounts");
    let mut packages = 0;
    let mut pending = vec![cache_mounts.clone()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "deb") {
                packages += 1;
            }
        }
    }
    assert!(
        packages > 0,
        "no .deb files kept in the cache mounts under {}",
        cache_mounts.display()
    );

    example.edit(
        "hello.c",
        "Hello from a static binary built by forge",
        "Hello again from a static binary",
    );
    let edited = example.build("hello");
    assert_reruns_from(&edited, "COPY hello.c .");

    let archive = example.dir.path().join("hello-size.tar");
    run_ok(
        example
            .forge()
            .args(["save", "--format", "docker", "-o"])
            .arg(&archive)
            .arg("hello"),
    );
    let size = fs::metadata(&archive).expect("archive size").len();
    assert!(
        size < 4 * 1024 * 1024,
        "the final image is {size} bytes; the static binary alone should be under 4 MiB"
    );

    let podman = Podman::new();
    let image = podman.load(&archive);
    let output = podman.run(&image, &["one", "two words"]);
    assert_eq!(
        output,
        "Hello again from a static binary\narguments: 2\n  1: one\n  2: two words\n"
    );

    // Through a registry: forge push, podman pull.
    let Some(pushed) = push_and_pull(&example, "hello") else {
        return;
    };
    let pulled_output = pushed.podman.run(&pushed.remote, &["one", "two words"]);
    assert_eq!(
        pulled_output, output,
        "the pulled image prints something else"
    );
}

/// Starts the webapp image on a free loopback port of the host network.
/// Dropping it removes the container.
struct WebServer<'a> {
    podman: &'a Podman,
    container: String,
    base: String,
}

impl<'a> WebServer<'a> {
    fn start(podman: &'a Podman, image: &str) -> WebServer<'a> {
        let port = free_port();
        let started = run_ok(
            podman
                .command()
                .args(["run", "--detach", "--network", "host"])
                .args([
                    "--ulimit",
                    "nofile=20000:20000",
                    "--ulimit",
                    "nproc=4096:4096",
                ])
                .args(["--env", "HOST=127.0.0.1", "--env"])
                .arg(format!("PORT={port}"))
                .arg(image),
        );
        let server = WebServer {
            podman,
            container: text(&started.stdout).trim().to_string(),
            base: format!("http://127.0.0.1:{port}"),
        };

        // python needs a moment before it listens.
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(&server.url("/")).is_none() {
            if Instant::now() > deadline {
                let logs = podman
                    .command()
                    .args(["logs", &server.container])
                    .output()
                    .map(|logs| text(&logs.stderr));
                panic!(
                    "the web server of {image} never answered on {}; logs: {logs:?}",
                    server.base
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Checks the index and that every picture in `images` comes back
    /// byte for byte.
    fn assert_serves(&self, images: &Path) {
        let mut names: Vec<String> = fs::read_dir(images)
            .expect("read the pictures folder")
            .map(|entry| {
                entry
                    .expect("picture entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        assert!(!names.is_empty(), "no pictures in {}", images.display());

        let (status, body) = http_get(&self.url("/")).expect("the index request completes");
        assert_eq!(status, 200, "GET /");
        let listed: Vec<String> = text(&body).lines().map(str::to_string).collect();
        assert_eq!(listed, names, "GET / lists other pictures");

        for name in &names {
            let expected = fs::read(images.join(name)).expect("read a picture");
            let (status, body) = http_get(&self.url(&format!("/images/{name}")))
                .expect("the picture request completes");
            assert_eq!(status, 200, "GET /images/{name}");
            assert!(
                body == expected,
                "GET /images/{name} returned {} bytes that differ from the {} bytes of the file",
                body.len(),
                expected.len()
            );
        }

        let (status, _) =
            http_get(&self.url("/images/missing.png")).expect("the request completes");
        assert_eq!(status, 404, "GET /images/missing.png");
    }
}

impl Drop for WebServer<'_> {
    fn drop(&mut self) {
        let _ = self
            .podman
            .command()
            .args(["rm", "--force", &self.container])
            .output();
    }
}

/// The `/version` route that the webapp tests add to `server.py`.
const VERSION_ROUTE: &str = "@app.get(\"/version\")\ndef version():\n    return \"edited\\n\"\n\n\nif __name__ == \"__main__\":";

#[test]
fn webapp_serves_pictures() {
    if !prerequisites(
        "webapp_serves_pictures",
        &["debootstrap", "podman", "runc", "curl", "docker-registry"],
    ) {
        return;
    }
    let example = Example::new("webapp");
    example.import_debian();
    example.build_cold_then_cached("webapp");

    example.edit("server.py", "if __name__ == \"__main__\":", VERSION_ROUTE);
    let edited = example.build("webapp");
    assert_reruns_from(&edited, "COPY server.py /");

    // From a docker-archive.
    let podman = Podman::new();
    let image = example.load_into(&podman, "webapp");
    {
        let server = WebServer::start(&podman, &image);
        server.assert_serves(&example.context().join("images"));
        let (status, body) =
            http_get(&server.url("/version")).expect("the version request completes");
        assert_eq!(status, 200, "GET /version from the edited server.py");
        assert_eq!(text(&body), "edited\n");
    }

    // Through a registry: forge push, podman pull.
    let Some(pushed) = push_and_pull(&example, "webapp") else {
        return;
    };
    let server = WebServer::start(&pushed.podman, &pushed.remote);
    server.assert_serves(&example.context().join("images"));
    let (status, body) = http_get(&server.url("/version")).expect("the version request completes");
    assert_eq!(status, 200, "GET /version from the pulled image");
    assert_eq!(text(&body), "edited\n");
}

#[test]
fn webapp_pip_uses_ca_secret() {
    if !prerequisites(
        "webapp_pip_uses_ca_secret",
        &["debootstrap", "podman", "runc", "curl"],
    ) {
        return;
    }
    let host_bundle = Path::new("/etc/ssl/certs/ca-certificates.crt");
    let Ok(bundle) = fs::read(host_bundle) else {
        forge_testkit::require_tool("update-ca-certificates");
        return;
    };
    let example = Example::new("webapp");
    example.import_debian();

    // The secret is the host bundle with a comment line that PEM readers
    // skip, so the test can look for it in the image.
    let marker = format!("# forge examples test {}", std::process::id());
    let secret = example.dir.path().join("ca-bundle.crt");
    let mut content = bundle;
    content.extend_from_slice(format!("\n{marker}\n").as_bytes());
    fs::write(&secret, &content).expect("write the secret");
    let dockerfile = example.context().join("Dockerfile.pip");
    let dockerfile = dockerfile.to_str().expect("UTF-8 path");
    let secret_flag = format!("id=ca,src={}", secret.display());
    let flags = ["-f", dockerfile, "--secret", secret_flag.as_str()];

    example.build_cold_then_cached_with("webapp:pip", &flags);
    example.edit("server.py", "if __name__ == \"__main__\":", VERSION_ROUTE);
    let edited = example.build_with("webapp:pip", &flags);
    assert_reruns_from(&edited, "COPY server.py /");

    let podman = Podman::new();
    let image = example.load_into(&podman, "webapp:pip");
    let bundle_in_image = run_ok(
        podman
            .command()
            .args(["run", "--rm", "--network", "none"])
            .args([
                "--ulimit",
                "nofile=20000:20000",
                "--ulimit",
                "nproc=4096:4096",
            ])
            .args(["--entrypoint", "sh", &image, "-c"])
            .arg(format!("cat {} 2>/dev/null || true", host_bundle.display())),
    );
    assert!(
        !text(&bundle_in_image.stdout).contains(&marker),
        "the CA secret reached the image at {}",
        host_bundle.display()
    );

    let server = WebServer::start(&podman, &image);
    server.assert_serves(&example.context().join("images"));
    let (status, body) = http_get(&server.url("/version")).expect("the version request completes");
    assert_eq!(status, 200, "GET /version from the edited server.py");
    assert_eq!(text(&body), "edited\n");
}
