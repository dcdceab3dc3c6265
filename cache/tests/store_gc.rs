//! `check` and `prune`: finding and repairing damage, and removing what no
//! name or step entry reaches.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use forge_cache::store::{ProblemKind, PruneOptions, StepEntry, Store};
use oci_spec::image::{Descriptor, Digest, MediaType};

/// The digests of an image written by [`put_image`].
struct Image {
    manifest: Descriptor,
    config: Descriptor,
    layer: Descriptor,
    diff_id: Digest,
}

fn hex_digest(fill: char) -> Digest {
    format!("sha256:{}", fill.to_string().repeat(64))
        .parse()
        .unwrap()
}

/// Stores an image with one layer of `layer_bytes`; layers are not parsed
/// by the store, so any bytes do.
fn put_image(store: &Store, layer_bytes: &[u8], diff_fill: char, manifest_type: &str) -> Image {
    let layer = store
        .put_blob(layer_bytes)
        .unwrap()
        .descriptor(MediaType::ImageLayerGzip);
    let diff_id = hex_digest(diff_fill);
    let config = store
        .put_json(
            &serde_json::json!({
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
            }),
            MediaType::ImageConfig,
        )
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config,
        "layers": [layer],
    });
    let manifest = store
        .put_json(&manifest, MediaType::from(manifest_type))
        .unwrap();
    Image {
        manifest,
        config,
        layer,
        diff_id,
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn blob_count(root: &Path) -> usize {
    fs::read_dir(root.join("blobs/sha256")).unwrap().count()
}

fn make_unpacked(store: &Store, diff_id: &Digest) -> std::path::PathBuf {
    let path = store.root().join("forge/unpacked").join(diff_id.digest());
    fs::create_dir_all(path.join("etc")).unwrap();
    fs::write(path.join("etc/hostname"), b"box\n").unwrap();
    path
}

fn age(path: &Path, seconds: u64) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(seconds))
        .unwrap();
}

#[test]
fn check_clean_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, b"layer", '1', OCI_MANIFEST);
    store.set_name("app:latest", &image.manifest).unwrap();

    let report = store.check(false).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.blobs_checked, 3);
    let expected_bytes = image.manifest.size() + image.config.size() + image.layer.size();
    assert_eq!(report.bytes_checked, expected_bytes);
}

#[test]
fn check_finds_truncated_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let info = store.put_blob(&[5u8; 1000]).unwrap();
    let path = store.blob_path(&info.digest).unwrap();
    fs::write(&path, [5u8; 10]).unwrap();

    let report = store.check(false).unwrap();
    let corrupt: Vec<_> = report.of_kind(ProblemKind::CorruptBlob).collect();
    assert_eq!(corrupt.len(), 1, "{:?}", report.problems);
    assert!(corrupt[0].subject.contains(info.digest.digest()));
    assert!(!corrupt[0].repaired);
    assert!(path.exists(), "check without repair must not remove");

    let report = store.check(true).unwrap();
    assert_eq!(report.of_kind(ProblemKind::CorruptBlob).count(), 1);
    assert!(
        report
            .of_kind(ProblemKind::CorruptBlob)
            .all(|problem| problem.repaired)
    );
    assert!(!path.exists());
    assert!(store.check(false).unwrap().is_clean());
}

#[test]
fn check_finds_stray_temp_file_and_partial_unpack() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let temp_file = dir.path().join("forge/tmp/blob-1-2-3");
    fs::write(&temp_file, b"half a blob").unwrap();
    let partial = dir.path().join("forge/tmp/unpack-1-2-3");
    fs::create_dir_all(partial.join("usr/bin")).unwrap();

    let report = store.check(false).unwrap();
    assert_eq!(
        report.of_kind(ProblemKind::TempFile).count(),
        2,
        "{:?}",
        report.problems
    );
    assert!(temp_file.exists());

    let report = store.check(true).unwrap();
    assert!(
        report
            .of_kind(ProblemKind::TempFile)
            .all(|problem| problem.repaired)
    );
    assert!(!temp_file.exists());
    assert!(!partial.exists());
    assert!(store.check(false).unwrap().is_clean());
}

#[test]
fn check_finds_stray_file_among_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let stray = dir.path().join("blobs/sha256/not-a-digest");
    fs::write(&stray, b"?").unwrap();

    let report = store.check(true).unwrap();
    assert_eq!(
        report.of_kind(ProblemKind::StrayFile).count(),
        1,
        "{:?}",
        report.problems
    );
    assert!(!stray.exists());
}

#[test]
fn check_repairs_dangling_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, b"layer", '1', OCI_MANIFEST);
    store.set_name("gone:latest", &image.manifest).unwrap();
    let other = put_image(&store, b"other layer", '2', OCI_MANIFEST);
    store.set_name("kept:latest", &other.manifest).unwrap();
    fs::remove_file(store.blob_path(image.manifest.digest()).unwrap()).unwrap();

    let report = store.check(false).unwrap();
    let dangling: Vec<_> = report.of_kind(ProblemKind::DanglingName).collect();
    assert_eq!(dangling.len(), 1, "{:?}", report.problems);
    assert!(dangling[0].subject.contains("gone:latest"));
    assert_eq!(store.list_names().unwrap().len(), 2);

    store.check(true).unwrap();
    let names: Vec<String> = store
        .list_names()
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, vec!["kept:latest".to_string()]);
}

