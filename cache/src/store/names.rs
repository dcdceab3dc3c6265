//! Image names, digest references and unnamed images in `index.json`,
//! and the lookup of a reference (name, `NAME@DIGEST`, digest or short
//! image id).
//!
//! A name is a descriptor annotated with
//! `org.opencontainers.image.ref.name`, one per name. A digest reference
//! (an image pulled as `REPOSITORY@DIGEST`, which docker lists with the
//! tag `<none>`) is a descriptor without that annotation but with
//! [`REPOSITORY_ANNOTATION`], one per repository and manifest. An unnamed
//! image (docker calls it dangling) is a descriptor with neither, at most
//! one per manifest that no name or digest reference points at.

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

/// The annotation of a digest reference in `index.json`: the repository
/// (`localhost:5000/app`) from which the image was pulled by digest.
pub const REPOSITORY_ANNOTATION: &str = "forge.image.repository";

/// The annotation of an `index.json` entry that contains the digest of the
/// multi-platform index from which its manifest was picked. The index blob
/// stays in the store as long as such an entry does, and `NAME@DIGEST`
/// with the index digest finds the entry.
pub const SOURCE_INDEX_ANNOTATION: &str = "forge.image.index";

/// Returns the name an `index.json` descriptor carries, if any.
pub(crate) fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|annotations| annotations.get(REF_NAME_ANNOTATION))
        .map(String::as_str)
}

/// Returns the repository of a digest reference: an `index.json` entry
/// without a name that carries [`REPOSITORY_ANNOTATION`].
pub(crate) fn digest_repository(descriptor: &Descriptor) -> Option<&str> {
    if ref_name(descriptor).is_some() {
        return None;
    }
    descriptor
        .annotations()
        .as_ref()
        .and_then(|annotations| annotations.get(REPOSITORY_ANNOTATION))
        .map(String::as_str)
}

