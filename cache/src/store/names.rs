//! Image names: descriptors in `index.json` annotated with
//! `org.opencontainers.image.ref.name`, one per name, and the lookup of a
//! reference (name, `NAME@DIGEST`, digest or short image id).

use std::collections::{BTreeMap, HashMap};
use std::fs;

use oci_spec::image::{Descriptor, Digest, ImageIndex, MediaType};

use super::Store;
use super::blobs::{parse_digest, sha256_hex};
use super::error::{Result, StoreError};
use super::graph::{BlobKind, Document, kind_of};
use super::lock::LockMode;

/// The annotation that contains an image name in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Returns the name an `index.json` descriptor carries, if any.
pub(crate) fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|annotations| annotations.get(REF_NAME_ANNOTATION))
        .map(String::as_str)
}

/// Checks `name` against the OCI `ref.name` grammar: components joined by
/// `/`, each of ASCII letters and digits separated by one of `-._:+` or
/// by `--`. `@` is rejected because `NAME@DIGEST` is a lookup by digest.
fn validate_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(StoreError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return invalid("a name must not be empty");
    }
    if name.contains('@') {
        return invalid("a name must not contain '@'; tag the image without the digest");
    }
    for component in name.split('/') {
        if component.is_empty() {
            return invalid("a name must not have an empty component between '/'");
        }
        let mut previous_separator = true;
        let mut dashes = 0;
        for character in component.chars() {
            if character.is_ascii_alphanumeric() {
                previous_separator = false;
                dashes = 0;
            } else if matches!(character, '-' | '.' | '_' | ':' | '+') {
                let second_dash = character == '-' && dashes == 1;
                if previous_separator && !second_dash {
                    return invalid(
                        "separators (- . _ : +) must sit between letters or digits, except '--'",
                    );
                }
                dashes = if character == '-' { dashes + 1 } else { 0 };
                previous_separator = true;
            } else {
                return invalid("only ASCII letters, digits, '/' and - . _ : + are allowed");
            }
        }
        if previous_separator {
            return invalid("a name must not end a component with a separator");
        }
    }
    Ok(())
}

