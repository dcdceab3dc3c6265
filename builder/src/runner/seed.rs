//! Seeding of volumes from the image, as docker does. When a container is
//! created with an empty named or anonymous volume, the image's files at
//! the mount point are copied into it with their owners, modes, extended
//! attributes and times. Symlinks are copied as symlinks and never
//! followed, so nothing is read or written outside the image's layer
//! folders and the volume.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FlockOperation, Timespec, Timestamps};

use super::RunnerError;
use crate::rootfs::RootView;

/// Copies the image's directory at `target` into the volume folder `volume`
/// when the volume is empty. The volume folder then takes the owner and
/// mode of that directory. Returns whether the volume was seeded. A volume
/// with any entry is left as it is, and so is any volume when `target` is
/// missing or not a directory in the image.
///
/// An exclusive `flock` on the volume folder serialises forge processes
/// that seed the same named volume, so only the first one copies.
///
/// # Errors
///
/// [`RunnerError::Io`] naming the path that could not be read or written.
/// The entries copied before the failure are removed again.
pub(crate) fn seed_volume(
    image: &RootView,
    target: &str,
    volume: &Path,
) -> Result<bool, RunnerError> {
    let read_image =
        |source| RunnerError::io("read the image's files at", Path::new(target), source);
    let path = image.canonical_path(target).map_err(read_image)?;
    let Some((host, metadata)) = image.lstat(&path).map_err(read_image)? else {
        return Ok(false);
    };
    if !metadata.is_dir() {
        return Ok(false);
    }

    let handle = fs::File::open(volume).map_err(|e| RunnerError::io("open volume", volume, e))?;
    rustix::fs::flock(&handle, FlockOperation::LockExclusive)
        .map_err(|e| RunnerError::io("lock volume", volume, e.into()))?;
    let mut entries =
        fs::read_dir(volume).map_err(|e| RunnerError::io("list volume", volume, e))?;
    if entries.next().is_some() {
        return Ok(false);
    }

    let mut copier = Copier {
        image,
        hard_links: HashMap::new(),
        created: Vec::new(),
    };
    let result = copier
        .copy_children(&path, volume, true)
        .and_then(|()| set_root_owner(&metadata, volume));
    if let Err(error) = result {
        for entry in copier.created.iter().rev() {
            let removed = match fs::symlink_metadata(entry) {
                Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(entry),
                _ => fs::remove_file(entry),
            };
            if let Err(cleanup) = removed {
                tracing::warn!(path = %entry.display(), error = %cleanup, "failed to remove a partly seeded entry");
            }
        }
        return Err(error);
    }
    tracing::debug!(volume = %volume.display(), target, from = %host.display(), "seeded volume from the image");
    Ok(true)
}

/// Gives the volume folder the owner and mode of the image's directory, as
/// docker does.
fn set_root_owner(image_dir: &fs::Metadata, volume: &Path) -> Result<(), RunnerError> {
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::lchown(volume, Some(image_dir.uid()), Some(image_dir.gid()))
            .map_err(|e| RunnerError::io("set the owner of", volume, e))?;
    }
    fs::set_permissions(
        volume,
        fs::Permissions::from_mode(image_dir.mode() & 0o7777),
    )
    .map_err(|e| RunnerError::io("set the mode of", volume, e))
}

/// State of one seeding copy.
struct Copier<'a> {
    image: &'a RootView,
    /// First copy of each source file with several links, by device and
    /// inode, so hard links stay hard links.
    hard_links: HashMap<(u64, u64), PathBuf>,
    /// Entries made directly in the volume folder, for the cleanup after a
    /// failure.
    created: Vec<PathBuf>,
}

impl Copier<'_> {
    /// Copies the merged entries of the image directory `path` into the
    /// host folder `destination`.
    fn copy_children(
        &mut self,
        path: &str,
        destination: &Path,
        top: bool,
    ) -> Result<(), RunnerError> {
        let read_image =
            |source| RunnerError::io("read the image's files at", Path::new(path), source);
        let names = self.image.read_dir(path).map_err(read_image)?;
        for name in names {
            let child = format!("{}/{name}", path.trim_end_matches('/'));
            let Some((host, metadata)) = self.image.lstat(&child).map_err(read_image)? else {
                continue;
            };
            let output = destination.join(&name);
            if top {
                self.created.push(output.clone());
            }
            self.copy_entry(&child, &host, &metadata, &output)?;
        }
        Ok(())
    }

    /// Copies one entry; `host` is its file in a layer folder.
    fn copy_entry(
        &mut self,
        path: &str,
        host: &Path,
        metadata: &fs::Metadata,
        output: &Path,
    ) -> Result<(), RunnerError> {
        let write_error =
            |action: &'static str| move |source| RunnerError::io(action, output, source);
        let file_type = metadata.file_type();
        if file_type.is_dir() {
            fs::create_dir(output).map_err(write_error("create"))?;
            self.copy_children(path, output, false)?;
        } else if file_type.is_symlink() {
            let link =
                fs::read_link(host).map_err(|e| RunnerError::io("read the symlink", host, e))?;
            std::os::unix::fs::symlink(&link, output).map_err(write_error("create the symlink"))?;
        } else if file_type.is_file() {
            if metadata.nlink() > 1 {
                let key = (metadata.dev(), metadata.ino());
                if let Some(first) = self.hard_links.get(&key) {
                    return fs::hard_link(first, output)
                        .map_err(write_error("create the hard link"));
                }
                self.hard_links.insert(key, output.to_path_buf());
            }
            let mut input = fs::File::open(host).map_err(|e| RunnerError::io("read", host, e))?;
            // `create_new` fails on anything already there, a symlink too.
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(output)
                .map_err(write_error("create"))?;
            io::copy(&mut input, &mut file).map_err(write_error("copy into"))?;
        } else if file_type.is_char_device() || file_type.is_block_device() || file_type.is_fifo() {
            let kind = rustix::fs::FileType::from_raw_mode(metadata.mode());
            rustix::fs::mknodat(
                CWD,
                output,
                kind,
                rustix::fs::Mode::from_raw_mode(metadata.mode() & 0o7777),
                metadata.rdev(),
            )
            .map_err(|e| RunnerError::io("create the node", output, e.into()))?;
        } else {
            // A socket has no content and works only for the process that
            // listens on it, so it is left out.
            tracing::debug!(path, "not copying a socket into the volume");
            return Ok(());
        }
        set_metadata(host, metadata, output).map_err(write_error("set the metadata of"))
    }
}

