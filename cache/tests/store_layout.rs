//! Store root layout and blob storage: what `open` creates, how blobs are
//! committed, and that nothing partial or corrupt is ever served.

use forge_testkit::oci_schema;

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use forge_cache::store::{Store, StoreError};
use oci_spec::image::Digest;

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn temp_entries(root: &Path) -> Vec<String> {
    entries(&root.join("forge/tmp"))
}

fn blob_files(root: &Path) -> Vec<String> {
    entries(&root.join("blobs/sha256"))
}

#[test]
fn open_creates_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("new").join("store");
    let store = Store::open(&root).unwrap();

    assert_eq!(store.root(), root);
    let layout: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout, serde_json::json!({"imageLayoutVersion": "1.0.0"}));
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"], serde_json::json!([]));
    assert!(root.join("blobs/sha256").is_dir());
    assert!(root.join("forge/tmp").is_dir());
}

#[test]
fn open_layout_matches_oci_schemas() {
    let Some(conformance) = forge_testkit::conformance_dir() else {
        return;
    };
    let schemas = oci_schema::OciSchemas::load(&conformance.join("oci-schema")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let manifest = store.put_blob(br#"{"schemaVersion":2}"#).unwrap();
    store
        .set_name(
            "app:latest",
            &manifest.descriptor(oci_spec::image::MediaType::ImageManifest),
        )
        .unwrap();

    let layout = fs::read(dir.path().join("oci-layout")).unwrap();
    assert_eq!(schemas.validate(oci_schema::LAYOUT, &layout), Ok(()));
    let index = fs::read(dir.path().join("index.json")).unwrap();
    assert_eq!(schemas.validate(oci_schema::INDEX, &index), Ok(()));
}

#[test]
fn open_twice_keeps_content() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path()).unwrap();
    let info = first.put_blob(b"kept").unwrap();
    let second = Store::open(dir.path()).unwrap();
    assert!(second.has_blob(&info.digest));
}

#[test]
fn open_unwritable_root_names_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    fs::write(&blocker, "x").unwrap();
    let root = blocker.join("store");
    let error = Store::open(&root).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&*root.to_string_lossy()), "{message}");
    assert!(
        std::error::Error::source(&error).is_some(),
        "cause missing: {message}"
    );
}

#[test]
fn blob_commit_with_expected_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let expected: Digest =
        "sha256:b5bb9d8014a0f9b1d61e21e796d78dccdf1352f23cd32812f4850b878ae4944c"
            .parse()
            .unwrap();

    let mut writer = store.blob_writer().unwrap();
    writer.write_all(b"foo\n").unwrap();
    assert_eq!(writer.size(), 4);
    let info = writer.commit(Some(&expected)).unwrap();

    assert_eq!(info.digest, expected);
    assert_eq!(info.size, 4);
    assert_eq!(store.blob_size(&expected).unwrap(), 4);
    assert_eq!(blob_files(dir.path()), vec![expected.digest().to_string()]);
    assert!(temp_entries(dir.path()).is_empty());
}

#[test]
fn blob_wrong_digest_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let wrong: Digest = format!("sha256:{}", "0".repeat(64)).parse().unwrap();

    let mut writer = store.blob_writer().unwrap();
    writer.write_all(b"some content").unwrap();
    let error = writer.commit(Some(&wrong)).unwrap_err();

    assert!(
        matches!(error, StoreError::DigestMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().contains(&wrong.to_string()), "{error}");
    assert!(blob_files(dir.path()).is_empty());
    assert!(temp_entries(dir.path()).is_empty());
    assert!(!store.has_blob(&wrong));
}

#[test]
fn blob_dropped_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut writer = store.blob_writer().unwrap();
    writer.write_all(&[7u8; 100_000]).unwrap();
    assert_eq!(
        temp_entries(dir.path()).len(),
        1,
        "writer should use a temporary file"
    );
    drop(writer);

    assert!(temp_entries(dir.path()).is_empty());
    assert!(blob_files(dir.path()).is_empty());
}

#[test]
fn blob_commit_of_existing_content() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = store.put_blob(b"same").unwrap();
    let second = store.put_blob(b"same").unwrap();
    assert_eq!(first, second);
    assert_eq!(blob_files(dir.path()).len(), 1);
    assert!(temp_entries(dir.path()).is_empty());
}

#[test]
fn blob_read_of_corrupted_content_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let info = store.put_blob(b"original content").unwrap();
    let path = store.blob_path(&info.digest).unwrap();
    fs::write(&path, b"tampered content").unwrap();

    let mut reader = store.open_blob(&info.digest).unwrap();
    let error = reader.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert!(error.to_string().contains(info.digest.digest()), "{error}");

    let error = store.read_blob(&info.digest).unwrap_err();
    assert!(matches!(error, StoreError::BlobCorrupt { .. }), "{error}");
}

#[test]
fn blob_read_of_truncated_content_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let info = store.put_blob(&[1u8; 4096]).unwrap();
    let path = store.blob_path(&info.digest).unwrap();
    fs::write(&path, [1u8; 100]).unwrap();

    let error = store.read_blob(&info.digest).unwrap_err();
    assert!(matches!(error, StoreError::BlobCorrupt { .. }), "{error}");
}

#[test]
fn blob_missing_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
    assert!(!store.has_blob(&digest));
    let error = store.open_blob(&digest).unwrap_err();
    assert!(matches!(error, StoreError::BlobNotFound { .. }), "{error}");
    assert!(error.to_string().contains(&digest.to_string()), "{error}");
    let error = store.blob_size(&digest).unwrap_err();
    assert!(matches!(error, StoreError::BlobNotFound { .. }), "{error}");
}

#[test]
fn json_helpers_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let value = serde_json::json!({"architecture": "amd64", "os": "linux"});
    let descriptor = store
        .put_json(&value, oci_spec::image::MediaType::ImageConfig)
        .unwrap();
    let stored = fs::read(store.blob_path(descriptor.digest()).unwrap()).unwrap();
    assert_eq!(descriptor.size(), stored.len() as u64);
    let back: serde_json::Value = store.get_json(descriptor.digest()).unwrap();
    assert_eq!(back, value);
}
