//! Runs RUN steps through the real `forge build` as root, with `--root`
//! and `TMPDIR` in a temporary folder and a busybox base made with
//! `forge import`, and checks the sandbox from outside: what a step can
//! see of the host (files, processes, network), what its layer keeps
//! (changes to lower layers, deletions, links, special files, xattrs and
//! capabilities) as umoci and podman read it, and that no mount or process
//! is left after a failing or interrupted step.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// Creates the folder and imports `busybox:latest`; `None` when the
    /// test is not root or busybox is missing and the test should skip.
    fn new(test: &str) -> Option<Workspace> {
        if !forge_testkit::require_root(test) || !forge_testkit::require_tool("busybox") {
            return None;
        }
        let workspace = Workspace {
            dir: tempfile::tempdir().expect("temporary folder"),
        };
        fs::create_dir_all(workspace.context()).expect("context folder");
        fs::create_dir_all(workspace.tmp()).expect("TMPDIR");
        let rootfs = workspace.path("busybox.tar");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/busybox-rootfs.sh");
        let made = Command::new("bash")
            .arg(&script)
            .arg(&rootfs)
            .output()
            .expect("busybox-rootfs.sh runs");
        assert!(made.status.success(), "{}", text(&made.stderr));
        workspace.import(&rootfs, "busybox");
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

    /// Returns the `TMPDIR` of forge, where the sandbox keeps its state folder.
    fn tmp(&self) -> PathBuf {
        self.path("tmp")
    }

    fn write(&self, path: &str, content: &str) {
        fs::write(self.context().join(path), content).expect("context file");
    }

    fn import(&self, rootfs: &Path, name: &str) {
        let imported = self
            .forge()
            .arg("import")
            .arg(rootfs)
            .arg(name)
            .output()
            .expect("forge import runs");
        assert!(imported.status.success(), "{}", text(&imported.stderr));
    }

    fn forge(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
        command
            .arg("--root")
            .arg(self.root())
            .env("TMPDIR", self.tmp())
            .env_remove("SOURCE_DATE_EPOCH");
        command
    }

    fn build(&self, extra: &[&str]) -> Output {
        self.forge()
            .args(["build", "--progress", "plain"])
            .args(extra)
            .arg(self.context())
            .output()
            .expect("forge build runs")
    }

    /// Starts `forge build` of the context with standard error piped.
    fn spawn_build(&self) -> std::process::Child {
        self.forge()
            .args(["build", "--progress", "plain"])
            .arg(self.context())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("forge build starts")
    }

    /// Builds, saves the image `name` as an OCI layout and unpacks it with
    /// umoci; returns the root file system, or `None` without umoci.
    fn build_and_unpack(&self, name: &str) -> Option<PathBuf> {
        succeeded(&self.build(&["-t", name]));
        if !forge_testkit::require_tool("umoci") {
            return None;
        }
        let layout = self.path("layout");
        let save = self
            .forge()
            .args(["save", name, "--format", "oci-dir", "-o"])
            .arg(&layout)
            .output()
            .expect("forge save runs");
        assert!(save.status.success(), "{}", text(&save.stderr));
        let bundle = self.path("bundle");
        let unpack = Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{name}:latest", layout.display()))
            .arg(&bundle)
            .output()
            .expect("umoci runs");
        assert!(unpack.status.success(), "{}", text(&unpack.stderr));
        Some(bundle.join("rootfs"))
    }
}

fn send_sigint(child: &std::process::Child) {
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn succeeded(output: &Output) -> String {
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "forge failed:\n{stderr}");
    stderr
}

/// Returns a name that no other test run uses.
fn unique(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|time| time.subsec_nanos())
        .unwrap_or_default();
    format!("forge-{label}-{}-{nanos:09}", std::process::id())
}

