//! Building a [`CopyPlan`]: sources matched and listed, destinations placed,
//! owners and modes decided, and file contents hashed.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use forge_parser::dockerignore::Matcher;
use rayon::prelude::*;

use super::archive::is_archive;
use super::git::{self, ScratchDir};
use super::mode::ModeSpec;
use super::owner::resolve_owner;
use super::remote::{download, is_git, is_url};
use super::xattr;
use super::{Content, CopyError, CopyPlan, CopyRequest, CopySource, Entry, Kind, Unpack};
use crate::context::hashcache::hash_bytes;
use crate::context::{ContextOrigin, HashCache};
use crate::rootfs::{Resolved, RootView, Tree, join_absolute, resolve, split_components};

/// Mode of directories created as missing parents.
const PARENT_MODE: u32 = 0o755;
/// Mode of heredoc files.
const HEREDOC_MODE: u32 = 0o644;
/// Mode of downloaded files.
const DOWNLOAD_MODE: u32 = 0o600;

/// A source path that exists, with symlinks resolved.
struct Match {
    /// Canonical components below the source root.
    components: Vec<String>,
    host: PathBuf,
    metadata: std::fs::Metadata,
}

struct Planner<'a> {
    source: &'a CopySource<'a>,
    request: &'a CopyRequest,
    image: &'a RootView,
    owner: Option<(u32, u32)>,
    chmod: Option<ModeSpec>,
    exclude: Matcher,
    entries: BTreeMap<Vec<String>, Entry>,
    /// Device and inode of host files with more than one link.
    inodes: HashMap<Vec<String>, (u64, u64)>,
    unpacks: Vec<Unpack>,
    git: Vec<git::GitCopy>,
    /// Clone folder of a plan made without [`super::AddOptions::git_scratch`].
    fallback_scratch: Option<Arc<ScratchDir>>,
    now: (i64, i64),
}

