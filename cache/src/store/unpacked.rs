//! Unpacked layers by diff id under `forge/unpacked/HEX/`, the lower
//! directories of the RUN sandbox's overlay.
//!
//! A layer is extracted into a folder under `forge/tmp/` and renamed into
//! place, so a folder under `forge/unpacked/` is always complete. One
//! exclusive lock per layer keeps two builds from extracting it twice.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest};
use sha2::{Digest as _, Sha256};

use super::Store;
use super::blobs::{digest_of, reader_error, sha256_hex};
use super::error::{Result, StoreError};
use super::lock::{FileLock, LockMode};
use super::root::sync_parent;
use crate::layer;

/// Sets the owners of an extracted layer folder: the folder and the
/// entries whose owner the extraction did not set (see
/// [`Store::ensure_unpacked_with_owners`]).
pub type OwnerSetter<'a> = dyn Fn(
        &Path,
        &[layer::RecordedOwner],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>
    + 'a;

impl Store {
    /// Returns the folder of the unpacked layer with `diff_id`, or `None`
    /// when it has not been unpacked.
    pub fn unpacked_dir(&self, diff_id: &Digest) -> Option<PathBuf> {
        let path = self.unpacked_root().join(sha256_hex(diff_id).ok()?);
        path.is_dir().then_some(path)
    }

    /// Returns the unpacked folder of `layer`, extracting the blob first if
    /// no folder exists for `diff_id`.
    ///
    /// The caller should hold a [`super::StoreLease`] for as long as it
    /// uses the folder, so that `prune` does not remove it meanwhile.
    ///
    /// The layer is extracted alone with [`layer::WhiteoutMode::Overlay`],
    /// so the folder can be stacked as an overlay lower directory. Its
    /// deletions are kept as whiteout devices and the opaque xattr
    /// `trusted.overlay.opaque`, or `user.overlay.opaque` when the process
    /// may not set `trusted.*` xattrs.
    ///
    /// # Errors
    /// [`StoreError::BlobNotFound`] when the layer blob is missing;
    /// [`StoreError::Unpack`] when extraction fails;
    /// [`StoreError::BlobCorrupt`] or [`StoreError::DiffIdMismatch`] when
    /// the content does not match its digests. No folder is left in place
    /// on failure.
    pub fn ensure_unpacked(&self, layer: &Descriptor, diff_id: &Digest) -> Result<PathBuf> {
        self.ensure_unpacked_with_owners(layer, diff_id, None)
    }

