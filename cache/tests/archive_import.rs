//! `import_rootfs`: a busybox root file system read back by skopeo and the
//! OCI schemas, config changes, malicious tars, SIGKILL during a large
//! import, and concurrent imports from threads and processes.
//!
//! Child processes are this test binary run again with
//! `FORGE_ARCHIVE_CHILD` set, filtered to the `child_process_entry` test.

#![allow(clippy::print_stderr, reason = "a skipped test says why on stderr")]

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use forge_cache::archive::{ArchiveError, ConfigChange, ImportOptions, import_rootfs};
use forge_cache::layer::{Compression, LayerError};
use forge_cache::store::{ProblemKind, Store};
use forge_testkit::oci_schema::{self, OciSchemas};

/// Writes the busybox root file system tar into `dir` and returns its path.
fn busybox_tar(dir: &Path) -> Option<PathBuf> {
    if !forge_testkit::require_tool("busybox") {
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/busybox-rootfs.sh");
    let out = dir.join("busybox-rootfs.tar");
    let status = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "{} failed", script.display());
    Some(out)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A tar entry of a hand-made archive; names and link targets are written
/// as raw bytes, so `..` and absolute names survive.
struct RawEntry<'a> {
    name: &'a str,
    kind: tar::EntryType,
    link: &'a str,
    data: &'a [u8],
}