/// Builds the plan for [`CopyPlan::new`].
pub(super) fn build(
    source: CopySource<'_>,
    request: &CopyRequest,
    image: &RootView,
    hashes: &HashCache,
) -> Result<CopyPlan, CopyError> {
    if request.sources.is_empty() && request.heredocs.is_empty() {
        return Err(CopyError::NoSources);
    }
    let owner = match &request.chown {
        Some(spec) => Some(resolve_owner(spec, image)?),
        None => None,
    };
    let chmod = match &request.chmod {
        Some(text) => Some(
            ModeSpec::parse(text).map_err(|reason| CopyError::InvalidChmod {
                value: text.clone(),
                reason,
            })?,
        ),
        None => None,
    };
    let exclude = Matcher::new(&request.exclude).map_err(|source| CopyError::InvalidExclude {
        patterns: request.exclude.clone(),
        source,
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| {
            (
                i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
                i64::from(elapsed.subsec_nanos()),
            )
        })
        .unwrap_or((0, 0));

    let mut planner = Planner {
        source: &source,
        request,
        image,
        owner,
        chmod,
        exclude,
        entries: BTreeMap::new(),
        inodes: HashMap::new(),
        unpacks: Vec::new(),
        git: Vec::new(),
        fallback_scratch: None,
        now,
    };
    let destination = planner.destination()?;
    planner.collect(&destination)?;
    planner.add_parents(&destination)?;
    planner.merge_existing_dirs()?;
    planner.link_groups();
    hash_files(&mut planner.entries, hashes)?;

    Ok(CopyPlan {
        destination: join_absolute(&destination.0),
        entries: planner.entries,
        unpacks: planner.unpacks,
        git: planner.git,
        link: request.link,
    })
}

impl Planner<'_> {
    /// Returns the destination's canonical components and whether it is a
    /// directory.
    fn destination(&self) -> Result<(Vec<String>, bool), CopyError> {
        let request = self.request;
        let raw = if request.destination.starts_with('/') {
            request.destination.clone()
        } else {
            format!("{}/{}", request.workdir, request.destination)
        };
        let mut is_dir = request.destination.ends_with('/')
            || request.destination.ends_with("/.")
            || request.destination == "."
            || request.sources.len() + request.heredocs.len() > 1;

        // The path is cleaned lexically before symlinks are resolved, as
        // BuildKit does, so `/link/..` is `/` whatever `/link` points to.
        let components = if request.link {
            clean(&raw)
        } else {
            let canonical = self
                .image
                .canonical_path(&join_absolute(&clean(&raw)))
                .map_err(|source| CopyError::Io {
                    path: raw.clone(),
                    action: "resolve the destination in the image",
                    source,
                })?;
            if let Ok(Some((_, metadata))) = self.image.lstat(&canonical) {
                is_dir |= metadata.is_dir();
            }
            split_components(&canonical)
        };
        Ok((components, is_dir))
    }

    /// Adds every source's entries.
    fn collect(&mut self, destination: &(Vec<String>, bool)) -> Result<(), CopyError> {
        let (dest, dest_is_dir) = destination;
        let request = self.request;

        for (name, content) in &request.heredocs {
            let target = if *dest_is_dir {
                child(dest, name)
            } else {
                dest.clone()
            };
            let bytes = content.as_bytes().to_vec();
            let entry = Entry {
                kind: Kind::File {
                    digest: hash_bytes(&bytes),
                    size: bytes.len() as u64,
                    content: Content::Bytes(Arc::new(bytes)),
                },
                mode: self.mode(HEREDOC_MODE, false),
                uid: self.owner.map_or(0, |owner| owner.0),
                gid: self.owner.map_or(0, |owner| owner.1),
                mtime: self.now,
                xattrs: Vec::new(),
            };
            self.insert(target, entry);
        }

        for pattern in &request.sources {
            if let Some(add) = &request.add {
                if is_git(pattern) {
                    self.add_git(pattern, add, dest)?;
                    continue;
                }
                if is_url(pattern) {
                    self.add_download(pattern, add, dest, *dest_is_dir)?;
                    continue;
                }
            }

            let matches = self.expand(pattern)?;
            if matches.is_empty() {
                // A wildcard that matches nothing copies nothing, as in
                // BuildKit; a plain path must exist.
                if split_components(pattern)
                    .iter()
                    .any(|component| has_wildcard(component))
                {
                    tracing::debug!(%pattern, "the wildcard matches no source file");
                    continue;
                }
                if let CopySource::Context(context) = self.source
                    && context.origin() == ContextOrigin::StdinDockerfile
                {
                    return Err(CopyError::DockerfileOnlyContext {
                        pattern: pattern.clone(),
                    });
                }
                return Err(CopyError::NoMatch {
                    pattern: pattern.clone(),
                    root: self.describe_root(),
                    hint: no_match_hint(pattern),
                });
            }
            let into_dir = *dest_is_dir || matches.len() > 1;
            for found in matches {
                self.add_match(pattern, found, dest, into_dir)?;
            }
        }
        Ok(())
    }

    /// Resolves a Git source to a commit and plans its destination folder.
    /// The commit is fetched when the plan is applied, so a cache hit needs
    /// no clone.
    fn add_git(
        &mut self,
        source: &str,
        add: &super::AddOptions,
        dest: &[String],
    ) -> Result<(), CopyError> {
        let address = git::parse(source, &add.plain_http_hosts)?;
        let scratch = match (&add.git_scratch, &self.fallback_scratch) {
            (Some(scratch), _) | (None, Some(scratch)) => Arc::clone(scratch),
            (None, None) => {
                let scratch = Arc::new(ScratchDir::create_in_system_temp().map_err(|source| {
                    CopyError::Io {
                        path: std::env::temp_dir().display().to_string(),
                        action: "create a folder for the Git clone in",
                        source,
                    }
                })?);
                self.fallback_scratch = Some(Arc::clone(&scratch));
                scratch
            }
        };
        let env = git::GitEnv {
            home: scratch.path().join("home"),
            ssh_auth_sock: add.ssh_auth_sock.clone(),
        };
        let resolved = git::resolve(&address, &env)?;
        let checksum = match (&add.checksum, &address.checksum) {
            (Some(flag), Some(query)) if !flag.eq_ignore_ascii_case(query) => {
                return Err(CopyError::Git {
                    url: git::redact(&address.remote),
                    reference: address.reference_text().to_string(),
                    reason: format!(
                        "--checksum `{flag}` and the query's checksum `{query}` differ; give one"
                    ),
                });
            }
            (Some(checksum), _) | (None, Some(checksum)) => Some(checksum.clone()),
            (None, None) => None,
        };
        if let Some(checksum) = &checksum {
            git::check_commit(&address, checksum, &resolved.commit)?;
        }

        // The destination is always a folder, which gets git's folder mode.
        let mut folder = self.parent_entry();
        folder.mode = self.mode(0o755, true);
        self.insert(dest.to_vec(), folder);
        self.git.push(git::GitCopy {
            keep_git_dir: add.keep_git_dir || address.keep_git_dir,
            address,
            resolved,
            destination: dest.to_vec(),
            uid: self.owner.map_or(0, |owner| owner.0),
            gid: self.owner.map_or(0, |owner| owner.1),
            chmod: self.chmod.clone(),
            chmod_text: self.request.chmod.clone(),
            commit_mtime: add.git_commit_mtime,
            env,
            scratch,
        });
        Ok(())
    }

    fn add_download(
        &mut self,
        url: &str,
        add: &super::AddOptions,
        dest: &[String],
        dest_is_dir: bool,
    ) -> Result<(), CopyError> {
        let downloaded = download(url, add.checksum.as_deref())?;
        let content = Content::Bytes(Arc::new(downloaded.bytes));
        if add.unpack == Some(true)
            && let Content::Bytes(bytes) = &content
            && is_archive(Box::new(io::Cursor::new(bytes.as_slice())))
        {
            self.unpacks.push(Unpack {
                source: url.to_string(),
                content,
                digest: downloaded.digest,
                destination: join_absolute(dest),
            });
            return Ok(());
        }

        let target = if dest_is_dir {
            let name = downloaded.file_name.ok_or_else(|| CopyError::NoFileName {
                url: url.to_string(),
            })?;
            child(dest, &name)
        } else {
            dest.to_vec()
        };
        let size = match &content {
            Content::Bytes(bytes) => bytes.len() as u64,
            Content::Host(_) => 0,
        };
        let entry = Entry {
            kind: Kind::File {
                content,
                digest: downloaded.digest,
                size,
            },
            mode: self.mode(DOWNLOAD_MODE, false),
            uid: self.owner.map_or(0, |owner| owner.0),
            gid: self.owner.map_or(0, |owner| owner.1),
            mtime: downloaded.mtime.map_or(self.now, |seconds| (seconds, 0)),
            xattrs: Vec::new(),
        };
        self.insert(target, entry);
        Ok(())
    }

    fn add_match(
        &mut self,
        pattern: &str,
        found: Match,
        dest: &[String],
        into_dir: bool,
    ) -> Result<(), CopyError> {
        let name = found.components.last().cloned();
        if found.metadata.is_dir() {
            let target = if self.request.parents {
                let mut target = dest.to_vec();
                target.extend(found.components.iter().cloned());
                target
            } else {
                dest.to_vec()
            };
            let entry = self.entry_for(Kind::Dir, &found.host, &found.metadata)?;
            self.insert(target.clone(), entry);
            return self.walk(&found.components, &target, &[]);
        }

        // A matched file is excluded by `--exclude` through its own name.
        if let Some(name) = &name
            && self.exclude.is_excluded(name)
        {
            return Ok(());
        }

        let target = match (&name, self.request.parents, into_dir) {
            (_, true, _) => {
                let mut target = dest.to_vec();
                target.extend(found.components.iter().cloned());
                target
            }
            (Some(name), false, true) => child(dest, name),
            _ => dest.to_vec(),
        };

        if found.metadata.is_file()
            && let Some(add) = &self.request.add
            && add.unpack != Some(false)
            && self.looks_like_archive(&found)?
        {
            let digest = hash_file(&found.host)?;
            // An archive unpacks into the destination directory, or with
            // `--parents` into the archive's own parent path below it.
            let directory = if self.request.parents {
                let mut directory = target.clone();
                directory.pop();
                directory
            } else {
                dest.to_vec()
            };
            if !self.entries.contains_key(&directory) {
                let entry = self.parent_entry();
                self.insert(directory.clone(), entry);
            }
            self.unpacks.push(Unpack {
                source: pattern.to_string(),
                content: Content::Host(found.host),
                digest,
                destination: join_absolute(&directory),
            });
            return Ok(());
        }
        self.add_leaf(&found.components, target, found.host, &found.metadata)
    }

    fn looks_like_archive(&self, found: &Match) -> Result<bool, CopyError> {
        let file = std::fs::File::open(&found.host).map_err(|source| CopyError::Io {
            path: found.host.display().to_string(),
            action: "open",
            source,
        })?;
        Ok(is_archive(Box::new(file)))
    }

    /// Adds a non-directory entry found in a source tree.
    fn add_leaf(
        &mut self,
        components: &[String],
        target: Vec<String>,
        host: PathBuf,
        metadata: &std::fs::Metadata,
    ) -> Result<(), CopyError> {
        let file_type = metadata.file_type();
        if file_type.is_file() {
            if metadata.nlink() > 1 {
                self.inodes
                    .insert(target.clone(), (metadata.dev(), metadata.ino()));
            } else {
                self.inodes.remove(&target);
            }
            let kind = Kind::File {
                content: Content::Host(host.clone()),
                digest: String::new(),
                size: metadata.len(),
            };
            let entry = self.entry_for(kind, &host, metadata)?;
            self.insert(target, entry);
        } else if file_type.is_symlink() {
            let link = std::fs::read_link(&host).map_err(|source| CopyError::Io {
                path: join_absolute(components),
                action: "read the symlink",
                source,
            })?;
            let kind = Kind::Symlink {
                target: link.to_string_lossy().into_owned(),
            };
            let entry = self.entry_for(kind, &host, metadata)?;
            self.insert(target, entry);
        } else {
            // NOTE: devices, fifos and sockets in a source are skipped.
            tracing::debug!(path = %join_absolute(components), "skipping special file");
        }
        Ok(())
    }

    /// Adds the content of the source directory `components` below `target`.
    /// `relative` is the path below the copied source, matched by
    /// `--exclude`.
    fn walk(
        &mut self,
        components: &[String],
        target: &[String],
        relative: &[String],
    ) -> Result<(), CopyError> {
        for name in self.list(components)? {
            let child_components = child(components, &name);
            let child_target = child(target, &name);
            let child_relative = child(relative, &name);
            let Some((host, metadata)) = self.lookup(&child_components)? else {
                continue;
            };

            let tree_path = child_components.join("/");
            let relative_path = child_relative.join("/");
            let ignored = self.context_excludes(&tree_path);
            let excluded = self.exclude.is_excluded(&relative_path);
            if metadata.is_dir() {
                if (ignored && self.context_can_skip(&tree_path))
                    || (excluded && self.exclude.can_skip_dir(&relative_path))
                {
                    continue;
                }
                // An excluded directory is still entered for the paths that
                // a `!` pattern includes again; it then only appears as
                // their parent.
                if !ignored && !excluded {
                    let entry = self.entry_for(Kind::Dir, &host, &metadata)?;
                    self.insert(child_target.clone(), entry);
                }
                self.walk(&child_components, &child_target, &child_relative)?;
                continue;
            }
            if ignored || excluded {
                continue;
            }
            self.add_leaf(&child_components, child_target, host, &metadata)?;
        }
        Ok(())
    }

    /// Inserts an entry. A directory merges into an existing directory (the
    /// first one's metadata wins); anything else replaces what was there.
    fn insert(&mut self, path: Vec<String>, entry: Entry) {
        insert_entry(&mut self.entries, path, entry);
    }

    /// Adds a directory entry for every missing ancestor of every entry,
    /// and replaces non-directories that are in the way.
    /// Nothing is added when no source matched, so a COPY whose wildcards
    /// all match nothing leaves the image unchanged.
    fn add_parents(&mut self, destination: &(Vec<String>, bool)) -> Result<(), CopyError> {
        if self.entries.is_empty() && self.unpacks.is_empty() {
            return Ok(());
        }
        let mut needed: Vec<Vec<String>> = Vec::new();
        let mut paths: Vec<Vec<String>> = self.entries.keys().cloned().collect();
        paths.extend(
            self.unpacks
                .iter()
                .map(|unpack| split_components(&unpack.destination)),
        );
        if destination.1 {
            paths.push(destination.0.clone());
        }
        for path in paths {
            for length in 1..path.len() {
                if let Some(prefix) = path.get(..length) {
                    needed.push(prefix.to_vec());
                }
            }
        }
        needed.extend(
            self.unpacks
                .iter()
                .map(|unpack| split_components(&unpack.destination)),
        );
        needed.sort();
        needed.dedup();
        for parent in needed {
            let is_dir = self
                .entries
                .get(&parent)
                .is_some_and(|entry| matches!(entry.kind, Kind::Dir));
            if !is_dir && !parent.is_empty() {
                let entry = self.parent_entry();
                self.entries.insert(parent, entry);
            }
        }
        Ok(())
    }

    /// Gives every planned directory that exists in the image the image's
    /// mode, owner, mtime and extended attributes, so the copy merges into
    /// it unchanged.
    fn merge_existing_dirs(&mut self) -> Result<(), CopyError> {
        if self.request.link {
            return Ok(());
        }
        keep_image_dirs(&mut self.entries, self.image)
    }

    /// Turns every file of a hard-link group but the first into a link to it.
    fn link_groups(&mut self) {
        let mut leaders: HashMap<(u64, u64), Vec<String>> = HashMap::new();
        for (path, entry) in self.entries.iter_mut() {
            if !matches!(entry.kind, Kind::File { .. }) {
                continue;
            }
            let Some(inode) = self.inodes.get(path) else {
                continue;
            };
            match leaders.get(inode) {
                Some(leader) => {
                    entry.kind = Kind::HardLink {
                        target: join_absolute(leader),
                    };
                    entry.xattrs.clear();
                }
                None => {
                    leaders.insert(*inode, path.clone());
                }
            }
        }
    }

    fn parent_entry(&self) -> Entry {
        Entry {
            kind: Kind::Dir,
            mode: PARENT_MODE,
            uid: self.owner.map_or(0, |owner| owner.0),
            gid: self.owner.map_or(0, |owner| owner.1),
            mtime: self.now,
            xattrs: Vec::new(),
        }
    }

    /// Returns an entry with the metadata a copied source entry gets, its
    /// extended attributes read from `host`.
    fn entry_for(
        &self,
        kind: Kind,
        host: &Path,
        metadata: &std::fs::Metadata,
    ) -> Result<Entry, CopyError> {
        let is_symlink = matches!(kind, Kind::Symlink { .. });
        let mode = if is_symlink {
            0o777
        } else {
            self.mode(metadata.mode() & 0o7777, metadata.is_dir())
        };
        let (uid, gid) = match (self.owner, self.source) {
            (Some(owner), _) => owner,
            (None, CopySource::Context(_)) => (0, 0),
            (None, CopySource::Root(_)) => (metadata.uid(), metadata.gid()),
        };
        let xattrs = xattr::read(host).map_err(|source| CopyError::Io {
            path: host.display().to_string(),
            action: "read the extended attributes of",
            source,
        })?;
        Ok(Entry {
            kind,
            mode,
            uid,
            gid,
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            xattrs,
        })
    }

    fn mode(&self, mode: u32, is_dir: bool) -> u32 {
        match &self.chmod {
            Some(spec) => spec.apply(mode, is_dir),
            None => mode,
        }
    }

    /// Matches a source pattern against the source tree.
    ///
    /// The pattern is cleaned lexically first, as BuildKit does, so `a/..`
    /// names the root even when `a` is a symlink.
    fn expand(&self, pattern: &str) -> Result<Vec<Match>, CopyError> {
        let components = clean(pattern);
        if !components.iter().any(|component| has_wildcard(component)) {
            let Some(found) = self.resolve(&components.join("/"), pattern)? else {
                return Ok(Vec::new());
            };
            let path = found.components.join("/");
            // An excluded directory may still hold paths that a `!` pattern
            // includes again, and the walk picks those up.
            let skippable = !found.metadata.is_dir() || self.context_can_skip(&path);
            if self.context_excludes(&path) && skippable {
                return Err(CopyError::Excluded {
                    pattern: pattern.to_string(),
                    root: self.describe_root(),
                    ignore_file: self.ignore_file(),
                });
            }
            return Ok(vec![found]);
        }

        let mut candidates: Vec<Vec<String>> = vec![Vec::new()];
        for component in &components {
            if !has_wildcard(component) {
                for candidate in &mut candidates {
                    candidate.push(component.clone());
                }
                continue;
            }
            let mut next = Vec::new();
            for candidate in &candidates {
                let Some(directory) = self.resolve(&candidate.join("/"), pattern)? else {
                    continue;
                };
                if !directory.metadata.is_dir() {
                    continue;
                }
                for name in self.list(&directory.components)? {
                    let path = child(&directory.components, &name);
                    if glob_component(component, &name) && !self.context_excludes(&path.join("/")) {
                        next.push(path);
                    }
                }
            }
            candidates = next;
        }

        let mut matches = Vec::new();
        for candidate in candidates {
            if let Some(found) = self.resolve(&candidate.join("/"), pattern)? {
                matches.push(found);
            }
        }
        Ok(matches)
    }

    /// Resolves a path of the source tree, following every symlink inside it.
    fn resolve(&self, path: &str, pattern: &str) -> Result<Option<Match>, CopyError> {
        let resolved = match self.source {
            CopySource::Context(context) => resolve(*context, path, true),
            CopySource::Root(view) => resolve(*view, path, true),
        };
        match resolved {
            Ok(Resolved::Found {
                components,
                host,
                metadata,
            }) => Ok(Some(Match {
                components,
                host,
                metadata,
            })),
            Ok(Resolved::Missing { .. }) => Ok(None),
            Err(error) => Err(CopyError::Io {
                path: if path == pattern {
                    path.to_string()
                } else {
                    format!("{path}` (matched by `{pattern}")
                },
                action: "resolve the source",
                source: error.into_io(),
            }),
        }
    }

    fn lookup(
        &self,
        components: &[String],
    ) -> Result<Option<(PathBuf, std::fs::Metadata)>, CopyError> {
        let found = match self.source {
            CopySource::Context(context) => context.lookup(components),
            CopySource::Root(view) => view.lookup(components),
        };
        found.map_err(|source| CopyError::Io {
            path: join_absolute(components),
            action: "read the source",
            source,
        })
    }

    /// Lists a directory of the source tree, sorted by name.
    fn list(&self, components: &[String]) -> Result<Vec<String>, CopyError> {
        let io_error = |source| CopyError::Io {
            path: join_absolute(components),
            action: "list the source directory",
            source,
        };
        match self.source {
            CopySource::Root(view) => view.read_dir(&join_absolute(components)).map_err(io_error),
            CopySource::Context(context) => {
                let mut host = context.root().to_path_buf();
                host.extend(components);
                let mut names = Vec::new();
                for entry in std::fs::read_dir(&host).map_err(io_error)? {
                    let entry = entry.map_err(io_error)?;
                    match entry.file_name().into_string() {
                        Ok(name) => names.push(name),
                        // NOTE: names that are not UTF-8 are skipped.
                        Err(name) => {
                            tracing::warn!(?name, "skipping a file name that is not UTF-8")
                        }
                    }
                }
                names.sort();
                Ok(names)
            }
        }
    }

    fn context_excludes(&self, path: &str) -> bool {
        match self.source {
            CopySource::Context(context) => context.is_excluded(path),
            CopySource::Root(_) => false,
        }
    }

    fn context_can_skip(&self, path: &str) -> bool {
        match self.source {
            CopySource::Context(context) => context.can_skip_dir(path),
            CopySource::Root(_) => false,
        }
    }

    fn describe_root(&self) -> String {
        match self.source {
            CopySource::Context(context) => match context.origin() {
                ContextOrigin::Folder => {
                    format!("the build context `{}`", context.root().display())
                }
                ContextOrigin::StdinArchive => {
                    "the build context archive read from standard input".to_string()
                }
                ContextOrigin::StdinDockerfile => {
                    "the build context read from standard input".to_string()
                }
            },
            CopySource::Root(_) => "the source stage or image".to_string(),
        }
    }

    fn ignore_file(&self) -> String {
        match self.source {
            CopySource::Context(context) => context
                .ignore_file()
                .map(|path| path.display().to_string())
                .unwrap_or_else(|| ".dockerignore".to_string()),
            CopySource::Root(_) => String::new(),
        }
    }
}

