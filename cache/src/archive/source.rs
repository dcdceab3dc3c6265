//! The files of an archive being loaded: a tar (plain or compressed) read
//! once from start to end, or an OCI layout folder read in place.
//!
//! A tar is never extracted. Each regular file goes straight into a store
//! blob, named by the hash of its content, and only the small top-level
//! documents (`index.json`, `oci-layout`, `manifest.json`, `repositories`)
//! are kept in memory. A file that is itself a plain tar, as docker-archive
//! layers are, is stored only as a gzip-compressed copy, and a plain copy is
//! written only when an OCI manifest references that file by its digest.
//! Names are checked as they are read: an absolute name, a `..`
//! component, a symlink or hard link that leads outside the archive, an
//! entry below a symlink and a device node reject the archive.
//! A folder is read with `openat2(RESOLVE_BENEATH)`, so no symlink inside
//! it can lead to a file outside it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use tar::EntryType;

use super::error::{ArchiveError, Result};
use crate::layer::{self, Compression, LayerError};
use crate::store::{BlobInfo, Store, StoreError, parse_digest};

/// Top-level documents that are kept in memory instead of stored as blobs.
const DOCUMENTS: [&str; 4] = ["index.json", "oci-layout", "manifest.json", "repositories"];

/// The largest top-level document read into memory.
const MAX_DOCUMENT_SIZE: u64 = 16 * 1024 * 1024;

/// Symlinks followed in one lookup before the archive counts as malformed.
const MAX_SYMLINK_DEPTH: usize = 40;

/// The files of an archive.
pub(crate) enum Source {
    Tar(TarSource),
    Dir(DirSource),
}

/// A tar whose files are already in the store.
pub(crate) struct TarSource {
    archive: PathBuf,
    documents: HashMap<String, Vec<u8>>,
    files: HashMap<String, TarFile>,
    /// Symlink name to its target, both as normalised archive names.
    symlinks: HashMap<String, String>,
}

/// A regular file of a tar archive, as the read pass stored it.
#[derive(Clone, Debug)]
enum TarFile {
    /// Stored as it is.
    Blob(BlobInfo),
    /// A plain tar, stored only as a gzip-compressed copy.
    Gzipped(GzippedTar),
}

/// A plain tar file of an archive, stored as a gzip-compressed blob.
#[derive(Clone, Debug)]
pub(crate) struct GzippedTar {
    /// Digest and size of the plain tar: a layer's diff id and tar size.
    pub(crate) plain: BlobInfo,
    /// The stored gzip blob.
    pub(crate) gzip: BlobInfo,
}

/// A layer file of a docker-archive, as [`Source::layer`] stored it.
pub(crate) enum LayerFile {
    /// A plain tar, stored only gzip-compressed.
    Gzipped(GzippedTar),
    /// The file as it is: a compressed layer, or a plain tar whose first
    /// block has no `ustar` magic.
    Stored(BlobInfo),
}

/// An OCI layout or docker-archive folder.
pub(crate) struct DirSource {
    archive: PathBuf,
    root: OwnedFd,
}

impl Source {
    /// Opens a folder in place, or reads a tar file to its end, storing
    /// every file it holds. The caller holds a store lease.
    pub(crate) fn open(store: &Store, path: &Path) -> Result<Source> {
        let metadata =
            std::fs::metadata(path).map_err(|source| ArchiveError::io("open", path, source))?;
        if metadata.is_dir() {
            let root = rustix::fs::open(
                path,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|errno| ArchiveError::io("open", path, errno.into()))?;
            return Ok(Source::Dir(DirSource {
                archive: path.to_path_buf(),
                root,
            }));
        }
        let file = File::open(path).map_err(|source| ArchiveError::io("open", path, source))?;
        TarSource::read(store, path, file).map(Source::Tar)
    }

    /// Returns the archive path for messages.
    pub(crate) fn archive(&self) -> &Path {
        match self {
            Source::Tar(tar) => &tar.archive,
            Source::Dir(dir) => &dir.archive,
        }
    }

