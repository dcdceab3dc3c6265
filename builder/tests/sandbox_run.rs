//! RUN sandbox tests over a busybox root (run as root; the rootless case
//! re-runs this binary as an ordinary user).

// The helper tests report to their parent test through standard output.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use forge_builder::sandbox::{
    Network, OutputSink, RunMount, RunMountKind, RunOutcome, RunSpec, SandboxError, SecretData, run,
};

/// Collects output in memory.
#[derive(Default)]
struct Collect {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    echo: bool,
}

impl OutputSink for Collect {
    fn stdout(&mut self, bytes: &[u8]) {
        self.stdout.extend_from_slice(bytes);
        if self.echo {
            use std::io::Write;
            let mut out = std::io::stdout();
            let _ = out.write_all(bytes);
            let _ = out.flush();
        }
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.stderr.extend_from_slice(bytes);
    }
}

impl Collect {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Writes the busybox tar with the test data script.
fn busybox_tar(dir: &Path) -> PathBuf {
    let tar = dir.join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/busybox-rootfs.sh");
    let status = Command::new("bash")
        .arg(&script)
        .arg(&tar)
        .status()
        .unwrap();
    assert!(status.success(), "busybox-rootfs.sh failed: {status}");
    tar
}

fn extract(tar: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let file = std::fs::File::open(tar).unwrap();
    let options = forge_cache::layer::ExtractOptions::for_current_user();
    forge_cache::layer::extract(file, dest, &options).unwrap();
}

/// Returns the busybox root, unpacked once per test process.
fn lower() -> &'static Path {
    static LOWER: OnceLock<PathBuf> = OnceLock::new();
    LOWER.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("forge-sandbox-lower")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tar = busybox_tar(&dir);
        extract(&tar, &dir.join("rootfs"));
        dir.join("rootfs")
    })
}

/// Returns whether the tests can run here; prints why not.
fn ready(test: &str) -> bool {
    forge_testkit::require_root(test) && forge_testkit::require_tool("busybox")
}

struct Case {
    _dir: tempfile::TempDir,
    spec: RunSpec,
}

fn case(argv: &[&str]) -> Case {
    let dir = tempfile::Builder::new()
        .prefix("forge-sandbox-case")
        .tempdir()
        .unwrap();
    let upper = dir.path().join("upper");
    let work = dir.path().join("work");
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    let spec = RunSpec {
        lowers: vec![lower().to_path_buf()],
        upper,
        work,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())],
        workdir: "/".into(),
        user: String::new(),
        network: Network::Default,
        hostname: "forge-test".into(),
        mounts: Vec::new(),
        volatile_upper: false,
    };
    Case { _dir: dir, spec }
}

fn sh(script: &str) -> Case {
    case(&["/bin/sh", "-c", script])
}

fn run_case(case: &Case) -> (RunOutcome, Collect) {
    let mut sink = Collect::default();
    let outcome = run(&case.spec, &mut sink).unwrap_or_else(|e| panic!("run failed: {e}"));
    (outcome, sink)
}

