//! `forge pull`: fetch an image from a registry into the store. Also contains
//! what every registry command shares: the connection flags, the client
//! they build, and the per-blob progress display.

#![allow(clippy::print_stderr)]

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::Args;
use forge_builder::transfer::{
    self, BlobOutcome, DEFAULT_JOBS, PullOptions, TransferEvent, TransferProgress, short_digest,
};
use forge_registry::{Client, ClientConfig, CredentialProvider, DockerConfig, Platform, Reference};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Globals;

/// The folder with one sub-folder of CA certificates per registry host,
/// as Docker lays it out.
const DEFAULT_CERT_DIR: &str = "/etc/docker/certs.d";

/// Flags of every command that talks to a registry.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Registry host (`HOST[:PORT]`) that may be reached over plain HTTP
    /// or with an unverified certificate. Repeatable.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST",
        env = "FORGE_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,

    /// Extra trusted CA certificate (PEM file) for registries. Repeatable.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,

    /// Folder with per-registry CA certificates in `HOST[:PORT]/*.crt`.
    #[arg(long = "cert-dir", value_name = "DIR", default_value = DEFAULT_CERT_DIR)]
    pub cert_dir: PathBuf,

    /// Number of blobs transferred at once.
    #[arg(long = "max-concurrent", value_name = "N", default_value_t = DEFAULT_JOBS)]
    pub jobs: usize,
}

impl RegistryArgs {
    /// Builds a client that reads credentials from the Docker client
    /// configuration and trusts the extra CAs for `hosts` (all hosts of
    /// the cert folder when `hosts` is `None`).
    pub fn client(&self, hosts: Option<&[&str]>) -> anyhow::Result<Client> {
        let credentials = DockerConfig::load()
            .context("cannot read the Docker client configuration for registry credentials")?;
        self.client_with(hosts, Box::new(credentials))
    }

    /// Like [`RegistryArgs::client`] with another credential source.
    pub fn client_with(
        &self,
        hosts: Option<&[&str]>,
        credentials: Box<dyn CredentialProvider>,
    ) -> anyhow::Result<Client> {
        let mut pems = Vec::new();
        for file in &self.ca_certs {
            let bytes = std::fs::read(file)
                .with_context(|| format!("cannot read the CA certificate `{}`", file.display()))?;
            pems.extend(split_pem(&bytes, file)?);
        }
        for dir in cert_dirs(&self.cert_dir, hosts) {
            for file in crt_files(&dir)? {
                let bytes = std::fs::read(&file).with_context(|| {
                    format!("cannot read the CA certificate `{}`", file.display())
                })?;
                pems.extend(split_pem(&bytes, &file)?);
            }
        }
        let config = ClientConfig {
            insecure_registries: self.insecure_registries.clone(),
            root_certificates_pem: pems,
            ..ClientConfig::default()
        };
        Client::new(config, credentials).context("cannot set up the registry client")
    }
}

/// Returns the per-host folders of `cert_dir` to read.
fn cert_dirs(cert_dir: &Path, hosts: Option<&[&str]>) -> Vec<PathBuf> {
    match hosts {
        Some(hosts) => hosts.iter().map(|host| cert_dir.join(host)).collect(),
        None => std::fs::read_dir(cert_dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default(),
    }
}

/// Lists `DIR/*.crt`, sorted; a missing folder has none.
fn crt_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) if error.kind() == io::ErrorKind::NotADirectory => return Ok(Vec::new()),
        Err(error) => {
            return Err(error).with_context(|| {
                format!("cannot list the certificate folder `{}`", dir.display())
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "crt"))
        .collect();
    files.sort();
    Ok(files)
}

/// Splits a PEM file into its certificates, because the client takes one
/// certificate per entry.
fn split_pem(bytes: &[u8], file: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = std::str::from_utf8(bytes)
        .with_context(|| format!("`{}` is not a PEM file", file.display()))?;
    let mut certificates = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let Some(length) = rest[start..].find(END) else {
            break;
        };
        let end = start + length + END.len();
        certificates.push(format!("{}\n", &rest[start..end]).into_bytes());
        rest = &rest[end..];
    }
    if certificates.is_empty() {
        anyhow::bail!(
            "`{}` contains no PEM certificate (`{BEGIN}`); pass a PEM-encoded CA certificate",
            file.display()
        );
    }
    Ok(certificates)
}

/// Arguments of `forge pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image to pull: `NAME[:TAG]`, or `NAME@DIGEST`, which keeps the image
    /// under its digest without a tag (a tag before the digest is ignored).
    #[arg(value_name = "NAME[:TAG]")]
    name: String,

    /// Platform to pick from a multi-platform image (`OS/ARCH[/VARIANT]`).
    #[arg(long, value_name = "PLATFORM", default_value = "linux/amd64")]
    platform: String,

    /// Print only the final name.
    #[arg(short, long)]
    quiet: bool,

    #[command(flatten)]
    registry: RegistryArgs,
}

