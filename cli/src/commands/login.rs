//! `forge login`: check credentials against a registry and store them in
//! the Docker client configuration (or its credential helper).

use std::io::{self, BufRead, IsTerminal, Write};

use anyhow::{Context as _, bail};
use clap::Args;
use forge_registry::credentials::server_key;
use forge_registry::{ClientError, Credential, CredentialError, CredentialProvider, DockerConfig};
use forge_registry::{Reference, reference::DOCKER_HUB};

use super::pull::RegistryArgs;

/// Arguments of `forge login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host (`HOST[:PORT]`); default: Docker Hub.
    #[arg(value_name = "REGISTRY")]
    server: Option<String>,

    /// User name.
    #[arg(short, long, value_name = "USER")]
    username: Option<String>,

    /// Password or access token. Visible to other users of the machine
    /// in the process list; prefer --password-stdin.
    #[arg(
        short,
        long,
        value_name = "PASSWORD",
        conflicts_with = "password_stdin"
    )]
    password: Option<String>,

    /// Read the password or access token from standard input.
    #[arg(long)]
    password_stdin: bool,

    #[command(flatten)]
    registry: RegistryArgs,
}

/// Returns the registry host that a `login`/`logout` argument names:
/// `https://host:5000/v1/` and `host:5000` both give `host:5000`, and no
/// argument gives Docker Hub.
pub(crate) fn registry_host(server: Option<&str>) -> anyhow::Result<String> {
    let Some(server) = server.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(DOCKER_HUB.to_string());
    };
    let without_scheme = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    let host = without_scheme
        .split_once('/')
        .map_or(without_scheme, |(host, _)| host);
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('@') {
        bail!("invalid registry `{server}`: expected HOST[:PORT], such as registry.example:5000");
    }
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        other => other,
    };
    Ok(host.to_string())
}

/// Gives the credential under test to the client for every registry.
struct Candidate(Credential);

impl CredentialProvider for Candidate {
    fn credential(&self, _registry: &str) -> Result<Option<Credential>, CredentialError> {
        Ok(Some(self.0.clone()))
    }
}

/// Runs `forge login`.
pub fn run(args: &LoginArgs) -> anyhow::Result<()> {
    let host = registry_host(args.server.as_deref())?;
    let username = match &args.username {
        Some(username) => username.clone(),
        None => prompt_username()?,
    };
    let password = read_password(args)?;
    if username.is_empty() || password.is_empty() {
        bail!("a user name and a password are required; pass -u USER and --password-stdin");
    }
    let credential = Credential::UserPassword { username, password };

    // Any repository name works for the check: only `/v2/` is requested.
    let probe = Reference::from_parts(&host, "forge/login", None, None)
        .with_context(|| format!("invalid registry `{host}`"))?;
    let client = args.registry.client_with(
        Some(&[host.as_str()]),
        Box::new(Candidate(credential.clone())),
    )?;
    if let Err(error) = client.check_access(&probe) {
        if let ClientError::Unauthorized { status, .. } = &error {
            bail!(
                "login to {host} failed: the registry rejected the user name or password (HTTP {status}); check them and try again"
            );
        }
        return Err(error).with_context(|| format!("login to {host} failed"));
    }

    let mut config = DockerConfig::load()
        .context("cannot read the Docker client configuration to store the credentials")?;
    config.store(&host, &credential).with_context(|| {
        format!(
            "cannot store the credentials for {host} in `{}`",
            config.path().display()
        )
    })?;
    let mut out = io::stdout().lock();
    writeln!(out, "Login Succeeded")?;
    out.flush()?;
    Ok(())
}

/// Asks for the user name on a terminal.
fn prompt_username() -> anyhow::Result<String> {
    if !io::stdin().is_terminal() {
        bail!("no user name given; pass it with -u USER");
    }
    #[allow(clippy::print_stderr)]
    {
        eprint!("Username: ");
    }
    let mut line = String::new();
    io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the user name from the terminal")?;
    Ok(line.trim().to_string())
}

/// Returns the password from `-p` or standard input. Only the line end is
/// removed from a password read from standard input.
fn read_password(args: &LoginArgs) -> anyhow::Result<String> {
    if let Some(password) = &args.password {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "WARNING! Using --password via the command line is insecure; use --password-stdin."
            );
        }
        return Ok(password.clone());
    }
    if !args.password_stdin {
        // NOTE: forge has no prompt that hides typed text, so it does not
        // ask for a password on a terminal.
        bail!("no password given; pass it on standard input with --password-stdin");
    }
    let mut text = String::new();
    io::stdin()
        .lock()
        .read_line(&mut text)
        .context("cannot read the password from standard input")?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    Ok(password.to_string())
}

/// Returns the configuration key that `forge login` stores `host` under.
pub(crate) fn config_key(host: &str) -> String {
    server_key(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_host_defaults_to_docker_hub() {
        assert_eq!(registry_host(None).unwrap(), "docker.io");
        assert_eq!(config_key("docker.io"), "https://index.docker.io/v1/");
    }

    #[test]
    fn registry_host_strips_scheme_and_path() {
        assert_eq!(
            registry_host(Some("https://registry.example:5000/v1/")).unwrap(),
            "registry.example:5000"
        );
        assert_eq!(
            registry_host(Some("127.0.0.1:5000")).unwrap(),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_host(Some("index.docker.io")).unwrap(), "docker.io");
    }

    #[test]
    fn registry_host_rejects_user_info() {
        assert!(registry_host(Some("user@host")).is_err());
    }
}