/// Lists every path in `dir`, relative and sorted.
fn listing(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Returns whether the host's mount table has an overlay with this upper folder.
fn host_has_overlay(upper: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let needle = format!("upperdir={}", upper.display());
    mountinfo
        .lines()
        .any(|line| line.contains(" overlay ") && line.contains(&needle))
}

/// Process ids whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(marker)
            {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn echo_output_streamed() {
    if !ready("echo_output_streamed") {
        return;
    }
    let (outcome, sink) = run_case(&case(&["echo", "hi"]));
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(sink.out(), "hi\n");
    assert_eq!(outcome.tail, vec!["hi".to_string()]);
}

#[test]
fn stderr_is_separate() {
    if !ready("stderr_is_separate") {
        return;
    }
    let (_, sink) = run_case(&sh("echo out; echo err >&2"));
    assert_eq!(sink.out(), "out\n");
    assert_eq!(String::from_utf8_lossy(&sink.stderr), "err\n");
}

#[test]
fn exit_code_returned() {
    if !ready("exit_code_returned") {
        return;
    }
    let (outcome, _) = run_case(&sh("echo failing; exit 3"));
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(outcome.signal, None);
    assert!(!outcome.success());
    assert_eq!(outcome.tail, vec!["failing".to_string()]);
}

#[test]
fn signal_returned() {
    if !ready("signal_returned") {
        return;
    }
    let (outcome, _) = run_case(&sh("kill -9 $$"));
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.signal, Some(9));
}

#[test]
fn written_file_in_upper() {
    if !ready("written_file_in_upper") {
        return;
    }
    let case = sh("echo data > /newfile");
    let (outcome, _) = run_case(&case);
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(
        std::fs::read_to_string(case.spec.upper.join("newfile")).unwrap(),
        "data\n"
    );
    // Mount points for /proc, /dev, /sys and /etc/hosts leave nothing behind.
    assert_eq!(listing(&case.spec.upper), vec!["newfile".to_string()]);
}

#[test]
fn upper_empty_after_noop() {
    if !ready("upper_empty_after_noop") {
        return;
    }
    let case = sh(
        "cat /etc/hosts /etc/hostname /etc/resolv.conf > /dev/null; ls /dev /proc /sys > /dev/null",
    );
    let (outcome, _) = run_case(&case);
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(listing(&case.spec.upper), Vec::<String>::new());
}

#[test]
fn deleted_file_is_whiteout() {
    if !ready("deleted_file_is_whiteout") {
        return;
    }
    let case = sh("rm /etc/group");
    let (outcome, _) = run_case(&case);
    assert_eq!(outcome.exit_code, Some(0));
    let metadata = std::fs::symlink_metadata(case.spec.upper.join("etc/group")).unwrap();
    assert!(metadata.file_type().is_char_device());
    assert_eq!(metadata.rdev(), 0);
}

#[test]
fn hostname_is_spec() {
    if !ready("hostname_is_spec") {
        return;
    }
    let (_, sink) = run_case(&sh(
        "hostname; cat /etc/hostname; grep -c '^127.0.0.1.*forge-test' /etc/hosts",
    ));
    assert_eq!(sink.out(), "forge-test\nforge-test\n1\n");
}

#[test]
fn proc_shows_sandbox_init() {
    if !ready("proc_shows_sandbox_init") {
        return;
    }
    let (_, sink) = run_case(&sh("cat /proc/1/cmdline; echo; echo $$"));
    let host_init = std::fs::read("/proc/1/cmdline").unwrap();
    let own = std::fs::read("/proc/self/cmdline").unwrap();
    let mut lines = sink.stdout.split(|b| *b == b'\n');
    let init = lines.next().unwrap();
    assert_ne!(init, host_init.as_slice());
    // The init is a clone of this test process, but shows a neutral
    // command line instead of this binary's path and arguments.
    assert_ne!(init, own.as_slice());
    assert_eq!(init, b"forge-init\0");
    assert_eq!(lines.next(), Some(&b"2"[..]));
}

#[test]
fn host_tmp_is_invisible() {
    if !ready("host_tmp_is_invisible") {
        return;
    }
    let marker = std::env::temp_dir().join(format!("forge-marker-{}", std::process::id()));
    std::fs::write(&marker, "x").unwrap();
    let script = format!("test -e {}", marker.display());
    let (outcome, _) = run_case(&sh(&script));
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(outcome.exit_code, Some(1));
}

fn connect_script(port: u16) -> String {
    format!("echo ping | nc -w 2 127.0.0.1 {port}")
}

#[test]
fn network_none_blocks_loopback() {
    if !ready("network_none_blocks_loopback") {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    });

    // The host network reaches the server: the control case.
    let (outcome, _) = run_case(&sh(&connect_script(port)));
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(accepted.join().unwrap(), "ping\n");

    let mut case = sh(&connect_script(port));
    case.spec.network = Network::None;
    let (outcome, _) = run_case(&case);
    assert_ne!(outcome.exit_code, Some(0));

    // Only the loopback interface exists, and it is up.
    let mut case = sh("ls /sys/class/net; ping -c 1 -W 2 127.0.0.1 > /dev/null && echo lo-up");
    case.spec.network = Network::None;
    let (_, net) = run_case(&case);
    assert_eq!(net.out(), "lo\nlo-up\n");
}

