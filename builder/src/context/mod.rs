//! The build context: a folder, the `.dockerignore` matcher that filters
//! it, and a cache of content hashes reused across builds.
//!
//! Nothing here walks the whole context: COPY and ADD look up only the
//! paths they name (see `crate::copy`).

pub(crate) mod hashcache;

use std::io;
use std::path::{Path, PathBuf};

use forge_parser::dockerignore::{IgnoreError, Matcher};

use crate::rootfs::Tree;

pub use hashcache::HashCache;

/// Errors from opening a build context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context folder is missing or unreadable.
    #[error(
        "cannot open the build context `{path}`: {source}; pass an existing folder as the context"
    )]
    Root {
        /// The context folder as given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The context path is not a folder.
    #[error(
        "the build context `{path}` is not a folder; pass the folder that holds the files to copy"
    )]
    NotADirectory {
        /// The context path as given.
        path: PathBuf,
    },
    /// The ignore file exists but cannot be read.
    #[error("cannot read the ignore file `{path}`: {source}")]
    ReadIgnore {
        /// The ignore file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The ignore file has an invalid pattern.
    #[error("invalid ignore file `{path}`: {source}")]
    IgnorePattern {
        /// The ignore file.
        path: PathBuf,
        /// The pattern error with its line.
        #[source]
        source: IgnoreError,
    },
}

/// The source of the files in a context folder. Error messages name a
/// context read from standard input by its source, not by its work folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContextOrigin {
    /// A folder given by the caller.
    #[default]
    Folder,
    /// A tar archive read from standard input and unpacked into the folder.
    StdinArchive,
    /// A Dockerfile read from standard input, which is the only file of the
    /// context.
    StdinDockerfile,
}

/// A build context folder with its `.dockerignore` matcher.
///
/// The matcher comes from `<Dockerfile>.dockerignore` next to the
/// Dockerfile when that file exists, otherwise from `.dockerignore` at the
/// context root, otherwise it excludes nothing. The Dockerfile and the
/// ignore file may themselves be excluded: only COPY and ADD consult the
/// matcher.
#[derive(Debug)]
pub struct Context {
    /// The canonical context folder.
    root: PathBuf,
    matcher: Matcher,
    /// The ignore file in use, if any.
    ignore_file: Option<PathBuf>,
    origin: ContextOrigin,
}

impl Context {
    /// Opens a build context. `dockerfile` is the Dockerfile path relative to
    /// the root when it is inside the context, so `<Dockerfile>.dockerignore`
    /// can be preferred over `.dockerignore`.
    ///
    /// # Errors
    ///
    /// [`ContextError::Root`] or [`ContextError::NotADirectory`] for a bad
    /// context folder, and [`ContextError::ReadIgnore`] or
    /// [`ContextError::IgnorePattern`] for an unreadable or invalid ignore
    /// file.
    pub fn open(root: &Path, dockerfile: Option<&Path>) -> Result<Context, ContextError> {
        let canonical = std::fs::canonicalize(root).map_err(|source| ContextError::Root {
            path: root.to_path_buf(),
            source,
        })?;
        if !canonical.is_dir() {
            return Err(ContextError::NotADirectory {
                path: root.to_path_buf(),
            });
        }

        let mut candidates = Vec::new();
        if let Some(dockerfile) = dockerfile {
            let mut name = dockerfile.as_os_str().to_os_string();
            name.push(".dockerignore");
            candidates.push(canonical.join(name));
        }
        candidates.push(canonical.join(".dockerignore"));

        for candidate in candidates {
            let text = match std::fs::read(&candidate) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ContextError::ReadIgnore {
                        path: candidate,
                        source,
                    });
                }
            };
            let matcher =
                Matcher::from_text(&text).map_err(|source| ContextError::IgnorePattern {
                    path: candidate.clone(),
                    source,
                })?;
            tracing::debug!(ignore_file = ?candidate, "using ignore file");
            return Ok(Context {
                root: canonical,
                matcher,
                ignore_file: Some(candidate),
                origin: ContextOrigin::Folder,
            });
        }

        let matcher = Matcher::new::<&str>(&[]).map_err(|source| ContextError::IgnorePattern {
            path: canonical.join(".dockerignore"),
            source,
        })?;
        Ok(Context {
            root: canonical,
            matcher,
            ignore_file: None,
            origin: ContextOrigin::Folder,
        })
    }

    /// Sets the source of the files in the context folder, which error
    /// messages report in place of the folder.
    #[must_use]
    pub fn with_origin(mut self, origin: ContextOrigin) -> Context {
        self.origin = origin;
        self
    }

    /// Returns the source of the files in the context folder.
    pub fn origin(&self) -> ContextOrigin {
        self.origin
    }

    /// Returns the canonical context root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Returns the ignore file in use, if any.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// Checks whether the `/`-separated context-relative path is excluded by the
    /// ignore file.
    pub fn is_excluded(&self, path: &str) -> bool {
        self.matcher.is_excluded(path)
    }

    /// Checks whether nothing below the directory `path` can be included, so a
    /// walk may skip it.
    pub fn can_skip_dir(&self, path: &str) -> bool {
        self.matcher.can_skip_dir(path)
    }
}

/// Checks whether `head`, the first 512 bytes of a stream or all of a
/// shorter one, starts a tar archive (uncompressed, or compressed with gzip,
/// bzip2, xz or zstd). `docker build -` decides the same way whether
/// standard input contains a context archive or a Dockerfile.
pub fn is_archive_head(head: &[u8]) -> bool {
    crate::copy::is_archive_head(head)
}

impl Tree for Context {
    fn lookup(&self, components: &[String]) -> io::Result<Option<(PathBuf, std::fs::Metadata)>> {
        let mut host = self.root.clone();
        host.extend(components);
        match std::fs::symlink_metadata(&host) {
            Ok(metadata) => Ok(Some((host, metadata))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error)
                if error.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_missing_root_names_it() {
        let temp = tempfile::tempdir().unwrap();
        let missing = temp.path().join("nope");
        let error = Context::open(&missing, None).unwrap_err();
        assert!(error.to_string().contains("nope"), "{error}");
    }

    #[test]
    fn open_reports_bad_pattern_line() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join(".dockerignore"), "ok\n[abc\n").unwrap();
        let error = Context::open(temp.path(), None).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(".dockerignore"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn dockerfile_ignore_file_wins() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join(".dockerignore"), "a\n").unwrap();
        std::fs::create_dir(temp.path().join("build")).unwrap();
        std::fs::write(temp.path().join("build/app.Dockerfile.dockerignore"), "b\n").unwrap();
        let context = Context::open(temp.path(), Some(Path::new("build/app.Dockerfile"))).unwrap();
        assert!(context.is_excluded("b"));
        assert!(!context.is_excluded("a"));
        assert!(
            context
                .ignore_file()
                .unwrap()
                .ends_with("app.Dockerfile.dockerignore")
        );
    }

    #[test]
    fn root_dockerignore_without_dockerfile_file() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(temp.path().join(".dockerignore"), "a\n").unwrap();
        let context = Context::open(temp.path(), Some(Path::new("Dockerfile"))).unwrap();
        assert!(context.is_excluded("a"));
        assert!(!context.is_excluded("b"));
    }
}
