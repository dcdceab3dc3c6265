//! Runs `forge build` with RUN steps as an unprivileged user, in a user
//! namespace with the user's subordinate ids, with a store under the
//! user's home. The image is saved with `forge save`, its layer tars are
//! listed by GNU tar for owners and whiteouts, and it is unpacked by umoci
//! and run by runc. A second store loads the saved image and builds on it,
//! so its layers are unpacked from the blobs.
//!
//! The test needs root to create the user. Outside CI it skips only when
//! the kernel forbids unprivileged user namespaces, and prints why.

// The test prints on standard error why it skips.
#![allow(clippy::print_stderr)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{assert_success, layout_blob, layout_manifest, make_busybox_rootfs, text};

const USER: &str = "forge-rootless-test";

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
        assert_success(&added, "useradd");
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
    assert_success(&output, "chown");
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

/// One entry of a layer tar as `tar --numeric-owner -tv` lists it.
#[derive(Debug)]
struct LayerEntry {
    name: String,
    /// `UID/GID`.
    owner: String,
}

/// Lists the entries of every layer of the single image in the OCI layout
/// folder `layout`, bottom layer first.
fn layer_entries(layout: &Path) -> Vec<LayerEntry> {
    let manifest = layout_manifest(layout);
    let mut entries = Vec::new();
    for layer in manifest["layers"].as_array().expect("layers") {
        let listing = Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(layout_blob(layout, &layer["digest"]))
            .output()
            .expect("tar runs");
        assert_success(&listing, "tar -tv");
        for line in text(&listing.stdout).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(owner), Some(name)) = (fields.get(1), fields.get(5..)) else {
                continue;
            };
            let name = name.join(" ");
            let name = name.split(" -> ").next().unwrap_or_default();
            let name = name.split(" link to ").next().unwrap_or_default();
            entries.push(LayerEntry {
                name: name.to_string(),
                owner: (*owner).to_string(),
            });
        }
    }
    entries
}

/// Skips outside CI, or fails under CI, with `reason`.
fn skip(reason: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "rootless build cannot run under CI: {reason}"
    );
    eprintln!("skipping the rootless build: {reason}");
}

/// A folder in the test user's home with a copy of the forge binary and a
/// busybox root file system tar. `None` when the test skips.
struct UserWorkspace {
    work: tempfile::TempDir,
    /// Nanoseconds of the creation time, to name containers apart.
    nanos: u32,
}

impl UserWorkspace {
    fn new(test: &str) -> Option<UserWorkspace> {
        if !forge_testkit::require_root(test)
            || !forge_testkit::require_tool("busybox")
            || !forge_testkit::require_tool("newuidmap")
            || !forge_testkit::require_tool("umoci")
            || !forge_testkit::require_tool("runc")
            || !forge_testkit::require_tool("tar")
        {
            return None;
        }
        let home = ensure_user();
        if let Some(reason) = user_namespaces_forbidden() {
            skip(&reason);
            return None;
        }

        // Everything the user touches lives in one folder of its home. The
        // binary is copied there because the build folder may not be
        // readable by other users.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|time| time.subsec_nanos())
            .unwrap_or_default();
        let work = tempfile::Builder::new()
            .prefix(&format!("forge-test-{nanos}-"))
            .tempdir_in(&home)
            .expect("work folder in the home folder");
        let forge = work.path().join("forge");
        fs::copy(env!("CARGO_BIN_EXE_forge"), &forge).expect("copy forge");
        fs::set_permissions(&forge, fs::Permissions::from_mode(0o755)).expect("chmod forge");
        make_busybox_rootfs(&work.path().join("busybox.tar"));
        Some(UserWorkspace { work, nanos })
    }

    fn dir(&self) -> &Path {
        self.work.path()
    }

    fn forge(&self) -> String {
        self.dir().join("forge").display().to_string()
    }
}