#[test]
fn env_workdir_user_applied() {
    if !ready("env_workdir_user_applied") {
        return;
    }
    let mut case = sh("echo $FOO; pwd; id -u; id -g; echo $HOME");
    case.spec.env.push(("FOO".into(), "bar baz".into()));
    case.spec.workdir = "/srv/app".into();
    case.spec.user = "nobody".into();
    let (outcome, sink) = run_case(&case);
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(
        sink.out(),
        "bar baz\n/srv/app\n65534\n65534\n/nonexistent\n"
    );
    let metadata = std::fs::metadata(case.spec.upper.join("srv/app")).unwrap();
    assert_eq!(metadata.uid(), 65534);
    assert_eq!(metadata.gid(), 65534);
}

#[test]
fn numeric_user_and_group() {
    if !ready("numeric_user_and_group") {
        return;
    }
    let mut case = sh("id -u; id -g");
    case.spec.user = "123:456".into();
    let (_, sink) = run_case(&case);
    assert_eq!(sink.out(), "123\n456\n");
}

#[test]
fn unknown_user_fails() {
    if !ready("unknown_user_fails") {
        return;
    }
    let mut case = sh("true");
    case.spec.user = "ghost".into();
    let error = run(&case.spec, &mut Collect::default()).unwrap_err();
    assert!(matches!(error, SandboxError::User { .. }), "{error}");
    assert!(error.to_string().contains("`ghost`"), "{error}");
}

#[test]
fn missing_program_fails() {
    if !ready("missing_program_fails") {
        return;
    }
    let case = case(&["no-such-program", "x"]);
    let error = run(&case.spec, &mut Collect::default()).unwrap_err();
    assert!(matches!(error, SandboxError::Exec { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("`no-such-program` not found in PATH"),
        "{error}"
    );
}

#[test]
fn path_lookup_uses_step_path() {
    if !ready("path_lookup_uses_step_path") {
        return;
    }
    let mut case = case(&["true"]);
    case.spec.env = vec![("PATH".into(), "/nowhere:/bin".into())];
    let (outcome, _) = run_case(&case);
    assert_eq!(outcome.exit_code, Some(0));
}

#[test]
fn mount_bind_read_only() {
    if !ready("mount_bind_read_only") {
        return;
    }
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("file"), "from host").unwrap();
    let mut case = sh("cat /ctx/file; echo x > /ctx/new && echo wrote");
    case.spec.mounts.push(RunMount {
        target: Some("/ctx".into()),
        kind: RunMountKind::Bind {
            source: source.path().to_path_buf(),
            read_write: false,
        },
    });
    let (_, sink) = run_case(&case);
    assert_eq!(sink.out(), "from host");
    assert!(!source.path().join("new").exists());
    assert_eq!(listing(&case.spec.upper), Vec::<String>::new());
}

#[test]
fn mount_bind_writes_discarded() {
    if !ready("mount_bind_writes_discarded") {
        return;
    }
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("file"), "from host").unwrap();
    let mut case = sh("echo changed > /ctx/file; echo new > /ctx/new; cat /ctx/file /ctx/new");
    case.spec.mounts.push(RunMount {
        target: Some("/ctx".into()),
        kind: RunMountKind::Bind {
            source: source.path().to_path_buf(),
            read_write: true,
        },
    });
    let (_, sink) = run_case(&case);
    assert_eq!(sink.out(), "changed\nnew\n");
    assert_eq!(
        std::fs::read_to_string(source.path().join("file")).unwrap(),
        "from host"
    );
    assert!(!source.path().join("new").exists());
    assert_eq!(listing(&case.spec.upper), Vec::<String>::new());
}

