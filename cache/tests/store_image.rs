//! A tiny image written by hand (a gzip tar layer, a config, a manifest and
//! a name) read back by the store's unpacker and by skopeo and umoci.
//!
//! The skopeo and umoci tests skip when the tool is missing, except when
//! `CI` is set: then they fail.

#![allow(clippy::print_stderr, reason = "a skipped test says why on stderr")]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use forge_cache::store::{Store, StoreError};
use oci_spec::image::{Descriptor, Digest, MediaType};
use sha2::{Digest as _, Sha256};

struct TinyImage {
    manifest: Descriptor,
    layer: Descriptor,
    diff_id: Digest,
    config: Descriptor,
}

fn sha256(bytes: &[u8]) -> Digest {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
        .parse()
        .unwrap()
}

/// Builds an uncompressed tar with `etc/` and `etc/greeting`.
fn layer_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_mtime(0);
    builder
        .append_data(&mut header, "etc/", std::io::empty())
        .unwrap();

    let content = b"hello from forge\n";
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(content.len() as u64);
    header.set_mtime(0);
    builder
        .append_data(&mut header, "etc/greeting", &content[..])
        .unwrap();
    builder.into_inner().unwrap()
}

fn put_tiny_image(store: &Store, name: &str) -> TinyImage {
    let tar = layer_tar();
    let diff_id = sha256(&tar);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&tar).unwrap();
    let gzip = encoder.finish().unwrap();
    let layer = store
        .put_blob(&gzip)
        .unwrap()
        .descriptor(MediaType::ImageLayerGzip);

    let config = serde_json::json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "hand-made test layer"}],
    });
    let config = store.put_json(&config, MediaType::ImageConfig).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    });
    let manifest = store.put_json(&manifest, MediaType::ImageManifest).unwrap();
    store.set_name(name, &manifest).unwrap();
    TinyImage {
        manifest,
        layer,
        diff_id,
        config,
    }
}

fn run(command: &mut Command) -> Vec<u8> {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn skopeo_inspects_named_image() {
    if !forge_testkit::require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_tiny_image(&store, "tiny:latest");
    let reference = format!("oci:{}:tiny:latest", dir.path().display());

    let inspect: serde_json::Value =
        serde_json::from_slice(&run(Command::new("skopeo").args(["inspect", &reference]))).unwrap();
    assert_eq!(inspect["Digest"], image.manifest.digest().to_string());
    assert_eq!(
        inspect["Layers"],
        serde_json::json!([image.layer.digest().to_string()])
    );
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");

    let raw = run(Command::new("skopeo").args(["inspect", "--raw", &reference]));
    assert_eq!(raw, store.read_blob(image.manifest.digest()).unwrap());

    let config: serde_json::Value = serde_json::from_slice(&run(
        Command::new("skopeo").args(["inspect", "--config", &reference])
    ))
    .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([image.diff_id.to_string()])
    );
}

#[test]
fn skopeo_copies_image_out_of_store() {
    if !forge_testkit::require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_tiny_image(&store, "tiny:latest");
    let copy = tempfile::tempdir().unwrap();
    let source = format!("oci:{}:tiny:latest", dir.path().display());
    let destination = format!("dir:{}", copy.path().display());

    run(Command::new("skopeo").args(["copy", "--quiet", &source, &destination]));
    let layer = fs::read(copy.path().join(image.layer.digest().digest())).unwrap();
    assert_eq!(layer, store.read_blob(image.layer.digest()).unwrap());
}

#[test]
fn umoci_lists_and_unpacks_image() {
    if !forge_testkit::require_tool("umoci") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    put_tiny_image(&store, "tiny");
    put_tiny_image(&store, "other");

    let listing = run(Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(dir.path()));
    let mut names: Vec<String> = String::from_utf8(listing)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    assert_eq!(names, vec!["other".to_string(), "tiny".to_string()]);

    let bundle = tempfile::tempdir().unwrap();
    let bundle_path = bundle.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:tiny", dir.path().display()))
        .arg(&bundle_path));
    let greeting = fs::read_to_string(bundle_path.join("rootfs/etc/greeting")).unwrap();
    assert_eq!(greeting, "hello from forge\n");
}

#[test]
fn ensure_unpacked_extracts_layer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_tiny_image(&store, "tiny:latest");
    assert_eq!(store.unpacked_dir(&image.diff_id), None);

    let path = store.ensure_unpacked(&image.layer, &image.diff_id).unwrap();
    assert_eq!(
        fs::read_to_string(path.join("etc/greeting")).unwrap(),
        "hello from forge\n"
    );
    assert_eq!(store.unpacked_dir(&image.diff_id), Some(path.clone()));
    assert!(path.starts_with(dir.path().join("forge/unpacked")));
    assert_eq!(
        fs::read_dir(dir.path().join("forge/tmp")).unwrap().count(),
        0
    );

    let again = store.ensure_unpacked(&image.layer, &image.diff_id).unwrap();
    assert_eq!(again, path);
}

#[test]
fn ensure_unpacked_from_threads_extracts_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_tiny_image(&store, "tiny:latest");

    let paths: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| store.ensure_unpacked(&image.layer, &image.diff_id).unwrap()))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    assert!(paths.windows(2).all(|pair| pair[0] == pair[1]), "{paths:?}");
    assert_eq!(
        fs::read_dir(dir.path().join("forge/unpacked"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(
        fs::read_dir(dir.path().join("forge/tmp")).unwrap().count(),
        0
    );
}

#[test]
fn ensure_unpacked_rejects_wrong_diff_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_tiny_image(&store, "tiny:latest");
    let wrong: Digest = format!("sha256:{}", "e".repeat(64)).parse().unwrap();

    let error = store.ensure_unpacked(&image.layer, &wrong).unwrap_err();
    assert!(
        matches!(error, StoreError::DiffIdMismatch { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains(&image.diff_id.to_string()),
        "{error}"
    );
    assert_eq!(store.unpacked_dir(&wrong), None);
    assert_eq!(
        fs::read_dir(dir.path().join("forge/tmp")).unwrap().count(),
        0
    );
}

#[test]
fn ensure_unpacked_rejects_corrupt_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_tiny_image(&store, "tiny:latest");
    let path = store.blob_path(image.layer.digest()).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, bytes).unwrap();

    assert!(store.ensure_unpacked(&image.layer, &image.diff_id).is_err());
    assert_eq!(store.unpacked_dir(&image.diff_id), None);
    assert_eq!(
        fs::read_dir(dir.path().join("forge/tmp")).unwrap().count(),
        0
    );
}

#[test]
fn prune_keeps_unpacked_layer_of_named_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_tiny_image(&store, "tiny:latest");
    let unpacked = store.ensure_unpacked(&image.layer, &image.diff_id).unwrap();

    let report = store.prune(&Default::default()).unwrap();
    assert_eq!(report.unpacked_removed, 0);
    assert!(unpacked.exists());
    assert!(store.has_blob(image.config.digest()));

    store.remove_name("tiny:latest").unwrap();
    let report = store.prune(&Default::default()).unwrap();
    assert_eq!(report.unpacked_removed, 1);
    assert_eq!(report.blobs_removed, 3);
    assert!(!unpacked.exists());
    assert!(
        !Path::new(
            &dir.path()
                .join("forge/locks")
                .join(format!("unpack-{}.lock", image.diff_id.digest()))
        )
        .exists()
    );
}
