//! `forge build`: build an image from a Dockerfile and a context, with
//! docker's flags.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use forge_builder::context::Context;
use forge_builder::executor::SandboxExecutor;
use forge_builder::{BuildOptions, Builder};
use forge_cache::layer::{self, Compression, ExtractOptions};
use forge_cache::store::Store;

use crate::Globals;
use crate::progress::{ProgressMode, display, short_id};

/// Arguments of `forge build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build context: a folder, or `-` to read a tar archive (optionally
    /// gzip or zstd compressed) from standard input.
    #[arg(value_name = "PATH|-")]
    context: PathBuf,

    /// Name and optionally tag of the image (`name:tag`); repeatable.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    tags: Vec<String>,

    /// Dockerfile to use; `-` reads it from standard input. Default:
    /// `Dockerfile` in the context.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,

    /// Build argument `KEY=VALUE`; `KEY` alone takes the value from the
    /// environment. Repeatable.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,

    /// Stage to build; default: the last stage.
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,

    /// Label `KEY=VALUE` added to the image. Repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,

    /// Execute every step without the build cache.
    #[arg(long)]
    no_cache: bool,

    /// Execute the steps of these stages without the build cache.
    /// Repeatable or comma-separated.
    #[arg(long, value_name = "STAGE", value_delimiter = ',')]
    no_cache_filter: Vec<String>,

    /// Pull newer base images first. Not wired yet: base images come
    /// from the store, so the flag only prints a note.
    #[arg(long)]
    pull: bool,

    /// Target platform; only `linux/amd64` is supported.
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,

    /// Write the image id to this file.
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,

    /// Print only the image id.
    #[arg(short, long)]
    quiet: bool,

    /// Progress output: `auto` (tty on a terminal, else plain), `tty`,
    /// `plain` or `json`.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,

    /// Output: only `type=image` (keep the image in the store) is
    /// supported.
    #[arg(short, long, value_name = "type=image")]
    output: Option<String>,

    /// Compression of new layers.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    compression: CompressionArg,

    /// Compression level of new layers (gzip 0-9, zstd 1-22).
    #[arg(long, value_name = "LEVEL")]
    compression_level: Option<i32>,

    /// Seconds since the Unix epoch used as the image and history time and
    /// as the latest file mtime in new layers, for reproducible images.
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    source_date_epoch: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompressionArg {
    Gzip,
    Zstd,
    Uncompressed,
}

/// Runs `forge build`.
pub fn run(globals: &Globals, args: &BuildArgs) -> anyhow::Result<()> {
    check_unsupported(args)?;
    let store = globals.open_store()?;
    let _lease = store
        .lease()
        .context("cannot lease the store for the build")?;

    // A context from standard input is unpacked into a work folder of the
    // store and removed afterwards.
    let stdin_context = args.context == Path::new("-");
    if stdin_context && args.file.as_deref() == Some(Path::new("-")) {
        bail!(
            "the context and the Dockerfile cannot both come from standard input; pass the Dockerfile with -f FILE"
        );
    }
    let unpacked = if stdin_context {
        Some(unpack_stdin_context(&store)?)
    } else {
        None
    };
    let result = build_in(args, &store, unpacked.as_deref());
    if let Some(dir) = unpacked {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

fn build_in(args: &BuildArgs, store: &Store, unpacked: Option<&Path>) -> anyhow::Result<()> {
    let context_dir = unpacked.unwrap_or(&args.context);
    if !context_dir.is_dir() {
        bail!(
            "the build context `{}` is not a folder; pass a folder, or - to read a tar archive from standard input",
            args.context.display()
        );
    }

    let (dockerfile_name, text, inside) = read_dockerfile(args.file.as_deref(), context_dir)?;
    let dockerfile = forge_parser::instructions::parse(&text)
        .map_err(|error| error.with_file(&dockerfile_name))?;
    let progress = display(args.progress, args.quiet);
    for warning in &dockerfile.warnings {
        progress.event(forge_builder::progress::ProgressEvent::Warning {
            message: format!("{dockerfile_name}:{}: {}", warning.line, warning.message),
        });
    }
    if args.pull {
        progress.event(forge_builder::progress::ProgressEvent::Warning {
            message: "--pull is not wired yet; base images come from the store (use `forge pull` to refresh them)".into(),
        });
    }

    let context = Context::open(context_dir, inside.as_deref())
        .with_context(|| format!("cannot open the build context `{}`", args.context.display()))?;
    let options = BuildOptions {
        dockerfile_name: dockerfile_name.clone(),
        build_args: build_args(&args.build_args)?,
        target: args.target.clone(),
        labels: labels(&args.labels)?,
        tags: args.tags.clone(),
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        compression: match args.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Uncompressed => Compression::None,
        },
        compression_level: args.compression_level,
        source_date_epoch: args.source_date_epoch,
        hash_cache: unpacked
            .is_none()
            .then(|| hash_cache_path(store, context_dir)),
        cache_mounts: Some(store.root().join("forge").join("cache-mounts")),
    };
    let executor = SandboxExecutor;
    let builder = Builder {
        store,
        context: Some(&context),
        executor: Some(&executor),
        progress: progress.as_ref(),
    };
    let output = builder.build(&dockerfile, &options)?;
    drop(progress);

    if let Some(path) = &args.iidfile {
        std::fs::write(path, &output.image_id)
            .with_context(|| format!("cannot write the image id to `{}`", path.display()))?;
    }
    if !args.quiet {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("Successfully built {}", short_id(&output.image_id));
            for name in &output.names {
                eprintln!("Successfully tagged {name}");
            }
        }
    }
    let mut out = io::stdout().lock();
    writeln!(out, "{}", output.image_id)?;
    out.flush()?;
    Ok(())
}

