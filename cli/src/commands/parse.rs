//! `forge parse`: print a Dockerfile's instructions in BuildKit's node form
//! or as typed JSON.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};

/// Arguments of `forge parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Dockerfile to read; `-` reads standard input.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "path"
    )]
    file: Option<PathBuf>,

    /// Dockerfile, or a folder that contains one, as an alternative to `-f`; `-`
    /// reads standard input. Default: `Dockerfile` in the current folder.
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,

    /// Output format: `node` prints one line per instruction in the form
    /// of BuildKit's parser tests, after the first parsing stage only;
    /// `json` also checks every instruction and flag and prints the typed
    /// instructions with their line spans.
    #[arg(long, value_enum, default_value_t = Format::Node)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Node,
    Json,
}

/// Runs `forge parse`.
pub fn run(args: &ParseArgs) -> anyhow::Result<()> {
    let (name, text) = read_dockerfile(args.file.as_deref().or(args.path.as_deref()))?;

    let mut out = io::stdout().lock();
    match args.format {
        Format::Node => {
            let tree = forge_parser::syntax::parse(&text).map_err(|e| e.with_file(&name))?;
            print_warnings(&name, &tree.warnings);
            for node in &tree.nodes {
                writeln!(out, "{}", node.render())?;
            }
        }
        Format::Json => {
            let dockerfile =
                forge_parser::instructions::parse(&text).map_err(|e| e.with_file(&name))?;
            print_warnings(&name, &dockerfile.warnings);
            serde_json::to_writer_pretty(&mut out, &dockerfile)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Reads the Dockerfile named on the command line and returns the name to
/// use in messages with its text.
fn read_dockerfile(path: Option<&Path>) -> anyhow::Result<(String, String)> {
    let bytes = match path {
        Some(path) if path == Path::new("-") => {
            let mut bytes = Vec::new();
            io::stdin()
                .read_to_end(&mut bytes)
                .context("failed to read the Dockerfile from standard input")?;
            return decode("<stdin>".to_string(), bytes);
        }
        Some(path) if path.is_dir() => {
            let file = path.join("Dockerfile");
            (file.clone(), std::fs::read(&file))
        }
        Some(path) => (path.to_path_buf(), std::fs::read(path)),
        None => (PathBuf::from("Dockerfile"), std::fs::read("Dockerfile")),
    };
    let (file, result) = bytes;
    let bytes = result.with_context(|| {
        format!(
            "failed to read Dockerfile `{}`; pass its path with -f FILE, or - to read standard input",
            file.display()
        )
    })?;
    decode(file.display().to_string(), bytes)
}

fn decode(name: String, bytes: Vec<u8>) -> anyhow::Result<(String, String)> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok((name, text)),
        Err(error) => {
            let offset = error.utf8_error().valid_up_to();
            let line = error.as_bytes()[..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            anyhow::bail!("{name}:{line}: the Dockerfile is not valid UTF-8; save it as UTF-8")
        }
    }
}

#[allow(clippy::print_stderr)]
fn print_warnings(name: &str, warnings: &[forge_parser::Warning]) {
    for warning in warnings {
        eprintln!("warning: {name}:{}: {}", warning.line, warning.message);
    }
}
