//! `forge build --output`: writing the built image somewhere besides the
//! store.
//!
//! The store always keeps the image and the step cache. An output then
//! copies it out: as an OCI archive, an OCI layout folder or a
//! docker-archive (through [`forge_cache::archive`]), or as its final root
//! file system, merged from the layers in order with whiteouts applied, as a
//! folder or a tar stream.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use forge_cache::archive::{ArchiveError, ArchiveFormat, save, save_to_writer};
use forge_cache::layer::{
    self, Compression, DiffKind, ExtractOptions, LayerError, WhiteoutMode, WriteOptions,
};
use forge_cache::store::{Store, StoreError};
use oci_spec::image::{Descriptor, ImageManifest};

/// What an output writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// Only the store keeps the image (`type=image`, the default).
    Image,
    /// A tar of an OCI image layout (`type=oci`).
    Oci,
    /// An OCI image layout folder (`type=oci-dir`).
    OciDir,
    /// A docker-archive that `docker load` and `podman load` read
    /// (`type=docker`).
    Docker,
    /// The final root file system as a tar stream (`type=tar`).
    Tar,
    /// The final root file system as files in a folder (`type=local`).
    Local,
}

impl OutputKind {
    const NAMES: [(&'static str, OutputKind); 6] = [
        ("image", OutputKind::Image),
        ("oci", OutputKind::Oci),
        ("oci-dir", OutputKind::OciDir),
        ("docker", OutputKind::Docker),
        ("tar", OutputKind::Tar),
        ("local", OutputKind::Local),
    ];

    /// Returns the `type=` value of the kind.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, kind)| *kind == self)
            .map_or("image", |(name, _)| name)
    }

    /// Returns whether the output is a folder, which cannot go to standard
    /// output.
    fn is_folder(self) -> bool {
        matches!(self, OutputKind::OciDir | OutputKind::Local)
    }
}

/// Where an output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A file or folder.
    Path(PathBuf),
    /// Standard output (`dest=-`), for the archive and tar kinds.
    Stdout,
}

/// One `--output` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    /// What to write.
    pub kind: OutputKind,
    /// Where; `None` only for [`OutputKind::Image`].
    pub dest: Option<Destination>,
}

impl Default for OutputSpec {
    fn default() -> Self {
        OutputSpec {
            kind: OutputKind::Image,
            dest: None,
        }
    }
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "type={}", self.kind.name())?;
        match &self.dest {
            Some(Destination::Path(path)) => write!(f, ",dest={}", path.display()),
            Some(Destination::Stdout) => write!(f, ",dest=-"),
            None => Ok(()),
        }
    }
}

impl FromStr for OutputSpec {
    type Err = ExportError;

    /// Parses `type=KIND[,dest=PATH]`. A value without `=` is the short
    /// form that docker buildx accepts: `PATH` means `type=local,dest=PATH`,
    /// and `-` alone means `type=tar,dest=-`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| ExportError::InvalidOutput {
            spec: value.to_string(),
            reason,
        };
        if value.is_empty() {
            return Err(invalid(
                "the value is empty; write type=local,dest=DIR or another type".to_string(),
            ));
        }
        if !value.contains('=') {
            return Ok(if value == "-" {
                OutputSpec {
                    kind: OutputKind::Tar,
                    dest: Some(Destination::Stdout),
                }
            } else {
                OutputSpec {
                    kind: OutputKind::Local,
                    dest: Some(Destination::Path(PathBuf::from(value))),
                }
            });
        }

        let mut kind = None;
        let mut dest = None;
        for field in value.split(',') {
            let Some((key, field_value)) = field.split_once('=') else {
                return Err(invalid(format!(
                    "field `{field}` is not KEY=VALUE; write type=KIND,dest=PATH"
                )));
            };
            match key {
                "type" => {
                    let found = OutputKind::NAMES
                        .iter()
                        .find(|(name, _)| *name == field_value)
                        .map(|(_, kind)| *kind);
                    kind = Some(found.ok_or_else(|| {
                        let hint = if field_value == "registry" {
                            "; use -t NAME --push to push to a registry"
                        } else {
                            ""
                        };
                        invalid(format!(
                            "unknown type `{field_value}`; use image, oci, oci-dir, docker, tar or local{hint}"
                        ))
                    })?);
                }
                "dest" if field_value.is_empty() => {
                    return Err(invalid("dest is empty; give a path or -".to_string()));
                }
                "dest" if field_value == "-" => dest = Some(Destination::Stdout),
                "dest" => dest = Some(Destination::Path(PathBuf::from(field_value))),
                other => {
                    return Err(invalid(format!(
                        "unsupported key `{other}`; forge reads only type and dest"
                    )));
                }
            }
        }

        let Some(kind) = kind else {
            return Err(invalid(
                "the type is missing; write type=local,dest=DIR or another type".to_string(),
            ));
        };
        match (&dest, kind) {
            (Some(_), OutputKind::Image) => Err(invalid(
                "type=image keeps the image in the store and takes no dest; drop dest".to_string(),
            )),
            (None, OutputKind::Image) => Ok(OutputSpec { kind, dest }),
            (None, _) => Err(invalid(format!("type={} needs dest=PATH", kind.name()))),
            (Some(Destination::Stdout), kind) if kind.is_folder() => Err(invalid(format!(
                "type={} writes a folder and cannot go to standard output; give dest=DIR",
                kind.name()
            ))),
            (Some(_), _) => Ok(OutputSpec { kind, dest }),
        }
    }
}

