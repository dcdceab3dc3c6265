//! `import_rootfs`: a root file system tar as a one-layer image.
//!
//! The tar is extracted into a work folder of the store with
//! [`layer::extract`], and the folder is written back with
//! [`layer::write_layer`]. Extraction applies the extractor's safety rules.
//! A `..` component or a hard link to a path outside the tree rejects the
//! entry, a leading `/` is dropped, and a symlink on the way is resolved
//! inside the tree. Writing the folder back normalises the layer: sorted
//! entries, and ustar and PAX headers without user names. The tar streams
//! through both steps, so memory stays bounded whatever its size. The
//! extracted folder then becomes the layer's unpacked form, so a build on
//! the imported image needs no extraction.
//!
//! Without root, extraction cannot set owners or create device nodes. With
//! [`RootlessOwners`] the owners are set from inside a user namespace, and
//! the layer records the container ids they stand for. Without it every
//! file belongs to the caller, so the layer records root. Device nodes are
//! skipped either way.

use std::fs;
use std::io::{self, Read};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::{Descriptor, Digest, MediaType};
use serde_json::{Map, Value, json};

use super::config::{ConfigChange, Platform, apply_changes, rfc3339};
use super::error::{ArchiveError, Result};
use crate::layer::{self, Compression, DiffKind, ExtractOptions, LayerDescriptor, WriteOptions};
use crate::store::Store;

/// Options of [`import_rootfs`].
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The name to give the image, in the form the store keeps
    /// (`name/app:v1`). With `None` the image is kept as an unnamed image,
    /// found by its id, until it is tagged or `prune` removes it.
    pub name: Option<String>,
    /// Changes applied in order to the empty config, as
    /// `docker import --change` does.
    pub changes: Vec<ConfigChange>,
    /// Compression of the layer blob.
    pub compression: Compression,
    /// Creation time in seconds since the Unix epoch, for the config and
    /// its history entry; `None` takes the current time.
    pub created: Option<i64>,
    /// The platform the config declares; the default is `linux/amd64`.
    pub platform: Platform,
    /// The comment of the history entry; `None` writes `Imported from tar`.
    pub comment: Option<String>,
}

/// The user namespace through which an import without root keeps the
/// tar's owners. `set_owners` gives the extracted files their owners from
/// inside the namespace, and the layer maps them back through `id_map`.
pub struct RootlessOwners<'a> {
    /// Sets the owners of the extracted folder, as
    /// [`Store::ensure_unpacked_with_owners`] takes it.
    pub set_owners: &'a crate::store::OwnerSetter<'a>,
    /// The id map of that user namespace.
    pub id_map: layer::IdMap,
}

/// The blobs that [`import_rootfs`] stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedImage {
    /// The OCI image manifest, without annotations.
    pub manifest: Descriptor,
    /// The image id: the digest of the config.
    pub image_id: Digest,
    /// The one layer.
    pub layer: LayerDescriptor,
}

/// Imports a root file system tar, gzip- or zstd-compressed or plain (the
/// content decides), as a one-layer image and names it
/// [`ImportOptions::name`], or keeps it unnamed without one.
///
/// The name is set only after the layer, the config and the manifest are
/// stored. A store lease is held until then, so a concurrent `prune`
/// removes nothing of the image. A failed import leaves no name, only
/// unreferenced blobs and `forge/tmp/` entries that `prune` and
/// `check --repair` remove.
///
/// Owners are kept only when the process may change them (root). Without
/// root every file belongs to the caller and device nodes are skipped.
///
/// # Errors
/// [`ArchiveError::Import`] when the tar is malformed or has an unsafe
/// entry (the source names the entry); [`ArchiveError::InvalidChange`] for
/// a bad config change; [`ArchiveError::Store`] when writing to the store
/// or naming the image fails.
pub fn import_rootfs(
    store: &Store,
    reader: impl Read + Send,
    options: &ImportOptions,
) -> Result<ImportedImage> {
    import_rootfs_with_owners(store, reader, options, None)
}

