//! Runs `forge build --output`, `--secret` and `--ssh` through the real
//! binary with `--root` in a temporary folder and a busybox base made with
//! `forge import`. Every output type is read back by an independent
//! reader: skopeo (oci), umoci (oci-dir), `podman load` (docker), the
//! system `tar` (tar) and the file system (local). Secrets are checked to
//! reach the step and nothing else: no layer, store file, history entry
//! or progress line contains their bytes.

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// A temporary folder with a store holding `busybox:latest`, a context
/// folder and room for outputs.
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// Creates the folder and imports busybox; `None` when busybox is
    /// missing and the test should be skipped.
    fn new() -> Option<Workspace> {
        if !forge_testkit::require_tool("busybox") {
            return None;
        }
        let workspace = Workspace {
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/busybox-rootfs.sh");
        let rootfs = workspace.path("busybox.tar");
        let made = Command::new("bash")
            .arg(&script)
            .arg(&rootfs)
            .output()
            .expect("busybox-rootfs.sh runs");
        assert!(made.status.success(), "{}", text(&made.stderr));
        let imported = workspace
            .forge()
            .arg("import")
            .arg(&rootfs)
            .arg("busybox")
            .output()
            .expect("forge import runs");
        assert!(imported.status.success(), "{}", text(&imported.stderr));
        fs::create_dir_all(workspace.context()).expect("context folder");
        Some(workspace)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn root(&self) -> PathBuf {
        self.path("store")
    }

    fn context(&self) -> PathBuf {
        self.path("context")
    }

    fn write(&self, path: &str, content: &str) {
        fs::write(self.context().join(path), content).expect("context file");
    }

    fn forge(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
        command
            .arg("--root")
            .arg(self.root())
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("SSH_AUTH_SOCK");
        command
    }

    /// Runs `forge build --progress plain EXTRA CONTEXT`.
    fn build(&self, extra: &[&str]) -> Output {
        self.build_with("plain", extra, |_| {})
    }

    /// Runs `forge build --progress PROGRESS EXTRA CONTEXT` after `adjust`
    /// changes the command.
    fn build_with(
        &self,
        progress: &str,
        extra: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Output {
        let mut command = self.forge();
        command.args(["build", "--progress", progress]).args(extra);
        adjust(&mut command);
        command
            .arg(self.context())
            .output()
            .expect("forge build runs")
    }

    fn dest(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that `output` succeeded and returns its standard error.
fn succeeded(output: &Output) -> String {
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "forge failed:\n{stderr}");
    stderr
}

/// A Dockerfile whose image has a base layer, a COPY layer and a RUN layer.
const COPY_AND_RUN: &str = "FROM busybox\n\
                            COPY hello.txt /hello.txt\n\
                            RUN echo ran > /ran.txt && rm /etc/group\n\
                            CMD [\"cat\", \"/hello.txt\"]\n";

/// Builds [`COPY_AND_RUN`] with `--output OUTPUT`; `None` when the test
/// should be skipped.
fn build_output(output: &str) -> Option<(Workspace, Output)> {
    if !forge_testkit::require_root("build --output") {
        return None;
    }
    let workspace = Workspace::new()?;
    workspace.write("hello.txt", "hello from the context\n");
    workspace.write("Dockerfile", COPY_AND_RUN);
    let output = output.replace("DIR", &workspace.path("").display().to_string());
    let result = workspace.build(&["-t", "out-test", "--output", &output]);
    Some((workspace, result))
}

#[test]
fn oci_output_read_by_skopeo() {
    let Some((workspace, output)) = build_output("type=oci,dest=DIR/image.tar") else {
        return;
    };
    succeeded(&output);
    if !forge_testkit::require_tool("skopeo") {
        return;
    }
    let archive = workspace.dest("image.tar");
    let inspect = Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci-archive:{archive}"))
        .output()
        .expect("skopeo runs");
    assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    let config: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("JSON");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["cat", "/hello.txt"])
    );
    assert!(text(&output.stdout).starts_with("sha256:"));
}

#[test]
fn oci_output_on_stdout() {
    let Some((workspace, output)) = build_output("type=oci,dest=-") else {
        return;
    };
    succeeded(&output);
    // Standard output contains the archive only, not the image id.
    assert!(!output.stdout.starts_with(b"sha256:"));
    let archive = workspace.path("stdout.tar");
    fs::write(&archive, &output.stdout).expect("archive written");
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(&archive)
        .output()
        .expect("tar runs");
    assert!(listing.status.success(), "{}", text(&listing.stderr));
    let names = text(&listing.stdout);
    assert!(names.lines().any(|name| name == "index.json"), "{names}");
    assert!(names.lines().any(|name| name == "oci-layout"), "{names}");
    if forge_testkit::require_tool("skopeo") {
        let inspect = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", archive.display()))
            .output()
            .expect("skopeo runs");
        assert!(inspect.status.success(), "{}", text(&inspect.stderr));
    }
}

#[test]
fn oci_dir_output_unpacked_by_umoci() {
    let Some((workspace, output)) = build_output("type=oci-dir,dest=DIR/layout") else {
        return;
    };
    succeeded(&output);
    if !forge_testkit::require_tool("umoci") {
        return;
    }
    let bundle = workspace.path("bundle");
    let unpack = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:out-test:latest", workspace.dest("layout")))
        .arg(&bundle)
        .output()
        .expect("umoci runs");
    assert!(unpack.status.success(), "{}", text(&unpack.stderr));
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        fs::read_to_string(rootfs.join("hello.txt")).expect("COPY file"),
        "hello from the context\n"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("ran.txt")).expect("RUN file"),
        "ran\n"
    );
    assert!(rootfs.join("etc/passwd").exists());
    assert!(!rootfs.join("etc/group").exists(), "the whiteout was lost");
}