/// An output that cannot be parsed or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The `--output` value is malformed.
    #[error("invalid --output `{spec}`: {reason}")]
    InvalidOutput {
        /// The value as given.
        spec: String,
        /// The problem and how to write the value.
        reason: String,
    },

    /// Writing an archive failed.
    #[error("failed to write the {kind} output")]
    Archive {
        /// The output type.
        kind: &'static str,
        /// The archive error.
        #[source]
        source: Box<ArchiveError>,
    },

    /// The store failed while `action` ran.
    #[error("failed to {action}")]
    Store {
        /// The operation, such as "read the image manifest".
        action: String,
        /// The store error.
        #[source]
        source: StoreError,
    },

    /// Reading or writing a layer failed.
    #[error("failed to {action}")]
    Layer {
        /// The operation, naming the layer or destination.
        action: String,
        /// The layer error.
        #[source]
        source: LayerError,
    },

    /// A file-system operation on the destination failed.
    #[error("failed to {action} `{path}`")]
    Io {
        /// The operation, such as "create the folder".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Writes the image `manifest` as `spec` asks. `names` are the store names
/// of the image; archives carry them, and an image without names is saved
/// by manifest digest and carries none. `stdout` receives a `dest=-`
/// output.
///
/// # Errors
///
/// An [`ExportError`] naming the destination or the layer that failed. A
/// failed file output leaves no partial file at its destination, but a
/// failed `type=local` output may leave part of the files in place.
pub fn export(
    store: &Store,
    manifest: &Descriptor,
    names: &[String],
    spec: &OutputSpec,
    stdout: &mut dyn Write,
) -> Result<(), ExportError> {
    let Some(dest) = &spec.dest else {
        return Ok(());
    };
    let format = match spec.kind {
        OutputKind::Image => return Ok(()),
        OutputKind::Oci => ArchiveFormat::Oci,
        OutputKind::OciDir => ArchiveFormat::OciDir,
        OutputKind::Docker => ArchiveFormat::Docker,
        OutputKind::Tar => return export_tar(store, manifest, dest, stdout),
        OutputKind::Local => {
            let Destination::Path(path) = dest else {
                return Err(ExportError::InvalidOutput {
                    spec: spec.to_string(),
                    reason: "type=local cannot go to standard output".to_string(),
                });
            };
            return export_local(store, manifest, path);
        }
    };

    let digest = manifest.digest().to_string();
    let references: Vec<&str> = if names.is_empty() {
        vec![digest.as_str()]
    } else {
        names.iter().map(String::as_str).collect()
    };
    let archive_error = |source| ExportError::Archive {
        kind: spec.kind.name(),
        source: Box::new(source),
    };
    match dest {
        Destination::Path(path) => save(store, &references, format, path).map_err(archive_error),
        Destination::Stdout => {
            save_to_writer(store, &references, format, stdout).map_err(archive_error)
        }
    }
}

/// Writes the merged root file system of `manifest` into the folder
/// `dest`, which is created when missing. Files already in `dest` that the
/// image does not replace stay.
///
/// # Errors
///
/// See [`export`].
pub fn export_local(store: &Store, manifest: &Descriptor, dest: &Path) -> Result<(), ExportError> {
    fs::create_dir_all(dest).map_err(|source| ExportError::Io {
        action: "create the output folder",
        path: dest.to_path_buf(),
        source,
    })?;
    merge_layers(store, manifest, dest)
}

/// Writes the merged root file system of `manifest` as an uncompressed tar
/// to `dest`: a file, replaced only by a complete tar, or `stdout`.
fn export_tar(
    store: &Store,
    manifest: &Descriptor,
    dest: &Destination,
    stdout: &mut dyn Write,
) -> Result<(), ExportError> {
    let work = store
        .create_work_dir()
        .map_err(|source| ExportError::Store {
            action: "create a work folder for the tar output".to_string(),
            source,
        })?;
    let result = merge_layers(store, manifest, &work).and_then(|()| match dest {
        Destination::Stdout => write_tar(&work, stdout, Path::new("<standard output>")),
        Destination::Path(path) => write_tar_file(&work, path),
    });
    remove_tree(&work);
    result
}

/// Extracts every layer of `manifest` in order into `dest`, applying
/// whiteouts.
fn merge_layers(store: &Store, manifest: &Descriptor, dest: &Path) -> Result<(), ExportError> {
    let image: ImageManifest =
        store
            .get_json(manifest.digest())
            .map_err(|source| ExportError::Store {
                action: format!("read the image manifest {}", manifest.digest()),
                source,
            })?;
    let options = ExtractOptions {
        whiteouts: WhiteoutMode::Apply,
        ..ExtractOptions::for_current_user()
    };
    for descriptor in image.layers() {
        let layer_error = |source| ExportError::Layer {
            action: format!(
                "extract layer {} into `{}`",
                descriptor.digest(),
                dest.display()
            ),
            source,
        };
        let blob = store
            .open_descriptor(descriptor)
            .map_err(|source| ExportError::Store {
                action: format!("open layer {}", descriptor.digest()),
                source,
            })?;
        let tar = layer::decompress(Box::new(blob)).map_err(layer_error)?;
        layer::extract(tar, dest, &options).map_err(layer_error)?;
    }
    Ok(())
}

/// Writes `dir` as an uncompressed tar into a temporary file next to
/// `path` and renames it into place, or straight into `path` when it is an
/// existing device, FIFO or symlink.
fn write_tar_file(dir: &Path, path: &Path) -> Result<(), ExportError> {
    let io_error = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Io {
            action,
            path,
            source,
        }
    };
    // A rename would replace an existing device such as `/dev/null`, a
    // FIFO or a symlink itself, so the tar is written through it instead.
    let in_place = fs::symlink_metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir());
    if in_place {
        let file = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(io_error("open", path))?;
        let mut writer = io::BufWriter::new(file);
        write_tar(dir, &mut writer, path)?;
        return writer
            .into_inner()
            .map(drop)
            .map_err(|error| io_error("write", path)(error.into_error()));
    }
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output.tar".to_string());
    let temp = path.with_file_name(format!(".{file_name}.forge-{}", std::process::id()));
    let result = fs::File::create(&temp)
        .map_err(io_error("create", &temp))
        .and_then(|file| {
            let mut writer = io::BufWriter::new(file);
            write_tar(dir, &mut writer, path)?;
            let file = writer
                .into_inner()
                .map_err(|error| io_error("write", &temp)(error.into_error()))?;
            file.sync_all().map_err(io_error("sync", &temp))
        })
        .and_then(|()| fs::rename(&temp, path).map_err(io_error("rename the tar to", path)));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn write_tar(dir: &Path, writer: &mut dyn Write, label: &Path) -> Result<(), ExportError> {
    let options = WriteOptions {
        compression: Compression::None,
        level: None,
        source_date_epoch: None,
        kind: DiffKind::Plain,
        id_map: None,
    };
    layer::write_layer(dir, &options, writer).map_err(|source| ExportError::Layer {
        action: format!(
            "write the root file system as a tar to `{}`",
            label.display()
        ),
        source,
    })?;
    writer.flush().map_err(|source| ExportError::Io {
        action: "write",
        path: label.to_path_buf(),
        source,
    })
}