#[test]
fn check_finds_manifest_with_missing_layer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, b"layer", '1', DOCKER_MANIFEST);
    store.set_name("broken:latest", &image.manifest).unwrap();
    fs::remove_file(store.blob_path(image.layer.digest()).unwrap()).unwrap();

    let report = store.check(false).unwrap();
    let missing: Vec<_> = report.of_kind(ProblemKind::MissingBlob).collect();
    assert_eq!(missing.len(), 1, "{:?}", report.problems);
    assert!(missing[0].detail.contains(image.layer.digest().digest()));
    assert!(missing[0].subject.contains("broken:latest"));

    store.check(true).unwrap();
    assert!(store.list_names().unwrap().is_empty());
}

#[test]
fn check_repairs_damaged_step_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let entry = StepEntry {
        layer: None,
        diff_id: None,
        config: serde_json::json!({}),
        pending: None,
    };
    store.put_step("key", &entry).unwrap();
    let path = store.steps().unwrap().remove(0).path;
    fs::write(&path, b"garbage").unwrap();

    let report = store.check(true).unwrap();
    assert_eq!(
        report.of_kind(ProblemKind::BadStepEntry).count(),
        1,
        "{:?}",
        report.problems
    );
    assert!(!path.exists());
}

#[test]
fn prune_keeps_what_names_reach() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let named = put_image(&store, b"named layer", '1', OCI_MANIFEST);
    store.set_name("app:latest", &named.manifest).unwrap();
    let docker = put_image(&store, b"docker layer", '2', DOCKER_MANIFEST);
    store.set_name("docker:latest", &docker.manifest).unwrap();
    let orphan = put_image(&store, b"orphan layer", '3', OCI_MANIFEST);
    let loose = store.put_blob(b"loose blob").unwrap();
    let kept_unpacked = make_unpacked(&store, &named.diff_id);
    let orphan_unpacked = make_unpacked(&store, &orphan.diff_id);

    let report = store.prune(&PruneOptions::default()).unwrap();

    for image in [&named, &docker] {
        assert!(store.has_blob(image.manifest.digest()));
        assert!(store.has_blob(image.config.digest()));
        assert!(store.has_blob(image.layer.digest()));
    }
    assert!(!store.has_blob(orphan.manifest.digest()));
    assert!(!store.has_blob(orphan.config.digest()));
    assert!(!store.has_blob(orphan.layer.digest()));
    assert!(!store.has_blob(&loose.digest));
    assert!(kept_unpacked.exists());
    assert!(!orphan_unpacked.exists());

    assert_eq!(report.blobs_removed, 4);
    assert_eq!(report.unpacked_removed, 1);
    let removed_bytes =
        orphan.manifest.size() + orphan.config.size() + orphan.layer.size() + loose.size + 4;
    assert_eq!(report.bytes_freed, removed_bytes);
    assert_eq!(blob_count(dir.path()), 6);
}

#[test]
fn prune_dry_run_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let loose = store.put_blob(b"loose").unwrap();
    let options = PruneOptions {
        dry_run: true,
        ..PruneOptions::default()
    };
    let report = store.prune(&options).unwrap();
    assert_eq!(report.blobs_removed, 1);
    assert_eq!(report.bytes_freed, loose.size);
    assert!(store.has_blob(&loose.digest));
}

#[test]
fn prune_removes_temp_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fs::write(dir.path().join("forge/tmp/blob-9-9-9"), b"12345").unwrap();
    fs::create_dir_all(dir.path().join("forge/tmp/unpack-9-9-9/bin")).unwrap();

    let report = store.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.temp_removed, 2);
    assert_eq!(report.bytes_freed, 5);
    assert_eq!(
        fs::read_dir(dir.path().join("forge/tmp")).unwrap().count(),
        0
    );
}

#[test]
fn prune_keeps_step_layers_until_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let layer = store.put_blob(b"step layer").unwrap();
    let diff_id = hex_digest('4');
    let unpacked = make_unpacked(&store, &diff_id);
    let entry = StepEntry {
        layer: Some(layer.descriptor(MediaType::ImageLayerGzip)),
        diff_id: Some(diff_id.clone()),
        config: serde_json::Value::Null,
        pending: None,
    };
    store.put_step("step", &entry).unwrap();

    let report = store.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.blobs_removed, 0);
    assert_eq!(report.steps_removed, 0);
    assert!(store.has_blob(&layer.digest));
    assert!(unpacked.exists());

    let all = PruneOptions {
        all: true,
        ..PruneOptions::default()
    };
    let report = store.prune(&all).unwrap();
    assert_eq!(report.steps_removed, 1);
    assert_eq!(report.blobs_removed, 1);
    assert_eq!(report.unpacked_removed, 1);
    assert!(!store.has_blob(&layer.digest));
    assert!(!unpacked.exists());
    assert_eq!(store.get_step("step").unwrap(), None);
}

