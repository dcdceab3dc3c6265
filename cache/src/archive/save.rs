//! `save`: stored images as an OCI archive, an OCI layout folder or a
//! docker-archive.
//!
//! An OCI archive is a tar of an OCI image layout: `oci-layout`,
//! `index.json` with one entry per saved name (annotated with
//! `org.opencontainers.image.ref.name`) and `blobs/sha256/HEX`. A
//! docker-archive holds `manifest.json` (`Config`, `RepoTags`, `Layers`),
//! `repositories`, the config as `HEX.json` and each layer uncompressed as
//! `DIFFID/layer.tar`, the form that `docker load` and `podman load` read.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::image::{Descriptor, Digest, MediaType};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::error::{ArchiveError, Result};
use super::oci::{diff_ids, image_blobs, select_manifest};
use crate::layer;
use crate::store::{REF_NAME_ANNOTATION, Store};

/// The form of a saved archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// A tar of an OCI image layout (`skopeo`'s `oci-archive:`).
    Oci,
    /// An OCI image layout folder (`skopeo`'s `oci:`, `umoci`).
    OciDir,
    /// A docker-archive, as `docker save` writes it (`docker-archive:`).
    Docker,
}

impl ArchiveFormat {
    fn label(self) -> &'static str {
        match self {
            ArchiveFormat::Oci => "an OCI archive",
            ArchiveFormat::OciDir => "an OCI layout folder",
            ArchiveFormat::Docker => "a docker-archive",
        }
    }
}

/// One image to save.
struct SavedImage {
    reference: String,
    /// The store name, when the reference is one.
    name: Option<String>,
    descriptor: Descriptor,
}

/// Saves the images that `references` name to `dest` in `format`.
///
/// Each reference is resolved with [`Store::resolve`]. A reference that is
/// a store name (`busybox:latest`) becomes the image's `ref.name` or
/// `RepoTags` entry. An image saved by digest or id gets no name.
/// Several references may name one image. A docker-archive holds one
/// platform, so for an index the `linux` manifest of this machine's
/// architecture is saved.
///
/// The content is written to a temporary file or folder next to `dest`
/// and renamed into place, so `dest` is replaced only by a complete
/// archive. An existing file at `dest` is replaced; a folder must be empty.
/// An existing entry that is neither a file nor a folder (a device such as
/// `/dev/null`, a FIFO or a symlink) is opened and written in place,
/// because a rename would replace the entry itself.
///
/// # Errors
/// [`ArchiveError::NothingToSave`] for no references;
/// [`ArchiveError::Store`] when a reference is not found or a blob is
/// missing or corrupt; [`ArchiveError::DestinationExists`] for a
/// non-empty folder; [`ArchiveError::Unsupported`] for an index without a
/// matching platform in a docker-archive; [`ArchiveError::Io`] when
/// writing fails.
pub fn save(store: &Store, references: &[&str], format: ArchiveFormat, dest: &Path) -> Result<()> {
    let _lease = store.lease()?;
    let images = resolve_images(store, references)?;

    let temp = temp_path(dest)?;
    let result = match format {
        ArchiveFormat::OciDir => write_layout_dir(store, &images, dest, &temp),
        ArchiveFormat::Oci | ArchiveFormat::Docker => {
            write_archive_file(store, &images, format, dest, &temp)
        }
    };
    if result.is_err() {
        let removal = if temp.is_dir() {
            fs::remove_dir_all(&temp)
        } else {
            fs::remove_file(&temp)
        };
        if let Err(error) = removal
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %temp.display(), %error, "cannot remove a failed save");
        }
    }
    result
}

/// Writes the images that `references` name to `writer` as an OCI archive
/// or a docker-archive, for example to standard output. See [`save`].
///
/// # Errors
/// As for [`save`]; [`ArchiveError::Unsupported`] for
/// [`ArchiveFormat::OciDir`], which is a folder. After an error `writer`
/// may hold part of an archive.
pub fn save_to_writer(
    store: &Store,
    references: &[&str],
    format: ArchiveFormat,
    writer: &mut dyn Write,
) -> Result<()> {
    let _lease = store.lease()?;
    let images = resolve_images(store, references)?;
    let label = PathBuf::from("<output stream>");
    match format {
        ArchiveFormat::OciDir => Err(ArchiveError::Unsupported {
            reference: references.join(", "),
            format: format.label(),
            reason: "a folder cannot be written to a stream; give a destination path".into(),
        }),
        ArchiveFormat::Oci | ArchiveFormat::Docker => {
            let mut sink = TarSink {
                builder: tar::Builder::new(writer),
                path: label.clone(),
            };
            write_images(store, &images, format, &mut sink)?;
            sink.builder
                .into_inner()
                .and_then(|writer| writer.flush())
                .map_err(|source| ArchiveError::io("write", &label, source))
        }
    }
}