/// Runs `forge pull`.
pub fn run(globals: &Globals, args: &PullArgs) -> anyhow::Result<()> {
    let reference: Reference = args
        .name
        .parse()
        .with_context(|| format!("invalid image name `{}`", args.name))?;
    let platform: Platform = args
        .platform
        .parse()
        .with_context(|| format!("invalid --platform `{}`", args.platform))?;
    let store = globals.open_store()?;
    let client = args.registry.client(Some(&[reference.registry()]))?;
    let options = PullOptions {
        platform,
        jobs: args.registry.jobs.max(1),
    };

    let display = TransferDisplay::new(args.quiet);
    if !args.quiet {
        // As in docker, a digest wins over a tag.
        let version = match reference.digest() {
            Some(digest) => digest.to_string(),
            None => reference.tag().unwrap_or("latest").to_string(),
        };
        display.line(&format!(
            "{version}: Pulling from {}",
            reference.repository()
        ));
    }
    let pulled = transfer::pull_image(&client, &store, &reference, &options, &*display)
        .with_context(|| format!("cannot pull `{}`", reference.familiar()))?;
    display.finish();

    let mut out = io::stdout().lock();
    if !args.quiet {
        writeln!(out, "Digest: {}", pulled.digest)?;
        if pulled.updated {
            writeln!(out, "Status: Downloaded newer image for {}", pulled.name)?;
        } else {
            writeln!(out, "Status: Image is up to date for {}", pulled.name)?;
        }
    }
    match reference.digest() {
        Some(digest) => writeln!(out, "{}", reference.with_digest(digest.clone()))?,
        None => writeln!(out, "{reference}")?,
    }
    out.flush()?;
    Ok(())
}

/// Shows blob transfers: a bar per blob with bytes and rate when standard
/// error is a terminal, one line per finished blob otherwise.
pub(crate) struct TransferDisplay {
    quiet: bool,
    bars: Option<(MultiProgress, Mutex<HashMap<String, ProgressBar>>)>,
    lock: Mutex<()>,
}

impl TransferDisplay {
    /// Creates the display; `quiet` shows nothing.
    pub(crate) fn new(quiet: bool) -> Arc<TransferDisplay> {
        let bars = (!quiet && io::stderr().is_terminal()).then(|| {
            (
                MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                Mutex::new(HashMap::new()),
            )
        });
        Arc::new(TransferDisplay {
            quiet,
            bars,
            lock: Mutex::new(()),
        })
    }

    /// Prints one line above the bars.
    pub(crate) fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(text);
            }
            None => {
                let _guard = self.lock.lock();
                let _ = writeln!(io::stderr().lock(), "{text}");
            }
        }
    }

    /// Ends every bar still running.
    pub(crate) fn finish(&self) {
        if let Some((_, bars)) = &self.bars
            && let Ok(mut bars) = bars.lock()
        {
            for (_, bar) in bars.drain() {
                bar.abandon();
            }
        }
    }

    fn outcome_text(outcome: &BlobOutcome) -> String {
        match outcome {
            BlobOutcome::AlreadyPresent => "Already exists".to_string(),
            BlobOutcome::Downloaded => "Pull complete".to_string(),
            BlobOutcome::AlreadyExists => "Layer already exists".to_string(),
            BlobOutcome::Mounted { from } => format!("Mounted from {from}"),
            BlobOutcome::Uploaded => "Pushed".to_string(),
        }
    }
}

impl TransferProgress for TransferDisplay {
    fn event(&self, event: TransferEvent) {
        if self.quiet {
            return;
        }
        let Some((multi, bars)) = &self.bars else {
            if let TransferEvent::BlobFinished {
                digest, outcome, ..
            } = event
            {
                self.line(&format!(
                    "{}: {}",
                    short_digest(&digest),
                    Self::outcome_text(&outcome)
                ));
            }
            return;
        };
        let Ok(mut bars) = bars.lock() else {
            return;
        };
        match event {
            TransferEvent::Resolved { .. } => {}
            TransferEvent::BlobStarted { digest, size } => {
                let bar = multi.add(ProgressBar::new(size));
                let style = ProgressStyle::with_template(
                    "{prefix}: {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_prefix(short_digest(&digest).to_string());
                bars.insert(digest.to_string(), bar);
            }
            TransferEvent::BlobProgress { digest, done, .. } => {
                if let Some(bar) = bars.get(&digest.to_string()) {
                    bar.set_position(done);
                }
            }
            TransferEvent::BlobFinished {
                digest, outcome, ..
            } => {
                let text = format!(
                    "{}: {}",
                    short_digest(&digest),
                    Self::outcome_text(&outcome)
                );
                match bars.remove(&digest.to_string()) {
                    Some(bar) => {
                        bar.set_style(
                            ProgressStyle::with_template("{msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_bar()),
                        );
                        bar.finish_with_message(text);
                    }
                    None => {
                        let _ = multi.println(text);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    #[test]
    fn split_pem_finds_each_certificate() {
        let bundle = format!("comment\n{CERT}{CERT}");
        let parts = split_pem(bundle.as_bytes(), Path::new("ca.pem")).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], CERT.as_bytes());
    }

    #[test]
    fn split_pem_rejects_other_files() {
        let error = split_pem(b"not a certificate", Path::new("ca.pem")).unwrap_err();
        assert!(error.to_string().contains("ca.pem"), "{error}");
    }

    #[test]
    fn crt_files_of_missing_folder_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let files = crt_files(&dir.path().join("missing")).unwrap();
        assert!(files.is_empty());
    }

    #[test]
    fn crt_files_lists_only_crt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.crt"), CERT).unwrap();
        std::fs::write(dir.path().join("a.crt"), CERT).unwrap();
        std::fs::write(dir.path().join("client.key"), "key").unwrap();
        let files = crt_files(dir.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .filter_map(|path| path.file_name()?.to_str())
            .collect();
        assert_eq!(names, ["a.crt", "b.crt"]);
    }
}
