//! COPY and ADD: [`CopyPlan::new`] lists, resolves and hashes the sources
//! before anything is written, and [`CopyPlan::apply`] writes the result
//! into a fresh layer folder.
//!
//! The rules follow Docker's Dockerfile reference and BuildKit:
//! - a directory source copies its contents, a wildcard (`*`, `?`, `[...]`)
//!   matches within one path component, and a wildcard that matches nothing
//!   is skipped, while a source without a wildcard must exist;
//! - source paths are resolved inside the context or stage as inside a
//!   chroot: `..` stops at the root and an absolute symlink target starts
//!   again at the root, so `COPY ../a` reads `a` at the context root;
//! - a symlink named as a source is followed, while symlinks found inside
//!   copied directories are copied as symlinks;
//! - the destination is a directory when it ends in `/`, when there are
//!   several sources or matches, or when the image has a directory there;
//! - missing parents are created 0755 and owned by the `--chown` owner
//!   (root by default), and directories that exist in the image keep its
//!   mode, owner and mtime;
//! - files from the context belong to 0:0 unless `--chown` sets another owner,
//!   files from another stage keep their owners, and mtimes are kept;
//! - extended attributes, file capabilities (`security.capability`) among
//!   them, are copied, except overlayfs' own (`trusted.overlay.*`,
//!   `user.overlay.*`);
//! - `--chmod` replaces or changes the mode exactly, without a umask;
//! - ADD also unpacks local tar archives (detected by content) into the
//!   destination directory, downloads `http(s)://` URLs, and copies the
//!   files of a Git commit (see the `git` module).

mod apply;
mod archive;
mod git;
mod mode;
mod owner;
mod plan;
mod remote;
mod xattr;

pub(crate) use archive::is_archive_head;
pub use git::ScratchDir;
pub(crate) use owner::resolve_user_or_root;
pub(crate) use remote::is_git;
pub(crate) use xattr::{read as read_xattrs, write as write_xattrs};

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::rootfs::RootView;