#[test]
fn run_cannot_see_host_files() {
    let Some(workspace) = Workspace::new("run_cannot_see_host_files") else {
        return;
    };
    let host_marker = tempfile::Builder::new()
        .prefix(&unique("host-tmp"))
        .tempfile_in("/tmp")
        .expect("marker in /tmp");
    let host_name = host_marker
        .path()
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    let context_name = unique("context");
    workspace.write(&context_name, "in the context\n");
    let context_path = workspace.context().join(&context_name);
    workspace.write(
        "Dockerfile",
        &format!(
            "FROM busybox\n\
             RUN test ! -e /tmp/{host_name} && echo no-host-tmp\n\
             RUN test ! -e {} && echo no-context-path\n\
             RUN test -z \"$(find / -xdev \\( -name {host_name} -o -name {context_name} \\) 2>/dev/null)\" \
             && echo no-marker-anywhere\n",
            context_path.display()
        ),
    );
    let stderr = succeeded(&workspace.build(&[]));
    assert!(stderr.contains("no-host-tmp"), "{stderr}");
    assert!(stderr.contains("no-context-path"), "{stderr}");
    assert!(stderr.contains("no-marker-anywhere"), "{stderr}");
}

#[test]
fn run_sees_only_its_processes() {
    let Some(workspace) = Workspace::new("run_sees_only_its_processes") else {
        return;
    };
    // A host process with an argument that nothing else uses.
    let seconds = 700_000 + std::process::id() % 100_000;
    let mut sleeper = Command::new("sleep")
        .arg(seconds.to_string())
        .spawn()
        .expect("sleep runs");
    workspace.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN echo \"pids: $(ls -d /proc/[0-9]* | wc -l)\" && ps -o pid,args && \
         echo \"pid1: $(cat /proc/1/comm)\"\n",
    );
    let output = workspace.build(&[]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let stderr = succeeded(&output);
    assert!(!stderr.contains(&seconds.to_string()), "{stderr}");
    let count: usize = stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("pids: "))
        .and_then(|count| count.trim().parse().ok())
        .expect("the step printed its process count");
    // The sandbox's init, the shell and the commands of its pipeline; the
    // host runs many more.
    assert!(count <= 6, "{count} processes visible:\n{stderr}");
    assert!(!stderr.contains("sleep"), "{stderr}");
    let pid1 = stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("pid1: "))
        .expect("the step printed pid 1");
    assert_ne!(pid1.trim(), "systemd", "{stderr}");
    assert_ne!(pid1.trim(), "init", "{stderr}");
}

