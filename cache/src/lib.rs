//! The local store: blobs by sha256, unpacked layers, the step-cache index,
//! image names, locking and garbage collection, plus the layer format
//! (directory diff to tar stream and safe extraction).

pub mod archive;
pub mod layer;
pub mod store;
