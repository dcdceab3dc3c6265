//! Writing a directory as a layer: a tar stream in a stable order, hashed,
//! compressed and hashed again in one pass.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};

use super::compression::{Encoder, checked_level};
use super::digest::DigestWriter;
use super::fsutil::{find_xattr, is_overlay_xattr, read_xattrs};
use super::idmap::{IdKind, IdMap};
use super::pax::{EntryHeader, EntryKind, TarWriter};
use super::{Compression, LayerDescriptor, LayerError, OPAQUE_WHITEOUT, WHITEOUT_PREFIX};

/// The encoding of deletions in the directory handed to [`write_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiffKind {
    /// A fresh directory: every entry is an addition and nothing is deleted.
    #[default]
    Plain,
    /// An overlayfs upper directory. A character device 0:0, or an empty
    /// file with the `overlay.whiteout` xattr, is a deleted path and becomes
    /// `.wh.NAME`. A directory whose `trusted.overlay.opaque` or
    /// `user.overlay.opaque` xattr is `y` hides the lower content, so it gets
    /// a `.wh..wh..opq` entry.
    Overlay,
}

/// Options of [`write_layer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Compression of the blob.
    pub compression: Compression,
    /// Compression level; `None` takes [`Compression::default_level`].
    pub level: Option<i32>,
    /// When set, every mtime later than this many seconds since the epoch is
    /// clamped to it, as reproducible builds use `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
    /// The encoding of deletions in the directory.
    pub kind: DiffKind,
    /// The id map of the user namespace that wrote the directory. When set,
    /// each owner is recorded as the container id that the host owner
    /// appears as, and a host id outside the map is an error.
    pub id_map: Option<IdMap>,
}

/// Bytes copied per read from a source file.
const COPY_BUFFER: usize = 64 * 1024;

/// Writes `dir` as a layer into `sink` and returns its descriptor.
///
/// One streaming pass: tar → sha256 (diff ID) → compressor → sha256 and byte
/// count (digest and size) → `sink`. Memory stays bounded whatever the size
/// of the directory: the walk holds one directory listing per level and the
/// compressor a fixed number of blocks.
///
/// Entries are sorted by the bytes of their names, each directory before its
/// contents; the root directory itself has no entry. Headers carry uid, gid,
/// mode and mtime from the file and no user or group names. Files seen
/// twice by inode become tar hard links to the first name, sockets are
/// skipped, and overlayfs' own xattrs (`trusted.overlay.*`,
/// `user.overlay.*`) are never written, whatever the [`DiffKind`].
///
/// # Errors
///
/// - [`LayerError::InvalidLevel`] for a level out of range.
/// - [`LayerError::Source`] when the directory cannot be read.
/// - [`LayerError::SourceChanged`] when a file shrinks while it is read.
/// - [`LayerError::UnsupportedOverlay`] for an overlay upper directory that
///   uses `redirect_dir` or `metacopy`.
/// - [`LayerError::UnmappedOwner`] for an owner outside
///   [`WriteOptions::id_map`].
/// - [`LayerError::Write`] when compressing or writing to `sink` fails.
///
/// After an error `sink` may contain a partial blob.
pub fn write_layer(
    dir: &Path,
    options: &WriteOptions,
    sink: &mut dyn Write,
) -> Result<LayerDescriptor, LayerError> {
    let compression = options.compression;
    let level = checked_level(compression, options.level)?;
    let write_error = |source| LayerError::Write {
        compression,
        source,
    };

    check_layer_dir(dir)?;

    let blob = DigestWriter::new(sink);
    let (blob, diff_id, uncompressed_size) = write_stream(dir, options, level, blob)?;
    let (sink, digest, size) = blob.finish()?;
    sink.flush().map_err(write_error)?;

    Ok(LayerDescriptor {
        media_type: compression.media_type(),
        digest,
        size,
        diff_id,
        uncompressed_size,
    })
}