/// Returns the index digest that [`SOURCE_INDEX_ANNOTATION`] records on an
/// `index.json` entry, if it is a valid digest.
pub fn source_index(descriptor: &Descriptor) -> Option<Digest> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|annotations| annotations.get(SOURCE_INDEX_ANNOTATION))
        .and_then(|text| parse_digest(text).ok())
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
    /// back when they changed, all under the index lock.
    pub(crate) fn update_index<T>(
        &self,
        change: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>,
    ) -> Result<T> {
        let _index_lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        let output = change(&mut manifests)?;
        if &manifests != index.manifests() {
            index.set_manifests(manifests);
            self.write_index(&index)?;
        }
        Ok(output)
    }

    /// Names `descriptor` (a manifest or index) `name`, replacing the
    /// descriptor that had the name before.
    ///
    /// An unnamed entry of the same manifest goes, because the image now
    /// has a name; digest references of the manifest stay. The image that had the name before becomes unnamed (a
    /// dangling image, in docker's words) when no other entry points at it,
    /// so `forge images` lists it as `<none>` until `prune` removes it.
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

        let named = with_name(descriptor, Some(name));
        let digest = descriptor.digest();
        let dangling = self.update_index(|manifests| {
            // The entry with the name is replaced in place, so the order of
            // `index.json` stays stable; a repeated entry of the name goes.
            let mut previous = None;
            manifests.retain_mut(|entry| match ref_name(entry) {
                Some(entry_name) if entry_name == name => {
                    if previous.is_some() {
                        return false;
                    }
                    previous = Some(std::mem::replace(entry, named.clone()));
                    true
                }
                Some(_) => true,
                None => entry.digest() != digest || digest_repository(entry).is_some(),
            });

            let Some(previous) = previous else {
                manifests.push(named);
                return Ok(None);
            };
            let still_listed = manifests
                .iter()
                .any(|entry| entry.digest() == previous.digest());
            if still_listed {
                return Ok(None);
            }
            let unnamed = with_name(&previous, None);
            manifests.push(unnamed);
            Ok(Some(previous.digest().clone()))
        })?;
        tracing::debug!(name, digest = %descriptor.digest(), ?dangling, "name set");
        Ok(())
    }

    /// Keeps `descriptor` (a manifest or index) as an unnamed image: an
    /// `index.json` entry without `org.opencontainers.image.ref.name`, which
    /// the OCI image layout allows and OCI readers that look up names skip.
    /// Does nothing when an entry, named or not, already points at the
    /// manifest. Returns whether an entry was added.
    ///
    /// # Errors
    /// [`StoreError::MissingBlob`] when the blob is not stored;
    /// [`StoreError::Io`] when `index.json` cannot be rewritten.
    pub fn add_unnamed(&self, descriptor: &Descriptor) -> Result<bool> {
        let _store_lock = self.lock_store(LockMode::Shared)?;
        if !self.has_blob(descriptor.digest()) {
            return Err(StoreError::MissingBlob {
                what: "unnamed image".into(),
                digest: descriptor.digest().to_string(),
            });
        }
        let unnamed = with_name(descriptor, None);
        let added = self.update_index(|manifests| {
            if manifests
                .iter()
                .any(|entry| entry.digest() == descriptor.digest())
            {
                return Ok(false);
            }
            manifests.push(unnamed);
            Ok(true)
        })?;
        tracing::debug!(digest = %descriptor.digest(), added, "unnamed image kept");
        Ok(added)
    }

    /// Keeps `descriptor` (a manifest or index) as a digest reference of
    /// `repository` (`localhost:5000/app`, without tag or digest): an
    /// `index.json` entry without a name, annotated with
    /// [`REPOSITORY_ANNOTATION`]. `prune` keeps it, unlike an unnamed
    /// image, and `REPOSITORY@DIGEST` finds it. An unnamed entry of the
    /// manifest goes, and an earlier digest reference of the same
    /// repository and manifest is replaced, so its annotations follow
    /// `descriptor`. Returns whether the repository had no digest reference
    /// of the manifest before.
    ///
    /// # Errors
    /// [`StoreError::InvalidName`] for a repository outside the OCI name
    /// grammar or with a tag or digest; [`StoreError::MissingBlob`] when
    /// the blob is not stored.
    pub fn add_digest_reference(&self, repository: &str, descriptor: &Descriptor) -> Result<bool> {
        validate_name(repository)?;
        let last_component = repository.rsplit('/').next().unwrap_or(repository);
        if last_component.contains(':') {
            return Err(StoreError::InvalidName {
                name: repository.to_string(),
                reason: "a digest reference names a repository without a tag".to_string(),
            });
        }
        let _store_lock = self.lock_store(LockMode::Shared)?;
        if !self.has_blob(descriptor.digest()) {
            return Err(StoreError::MissingBlob {
                what: format!("digest reference {repository}@{}", descriptor.digest()),
                digest: descriptor.digest().to_string(),
            });
        }

        let mut entry = with_name(descriptor, None);
        let mut annotations = entry.annotations().clone().unwrap_or_default();
        annotations.insert(REPOSITORY_ANNOTATION.to_string(), repository.to_string());
        entry.set_annotations(Some(annotations));
        let digest = descriptor.digest();
        let added = self.update_index(|manifests| {
            manifests.retain(|existing| {
                let plain_unnamed =
                    ref_name(existing).is_none() && digest_repository(existing).is_none();
                !(plain_unnamed && existing.digest() == digest)
            });
            let earlier = manifests.iter_mut().find(|existing| {
                existing.digest() == digest && digest_repository(existing) == Some(repository)
            });
            match earlier {
                Some(earlier) => {
                    *earlier = entry;
                    Ok(false)
                }
                None => {
                    manifests.push(entry);
                    Ok(true)
                }
            }
        })?;
        tracing::debug!(repository, %digest, added, "digest reference kept");
        Ok(added)
    }

    /// Removes the unnamed entries of the manifest `digest`, digest
    /// references included; returns whether there was one. Names of the manifest stay, and the blobs stay
    /// until `prune`.
    ///
    /// # Errors
    /// [`StoreError::Io`] or [`StoreError::DecodeJson`] when `index.json`
    /// cannot be read or rewritten.
    pub fn remove_unnamed(&self, digest: &Digest) -> Result<bool> {
        let _store_lock = self.lock_store(LockMode::Shared)?;
        let removed = self.update_index(|manifests| {
            let before = manifests.len();
            manifests.retain(|entry| ref_name(entry).is_some() || entry.digest() != digest);
            Ok(manifests.len() < before)
        })?;
        tracing::debug!(%digest, removed, "unnamed image removed");
        Ok(removed)
    }

    /// Removes the name and returns the descriptor it pointed at. The
    /// blobs stay until `prune`. As with `docker rmi`, an image whose last
    /// name goes does not become an unnamed image.
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
        Ok(self.read_entries()?.named)
    }

    /// Lists the digest references (images pulled as `REPOSITORY@DIGEST`)
    /// as repository and descriptor, sorted by repository, then in the
    /// order of `index.json`.
    ///
    /// # Errors
    /// [`StoreError::Io`] or [`StoreError::DecodeJson`] when `index.json`
    /// cannot be read.
    pub fn list_digest_references(&self) -> Result<Vec<(String, Descriptor)>> {
        Ok(self.read_entries()?.digested)
    }

    /// Lists the unnamed images: `index.json` entries without a name or
    /// repository whose manifest no name or digest reference points at,
    /// once per manifest, in the order of `index.json`.
    ///
    /// # Errors
    /// [`StoreError::Io`] or [`StoreError::DecodeJson`] when `index.json`
    /// cannot be read.
    pub fn list_unnamed(&self) -> Result<Vec<Descriptor>> {
        Ok(self.read_entries()?.unnamed)
    }

    fn read_entries(&self) -> Result<Entries> {
        let index = self.read_index()?;
        let mut named: Vec<(String, Descriptor)> = index
            .manifests()
            .iter()
            .filter_map(|entry| ref_name(entry).map(|name| (name.to_string(), entry.clone())))
            .collect();
        named.sort_by(|left, right| left.0.cmp(&right.0));
        let mut digested: Vec<(String, Descriptor)> = index
            .manifests()
            .iter()
            .filter_map(|entry| {
                digest_repository(entry).map(|repository| (repository.to_string(), entry.clone()))
            })
            .collect();
        digested.sort_by(|left, right| left.0.cmp(&right.0));

        let mut unnamed: Vec<Descriptor> = Vec::new();
        for entry in index.manifests() {
            let digest = entry.digest();
            let listed = named.iter().any(|(_, named)| named.digest() == digest)
                || digested.iter().any(|(_, entry)| entry.digest() == digest)
                || unnamed.iter().any(|seen| seen.digest() == digest);
            if ref_name(entry).is_none() && digest_repository(entry).is_none() && !listed {
                unnamed.push(entry.clone());
            }
        }
        Ok(Entries {
            named,
            digested,
            unnamed,
        })
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
    /// image name, `NAME@sha256:HEX`, a full `sha256:HEX` digest of an
    /// image id or of a stored manifest or index, or a unique prefix of an
    /// image id (with or without `sha256:`). Unnamed images are found by
    /// their ids and manifest digests like named ones.
    ///
    /// As in docker, a short id matches image ids only (config digests, or
    /// the digest of an index), never manifest digests. A full digest of a
    /// blob that is neither a manifest, an index nor an image id matches
    /// nothing.
    ///
    /// # Errors
    /// [`StoreError::NameNotFound`] with the closest name as suggestion
    /// (none for digests and hex ids);
    /// [`StoreError::AmbiguousId`] listing the ids that start with the
    /// prefix, each with its names;
    /// [`StoreError::InvalidReference`] for a malformed digest.
    pub fn resolve(&self, reference: &str) -> Result<Descriptor> {
        let entries = self.read_entries()?;
        let names = || entries.named.iter().map(|(name, _)| name.as_str());

        if let Some((name, digest_text)) = reference.rsplit_once('@') {
            let digest =
                parse_digest(digest_text).map_err(|error| StoreError::InvalidReference {
                    reference: reference.to_string(),
                    reason: error.to_string(),
                })?;
            // As docker does, `NAME@DIGEST` matches only a manifest stored
            // under a tag or a digest reference of the same repository. The
            // digest is the manifest's or that of the index it was picked
            // from, and a tag in NAME is ignored.
            let repository = repository_of(name);
            let matches = |descriptor: &Descriptor| {
                descriptor.digest() == &digest || source_index(descriptor).as_ref() == Some(&digest)
            };
            let tagged = entries
                .named
                .iter()
                .map(|(entry, descriptor)| (repository_of(entry), descriptor));
            let digested = entries
                .digested
                .iter()
                .map(|(entry, descriptor)| (entry.as_str(), descriptor));
            if let Some((_, descriptor)) = tagged
                .chain(digested)
                .find(|(entry, descriptor)| *entry == repository && matches(descriptor))
            {
                return Ok(descriptor.clone());
            }
            return Err(not_found(reference, names()));
        }

        if let Some((_, descriptor)) = entries.named.iter().find(|(name, _)| name == reference) {
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
            return self.resolve_digest(reference, &digest, &entries);
        }
        let prefix = hex.unwrap_or(reference);
        if is_hex(prefix)
            && prefix.len() <= 64
            && let Some(descriptor) = self.resolve_id_prefix(reference, prefix, &entries)?
        {
            return Ok(descriptor);
        }
        Err(not_found(reference, names()))
    }

    /// Resolves a full digest: the manifest of an `index.json` entry, the
    /// id of such an image, or any stored manifest or index (such as one
    /// platform's manifest of a named index).
    fn resolve_digest(
        &self,
        reference: &str,
        digest: &Digest,
        entries: &Entries,
    ) -> Result<Descriptor> {
        if let Some(descriptor) = entries.all().find(|(_, entry)| entry.digest() == digest) {
            return Ok(descriptor.1.clone());
        }
        for (_, descriptor) in entries.all() {
            if self.entry_id(descriptor).as_ref() == Some(digest) {
                return Ok(descriptor.clone());
            }
        }

        // The content of a blob that no entry lists decides whether it is
        // an image. An image config, a layer or any other blob is not.
        if self.has_blob(digest) {
            let size = self.blob_size(digest)?;
            let probe = Descriptor::new(MediaType::Other(String::new()), size, digest.clone());
            let media_type = match self.read_document(&probe, BlobKind::Other)? {
                Some(Document::Index(index)) => {
                    Some(index.media_type().clone().unwrap_or(MediaType::ImageIndex))
                }
                Some(Document::Manifest(manifest)) => Some(
                    manifest
                        .media_type()
                        .clone()
                        .unwrap_or(MediaType::ImageManifest),
                ),
                None => None,
            };
            if let Some(media_type) = media_type {
                return Ok(Descriptor::new(media_type, size, digest.clone()));
            }
        }
        Err(StoreError::NameNotFound {
            reference: reference.to_string(),
            suggestion: None,
        })
    }

    /// Resolves a hex prefix of an image id among the `index.json` entries.
    /// Every name of one image counts as one match. When several manifests
    /// share an image id, the first one that a name points at (names in
    /// order), else the first unnamed one, is returned.
    fn resolve_id_prefix(
        &self,
        reference: &str,
        prefix: &str,
        entries: &Entries,
    ) -> Result<Option<Descriptor>> {
        // Image id hex -> the descriptor found first and the names of the id.
        let mut matches: BTreeMap<String, (Descriptor, Vec<String>)> = BTreeMap::new();
        let mut ids_by_manifest: HashMap<String, Option<String>> = HashMap::new();
        for (name, descriptor) in entries.all() {
            let id_hex = ids_by_manifest
                .entry(descriptor.digest().to_string())
                .or_insert_with(|| {
                    self.entry_id(descriptor)
                        .and_then(|id| sha256_hex(&id).ok().map(str::to_string))
                })
                .clone();
            let Some(id_hex) = id_hex.filter(|id| id.starts_with(prefix)) else {
                continue;
            };
            let (_, names) = matches
                .entry(id_hex)
                .or_insert_with(|| (descriptor.clone(), Vec::new()));
            names.extend(name.map(str::to_string));
        }

        if matches.len() > 1 {
            // Twelve digits, as `forge images` shows ids, unless the prefix
            // already has that many and the ids differ only further on.
            let shown = if prefix.len() >= 12 { 64 } else { 12 };
            let candidates = matches
                .iter()
                .map(|(id, (_, names))| {
                    let short = id.get(..shown).unwrap_or(id);
                    if names.is_empty() {
                        format!("{short} (unnamed)")
                    } else {
                        format!("{short} ({})", names.join(", "))
                    }
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
            .map(|(descriptor, _)| descriptor))
    }

    /// Returns the image id of an `index.json` entry, or `None` when its
    /// manifest cannot be read; `check` reports such entries.
    fn entry_id(&self, descriptor: &Descriptor) -> Option<Digest> {
        match self.image_id(descriptor) {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::debug!(digest = %descriptor.digest(), %error, "image id unreadable");
                None
            }
        }
    }
}

/// The images that `index.json` lists.
struct Entries {
    /// Every name with its descriptor, sorted by name.
    named: Vec<(String, Descriptor)>,
    /// Every digest reference with its repository, sorted by repository.
    digested: Vec<(String, Descriptor)>,
    /// Entries without a name whose manifest no name points at, once per
    /// manifest, in the order of `index.json`.
    unnamed: Vec<Descriptor>,
}

impl Entries {
    /// Returns the named entries, then the digest references and the
    /// unnamed ones, which have no name.
    fn all(&self) -> impl Iterator<Item = (Option<&str>, &Descriptor)> {
        let named = self
            .named
            .iter()
            .map(|(name, descriptor)| (Some(name.as_str()), descriptor));
        let digested = self
            .digested
            .iter()
            .map(|(_, descriptor)| (None, descriptor));
        let unnamed = self.unnamed.iter().map(|descriptor| (None, descriptor));
        named.chain(digested).chain(unnamed)
    }
}

/// Returns a copy of `descriptor` whose `ref.name` annotation is `name`,
/// or that has none with `None`.
fn with_name(descriptor: &Descriptor, name: Option<&str>) -> Descriptor {
    let mut copy = descriptor.clone();
    let mut annotations = copy.annotations().clone().unwrap_or_default();
    match name {
        Some(name) => {
            annotations.insert(REF_NAME_ANNOTATION.to_string(), name.to_string());
        }
        None => {
            annotations.remove(REF_NAME_ANNOTATION);
        }
    }
    copy.set_annotations((!annotations.is_empty()).then_some(annotations));
    copy
}

/// Builds a not-found error that suggests the closest of `names`.
fn not_found<'a>(reference: &str, names: impl Iterator<Item = &'a str>) -> StoreError {
    StoreError::NameNotFound {
        reference: reference.to_string(),
        suggestion: closest_name(reference, names),
    }
}