impl Store {
    pub(crate) fn read_index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(|source| StoreError::io("read", &path, source))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::DecodeJson {
            what: "index.json".into(),
            path,
            source,
        })
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let bytes = serde_json::to_vec(index).map_err(|source| StoreError::EncodeJson {
            what: "index.json".into(),
            source,
        })?;
        self.write_atomic(&self.index_path(), &bytes)
    }

    /// Reads `index.json`, lets `change` edit its descriptors and writes it
    /// back, all under the index lock.
    pub(crate) fn update_index<T>(
        &self,
        change: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>,
    ) -> Result<T> {
        let _index_lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        let output = change(&mut manifests)?;
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(output)
    }

    /// Names `descriptor` (a manifest or index) `name`, replacing the
    /// descriptor that had the name before.
    ///
    /// # Errors
    /// [`StoreError::InvalidName`] for names outside the OCI grammar;
    /// [`StoreError::MissingBlob`] when the blob is not stored.
    pub fn set_name(&self, name: &str, descriptor: &Descriptor) -> Result<()> {
        validate_name(name)?;
        let _store_lock = self.lock_store(LockMode::Shared)?;
        if !self.has_blob(descriptor.digest()) {
            return Err(StoreError::MissingBlob {
                what: format!("image name {name}"),
                digest: descriptor.digest().to_string(),
            });
        }

        let mut named = descriptor.clone();
        let mut annotations = named.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME_ANNOTATION.to_string(), name.to_string());
        named.set_annotations(Some(annotations));

        self.update_index(|manifests| {
            let mut replaced = false;
            manifests.retain_mut(|entry| {
                if ref_name(entry) != Some(name) {
                    return true;
                }
                if replaced {
                    return false;
                }
                *entry = named.clone();
                replaced = true;
                true
            });
            if !replaced {
                manifests.push(named);
            }
            Ok(())
        })?;
        tracing::debug!(name, digest = %descriptor.digest(), "name set");
        Ok(())
    }

    /// Removes the name and returns the descriptor it pointed at. The
    /// blobs stay until `prune`.
    ///
    /// # Errors
    /// [`StoreError::NameNotFound`] with the closest existing name.
    pub fn remove_name(&self, name: &str) -> Result<Descriptor> {
        let _store_lock = self.lock_store(LockMode::Shared)?;
        let removed = self.update_index(|manifests| {
            let mut removed = None;
            manifests.retain(|entry| {
                if ref_name(entry) == Some(name) {
                    removed = Some(entry.clone());
                    return false;
                }
                true
            });
            removed.ok_or_else(|| not_found(name, manifests.iter().filter_map(ref_name)))
        })?;
        tracing::debug!(name, "name removed");
        Ok(removed)
    }

    /// Lists every name with its descriptor, sorted by name.
    ///
    /// # Errors
    /// [`StoreError::Io`] or [`StoreError::DecodeJson`] when `index.json`
    /// cannot be read.
    pub fn list_names(&self) -> Result<Vec<(String, Descriptor)>> {
        let index = self.read_index()?;
        let mut names: Vec<(String, Descriptor)> = index
            .manifests()
            .iter()
            .filter_map(|entry| ref_name(entry).map(|name| (name.to_string(), entry.clone())))
            .collect();
        names.sort_by(|left, right| left.0.cmp(&right.0));
        Ok(names)
    }

    /// The image id of a named descriptor as Docker shows it: the config
    /// digest of an image manifest, or the digest itself for an index.
    ///
    /// # Errors
    /// [`StoreError::BlobNotFound`], [`StoreError::BlobCorrupt`] or
    /// [`StoreError::BadManifest`] when the manifest cannot be read.
    pub fn image_id(&self, descriptor: &Descriptor) -> Result<Digest> {
        let kind = kind_of(descriptor.media_type());
        match self.read_document(descriptor, kind)? {
            Some(Document::Manifest(manifest)) => Ok(manifest.config().digest().clone()),
            _ => Ok(descriptor.digest().clone()),
        }
    }

    /// Finds the manifest or index descriptor that `reference` names: an
    /// image name, `NAME@sha256:HEX`, a full `sha256:HEX` digest of a
    /// manifest or of an image id, or a unique prefix of an image id or
    /// manifest digest (with or without `sha256:`).
    ///
    /// # Errors
    /// [`StoreError::NameNotFound`] with the closest name as suggestion;
    /// [`StoreError::AmbiguousId`] listing the matching ids;
    /// [`StoreError::InvalidReference`] for a malformed digest.
    pub fn resolve(&self, reference: &str) -> Result<Descriptor> {
        let names = self.list_names()?;

        if let Some((name, digest_text)) = reference.rsplit_once('@') {
            let digest =
                parse_digest(digest_text).map_err(|error| StoreError::InvalidReference {
                    reference: reference.to_string(),
                    reason: error.to_string(),
                })?;
            // As docker does, `NAME@DIGEST` matches only a manifest stored
            // under a tag of the same repository.
            let repository = repository_of(name);
            if let Some((_, descriptor)) = names.iter().find(|(entry, descriptor)| {
                repository_of(entry) == repository && descriptor.digest() == &digest
            }) {
                return Ok(descriptor.clone());
            }
            return Err(not_found(
                reference,
                names.iter().map(|(name, _)| name.as_str()),
            ));
        }

        if let Some((_, descriptor)) = names.iter().find(|(name, _)| name == reference) {
            return Ok(descriptor.clone());
        }

        let hex = reference.strip_prefix("sha256:");
        if let Some(full) = hex.filter(|hex| hex.len() == 64) {
            let digest = parse_digest(&format!("sha256:{full}")).map_err(|error| {
                StoreError::InvalidReference {
                    reference: reference.to_string(),
                    reason: error.to_string(),
                }
            })?;
            return self.resolve_digest(reference, &digest, &names);
        }
        let prefix = hex.unwrap_or(reference);
        let is_hex = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
        if is_hex && let Some(descriptor) = self.resolve_prefix(reference, prefix, &names)? {
            return Ok(descriptor);
        }
        Err(not_found(
            reference,
            names.iter().map(|(name, _)| name.as_str()),
        ))
    }

    /// Resolves a full digest: a named manifest, a named image's id, or
    /// any stored manifest or index.
    fn resolve_digest(
        &self,
        reference: &str,
        digest: &Digest,
        names: &[(String, Descriptor)],
    ) -> Result<Descriptor> {
        if let Some((_, descriptor)) = names.iter().find(|(_, entry)| entry.digest() == digest) {
            return Ok(descriptor.clone());
        }
        for (_, descriptor) in names {
            if self.image_id(descriptor).ok().as_ref() == Some(digest) {
                return Ok(descriptor.clone());
            }
        }
        if !self.has_blob(digest) {
            return Err(StoreError::NameNotFound {
                reference: reference.to_string(),
                suggestion: None,
            });
        }

        // An unnamed blob: its content tells whether it is an image.
        let size = self.blob_size(digest)?;
        let probe = Descriptor::new(MediaType::Other(String::new()), size, digest.clone());
        let media_type = match self.read_document(&probe, BlobKind::Other)? {
            Some(Document::Index(index)) => {
                index.media_type().clone().unwrap_or(MediaType::ImageIndex)
            }
            Some(Document::Manifest(manifest)) => manifest
                .media_type()
                .clone()
                .unwrap_or(MediaType::ImageManifest),
            None => {
                return Err(StoreError::InvalidReference {
                    reference: reference.to_string(),
                    reason: format!("blob {digest} is not an image manifest or index"),
                });
            }
        };
        Ok(Descriptor::new(media_type, size, digest.clone()))
    }

    /// Resolves a hex prefix of an image id or manifest digest among the
    /// named images. Several names of one manifest count as one match.
    fn resolve_prefix(
        &self,
        reference: &str,
        prefix: &str,
        names: &[(String, Descriptor)],
    ) -> Result<Option<Descriptor>> {
        // Manifest digest -> (descriptor, image id, names).
        let mut matches: BTreeMap<String, (Descriptor, String, Vec<&str>)> = BTreeMap::new();
        let mut image_ids: HashMap<String, String> = HashMap::new();
        for (name, descriptor) in names {
            let manifest_hex = sha256_hex(descriptor.digest())
                .unwrap_or_default()
                .to_string();
            let id_hex = match image_ids.get(&manifest_hex) {
                Some(id) => id.clone(),
                None => {
                    let id = self
                        .image_id(descriptor)
                        .ok()
                        .and_then(|id| sha256_hex(&id).ok().map(str::to_string))
                        .unwrap_or_else(|| manifest_hex.clone());
                    image_ids.insert(manifest_hex.clone(), id.clone());
                    id
                }
            };
            if id_hex.starts_with(prefix) || manifest_hex.starts_with(prefix) {
                matches
                    .entry(manifest_hex)
                    .or_insert_with(|| (descriptor.clone(), id_hex, Vec::new()))
                    .2
                    .push(name);
            }
        }

        if matches.len() > 1 {
            let candidates = matches
                .values()
                .map(|(_, id, names)| {
                    let short = id.get(..12).unwrap_or(id);
                    format!("{short} ({})", names.join(", "))
                })
                .collect();
            return Err(StoreError::AmbiguousId {
                prefix: reference.to_string(),
                candidates,
            });
        }
        Ok(matches
            .into_values()
            .next()
            .map(|(descriptor, _, _)| descriptor))
    }
}

