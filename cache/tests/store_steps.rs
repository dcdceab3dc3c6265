//! The step-cache index: entries round-trip, lookups update the last use,
//! and listing orders entries by last use.

use std::fs;
use std::time::{Duration, SystemTime};

use forge_cache::store::{PendingLayer, StepEntry, Store, StoreError};
use oci_spec::image::MediaType;

fn layer_entry(store: &Store, content: &[u8]) -> StepEntry {
    let info = store.put_blob(content).unwrap();
    StepEntry {
        layer: Some(info.descriptor(MediaType::ImageLayerGzip)),
        diff_id: Some(format!("sha256:{}", "d".repeat(64)).parse().unwrap()),
        config: serde_json::json!({"Cmd": ["sh"]}),
        pending: None,
    }
}

#[test]
fn step_entry_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let entry = layer_entry(&store, b"layer one");
    store.put_step("sha256:key-one", &entry).unwrap();
    assert_eq!(store.get_step("sha256:key-one").unwrap(), Some(entry));
}

#[test]
fn step_config_only_entry_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let entry = StepEntry {
        layer: None,
        diff_id: None,
        config: serde_json::json!({"Env": ["PATH=/bin"], "WorkingDir": "/app"}),
        pending: None,
    };
    store.put_step("env step", &entry).unwrap();
    assert_eq!(store.get_step("env step").unwrap(), Some(entry));
}

#[test]
fn step_entry_serde_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let entry = layer_entry(&store, b"layer");
    let text = serde_json::to_string(&entry).unwrap();
    let back: StepEntry = serde_json::from_str(&text).unwrap();
    assert_eq!(back, entry);
}

#[test]
fn step_missing_key_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get_step("never written").unwrap(), None);
}

#[test]
fn step_put_replaces_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = layer_entry(&store, b"first");
    let second = layer_entry(&store, b"second");
    store.put_step("key", &first).unwrap();
    store.put_step("key", &second).unwrap();
    assert_eq!(store.get_step("key").unwrap(), Some(second));
    assert_eq!(store.steps().unwrap().len(), 1);
}

#[test]
fn step_get_updates_last_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.put_step("old", &layer_entry(&store, b"a")).unwrap();
    store.put_step("new", &layer_entry(&store, b"b")).unwrap();

    // Age both entries, "new" less than "old".
    let now = SystemTime::now();
    for record in store.steps().unwrap() {
        let age = if record.key == "old" { 3600 } else { 60 };
        let file = fs::File::options().write(true).open(&record.path).unwrap();
        file.set_modified(now - Duration::from_secs(age)).unwrap();
    }
    let keys: Vec<String> = store
        .steps()
        .unwrap()
        .into_iter()
        .map(|record| record.key)
        .collect();
    assert_eq!(keys, vec!["old".to_string(), "new".to_string()]);

    store.get_step("old").unwrap().unwrap();
    let records = store.steps().unwrap();
    let keys: Vec<&str> = records.iter().map(|record| record.key.as_str()).collect();
    assert_eq!(keys, vec!["new", "old"]);
    let old = records.iter().find(|record| record.key == "old").unwrap();
    assert!(old.last_used > now - Duration::from_secs(60));
}

#[test]
fn step_damaged_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.put_step("key", &layer_entry(&store, b"x")).unwrap();
    let path = store.steps().unwrap().remove(0).path;
    fs::write(&path, b"{not json").unwrap();

    let error = store.get_step("key").unwrap_err();
    assert!(matches!(error, StoreError::DecodeJson { .. }), "{error}");
    assert!(
        error.to_string().contains(&*path.to_string_lossy()),
        "{error}"
    );
    assert!(store.steps().unwrap().is_empty());
}

/// Creates a pending entry over a real unpacked folder: a folder with
/// `files`, adopted under its diff id.
fn pending_entry(store: &Store, files: &[(&str, &str)]) -> StepEntry {
    let dir = store.create_work_dir().unwrap();
    for (name, content) in files {
        fs::write(dir.join(name), content).unwrap();
    }
    let options = forge_cache::layer::WriteOptions::default();
    let (diff_id, _) = forge_cache::layer::layer_diff_id(&dir, &options).unwrap();
    store.adopt_unpacked(&diff_id, &dir).unwrap();
    StepEntry {
        layer: None,
        diff_id: Some(diff_id),
        config: serde_json::json!({}),
        pending: Some(PendingLayer {
            overlay: false,
            source_date_epoch: None,
        }),
    }
}

#[test]
fn pending_entry_needs_unpacked_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let entry = pending_entry(&store, &[("a.txt", "a\n")]);
    assert!(entry.is_pending());
    store.put_step("pending", &entry).unwrap();
    assert_eq!(store.get_step("pending").unwrap(), Some(entry.clone()));
    assert!(store.check(false).unwrap().problems.is_empty());

    let unpacked = store.unpacked_dir(entry.diff_id.as_ref().unwrap()).unwrap();
    fs::remove_dir_all(&unpacked).unwrap();
    assert_eq!(
        store.get_step("pending").unwrap(),
        None,
        "a miss without the folder"
    );
    let report = store.check(false).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].detail.contains("unpacked layer"),
        "{:?}",
        report.problems
    );
    let error = store.put_step("again", &entry).unwrap_err();
    assert!(matches!(error, StoreError::MissingBlob { .. }), "{error}");
}

#[test]
fn prune_keeps_pending_layer_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kept = pending_entry(&store, &[("kept.txt", "kept\n")]);
    let lost = pending_entry(&store, &[("lost.txt", "lost\n")]);
    store.put_step("kept", &kept).unwrap();
    store.put_step("lost", &lost).unwrap();
    fs::remove_dir_all(store.unpacked_dir(lost.diff_id.as_ref().unwrap()).unwrap()).unwrap();

    let report = store.prune(&Default::default()).unwrap();
    assert_eq!(report.steps_removed, 1, "{report:?}");
    assert!(store.unpacked_dir(kept.diff_id.as_ref().unwrap()).is_some());
    assert_eq!(store.get_step("kept").unwrap(), Some(kept));
    assert_eq!(store.get_step("lost").unwrap(), None);
}
