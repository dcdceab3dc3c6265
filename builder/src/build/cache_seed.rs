//! Seeding of `RUN --mount=type=cache,from=FROM,source=SOURCE` caches.
//!
//! BuildKit (`solver/llbsolver/mounts/mount.go`) identifies such a
//! cache by its id and the snapshot of FROM, and creates it as a copy of
//! that snapshot only when no cache with this identity exists. An existing
//! cache is mounted with whatever earlier steps left in it. forge names the
//! cache folder after the id, the key of the stage or the digest of the
//! image, and SOURCE, and copies FROM:SOURCE into the folder when it
//! creates the folder.

use std::fs;
use std::path::PathBuf;

use forge_parser::instructions::Instruction;
use rustix::fs::{CWD, RenameFlags};
use rustix::io::Errno;

use super::BuildRun;
use crate::error::{BuildError, Result};
use crate::rootfs::RootView;
use crate::runner::seed::seed_volume;

/// A cache mount folder and the files it starts with when it is created.
pub(super) struct CacheSeed {
    /// Cache folder in the build's cache mount root.
    pub(super) folder: PathBuf,
    /// File system of the stage or image that `from` names.
    pub(super) image: RootView,
    /// Directory inside `image` whose content is copied, the `source` of
    /// the mount.
    pub(super) source: String,
}

/// Creates the cache folder of `seed` with the content of its source
/// directory, unless the folder exists already. Returns whether this call
/// created it.
///
/// The files are copied into a work folder of the store and moved into
/// place with `renameat2(RENAME_NOREPLACE)`, so a step that mounts the
/// cache at the same time sees either no folder or a complete one. When
/// another build creates the folder first, its content wins and the copy is
/// removed.
pub(super) fn seed_cache(
    build: &BuildRun<'_>,
    instruction: &Instruction,
    seed: &CacheSeed,
) -> Result<bool> {
    if fs::symlink_metadata(&seed.folder).is_ok() {
        return Ok(false);
    }
    if let Some(parent) = seed.folder.parent() {
        fs::create_dir_all(parent).map_err(|source| BuildError::Io {
            action: "create the folder for cache mounts",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let staging = build
        .builder
        .store
        .create_work_dir()
        .map_err(BuildError::store("create a folder to seed a cache mount"))?;

    if let Err(error) = seed_volume(&seed.image, &seed.source, &staging) {
        remove_staging(&staging);
        return Err(BuildError::Step {
            file: build.options.dockerfile_name.clone(),
            line: instruction.span.start,
            instruction: instruction.original.clone(),
            message: format!(
                "cannot copy `{}` into the new cache mount `{}`",
                seed.source,
                seed.folder.display()
            ),
            source: Some(Box::new(error)),
        });
    }

    match rustix::fs::renameat_with(CWD, &staging, CWD, &seed.folder, RenameFlags::NOREPLACE) {
        Ok(()) => {
            tracing::debug!(folder = %seed.folder.display(), source = %seed.source, "seeded a cache mount");
            Ok(true)
        }
        Err(Errno::EXIST | Errno::NOTEMPTY) => {
            remove_staging(&staging);
            Ok(false)
        }
        Err(errno) => {
            remove_staging(&staging);
            Err(BuildError::Io {
                action: "move the seeded cache mount into place at",
                path: seed.folder.clone(),
                source: errno.into(),
            })
        }
    }
}

fn remove_staging(dir: &std::path::Path) {
    if let Err(error) = fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %dir.display(), %error, "cannot remove a work folder");
    }
}