/// Errors from planning or applying a COPY or ADD.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The instruction has no source at all.
    #[error(
        "COPY failed: no source files were specified; name at least one source before the destination"
    )]
    NoSources,
    /// A source pattern without a wildcard matched nothing.
    #[error(
        "COPY failed: no source files match `{pattern}` in {root}; check the path, which is relative to that root{hint}"
    )]
    NoMatch {
        /// The source pattern as given.
        pattern: String,
        /// The context folder or stage the pattern was matched in.
        root: String,
        /// Empty, or a sentence that starts with `; ` and explains how the
        /// path was resolved.
        hint: String,
    },
    /// A source was named while the context is a Dockerfile read from
    /// standard input, which has no other files.
    #[error(
        "COPY failed: `{pattern}` is not in the build context: a Dockerfile given on standard input as the context has no other files; run `forge build -f - DIR` to read the Dockerfile from standard input and use DIR as the context"
    )]
    DockerfileOnlyContext {
        /// The source pattern as given.
        pattern: String,
    },
    /// A source exists but the ignore file excludes it.
    #[error(
        "COPY failed: `{pattern}` in {root} is excluded by `{ignore_file}`; remove it from that file or add a `!` exception"
    )]
    Excluded {
        /// The source pattern as given.
        pattern: String,
        /// The context folder.
        root: String,
        /// The ignore file.
        ignore_file: String,
    },
    /// A file system operation failed.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The failed operation, as a verb phrase.
        action: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A `--chown` value is malformed.
    #[error("invalid --chown value `{value}`: {reason}; write user, user:group, uid or uid:gid")]
    InvalidChown {
        /// The expanded value.
        value: String,
        /// The rule the value breaks.
        reason: String,
    },
    /// A `--chown` name is not in the image.
    #[error(
        "invalid --chown value `{value}`: `{name}` is not in the image's {file}; use a numeric id or create the account in an earlier step"
    )]
    UnknownOwner {
        /// The expanded value.
        value: String,
        /// The user or group name.
        name: String,
        /// `/etc/passwd` or `/etc/group`.
        file: String,
    },
    /// A `--chmod` value is malformed.
    #[error("invalid --chmod value `{value}`: {reason}")]
    InvalidChmod {
        /// The expanded value.
        value: String,
        /// The rule the value breaks.
        reason: String,
    },
    /// An `--exclude` pattern is malformed.
    #[error("invalid --exclude pattern in {patterns:?}: {source}")]
    InvalidExclude {
        /// The expanded patterns.
        patterns: Vec<String>,
        /// The pattern error.
        #[source]
        source: forge_parser::dockerignore::IgnoreError,
    },
    /// A URL could not be downloaded.
    #[error("ADD failed: cannot download `{url}`: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// A download's content does not match `--checksum`.
    #[error(
        "ADD failed: checksum mismatch for `{url}`: expected {expected}, got {actual}; fix the --checksum value or the URL"
    )]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// The `--checksum` value.
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
    },
    /// A `--checksum` value is not `<algorithm>:<hex>`.
    #[error(
        "invalid --checksum value `{value}`: expected sha256:<hex>, sha384:<hex> or sha512:<hex>"
    )]
    InvalidChecksum {
        /// The value.
        value: String,
    },
    /// A URL gives no file name and the destination is a directory.
    #[error(
        "ADD failed: `{url}` has no file name in its path; give a destination file name instead of a directory"
    )]
    NoFileName {
        /// The URL.
        url: String,
    },
    /// A Git source could not be resolved, fetched or copied.
    #[error("ADD failed: Git repository `{url}` at ref `{reference}`: {reason}")]
    Git {
        /// The repository address, with any password hidden.
        url: String,
        /// The branch, tag or commit as given; `HEAD` when none was given.
        reference: String,
        /// The failure and its fix.
        reason: String,
    },
    /// The commit of a Git source does not match `--checksum`.
    #[error(
        "ADD failed: checksum mismatch for Git repository `{url}` at ref `{reference}`: expected commit {expected}, got commit {actual}; fix the --checksum value or the ref"
    )]
    GitChecksumMismatch {
        /// The repository address, with any password hidden.
        url: String,
        /// The branch, tag or commit as given.
        reference: String,
        /// The `--checksum` value.
        expected: String,
        /// The commit the ref resolved to.
        actual: String,
    },
    /// A local archive could not be unpacked.
    #[error("ADD failed: cannot unpack the archive `{source_path}` into `{destination}`: {source}")]
    Unpack {
        /// The archive's source path.
        source_path: String,
        /// The destination directory in the image.
        destination: String,
        /// The cause.
        #[source]
        source: forge_cache::layer::LayerError,
    },
}

/// The tree that COPY sources are read from.
pub enum CopySource<'a> {
    /// The build context, filtered by its ignore file.
    Context(&'a Context),
    /// Another stage or image (`COPY --from`), not filtered.
    Root(&'a RootView),
}

/// ADD-only options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddOptions {
    /// `--checksum`: the expected digest of a URL source, such as
    /// `sha256:<hex>`, or the full commit id of a Git source.
    pub checksum: Option<String>,
    /// `--keep-git-dir`: keep `.git` of a Git source.
    pub keep_git_dir: bool,
    /// `--unpack`: `None` unpacks local archives but not downloads.
    pub unpack: Option<bool>,
    /// Empty folder in which Git sources are cloned, removed when the last
    /// plan that uses it is dropped. Without one, a folder under the
    /// system's temporary folder is used.
    pub git_scratch: Option<Arc<ScratchDir>>,
    /// Agent socket for `ssh://` and `git@` sources (`forge build --ssh
    /// default`); the environment's `SSH_AUTH_SOCK` when `None`.
    pub ssh_auth_sock: Option<PathBuf>,
    /// Hosts besides loopback that plain `http://` Git sources may reach.
    pub plain_http_hosts: Vec<String>,
    /// Files of Git sources get the commit time as mtime instead of the
    /// checkout time, as BuildKit does when SOURCE_DATE_EPOCH is set.
    pub git_commit_mtime: bool,
}

