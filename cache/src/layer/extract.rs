//! Safe extraction of an uncompressed layer on top of a directory.
//!
//! Names are taken relative to the destination: a leading `/` and `.`
//! components are dropped, as GNU tar, Docker and containerd do, and a `..`
//! component rejects the entry. Every parent directory is resolved with
//! `openat2(RESOLVE_IN_ROOT)`, so a symlink on the way (from this layer or a
//! lower one) is followed as if the destination were `/` and can never lead
//! outside it. The last component is never followed: files are created with
//! `O_EXCL | O_NOFOLLOW` and metadata is set with `AT_SYMLINK_NOFOLLOW` or on
//! an open descriptor.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::fsutil::{is_overlay_xattr, remove_all_at, remove_children, set_xattr_at, set_xattr_fd};
use super::idmap::RecordedOwner;
use super::reader::{EntryType, TarEntry, TarReader};
use super::{LayerError, OPAQUE_WHITEOUT, WHITEOUT_PREFIX, display_name};

/// The handling of a layer's whiteout entries by [`extract`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Applies each marker to the destination's existing content, for a
    /// destination that already contains the lower layers. No marker is kept.
    #[default]
    Apply,
    /// Turns each marker into its overlayfs form, for a layer unpacked
    /// alone and used as an overlay lower directory. `.wh.NAME` becomes a
    /// character device 0:0 named `NAME`. `.wh..wh..opq` sets the xattr
    /// `trusted.overlay.opaque=y` on its directory, or `user.overlay.opaque=y`
    /// (read by overlay mounts with `userxattr`) when the process may not
    /// set `trusted.*` xattrs. Nothing below the destination is removed.
    Overlay,
}

/// Options of [`extract`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Sets each entry's owner to the uid and gid it records, which needs
    /// `CAP_CHOWN`. When false, everything belongs to the caller.
    pub preserve_owners: bool,
    /// Skips character and block devices when the kernel denies creating
    /// them (`EPERM`, as in a user namespace) instead of failing.
    pub skip_denied_devices: bool,
    /// The handling of whiteout entries.
    pub whiteouts: WhiteoutMode,
}

impl ExtractOptions {
    /// Returns the options that fit the current process: owners are kept
    /// and devices required as root, and the reverse otherwise. Whiteouts
    /// are applied.
    pub fn for_current_user() -> Self {
        let root = rustix::process::geteuid().is_root();
        Self {
            preserve_owners: root,
            skip_denied_devices: !root,
            whiteouts: WhiteoutMode::Apply,
        }
    }
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self::for_current_user()
    }
}

/// Counts of what [`extract`] applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Files, directories, links, devices and fifos created or updated.
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// Whiteout and opaque markers applied, or kept in overlayfs form.
    pub whiteouts: u64,
    /// Entries skipped: denied devices, links to themselves, aufs metadata
    /// and whiteouts of paths that the same layer wrote.
    pub skipped: u64,
}

/// Extracts an uncompressed tar layer on top of `dest`, which may already
/// hold the lower layers.
///
/// With [`WhiteoutMode::Apply`], `.wh.NAME` removes `NAME` from what is
/// below, `.wh..wh..opq` removes the lower content of its directory while
/// keeping what this layer wrote there, and neither marker is created. With
/// [`WhiteoutMode::Overlay`] the markers are kept in overlayfs form instead.
/// In both modes a whiteout never hides what the same layer wrote before it.
/// An entry over an existing path replaces it, except that a directory over
/// a directory merges into it. Owners (see [`ExtractOptions::preserve_owners`]),
/// modes including setuid, setgid and sticky bits, mtimes, xattrs (byte-exact,
/// whatever bytes their values hold), hard links, devices, fifos and old GNU
/// sparse files are kept. Directory modes and mtimes are set after all
/// entries are written. An entry for the root itself (`./`) sets the
/// metadata of `dest`. Overlayfs' own xattrs (`trusted.overlay.*`,
/// `user.overlay.*`) are never taken from the layer, so a layer cannot fake
/// overlay markers in an unpacked directory.
///
/// Reading stops at the first end-of-archive block; the caller may read
/// the rest of `tar` itself.
///
/// # Errors
///
/// [`LayerError::UnsafeEntry`] for a name or hard-link target with a `..`
/// component, [`LayerError::MissingLinkTarget`], [`LayerError::InvalidTar`]
/// for a malformed or truncated stream, [`LayerError::UnsupportedEntry`],
/// [`LayerError::OverlayMarker`] when an overlay marker cannot be created,
/// and [`LayerError::Extract`] when the file system rejects an operation.
/// Entries before the failing one stay applied.
pub fn extract<R: Read>(
    tar: R,
    dest: &Path,
    options: &ExtractOptions,
) -> Result<ExtractSummary, LayerError> {
    extract_inner(tar, dest, options, false).map(|(summary, _)| summary)
}

/// Extracts like [`extract`] and also returns the owner and mode of every
/// created entry whose uid or gid is not 0, when
/// [`ExtractOptions::preserve_owners`] is false. A caller in a user
/// namespace that maps it to root uses the list to set those owners from
/// inside the namespace. Hard links and whiteouts are not listed. With
/// `preserve_owners` the list is empty.
///
/// # Errors
///
/// As [`extract`].
pub fn extract_recording_owners<R: Read>(
    tar: R,
    dest: &Path,
    options: &ExtractOptions,
) -> Result<(ExtractSummary, Vec<RecordedOwner>), LayerError> {
    extract_inner(tar, dest, options, !options.preserve_owners)
}