#[test]
fn docker_output_loaded_by_podman() {
    let Some((workspace, output)) = build_output("type=docker,dest=DIR/docker.tar") else {
        return;
    };
    succeeded(&output);
    if !forge_testkit::require_tool("podman") || !forge_testkit::require_tool("runc") {
        return;
    }
    let podman = |args: &[&str]| {
        Command::new("podman")
            .arg("--root")
            .arg(workspace.path("podman-root"))
            .arg("--runroot")
            .arg(workspace.path("podman-runroot"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(args)
            .output()
            .expect("podman runs")
    };
    let load = podman(&["load", "-i", &workspace.dest("docker.tar")]);
    assert!(load.status.success(), "{}", text(&load.stderr));
    assert!(
        text(&load.stdout).contains("out-test:latest"),
        "{}",
        text(&load.stdout)
    );
    let run = podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=4096:4096",
        "out-test:latest",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout), "hello from the context\n");
}

#[test]
fn tar_output_listed_by_tar() {
    let Some((workspace, output)) = build_output("type=tar,dest=DIR/rootfs.tar") else {
        return;
    };
    succeeded(&output);
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(workspace.path("rootfs.tar"))
        .output()
        .expect("tar runs");
    assert!(listing.status.success(), "{}", text(&listing.stderr));
    let names = text(&listing.stdout);
    let has = |wanted: &str| {
        names
            .lines()
            .any(|name| name.trim_start_matches("./").trim_end_matches('/') == wanted)
    };
    assert!(has("hello.txt"), "{names}");
    assert!(has("ran.txt"), "{names}");
    assert!(has("bin/busybox"), "{names}");
    assert!(has("etc/passwd"), "{names}");
    assert!(!has("etc/group"), "a deleted file is in the tar:\n{names}");
    assert!(
        !names.contains(".wh."),
        "a whiteout is in the tar:\n{names}"
    );

    let content = Command::new("tar")
        .arg("-xOf")
        .arg(workspace.path("rootfs.tar"))
        .arg("ran.txt")
        .output()
        .expect("tar runs");
    assert!(content.status.success(), "{}", text(&content.stderr));
    assert_eq!(text(&content.stdout), "ran\n");
}

#[test]
fn tar_short_form_on_stdout() {
    let Some((_workspace, output)) = build_output("-") else {
        return;
    };
    succeeded(&output);
    let mut tar = Command::new("tar")
        .arg("-t")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("tar runs");
    tar.stdin
        .take()
        .expect("stdin")
        .write_all(&output.stdout)
        .expect("tar reads");
    let listing = tar.wait_with_output().expect("tar ends");
    assert!(listing.status.success());
    let names = text(&listing.stdout);
    assert!(names.lines().any(|name| name == "ran.txt"), "{names}");
}

#[test]
fn local_output_writes_files() {
    let Some((workspace, output)) = build_output("type=local,dest=DIR/local") else {
        return;
    };
    succeeded(&output);
    let local = workspace.path("local");
    assert_eq!(
        fs::read_to_string(local.join("hello.txt")).expect("COPY file"),
        "hello from the context\n"
    );
    assert_eq!(
        fs::read_to_string(local.join("ran.txt")).expect("RUN file"),
        "ran\n"
    );
    assert!(local.join("bin/busybox").is_file());
    assert!(
        fs::symlink_metadata(local.join("bin/sh"))
            .expect("applet link")
            .file_type()
            .is_symlink()
    );
    assert!(
        !local.join("etc/group").exists(),
        "a deleted file came back"
    );
}

#[test]
fn short_output_form_is_local() {
    let Some((workspace, output)) = build_output("DIR/short") else {
        return;
    };
    succeeded(&output);
    assert!(workspace.path("short/ran.txt").is_file());
    assert!(workspace.path("short/hello.txt").is_file());
}