#[test]
fn rootless_build_runs() {
    let Some(workspace) = UserWorkspace::new("rootless_build_runs") else {
        return;
    };
    let dir = workspace.dir();
    let nanos = workspace.nanos;
    let rootfs = dir.join("busybox.tar");
    let context = dir.join("context");
    fs::create_dir_all(&context).expect("context");
    fs::write(dir.join("secret.txt"), "rootless-secret").expect("secret");
    fs::write(
        context.join("Dockerfile"),
        "FROM busybox\n\
         RUN echo rootless-ran > /r.txt && test \"$(id -u)\" = 0\n\
         RUN --mount=type=secret,id=s,required --mount=type=tmpfs,target=/scratch \
         test -s /run/secrets/s && touch /scratch/x\n\
         RUN echo lower > /lower.txt && mkdir -p /lowerdir/sub /data && \
         touch /lowerdir/sub/f /data/old\n\
         RUN touch /root-file && mkdir /numeric && touch /numeric/f && \
         chown -R 1000:1000 /numeric && echo app:x:1500:1500::/home/app:/bin/sh >> /etc/passwd && \
         echo app:x:1500: >> /etc/group && mkdir -p /home/app && chown app:app /home/app && \
         touch /home/app/made && chown app:app /home/app/made\n\
         USER app\n\
         RUN touch /home/app/by-app && test \"$(id -u)\" = 1500\n\
         USER root\n\
         RUN rm /lower.txt && rm -r /lowerdir /data && mkdir /data && touch /data/new\n\
         COPY f.txt /plain.txt\n\
         COPY --chown=1000:1000 --chmod=4755 f.txt /copied/owned.txt\n\
         ADD owned.tar /unpacked/\n\
         RUN test \"$(stat -c %u:%g:%a /copied/owned.txt)\" = 1000:1000:4755 && \
         test \"$(stat -c %u:%g /unpacked/inner.txt)\" = 1500:1500\n\
         CMD [\"cat\", \"/r.txt\"]\n",
    )
    .expect("Dockerfile");
    fs::write(context.join("f.txt"), "copied\n").expect("f.txt");
    let extra = dir.join("extra");
    fs::create_dir_all(&extra).expect("extra");
    fs::write(extra.join("inner.txt"), "inner\n").expect("inner.txt");
    let packed = Command::new("tar")
        .args([
            "--numeric-owner",
            "--owner",
            "1500",
            "--group",
            "1500",
            "-cf",
        ])
        .arg(context.join("owned.tar"))
        .arg("-C")
        .arg(&extra)
        .arg("inner.txt")
        .output()
        .expect("tar runs");
    assert_success(&packed, "tar -c");
    chown(dir);

    let store = dir.join("store");
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).expect("TMPDIR");
    chown(&tmp);
    let env = [("FORGE_ROOT", store.as_path()), ("TMPDIR", tmp.as_path())];
    let forge = workspace.forge();
    let import = as_user(
        &[&forge, "import", &rootfs.display().to_string(), "busybox"],
        &env,
    );
    assert_success(&import, "forge import");
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
    assert_success(&build, "rootless forge build");

    // The store belongs to the user, not to root.
    let store_owner = fs::metadata(&store).expect("store").uid();
    assert_ne!(store_owner, 0, "the store belongs to root");

    // The RUN steps left no work folder behind, and the user can check and
    // prune the store.
    let leftovers: Vec<_> = fs::read_dir(store.join("forge/tmp"))
        .expect("forge/tmp")
        .collect();
    assert!(leftovers.is_empty(), "left in forge/tmp: {leftovers:?}");
    assert_success(
        &as_user(&[&forge, "store", "check"], &env),
        "forge store check",
    );
    assert_success(&as_user(&[&forge, "prune"], &env), "forge prune");

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
    assert_success(&save, "forge save");
    let bundle = dir.join("bundle");
    let unpack = Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:rootless:latest", layout.display()))
        .arg(&bundle)
        .output()
        .expect("umoci runs");
    assert_success(&unpack, "umoci unpack");
    assert!(!bundle.join("rootfs/run/secrets/s").exists());

    // The layers record container owners, not the host ids that the
    // files had in the user's store, and deletions as whiteouts.
    let entries = layer_entries(&layout);
    for (name, owner) in [
        ("r.txt", "0/0"),
        ("root-file", "0/0"),
        ("numeric/", "1000/1000"),
        ("numeric/f", "1000/1000"),
        ("home/app/", "1500/1500"),
        ("home/app/made", "1500/1500"),
        ("home/app/by-app", "1500/1500"),
        ("etc/passwd", "0/0"),
        ("data/", "0/0"),
        ("data/new", "0/0"),
        ("plain.txt", "0/0"),
        ("copied/owned.txt", "1000/1000"),
        ("unpacked/inner.txt", "1500/1500"),
    ] {
        let found = entries.iter().rev().find(|entry| entry.name == name);
        assert_eq!(
            found.map(|entry| entry.owner.as_str()),
            Some(owner),
            "owner of `{name}` in the layers:\n{entries:#?}"
        );
    }
    for whiteout in [".wh.lower.txt", ".wh.lowerdir", "data/.wh..wh..opq"] {
        assert!(
            entries.iter().any(|entry| entry.name == whiteout),
            "no `{whiteout}` in the layers:\n{entries:#?}"
        );
    }
    let hosts: Vec<&LayerEntry> = entries
        .iter()
        .filter(|entry| {
            let uid = entry.owner.split('/').next().unwrap_or_default();
            uid.parse::<u32>().is_ok_and(|uid| uid >= 65536)
        })
        .collect();
    assert!(hosts.is_empty(), "host ids in the layers: {hosts:#?}");

    // A second store loads the image and unpacks its layers from the
    // blobs, and RUN finds the owners that the layers record.
    let second_env = [
        ("FORGE_ROOT", dir.join("second-store")),
        ("TMPDIR", tmp.clone()),
    ];
    let second_env: Vec<(&str, &Path)> = second_env
        .iter()
        .map(|(name, path)| (*name, path.as_path()))
        .collect();
    let load = as_user(
        &[&forge, "load", "-i", &layout.display().to_string()],
        &second_env,
    );
    assert_success(&load, "forge load");
    let loaded = text(&load.stdout);
    let loaded_name = loaded
        .split_whitespace()
        .last()
        .expect("forge load prints the image");
    let tag = as_user(&[&forge, "tag", loaded_name, "reloaded"], &second_env);
    assert_success(&tag, "forge tag");
    let check_context = dir.join("check");
    fs::create_dir_all(&check_context).expect("check context");
    fs::write(
        check_context.join("Dockerfile"),
        "FROM reloaded\n\
         RUN test \"$(stat -c %u:%g /numeric/f)\" = 1000:1000 && \
         test \"$(stat -c %u:%g /home/app/by-app)\" = 1500:1500 && \
         test \"$(stat -c %u:%g /root-file)\" = 0:0 && \
         test ! -e /lower.txt && test ! -e /lowerdir && test ! -e /data/old && \
         test -e /data/new\n",
    )
    .expect("Dockerfile");
    chown(&check_context);
    let check = as_user(
        &[
            &forge,
            "build",
            "--progress",
            "plain",
            &check_context.display().to_string(),
        ],
        &second_env,
    );
    assert_success(&check, "rootless build on the loaded image");

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
    assert_success(&run, "runc run");
    assert_eq!(text(&run.stdout), "rootless-ran\n");
}

