//! `load`: images from an OCI archive, an OCI layout folder or a
//! docker-archive into the store.
//!
//! The format is decided by content: `manifest.json` makes a
//! docker-archive (also when `docker save` adds an OCI layout beside it,
//! because `RepoTags` carry the full names), else `index.json` makes an OCI
//! layout. Every blob is checked against the digest and size that name it,
//! and every docker-archive layer against the diff id its config lists.
//! Uncompressed docker-archive layers are stored only gzip-compressed.
//! Names are set only after every image is stored.

use std::io::{self, Read};
use std::path::Path;

use oci_spec::image::{Descriptor, Digest, MediaType};
use serde::Deserialize;
use serde_json::json;

use super::CONTAINERD_NAME_ANNOTATION;
use super::error::{ArchiveError, Result};
use super::oci::{Document, Kind, MAX_INDEX_DEPTH, diff_ids, kind_of, parse_document};
use super::source::{LayerFile, Source};
use crate::layer;
use crate::store::{REF_NAME_ANNOTATION, Store, parse_digest};

/// An image that [`load`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// The store names given to it, after the caller's name callback; empty
    /// when the archive names it nowhere, and then the image is kept
    /// unnamed.
    pub names: Vec<String>,
    /// Tags that an OCI `ref.name` gives without a repository (`1.0`, as
    /// `skopeo copy ... oci:DIR:1.0` writes), which name no image by
    /// themselves.
    pub bare_tags: Vec<String>,
    /// Its manifest or index, without annotations.
    pub manifest: Descriptor,
    /// Its image id: the config digest, or the index digest for an index.
    pub image_id: Digest,
}

/// One entry of a docker-archive's `manifest.json`.
#[derive(Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// Loads every image of the archive at `path` (a tar, plain or
/// compressed, or a folder) into the store and names it.
///
/// `normalise` turns each `RepoTags` entry or `ref.name` annotation into
/// the name the store keeps (`busybox` to `busybox:latest`, say) or returns
/// why it is invalid. An OCI entry without `ref.name` falls back to the
/// `io.containerd.image.name` annotation.
///
/// A `ref.name` without `/` or `:` that is a valid tag (`1.0`, `latest`)
/// is taken as a tag, as the OCI image layout tools write it (skopeo's
/// `oci:DIR:TAG`, umoci, containerd). A tag names no repository, so the
/// image takes the full name of `io.containerd.image.name` when the entry
/// has one, and is otherwise loaded unnamed with the tag in
/// [`LoadedImage::bare_tags`]. NOTE: podman 4.3 takes the same entry for a
/// repository and names the image `localhost/1.0:latest`. A word such as
/// `app` could be either, and forge reads it as a tag too.
///
/// Images that the archive does not name are kept as unnamed images.
///
/// Nothing outside the store is written. A store lease is held throughout,
/// and a failed load names nothing; its blobs stay unreferenced until
/// `prune`.
///
/// # Errors
/// [`ArchiveError::UnknownFormat`] when the archive is neither format;
/// [`ArchiveError::UnsafeEntry`] for an absolute name, a `..` component,
/// a link leading outside the archive or a device node;
/// [`ArchiveError::DigestMismatch`] and [`ArchiveError::DiffIdMismatch`]
/// for corrupt content; [`ArchiveError::InvalidArchive`] for missing files
/// or malformed documents; [`ArchiveError::InvalidName`] when `normalise`
/// rejects a name.
pub fn load(
    store: &Store,
    path: &Path,
    normalise: &dyn Fn(&str) -> std::result::Result<String, String>,
) -> Result<Vec<LoadedImage>> {
    let _lease = store.lease()?;
    let mut source = Source::open(store, path)?;

    let images = if let Some(manifest) = source.document("manifest.json")? {
        load_docker(store, &mut source, &manifest, normalise)?
    } else if let Some(index) = source.document("index.json")? {
        load_oci(store, &mut source, &index, normalise)?
    } else {
        return Err(ArchiveError::UnknownFormat {
            path: path.to_path_buf(),
            reason: "it has neither manifest.json nor index.json".into(),
        });
    };

    for image in &images {
        for name in &image.names {
            store.set_name(name, &image.manifest)?;
        }
        if image.names.is_empty() {
            store.add_unnamed(&image.manifest)?;
        }
    }
    tracing::debug!(archive = %path.display(), images = images.len(), "archive loaded");
    Ok(images)
}