#[test]
fn output_keeps_cache_and_name() {
    let Some((workspace, output)) = build_output("type=tar,dest=DIR/first.tar") else {
        return;
    };
    succeeded(&output);
    let again = workspace.build(&[
        "--output",
        &format!("type=local,dest={}", workspace.dest("second")),
    ]);
    let stderr = succeeded(&again);
    assert_eq!(stderr.matches(" ---> Using cache").count(), 3, "{stderr}");
    let images = workspace
        .forge()
        .arg("images")
        .output()
        .expect("forge images runs");
    assert!(images.status.success());
    assert!(
        text(&images.stdout).contains("out-test"),
        "{}",
        text(&images.stdout)
    );
}

#[test]
fn invalid_output_exits_one() {
    let Some(workspace) = Workspace::new() else {
        return;
    };
    workspace.write("Dockerfile", "FROM busybox\n");
    for (value, expected) in [
        ("type=zip,dest=x", "unknown type `zip`"),
        ("type=oci", "needs dest=PATH"),
        ("type=local,dest=-", "standard output"),
    ] {
        let output = workspace.build(&["--output", value]);
        assert_eq!(output.status.code(), Some(1), "{value}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{value}: {stderr}");
    }
    let two = workspace.build(&["-o", "type=tar,dest=-", "-o", "type=oci,dest=-"]);
    assert_eq!(two.status.code(), Some(1));
    assert!(text(&two.stderr).contains("standard output"));
}

/// Returns a secret value that occurs nowhere else.
fn unique_secret(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|time| time.subsec_nanos())
        .unwrap_or_default();
    format!("forge-{label}-{}-{nanos:09}", std::process::id())
}

/// Returns the files under `dir` whose bytes, gunzipped when compressed,
/// contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let Ok(mut bytes) = fs::read(&path) else {
                continue;
            };
            if bytes.starts_with(&[0x1f, 0x8b]) {
                let gunzip = Command::new("gzip")
                    .arg("-dc")
                    .arg(&path)
                    .output()
                    .expect("gzip runs");
                bytes.extend_from_slice(&gunzip.stdout);
            }
            if bytes.windows(needle.len()).any(|window| window == needle) {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn secret_reaches_step_only() {
    if !forge_testkit::require_root("secret_reaches_step_only") {
        return;
    }
    let Some(workspace) = Workspace::new() else {
        return;
    };
    let secret = unique_secret("file-secret");
    let secret_file = workspace.path("secret.txt");
    fs::write(&secret_file, &secret).expect("secret file");
    workspace.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN --mount=type=secret,id=s cat /run/secrets/s > /dev/null && test -s /run/secrets/s\n\
         RUN --mount=type=secret,id=s,target=/etc/ssl/certs/ca-certificates.crt \
         test -s /etc/ssl/certs/ca-certificates.crt && echo proxy-ca-used > /used.txt\n\
         RUN --mount=type=secret,id=s,mode=0444,uid=65534 \
         test \"$(stat -c %a:%u /run/secrets/s)\" = 444:65534\n",
    );
    let secret_flag = format!("id=s,src={}", secret_file.display());
    let layout = workspace.dest("layout");

    let plain = workspace.build(&[
        "-t",
        "with-secret",
        "--secret",
        &secret_flag,
        "--output",
        &format!("type=oci-dir,dest={layout}"),
    ]);
    let stderr = succeeded(&plain);
    assert!(!stderr.contains(&secret), "plain progress shows the secret");
    assert!(!text(&plain.stdout).contains(&secret));

    let json = workspace.build_with("json", &["--no-cache", "--secret", &secret_flag], |_| {});
    let stderr = succeeded(&json);
    assert!(stderr.lines().any(|line| line.starts_with('{')), "{stderr}");
    assert!(!stderr.contains(&secret), "JSON progress shows the secret");

    let history = workspace
        .forge()
        .args(["history", "--no-trunc", "with-secret"])
        .output()
        .expect("forge history runs");
    assert!(history.status.success(), "{}", text(&history.stderr));
    let history = text(&history.stdout);
    assert!(history.contains("/run/secrets/s"), "{history}");
    assert!(!history.contains(&secret), "{history}");

    // The search finds the secret where it is, so its absence counts.
    let control = files_containing(workspace.dir.path(), secret.as_bytes());
    assert_eq!(control, std::slice::from_ref(&secret_file));
    let in_layout = files_containing(Path::new(&layout), secret.as_bytes());
    assert!(in_layout.is_empty(), "secret in {in_layout:?}");
    let in_store = files_containing(&workspace.root(), secret.as_bytes());
    assert!(in_store.is_empty(), "secret in {in_store:?}");

    // The mount target of the proxy-CA recipe leaves nothing in the image.
    if forge_testkit::require_tool("umoci") {
        let bundle = workspace.path("bundle");
        let unpack = Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{layout}:with-secret:latest"))
            .arg(&bundle)
            .output()
            .expect("umoci runs");
        assert!(unpack.status.success(), "{}", text(&unpack.stderr));
        let rootfs = bundle.join("rootfs");
        assert!(rootfs.join("used.txt").is_file());
        assert!(!rootfs.join("etc/ssl/certs/ca-certificates.crt").exists());
        assert!(
            !rootfs.join("etc/ssl").exists(),
            "mount point parents stayed"
        );
        assert!(!rootfs.join("run/secrets").exists(), "mount point stayed");
    }
}