#[test]
fn network_none_cannot_reach_host() {
    let Some(workspace) = Workspace::new("network_none_cannot_reach_host") else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("address").port();
    listener.set_nonblocking(true).expect("non-blocking");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let deadline = Instant::now() + Duration::from_secs(120);
    let server = std::thread::spawn(move || {
        while Instant::now() < deadline && counter.load(Ordering::SeqCst) < 10 {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut sink = Vec::new();
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = stream.read_to_end(&mut sink);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });

    workspace.write(
        "Dockerfile",
        &format!(
            "FROM busybox\n\
             RUN --network=none if echo x | nc -w 3 127.0.0.1 {port}; then echo reached; \
             else echo unreachable; fi\n"
        ),
    );
    let stderr = succeeded(&workspace.build(&[]));
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "{stderr}");

    // The same command on the default (host) network connects, so the
    // check above can fail.
    workspace.write(
        "Dockerfile",
        &format!("FROM busybox\nRUN echo x | nc -w 3 127.0.0.1 {port} && echo reached\n"),
    );
    let stderr = succeeded(&workspace.build(&[]));
    assert!(stderr.contains("reached"), "{stderr}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "{stderr}");
    drop(server);
}

#[test]
fn run_changes_lower_layers() {
    let Some(workspace) = Workspace::new("run_changes_lower_layers") else {
        return;
    };
    workspace.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN mkdir -p /data/keep /data/gone /data/redo && echo 1 > /data/keep/mod.txt && \
         echo x > /data/gone/a && echo old > /data/redo/old.txt && echo del > /data/del.txt\n\
         RUN echo 2 >> /data/keep/mod.txt && echo new > /data/keep/new.txt && rm -r /data/gone && \
         rm /data/del.txt /etc/group && rm -r /data/redo && mkdir /data/redo && \
         echo fresh > /data/redo/fresh.txt && chmod 700 /data/keep\n\
         RUN cd /data && echo linked > file && ln file hard && ln -s file soft && mkfifo fifo && \
         ln -s /nowhere dangling\n",
    );
    let Some(rootfs) = workspace.build_and_unpack("layers") else {
        return;
    };
    let data = rootfs.join("data");
    assert_eq!(
        fs::read_to_string(data.join("keep/mod.txt")).unwrap(),
        "1\n2\n"
    );
    assert_eq!(
        fs::read_to_string(data.join("keep/new.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(
        fs::metadata(data.join("keep")).unwrap().mode() & 0o777,
        0o700
    );
    assert!(!data.join("gone").exists(), "a deleted folder came back");
    assert!(!data.join("del.txt").exists(), "a deleted file came back");
    assert!(
        !rootfs.join("etc/group").exists(),
        "a deleted base file came back"
    );
    assert!(rootfs.join("etc/passwd").exists());
    let redo: Vec<String> = fs::read_dir(data.join("redo"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(redo, ["fresh.txt"], "a re-created folder shows old files");

    let file = fs::metadata(data.join("file")).unwrap();
    let hard = fs::metadata(data.join("hard")).unwrap();
    assert_eq!(file.ino(), hard.ino(), "the hard link was lost");
    assert_eq!(file.nlink(), 2);
    assert_eq!(fs::read_link(data.join("soft")).unwrap(), Path::new("file"));
    assert_eq!(
        fs::read_link(data.join("dangling")).unwrap(),
        Path::new("/nowhere")
    );
    assert!(
        fs::symlink_metadata(data.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let names: Vec<String> = walk_names(&rootfs);
    assert!(
        names.iter().all(|name| !name.contains(".wh.")),
        "whiteouts left in the unpacked image: {names:?}"
    );
}

fn walk_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            names.push(entry.file_name().to_string_lossy().into_owned());
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
    names
}

#[test]
fn xattrs_and_capabilities_survive_run() {
    let Some(workspace) = Workspace::new("xattrs_and_capabilities_survive_run") else {
        return;
    };
    if !forge_testkit::require_tool("setcap")
        || !forge_testkit::require_tool("getcap")
        || !forge_testkit::require_tool("python3")
    {
        return;
    }
    // A base whose /opt contains a file with a capability and one with a user
    // xattr: busybox has neither setcap nor setfattr, and COPY does not keep
    // xattrs, so the files come from an imported root file system.
    let base = workspace.path("capbase");
    let unpacked = Command::new("tar")
        .arg("-xf")
        .arg(workspace.path("busybox.tar"))
        .arg("-C")
        .arg({
            fs::create_dir_all(base.join("opt")).unwrap();
            &base
        })
        .output()
        .expect("tar runs");
    assert!(unpacked.status.success(), "{}", text(&unpacked.stderr));
    fs::copy("/bin/busybox", base.join("opt/capbin")).unwrap();
    fs::write(base.join("opt/attrs.txt"), "attrs\n").unwrap();
    let setcap = Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(base.join("opt/capbin"))
        .output()
        .expect("setcap runs");
    assert!(setcap.status.success(), "{}", text(&setcap.stderr));
    set_xattr(&base.join("opt/attrs.txt"), "user.forge", "v1");
    let tarball = workspace.path("capbase.tar");
    let packed = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-C"])
        .arg(&base)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .output()
        .expect("tar runs");
    assert!(packed.status.success(), "{}", text(&packed.stderr));
    workspace.import(&tarball, "capbase");

    // Renaming and hard-linking a lower file copies it up into the step's
    // upper folder; its capability and xattrs must reach the layer.
    workspace.write(
        "Dockerfile",
        "FROM capbase\n\
         RUN mv /opt/capbin /opt/capmoved && mv /opt/attrs.txt /opt/attrs-moved.txt && \
         ln /opt/capmoved /opt/caplink && chmod 750 /opt/capmoved\n",
    );
    let Some(rootfs) = workspace.build_and_unpack("caps") else {
        return;
    };
    let getcap = Command::new("getcap")
        .arg(rootfs.join("opt/capmoved"))
        .output()
        .expect("getcap runs");
    assert!(getcap.status.success(), "{}", text(&getcap.stderr));
    assert!(
        text(&getcap.stdout).contains("cap_net_raw=ep"),
        "capability lost: {}",
        text(&getcap.stdout)
    );
    assert!(!rootfs.join("opt/capbin").exists());
    assert_eq!(
        get_xattr(&rootfs.join("opt/attrs-moved.txt"), "user.forge"),
        "v1"
    );
    let moved = fs::metadata(rootfs.join("opt/capmoved")).unwrap();
    assert_eq!(moved.mode() & 0o777, 0o750);
    assert_eq!(
        moved.ino(),
        fs::metadata(rootfs.join("opt/caplink")).unwrap().ino()
    );
}

fn set_xattr(path: &Path, name: &str, value: &str) {
    let output = Command::new("python3")
        .arg("-c")
        .arg("import os, sys; os.setxattr(sys.argv[1], sys.argv[2], sys.argv[3].encode())")
        .arg(path)
        .arg(name)
        .arg(value)
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
}

fn get_xattr(path: &Path, name: &str) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg("import os, sys; sys.stdout.write(os.getxattr(sys.argv[1], sys.argv[2]).decode())")
        .arg(path)
        .arg(name)
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

#[test]
fn podman_runs_built_image() {
    let Some(workspace) = Workspace::new("podman_runs_built_image") else {
        return;
    };
    if !forge_testkit::require_tool("podman") || !forge_testkit::require_tool("runc") {
        return;
    }
    workspace.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN mkdir /out && echo first-run > /out/a.txt\n\
         RUN echo second-run >> /out/a.txt && rm /etc/group\n\
         CMD [\"sh\", \"-c\", \"cat /out/a.txt; test -e /etc/group || echo group-deleted\"]\n",
    );
    let archive = workspace.path("image.tar");
    succeeded(&workspace.build(&[
        "-t",
        "podman-test",
        "--output",
        &format!("type=docker,dest={}", archive.display()),
    ]));
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
    let load = podman(&["load", "-i", &archive.display().to_string()]);
    assert!(load.status.success(), "{}", text(&load.stderr));
    let run = podman(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=4096:4096",
        "podman-test:latest",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout), "first-run\nsecond-run\ngroup-deleted\n");
}

/// Returns the lines of `/proc/self/mountinfo` that name `path`.
fn mounts_under(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|line| line.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Returns the processes whose environment contains `marker` or whose
/// working directory or root lies under `path`.
fn processes_of(marker: &str, path: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let environ = fs::read(dir.join("environ")).unwrap_or_default();
        let marked = environ
            .split(|&byte| byte == 0)
            .any(|variable| variable == marker.as_bytes());
        let inside = ["cwd", "root"]
            .iter()
            .any(|link| fs::read_link(dir.join(link)).is_ok_and(|target| target.starts_with(path)));
        if marked || inside {
            found.push(pid);
        }
    }
    found
}

/// Asserts that no mount and no process of the sandbox is left, waiting a
/// little for processes that are still exiting.
fn assert_torn_down(workspace: &Workspace, marker: &str) {
    for path in [workspace.root(), workspace.tmp()] {
        let mounts = mounts_under(&path);
        assert!(mounts.is_empty(), "mounts left: {mounts:#?}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_of(marker, workspace.dir.path());
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sandbox processes left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let state: Vec<String> = fs::read_dir(workspace.tmp())
        .expect("TMPDIR")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(state.is_empty(), "sandbox state left in TMPDIR: {state:?}");
}

#[test]
fn failing_run_leaves_nothing() {
    let Some(workspace) = Workspace::new("failing_run_leaves_nothing") else {
        return;
    };
    let marker = format!("FORGE_TEST_MARKER={}", unique("fail"));
    workspace.write(
        "Dockerfile",
        &format!(
            "FROM busybox\nENV {marker}\n\
             RUN --mount=type=tmpfs,target=/scratch touch /scratch/x /made && exit 3\n"
        ),
    );
    let output = workspace.build(&[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("exit code 3"));
    assert_torn_down(&workspace, &marker);
}

#[test]
fn interrupted_build_leaves_nothing() {
    let Some(workspace) = Workspace::new("interrupted_build_leaves_nothing") else {
        return;
    };
    let marker = format!("FORGE_TEST_MARKER={}", unique("sigint"));
    workspace.write(
        "Dockerfile",
        &format!(
            "FROM busybox\nENV {marker}\n\
             RUN --mount=type=tmpfs,target=/scratch echo sandbox-started && sleep 30\n"
        ),
    );
    let mut child = workspace.spawn_build();
    let started = Instant::now();
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        match lines_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.trim() == "sandbox-started" => break,
            Ok(line) => seen.push(line),
            Err(error) => {
                let _ = child.kill();
                panic!("the step did not start ({error}):\n{}", seen.join("\n"));
            }
        }
    }
    // The detection finds the running step, so its absence later counts.
    let running = processes_of(&marker, workspace.dir.path());
    assert!(
        !running.is_empty(),
        "the running step was not found in /proc"
    );
    send_sigint(&child);

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("forge build did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "an interrupted build succeeded");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the step ran to its end"
    );
    assert_torn_down(&workspace, &marker);
}

/// Returns the hexadecimal mask of the `CapEff` lines that RUN steps
/// printed, in order.
fn printed_cap_eff(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|line| line.split_once("CapEff:"))
        .map(|(_, mask)| mask.trim().to_string())
        .collect()
}

#[test]
fn run_has_default_capabilities() {
    let Some(workspace) = Workspace::new("run_has_default_capabilities") else {
        return;
    };
    workspace.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN grep CapEff /proc/self/status\n\
         USER nobody\n\
         RUN grep CapEff /proc/self/status\n",
    );
    let stderr = succeeded(&workspace.build(&[]));
    let masks = printed_cap_eff(&stderr);
    assert_eq!(masks.len(), 2, "{stderr}");
    // Docker's 14 default capabilities for root, none for another user.
    assert_eq!(masks[0], "00000000a80425fb", "{stderr}");
    assert_eq!(masks[1], "0000000000000000", "{stderr}");
}

#[test]
fn insecure_run_needs_allow_flag() {
    let Some(workspace) = Workspace::new("insecure_run_needs_allow_flag") else {
        return;
    };
    workspace.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN --security=insecure grep CapEff /proc/self/status\n",
    );
    let refused = workspace.build(&[]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--allow security.insecure"), "{stderr}");
    assert!(printed_cap_eff(&stderr).is_empty(), "{stderr}");

    let status = fs::read_to_string("/proc/self/status").expect("own status");
    let bounding = status
        .lines()
        .find_map(|line| line.strip_prefix("CapBnd:"))
        .expect("CapBnd line")
        .trim()
        .to_string();
    let stderr = succeeded(&workspace.build(&["--allow", "security.insecure"]));
    assert_eq!(printed_cap_eff(&stderr), [bounding], "{stderr}");
}

#[test]
fn unknown_entitlement_is_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["build", "--allow", "security.everything", "."])
        .output()
        .expect("forge runs");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("security.everything"), "{stderr}");
    assert!(stderr.contains("security.insecure"), "{stderr}");
}

