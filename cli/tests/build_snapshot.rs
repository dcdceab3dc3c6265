//! Builds the same RUN steps with the overlay snapshotter and with
//! `FORGE_SNAPSHOTTER=copy`, as root, in two stores, and checks that the
//! layers list the same entries: names, types, modes, owners, sizes, link
//! targets, xattrs (with file capabilities) and whiteouts. Python's
//! `tarfile` module lists the layer tars of `forge save --format oci-dir`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_success, layout_blob, layout_manifest, make_busybox_rootfs, text};

/// Lists each member of the tar files given as arguments, one line per
/// member, without mtimes: they differ between two builds.
const LIST_LAYER: &str = r#"
import sys, tarfile
for path in sys.argv[1:]:
    print("layer")
    with tarfile.open(path) as archive:
        for member in archive:
            xattrs = sorted(
                (key, value) for key, value in member.pax_headers.items()
                if key.startswith("SCHILY.xattr.")
            )
            print(member.name, member.type.decode(), oct(member.mode), member.uid, member.gid,
                  member.size, member.linkname, xattrs)
"#;

const DOCKERFILE: &str = "FROM snapbase\n\
    RUN mkdir -p /data/keep /data/gone /data/redo && echo 1 > /data/keep/mod.txt && \
    echo x > /data/gone/a && echo old > /data/redo/old.txt && echo del > /data/del.txt\n\
    RUN echo 2 >> /data/keep/mod.txt && echo new > /data/keep/new.txt && rm -r /data/gone && \
    rm /data/del.txt /etc/group && rm -r /data/redo && mkdir /data/redo && \
    echo fresh > /data/redo/fresh.txt && chmod 700 /data/keep\n\
    RUN cd /data && echo linked > file && ln file hard && ln -s file soft && mkfifo fifo && \
    ln -s /nowhere dangling && chown 1000:1000 file\n\
    RUN mv /opt/capbin /opt/capmoved && mv /opt/attrs.txt /opt/attrs-moved.txt && \
    ln /opt/capmoved /opt/caplink && chmod 750 /opt/capmoved\n";

/// Number of RUN steps in [`DOCKERFILE`], whose layers are compared.
const RUN_STEPS: usize = 4;

fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what} cannot start: {error}"));
    assert_success(&output, what);
    output
}

/// Makes a busybox root file system tar whose `/opt` contains a file with
/// the capability `cap_net_raw+ep` and a file with a user xattr.
fn base_tar(dir: &Path) -> PathBuf {
    let busybox = dir.join("busybox.tar");
    make_busybox_rootfs(&busybox);

    let base = dir.join("base");
    fs::create_dir_all(base.join("opt")).expect("base folder");
    run(
        Command::new("tar")
            .arg("-xf")
            .arg(&busybox)
            .arg("-C")
            .arg(&base),
        "tar -x",
    );

    fs::copy("/bin/busybox", base.join("opt/capbin")).expect("copy busybox");
    fs::write(base.join("opt/attrs.txt"), "attrs\n").expect("attrs.txt");
    run(
        Command::new("setcap")
            .arg("cap_net_raw+ep")
            .arg(base.join("opt/capbin")),
        "setcap",
    );
    run(
        Command::new("python3")
            .arg("-c")
            .arg("import os, sys; os.setxattr(sys.argv[1], 'user.forge', b'v1')")
            .arg(base.join("opt/attrs.txt")),
        "setxattr",
    );

    let tarball = dir.join("base.tar");
    run(
        Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "-C"])
            .arg(&base)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
        "tar -c",
    );
    tarball
}

/// Imports the base, builds [`DOCKERFILE`] in a new store named `name`
/// with `snapshotter` in `FORGE_SNAPSHOTTER`, and returns the listing of
/// the RUN steps' layers and the build's standard error.
fn build_and_list(dir: &Path, base: &Path, name: &str, snapshotter: &str) -> (String, String) {
    let store = dir.join(name);
    let tmp = dir.join(format!("{name}-tmp"));
    fs::create_dir_all(&tmp).expect("TMPDIR");
    let forge = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
        command
            .arg("--root")
            .arg(&store)
            .env("TMPDIR", &tmp)
            .env("FORGE_SNAPSHOTTER", snapshotter)
            .env_remove("SOURCE_DATE_EPOCH");
        command
    };
    run(
        forge().arg("import").arg(base).arg("snapbase"),
        "forge import",
    );
    let build = run(
        forge()
            .args(["build", "--progress", "plain", "-t", "snap"])
            .arg(dir.join("context")),
        "forge build",
    );
    let layout = dir.join(format!("{name}-layout"));
    run(
        forge()
            .args(["save", "snap", "--format", "oci-dir", "-o"])
            .arg(&layout),
        "forge save",
    );

    let manifest = layout_manifest(&layout);
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), RUN_STEPS + 1, "{manifest}");
    let mut list = Command::new("python3");
    list.arg("-c").arg(LIST_LAYER);
    for layer in layers.iter().skip(1) {
        list.arg(layout_blob(&layout, &layer["digest"]));
    }
    let listing = run(&mut list, "python3 tarfile");
    (text(&listing.stdout), text(&build.stderr))
}