fn resolve_images(store: &Store, references: &[&str]) -> Result<Vec<SavedImage>> {
    if references.is_empty() {
        return Err(ArchiveError::NothingToSave);
    }
    let names = store.list_names()?;
    references
        .iter()
        .map(|reference| {
            let descriptor = store.resolve(reference)?;
            let name = names
                .iter()
                .any(|(name, _)| name == reference)
                .then(|| reference.to_string());
            Ok(SavedImage {
                reference: reference.to_string(),
                name,
                descriptor: Descriptor::new(
                    descriptor.media_type().clone(),
                    descriptor.size(),
                    descriptor.digest().clone(),
                ),
            })
        })
        .collect()
}

/// Returns a path next to `dest` that nothing else uses.
fn temp_path(dest: &Path) -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let Some(file_name) = dest.file_name() else {
        return Err(ArchiveError::io(
            "save to",
            dest,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the destination has no file name",
            ),
        ));
    };
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!(
        ".{}.forge-save-{}-{count}",
        file_name.to_string_lossy(),
        std::process::id()
    );
    Ok(dest.with_file_name(name))
}

fn write_archive_file(
    store: &Store,
    images: &[SavedImage],
    format: ArchiveFormat,
    dest: &Path,
    temp: &Path,
) -> Result<()> {
    if dest.is_dir() {
        return Err(ArchiveError::DestinationExists {
            path: dest.to_path_buf(),
        });
    }
    if writes_in_place(dest) {
        return write_archive_in_place(store, images, format, dest);
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .map_err(|source| ArchiveError::io("create", temp, source))?;
    let mut sink = TarSink {
        builder: tar::Builder::new(BufWriter::with_capacity(256 * 1024, file)),
        path: temp.to_path_buf(),
    };
    write_images(store, images, format, &mut sink)?;
    let file = sink
        .builder
        .into_inner()
        .and_then(|writer| writer.into_inner().map_err(|error| error.into_error()))
        .map_err(|source| ArchiveError::io("write", temp, source))?;
    file.sync_all()
        .map_err(|source| ArchiveError::io("sync", temp, source))?;
    drop(file);
    fs::rename(temp, dest).map_err(|source| ArchiveError::io("rename into place", dest, source))
}

/// Returns whether `dest` exists as something other than a file or a
/// folder: a device, a FIFO, a socket or a symlink.
fn writes_in_place(dest: &Path) -> bool {
    fs::symlink_metadata(dest).is_ok_and(|metadata| !metadata.is_file() && !metadata.is_dir())
}

/// Writes the archive through the existing entry at `dest`, following a
/// symlink, without a temporary file.
fn write_archive_in_place(
    store: &Store,
    images: &[SavedImage],
    format: ArchiveFormat,
    dest: &Path,
) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dest)
        .map_err(|source| ArchiveError::io("open", dest, source))?;
    let mut sink = TarSink {
        builder: tar::Builder::new(BufWriter::with_capacity(256 * 1024, file)),
        path: dest.to_path_buf(),
    };
    write_images(store, images, format, &mut sink)?;
    sink.builder
        .into_inner()
        .and_then(|writer| writer.into_inner().map_err(|error| error.into_error()))
        .map(drop)
        .map_err(|source| ArchiveError::io("write", dest, source))
}

fn write_layout_dir(store: &Store, images: &[SavedImage], dest: &Path, temp: &Path) -> Result<()> {
    if dest.exists() {
        let empty_dir = fs::read_dir(dest).is_ok_and(|mut entries| entries.next().is_none());
        if !empty_dir {
            return Err(ArchiveError::DestinationExists {
                path: dest.to_path_buf(),
            });
        }
    }
    fs::create_dir(temp).map_err(|source| ArchiveError::io("create", temp, source))?;
    let mut sink = DirSink {
        root: temp.to_path_buf(),
    };
    write_images(store, images, ArchiveFormat::OciDir, &mut sink)?;
    // Renaming a folder over an empty folder replaces it.
    fs::rename(temp, dest).map_err(|source| ArchiveError::io("rename into place", dest, source))
}

/// The destination of an archive's files: a tar stream or a folder.
trait Sink {
    fn dir(&mut self, name: &str) -> Result<()>;
    fn file(&mut self, name: &str, size: u64, content: &mut dyn Read) -> Result<()>;
}

struct TarSink<W: Write> {
    builder: tar::Builder<W>,
    path: PathBuf,
}

impl<W: Write> Sink for TarSink<W> {
    fn dir(&mut self, name: &str) -> Result<()> {
        let mut header = header(tar::EntryType::Directory, 0o755, 0);
        self.builder
            .append_data(&mut header, format!("{name}/"), io::empty())
            .map_err(|source| ArchiveError::io("write", &self.path, source))
    }

