//! The step-cache index: one small JSON file per cache key under
//! `forge/steps/`, named by the sha256 of the key. A file's modification
//! time is the entry's last use.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use oci_spec::image::{Descriptor, Digest};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::Store;
use super::error::{Result, StoreError};
use super::lock::LockMode;

/// The recorded result of one build step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepEntry {
    /// The layer the step produced; `None` for steps that change only the
    /// config.
    pub layer: Option<Descriptor>,
    /// The sha256 of the layer's uncompressed tar stream; `None` when there
    /// is no layer.
    pub diff_id: Option<Digest>,
    /// The change the step makes to the image config, in the builder's
    /// own format.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Set when the step kept its layer only unpacked: `layer` is then
    /// `None`, `diff_id` names the folder under `forge/unpacked/`, and the
    /// blob is written from that folder when an image needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingLayer>,
}

/// How to write the blob of a layer that exists only as its unpacked
/// folder, so that the tar stream matches the recorded diff id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLayer {
    /// Whether the folder marks deletions as an overlayfs upper folder
    /// does ([`crate::layer::DiffKind::Overlay`]) rather than holding only
    /// additions.
    pub overlay: bool,
    /// The `SOURCE_DATE_EPOCH` that clamped file times in the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<i64>,
}

impl StepEntry {
    /// Returns whether the entry's layer exists only unpacked.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some() && self.layer.is_none()
    }
}

/// A step entry with its key and last use, as listed for `prune`.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// The cache key.
    pub key: String,
    /// The recorded result.
    pub entry: StepEntry,
    /// When the entry was last written or read.
    pub last_used: SystemTime,
    /// The file that contains the entry.
    pub path: PathBuf,
}

/// A step-cache file that cannot be used, with the reason.
pub(crate) type DamagedStep = (PathBuf, StoreError);

/// The file format: the key is kept to detect hash collisions and to list
/// keys.
#[derive(Serialize, Deserialize)]
struct StepFile {
    key: String,
    entry: StepEntry,
}

impl Store {
    fn step_path(&self, key: &str) -> PathBuf {
        let name = hex::encode(Sha256::digest(key.as_bytes()));
        self.steps_dir().join(format!("{name}.json"))
    }

    /// Records `entry` under `key`, replacing an earlier entry.
    ///
    /// # Errors
    /// [`StoreError::MissingBlob`] when the entry's layer blob is not
    /// stored; [`StoreError::Io`] when the file cannot be written.
    pub fn put_step(&self, key: &str, entry: &StepEntry) -> Result<()> {
        let _store_lock = self.lock_store(LockMode::Shared)?;
        if let Some(layer) = &entry.layer
            && !self.has_blob(layer.digest())
        {
            return Err(StoreError::MissingBlob {
                what: format!("step cache entry {key}"),
                digest: layer.digest().to_string(),
            });
        }
        if entry.is_pending() && !self.has_pending_layer(entry) {
            return Err(StoreError::MissingBlob {
                what: format!("the unpacked layer of step cache entry {key}"),
                digest: entry
                    .diff_id
                    .as_ref()
                    .map_or_else(|| "(no diff id)".to_string(), ToString::to_string),
            });
        }
        let file = StepFile {
            key: key.to_string(),
            entry: entry.clone(),
        };
        let bytes = serde_json::to_vec(&file).map_err(|source| StoreError::EncodeJson {
            what: format!("step cache entry {key}"),
            source,
        })?;
        self.write_atomic(&self.step_path(key), &bytes)
    }

    /// Looks up `key` and marks the entry as used now. An entry whose
    /// layer blob is gone counts as a miss.
    ///
    /// # Errors
    /// [`StoreError::DecodeJson`] when the entry file is damaged;
    /// [`StoreError::Io`] when it cannot be read.
    pub fn get_step(&self, key: &str) -> Result<Option<StepEntry>> {
        let path = self.step_path(key);
        let Some(file) = read_step_file(&path)? else {
            return Ok(None);
        };
        if file.key != key {
            tracing::warn!(key, stored = %file.key, path = %path.display(), "step cache file contains another key, treating it as a miss");
            return Ok(None);
        }
        if let Some(layer) = &file.entry.layer
            && !self.has_blob(layer.digest())
        {
            tracing::debug!(key, digest = %layer.digest(), "step cache entry lost its layer");
            return Ok(None);
        }
        if file.entry.is_pending() && !self.has_pending_layer(&file.entry) {
            tracing::debug!(key, diff_id = ?file.entry.diff_id, "step cache entry lost its unpacked layer");
            return Ok(None);
        }

        // The last-use time only orders pruning, so a read-only store still
        // serves hits when it cannot be updated.
        let touched = File::options()
            .write(true)
            .open(&path)
            .and_then(|handle| handle.set_modified(SystemTime::now()));
        if let Err(error) = touched {
            tracing::warn!(path = %path.display(), %error, "cannot update the last use of a step cache entry");
        }
        Ok(Some(file.entry))
    }