    /// Returns the unpacked folder of `layer` like [`Store::ensure_unpacked`].
    /// When the layer is extracted now and `set_owners` is given, the
    /// extraction does not set owners itself. It calls `set_owners` with
    /// the folder and the entries whose recorded owner is not 0:0 (see
    /// [`layer::extract_recording_owners`]) before the folder moves into
    /// place. A process without root uses this to set the owners from
    /// inside its user namespace.
    ///
    /// # Errors
    /// As [`Store::ensure_unpacked`]; an error of `set_owners` is a
    /// [`StoreError::Unpack`].
    pub fn ensure_unpacked_with_owners(
        &self,
        layer: &Descriptor,
        diff_id: &Digest,
        set_owners: Option<&OwnerSetter<'_>>,
    ) -> Result<PathBuf> {
        let hex = sha256_hex(diff_id)?.to_string();
        let target = self.unpacked_root().join(&hex);
        if target.is_dir() {
            return Ok(target);
        }

        let _store_lock = self.lock_store(LockMode::Shared)?;
        let _layer_lock = FileLock::acquire(&self.unpack_lock_path(&hex), LockMode::Exclusive)?;
        if target.is_dir() {
            return Ok(target);
        }
        if !self.has_blob(layer.digest()) {
            return Err(StoreError::BlobNotFound {
                digest: layer.digest().to_string(),
                path: self.blob_path(layer.digest())?,
            });
        }

        let temp = self.create_temp_dir("unpack")?;
        let result = self
            .extract_layer(layer, diff_id, &temp, set_owners)
            .and_then(|()| {
                fs::rename(&temp, &target)
                    .map_err(|source| StoreError::io("rename into place", &target, source))
            })
            .and_then(|()| sync_parent(&target));
        if let Err(error) = result {
            if let Err(cleanup) = fs::remove_dir_all(&temp)
                && cleanup.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %temp.display(), %cleanup, "cannot remove a failed unpack");
            }
            return Err(error);
        }
        tracing::debug!(digest = %layer.digest(), %diff_id, "layer unpacked");
        Ok(target)
    }

    /// Moves `dir`, a complete tree of the layer with `diff_id`, into place
    /// as its unpacked form. The builder uses this for the upper folder of
    /// a step it has just turned into a layer. `dir` must be on the store's
    /// file system, for example a folder from [`Store::create_work_dir`].
    /// When the layer is already unpacked, `dir` is left untouched.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the rename fails.
    pub fn adopt_unpacked(&self, diff_id: &Digest, dir: &Path) -> Result<PathBuf> {
        let hex = sha256_hex(diff_id)?.to_string();
        let target = self.unpacked_root().join(&hex);
        let _store_lock = self.lock_store(LockMode::Shared)?;
        let _layer_lock = FileLock::acquire(&self.unpack_lock_path(&hex), LockMode::Exclusive)?;
        if target.is_dir() {
            return Ok(target);
        }
        fs::rename(dir, &target)
            .map_err(|source| StoreError::io("rename into place", &target, source))?;
        sync_parent(&target)?;
        Ok(target)
    }

    /// Removes the unpacked folder of `diff_id`, which a caller found
    /// damaged, so that the next extraction or adoption puts a fresh one in
    /// place. The folder first moves under `forge/tmp/`, so it leaves
    /// `forge/unpacked/` at once even when deleting it fails.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the folder cannot be moved.
    pub fn remove_unpacked(&self, diff_id: &Digest) -> Result<()> {
        let hex = sha256_hex(diff_id)?.to_string();
        let target = self.unpacked_root().join(&hex);
        let _store_lock = self.lock_store(LockMode::Shared)?;
        let _layer_lock = FileLock::acquire(&self.unpack_lock_path(&hex), LockMode::Exclusive)?;
        if !target.is_dir() {
            return Ok(());
        }
        let temp = self.create_temp_dir("damaged")?;
        let moved = temp.join(&hex);
        fs::rename(&target, &moved)
            .map_err(|source| StoreError::io("move aside", &target, source))?;
        if let Err(error) = super::remove_tree(&temp) {
            tracing::warn!(path = %temp.display(), %error, "cannot remove a damaged unpacked layer; prune removes it");
        }
        Ok(())
    }

    /// Creates an empty folder under `forge/tmp/` on the store's file
    /// system. `prune` and `check --repair` remove it unless the caller
    /// keeps a [`super::StoreLease`] or moves it away first.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the folder cannot be created.
    pub fn create_work_dir(&self) -> Result<PathBuf> {
        self.create_temp_dir("work")
    }

    pub(crate) fn unpack_lock_path(&self, hex: &str) -> PathBuf {
        self.locks_dir().join(format!("unpack-{hex}.lock"))
    }

    /// Extracts the layer blob into `dest`, checks both the blob digest
    /// and the diff id of the uncompressed stream, and records the length
    /// of that stream as the layer's size.
    fn extract_layer(
        &self,
        layer: &Descriptor,
        diff_id: &Digest,
        dest: &Path,
        set_owners: Option<&OwnerSetter<'_>>,
    ) -> Result<()> {
        let digest = layer.digest();
        let unpack_error = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Unpack {
            digest: digest.to_string(),
            path: dest.to_path_buf(),
            source,
        };

        let mut blob = self.open_descriptor(layer)?;
        let blob_path = blob.path().to_path_buf();
        let (actual_diff_id, tar_size) = {
            let stream = layer::decompress(Box::new(&mut blob))
                .map_err(|error| unpack_error(Box::new(error)))?;
            let mut tar = HashingReader::new(stream);
            let mut options = layer::ExtractOptions {
                whiteouts: layer::WhiteoutMode::Overlay,
                ..layer::ExtractOptions::default()
            };
            if set_owners.is_some() {
                options.preserve_owners = false;
            }
            let (_, owners) = layer::extract_recording_owners(&mut tar, dest, &options)
                .map_err(|error| unpack_error(Box::new(error)))?;
            if let Some(set_owners) = set_owners {
                set_owners(dest, &owners).map_err(unpack_error)?;
            }
            // The tar reader may stop at the end-of-archive blocks; the
            // rest of the stream still counts toward the diff id.
            io::copy(&mut tar, &mut io::sink()).map_err(|error| reader_error(error, &blob_path))?;
            tar.finish()
        };
        // Reading the blob to its end makes the reader check its digest.
        io::copy(&mut blob, &mut io::sink()).map_err(|error| reader_error(error, &blob_path))?;

        if &actual_diff_id != diff_id {
            return Err(StoreError::DiffIdMismatch {
                digest: digest.to_string(),
                expected: diff_id.to_string(),
                actual: actual_diff_id.to_string(),
            });
        }
        self.record_layer_size(diff_id, tar_size);
        Ok(())
    }
}

/// A reader that hashes and counts what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// Returns the digest and the length in bytes of what was read.
    fn finish(self) -> (Digest, u64) {
        (digest_of(self.hasher), self.size)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buf)?;
        self.hasher.update(buf.get(..count).unwrap_or(buf));
        self.size += count as u64;
        Ok(count)
    }
}
