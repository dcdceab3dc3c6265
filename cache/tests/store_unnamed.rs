//! Unnamed images, which docker calls dangling: `index.json` entries
//! without a `ref.name`. They are found by image id, named by `set_name`,
//! removed by `prune` and accepted by `check`. Also checks which blobs
//! `resolve` must not take for an image.

use std::path::Path;
use std::process::Command;

use forge_cache::store::{PruneOptions, REF_NAME_ANNOTATION, Store, StoreError};
use oci_spec::image::{Descriptor, MediaType};

/// An image written by [`put_image`].
struct Image {
    manifest: Descriptor,
    config: Descriptor,
    layer: Descriptor,
}

impl Image {
    /// Returns the image id without `sha256:`.
    fn id_hex(&self) -> &str {
        self.config.digest().digest()
    }
}

/// Stores an image with one layer; `seed` makes its blobs unique.
fn put_image(store: &Store, seed: &str) -> Image {
    let layer = store
        .put_blob(format!("layer of {seed}").as_bytes())
        .unwrap()
        .descriptor(MediaType::ImageLayer);
    let config = store
        .put_json(
            &serde_json::json!({
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": [seed]},
                "rootfs": {"type": "layers", "diff_ids": [layer.digest().to_string()]},
            }),
            MediaType::ImageConfig,
        )
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    });
    let manifest = store.put_json(&manifest, MediaType::ImageManifest).unwrap();
    Image {
        manifest,
        config,
        layer,
    }
}

fn index_entries(root: &Path) -> Vec<serde_json::Value> {
    let bytes = std::fs::read(root.join("index.json")).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    index["manifests"].as_array().unwrap().clone()
}

fn unnamed_digests(store: &Store) -> Vec<String> {
    store
        .list_unnamed()
        .unwrap()
        .iter()
        .map(|descriptor| descriptor.digest().to_string())
        .collect()
}

#[test]
fn add_unnamed_writes_entry_without_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, "one");

    assert!(store.add_unnamed(&image.manifest).unwrap());
    assert!(
        !store.add_unnamed(&image.manifest).unwrap(),
        "a second entry of the same manifest was added"
    );

    let entries = index_entries(dir.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["digest"], image.manifest.digest().to_string());
    assert!(
        entries[0]["annotations"][REF_NAME_ANNOTATION].is_null(),
        "{entries:?}"
    );
    assert!(store.list_names().unwrap().is_empty());
    assert_eq!(
        unnamed_digests(&store),
        [image.manifest.digest().to_string()]
    );
}

#[test]
fn add_unnamed_skips_named_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, "one");
    store.set_name("app:latest", &image.manifest).unwrap();

    assert!(!store.add_unnamed(&image.manifest).unwrap());
    assert_eq!(index_entries(dir.path()).len(), 1);
    assert!(unnamed_digests(&store).is_empty());
}

#[test]
fn add_unnamed_rejects_missing_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let digest: oci_spec::image::Digest = format!("sha256:{}", "d".repeat(64)).parse().unwrap();
    let descriptor = Descriptor::new(MediaType::ImageManifest, 10, digest);
    let error = store.add_unnamed(&descriptor).unwrap_err();
    assert!(matches!(error, StoreError::MissingBlob { .. }), "{error}");
    assert!(index_entries(dir.path()).is_empty());
}

#[test]
fn unnamed_image_resolves_by_id_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, "one");
    store.add_unnamed(&image.manifest).unwrap();
    let id_hex = image.id_hex();

    for reference in [
        format!("sha256:{id_hex}"),
        id_hex.to_string(),
        id_hex[..12].to_string(),
        format!("sha256:{}", &id_hex[..12]),
        image.manifest.digest().to_string(),
    ] {
        let resolved = store.resolve(&reference);
        let resolved = resolved.unwrap_or_else(|error| panic!("{reference}: {error}"));
        assert_eq!(resolved.digest(), image.manifest.digest(), "{reference}");
        assert_eq!(
            resolved.media_type(),
            &MediaType::ImageManifest,
            "{reference}"
        );
    }
    assert_eq!(
        store.image_id(&image.manifest).unwrap(),
        *image.config.digest()
    );
}

#[test]
fn set_name_drops_unnamed_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, "one");
    store.add_unnamed(&image.manifest).unwrap();

    store.set_name("app:v1", &image.manifest).unwrap();

    let entries = index_entries(dir.path());
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["annotations"][REF_NAME_ANNOTATION], "app:v1");
    assert!(unnamed_digests(&store).is_empty());
}

#[test]
fn moved_name_leaves_old_image_unnamed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let old = put_image(&store, "old");
    let new = put_image(&store, "new");
    store.set_name("app:latest", &old.manifest).unwrap();

    store.set_name("app:latest", &new.manifest).unwrap();

    assert_eq!(unnamed_digests(&store), [old.manifest.digest().to_string()]);
    assert_eq!(
        store.resolve("app:latest").unwrap().digest(),
        new.manifest.digest()
    );
    assert_eq!(
        store.resolve(&old.id_hex()[..12]).unwrap().digest(),
        old.manifest.digest()
    );
}