/// Builds a not-found error that suggests the closest of `names`.
fn not_found<'a>(reference: &str, names: impl Iterator<Item = &'a str>) -> StoreError {
    StoreError::NameNotFound {
        reference: reference.to_string(),
        suggestion: closest_name(reference, names),
    }
}

/// Picks the name closest to `reference`: one that only adds a tag to it,
/// else the one with the smallest edit distance if that distance is at
/// most a third of the reference's length (at least 1).
fn closest_name<'a>(reference: &str, names: impl Iterator<Item = &'a str>) -> Option<String> {
    let limit = (reference.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for name in names {
        if name
            .strip_prefix(reference)
            .is_some_and(|rest| rest.starts_with(':'))
        {
            return Some(name.to_string());
        }
        let distance = edit_distance(reference, name);
        if distance <= limit && best.is_none_or(|(smallest, _)| distance < smallest) {
            best = Some((distance, name));
        }
    }
    best.map(|(_, name)| name.to_string())
}

/// Levenshtein distance in characters.
fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    let mut current = vec![0; right.len() + 1];
    for (i, left_char) in left.chars().enumerate() {
        current[0] = i + 1;
        for (j, right_char) in right.iter().enumerate() {
            let substitution = previous[j] + usize::from(left_char != *right_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[right.len()]
}

/// Returns the repository part of a stored name: `host:5000/app:v1` gives
/// `host:5000/app`, and a name without a tag is returned whole.
fn repository_of(name: &str) -> &str {
    let last_component = name.rfind('/').map_or(0, |slash| slash + 1);
    match name[last_component..].rfind(':') {
        Some(colon) => &name[..last_component + colon],
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_valid() {
        for name in [
            "app:latest",
            "localhost:5000/team/app:v1.2",
            "a--b",
            "docker.io/library/x:1_0",
        ] {
            assert!(validate_name(name).is_ok(), "{name} rejected");
        }
    }

    #[test]
    fn names_that_are_invalid() {
        for name in [
            "",
            "app@sha256:00",
            "/app",
            "app/",
            "app:",
            ".app",
            "a b",
            "a//b",
            "a---b",
        ] {
            assert!(validate_name(name).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("foo:lates", "foo:latest"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn closest_name_prefers_added_tag() {
        let names = ["app:latest", "apq"];
        assert_eq!(
            closest_name("app", names.into_iter()),
            Some("app:latest".into())
        );
    }

    #[test]
    fn closest_name_skips_distant_names() {
        let names = ["completely:different"];
        assert_eq!(closest_name("foo:latest", names.into_iter()), None);
    }

    #[test]
    fn repository_of_strips_tag_only() {
        assert_eq!(repository_of("app:latest"), "app");
        assert_eq!(repository_of("localhost:5000/app:v1"), "localhost:5000/app");
        assert_eq!(repository_of("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(repository_of("app"), "app");
    }
}