fn raw_tar(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_old();
        {
            let old = header.as_old_mut();
            old.name[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
            old.linkname[..entry.link.len()].copy_from_slice(entry.link.as_bytes());
        }
        header.set_entry_type(entry.kind);
        header.set_mode(if entry.kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(entry.data.len() as u64);
        header.set_mtime(0);
        header.set_cksum();
        builder.append(&header, entry.data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> RawEntry<'a> {
    RawEntry {
        name,
        kind: tar::EntryType::Regular,
        link: "",
        data,
    }
}

fn dir(name: &str) -> RawEntry<'_> {
    RawEntry {
        name,
        kind: tar::EntryType::Directory,
        link: "",
        data: b"",
    }
}

fn link<'a>(name: &'a str, kind: tar::EntryType, target: &'a str) -> RawEntry<'a> {
    RawEntry {
        name,
        kind,
        link: target,
        data: b"",
    }
}

fn named(name: &str) -> ImportOptions {
    ImportOptions {
        name: Some(name.to_string()),
        created: Some(1_700_000_000),
        ..ImportOptions::default()
    }
}

#[test]
fn import_busybox_skopeo_and_schemas() {
    let Some(conformance) = forge_testkit::conformance_dir() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let Some(tar) = busybox_tar(work.path()) else {
        return;
    };
    let root = work.path().join("store");
    let store = Store::open(&root).unwrap();
    let options = ImportOptions {
        changes: vec![
            ConfigChange::Cmd(vec!["/bin/sh".into()]),
            ConfigChange::Env(vec![("PATH".into(), "/bin:/sbin".into())]),
        ],
        ..named("busybox:latest")
    };
    let imported = import_rootfs(&store, fs::File::open(&tar).unwrap(), &options).unwrap();

    let resolved = store.resolve("busybox:latest").unwrap();
    assert_eq!(resolved.digest(), imported.manifest.digest());

    let schemas = OciSchemas::load(&conformance.join("oci-schema")).unwrap();
    let manifest = store.read_blob(imported.manifest.digest()).unwrap();
    assert_eq!(
        schemas.validate(oci_schema::MANIFEST, &manifest),
        Ok(()),
        "manifest"
    );
    let config = store.read_blob(&imported.image_id).unwrap();
    assert_eq!(
        schemas.validate(oci_schema::CONFIG, &config),
        Ok(()),
        "config"
    );
    let manifest_value: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layer_descriptor = serde_json::to_vec(&manifest_value["layers"][0]).unwrap();
    assert_eq!(
        schemas.validate(oci_schema::DESCRIPTOR, &layer_descriptor),
        Ok(()),
        "layer descriptor"
    );
    assert_eq!(
        manifest_value["layers"][0]["digest"],
        imported.layer.digest.to_string()
    );

    let config_value: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(
        config_value["config"]["Cmd"],
        serde_json::json!(["/bin/sh"])
    );
    assert_eq!(
        config_value["config"]["Env"],
        serde_json::json!(["PATH=/bin:/sbin"])
    );
    assert_eq!(
        config_value["rootfs"]["diff_ids"][0],
        imported.layer.diff_id.to_string()
    );
    assert_eq!(config_value["os"], "linux");
    assert_eq!(config_value["architecture"], "amd64");
    assert_eq!(config_value["created"], "2023-11-14T22:13:20Z");

    let unpacked = store.unpacked_dir(&imported.layer.diff_id).unwrap();
    assert!(unpacked.join("bin/busybox").is_file());
    assert!(
        fs::symlink_metadata(unpacked.join("bin/sh"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    if forge_testkit::require_tool("skopeo") {
        let output = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:busybox:latest", root.display()))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "skopeo inspect failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let inspect: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            inspect["Layers"],
            serde_json::json!([imported.layer.digest.to_string()])
        );
        assert_eq!(inspect["Os"], "linux");
        assert_eq!(inspect["Architecture"], "amd64");
    }
}

#[test]
fn import_detects_compression() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let tar = raw_tar(&[dir("etc/"), file("etc/hostname", b"box\n")]);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar).unwrap();
    let gzip = gzip.finish().unwrap();
    let zstd = zstd::encode_all(&tar[..], 3).unwrap();

    let plain = import_rootfs(&store, &tar[..], &named("plain:v1")).unwrap();
    let from_gzip = import_rootfs(&store, &gzip[..], &named("gzip:v1")).unwrap();
    let from_zstd = import_rootfs(&store, &zstd[..], &named("zstd:v1")).unwrap();
    assert_eq!(plain.layer.diff_id, from_gzip.layer.diff_id);
    assert_eq!(plain.layer.diff_id, from_zstd.layer.diff_id);
    assert_eq!(plain.manifest.digest(), from_gzip.manifest.digest());
}

#[test]
fn import_without_name_keeps_unnamed_image() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let tar = raw_tar(&[dir("etc/"), file("etc/hostname", b"box\n")]);

    let imported = import_rootfs(&store, &tar[..], &ImportOptions::default()).unwrap();

    assert!(store.list_names().unwrap().is_empty());
    let unnamed = store.list_unnamed().unwrap();
    assert_eq!(unnamed.len(), 1, "{unnamed:?}");
    assert_eq!(unnamed[0].digest(), imported.manifest.digest());
    let short_id = &imported.image_id.digest()[..12];
    let resolved = store.resolve(short_id).unwrap();
    assert_eq!(resolved.digest(), imported.manifest.digest());
    let by_id = store.resolve(imported.image_id.as_ref()).unwrap();
    assert_eq!(by_id.digest(), imported.manifest.digest());
}

#[test]
fn import_with_zstd_layer_and_platform() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let tar = raw_tar(&[file("hello", b"hi\n")]);
    let options = ImportOptions {
        compression: Compression::Zstd,
        platform: forge_cache::archive::Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        },
        comment: Some("from a test".into()),
        ..named("zstd-arm:v1")
    };
    let imported = import_rootfs(&store, &tar[..], &options).unwrap();
    assert_eq!(imported.layer.media_type, Compression::Zstd.media_type());
    let config: serde_json::Value = store.get_json(&imported.image_id).unwrap();
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
    assert_eq!(config["history"][0]["comment"], "from a test");
}