/// Removes a work folder, first making its folders writable when a plain
/// removal fails (an image may hold folders without write permission,
/// which only root can empty as they are).
fn remove_tree(dir: &Path) {
    if fs::remove_dir_all(dir).is_ok() {
        return;
    }
    make_writable(dir);
    if let Err(error) = fs::remove_dir_all(dir) {
        tracing::warn!(path = %dir.display(), %error, "cannot remove the tar output's work folder");
    }
}

fn make_writable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            make_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(value: &str) -> OutputSpec {
        value.parse().unwrap()
    }

    fn path(value: &str) -> Option<Destination> {
        Some(Destination::Path(PathBuf::from(value)))
    }

    #[test]
    fn parses_every_type() {
        let cases = [
            ("type=image", OutputKind::Image, None),
            ("type=oci,dest=a.tar", OutputKind::Oci, path("a.tar")),
            (
                "type=oci-dir,dest=layout",
                OutputKind::OciDir,
                path("layout"),
            ),
            (
                "type=docker,dest=-",
                OutputKind::Docker,
                Some(Destination::Stdout),
            ),
            ("dest=r.tar,type=tar", OutputKind::Tar, path("r.tar")),
            ("type=local,dest=out", OutputKind::Local, path("out")),
        ];
        for (value, kind, dest) in cases {
            let spec = parsed(value);
            assert_eq!(spec.kind, kind, "{value}");
            assert_eq!(spec.dest, dest, "{value}");
        }
    }

    #[test]
    fn short_form_is_local_or_tar() {
        assert_eq!(
            parsed("out/dir"),
            OutputSpec {
                kind: OutputKind::Local,
                dest: path("out/dir"),
            }
        );
        assert_eq!(
            parsed("-"),
            OutputSpec {
                kind: OutputKind::Tar,
                dest: Some(Destination::Stdout),
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for value in ["type=image", "type=oci,dest=a.tar", "type=tar,dest=-"] {
            assert_eq!(parsed(value).to_string(), value);
        }
    }

    #[test]
    fn rejects_bad_values() {
        let cases = [
            ("", "empty"),
            ("type=registry", "--push"),
            ("type=zip,dest=a", "unknown type `zip`"),
            ("type=oci", "needs dest=PATH"),
            ("dest=a", "the type is missing"),
            ("type=local,dest=-", "cannot go to standard output"),
            ("type=oci-dir,dest=-", "cannot go to standard output"),
            ("type=image,dest=x", "takes no dest"),
            ("type=tar,dest=", "dest is empty"),
            (
                "type=oci,dest=a,compression=zstd",
                "unsupported key `compression`",
            ),
            ("type=oci,dest", "not KEY=VALUE"),
        ];
        for (value, expected) in cases {
            let error = value.parse::<OutputSpec>().unwrap_err().to_string();
            assert!(error.contains(expected), "{value}: {error}");
        }
    }

    #[test]
    fn tar_into_device_keeps_node() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};

        if !forge_testkit::require_root("tar_into_device_keeps_node") {
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("rootfs");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("file"), b"content").unwrap();
        // A node with the numbers of /dev/null (1:3) in the test's own
        // folder, so the host's /dev/null is never at risk.
        let node = temp.path().join("null");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &node,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();

        write_tar_file(&dir, &node).unwrap();

        let metadata = fs::symlink_metadata(&node).unwrap();
        assert!(
            metadata.file_type().is_char_device(),
            "the device node became {:?}",
            metadata.file_type()
        );
        assert_eq!(metadata.rdev(), rustix::fs::makedev(1, 3));
        let names: Vec<_> = fs::read_dir(temp.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "temporary files left: {names:?}");
    }

    #[test]
    fn tar_through_symlink_keeps_link() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("rootfs");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("file"), b"content").unwrap();
        let target = temp.path().join("target.tar");
        fs::write(&target, b"old content").unwrap();
        let link = temp.path().join("link.tar");
        std::os::unix::fs::symlink(&target, &link).unwrap();

        write_tar_file(&dir, &link).unwrap();

        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(fs::read_link(&link).unwrap(), target);
        let listing = std::process::Command::new("tar")
            .arg("-tf")
            .arg(&target)
            .output()
            .unwrap();
        assert!(
            listing.status.success(),
            "tar -tf failed on the written tar"
        );
        let names = String::from_utf8_lossy(&listing.stdout).into_owned();
        assert!(names.lines().any(|name| name.ends_with("file")), "{names}");
    }
}