    fn file(&mut self, name: &str, size: u64, content: &mut dyn Read) -> Result<()> {
        let mut header = header(tar::EntryType::Regular, 0o644, size);
        self.builder
            .append_data(&mut header, name, content)
            .map_err(|source| ArchiveError::io("write", &self.path, source))
    }
}

/// Builds a ustar header owned by 0:0 with mtime 0, so that the same images give the same archive.
fn header(entry_type: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    header
}

struct DirSink {
    root: PathBuf,
}

impl Sink for DirSink {
    fn dir(&mut self, name: &str) -> Result<()> {
        let path = self.root.join(name);
        fs::create_dir(&path).map_err(|source| ArchiveError::io("create", path, source))
    }

    fn file(&mut self, name: &str, _size: u64, content: &mut dyn Read) -> Result<()> {
        let path = self.root.join(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| ArchiveError::io("create", &path, source))?;
        io::copy(content, &mut file).map_err(|source| ArchiveError::io("write", &path, source))?;
        file.sync_all()
            .map_err(|source| ArchiveError::io("sync", &path, source))
    }
}

fn write_images(
    store: &Store,
    images: &[SavedImage],
    format: ArchiveFormat,
    sink: &mut dyn Sink,
) -> Result<()> {
    match format {
        ArchiveFormat::Oci | ArchiveFormat::OciDir => write_oci_layout(store, images, sink),
        ArchiveFormat::Docker => write_docker_archive(store, images, sink),
    }
}

fn write_oci_layout(store: &Store, images: &[SavedImage], sink: &mut dyn Sink) -> Result<()> {
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    sink.file("oci-layout", layout.len() as u64, &mut &layout[..])?;
    sink.dir("blobs")?;
    sink.dir("blobs/sha256")?;

    let mut written: HashSet<Digest> = HashSet::new();
    let mut manifests = Vec::new();
    for image in images {
        for blob in image_blobs(store, &image.descriptor)? {
            if !written.insert(blob.digest().clone()) {
                continue;
            }
            let mut reader = store.open_descriptor(&blob)?;
            sink.file(
                &format!("blobs/sha256/{}", blob.digest().digest()),
                blob.size(),
                &mut reader,
            )?;
        }

        let mut entry = image.descriptor.clone();
        if let Some(name) = &image.name {
            entry.set_annotations(Some(
                [(REF_NAME_ANNOTATION.to_string(), name.clone())].into(),
            ));
        }
        manifests.push(entry);
    }

    let index = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageIndex.to_string(),
        "manifests": manifests,
    });
    let bytes = to_json(&index)?;
    sink.file("index.json", bytes.len() as u64, &mut &bytes[..])
}

fn to_json(value: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| {
        crate::store::StoreError::EncodeJson {
            what: "archive index".into(),
            source,
        }
        .into()
    })
}

/// One `manifest.json` entry under construction.
struct DockerEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

fn write_docker_archive(store: &Store, images: &[SavedImage], sink: &mut dyn Sink) -> Result<()> {
    let format = ArchiveFormat::Docker.label();
    // Manifest digest -> entry, in the order first saved.
    let mut entries: Vec<(Digest, DockerEntry)> = Vec::new();
    let mut written: HashSet<String> = HashSet::new();
    // Repository -> tag -> top layer folder.
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();

    for image in images {
        let (manifest_descriptor, manifest) =
            select_manifest(store, &image.reference, format, &image.descriptor)?;
        let tags: Vec<String> = image.name.iter().cloned().collect();
        if let Some((_, entry)) = entries
            .iter_mut()
            .find(|(digest, _)| digest == manifest_descriptor.digest())
        {
            entry.repo_tags.extend(tags);
            continue;
        }

        let config_descriptor = manifest.config();
        let config_bytes = store.read_blob(config_descriptor.digest())?;
        let config_value: serde_json::Value =
            serde_json::from_slice(&config_bytes).map_err(|error| {
                unsupported(image, format, format!("its config is not JSON: {error}"))
            })?;
        let ids = diff_ids(&config_value).map_err(|reason| unsupported(image, format, reason))?;
        if ids.len() != manifest.layers().len() {
            return Err(unsupported(
                image,
                format,
                format!(
                    "its config lists {} diff ids for {} layers",
                    ids.len(),
                    manifest.layers().len()
                ),
            ));
        }

        let config_name = format!("{}.json", config_descriptor.digest().digest());
        if written.insert(config_name.clone()) {
            sink.file(
                &config_name,
                config_bytes.len() as u64,
                &mut &config_bytes[..],
            )?;
        }

        let mut layer_names = Vec::new();
        for (layer, diff_id) in manifest.layers().iter().zip(&ids) {
            let folder = diff_id.digest().to_string();
            let name = format!("{folder}/layer.tar");
            if written.insert(name.clone()) {
                sink.dir(&folder)?;
                write_uncompressed_layer(store, layer, diff_id, &name, sink)?;
            }
            layer_names.push(name);
        }

        if let (Some(name), Some(top)) = (&image.name, ids.last())
            && let Some((repository, tag)) = split_tag(name)
        {
            repositories
                .entry(repository.to_string())
                .or_default()
                .insert(tag.to_string(), top.digest().to_string());
        }
        entries.push((
            manifest_descriptor.digest().clone(),
            DockerEntry {
                config: config_name,
                repo_tags: tags,
                layers: layer_names,
            },
        ));
    }

    let manifest_json: Vec<serde_json::Value> = entries
        .iter()
        .map(|(_, entry)| {
            json!({
                "Config": entry.config,
                "RepoTags": entry.repo_tags,
                "Layers": entry.layers,
            })
        })
        .collect();
    let bytes = to_json(&serde_json::Value::Array(manifest_json))?;
    sink.file("manifest.json", bytes.len() as u64, &mut &bytes[..])?;
    let bytes = to_json(&json!(repositories))?;
    sink.file("repositories", bytes.len() as u64, &mut &bytes[..])
}