fn invalid(source: &Source, reason: String) -> ArchiveError {
    ArchiveError::InvalidArchive {
        archive: source.archive().to_path_buf(),
        reason,
    }
}

fn normalise_name(
    source: &Source,
    name: &str,
    normalise: &dyn Fn(&str) -> std::result::Result<String, String>,
) -> Result<String> {
    normalise(name).map_err(|reason| ArchiveError::InvalidName {
        archive: source.archive().to_path_buf(),
        name: name.to_string(),
        reason,
    })
}

/// Adds `image`, or its names to an earlier entry of the same manifest.
fn merge(images: &mut Vec<LoadedImage>, image: LoadedImage) {
    match images
        .iter_mut()
        .find(|entry| entry.manifest.digest() == image.manifest.digest())
    {
        Some(entry) => {
            for name in image.names {
                if !entry.names.contains(&name) {
                    entry.names.push(name);
                }
            }
            for tag in image.bare_tags {
                if !entry.bare_tags.contains(&tag) {
                    entry.bare_tags.push(tag);
                }
            }
        }
        None => images.push(image),
    }
}

fn load_oci(
    store: &Store,
    source: &mut Source,
    index_bytes: &[u8],
    normalise: &dyn Fn(&str) -> std::result::Result<String, String>,
) -> Result<Vec<LoadedImage>> {
    match source.document("oci-layout")? {
        Some(layout) => {
            let value: serde_json::Value = serde_json::from_slice(&layout)
                .map_err(|error| invalid(source, format!("oci-layout is not JSON: {error}")))?;
            let version = value
                .get("imageLayoutVersion")
                .and_then(|version| version.as_str());
            if version != Some("1.0.0") {
                return Err(invalid(
                    source,
                    format!("oci-layout gives image layout version {version:?}; forge reads 1.0.0"),
                ));
            }
        }
        None => {
            return Err(invalid(
                source,
                "it has index.json but no oci-layout file".into(),
            ));
        }
    }
    let index = match parse_document(index_bytes, Kind::Index) {
        Ok(Document::Index(index)) => index,
        Ok(Document::Manifest(_)) => {
            return Err(invalid(source, "index.json is not an image index".into()));
        }
        Err(reason) => return Err(invalid(source, format!("index.json: {reason}"))),
    };

    let mut images = Vec::new();
    for entry in index.manifests() {
        let annotations = entry.annotations().clone().unwrap_or_default();
        let ref_name = annotations.get(REF_NAME_ANNOTATION);
        let bare_tag = ref_name.filter(|name| is_bare_tag(name));
        let full_name = ref_name
            .filter(|_| bare_tag.is_none())
            .or_else(|| annotations.get(CONTAINERD_NAME_ANNOTATION));
        let names = match full_name {
            Some(name) => vec![normalise_name(source, name, normalise)?],
            None => Vec::new(),
        };
        let bare_tags = bare_tag.cloned().into_iter().collect();
        let manifest = Descriptor::new(
            entry.media_type().clone(),
            entry.size(),
            entry.digest().clone(),
        );
        let image_id = import_tree(store, source, &manifest, 0)?;
        merge(
            &mut images,
            LoadedImage {
                names,
                bare_tags,
                manifest,
                image_id,
            },
        );
    }
    Ok(images)
}

/// Returns whether a `ref.name` is a tag alone: no `/` or `:`, and the
/// tag grammar of the distribution spec, `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_bare_tag(name: &str) -> bool {
    let mut characters = name.chars();
    let first_valid = characters
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric() || first == '_');
    first_valid
        && name.len() <= 128
        && characters.all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | '-')
        })
}

/// Stores a manifest or index and everything it reaches; returns the image
/// id (config digest, or the index digest).
fn import_tree(
    store: &Store,
    source: &mut Source,
    descriptor: &Descriptor,
    depth: usize,
) -> Result<Digest> {
    let name = blob_name(source, descriptor)?;
    source.blob(store, &name, Some(descriptor))?;
    let bytes = store.read_blob(descriptor.digest())?;
    let kind = kind_of(descriptor.media_type());
    let document = parse_document(&bytes, kind)
        .map_err(|reason| invalid(source, format!("`{name}`: {reason}")))?;
    match document {
        Document::Manifest(manifest) => {
            let config = manifest.config();
            source.blob(store, &blob_name(source, config)?, Some(config))?;
            for layer in manifest.layers() {
                source.blob(store, &blob_name(source, layer)?, Some(layer))?;
            }
            Ok(config.digest().clone())
        }
        Document::Index(index) => {
            if depth >= MAX_INDEX_DEPTH {
                return Err(invalid(
                    source,
                    format!("`{name}`: indexes nest deeper than {MAX_INDEX_DEPTH} levels"),
                ));
            }
            for child in index.manifests() {
                import_tree(store, source, child, depth + 1)?;
            }
            Ok(descriptor.digest().clone())
        }
    }
}

