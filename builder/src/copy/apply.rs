//! Writing a [`CopyPlan`] into a layer folder.
//!
//! Only folders this module creates are walked, and any symlink or file
//! standing where a directory is needed is replaced, so no write follows a
//! symlink out of the layer folder.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use forge_cache::layer::{ExtractOptions, RecordedOwner, extract_recording_owners};
use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};

use super::archive::decompressed;
use super::{Content, CopyError, CopyPlan, CopyStats, Entry, Kind, xattr};
use crate::rootfs::join_absolute;

/// Writes `plan` into `upper`.
///
/// Without root, a process may give files only its own uid, which the
/// layer records as root. Other owners are set afterwards from inside the
/// RUN sandbox's user namespace, where container ids are valid.
pub(super) fn write(plan: &CopyPlan, upper: &Path) -> Result<CopyStats, CopyError> {
    let mut stats = CopyStats::default();
    let mut directories: Vec<(PathBuf, &Entry)> = Vec::new();
    let mut owners = Owners {
        rootless: crate::sandbox::rootless_id_map().is_some(),
        upper,
        later: Vec::new(),
    };

    for (components, entry) in &plan.entries {
        let mut host = upper.to_path_buf();
        host.extend(components);
        let io_error = |action: &'static str| {
            let path = join_absolute(components);
            move |source| CopyError::Io {
                path,
                action,
                source,
            }
        };
        match &entry.kind {
            Kind::Dir => {
                ensure_dir(&host).map_err(io_error("create the directory"))?;
                directories.push((host, entry));
                stats.dirs += 1;
            }
            Kind::File { content, size, .. } => {
                remove_existing(&host).map_err(io_error("replace"))?;
                write_file(&host, content).map_err(io_error("write"))?;
                owners
                    .set_metadata(&host, entry)
                    .map_err(io_error("set the metadata of"))?;
                stats.files += 1;
                stats.bytes += size;
            }
            Kind::Symlink { target } => {
                remove_existing(&host).map_err(io_error("replace"))?;
                std::os::unix::fs::symlink(target, &host)
                    .map_err(io_error("create the symlink"))?;
                owners
                    .set_metadata(&host, entry)
                    .map_err(io_error("set the metadata of"))?;
                stats.symlinks += 1;
            }
            Kind::HardLink { target } => {
                remove_existing(&host).map_err(io_error("replace"))?;
                let mut original = upper.to_path_buf();
                original.extend(crate::rootfs::split_components(target));
                std::fs::hard_link(&original, &host).map_err(io_error("create the hard link"))?;
                stats.hard_links += 1;
            }
        }
    }

    for unpack in &plan.unpacks {
        let mut host = upper.to_path_buf();
        host.extend(crate::rootfs::split_components(&unpack.destination));
        let unpack_error = |source| CopyError::Unpack {
            source_path: unpack.source.clone(),
            destination: unpack.destination.clone(),
            source,
        };
        let io_error = |source| CopyError::Io {
            path: unpack.source.clone(),
            action: "read the archive",
            source,
        };
        ensure_dir(&host).map_err(|source| CopyError::Io {
            path: unpack.destination.clone(),
            action: "create the directory",
            source,
        })?;
        let reader: Box<dyn io::Read + Send> = match &unpack.content {
            Content::Host(path) => Box::new(File::open(path).map_err(io_error)?),
            Content::Bytes(bytes) => Box::new(io::Cursor::new(bytes.as_ref().clone())),
        };
        let stream = decompressed(reader).map_err(io_error)?;
        // NOTE: unpacked entries keep the owners the archive records, and
        // `--chown`/`--chmod` do not apply to them. `.wh.` entries of the
        // archive are applied as layer whiteouts inside the destination.
        let (summary, recorded) =
            extract_recording_owners(stream, &host, &ExtractOptions::for_current_user())
                .map_err(unpack_error)?;
        stats.unpacked += summary.entries;
        if owners.rootless {
            let prefix = host.strip_prefix(upper).unwrap_or(Path::new(""));
            owners
                .later
                .extend(recorded.into_iter().map(|owner| RecordedOwner {
                    path: prefix.join(&owner.path),
                    ..owner
                }));
        }
    }

    // Directory metadata goes last, deepest first, so writing children
    // does not change a parent's mtime afterwards.
    for (host, entry) in directories.iter().rev() {
        owners
            .set_metadata(host, entry)
            .map_err(|source| CopyError::Io {
                path: host.display().to_string(),
                action: "set the metadata of",
                source,
            })?;
    }
    if !owners.later.is_empty() {
        crate::sandbox::set_layer_owners(upper, &owners.later).map_err(|source| CopyError::Io {
            path: "/".to_string(),
            action: "set the owners (in the user namespace) of the files below",
            source,
        })?;
    }
    Ok(stats)
}

/// Sets metadata, and without root keeps the owners to set later.
struct Owners<'a> {
    rootless: bool,
    upper: &'a Path,
    /// Owners other than root, set from inside the user namespace.
    later: Vec<RecordedOwner>,
}

impl Owners<'_> {
    fn set_metadata(&mut self, host: &Path, entry: &Entry) -> io::Result<()> {
        if !self.rootless {
            return set_metadata(host, entry, true);
        }
        set_metadata(host, entry, false)?;
        if (entry.uid, entry.gid) != (0, 0) {
            self.later.push(RecordedOwner {
                path: host.strip_prefix(self.upper).unwrap_or(host).to_path_buf(),
                uid: entry.uid,
                gid: entry.gid,
                mode: entry.mode,
                symlink: matches!(entry.kind, Kind::Symlink { .. }),
            });
        }
        Ok(())
    }
}

/// Makes `host` a real directory, replacing a file or symlink there.
fn ensure_dir(host: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(host) {
        Ok(metadata) if metadata.is_dir() => return Ok(()),
        Ok(_) => std::fs::remove_file(host)?,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    if let Some(parent) = host.parent() {
        ensure_parent(parent)?;
    }
    std::fs::create_dir(host)
}

/// Creates missing parents; the plan lists every parent, so this only
/// guards against a parent replaced by a later entry.
fn ensure_parent(host: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(host) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        _ => ensure_dir(host),
    }
}

/// Removes whatever is at `host` so a new entry can take its place.
fn remove_existing(host: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(host) {
        Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(host),
        Ok(_) => std::fs::remove_file(host),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = host.parent() {
                ensure_parent(parent)?;
            }
            Ok(())
        }
        Err(error) => Err(error),
    }
}

fn write_file(host: &Path, content: &Content) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(host)?;
    match content {
        Content::Host(source) => {
            let mut input = File::open(source)?;
            io::copy(&mut input, &mut file)?;
        }
        Content::Bytes(bytes) => file.write_all(bytes)?,
    }
    Ok(())
}

/// Sets owner, then mode (a chown clears setuid bits), then extended
/// attributes (a chown also clears `security.capability`), then mtime,
/// never following a symlink.
fn set_metadata(host: &Path, entry: &Entry, owner: bool) -> io::Result<()> {
    if owner {
        std::os::unix::fs::lchown(host, Some(entry.uid), Some(entry.gid))?;
    }
    if !matches!(entry.kind, Kind::Symlink { .. }) {
        std::fs::set_permissions(host, std::fs::Permissions::from_mode(entry.mode))?;
    }
    xattr::write(host, &entry.xattrs)?;
    let time = Timespec {
        tv_sec: entry.mtime.0,
        tv_nsec: entry.mtime.1 as _,
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(CWD, host, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}
