//! Images in the store: loading a base image, and writing the built image
//! (config with history and diff IDs, OCI manifest, names).

use forge_cache::store::{PendingLayer, StepEntry, Store, StoreError};
use forge_registry::Reference;
use oci_spec::image::{Descriptor, Digest, MediaType};
use serde_json::{Map, Value, json};

use crate::config::ConfigState;
use crate::error::{BuildError, Result};

/// A layer of an image or of a stage being built.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRef {
    /// The blob, or how to write it.
    pub blob: LayerBlob,
    /// The sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
}

/// The blob of a [`LayerRef`].
#[derive(Debug, Clone, PartialEq)]
pub enum LayerBlob {
    /// The blob is in the store, as the manifest lists it.
    Stored(Box<Descriptor>),
    /// The layer exists only as its unpacked folder, named by the diff id.
    /// Steps of stages that no output image contains keep their layers
    /// this way, and the blob is written when an image needs it.
    Pending(PendingLayer),
}

impl LayerRef {
    /// Creates a layer whose blob is in the store.
    pub fn stored(descriptor: Descriptor, diff_id: Digest) -> Self {
        Self {
            blob: LayerBlob::Stored(Box::new(descriptor)),
            diff_id,
        }
    }

    /// Returns the layer that a step cache entry records, or `None` for a
    /// step without a layer.
    pub fn from_step(entry: &StepEntry) -> Option<Self> {
        let diff_id = entry.diff_id.clone()?;
        match (&entry.layer, entry.pending) {
            (Some(descriptor), _) => Some(Self::stored(descriptor.clone(), diff_id)),
            (None, Some(pending)) => Some(Self {
                blob: LayerBlob::Pending(pending),
                diff_id,
            }),
            (None, None) => None,
        }
    }

    /// Returns how to write the blob of a layer that exists only unpacked.
    pub fn pending(&self) -> Option<PendingLayer> {
        match &self.blob {
            LayerBlob::Pending(pending) => Some(*pending),
            LayerBlob::Stored(_) => None,
        }
    }

    /// Returns the blob's descriptor, or `None` while the layer exists
    /// only unpacked.
    pub fn descriptor(&self) -> Option<&Descriptor> {
        match &self.blob {
            LayerBlob::Stored(descriptor) => Some(descriptor),
            LayerBlob::Pending(_) => None,
        }
    }
}

/// An image read from the store, or the state of a stage being built.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageState {
    /// The runtime config and author.
    pub config: ConfigState,
    /// Layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// History entries, one per step, as the image config stores them.
    pub history: Vec<Value>,
}

/// A base image loaded from the store.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// Digest of the image manifest, the parent key of the first step.
    pub manifest_digest: String,
    /// Config, layers and history of the image.
    pub state: ImageState,
    /// The `os` of the image config; empty when the config lacks it.
    pub os: String,
    /// The `architecture` of the image config; empty when the config
    /// lacks it.
    pub architecture: String,
}

/// The platform that forge builds for, as `OS/ARCH`.
pub const BUILD_PLATFORM: &str = "linux/amd64";

impl StoredImage {
    /// Returns a warning when the config declares an os or architecture
    /// other than [`BUILD_PLATFORM`], as BuildKit's
    /// `InvalidBaseImagePlatform` check does. A config without either
    /// field passes.
    pub fn platform_warning(&self, name: &str) -> Option<String> {
        if self.os.is_empty() && self.architecture.is_empty() {
            return None;
        }
        let platform = format!("{}/{}", self.os, self.architecture);
        if platform == BUILD_PLATFORM {
            return None;
        }
        Some(format!(
            "InvalidBaseImagePlatform: base image `{name}` is for platform \"{platform}\", but this build is for \"{BUILD_PLATFORM}\"; its programs run only where the host can execute {platform} binaries"
        ))
    }
}

/// Returns the name under which the store keeps `name`: docker's short
/// form (`app:latest`), or `name` unchanged when it is not a reference.
pub fn store_name(name: &str) -> String {
    match name.parse::<Reference>() {
        Ok(reference) => reference.familiar(),
        Err(_) => name.to_string(),
    }
}

