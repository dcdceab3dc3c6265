//! Mount points in a root file system copy (the copy snapshotter).
//!
//! With an overlay, the mount points that the image lacks come from an
//! extra lower folder and never reach the upper folder. A root copy has no
//! lower folder, so they are created in the copy before the run and
//! removed after it, and their parents get their mtimes back.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// An mtime in seconds and nanoseconds.
type Mtime = (i64, i64);

/// Entries that [`merge`] created in a root copy.
pub(super) struct CreatedPoints {
    /// Created paths in creation order.
    paths: Vec<PathBuf>,
    /// Parents whose content changed: the path, the mtime before and the
    /// mtime after the creation.
    parents: Vec<(PathBuf, Mtime, Mtime)>,
}

fn mtime(path: &Path) -> io::Result<Mtime> {
    let metadata = fs::symlink_metadata(path)?;
    Ok((metadata.mtime(), metadata.mtime_nsec()))
}

fn set_mtime(path: &Path, (seconds, nanoseconds): Mtime) -> io::Result<()> {
    let time = rustix::fs::Timespec {
        tv_sec: seconds,
        tv_nsec: nanoseconds as _,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: time,
            last_modification: time,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// Creates in `root` each folder and empty file of the mount-point folder
/// `points` that `root` lacks, with its mode.
pub(super) fn merge(points: &Path, root: &Path) -> io::Result<CreatedPoints> {
    let mut created = CreatedPoints {
        paths: Vec::new(),
        parents: Vec::new(),
    };
    merge_dir(points, root, &mut created)?;
    for (parent, _, after) in &mut created.parents {
        *after = mtime(parent)?;
    }
    Ok(created)
}

fn merge_dir(points: &Path, root: &Path, created: &mut CreatedPoints) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(points)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let source = entry.path();
        let target = root.join(entry.file_name());
        let metadata = fs::symlink_metadata(&source)?;
        if fs::symlink_metadata(&target).is_err() {
            if !created.parents.iter().any(|(parent, _, _)| parent == root) {
                created
                    .parents
                    .push((root.to_path_buf(), mtime(root)?, (0, 0)));
            }
            if metadata.is_dir() {
                fs::create_dir(&target)?;
            } else {
                fs::File::create(&target)?;
            }
            fs::set_permissions(&target, metadata.permissions())?;
            created.paths.push(target.clone());
        }
        if metadata.is_dir() && fs::symlink_metadata(&target)?.is_dir() {
            merge_dir(&source, &target, created)?;
        }
    }
    Ok(())
}

impl CreatedPoints {
    /// Removes the created entries that are still empty, deepest first, and
    /// gives each parent its old mtime back unless the command changed it.
    /// An entry that the command wrote into stays, as with an overlay.
    pub(super) fn remove(self) {
        // Checked before the removal, which changes the parents' mtimes.
        let unchanged: Vec<bool> = self
            .parents
            .iter()
            .map(|(parent, _, after)| mtime(parent).is_ok_and(|now| now == *after))
            .collect();
        for path in self.paths.iter().rev() {
            let result = match fs::symlink_metadata(path) {
                Ok(metadata) if metadata.is_dir() => fs::remove_dir(path),
                Ok(metadata) if metadata.is_file() && metadata.len() == 0 => fs::remove_file(path),
                _ => Ok(()),
            };
            if let Err(error) = result {
                tracing::debug!(path = %path.display(), %error, "keeping a mount point that the command wrote into");
            }
        }
        for ((parent, before, _), unchanged) in self.parents.iter().zip(unchanged).rev() {
            if unchanged && let Err(error) = set_mtime(parent, *before) {
                tracing::warn!(path = %parent.display(), %error, "cannot restore the mtime of a folder");
            }
        }
    }
}