#[test]
fn import_bad_change_stores_nothing() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let tar = raw_tar(&[file("hello", b"hi\n")]);
    let options = ImportOptions {
        changes: vec![ConfigChange::Expose(vec!["80/icmp".into()])],
        ..named("bad:v1")
    };
    let error = import_rootfs(&store, &tar[..], &options).unwrap_err();
    assert!(
        matches!(error, ArchiveError::InvalidChange { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("icmp"), "{error}");
    assert!(store.list_names().unwrap().is_empty());
}

/// Imports `tar` and expects a failure whose message names `entry`; no
/// name may be set and the store must hold only garbage that prune removes.
fn assert_import_rejected(tar: &[u8], entry: &str) {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let error = import_rootfs(&store, tar, &named("evil:v1")).unwrap_err();
    let message = error_chain(&error);
    assert!(matches!(error, ArchiveError::Import { .. }), "{message}");
    assert!(message.contains(entry), "{message} does not name {entry}");
    assert!(store.list_names().unwrap().is_empty());
    let report = store.check(false).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    // The store root is inside `work`; `..` from the work folder is `forge/`.
    assert!(!work.path().join("store/forge/x").exists());
    assert!(!work.path().join("store/forge/tmp/x").exists());
}

#[test]
fn import_rejects_dot_dot_entry() {
    let tar = raw_tar(&[file("ok", b"1"), file("../x", b"evil")]);
    assert_import_rejected(&tar, "../x");
}

#[test]
fn import_rejects_hard_link_outside() {
    let tar = raw_tar(&[link("passwd", tar::EntryType::Link, "/etc/passwd")]);
    assert_import_rejected(&tar, "passwd");
    let tar = raw_tar(&[link("shadow", tar::EntryType::Link, "../../../etc/shadow")]);
    assert_import_rejected(&tar, "shadow");
}

#[test]
fn import_keeps_absolute_name_inside() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let marker = format!("forge-archive-test-{}", std::process::id());
    let name = format!("/tmp/{marker}");
    let tar = raw_tar(&[file(&name, b"inside")]);
    let imported = import_rootfs(&store, &tar[..], &named("abs:v1")).unwrap();

    assert!(!Path::new(&name).exists(), "{name} written on the host");
    let unpacked = store.unpacked_dir(&imported.layer.diff_id).unwrap();
    assert_eq!(
        fs::read(unpacked.join("tmp").join(&marker)).unwrap(),
        b"inside"
    );
    let names = layer_names(&store, &imported.layer);
    assert!(names.contains(&format!("tmp/{marker}")), "{names:?}");
}

#[test]
fn import_keeps_symlink_writes_inside() {
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let target = outside.to_str().unwrap();
    let tar = raw_tar(&[
        link("escape", tar::EntryType::Symlink, target),
        file("escape/evil", b"evil"),
        link("up", tar::EntryType::Symlink, "../../../../../../.."),
        file("up/evil2", b"evil"),
    ]);
    // Either outcome keeps the host safe: the writes land inside the tree or fail.
    let result = import_rootfs(&store, &tar[..], &named("links:v1"));
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!work.path().join("evil2").exists());
    assert!(!Path::new("/evil2").exists());
    if let Ok(imported) = result {
        let names = layer_names(&store, &imported.layer);
        assert!(names.contains(&"evil2".to_string()), "{names:?}");
    }
}

/// Lists the entry names of a stored layer.
fn layer_names(store: &Store, layer: &forge_cache::layer::LayerDescriptor) -> Vec<String> {
    let blob = store.open_blob(&layer.digest).unwrap();
    let stream = forge_cache::layer::decompress(Box::new(blob)).unwrap();
    let mut archive = tar::Archive::new(stream);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            String::from_utf8_lossy(&entry.path_bytes())
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

#[test]
fn import_truncated_gzip_fails() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let tar = raw_tar(&[file("data", &[7u8; 100_000])]);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar).unwrap();
    let gzip = gzip.finish().unwrap();
    let truncated = &gzip[..gzip.len() / 2];
    let error = import_rootfs(&store, truncated, &named("cut:v1")).unwrap_err();
    assert!(
        matches!(
            error,
            ArchiveError::Import {
                source: LayerError::InvalidTar { .. } | LayerError::Read { .. }
            }
        ),
        "{}",
        error_chain(&error)
    );
    assert!(store.list_names().unwrap().is_empty());
}

/// A tar stream of `files` files of `file_size` pseudo-random bytes each,
/// generated while it is read.
struct GeneratedTar {
    files: usize,
    file_size: u64,
    index: usize,
    /// Bytes of the current header, data and padding still to produce.
    pending: Vec<u8>,
    data_left: u64,
    state: u64,
    finished: bool,
}

impl GeneratedTar {
    fn new(files: usize, file_size: u64) -> Self {
        GeneratedTar {
            files,
            file_size,
            index: 0,
            pending: Vec::new(),
            data_left: 0,
            state: 0x9e37_79b9_7f4a_7c15,
            finished: false,
        }
    }