/// Inserts an entry. A directory merges into an existing directory (the
/// first one's metadata wins); anything else replaces what was there.
pub(super) fn insert_entry(
    entries: &mut BTreeMap<Vec<String>, Entry>,
    path: Vec<String>,
    entry: Entry,
) {
    // The image root keeps its own metadata.
    if path.is_empty() && matches!(entry.kind, Kind::Dir) {
        return;
    }
    if matches!(entry.kind, Kind::Dir)
        && let Some(existing) = entries.get(&path)
        && matches!(existing.kind, Kind::Dir)
    {
        return;
    }
    if !matches!(entry.kind, Kind::Dir) {
        // A non-directory replaces a directory with all its content.
        let below: Vec<Vec<String>> = entries
            .range(path.clone()..)
            .take_while(|(key, _)| key.starts_with(&path))
            .map(|(key, _)| key.clone())
            .filter(|key| key.len() > path.len())
            .collect();
        for key in below {
            entries.remove(&key);
        }
    }
    entries.insert(path, entry);
}

/// Gives every planned directory that exists in the image the image's
/// mode, owner, mtime and extended attributes, so the copy merges into it
/// unchanged.
pub(super) fn keep_image_dirs(
    entries: &mut BTreeMap<Vec<String>, Entry>,
    image: &RootView,
) -> Result<(), CopyError> {
    for (path, entry) in entries.iter_mut() {
        if !matches!(entry.kind, Kind::Dir) {
            continue;
        }
        let image_path = join_absolute(path);
        let found = image.lstat(&image_path).map_err(|source| CopyError::Io {
            path: image_path.clone(),
            action: "look up in the image",
            source,
        })?;
        if let Some((host, metadata)) = found
            && metadata.is_dir()
        {
            entry.mode = metadata.mode() & 0o7777;
            entry.uid = metadata.uid();
            entry.gid = metadata.gid();
            entry.mtime = (metadata.mtime(), metadata.mtime_nsec());
            entry.xattrs = xattr::read(&host).map_err(|source| CopyError::Io {
                path: image_path.clone(),
                action: "read the extended attributes of",
                source,
            })?;
        }
    }
    Ok(())
}