fn unsupported(image: &SavedImage, format: &'static str, reason: String) -> ArchiveError {
    ArchiveError::Unsupported {
        reference: image.reference.clone(),
        format,
        reason,
    }
}

/// Splits `name/app:v1` into repository and tag; `None` without a tag.
fn split_tag(name: &str) -> Option<(&str, &str)> {
    let (repository, tag) = name.rsplit_once(':')?;
    (!tag.contains('/')).then_some((repository, tag))
}

/// Writes a layer as an uncompressed tar: the blob itself when it is
/// uncompressed, else its decompressed form, staged in a store work
/// folder because a tar entry needs its size up front.
fn write_uncompressed_layer(
    store: &Store,
    layer: &Descriptor,
    diff_id: &Digest,
    name: &str,
    sink: &mut dyn Sink,
) -> Result<()> {
    if layer.digest() == diff_id {
        let mut reader = store.open_descriptor(layer)?;
        return sink.file(name, layer.size(), &mut reader);
    }

    let work = store.create_work_dir()?;
    let result = (|| {
        let staged = work.join("layer.tar");
        let size = decompress_to(store, layer, diff_id, &staged)?;
        let mut file =
            File::open(&staged).map_err(|source| ArchiveError::io("open", &staged, source))?;
        sink.file(name, size, &mut file)
    })();
    if let Err(error) = fs::remove_dir_all(&work) {
        tracing::warn!(path = %work.display(), %error, "cannot remove a save work folder; prune removes it");
    }
    result
}

/// Decompresses a layer blob into `path`, checking the diff id, and returns the size.
fn decompress_to(store: &Store, layer: &Descriptor, diff_id: &Digest, path: &Path) -> Result<u64> {
    let layer_error = |source| ArchiveError::Layer {
        digest: layer.digest().to_string(),
        source,
    };
    let reader = store.open_descriptor(layer)?;
    let mut stream = layer::decompress(Box::new(reader)).map_err(layer_error)?;
    let file = File::create(path).map_err(|source| ArchiveError::io("create", path, source))?;
    let mut writer = HashingWriter {
        inner: BufWriter::with_capacity(256 * 1024, file),
        hasher: Sha256::new(),
        size: 0,
    };
    io::copy(&mut stream, &mut writer)
        .map_err(|source| layer_error(layer::LayerError::Read { source }))?;
    writer
        .inner
        .flush()
        .map_err(|source| ArchiveError::io("write", path, source))?;
    let actual = format!("sha256:{}", hex::encode(writer.hasher.finalize()));
    if actual != diff_id.to_string() {
        return Err(crate::store::StoreError::DiffIdMismatch {
            digest: layer.digest().to_string(),
            expected: diff_id.to_string(),
            actual,
        }
        .into());
    }
    Ok(writer.size)
}

/// A writer that hashes and counts what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let count = self.inner.write(buf)?;
        self.hasher.update(buf.get(..count).unwrap_or(buf));
        self.size += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_tag_handles_registry_port() {
        assert_eq!(
            split_tag("localhost:5000/app:v1"),
            Some(("localhost:5000/app", "v1"))
        );
        assert_eq!(split_tag("localhost:5000/app"), None);
        assert_eq!(split_tag("busybox:latest"), Some(("busybox", "latest")));
    }

    #[test]
    fn temp_path_sits_next_to_destination() {
        let temp = temp_path(Path::new("/out/image.tar")).unwrap();
        assert_eq!(temp.parent(), Some(Path::new("/out")));
        let name = temp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".image.tar.forge-save-"), "{name}");
    }
}