#[test]
fn prune_keep_storage_drops_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut layers = Vec::new();
    for (key, fill, age_seconds) in [
        ("oldest", 1u8, 3000),
        ("middle", 2, 2000),
        ("newest", 3, 1000),
    ] {
        let info = store.put_blob(&[fill; 1000]).unwrap();
        let entry = StepEntry {
            layer: Some(info.descriptor(MediaType::ImageLayerGzip)),
            diff_id: None,
            config: serde_json::Value::Null,
            pending: None,
        };
        store.put_step(key, &entry).unwrap();
        layers.push((key, info, age_seconds));
    }
    for record in store.steps().unwrap() {
        let (_, _, seconds) = layers
            .iter()
            .find(|(key, _, _)| *key == record.key)
            .unwrap();
        age(&record.path, *seconds);
    }

    let options = PruneOptions {
        keep_storage: Some(2000),
        ..PruneOptions::default()
    };
    let report = store.prune(&options).unwrap();
    assert_eq!(report.steps_removed, 1);
    assert_eq!(report.blobs_removed, 1);
    assert!(
        !store.has_blob(&layers[0].1.digest),
        "oldest entry's layer should go"
    );
    assert!(store.has_blob(&layers[1].1.digest));
    assert!(store.has_blob(&layers[2].1.digest));
    let keys: Vec<String> = store
        .steps()
        .unwrap()
        .into_iter()
        .map(|record| record.key)
        .collect();
    assert_eq!(keys.len(), 2);
    assert!(!keys.contains(&"oldest".to_string()));
}

#[test]
fn prune_drops_step_whose_layer_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let layer = store.put_blob(b"lost").unwrap();
    let entry = StepEntry {
        layer: Some(layer.descriptor(MediaType::ImageLayerGzip)),
        diff_id: None,
        config: serde_json::Value::Null,
        pending: None,
    };
    store.put_step("lost", &entry).unwrap();
    fs::remove_file(store.blob_path(&layer.digest).unwrap()).unwrap();

    let report = store.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.steps_removed, 1);
    assert!(store.steps().unwrap().is_empty());
}

#[test]
fn prune_waits_for_lease_holder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let lease = store.lease().unwrap();
    let image = put_image(&store, b"importing", '5', OCI_MANIFEST);

    let finished = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let pruner = scope.spawn(|| {
            let report = store.prune(&PruneOptions::default()).unwrap();
            finished.store(true, Ordering::SeqCst);
            report
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !finished.load(Ordering::SeqCst),
            "prune ran while a lease was held"
        );

        store.set_name("imported:latest", &image.manifest).unwrap();
        drop(lease);
        let report = pruner.join().unwrap();
        assert_eq!(report.blobs_removed, 0);
    });
    assert!(store.has_blob(image.layer.digest()));
    assert!(store.has_blob(image.config.digest()));
}

#[test]
fn prune_waits_for_open_blob_writer() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut writer = store.blob_writer().unwrap();
    writer.write_all(b"partial").unwrap();

    let finished = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let pruner = scope.spawn(|| {
            let report = store.prune(&PruneOptions::default()).unwrap();
            finished.store(true, Ordering::SeqCst);
            report
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !finished.load(Ordering::SeqCst),
            "prune ran while a blob was being written"
        );
        writer.write_all(b" and the rest").unwrap();
        // The commit succeeds only if prune left the temporary file alone.
        // The blob has no name, so prune may remove it right after.
        let info = writer.commit(None).unwrap();
        assert_eq!(info.size, 20);
        let report = pruner.join().unwrap();
        assert_eq!(
            report.temp_removed, 0,
            "the committed blob left no temporary file"
        );
    });
}

#[test]
fn prune_walks_docker_manifest_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let amd64 = put_image(&store, b"amd64 layer", '6', DOCKER_MANIFEST);
    let arm64 = put_image(&store, b"arm64 layer", '7', DOCKER_MANIFEST);
    let list_type = "application/vnd.docker.distribution.manifest.list.v2+json";
    let mut entries = Vec::new();
    for (image, architecture) in [(&amd64, "amd64"), (&arm64, "arm64")] {
        let mut entry = serde_json::to_value(&image.manifest).unwrap();
        entry["platform"] = serde_json::json!({"architecture": architecture, "os": "linux"});
        entries.push(entry);
    }
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": list_type,
        "manifests": entries,
    });
    let list = store.put_json(&list, MediaType::from(list_type)).unwrap();
    store.set_name("multi:latest", &list).unwrap();
    let loose = store.put_blob(b"unreferenced").unwrap();

    let report = store.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.blobs_removed, 1);
    assert!(!store.has_blob(&loose.digest));
    for image in [&amd64, &arm64] {
        assert!(store.has_blob(image.manifest.digest()));
        assert!(store.has_blob(image.config.digest()));
        assert!(store.has_blob(image.layer.digest()));
    }
    assert_eq!(
        store.resolve("multi:latest").unwrap().digest(),
        list.digest()
    );
    assert!(store.check(false).unwrap().is_clean());
}
