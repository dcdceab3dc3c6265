//! The OCI distribution protocol: name resolution, authentication, and
//! pulling and pushing manifests and blobs.