    /// Returns whether the unpacked folder of a pending entry's layer
    /// exists.
    pub(crate) fn has_pending_layer(&self, entry: &StepEntry) -> bool {
        entry
            .diff_id
            .as_ref()
            .is_some_and(|diff_id| self.unpacked_dir(diff_id).is_some())
    }

    /// Removes the entry for `key`; returns whether there was one.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the file cannot be removed.
    pub fn remove_step(&self, key: &str) -> Result<bool> {
        let _store_lock = self.lock_store(LockMode::Shared)?;
        let path = self.step_path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StoreError::io("remove", path, source)),
        }
    }

    /// Lists every readable step entry, oldest last use first. Damaged
    /// files are skipped here, and `check` reports them.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the folder cannot be listed.
    pub fn steps(&self) -> Result<Vec<StepRecord>> {
        let (records, _damaged) = self.scan_steps()?;
        Ok(records)
    }

    /// Lists step entries and the files that cannot be parsed.
    pub(crate) fn scan_steps(&self) -> Result<(Vec<StepRecord>, Vec<DamagedStep>)> {
        let dir = self.steps_dir();
        let listing = fs::read_dir(&dir).map_err(|source| StoreError::io("list", &dir, source))?;
        let mut records = Vec::new();
        let mut damaged = Vec::new();
        for item in listing {
            let item = item.map_err(|source| StoreError::io("list", &dir, source))?;
            let path = item.path();
            if path.extension().is_none_or(|extension| extension != "json") {
                damaged.push((
                    path.clone(),
                    StoreError::InvalidLayout {
                        path,
                        reason: "unexpected file in the step cache folder".into(),
                    },
                ));
                continue;
            }
            let last_used = item
                .metadata()
                .and_then(|metadata| metadata.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            match read_step_file(&path) {
                Ok(Some(file)) => records.push(StepRecord {
                    key: file.key,
                    entry: file.entry,
                    last_used,
                    path,
                }),
                Ok(None) => {}
                Err(error) => damaged.push((path, error)),
            }
        }
        records.sort_by(|left, right| {
            left.last_used
                .cmp(&right.last_used)
                .then(left.key.cmp(&right.key))
        });
        Ok((records, damaged))
    }
}

fn read_step_file(path: &Path) -> Result<Option<StepFile>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StoreError::io("read", path, source)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StoreError::DecodeJson {
            what: "step cache entry".into(),
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::MediaType;

    #[test]
    fn get_step_misses_without_layer_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let info = store.put_blob(b"layer").unwrap();
        let entry = StepEntry {
            layer: Some(info.descriptor(MediaType::ImageLayerGzip)),
            diff_id: Some(info.digest.clone()),
            config: serde_json::Value::Null,
            pending: None,
        };
        store.put_step("key", &entry).unwrap();
        assert_eq!(store.get_step("key").unwrap(), Some(entry));

        fs::remove_file(store.blob_path(&info.digest).unwrap()).unwrap();
        assert_eq!(store.get_step("key").unwrap(), None);
    }

    #[test]
    fn put_step_rejects_missing_layer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = Digest::try_from(format!("sha256:{}", "a".repeat(64))).unwrap();
        let entry = StepEntry {
            layer: Some(Descriptor::new(MediaType::ImageLayerGzip, 1, digest)),
            diff_id: None,
            config: serde_json::Value::Null,
            pending: None,
        };
        let error = store.put_step("key", &entry).unwrap_err();
        assert!(matches!(error, StoreError::MissingBlob { .. }), "{error}");
        assert!(store.steps().unwrap().is_empty());
    }

    #[test]
    fn remove_step_reports_presence() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entry = StepEntry {
            layer: None,
            diff_id: None,
            config: serde_json::json!({"Env": ["A=1"]}),
            pending: None,
        };
        store.put_step("k", &entry).unwrap();
        assert!(store.remove_step("k").unwrap());
        assert!(!store.remove_step("k").unwrap());
    }
}