/// Imports like [`import_rootfs`]. Without root and with `owners`, the
/// layer keeps the owners the tar records, as [`RootlessOwners`] describes.
///
/// # Errors
/// As [`import_rootfs`]; a failure of [`RootlessOwners::set_owners`] is an
/// [`ArchiveError::Import`].
pub fn import_rootfs_with_owners(
    store: &Store,
    reader: impl Read + Send,
    options: &ImportOptions,
    owners: Option<RootlessOwners<'_>>,
) -> Result<ImportedImage> {
    // Checked before the long part, so a bad change fails at once.
    let mut config_object = Map::new();
    apply_changes(&mut config_object, &options.changes)?;

    let _lease = store.lease()?;
    let work = store.create_work_dir()?;
    // Folders the tar does not list get the newest mtime of its entries,
    // and the image's creation time caps every mtime, so the same tar gives
    // the same layer whenever it is imported.
    let created_seconds = options.created.unwrap_or_else(now);
    let owners = owners.filter(|_| !rustix::process::geteuid().is_root());
    let result = write_rootfs_layer(
        store,
        reader,
        &work,
        options.compression,
        created_seconds,
        owners,
    );
    let layer = match result {
        Ok(layer) => layer,
        Err(error) => {
            remove_work_dir(&work);
            return Err(error);
        }
    };
    if let Err(error) = store.adopt_unpacked(&layer.diff_id, &work) {
        // The unpacked form only saves a later extraction, so the import goes on.
        tracing::debug!(%error, "imported tree not kept as the unpacked layer");
    }
    remove_work_dir(&work);

    let created = rfc3339(created_seconds);
    let comment = options.comment.as_deref().unwrap_or("Imported from tar");
    let mut config = json!({
        "created": created,
        "architecture": options.platform.architecture,
        "os": options.platform.os,
        "config": Value::Object(config_object),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id.to_string()]},
        "history": [{"created": created, "created_by": "forge import", "comment": comment}],
    });
    if let (Some(variant), Some(object)) = (&options.platform.variant, config.as_object_mut()) {
        object.insert("variant".into(), json!(variant));
    }
    let config = store.put_json(&config, MediaType::ImageConfig)?;

    let layer_descriptor =
        Descriptor::new(layer.media_type.clone(), layer.size, layer.digest.clone());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageManifest.to_string(),
        "config": config,
        "layers": [layer_descriptor],
    });
    let manifest = store.put_json(&manifest, MediaType::ImageManifest)?;

    match &options.name {
        Some(name) => store.set_name(name, &manifest)?,
        None => {
            store.add_unnamed(&manifest)?;
        }
    }
    tracing::debug!(digest = %manifest.digest(), name = ?options.name, "root file system imported");
    Ok(ImportedImage {
        manifest,
        image_id: config.digest().clone(),
        layer,
    })
}

/// Extracts the tar into `work` and stores the folder as a layer blob.
fn write_rootfs_layer(
    store: &Store,
    reader: impl Read + Send,
    work: &std::path::Path,
    compression: Compression,
    created_seconds: i64,
    owners: Option<RootlessOwners<'_>>,
) -> Result<LayerDescriptor> {
    let import_error = |source| ArchiveError::Import { source };
    let mut stream = layer::decompress(Box::new(reader)).map_err(import_error)?;
    let (_, recorded) =
        layer::extract_recording_owners(&mut stream, work, &ExtractOptions::for_current_user())
            .map_err(import_error)?;
    // Trailing bytes after the end-of-archive blocks are read, so that a
    // truncated compressed stream fails here and not silently.
    io::copy(&mut stream, &mut io::sink())
        .map_err(|source| import_error(layer::LayerError::Read { source }))?;

    let id_map = match owners {
        Some(owners) => {
            (owners.set_owners)(work, &recorded).map_err(|source| {
                import_error(layer::LayerError::Source {
                    path: work.to_path_buf(),
                    action: "set the owners that the tar records in",
                    source: io::Error::other(source),
                })
            })?;
            Some(owners.id_map)
        }
        // Without root and without a user namespace every extracted file
        // belongs to the caller, so the layer records root for every file.
        None => (!rustix::process::geteuid().is_root()).then(caller_as_root),
    };

    // write_layer_threaded hashes what it writes, so the blob writer need not.
    let mut writer = store.blob_writer_hashed_by_caller()?;
    let options = WriteOptions {
        compression,
        level: None,
        source_date_epoch: Some(created_seconds),
        kind: DiffKind::Plain,
        id_map,
    };
    let layer = layer::write_layer_threaded(work, &options, &mut writer).map_err(import_error)?;
    writer
        .commit(Some(&layer.digest))
        .map_err(ArchiveError::from)?;
    store.record_layer_size(&layer.diff_id, layer.uncompressed_size);
    Ok(layer)
}

fn remove_work_dir(work: &std::path::Path) {
    if let Err(error) = fs::remove_dir_all(work)
        && error.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %work.display(), %error, "cannot remove an import work folder; prune removes it");
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Returns the id map that records the caller's uid and gid as root.
fn caller_as_root() -> layer::IdMap {
    let range = |host| layer::IdRange {
        container: 0,
        host,
        count: 1,
    };
    layer::IdMap {
        uids: vec![range(rustix::process::getuid().as_raw())],
        gids: vec![range(rustix::process::getgid().as_raw())],
    }
}