#[test]
fn run_cannot_open_host_devices() {
    let Some(workspace) = Workspace::new("run_cannot_open_host_devices") else {
        return;
    };
    let partitions = fs::read_to_string("/proc/partitions").unwrap_or_default();
    let Some((major, minor)) = partitions.lines().skip(2).find_map(|line| {
        let mut fields = line.split_whitespace();
        Some((fields.next()?.to_string(), fields.next()?.to_string()))
    }) else {
        return;
    };
    workspace.write(
        "Dockerfile",
        &format!(
            "FROM busybox\n\
             RUN mknod /tmp/hostdisk b {major} {minor} && echo made-node; \
             head -c1 /tmp/hostdisk > /dev/null && echo read-host-disk; \
             rm /tmp/hostdisk; \
             echo x > /dev/null && head -c1 /dev/zero > /dev/null && echo devices-work; \
             mkfifo /tmp/fifo && echo fifo-made && rm /tmp/fifo\n"
        ),
    );
    let stderr = succeeded(&workspace.build(&[]));
    // The step's own line echoes the script, so only whole lines count.
    let printed = |marker: &str| stderr.lines().any(|line| line.trim() == marker);
    assert!(printed("made-node"), "{stderr}");
    assert!(!printed("read-host-disk"), "{stderr}");
    // `nodev` rejects the open with EACCES; a device cgroup would say EPERM.
    assert!(
        stderr.contains("/tmp/hostdisk: Permission denied"),
        "{stderr}"
    );
    assert!(printed("devices-work"), "{stderr}");
    assert!(printed("fifo-made"), "{stderr}");
}

