//! The OCI distribution protocol: name resolution, authentication, and
//! pulling and pushing manifests and blobs.
//!
//! - [`reference`]: image references with Docker's normalisation rules.
//! - [`credentials`]: credentials from the Docker client configuration and
//!   credential helpers.
//! - [`client`]: the registry client.

pub mod client;
pub mod credentials;
pub mod reference;

pub use client::{
    BlobPush, BlobSink, Client, ClientConfig, ClientError, Manifest, Platform, ResolvedManifest,
};
pub use credentials::{Credential, CredentialError, CredentialProvider, DockerConfig};
pub use reference::{Reference, ReferenceError};
