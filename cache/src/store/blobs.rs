//! Blobs by sha256: a writer that hashes while it writes and publishes the
//! blob with one rename, and a reader that checks size and digest at EOF.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, DigestAlgorithm, MediaType};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

use super::Store;
use super::error::{Result, StoreError};
use super::lock::{FileLock, LockMode};
use super::root::sync_parent;

/// Digest and size of a stored blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// The sha256 digest of the content.
    pub digest: Digest,
    /// The size of the content in bytes.
    pub size: u64,
}

impl BlobInfo {
    /// Builds a descriptor of this blob with the given media type.
    pub fn descriptor(&self, media_type: MediaType) -> Descriptor {
        Descriptor::new(media_type, self.size, self.digest.clone())
    }
}

/// Parses `text` as a sha256 digest (`sha256:` and 64 lowercase hex digits).
///
/// # Errors
/// [`StoreError::InvalidDigest`] for malformed text and
/// [`StoreError::UnsupportedDigest`] for other algorithms.
pub fn parse_digest(text: &str) -> Result<Digest> {
    let digest: Digest =
        text.parse()
            .map_err(|error: oci_spec::OciSpecError| StoreError::InvalidDigest {
                digest: text.to_string(),
                reason: error.to_string(),
            })?;
    sha256_hex(&digest)?;
    Ok(digest)
}

/// Returns the hex part of a sha256 digest.
pub(crate) fn sha256_hex(digest: &Digest) -> Result<&str> {
    match digest.algorithm() {
        DigestAlgorithm::Sha256 => Ok(digest.digest()),
        _ => Err(StoreError::UnsupportedDigest {
            digest: digest.to_string(),
        }),
    }
}

/// Builds a sha256 digest from a finished hasher.
pub(crate) fn digest_of(hasher: Sha256) -> Digest {
    let text = format!("sha256:{}", hex::encode(hasher.finalize()));
    // A sha256 output in lowercase hex always parses as a sha256 digest.
    Digest::try_from(text).expect("hex-encoded sha256 output is a valid digest")
}

/// Writes one blob. Content goes to a temporary file in the store while it
/// is hashed; [`BlobWriter::commit`] checks it and renames it into
/// `blobs/sha256/HEX`. Dropping the writer without committing removes the
/// temporary file.
///
/// The writer holds a shared store lock, so `prune` and `check` wait until
/// it is committed or dropped.
#[derive(Debug)]
pub struct BlobWriter {
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    blobs_dir: PathBuf,
    /// `None` for a writer whose caller hashes the content itself
    /// ([`Store::blob_writer_hashed_by_caller`]).
    hasher: Option<Sha256>,
    size: u64,
    _lock: FileLock,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("blob writer already finished"));
        };
        let written = file.write(buf)?;
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(buf.get(..written).unwrap_or(buf));
        }
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl BlobWriter {
    /// Returns the number of bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Checks the content against `expected` (when given), makes it durable
    /// and publishes it as `blobs/sha256/HEX`.
    ///
    /// # Errors
    /// [`StoreError::DigestMismatch`] when the content hashes to another
    /// digest; the temporary file is removed and nothing becomes visible.
    /// [`StoreError::Io`] when flushing, syncing or renaming fails.
    pub fn commit(self, expected: Option<&Digest>) -> Result<BlobInfo> {
        self.finish(expected, None)
    }

    /// Like [`BlobWriter::commit`], and also checks the size that the
    /// descriptor gives.
    ///
    /// # Errors
    /// As for `commit`, plus [`StoreError::SizeMismatch`].
    pub fn commit_descriptor(self, expected: &Descriptor) -> Result<BlobInfo> {
        self.finish(Some(expected.digest()), Some(expected.size()))
    }

    fn finish(mut self, expected: Option<&Digest>, expected_size: Option<u64>) -> Result<BlobInfo> {
        let Some(mut file) = self.file.take() else {
            return Err(StoreError::io(
                "finish",
                &self.temp,
                io::Error::other("blob writer already finished"),
            ));
        };
        let size = self.size;
        let digest = match (self.hasher.take(), expected) {
            (Some(hasher), _) => digest_of(hasher),
            (None, Some(expected)) => {
                sha256_hex(expected)?;
                expected.clone()
            }
            (None, None) => {
                return Err(StoreError::io(
                    "finish",
                    &self.temp,
                    io::Error::other("a blob hashed by its caller needs the expected digest"),
                ));
            }
        };

        if let Some(expected) = expected {
            sha256_hex(expected)?;
            if expected != &digest {
                return Err(StoreError::DigestMismatch {
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                    size,
                });
            }
        }
        if let Some(expected_size) = expected_size
            && expected_size != size
        {
            return Err(StoreError::SizeMismatch {
                digest: digest.to_string(),
                expected: expected_size,
                actual: size,
            });
        }

        let path = self.blobs_dir.join(digest.digest());
        if path.exists() {
            // Same name means same content, so the existing blob stays.
            return Ok(BlobInfo { digest, size });
        }

        file.flush()
            .map_err(|source| StoreError::io("write", &self.temp, source))?;
        let file = file
            .into_inner()
            .map_err(|error| StoreError::io("write", &self.temp, error.into_error()))?;
        file.sync_all()
            .map_err(|source| StoreError::io("sync", &self.temp, source))?;
        drop(file);
        fs::rename(&self.temp, &path)
            .map_err(|source| StoreError::io("rename into place", &path, source))?;
        sync_parent(&path)?;
        tracing::debug!(%digest, size, "blob committed");
        Ok(BlobInfo { digest, size })
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a successful rename the temporary path no longer exists, so
        // this only removes content that was never committed.
        self.file.take();
        match fs::remove_file(&self.temp) {
            Ok(()) => tracing::trace!(path = %self.temp.display(), "uncommitted blob removed"),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(path = %self.temp.display(), %error, "cannot remove temporary blob")
            }
        }
    }
}