fn extract_inner<R: Read>(
    tar: R,
    dest: &Path,
    options: &ExtractOptions,
    record_owners: bool,
) -> Result<(ExtractSummary, Vec<RecordedOwner>), LayerError> {
    let root = rustix::fs::open(
        dest,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| LayerError::Destination {
        path: dest.to_path_buf(),
        source: errno.into(),
    })?;

    let mut extractor = Extractor {
        root,
        options,
        written: HashSet::new(),
        overlay_whiteouts: HashSet::new(),
        directories: Vec::new(),
        cached_parent: None,
        summary: ExtractSummary::default(),
        buffer: vec![0; 64 * 1024],
        owners: record_owners.then(Vec::new),
        created_parents: Vec::new(),
        newest_mtime: None,
    };

    let mut reader = TarReader::new(tar);
    let mut last_entry: Option<String> = None;
    loop {
        let entry = match reader.next_entry() {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(source) => {
                return Err(LayerError::InvalidTar {
                    entry: last_entry,
                    source,
                });
            }
        };
        let name = display_name(&entry.name);
        extractor.newest_mtime = extractor.newest_mtime.max(Some(entry.mtime));
        extractor.apply(&entry, &name, &mut reader.data())?;
        last_entry = Some(name);
    }

    extractor.finish_directories()?;
    let owners = extractor.owners.map(last_owners).unwrap_or_default();
    Ok((extractor.summary, owners))
}

/// Keeps the last record of each path, since a later entry replaces an
/// earlier one, and drops the records of owner 0:0.
fn last_owners(records: Vec<RecordedOwner>) -> Vec<RecordedOwner> {
    let mut last = std::collections::HashMap::new();
    for (index, record) in records.iter().enumerate() {
        last.insert(record.path.clone(), index);
    }
    records
        .into_iter()
        .enumerate()
        .filter(|(index, record)| {
            last.get(&record.path) == Some(index) && (record.uid != 0 || record.gid != 0)
        })
        .map(|(_, record)| record)
        .collect()
}

/// Metadata of one entry after PAX records are applied.
struct Metadata {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, u32),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A directory whose mode and mtime are set once its contents are written.
struct PendingDirectory {
    path: Vec<u8>,
    mode: u32,
    mtime: (i64, u32),
}

struct Extractor<'a> {
    /// `O_PATH` descriptor of the destination, the root for every lookup.
    root: OwnedFd,
    options: &'a ExtractOptions,
    /// Paths this layer created or wrote into, with all their ancestors;
    /// an opaque marker keeps these and removes the rest.
    written: HashSet<Vec<u8>>,
    /// Paths where [`WhiteoutMode::Overlay`] created a whiteout device that
    /// no later entry of this layer replaced.
    overlay_whiteouts: HashSet<Vec<u8>>,
    directories: Vec<PendingDirectory>,
    /// The parent directory of the previous entry, since consecutive entries
    /// usually share it. Cleared whenever something is removed.
    cached_parent: Option<(Vec<u8>, Rc<OwnedFd>)>,
    summary: ExtractSummary,
    buffer: Vec<u8>,
    /// Owners that [`extract_recording_owners`] returns; `None` when not
    /// recording.
    owners: Option<Vec<RecordedOwner>>,
    /// Missing parent directories that the extractor created, in creation
    /// order.
    created_parents: Vec<Vec<u8>>,
    /// The newest mtime among the entries read so far.
    newest_mtime: Option<(i64, u32)>,
}

/// Splits a tar name into its components, dropping a leading `/`, empty
/// and `.` components, and rejecting `..` and NUL bytes.
fn split_name<'n>(raw: &'n [u8], entry: &str) -> Result<Vec<&'n [u8]>, LayerError> {
    let mut components = Vec::new();
    for component in raw.split(|byte| *byte == b'/') {
        match component {
            b"" | b"." => continue,
            b".." => {
                return Err(LayerError::UnsafeEntry {
                    entry: entry.to_string(),
                    reason:
                        "the name has a `..` component, which could point outside the destination"
                            .to_string(),
                });
            }
            _ if component.contains(&0) => {
                return Err(LayerError::UnsafeEntry {
                    entry: entry.to_string(),
                    reason: "the name contains a NUL byte".to_string(),
                });
            }
            _ => components.push(component),
        }
    }
    Ok(components)
}

fn join(components: &[&[u8]]) -> Vec<u8> {
    components.join(&b'/')
}

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