    /// Reads a top-level document, or `None` when the archive has none.
    pub(crate) fn document(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Source::Tar(tar) => Ok(tar.documents.get(name).cloned()),
            Source::Dir(dir) => dir.read_document(name),
        }
    }

    /// Stores the file `name` as a blob and checks it against `expected`
    /// (digest and size), or against the digest its name gives when it is
    /// `blobs/ALGORITHM/HEX`.
    pub(crate) fn blob(
        &mut self,
        store: &Store,
        name: &str,
        expected: Option<&Descriptor>,
    ) -> Result<BlobInfo> {
        let archive = self.archive().to_path_buf();
        let expected = match expected {
            Some(descriptor) => Some((descriptor.digest().clone(), Some(descriptor.size()))),
            None => digest_in_name(name).map(|digest| (digest, None)),
        };
        let info = match self {
            Source::Tar(tar) => match tar.file(name)? {
                TarFile::Blob(info) => info,
                TarFile::Gzipped(gzipped) => store_plain_copy(store, &gzipped)?,
            },
            Source::Dir(dir) => {
                if let Some((digest, Some(size))) = &expected
                    && store.has_blob(digest)
                    && store.blob_size(digest).ok() == Some(*size)
                {
                    // The store already contains this content, checked when it was stored.
                    return Ok(BlobInfo {
                        digest: digest.clone(),
                        size: *size,
                    });
                }
                dir.store_file(store, name)?
            }
        };

        check_digest(archive, name, expected, &info)?;
        Ok(info)
    }

    /// Stores the docker-archive layer file `name`, checked against the
    /// digest its name gives when it is `blobs/sha256/HEX`. A plain tar that
    /// [`is_plain_tar`] recognises is stored only gzip-compressed, because
    /// the manifest that a docker-archive load writes lists the gzip copy.
    pub(crate) fn layer(&mut self, store: &Store, name: &str) -> Result<LayerFile> {
        let archive = self.archive().to_path_buf();
        let layer = match self {
            Source::Tar(tar) => match tar.file(name)? {
                TarFile::Blob(info) => LayerFile::Stored(info),
                TarFile::Gzipped(gzipped) => LayerFile::Gzipped(gzipped),
            },
            Source::Dir(dir) => dir.store_layer(store, name)?,
        };
        let file = match &layer {
            LayerFile::Gzipped(gzipped) => &gzipped.plain,
            LayerFile::Stored(info) => info,
        };
        let expected = digest_in_name(name).map(|digest| (digest, None));
        check_digest(archive, name, expected, file)?;
        Ok(layer)
    }
}

/// Fails with [`ArchiveError::DigestMismatch`] when the file `name`, which
/// hashed to `actual`, does not match the expected digest and size.
fn check_digest(
    archive: PathBuf,
    name: &str,
    expected: Option<(Digest, Option<u64>)>,
    actual: &BlobInfo,
) -> Result<()> {
    if let Some((digest, size)) = expected
        && (actual.digest != digest || size.is_some_and(|size| size != actual.size))
    {
        return Err(ArchiveError::DigestMismatch {
            archive,
            entry: name.to_string(),
            expected: digest.to_string(),
            expected_size: size.unwrap_or(actual.size),
            actual: actual.digest.to_string(),
            actual_size: actual.size,
        });
    }
    Ok(())
}

/// Returns whether `head`, the first bytes of a file of `size` bytes, starts
/// a plain tar: a header block with the `ustar` magic of POSIX and GNU tars
/// at offset 257, or a zero block that starts an empty tar.
fn is_plain_tar(head: &[u8], size: u64) -> bool {
    if size < 2 * TAR_BLOCK as u64 || head.len() < TAR_BLOCK {
        return false;
    }
    head.get(257..262) == Some(b"ustar".as_slice()) || head.iter().all(|byte| *byte == 0)
}

/// Size of a tar block in bytes.
const TAR_BLOCK: usize = 512;

