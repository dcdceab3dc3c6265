//! A read-only merged view of an image's unpacked layer folders, and the
//! path resolver that COPY uses for both images and build contexts.
//!
//! Paths in an image or a build context are resolved as if its root were
//! `/`. An absolute symlink target starts again at that root, and `..` at the
//! root stays there. So no lookup reaches a host path outside the layer
//! folders or the context folder.

mod resolve;

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub(crate) use resolve::{ResolveError, Resolved, Tree, resolve, split_components};

/// The xattrs that mark an opaque directory in an unpacked layer.
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// A read-only view of an image's file system: unpacked layer folders stacked
/// as overlayfs does (top first). In those folders a deleted path is a
/// character device 0:0 and an opaque directory carries the xattr
/// `trusted.overlay.opaque=y` (or `user.overlay.opaque=y`).
#[derive(Debug, Clone, Default)]
pub struct RootView {
    /// Unpacked layer folders, the top layer first.
    layers: Vec<PathBuf>,
}

/// The entry one layer has at a path.
enum Probe {
    /// The layer has an entry there (possibly a whiteout).
    Found(PathBuf, std::fs::Metadata),
    /// The layer has no entry for the path, so lower layers decide.
    Absent,
    /// The layer hides the path of every lower layer: a whiteout, a
    /// non-directory or an opaque directory sits on the way.
    Hidden,
}

impl RootView {
    /// Creates a view over unpacked layer folders, the top layer first.
    pub fn new(layers_top_first: Vec<PathBuf>) -> RootView {
        RootView {
            layers: layers_top_first,
        }
    }

    /// Creates the view of an empty image (`FROM scratch`): every lookup
    /// finds nothing.
    pub fn empty() -> RootView {
        RootView { layers: Vec::new() }
    }

    /// Returns the layer folders, the top layer first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// Returns the host path and metadata of `path` (absolute in the image),
    /// following no symlink in the last component. Intermediate symlinks are
    /// resolved inside the image root. `None` when the path does not exist
    /// or a whiteout hides it.
    ///
    /// # Errors
    ///
    /// An I/O error from a layer folder, or `ELOOP` for more than 40
    /// symlinks on the way.
    pub fn lstat(&self, path: &str) -> io::Result<Option<(PathBuf, std::fs::Metadata)>> {
        match resolve(self, path, false).map_err(ResolveError::into_io)? {
            Resolved::Found { host, metadata, .. } => Ok(Some((host, metadata))),
            Resolved::Missing { .. } => Ok(None),
        }
    }

    /// Returns the canonical image path of `path`: every symlink, including
    /// the last component's, resolved inside the image root. A missing tail
    /// is appended as written (cleaned of `.` and `..`).
    ///
    /// # Errors
    ///
    /// As [`RootView::lstat`].
    pub fn canonical_path(&self, path: &str) -> io::Result<String> {
        let components = match resolve(self, path, true).map_err(ResolveError::into_io)? {
            Resolved::Found { components, .. } | Resolved::Missing { components } => components,
        };
        Ok(join_absolute(&components))
    }

    /// Reads a regular file of the image, following symlinks inside the
    /// image root. `None` when it does not exist.
    ///
    /// # Errors
    ///
    /// An I/O error, or `EISDIR`-like errors from reading a directory.
    pub fn read_file(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match resolve(self, path, true).map_err(ResolveError::into_io)? {
            Resolved::Found { host, metadata, .. } if metadata.is_file() => {
                std::fs::read(host).map(Some)
            }
            Resolved::Found { .. } => Err(io::Error::other(format!(
                "`{path}` in the image is not a regular file"
            ))),
            Resolved::Missing { .. } => Ok(None),
        }
    }

    /// Returns the host folders of the directory `path` in every layer that
    /// shows part of it, the top layer first. The list ends at the first
    /// layer that hides lower content with an opaque directory, a whiteout
    /// or a non-directory on the way. Symlinks on the way, including the
    /// last one, are followed inside the image root. `None` when `path` is
    /// missing or not a directory.
    ///
    /// # Errors
    ///
    /// An I/O error from a layer folder.
    pub fn directory_layers(&self, path: &str) -> io::Result<Option<Vec<PathBuf>>> {
        let components = match resolve(self, path, true).map_err(ResolveError::into_io)? {
            Resolved::Found {
                components,
                metadata,
                ..
            } if metadata.is_dir() => components,
            _ => return Ok(None),
        };
        let mut folders = Vec::new();
        for layer in &self.layers {
            let directory = match probe(layer, &components)? {
                Probe::Absent => continue,
                Probe::Hidden => break,
                Probe::Found(host, metadata) if metadata.is_dir() => host,
                Probe::Found(..) => break,
            };
            let opaque = is_opaque(&directory);
            folders.push(directory);
            if opaque {
                break;
            }
        }
        Ok(Some(folders))
    }