#[test]
fn mount_cache_persists() {
    if !ready("mount_cache_persists") {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let cache = base.path().join("cache");
    let mount = RunMount {
        target: Some("/var/cache/app".into()),
        kind: RunMountKind::Cache {
            source: cache.clone(),
            uid: 1000,
            gid: 1001,
            mode: 0o750,
            read_only: false,
        },
    };
    let mut first = sh("echo kept > /var/cache/app/data");
    first.spec.mounts.push(mount.clone());
    run_case(&first);
    let metadata = std::fs::metadata(&cache).unwrap();
    assert_eq!(metadata.mode() & 0o7777, 0o750);
    assert_eq!((metadata.uid(), metadata.gid()), (1000, 1001));
    assert_eq!(listing(&first.spec.upper), Vec::<String>::new());

    let mut second = sh("cat /var/cache/app/data");
    second.spec.mounts.push(mount);
    let (_, sink) = run_case(&second);
    assert_eq!(sink.out(), "kept\n");
}

#[test]
fn mount_tmpfs_is_empty_and_discarded() {
    if !ready("mount_tmpfs_is_empty_and_discarded") {
        return;
    }
    let mut case = sh("echo x > /scratch/file; grep ' /scratch ' /proc/mounts | cut -d' ' -f3");
    case.spec.mounts.push(RunMount {
        target: Some("/scratch".into()),
        kind: RunMountKind::Tmpfs {
            size: Some(1 << 20),
        },
    });
    let (outcome, sink) = run_case(&case);
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(sink.out(), "tmpfs\n");
    assert_eq!(listing(&case.spec.upper), Vec::<String>::new());
}

#[test]
fn mount_secret_never_in_upper() {
    if !ready("mount_secret_never_in_upper") {
        return;
    }
    let mut case = sh("cat /run/secrets/token; echo; stat -c %a /run/secrets/token; echo $TOKEN");
    case.spec.mounts.push(RunMount {
        target: Some("/run/secrets/token".into()),
        kind: RunMountKind::Secret {
            data: SecretData::Bytes(b"s3cret".to_vec()),
            uid: 0,
            gid: 0,
            mode: 0o400,
            env: Some("TOKEN".into()),
        },
    });
    let (_, sink) = run_case(&case);
    assert_eq!(sink.out(), "s3cret\n400\ns3cret\n");
    assert_eq!(listing(&case.spec.upper), Vec::<String>::new());
}

#[test]
fn mount_secret_from_file() {
    if !ready("mount_secret_from_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "CERT").unwrap();
    let mut case = sh("cat /etc/ssl/certs/ca-certificates.crt");
    case.spec.mounts.push(RunMount {
        target: Some("/etc/ssl/certs/ca-certificates.crt".into()),
        kind: RunMountKind::Secret {
            data: SecretData::File(dir.path().join("ca.pem")),
            uid: 0,
            gid: 0,
            mode: 0o444,
            env: None,
        },
    });
    let (_, sink) = run_case(&case);
    assert_eq!(sink.out(), "CERT");
    assert_eq!(listing(&case.spec.upper), Vec::<String>::new());
}

#[test]
fn mount_ssh_socket() {
    if !ready("mount_ssh_socket") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let mut case = sh("test -S \"$SSH_AUTH_SOCK\" && echo $SSH_AUTH_SOCK");
    case.spec.mounts.push(RunMount {
        target: None,
        kind: RunMountKind::Ssh {
            socket,
            uid: 0,
            gid: 0,
            mode: 0o600,
        },
    });
    let (_, sink) = run_case(&case);
    assert_eq!(sink.out(), "/run/buildkit/ssh_agent.0\n");
    assert_eq!(listing(&case.spec.upper), Vec::<String>::new());
}

#[test]
fn teardown_after_failure() {
    if !ready("teardown_after_failure") {
        return;
    }
    let case = sh("sleep 987001 & sleep 987001 & exit 1");
    let (outcome, _) = run_case(&case);
    assert_eq!(outcome.exit_code, Some(1));
    assert!(!host_has_overlay(&case.spec.upper));
    assert_eq!(processes_with("987001"), Vec::<String>::new());
}

/// Runs a sandbox that waits until SIGINT; started by `teardown_after_sigint`.
#[test]
#[ignore = "helper process of teardown_after_sigint"]
fn sigint_helper() {
    let Ok(upper_file) = std::env::var("FORGE_SANDBOX_SIGINT_UPPER") else {
        return;
    };
    let seconds = std::env::var("FORGE_SANDBOX_SIGINT_SLEEP").unwrap();
    let case = sh(&format!("echo started; sleep {seconds}; echo after-sleep"));
    std::fs::write(&upper_file, case.spec.upper.display().to_string()).unwrap();
    let mut sink = Collect {
        echo: true,
        ..Collect::default()
    };
    let result = run(&case.spec, &mut sink);
    println!(
        "RESULT: {}",
        match result {
            Ok(outcome) => format!("finished {outcome:?}"),
            Err(SandboxError::Interrupted { signal, .. }) => format!("interrupted {signal}"),
            Err(error) => format!("error {error}"),
        }
    );
}

#[test]
fn teardown_after_sigint() {
    if !ready("teardown_after_sigint") {
        return;
    }
    lower();
    let dir = tempfile::tempdir().unwrap();
    let upper_file = dir.path().join("upper-path");
    // A sleep length unique to this test process finds its sandbox among
    // other test runs on the machine.
    let marker = (900_000 + std::process::id() % 90_000).to_string();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigint_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FORGE_SANDBOX_SIGINT_UPPER", &upper_file)
        .env("FORGE_SANDBOX_SIGINT_SLEEP", &marker)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    // If an assertion below fails, the helper and its sandbox must not
    // outlive the test: they would keep the test runner's output open.
    let guard = InterruptOnDrop(child.id() as i32);
    let mut lines = Vec::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 {
        lines.push(line.clone());
        if line.contains("started") {
            break;
        }
        line.clear();
    }
    assert!(lines.iter().any(|l| l.contains("started")), "{lines:?}");
    assert_eq!(
        processes_with(&marker).len(),
        2,
        "the sandbox should be running"
    );

    let pid = child.id() as i32;
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    let exit = child.wait().unwrap();
    std::mem::forget(guard);
    assert!(exit.success(), "helper failed: {rest}");
    assert!(rest.contains("RESULT: interrupted 2"), "{rest}");
    assert!(!rest.contains("after-sleep"), "{rest}");

    let upper = PathBuf::from(std::fs::read_to_string(&upper_file).unwrap());
    assert!(!host_has_overlay(&upper));
    assert_eq!(processes_with(&marker), Vec::<String>::new());
}

/// Sends SIGINT to a helper process when dropped, then SIGKILL if it is
/// still alive a few seconds later, so a failed test leaves no sandbox.
struct InterruptOnDrop(i32);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        let pid = self.0.to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        for _ in 0..50 {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
    }
}

const ROOTLESS_USER: &str = "forge-sandbox-test";

/// Runs the sandbox as an ordinary user; started by `rootless_run`.
#[test]
#[ignore = "helper process of rootless_run"]
fn rootless_helper() {
    let Ok(tar) = std::env::var("FORGE_SANDBOX_ROOTLESS_TAR") else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("forge-rootless")
        .tempdir()
        .unwrap();
    let rootfs = dir.path().join("rootfs");
    extract(Path::new(&tar), &rootfs);
    let upper = dir.path().join("upper");
    let work = dir.path().join("work");
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    let spec = RunSpec {
        lowers: vec![rootfs],
        upper: upper.clone(),
        work,
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "id -u; echo data > /made; rm /etc/group; hostname".into(),
        ],
        env: Vec::new(),
        workdir: "/".into(),
        user: String::new(),
        network: Network::None,
        hostname: "rootless".into(),
        mounts: Vec::new(),
        volatile_upper: false,
    };
    let mut sink = Collect::default();
    match run(&spec, &mut sink) {
        Ok(outcome) => {
            println!("OUTPUT: {:?} {:?}", outcome.exit_code, sink.out());
            println!("UPPER: {:?}", listing(&upper));
            let group = std::fs::symlink_metadata(upper.join("etc/group")).unwrap();
            println!(
                "WHITEOUT: {}",
                group.file_type().is_char_device() && group.rdev() == 0
            );
        }
        Err(error) => println!("ERROR: {error}"),
    }
    let mut nobody = spec.clone();
    nobody.user = "nobody".into();
    nobody.argv = vec!["id".into(), "-u".into()];
    let nobody_upper = dir.path().join("upper2");
    let nobody_work = dir.path().join("work2");
    std::fs::create_dir(&nobody_upper).unwrap();
    std::fs::create_dir(&nobody_work).unwrap();
    nobody.upper = nobody_upper;
    nobody.work = nobody_work;
    let mut sink = Collect::default();
    match run(&nobody, &mut sink) {
        Ok(outcome) => println!("NOBODY: {:?} {:?}", outcome.exit_code, sink.out()),
        Err(error) => println!("NOBODY ERROR: {error}"),
    }

    // Root of the user namespace keeps only the default capabilities.
    let mut caps = spec.clone();
    caps.argv = vec!["grep".into(), "^CapEff".into(), "/proc/self/status".into()];
    let caps_upper = dir.path().join("upper3");
    let caps_work = dir.path().join("work3");
    std::fs::create_dir(&caps_upper).unwrap();
    std::fs::create_dir(&caps_work).unwrap();
    caps.upper = caps_upper;
    caps.work = caps_work;
    let mut sink = Collect::default();
    match run(&caps, &mut sink) {
        Ok(outcome) => println!("CAPS: {:?} {:?}", outcome.exit_code, sink.out()),
        Err(error) => println!("CAPS ERROR: {error}"),
    }
}