/// Reads up to one tar block from `input`.
fn read_head(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(TAR_BLOCK);
    input.take(TAR_BLOCK as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Stores a gzip-compressed copy of the plain tar that `input` reads, and
/// hashes the plain bytes on the way. The gzip output depends only on the
/// tar, so the same tar always gives the same blob. Errors name the file
/// `name` of `archive`.
fn store_gzipped(
    store: &Store,
    input: &mut dyn Read,
    archive: &Path,
    name: &str,
) -> Result<GzippedTar> {
    let mut hashing = HashingReader {
        inner: input,
        hasher: sha2::Sha256::default(),
        size: 0,
    };
    let mut writer = store.blob_writer()?;
    layer::compress(&mut hashing, Compression::Gzip, None, &mut writer).map_err(
        |error| match error {
            LayerError::Read { source } => ArchiveError::io("read", archive, source),
            other => ArchiveError::Compress {
                archive: archive.to_path_buf(),
                entry: name.to_string(),
                source: other,
            },
        },
    )?;
    let gzip = writer.commit(None)?;
    let plain = BlobInfo {
        digest: parse_digest(&format!(
            "sha256:{}",
            hex::encode(sha2::Digest::finalize(hashing.hasher))
        ))?,
        size: hashing.size,
    };
    tracing::debug!(entry = name, plain = %plain.digest, gzip = %gzip.digest, "stored a plain tar gzip-compressed");
    Ok(GzippedTar { plain, gzip })
}

/// Stores the plain tar of `gzipped` by decompressing its gzip blob, and
/// checks that it hashes to the digest recorded when it was compressed.
/// NOTE: the gzip blob then stays in the store, unreferenced unless an
/// image uses it, until `forge prune` removes it.
fn store_plain_copy(store: &Store, gzipped: &GzippedTar) -> Result<BlobInfo> {
    let plain = &gzipped.plain;
    if store.has_blob(&plain.digest) && store.blob_size(&plain.digest).ok() == Some(plain.size) {
        return Ok(plain.clone());
    }
    let layer_error = |source| ArchiveError::Layer {
        digest: gzipped.gzip.digest.to_string(),
        source,
    };
    let reader = store.open_blob(&gzipped.gzip.digest)?;
    let mut stream = layer::decompress(Box::new(reader)).map_err(layer_error)?;
    let mut writer = store.blob_writer()?;
    io::copy(&mut stream, &mut writer)
        .map_err(|source| layer_error(LayerError::Read { source }))?;
    Ok(writer.commit(Some(&plain.digest))?)
}

/// A reader that hashes and counts the bytes it passes on.
struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: sha2::Sha256,
    size: u64,
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.inner.read(buf)?;
        let read = buf.get(..count).unwrap_or_default();
        sha2::Digest::update(&mut self.hasher, read);
        self.size += count as u64;
        Ok(count)
    }
}

/// Returns the digest that a `blobs/sha256/HEX` name gives.
fn digest_in_name(name: &str) -> Option<Digest> {
    let hex = name.strip_prefix("blobs/sha256/")?;
    parse_digest(&format!("sha256:{hex}")).ok()
}

impl TarSource {
    fn read(store: &Store, path: &Path, file: File) -> Result<TarSource> {
        let stream = layer::decompress(Box::new(io::BufReader::new(file))).map_err(|source| {
            ArchiveError::UnknownFormat {
                path: path.to_path_buf(),
                reason: source.to_string(),
            }
        })?;
        let mut source = TarSource {
            archive: path.to_path_buf(),
            documents: HashMap::new(),
            files: HashMap::new(),
            symlinks: HashMap::new(),
        };
        let invalid = |reason: String| ArchiveError::InvalidArchive {
            archive: path.to_path_buf(),
            reason,
        };

        let mut archive = tar::Archive::new(stream);
        let entries = archive
            .entries()
            .map_err(|error| invalid(format!("it is not a tar: {error}")))?;
        let mut last: Option<String> = None;
        for entry in entries {
            let entry = entry.map_err(|error| {
                let after = last
                    .as_deref()
                    .map(|name| format!(" after entry `{name}`"))
                    .unwrap_or_default();
                invalid(format!("it is not a valid tar{after}: {error}"))
            })?;
            let raw = entry.path_bytes().into_owned();
            last = Some(String::from_utf8_lossy(&raw).into_owned());
            source.add_entry(store, entry, &raw)?;
        }
        if source.documents.is_empty() && source.files.is_empty() {
            return Err(ArchiveError::UnknownFormat {
                path: path.to_path_buf(),
                reason: "the tar holds no files".into(),
            });
        }
        Ok(source)
    }

