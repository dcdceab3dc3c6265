//! The `sharing` modes of `RUN --mount=type=cache` between steps that run
//! at the same time, in one build or in several forge processes on the
//! same store.
//!
//! Each cache folder `NAME` in the cache mount root has a lock file
//! `NAME.lock` next to it, and a step holds an `flock` on it from before
//! the sandbox starts until the sandbox has exited:
//!
//! - `shared` (the default) takes a shared lock, so any number of shared
//!   steps use the folder at once.
//! - `locked` takes an exclusive lock. It waits until no other step holds
//!   the cache in any mode, then uses the folder alone.
//! - `private` tries the exclusive lock without waiting. When another step
//!   holds the cache in any mode, it takes the first instance
//!   `NAME-private-N` (N = 1, 2, ...) whose lock `NAME-private-N.lock` it
//!   can lock exclusively at once. The instance folder stays and is reused
//!   by the next private step that finds it free, so two steps never use
//!   one private instance together.
//!
//! A shared step waits while a locked or private step holds the cache, and
//! a locked step waits for shared steps too. BuildKit's Dockerfile
//! reference states the rules for writers: "private creates a new mount if
//! there are multiple writers" and "locked pauses the second writer until
//! the first one releases the mount". forge applies them to read-only
//! mounts as well.
//!
//! NOTE: `flock` gives no preference to a waiting exclusive lock, so a
//! locked step waits as long as shared steps keep overlapping.
//!
//! Each lock is on its own open file description, so two steps of one
//! process exclude each other as two processes do. The kernel releases the
//! locks when the file closes, which also happens when forge exits or is
//! killed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use forge_parser::instructions::{Instruction, Sharing};
use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;

use super::BuildRun;
use crate::error::Result;
use crate::progress::{ProgressEvent, StepId, Stream};
use crate::sandbox::InterruptWatch;

/// How often a waiting step retries its lock.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);

/// A cache mount of a RUN step, before its lock is taken.
#[derive(Debug, Clone)]
pub(super) struct CacheClaim {
    /// Cache folder named by the cache's identity.
    pub(super) folder: PathBuf,
    /// The mount's `id`, shown while the step waits.
    pub(super) id: String,
    /// The mount's sharing mode.
    pub(super) sharing: Sharing,
}

/// The locks of one RUN step's cache mounts and the folders they grant.
/// Dropping it releases the locks.
#[derive(Debug, Default)]
pub(super) struct CacheLeases {
    /// Folder to mount for each claimed cache folder: the folder itself, or
    /// a private instance of it.
    folders: BTreeMap<PathBuf, PathBuf>,
    _locks: Vec<File>,
}

impl CacheLeases {
    /// Returns the folder to mount in place of the cache folder `folder`.
    pub(super) fn folder<'a>(&'a self, folder: &'a Path) -> &'a Path {
        self.folders.get(folder).map_or(folder, PathBuf::as_path)
    }
}

/// A failure to lock a cache mount.
#[derive(Debug)]
pub(super) enum LeaseError {
    /// Opening or locking the lock file failed.
    Io { path: PathBuf, source: io::Error },
    /// SIGINT or SIGTERM arrived while the step waited for the lock.
    Interrupted { id: String, signal: i32 },
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseError::Io { path, source } => {
                write!(
                    f,
                    "cannot lock the cache mount lock file {}: {source}",
                    path.display()
                )
            }
            LeaseError::Interrupted { id, signal } => write!(
                f,
                "interrupted by signal {signal} while waiting for the cache mount `{id}`"
            ),
        }
    }
}

/// Locks the cache mounts of the RUN step `step` with [`acquire`] and
/// prints a progress line for each cache the step waits for.
pub(super) fn lock_cache_mounts(
    build: &BuildRun<'_>,
    instruction: &Instruction,
    step: &StepId,
    claims: &[CacheClaim],
) -> Result<CacheLeases> {
    let on_wait = |id: &str| {
        build.builder.progress.event(ProgressEvent::Output {
            step: step.clone(),
            stream: Stream::Stderr,
            line: format!("waiting for the cache mount {id}, locked by another build"),
        });
    };
    acquire(claims, on_wait).map_err(|error| match error {
        LeaseError::Io { .. } => build.step_error(
            instruction,
            format!("{error}; check that the store folder is writable"),
        ),
        LeaseError::Interrupted { .. } => build.step_error(instruction, error.to_string()),
    })
}

