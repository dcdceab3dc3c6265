//! Image names in `index.json`: set, replace, remove, resolve, and
//! concurrent tagging from threads and processes.

use std::path::Path;
use std::process::{Command, Stdio};

use forge_cache::store::{REF_NAME_ANNOTATION, Store, StoreError};
use oci_spec::image::{Descriptor, MediaType};

/// Stores a manifest whose config blob has `config_text`; returns the
/// manifest descriptor and the config (image id) digest.
fn put_image(store: &Store, config_text: &str) -> (Descriptor, String) {
    let config = store
        .put_json(
            &serde_json::json!({"comment": config_text}),
            MediaType::ImageConfig,
        )
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [],
    });
    let manifest = store.put_json(&manifest, MediaType::ImageManifest).unwrap();
    (manifest, config.digest().digest().to_string())
}

fn index_json(root: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap()
}

#[test]
fn set_name_writes_annotation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (manifest, _) = put_image(&store, "one");
    store.set_name("app:latest", &manifest).unwrap();

    let index = index_json(dir.path());
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["digest"], manifest.digest().to_string());
    assert_eq!(entries[0]["annotations"][REF_NAME_ANNOTATION], "app:latest");
}

#[test]
fn set_name_replaces_previous_target() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (first, _) = put_image(&store, "one");
    let (second, _) = put_image(&store, "two");
    store.set_name("app:latest", &first).unwrap();
    store.set_name("app:v1", &first).unwrap();
    store.set_name("app:latest", &second).unwrap();

    let names = store.list_names().unwrap();
    assert_eq!(names.len(), 2);
    assert_eq!(
        store.resolve("app:latest").unwrap().digest(),
        second.digest()
    );
    assert_eq!(store.resolve("app:v1").unwrap().digest(), first.digest());
}

#[test]
fn set_name_rejects_missing_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let digest = format!("sha256:{}", "c".repeat(64));
    let descriptor = Descriptor::new(
        MediaType::ImageManifest,
        10,
        digest.parse::<oci_spec::image::Digest>().unwrap(),
    );
    let error = store.set_name("app:latest", &descriptor).unwrap_err();
    assert!(matches!(error, StoreError::MissingBlob { .. }), "{error}");
    assert!(store.list_names().unwrap().is_empty());
}

#[test]
fn set_name_rejects_invalid_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (manifest, _) = put_image(&store, "one");
    let error = store.set_name("bad name", &manifest).unwrap_err();
    assert!(matches!(error, StoreError::InvalidName { .. }), "{error}");
    assert!(error.to_string().contains("bad name"), "{error}");
}

#[test]
fn remove_name_keeps_other_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (manifest, _) = put_image(&store, "one");
    store.set_name("app:latest", &manifest).unwrap();
    store.set_name("app:v1", &manifest).unwrap();

    let removed = store.remove_name("app:latest").unwrap();
    assert_eq!(removed.digest(), manifest.digest());
    let names: Vec<String> = store
        .list_names()
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, vec!["app:v1".to_string()]);
    assert!(
        store.has_blob(manifest.digest()),
        "remove_name must leave blobs to prune"
    );
}

#[test]
fn remove_name_missing_suggests_closest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (manifest, _) = put_image(&store, "one");
    store.set_name("foo:latest", &manifest).unwrap();
    let error = store.remove_name("foo:lates").unwrap_err();
    assert_eq!(
        error.to_string(),
        "no image named foo:lates; did you mean foo:latest?"
    );
}

#[test]
fn resolve_by_name_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (manifest, config_hex) = put_image(&store, "one");
    store.set_name("app:latest", &manifest).unwrap();
    let digest = manifest.digest().to_string();

    assert_eq!(
        store.resolve("app:latest").unwrap().digest(),
        manifest.digest()
    );
    assert_eq!(store.resolve(&digest).unwrap().digest(), manifest.digest());
    assert_eq!(
        store
            .resolve(&format!("app:latest@{digest}"))
            .unwrap()
            .digest(),
        manifest.digest()
    );
    assert_eq!(
        store.resolve(&format!("app@{digest}")).unwrap().digest(),
        manifest.digest()
    );
    assert!(
        store.resolve(&format!("other@{digest}")).is_err(),
        "a digest must not resolve under a repository that does not hold it"
    );
    let by_image_id = store.resolve(&format!("sha256:{config_hex}")).unwrap();
    assert_eq!(by_image_id.digest(), manifest.digest());
}

#[test]
fn resolve_unnamed_manifest_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (manifest, _) = put_image(&store, "unnamed");
    let resolved = store.resolve(manifest.digest().as_ref()).unwrap();
    assert_eq!(resolved.digest(), manifest.digest());
    assert_eq!(resolved.media_type(), &MediaType::ImageManifest);
    assert_eq!(resolved.size(), manifest.size());
}