    fn unsafe_entry(&self, entry: &[u8], reason: impl Into<String>) -> ArchiveError {
        ArchiveError::UnsafeEntry {
            archive: self.archive.clone(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            reason: reason.into(),
        }
    }

    fn add_entry<R: Read>(
        &mut self,
        store: &Store,
        mut entry: tar::Entry<'_, R>,
        raw: &[u8],
    ) -> Result<()> {
        let entry_type = entry.header().entry_type();
        if matches!(
            entry_type,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let components = normalise(raw).map_err(|reason| self.unsafe_entry(raw, reason))?;
        let name = components.join("/");
        if let Some(parent) = self.symlink_parent(&components) {
            return Err(self.unsafe_entry(
                raw,
                format!(
                    "its parent `{parent}` is a symlink, so an extractor would write through it"
                ),
            ));
        }

        match entry_type {
            EntryType::Directory => Ok(()),
            EntryType::Regular | EntryType::Continuous => {
                if name.is_empty() {
                    return Err(self.unsafe_entry(raw, "a file cannot be the archive root"));
                }
                let size = entry.size();
                if DOCUMENTS.contains(&name.as_str()) && size <= MAX_DOCUMENT_SIZE {
                    let mut bytes = Vec::new();
                    entry
                        .read_to_end(&mut bytes)
                        .map_err(|source| ArchiveError::io("read", &self.archive, source))?;
                    self.documents.insert(name, bytes);
                    return Ok(());
                }
                let head = read_head(&mut entry)
                    .map_err(|source| ArchiveError::io("read", &self.archive, source))?;
                let mut input = io::Cursor::new(&head).chain(entry);
                let file = if is_plain_tar(&head, size) {
                    TarFile::Gzipped(store_gzipped(store, &mut input, &self.archive, &name)?)
                } else {
                    let mut writer = store.blob_writer()?;
                    io::copy(&mut input, &mut writer)
                        .map_err(|source| ArchiveError::io("read", &self.archive, source))?;
                    TarFile::Blob(writer.commit(None)?)
                };
                self.symlinks.remove(&name);
                self.files.insert(name, file);
                Ok(())
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|target| target.into_owned()).unwrap_or_default();
                let parents = components.get(..components.len().saturating_sub(1)).unwrap_or_default();
                let resolved = resolve_link(parents, &target).map_err(|reason| {
                    self.unsafe_entry(raw, format!("the symlink target `{}` {reason}", String::from_utf8_lossy(&target)))
                })?;
                self.files.remove(&name);
                self.symlinks.insert(name, resolved);
                Ok(())
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().map(|target| target.into_owned()).unwrap_or_default();
                let target_text = String::from_utf8_lossy(&target).into_owned();
                let target_name = normalise(&target)
                    .map_err(|reason| {
                        self.unsafe_entry(raw, format!("the hard link target `{target_text}` is {reason}"))
                    })?
                    .join("/");
                if let Some(info) = self.files.get(&target_name).cloned() {
                    self.files.insert(name, info);
                } else if let Some(link) = self.symlinks.get(&target_name).cloned() {
                    self.symlinks.insert(name, link);
                } else {
                    return Err(self.unsafe_entry(
                        raw,
                        format!("the hard link target `{target_text}` is not an earlier file of the archive"),
                    ));
                }
                Ok(())
            }
            other => Err(self.unsafe_entry(
                raw,
                format!(
                    "entry type {:?} does not belong in an image archive, which holds files, folders and links only",
                    char::from(other.as_byte())
                ),
            )),
        }
    }

    /// Returns the first parent of an entry that is a symlink.
    fn symlink_parent(&self, components: &[&str]) -> Option<String> {
        (1..components.len())
            .map(|count| components.get(..count).unwrap_or_default().join("/"))
            .find(|parent| self.symlinks.contains_key(parent))
    }

    /// Returns the regular file `name`, following symlinks.
    fn file(&self, name: &str) -> Result<TarFile> {
        let resolved = self.resolve(name)?;
        self.files
            .get(&resolved)
            .cloned()
            .ok_or_else(|| ArchiveError::InvalidArchive {
                archive: self.archive.clone(),
                reason: format!("it has no file `{name}`"),
            })
    }

    /// Follows symlinks from `name` to a file name of the archive.
    fn resolve(&self, name: &str) -> Result<String> {
        let mut current = name.to_string();
        for _ in 0..MAX_SYMLINK_DEPTH {
            match self.symlinks.get(&current) {
                Some(target) => current = target.clone(),
                None => return Ok(current),
            }
        }
        Err(ArchiveError::InvalidArchive {
            archive: self.archive.clone(),
            reason: format!("`{name}` is a loop of symlinks"),
        })
    }
}

/// Splits an archive entry name into its components, dropping `.`, empty
/// components and a trailing `/`, and rejecting absolute names, `..`
/// components and names that are not UTF-8.
fn normalise(raw: &[u8]) -> std::result::Result<Vec<&str>, String> {
    if raw.starts_with(b"/") {
        return Err("an absolute path, which could point outside the archive".into());
    }
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_string())?;
    let mut components = Vec::new();
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                return Err(
                    "a path with a `..` component, which could point outside the archive".into(),
                );
            }
            _ if component.contains('\0') => return Err("a path with a NUL byte".into()),
            _ => components.push(component),
        }
    }
    Ok(components)
}

/// Resolves a symlink target relative to the symlink's folder, without
/// touching the file system; a target that leaves the archive is an error.
fn resolve_link(parents: &[&str], target: &[u8]) -> std::result::Result<String, String> {
    if target.is_empty() {
        return Err("is empty".into());
    }
    if target.starts_with(b"/") {
        return Err("is absolute and leads outside the archive".into());
    }
    let text = std::str::from_utf8(target).map_err(|_| "is not UTF-8".to_string())?;
    let mut resolved: Vec<&str> = parents.to_vec();
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if resolved.pop().is_none() {
                    return Err("leads outside the archive".into());
                }
            }
            _ => resolved.push(component),
        }
    }
    Ok(resolved.join("/"))
}