/// Reads a blob and checks at EOF that its size and sha256 match. A
/// mismatch is an `InvalidData` error whose inner error is a
/// [`StoreError::BlobCorrupt`].
#[derive(Debug)]
pub struct BlobReader {
    file: BufReader<File>,
    path: PathBuf,
    expected: Digest,
    expected_size: u64,
    hasher: Sha256,
    read: u64,
    failed: bool,
    verified: bool,
}

impl BlobReader {
    fn corrupt(&mut self, reason: String) -> io::Error {
        self.failed = true;
        io::Error::new(
            io::ErrorKind::InvalidData,
            StoreError::BlobCorrupt {
                digest: self.expected.to_string(),
                path: self.path.clone(),
                reason,
            },
        )
    }

    /// Returns the blob file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(self.corrupt("an earlier read found the blob corrupt".into()));
        }
        if self.verified {
            return Ok(0);
        }
        let count = self.file.read(buf)?;
        if count == 0 && !buf.is_empty() {
            if self.read != self.expected_size {
                let reason = format!(
                    "it has {} bytes, expected {}",
                    self.read, self.expected_size
                );
                return Err(self.corrupt(reason));
            }
            let actual = digest_of(std::mem::take(&mut self.hasher));
            if actual != self.expected {
                return Err(self.corrupt(format!("its content hashes to {actual}")));
            }
            self.verified = true;
            return Ok(0);
        }
        let chunk = buf.get(..count).unwrap_or(buf);
        self.hasher.update(chunk);
        self.read += count as u64;
        if self.read > self.expected_size {
            let reason = format!("it has more than the expected {} bytes", self.expected_size);
            return Err(self.corrupt(reason));
        }
        Ok(count)
    }
}