fn timestamps((seconds, nanos): (i64, u32)) -> Timestamps {
    let time = Timespec {
        tv_sec: seconds,
        tv_nsec: nanos.into(),
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}

impl Extractor<'_> {
    fn apply(
        &mut self,
        entry: &TarEntry,
        name: &str,
        data: &mut dyn Read,
    ) -> Result<(), LayerError> {
        let components = split_name(&entry.name, name)?;
        if let Some(last) = components.last()
            && last.starts_with(WHITEOUT_PREFIX.as_bytes())
        {
            let parents = components.get(..components.len() - 1).unwrap_or_default();
            return self.apply_whiteout(parents, last, name);
        }
        let metadata = self.read_metadata(entry, name);
        let record = self.owner_record(&components, &metadata, entry.entry_type, name)?;

        let Some((last, parents)) = components.split_last() else {
            if entry.entry_type != EntryType::Directory {
                return Err(LayerError::UnsafeEntry {
                    entry: name.to_string(),
                    reason: "the name is the destination root, which only a directory entry can describe".to_string(),
                });
            }
            self.apply_root(metadata, name)?;
            self.push_owner(record);
            return Ok(());
        };
        let path = join(&components);
        let parent = self.resolve_parent(parents, name)?;

        match entry.entry_type {
            EntryType::Regular => self.apply_file(entry, data, &parent, last, metadata, name)?,
            EntryType::Directory => self.apply_directory(&parent, last, &path, metadata, name)?,
            EntryType::Symlink => {
                self.apply_symlink(&parent, last, &entry.link_name, metadata, name)?
            }
            EntryType::HardLink => {
                if !self.apply_hard_link(&parent, last, &path, &entry.link_name, name)? {
                    return Ok(());
                }
            }
            EntryType::CharDevice | EntryType::BlockDevice | EntryType::Fifo => {
                let file_type = match entry.entry_type {
                    EntryType::CharDevice => FileType::CharacterDevice,
                    EntryType::BlockDevice => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let device = (entry.major, entry.minor);
                if !self.apply_node(&parent, last, file_type, device, metadata, name)? {
                    return Ok(());
                }
            }
            EntryType::Other(kind) => {
                return Err(LayerError::UnsupportedEntry {
                    entry: name.to_string(),
                    kind: char::from(kind),
                });
            }
        }

        self.overlay_whiteouts.remove(&path);
        self.mark_written(&components);
        self.summary.entries += 1;
        self.push_owner(record);
        Ok(())
    }

    /// Returns the owner record of an entry when owners are recorded.
    fn owner_record(
        &self,
        components: &[&[u8]],
        metadata: &Metadata,
        entry_type: EntryType,
        entry_name: &str,
    ) -> Result<Option<RecordedOwner>, LayerError> {
        if self.owners.is_none() || entry_type == EntryType::HardLink {
            return Ok(None);
        }
        let (uid, gid) = ids(metadata, entry_name)?;
        let (uid, gid) = (uid.as_raw(), gid.as_raw());
        Ok(Some(RecordedOwner {
            path: std::path::PathBuf::from(os(&join(components))),
            uid,
            gid,
            mode: metadata.mode & 0o7777,
            symlink: entry_type == EntryType::Symlink,
        }))
    }

    fn push_owner(&mut self, record: Option<RecordedOwner>) {
        if let (Some(owners), Some(record)) = (self.owners.as_mut(), record) {
            owners.push(record);
        }
    }

    fn read_metadata(&self, entry: &TarEntry, name: &str) -> Metadata {
        if entry.malformed_values > 0 {
            tracing::warn!(
                entry = name,
                values = entry.malformed_values,
                "ignored PAX values that could not be parsed; the ustar header's values are used"
            );
        }
        let xattrs = entry
            .xattrs
            .iter()
            .filter(|(key, _)| {
                let overlay = is_overlay_xattr(key);
                if overlay {
                    tracing::debug!(entry = name, xattr = %String::from_utf8_lossy(key), "not setting an overlayfs xattr from a layer");
                }
                !overlay
            })
            .cloned()
            .collect();
        Metadata {
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            mtime: entry.mtime,
            xattrs,
        }
    }

    /// Records `components` and all its ancestors as written by this layer.
    fn mark_written(&mut self, components: &[&[u8]]) {
        for end in (1..=components.len()).rev() {
            let prefix = join(components.get(..end).unwrap_or_default());
            if !self.written.insert(prefix) {
                break;
            }
        }
    }

    /// Opens `path` (relative, `/`-separated) as an `O_PATH` directory with
    /// every symlink resolved inside the destination.
    fn open_in_root(&self, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
        let path = if path.is_empty() {
            b".".as_slice()
        } else {
            path
        };
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let mut attempts = 0;
        loop {
            match rustix::fs::openat2(
                &self.root,
                os(path),
                flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                resolve,
            ) {
                // The kernel returns EAGAIN when a rename raced the lookup.
                Err(Errno::AGAIN) if attempts < 16 => attempts += 1,
                result => return result,
            }
        }
    }

    /// Resolves the directory that contains an entry, creating missing
    /// directories. [`Self::finish_directories`] gives them fixed metadata.
    fn resolve_parent(
        &mut self,
        parents: &[&[u8]],
        entry: &str,
    ) -> Result<Rc<OwnedFd>, LayerError> {
        let path = join(parents);
        if let Some((cached, fd)) = &self.cached_parent
            && *cached == path
        {
            return Ok(Rc::clone(fd));
        }

        let fd = match self.open_in_root(&path, OFlags::PATH) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => self.create_parents(parents, entry)?,
            Err(errno) => return Err(parent_error(entry, errno)),
        };
        let fd = Rc::new(fd);
        self.cached_parent = Some((path, Rc::clone(&fd)));
        Ok(fd)
    }

    fn create_parents(&mut self, parents: &[&[u8]], entry: &str) -> Result<OwnedFd, LayerError> {
        let mut current = self
            .open_in_root(b"", OFlags::PATH)
            .map_err(|errno| parent_error(entry, errno))?;
        for end in 1..=parents.len() {
            let prefix = join(parents.get(..end).unwrap_or_default());
            match self.open_in_root(&prefix, OFlags::PATH) {
                Ok(next) => current = next,
                Err(Errno::NOENT) => {
                    let name = parents.get(end - 1).copied().unwrap_or_default();
                    rustix::fs::mkdirat(&current, os(name), Mode::from_raw_mode(0o755)).map_err(
                        |errno| LayerError::Extract {
                            entry: entry.to_string(),
                            action: "create a missing parent directory",
                            source: errno.into(),
                        },
                    )?;
                    self.written.insert(prefix.clone());
                    self.created_parents.push(prefix.clone());
                    current = self
                        .open_in_root(&prefix, OFlags::PATH)
                        .map_err(|errno| parent_error(entry, errno))?;
                }
                Err(errno) => return Err(parent_error(entry, errno)),
            }
        }
        Ok(current)
    }

    /// Clears the way for a new entry `name` in `parent`. Returns true when
    /// an existing directory stays because the entry is a directory too.
    fn prepare_target(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        directory: bool,
        entry: &str,
    ) -> Result<bool, LayerError> {
        match rustix::fs::statat(parent, os(name), AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(false),
            Err(errno) => Err(LayerError::Extract {
                entry: entry.to_string(),
                action: "inspect the existing path",
                source: errno.into(),
            }),
            Ok(stat) => {
                let existing_directory =
                    FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
                if directory && existing_directory {
                    return Ok(true);
                }
                self.cached_parent = None;
                remove_all_at(parent, name).map_err(|source| LayerError::Extract {
                    entry: entry.to_string(),
                    action: "remove the existing path",
                    source,
                })?;
                Ok(false)
            }
        }
    }

    fn apply_file(
        &mut self,
        entry: &TarEntry,
        data: &mut dyn Read,
        parent: &OwnedFd,
        name: &[u8],
        metadata: Metadata,
        entry_name: &str,
    ) -> Result<(), LayerError> {
        let failed = |action, source: io::Error| LayerError::Extract {
            entry: entry_name.to_string(),
            action,
            source,
        };
        self.prepare_target(parent, name, false, entry_name)?;
        let fd = rustix::fs::openat(
            parent,
            os(name),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|errno| failed("create the file", errno.into()))?;
        let mut file = File::from(fd);

        match &entry.sparse {
            None => self.copy_data(data, &mut file, u64::MAX, entry_name)?,
            Some(map) => {
                for (offset, length) in &map.chunks {
                    file.seek(SeekFrom::Start(*offset))
                        .map_err(|source| failed("seek in the sparse file", source))?;
                    self.copy_data(data, &mut file, *length, entry_name)?;
                }
                file.set_len(map.real_size)
                    .map_err(|source| failed("set the sparse file size", source))?;
            }
        }

        let fd = OwnedFd::from(file);
        self.set_owner_fd(&fd, &metadata, entry_name)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(metadata.mode))
            .map_err(|errno| failed("set the mode", errno.into()))?;
        self.set_xattrs(&metadata, entry_name, |key, value| {
            set_xattr_fd(&fd, key, value)
        })?;
        rustix::fs::futimens(&fd, &timestamps(metadata.mtime))
            .map_err(|errno| failed("set the mtime", errno.into()))
    }

    /// Copies at most `limit` bytes of entry data into `file`; the entry's
    /// data reader ends at its size, so `u64::MAX` copies all of it.
    fn copy_data(
        &mut self,
        data: &mut dyn Read,
        file: &mut File,
        limit: u64,
        entry_name: &str,
    ) -> Result<(), LayerError> {
        let mut left = limit;
        while left > 0 {
            let length = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.buffer.len());
            let chunk = self.buffer.get_mut(..length).unwrap_or_default();
            let count = match data.read(chunk) {
                Ok(0) => break,
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LayerError::InvalidTar {
                        entry: Some(entry_name.to_string()),
                        source,
                    });
                }
            };
            let bytes = self.buffer.get(..count).unwrap_or_default();
            file.write_all(bytes)
                .map_err(|source| LayerError::Extract {
                    entry: entry_name.to_string(),
                    action: "write the file",
                    source,
                })?;
            self.summary.bytes += count as u64;
            left -= count as u64;
        }
        Ok(())
    }

    fn apply_directory(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        path: &[u8],
        metadata: Metadata,
        entry_name: &str,
    ) -> Result<(), LayerError> {
        let failed = |action, errno: Errno| LayerError::Extract {
            entry: entry_name.to_string(),
            action,
            source: errno.into(),
        };

        let kept = self.prepare_target(parent, name, true, entry_name)?;
        if !kept {
            rustix::fs::mkdirat(parent, os(name), Mode::from_raw_mode(0o700))
                .map_err(|errno| failed("create the directory", errno))?;
        }
        let fd = rustix::fs::openat(
            parent,
            os(name),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| failed("open the directory", errno))?;

        self.set_owner_fd(&fd, &metadata, entry_name)?;
        self.set_xattrs(&metadata, entry_name, |key, value| {
            set_xattr_fd(&fd, key, value)
        })?;
        // The layer deleted the lower path and then created this directory,
        // so the lower directory's content must stay hidden.
        if self.overlay_whiteouts.contains(path) {
            self.set_opaque_xattr(&fd, entry_name)?;
        }
        self.directories.push(PendingDirectory {
            path: path.to_vec(),
            mode: metadata.mode,
            mtime: metadata.mtime,
        });
        Ok(())
    }

    fn apply_root(&mut self, metadata: Metadata, entry_name: &str) -> Result<(), LayerError> {
        let fd = self
            .open_in_root(b"", OFlags::RDONLY)
            .map_err(|errno| parent_error(entry_name, errno))?;
        self.set_owner_fd(&fd, &metadata, entry_name)?;
        self.set_xattrs(&metadata, entry_name, |key, value| {
            set_xattr_fd(&fd, key, value)
        })?;
        self.directories.push(PendingDirectory {
            path: Vec::new(),
            mode: metadata.mode,
            mtime: metadata.mtime,
        });
        self.summary.entries += 1;
        Ok(())
    }

    fn apply_symlink(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        target: &[u8],
        metadata: Metadata,
        entry_name: &str,
    ) -> Result<(), LayerError> {
        let target = match target {
            target if !target.is_empty() && !target.contains(&0) => target,
            _ => {
                return Err(LayerError::UnsafeEntry {
                    entry: entry_name.to_string(),
                    reason: "the symlink target is empty or contains a NUL byte".to_string(),
                });
            }
        };
        self.prepare_target(parent, name, false, entry_name)?;
        rustix::fs::symlinkat(os(target), parent, os(name)).map_err(|errno| {
            LayerError::Extract {
                entry: entry_name.to_string(),
                action: "create the symlink",
                source: errno.into(),
            }
        })?;
        self.set_metadata_at(parent, name, &metadata, true, entry_name)
    }

    /// Creates a hard link; returns false when the entry was skipped.
    fn apply_hard_link(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        path: &[u8],
        target: &[u8],
        entry_name: &str,
    ) -> Result<bool, LayerError> {
        let target_name = display_name(target);
        let target_components = split_name(target, entry_name).map_err(|_| LayerError::UnsafeEntry {
            entry: entry_name.to_string(),
            reason: format!("the hard link target `{target_name}` has a `..` component or a NUL byte, which could point outside the destination"),
        })?;
        let Some((target_last, target_parents)) = target_components.split_last() else {
            return Err(LayerError::UnsafeEntry {
                entry: entry_name.to_string(),
                reason: format!("the hard link target `{target_name}` is the destination root"),
            });
        };
        if join(&target_components) == path {
            tracing::debug!(entry = entry_name, "skipping a hard link to itself");
            self.summary.skipped += 1;
            return Ok(false);
        }

        let missing = || LayerError::MissingLinkTarget {
            entry: entry_name.to_string(),
            target: target_name.clone(),
        };
        let target_parent = match self.open_in_root(&join(target_parents), OFlags::PATH) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Err(missing()),
            Err(errno) => return Err(parent_error(entry_name, errno)),
        };
        match rustix::fs::statat(&target_parent, os(target_last), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                return Err(LayerError::UnsafeEntry {
                    entry: entry_name.to_string(),
                    reason: format!("the hard link target `{target_name}` is a directory"),
                });
            }
            Ok(_) => {}
            Err(Errno::NOENT) => return Err(missing()),
            Err(errno) => {
                return Err(LayerError::Extract {
                    entry: entry_name.to_string(),
                    action: "inspect the hard link target",
                    source: errno.into(),
                });
            }
        }

        self.prepare_target(parent, name, false, entry_name)?;
        // Without AT_SYMLINK_FOLLOW a symlink target is linked itself, not followed.
        rustix::fs::linkat(
            &target_parent,
            os(target_last),
            parent,
            os(name),
            AtFlags::empty(),
        )
        .map_err(|errno| match errno {
            Errno::NOENT => missing(),
            errno => LayerError::Extract {
                entry: entry_name.to_string(),
                action: "create the hard link",
                source: errno.into(),
            },
        })?;
        Ok(true)
    }

    /// Creates a device or fifo; returns false when the entry was skipped.
    fn apply_node(
        &mut self,
        parent: &OwnedFd,
        name: &[u8],
        file_type: FileType,
        (major, minor): (u32, u32),
        metadata: Metadata,
        entry_name: &str,
    ) -> Result<bool, LayerError> {
        self.prepare_target(parent, name, false, entry_name)?;
        let device = rustix::fs::makedev(major, minor);
        let mode = Mode::from_raw_mode(metadata.mode & 0o777);
        match rustix::fs::mknodat(parent, os(name), file_type, mode, device) {
            Ok(()) => {}
            Err(Errno::PERM) if self.options.skip_denied_devices && file_type != FileType::Fifo => {
                tracing::debug!(
                    entry = entry_name,
                    "skipping a device node that this user may not create"
                );
                self.summary.skipped += 1;
                return Ok(false);
            }
            Err(errno) => {
                return Err(LayerError::Extract {
                    entry: entry_name.to_string(),
                    action: "create the device or fifo",
                    source: errno.into(),
                });
            }
        }
        self.set_metadata_at(parent, name, &metadata, false, entry_name)?;
        Ok(true)
    }

    /// Sets owner, mode, xattrs and mtime of `name` in `parent` without
    /// following it; for a symlink the mode is left as the kernel sets it.
    fn set_metadata_at(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        metadata: &Metadata,
        symlink: bool,
        entry_name: &str,
    ) -> Result<(), LayerError> {
        let failed = |action, errno: Errno| LayerError::Extract {
            entry: entry_name.to_string(),
            action,
            source: errno.into(),
        };
        if self.options.preserve_owners {
            let (uid, gid) = ids(metadata, entry_name)?;
            rustix::fs::chownat(
                parent,
                os(name),
                Some(uid),
                Some(gid),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|errno| failed("set the owner", errno))?;
        }
        if !symlink {
            // Mode through an O_PATH descriptor's /proc link: the kernel has
            // no fchmodat that refuses to follow a symlink on older versions.
            let fd = rustix::fs::openat(
                parent,
                os(name),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|errno| failed("open the node", errno))?;
            let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
            rustix::fs::chmod(proc_path.as_str(), Mode::from_raw_mode(metadata.mode))
                .map_err(|errno| failed("set the mode", errno))?;
        }
        self.set_xattrs(metadata, entry_name, |key, value| {
            set_xattr_at(parent, name, key, value)
        })?;
        rustix::fs::utimensat(
            parent,
            os(name),
            &timestamps(metadata.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|errno| failed("set the mtime", errno))
    }

    fn set_owner_fd(
        &self,
        fd: &OwnedFd,
        metadata: &Metadata,
        entry_name: &str,
    ) -> Result<(), LayerError> {
        if !self.options.preserve_owners {
            return Ok(());
        }
        let (uid, gid) = ids(metadata, entry_name)?;
        rustix::fs::fchown(fd, Some(uid), Some(gid)).map_err(|errno| LayerError::Extract {
            entry: entry_name.to_string(),
            action: "set the owner",
            source: errno.into(),
        })
    }

    /// Sets each xattr with `set`. Without `preserve_owners` the caller is
    /// unprivileged, so names it may not set (`trusted.*`,
    /// `security.capability`) and file systems without xattrs are skipped.
    fn set_xattrs(
        &self,
        metadata: &Metadata,
        entry_name: &str,
        set: impl Fn(&[u8], &[u8]) -> io::Result<()>,
    ) -> Result<(), LayerError> {
        for (key, value) in &metadata.xattrs {
            if let Err(source) = set(key, value) {
                let denied = matches!(source.raw_os_error(), Some(code) if code == Errno::PERM.raw_os_error() || code == Errno::NOTSUP.raw_os_error());
                if denied && !self.options.preserve_owners {
                    tracing::debug!(entry = entry_name, xattr = %String::from_utf8_lossy(key), error = %source, "skipping an xattr this user may not set");
                    continue;
                }
                return Err(LayerError::Extract {
                    entry: entry_name.to_string(),
                    action: "set an xattr",
                    source,
                });
            }
        }
        Ok(())
    }

    fn apply_whiteout(
        &mut self,
        parents: &[&[u8]],
        marker: &[u8],
        entry_name: &str,
    ) -> Result<(), LayerError> {
        if marker == OPAQUE_WHITEOUT.as_bytes() {
            self.summary.whiteouts += 1;
            return match self.options.whiteouts {
                WhiteoutMode::Apply => self.apply_opaque(parents, entry_name),
                WhiteoutMode::Overlay => self.keep_opaque(parents, entry_name),
            };
        }
        let target = marker.get(WHITEOUT_PREFIX.len()..).unwrap_or_default();
        if target.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // Other `.wh..wh.` names are aufs bookkeeping, not deletions.
            tracing::debug!(entry = entry_name, "skipping aufs metadata");
            self.summary.skipped += 1;
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(LayerError::UnsafeEntry {
                entry: entry_name.to_string(),
                reason: "the whiteout names no file in its directory".to_string(),
            });
        }

        // A whiteout hides the lower layers only, never an entry of its own layer.
        let mut components = parents.to_vec();
        components.push(target);
        let path = join(&components);
        if self.written.contains(&path) {
            tracing::debug!(
                entry = entry_name,
                "skipping a whiteout of a path that the same layer wrote"
            );
            self.summary.skipped += 1;
            return Ok(());
        }

        self.summary.whiteouts += 1;
        if self.options.whiteouts == WhiteoutMode::Overlay {
            return self.keep_whiteout(parents, target, path, entry_name);
        }
        let parent = match self.open_in_root(&join(parents), OFlags::PATH) {
            Ok(fd) => fd,
            // Nothing below to delete.
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(()),
            Err(errno) => return Err(parent_error(entry_name, errno)),
        };
        self.cached_parent = None;
        remove_all_at(&parent, target).map_err(|source| LayerError::Extract {
            entry: entry_name.to_string(),
            action: "remove the whited-out path",
            source,
        })
    }

    /// Creates the overlayfs whiteout for `target`: a character device 0:0
    /// with mode 0, as overlayfs itself creates them.
    fn keep_whiteout(
        &mut self,
        parents: &[&[u8]],
        target: &[u8],
        path: Vec<u8>,
        entry_name: &str,
    ) -> Result<(), LayerError> {
        let parent = self.resolve_parent(parents, entry_name)?;
        self.prepare_target(&parent, target, false, entry_name)?;
        rustix::fs::mknodat(
            &parent,
            os(target),
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(|errno| LayerError::OverlayMarker {
            entry: entry_name.to_string(),
            marker: "whiteout (a character device 0:0)",
            hint: "creating it needs root, or Linux 5.8 or later for other users, on a file system that allows device nodes",
            source: errno.into(),
        })?;
        self.overlay_whiteouts.insert(path);
        Ok(())
    }

    /// Marks the directory of an opaque marker as opaque for overlayfs,
    /// creating it when the layer has no entry for it yet.
    fn keep_opaque(&mut self, parents: &[&[u8]], entry_name: &str) -> Result<(), LayerError> {
        if let Some((last, above)) = parents.split_last() {
            let parent = self.resolve_parent(above, entry_name)?;
            match rustix::fs::statat(&*parent, os(last), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => {}
                Err(Errno::NOENT) => {
                    rustix::fs::mkdirat(&*parent, os(last), Mode::from_raw_mode(0o755)).map_err(
                        |errno| LayerError::Extract {
                            entry: entry_name.to_string(),
                            action: "create the opaque directory",
                            source: errno.into(),
                        },
                    )?;
                    self.mark_written(parents);
                }
                Err(errno) => {
                    return Err(LayerError::Extract {
                        entry: entry_name.to_string(),
                        action: "inspect the opaque directory",
                        source: errno.into(),
                    });
                }
            }
        }
        let directory = self
            .open_in_root(&join(parents), OFlags::RDONLY)
            .map_err(|errno| parent_error(entry_name, errno))?;
        self.set_opaque_xattr(&directory, entry_name)
    }

    /// Sets `trusted.overlay.opaque=y` on `directory`, or
    /// `user.overlay.opaque=y` when the process may not set `trusted.*`.
    fn set_opaque_xattr(&self, directory: &OwnedFd, entry_name: &str) -> Result<(), LayerError> {
        if rustix::process::geteuid().is_root() {
            match set_xattr_fd(directory, b"trusted.overlay.opaque", b"y") {
                Ok(()) => return Ok(()),
                // Root in a user namespace lacks CAP_SYS_ADMIN for `trusted.*`.
                Err(error) if error.raw_os_error() == Some(Errno::PERM.raw_os_error()) => {}
                Err(source) => {
                    return Err(LayerError::OverlayMarker {
                        entry: entry_name.to_string(),
                        marker: "opaque xattr `trusted.overlay.opaque`",
                        hint: "use a file system that supports trusted xattrs, such as ext4, xfs or tmpfs",
                        source,
                    });
                }
            }
        }
        set_xattr_fd(directory, b"user.overlay.opaque", b"y").map_err(|source| {
            LayerError::OverlayMarker {
                entry: entry_name.to_string(),
                marker: "opaque xattr `user.overlay.opaque`",
                hint: "extract as root, or on a file system that supports user xattrs",
                source,
            }
        })
    }

    fn apply_opaque(&mut self, parents: &[&[u8]], entry_name: &str) -> Result<(), LayerError> {
        let path = join(parents);
        let directory = match self.open_in_root(&path, OFlags::RDONLY) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(()),
            Err(errno) => return Err(parent_error(entry_name, errno)),
        };
        self.cached_parent = None;
        self.remove_lower(&directory, &path)
            .map_err(|source| LayerError::Extract {
                entry: entry_name.to_string(),
                action: "remove the lower content of the opaque directory",
                source,
            })
    }

    /// Removes everything below `directory` that this layer did not write.
    fn remove_lower(&self, directory: &OwnedFd, path: &[u8]) -> io::Result<()> {
        let child_path = |name: &[u8]| {
            let mut child = path.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name);
            child
        };
        let mut kept_directories = Vec::new();
        remove_children(directory, |name| {
            let child = child_path(name);
            let keep = self.written.contains(&child);
            if keep {
                kept_directories.push(name.to_vec());
            }
            keep
        })?;

        for name in kept_directories {
            let child = match rustix::fs::openat(
                directory,
                os(&name),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Not a directory: a file this layer wrote, kept as it is.
                Err(Errno::NOTDIR) | Err(Errno::LOOP) => continue,
                Err(errno) => return Err(errno.into()),
            };
            self.remove_lower(&child, &child_path(&name))?;
        }
        Ok(())
    }

    /// Sets the mode and mtime of every directory, latest entry first, now
    /// that nothing more is written into them.
    fn finish_directories(&mut self) -> Result<(), LayerError> {
        self.finish_created_parents()?;
        let mut done: HashSet<Vec<u8>> = HashSet::new();
        let directories = std::mem::take(&mut self.directories);
        for directory in directories.iter().rev() {
            if !done.insert(directory.path.clone()) {
                continue;
            }
            let entry_name = display_name(&directory.path);
            let Some(fd) = self.open_directory_nofollow(&directory.path, &entry_name)? else {
                continue;
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(directory.mode)).map_err(|errno| {
                LayerError::Extract {
                    entry: entry_name.clone(),
                    action: "set the directory mode",
                    source: errno.into(),
                }
            })?;
            rustix::fs::futimens(&fd, &timestamps(directory.mtime)).map_err(|errno| {
                LayerError::Extract {
                    entry: entry_name.clone(),
                    action: "set the directory mtime",
                    source: errno.into(),
                }
            })?;
        }
        Ok(())
    }

    /// Sets mode 0755, owner 0:0 (with `preserve_owners`) and the newest
    /// mtime among the tar's entries (0 for a tar without entries) on every
    /// parent directory that the tar lacked and the extractor created. The
    /// result then depends only on the tar's content. docker's extractor
    /// (moby `pkg/archive`, `createImpliedDirectories`) also uses mode 0755
    /// and the root owner, but keeps the time of extraction as mtime. A
    /// parent that a later directory entry lists keeps that entry's
    /// metadata.
    fn finish_created_parents(&mut self) -> Result<(), LayerError> {
        let mtime = self.newest_mtime.unwrap_or((0, 0));
        let created = std::mem::take(&mut self.created_parents);
        let listed: HashSet<&[u8]> = self
            .directories
            .iter()
            .map(|directory| directory.path.as_slice())
            .collect();
        for path in created.iter().rev() {
            if listed.contains(path.as_slice()) {
                continue;
            }
            let entry_name = display_name(path);
            let Some(fd) = self.open_directory_nofollow(path, &entry_name)? else {
                continue;
            };
            let failed = |action, errno: Errno| LayerError::Extract {
                entry: entry_name.clone(),
                action,
                source: errno.into(),
            };
            if self.options.preserve_owners {
                rustix::fs::fchown(
                    &fd,
                    Some(rustix::fs::Uid::ROOT),
                    Some(rustix::fs::Gid::ROOT),
                )
                .map_err(|errno| failed("set the owner of a created parent directory", errno))?;
            }
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))
                .map_err(|errno| failed("set the mode of a created parent directory", errno))?;
            rustix::fs::futimens(&fd, &timestamps(mtime))
                .map_err(|errno| failed("set the mtime of a created parent directory", errno))?;
        }
        Ok(())
    }

    /// Opens a directory by path without following its last component, or
    /// `None` when a later entry removed or replaced it.
    fn open_directory_nofollow(
        &self,
        path: &[u8],
        entry_name: &str,
    ) -> Result<Option<OwnedFd>, LayerError> {
        if path.is_empty() {
            return self
                .open_in_root(b"", OFlags::RDONLY)
                .map(Some)
                .map_err(|errno| parent_error(entry_name, errno));
        }
        let (parent, name) = match path.iter().rposition(|byte| *byte == b'/') {
            Some(split) => (
                path.get(..split).unwrap_or_default(),
                path.get(split + 1..).unwrap_or_default(),
            ),
            None => (&b""[..], path),
        };
        let parent = match self.open_in_root(parent, OFlags::PATH) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(None),
            Err(errno) => return Err(parent_error(entry_name, errno)),
        };
        match rustix::fs::openat(
            &parent,
            os(name),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => Ok(None),
            Err(errno) => Err(LayerError::Extract {
                entry: entry_name.to_string(),
                action: "open the directory",
                source: errno.into(),
            }),
        }
    }
}