/// Hashes every file entry that has no digest yet, in parallel.
fn hash_files(
    entries: &mut BTreeMap<Vec<String>, Entry>,
    hashes: &HashCache,
) -> Result<(), CopyError> {
    entries.par_iter_mut().try_for_each(|(path, entry)| {
        if let Kind::File {
            content: Content::Host(host),
            digest,
            ..
        } = &mut entry.kind
            && digest.is_empty()
        {
            let io_error = |source| CopyError::Io {
                path: format!("{} (for {})", host.display(), join_absolute(path)),
                action: "hash",
                source,
            };
            let metadata = std::fs::symlink_metadata(&*host).map_err(io_error)?;
            *digest = hashes.file_digest(host, &metadata).map_err(io_error)?;
        }
        Ok(())
    })
}

fn hash_file(path: &std::path::Path) -> Result<String, CopyError> {
    let file = std::fs::File::open(path).map_err(|source| CopyError::Io {
        path: path.display().to_string(),
        action: "open",
        source,
    })?;
    crate::context::hashcache::hash_reader(file).map_err(|source| CopyError::Io {
        path: path.display().to_string(),
        action: "hash",
        source,
    })
}

/// Explains, for a missing source whose path climbs with `..`, that `..`
/// stops at the root.
fn no_match_hint(pattern: &str) -> String {
    if split_components(pattern)
        .iter()
        .any(|component| component == "..")
    {
        "; `..` cannot climb above that root, so the path was looked up inside it".to_string()
    } else {
        String::new()
    }
}

