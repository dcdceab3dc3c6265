//! Layer size records under `forge/layer-sizes/`: written when a layer is
//! imported or unpacked, equal to the length that decompressing the blob
//! gives, removed by `prune` with their layer, and accepted by `check`.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use forge_cache::archive::{ImportOptions, import_rootfs};
use forge_cache::store::{ProblemKind, PruneOptions, Store};
use oci_spec::image::{Descriptor, Digest, MediaType};
use sha2::{Digest as _, Sha256};

fn sha256(bytes: &[u8]) -> Digest {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
        .parse()
        .unwrap()
}

/// Returns a plain tar with one file of `size` zero bytes.
fn tar_of_zeros(name: &str, size: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(size as u64);
    header.set_mtime(0);
    builder
        .append_data(&mut header, name, &vec![0u8; size][..])
        .unwrap();
    builder.into_inner().unwrap()
}

/// A named one-layer image with a gzip layer blob.
struct Image {
    layer: Descriptor,
    diff_id: Digest,
    tar_size: u64,
}

fn put_image(store: &Store, name: &str, file_size: usize) -> Image {
    let tar = tar_of_zeros("data", file_size);
    let diff_id = sha256(&tar);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&tar).unwrap();
    let layer = store
        .put_blob(&encoder.finish().unwrap())
        .unwrap()
        .descriptor(MediaType::ImageLayerGzip);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
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
    Image {
        layer,
        diff_id,
        tar_size: tar.len() as u64,
    }
}

fn record_path(store: &Store, diff_id: &Digest) -> PathBuf {
    store
        .root()
        .join("forge/layer-sizes")
        .join(diff_id.digest())
}

#[test]
fn unpacking_records_tar_length() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, "zeros:latest", 1_000_000);
    assert!(image.layer.size() < 100_000, "{}", image.layer.size());
    assert_eq!(store.recorded_layer_size(&image.diff_id), None);

    store.ensure_unpacked(&image.layer, &image.diff_id).unwrap();
    assert_eq!(
        store.recorded_layer_size(&image.diff_id),
        Some(image.tar_size)
    );
    assert_eq!(
        fs::read_to_string(record_path(&store, &image.diff_id)).unwrap(),
        format!("{}\n", image.tar_size)
    );
}

#[test]
fn import_records_size_that_blob_gives() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let tar = tar_of_zeros("big", 2_000_000);
    let options = ImportOptions {
        name: Some("imported:latest".into()),
        created: Some(0),
        ..ImportOptions::default()
    };
    let imported = import_rootfs(&store, &tar[..], &options).unwrap();
    let layer = &imported.layer;
    assert!(layer.uncompressed_size > 2_000_000);
    assert!(layer.size < layer.uncompressed_size / 10);
    assert_eq!(
        store.recorded_layer_size(&layer.diff_id),
        Some(layer.uncompressed_size)
    );

    // Without the record, the size measured from the blob is the same.
    fs::remove_file(record_path(&store, &layer.diff_id)).unwrap();
    let descriptor = Descriptor::new(layer.media_type.clone(), layer.size, layer.digest.clone());
    assert_eq!(
        store.layer_size(&descriptor, &layer.diff_id).unwrap(),
        layer.uncompressed_size
    );
}

#[test]
fn prune_removes_sizes_of_unreached_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kept = put_image(&store, "kept:latest", 1000);
    let dropped = put_image(&store, "dropped:latest", 2000);
    for image in [&kept, &dropped] {
        assert_eq!(
            store.layer_size(&image.layer, &image.diff_id).unwrap(),
            image.tar_size
        );
    }
    let orphan = sha256(b"a layer this store never had");
    store.record_layer_size(&orphan, 42);
    store.remove_name("dropped:latest").unwrap();

    let dry_run = PruneOptions {
        dry_run: true,
        ..PruneOptions::default()
    };
    let report = store.prune(&dry_run).unwrap();
    assert_eq!(report.layer_sizes_removed, 2);
    assert!(record_path(&store, &orphan).exists());

    let report = store.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.layer_sizes_removed, 2);
    assert!(!record_path(&store, &orphan).exists());
    assert!(!record_path(&store, &dropped.diff_id).exists());
    assert_eq!(
        store.recorded_layer_size(&kept.diff_id),
        Some(kept.tar_size)
    );
}

#[test]
fn check_accepts_sizes_and_flags_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, "zeros:latest", 1000);
    store.layer_size(&image.layer, &image.diff_id).unwrap();
    store.record_layer_size(&sha256(b"a layer no image lists"), 7);
    let report = store.check(false).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);

    let sizes = dir.path().join("forge/layer-sizes");
    let stray = sizes.join("notes.txt");
    fs::write(&stray, "12\n").unwrap();
    let damaged = record_path(&store, &sha256(b"damaged"));
    fs::write(&damaged, "twelve\n").unwrap();

    let report = store.check(false).unwrap();
    let flagged: Vec<&str> = report
        .of_kind(ProblemKind::StrayFile)
        .map(|problem| problem.subject.as_str())
        .collect();
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(flagged.contains(&stray.to_str().unwrap()), "{flagged:?}");
    assert!(flagged.contains(&damaged.to_str().unwrap()), "{flagged:?}");

    let report = store.check(true).unwrap();
    assert!(report.problems.iter().all(|problem| problem.repaired));
    assert!(!stray.exists());
    assert!(!damaged.exists());
    assert_eq!(
        store.recorded_layer_size(&image.diff_id),
        Some(image.tar_size)
    );
}