/// Rejects flag values that forge does not support yet.
fn check_unsupported(args: &BuildArgs) -> anyhow::Result<()> {
    if let Some(platform) = &args.platform
        && !matches!(platform.as_str(), "linux/amd64" | "linux/amd64/v1")
    {
        bail!(
            "platform `{platform}` is not supported yet; forge builds only linux/amd64 (drop --platform or pass linux/amd64)"
        );
    }
    if let Some(output) = &args.output {
        let kind = output
            .split(',')
            .find_map(|field| field.strip_prefix("type="))
            .unwrap_or(output.as_str());
        if kind != "image" {
            bail!(
                "output `{output}` is not supported yet; only --output type=image (the default) is, and `forge save` writes archives"
            );
        }
    }
    Ok(())
}

/// Reads the Dockerfile. Returns its name for messages, its text and,
/// when it lies inside the context, its path relative to the context.
fn read_dockerfile(
    file: Option<&Path>,
    context: &Path,
) -> anyhow::Result<(String, String, Option<PathBuf>)> {
    let (path, bytes) = match file {
        Some(path) if path == Path::new("-") => {
            let mut bytes = Vec::new();
            io::stdin()
                .read_to_end(&mut bytes)
                .context("failed to read the Dockerfile from standard input")?;
            let text = String::from_utf8(bytes).map_err(|_| {
                anyhow::anyhow!(
                    "the Dockerfile on standard input is not valid UTF-8; save it as UTF-8"
                )
            })?;
            return Ok(("<stdin>".to_string(), text, None));
        }
        Some(path) => (path.to_path_buf(), std::fs::read(path)),
        None => {
            let path = context.join("Dockerfile");
            let bytes = std::fs::read(&path);
            (path, bytes)
        }
    };
    let bytes = bytes.with_context(|| {
        format!(
            "failed to read Dockerfile `{}`; pass its path with -f FILE",
            path.display()
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "Dockerfile `{}` is not valid UTF-8; save it as UTF-8",
            path.display()
        )
    })?;
    let absolute = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    let inside = std::fs::canonicalize(context)
        .ok()
        .and_then(|root| absolute.strip_prefix(root).ok().map(Path::to_path_buf));
    Ok((absolute.display().to_string(), text, inside))
}

/// Parses `--build-arg` values; a name alone takes its value from the
/// environment and is left out when the variable is not set, as docker
/// does.
fn build_args(values: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut args = BTreeMap::new();
    for value in values {
        match value.split_once('=') {
            Some(("", _)) => {
                bail!("invalid --build-arg `{value}`: the name is empty; write KEY=VALUE")
            }
            Some((name, value)) => {
                args.insert(name.to_string(), value.to_string());
            }
            None if value.is_empty() => bail!("invalid --build-arg ``: write KEY=VALUE or KEY"),
            None => {
                if let Ok(from_env) = std::env::var(value) {
                    args.insert(value.clone(), from_env);
                }
            }
        }
    }
    Ok(args)
}

/// Parses `--label KEY=VALUE` values.
fn labels(values: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for value in values {
        match value.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                labels.insert(key.to_string(), value.to_string());
            }
            _ => bail!("invalid --label `{value}`: write KEY=VALUE"),
        }
    }
    Ok(labels)
}

/// Returns the file that keeps content hashes of `context` between builds.
fn hash_cache_path(store: &Store, context: &Path) -> PathBuf {
    let absolute = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in absolute.as_os_str().as_encoded_bytes() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    store
        .root()
        .join("forge")
        .join(format!("context-hashes-{hash:016x}.json"))
}

/// Unpacks a tar archive from standard input into a work folder of the
/// store, refusing entries that would leave it.
fn unpack_stdin_context(store: &Store) -> anyhow::Result<PathBuf> {
    let dir = store
        .create_work_dir()
        .context("cannot create a folder for the build context")?;
    let result = layer::decompress(Box::new(io::stdin()))
        .map_err(anyhow::Error::from)
        .and_then(|tar| {
            // Context files belong to the caller, as files in a context
            // folder do.
            let options = ExtractOptions {
                preserve_owners: false,
                skip_denied_devices: true,
                ..ExtractOptions::default()
            };
            layer::extract(tar, &dir, &options).map_err(anyhow::Error::from)
        });
    if let Err(error) = result {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(error.context("cannot unpack the build context from standard input"));
    }
    Ok(dir)
}
