//! The copy snapshotter, for hosts where a RUN step cannot mount overlayfs.
//!
//! [`copy_merged`] copies the merged view of the unpacked parent layers
//! into a fresh folder that the sandbox mounts as `/`. After the command,
//! [`write_diff`] compares that folder with the parent layers by `lstat`
//! (type, mode, owner, size, mtime, xattrs and link target, but not file
//! content) and writes the changes in the overlay upper-folder form: a
//! character device 0:0 for a deleted path and the opaque xattr on a
//! directory that was deleted and created again. The layer writer then
//! treats it like an overlay upper folder.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps};

/// The environment variable that selects the snapshotter of RUN steps.
pub(crate) const SNAPSHOTTER_VAR: &str = "FORGE_SNAPSHOTTER";

/// How a RUN step's changes are captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Snapshotter {
    /// An overlay over the parent layers, falling back to [`Self::Copy`]
    /// when the kernel rejects the overlay mount.
    Overlay,
    /// A copy of the root file system, compared with the parents after
    /// the command.
    Copy,
}

impl Snapshotter {
    /// Returns the snapshotter that `FORGE_SNAPSHOTTER` selects: `overlay`
    /// (or unset) or `copy`.
    ///
    /// # Errors
    ///
    /// A message naming the invalid value.
    pub(crate) fn from_env() -> Result<Snapshotter, String> {
        match std::env::var(SNAPSHOTTER_VAR).as_deref() {
            Err(_) | Ok("" | "overlay") => Ok(Snapshotter::Overlay),
            Ok("copy") => Ok(Snapshotter::Copy),
            Ok(other) => Err(format!(
                "invalid {SNAPSHOTTER_VAR} `{other}`: use `overlay` or `copy`"
            )),
        }
    }
}

/// What [`copy_merged`] made, for [`write_diff`].
#[derive(Debug, Default)]
pub(crate) struct CopiedRoot {
    /// Device and inode of each copied directory by relative path, so that
    /// a directory deleted and created again is told from the copy.
    directories: HashMap<PathBuf, (u64, u64)>,
    /// Relative paths that could not be copied (sockets, and device nodes
    /// without the privilege to create them). They count as unchanged.
    skipped: HashSet<PathBuf>,
}

/// Returns whether an unpacked layer entry is an overlay whiteout.
fn is_whiteout(path: &Path, metadata: &Metadata) -> bool {
    if metadata.file_type().is_char_device() {
        return metadata.rdev() == 0;
    }
    metadata.is_file()
        && metadata.len() == 0
        && ["trusted.overlay.whiteout", "user.overlay.whiteout"]
            .iter()
            .any(|name| xattr_value(path, name).is_some())
}

/// Returns whether an unpacked layer directory hides the lower layers'
/// content.
fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| xattr_value(path, name).as_deref() == Some(b"y".as_slice()))
}

fn xattr_value(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buffer = vec![0u8; 256];
    let length = rustix::fs::lgetxattr(path, name, &mut buffer[..]).ok()?;
    buffer.truncate(length);
    Some(buffer)
}

/// Returns the merged entries of one directory: by name, the entry's
/// sources in the layer folders `sources` (the directory in each layer,
/// top first), top first. A directory lists every layer's directory down
/// to an opaque one. Whiteouts and what they hide are left out.
fn merge_dir(sources: &[PathBuf]) -> io::Result<BTreeMap<OsString, Vec<PathBuf>>> {
    let mut merged: BTreeMap<OsString, Vec<PathBuf>> = BTreeMap::new();
    let mut closed: HashSet<OsString> = HashSet::new();
    for dir in sources {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if closed.contains(&name) {
                continue;
            }
            let path = entry.path();
            let metadata = fs::symlink_metadata(&path)?;
            if is_whiteout(&path, &metadata) {
                closed.insert(name);
                continue;
            }
            let is_dir = metadata.is_dir();
            match merged.get_mut(&name) {
                None => {
                    merged.insert(name.clone(), vec![path.clone()]);
                    if !is_dir || is_opaque(&path) {
                        closed.insert(name);
                    }
                }
                // Only a directory stays open, so this merges into it.
                Some(list) if is_dir => {
                    list.push(path.clone());
                    if is_opaque(&path) {
                        closed.insert(name);
                    }
                }
                Some(_) => {
                    closed.insert(name);
                }
            }
        }
    }
    Ok(merged)
}