#[test]
fn moved_name_keeps_image_with_other_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let old = put_image(&store, "old");
    let new = put_image(&store, "new");
    store.set_name("app:latest", &old.manifest).unwrap();
    store.set_name("app:v1", &old.manifest).unwrap();

    store.set_name("app:latest", &new.manifest).unwrap();

    assert!(unnamed_digests(&store).is_empty());
    assert_eq!(index_entries(dir.path()).len(), 2);
}

#[test]
fn retagging_same_image_leaves_nothing_unnamed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, "one");
    store.set_name("app:latest", &image.manifest).unwrap();
    store.set_name("app:latest", &image.manifest).unwrap();

    assert!(unnamed_digests(&store).is_empty());
    assert_eq!(index_entries(dir.path()).len(), 1);
}

#[test]
fn remove_name_leaves_nothing_unnamed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, "one");
    store.set_name("app:latest", &image.manifest).unwrap();

    store.remove_name("app:latest").unwrap();

    assert!(unnamed_digests(&store).is_empty());
    assert!(index_entries(dir.path()).is_empty());
}

#[test]
fn remove_unnamed_keeps_names_and_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let unnamed = put_image(&store, "unnamed");
    let named = put_image(&store, "named");
    store.add_unnamed(&unnamed.manifest).unwrap();
    store.set_name("app:latest", &named.manifest).unwrap();

    assert!(store.remove_unnamed(unnamed.manifest.digest()).unwrap());
    assert!(!store.remove_unnamed(unnamed.manifest.digest()).unwrap());
    assert!(
        !store.remove_unnamed(named.manifest.digest()).unwrap(),
        "a named image has no unnamed entry to remove"
    );

    assert!(unnamed_digests(&store).is_empty());
    assert_eq!(store.list_names().unwrap().len(), 1);
    assert!(store.has_blob(unnamed.manifest.digest()));
}

#[test]
fn prune_removes_unnamed_images() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let unnamed = put_image(&store, "unnamed");
    let named = put_image(&store, "named");
    store.add_unnamed(&unnamed.manifest).unwrap();
    store.set_name("app:latest", &named.manifest).unwrap();

    let dry_run = PruneOptions {
        dry_run: true,
        ..PruneOptions::default()
    };
    let counted = store.prune(&dry_run).unwrap();
    assert_eq!(counted.unnamed_removed, 1);
    assert_eq!(counted.blobs_removed, 3);
    assert_eq!(
        unnamed_digests(&store).len(),
        1,
        "a dry run removed the entry"
    );

    let report = store.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.unnamed_removed, 1);
    assert_eq!(report.blobs_removed, 3);
    assert!(unnamed_digests(&store).is_empty());
    for blob in [&unnamed.manifest, &unnamed.config, &unnamed.layer] {
        assert!(!store.has_blob(blob.digest()), "{} kept", blob.digest());
    }
    for blob in [&named.manifest, &named.config, &named.layer] {
        assert!(store.has_blob(blob.digest()), "{} removed", blob.digest());
    }
}

#[test]
fn check_accepts_unnamed_images() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, "one");
    store.add_unnamed(&image.manifest).unwrap();

    let report = store.check(true).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(unnamed_digests(&store).len(), 1, "repair removed the image");
}

#[test]
fn check_reports_unnamed_image_with_missing_layer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, "one");
    store.add_unnamed(&image.manifest).unwrap();
    std::fs::remove_file(store.blob_path(image.layer.digest()).unwrap()).unwrap();

    let report = store.check(false).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let subject = &report.problems[0].subject;
    assert!(subject.contains("unnamed image"), "{subject}");
    assert!(
        subject.contains(&image.manifest.digest().to_string()),
        "{subject}"
    );
}

#[test]
fn resolve_rejects_config_digest_without_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // The manifest is not listed in `index.json`, so its config is a blob
    // like any other and not the id of a stored image.
    let image = put_image(&store, "orphan");

    for blob in [&image.config, &image.layer] {
        let reference = blob.digest().to_string();
        let error = store.resolve(&reference).unwrap_err();
        let StoreError::NameNotFound { suggestion, .. } = &error else {
            panic!("{reference}: expected not found, got {error}");
        };
        assert_eq!(suggestion, &None, "{reference}");
    }
    let resolved = store.resolve(image.manifest.digest().as_ref());
    assert_eq!(
        resolved.unwrap().digest(),
        image.manifest.digest(),
        "a stored manifest resolves by its digest"
    );
}

