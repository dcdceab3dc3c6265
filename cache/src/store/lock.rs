//! Advisory file locks (`flock`) that order forge processes and threads.
//!
//! Each lock is taken on its own open file description, so two threads of
//! one process exclude each other just as two processes do. The lock is
//! released when the [`FileLock`] is dropped and its file closed.
//!
//! The store uses three kinds of lock file under `forge/locks/`:
//! - `store.lock`: every writer takes it shared while it adds content,
//!   and `prune` and `check` take it exclusive while they delete. A writer
//!   that must keep several blobs alive until it names them holds a
//!   [`StoreLease`] for the whole import.
//! - `index.lock`: held exclusive while `index.json` is read, changed and
//!   replaced.
//! - `unpack-HEX.lock`: held exclusive while one layer is unpacked.
//!
//! Lock order: `store.lock` before `index.lock` or an unpack lock. A thread
//! that holds a lease must not call `prune` or `check`, because the
//! exclusive lock would wait for its own shared one.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use super::error::{Result, StoreError};

/// Whether a lock admits other holders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Several holders at once, none exclusive.
    Shared,
    /// One holder only.
    Exclusive,
}

/// A held `flock` on a lock file; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Opens (creating if needed) `path` and waits until the lock is granted.
    pub(crate) fn acquire(path: &Path, mode: LockMode) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| StoreError::Lock {
                path: path.to_path_buf(),
                source,
            })?;
        let operation = match mode {
            LockMode::Shared => FlockOperation::LockShared,
            LockMode::Exclusive => FlockOperation::LockExclusive,
        };
        loop {
            match flock(&file, operation) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => {
                    return Err(StoreError::Lock {
                        path: path.to_path_buf(),
                        source: io::Error::from(errno),
                    });
                }
            }
        }
        tracing::trace!(path = %path.display(), ?mode, "lock acquired");
        Ok(Self { _file: file })
    }
}

/// A shared hold on the store that keeps `prune` and `check` from deleting
/// anything until it is dropped.
///
/// Take one before writing the blobs of an image and drop it after the
/// image is named, so that no blob written in between counts as garbage.
#[derive(Debug)]
pub struct StoreLease {
    _lock: FileLock,
}

impl StoreLease {
    pub(crate) fn new(lock: FileLock) -> Self {
        Self { _lock: lock }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn exclusive_lock_waits_for_shared_holders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.lock");
        let shared = FileLock::acquire(&path, LockMode::Shared).unwrap();
        let second_shared = FileLock::acquire(&path, LockMode::Shared).unwrap();

        let acquired = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&acquired);
        let waiter_path = path.clone();
        let waiter = std::thread::spawn(move || {
            let _lock = FileLock::acquire(&waiter_path, LockMode::Exclusive).unwrap();
            flag.store(true, Ordering::SeqCst);
        });

        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !acquired.load(Ordering::SeqCst),
            "exclusive lock granted while shared locks are held"
        );
        drop(shared);
        drop(second_shared);
        waiter.join().unwrap();
        assert!(acquired.load(Ordering::SeqCst));
    }

    #[test]
    fn lock_on_missing_folder_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("x.lock");
        let error = FileLock::acquire(&path, LockMode::Shared).unwrap_err();
        assert!(error.to_string().contains("x.lock"), "{error}");
    }
}
