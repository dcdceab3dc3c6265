//! Component-by-component path resolution with symlinks kept inside a tree.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;

/// Symlinks followed in one resolution before it fails, as Linux's
/// `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// A file tree that [`resolve`] walks: an image or a build context.
///
/// Both are resolved as a chroot would: an absolute symlink target starts
/// again at the tree root and `..` at the root stays there, as BuildKit
/// resolves COPY sources and destinations. So no path leaves the tree.
pub(crate) trait Tree {
    /// Returns the host path and metadata of the entry named by
    /// `components`, whose parents are already resolved, without following
    /// a final symlink. `None` when it does not exist.
    fn lookup(&self, components: &[String]) -> io::Result<Option<(PathBuf, std::fs::Metadata)>>;
}

/// The result of [`resolve`].
#[derive(Debug)]
pub(crate) enum Resolved {
    /// The path exists.
    Found {
        /// The canonical components below the tree root.
        components: Vec<String>,
        /// The entry's host path.
        host: PathBuf,
        /// The entry's metadata (of the symlink itself when the last
        /// component was not followed).
        metadata: std::fs::Metadata,
    },
    /// The path does not exist.
    Missing {
        /// The resolved existing part followed by the missing rest.
        components: Vec<String>,
    },
}

/// A failure to resolve a path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    /// A layer or context folder could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The path being resolved.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A symlink on the way has a target that is not UTF-8.
    #[error(
        "the symlink `{link}` on the way to `{path}` has a target that is not UTF-8; point it at a UTF-8 path"
    )]
    NotUtf8 {
        /// The path being resolved.
        path: String,
        /// The symlink, as a path below the tree root.
        link: String,
    },
    /// More than 40 symlinks were followed.
    #[error("too many levels of symlinks while resolving `{path}`")]
    Loop {
        /// The path being resolved.
        path: String,
    },
}

impl ResolveError {
    /// Turns the error into an I/O error for APIs that return one.
    pub(crate) fn into_io(self) -> io::Error {
        match self {
            ResolveError::Io { source, .. } => source,
            ResolveError::Loop { .. } => {
                io::Error::from_raw_os_error(rustix::io::Errno::LOOP.raw_os_error())
            }
            other => io::Error::other(other.to_string()),
        }
    }
}

/// Splits a `/`-separated path into its components, dropping empty ones
/// and `.`. `..` is kept for the resolver.
pub(crate) fn split_components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|component| !component.is_empty() && *component != ".")
        .map(str::to_string)
        .collect()
}

/// Resolves `path` (relative to the tree root; a leading `/` is ignored)
/// one component at a time. Symlinks before the last component are always
/// followed, the last one only when `follow_last` is set, and both stay
/// inside the tree: see [`Tree`].
pub(crate) fn resolve<T: Tree + ?Sized>(
    tree: &T,
    path: &str,
    follow_last: bool,
) -> Result<Resolved, ResolveError> {
    let io_error = |source| ResolveError::Io {
        path: path.to_string(),
        source,
    };
    let mut pending: VecDeque<String> = split_components(path).into();
    let mut done: Vec<String> = Vec::new();
    let mut followed = 0;

    while let Some(component) = pending.pop_front() {
        if component == ".." {
            // `..` at the root stays at the root.
            done.pop();
            continue;
        }
        done.push(component);

        let Some((host, metadata)) = tree.lookup(&done).map_err(io_error)? else {
            return Ok(finish_missing(done, pending));
        };
        let more = !pending.is_empty();
        if metadata.file_type().is_symlink() && (more || follow_last) {
            followed += 1;
            if followed > MAX_SYMLINKS {
                return Err(ResolveError::Loop {
                    path: path.to_string(),
                });
            }
            let target = std::fs::read_link(&host).map_err(io_error)?;
            let Some(target) = target.to_str() else {
                return Err(ResolveError::NotUtf8 {
                    path: path.to_string(),
                    link: super::join_absolute(&done),
                });
            };
            done.pop();
            if target.starts_with('/') {
                done.clear();
            }
            for component in split_components(target).into_iter().rev() {
                pending.push_front(component);
            }
            continue;
        }
        if !pending.is_empty() && !metadata.is_dir() {
            return Ok(finish_missing(done, pending));
        }
    }

    match tree.lookup(&done).map_err(io_error)? {
        Some((host, metadata)) => Ok(Resolved::Found {
            components: done,
            host,
            metadata,
        }),
        None => Ok(Resolved::Missing { components: done }),
    }
}

/// Appends the unresolved rest of a path lexically once a component is
/// missing; `..` at the root stays at the root.
fn finish_missing(mut done: Vec<String>, pending: VecDeque<String>) -> Resolved {
    for component in pending {
        if component == ".." {
            done.pop();
        } else {
            done.push(component);
        }
    }
    Resolved::Missing { components: done }
}
