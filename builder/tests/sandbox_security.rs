//! What a RUN command may do to the host: its capabilities, the device
//! nodes it can open and the kernel files it can see (run as root over a
//! busybox root).

// Skipped tests print the reason on standard error.
#![allow(clippy::print_stderr)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use forge_builder::sandbox::{
    Network, OutputSink, RunMount, RunMountKind, RunOutcome, RunSpec, Security, run,
    run_with_security,
};

/// Docker's default capability set as `/proc/PID/status` prints it.
const DEFAULT_CAPS: u64 = 0xa804_25fb;

#[derive(Default)]
struct Collect {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl OutputSink for Collect {
    fn stdout(&mut self, bytes: &[u8]) {
        self.stdout.extend_from_slice(bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.stderr.extend_from_slice(bytes);
    }
}

impl Collect {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Returns the busybox root, unpacked once per test process.
fn lower() -> &'static Path {
    static LOWER: OnceLock<PathBuf> = OnceLock::new();
    LOWER.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("forge-sandbox-security")
            .tempdir()
            .unwrap()
            .keep();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let tar = dir.join("busybox.tar");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/busybox-rootfs.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&tar)
            .status()
            .unwrap();
        assert!(status.success(), "busybox-rootfs.sh failed: {status}");
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let file = std::fs::File::open(&tar).unwrap();
        let options = forge_cache::layer::ExtractOptions::for_current_user();
        forge_cache::layer::extract(file, &rootfs, &options).unwrap();
        rootfs
    })
}

fn ready(test: &str) -> bool {
    forge_testkit::require_root(test) && forge_testkit::require_tool("busybox")
}

struct Case {
    _dir: tempfile::TempDir,
    spec: RunSpec,
}

fn sh(script: &str) -> Case {
    let dir = tempfile::Builder::new()
        .prefix("forge-sandbox-security-case")
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
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())],
        workdir: "/".into(),
        user: String::new(),
        network: Network::None,
        hostname: "forge-test".into(),
        mounts: Vec::new(),
        volatile_upper: false,
    };
    Case { _dir: dir, spec }
}

fn run_as(case: &Case, security: Security) -> (RunOutcome, Collect) {
    let mut sink = Collect::default();
    let outcome = run_with_security(&case.spec, security, &mut sink)
        .unwrap_or_else(|e| panic!("run failed: {e}"));
    (outcome, sink)
}

fn run_case(case: &Case) -> (RunOutcome, Collect) {
    let mut sink = Collect::default();
    let outcome = run(&case.spec, &mut sink).unwrap_or_else(|e| panic!("run failed: {e}"));
    (outcome, sink)
}

/// Returns the capability masks of `/proc/PID/status` text by name
/// (`CapEff`, `CapBnd`, ...).
fn capability_masks(status: &str) -> Vec<(String, u64)> {
    status
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.starts_with("Cap")
                .then(|| u64::from_str_radix(value.trim(), 16).ok())
                .flatten()
                .map(|mask| (name.to_string(), mask))
        })
        .collect()
}

fn mask(masks: &[(String, u64)], name: &str) -> u64 {
    masks
        .iter()
        .find(|(found, _)| found == name)
        .map(|(_, mask)| *mask)
        .unwrap_or_else(|| panic!("{name} missing from {masks:?}"))
}

/// Returns whether the host path exists and reads as non-empty, which
/// makes a check that the sandbox shows it empty meaningful.
fn host_has_content(path: &str) -> bool {
    let path = Path::new(path);
    if path.is_dir() {
        std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_some())
    } else {
        use std::io::Read;
        let mut byte = [0u8; 1];
        std::fs::File::open(path).is_ok_and(|mut file| file.read(&mut byte).is_ok_and(|n| n > 0))
    }
}

/// Returns the major and minor number of the host's first block device in
/// `/proc/partitions`.
fn host_block_device() -> Option<(u32, u32)> {
    let partitions = std::fs::read_to_string("/proc/partitions").ok()?;
    partitions.lines().skip(2).find_map(|line| {
        let mut fields = line.split_whitespace();
        let major = fields.next()?.parse().ok()?;
        let minor = fields.next()?.parse().ok()?;
        Some((major, minor))
    })
}

