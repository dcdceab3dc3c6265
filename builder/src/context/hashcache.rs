//! Content hashes of context files, reused while a file's stat data is
//! unchanged.
//!
//! A stored hash is trusted only when the file's size, mtime, ctime (both in
//! nanoseconds), inode and device match, and when both timestamps are in an
//! earlier second than the moment the hash was taken. The second rule
//! handles racy timestamps as git does for its index: the kernel stamps
//! files from a coarse clock, so a write in the same clock tick as the hash
//! can change the content without changing any timestamp.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the cache file layout; a file of another version is ignored.
const FORMAT_VERSION: u32 = 1;

/// Hashes of context files reused across builds while path, size, mtime,
/// ctime and inode are unchanged.
///
/// The cache is shared by the threads that hash files, so its methods take
/// `&self`.
#[derive(Debug, Default)]
pub struct HashCache {
    /// Entries by absolute host path.
    entries: Mutex<HashMap<PathBuf, Entry>>,
    /// Files whose content was read and hashed since the cache was loaded.
    hashed: AtomicU64,
}

/// The stat data a hash was taken with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    inode: u64,
    device: u64,
    /// Seconds since the epoch when the file was read for hashing.
    hashed_at: i64,
    /// `sha256:<hex>` of the content.
    digest: String,
}

/// The on-disk form.
#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    entries: Vec<(PathBuf, Entry)>,
}

impl Entry {
    /// Checks whether the stored hash still describes a file with `metadata`.
    fn matches(&self, metadata: &std::fs::Metadata) -> bool {
        let racy = metadata.mtime().max(metadata.ctime()) >= self.hashed_at;
        !racy
            && self.size == metadata.size()
            && self.mtime == (metadata.mtime(), metadata.mtime_nsec())
            && self.ctime == (metadata.ctime(), metadata.ctime_nsec())
            && self.inode == metadata.ino()
            && self.device == metadata.dev()
    }
}

impl HashCache {
    /// Creates an empty cache.
    pub fn new() -> HashCache {
        HashCache::default()
    }

    /// Loads a cache file. A missing, unreadable or outdated file gives an
    /// empty cache, because the cache only saves work.
    pub fn load(path: &Path) -> HashCache {
        let parsed = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .filter(|file| file.version == FORMAT_VERSION);
        let entries = parsed
            .map(|file| file.entries.into_iter().collect())
            .unwrap_or_default();
        HashCache {
            entries: Mutex::new(entries),
            hashed: AtomicU64::new(0),
        }
    }

    /// Saves the cache to `path`, replacing it atomically.
    ///
    /// # Errors
    ///
    /// An I/O error from writing the temporary file or renaming it.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let mut entries: Vec<(PathBuf, Entry)> = self
            .lock()
            .iter()
            .map(|(path, entry)| (path.clone(), entry.clone()))
            .collect();
        entries.sort_by(|left, right| left.0.cmp(&right.0));
        let bytes = serde_json::to_vec(&CacheFile {
            version: FORMAT_VERSION,
            entries,
        })
        .map_err(io::Error::other)?;

        let mut temporary = path.as_os_str().to_os_string();
        temporary.push(format!(".tmp{}", std::process::id()));
        let temporary = PathBuf::from(temporary);
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, path)
    }

    /// Returns how many files were read and hashed (not reused) since the
    /// cache was created or loaded.
    pub fn hashed_files(&self) -> u64 {
        self.hashed.load(Ordering::Relaxed)
    }

    /// Returns the `sha256:<hex>` digest of the regular file at `path`,
    /// reusing a stored hash while `metadata` (from `lstat`) still matches it.
    ///
    /// # Errors
    ///
    /// An I/O error from reading the file.
    pub fn file_digest(&self, path: &Path, metadata: &std::fs::Metadata) -> io::Result<String> {
        if let Some(entry) = self.lock().get(path)
            && entry.matches(metadata)
        {
            return Ok(entry.digest.clone());
        }

        let hashed_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let digest = hash_reader(std::fs::File::open(path)?)?;
        self.hashed.fetch_add(1, Ordering::Relaxed);

        let entry = Entry {
            size: metadata.size(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
            inode: metadata.ino(),
            device: metadata.dev(),
            hashed_at,
            digest: digest.clone(),
        };
        self.lock().insert(path.to_path_buf(), entry);
        Ok(digest)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Entry>> {
        // A panic while holding the lock leaves a consistent map, because
        // every update is a single insert.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Returns `sha256:<hex>` of everything `reader` yields.
pub(crate) fn hash_reader(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let count = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        hasher.update(buffer.get(..count).unwrap_or_default());
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Returns `sha256:<hex>` of `bytes`.
pub(crate) fn hash_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_file_is_hashed_again() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("f");
        std::fs::write(&path, "abc").unwrap();
        let cache = HashCache::new();
        let metadata = std::fs::symlink_metadata(&path).unwrap();

        let first = cache.file_digest(&path, &metadata).unwrap();
        let second = cache.file_digest(&path, &metadata).unwrap();

        assert_eq!(first, hash_bytes(b"abc"));
        assert_eq!(second, first);
        // The file was written in the same second as the hash, so the entry
        // is racy and the content is read twice.
        assert_eq!(cache.hashed_files(), 2);
    }

    #[test]
    fn load_of_garbage_is_empty() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("cache.json");
        std::fs::write(&path, "not json").unwrap();
        let cache = HashCache::load(&path);
        assert!(cache.lock().is_empty());
    }
}
