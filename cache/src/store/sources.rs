//! Blob sources: which registry repositories each blob was pulled from or
//! pushed to, so that a push can ask a registry to mount a blob from a
//! repository that already has it instead of uploading it again.
//!
//! One small JSON file per blob under `forge/sources/HEX.json` (HEX of the
//! blob digest) contains a list of `{registry, repository}` entries, the most
//! recent first, at most [`MAX_SOURCES`] of them. A record is a hint: the
//! registry may have deleted the blob since, in which case the mount fails
//! and the caller uploads the blob. Records of pruned blobs are harmless
//! for the same reason.

use std::fs;
use std::io;
use std::path::PathBuf;

use oci_spec::image::Digest;
use serde::{Deserialize, Serialize};

use super::Store;
use super::blobs::sha256_hex;
use super::error::{Result, StoreError};

/// The number of repositories kept per blob; older entries are dropped.
pub const MAX_SOURCES: usize = 16;

/// A registry repository that has a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobSource {
    /// The registry host as references name it (`docker.io`,
    /// `localhost:5000`).
    pub registry: String,
    /// The repository path inside the registry (`library/busybox`).
    pub repository: String,
}

impl Store {
    fn sources_dir(&self) -> PathBuf {
        self.root.join("forge").join("sources")
    }

    fn sources_path(&self, digest: &Digest) -> Result<PathBuf> {
        Ok(self
            .sources_dir()
            .join(format!("{}.json", sha256_hex(digest)?)))
    }

    /// Records that `source` has the blob `digest`, as its most recent
    /// source.
    ///
    /// # Errors
    /// [`StoreError::UnsupportedDigest`] for digests other than sha256;
    /// [`StoreError::Io`] when the record cannot be written.
    pub fn record_blob_source(&self, digest: &Digest, source: &BlobSource) -> Result<()> {
        let path = self.sources_path(digest)?;
        let dir = self.sources_dir();
        fs::create_dir_all(&dir).map_err(|error| StoreError::io("create", &dir, error))?;

        // The index lock serialises writers of the same record, so two
        // pushes at once do not drop each other's entries.
        let _lock = self.lock_index()?;
        let mut sources = self.blob_sources(digest)?;
        if sources.first() == Some(source) {
            return Ok(());
        }
        sources.retain(|entry| entry != source);
        sources.insert(0, source.clone());
        sources.truncate(MAX_SOURCES);
        let bytes = serde_json::to_vec(&sources).map_err(|error| StoreError::EncodeJson {
            what: format!("blob source record of {digest}"),
            source: error,
        })?;
        self.write_atomic(&path, &bytes)
    }

    /// Lists the repositories known to have the blob `digest`, the most
    /// recent first. A missing or damaged record is an empty list, because
    /// records are only hints.
    ///
    /// # Errors
    /// [`StoreError::UnsupportedDigest`] for digests other than sha256;
    /// [`StoreError::Io`] when the record exists but cannot be read.
    pub fn blob_sources(&self, digest: &Digest) -> Result<Vec<BlobSource>> {
        let path = self.sources_path(digest)?;
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(StoreError::io("read", &path, error)),
        };
        match serde_json::from_slice(&bytes) {
            Ok(sources) => Ok(sources),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring a damaged blob source record");
                Ok(Vec::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(registry: &str, repository: &str) -> BlobSource {
        BlobSource {
            registry: registry.to_string(),
            repository: repository.to_string(),
        }
    }

    fn digest() -> Digest {
        parse_test_digest(&format!("sha256:{}", "ab".repeat(32)))
    }

    fn parse_test_digest(text: &str) -> Digest {
        super::super::parse_digest(text).unwrap()
    }

    #[test]
    fn sources_start_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.blob_sources(&digest()).unwrap().is_empty());
    }

    #[test]
    fn sources_most_recent_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = source("localhost:5000", "a");
        let second = source("localhost:5000", "b");
        store.record_blob_source(&digest(), &first).unwrap();
        store.record_blob_source(&digest(), &second).unwrap();
        store.record_blob_source(&digest(), &first).unwrap();
        let listed = store.blob_sources(&digest()).unwrap();
        assert_eq!(listed, vec![first, second]);
    }

    #[test]
    fn sources_keep_at_most_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for index in 0..MAX_SOURCES + 3 {
            let entry = source("localhost:5000", &format!("repo{index}"));
            store.record_blob_source(&digest(), &entry).unwrap();
        }
        let listed = store.blob_sources(&digest()).unwrap();
        assert_eq!(listed.len(), MAX_SOURCES);
        let newest = format!("repo{}", MAX_SOURCES + 2);
        assert_eq!(
            listed.first().map(|s| s.repository.as_str()),
            Some(newest.as_str())
        );
    }

    #[test]
    fn damaged_record_reads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let path = store.sources_path(&digest()).unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"not json").unwrap();
        assert!(store.blob_sources(&digest()).unwrap().is_empty());
    }
}
