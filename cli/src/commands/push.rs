//! `forge push`: send a stored image to a registry.

use std::io::{self, Write};

use anyhow::Context as _;
use clap::Args;
use forge_builder::transfer::{self, PushOptions, Pushed};
use forge_cache::store::Store;
use forge_registry::{Client, Reference};
use oci_spec::image::Descriptor;

use super::pull::{RegistryArgs, TransferDisplay};
use crate::Globals;

/// Arguments of `forge push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Stored image to push; with one argument also the destination
    /// (`NAME[:TAG]`).
    #[arg(value_name = "NAME[:TAG]|SOURCE")]
    source: String,

    /// Destination in the registry (`NAME[:TAG]` or `NAME@DIGEST`);
    /// default: SOURCE.
    #[arg(value_name = "DESTINATION")]
    destination: Option<String>,

    /// Print only the pushed digest.
    #[arg(short, long)]
    quiet: bool,

    #[command(flatten)]
    registry: RegistryArgs,
}

/// Runs `forge push`.
pub fn run(globals: &Globals, args: &PushArgs) -> anyhow::Result<()> {
    let target = args.destination.as_deref().unwrap_or(&args.source);
    let destination: Reference = target
        .parse()
        .with_context(|| format!("invalid destination `{target}`"))?;
    let store = globals.open_store()?;
    let source = crate::names::resolve(&store, &args.source)?;
    let client = args.registry.client(Some(&[destination.registry()]))?;
    let mut out = io::stdout().lock();
    push_one(
        &client,
        &store,
        &source,
        &destination,
        args.registry.jobs,
        args.quiet,
        &mut out,
    )
}

/// Pushes `source` to `destination` and writes docker's result line to
/// `out`: `TAG: digest: sha256:... size: N`, or the digest alone for a
/// push by digest or with `quiet`.
pub(crate) fn push_one(
    client: &Client,
    store: &Store,
    source: &Descriptor,
    destination: &Reference,
    jobs: usize,
    quiet: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let display = TransferDisplay::new(quiet);
    if !quiet {
        display.line(&format!(
            "The push refers to repository [{}/{}]",
            destination.registry(),
            destination.repository()
        ));
    }
    let options = PushOptions { jobs: jobs.max(1) };
    let result = transfer::push_image(client, store, source, destination, &options, &*display);
    display.finish();
    let Pushed { digest, size } =
        result.with_context(|| format!("cannot push `{}`", destination.familiar()))?;

    match destination.tag() {
        Some(tag) if !quiet => writeln!(out, "{tag}: digest: {digest} size: {size}")?,
        _ => writeln!(out, "{digest}")?,
    }
    out.flush()?;
    Ok(())
}
