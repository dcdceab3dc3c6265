//! Extended attributes of copied entries: read from the source tree and set
//! on the written entry.
//!
//! overlayfs' own attributes (`trusted.overlay.*`, `user.overlay.*`) mark
//! whiteouts and opaque directories of a layer folder, not properties of a
//! file, so they are neither read nor written.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

/// Extended attributes as name and value bytes, sorted by name.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Checks whether an attribute belongs to overlayfs itself.
pub(super) fn is_overlay(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Reads the extended attributes of `path` without following a final
/// symlink, overlayfs' own left out.
///
/// A file system without extended attributes yields an empty list. The
/// kernel lists `trusted.*` names only to a process with `CAP_SYS_ADMIN`, so
/// without it they are not copied.
///
/// # Errors
///
/// The I/O error of `llistxattr` or `lgetxattr`.
pub(crate) fn read(path: &Path) -> io::Result<Xattrs> {
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
    for name in names.split(|byte| *byte == 0) {
        if name.is_empty() || is_overlay(name) {
            continue;
        }
        if let Some(value) = read_value(path, name)? {
            xattrs.push((name.to_vec(), value));
        }
    }
    xattrs.sort();
    Ok(xattrs)
}

/// Reads one value, or `None` when the attribute went away after listing.
fn read_value(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let name = OsStr::from_bytes(name);
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

/// Sets each attribute on `path` without following a final symlink.
///
/// As BuildKit does, an attribute that this process may not set or that the
/// file system does not support is skipped with a debug log. Examples are
/// `security.capability` without `CAP_SETFCAP`, `trusted.*` without
/// `CAP_SYS_ADMIN`, and `user.*` on a symlink, which Linux rejects.
///
/// # Errors
///
/// Any other I/O error of `lsetxattr`.
pub(crate) fn write(path: &Path, xattrs: &Xattrs) -> io::Result<()> {
    for (name, value) in xattrs {
        let key = OsStr::from_bytes(name);
        match rustix::fs::lsetxattr(path, key, value, XattrFlags::empty()) {
            Ok(()) => {}
            Err(errno @ (Errno::PERM | Errno::ACCESS | Errno::NOTSUP)) => {
                tracing::debug!(
                    path = %path.display(),
                    xattr = %String::from_utf8_lossy(name),
                    error = %errno,
                    "skipping an extended attribute that cannot be set here"
                );
            }
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_names_recognised() {
        assert!(is_overlay(b"trusted.overlay.opaque"));
        assert!(is_overlay(b"user.overlay.whiteout"));
        assert!(!is_overlay(b"security.capability"));
        assert!(!is_overlay(b"user.overlayish"));
    }

    #[test]
    fn read_skips_overlay_names() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let set = |name: &str, value: &[u8]| {
            rustix::fs::lsetxattr(&file, name, value, XattrFlags::empty())
        };
        if set("user.keep", b"\x00\x01").is_err() {
            // The temporary file system has no user xattrs.
            return;
        }
        set("user.overlay.opaque", b"y").unwrap();
        let xattrs = read(&file).unwrap();
        assert_eq!(xattrs, vec![(b"user.keep".to_vec(), b"\x00\x01".to_vec())]);
    }
}
