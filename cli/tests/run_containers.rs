//! Runs `forge run`, `ps`, `logs`, `stop`, `kill` and `rm` as root on a
//! busybox image made with `forge import`, each test with its own store.
//!
//! Tests run one at a time (a lock in this file), so each can check that
//! it left no mount under its store, no process and no cgroup behind.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{free_port, make_busybox_rootfs, text};

/// Serialises the tests, so the cgroup and process checks see only the
/// containers of the running test.
static SERIAL: Mutex<()> = Mutex::new(());

/// cgroup folders where forge puts containers on this kind of host.
const CGROUP_PARENTS: [&str; 5] = [
    "/sys/fs/cgroup/cpuset/forge",
    "/sys/fs/cgroup/cpu/forge",
    "/sys/fs/cgroup/memory/forge",
    "/sys/fs/cgroup/pids/forge",
    "/sys/fs/cgroup/unified/forge",
];

struct Workspace {
    dir: tempfile::TempDir,
    cgroups_before: BTreeSet<PathBuf>,
    _serial: MutexGuard<'static, ()>,
}

fn cgroup_dirs() -> BTreeSet<PathBuf> {
    CGROUP_PARENTS
        .iter()
        .filter_map(|parent| fs::read_dir(parent).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect()
}

impl Workspace {
    /// A store with `busybox:latest`; `None` when the test must be skipped.
    fn new(test: &str) -> Option<Workspace> {
        if !forge_testkit::require_root(test) || !forge_testkit::require_tool("busybox") {
            return None;
        }
        let serial = SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let workspace = Workspace {
            dir: tempfile::tempdir().expect("temporary folder"),
            cgroups_before: cgroup_dirs(),
            _serial: serial,
        };
        let rootfs = workspace.dir.path().join("busybox.tar");
        make_busybox_rootfs(&rootfs);
        workspace.forge_ok(&["import", &rootfs.to_string_lossy(), "busybox"]);
        Some(workspace)
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
        command.arg("--root").arg(self.root());
        command
    }

    fn forge(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("forge runs")
    }

    /// Runs forge and fails the test when it fails.
    fn forge_ok(&self, args: &[&str]) -> Output {
        let output = self.forge(args);
        assert!(output.status.success(), "{}", text(&output.stderr));
        output
    }

    /// Runs `forge run ARGS` with the test's marker variable, so leftover
    /// container processes can be found by their environment.
    fn run(&self, args: &[&str]) -> Output {
        let marker = self.marker();
        let mut all = vec!["run", "-e", &marker];
        all.extend_from_slice(args);
        self.forge(&all)
    }

    /// Runs `forge run ARGS` like [`Workspace::run`] and fails the test
    /// when it fails.
    fn run_ok(&self, args: &[&str]) -> Output {
        let output = self.run(args);
        assert!(output.status.success(), "{}", text(&output.stderr));
        output
    }

    fn marker(&self) -> String {
        format!("FORGE_RUN_TEST={}", self.root().display())
    }

    fn containers_dir(&self) -> PathBuf {
        self.root().join("forge").join("containers")
    }

    fn record(&self, id: &str) -> serde_json::Value {
        let path = self.containers_dir().join(id).join("state.json");
        serde_json::from_slice(&fs::read(path).expect("state.json")).expect("state JSON")
    }

    /// Processes that belong to this test: container processes with the
    /// marker in their environment and supervisors naming the store.
    fn leftover_processes(&self) -> Vec<String> {
        let marker = self.marker();
        let root = self.root().display().to_string();
        let me = std::process::id().to_string();
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").expect("/proc").filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
                continue;
            }
            let environ = fs::read(entry.path().join("environ")).unwrap_or_default();
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            if zombie {
                continue;
            }
            if text(&environ).contains(&marker) || text(&cmdline).contains(&root) {
                found.push(format!("{name}: {}", text(&cmdline).replace('\0', " ")));
            }
        }
        found
    }

    fn mounts_under_store(&self) -> Vec<String> {
        let root = self.root().display().to_string();
        fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .filter(|line| line.contains(&root))
            .map(str::to_string)
            .collect()
    }

    /// Checks that the test left nothing running or mounted, waiting a
    /// little for processes that are being reaped.
    fn finish(self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut processes = self.leftover_processes();
        while !processes.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            processes = self.leftover_processes();
        }
        assert!(processes.is_empty(), "processes left: {processes:?}");
        let mounts = self.mounts_under_store();
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        let cgroups: Vec<PathBuf> = cgroup_dirs()
            .difference(&self.cgroups_before)
            .cloned()
            .collect();
        assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    }
}

impl Drop for Workspace {
    /// Removes the test's containers even when an assertion failed, so a
    /// failing test leaves no process behind.
    fn drop(&mut self) {
        let listed = self.forge(&["ps", "-aq", "--no-trunc"]);
        for id in text(&listed.stdout).lines() {
            let _ = self.forge(&["rm", "-f", id]);
        }
    }
}

