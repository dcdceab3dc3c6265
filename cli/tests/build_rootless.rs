//! Runs `forge build` with RUN steps as an unprivileged user, in a user
//! namespace with the user's subordinate ids, with a store under the
//! user's home. The image is saved with `forge save`, unpacked by umoci and
//! run by runc.
//!
//! The test needs root to create the user. Outside CI it skips only when
//! the kernel forbids unprivileged user namespaces, and prints why.

// The test prints on standard error why it skips.
#![allow(clippy::print_stderr)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

const USER: &str = "forge-rootless-test";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Creates the test user when missing (useradd grants it subordinate
/// ids) and returns its home folder.
fn ensure_user() -> PathBuf {
    let exists = Command::new("id")
        .arg(USER)
        .output()
        .expect("id runs")
        .status
        .success();
    if !exists {
        let added = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", USER])
            .output()
            .expect("useradd runs");
        assert_success("useradd", &added);
    }
    let passwd = fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let home = passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&USER)).then(|| fields.get(5).map(|home| home.to_string()))
        })
        .flatten()
        .expect("the user has a home folder");
    let home = PathBuf::from(home);
    fs::create_dir_all(&home).expect("home folder");
    chown(&home);
    home
}

fn chown(path: &Path) {
    let output = Command::new("chown")
        .arg("-R")
        .arg(format!("{USER}:"))
        .arg(path)
        .output()
        .expect("chown runs");
    assert_success("chown", &output);
}

/// Runs `command` as the test user.
fn as_user(command: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut runuser = Command::new("runuser");
    runuser.args(["-u", USER, "--", "env"]);
    for (name, value) in env {
        runuser.arg(format!("{name}={}", value.display()));
    }
    runuser
        .args(command)
        .current_dir("/")
        .output()
        .expect("runuser runs")
}

/// Returns why unprivileged user namespaces cannot be used, or `None`
/// when the user can create one.
fn user_namespaces_forbidden() -> Option<String> {
    for (file, forbidden) in [
        ("/proc/sys/user/max_user_namespaces", "0"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "0"),
        (
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
            "1",
        ),
    ] {
        if fs::read_to_string(file).is_ok_and(|value| value.trim() == forbidden) {
            return Some(format!("{file} is {forbidden}"));
        }
    }
    let probe = as_user(&["unshare", "--user", "--map-root-user", "true"], &[]);
    (!probe.status.success()).then(|| {
        format!(
            "`unshare --user` fails for {USER}: {}",
            text(&probe.stderr).trim()
        )
    })
}

/// Skips outside CI, or fails under CI, with `reason`.
fn skip(reason: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "rootless build cannot run under CI: {reason}"
    );
    eprintln!("skipping the rootless build: {reason}");
}

#[test]
fn rootless_build_runs() {
    if !forge_testkit::require_root("rootless_build_runs")
        || !forge_testkit::require_tool("busybox")
        || !forge_testkit::require_tool("newuidmap")
        || !forge_testkit::require_tool("umoci")
        || !forge_testkit::require_tool("runc")
    {
        return;
    }
    let home = ensure_user();
    if let Some(reason) = user_namespaces_forbidden() {
        skip(&reason);
        return;
    }

    // Everything the user touches lives in one folder of its home; the
    // binary is copied there because the build folder may not be readable
    // by other users.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|time| time.subsec_nanos())
        .unwrap_or_default();
    let work = tempfile::Builder::new()
        .prefix(&format!("forge-test-{nanos}-"))
        .tempdir_in(&home)
        .expect("work folder in the home folder");
    let dir = work.path();
    let forge = dir.join("forge");
    fs::copy(env!("CARGO_BIN_EXE_forge"), &forge).expect("copy forge");
    fs::set_permissions(&forge, fs::Permissions::from_mode(0o755)).expect("chmod forge");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/busybox-rootfs.sh");
    let rootfs = dir.join("busybox.tar");
    let made = Command::new("bash")
        .arg(&script)
        .arg(&rootfs)
        .output()
        .expect("busybox-rootfs.sh runs");
    assert_success("busybox-rootfs.sh", &made);
    let context = dir.join("context");
    fs::create_dir_all(&context).expect("context");
    fs::write(dir.join("secret.txt"), "rootless-secret").expect("secret");
    fs::write(
        context.join("Dockerfile"),
        "FROM busybox\n\
         RUN echo rootless-ran > /r.txt && test \"$(id -u)\" = 0\n\
         RUN --mount=type=secret,id=s,required --mount=type=tmpfs,target=/scratch \
         test -s /run/secrets/s && touch /scratch/x\n\
         CMD [\"cat\", \"/r.txt\"]\n",
    )
    .expect("Dockerfile");
    chown(dir);

    let store = dir.join("store");
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).expect("TMPDIR");
    chown(&tmp);
    let env = [("FORGE_ROOT", store.as_path()), ("TMPDIR", tmp.as_path())];
    let forge = forge.display().to_string();
    let import = as_user(
        &[&forge, "import", &rootfs.display().to_string(), "busybox"],
        &env,
    );
    assert_success("forge import", &import);
    let secret = format!("id=s,src={}", dir.join("secret.txt").display());
    let build = as_user(
        &[
            &forge,
            "build",
            "--progress",
            "plain",
            "--secret",
            &secret,
            "-t",
            "rootless",
            &context.display().to_string(),
        ],
        &env,
    );
    assert_success("rootless forge build", &build);

    // The store belongs to the user, not to root.
    let store_owner = fs::metadata(&store).expect("store").uid();
    assert_ne!(store_owner, 0, "the store belongs to root");

    let layout = dir.join("layout");
    let save = as_user(
        &[
            &forge,
            "save",
            "rootless",
            "--format",
            "oci-dir",
            "-o",
            &layout.display().to_string(),
        ],
        &env,
    );
    assert_success("forge save", &save);
    let bundle = dir.join("bundle");
    let unpack = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:rootless:latest", layout.display()))
        .arg(&bundle)
        .output()
        .expect("umoci runs");
    assert_success("umoci unpack", &unpack);
    // FIXME: layers written without root record the host owners of the
    // files (the caller's uid for root's files, subordinate ids for the
    // others), so owners in the image are not checked here.
    assert!(!bundle.join("rootfs/run/secrets/s").exists());

    // runc runs the image's CMD, which prints what the RUN step wrote.
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&config_path).expect("config.json"))
            .expect("config JSON");
    config["process"]["terminal"] = serde_json::Value::Bool(false);
    fs::write(&config_path, config.to_string()).expect("config.json");
    let run = Command::new("runc")
        .arg("--root")
        .arg(dir.join("runc-state"))
        .arg("run")
        .arg("--bundle")
        .arg(&bundle)
        .arg(format!("forge-rootless-{nanos}"))
        .output()
        .expect("runc runs");
    assert_success("runc run", &run);
    assert_eq!(text(&run.stdout), "rootless-ran\n");
}