/// Locks the cache folders of one RUN step as their sharing modes require.
///
/// A folder that several mounts of the step name is locked once, with the
/// strictest of their modes (locked, then private, then shared). Folders
/// are locked in path order, so two steps that wait for the same caches
/// cannot deadlock. `on_wait` is called once for each cache the step has
/// to wait for, with the cache's id.
pub(super) fn acquire(
    claims: &[CacheClaim],
    mut on_wait: impl FnMut(&str),
) -> std::result::Result<CacheLeases, LeaseError> {
    let mut strictest: BTreeMap<&Path, &CacheClaim> = BTreeMap::new();
    for claim in claims {
        let entry = strictest.entry(&claim.folder).or_insert(claim);
        if rank(claim.sharing) > rank(entry.sharing) {
            *entry = claim;
        }
    }

    let mut leases = CacheLeases::default();
    for (folder, claim) in strictest {
        let lock_path = lock_path(folder);
        if let Some(parent) = folder.parent() {
            std::fs::create_dir_all(parent).map_err(|source| LeaseError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let file = open(&lock_path)?;
        match claim.sharing {
            Sharing::Shared => {
                wait_for(
                    &file,
                    &lock_path,
                    FlockOperation::NonBlockingLockShared,
                    claim,
                    &mut on_wait,
                )?;
                leases._locks.push(file);
            }
            Sharing::Locked => {
                wait_for(
                    &file,
                    &lock_path,
                    FlockOperation::NonBlockingLockExclusive,
                    claim,
                    &mut on_wait,
                )?;
                leases._locks.push(file);
            }
            Sharing::Private => {
                let (instance, file) = private_instance(folder, file, &lock_path)?;
                if instance != folder {
                    tracing::debug!(id = %claim.id, folder = %instance.display(), "cache mount in use; using a private instance");
                }
                leases.folders.insert(folder.to_path_buf(), instance);
                leases._locks.push(file);
            }
        }
    }
    Ok(leases)
}

fn rank(sharing: Sharing) -> u8 {
    match sharing {
        Sharing::Shared => 0,
        Sharing::Private => 1,
        Sharing::Locked => 2,
    }
}

/// Returns the lock file of the cache folder `folder`: `NAME.lock` beside it.
fn lock_path(folder: &Path) -> PathBuf {
    let mut name = folder.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    folder.with_file_name(name)
}

fn open(path: &Path) -> std::result::Result<File, LeaseError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| LeaseError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Tries `operation` (a non-blocking lock) once without waiting. Returns
/// whether the lock was granted.
fn try_lock(
    file: &File,
    path: &Path,
    operation: FlockOperation,
) -> std::result::Result<bool, LeaseError> {
    loop {
        match flock(file, operation) {
            Ok(()) => return Ok(true),
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(Errno::INTR) => continue,
            Err(errno) => {
                return Err(LeaseError::Io {
                    path: path.to_path_buf(),
                    source: errno.into(),
                });
            }
        }
    }
}

/// Takes the lock `operation` on `file`, retrying every
/// [`RETRY_INTERVAL`] until it is granted.
///
/// While it waits, SIGINT and SIGTERM are caught and end the wait with an
/// error. Without that, a signal that arrives while another step's sandbox
/// of this process watches for it would leave this step waiting forever.
fn wait_for(
    file: &File,
    path: &Path,
    operation: FlockOperation,
    claim: &CacheClaim,
    on_wait: &mut impl FnMut(&str),
) -> std::result::Result<(), LeaseError> {
    if try_lock(file, path, operation)? {
        return Ok(());
    }
    on_wait(&claim.id);
    tracing::debug!(id = %claim.id, lock = %path.display(), "waiting for a cache mount lock");
    let watch = InterruptWatch::new().map_err(|source| LeaseError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(
            source.kind(),
            format!("cannot watch for SIGINT and SIGTERM while waiting: {source}"),
        ),
    })?;
    loop {
        std::thread::sleep(RETRY_INTERVAL);
        if let Some(signal) = watch.take() {
            return Err(LeaseError::Interrupted {
                id: claim.id.clone(),
                signal,
            });
        }
        if try_lock(file, path, operation)? {
            return Ok(());
        }
    }
}

/// Returns the folder a private step uses and its exclusively locked lock
/// file: `folder` itself when no other step holds it, else the first free
/// `NAME-private-N`.
fn private_instance(
    folder: &Path,
    file: File,
    folder_lock: &Path,
) -> std::result::Result<(PathBuf, File), LeaseError> {
    if try_lock(&file, folder_lock, FlockOperation::NonBlockingLockExclusive)? {
        return Ok((folder.to_path_buf(), file));
    }
    drop(file);
    let name = folder.file_name().unwrap_or_default().to_string_lossy();
    // Every instance that is not free is locked by a running step, so the
    // search ends after at most one more instance than steps running.
    let mut number: u64 = 0;
    loop {
        number += 1;
        let instance = folder.with_file_name(format!("{name}-private-{number}"));
        let instance_lock = lock_path(&instance);
        let file = open(&instance_lock)?;
        if try_lock(
            &file,
            &instance_lock,
            FlockOperation::NonBlockingLockExclusive,
        )? {
            return Ok((instance, file));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(folder: &Path, sharing: Sharing) -> CacheClaim {
        CacheClaim {
            folder: folder.to_path_buf(),
            id: "c".to_string(),
            sharing,
        }
    }

    #[test]
    fn shared_claims_hold_together() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("abc");
        let first = acquire(&[claim(&folder, Sharing::Shared)], |_| panic!("waited")).unwrap();
        let second = acquire(&[claim(&folder, Sharing::Shared)], |_| panic!("waited")).unwrap();
        assert_eq!(first.folder(&folder), folder);
        assert_eq!(second.folder(&folder), folder);
        assert!(dir.path().join("abc.lock").is_file());
    }

    #[test]
    fn private_claim_beside_shared_gets_instance() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("abc");
        let _shared = acquire(&[claim(&folder, Sharing::Shared)], |_| panic!("waited")).unwrap();
        let first = acquire(&[claim(&folder, Sharing::Private)], |_| panic!("waited")).unwrap();
        let second = acquire(&[claim(&folder, Sharing::Private)], |_| panic!("waited")).unwrap();
        assert_eq!(first.folder(&folder), dir.path().join("abc-private-1"));
        assert_eq!(second.folder(&folder), dir.path().join("abc-private-2"));

        // A released instance is reused by the next private step.
        drop(first);
        let third = acquire(&[claim(&folder, Sharing::Private)], |_| panic!("waited")).unwrap();
        assert_eq!(third.folder(&folder), dir.path().join("abc-private-1"));
    }

    #[test]
    fn private_claim_of_free_cache_uses_it() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("abc");
        let private = acquire(&[claim(&folder, Sharing::Private)], |_| panic!("waited")).unwrap();
        assert_eq!(private.folder(&folder), folder);
    }

    #[test]
    fn locked_claim_waits_for_shared_holder() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("abc");
        let shared = acquire(&[claim(&folder, Sharing::Shared)], |_| panic!("waited")).unwrap();

        let waiter_folder = folder.clone();
        let (sender, receiver) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let mut waits = Vec::new();
            let lease = acquire(&[claim(&waiter_folder, Sharing::Locked)], |id| {
                waits.push(id.to_string());
            })
            .unwrap();
            sender.send(()).unwrap();
            drop(lease);
            waits
        });

        assert!(
            receiver.recv_timeout(Duration::from_millis(300)).is_err(),
            "locked claim granted while a shared claim is held"
        );
        drop(shared);
        receiver
            .recv_timeout(Duration::from_secs(5))
            .expect("locked claim granted after the shared claim was released");
        assert_eq!(waiter.join().unwrap(), ["c"]);
    }

    #[test]
    fn same_folder_twice_takes_strictest_mode_once() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("abc");
        let lease = acquire(
            &[
                claim(&folder, Sharing::Shared),
                claim(&folder, Sharing::Locked),
            ],
            |_| panic!("waited"),
        )
        .unwrap();
        assert_eq!(lease._locks.len(), 1);
        let file = open(&lock_path(&folder)).unwrap();
        assert!(
            !try_lock(
                &file,
                &lock_path(&folder),
                FlockOperation::NonBlockingLockShared
            )
            .unwrap()
        );
    }

    #[test]
    fn lock_in_unwritable_root_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let folder = file.join("abc");
        let error = acquire(&[claim(&folder, Sharing::Shared)], |_| {}).unwrap_err();
        assert!(error.to_string().contains("file"), "{error}");
    }
}
