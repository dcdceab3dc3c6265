//! The layer format: a directory diff written as a compressed tar stream, and safe extraction.
//!
//! [`write_layer`] walks a directory in a stable order and writes it as a tar
//! stream that is hashed (the diff ID), compressed and hashed again (the blob
//! digest) in one pass. [`decompress`] detects the compression of a blob by its
//! magic bytes, and [`extract`] applies an uncompressed layer on top of a
//! directory, honouring whiteouts or keeping them as overlayfs markers, and
//! never writing outside that directory.
//!
//! Deletions travel in the OCI whiteout form: an empty file `.wh.NAME` removes
//! `NAME` from the layers below, and an empty file `.wh..wh..opq` in a directory
//! hides everything the lower layers hold in that directory.

mod compression;
mod digest;
mod extract;
mod fsutil;
mod idmap;
mod pax;
mod reader;
mod writer;

use std::fmt;
use std::io;
use std::path::PathBuf;

pub use compression::{compress, decompress};
pub use extract::{
    ExtractOptions, ExtractSummary, WhiteoutMode, extract, extract_recording_owners,
};
pub use idmap::{IdKind, IdMap, IdRange, RecordedOwner};
pub use oci_spec::image::{Digest, MediaType};
pub use writer::{DiffKind, WriteOptions, layer_diff_id, write_layer, write_layer_threaded};

/// Prefix of a whiteout entry: `.wh.NAME` deletes `NAME` from the lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// Name of the entry that marks its directory as opaque: the lower layers'
/// content of that directory is hidden.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Gzip (RFC 1952), written as independently compressed deflate blocks so
    /// that large layers use every core.
    #[default]
    Gzip,
    /// Zstandard, written with zstd's multithreaded mode.
    Zstd,
    /// No compression: the blob is the tar stream itself.
    None,
}

impl Compression {
    /// Returns the OCI media type of a layer blob with this compression.
    pub fn media_type(self) -> MediaType {
        match self {
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
            Compression::None => MediaType::ImageLayer,
        }
    }

    /// Returns the level used when [`WriteOptions::level`] is `None`.
    pub fn default_level(self) -> i32 {
        match self {
            Compression::Gzip => 6,
            Compression::Zstd => 3,
            Compression::None => 0,
        }
    }

    /// Returns the inclusive range of accepted levels.
    pub fn level_range(self) -> (i32, i32) {
        match self {
            Compression::Gzip => (0, 9),
            Compression::Zstd => {
                let range = zstd::compression_level_range();
                (*range.start(), *range.end())
            }
            Compression::None => (0, 0),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        })
    }
}

/// The description of a written layer, as a manifest and an image config need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDescriptor {
    /// Media type of the blob, which names its compression.
    pub media_type: MediaType,
    /// `sha256:` digest of the blob as written to the sink (compressed).
    pub digest: Digest,
    /// Size of the blob in bytes (compressed).
    pub size: u64,
    /// `sha256:` digest of the uncompressed tar stream, for the image config's `rootfs.diff_ids`.
    pub diff_id: Digest,
    /// Length of the uncompressed tar stream in bytes.
    pub uncompressed_size: u64,
}

