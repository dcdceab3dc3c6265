//! Media types and the walk over a stored image that saving and loading share.

use std::collections::HashSet;

use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest, MediaType};

use super::error::{ArchiveError, Result};
use crate::store::Store;

/// Docker schema-2 manifest list, the Docker twin of the OCI image index.
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema-2 image manifest.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The maximum nesting depth of indexes inside indexes.
pub(crate) const MAX_INDEX_DEPTH: usize = 8;

/// The kind of blob that a descriptor's media type declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Index,
    Manifest,
    /// A config, a layer or an unknown type.
    Other,
}

pub(crate) fn kind_of(media_type: &MediaType) -> Kind {
    match media_type {
        MediaType::ImageIndex => Kind::Index,
        MediaType::ImageManifest => Kind::Manifest,
        MediaType::Other(text) if text == DOCKER_MANIFEST_LIST => Kind::Index,
        MediaType::Other(text) if text == DOCKER_MANIFEST => Kind::Manifest,
        _ => Kind::Other,
    }
}

/// A parsed manifest or index.
pub(crate) enum Document {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// Parses `bytes` as the manifest or index that `kind` claims, or decides
/// by the content when the media type declares neither. Returns `Err` with the
/// parse problem.
pub(crate) fn parse_document(bytes: &[u8], kind: Kind) -> std::result::Result<Document, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|error| format!("invalid JSON: {error}"))?;
    let as_index = match kind {
        Kind::Index => true,
        Kind::Manifest => false,
        Kind::Other if value.get("manifests").is_some() => true,
        Kind::Other if value.get("layers").is_some() => false,
        Kind::Other => return Err("neither an image manifest nor an index".into()),
    };
    if as_index {
        serde_json::from_value(value)
            .map(|index| Document::Index(Box::new(index)))
            .map_err(|error| format!("not an image index: {error}"))
    } else {
        serde_json::from_value(value)
            .map(|manifest| Document::Manifest(Box::new(manifest)))
            .map_err(|error| format!("not an image manifest: {error}"))
    }
}

/// Reads a stored manifest or index.
pub(crate) fn read_document(store: &Store, descriptor: &Descriptor) -> Result<Document> {
    let bytes = store.read_blob(descriptor.digest())?;
    parse_document(&bytes, kind_of(descriptor.media_type())).map_err(|reason| {
        crate::store::StoreError::BadManifest {
            digest: descriptor.digest().to_string(),
            reason,
        }
        .into()
    })
}

/// Lists every blob that `root` reaches, `root` first, each once. Every
/// blob must be stored.
pub(crate) fn image_blobs(store: &Store, root: &Descriptor) -> Result<Vec<Descriptor>> {
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut blobs = Vec::new();
    let mut stack = vec![(root.clone(), 0usize)];
    while let Some((descriptor, depth)) = stack.pop() {
        if !seen.insert(descriptor.digest().clone()) {
            continue;
        }
        // Reports a missing blob by its digest before anything is written.
        store.blob_size(descriptor.digest())?;
        let is_root = depth == 0;
        let kind = kind_of(descriptor.media_type());
        blobs.push(descriptor.clone());
        if kind == Kind::Other && !is_root {
            continue;
        }
        match read_document(store, &descriptor)? {
            Document::Index(index) => {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(crate::store::StoreError::BadManifest {
                        digest: descriptor.digest().to_string(),
                        reason: format!("indexes nest deeper than {MAX_INDEX_DEPTH} levels"),
                    }
                    .into());
                }
                for child in index.manifests().iter().rev() {
                    stack.push((child.clone(), depth + 1));
                }
            }
            Document::Manifest(manifest) => {
                for layer in manifest.layers().iter().rev() {
                    stack.push((layer.clone(), usize::MAX));
                }
                stack.push((manifest.config().clone(), usize::MAX));
            }
        }
    }
    Ok(blobs)
}

/// Returns the `GOARCH` name of the architecture this program runs on.
pub(crate) fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Picks the image manifest of `descriptor`: itself when it is a manifest,
/// or the `linux` entry for this machine's architecture of an index.
pub(crate) fn select_manifest(
    store: &Store,
    reference: &str,
    format: &'static str,
    descriptor: &Descriptor,
) -> Result<(Descriptor, ImageManifest)> {
    let mut current = descriptor.clone();
    for _ in 0..MAX_INDEX_DEPTH {
        match read_document(store, &current)? {
            Document::Manifest(manifest) => return Ok((current, *manifest)),
            Document::Index(index) => {
                let architecture = host_architecture();
                let entry = index.manifests().iter().find(|entry| {
                    entry.platform().as_ref().is_some_and(|platform| {
                        platform.os().to_string() == "linux"
                            && platform.architecture().to_string() == architecture
                    })
                });
                let Some(entry) = entry else {
                    let platforms: Vec<String> = index
                        .manifests()
                        .iter()
                        .filter_map(|entry| entry.platform().as_ref())
                        .map(|platform| format!("{}/{}", platform.os(), platform.architecture()))
                        .collect();
                    return Err(ArchiveError::Unsupported {
                        reference: reference.to_string(),
                        format,
                        reason: format!(
                            "it is an index without a linux/{architecture} image (it has {}); save one platform's manifest by its digest",
                            if platforms.is_empty() {
                                "no platforms".to_string()
                            } else {
                                platforms.join(", ")
                            }
                        ),
                    });
                };
                current = entry.clone();
            }
        }
    }
    Err(ArchiveError::Unsupported {
        reference: reference.to_string(),
        format,
        reason: format!("its indexes nest deeper than {MAX_INDEX_DEPTH} levels"),
    })
}

/// Reads the `rootfs.diff_ids` of a config document.
pub(crate) fn diff_ids(config: &serde_json::Value) -> std::result::Result<Vec<Digest>, String> {
    let Some(list) = config
        .pointer("/rootfs/diff_ids")
        .and_then(|ids| ids.as_array())
    else {
        return Err("the config has no rootfs.diff_ids list".into());
    };
    list.iter()
        .map(|item| {
            item.as_str()
                .and_then(|text| Digest::try_from(text).ok())
                .ok_or_else(|| format!("the config has an invalid diff id {item}"))
        })
        .collect()
}
