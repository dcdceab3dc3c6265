//! The content graph: which blobs an index, manifest or config refers to.
//! Both OCI and Docker schema-2 media types are understood.

use std::collections::HashSet;

use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType};

use super::Store;
use super::blobs::sha256_hex;
use super::error::StoreError;
use super::names::source_index;

/// Docker schema-2 manifest list, the Docker twin of the OCI image index.
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema-2 image manifest.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub(crate) const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Blobs larger than this are never parsed to guess their type, so an
/// unknown media type on a large layer costs no read.
const MAX_SNIFF_SIZE: u64 = 16 * 1024 * 1024;

/// The kind of blob that a descriptor's media type declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlobKind {
    /// An OCI image index or Docker manifest list.
    Index,
    /// An OCI or Docker image manifest.
    Manifest,
    /// An OCI or Docker image config.
    Config,
    /// Anything else: layers, artifacts and unknown types.
    Other,
}

pub(crate) fn kind_of(media_type: &MediaType) -> BlobKind {
    match media_type {
        MediaType::ImageIndex => BlobKind::Index,
        MediaType::ImageManifest => BlobKind::Manifest,
        MediaType::ImageConfig => BlobKind::Config,
        MediaType::Other(text) => match text.as_str() {
            DOCKER_MANIFEST_LIST => BlobKind::Index,
            DOCKER_MANIFEST => BlobKind::Manifest,
            DOCKER_CONFIG => BlobKind::Config,
            _ => BlobKind::Other,
        },
        _ => BlobKind::Other,
    }
}

/// Guesses from content whether a JSON document is an index or a manifest
/// ([`BlobKind::Index`] or [`BlobKind::Manifest`]), or neither. Both carry
/// `"schemaVersion": 2`, which image configs lack.
fn sniff(value: &serde_json::Value) -> Option<BlobKind> {
    if value
        .get("schemaVersion")
        .and_then(serde_json::Value::as_u64)
        != Some(2)
    {
        return None;
    }
    if value
        .get("manifests")
        .is_some_and(serde_json::Value::is_array)
    {
        return Some(BlobKind::Index);
    }
    let config_digest = value.get("config").and_then(|config| config.get("digest"));
    config_digest.is_some().then_some(BlobKind::Manifest)
}

/// A parsed manifest or index.
pub(crate) enum Document {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// A descriptor that points at a blob the store does not hold.
#[derive(Clone, Debug)]
pub(crate) struct MissingRef {
    /// The name or manifest digest that contains the descriptor.
    pub referrer: String,
    /// The missing blob.
    pub digest: Digest,
}

/// Everything reachable from a set of root descriptors.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    /// Hex digests of every reachable blob, present or not.
    pub blobs: HashSet<String>,
    /// Hex diff ids named by reachable configs.
    pub diff_ids: HashSet<String>,
    /// Reachable descriptors whose blob is missing.
    pub missing: Vec<MissingRef>,
    /// Reachable manifests, indexes and configs that cannot be read.
    pub unreadable: Vec<StoreError>,
}

impl Store {
    /// Reads a manifest or index blob. `kind` is the descriptor's claim;
    /// with [`BlobKind::Other`] or [`BlobKind::Config`] the content decides,
    /// and `Ok(None)` means the blob is neither. Content counts as an index
    /// or manifest only with `"schemaVersion": 2` and a `manifests` array
    /// or a `config` descriptor, and only when it parses as one. An image
    /// config has a `config` object too, but no `schemaVersion`.
    pub(crate) fn read_document(
        &self,
        descriptor: &Descriptor,
        kind: BlobKind,
    ) -> Result<Option<Document>, StoreError> {
        if kind == BlobKind::Other && descriptor.size() > MAX_SNIFF_SIZE {
            return Ok(None);
        }
        let digest = descriptor.digest();
        let bytes = self.read_blob(digest)?;
        let bad = |reason: String| StoreError::BadManifest {
            digest: digest.to_string(),
            reason,
        };

        let sniffed = matches!(kind, BlobKind::Other | BlobKind::Config);
        let value: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(value) => value,
            Err(_) if sniffed => return Ok(None),
            Err(error) => return Err(bad(format!("invalid JSON: {error}"))),
        };
        let as_index = match kind {
            BlobKind::Index => true,
            BlobKind::Manifest => false,
            BlobKind::Other | BlobKind::Config => match sniff(&value) {
                Some(kind) => kind == BlobKind::Index,
                None => return Ok(None),
            },
        };

