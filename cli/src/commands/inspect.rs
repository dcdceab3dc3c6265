//! `forge inspect`: print what the store holds for images as a JSON array,
//! one object per image, like `docker image inspect`.

use std::io::{self, Write};

use clap::{Args, ValueEnum};
use forge_cache::store::Store;
use serde_json::{Value, json};

use super::images::{ImageInfo, read_image};
use crate::Globals;
use crate::names::{resolve, split_name};

/// Arguments of `forge inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Images to inspect: names, `NAME@sha256:...`, digests or image ids.
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,

    /// Output format: `json` prints a JSON array.
    #[arg(long, value_enum, default_value_t = InspectFormat::Json)]
    format: InspectFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InspectFormat {
    Json,
}

/// Runs `forge inspect`. Images that are found are printed even when
/// others are not; the command then fails naming the missing ones.
pub fn run(globals: &Globals, args: &InspectArgs) -> anyhow::Result<()> {
    let InspectFormat::Json = args.format;
    let store = globals.open_store()?;

    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for input in &args.images {
        match inspect_one(&store, input) {
            Ok(document) => documents.push(document),
            Err(error) => errors.push(error),
        }
    }

    let mut out = io::stdout().lock();
    // Serialised first, so that a closed pipe shows as an io::Error that
    // `exit` treats as a normal end.
    let text = serde_json::to_string_pretty(&documents)?;
    writeln!(out, "{text}")?;
    out.flush()?;
    super::combine_errors(errors)
}

fn inspect_one(store: &Store, input: &str) -> anyhow::Result<Value> {
    let descriptor = resolve(store, input)?;
    let image = read_image(store, &descriptor)?;
    document(store, &image)
}

/// Builds the inspect object of one image. The keys follow
/// `docker image inspect` where Docker has them; `Manifest`, `Config` and
/// `Index` hold the stored documents whole.
fn document(store: &Store, image: &ImageInfo) -> anyhow::Result<Value> {
    let digest = image.descriptor.digest();
    let names: Vec<String> = store
        .list_names()?
        .into_iter()
        .filter(|(_, descriptor)| descriptor.digest() == digest)
        .map(|(name, _)| name)
        .collect();
    let mut repo_digests: Vec<String> = names
        .iter()
        .map(|name| format!("{}@{digest}", split_name(name).0))
        .collect();
    repo_digests.dedup();

    let config_field = |name: &str| {
        image
            .config
            .get(name)
            .cloned()
            .unwrap_or_else(|| Value::String(String::new()))
    };
    let mut document = json!({
        "Id": image.id.to_string(),
        "Digest": digest.to_string(),
        "MediaType": image.descriptor.media_type().to_string(),
        "RepoTags": names,
        "RepoDigests": repo_digests,
        "Created": config_field("created"),
        "Author": config_field("author"),
        "Architecture": config_field("architecture"),
        "Os": config_field("os"),
        "Size": image.size,
        "VirtualSize": image.size,
        "ManifestDigest": image.manifest_digest.to_string(),
        "Manifest": image.manifest_document,
        "Config": image.config,
    });
    if let (Some(index), Some(object)) = (&image.index, document.as_object_mut()) {
        object.insert("Index".to_string(), index.clone());
    }
    Ok(document)
}
