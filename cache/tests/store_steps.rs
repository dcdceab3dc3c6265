//! The step-cache index: entries round-trip, lookups update the last use,
//! and listing orders entries by last use.

use std::fs;
use std::time::{Duration, SystemTime};

use forge_cache::store::{StepEntry, Store, StoreError};
use oci_spec::image::MediaType;

fn layer_entry(store: &Store, content: &[u8]) -> StepEntry {
    let info = store.put_blob(content).unwrap();
    StepEntry {
        layer: Some(info.descriptor(MediaType::ImageLayerGzip)),
        diff_id: Some(format!("sha256:{}", "d".repeat(64)).parse().unwrap()),
        config: serde_json::json!({"Cmd": ["sh"]}),
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