/// Returns `blobs/sha256/HEX` for a descriptor; other algorithms are rejected.
fn blob_name(source: &Source, descriptor: &Descriptor) -> Result<String> {
    let digest = descriptor.digest();
    parse_digest(digest.as_ref())
        .map_err(|error| invalid(source, format!("descriptor of {digest}: {error}")))?;
    Ok(format!("blobs/sha256/{}", digest.digest()))
}

fn load_docker(
    store: &Store,
    source: &mut Source,
    manifest_bytes: &[u8],
    normalise: &dyn Fn(&str) -> std::result::Result<String, String>,
) -> Result<Vec<LoadedImage>> {
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(manifest_bytes).map_err(|error| {
            invalid(
                source,
                format!("manifest.json is not a docker-archive manifest list: {error}"),
            )
        })?;
    if entries.is_empty() {
        return Err(invalid(source, "manifest.json lists no images".into()));
    }

    // Names are checked before anything is stored.
    let mut all_names = Vec::new();
    for entry in &entries {
        let mut names = Vec::new();
        for tag in entry.repo_tags.iter().flatten() {
            names.push(normalise_name(source, tag, normalise)?);
        }
        all_names.push(names);
    }

    let mut images = Vec::new();
    for (entry, names) in entries.iter().zip(all_names) {
        let config = source.blob(store, &entry.config, None)?;
        if let Some(expected) = config_digest_in_name(&entry.config)
            && expected != config.digest
        {
            return Err(ArchiveError::DigestMismatch {
                archive: source.archive().to_path_buf(),
                entry: entry.config.clone(),
                expected: expected.to_string(),
                expected_size: config.size,
                actual: config.digest.to_string(),
                actual_size: config.size,
            });
        }
        let config_value: serde_json::Value = store
            .get_json(&config.digest)
            .map_err(|error| invalid(source, format!("config `{}`: {error}", entry.config)))?;
        let ids = diff_ids(&config_value)
            .map_err(|reason| invalid(source, format!("config `{}`: {reason}", entry.config)))?;
        if ids.len() != entry.layers.len() {
            return Err(invalid(
                source,
                format!(
                    "config `{}` lists {} diff ids, but manifest.json lists {} layers",
                    entry.config,
                    ids.len(),
                    entry.layers.len()
                ),
            ));
        }

        let mut layers = Vec::new();
        for (layer_name, diff_id) in entry.layers.iter().zip(&ids) {
            let (media_type, info, actual, tar_size) = match source.layer(store, layer_name)? {
                LayerFile::Gzipped(tar) => (
                    MediaType::ImageLayerGzip,
                    tar.gzip,
                    tar.plain.digest,
                    tar.plain.size,
                ),
                LayerFile::Stored(info) => {
                    let (media_type, actual, tar_size) = layer_diff_id(store, &info.digest)?;
                    (media_type, info, actual, tar_size)
                }
            };
            if &actual != diff_id {
                return Err(ArchiveError::DiffIdMismatch {
                    archive: source.archive().to_path_buf(),
                    entry: layer_name.clone(),
                    expected: diff_id.to_string(),
                    actual: actual.to_string(),
                });
            }
            store.record_layer_size(diff_id, tar_size);
            let layer = if media_type == MediaType::ImageLayer {
                gzip_layer(store, &info.digest)?
            } else {
                info.descriptor(media_type)
            };
            layers.push(layer);
        }

        let config_descriptor = config.descriptor(MediaType::ImageConfig);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MediaType::ImageManifest.to_string(),
            "config": config_descriptor,
            "layers": layers,
        });
        let manifest = store.put_json(&manifest, MediaType::ImageManifest)?;
        merge(
            &mut images,
            LoadedImage {
                names,
                bare_tags: Vec::new(),
                manifest,
                image_id: config.digest.clone(),
            },
        );
    }
    Ok(images)
}

