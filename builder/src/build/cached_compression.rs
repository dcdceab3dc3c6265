//! The warning for a step cache hit that reuses a layer whose compression
//! differs from the one the build requests.

use std::sync::atomic::Ordering;

use forge_cache::layer::{Compression, MediaType};

use super::BuildRun;
use crate::progress::{ProgressEvent, StepId};

/// Returns the compression that a layer media type names, or `None` for a
/// media type that names no layer compression forge knows. OCI layer types
/// end in `.tar`, `.tar+gzip` or `.tar+zstd`, and docker's in `.tar.gzip`.
pub(super) fn layer_compression(media_type: &MediaType) -> Option<Compression> {
    let name = media_type.to_string();
    if name.ends_with(".tar+gzip") || name.ends_with(".tar.gzip") {
        Some(Compression::Gzip)
    } else if name.ends_with(".tar+zstd") || name.ends_with(".tar.zstd") {
        Some(Compression::Zstd)
    } else if name.ends_with(".tar") {
        Some(Compression::None)
    } else {
        None
    }
}

/// Sends a warning, at most once per build, when the cache hit of `step`
/// reuses a layer of media type `media_type` whose compression differs from
/// `--compression`. The step cache key leaves out the compression, so the
/// image keeps the cached layer as it is.
pub(super) fn warn_on_mismatch(build: &BuildRun<'_>, step: &StepId, media_type: &MediaType) {
    let requested = build.options.compression;
    let Some(cached) = layer_compression(media_type) else {
        return;
    };
    if cached == requested || build.compression_warned.swap(true, Ordering::Relaxed) {
        return;
    }
    build.builder.progress.event(ProgressEvent::Warning {
        message: mismatch_message(step, cached, requested),
    });
}

/// Formats the warning of [`warn_on_mismatch`].
fn mismatch_message(step: &StepId, cached: Compression, requested: Compression) -> String {
    format!(
        "step {}/{} reuses a cached {} layer, but --compression {} was requested; layers from the cache keep their compression. To write {} layers, rebuild with --no-cache, or with --no-cache-filter {} for each stage whose steps come from the cache",
        step.number,
        step.total,
        flag_name(cached),
        flag_name(requested),
        flag_name(requested),
        step.stage,
    )
}

/// Returns the `--compression` value that selects `compression`.
fn flag_name(compression: Compression) -> &'static str {
    match compression {
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
        Compression::None => "uncompressed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_compression_of_media_types() {
        let cases = [
            (MediaType::ImageLayerGzip, Some(Compression::Gzip)),
            (MediaType::ImageLayerZstd, Some(Compression::Zstd)),
            (MediaType::ImageLayer, Some(Compression::None)),
            (
                MediaType::Other("application/vnd.docker.image.rootfs.diff.tar.gzip".to_string()),
                Some(Compression::Gzip),
            ),
            (MediaType::ImageConfig, None),
        ];
        for (media_type, expected) in cases {
            assert_eq!(layer_compression(&media_type), expected, "{media_type}");
        }
    }

    #[test]
    fn mismatch_message_names_both_and_fix() {
        let step = StepId {
            number: 2,
            total: 3,
            stage: "build".to_string(),
        };
        let message = mismatch_message(&step, Compression::Gzip, Compression::Zstd);
        assert!(
            message.starts_with(
                "step 2/3 reuses a cached gzip layer, but --compression zstd was requested"
            ),
            "{message}"
        );
        assert!(message.contains("--no-cache,"), "{message}");
        assert!(message.contains("--no-cache-filter build"), "{message}");
    }
}