/// Sets owner, then mode (a chown clears setuid bits), then extended
/// attributes (a chown also clears `security.capability`), then times,
/// never following a symlink. Owners are kept only when running as root.
fn set_metadata(host: &Path, metadata: &fs::Metadata, output: &Path) -> io::Result<()> {
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::lchown(output, Some(metadata.uid()), Some(metadata.gid()))?;
    }
    if !metadata.file_type().is_symlink() {
        fs::set_permissions(output, fs::Permissions::from_mode(metadata.mode() & 0o7777))?;
    }
    let xattrs = crate::copy::read_xattrs(host)?;
    crate::copy::write_xattrs(output, &xattrs)?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: metadata.atime(),
            tv_nsec: metadata.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: metadata.mtime(),
            tv_nsec: metadata.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(CWD, output, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(root: &Path, name: &str) -> PathBuf {
        let path = root.join(name);
        fs::create_dir_all(path.join("data")).unwrap();
        path
    }

    #[test]
    fn merged_layers_copied() {
        let temp = tempfile::tempdir().unwrap();
        let lower = layer(temp.path(), "lower");
        let upper = layer(temp.path(), "upper");
        fs::write(lower.join("data/old"), "lower").unwrap();
        fs::write(lower.join("data/shadowed"), "lower").unwrap();
        fs::create_dir(lower.join("data/sub")).unwrap();
        fs::write(lower.join("data/sub/deep"), "deep").unwrap();
        fs::write(upper.join("data/shadowed"), "upper").unwrap();
        fs::set_permissions(
            upper.join("data/shadowed"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        fs::hard_link(upper.join("data/shadowed"), upper.join("data/linked")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", upper.join("data/outside")).unwrap();
        fs::set_permissions(upper.join("data"), fs::Permissions::from_mode(0o750)).unwrap();
        let image = RootView::new(vec![upper, lower]);
        let volume = temp.path().join("volume");
        fs::create_dir(&volume).unwrap();

        assert!(seed_volume(&image, "/data/", &volume).unwrap());

        assert_eq!(fs::read_to_string(volume.join("old")).unwrap(), "lower");
        assert_eq!(
            fs::read_to_string(volume.join("shadowed")).unwrap(),
            "upper"
        );
        assert_eq!(fs::read_to_string(volume.join("sub/deep")).unwrap(), "deep");
        let shadowed = fs::metadata(volume.join("shadowed")).unwrap();
        assert_eq!(shadowed.mode() & 0o7777, 0o640);
        let linked = fs::metadata(volume.join("linked")).unwrap();
        assert_eq!(linked.ino(), shadowed.ino());
        let outside = fs::symlink_metadata(volume.join("outside")).unwrap();
        assert!(outside.file_type().is_symlink());
        assert_eq!(
            fs::read_link(volume.join("outside")).unwrap(),
            Path::new("/etc/passwd")
        );
        let root = fs::metadata(&volume).unwrap();
        assert_eq!(root.mode() & 0o7777, 0o750);
    }

    #[test]
    fn volume_with_content_kept() {
        let temp = tempfile::tempdir().unwrap();
        let base = layer(temp.path(), "base");
        fs::write(base.join("data/from-image"), "image").unwrap();
        let image = RootView::new(vec![base]);
        let volume = temp.path().join("volume");
        fs::create_dir(&volume).unwrap();
        fs::write(volume.join("mine"), "kept").unwrap();

        assert!(!seed_volume(&image, "/data", &volume).unwrap());
        assert!(!volume.join("from-image").exists());
        assert_eq!(fs::read_to_string(volume.join("mine")).unwrap(), "kept");
    }

    #[test]
    fn missing_or_file_target_left_empty() {
        let temp = tempfile::tempdir().unwrap();
        let base = layer(temp.path(), "base");
        fs::write(base.join("file"), "not a folder").unwrap();
        let image = RootView::new(vec![base]);
        let volume = temp.path().join("volume");
        fs::create_dir(&volume).unwrap();

        assert!(!seed_volume(&image, "/missing", &volume).unwrap());
        assert!(!seed_volume(&image, "/file", &volume).unwrap());
        assert_eq!(fs::read_dir(&volume).unwrap().count(), 0);
    }

    #[test]
    fn symlinked_target_resolved_in_image() {
        let temp = tempfile::tempdir().unwrap();
        let base = layer(temp.path(), "base");
        fs::write(base.join("data/file"), "through the link").unwrap();
        std::os::unix::fs::symlink("/data", base.join("link")).unwrap();
        let image = RootView::new(vec![base]);
        let volume = temp.path().join("volume");
        fs::create_dir(&volume).unwrap();

        assert!(seed_volume(&image, "/link", &volume).unwrap());
        assert_eq!(
            fs::read_to_string(volume.join("file")).unwrap(),
            "through the link"
        );
    }
}