#[test]
fn init_cmdline_hides_store() {
    let Some(workspace) = Workspace::new("init_cmdline_hides_store") else {
        return;
    };
    workspace.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN echo \"init: $(tr '\\0' ' ' < /proc/1/cmdline)\"\n",
    );
    let stderr = succeeded(&workspace.build(&[]));
    let init = stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("init: "))
        .expect("the step printed the init's command line");
    assert_eq!(init.trim(), "forge-init", "{stderr}");
    let root = workspace.root().display().to_string();
    assert!(!init.contains(&root), "{init}");
    assert!(!init.contains(env!("CARGO_BIN_EXE_forge")), "{init}");
}

#[test]
fn run_upper_is_volatile_and_kept() {
    let Some(workspace) = Workspace::new("run_upper_is_volatile_and_kept") else {
        return;
    };
    // fsync in a RUN returns at once on a volatile overlay (Linux 5.10 and
    // later); the step's file still reaches its layer.
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel release");
    let mut numbers = release
        .trim()
        .split(['.', '-'])
        .map(|part| part.parse::<u32>());
    let volatile = matches!(
        (numbers.next(), numbers.next()),
        (Some(Ok(major)), Some(Ok(minor))) if (major, minor) >= (5, 10)
    );
    workspace.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN echo kept > /kept && sync && echo \"root: $(grep ' / ' /proc/self/mounts)\"\n\
         RUN test \"$(cat /kept)\" = kept\n",
    );
    let stderr = succeeded(&workspace.build(&[]));
    let root = stderr
        .lines()
        .find_map(|line| line.trim().strip_prefix("root: "))
        .expect("the step printed its root mount");
    assert!(root.starts_with("overlay / overlay"), "{root}");
    assert_eq!(root.contains("volatile"), volatile, "{root}");
}