impl DirSource {
    /// Opens a regular file below the folder; symlinks may not leave it.
    fn open_file(&self, name: &str) -> Result<File> {
        let unsafe_entry = |reason: String| ArchiveError::UnsafeEntry {
            archive: self.archive.clone(),
            entry: name.to_string(),
            reason,
        };
        normalise(name.as_bytes()).map_err(unsafe_entry)?;
        let fd = rustix::fs::openat2(
            &self.root,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|errno| match errno {
            rustix::io::Errno::XDEV => {
                unsafe_entry("a symlink on its path leads outside the folder".into())
            }
            other => ArchiveError::io("open", self.archive.join(name), other.into()),
        })?;
        let file = File::from(fd);
        let metadata = file
            .metadata()
            .map_err(|source| ArchiveError::io("inspect", self.archive.join(name), source))?;
        if !metadata.is_file() {
            return Err(unsafe_entry("it is not a regular file".into()));
        }
        Ok(file)
    }

    fn read_document(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let file = match self.open_file(name) {
            Ok(file) => file,
            Err(ArchiveError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let mut bytes = Vec::new();
        file.take(MAX_DOCUMENT_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ArchiveError::io("read", self.archive.join(name), source))?;
        if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
            return Err(ArchiveError::InvalidArchive {
                archive: self.archive.clone(),
                reason: format!("`{name}` is larger than {MAX_DOCUMENT_SIZE} bytes"),
            });
        }
        Ok(Some(bytes))
    }

    /// Stores the layer file `name`, a plain tar only gzip-compressed.
    fn store_layer(&self, store: &Store, name: &str) -> Result<LayerFile> {
        let mut file = self.open_file(name)?;
        let path = self.archive.join(name);
        let size = file
            .metadata()
            .map_err(|source| ArchiveError::io("inspect", &path, source))?
            .len();
        let head =
            read_head(&mut file).map_err(|source| ArchiveError::io("read", &path, source))?;
        let mut input = io::Cursor::new(&head).chain(file);
        if is_plain_tar(&head, size) {
            return store_gzipped(store, &mut input, &self.archive, name).map(LayerFile::Gzipped);
        }
        let mut writer = store.blob_writer()?;
        io::copy(&mut input, &mut writer)
            .map_err(|source| ArchiveError::io("copy", &path, source))?;
        Ok(LayerFile::Stored(writer.commit(None)?))
    }

    fn store_file(&self, store: &Store, name: &str) -> Result<BlobInfo> {
        let mut file = self.open_file(name)?;
        let mut writer = store.blob_writer()?;
        io::copy(&mut file, &mut writer)
            .map_err(|source| ArchiveError::io("copy", self.archive.join(name), source))?;
        writer
            .commit(None)
            .map_err(|error: StoreError| error.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_drops_dots() {
        assert_eq!(normalise(b"./blobs//sha256/").unwrap(), ["blobs", "sha256"]);
    }

    #[test]
    fn normalise_rejects_escapes() {
        assert!(normalise(b"../x").is_err());
        assert!(normalise(b"a/../../x").is_err());
        assert!(normalise(b"/etc/x").is_err());
    }

    #[test]
    fn plain_tar_is_recognised() {
        let mut header = [0u8; TAR_BLOCK];
        header[257..262].copy_from_slice(b"ustar");
        assert!(is_plain_tar(&header, 1024));
        assert!(is_plain_tar(&[0u8; TAR_BLOCK], 1024));
        // Shorter than a header and an end block, or not a tar header.
        assert!(!is_plain_tar(&header, 1023));
        assert!(!is_plain_tar(&header[..100], 1024));
        assert!(!is_plain_tar(&[b'{'; TAR_BLOCK], 1024));
        let mut gzip = [0u8; TAR_BLOCK];
        gzip[..2].copy_from_slice(&[0x1f, 0x8b]);
        assert!(!is_plain_tar(&gzip, 1024));
    }

    #[test]
    fn resolve_link_stays_inside() {
        assert_eq!(
            resolve_link(&["abc"], b"../blobs/sha256/00").unwrap(),
            "blobs/sha256/00"
        );
        assert!(resolve_link(&["abc"], b"../../etc/passwd").is_err());
        assert!(resolve_link(&[], b"/etc/passwd").is_err());
    }
}