/// A COPY or ADD with its words already expanded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyRequest {
    /// Expanded source patterns (wildcards allowed), without the heredocs.
    pub sources: Vec<String>,
    /// Heredoc sources by name, already expanded.
    pub heredocs: Vec<(String, String)>,
    /// Expanded destination; relative to `workdir` when not absolute.
    pub destination: String,
    /// The working directory of the step, absolute in the image.
    pub workdir: String,
    /// Expanded `user[:group]`, resolved from the image's `/etc/passwd` and
    /// `/etc/group`.
    pub chown: Option<String>,
    /// Expanded octal or symbolic mode.
    pub chmod: Option<String>,
    /// `--parents`: keep each source's path below the source root.
    pub parents: bool,
    /// `--exclude` patterns, matched against paths relative to the source
    /// directory being copied (a matched file's own name for files).
    pub exclude: Vec<String>,
    /// `--link`: copy into an empty root, without looking at the image.
    pub link: bool,
    /// ADD options; `None` for COPY.
    pub add: Option<AddOptions>,
}

/// Counts of what [`CopyPlan::apply`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hard_links: u64,
    /// Bytes of file content written, archives excluded.
    pub bytes: u64,
    /// Entries written by unpacking archives.
    pub unpacked: u64,
}

/// The origin of a file's content.
#[derive(Debug, Clone)]
enum Content {
    /// A host file (context or layer folder).
    Host(PathBuf),
    /// Content held in memory: a heredoc or a download.
    Bytes(Arc<Vec<u8>>),
}

/// The type of one planned entry, with its content or target.
#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File {
        content: Content,
        /// `sha256:<hex>` of the content.
        digest: String,
        size: u64,
    },
    Symlink {
        target: String,
    },
    /// A hard link to an earlier file of the same plan.
    HardLink {
        /// The absolute image path of the first file of the group.
        target: String,
    },
}

/// One path the plan writes, with the metadata it gets.
#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    /// Permission and special bits after `--chmod`.
    mode: u32,
    uid: u32,
    gid: u32,
    /// Seconds and nanoseconds since the epoch.
    mtime: (i64, i64),
    /// Extended attributes, sorted by name. Hard links have none of their
    /// own because they share their first file's.
    xattrs: xattr::Xattrs,
}

/// An archive unpacked into a directory of the image.
#[derive(Debug, Clone)]
struct Unpack {
    /// The source as named, for messages.
    source: String,
    content: Content,
    digest: String,
    /// The absolute image directory it is unpacked into.
    destination: String,
}

/// Everything a COPY/ADD will write, with content digests, before anything
/// is written.
///
/// Entries are keyed by their path components, so a parent always sorts
/// before its children and the first file of a hard-link group before its
/// links.
#[derive(Debug, Clone, Default)]
pub struct CopyPlan {
    /// The absolute image destination after resolution.
    destination: String,
    entries: BTreeMap<Vec<String>, Entry>,
    unpacks: Vec<Unpack>,
    /// Git sources, fetched only when the plan is applied.
    git: Vec<git::GitCopy>,
    /// `--link`: directories are not merged with the image's.
    link: bool,
}

impl CopyPlan {
    /// Lists, resolves and hashes the sources. Nothing is written.
    ///
    /// Regular files of the context are hashed in parallel through `hashes`,
    /// which reuses earlier hashes of unchanged files. URL sources of ADD
    /// are downloaded here.
    ///
    /// # Errors
    ///
    /// [`CopyError::NoSources`], [`CopyError::NoMatch`],
    /// [`CopyError::DockerfileOnlyContext`] and [`CopyError::Excluded`] for
    /// missing sources,
    /// [`CopyError::InvalidChown`], [`CopyError::UnknownOwner`] and
    /// [`CopyError::InvalidChmod`] for bad flags, the download errors for
    /// URLs, and [`CopyError::Io`] when a source cannot be read.
    pub fn new(
        source: CopySource<'_>,
        request: &CopyRequest,
        image: &RootView,
        hashes: &crate::context::HashCache,
    ) -> Result<CopyPlan, CopyError> {
        plan::build(source, request, image, hashes)
    }