#[test]
fn copy_snapshots_match_overlay() {
    if !forge_testkit::require_root("copy_snapshots_match_overlay")
        || !forge_testkit::require_tool("busybox")
        || !forge_testkit::require_tool("setcap")
        || !forge_testkit::require_tool("python3")
        || !forge_testkit::require_tool("tar")
    {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary folder");
    let base = base_tar(dir.path());
    fs::create_dir_all(dir.path().join("context")).expect("context");
    fs::write(dir.path().join("context/Dockerfile"), DOCKERFILE).expect("Dockerfile");

    let (overlay, overlay_log) = build_and_list(dir.path(), &base, "overlay", "overlay");
    let (copy, copy_log) = build_and_list(dir.path(), &base, "copy", "copy");

    assert!(
        !overlay_log.contains("overlay is not available"),
        "{overlay_log}"
    );
    assert_eq!(
        copy_log
            .matches("overlay is not available (FORGE_SNAPSHOTTER=copy)")
            .count(),
        1,
        "{copy_log}"
    );
    // The listings contain the cases the steps exercise.
    for expected in [
        "data/.wh.gone ",
        "data/.wh.del.txt ",
        "etc/.wh.group ",
        "data/redo/.wh..wh..opq ",
        "data/hard 1 ",
        "data/soft 2 ",
        "data/fifo 6 ",
        "data/file 0 0o644 1000 1000 ",
        "opt/.wh.capbin ",
        "SCHILY.xattr.security.capability",
        "SCHILY.xattr.user.forge",
    ] {
        assert!(
            overlay.contains(expected),
            "`{expected}` missing:\n{overlay}"
        );
    }
    assert_eq!(copy, overlay, "copy layers differ from overlay layers");
}

/// Unmounts a test's overlay when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

#[test]
fn overlay_failure_falls_back_to_copy() {
    if !forge_testkit::require_root("overlay_failure_falls_back_to_copy")
        || !forge_testkit::require_tool("busybox")
        || !forge_testkit::require_tool("mount")
        || !forge_testkit::require_tool("umount")
    {
        return;
    }
    // A store on overlayfs: the kernel rejects an overlay whose upper
    // folder is on overlayfs, so every RUN step falls back to the copy.
    let dir = tempfile::tempdir().expect("temporary folder");
    let folders: Vec<PathBuf> = ["lower", "upper", "work", "merged", "tmp", "context"]
        .iter()
        .map(|name| dir.path().join(name))
        .collect();
    for folder in &folders {
        fs::create_dir_all(folder).expect("folder");
    }
    let merged = dir.path().join("merged");
    run(
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                dir.path().join("lower").display(),
                dir.path().join("upper").display(),
                dir.path().join("work").display()
            ))
            .arg(&merged),
        "mount -t overlay",
    );
    let _mounted = Mounted(merged.clone());

    let busybox = dir.path().join("busybox.tar");
    make_busybox_rootfs(&busybox);
    fs::write(
        dir.path().join("context/Dockerfile"),
        "FROM busybox\n\
         RUN mkdir /data && echo one > /data/one\n\
         RUN echo two > /data/two && test \"$(cat /data/one)\" = one\n",
    )
    .expect("Dockerfile");
    let store = merged.join("store");
    let forge = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
        command
            .arg("--root")
            .arg(&store)
            .env("TMPDIR", dir.path().join("tmp"))
            .env_remove("FORGE_SNAPSHOTTER")
            .env_remove("SOURCE_DATE_EPOCH");
        command
    };
    run(
        forge().arg("import").arg(&busybox).arg("busybox"),
        "forge import",
    );
    let build = run(
        forge()
            .args(["build", "--progress", "plain", "-t", "fallback"])
            .arg(dir.path().join("context")),
        "forge build",
    );
    let log = text(&build.stderr);
    assert_eq!(
        log.matches("overlay is not available (mounting it failed: ")
            .count(),
        1,
        "{log}"
    );
    let unpacked = store.join("forge/unpacked");
    let layers: Vec<PathBuf> = fs::read_dir(&unpacked)
        .expect("unpacked layers")
        .map(|entry| entry.expect("entry").path())
        .collect();
    let with = |path: &str| {
        layers
            .iter()
            .filter(|layer| layer.join(path).exists())
            .count()
    };
    assert_eq!(with("data/one"), 1, "{layers:?}");
    assert_eq!(with("data/two"), 1, "{layers:?}");
}