/// Stores a gzip-compressed copy of the uncompressed layer blob `digest`
/// and returns its descriptor. A docker-archive contains plain tars, which
/// `forge push` would otherwise send uncompressed. The diff id stays
/// the plain blob's digest, so the config and the image id do not change.
/// The gzip output depends only on the tar, so loading the same archive
/// again stores the same blob.
///
/// [`Source::layer`] compresses the plain tars it recognises without
/// storing them, so this only runs for a plain tar without the `ustar`
/// magic. NOTE: that uncompressed blob stays in the store, unreferenced
/// when no other image uses it, until `forge prune` removes it.
fn gzip_layer(store: &Store, digest: &Digest) -> Result<Descriptor> {
    let layer_error = |source| ArchiveError::Layer {
        digest: digest.to_string(),
        source,
    };
    let mut reader = store.open_blob(digest)?;
    let mut writer = store.blob_writer()?;
    layer::compress(&mut reader, layer::Compression::Gzip, None, &mut writer)
        .map_err(layer_error)?;
    let info = writer.commit(None)?;
    tracing::debug!(plain = %digest, gzip = %info.digest, "compressed a docker-archive layer");
    Ok(info.descriptor(MediaType::ImageLayerGzip))
}

/// Returns the digest that a config name `HEX.json` or `blobs/sha256/HEX` gives.
fn config_digest_in_name(name: &str) -> Option<Digest> {
    let hex = name
        .strip_suffix(".json")
        .or_else(|| name.strip_prefix("blobs/sha256/"))?;
    parse_digest(&format!("sha256:{hex}")).ok()
}

/// Returns the media type of a stored layer blob by its compression, and
/// the digest and length in bytes of its uncompressed content.
fn layer_diff_id(store: &Store, digest: &Digest) -> Result<(MediaType, Digest, u64)> {
    let layer_error = |source| ArchiveError::Layer {
        digest: digest.to_string(),
        source,
    };
    let mut magic = [0u8; 4];
    let mut reader = store.open_blob(digest)?;
    let mut filled = 0;
    while filled < magic.len() {
        let count = reader
            .read(magic.get_mut(filled..).unwrap_or_default())
            .map_err(|source| layer_error(layer::LayerError::Read { source }))?;
        if count == 0 {
            break;
        }
        filled += count;
    }
    let media_type = match magic {
        [0x1f, 0x8b, _, _] => MediaType::ImageLayerGzip,
        [0x28, 0xb5, 0x2f, 0xfd] => MediaType::ImageLayerZstd,
        // Plain tar: the blob digest is the diff id.
        _ => {
            return Ok((
                MediaType::ImageLayer,
                digest.clone(),
                store.blob_size(digest)?,
            ));
        }
    };

    let reader = store.open_blob(digest)?;
    let mut stream = layer::decompress(Box::new(reader)).map_err(layer_error)?;
    let mut hasher = HashSink::default();
    let tar_size = io::copy(&mut stream, &mut hasher)
        .map_err(|source| layer_error(layer::LayerError::Read { source }))?;
    let actual = parse_digest(&format!(
        "sha256:{}",
        hex::encode(sha2::Digest::finalize(hasher.hasher))
    ))?;
    Ok((media_type, actual, tar_size))
}

#[derive(Default)]
struct HashSink {
    hasher: sha2::Sha256,
}

impl io::Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sha2::Digest::update(&mut self.hasher, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_tags_are_recognised() {
        for tag in ["1.0", "latest", "v1.2.3-rc_1", "_x", "A"] {
            assert!(is_bare_tag(tag), "{tag} not taken as a tag");
        }
    }

    #[test]
    fn full_names_are_not_bare_tags() {
        let long = "a".repeat(129);
        for name in [
            "app:1.0",
            "team/app",
            "localhost:5000/app",
            "",
            ".x",
            "-x",
            "a+b",
            &long,
        ] {
            assert!(!is_bare_tag(name), "{name} taken as a tag");
        }
    }

    #[test]
    fn config_digest_from_name_forms() {
        let hex = "a".repeat(64);
        assert!(config_digest_in_name(&format!("{hex}.json")).is_some());
        assert!(config_digest_in_name(&format!("blobs/sha256/{hex}")).is_some());
        assert!(config_digest_in_name("config.json").is_none());
    }
}