/// Fetches `path` over HTTP/1.0 from `127.0.0.1:port`, retrying while the
/// server starts; returns the whole response.
fn http_get(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        });
        match response {
            Ok(response) if !response.is_empty() => return response,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("no HTTP response on port {port}: {other:?}"),
        }
    }
}

fn detached_id(output: &Output) -> String {
    assert!(output.status.success(), "{}", text(&output.stderr));
    let id = text(&output.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    id
}

#[test]
fn exit_codes_pass_through() {
    let Some(workspace) = Workspace::new("exit_codes_pass_through") else {
        return;
    };
    let output = workspace.run(&[
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(output.status.code(), Some(7));
    assert_eq!(text(&output.stdout), "out\n");
    assert_eq!(text(&output.stderr), "err\n");

    let output = workspace.run(&["--rm", "busybox", "no-such-program"]);
    assert_eq!(output.status.code(), Some(127), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("no-such-program"));

    let output = workspace.run(&["--rm", "busybox", "/etc/passwd"]);
    assert_eq!(output.status.code(), Some(126), "{}", text(&output.stderr));

    let output = workspace.run(&["--rm", "no-such-image"]);
    assert_eq!(output.status.code(), Some(125));
    assert!(text(&output.stderr).contains("no-such-image"));
    workspace.finish();
}

#[test]
fn options_override_the_image() {
    let Some(workspace) = Workspace::new("options_override_the_image") else {
        return;
    };
    let env_file = workspace.dir.path().join("env");
    fs::write(&env_file, "# comment\nFROM_FILE=yes\n").expect("env file");
    let output = workspace.run_ok(&[
        "--rm",
        "-e",
        "GREETING=hello world",
        "--env-file",
        &env_file.to_string_lossy(),
        "-w",
        "/tmp/work",
        "-u",
        "nobody",
        "--hostname",
        "box1",
        "busybox",
        "sh",
        "-c",
        "echo $GREETING; echo $FROM_FILE; pwd; id -un; hostname",
    ]);
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["hello world", "yes", "/tmp/work", "nobody", "box1"]);

    let output = workspace.run(&["--rm", "--entrypoint", "echo", "busybox", "a", "b"]);
    assert_eq!(text(&output.stdout), "a b\n");
    workspace.finish();
}

#[test]
fn image_config_is_honoured() {
    let Some(workspace) = Workspace::new("image_config_is_honoured") else {
        return;
    };
    build_image(
        &workspace,
        "configured",
        "FROM busybox\nENV COLOR=blue\nWORKDIR /srv\nUSER nobody\n\
         ENTRYPOINT [\"sh\", \"-c\"]\nCMD [\"echo $COLOR; pwd; id -un\"]\n",
    );

    let output = workspace.run_ok(&["--rm", "configured"]);
    assert_eq!(text(&output.stdout), "blue\n/srv\nnobody\n");

    // Arguments replace CMD but keep ENTRYPOINT.
    let output = workspace.run(&["--rm", "configured", "echo replaced"]);
    assert_eq!(text(&output.stdout), "replaced\n");
    workspace.finish();
}

#[test]
fn volumes_bind_host_folders() {
    let Some(workspace) = Workspace::new("volumes_bind_host_folders") else {
        return;
    };
    let shared = workspace.dir.path().join("shared");
    fs::create_dir(&shared).expect("shared folder");
    let bind = format!("{}:/data", shared.display());
    workspace.run_ok(&[
        "--rm",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "echo written > /data/out.txt",
    ]);
    assert_eq!(
        fs::read_to_string(shared.join("out.txt")).expect("file from the container"),
        "written\n"
    );

    let read_only = format!("{}:/data:ro", shared.display());
    let output = workspace.run(&[
        "--rm",
        "-v",
        &read_only,
        "busybox",
        "sh",
        "-c",
        "cat /data/out.txt; echo x > /data/new.txt",
    ]);
    assert_eq!(text(&output.stdout), "written\n");
    assert_ne!(output.status.code(), Some(0));
    assert!(!shared.join("new.txt").exists());

    workspace.run_ok(&[
        "--rm",
        "-v",
        "keep:/keep",
        "busybox",
        "sh",
        "-c",
        "echo 1 > /keep/n",
    ]);
    let again = workspace.run(&["--rm", "-v", "keep:/keep", "busybox", "cat", "/keep/n"]);
    assert_eq!(text(&again.stdout), "1\n");
    workspace.finish();
}

#[test]
fn detached_container_lifecycle() {
    let Some(workspace) = Workspace::new("detached_container_lifecycle") else {
        return;
    };
    let output = workspace.run(&[
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "echo started; trap 'echo bye; exit 3' TERM; while true; do sleep 0.1; done",
    ]);
    let id = detached_id(&output);

    let ps = text(&workspace.forge(&["ps"]).stdout);
    let row = ps
        .lines()
        .find(|line| line.contains("ticker"))
        .expect("ps lists the container");
    assert!(row.starts_with(&id[..12]), "{row}");
    assert!(row.contains("Up "), "{row}");

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut logs = String::new();
    while !logs.contains("started") && Instant::now() < deadline {
        logs = text(&workspace.forge(&["logs", "ticker"]).stdout);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(logs, "started\n");

    let stopped = workspace.forge_ok(&["stop", "-t", "5", "ticker"]);
    assert_eq!(text(&stopped.stdout), "ticker\n");
    assert!(
        text(&workspace.forge(&["ps"]).stdout)
            .lines()
            .all(|l| !l.contains("ticker"))
    );
    let all = text(&workspace.forge(&["ps", "-a"]).stdout);
    let row = all
        .lines()
        .find(|line| line.contains("ticker"))
        .expect("ps -a lists it");
    assert!(row.contains("Exited (3)"), "{row}");
    assert_eq!(
        text(&workspace.forge(&["logs", "ticker"]).stdout),
        "started\nbye\n"
    );

    workspace.forge_ok(&["rm", "ticker"]);
    assert!(!workspace.containers_dir().join(&id).exists());
    workspace.finish();
}

#[test]
fn kill_and_forced_remove() {
    let Some(workspace) = Workspace::new("kill_and_forced_remove") else {
        return;
    };
    let id = detached_id(&workspace.run(&["-d", "--name", "sleeper", "busybox", "sleep", "60"]));
    let refused = workspace.forge(&["rm", "sleeper"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("is running"),
        "{}",
        text(&refused.stderr)
    );

    workspace.forge_ok(&["kill", "-s", "USR1", "sleeper"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while workspace.record(&id)["status"] == "running" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(workspace.record(&id)["exit_code"], 128 + 10);

    let second = detached_id(&workspace.run(&["-d", "busybox", "sleep", "60"]));
    workspace.forge_ok(&["rm", "-f", &second[..12]]);
    assert!(!workspace.containers_dir().join(&second).exists());
    assert!(workspace.forge(&["rm", "sleeper"]).status.success());
    workspace.finish();
}

#[test]
fn auto_remove_leaves_nothing() {
    let Some(workspace) = Workspace::new("auto_remove_leaves_nothing") else {
        return;
    };
    workspace.run_ok(&["--rm", "--name", "brief", "busybox", "true"]);
    let left: Vec<_> = fs::read_dir(workspace.containers_dir())
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    let detached = workspace.run(&["-d", "--rm", "busybox", "sleep", "0.2"]);
    let id = detached_id(&detached);
    let deadline = Instant::now() + Duration::from_secs(5);
    while workspace.containers_dir().join(&id).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!workspace.containers_dir().join(&id).exists());
    workspace.finish();
}

#[test]
fn killed_supervisor_shows_exited() {
    let Some(workspace) = Workspace::new("killed_supervisor_shows_exited") else {
        return;
    };
    let id = detached_id(&workspace.run(&[
        "-d", "--name", "orphan", "--memory", "64m", "busybox", "sleep", "60",
    ]));
    let supervisor = workspace.record(&id)["supervisor"]["pid"]
        .as_i64()
        .expect("supervisor pid");
    let killed = Command::new("kill")
        .args(["-KILL", &supervisor.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut row = String::new();
    while !row.contains("Exited") && Instant::now() < deadline {
        let all = text(&workspace.forge(&["ps", "-a"]).stdout);
        row = all
            .lines()
            .find(|l| l.contains("orphan"))
            .unwrap_or_default()
            .to_string();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(row.contains("Exited (137)"), "{row}");

    workspace.forge_ok(&["rm", "orphan"]);
    assert!(!workspace.containers_dir().join(&id).exists());
    workspace.finish();
}

#[test]
fn published_ports_serve_http() {
    let Some(workspace) = Workspace::new("published_ports_serve_http") else {
        return;
    };
    let mut ids = Vec::new();
    let mut ports = Vec::new();
    for page in ["first", "second"] {
        let site = workspace.dir.path().join(page);
        fs::create_dir(&site).expect("site folder");
        fs::write(site.join("index.html"), format!("page {page}\n")).expect("page");
        let port = free_port();
        let mapping = format!("{port}:8000");
        let volume = format!("{}:/www:ro", site.display());
        ids.push(detached_id(&workspace.run(&[
            "-d", "-p", &mapping, "-v", &volume, "busybox", "httpd", "-f", "-p", "8000", "-h",
            "/www",
        ])));
        ports.push(port);
    }
    for (port, page) in ports.iter().zip(["first", "second"]) {
        let response = http_get(*port, "/index.html");
        assert!(response.starts_with("HTTP/1."), "{response}");
        assert!(response.contains(" 200 "), "{response}");
        assert!(response.ends_with(&format!("page {page}\n")), "{response}");
    }
    let ps = text(&workspace.forge(&["ps"]).stdout);
    assert!(
        ps.contains(&format!("127.0.0.1:{}->8000/tcp", ports[0])),
        "{ps}"
    );

    for id in &ids {
        workspace.forge_ok(&["rm", "-f", id]);
    }
    assert!(TcpStream::connect(("127.0.0.1", ports[0])).is_err());
    workspace.finish();
}

#[test]
fn cpuset_limits_cpus() {
    let Some(workspace) = Workspace::new("cpuset_limits_cpus") else {
        return;
    };
    let output = workspace.run_ok(&["--rm", "--cpuset-cpus", "0", "busybox", "nproc"]);
    assert_eq!(text(&output.stdout), "1\n");
    workspace.finish();
}

#[test]
fn memory_limit_in_cgroup() {
    let Some(workspace) = Workspace::new("memory_limit_in_cgroup") else {
        return;
    };
    let id = detached_id(&workspace.run(&[
        "-d",
        "--memory",
        "64m",
        "--pids-limit",
        "40",
        "busybox",
        "sleep",
        "60",
    ]));
    let record = workspace.record(&id);
    let cgroups: Vec<PathBuf> = record["cgroups"]
        .as_array()
        .expect("cgroup list")
        .iter()
        .filter_map(|path| path.as_str().map(PathBuf::from))
        .collect();
    let memory = cgroups
        .iter()
        .find_map(|dir| {
            fs::read_to_string(dir.join("memory.limit_in_bytes"))
                .or_else(|_| fs::read_to_string(dir.join("memory.max")))
                .ok()
        })
        .expect("a memory cgroup");
    assert_eq!(memory.trim(), (64u64 << 20).to_string());
    let pids = cgroups
        .iter()
        .find_map(|dir| fs::read_to_string(dir.join("pids.max")).ok())
        .expect("a pids cgroup");
    assert_eq!(pids.trim(), "40");

    assert!(workspace.forge(&["rm", "-f", &id]).status.success());
    for dir in &cgroups {
        assert!(!dir.exists(), "{}", dir.display());
    }
    workspace.finish();
}

/// Builds `name` from a Dockerfile on the busybox image.
fn build_image(workspace: &Workspace, name: &str, dockerfile: &str) {
    let context = workspace.dir.path().join(format!("context-{name}"));
    fs::create_dir(&context).expect("context");
    fs::write(context.join("Dockerfile"), dockerfile).expect("Dockerfile");
    workspace.forge_ok(&["build", "-q", "-t", name, &context.to_string_lossy()]);
}

#[test]
fn stop_sends_image_stopsignal() {
    let Some(workspace) = Workspace::new("stop_sends_image_stopsignal") else {
        return;
    };
    build_image(
        &workspace,
        "usr1",
        "FROM busybox\nSTOPSIGNAL SIGUSR1\n\
         CMD [\"sh\", \"-c\", \"trap 'exit 42' USR1; while true; do sleep 0.1; done\"]\n",
    );
    let id = detached_id(&workspace.run(&["-d", "usr1"]));
    workspace.forge_ok(&["stop", "-t", "5", &id]);
    assert_eq!(workspace.record(&id)["exit_code"], 42);
    assert!(workspace.forge(&["rm", &id]).status.success());
    workspace.finish();
}

#[test]
fn publish_all_maps_exposed_ports() {
    let Some(workspace) = Workspace::new("publish_all_maps_exposed_ports") else {
        return;
    };
    build_image(
        &workspace,
        "web",
        "FROM busybox\nEXPOSE 8000\nRUN mkdir /www && echo exposed > /www/index.html\n\
         CMD [\"httpd\", \"-f\", \"-p\", \"8000\", \"-h\", \"/www\"]\n",
    );
    let id = detached_id(&workspace.run(&["-d", "-P", "web"]));
    let ports = &workspace.record(&id)["ports"];
    assert_eq!(ports.as_array().map(Vec::len), Some(1), "{ports}");
    assert_eq!(ports[0]["host_ip"], "127.0.0.1");
    assert_eq!(ports[0]["container_port"], 8000);
    let host_port = ports[0]["host_port"].as_u64().expect("host port");
    assert_ne!(host_port, 0);
    let response = http_get(u16::try_from(host_port).expect("port"), "/index.html");
    assert!(response.ends_with("exposed\n"), "{response}");
    assert!(workspace.forge(&["rm", "-f", &id]).status.success());
    workspace.finish();
}

#[test]
fn cpu_quota_in_cgroup() {
    let Some(workspace) = Workspace::new("cpu_quota_in_cgroup") else {
        return;
    };
    let id = detached_id(&workspace.run(&["-d", "--cpus", "0.5", "busybox", "sleep", "60"]));
    let cgroups = workspace.record(&id)["cgroups"].clone();
    let quota = cgroups
        .as_array()
        .expect("cgroup list")
        .iter()
        .filter_map(|path| path.as_str().map(PathBuf::from))
        .find_map(|dir| {
            fs::read_to_string(dir.join("cpu.cfs_quota_us"))
                .or_else(|_| fs::read_to_string(dir.join("cpu.max")))
                .ok()
        })
        .expect("a cpu cgroup");
    assert!(quota.trim().starts_with("50000"), "{quota}");
    assert!(workspace.forge(&["rm", "-f", &id]).status.success());
    workspace.finish();
}

/// Runs the shell command `inner` with `script`, which gives it a
/// terminal of its own.
fn run_in_terminal(inner: &str) -> Output {
    Command::new("script")
        .args(["-qec", inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script runs")
}

#[test]
fn tty_gives_a_terminal() {
    let Some(workspace) = Workspace::new("tty_gives_a_terminal") else {
        return;
    };
    if !forge_testkit::require_tool("script") {
        return;
    }
    // `script` gives forge a terminal of its own with a known size.
    let inner = format!(
        "stty rows 33 cols 111; {} --root {} run --rm -t -e {} busybox sh -c 'tty; stty size; exit 4'",
        env!("CARGO_BIN_EXE_forge"),
        workspace.root().display(),
        workspace.marker(),
    );
    let output = run_in_terminal(&inner);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(4), "{stdout}");
    assert!(stdout.contains("/dev/pts/0"), "{stdout}");
    assert!(stdout.contains("33 111"), "{stdout}");
    workspace.finish();
}

#[test]
fn tty_is_container_pts_zero() {
    let Some(workspace) = Workspace::new("tty_is_container_pts_zero") else {
        return;
    };
    // As with docker, the terminal comes from the container's own devpts,
    // also without a terminal around forge. The terminal turns "\n" into
    // "\r\n".
    let output = workspace.run_ok(&["--rm", "-t", "busybox", "tty"]);
    assert_eq!(text(&output.stdout), "/dev/pts/0\r\n");

    // /dev/console is the same terminal, so writes to it reach the output.
    let output = workspace.run_ok(&[
        "--rm",
        "-t",
        "busybox",
        "sh",
        "-c",
        "[ /dev/console -ef /dev/pts/0 ] && echo same; echo console >/dev/console; \
         stat -c '%u %g' /dev/pts/0",
    ]);
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().map(str::trim_end).collect();
    assert_eq!(lines, ["same", "console", "0 5"], "{stdout}");

    // Another user owns its terminal, and the group stays tty (gid 5).
    let output = workspace.run_ok(&[
        "--rm",
        "-t",
        "-u",
        "1000",
        "busybox",
        "sh",
        "-c",
        "tty; stat -c '%u %g' /dev/pts/0",
    ]);
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().map(str::trim_end).collect();
    assert_eq!(lines, ["/dev/pts/0", "1000 5"], "{stdout}");

    // Without -t the command has no terminal.
    let output = workspace.run(&["--rm", "busybox", "tty"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "not a tty\n");

    // A detached container logs what its terminal received.
    let id = detached_id(&workspace.run(&["-d", "-t", "busybox", "tty"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while workspace.record(&id)["status"] != "exited" {
        assert!(Instant::now() < deadline, "{}", workspace.record(&id));
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = workspace.forge_ok(&["logs", &id]);
    assert_eq!(text(&logs.stdout), "/dev/pts/0\r\n");
    workspace.forge_ok(&["rm", &id]);
    workspace.finish();
}

#[test]
fn tty_lists_container_pts() {
    let Some(workspace) = Workspace::new("tty_lists_container_pts") else {
        return;
    };
    // The container's devpts contains its terminal and ptmx, and none of
    // the host's terminals.
    let output = workspace.run_ok(&["--rm", "-t", "busybox", "ls", "/dev/pts"]);
    let stdout = text(&output.stdout);
    let names: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(names, ["0", "ptmx"], "{stdout:?}");

    let output = workspace.run_ok(&["--rm", "busybox", "ls", "/dev/pts"]);
    assert_eq!(text(&output.stdout), "ptmx\n");
    workspace.finish();
}

#[test]
fn tty_follows_window_size() {
    let Some(workspace) = Workspace::new("tty_follows_window_size") else {
        return;
    };
    if !forge_testkit::require_tool("script") {
        return;
    }
    // The container prints its terminal's size when SIGWINCH reaches it.
    // It creates /sync/ready once the trap is set, and the outer shell
    // waits for that file.
    let sync = workspace.dir.path().join("sync");
    fs::create_dir(&sync).expect("sync folder");
    fs::write(
        sync.join("winch.sh"),
        "trap 'echo \"winch $(stty size)\"; exit 5' WINCH\n\
         echo \"start $(stty size)\"\n\
         touch /sync/ready\n\
         i=0\n\
         while [ \"$i\" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done\n\
         exit 9\n",
    )
    .expect("container script");

    // `script` gives the shell a terminal of its own. `stty rows` on it
    // makes the kernel send SIGWINCH to forge, which is in the terminal's
    // foreground process group. The explicit `kill -WINCH` covers a shell
    // that puts background jobs in their own group.
    let inner = format!(
        "stty rows 33 cols 111\n\
         {forge} --root {root} run --rm -it -e {marker} -v {sync}:/sync busybox sh /sync/winch.sh \
         </dev/tty &\n\
         pid=$!\n\
         i=0\n\
         while [ ! -e {sync}/ready ] && [ \"$i\" -lt 600 ]; do sleep 0.1; i=$((i + 1)); done\n\
         stty rows 50 cols 132\n\
         kill -WINCH $pid\n\
         wait $pid\n",
        forge = env!("CARGO_BIN_EXE_forge"),
        root = workspace.root().display(),
        marker = workspace.marker(),
        sync = sync.display(),
    );
    let output = run_in_terminal(&inner);

    let stdout = text(&output.stdout);
    assert!(
        sync.join("ready").exists(),
        "the container did not start: {stdout}"
    );
    assert!(stdout.contains("start 33 111"), "{stdout}");
    assert!(stdout.contains("winch 50 132"), "{stdout}");
    assert_eq!(output.status.code(), Some(5), "{stdout}");
    workspace.finish();
}

/// Builds `seeded`: an image with files, a symlink out of /data and
/// several owners and modes under its volume /data.
fn build_seeded_image(workspace: &Workspace) {
    build_image(
        workspace,
        "seeded",
        "FROM busybox\n\
         RUN mkdir -p /data/sub && echo seeded > /data/file && chmod 640 /data/file \
         && echo deep > /data/sub/deep && chown 1000:1000 /data/sub \
         && ln -s file /data/link && ln -s /etc/hostname /data/abs && chmod 750 /data\n\
         VOLUME /data\n",
    );
}

#[test]
fn volumes_seeded_from_image() {
    let Some(workspace) = Workspace::new("volumes_seeded_from_image") else {
        return;
    };
    build_seeded_image(&workspace);

    // The anonymous volume of VOLUME /data gets the image's files.
    let output = workspace.run_ok(&[
        "--name",
        "anonymous",
        "seeded",
        "sh",
        "-c",
        "cat /data/file /data/sub/deep; stat -c '%n %a %u:%g' /data /data/file /data/sub; \
         readlink /data/link; readlink /data/abs",
    ]);
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "seeded",
            "deep",
            "/data 750 0:0",
            "/data/file 640 0:0",
            "/data/sub 755 1000:1000",
            "file",
            "/etc/hostname",
        ]
    );
    let listed = workspace.forge(&["ps", "-aq", "--no-trunc"]);
    let id = text(&listed.stdout).trim().to_string();
    let anonymous = workspace.containers_dir().join(&id).join("volumes/0");
    let abs = fs::symlink_metadata(anonymous.join("abs")).expect("symlink in the volume");
    assert!(abs.file_type().is_symlink());
    assert!(workspace.forge(&["rm", &id]).status.success());

    // A new named volume is seeded once; later runs keep its content.
    let output = workspace.run_ok(&[
        "--rm",
        "-v",
        "named:/data",
        "seeded",
        "sh",
        "-c",
        "cat /data/file; echo changed > /data/file; echo new > /data/new",
    ]);
    assert_eq!(text(&output.stdout), "seeded\n");
    let named = workspace.root().join("forge/volumes/named");
    assert_eq!(
        fs::read_to_string(named.join("file")).expect("file in the volume"),
        "changed\n"
    );
    let output = workspace.run_ok(&[
        "--rm",
        "-v",
        "named:/data",
        "seeded",
        "sh",
        "-c",
        "cat /data/file /data/new; ls /data",
    ]);
    assert_eq!(
        text(&output.stdout),
        "changed\nnew\nabs\nfile\nlink\nnew\nsub\n"
    );

    // A named volume that already has content is not seeded.
    workspace.run_ok(&[
        "--rm",
        "-v",
        "prefilled:/data",
        "busybox",
        "sh",
        "-c",
        "echo mine > /data/own",
    ]);
    let output = workspace.run_ok(&["--rm", "-v", "prefilled:/data", "seeded", "ls", "/data"]);
    assert_eq!(text(&output.stdout), "own\n");
    workspace.finish();
}

#[test]
fn volume_seeding_skipped() {
    let Some(workspace) = Workspace::new("volume_seeding_skipped") else {
        return;
    };
    build_seeded_image(&workspace);

    // `nocopy` leaves a new named volume empty.
    let output = workspace.run_ok(&[
        "--rm",
        "-v",
        "empty:/data:nocopy",
        "seeded",
        "ls",
        "-A",
        "/data",
    ]);
    assert_eq!(text(&output.stdout), "");
    let empty = workspace.root().join("forge/volumes/empty");
    assert_eq!(fs::read_dir(&empty).expect("volume folder").count(), 0);

    // A host folder is never seeded.
    let host = workspace.dir.path().join("host");
    fs::create_dir(&host).expect("host folder");
    let bind = format!("{}:/data", host.display());
    let output = workspace.run_ok(&["--rm", "-v", &bind, "seeded", "ls", "-A", "/data"]);
    assert_eq!(text(&output.stdout), "");
    assert_eq!(fs::read_dir(&host).expect("host folder").count(), 0);

    // `nocopy` on a host folder is an error that names the value.
    let bind_nocopy = format!("{}:/data:nocopy", host.display());
    let output = workspace.run(&["--rm", "-v", &bind_nocopy, "seeded", "true"]);
    assert_eq!(output.status.code(), Some(125));
    assert!(
        text(&output.stderr).contains(&bind_nocopy),
        "{}",
        text(&output.stderr)
    );
    workspace.finish();
}

#[test]
fn anonymous_volume_from_flag() {
    let Some(workspace) = Workspace::new("anonymous_volume_from_flag") else {
        return;
    };
    build_seeded_image(&workspace);

    // `-v /PATH` alone makes a volume of this container, seeded from the
    // image like the anonymous volume of a VOLUME instruction.
    let output = workspace.run_ok(&[
        "--name",
        "flagged",
        "-v",
        "/etc/ssl-test",
        "-v",
        "/data",
        "seeded",
        "sh",
        "-c",
        "echo kept > /etc/ssl-test/f; cat /data/file; mount | grep -c ' /etc/ssl-test '",
    ]);
    assert_eq!(text(&output.stdout), "seeded\n1\n");
    let listed = workspace.forge(&["ps", "-aq", "--no-trunc"]);
    let id = text(&listed.stdout).trim().to_string();
    let volume = workspace.containers_dir().join(&id).join("volumes/v0");
    assert_eq!(
        fs::read_to_string(volume.join("f")).expect("file in the anonymous volume"),
        "kept\n"
    );

    // Removing the container removes its anonymous volumes.
    assert!(workspace.forge(&["rm", &id]).status.success());
    assert!(!volume.exists(), "{} is left behind", volume.display());
    workspace.finish();
}

/// Starts `forge run ARGS` with the test's marker variable and piped
/// output, without waiting for it.
fn spawn_run(workspace: &Workspace, args: &[&str]) -> Child {
    let marker = workspace.marker();
    let mut all = vec!["run", "-e", &marker];
    all.extend_from_slice(args);
    workspace
        .command()
        .args(&all)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("forge run starts")
}

/// Waits until `forge ps` lists the running container `name`.
fn wait_running(workspace: &Workspace, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ps = text(&workspace.forge(&["ps"]).stdout);
        if ps.lines().any(|line| line.ends_with(name)) {
            return;
        }
        assert!(Instant::now() < deadline, "`{name}` did not start: {ps}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stop_foreground_auto_removed() {
    let Some(workspace) = Workspace::new("stop_foreground_auto_removed") else {
        return;
    };
    // Without -i the shell waits on its terminal and ignores SIGTERM, so
    // `stop` ends it with SIGKILL after the timeout. `--rm` removes the
    // container before `stop` reads the exit from its record.
    let mut run = spawn_run(&workspace, &["--rm", "-t", "--name", "fg", "busybox", "sh"]);
    run.stdin
        .take()
        .expect("stdin")
        .write_all(b"echo hi\n")
        .expect("write stdin");
    wait_running(&workspace, "fg");

    let stopped = workspace.forge(&["stop", "-t", "1", "fg"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped.stderr));
    assert_eq!(text(&stopped.stdout), "fg\n");
    assert_eq!(text(&stopped.stderr), "");

    let output = run.wait_with_output().expect("forge run ends");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(137), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    let left: Vec<_> = fs::read_dir(workspace.containers_dir())
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    workspace.finish();
}

#[test]
fn stop_foreground_without_tty() {
    let Some(workspace) = Workspace::new("stop_foreground_without_tty") else {
        return;
    };
    // `sleep` is not PID 1 in the container, so SIGTERM ends it: 128 + 15.
    let run = spawn_run(
        &workspace,
        &["--rm", "--name", "plain", "busybox", "sleep", "60"],
    );
    wait_running(&workspace, "plain");
    let stopped = workspace.forge(&["stop", "-t", "5", "plain"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped.stderr));
    assert_eq!(text(&stopped.stdout), "plain\n");
    let output = run.wait_with_output().expect("forge run ends");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(143), "{stderr}");
    assert_eq!(stderr, "");

    // `kill` sends SIGKILL and waits for the exit, which `--rm` removes.
    let run = spawn_run(
        &workspace,
        &["--rm", "--name", "killed", "busybox", "sleep", "60"],
    );
    wait_running(&workspace, "killed");
    let killed = workspace.forge(&["kill", "killed"]);
    assert_eq!(killed.status.code(), Some(0), "{}", text(&killed.stderr));
    assert_eq!(text(&killed.stdout), "killed\n");
    let output = run.wait_with_output().expect("forge run ends");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(137), "{stderr}");
    assert_eq!(stderr, "");
    workspace.finish();
}

#[test]
fn stop_foreground_keeps_record() {
    let Some(workspace) = Workspace::new("stop_foreground_keeps_record") else {
        return;
    };
    let mut run = spawn_run(&workspace, &["-t", "--name", "kept", "busybox", "sh"]);
    drop(run.stdin.take());
    wait_running(&workspace, "kept");

    let stopped = workspace.forge(&["stop", "-t", "1", "kept"]);
    assert_eq!(stopped.status.code(), Some(0), "{}", text(&stopped.stderr));
    assert_eq!(text(&stopped.stdout), "kept\n");
    let output = run.wait_with_output().expect("forge run ends");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(137), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");

    let listed = workspace.forge(&["ps", "-aq", "--no-trunc"]);
    let id = text(&listed.stdout).trim().to_string();
    let record = workspace.record(&id);
    assert_eq!(record["status"], "exited");
    assert_eq!(record["exit_code"], 137);
    assert_eq!(record["error"], serde_json::Value::Null);
    assert!(workspace.forge(&["rm", "kept"]).status.success());
    workspace.finish();
}

#[test]
fn tty_sets_term() {
    let Some(workspace) = Workspace::new("tty_sets_term") else {
        return;
    };
    let show = ["busybox", "sh", "-c", "echo \"[$TERM]\""];
    let cases: [(&[&str], &str); 3] = [
        (&["--rm", "-t"], "[xterm]"),
        (&["--rm", "-t", "-e", "TERM=vt100"], "[vt100]"),
        (&["--rm"], "[]"),
    ];
    for (options, expected) in cases {
        let args: Vec<&str> = options.iter().chain(show.iter()).copied().collect();
        let output = workspace.run_ok(&args);
        let stdout = text(&output.stdout);
        assert_eq!(stdout.trim_end(), expected, "{args:?}");
    }

    build_image(&workspace, "dumb", "FROM busybox\nENV TERM=dumb\n");
    let output = workspace.run_ok(&["--rm", "-t", "dumb", "sh", "-c", "echo \"[$TERM]\""]);
    assert_eq!(text(&output.stdout).trim_end(), "[dumb]");
    workspace.finish();
}

#[test]
fn tty_zero_size_like_outer() {
    let Some(workspace) = Workspace::new("tty_zero_size_like_outer") else {
        return;
    };
    if !forge_testkit::require_tool("script") {
        return;
    }
    // With its input not a terminal, `script` opens a terminal of 0x0, on
    // which busybox `stty size` fails. The container's terminal keeps the
    // size 0x0 too, so `stty size` fails the same way inside, and works
    // once the container sets a size. The test leaves out -i because with
    // it the output starts with `^@`: `script` ends its own input with an
    // end-of-file character, which reaches the container's terminal.
    let outer = run_in_terminal("busybox stty size");

    let inner = format!(
        "{} --root {} run --rm -t -e {} busybox sh -c \
         'stty size; stty rows 4 cols 9; stty size; exit 6'",
        env!("CARGO_BIN_EXE_forge"),
        workspace.root().display(),
        workspace.marker(),
    );
    let output = run_in_terminal(&inner);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(6), "{stdout}");

    let lines: Vec<&str> = stdout.lines().map(str::trim_end).collect();
    assert_eq!(
        lines.first().copied(),
        Some(text(&outer.stdout).trim_end()),
        "{stdout}"
    );
    assert_eq!(lines.get(1).copied(), Some("4 9"), "{stdout}");
    workspace.finish();
}

#[test]
fn piped_input_with_tty_is_rejected() {
    let Some(workspace) = Workspace::new("piped_input_with_tty_is_rejected") else {
        return;
    };
    // Standard input is /dev/null, not a terminal: -i -t stops before a
    // container exists, while -t alone and -i alone still run.
    let rejected = workspace.forge(&["run", "--rm", "-i", "-t", "busybox", "cat"]);
    assert!(!rejected.status.success());
    assert!(
        text(&rejected.stderr).contains("the input device is not a terminal"),
        "{}",
        text(&rejected.stderr)
    );
    let left: Vec<_> = fs::read_dir(workspace.containers_dir())
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    workspace.run_ok(&["--rm", "-i", "busybox", "cat"]);
    workspace.finish();
}