/// The largest edit distance at which a name is suggested.
const MAX_SUGGESTION_DISTANCE: usize = 2;

/// Picks the name closest to `reference`: one that only adds a tag to it,
/// else the one with the smallest edit distance if that distance is at
/// most [`MAX_SUGGESTION_DISTANCE`] and at most a third of the reference's
/// length. A `:latest` tag, which the command line adds to a name typed
/// without a tag, does not count towards that length. Digests and hex ids
/// get no suggestion, because a name that resembles an id is a coincidence.
fn closest_name<'a>(reference: &str, names: impl Iterator<Item = &'a str>) -> Option<String> {
    let typed = reference.strip_suffix(":latest").unwrap_or(reference);
    if typed.starts_with("sha256:") || is_hex(typed) {
        return None;
    }
    let limit = (typed.chars().count() / 3).min(MAX_SUGGESTION_DISTANCE);
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

/// Returns whether `text` consists of lowercase hex digits only, as image
/// ids and their prefixes do.
fn is_hex(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
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
    fn closest_name_ignores_default_tag_in_limit() {
        // `x:latest` is one typed character, so no edit is close enough.
        assert_eq!(closest_name("x:latest", ["y:latest"].into_iter()), None);
        assert_eq!(
            closest_name("nosuch:latest", ["scr:latest"].into_iter()),
            None
        );
        assert_eq!(
            closest_name("app:v2", ["app:v1"].into_iter()),
            Some("app:v1".into())
        );
    }

    #[test]
    fn closest_name_caps_distance_at_two() {
        let names = ["abcdefghijkl:latest"];
        // Three edits are a quarter of twelve typed characters: too many.
        assert_eq!(closest_name("abcdefghiXYZ:latest", names.into_iter()), None);
        assert_eq!(
            closest_name("abcdefghijXY:latest", names.into_iter()),
            Some("abcdefghijkl:latest".into())
        );
    }

    #[test]
    fn closest_name_skips_hex_and_digests() {
        assert_eq!(closest_name("5:latest", ["n1:latest"].into_iter()), None);
        assert_eq!(closest_name("cafe", ["cafe:latest"].into_iter()), None);
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(closest_name(&digest, [digest.as_str()].into_iter()), None);
    }

    #[test]
    fn with_name_sets_and_removes_annotation() {
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let plain = Descriptor::new(MediaType::ImageManifest, 3, digest);
        let named = with_name(&plain, Some("app:v1"));
        assert_eq!(ref_name(&named), Some("app:v1"));
        let unnamed = with_name(&named, None);
        assert_eq!(ref_name(&unnamed), None);
        assert_eq!(unnamed.annotations(), &None, "empty annotations stay");
    }

    #[test]
    fn repository_of_strips_tag_only() {
        assert_eq!(repository_of("app:latest"), "app");
        assert_eq!(repository_of("localhost:5000/app:v1"), "localhost:5000/app");
        assert_eq!(repository_of("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(repository_of("app"), "app");
    }
}
