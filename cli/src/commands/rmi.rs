//! `forge rmi`: remove image names and unnamed images, like `docker rmi`.
//! The blobs stay until `forge prune`.

use std::io::{self, Write};

use clap::Args;
use forge_cache::store::Store;

use crate::Globals;
use crate::names::{normalise, resolve};

/// Arguments of `forge rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images to remove: names, `NAME@sha256:...`, digests or image ids.
    /// A name removes that name only; an id or digest removes every name
    /// of the image, or the unnamed image.
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,

    /// Remove every name of an image given by id or digest even when it
    /// has several.
    #[arg(short = 'f', long = "force")]
    force: bool,
}

/// Runs `forge rmi`: prints `Untagged: NAME` for each removed name and
/// `Deleted: ID` when the image has no name left or was unnamed. Goes on
/// after an image that cannot be removed and fails at the end.
pub fn run(globals: &Globals, args: &RmiArgs) -> anyhow::Result<()> {
    let store = globals.open_store()?;
    let mut out = io::stdout().lock();
    let mut errors = Vec::new();
    for input in &args.images {
        if let Err(error) = remove_one(&store, input, args.force, &mut out) {
            errors.push(error);
        }
    }
    out.flush()?;
    super::combine_errors(errors)
}

fn remove_one(store: &Store, input: &str, force: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let descriptor = resolve(store, input)?;
    let digest = descriptor.digest();
    let id = store.image_id(&descriptor)?;
    let names: Vec<String> = store
        .list_names()?
        .into_iter()
        .filter(|(_, entry)| entry.digest() == digest)
        .map(|(name, _)| name)
        .collect();

    // A name resolves before an image id, so input that is one of the
    // image's names was meant as that name.
    let by_name = normalise(input).ok().filter(|name| names.contains(name));

    let remove: Vec<String> = match by_name {
        Some(name) => vec![name],
        None if names.is_empty() => {
            if !store.remove_unnamed(digest)? {
                anyhow::bail!(
                    "image {input} has no name and is not kept as an unnamed image, so there is nothing to remove; `forge prune` removes its blobs unless a name reaches them"
                );
            }
            writeln!(out, "Deleted: {id}")?;
            return Ok(());
        }
        None if names.len() > 1 && !force => anyhow::bail!(
            "image {input} has several names ({}); remove them one by one or pass -f to remove them all",
            names.join(", ")
        ),
        None => names.clone(),
    };

    for name in &remove {
        store.remove_name(name)?;
        writeln!(out, "Untagged: {name}")?;
    }
    if names.len() == remove.len() {
        // `index.json` written by another tool may also list the image
        // without a name; that entry goes with the last name.
        store.remove_unnamed(digest)?;
        writeln!(out, "Deleted: {id}")?;
    }
    Ok(())
}