    /// Lists a directory of the image, merged over all layers and sorted by
    /// name. Symlinks on the way, including the last one, are followed
    /// inside the image root. A missing directory lists as empty.
    ///
    /// # Errors
    ///
    /// An I/O error from a layer folder, or `ENOTDIR` when `path` is not a
    /// directory.
    pub fn read_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let components = match resolve(self, path, true).map_err(ResolveError::into_io)? {
            Resolved::Found {
                components,
                metadata,
                ..
            } => {
                if !metadata.is_dir() {
                    return Err(io::Error::from_raw_os_error(
                        rustix::io::Errno::NOTDIR.raw_os_error(),
                    ));
                }
                components
            }
            Resolved::Missing { .. } => return Ok(Vec::new()),
        };

        let mut seen = HashSet::new();
        let mut names = Vec::new();
        for layer in &self.layers {
            let directory = match probe(layer, &components)? {
                Probe::Absent => continue,
                Probe::Hidden => break,
                Probe::Found(host, metadata) if metadata.is_dir() => host,
                Probe::Found(..) => break,
            };
            for entry in std::fs::read_dir(&directory)? {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    // NOTE: names that are not UTF-8 are left out of the view.
                    continue;
                };
                if !seen.insert(name.clone()) {
                    continue;
                }
                if !is_whiteout(&entry.metadata()?) {
                    names.push(name);
                }
            }
            if is_opaque(&directory) {
                break;
            }
        }
        names.sort();
        Ok(names)
    }
}

impl Tree for RootView {
    fn lookup(&self, components: &[String]) -> io::Result<Option<(PathBuf, std::fs::Metadata)>> {
        for layer in &self.layers {
            match probe(layer, components)? {
                Probe::Absent => continue,
                Probe::Hidden => return Ok(None),
                Probe::Found(_, metadata) if is_whiteout(&metadata) => return Ok(None),
                Probe::Found(host, metadata) => return Ok(Some((host, metadata))),
            }
        }
        Ok(None)
    }
}

/// Looks `components` up in one layer folder.
fn probe(layer: &Path, components: &[String]) -> io::Result<Probe> {
    let mut host = layer.to_path_buf();
    if components.is_empty() {
        return match std::fs::symlink_metadata(&host) {
            Ok(metadata) => Ok(Probe::Found(host, metadata)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Probe::Absent),
            Err(error) => Err(error),
        };
    }

    let mut under_opaque = false;
    for (index, component) in components.iter().enumerate() {
        if index > 0 && is_opaque(&host) {
            under_opaque = true;
        }
        host.push(component);
        let metadata = match std::fs::symlink_metadata(&host) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok(if under_opaque {
                    Probe::Hidden
                } else {
                    Probe::Absent
                });
            }
            Err(error) => return Err(error),
        };
        let last = index + 1 == components.len();
        if last {
            return Ok(Probe::Found(host, metadata));
        }
        if is_whiteout(&metadata) || !metadata.is_dir() {
            return Ok(Probe::Hidden);
        }
    }
    Ok(Probe::Absent)
}

/// Checks whether an entry of an unpacked layer marks a deleted path: a character
/// device with device number 0:0.
pub(crate) fn is_whiteout(metadata: &std::fs::Metadata) -> bool {
    metadata.file_type().is_char_device() && metadata.rdev() == 0
}

/// Checks whether a directory of an unpacked layer is opaque, hiding the content
/// of the same directory in lower layers.
fn is_opaque(directory: &Path) -> bool {
    OPAQUE_XATTRS.iter().any(|name| {
        let mut value = [0u8; 4];
        matches!(
            rustix::fs::lgetxattr(directory, *name, &mut value[..]),
            Ok(1) if value[0] == b'y'
        )
    })
}