/// Errors of writing, decompressing and extracting layers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// Reading a file of the source directory failed.
    #[error("failed to {action} `{path}` while writing a layer")]
    Source {
        /// The file or directory that could not be read.
        path: PathBuf,
        /// The failed operation, such as "read the directory".
        action: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A regular file shrank while it was being written into the layer.
    #[error(
        "`{path}` changed while it was being written into the layer: expected {expected} bytes, read {actual}; make sure nothing writes to the directory during the snapshot"
    )]
    SourceChanged {
        /// The file that changed.
        path: PathBuf,
        /// Size seen when the tar header was written.
        expected: u64,
        /// Bytes that could be read.
        actual: u64,
    },

    /// The overlay upper directory uses a feature whose content lives in a lower layer.
    #[error(
        "`{path}` carries the overlay xattr `{xattr}`, so part of its content is in a lower layer; mount the overlay with `redirect_dir=off,metacopy=off`"
    )]
    UnsupportedOverlay {
        /// The file or directory carrying the xattr.
        path: PathBuf,
        /// The xattr name, such as `trusted.overlay.redirect`.
        xattr: String,
    },

    /// A file of a rootless step belongs to a host id that the user
    /// namespace's id map does not contain, so it has no owner inside the
    /// container.
    #[error(
        "`{path}` belongs to host {kind} {id}, which the build's user namespace does not map (the caller and the ranges of /etc/subuid and /etc/subgid); change its owner or build as root"
    )]
    UnmappedOwner {
        /// The file.
        path: PathBuf,
        /// Whether `id` is a uid or a gid.
        kind: IdKind,
        /// The host id.
        id: u32,
    },

    /// The compression level is outside the range the compressor accepts.
    #[error("invalid {compression} level {level}: use a level from {min} to {max}")]
    InvalidLevel {
        /// The compression the level was given for.
        compression: Compression,
        /// The rejected level.
        level: i32,
        /// Lowest accepted level.
        min: i32,
        /// Highest accepted level.
        max: i32,
    },

    /// Writing the tar stream, compressing it or writing to the sink failed.
    #[error("failed to write the {compression} layer stream")]
    Write {
        /// Compression of the stream.
        compression: Compression,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Reading or decompressing the layer stream failed.
    #[error("failed to read the layer stream")]
    Read {
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The tar stream is malformed.
    #[error("invalid tar stream{}", entry_suffix(.entry))]
    InvalidTar {
        /// The last entry read before the failure, if any.
        entry: Option<String>,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A tar entry would escape the destination or is otherwise unsafe; nothing
    /// of that entry was written.
    #[error("rejected tar entry `{entry}`: {reason}")]
    UnsafeEntry {
        /// The entry name as it appears in the tar stream.
        entry: String,
        /// The reason for the rejection.
        reason: String,
    },

    /// A tar entry has a type that a layer cannot contain.
    #[error(
        "tar entry `{entry}` has unsupported type {kind:?}; layers hold files, directories, links, devices and fifos only"
    )]
    UnsupportedEntry {
        /// The entry name.
        entry: String,
        /// The tar type flag byte.
        kind: char,
    },

    /// A hard link names a target that does not exist in the destination.
    #[error(
        "hard link `{entry}` points to `{target}`, which is neither in this layer nor below it"
    )]
    MissingLinkTarget {
        /// The hard link entry name.
        entry: String,
        /// The link target name.
        target: String,
    },

    /// Applying a tar entry to the destination failed.
    #[error("failed to {action} for tar entry `{entry}`")]
    Extract {
        /// The entry name.
        entry: String,
        /// The failed operation, such as "create the file".
        action: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// An overlayfs marker for a whiteout entry could not be created in
    /// [`WhiteoutMode::Overlay`].
    #[error("failed to create the overlayfs {marker} for tar entry `{entry}`; {hint}")]
    OverlayMarker {
        /// The whiteout entry name.
        entry: String,
        /// The marker, such as "whiteout (a character device 0:0)".
        marker: &'static str,
        /// The requirement of the marker, as a suggested fix.
        hint: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The destination directory cannot be opened.
    #[error("cannot open the extraction destination `{path}`; create it as a directory first")]
    Destination {
        /// The destination path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A computed digest could not be turned into an OCI digest.
    #[error("invalid digest `{value}`")]
    Digest {
        /// The digest text.
        value: String,
        /// The underlying error.
        #[source]
        source: oci_spec::OciSpecError,
    },
}

fn entry_suffix(entry: &Option<String>) -> String {
    match entry {
        Some(name) => format!(" after entry `{name}`"),
        None => String::new(),
    }
}

/// Converts tar name bytes into text for messages, replacing invalid UTF-8.
pub(crate) fn display_name(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
