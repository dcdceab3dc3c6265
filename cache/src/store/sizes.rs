//! Uncompressed layer sizes by diff id under `forge/layer-sizes/HEX`, for
//! the sizes that `images`, `history` and `inspect` show.
//!
//! The size of a layer is the length of its uncompressed tar stream, the
//! stream that its diff id hashes. So every path that learns it (writing
//! a layer, extracting, loading, or decompressing the blob) gives the same
//! number. Docker 20.10.24 with the overlay2 driver shows the sum of the
//! sizes of the layer's regular files instead. The tar stream is larger
//! by a 512-byte header per entry, the padding of file content to 512
//! bytes and the end-of-archive blocks. For example, `docker load` of a
//! layer holding a 3,000,000-byte file, a 100-byte file and a folder shows
//! 3000100 bytes, and the tar of that layer is 3,010,560 bytes.
//!
//! Each file contains the size in bytes as decimal digits and a newline.
//! A missing or damaged file only costs one pass over the blob, which
//! [`Store::layer_size`] makes and records.

use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;

use oci_spec::image::{Descriptor, Digest};
use sha2::{Digest as _, Sha256};

use super::Store;
use super::blobs::{digest_of, reader_error, sha256_hex};
use super::error::{Result, StoreError};
use super::lock::LockMode;
use crate::layer;

impl Store {
    fn layer_size_path(&self, diff_id: &Digest) -> Result<PathBuf> {
        Ok(self.layer_sizes_dir().join(sha256_hex(diff_id)?))
    }

    /// Records `size`, the length in bytes of the uncompressed tar stream
    /// of the layer with `diff_id`. A failure is logged and otherwise
    /// ignored, because [`Store::layer_size`] computes a missing size again.
    pub fn record_layer_size(&self, diff_id: &Digest, size: u64) {
        if let Err(error) = self.write_layer_size(diff_id, size) {
            tracing::warn!(%diff_id, size, %error, "cannot record the uncompressed size of a layer");
        }
    }

    fn write_layer_size(&self, diff_id: &Digest, size: u64) -> Result<()> {
        let path = self.layer_size_path(diff_id)?;
        if self.recorded_layer_size(diff_id) == Some(size) {
            return Ok(());
        }
        // The shared lock keeps `prune` and `check` from removing the
        // temporary file of `write_atomic` under it.
        let _store_lock = self.lock_store(LockMode::Shared)?;
        self.write_atomic(&path, format!("{size}\n").as_bytes())
    }