/// Joins components into an absolute image path.
pub(crate) fn join_absolute(components: &[String]) -> String {
    if components.is_empty() {
        return "/".to_string();
    }
    let mut path = String::new();
    for component in components {
        path.push('/');
        path.push_str(component);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(root: &Path, name: &str) -> PathBuf {
        let path = root.join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    #[test]
    fn lstat_prefers_top_layer() {
        let temp = tempfile::tempdir().unwrap();
        let lower = layer(temp.path(), "lower");
        let upper = layer(temp.path(), "upper");
        std::fs::create_dir(lower.join("etc")).unwrap();
        std::fs::write(lower.join("etc/hostname"), "lower").unwrap();
        std::fs::create_dir(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/hostname"), "upper").unwrap();
        let view = RootView::new(vec![upper, lower]);

        let content = view.read_file("/etc/hostname").unwrap();
        assert_eq!(content.as_deref(), Some(&b"upper"[..]));
    }

    #[test]
    fn empty_view_finds_nothing() {
        let view = RootView::empty();
        assert!(view.lstat("/etc/passwd").unwrap().is_none());
        assert!(view.read_dir("/").unwrap().is_empty());
    }

    #[test]
    fn absolute_symlink_stays_in_root() {
        let temp = tempfile::tempdir().unwrap();
        let base = layer(temp.path(), "base");
        std::fs::create_dir_all(base.join("opt/data")).unwrap();
        std::fs::write(base.join("opt/data/file"), "inside").unwrap();
        std::os::unix::fs::symlink("/opt/data", base.join("link")).unwrap();
        std::os::unix::fs::symlink("../../../../opt", base.join("up")).unwrap();
        let view = RootView::new(vec![base]);

        let through_link = view.read_file("/link/file").unwrap();
        assert_eq!(through_link.as_deref(), Some(&b"inside"[..]));
        let through_dotdot = view.read_file("/up/data/file").unwrap();
        assert_eq!(through_dotdot.as_deref(), Some(&b"inside"[..]));
        let (host, metadata) = view.lstat("/link").unwrap().unwrap();
        assert!(metadata.file_type().is_symlink());
        assert!(host.ends_with("link"));
        assert_eq!(view.canonical_path("/link/new").unwrap(), "/opt/data/new");
    }

    #[test]
    fn non_utf8_link_target_named() {
        use std::os::unix::ffi::OsStrExt;
        let temp = tempfile::tempdir().unwrap();
        let base = layer(temp.path(), "base");
        let target = std::ffi::OsStr::from_bytes(b"/bad\xff");
        std::os::unix::fs::symlink(target, base.join("link")).unwrap();
        let view = RootView::new(vec![base]);
        let error = view.canonical_path("/link/x").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`/link`"), "{message}");
        assert!(message.contains("not UTF-8"), "{message}");
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let temp = tempfile::tempdir().unwrap();
        let base = layer(temp.path(), "base");
        std::os::unix::fs::symlink("/b", base.join("a")).unwrap();
        std::os::unix::fs::symlink("/a", base.join("b")).unwrap();
        let view = RootView::new(vec![base]);
        assert!(view.read_file("/a").is_err());
    }

    #[test]
    fn read_dir_merges_layers() {
        let temp = tempfile::tempdir().unwrap();
        let lower = layer(temp.path(), "lower");
        let upper = layer(temp.path(), "upper");
        std::fs::create_dir(lower.join("d")).unwrap();
        std::fs::write(lower.join("d/a"), "").unwrap();
        std::fs::write(lower.join("d/b"), "").unwrap();
        std::fs::create_dir(upper.join("d")).unwrap();
        std::fs::write(upper.join("d/c"), "").unwrap();
        let view = RootView::new(vec![upper, lower]);
        assert_eq!(view.read_dir("/d").unwrap(), vec!["a", "b", "c"]);
    }

    #[test]
    fn file_in_upper_hides_lower_directory() {
        let temp = tempfile::tempdir().unwrap();
        let lower = layer(temp.path(), "lower");
        let upper = layer(temp.path(), "upper");
        std::fs::create_dir(lower.join("d")).unwrap();
        std::fs::write(lower.join("d/a"), "").unwrap();
        std::fs::write(upper.join("d"), "now a file").unwrap();
        let view = RootView::new(vec![upper, lower]);
        assert!(view.lstat("/d/a").unwrap().is_none());
        let (_, metadata) = view.lstat("/d").unwrap().unwrap();
        assert!(metadata.is_file());
    }
}