/// Returns the xattrs of `path` without overlayfs' own.
fn xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut listed = crate::copy::read_xattrs(path)?;
    listed.retain(|(name, _)| {
        !name.starts_with(b"trusted.overlay.") && !name.starts_with(b"user.overlay.")
    });
    Ok(listed)
}

fn timestamps(metadata: &Metadata) -> Timestamps {
    let time = Timespec {
        tv_sec: metadata.mtime(),
        tv_nsec: metadata.mtime_nsec() as _,
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}

/// Sets owner (as root), mode, xattrs and mtime of `target` from `source`.
///
/// NOTE: without root every copied file belongs to the caller, which is
/// root in the sandbox, so lower files of other container users appear as
/// root's, and files the caller cannot read fail the copy.
fn copy_metadata(source: &Path, metadata: &Metadata, target: &Path) -> io::Result<()> {
    let root = rustix::process::geteuid().is_root();
    if root {
        std::os::unix::fs::lchown(target, Some(metadata.uid()), Some(metadata.gid()))?;
    }
    if !metadata.file_type().is_symlink() {
        fs::set_permissions(target, fs::Permissions::from_mode(metadata.mode() & 0o7777))?;
        let listed = xattrs(source)?;
        if let Err(error) = crate::copy::write_xattrs(target, &listed) {
            // Without root, `trusted.*` and `security.capability` cannot be
            // set.
            if root {
                return Err(error);
            }
            tracing::debug!(path = %target.display(), %error, "skipping xattrs this user may not set");
        }
    }
    rustix::fs::utimensat(
        rustix::fs::CWD,
        target,
        &timestamps(metadata),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// Copies a regular file's content, as a reflink where the file system
/// allows it.
fn copy_content(source: &Path, target: &Path) -> io::Result<()> {
    let mut input = File::open(source)?;
    let mut output = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(target)?;
    // FICLONE shares the extents on btrfs, xfs and other file systems
    // with reflinks. std's copy then uses copy_file_range.
    #[allow(unsafe_code)]
    // SAFETY: FICLONE takes the source descriptor as its argument, and
    // both descriptors are open for the duration of the call.
    let cloned = unsafe { libc::ioctl(output.as_raw_fd(), libc::FICLONE, input.as_raw_fd()) };
    if cloned == 0 {
        return Ok(());
    }
    io::copy(&mut input, &mut output)?;
    Ok(())
}

/// Copies the merged view of `lowers` (unpacked layer folders, top first)
/// into the empty folder `dest`, keeping hard links, owners (as root),
/// modes, xattrs and mtimes.
///
/// # Errors
///
/// The I/O error, naming the path.
pub(crate) fn copy_merged(lowers: &[PathBuf], dest: &Path) -> io::Result<CopiedRoot> {
    let mut copier = Copier {
        copied: CopiedRoot::default(),
        links: HashMap::new(),
    };
    copier.copy_dir(lowers, dest, Path::new(""))?;
    Ok(copier.copied)
}

struct Copier {
    copied: CopiedRoot,
    /// The first copy of each multiply linked source inode.
    links: HashMap<(u64, u64), PathBuf>,
}

fn with_path(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |error| io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

impl Copier {
    fn copy_dir(&mut self, sources: &[PathBuf], dest: &Path, relative: &Path) -> io::Result<()> {
        let merged = merge_dir(sources).map_err(with_path(dest))?;
        for (name, entry_sources) in merged {
            let Some(top) = entry_sources.first() else {
                continue;
            };
            let target = dest.join(&name);
            let relative = relative.join(&name);
            let metadata = fs::symlink_metadata(top).map_err(with_path(top))?;
            self.copy_entry(&entry_sources, top, &metadata, &target, &relative)
                .map_err(with_path(&target))?;
        }
        Ok(())
    }

    fn copy_entry(
        &mut self,
        sources: &[PathBuf],
        top: &Path,
        metadata: &Metadata,
        target: &Path,
        relative: &Path,
    ) -> io::Result<()> {
        let file_type = metadata.file_type();
        if file_type.is_dir() {
            fs::create_dir(target)?;
            self.copy_dir(sources, target, relative)?;
            let created = fs::symlink_metadata(target)?;
            self.copied
                .directories
                .insert(relative.to_path_buf(), (created.dev(), created.ino()));
            return copy_metadata(top, metadata, target);
        }

        if metadata.nlink() > 1 {
            let key = (metadata.dev(), metadata.ino());
            if let Some(first) = self.links.get(&key) {
                return fs::hard_link(first, target);
            }
            self.links.insert(key, target.to_path_buf());
        }
        if file_type.is_file() {
            copy_content(top, target)?;
        } else if file_type.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(top)?, target)?;
        } else if file_type.is_socket() {
            self.copied.skipped.insert(relative.to_path_buf());
            return Ok(());
        } else {
            let kind = if file_type.is_fifo() {
                FileType::Fifo
            } else if file_type.is_char_device() {
                FileType::CharacterDevice
            } else {
                FileType::BlockDevice
            };
            let made = rustix::fs::mknodat(
                rustix::fs::CWD,
                target,
                kind,
                Mode::from_raw_mode(0o600),
                metadata.rdev(),
            );
            match made {
                Ok(()) => {}
                Err(rustix::io::Errno::PERM) if !rustix::process::geteuid().is_root() => {
                    self.copied.skipped.insert(relative.to_path_buf());
                    return Ok(());
                }
                Err(errno) => return Err(errno.into()),
            }
        }
        copy_metadata(top, metadata, target)
    }
}

/// Writes the changes of the root copy `root` against the merged view of
/// `lowers` into the empty folder `upper`, in overlay upper-folder form.
/// Changed and added files are hard links to the copy's files.
///
/// # Errors
///
/// The I/O error, naming the path.
pub(crate) fn write_diff(
    lowers: &[PathBuf],
    root: &Path,
    copied: &CopiedRoot,
    upper: &Path,
) -> io::Result<()> {
    let mut differ = Differ {
        root,
        upper,
        copied,
        created: Vec::new(),
        rootless: !rustix::process::geteuid().is_root(),
    };
    differ.diff_dir(lowers, Path::new(""))?;
    // Directory mtimes last, deepest first, because creating an entry
    // changes its parent's mtime.
    for relative in differ.created.iter().rev() {
        let source = root.join(relative);
        let metadata = fs::symlink_metadata(&source)?;
        rustix::fs::utimensat(
            rustix::fs::CWD,
            upper.join(relative),
            &timestamps(&metadata),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io::Error::from)?;
    }
    Ok(())
}

struct Differ<'a> {
    root: &'a Path,
    upper: &'a Path,
    copied: &'a CopiedRoot,
    /// Directories created in `upper`, relative, in creation order.
    created: Vec<PathBuf>,
    /// Without root the copy could not keep owners, so owners are not
    /// compared.
    rootless: bool,
}

impl Differ<'_> {
    fn diff_dir(&mut self, sources: &[PathBuf], relative: &Path) -> io::Result<()> {
        let merged = merge_dir(sources).map_err(with_path(&self.root.join(relative)))?;
        let dir = self.root.join(relative);
        let mut names: Vec<OsString> = fs::read_dir(&dir)
            .map_err(with_path(&dir))?
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();

        for (name, _) in merged.iter() {
            let path = relative.join(name);
            if names.binary_search(name).is_err() && !self.copied.skipped.contains(&path) {
                self.ensure_parent(relative)?;
                let whiteout = self.upper.join(&path);
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &whiteout,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(|errno| {
                    io::Error::new(
                        io::Error::from(errno).kind(),
                        format!(
                            "{}: cannot create a whiteout (a character device 0:0): {errno}; \
                             put the store on a file system that allows it, such as ext4, \
                             xfs, btrfs or tmpfs",
                            whiteout.display()
                        ),
                    )
                })?;
            }
        }

        for name in names {
            let path = relative.join(&name);
            let current_path = self.root.join(&path);
            let current = fs::symlink_metadata(&current_path).map_err(with_path(&current_path))?;
            let Some(entry_sources) = merged.get(&name) else {
                self.add_tree(&path, &current)?;
                continue;
            };
            let Some(top) = entry_sources.first() else {
                continue;
            };
            let lower = fs::symlink_metadata(top).map_err(with_path(top))?;
            if current.is_dir() && lower.is_dir() {
                let copied = self.copied.directories.get(&path);
                if copied != Some(&(current.dev(), current.ino())) {
                    // Deleted and created again: the lower content is hidden.
                    self.add_tree(&path, &current)?;
                    self.set_opaque(&path)?;
                    continue;
                }
                if self.changed(top, &lower, &current_path, &current)? {
                    self.ensure_dir(&path)?;
                }
                self.diff_dir(entry_sources, &path)?;
            } else if self.changed(top, &lower, &current_path, &current)? {
                self.add_tree(&path, &current)?;
            }
        }
        Ok(())
    }

    /// Returns whether the entry differs from its lower version.
    fn changed(
        &self,
        lower_path: &Path,
        lower: &Metadata,
        current_path: &Path,
        current: &Metadata,
    ) -> io::Result<bool> {
        let same_type = lower.file_type() == current.file_type();
        let same_owner =
            self.rootless || (lower.uid() == current.uid() && lower.gid() == current.gid());
        let same_basics = same_type
            && same_owner
            && lower.mode() & 0o7777 == current.mode() & 0o7777
            && lower.mtime() == current.mtime()
            && lower.mtime_nsec() == current.mtime_nsec()
            && (lower.is_dir() || lower.len() == current.len())
            && lower.rdev() == current.rdev();
        if !same_basics {
            return Ok(true);
        }
        if lower.file_type().is_symlink() {
            return Ok(fs::read_link(lower_path)? != fs::read_link(current_path)?);
        }
        Ok(xattrs(lower_path)? != xattrs(current_path)?)
    }

    /// Creates `upper/relative`'s parent folders as copies of the root
    /// copy's.
    fn ensure_parent(&mut self, relative: &Path) -> io::Result<()> {
        if relative.as_os_str().is_empty() {
            return Ok(());
        }
        self.ensure_dir(relative)
    }

    /// Creates the directory `relative` in `upper`, and its parents, with
    /// the metadata of the root copy's directory.
    fn ensure_dir(&mut self, relative: &Path) -> io::Result<()> {
        let target = self.upper.join(relative);
        if fs::symlink_metadata(&target).is_ok() {
            return Ok(());
        }
        if let Some(parent) = relative.parent() {
            self.ensure_parent(parent)?;
        }
        let source = self.root.join(relative);
        let metadata = fs::symlink_metadata(&source).map_err(with_path(&source))?;
        fs::create_dir(&target).map_err(with_path(&target))?;
        copy_metadata(&source, &metadata, &target).map_err(with_path(&target))?;
        self.created.push(relative.to_path_buf());
        Ok(())
    }

    /// Puts the entry `relative` of the root copy, and everything below it,
    /// into `upper`.
    fn add_tree(&mut self, relative: &Path, metadata: &Metadata) -> io::Result<()> {
        if let Some(parent) = relative.parent() {
            self.ensure_parent(parent)?;
        }
        let source = self.root.join(relative);
        let target = self.upper.join(relative);
        if metadata.is_dir() {
            self.ensure_dir(relative)?;
            let mut names: Vec<OsString> = fs::read_dir(&source)
                .map_err(with_path(&source))?
                .map(|entry| entry.map(|entry| entry.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            for name in names {
                let child = relative.join(&name);
                let child_path = self.root.join(&child);
                let child_metadata =
                    fs::symlink_metadata(&child_path).map_err(with_path(&child_path))?;
                self.add_tree(&child, &child_metadata)?;
            }
            return Ok(());
        }
        if metadata.file_type().is_socket() {
            return Ok(());
        }
        // A hard link shares the copy's inode, so links between files that
        // the step wrote stay links in the layer.
        fs::hard_link(&source, &target).map_err(with_path(&target))
    }

    fn set_opaque(&self, relative: &Path) -> io::Result<()> {
        let target = self.upper.join(relative);
        let name = if self.rootless {
            "user.overlay.opaque"
        } else {
            "trusted.overlay.opaque"
        };
        rustix::fs::lsetxattr(&target, name, b"y", rustix::fs::XattrFlags::empty())
            .map_err(|errno| with_path(&target)(errno.into()))
    }
}