    fn next_header(&mut self) {
        if self.index == self.files {
            self.pending = vec![0; 1024];
            self.finished = true;
            return;
        }
        let mut header = tar::Header::new_ustar();
        header
            .set_path(format!("data/file-{}", self.index))
            .unwrap();
        header.set_size(self.file_size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        self.pending = header.as_bytes().to_vec();
        self.data_left = self.file_size;
        self.index += 1;
    }
}

impl Read for GeneratedTar {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.pending.is_empty() {
                let count = self.pending.len().min(buf.len());
                buf[..count].copy_from_slice(&self.pending[..count]);
                self.pending.drain(..count);
                return Ok(count);
            }
            if self.data_left > 0 {
                let count = (self.data_left.min(buf.len() as u64)) as usize;
                for chunk in buf[..count].chunks_mut(8) {
                    // xorshift64: cheap bytes that compress poorly.
                    self.state ^= self.state << 13;
                    self.state ^= self.state >> 7;
                    self.state ^= self.state << 17;
                    let bytes = self.state.to_le_bytes();
                    chunk.copy_from_slice(&bytes[..chunk.len()]);
                }
                self.data_left -= count as u64;
                if self.data_left == 0 {
                    let padding = (512 - self.file_size % 512) % 512;
                    self.pending = vec![0; padding as usize];
                }
                return Ok(count);
            }
            if self.finished {
                return Ok(0);
            }
            self.next_header();
        }
    }
}

/// Runs the child modes of this binary; a no-op in a normal test run.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var("FORGE_ARCHIVE_CHILD") else {
        return;
    };
    let root = PathBuf::from(std::env::var("FORGE_ARCHIVE_ROOT").unwrap());
    let store = Store::open(&root).unwrap();
    match mode.as_str() {
        "large" => {
            // 16 files of 64 MiB: 1 GiB of tar, which takes several
            // seconds, so that every kill of the test lands mid-import.
            let tar = GeneratedTar::new(16, 64 * 1024 * 1024);
            import_rootfs(&store, tar, &named("large:v1")).unwrap();
        }
        name => {
            let tar = GeneratedTar::new(3, 2 * 1024 * 1024);
            import_rootfs(&store, tar, &named(name)).unwrap();
        }
    }
}

