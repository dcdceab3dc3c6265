//! File system helpers shared by the layer writer and the extractor: xattrs,
//! and recursive removal that never follows a symlink.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Dir, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

/// Returns whether an xattr belongs to overlayfs itself: whiteout, opaque, redirect
/// and similar markers that describe an overlay's layers, not a file.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Reads every xattr of `path` without following a final symlink, sorted by name.
///
/// A file system without xattr support yields an empty list. Without
/// `CAP_SYS_ADMIN` the kernel hides `trusted.*` names, so they are not read.
pub(crate) fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = loop {
        let size = match rustix::fs::llistxattr_query(path) {
            Ok(size) => size,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(errno) => return Err(errno.into()),
        };
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buffer = vec![0u8; size];
        match rustix::fs::llistxattr(path, &mut buffer[..]) {
            Ok(length) => {
                buffer.truncate(length);
                break buffer;
            }
            // The list grew between the two calls.
            Err(Errno::RANGE) => continue,
            Err(errno) => return Err(errno.into()),
        }
    };

    let mut xattrs = Vec::new();
    for name in names
        .split(|byte| *byte == 0)
        .filter(|name| !name.is_empty())
    {
        match read_xattr(path, name)? {
            Some(value) => xattrs.push((name.to_vec(), value)),
            None => continue,
        }
    }
    xattrs.sort();
    Ok(xattrs)
}

/// Reads one xattr value, or `None` when it disappeared since it was listed.
fn read_xattr(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::OsStr::from_bytes(name);
    loop {
        let size = match rustix::fs::lgetxattr_query(path, name) {
            Ok(size) => size,
            Err(Errno::NODATA) => return Ok(None),
            Err(errno) => return Err(errno.into()),
        };
        let mut value = vec![0u8; size];
        match rustix::fs::lgetxattr(path, name, &mut value[..]) {
            Ok(length) => {
                value.truncate(length);
                return Ok(Some(value));
            }
            Err(Errno::RANGE) => continue,
            Err(Errno::NODATA) => return Ok(None),
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Returns the value of the first of `names` that `path` carries.
pub(crate) fn find_xattr<'a>(
    xattrs: &'a [(Vec<u8>, Vec<u8>)],
    names: &[&[u8]],
) -> Option<(&'a [u8], &'a [u8])> {
    xattrs
        .iter()
        .find(|(name, _)| names.contains(&name.as_slice()))
        .map(|(name, value)| (name.as_slice(), value.as_slice()))
}

/// Sets an xattr on `name` inside the directory `parent` without following
/// `name` if it is a symlink.
///
/// Goes through the `/proc/self/fd` link of `parent`, because the kernel has
/// no `*at` call for xattrs and a symlink or device cannot be opened for it.
pub(crate) fn set_xattr_at(
    parent: &OwnedFd,
    name: &[u8],
    key: &[u8],
    value: &[u8],
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;

    let mut path = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    let path = std::ffi::OsStr::from_bytes(&path);
    let key = std::ffi::OsStr::from_bytes(key);
    rustix::fs::lsetxattr(path, key, value, XattrFlags::empty()).map_err(io::Error::from)
}

/// Sets an xattr on an open file or directory.
pub(crate) fn set_xattr_fd(fd: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;

    let key = std::ffi::OsStr::from_bytes(key);
    rustix::fs::fsetxattr(fd, key, value, XattrFlags::empty()).map_err(io::Error::from)
}

/// Removes `name` in the directory `parent` with everything below it.
///
/// Symlinks are removed, never followed, and each directory is opened
/// relative to its parent's descriptor, so a concurrent rename cannot
/// redirect the removal outside the tree. A missing `name` is not an error.
pub(crate) fn remove_all_at(parent: &impl AsFd, name: &[u8]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let name_os = std::ffi::OsStr::from_bytes(name);

    match rustix::fs::unlinkat(parent, name_os, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        // Linux reports EISDIR for a directory; POSIX allows EPERM.
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(errno) => return Err(errno.into()),
    }

    let directory = match rustix::fs::openat(
        parent,
        name_os,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(errno) => return Err(errno.into()),
    };
    remove_children(&directory, |_| false)?;
    match rustix::fs::unlinkat(parent, name_os, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// Removes every child of the open directory `directory` for which `keep`
/// returns false.
pub(crate) fn remove_children(
    directory: &OwnedFd,
    mut keep: impl FnMut(&[u8]) -> bool,
) -> io::Result<()> {
    let mut names = Vec::new();
    let mut reader = Dir::read_from(directory)?;
    while let Some(entry) = reader.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push(name.to_vec());
    }
    for name in names {
        if !keep(&name) {
            remove_all_at(directory, &name)?;
        }
    }
    Ok(())
}