impl Store {
    /// Starts writing a blob. See [`BlobWriter`].
    ///
    /// # Errors
    /// [`StoreError::Lock`] or [`StoreError::Io`] when the store lock or the
    /// temporary file cannot be had.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        self.new_blob_writer(Some(Sha256::new()))
    }

    /// Starts writing a blob whose sha256 the caller computes over exactly
    /// the bytes it writes, as the layer writer does, so the content is
    /// not hashed twice. [`BlobWriter::commit`] then takes the caller's
    /// digest as given and must receive one.
    ///
    /// # Errors
    /// As for [`Store::blob_writer`].
    pub fn blob_writer_hashed_by_caller(&self) -> Result<BlobWriter> {
        self.new_blob_writer(None)
    }

    fn new_blob_writer(&self, hasher: Option<Sha256>) -> Result<BlobWriter> {
        let lock = self.lock_store(LockMode::Shared)?;
        let (file, temp) = self.create_temp_file("blob")?;
        Ok(BlobWriter {
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            temp,
            blobs_dir: self.blobs_dir(),
            hasher,
            size: 0,
            _lock: lock,
        })
    }

    /// Stores `bytes` as a blob and returns its digest and size.
    ///
    /// # Errors
    /// As for [`Store::blob_writer`] and [`BlobWriter::commit`].
    pub fn put_blob(&self, bytes: &[u8]) -> Result<BlobInfo> {
        // A blob that is already stored is complete, because blobs appear
        // only by rename. So a rebuild that makes the same config and
        // manifest writes no file at all.
        let digest = digest_of(Sha256::new_with_prefix(bytes));
        let size = bytes.len() as u64;
        if let Ok(path) = self.blob_path(&digest)
            && fs::symlink_metadata(&path)
                .is_ok_and(|metadata| metadata.is_file() && metadata.len() == size)
        {
            return Ok(BlobInfo { digest, size });
        }
        let mut writer = self.blob_writer()?;
        writer
            .write_all(bytes)
            .map_err(|source| StoreError::io("write", &writer.temp, source))?;
        writer.commit(None)
    }

    /// Returns the path where the blob with `digest` is or would be stored.
    ///
    /// # Errors
    /// [`StoreError::UnsupportedDigest`] for digests other than sha256.
    pub fn blob_path(&self, digest: &Digest) -> Result<PathBuf> {
        Ok(self.blobs_dir().join(sha256_hex(digest)?))
    }

    /// Returns whether a blob with `digest` is stored. Digests of other algorithms
    /// are never stored.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest)
            .map(|path| path.is_file())
            .unwrap_or(false)
    }

    /// Returns the size in bytes of the stored blob.
    ///
    /// # Errors
    /// [`StoreError::BlobNotFound`] when the blob is missing.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest)?;
        match fs::metadata(&path) {
            Ok(metadata) => Ok(metadata.len()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::BlobNotFound {
                    digest: digest.to_string(),
                    path,
                })
            }
            Err(source) => Err(StoreError::io("inspect", path, source)),
        }
    }

    /// Opens a blob for reading; the reader fails at EOF unless the content
    /// hashes to `digest`.
    ///
    /// # Errors
    /// [`StoreError::BlobNotFound`] when the blob is missing.
    pub fn open_blob(&self, digest: &Digest) -> Result<BlobReader> {
        self.open_blob_sized(digest, None)
    }

    /// Opens the blob that `descriptor` names; the reader also checks the
    /// descriptor's size.
    ///
    /// # Errors
    /// As for [`Store::open_blob`].
    pub fn open_descriptor(&self, descriptor: &Descriptor) -> Result<BlobReader> {
        self.open_blob_sized(descriptor.digest(), Some(descriptor.size()))
    }

    fn open_blob_sized(&self, digest: &Digest, size: Option<u64>) -> Result<BlobReader> {
        let path = self.blob_path(digest)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobNotFound {
                    digest: digest.to_string(),
                    path,
                });
            }
            Err(source) => return Err(StoreError::io("open", path, source)),
        };
        let file_size = file
            .metadata()
            .map_err(|source| StoreError::io("inspect", &path, source))?
            .len();
        Ok(BlobReader {
            file: BufReader::with_capacity(64 * 1024, file),
            path,
            expected: digest.clone(),
            expected_size: size.unwrap_or(file_size),
            hasher: Sha256::new(),
            read: 0,
            failed: false,
            verified: false,
        })
    }

    /// Reads a whole blob and checks its digest.
    ///
    /// # Errors
    /// [`StoreError::BlobNotFound`] or [`StoreError::BlobCorrupt`].
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut reader = self.open_blob(digest)?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|error| reader_error(error, &reader.path))?;
        Ok(bytes)
    }

    /// Serialises `value` as compact JSON, stores it and returns its
    /// descriptor with `media_type`.
    ///
    /// # Errors
    /// [`StoreError::EncodeJson`] or the errors of [`Store::put_blob`].
    pub fn put_json<T: Serialize>(&self, value: &T, media_type: MediaType) -> Result<Descriptor> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::EncodeJson {
            what: media_type.to_string(),
            source,
        })?;
        Ok(self.put_blob(&bytes)?.descriptor(media_type))
    }

    /// Reads the blob `digest`, checks it, and parses it as JSON.
    ///
    /// # Errors
    /// [`StoreError::BlobNotFound`], [`StoreError::BlobCorrupt`] or
    /// [`StoreError::DecodeJson`].
    pub fn get_json<T: DeserializeOwned>(&self, digest: &Digest) -> Result<T> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::DecodeJson {
            what: format!("blob {digest}"),
            path: self.blobs_dir().join(digest.digest()),
            source,
        })
    }
}