#[test]
fn resolve_rejects_config_that_names_schema_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // JSON with `config` and `layers` keys but no `schemaVersion` is not a
    // manifest, whatever else it has.
    let lookalike = store
        .put_json(
            &serde_json::json!({"config": {"Cmd": ["sh"]}, "layers": []}),
            MediaType::ImageConfig,
        )
        .unwrap();
    let error = store.resolve(lookalike.digest().as_ref()).unwrap_err();
    assert!(matches!(error, StoreError::NameNotFound { .. }), "{error}");
}

#[test]
fn short_id_ignores_manifest_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, "one");
    store.set_name("app:latest", &image.manifest).unwrap();
    let manifest_hex = image.manifest.digest().digest();
    assert!(
        !image.id_hex().starts_with(&manifest_hex[..12]),
        "the test needs an id and a manifest digest that differ"
    );

    let error = store.resolve(&manifest_hex[..12]).unwrap_err();
    assert!(matches!(error, StoreError::NameNotFound { .. }), "{error}");
    let error = store
        .resolve(&format!("sha256:{}", &manifest_hex[..12]))
        .unwrap_err();
    assert!(matches!(error, StoreError::NameNotFound { .. }), "{error}");
}

#[test]
fn ambiguous_id_lists_only_matching_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();

    // Stores images until two ids share a first digit and a third image
    // has a manifest digest, but not an id, with that digit.
    let mut images: Vec<(String, Image)> = Vec::new();
    let mut found = None;
    for i in 0..400 {
        let image = put_image(&store, &format!("image {i}"));
        let name = format!("app:{i}");
        if i % 2 == 0 {
            store.set_name(&name, &image.manifest).unwrap();
        } else {
            store.add_unnamed(&image.manifest).unwrap();
        }
        images.push((name, image));
        for digit in "0123456789abcdef".chars() {
            let id_matches: Vec<usize> = (0..images.len())
                .filter(|&index| images[index].1.id_hex().starts_with(digit))
                .collect();
            let manifest_only = (0..images.len()).find(|&index| {
                let image = &images[index].1;
                image.manifest.digest().digest().starts_with(digit)
                    && !image.id_hex().starts_with(digit)
            });
            if id_matches.len() == 2
                && let Some(other) = manifest_only
            {
                found = Some((digit, id_matches, other));
            }
        }
        if found.is_some() {
            break;
        }
    }
    let (digit, id_matches, other) = found.expect("400 images give such a digit");

    let error = store.resolve(&digit.to_string()).unwrap_err();
    let StoreError::AmbiguousId { candidates, .. } = &error else {
        panic!("expected an ambiguous id error, got {error}");
    };
    assert_eq!(candidates.len(), 2, "{error}");
    for index in &id_matches {
        let (name, image) = &images[*index];
        let short = &image.id_hex()[..12];
        let candidate = candidates
            .iter()
            .find(|candidate| candidate.starts_with(short))
            .unwrap_or_else(|| panic!("{short} missing from {candidates:?}"));
        // Even-numbered images are named, odd-numbered ones unnamed.
        let named = store.list_names().unwrap().iter().any(|(n, _)| n == name);
        if named {
            assert!(candidate.contains(name.as_str()), "{candidate}");
        } else {
            assert!(candidate.contains("unnamed"), "{candidate}");
        }
    }
    let other_id = &images[other].1.id_hex()[..12];
    assert!(
        !error.to_string().contains(other_id),
        "{other_id} does not start with {digit}: {error}"
    );
}

#[test]
fn suggestions_are_close_names_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = put_image(&store, "one");
    for name in ["scr:latest", "n1:latest", "busybox:latest", "abcdee:latest"] {
        store.set_name(name, &image.manifest).unwrap();
    }

    let suggestion = |reference: &str| match store.resolve(reference) {
        Err(StoreError::NameNotFound { suggestion, .. }) => suggestion,
        other => panic!("{reference}: expected not found, got {other:?}"),
    };
    assert_eq!(suggestion("nosuch:latest"), None);
    assert_eq!(suggestion("5:latest"), None);
    assert_eq!(suggestion("abcdef:latest"), None, "hex-looking reference");
    assert_eq!(suggestion(&format!("sha256:{}", "e".repeat(64))), None);
    assert_eq!(suggestion("busybx:latest"), Some("busybox:latest".into()));
    assert_eq!(suggestion("busybox"), Some("busybox:latest".into()));
}

/// skopeo reads a name from a store that also lists unnamed images.
#[test]
fn skopeo_reads_name_beside_unnamed_image() {
    if !forge_testkit::require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    let unnamed = put_image(&store, "unnamed");
    let named = put_image(&store, "named");
    store.add_unnamed(&unnamed.manifest).unwrap();
    store.set_name("app:latest", &named.manifest).unwrap();

    let output = Command::new("skopeo")
        .arg("inspect")
        .arg("--raw")
        .arg(format!("oci:{}:app:latest", root.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "skopeo failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        manifest["config"]["digest"],
        named.config.digest().to_string()
    );
}