#[test]
fn rootless_run() {
    if !ready("rootless_run") {
        return;
    }
    if !forge_testkit::require_tool("runuser") || !forge_testkit::require_tool("newuidmap") {
        return;
    }
    let known = Command::new("id")
        .arg(ROOTLESS_USER)
        .output()
        .unwrap()
        .status
        .success();
    if !known {
        let status = Command::new("useradd")
            .args(["--create-home", ROOTLESS_USER])
            .status()
            .unwrap();
        assert!(status.success(), "useradd {ROOTLESS_USER} failed");
    }

    // The test binary and the busybox tar must be readable by that user.
    let dir = tempfile::Builder::new()
        .prefix("forge-rootless-data")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tar = busybox_tar(dir.path());
    std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o644)).unwrap();
    let exe = dir.path().join("test-binary");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();

    let output = Command::new("runuser")
        .args(["-u", ROOTLESS_USER, "--"])
        .arg(&exe)
        .args([
            "--exact",
            "rootless_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FORGE_SANDBOX_ROOTLESS_TAR", &tar)
        .env("TMPDIR", "/tmp")
        .current_dir("/tmp")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let errors = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{text}\n{errors}");
    assert!(!text.contains("ERROR"), "{text}");
    assert!(
        text.contains("OUTPUT: Some(0) \"0\\nrootless\\n\""),
        "{text}"
    );
    assert!(
        text.contains("UPPER: [\"etc\", \"etc/group\", \"made\"]"),
        "{text}"
    );
    assert!(text.contains("WHITEOUT: true"), "{text}");
    assert!(text.contains("NOBODY: Some(0) \"65534\\n\""), "{text}");
    assert!(
        text.contains("CAPS: Some(0) \"CapEff:\\t00000000a80425fb\\n\""),
        "{text}"
    );
}