/// Like [`write_layer`], but hashes and writes the compressed stream on a
/// second thread, so that the calling thread only reads files, builds the
/// tar and hashes it. On two cores this keeps large layers of data that
/// compresses poorly from waiting on one thread's three passes.
///
/// # Errors
///
/// As for [`write_layer`].
pub fn write_layer_threaded(
    dir: &Path,
    options: &WriteOptions,
    sink: &mut (dyn Write + Send),
) -> Result<LayerDescriptor, LayerError> {
    let compression = options.compression;
    let level = checked_level(compression, options.level)?;
    check_layer_dir(dir)?;
    let write_error = |source| LayerError::Write {
        compression,
        source,
    };

    std::thread::scope(|scope| {
        let (sender, receiver) = sync_channel::<Vec<u8>>(PIPE_DEPTH);
        let output = scope.spawn(move || {
            let mut blob = DigestWriter::new(sink);
            for chunk in receiver {
                blob.write_all(&chunk).map_err(write_error)?;
            }
            let (sink, digest, size) = blob.finish()?;
            sink.flush().map_err(write_error)?;
            Ok::<_, LayerError>((digest, size))
        });

        let streamed = write_stream(dir, options, level, PipeWriter::new(sender)).and_then(
            |(pipe, diff_id, uncompressed_size)| {
                pipe.finish()
                    .map(|()| (diff_id, uncompressed_size))
                    .map_err(write_error)
            },
        );
        // The pipe is gone now, on success and failure alike, so the
        // output thread ends.
        let written = output.join().unwrap_or_else(|_| {
            Err(write_error(io::Error::other(
                "the thread that writes the layer blob panicked",
            )))
        });
        match (streamed, written) {
            (Ok((diff_id, uncompressed_size)), Ok((digest, size))) => Ok(LayerDescriptor {
                media_type: compression.media_type(),
                digest,
                size,
                diff_id,
                uncompressed_size,
            }),
            // A failed blob write closes the pipe, which the stream then
            // reports as well; the blob's error is the cause.
            (_, Err(error)) => Err(error),
            (Err(error), Ok(_)) => Err(error),
        }
    })
}

/// Returns the diff ID that [`write_layer`] would give `dir` with
/// `options`, and the length of the tar stream in bytes. The stream is
/// built and hashed but written nowhere; [`WriteOptions::compression`] and
/// [`WriteOptions::level`] do not change the result.
///
/// # Errors
///
/// As for [`write_layer`], except that nothing is compressed or written.
pub fn layer_diff_id(
    dir: &Path,
    options: &WriteOptions,
) -> Result<(oci_spec::image::Digest, u64), LayerError> {
    check_layer_dir(dir)?;
    let options = WriteOptions {
        compression: Compression::None,
        level: None,
        ..options.clone()
    };
    let level = checked_level(options.compression, None)?;
    let (_, diff_id, size) = write_stream(dir, &options, level, io::sink())?;
    Ok((diff_id, size))
}

/// Chunks in flight between the tar thread and the blob thread.
const PIPE_DEPTH: usize = 8;

/// Bytes collected before a chunk goes to the blob thread.
const PIPE_CHUNK: usize = 256 * 1024;

/// Collects written bytes into chunks and sends them to another thread.
struct PipeWriter {
    sender: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
}

impl PipeWriter {
    fn new(sender: SyncSender<Vec<u8>>) -> PipeWriter {
        PipeWriter {
            sender,
            chunk: Vec::with_capacity(PIPE_CHUNK),
        }
    }