fn child(parent: &[String], name: &str) -> Vec<String> {
    let mut path = parent.to_vec();
    path.push(name.to_string());
    path
}

/// Cleans an absolute path lexically: `.` dropped, `..` removes the
/// previous component and stops at the root.
pub(super) fn clean(path: &str) -> Vec<String> {
    let mut components = Vec::new();
    for component in split_components(path) {
        if component == ".." {
            components.pop();
        } else {
            components.push(component);
        }
    }
    components
}

fn has_wildcard(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

/// Matches one path component against a pattern with `*`, `?`, `[...]`
/// (with `!` or `^` negation and ranges) and `\` escapes.
pub(crate) fn glob_component(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    glob_chars(&pattern, &name)
}

fn glob_chars(pattern: &[char], name: &[char]) -> bool {
    let Some((&first, rest)) = pattern.split_first() else {
        return name.is_empty();
    };
    match first {
        '*' => {
            (0..=name.len()).any(|skip| name.get(skip..).is_some_and(|tail| glob_chars(rest, tail)))
        }
        '?' => name
            .split_first()
            .is_some_and(|(_, tail)| glob_chars(rest, tail)),
        '[' => {
            let Some((&letter, tail)) = name.split_first() else {
                return false;
            };
            match class_matches(rest, letter) {
                Some((true, after)) => glob_chars(after, tail),
                _ => false,
            }
        }
        '\\' => match (rest.split_first(), name.split_first()) {
            (Some((&escaped, after)), Some((&letter, tail))) => {
                escaped == letter && glob_chars(after, tail)
            }
            _ => false,
        },
        literal => name
            .split_first()
            .is_some_and(|(&letter, tail)| letter == literal && glob_chars(rest, tail)),
    }
}

/// Matches `letter` against a class whose `[` was consumed; returns the
/// result and the pattern after `]`, or `None` for an unclosed class.
fn class_matches(pattern: &[char], letter: char) -> Option<(bool, &[char])> {
    let (negated, mut rest) = match pattern.split_first() {
        Some((&('!' | '^'), rest)) => (true, rest),
        _ => (false, pattern),
    };
    let mut matched = false;
    let mut first = true;
    loop {
        let (&start, after) = rest.split_first()?;
        if start == ']' && !first {
            return Some((matched != negated, after));
        }
        first = false;
        let (start, after) = if start == '\\' {
            let (&escaped, after) = after.split_first()?;
            (escaped, after)
        } else {
            (start, after)
        };
        if let (Some('-'), Some(&end)) = (after.first(), after.get(1))
            && end != ']'
        {
            matched |= (start..=end).contains(&letter);
            rest = after.get(2..)?;
        } else {
            matched |= start == letter;
            rest = after;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_component_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*.txt", "a.txt", true),
            ("*.txt", "a.txt.bak", false),
            ("*", ".hidden", true),
            ("?.md", "a.md", true),
            ("?.md", "ab.md", false),
            ("[ab]*", "beta", true),
            ("[!ab]*", "beta", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("file[", "file[", false),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                glob_component(pattern, name),
                *expected,
                "{pattern} vs {name}"
            );
        }
    }

    #[test]
    fn clean_stops_at_root() {
        assert_eq!(clean("/a/../../b/./c"), vec!["b", "c"]);
        assert!(clean("/").is_empty());
    }
}