/// Loads the image `name` (a name, digest or image id) from the store.
///
/// # Errors
///
/// [`BuildError::Plan`] naming the image when it is not in the store, and
/// [`BuildError::Store`] when its manifest or config cannot be read.
pub fn load_image(store: &Store, name: &str) -> Result<StoredImage> {
    let familiar = store_name(name);
    let descriptor = match store.resolve(&familiar) {
        Ok(descriptor) => descriptor,
        Err(StoreError::NameNotFound { .. }) => match store.resolve(name) {
            Ok(descriptor) => descriptor,
            Err(StoreError::NameNotFound { .. }) => {
                return Err(BuildError::plan(format!(
                    "image `{name}` is not in the store; run `forge pull {name}` (or build or import it) first"
                )));
            }
            Err(error) => return Err(BuildError::store(format!("resolve image `{name}`"))(error)),
        },
        Err(error) => return Err(BuildError::store(format!("resolve image `{name}`"))(error)),
    };

    let read = |digest: &Digest, what: &str| -> Result<Value> {
        store
            .get_json::<Value>(digest)
            .map_err(BuildError::store(format!(
                "read the {what} of image `{name}`"
            )))
    };
    let mut manifest_digest = descriptor.digest().clone();
    let mut manifest = read(&manifest_digest, "manifest")?;
    if manifest.get("manifests").is_some() {
        manifest_digest = pick_platform(&manifest, name)?;
        manifest = read(&manifest_digest, "manifest")?;
    }

    let invalid = |what: &str| {
        BuildError::plan(format!(
            "image `{name}` has an invalid manifest ({what}); re-import or rebuild it"
        ))
    };
    let config_descriptor: Descriptor = manifest
        .get("config")
        .cloned()
        .and_then(|value| serde_json::from_value(value).ok())
        .ok_or_else(|| invalid("no config descriptor"))?;
    let layers: Vec<Descriptor> = manifest
        .get("layers")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|_| invalid("unreadable layer list"))?
        .unwrap_or_default();
    let image_config = read(config_descriptor.digest(), "config")?;

    let diff_ids: Vec<Digest> = image_config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .filter_map(|id| Digest::try_from(id).ok())
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != layers.len() {
        return Err(invalid(&format!(
            "{} layers but {} diff IDs",
            layers.len(),
            diff_ids.len()
        )));
    }

    let config = ConfigState {
        config: image_config
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        author: image_config
            .get("author")
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    let history = image_config
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let config_text = |field: &str| {
        image_config
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Ok(StoredImage {
        manifest_digest: manifest_digest.to_string(),
        os: config_text("os"),
        architecture: config_text("architecture"),
        state: ImageState {
            config,
            layers: layers
                .into_iter()
                .zip(diff_ids)
                .map(|(descriptor, diff_id)| LayerRef::stored(descriptor, diff_id))
                .collect(),
            history,
        },
    })
}

/// Picks the linux/amd64 manifest of an image index.
fn pick_platform(index: &Value, name: &str) -> Result<Digest> {
    let manifests = index
        .get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for manifest in &manifests {
        let os = manifest.pointer("/platform/os").and_then(Value::as_str);
        let arch = manifest
            .pointer("/platform/architecture")
            .and_then(Value::as_str);
        if os == Some("linux") && arch == Some("amd64") {
            let digest = manifest
                .get("digest")
                .and_then(Value::as_str)
                .and_then(|text| Digest::try_from(text).ok());
            if let Some(digest) = digest {
                return Ok(digest);
            }
        }
    }
    Err(BuildError::plan(format!(
        "image `{name}` has no linux/amd64 manifest; forge builds only for linux/amd64"
    )))
}

/// The image written for a build.
#[derive(Debug, Clone)]
pub struct WrittenImage {
    /// The manifest descriptor, which names point to.
    pub manifest: Descriptor,
    /// The image id: the digest of the image config.
    pub id: String,
}

/// Writes the config and manifest of `state` into the store.
///
/// `created` is the RFC 3339 creation time. Every layer must already be in
/// the store.
///
/// # Errors
///
/// [`BuildError::Store`] when a blob cannot be written;
/// [`BuildError::Plan`] when a layer has no blob yet.
pub fn write_image(store: &Store, state: &ImageState, created: &str) -> Result<WrittenImage> {
    let layers = state
        .layers
        .iter()
        .map(|layer| {
            layer.descriptor().ok_or_else(|| {
                BuildError::plan(format!(
                    "layer {} has no blob, so the image cannot list it. Build again with --no-cache",
                    layer.diff_id
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let config = config_json(state, created);
    let config_bytes = serde_json::to_vec(&config)
        .map_err(|error| BuildError::plan(format!("cannot encode the image config: {error}")))?;
    let config_descriptor = store
        .put_blob(&config_bytes)
        .map_err(BuildError::store("write the image config"))?
        .descriptor(MediaType::ImageConfig);

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageManifest.to_string(),
        "config": config_descriptor,
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest)
        .map_err(|error| BuildError::plan(format!("cannot encode the image manifest: {error}")))?;
    let manifest_descriptor = store
        .put_blob(&manifest_bytes)
        .map_err(BuildError::store("write the image manifest"))?
        .descriptor(MediaType::ImageManifest);
    Ok(WrittenImage {
        manifest: manifest_descriptor,
        id: config_descriptor.digest().to_string(),
    })
}

/// Builds the image config document.
pub fn config_json(state: &ImageState, created: &str) -> Value {
    let mut document = Map::new();
    document.insert("created".into(), json!(created));
    if let Some(author) = &state.config.author {
        document.insert("author".into(), json!(author));
    }
    document.insert("architecture".into(), json!("amd64"));
    document.insert("os".into(), json!("linux"));
    document.insert("config".into(), Value::Object(state.config.config.clone()));
    document.insert(
        "rootfs".into(),
        json!({
            "type": "layers",
            "diff_ids": state.layers.iter().map(|layer| layer.diff_id.to_string()).collect::<Vec<_>>(),
        }),
    );
    document.insert("history".into(), Value::Array(state.history.clone()));
    Value::Object(document)
}

/// Formats seconds since the Unix epoch as an RFC 3339 UTC time, with
/// nanoseconds when they are not zero.
pub fn rfc3339(seconds: i64, nanos: u32) -> String {
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    let fraction = if nanos == 0 {
        String::new()
    } else {
        let digits = format!("{nanos:09}");
        format!(".{}", digits.trim_end_matches('0'))
    };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date, with
/// Howard Hinnant's `civil_from_days` algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_times() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(1_700_000_000, 500_000_000),
            "2023-11-14T22:13:20.5Z"
        );
        assert_eq!(rfc3339(-1, 0), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn store_name_uses_familiar_form() {
        assert_eq!(store_name("busybox"), "busybox:latest");
        assert_eq!(store_name("docker.io/library/app:1"), "app:1");
        assert_eq!(
            store_name("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
    }
}