fn child(root: &Path, mode: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FORGE_ARCHIVE_CHILD", mode)
        .env("FORGE_ARCHIVE_ROOT", root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[test]
fn import_killed_leaves_only_temp_files() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let store = Store::open(&root).unwrap();

    for delay in [200, 500, 1000] {
        let mut process = child(&root, "large").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let finished = process.try_wait().unwrap();
        assert!(
            finished.is_none(),
            "the large import ended before the kill after {delay} ms: {finished:?}"
        );
        // SIGKILL, so the importer gets no chance to clean up.
        process.kill().unwrap();
        process.wait().unwrap();

        let report = store.check(false).unwrap();
        let others: Vec<_> = report
            .problems
            .iter()
            .filter(|problem| problem.kind != ProblemKind::TempFile)
            .collect();
        assert!(others.is_empty(), "after {delay} ms: {others:?}");
        assert!(
            store.list_names().unwrap().is_empty(),
            "a name was set by a killed import"
        );

        let repaired = store.check(true).unwrap();
        assert!(repaired.problems.iter().all(|problem| problem.repaired));
        assert!(store.check(false).unwrap().is_clean());
    }

    let tar = raw_tar(&[file("after", b"crash")]);
    import_rootfs(&store, &tar[..], &named("after:v1")).unwrap();
    assert!(store.resolve("after:v1").is_ok());
    assert!(store.check(false).unwrap().is_clean());
}

#[test]
fn concurrent_imports_in_threads() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    std::thread::scope(|scope| {
        let handles: Vec<_> = ["one:v1", "two:v1"]
            .into_iter()
            .map(|name| {
                let store = store.clone();
                scope.spawn(move || {
                    let tar = GeneratedTar::new(2, 1024 * 1024);
                    import_rootfs(&store, tar, &named(name))
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap().unwrap();
        }
    });
    assert!(store.resolve("one:v1").is_ok());
    assert!(store.resolve("two:v1").is_ok());
    assert!(store.check(false).unwrap().is_clean());
}

#[test]
fn concurrent_imports_in_processes() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let store = Store::open(&root).unwrap();
    let first = child(&root, "first:v1").spawn().unwrap();
    let second = child(&root, "second:v1").spawn().unwrap();
    for process in [first, second] {
        let output = process.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "child import failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let first = store.resolve("first:v1").unwrap();
    let second = store.resolve("second:v1").unwrap();
    // Same content, so both names reach one manifest.
    assert_eq!(first.digest(), second.digest());
    assert!(store.check(false).unwrap().is_clean());
}

#[test]
fn import_is_reproducible_across_time() {
    let work = tempfile::tempdir().unwrap();
    let first_store = Store::open(&work.path().join("first")).unwrap();
    let second_store = Store::open(&work.path().join("second")).unwrap();

    let first = import_rootfs(&first_store, GeneratedTar::new(2, 4096), &named("same:v1")).unwrap();
    // Folders made during extraction get the current time as mtime; the
    // second import runs in a later second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second =
        import_rootfs(&second_store, GeneratedTar::new(2, 4096), &named("same:v1")).unwrap();

    assert_eq!(first.layer.diff_id, second.layer.diff_id);
    assert_eq!(first.manifest.digest(), second.manifest.digest());
}

/// Builds a tar whose entries carry the given mtimes and modes; names are
/// written as given, so parents can be left out.
fn timed_tar(entries: &[(&str, tar::EntryType, u32, u64)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for &(name, kind, mode, mtime) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).unwrap();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_mtime(mtime);
        let data: &[u8] = if kind == tar::EntryType::Regular {
            b"data\n"
        } else {
            b""
        };
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Returns mode, uid, gid and mtime of each entry of a stored layer, by
/// name without the trailing slash.
fn layer_metadata(
    store: &Store,
    layer: &forge_cache::layer::LayerDescriptor,
) -> std::collections::BTreeMap<String, (u32, u64, u64, u64)> {
    let blob = store.open_blob(&layer.digest).unwrap();
    let stream = forge_cache::layer::decompress(Box::new(blob)).unwrap();
    let mut archive = tar::Archive::new(stream);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let header = entry.header();
            let name = String::from_utf8_lossy(&entry.path_bytes())
                .trim_end_matches('/')
                .to_string();
            let metadata = (
                header.mode().unwrap() & 0o7777,
                header.uid().unwrap(),
                header.gid().unwrap(),
                header.mtime().unwrap(),
            );
            (name, metadata)
        })
        .collect()
}

#[test]
fn import_created_parents_depend_on_content() {
    let tar = timed_tar(&[
        ("a/b/old.txt", tar::EntryType::Regular, 0o644, 1_500_000_000),
        ("a/b/new.txt", tar::EntryType::Regular, 0o600, 1_600_000_000),
        ("x/y.txt", tar::EntryType::Regular, 0o644, 1_400_000_000),
        ("x/", tar::EntryType::Directory, 0o700, 1_300_000_000),
    ]);
    let work = tempfile::tempdir().unwrap();
    let first_store = Store::open(&work.path().join("first")).unwrap();
    let second_store = Store::open(&work.path().join("second")).unwrap();
    // A creation time after now caps no mtime, so a parent made with the
    // extraction time would show in the layer.
    let options = ImportOptions {
        created: Some(4_000_000_000),
        ..named("parents:v1")
    };

    let first = import_rootfs(&first_store, &tar[..], &options).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let second = import_rootfs(&second_store, &tar[..], &options).unwrap();
    assert_eq!(first.layer.diff_id, second.layer.diff_id);
    assert_eq!(first.image_id, second.image_id);

    let metadata = layer_metadata(&first_store, &first.layer);
    // The parents the tar lacks get mode 0755, owner 0:0 (without root the
    // import records the caller as root) and the newest entry mtime.
    for parent in ["a", "a/b"] {
        let (mode, uid, gid, mtime) = metadata[parent];
        assert_eq!(mode, 0o755, "{parent}");
        assert_eq!((uid, gid), (0, 0), "{parent}");
        assert_eq!(mtime, 1_600_000_000, "{parent}");
    }
    // A parent that a later entry lists keeps that entry's metadata.
    assert_eq!(metadata["x"].0, 0o700);
    assert_eq!(metadata["x"].3, 1_300_000_000);

    // Without a creation time the import time caps mtimes; the parents
    // still get the same mtime.
    let third_store = Store::open(&work.path().join("third")).unwrap();
    let third = import_rootfs(&third_store, &tar[..], &named("parents:v1")).unwrap();
    let fourth_store = Store::open(&work.path().join("fourth")).unwrap();
    let untimed = ImportOptions {
        created: None,
        ..named("parents:v1")
    };
    std::thread::sleep(Duration::from_millis(1100));
    let fourth = import_rootfs(&fourth_store, &tar[..], &untimed).unwrap();
    let fifth_store = Store::open(&work.path().join("fifth")).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let fifth = import_rootfs(&fifth_store, &tar[..], &untimed).unwrap();
    assert_eq!(fourth.layer.diff_id, fifth.layer.diff_id);
    assert_eq!(third.layer.diff_id, first.layer.diff_id);
}
