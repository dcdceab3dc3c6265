//! `forge save`: write images to an OCI archive, an OCI layout folder or a
//! docker-archive, like `docker save`.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use forge_cache::archive::{ArchiveFormat, save, save_to_writer};
use forge_cache::store::Store;

use crate::Globals;
use crate::names::{normalise, resolve};

/// Arguments of `forge save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images to save: names, `NAME@sha256:...`, digests or image ids. An
    /// image given by name keeps that name in the archive.
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<String>,

    /// The archive file to write, or the folder for `oci-dir`. Without it
    /// the archive goes to standard output.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    output: Option<PathBuf>,

    /// Archive format: `oci` is a tar of an OCI image layout, `oci-dir` the
    /// layout as a folder, `docker` the docker-archive that `docker load`
    /// and `podman load` read.
    #[arg(long, value_enum, default_value_t = SaveFormat::Oci)]
    format: SaveFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SaveFormat {
    #[value(alias = "oci-archive")]
    Oci,
    OciDir,
    #[value(alias = "docker-archive")]
    Docker,
}

impl From<SaveFormat> for ArchiveFormat {
    fn from(format: SaveFormat) -> Self {
        match format {
            SaveFormat::Oci => ArchiveFormat::Oci,
            SaveFormat::OciDir => ArchiveFormat::OciDir,
            SaveFormat::Docker => ArchiveFormat::Docker,
        }
    }
}

/// Runs `forge save`.
pub fn run(globals: &Globals, args: &SaveArgs) -> anyhow::Result<()> {
    let store = globals.open_store()?;
    let references = args
        .images
        .iter()
        .map(|input| store_reference(&store, input))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let references: Vec<&str> = references.iter().map(String::as_str).collect();
    let format = ArchiveFormat::from(args.format);

    match &args.output {
        Some(path) => save(&store, &references, format, path)?,
        None => {
            if args.format == SaveFormat::OciDir {
                anyhow::bail!("--format oci-dir writes a folder; give its path with -o PATH");
            }
            let mut out = io::stdout().lock();
            if out.is_terminal() {
                anyhow::bail!(
                    "standard output is a terminal, which cannot take an archive; give a file with -o PATH or redirect the output"
                );
            }
            save_to_writer(&store, &references, format, &mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// Returns the reference to hand to the archive writer: the stored name
/// when `input` names an image, so the archive records it, else the
/// manifest digest.
fn store_reference(store: &Store, input: &str) -> anyhow::Result<String> {
    let descriptor = resolve(store, input)?;
    if let Ok(name) = normalise(input)
        && store
            .list_names()?
            .iter()
            .any(|(stored, entry)| *stored == name && entry.digest() == descriptor.digest())
    {
        return Ok(name);
    }
    Ok(descriptor.digest().to_string())
}
