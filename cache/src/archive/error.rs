//! Errors of importing, saving and loading images.

use std::io;
use std::path::PathBuf;

use crate::layer::LayerError;
use crate::store::StoreError;

/// The result type of this module.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// A failure of an import, save or load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The root file system tar could not be read, checked or turned into a layer.
    #[error("failed to import the root file system tar: {source}")]
    Import {
        /// The layer error, which names the offending tar entry where there is one.
        #[source]
        source: LayerError,
    },

    /// A layer of the store could not be decompressed while saving or loading.
    #[error("failed to read layer {digest}: {source}")]
    Layer {
        /// The layer blob digest.
        digest: String,
        /// The layer error.
        #[source]
        source: LayerError,
    },

    /// A plain tar file of an archive could not be stored gzip-compressed.
    #[error("failed to compress entry `{entry}` of {}: {source}", archive.display())]
    Compress {
        /// The archive path.
        archive: PathBuf,
        /// The entry name.
        entry: String,
        /// The layer error.
        #[source]
        source: LayerError,
    },

    /// A file system operation outside the store failed.
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// The operation, as a verb phrase ("create", "rename into place").
        action: &'static str,
        /// The file or folder involved.
        path: PathBuf,
        /// The file system error.
        #[source]
        source: io::Error,
    },

    /// A config change passed to an import is invalid.
    #[error("invalid config change {change}: {reason}")]
    InvalidChange {
        /// The change as given.
        change: String,
        /// The rule it breaks and the fix.
        reason: String,
    },

    /// The file or folder is neither an OCI layout nor a docker-archive.
    #[error(
        "{} is not an image archive: {reason}; expected an OCI layout (oci-layout and index.json) or a docker-archive (manifest.json)",
        path.display()
    )]
    UnknownFormat {
        /// The archive path.
        path: PathBuf,
        /// The content found instead.
        reason: String,
    },

    /// An archive entry would lead outside the archive or is not allowed in one.
    #[error("rejected entry `{entry}` of {}: {reason}", archive.display())]
    UnsafeEntry {
        /// The archive path.
        archive: PathBuf,
        /// The entry name as it appears in the archive.
        entry: String,
        /// The reason for the rejection.
        reason: String,
    },

    /// The archive content contradicts itself: a missing file, bad JSON or
    /// a document of the wrong shape.
    #[error("invalid archive {}: {reason}", archive.display())]
    InvalidArchive {
        /// The archive path.
        archive: PathBuf,
        /// The problem, naming the entry involved.
        reason: String,
    },

    /// An archive file does not hash to the digest that names it.
    #[error(
        "entry `{entry}` of {} has digest {actual} and {actual_size} bytes, expected {expected} with {expected_size} bytes; the archive is corrupt",
        archive.display()
    )]
    DigestMismatch {
        /// The archive path.
        archive: PathBuf,
        /// The entry name.
        entry: String,
        /// The digest that the name or a descriptor gives.
        expected: String,
        /// The size that a descriptor gives, or the actual size when none does.
        expected_size: u64,
        /// The digest of the content.
        actual: String,
        /// The size of the content.
        actual_size: u64,
    },

    /// A layer does not decompress to the diff id its image config lists.
    #[error(
        "layer `{entry}` of {} decompresses to diff id {actual}, but the image config lists {expected}; the archive is corrupt",
        archive.display()
    )]
    DiffIdMismatch {
        /// The archive path.
        archive: PathBuf,
        /// The layer entry name.
        entry: String,
        /// The diff id from the config.
        expected: String,
        /// The diff id of the content.
        actual: String,
    },

    /// The name callback rejected an archive's image name.
    #[error("invalid image name `{name}` in {}: {reason}", archive.display())]
    InvalidName {
        /// The archive path.
        archive: PathBuf,
        /// The name as the archive gives it.
        name: String,
        /// The callback's reason.
        reason: String,
    },

    /// An image cannot be written in the requested format.
    #[error("cannot save `{reference}` as {format}: {reason}")]
    Unsupported {
        /// The reference as given.
        reference: String,
        /// The archive format.
        format: &'static str,
        /// The reason and the fix.
        reason: String,
    },

    /// The save destination already exists.
    #[error(
        "{} already exists; remove it or pick another destination",
        path.display()
    )]
    DestinationExists {
        /// The destination path.
        path: PathBuf,
    },

    /// A save was asked for no image at all.
    #[error("no image to save; name at least one image")]
    NothingToSave,
}

impl ArchiveError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ArchiveError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
