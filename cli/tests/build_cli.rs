//! Runs `forge build` as a user would, with `--root` in a temporary
//! folder: images read back with skopeo, quiet and JSON output, a context
//! from standard input, a busybox base made with `forge import`, and the
//! messages and exit codes of bad input.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temporary folder"),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn context(&self) -> PathBuf {
        self.dir.path().join("context")
    }

    fn write(&self, path: &str, content: &str) {
        let path = self.context().join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("parent folder");
        }
        fs::write(path, content).expect("context file");
    }

    fn forge(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
        command
            .arg("--root")
            .arg(self.root())
            .env_remove("SOURCE_DATE_EPOCH");
        command
    }

    fn build(&self, extra: &[&str]) -> Output {
        self.forge()
            .arg("build")
            .arg("--progress")
            .arg("plain")
            .args(extra)
            .arg(self.context())
            .output()
            .expect("forge runs")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn skopeo_config(root: &Path, name: &str) -> Option<serde_json::Value> {
    if !forge_testkit::require_tool("skopeo") {
        return None;
    }
    let output = Command::new("skopeo")
        .arg("inspect")
        .arg("--config")
        .arg(format!("oci:{}:{name}", root.display()))
        .output()
        .expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo failed: {}",
        text(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("skopeo prints JSON"))
}

#[test]
fn build_copy_is_readable_by_skopeo() {
    let workspace = Workspace::new();
    workspace.write("app/hello.txt", "hello\n");
    workspace.write(
        "Dockerfile",
        "FROM scratch\nCOPY app /app\nENV GREETING=hi\nCMD [\"/app/hello.txt\"]\n",
    );
    let output = workspace.build(&["-t", "hello"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("Step 2/4 : COPY app /app"), "{stderr}");
    assert!(
        stderr.contains("Successfully tagged hello:latest"),
        "{stderr}"
    );
    let id = text(&output.stdout).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");

    if let Some(config) = skopeo_config(&workspace.root(), "hello:latest") {
        assert_eq!(config["config"]["Env"], serde_json::json!(["GREETING=hi"]));
        assert_eq!(
            config["config"]["Cmd"],
            serde_json::json!(["/app/hello.txt"])
        );
        assert_eq!(
            config["rootfs"]["diff_ids"].as_array().map(Vec::len),
            Some(1)
        );
    }
}

#[test]
fn second_build_uses_cache() {
    let workspace = Workspace::new();
    workspace.write("a.txt", "a\n");
    workspace.write("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n");
    let first = workspace.build(&[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let second = workspace.build(&[]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let stderr = text(&second.stderr);
    assert!(stderr.contains(" ---> Using cache"), "{stderr}");
    assert_eq!(text(&first.stdout), text(&second.stdout));
}

#[test]
fn quiet_prints_only_image_id() {
    let workspace = Workspace::new();
    workspace.write("Dockerfile", "FROM scratch\nENV A=1\n");
    let iidfile = workspace.dir.path().join("iid");
    let output = workspace
        .forge()
        .arg("build")
        .arg("-q")
        .arg("--iidfile")
        .arg(&iidfile)
        .arg(workspace.context())
        .output()
        .expect("forge runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("sha256:"), "{stdout}");
    assert_eq!(text(&output.stderr), "");
    let written = fs::read_to_string(&iidfile).expect("iidfile written");
    assert_eq!(written, stdout.trim());
}

#[test]
fn json_progress_prints_one_event_per_line() {
    let workspace = Workspace::new();
    workspace.write("Dockerfile", "FROM scratch\nENV A=1\n");
    let output = workspace
        .forge()
        .args(["build", "--progress", "json"])
        .arg(workspace.context())
        .output()
        .expect("forge runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let events: Vec<serde_json::Value> = text(&output.stderr)
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|event| event["event"].as_str())
        .collect();
    assert!(kinds.contains(&"step_started"), "{kinds:?}");
    assert!(kinds.contains(&"cache_miss"), "{kinds:?}");
    assert!(kinds.contains(&"step_finished"), "{kinds:?}");
}

#[test]
fn dockerfile_from_stdin() {
    let workspace = Workspace::new();
    fs::create_dir_all(workspace.context()).expect("context");
    let mut child = workspace
        .forge()
        .args(["build", "-q", "-t", "stdin-df", "-f", "-"])
        .arg(workspace.context())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("forge starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"FROM scratch\nLABEL from=stdin\n")
        .expect("write Dockerfile");
    let output = child.wait_with_output().expect("forge finishes");
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// Runs `forge build` with `input` on standard input and `-` as the context.
fn build_from_stdin(workspace: &Workspace, extra: &[&str], input: &[u8]) -> Output {
    let cwd = std::env::current_dir().expect("current folder");
    build_archive_in(workspace, &cwd, extra, input)
}

#[test]
fn plain_dockerfile_on_stdin() {
    let workspace = Workspace::new();
    let output = build_from_stdin(
        &workspace,
        &["-t", "stdin-plain"],
        b"FROM scratch\nLABEL from=stdin\n",
    );
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("invalid tar"), "{stderr}");
    if let Some(config) = skopeo_config(&workspace.root(), "stdin-plain:latest") {
        assert_eq!(config["config"]["Labels"]["from"], "stdin");
    }

    // The context holds only the Dockerfile, so a COPY finds nothing, and
    // the message explains that instead of naming the work folder.
    let copying = Workspace::new();
    let output = build_from_stdin(&copying, &[], b"FROM scratch\nCOPY a.txt /a.txt\n");
    expect_failure(&output, "COPY failed: `a.txt` is not in the build context");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("a Dockerfile given on standard input as the context has no other files"),
        "{stderr}"
    );
    assert!(stderr.contains("`forge build -f - DIR`"), "{stderr}");
    assert!(!stderr.contains("forge/tmp"), "{stderr}");

    // Messages name the Dockerfile as standard input.
    let broken = Workspace::new();
    let output = build_from_stdin(&broken, &[], b"FROM scratch\nNOPE x\n");
    expect_failure(&output, "<stdin>");
}

#[test]
fn context_from_stdin_tar() {
    let workspace = Workspace::new();
    workspace.write("Dockerfile", "FROM scratch\nCOPY data.txt /data.txt\n");
    workspace.write("data.txt", "data\n");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(workspace.context())
        .args(["-cf", "-", "."])
        .output()
        .expect("tar runs");
    assert!(tar.status.success());
    let mut child = workspace
        .forge()
        .args(["build", "--progress", "plain", "-t", "from-tar", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("forge starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&tar.stdout)
        .expect("write tar");
    let output = child.wait_with_output().expect("forge finishes");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("COPY data.txt /data.txt"));
}

#[test]
fn stdin_tar_missing_source_names_archive() {
    let workspace = Workspace::new();
    workspace.write("Dockerfile", "FROM scratch\nCOPY missing.txt /\n");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(workspace.context())
        .args(["-cf", "-", "."])
        .output()
        .expect("tar runs");
    assert!(tar.status.success());

    let output = build_from_stdin(&workspace, &[], &tar.stdout);
    expect_failure(&output, "<stdin>/Dockerfile:2: COPY missing.txt /");
    expect_failure(
        &output,
        "no source files match `missing.txt` in the build context archive read from standard input",
    );
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("forge/tmp"), "{stderr}");
}

#[test]
fn reproducible_with_source_date_epoch() {
    let manifest_of = || {
        let workspace = Workspace::new();
        workspace.write("f.txt", "same\n");
        workspace.write("Dockerfile", "FROM scratch\nCOPY f.txt /f.txt\nENV A=1\n");
        let output = workspace
            .forge()
            .args(["build", "-q", "-t", "repro"])
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg(workspace.context())
            .output()
            .expect("forge runs");
        assert!(output.status.success(), "{}", text(&output.stderr));
        let index = fs::read_to_string(workspace.root().join("index.json")).expect("index");
        let index: serde_json::Value = serde_json::from_str(&index).expect("index JSON");
        index["manifests"][0]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let first = manifest_of();
    let second = manifest_of();
    assert!(first.starts_with("sha256:"), "{first}");
    assert_eq!(first, second);
}

fn expect_failure(output: &Output, needle: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
}

#[test]
fn missing_source_exits_one() {
    let workspace = Workspace::new();
    workspace.write("Dockerfile", "FROM scratch\nCOPY missing-file.txt /\n");
    expect_failure(&workspace.build(&[]), "missing-file.txt");
}

#[test]
fn parent_source_path_stays_in_context() {
    let workspace = Workspace::new();
    workspace.write("data.txt", "data\n");
    workspace.write(
        "Dockerfile",
        "FROM scratch\nCOPY ../../data.txt /data.txt\nCOPY ../*.none /none/\n",
    );
    let output = workspace.build(&["-t", "clamped"]);
    assert!(output.status.success(), "{}", text(&output.stderr));

    let missing = Workspace::new();
    missing.write("Dockerfile", "FROM scratch\nCOPY ../../etc/passwd /\n");
    let output = missing.build(&[]);
    expect_failure(&output, "`../../etc/passwd`");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("`..` cannot climb above"), "{stderr}");
    assert!(
        !stderr.contains("the build context the build context"),
        "{stderr}"
    );
}

#[test]
fn unknown_from_stage_exits_one() {
    let workspace = Workspace::new();
    workspace.write("Dockerfile", "FROM scratch\nCOPY --from=builder /a /a\n");
    expect_failure(&workspace.build(&[]), "builder");
}

#[test]
fn unknown_chown_user_exits_one() {
    let workspace = Workspace::new();
    workspace.write("f.txt", "f\n");
    workspace.write(
        "Dockerfile",
        "FROM scratch\nCOPY --chown=nobody-here f.txt /f\n",
    );
    expect_failure(&workspace.build(&[]), "nobody-here");
}

#[test]
fn other_platform_is_rejected() {
    let workspace = Workspace::new();
    workspace.write("Dockerfile", "FROM scratch\n");
    expect_failure(
        &workspace.build(&["--platform", "linux/arm64"]),
        "linux/arm64",
    );
}

#[test]
fn unknown_output_type_is_rejected() {
    let workspace = Workspace::new();
    workspace.write("Dockerfile", "FROM scratch\n");
    expect_failure(&workspace.build(&["--output", "type=zip,dest=out"]), "zip");
}

#[test]
fn unknown_target_exits_one() {
    let workspace = Workspace::new();
    workspace.write("Dockerfile", "FROM scratch AS one\n");
    expect_failure(&workspace.build(&["--target", "two"]), "`two`");
}

/// Imports the busybox root file system as `busybox:latest`; `false` when
/// busybox is missing and the test should be skipped.
fn import_busybox(workspace: &Workspace) -> bool {
    if !forge_testkit::require_tool("busybox") {
        return false;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/busybox-rootfs.sh");
    let rootfs = workspace.dir.path().join("busybox.tar");
    let made = Command::new("bash")
        .arg(&script)
        .arg(&rootfs)
        .output()
        .expect("script runs");
    assert!(made.status.success(), "{}", text(&made.stderr));
    let imported = workspace
        .forge()
        .arg("import")
        .arg(&rootfs)
        .arg("busybox")
        .output()
        .expect("forge import runs");
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    true
}

#[test]
fn busybox_base_from_import() {
    let workspace = Workspace::new();
    if !import_busybox(&workspace) {
        return;
    }
    workspace.write("f.txt", "f\n");
    workspace.write(
        "Dockerfile",
        "FROM busybox\nCOPY --chown=nobody:nogroup f.txt /home/f.txt\nWORKDIR /home\n",
    );
    let output = workspace.build(&["-t", "on-busybox"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    if let Some(config) = skopeo_config(&workspace.root(), "on-busybox:latest") {
        // The busybox layer, then COPY; /home exists, so WORKDIR adds none.
        assert_eq!(
            config["rootfs"]["diff_ids"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(config["config"]["WorkingDir"], "/home");
    }
}

#[test]
fn run_steps_in_sandbox() {
    if !forge_testkit::require_root("run_steps_in_sandbox") {
        return;
    }
    let workspace = Workspace::new();
    if !import_busybox(&workspace) {
        return;
    }
    workspace.write("src/in.txt", "from the context\n");
    workspace.write(
        "Dockerfile",
        "FROM busybox AS tools\n\
         RUN mkdir /out && echo from-stage > /out/o.txt\n\
         FROM busybox\n\
         ARG GREETING=hello\n\
         RUN echo \"$GREETING\" > /greeting\n\
         RUN --mount=type=bind,source=src,target=/mnt cat /mnt/in.txt\n\
         RUN --mount=from=tools,source=/out,target=/o cat /o/o.txt\n\
         RUN --mount=type=cache,target=/cache echo x >> /cache/log && wc -l < /cache/log\n",
    );
    let output = workspace.build(&["-t", "ran"]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("from the context"), "{stderr}");
    assert!(stderr.contains("from-stage"), "{stderr}");

    // A new build argument value reruns the steps from the first RUN that
    // reads it; the cache mount keeps its content.
    let again = workspace.build(&["--build-arg", "GREETING=hi"]);
    let stderr = text(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("build argument `GREETING`"), "{stderr}");
    assert!(stderr.lines().any(|line| line.trim() == "2"), "{stderr}");

    let failing = Workspace::new();
    if !import_busybox(&failing) {
        return;
    }
    failing.write("Dockerfile", "FROM busybox\nRUN exit 7\n");
    expect_failure(&failing.build(&[]), "exit code 7");
}

/// Saves `name` as an OCI layout and unpacks it with umoci; returns the
/// root file system, or `None` when umoci is missing.
fn unpack_with_umoci(workspace: &Workspace, name: &str) -> Option<PathBuf> {
    if !forge_testkit::require_tool("umoci") {
        return None;
    }
    let layout = workspace.dir.path().join("layout");
    let saved = workspace
        .forge()
        .args(["save", name, "--format", "oci-dir", "-o"])
        .arg(&layout)
        .output()
        .expect("forge save runs");
    assert!(saved.status.success(), "{}", text(&saved.stderr));
    let bundle = workspace.dir.path().join("bundle");
    let unpacked = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{name}:latest", layout.display()))
        .arg(&bundle)
        .output()
        .expect("umoci runs");
    assert!(unpacked.status.success(), "{}", text(&unpacked.stderr));
    Some(bundle.join("rootfs"))
}

#[test]
fn workdir_through_symlink_keeps_link() {
    if !forge_testkit::require_root("workdir_through_symlink_keeps_link") {
        return;
    }
    let workspace = Workspace::new();
    if !import_busybox(&workspace) {
        return;
    }
    workspace.write("f.txt", "f\n");
    workspace.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN ln -s /opt/real /link && mkdir -p /opt/real\n\
         USER 1234:2345\n\
         WORKDIR /link/wd/sub\n\
         RUN test -L /link && test -d /opt/real/wd/sub && test \"$(pwd -P)\" = /opt/real/wd/sub\n\
         RUN test \"$(stat -c %u:%g /opt/real/wd)\" = 1234:2345\n\
         USER root\n\
         COPY f.txt /link/\n",
    );
    let output = workspace.build(&["-t", "workdir-link"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    if let Some(config) = skopeo_config(&workspace.root(), "workdir-link:latest") {
        assert_eq!(config["config"]["WorkingDir"], "/link/wd/sub");
    }

    let Some(rootfs) = unpack_with_umoci(&workspace, "workdir-link") else {
        return;
    };
    let link = fs::symlink_metadata(rootfs.join("link")).expect("/link exists");
    assert!(
        link.file_type().is_symlink(),
        "/link is no longer a symlink"
    );
    assert_eq!(
        fs::read_link(rootfs.join("link")).expect("/link target"),
        Path::new("/opt/real")
    );
    for dir in ["opt/real/wd", "opt/real/wd/sub"] {
        let metadata = fs::metadata(rootfs.join(dir)).expect("working directory");
        assert!(metadata.is_dir(), "{dir}");
        assert_eq!(
            (
                std::os::unix::fs::MetadataExt::uid(&metadata),
                std::os::unix::fs::MetadataExt::gid(&metadata)
            ),
            (1234, 2345),
            "{dir}"
        );
    }
    let real = fs::metadata(rootfs.join("opt/real")).expect("/opt/real");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&real), 0);
    assert_eq!(
        fs::read_to_string(rootfs.join("opt/real/f.txt")).expect("COPY through /link"),
        "f\n"
    );
}

/// Runs `setcap CAPS` on `path`; `false` when setcap is missing.
fn setcap(caps: &str, path: &Path) -> bool {
    if !forge_testkit::require_tool("setcap") {
        return false;
    }
    let output = Command::new("setcap")
        .arg(caps)
        .arg(path)
        .output()
        .expect("setcap runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    true
}

#[test]
fn copy_keeps_file_capability() {
    if !forge_testkit::require_root("copy_keeps_file_capability") {
        return;
    }
    let workspace = Workspace::new();
    workspace.write("ping", "#!/bin/sh\n");
    workspace.write("Dockerfile", "FROM scratch\nCOPY ping /bin/ping\n");
    let ping = workspace.context().join("ping");
    if !setcap("cap_net_raw+ep", &ping) {
        return;
    }
    let first = workspace.build(&["-t", "caps"]);
    assert!(first.status.success(), "{}", text(&first.stderr));

    // A changed capability is a changed input of the COPY step.
    assert!(setcap("cap_net_admin+ep", &ping));
    let second = workspace.build(&["-t", "caps"]);
    let stderr = text(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(!stderr.contains("Using cache"), "{stderr}");

    let Some(rootfs) = unpack_with_umoci(&workspace, "caps") else {
        return;
    };
    let getcap = Command::new("getcap")
        .arg(rootfs.join("bin/ping"))
        .output()
        .expect("getcap runs");
    let listed = text(&getcap.stdout);
    assert!(listed.contains("cap_net_admin"), "getcap: {listed}");
    assert!(!listed.contains("cap_net_raw"), "getcap: {listed}");
}

#[test]
fn compression_level_checked_before_build() {
    let workspace = Workspace::new();
    workspace.write("Dockerfile", "FROM scratch\nENV A=1\n");
    let first = workspace.build(&[]);
    assert!(first.status.success(), "{}", text(&first.stderr));

    // Every step comes from the cache, so no layer is written, and the
    // level is still rejected.
    let cases: [(&[&str], &str); 3] = [
        (
            &["--compression", "gzip", "--compression-level", "12"],
            "invalid --compression-level 12: --compression gzip accepts levels 0 to 9",
        ),
        (
            &["--compression", "zstd", "--compression-level", "30"],
            "invalid --compression-level 30: --compression zstd accepts levels",
        ),
        (
            &["--compression", "uncompressed", "--compression-level", "1"],
            "--compression uncompressed accepts only level 0",
        ),
    ];
    for (flags, message) in cases {
        let output = workspace.build(flags);
        expect_failure(&output, message);
        assert!(
            !text(&output.stderr).contains("Step 1/"),
            "{}",
            text(&output.stderr)
        );
    }

    let valid = workspace.build(&["--compression", "zstd", "--compression-level", "19"]);
    assert!(valid.status.success(), "{}", text(&valid.stderr));
}

#[test]
fn negative_compression_level_as_separate_argument() {
    let workspace = Workspace::new();
    workspace.write("data.txt", "data\n");
    workspace.write("Dockerfile", "FROM scratch\nCOPY data.txt /\n");

    let fast = workspace.build(&[
        "-t",
        "fast",
        "--compression",
        "zstd",
        "--compression-level",
        "-1",
    ]);
    assert!(fast.status.success(), "{}", text(&fast.stderr));
    let index = fs::read_to_string(workspace.root().join("index.json")).expect("index");
    let index: serde_json::Value = serde_json::from_str(&index).expect("index JSON");
    let digest = index["manifests"][0]["digest"].as_str().unwrap_or_default();
    let hex = digest.strip_prefix("sha256:").unwrap_or_default();
    let manifest = fs::read(workspace.root().join("blobs/sha256").join(hex)).expect("manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest JSON");
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );

    // gzip has no negative levels, so the value reaches the range check.
    let gzip = workspace.build(&["--compression", "gzip", "--compression-level", "-1"]);
    expect_failure(
        &gzip,
        "invalid --compression-level -1: --compression gzip accepts levels 0 to 9",
    );
}

/// Imports a one-file root file system as `name`, declaring `platform`.
fn import_tiny(workspace: &Workspace, name: &str, platform: &str) {
    let rootfs = workspace.dir.path().join("rootfs");
    fs::create_dir_all(rootfs.join("etc")).expect("rootfs folder");
    fs::write(rootfs.join("etc/os-release"), "ID=tiny\n").expect("rootfs file");
    let tar = workspace.dir.path().join(format!("{name}.tar"));
    let made = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .expect("tar runs");
    assert!(made.status.success(), "{}", text(&made.stderr));
    let imported = workspace
        .forge()
        .arg("import")
        .arg("--platform")
        .arg(platform)
        .arg(&tar)
        .arg(name)
        .output()
        .expect("forge import runs");
    assert!(imported.status.success(), "{}", text(&imported.stderr));
}

#[test]
fn base_of_other_platform_warns() {
    let workspace = Workspace::new();
    import_tiny(&workspace, "armbase", "linux/arm64");
    import_tiny(&workspace, "amdbase", "linux/amd64");

    workspace.write("Dockerfile", "FROM armbase\nENV A=1\n");
    let output = workspace.build(&["-t", "on-arm"]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "[Warning] InvalidBaseImagePlatform: base image `armbase` is for platform \"linux/arm64\", but this build is for \"linux/amd64\""
        ),
        "{stderr}"
    );

    // The JSON progress carries the warning as an event.
    let json = workspace
        .forge()
        .args(["build", "--progress", "json"])
        .arg(workspace.context())
        .output()
        .expect("forge runs");
    assert!(json.status.success(), "{}", text(&json.stderr));
    let events = text(&json.stderr);
    let warning = events
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event.to_string().contains("InvalidBaseImagePlatform"));
    assert!(warning.is_some(), "{events}");

    workspace.write("Dockerfile", "FROM amdbase\nENV A=1\n");
    let output = workspace.build(&[]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("InvalidBaseImagePlatform"), "{stderr}");
}

#[test]
fn run_without_changes_adds_no_layer() {
    if !forge_testkit::require_root("run_without_changes_adds_no_layer") {
        return;
    }
    let workspace = Workspace::new();
    if !import_busybox(&workspace) {
        return;
    }
    workspace.write("src/in.txt", "in\n");
    fs::create_dir_all(workspace.context().join("empty")).expect("empty folder");
    workspace.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN true\n\
         RUN --mount=type=cache,target=/var/cache/none true\n\
         RUN --mount=type=bind,source=src,target=/mnt/deep/dir cat /mnt/deep/dir/in.txt\n\
         RUN --mount=type=tmpfs,target=/scratch/t true\n\
         RUN echo hi > /hi\n\
         RUN true\n\
         COPY empty/ /empty/\n\
         WORKDIR /home\n\
         WORKDIR /newdir\n",
    );
    let first = workspace.build(&["-t", "quiet-runs"]);
    let stderr = text(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    // Only `RUN echo`, COPY and the WORKDIR that creates its folder print
    // a layer id.
    let ids = stderr
        .lines()
        .filter(|line| line.starts_with(" ---> ") && !line.contains("Cache miss"))
        .count();
    assert_eq!(ids, 3, "{stderr}");

    let Some(config) = skopeo_config(&workspace.root(), "quiet-runs:latest") else {
        return;
    };
    // busybox, RUN echo, COPY of the empty folder, WORKDIR /newdir.
    let diff_ids = config["rootfs"]["diff_ids"].as_array().cloned();
    assert_eq!(diff_ids.as_ref().map(Vec::len), Some(4), "{config}");
    let history = config["history"].as_array().cloned().unwrap_or_default();
    let empty: Vec<(String, bool)> = history
        .iter()
        .skip(1)
        .map(|entry| {
            (
                entry["created_by"].as_str().unwrap_or_default().to_string(),
                entry["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let flags: Vec<bool> = empty.iter().map(|(_, flag)| *flag).collect();
    assert_eq!(
        flags,
        [true, true, true, true, false, true, false, true, false],
        "{empty:?}"
    );
    let layers_in_history = history
        .iter()
        .filter(|entry| !entry["empty_layer"].as_bool().unwrap_or(false))
        .count();
    assert_eq!(Some(layers_in_history), diff_ids.as_ref().map(Vec::len));

    // A rebuild from the cache gives the same image.
    let second = workspace.build(&["-t", "quiet-runs"]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(text(&second.stderr).contains(" ---> Using cache"));
    assert_eq!(text(&first.stdout), text(&second.stdout));

    // Mount points leave nothing behind, and the COPY created its folder.
    if let Some(rootfs) = unpack_with_umoci(&workspace, "quiet-runs") {
        assert_eq!(
            fs::read_to_string(rootfs.join("hi")).ok().as_deref(),
            Some("hi\n")
        );
        assert!(rootfs.join("empty").is_dir());
        assert!(rootfs.join("newdir").is_dir());
        assert!(!rootfs.join("mnt/deep").exists());
        assert!(!rootfs.join("var/cache/none").exists());
        assert!(!rootfs.join("scratch").exists());
    }
}

#[test]
fn oversized_dockerfile_is_rejected() {
    let limit: u64 = 16 << 20;
    let workspace = Workspace::new();
    fs::create_dir_all(workspace.context()).expect("context");
    let path = workspace.context().join("Dockerfile");
    let file = fs::File::create(&path).expect("Dockerfile");
    file.set_len(limit + 1).expect("sparse Dockerfile");
    let output = workspace.build(&[]);
    expect_failure(&output, &format!("({} bytes) is larger than", limit + 1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("Dockerfile"), "{stderr}");
    assert!(stderr.contains("16 MiB"), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");

    // With -f - and with a Dockerfile as the context on standard input.
    let big = vec![b'#'; usize::try_from(limit).expect("limit fits") + 1];
    for extra in [&["-f", "-"][..], &[]] {
        let mut child = workspace
            .forge()
            .args(["build", "--progress", "plain"])
            .args(extra)
            .arg(if extra.is_empty() {
                PathBuf::from("-")
            } else {
                workspace.context()
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("forge starts");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = big.clone();
        // forge stops reading at the limit, so the write may fail with a
        // broken pipe.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().expect("forge finishes");
        writer.join().expect("writer thread");
        expect_failure(
            &output,
            "the Dockerfile on standard input is larger than the limit of 16 MiB",
        );
        assert!(
            text(&output.stderr).contains("16 MiB"),
            "{}",
            text(&output.stderr)
        );
    }
}

/// Returns the context folder of `workspace` as a tar archive.
fn context_tar(workspace: &Workspace) -> Vec<u8> {
    let tar = Command::new("tar")
        .arg("-C")
        .arg(workspace.context())
        .args(["-cf", "-", "."])
        .output()
        .expect("tar runs");
    assert!(tar.status.success(), "{}", text(&tar.stderr));
    tar.stdout
}

/// Runs `forge build -` with `archive` on standard input, in the folder
/// `cwd`.
fn build_archive_in(workspace: &Workspace, cwd: &Path, extra: &[&str], archive: &[u8]) -> Output {
    let mut child = workspace
        .forge()
        .current_dir(cwd)
        .args(["build", "--progress", "plain"])
        .args(extra)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("forge starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(archive)
        .expect("write standard input");
    child.wait_with_output().expect("forge finishes")
}

/// Returns the labels of the image `name` from `forge inspect`.
fn labels_of(workspace: &Workspace, name: &str) -> serde_json::Value {
    let output = workspace
        .forge()
        .args(["inspect", name])
        .output()
        .expect("forge inspect runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let inspected: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("inspect prints JSON");
    inspected[0]["Config"]["config"]["Labels"].clone()
}

#[test]
fn stdin_tar_dockerfile_path_inside_archive() {
    let workspace = Workspace::new();
    workspace.write("Dockerfile", "FROM scratch\nLABEL which=root\n");
    workspace.write(
        "sub/Dockerfile.dev",
        "FROM scratch\nCOPY data.txt /data.txt\nLABEL which=archive\n",
    );
    workspace.write("data.txt", "data\n");
    let archive = context_tar(&workspace);

    // The current folder has a file of the same path, which docker and
    // forge leave alone.
    let cwd = workspace.dir.path().join("cwd");
    fs::create_dir_all(cwd.join("sub")).expect("current folder");
    fs::write(
        cwd.join("sub/Dockerfile.dev"),
        "FROM scratch\nLABEL which=cwd\n",
    )
    .expect("Dockerfile in the current folder");

    let output = build_archive_in(
        &workspace,
        &cwd,
        &["-t", "from-archive", "-f", "sub/Dockerfile.dev"],
        &archive,
    );
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("COPY data.txt /data.txt"), "{stderr}");
    assert_eq!(labels_of(&workspace, "from-archive")["which"], "archive");

    // `./` and `dir/..` stay inside the archive.
    let output = build_archive_in(
        &workspace,
        &cwd,
        &["-t", "dotted", "-f", "./sub/../sub/Dockerfile.dev"],
        &archive,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(labels_of(&workspace, "dotted")["which"], "archive");

    // Without -f the archive's own Dockerfile is used.
    let output = build_archive_in(&workspace, &cwd, &["-t", "default-file"], &archive);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(labels_of(&workspace, "default-file")["which"], "root");
}

#[test]
fn stdin_tar_dockerfile_errors_name_archive() {
    let workspace = Workspace::new();
    workspace.write("sub/Dockerfile.dev", "FROM scratch\nNOPE x\n");
    let outside = workspace.dir.path().join("outside.Dockerfile");
    fs::write(&outside, "FROM scratch\n").expect("Dockerfile outside the archive");
    std::os::unix::fs::symlink(&outside, workspace.context().join("escape"))
        .expect("symlink in the context");
    let archive = context_tar(&workspace);
    let cwd = workspace.dir.path();
    let outside_text = outside.display().to_string();

    let cases: [(&str, &[&str]); 5] = [
        (
            &outside_text,
            &[
                "invalid -f `",
                "the Dockerfile is looked up inside the archive",
                "relative to the archive's root",
            ],
        ),
        (
            "sub/missing.Dockerfile",
            &[
                "Dockerfile `sub/missing.Dockerfile` not found in the context archive on standard input",
                "-f names a path inside the archive",
            ],
        ),
        (
            "../outside.Dockerfile",
            &["invalid -f `../outside.Dockerfile`: the path leaves the context archive"],
        ),
        (
            "escape",
            &[
                "Dockerfile `escape` in the context archive on standard input is a symbolic link to a file outside the archive",
            ],
        ),
        (
            "sub",
            &["Dockerfile `sub` in the context archive on standard input is not a file"],
        ),
    ];
    for (file, messages) in cases {
        let output = build_archive_in(&workspace, cwd, &["-f", file], &archive);
        for message in messages {
            expect_failure(&output, message);
        }
        let stderr = text(&output.stderr);
        assert!(!stderr.contains("forge/tmp"), "{stderr}");
    }

    // A file of the archive that fails to parse is named by its path there.
    let output = build_archive_in(&workspace, cwd, &["-f", "sub/Dockerfile.dev"], &archive);
    expect_failure(&output, "<stdin>/sub/Dockerfile.dev:2:");

    // Without -f, a missing Dockerfile is reported the same way.
    let output = build_archive_in(&workspace, cwd, &[], &archive);
    expect_failure(
        &output,
        "Dockerfile `Dockerfile` not found in the context archive on standard input",
    );
}

/// Returns the media types of the layers of the image `name`.
fn layer_media_types(workspace: &Workspace, name: &str) -> Vec<String> {
    let output = workspace
        .forge()
        .args(["inspect", name])
        .output()
        .expect("forge inspect runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let inspected: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("inspect prints JSON");
    inspected[0]["Manifest"]["layers"]
        .as_array()
        .expect("layers array")
        .iter()
        .map(|layer| layer["mediaType"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn cached_layer_compression_mismatch_warns() {
    const WARNING: &str = "reuses a cached";
    let workspace = Workspace::new();
    workspace.write("a.txt", "a\n");
    workspace.write("b.txt", "b\n");
    workspace.write(
        "Dockerfile",
        "FROM scratch AS files\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n",
    );
    let gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
    let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";

    let first = workspace.build(&["-t", "layers"]);
    let stderr = text(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(!stderr.contains(WARNING), "{stderr}");

    // Every step is a cache hit with a gzip layer: one warning for the
    // build, naming both compressions and the fix.
    let cached = workspace.build(&["-t", "layers", "--compression", "zstd"]);
    let stderr = text(&cached.stderr);
    assert!(cached.status.success(), "{stderr}");
    assert_eq!(stderr.matches(WARNING).count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "[Warning] step 2/3 reuses a cached gzip layer, but --compression zstd was requested"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("rebuild with --no-cache,"), "{stderr}");
    assert!(stderr.contains("--no-cache-filter files"), "{stderr}");
    assert_eq!(layer_media_types(&workspace, "layers"), [gzip, gzip]);

    // The JSON progress carries it as a warning event.
    let json = workspace
        .forge()
        .args(["build", "--progress", "json", "--compression", "zstd"])
        .arg(workspace.context())
        .output()
        .expect("forge runs");
    assert!(json.status.success(), "{}", text(&json.stderr));
    let events = text(&json.stderr);
    let warnings: Vec<serde_json::Value> = events
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event.to_string().contains(WARNING))
        .collect();
    assert_eq!(warnings.len(), 1, "{events}");

    // The same compression as the cache warns about nothing.
    let same = workspace.build(&["--compression", "gzip"]);
    assert!(same.status.success(), "{}", text(&same.stderr));
    assert!(
        !text(&same.stderr).contains(WARNING),
        "{}",
        text(&same.stderr)
    );

    // The fix from the warning writes zstd layers, and then a gzip build
    // warns the other way round.
    let fixed = workspace.build(&[
        "-t",
        "layers",
        "--compression",
        "zstd",
        "--no-cache-filter",
        "files",
    ]);
    let stderr = text(&fixed.stderr);
    assert!(fixed.status.success(), "{stderr}");
    assert!(!stderr.contains(WARNING), "{stderr}");
    assert_eq!(layer_media_types(&workspace, "layers"), [zstd, zstd]);
    let back = workspace.build(&[]);
    let stderr = text(&back.stderr);
    assert!(back.status.success(), "{stderr}");
    assert!(
        stderr.contains("reuses a cached zstd layer, but --compression gzip was requested"),
        "{stderr}"
    );
}