    /// Returns the recorded uncompressed size of the layer with `diff_id`,
    /// or `None` when none is recorded or the record cannot be read.
    pub fn recorded_layer_size(&self, diff_id: &Digest) -> Option<u64> {
        let path = self.layer_size_path(diff_id).ok()?;
        match fs::read_to_string(&path) {
            Ok(text) => parse_layer_size(&text),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read a layer size record");
                None
            }
        }
    }

    /// Returns the length in bytes of the uncompressed tar stream of
    /// `layer`, whose diff id is `diff_id`. A size that is not recorded yet
    /// is computed by decompressing the blob once, and then recorded.
    ///
    /// # Errors
    /// [`StoreError::BlobNotFound`] when the size is unknown and the blob
    /// is missing; [`StoreError::Io`] when the blob cannot be read or
    /// decompressed; [`StoreError::BlobCorrupt`] or
    /// [`StoreError::DiffIdMismatch`] when the content does not match its
    /// digests.
    pub fn layer_size(&self, layer: &Descriptor, diff_id: &Digest) -> Result<u64> {
        if let Some(size) = self.recorded_layer_size(diff_id) {
            return Ok(size);
        }
        let size = self.measure_layer(layer, diff_id)?;
        tracing::debug!(digest = %layer.digest(), %diff_id, size, "measured the uncompressed size of a layer");
        self.record_layer_size(diff_id, size);
        Ok(size)
    }

    /// Decompresses the blob of `layer` and returns the length of the
    /// stream, after checking that the stream hashes to `diff_id`.
    fn measure_layer(&self, layer: &Descriptor, diff_id: &Digest) -> Result<u64> {
        sha256_hex(diff_id)?;
        let mut blob = self.open_descriptor(layer)?;
        let blob_path = blob.path().to_path_buf();
        let (size, actual) = {
            let mut stream = layer::decompress(Box::new(&mut blob)).map_err(|error| {
                StoreError::io("decompress", &blob_path, io::Error::other(error))
            })?;
            let mut hasher = Sha256::new();
            let mut buffer = vec![0u8; 256 * 1024];
            let mut size = 0u64;
            loop {
                let count = match stream.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(count) => count,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(reader_error(error, &blob_path)),
                };
                hasher.update(buffer.get(..count).unwrap_or_default());
                size += count as u64;
            }
            (size, digest_of(hasher))
        };
        // Reading the blob to its end makes the reader check its digest.
        io::copy(&mut blob, &mut io::sink()).map_err(|error| reader_error(error, &blob_path))?;

        if &actual != diff_id {
            return Err(StoreError::DiffIdMismatch {
                digest: layer.digest().to_string(),
                expected: diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(size)
    }
}

/// Parses the content of a layer size record: decimal digits and one
/// optional trailing newline.
pub(crate) fn parse_layer_size(text: &str) -> Option<u64> {
    let digits = text.strip_suffix('\n').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::MediaType;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut blob = Vec::new();
        layer::compress(&mut &bytes[..], layer::Compression::Gzip, None, &mut blob).unwrap();
        blob
    }

    fn sha256(bytes: &[u8]) -> Digest {
        digest_of(Sha256::new_with_prefix(bytes))
    }

    #[test]
    fn parse_layer_size_forms() {
        assert_eq!(parse_layer_size("3010560\n"), Some(3_010_560));
        assert_eq!(parse_layer_size("0"), Some(0));
        assert_eq!(parse_layer_size(""), None);
        assert_eq!(parse_layer_size("\n"), None);
        assert_eq!(parse_layer_size("-1\n"), None);
        assert_eq!(parse_layer_size("+1\n"), None);
        assert_eq!(parse_layer_size("12 \n"), None);
        assert_eq!(parse_layer_size("99999999999999999999999\n"), None);
    }

    #[test]
    fn layer_size_measures_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar = vec![0u8; 200_000];
        let diff_id = sha256(&tar);
        let info = store.put_blob(&gzip(&tar)).unwrap();
        let layer = info.descriptor(MediaType::ImageLayerGzip);

        assert_eq!(store.recorded_layer_size(&diff_id), None);
        assert_eq!(store.layer_size(&layer, &diff_id).unwrap(), 200_000);
        assert_eq!(store.recorded_layer_size(&diff_id), Some(200_000));
        let record = dir.path().join("forge/layer-sizes").join(diff_id.digest());
        assert_eq!(fs::read_to_string(&record).unwrap(), "200000\n");

        // The size comes from the record, so the blob is not needed.
        fs::remove_file(store.blob_path(layer.digest()).unwrap()).unwrap();
        assert_eq!(store.layer_size(&layer, &diff_id).unwrap(), 200_000);
    }

    #[test]
    fn layer_size_replaces_damaged_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar = b"not really a tar".to_vec();
        let diff_id = sha256(&tar);
        let layer = store
            .put_blob(&tar)
            .unwrap()
            .descriptor(MediaType::ImageLayer);
        let record = dir.path().join("forge/layer-sizes").join(diff_id.digest());
        fs::write(&record, "garbage").unwrap();

        assert_eq!(store.recorded_layer_size(&diff_id), None);
        assert_eq!(store.layer_size(&layer, &diff_id).unwrap(), 16);
        assert_eq!(fs::read_to_string(&record).unwrap(), "16\n");
    }

    #[test]
    fn layer_size_rejects_wrong_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = store
            .put_blob(&gzip(b"content"))
            .unwrap()
            .descriptor(MediaType::ImageLayerGzip);
        let wrong = sha256(b"other content");

        let error = store.layer_size(&layer, &wrong).unwrap_err();
        assert!(
            matches!(error, StoreError::DiffIdMismatch { .. }),
            "{error}"
        );
        assert_eq!(store.recorded_layer_size(&wrong), None);
    }

    #[test]
    fn layer_size_names_missing_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let diff_id = sha256(b"tar");
        let layer = Descriptor::new(MediaType::ImageLayerGzip, 3, sha256(b"blob"));

        let error = store.layer_size(&layer, &diff_id).unwrap_err();
        assert!(matches!(error, StoreError::BlobNotFound { .. }), "{error}");
    }

    #[test]
    fn record_layer_size_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let diff_id = sha256(b"tar");
        store.record_layer_size(&diff_id, 10);
        store.record_layer_size(&diff_id, 12);
        assert_eq!(store.recorded_layer_size(&diff_id), Some(12));
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }
}