#[test]
fn rootless_import_keeps_owners() {
    let Some(workspace) = UserWorkspace::new("rootless_import_keeps_owners") else {
        return;
    };
    let dir = workspace.dir();

    // The busybox tar with a folder of uid 1000 and a file of 1500:33
    // appended.
    let rootfs = dir.join("owned.tar");
    fs::copy(dir.join("busybox.tar"), &rootfs).expect("copy the busybox tar");
    let extra = dir.join("extra");
    fs::create_dir_all(extra.join("app")).expect("extra/app");
    fs::write(extra.join("app/f"), "owned\n").expect("extra/app/f");
    fs::write(extra.join("web"), "web\n").expect("extra/web");
    for (owner, group, path) in [("1000", "1000", "app"), ("1500", "33", "web")] {
        let appended = Command::new("tar")
            .args(["--numeric-owner", "--owner", owner, "--group", group, "-rf"])
            .arg(&rootfs)
            .arg("-C")
            .arg(&extra)
            .arg(path)
            .output()
            .expect("tar runs");
        assert_success(&appended, "tar -r");
    }
    let context = dir.join("context");
    fs::create_dir_all(&context).expect("context");
    fs::write(
        context.join("Dockerfile"),
        "FROM owned\n\
         RUN test \"$(stat -c %u:%g /app/f)\" = 1000:1000 && \
         test \"$(stat -c %u:%g /web)\" = 1500:33 && \
         test \"$(stat -c %u:%g /bin/busybox)\" = 0:0\n",
    )
    .expect("Dockerfile");
    chown(dir);

    let store = dir.join("store");
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).expect("TMPDIR");
    chown(&tmp);
    let env = [("FORGE_ROOT", store.as_path()), ("TMPDIR", tmp.as_path())];
    let forge = workspace.forge();
    let import = as_user(
        &[&forge, "import", &rootfs.display().to_string(), "owned"],
        &env,
    );
    assert_success(&import, "forge import");

    // The layer records the owners of the tar, not the caller.
    let layout = dir.join("layout");
    let save = as_user(
        &[
            &forge,
            "save",
            "owned",
            "--format",
            "oci-dir",
            "-o",
            &layout.display().to_string(),
        ],
        &env,
    );
    assert_success(&save, "forge save");
    let entries = layer_entries(&layout);
    for (name, owner) in [
        ("app/", "1000/1000"),
        ("app/f", "1000/1000"),
        ("web", "1500/33"),
        ("bin/busybox", "0/0"),
    ] {
        let found = entries.iter().find(|entry| entry.name == name);
        assert_eq!(
            found.map(|entry| entry.owner.as_str()),
            Some(owner),
            "owner of `{name}` in the layer:\n{entries:#?}"
        );
    }

    // A RUN step finds those owners in the imported layer's unpacked folder.
    let build = as_user(
        &[
            &forge,
            "build",
            "--progress",
            "plain",
            &context.display().to_string(),
        ],
        &env,
    );
    assert_success(&build, "rootless build on the imported image");
}
