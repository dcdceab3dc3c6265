//! The on-disk store: an OCI image layout plus forge's own indexes.
//!
//! A store root is a valid OCI image layout, so `skopeo` and `umoci` read
//! it directly (`skopeo inspect oci:ROOT:NAME`):
//!
//! ```text
//! ROOT/
//!   oci-layout                 {"imageLayoutVersion":"1.0.0"}
//!   index.json                 one manifest descriptor per image name, plus
//!                              digest references and unnamed entries for
//!                              images no name reaches
//!   blobs/sha256/HEX           content, named by its sha256
//!   forge/                     ignored by OCI readers
//!     locks/                   store.lock, index.lock, unpack-HEX.lock
//!     tmp/                     files and folders being written
//!     steps/HEX.json           step-cache entries, HEX = sha256 of the key
//!     unpacked/HEX/            unpacked layers, HEX = diff id
//!     layer-sizes/HEX          uncompressed tar length of a layer in bytes,
//!                              HEX = diff id
//! ```
//!
//! Invariants: a file under `blobs/sha256/` is complete and was checked
//! against its name when written; a folder under `forge/unpacked/` is a
//! complete extraction. Everything is written under `forge/tmp/` first and
//! renamed into place, so a crash leaves only entries in `forge/tmp/`,
//! which `check --repair` and `prune` remove.
//!
//! Names are `index.json` descriptors annotated with
//! `org.opencontainers.image.ref.name`. Changes to `index.json` happen under
//! an exclusive lock and replace the file atomically. Writers hold a shared
//! store lock while `prune` and `check` hold it exclusive; a caller that
//! imports several blobs before naming them holds a [`StoreLease`].

mod blobs;
mod check;
mod containers;
mod error;
mod graph;
mod lock;
mod names;
mod prune;
mod root;
mod sizes;
pub mod sources;
mod steps;
mod unpacked;

use std::path::{Path, PathBuf};

pub use blobs::{BlobInfo, BlobReader, BlobWriter, parse_digest};
pub use check::{CheckProblem, CheckReport, ProblemKind, remove_tree};
pub use error::{Result, StoreError};
pub use lock::StoreLease;
pub use names::{
    REF_NAME_ANNOTATION, REPOSITORY_ANNOTATION, SOURCE_INDEX_ANNOTATION, source_index,
};
pub use prune::{PruneOptions, PruneReport};
pub use root::default_root;
pub use steps::{PendingLayer, StepEntry, StepRecord};
pub use unpacked::OwnerSetter;

/// An opened store root. Cheap to clone; every method may be called from
/// several threads and processes at once.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Returns the root folder of the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("forge").join("tmp")
    }

    fn locks_dir(&self) -> PathBuf {
        self.root.join("forge").join("locks")
    }

    fn steps_dir(&self) -> PathBuf {
        self.root.join("forge").join("steps")
    }

    fn unpacked_root(&self) -> PathBuf {
        self.root.join("forge").join("unpacked")
    }

    fn layer_sizes_dir(&self) -> PathBuf {
        self.root.join("forge").join("layer-sizes")
    }

    /// Returns the folder that keeps the folders of `RUN --mount=type=cache`
    /// between builds, one per cache, each with a `NAME.lock` beside it.
    pub fn cache_mounts_dir(&self) -> PathBuf {
        self.root.join("forge").join("cache-mounts")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }
}