#[test]
fn root_gets_default_capabilities() {
    if !ready("root_gets_default_capabilities") {
        return;
    }
    let (outcome, sink) = run_case(&sh("cat /proc/self/status"));
    assert_eq!(outcome.exit_code, Some(0), "{}", sink.err());
    let masks = capability_masks(&sink.out());
    assert_eq!(mask(&masks, "CapEff"), DEFAULT_CAPS);
    assert_eq!(mask(&masks, "CapPrm"), DEFAULT_CAPS);
    assert_eq!(mask(&masks, "CapBnd"), DEFAULT_CAPS);
    assert_eq!(mask(&masks, "CapInh"), 0);
    assert_eq!(mask(&masks, "CapAmb"), 0);
}

#[test]
fn nobody_gets_no_capabilities() {
    if !ready("nobody_gets_no_capabilities") {
        return;
    }
    let mut case = sh("cat /proc/self/status");
    case.spec.user = "nobody".into();
    let (outcome, sink) = run_case(&case);
    assert_eq!(outcome.exit_code, Some(0), "{}", sink.err());
    let masks = capability_masks(&sink.out());
    assert_eq!(mask(&masks, "CapEff"), 0);
    assert_eq!(mask(&masks, "CapPrm"), 0);
    assert_eq!(mask(&masks, "CapInh"), 0);
    assert_eq!(mask(&masks, "CapBnd"), DEFAULT_CAPS);
}

#[test]
fn root_cannot_do_admin_work() {
    if !ready("root_cannot_do_admin_work") {
        return;
    }
    let (outcome, sink) = run_case(&sh("mkdir /m; mount -t tmpfs none /m && echo mounted; \
         hostname other && echo renamed; \
         cat /proc/1/environ > /dev/null && echo init-environ; \
         echo done"));
    assert_eq!(outcome.exit_code, Some(0), "{}", sink.err());
    let out = sink.out();
    assert!(!out.contains("mounted"), "mount needs CAP_SYS_ADMIN: {out}");
    assert!(
        !out.contains("renamed"),
        "hostname needs CAP_SYS_ADMIN: {out}"
    );
    assert!(
        !out.contains("init-environ"),
        "the init's environment is forge's: {out}"
    );
    assert!(out.contains("done"), "{out}");
}

#[test]
fn insecure_keeps_every_capability() {
    if !ready("insecure_keeps_every_capability") {
        return;
    }
    let own = capability_masks(&std::fs::read_to_string("/proc/self/status").unwrap());
    let (outcome, sink) = run_as(&sh("cat /proc/self/status"), Security::Insecure);
    assert_eq!(outcome.exit_code, Some(0), "{}", sink.err());
    let masks = capability_masks(&sink.out());
    assert_eq!(mask(&masks, "CapEff"), mask(&own, "CapBnd"));
    assert_eq!(mask(&masks, "CapBnd"), mask(&own, "CapBnd"));
    assert_ne!(mask(&masks, "CapEff"), DEFAULT_CAPS);
}

#[test]
fn sandbox_mode_is_default() {
    if !ready("sandbox_mode_is_default") {
        return;
    }
    let (_, sink) = run_as(&sh("grep CapEff /proc/self/status"), Security::Sandbox);
    let masks = capability_masks(&sink.out());
    assert_eq!(mask(&masks, "CapEff"), DEFAULT_CAPS);
}

