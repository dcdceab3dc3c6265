//! Errors of the registry client.
//!
//! Every variant names the registry, repository, digest or URL involved.
//! URLs never carry credentials, because the client sends credentials only
//! in headers and request bodies.

use std::io;

use crate::credentials::CredentialError;

/// A failed registry operation.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry returned an unexpected HTTP status.
    #[error("{method} {url} failed with HTTP {status}{}", detail(message))]
    Status {
        /// The HTTP method.
        method: String,
        /// The request URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's `errors[].message` texts, or the start of its body.
        message: String,
    },

    /// The registry or its token service rejected the credentials or the
    /// requested access.
    #[error(
        "access to `{scope}` on registry {registry} was denied (HTTP {status}){}; check the \
         repository name and log in with `forge login {registry}`",
        detail(message)
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The access scopes requested, such as `repository:app:pull`.
        scope: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's or token service's error message.
        message: String,
    },

    /// The request could not be sent or its response not received, after
    /// all retries.
    #[error("{method} {url} failed after {attempts} attempt(s)")]
    Transport {
        /// The HTTP method.
        method: String,
        /// The request URL.
        url: String,
        /// How many times the request was sent.
        attempts: u32,
        /// The last cause.
        #[source]
        source: reqwest::Error,
    },

    /// The connection broke while a response body was read, after all
    /// resumptions.
    #[error("reading the response of {url} failed after {attempts} attempt(s)")]
    BodyRead {
        /// The request URL.
        url: String,
        /// How many times the body was requested.
        attempts: u32,
        /// The last cause.
        #[source]
        source: io::Error,
    },

    /// Content did not hash to the digest it was requested or pushed by.
    #[error("digest mismatch for {url}: expected {expected}, computed {actual}")]
    DigestMismatch {
        /// The URL or blob that was checked.
        url: String,
        /// The digest the caller or registry named.
        expected: String,
        /// The digest of the bytes received or read.
        actual: String,
    },

    /// Content had a different size than its descriptor states.
    #[error("size mismatch for {url}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The URL or blob that was checked.
        url: String,
        /// The size the caller or registry named.
        expected: u64,
        /// The number of bytes received or read.
        actual: u64,
    },

    /// The registry sent something this client cannot use.
    #[error("invalid response from {url}: {reason}")]
    InvalidResponse {
        /// The request URL.
        url: String,
        /// The problem found.
        reason: String,
    },

    /// An index has no manifest for the requested platform.
    #[error("{reference} has no manifest for platform {platform}; it has: {available}")]
    NoPlatform {
        /// The index reference.
        reference: String,
        /// The requested platform.
        platform: String,
        /// The platforms the index lists.
        available: String,
    },

    /// A digest uses an algorithm this client cannot compute.
    #[error("unsupported digest algorithm in `{digest}`; use sha256 or sha512")]
    UnsupportedDigest {
        /// The digest.
        digest: String,
    },

    /// A token service URL uses plain HTTP for a host that is not allowed it.
    #[error(
        "registry {registry} sends credentials to the plain HTTP token service {realm}; \
         mark that host insecure only if this is intended"
    )]
    InsecureRealm {
        /// The registry host.
        registry: String,
        /// The token service URL.
        realm: String,
    },

    /// Writing to the caller's sink failed.
    #[error("failed to write blob {digest} from {url}")]
    Sink {
        /// The blob digest.
        digest: String,
        /// The request URL.
        url: String,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// Reading the caller's data for an upload failed.
    #[error("failed to read the data of blob {digest} for {repository}")]
    Source {
        /// The blob digest.
        digest: String,
        /// The target repository.
        repository: String,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// The HTTP client could not be built, for example from a bad
    /// certificate.
    #[error("failed to set up the HTTP client: {reason}")]
    Setup {
        /// What failed.
        reason: String,
    },

    /// Credentials could not be looked up.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
}

fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}