/// Turns an error of [`BlobReader`] back into a [`StoreError`].
pub(crate) fn reader_error(error: io::Error, path: &Path) -> StoreError {
    if error
        .get_ref()
        .is_some_and(|inner| inner.is::<StoreError>())
    {
        if let Some(inner) = error.into_inner()
            && let Ok(store_error) = inner.downcast::<StoreError>()
        {
            return *store_error;
        }
        return StoreError::io("read", path, io::Error::other("blob reader failed"));
    }
    StoreError::io("read", path, error)
}

/// Hashes a file and returns its digest and size.
pub(crate) fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let count = file.read(&mut buffer)?;
        if count == 0 {
            break;
        }
        hasher.update(buffer.get(..count).unwrap_or(&buffer));
        size += count as u64;
    }
    Ok((digest_of(hasher), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn temp_entries(store: &Store) -> usize {
        fs::read_dir(store.tmp_dir()).unwrap().count()
    }

    #[test]
    fn put_blob_is_named_by_sha256() {
        let (_dir, store) = store();
        let info = store.put_blob(b"hello").unwrap();
        assert_eq!(
            info.digest.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(info.size, 5);
        assert_eq!(store.read_blob(&info.digest).unwrap(), b"hello");
        assert_eq!(temp_entries(&store), 0);
    }

    #[test]
    fn reader_rejects_wrong_size_descriptor() {
        let (_dir, store) = store();
        let info = store.put_blob(b"hello").unwrap();
        let wrong = Descriptor::new(MediaType::ImageLayer, 4, info.digest.clone());
        let mut reader = store.open_descriptor(&wrong).unwrap();
        let error = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn commit_descriptor_checks_size() {
        let (_dir, store) = store();
        let digest = store.put_blob(b"abc").unwrap().digest;
        let mut writer = store.blob_writer().unwrap();
        writer.write_all(b"abc").unwrap();
        let error = writer
            .commit_descriptor(&Descriptor::new(MediaType::ImageLayer, 7, digest))
            .unwrap_err();
        assert!(
            matches!(
                error,
                StoreError::SizeMismatch {
                    expected: 7,
                    actual: 3,
                    ..
                }
            ),
            "{error}"
        );
        assert_eq!(temp_entries(&store), 0);
    }

    #[test]
    fn parse_digest_rejects_sha512() {
        let text = format!("sha512:{}", "a".repeat(128));
        let error = parse_digest(&text).unwrap_err();
        assert!(
            matches!(error, StoreError::UnsupportedDigest { .. }),
            "{error}"
        );
    }

    #[test]
    fn parse_digest_rejects_short_hex() {
        let error = parse_digest("sha256:abc").unwrap_err();
        assert!(error.to_string().contains("sha256:abc"), "{error}");
    }

    #[test]
    fn json_round_trip() {
        let (_dir, store) = store();
        let value = serde_json::json!({"a": [1, 2, 3]});
        let descriptor = store.put_json(&value, MediaType::ImageConfig).unwrap();
        assert_eq!(descriptor.media_type(), &MediaType::ImageConfig);
        assert_eq!(
            descriptor.size(),
            store.blob_size(descriptor.digest()).unwrap()
        );
        let back: serde_json::Value = store.get_json(descriptor.digest()).unwrap();
        assert_eq!(back, value);
    }
}