#[test]
fn host_disk_node_unreadable() {
    if !ready("host_disk_node_unreadable") {
        return;
    }
    let Some((major, minor)) = host_block_device() else {
        eprintln!("skipping host_disk_node_unreadable: no block device in /proc/partitions");
        return;
    };
    // `nodev` rejects the open with EACCES ("Permission denied"); a device
    // cgroup of the host, where there is one, would reject it with EPERM.
    let (outcome, sink) = run_case(&sh(&format!(
        "mknod /tmp/hostdisk b {major} {minor} && echo made; \
         head -c1 /tmp/hostdisk > /dev/null && echo read-disk; \
         mknod /dev/hostdisk b {major} {minor} && echo made-in-dev; \
         head -c1 /dev/hostdisk > /dev/null && echo read-dev-disk; \
         echo done"
    )));
    assert_eq!(outcome.exit_code, Some(0), "{}", sink.err());
    let out = sink.out();
    let err = sink.err();
    assert!(out.contains("made\n"), "MKNOD must stay: {out}");
    assert!(!out.contains("read-disk"), "read the host disk: {out}");
    assert!(out.contains("made-in-dev"), "{out}");
    assert!(!out.contains("read-dev-disk"), "read the host disk: {out}");
    assert!(out.contains("done"), "{out}");
    assert!(
        err.contains("/tmp/hostdisk: Permission denied"),
        "not rejected by nodev: {err}"
    );
    assert!(
        err.contains("/dev/hostdisk: Permission denied"),
        "not rejected by nodev: {err}"
    );
}

#[test]
fn created_char_device_unusable() {
    if !ready("created_char_device_unusable") {
        return;
    }
    // 1:5 is /dev/zero, which every Linux host has.
    let (outcome, sink) = run_case(&sh("mknod /tmp/zero c 1 5 && echo made; \
         head -c1 /tmp/zero > /dev/null && echo opened; \
         head -c1 /dev/zero > /dev/null && echo bound-works"));
    assert_eq!(outcome.exit_code, Some(0), "{}", sink.err());
    let out = sink.out();
    assert!(out.contains("made"), "{out}");
    assert!(!out.contains("opened"), "{out}");
    assert!(out.contains("bound-works"), "{out}");
    assert!(
        sink.err().contains("/tmp/zero: Permission denied"),
        "{}",
        sink.err()
    );
}

#[test]
fn allowed_devices_work() {
    if !ready("allowed_devices_work") {
        return;
    }
    let (outcome, sink) = run_case(&sh("echo gone > /dev/null && echo null-ok; \
         echo \"zero $(head -c 4 /dev/zero | wc -c)\"; \
         echo \"urandom $(head -c 8 /dev/urandom | wc -c)\"; \
         echo \"random $(head -c 8 /dev/random | wc -c)\"; \
         echo x > /dev/full || echo full-is-full; \
         exec 3<>/dev/ptmx && echo ptmx-ok"));
    assert_eq!(outcome.exit_code, Some(0), "{}", sink.err());
    let out = sink.out();
    assert!(out.contains("null-ok"), "{out}");
    assert!(out.contains("zero 4\n"), "{out}");
    assert!(out.contains("urandom 8\n"), "{out}");
    assert!(out.contains("random 8\n"), "{out}");
    assert!(out.contains("full-is-full"), "{out}");
    assert!(out.contains("ptmx-ok"), "{out}");
}

#[test]
fn fifo_chown_chmod_work() {
    if !ready("fifo_chown_chmod_work") {
        return;
    }
    let case = sh(
        "mkfifo /tmp/pipe && (echo through-fifo > /tmp/pipe &) && cat /tmp/pipe; \
         touch /owned && chown 1234:5678 /owned && chmod 4750 /owned && \
         stat -c 'owner %u:%g mode %a' /owned",
    );
    let (outcome, sink) = run_case(&case);
    assert_eq!(outcome.exit_code, Some(0), "{}", sink.err());
    let out = sink.out();
    assert!(out.contains("through-fifo"), "{out}");
    assert!(out.contains("owner 1234:5678 mode 4750"), "{out}");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let owned = std::fs::metadata(case.spec.upper.join("owned")).unwrap();
    assert_eq!(owned.uid(), 1234);
    assert_eq!(owned.mode() & 0o7777, 0o4750);
    let pipe = std::fs::symlink_metadata(case.spec.upper.join("tmp/pipe")).unwrap();
    assert!(pipe.file_type().is_fifo());
}

