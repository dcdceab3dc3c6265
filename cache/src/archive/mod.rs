//! Images in and out of the store: importing a root file system tar as a
//! one-layer image, and saving and loading images as an OCI archive, an OCI
//! layout folder or a docker-archive.
//!
//! Every writer holds a [`crate::store::StoreLease`] until the image is
//! named, so `prune` never removes a blob that an import is about to name.
//! An import or load that fails leaves no name behind, only unreferenced
//! blobs and entries under `forge/tmp/` that `prune` and `check --repair`
//! remove. A save writes a temporary file or folder next to the destination
//! and renames it into place, so a failed save leaves nothing there.
//!
//! The cache crate does not parse image references: [`save`] takes names as
//! the store keeps them, and [`load`] takes a callback that turns an
//! archive's `RepoTags` or `ref.name` entry into a store name.

mod config;
mod error;
mod import;
mod load;
mod oci;
mod save;
mod source;

pub use config::{ConfigChange, Platform};
pub use error::{ArchiveError, Result};
pub use import::{
    ImportOptions, ImportedImage, RootlessOwners, import_rootfs, import_rootfs_with_owners,
};
pub use load::{LoadedImage, load};
pub use save::{ArchiveFormat, save, save_to_writer};

/// The annotation that containerd and `docker save` put the full image name in.
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";