        let document = if as_index {
            serde_json::from_value::<ImageIndex>(value)
                .map(|index| Document::Index(Box::new(index)))
                .map_err(|error| format!("not an image index: {error}"))
        } else {
            serde_json::from_value::<ImageManifest>(value)
                .map(|manifest| Document::Manifest(Box::new(manifest)))
                .map_err(|error| format!("not an image manifest: {error}"))
        };
        match document {
            Ok(document) => Ok(Some(document)),
            Err(reason) if sniffed => {
                tracing::debug!(%digest, reason, "blob resembles a manifest but is none");
                Ok(None)
            }
            Err(reason) => Err(bad(reason)),
        }
    }

    /// Reads the diff ids (`rootfs.diff_ids`) of an image config.
    pub(crate) fn config_diff_ids(&self, digest: &Digest) -> Result<Vec<Digest>, StoreError> {
        let value: serde_json::Value = self.get_json(digest)?;
        let Some(list) = value
            .pointer("/rootfs/diff_ids")
            .and_then(|ids| ids.as_array())
        else {
            return Ok(Vec::new());
        };
        let mut diff_ids = Vec::new();
        for item in list {
            let parsed = item.as_str().and_then(|text| Digest::try_from(text).ok());
            match parsed {
                Some(diff_id) => diff_ids.push(diff_id),
                None => {
                    return Err(StoreError::BadManifest {
                        digest: digest.to_string(),
                        reason: format!("config has an invalid diff id {item}"),
                    });
                }
            }
        }
        Ok(diff_ids)
    }

    /// Walks from `roots` (each with a label for reports) through indexes
    /// and manifests to configs and layers. The multi-platform index that a
    /// root's [`SOURCE_INDEX_ANNOTATION`](super::SOURCE_INDEX_ANNOTATION) records is reached too, when it is
    /// stored, but not walked: its other platforms were never pulled. A
    /// missing one is no problem, because the image is complete without it.
    pub(crate) fn walk(&self, roots: Vec<(String, Descriptor)>) -> Reach {
        let mut reach = Reach::default();
        for (_, descriptor) in &roots {
            if let Some(index) = source_index(descriptor)
                && self.has_blob(&index)
                && let Ok(hex) = sha256_hex(&index)
            {
                reach.blobs.insert(hex.to_string());
            }
        }
        // A root may be anything a name points at, so its content decides
        // when its media type is unknown; children of manifests are leaves.
        let mut stack: Vec<(String, Descriptor, bool)> = roots
            .into_iter()
            .map(|(label, descriptor)| (label, descriptor, true))
            .collect();

        while let Some((referrer, descriptor, sniff)) = stack.pop() {
            let digest = descriptor.digest().clone();
            let Ok(hex) = sha256_hex(&digest) else {
                reach.unreadable.push(StoreError::UnsupportedDigest {
                    digest: digest.to_string(),
                });
                continue;
            };
            if !reach.blobs.insert(hex.to_string()) {
                continue;
            }
            if !self.has_blob(&digest) {
                reach.missing.push(MissingRef { referrer, digest });
                continue;
            }

            let kind = kind_of(descriptor.media_type());
            if kind == BlobKind::Config {
                match self.config_diff_ids(&digest) {
                    Ok(ids) => {
                        reach.diff_ids.extend(
                            ids.iter()
                                .filter_map(|id| sha256_hex(id).ok().map(str::to_string)),
                        );
                    }
                    Err(error) => reach.unreadable.push(error),
                }
                continue;
            }
            if kind == BlobKind::Other && !sniff {
                continue;
            }

            let label = digest.to_string();
            match self.read_document(&descriptor, kind) {
                Ok(Some(Document::Index(index))) => {
                    for child in index.manifests() {
                        stack.push((label.clone(), child.clone(), true));
                    }
                }
                Ok(Some(Document::Manifest(manifest))) => {
                    stack.push((label.clone(), manifest.config().clone(), false));
                    for layer in manifest.layers() {
                        stack.push((label.clone(), layer.clone(), false));
                    }
                }
                Ok(None) => {}
                Err(error) => reach.unreadable.push(error),
            }
        }
        reach
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_media_types_are_classified() {
        assert_eq!(
            kind_of(&MediaType::from(DOCKER_MANIFEST_LIST)),
            BlobKind::Index
        );
        assert_eq!(
            kind_of(&MediaType::from(DOCKER_MANIFEST)),
            BlobKind::Manifest
        );
        assert_eq!(kind_of(&MediaType::from(DOCKER_CONFIG)), BlobKind::Config);
        assert_eq!(kind_of(&MediaType::ImageLayerGzip), BlobKind::Other);
    }

    #[test]
    fn sniff_tells_manifest_index_and_config_apart() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": 2},
            "layers": [],
        });
        let index = serde_json::json!({"schemaVersion": 2, "manifests": []});
        let config = serde_json::json!({
            "architecture": "amd64",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": []},
        });
        assert_eq!(sniff(&manifest), Some(BlobKind::Manifest));
        assert_eq!(sniff(&index), Some(BlobKind::Index));
        assert_eq!(sniff(&config), None);
    }

    #[test]
    fn read_document_does_not_take_config_for_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // A config with `config` and `layers` keys, which a looser guess
        // took for a manifest.
        let config = store
            .put_json(
                &serde_json::json!({"config": {}, "layers": [], "os": "linux"}),
                MediaType::ImageConfig,
            )
            .unwrap();
        let as_other = Descriptor::new(
            MediaType::Other(String::new()),
            config.size(),
            config.digest().clone(),
        );
        assert!(matches!(
            store.read_document(&as_other, BlobKind::Other),
            Ok(None)
        ));
        assert!(matches!(
            store.read_document(&config, BlobKind::Config),
            Ok(None)
        ));
    }

    #[test]
    fn walk_reads_docker_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = store.put_blob(b"layer bytes").unwrap();
        let diff_id = format!("sha256:{}", "1".repeat(64));
        let config = store
            .put_json(
                &serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [diff_id]}}),
                MediaType::from(DOCKER_CONFIG),
            )
            .unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config,
            "layers": [layer.descriptor(MediaType::from("application/vnd.docker.image.rootfs.diff.tar.gzip"))],
        });
        let manifest = store
            .put_json(&manifest, MediaType::from(DOCKER_MANIFEST))
            .unwrap();

        let reach = store.walk(vec![("test".into(), manifest.clone())]);
        assert!(reach.blobs.contains(manifest.digest().digest()));
        assert!(reach.blobs.contains(config.digest().digest()));
        assert!(reach.blobs.contains(layer.digest.digest()));
        assert!(reach.diff_ids.contains(&"1".repeat(64)));
        assert!(reach.missing.is_empty());
        assert!(reach.unreadable.is_empty());
    }
}
