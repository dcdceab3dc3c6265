//! `forge tag`: give an image another name, like `docker tag`.

use clap::Args;

use crate::Globals;
use crate::names::{normalise, resolve};

/// Arguments of `forge tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image to name: a name, `NAME@sha256:...`, a digest or an image
    /// id.
    #[arg(value_name = "SOURCE")]
    source: String,

    /// The new name, `NAME[:TAG]`; the tag defaults to `latest`. A name
    /// that another image has moves to this one, and that image is listed
    /// as `<none>` when it has no other name.
    #[arg(value_name = "TARGET")]
    target: String,
}

/// Runs `forge tag`. It prints nothing on success, as Docker does.
pub fn run(globals: &Globals, args: &TagArgs) -> anyhow::Result<()> {
    let target = normalise(&args.target)?;
    let store = globals.open_store()?;
    let descriptor = resolve(&store, &args.source)?;
    store.set_name(&target, &descriptor)?;
    Ok(())
}