    /// Returns the digest of every input that changes the written files:
    /// destination, paths, content digests, modes after chmod, owners after
    /// chown, extended attributes, link targets and hard-link groups. Mtimes
    /// are left out, so a touched file keeps the cache key.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"forge-copy-plan-v2\n");
        hasher.update(format!("destination\0{}\n", self.destination));
        for (path, entry) in &self.entries {
            let (kind, value) = describe(&entry.kind);
            hasher.update(format!(
                "{}\0{kind}\0{value}\0{:o}\0{}\0{}\n",
                crate::rootfs::join_absolute(path),
                entry.mode,
                entry.uid,
                entry.gid
            ));
            for (name, value) in &entry.xattrs {
                hasher.update(format!(
                    "xattr\0{}\0{}\n",
                    hex::encode(name),
                    hex::encode(value)
                ));
            }
        }
        for unpack in &self.unpacks {
            hasher.update(format!(
                "unpack\0{}\0{}\n",
                unpack.destination, unpack.digest
            ));
        }
        for source in &self.git {
            hasher.update(format!(
                "git\0{}\0{}\n",
                crate::rootfs::join_absolute(&source.destination),
                source.describe()
            ));
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }

    /// Returns each written path with its content digest, link target (as
    /// `-> target`), hard-link target (as `=> target`) or `directory`, and
    /// its extended attributes, for explaining which input changed between
    /// two builds.
    pub fn summary(&self) -> Vec<(String, String)> {
        let mut lines: Vec<(String, String)> = self
            .entries
            .iter()
            .map(|(path, entry)| {
                let (kind, value) = describe(&entry.kind);
                let description = match kind {
                    "symlink" => format!("-> {value}"),
                    "hardlink" => format!("=> {value}"),
                    "dir" => "directory".to_string(),
                    _ => value,
                };
                let xattrs = if entry.xattrs.is_empty() {
                    String::new()
                } else {
                    format!(" xattrs {}", describe_xattrs(&entry.xattrs))
                };
                (
                    crate::rootfs::join_absolute(path),
                    format!(
                        "{description} mode {:o} owner {}:{}{xattrs}",
                        entry.mode, entry.uid, entry.gid
                    ),
                )
            })
            .collect();
        for unpack in &self.unpacks {
            lines.push((
                unpack.destination.clone(),
                format!("unpacked {} from {}", unpack.digest, unpack.source),
            ));
        }
        for source in &self.git {
            lines.push((
                crate::rootfs::join_absolute(&source.destination),
                source.describe(),
            ));
        }
        lines
    }

    /// Returns the absolute image destination after resolution.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// Writes the files into `upper` (a fresh folder that becomes the
    /// layer). Parent directories that exist in `image` were looked up when
    /// the plan was made and are created in `upper` with the image's mode,
    /// owner, mtime and extended attributes. Git sources are fetched here,
    /// and their directories that exist in `image` keep the image's
    /// metadata too.
    ///
    /// NOTE: files of Git sources are written after the other sources of
    /// the same instruction, so they win where paths overlap, whatever the
    /// order of the sources.
    ///
    /// # Errors
    ///
    /// [`CopyError::Io`] when a file cannot be written (setting owners
    /// needs `CAP_CHOWN`), [`CopyError::Unpack`] for a broken archive, and
    /// [`CopyError::Git`] when a Git source cannot be fetched.
    pub fn apply(&self, upper: &std::path::Path, image: &RootView) -> Result<CopyStats, CopyError> {
        if self.git.is_empty() {
            return apply::write(self, upper);
        }
        let mut full = self.clone();
        for source in &self.git {
            for (path, entry) in source.entries()? {
                plan::insert_entry(&mut full.entries, path, entry);
            }
        }
        if !self.link {
            plan::keep_image_dirs(&mut full.entries, image)?;
        }
        apply::write(&full, upper)
    }
}

/// Returns the kind name and the digest or target of an entry.
fn describe(kind: &Kind) -> (&'static str, String) {
    match kind {
        Kind::Dir => ("dir", String::new()),
        Kind::File { digest, .. } => ("file", digest.clone()),
        Kind::Symlink { target } => ("symlink", target.clone()),
        Kind::HardLink { target } => ("hardlink", target.clone()),
    }
}

/// Returns extended attributes as `name=hex` pairs separated by spaces for
/// messages, with non-UTF-8 bytes of a name replaced.
fn describe_xattrs(xattrs: &xattr::Xattrs) -> String {
    let pairs: Vec<String> = xattrs
        .iter()
        .map(|(name, value)| format!("{}={}", String::from_utf8_lossy(name), hex::encode(value)))
        .collect();
    pairs.join(" ")
}