#[test]
fn interrupted_layer_write_leaves_no_blob() {
    let Some(workspace) = Workspace::new("interrupted_layer_write_leaves_no_blob") else {
        return;
    };
    workspace.write(
        "Dockerfile",
        "FROM busybox\nRUN head -c 300000000 /dev/urandom > /big\n",
    );
    let mut child = workspace.spawn_build();

    // SIGINT as soon as the layer blob is being written.
    let tmp = workspace.root().join("forge/tmp");
    let temporary_blobs = || -> Vec<PathBuf> {
        fs::read_dir(&tmp)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| {
                        path.file_name()
                            .is_some_and(|name| name.to_string_lossy().starts_with("blob"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while temporary_blobs().is_empty() {
        if Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
            let _ = child.kill();
            panic!("the build wrote no layer blob to interrupt");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    send_sigint(&child);
    let output = child.wait_with_output().expect("forge build ends");
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("interrupted by signal 2"), "{stderr}");

    let left: Vec<PathBuf> = fs::read_dir(&tmp)
        .expect("forge/tmp")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    assert!(left.is_empty(), "left in forge/tmp: {left:?}");
    let check = workspace
        .forge()
        .args(["store", "check"])
        .output()
        .expect("forge store check runs");
    assert!(check.status.success(), "{}", text(&check.stdout));
}