    fn send_chunk(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(PIPE_CHUNK));
        self.sender.send(chunk).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the thread that writes the layer blob stopped",
            )
        })
    }

    /// Sends what is left; dropping the writer then ends the stream.
    fn finish(mut self) -> io::Result<()> {
        self.send_chunk()
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.chunk.extend_from_slice(buf);
        if self.chunk.len() >= PIPE_CHUNK {
            self.send_chunk()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks that `dir` is a directory.
fn check_layer_dir(dir: &Path) -> Result<(), LayerError> {
    let root = fs::metadata(dir).map_err(|source| LayerError::Source {
        path: dir.to_path_buf(),
        action: "open the layer directory",
        source,
    })?;
    if !root.is_dir() {
        return Err(LayerError::Source {
            path: dir.to_path_buf(),
            action: "open the layer directory",
            source: io::Error::from(io::ErrorKind::NotADirectory),
        });
    }
    Ok(())
}

/// Walks `dir` into a tar stream, hashes it (the diff ID) and compresses
/// it into `output`. Returns `output` after the compressed stream ended,
/// the diff ID and the length of the tar stream in bytes.
fn write_stream<W: Write>(
    dir: &Path,
    options: &WriteOptions,
    level: i32,
    output: W,
) -> Result<(W, oci_spec::image::Digest, u64), LayerError> {
    let compression = options.compression;
    let write_error = |source| LayerError::Write {
        compression,
        source,
    };
    let encoder = Encoder::new(compression, level, output).map_err(write_error)?;
    let mut walker = Walker {
        options,
        tar: TarWriter::new(DigestWriter::new(encoder)),
        hard_links: HashMap::new(),
        buffer: vec![0; COPY_BUFFER],
    };
    walker.write_directory(dir, b"")?;

    let diff_writer = walker.tar.finish().map_err(write_error)?;
    let (encoder, diff_id, tar_size) = diff_writer.finish()?;
    let output = encoder.finish().map_err(write_error)?;
    Ok((output, diff_id, tar_size))
}

struct Walker<'o, W: Write> {
    options: &'o WriteOptions,
    tar: TarWriter<W>,
    /// First tar name of each multiply linked inode, by (device, inode).
    hard_links: HashMap<(u64, u64), Vec<u8>>,
    buffer: Vec<u8>,
}

/// One directory entry with what the walk decided about it.
struct Child {
    path: PathBuf,
    /// Entry name within its directory as it goes into the tar.
    tar_name: Vec<u8>,
    metadata: Metadata,
    whiteout: bool,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<W: Write> Walker<'_, W> {
    fn write_error(&self, source: io::Error) -> LayerError {
        LayerError::Write {
            compression: self.options.compression,
            source,
        }
    }

    /// Writes the entries below `path`, whose tar name is `prefix` (empty
    /// for the root, else ending in `/`).
    fn write_directory(&mut self, path: &Path, prefix: &[u8]) -> Result<(), LayerError> {
        let mut children = self.list_children(path)?;
        children.sort_by(|left, right| left.tar_name.cmp(&right.tar_name));

        for child in children {
            let mut name = prefix.to_vec();
            name.extend_from_slice(&child.tar_name);
            self.write_child(&child, name)?;
        }
        Ok(())
    }

    fn list_children(&self, path: &Path) -> Result<Vec<Child>, LayerError> {
        let source = |action, source| LayerError::Source {
            path: path.to_path_buf(),
            action,
            source,
        };
        let overlay = self.options.kind == DiffKind::Overlay;

        let mut children = Vec::new();
        for entry in fs::read_dir(path).map_err(|error| source("read the directory", error))? {
            let entry = entry.map_err(|error| source("read the directory", error))?;
            let child_path = entry.path();
            let metadata =
                fs::symlink_metadata(&child_path).map_err(|error| LayerError::Source {
                    path: child_path.clone(),
                    action: "read the metadata of",
                    source: error,
                })?;
            let file_type = metadata.file_type();
            if file_type.is_socket() {
                tracing::debug!(path = ?child_path, "skipping a socket, which a layer cannot hold");
                continue;
            }

            let xattrs = read_xattrs(&child_path).map_err(|error| LayerError::Source {
                path: child_path.clone(),
                action: "read the xattrs of",
                source: error,
            })?;
            if overlay {
                reject_lower_references(&child_path, &xattrs)?;
            }
            let whiteout = overlay && is_overlay_whiteout(&metadata, &xattrs);

            let mut tar_name = Vec::new();
            if whiteout {
                tar_name.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
            }
            tar_name.extend_from_slice(entry.file_name().as_bytes());
            children.push(Child {
                path: child_path,
                tar_name,
                metadata,
                whiteout,
                xattrs,
            });
        }
        Ok(children)
    }

    fn write_child(&mut self, child: &Child, name: Vec<u8>) -> Result<(), LayerError> {
        let metadata = &child.metadata;
        let (uid, gid) = self.owner(child)?;
        let mut header = EntryHeader {
            name,
            kind: EntryKind::Directory,
            mode: metadata.mode() & 0o7777,
            uid: u64::from(uid),
            gid: u64::from(gid),
            mtime: self.clamp_mtime(metadata.mtime()),
            xattrs: child
                .xattrs
                .iter()
                .filter(|(name, _)| !is_overlay_xattr(name))
                .cloned()
                .collect(),
        };

        if child.whiteout {
            header.kind = EntryKind::Regular { size: 0 };
            header.mode &= 0o777;
            header.xattrs.clear();
            return self.write_header(&header);
        }

        let file_type = metadata.file_type();
        if !file_type.is_dir() && metadata.nlink() > 1 {
            let key = (metadata.dev(), metadata.ino());
            if let Some(first) = self.hard_links.get(&key) {
                header.kind = EntryKind::HardLink {
                    target: first.clone(),
                };
                header.xattrs.clear();
                return self.write_header(&header);
            }
            self.hard_links.insert(key, header.name.clone());
        }

        if file_type.is_dir() {
            header.name.push(b'/');
            self.write_header(&header)?;
            if self.options.kind == DiffKind::Overlay && is_opaque(&child.xattrs) {
                let mut marker = header.clone();
                marker.name.extend_from_slice(OPAQUE_WHITEOUT.as_bytes());
                marker.kind = EntryKind::Regular { size: 0 };
                marker.mode &= 0o777;
                marker.xattrs.clear();
                self.write_header(&marker)?;
            }
            let prefix = header.name.clone();
            return self.write_directory(&child.path, &prefix);
        }

        if file_type.is_file() {
            header.kind = EntryKind::Regular {
                size: metadata.len(),
            };
            return self.write_file(&child.path, &header, metadata.len());
        }

        let rdev = metadata.rdev();
        header.kind = if file_type.is_symlink() {
            let target = fs::read_link(&child.path).map_err(|source| LayerError::Source {
                path: child.path.clone(),
                action: "read the symlink",
                source,
            })?;
            EntryKind::Symlink {
                target: target.into_os_string().into_encoded_bytes(),
            }
        } else if file_type.is_char_device() {
            EntryKind::CharDevice {
                major: rustix::fs::major(rdev),
                minor: rustix::fs::minor(rdev),
            }
        } else if file_type.is_block_device() {
            EntryKind::BlockDevice {
                major: rustix::fs::major(rdev),
                minor: rustix::fs::minor(rdev),
            }
        } else if file_type.is_fifo() {
            EntryKind::Fifo
        } else {
            tracing::debug!(path = ?child.path, "skipping a file of unknown type");
            return Ok(());
        };
        self.write_header(&header)
    }

    /// Returns the uid and gid to record for `child`: its own, or the
    /// container ids they appear as through [`WriteOptions::id_map`].
    fn owner(&self, child: &Child) -> Result<(u32, u32), LayerError> {
        let (uid, gid) = (child.metadata.uid(), child.metadata.gid());
        let Some(map) = &self.options.id_map else {
            return Ok((uid, gid));
        };
        let container = |kind, id| {
            map.to_container(kind, id)
                .ok_or_else(|| LayerError::UnmappedOwner {
                    path: child.path.clone(),
                    kind,
                    id,
                })
        };
        Ok((container(IdKind::Uid, uid)?, container(IdKind::Gid, gid)?))
    }

    fn write_header(&mut self, header: &EntryHeader) -> Result<(), LayerError> {
        self.tar
            .write_header(header)
            .map_err(|source| self.write_error(source))
    }

    /// Writes a regular file's header and exactly `size` bytes of content.
    fn write_file(
        &mut self,
        path: &Path,
        header: &EntryHeader,
        size: u64,
    ) -> Result<(), LayerError> {
        let mut file = File::options()
            .read(true)
            .custom_flags(libc_o_nofollow())
            .open(path)
            .map_err(|source| LayerError::Source {
                path: path.to_path_buf(),
                action: "open",
                source,
            })?;
        self.write_header(header)?;

        let mut copied: u64 = 0;
        while copied < size {
            let wanted = usize::try_from(size - copied)
                .unwrap_or(usize::MAX)
                .min(self.buffer.len());
            let chunk = self.buffer.get_mut(..wanted).unwrap_or_default();
            let count = match file.read(chunk) {
                Ok(0) => {
                    return Err(LayerError::SourceChanged {
                        path: path.to_path_buf(),
                        expected: size,
                        actual: copied,
                    });
                }
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LayerError::Source {
                        path: path.to_path_buf(),
                        action: "read",
                        source,
                    });
                }
            };
            let data = self.buffer.get(..count).unwrap_or_default();
            if let Err(source) = self.tar.data_writer().write_all(data) {
                return Err(self.write_error(source));
            }
            copied += count as u64;
        }
        self.tar
            .pad(size)
            .map_err(|source| self.write_error(source))
    }

    fn clamp_mtime(&self, mtime: i64) -> i64 {
        match self.options.source_date_epoch {
            Some(epoch) => mtime.min(epoch),
            None => mtime,
        }
    }
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Returns whether an overlay upper entry records a deletion: a character device
/// 0:0, or an empty regular file carrying an `overlay.whiteout` xattr.
fn is_overlay_whiteout(metadata: &Metadata, xattrs: &[(Vec<u8>, Vec<u8>)]) -> bool {
    let file_type = metadata.file_type();
    if file_type.is_char_device() {
        return metadata.rdev() == 0;
    }
    file_type.is_file()
        && metadata.len() == 0
        && find_xattr(
            xattrs,
            &[b"trusted.overlay.whiteout", b"user.overlay.whiteout"],
        )
        .is_some()
}