#[test]
fn kernel_files_masked() {
    if !ready("kernel_files_masked") {
        return;
    }
    let (outcome, sink) = run_case(&sh(
        "echo \"kcore $(head -c 16 /proc/kcore 2>/dev/null | wc -c)\"; \
         echo \"keys $(cat /proc/keys 2>/dev/null | wc -c)\"; \
         echo \"timer_list $(head -c 16 /proc/timer_list 2>/dev/null | wc -c)\"; \
         echo \"acpi $(ls -A /proc/acpi 2>/dev/null | wc -l)\"; \
         echo \"firmware $(ls -A /sys/firmware 2>/dev/null | wc -l)\"; \
         echo forge > /proc/sys/kernel/domainname && echo wrote-sysctl; \
         test -w /proc/sysrq-trigger && echo sysrq-writable; \
         touch /proc/acpi/x 2>/dev/null && echo wrote-acpi; \
         echo \"sys $(ls /proc/sys | wc -l)\"",
    ));
    assert_eq!(outcome.exit_code, Some(0), "{}", sink.err());
    let out = sink.out();
    for (name, path) in [
        ("kcore", "/proc/kcore"),
        ("keys", "/proc/keys"),
        ("timer_list", "/proc/timer_list"),
        ("acpi", "/proc/acpi"),
        ("firmware", "/sys/firmware"),
    ] {
        if host_has_content(path) {
            assert!(out.contains(&format!("{name} 0\n")), "{path} shows: {out}");
        }
    }
    assert!(!out.contains("wrote-sysctl"), "{out}");
    assert!(!out.contains("sysrq-writable"), "{out}");
    assert!(!out.contains("wrote-acpi"), "{out}");
    // /proc/sys stays readable.
    assert!(!out.contains("sys 0\n"), "{out}");
}

#[test]
fn insecure_sees_kernel_files() {
    if !ready("insecure_sees_kernel_files") {
        return;
    }
    let script = "grep -c ' /proc/kcore ' /proc/self/mountinfo";
    let (_, sandboxed) = run_as(&sh(script), Security::Sandbox);
    let (_, insecure) = run_as(&sh(script), Security::Insecure);
    if Path::new("/proc/kcore").exists() {
        assert_eq!(sandboxed.out(), "1\n");
    }
    assert_eq!(insecure.out(), "0\n");
}

#[test]
fn init_hides_host_command_line() {
    if !ready("init_hides_host_command_line") {
        return;
    }
    let own = std::env::current_exe().unwrap();
    let (_, sink) = run_as(&sh("cat /proc/1/cmdline"), Security::Insecure);
    let init = sink.out();
    assert_eq!(init, "forge-init\0");
    assert!(!init.contains(&own.display().to_string()), "{init}");
}

#[test]
fn mounted_device_nodes_unusable() {
    if !ready("mounted_device_nodes_unusable") {
        return;
    }
    // A host folder with a copy of /dev/zero's node (1:5), mounted read-only
    // and as a writable cache.
    let host = tempfile::tempdir().unwrap();
    let made = Command::new("mknod")
        .arg(host.path().join("zero"))
        .args(["c", "1", "5"])
        .status()
        .unwrap();
    assert!(made.success(), "mknod on the host failed");
    let mut case = sh("head -c1 /ro/zero > /dev/null && echo read-only-opened; \
         head -c1 /cache/zero > /dev/null && echo cache-opened; \
         echo done");
    case.spec.mounts = vec![
        RunMount {
            target: Some("/ro".into()),
            kind: RunMountKind::Bind {
                source: host.path().to_path_buf(),
                read_write: false,
            },
        },
        RunMount {
            target: Some("/cache".into()),
            kind: RunMountKind::Cache {
                source: host.path().to_path_buf(),
                uid: 0,
                gid: 0,
                mode: 0o755,
                read_only: false,
            },
        },
    ];
    let (outcome, sink) = run_case(&case);
    assert_eq!(outcome.exit_code, Some(0), "{}", sink.err());
    let out = sink.out();
    let err = sink.err();
    assert!(!out.contains("read-only-opened"), "{out}");
    assert!(!out.contains("cache-opened"), "{out}");
    assert!(out.contains("done"), "{out}");
    assert!(err.contains("/ro/zero: Permission denied"), "{err}");
    assert!(err.contains("/cache/zero: Permission denied"), "{err}");
}
