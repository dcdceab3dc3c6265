//! Errors of the store. Every variant names the path, digest or reference
//! involved and keeps the underlying cause as its source.

use std::io;
use std::path::PathBuf;

/// A failure of a store operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store root could not be created or opened.
    #[error("cannot create the store root {}: {source}; pick a writable folder with --root or FORGE_ROOT", path.display())]
    CreateRoot {
        /// The root folder.
        path: PathBuf,
        /// The file system error.
        #[source]
        source: io::Error,
    },

    /// The root exists but is not an OCI image layout that forge can use.
    #[error("{} is not a forge store: {reason}", path.display())]
    InvalidLayout {
        /// The root folder or the file inside it that is wrong.
        path: PathBuf,
        /// The problem and the fix.
        reason: String,
    },

    /// A file system operation failed.
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        /// The operation, as a verb phrase ("read", "rename into place").
        action: &'static str,
        /// The file or folder involved.
        path: PathBuf,
        /// The file system error.
        #[source]
        source: io::Error,
    },

    /// A lock file could not be opened or locked.
    #[error("failed to lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The file system error.
        #[source]
        source: io::Error,
    },

    /// A digest string could not be parsed.
    #[error(
        "invalid digest {digest:?}: {reason}; expected sha256: followed by 64 lowercase hex digits"
    )]
    InvalidDigest {
        /// The digest as given.
        digest: String,
        /// The parse error.
        reason: String,
    },

    /// The digest uses an algorithm other than sha256.
    #[error("unsupported digest algorithm in {digest}; the store keeps sha256 blobs only")]
    UnsupportedDigest {
        /// The digest as given.
        digest: String,
    },

    /// Written content does not match the digest the caller expected.
    #[error(
        "content does not match the expected digest {expected}: the written {size} bytes hash to {actual}"
    )]
    DigestMismatch {
        /// The digest the caller expected.
        expected: String,
        /// The digest of the bytes written.
        actual: String,
        /// The number of bytes written.
        size: u64,
    },

    /// Written or stored content has a different size than expected.
    #[error("blob {digest} has {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The blob digest.
        digest: String,
        /// The expected size in bytes.
        expected: u64,
        /// The actual size in bytes.
        actual: u64,
    },

    /// No blob with this digest is in the store.
    #[error("blob {digest} is not in the store (looked for {})", path.display())]
    BlobNotFound {
        /// The blob digest.
        digest: String,
        /// The path the blob would have.
        path: PathBuf,
    },

    /// A stored blob does not hash to its name.
    #[error("blob {} is corrupt: {reason}; run `forge store check --repair` to remove it", path.display())]
    BlobCorrupt {
        /// The blob digest.
        digest: String,
        /// The blob file.
        path: PathBuf,
        /// The problem found.
        reason: String,
    },

    /// A JSON document could not be serialised.
    #[error("failed to encode {what} as JSON: {source}")]
    EncodeJson {
        /// The document being encoded.
        what: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// A JSON document in the store could not be parsed.
    #[error("failed to parse {what} at {} as JSON: {source}", path.display())]
    DecodeJson {
        /// The document being read (a digest, "index.json", a step key).
        what: String,
        /// The file that contains it.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// An image name cannot be stored.
    #[error("invalid image name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// The rule it breaks.
        reason: String,
    },

    /// No image matches the reference.
    #[error("{}", not_found_message(reference, suggestion.as_deref()))]
    NameNotFound {
        /// The reference as given.
        reference: String,
        /// The closest existing name, if one is close enough.
        suggestion: Option<String>,
    },

    /// A short image id matches more than one image.
    #[error("image id {prefix} is ambiguous: it matches {}; give more digits", candidates.join(", "))]
    AmbiguousId {
        /// The id prefix as given.
        prefix: String,
        /// The image ids that start with it.
        candidates: Vec<String>,
    },

    /// A reference is syntactically wrong.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// The problem found.
        reason: String,
    },

    /// A name or manifest refers to a blob that is missing.
    #[error(
        "{what} refers to blob {digest}, which is not in the store; pull or build the image again"
    )]
    MissingBlob {
        /// The name or manifest that refers to the blob.
        what: String,
        /// The missing blob.
        digest: String,
    },

    /// A manifest or index blob has content that forge cannot walk.
    #[error("manifest {digest} cannot be read: {reason}; run `forge store check --repair`")]
    BadManifest {
        /// The manifest digest.
        digest: String,
        /// The problem found.
        reason: String,
    },

    /// A layer could not be unpacked.
    #[error("failed to unpack layer {digest} into {}: {source}", path.display())]
    Unpack {
        /// The layer blob digest.
        digest: String,
        /// The folder being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// An unpacked layer does not match its diff id.
    #[error("layer {digest} unpacks to content with diff id {actual}, expected {expected}")]
    DiffIdMismatch {
        /// The layer blob digest.
        digest: String,
        /// The diff id the caller gave.
        expected: String,
        /// The sha256 of the uncompressed stream.
        actual: String,
    },
}

fn not_found_message(reference: &str, suggestion: Option<&str>) -> String {
    match suggestion {
        Some(name) => format!("no image named {reference}; did you mean {name}?"),
        None => format!("no image named {reference}"),
    }
}

impl StoreError {
    /// Builds an [`StoreError::Io`] for `action` on `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