#[test]
fn secret_content_is_not_in_cache_key() {
    if !forge_testkit::require_root("secret_content_is_not_in_cache_key") {
        return;
    }
    let Some(workspace) = Workspace::new() else {
        return;
    };
    workspace.write(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=secret,id=s,required test -s /run/secrets/s\n",
    );
    let secret_file = workspace.path("secret.txt");
    let flag = format!("id=s,src={}", secret_file.display());
    fs::write(&secret_file, "first").expect("secret file");
    succeeded(&workspace.build(&["--secret", &flag]));
    fs::write(&secret_file, "second").expect("secret file");
    let stderr = succeeded(&workspace.build(&["--secret", &flag]));
    assert!(stderr.contains(" ---> Using cache"), "{stderr}");
}

#[test]
fn env_secret_and_env_mount() {
    if !forge_testkit::require_root("env_secret_and_env_mount") {
        return;
    }
    let Some(workspace) = Workspace::new() else {
        return;
    };
    let secret = unique_secret("env");
    workspace.write(
        "Dockerfile",
        &format!(
            "FROM busybox\n\
             RUN --mount=type=secret,id=tok,env=TOKEN \
             test \"${{#TOKEN}}\" = {} && test ! -e /run/secrets/tok\n\
             RUN --mount=type=secret,id=tok test \"$(wc -c < /run/secrets/tok)\" = {}\n",
            secret.len(),
            secret.len()
        ),
    );
    let output = workspace.build_with(
        "plain",
        &["--secret", "id=tok,env=FORGE_TEST_TOKEN"],
        |command| {
            command.env("FORGE_TEST_TOKEN", &secret);
        },
    );
    let stderr = succeeded(&output);
    assert!(!stderr.contains(&secret));
    let in_store = files_containing(&workspace.root(), secret.as_bytes());
    assert!(in_store.is_empty(), "secret in {in_store:?}");
}

#[test]
fn missing_secret_required_or_skipped() {
    if !forge_testkit::require_root("missing_secret_required_or_skipped") {
        return;
    }
    let Some(workspace) = Workspace::new() else {
        return;
    };
    workspace.write(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=secret,id=absent test ! -e /run/secrets/absent\n",
    );
    succeeded(&workspace.build(&[]));

    workspace.write(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=secret,id=absent,required cat /run/secrets/absent\n",
    );
    let output = workspace.build(&[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("secret `absent` is required"), "{stderr}");
    assert!(stderr.contains("--secret id=absent"), "{stderr}");

    let bad_flag = workspace.build(&["--secret", "id=x,src=/nonexistent/forge-secret"]);
    assert_eq!(bad_flag.status.code(), Some(1));
    assert!(
        text(&bad_flag.stderr).contains("/nonexistent/forge-secret"),
        "{}",
        text(&bad_flag.stderr)
    );
}

#[test]
fn ssh_agent_socket_mounted() {
    if !forge_testkit::require_root("ssh_agent_socket_mounted") {
        return;
    }
    let Some(workspace) = Workspace::new() else {
        return;
    };
    let socket = workspace.path("agent.sock");
    let _listener = UnixListener::bind(&socket).expect("socket");
    workspace.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN --mount=type=ssh if [ -n \"$SSH_AUTH_SOCK\" ]; then \
         test -S \"$SSH_AUTH_SOCK\" && echo \"agent at $SSH_AUTH_SOCK\"; fi\n\
         RUN --mount=type=ssh,id=work,target=/agent.sock,required test -S /agent.sock\n",
    );
    let named = format!("work={}", socket.display());
    let output = workspace.build_with("plain", &["--ssh", "default", "--ssh", &named], |command| {
        command.env("SSH_AUTH_SOCK", &socket);
    });
    let stderr = succeeded(&output);
    assert!(
        stderr.contains("agent at /run/buildkit/ssh_agent.0"),
        "{stderr}"
    );

    let missing = workspace.build(&["--no-cache"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = text(&missing.stderr);
    assert!(stderr.contains("SSH agent `work` is required"), "{stderr}");

    let no_agent = workspace.build(&["--ssh", "default"]);
    assert_eq!(no_agent.status.code(), Some(1));
    assert!(text(&no_agent.stderr).contains("SSH_AUTH_SOCK"));
}
