//! `forge logout`: remove stored credentials for a registry.

use std::io::{self, Write};

use anyhow::Context as _;
use clap::Args;
use forge_registry::DockerConfig;

use super::login::{config_key, registry_host};

/// Arguments of `forge logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host (`HOST[:PORT]`); default: Docker Hub.
    #[arg(value_name = "REGISTRY")]
    server: Option<String>,
}

/// Runs `forge logout`.
pub fn run(args: &LogoutArgs) -> anyhow::Result<()> {
    let host = registry_host(args.server.as_deref())?;
    let key = config_key(&host);
    let mut config = DockerConfig::load()
        .context("cannot read the Docker client configuration to remove the credentials")?;
    let removed = config.erase(&host).with_context(|| {
        format!(
            "cannot remove the credentials for {host} from `{}`",
            config.path().display()
        )
    })?;
    let mut out = io::stdout().lock();
    if removed {
        writeln!(out, "Removing login credentials for {key}")?;
    } else {
        writeln!(out, "Not logged in to {key}")?;
    }
    out.flush()?;
    Ok(())
}