#[test]
fn resolve_by_short_image_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (manifest, config_hex) = put_image(&store, "one");
    store.set_name("app:latest", &manifest).unwrap();
    store.set_name("app:v1", &manifest).unwrap();

    let short = &config_hex[..12];
    assert_eq!(store.resolve(short).unwrap().digest(), manifest.digest());
    assert_eq!(
        store.resolve(&format!("sha256:{short}")).unwrap().digest(),
        manifest.digest()
    );
}

#[test]
fn resolve_ambiguous_short_id_lists_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();

    // Find two images whose ids share a first hex digit.
    let mut by_first: std::collections::HashMap<char, Vec<(String, String)>> = Default::default();
    let mut pair = None;
    for i in 0..64 {
        let (manifest, config_hex) = put_image(&store, &format!("image {i}"));
        let name = format!("app:{i}");
        store.set_name(&name, &manifest).unwrap();
        let first = config_hex.chars().next().unwrap();
        let group = by_first.entry(first).or_default();
        group.push((name, config_hex));
        if group.len() == 2 {
            pair = Some((first, group.clone()));
            break;
        }
    }
    let (first, group) = pair.expect("64 images always share a first hex digit");

    let error = store.resolve(&first.to_string()).unwrap_err();
    let StoreError::AmbiguousId { candidates, .. } = &error else {
        panic!("expected an ambiguous id error, got {error}");
    };
    assert_eq!(candidates.len(), 2, "{error}");
    let message = error.to_string();
    for (name, config_hex) in &group {
        assert!(message.contains(&config_hex[..12]), "{message}");
        assert!(message.contains(name.as_str()), "{message}");
    }
}

#[test]
fn resolve_unknown_name_suggests_closest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (manifest, _) = put_image(&store, "one");
    store.set_name("foo:latest", &manifest).unwrap();
    store.set_name("bar:latest", &manifest).unwrap();

    let error = store.resolve("foo:lates").unwrap_err();
    assert!(matches!(error, StoreError::NameNotFound { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "no image named foo:lates; did you mean foo:latest?"
    );

    let error = store.resolve("quux:1").unwrap_err();
    assert_eq!(error.to_string(), "no image named quux:1");
}

#[test]
fn resolve_invalid_digest_reference() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let error = store.resolve("app@sha256:xyz").unwrap_err();
    assert!(
        matches!(error, StoreError::InvalidReference { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("app@sha256:xyz"), "{error}");
}

#[test]
fn concurrent_threads_tag_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (manifest, _) = put_image(&store, "shared");

    std::thread::scope(|scope| {
        for thread in 0..4 {
            let store = store.clone();
            let manifest = manifest.clone();
            scope.spawn(move || {
                for i in 0..25 {
                    store
                        .set_name(&format!("t{thread}:{i}"), &manifest)
                        .unwrap();
                }
            });
        }
    });

    let names = store.list_names().unwrap();
    assert_eq!(names.len(), 100);
    for thread in 0..4 {
        for i in 0..25 {
            let name = format!("t{thread}:{i}");
            assert!(names.iter().any(|(entry, _)| entry == &name), "{name} lost");
        }
    }
}

const HELPER_ROOT: &str = "FORGE_STORE_TEST_ROOT";
const HELPER_PREFIX: &str = "FORGE_STORE_TEST_PREFIX";
const HELPER_DIGEST: &str = "FORGE_STORE_TEST_DIGEST";

/// Runs inside a child process started by `concurrent_processes_tag_without_loss`.
#[test]
#[ignore = "helper process for concurrent_processes_tag_without_loss"]
fn tag_helper_process() {
    let root = std::env::var(HELPER_ROOT).expect("helper needs FORGE_STORE_TEST_ROOT");
    let prefix = std::env::var(HELPER_PREFIX).expect("helper needs FORGE_STORE_TEST_PREFIX");
    let digest = std::env::var(HELPER_DIGEST).expect("helper needs FORGE_STORE_TEST_DIGEST");
    let store = Store::open(Path::new(&root)).unwrap();
    let manifest = store.resolve(&digest).unwrap();
    for i in 0..30 {
        store.set_name(&format!("{prefix}:{i}"), &manifest).unwrap();
        store.set_name("shared:latest", &manifest).unwrap();
    }
}

#[test]
fn concurrent_processes_tag_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (manifest, _) = put_image(&store, "shared");
    let exe = std::env::current_exe().unwrap();

    let children: Vec<_> = ["first", "second"]
        .iter()
        .map(|prefix| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "tag_helper_process",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env(HELPER_ROOT, dir.path())
                .env(HELPER_PREFIX, prefix)
                .env(HELPER_DIGEST, manifest.digest().to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "helper process failed with {}:\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let names = store.list_names().unwrap();
    assert_eq!(names.len(), 61, "{names:?}");
    for prefix in ["first", "second"] {
        for i in 0..30 {
            let name = format!("{prefix}:{i}");
            assert!(names.iter().any(|(entry, _)| entry == &name), "{name} lost");
        }
    }
    let shared = names
        .iter()
        .filter(|(name, _)| name == "shared:latest")
        .count();
    assert_eq!(shared, 1, "one descriptor per name");
}
