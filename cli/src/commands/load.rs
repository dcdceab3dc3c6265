//! `forge load`: read images from an OCI archive, an OCI layout folder or
//! a docker-archive into the store, like `docker load`.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use forge_cache::archive::load;
use forge_cache::store::Store;

use crate::Globals;
use crate::names::normalise;

/// Arguments of `forge load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive (tar, plain or compressed) or OCI layout folder to read.
    /// Without it the archive is read from standard input.
    #[arg(short = 'i', long = "input", value_name = "PATH")]
    input: Option<PathBuf>,

    /// Print nothing.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
}

/// Runs `forge load` and prints `Loaded image: NAME` per name, or
/// `Loaded image ID: ID` for an image the archive does not name. For an
/// image that an OCI `ref.name` tags without a repository, a hint on
/// standard error shows how to name it.
pub fn run(globals: &Globals, args: &LoadArgs) -> anyhow::Result<()> {
    let store = globals.open_store()?;
    let normalise_name = |name: &str| normalise(name).map_err(|error| format!("{error:#}"));

    let images = match &args.input {
        Some(path) => load(&store, path, &normalise_name)?,
        None => {
            // The lease keeps `prune` from removing the copy before the
            // loader takes its own.
            let _lease = store.lease()?;
            let spooled = spool_stdin(&store)?;
            let result = load(&store, &spooled.join("archive"), &normalise_name);
            // The archive copy is no longer needed whatever the result.
            let _ = std::fs::remove_dir_all(&spooled);
            result?
        }
    };

    if args.quiet {
        return Ok(());
    }
    let mut out = io::stdout().lock();
    for image in &images {
        if image.names.is_empty() {
            writeln!(out, "Loaded image ID: {}", image.image_id)?;
            if let Some(tag) = image.bare_tags.first() {
                hint_bare_tag(image.image_id.digest(), tag);
            }
        }
        for name in &image.names {
            writeln!(out, "Loaded image: {name}")?;
        }
    }
    Ok(out.flush()?)
}

/// Prints how to name an image that the archive tags without a repository.
/// `id_hex` is the image id without `sha256:`.
#[allow(clippy::print_stderr)]
fn hint_bare_tag(id_hex: &str, tag: &str) {
    let short = id_hex.get(..12).unwrap_or(id_hex);
    eprintln!(
        "hint: the archive gives image {short} only the tag `{tag}`, without a repository, so it was loaded unnamed; name it with `forge tag {short} REPOSITORY:{tag}`"
    );
}

/// Copies standard input into a work folder of the store, because the
/// loader reads an archive by path, and returns the folder. The file in it
/// is named `archive`.
fn spool_stdin(store: &Store) -> anyhow::Result<PathBuf> {
    let mut stdin = io::stdin().lock();
    if stdin.is_terminal() {
        anyhow::bail!("no archive given; pass -i PATH or pipe the archive to standard input");
    }
    let dir = store.create_work_dir()?;
    let path: &Path = &dir.join("archive");
    let copied = File::create(path).and_then(|mut file| {
        io::copy(&mut stdin, &mut file)?;
        file.sync_all()
    });
    if let Err(error) = copied {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(error).context("failed to copy the archive from standard input");
    }
    Ok(dir)
}