/// Returns whether an overlay upper directory hides its lower content.
fn is_opaque(xattrs: &[(Vec<u8>, Vec<u8>)]) -> bool {
    matches!(
        find_xattr(xattrs, &[b"trusted.overlay.opaque", b"user.overlay.opaque"]),
        Some((_, b"y"))
    )
}

/// Rejects upper entries whose content partly lives in a lower layer, which
/// a layer diff cannot express.
fn reject_lower_references(path: &Path, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), LayerError> {
    let lower_reference = find_xattr(
        xattrs,
        &[
            b"trusted.overlay.redirect",
            b"user.overlay.redirect",
            b"trusted.overlay.metacopy",
            b"user.overlay.metacopy",
        ],
    );
    match lower_reference {
        Some((name, _)) => Err(LayerError::UnsupportedOverlay {
            path: path.to_path_buf(),
            xattr: String::from_utf8_lossy(name).into_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, options: &WriteOptions) -> (LayerDescriptor, Vec<u8>) {
        let mut blob = Vec::new();
        let descriptor = write_layer(dir, options, &mut blob).unwrap();
        (descriptor, blob)
    }

    fn names(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|entry| String::from_utf8_lossy(&entry.unwrap().path_bytes()).into_owned())
            .collect()
    }

    #[test]
    fn entries_sorted_directories_first() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("b")).unwrap();
        fs::write(dir.path().join("b/z"), "z").unwrap();
        fs::write(dir.path().join("a.txt"), "a").unwrap();
        fs::create_dir(dir.path().join("a")).unwrap();
        fs::write(dir.path().join("a/x"), "x").unwrap();
        let options = WriteOptions {
            compression: Compression::None,
            ..WriteOptions::default()
        };
        let (_, blob) = write(dir.path(), &options);
        assert_eq!(names(&blob), ["a/", "a/x", "a.txt", "b/", "b/z"]);
    }

    #[test]
    fn uncompressed_digests_match() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "content").unwrap();
        let options = WriteOptions {
            compression: Compression::None,
            ..WriteOptions::default()
        };
        let (descriptor, blob) = write(dir.path(), &options);
        assert_eq!(descriptor.digest, descriptor.diff_id);
        assert_eq!(descriptor.size, blob.len() as u64);
        assert_eq!(descriptor.media_type, MediaType::ImageLayer);
        assert_eq!(blob.len() % 512, 0);
        assert_eq!(descriptor.uncompressed_size, blob.len() as u64);
    }

    #[test]
    fn uncompressed_size_is_tar_length() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("zeros"), vec![0u8; 300_000]).unwrap();
        let options = WriteOptions::default();
        let (descriptor, blob) = write(dir.path(), &options);

        let mut tar = Vec::new();
        crate::layer::decompress(Box::new(&blob[..]))
            .unwrap()
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(descriptor.uncompressed_size, tar.len() as u64);
        assert!(descriptor.size < descriptor.uncompressed_size / 10);

        let mut threaded_blob = Vec::new();
        let threaded = write_layer_threaded(dir.path(), &options, &mut threaded_blob).unwrap();
        assert_eq!(threaded.uncompressed_size, tar.len() as u64);
    }

    #[test]
    fn mtime_clamped_to_epoch() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "content").unwrap();
        let options = WriteOptions {
            compression: Compression::None,
            source_date_epoch: Some(1000),
            ..WriteOptions::default()
        };
        let (_, blob) = write(dir.path(), &options);
        let mut archive = tar::Archive::new(&blob[..]);
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.header().mtime().unwrap(), 1000);
    }

    #[test]
    fn missing_directory_is_source_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut blob = Vec::new();
        let result = write_layer(
            &dir.path().join("absent"),
            &WriteOptions::default(),
            &mut blob,
        );
        assert!(matches!(result, Err(LayerError::Source { .. })));
    }

    #[test]
    fn invalid_level_rejected_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let mut blob = Vec::new();
        let options = WriteOptions {
            compression: Compression::Gzip,
            level: Some(42),
            ..WriteOptions::default()
        };
        let result = write_layer(dir.path(), &options, &mut blob);
        assert!(matches!(
            result,
            Err(LayerError::InvalidLevel { level: 42, .. })
        ));
        assert!(blob.is_empty());
    }

    fn own_map(uid_host: u32, gid_host: u32) -> IdMap {
        let range = |host| crate::layer::IdRange {
            container: 0,
            host,
            count: 1,
        };
        IdMap {
            uids: vec![range(uid_host)],
            gids: vec![range(gid_host)],
        }
    }

    #[test]
    fn id_map_records_container_owner() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "content").unwrap();
        let metadata = fs::metadata(dir.path().join("f")).unwrap();
        let options = WriteOptions {
            compression: Compression::None,
            id_map: Some(own_map(metadata.uid(), metadata.gid())),
            ..WriteOptions::default()
        };
        let (_, blob) = write(dir.path(), &options);
        let mut archive = tar::Archive::new(&blob[..]);
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(entry.header().uid().unwrap(), 0);
        assert_eq!(entry.header().gid().unwrap(), 0);
    }

    #[test]
    fn unmapped_owner_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "content").unwrap();
        let metadata = fs::metadata(&file).unwrap();
        let options = WriteOptions {
            compression: Compression::None,
            id_map: Some(own_map(metadata.uid().wrapping_add(1), metadata.gid())),
            ..WriteOptions::default()
        };
        let mut blob = Vec::new();
        let error = write_layer(dir.path(), &options, &mut blob).unwrap_err();
        match error {
            LayerError::UnmappedOwner { path, kind, id } => {
                assert_eq!(path, file);
                assert_eq!(kind, IdKind::Uid);
                assert_eq!(id, metadata.uid());
            }
            other => panic!("expected UnmappedOwner, got {other:?}"),
        }
    }

    use oci_spec::image::MediaType;
}
