//! Read-only lookups in an image given as unpacked layer folders, top first,
//! with overlayfs rules: a character device 0:0 hides a path (whiteout) and
//! a folder with `trusted.overlay.opaque=y` or `user.overlay.opaque=y` hides
//! the folders of the same path in lower layers.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Maximum number of symlinks followed while resolving one path, as Linux
/// allows (`MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// The merged, read-only view of an image's layers.
pub(crate) struct ImageView<'a> {
    layers: &'a [PathBuf],
}

fn is_whiteout(metadata: &Metadata) -> bool {
    metadata.file_type().is_char_device() && metadata.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut value = [0u8; 4];
            matches!(rustix::fs::lgetxattr(path, *name, &mut value), Ok(1) if value[0] == b'y')
        })
}

fn lstat_if_present(path: &Path) -> io::Result<Option<Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) => Ok(Some(metadata)),
        Err(error) if matches!(error.kind(), io::ErrorKind::NotFound) => Ok(None),
        Err(error) if error.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Splits an image path into its normal components.
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

impl<'a> ImageView<'a> {
    /// A view of `layers`, top first.
    pub(crate) fn new(layers: &'a [PathBuf]) -> Self {
        Self { layers }
    }

    /// Returns the host path and metadata of `path` (absolute, without
    /// symlinks or `..`), not following a symlink in the last component.
    pub(crate) fn lstat(&self, path: &str) -> io::Result<Option<(PathBuf, Metadata)>> {
        let parts = components(path);
        if parts.is_empty() {
            return match self.layers.first() {
                Some(top) => Ok(Some((top.clone(), std::fs::symlink_metadata(top)?))),
                None => Ok(None),
            };
        }
        for layer in self.layers {
            let mut host = layer.clone();
            let mut hides_lower = false;
            for (depth, part) in parts.iter().enumerate() {
                host.push(part);
                let Some(metadata) = lstat_if_present(&host)? else {
                    break;
                };
                if is_whiteout(&metadata) {
                    return Ok(None);
                }
                if depth + 1 == parts.len() {
                    return Ok(Some((host, metadata)));
                }
                if !metadata.is_dir() {
                    return Ok(None);
                }
                if is_opaque(&host) {
                    hides_lower = true;
                }
            }
            if hides_lower {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Resolves `path` inside the image: symlinks (also in the last
    /// component) and `..` never leave the image root. Components that do
    /// not exist are kept as written.
    pub(crate) fn resolve(&self, path: &str) -> io::Result<String> {
        let mut pending: Vec<String> = components(path)
            .iter()
            .rev()
            .map(|c| c.to_string())
            .collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut followed = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                resolved.pop();
                continue;
            }
            resolved.push(part);
            let current = format!("/{}", resolved.join("/"));
            let Some((host, metadata)) = self.lstat(&current)? else {
                continue;
            };
            if !metadata.file_type().is_symlink() {
                continue;
            }
            followed += 1;
            if followed > MAX_SYMLINKS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("too many levels of symbolic links in `{path}`"),
                ));
            }
            let target = std::fs::read_link(&host)?;
            let target = target.to_string_lossy();
            resolved.pop();
            if target.starts_with('/') {
                resolved.clear();
            }
            pending.extend(components(&target).iter().rev().map(|c| c.to_string()));
        }
        Ok(format!("/{}", resolved.join("/")))
    }

    /// Returns the content of the file at `path` (symlinks resolved), or
    /// `None` when it is missing or not a regular file.
    pub(crate) fn read_file(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        let resolved = self.resolve(path)?;
        match self.lstat(&resolved)? {
            Some((host, metadata)) if metadata.is_file() => std::fs::read(host).map(Some),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn layers(count: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..count)
            .map(|i| dir.path().join(format!("l{i}")))
            .collect();
        for path in &paths {
            std::fs::create_dir(path).unwrap();
        }
        (dir, paths)
    }

    #[test]
    fn lstat_prefers_top_layer() {
        let (_dir, paths) = layers(2);
        std::fs::create_dir(paths[0].join("etc")).unwrap();
        std::fs::create_dir(paths[1].join("etc")).unwrap();
        std::fs::write(paths[0].join("etc/passwd"), "top").unwrap();
        std::fs::write(paths[1].join("etc/passwd"), "bottom").unwrap();
        std::fs::write(paths[1].join("etc/group"), "g").unwrap();
        let view = ImageView::new(&paths);
        let (host, _) = view.lstat("/etc/passwd").unwrap().unwrap();
        assert_eq!(host, paths[0].join("etc/passwd"));
        let (host, _) = view.lstat("/etc/group").unwrap().unwrap();
        assert_eq!(host, paths[1].join("etc/group"));
        assert!(view.lstat("/etc/missing").unwrap().is_none());
    }

    #[test]
    fn resolve_keeps_symlinks_inside() {
        let (_dir, paths) = layers(1);
        std::fs::create_dir_all(paths[0].join("run")).unwrap();
        symlink("../../../run", paths[0].join("varrun")).unwrap();
        symlink("/etc", paths[0].join("etclink")).unwrap();
        let view = ImageView::new(&paths);
        assert_eq!(view.resolve("/varrun/x").unwrap(), "/run/x");
        assert_eq!(view.resolve("/etclink/hosts").unwrap(), "/etc/hosts");
        assert_eq!(view.resolve("/a/../b/./c").unwrap(), "/b/c");
    }

    #[test]
    fn resolve_stops_symlink_loops() {
        let (_dir, paths) = layers(1);
        symlink("/loop", paths[0].join("loop")).unwrap();
        let view = ImageView::new(&paths);
        assert!(view.resolve("/loop").is_err());
    }
}