fn parent_error(entry: &str, errno: Errno) -> LayerError {
    let action = match errno {
        Errno::NOTDIR => "open the parent directory, because a parent is not a directory",
        Errno::NOENT => "open the parent directory, because a parent is a dangling symlink",
        _ => "open the parent directory",
    };
    LayerError::Extract {
        entry: entry.to_string(),
        action,
        source: errno.into(),
    }
}

fn ids(
    metadata: &Metadata,
    entry_name: &str,
) -> Result<(rustix::fs::Uid, rustix::fs::Gid), LayerError> {
    let invalid = |which: &str, value: u64| LayerError::UnsafeEntry {
        entry: entry_name.to_string(),
        reason: format!("the {which} {value} is not a valid 32-bit id"),
    };
    // The id -1 (u32::MAX) means "unchanged" to chown, so it is rejected too.
    let uid = u32::try_from(metadata.uid)
        .ok()
        .filter(|uid| *uid != u32::MAX)
        .ok_or_else(|| invalid("uid", metadata.uid))?;
    let gid = u32::try_from(metadata.gid)
        .ok()
        .filter(|gid| *gid != u32::MAX)
        .ok_or_else(|| invalid("gid", metadata.gid))?;
    Ok((
        rustix::fs::Uid::from_raw(uid),
        rustix::fs::Gid::from_raw(gid),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_drops_root_and_dots() {
        let components = split_name(b"/./a//b/./c/", "x").unwrap();
        assert_eq!(components, [b"a".as_slice(), b"b", b"c"]);
    }

    #[test]
    fn split_rejects_dotdot() {
        let error = split_name(b"a/../b", "a/../b").unwrap_err();
        assert!(matches!(error, LayerError::UnsafeEntry { .. }));
    }

    fn tar_with(entries: &[(&str, tar::EntryType, u64, u64, u32)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, uid, gid, mode) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(*kind);
            header.set_uid(*uid);
            header.set_gid(*gid);
            header.set_mode(*mode);
            header.set_size(0);
            if *kind == tar::EntryType::Symlink {
                header.set_link_name("target").unwrap();
            }
            builder.append_data(&mut header, name, &[][..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn recorded_owners_keep_last_entry() {
        let tar = tar_with(&[
            ("a/", tar::EntryType::Directory, 1000, 1000, 0o755),
            ("a/f", tar::EntryType::Regular, 1000, 50, 0o4755),
            ("a/link", tar::EntryType::Symlink, 7, 7, 0o777),
            ("root", tar::EntryType::Regular, 0, 0, 0o644),
            ("again", tar::EntryType::Regular, 5, 5, 0o644),
            ("again", tar::EntryType::Regular, 0, 0, 0o644),
        ]);
        let dest = tempfile::tempdir().unwrap();
        let options = ExtractOptions {
            preserve_owners: false,
            skip_denied_devices: true,
            whiteouts: WhiteoutMode::Overlay,
        };
        let (summary, owners) = extract_recording_owners(&tar[..], dest.path(), &options).unwrap();
        assert_eq!(summary.entries, 6);
        let listed: Vec<(String, u32, u32, u32, bool)> = owners
            .iter()
            .map(|owner| {
                (
                    owner.path.display().to_string(),
                    owner.uid,
                    owner.gid,
                    owner.mode,
                    owner.symlink,
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("a".to_string(), 1000, 1000, 0o755, false),
                ("a/f".to_string(), 1000, 50, 0o4755, false),
                ("a/link".to_string(), 7, 7, 0o777, true),
            ]
        );
    }

    #[test]
    fn preserved_owners_are_not_recorded() {
        // Owned by the caller, so that chown needs no privilege.
        let uid = u64::from(rustix::process::getuid().as_raw());
        let gid = u64::from(rustix::process::getgid().as_raw());
        let tar = tar_with(&[("f", tar::EntryType::Regular, uid, gid, 0o644)]);
        let dest = tempfile::tempdir().unwrap();
        let options = ExtractOptions {
            preserve_owners: true,
            skip_denied_devices: false,
            whiteouts: WhiteoutMode::Apply,
        };
        let (_, owners) = extract_recording_owners(&tar[..], dest.path(), &options).unwrap();
        assert!(owners.is_empty());
    }

    #[test]
    fn split_of_root_is_empty() {
        assert!(split_name(b"./", "./").unwrap().is_empty());
    }
}
