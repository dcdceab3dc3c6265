//! `forge build`: build an image from a Dockerfile and a context, with
//! docker's flags.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use forge_builder::build::export::{Destination, OutputSpec, export};
use forge_builder::context::{Context, ContextOrigin};
use forge_builder::executor::SandboxExecutor;
use forge_builder::secrets::{Secrets, SshAgents};
use forge_builder::transfer::{BasePuller, PullOptions};
use forge_builder::{BuildOptions, Builder};
use forge_cache::layer::{self, Compression, ExtractOptions};
use forge_cache::store::Store;

use crate::Globals;
use crate::progress::{ProgressMode, display, short_id};

/// Arguments of `forge build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build context: a folder, or `-` to read from standard input a tar
    /// archive (optionally gzip, bzip2, xz or zstd compressed) or a
    /// Dockerfile with an empty context.
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

    /// Resolve every `FROM` image in its registry and pull it when it
    /// changed, even when the store has it. Without the flag only images
    /// missing from the store are pulled.
    #[arg(long)]
    pull: bool,

    /// Push every `-t` name to its registry after the build.
    #[arg(long)]
    push: bool,

    #[command(flatten)]
    registry: super::pull::RegistryArgs,

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

    /// Where the image goes besides the store: `type=image` (the store
    /// only, the default), `type=oci,dest=FILE`, `type=oci-dir,dest=DIR`,
    /// `type=docker,dest=FILE`, `type=tar,dest=FILE` (the root file system)
    /// or `type=local,dest=DIR`; `dest=-` writes an archive or tar to
    /// standard output. `-o DIR` means `type=local,dest=DIR`. The store
    /// keeps the image and its `-t` names with every type. Repeatable.
    #[arg(short, long = "output", value_name = "type=TYPE,dest=PATH")]
    outputs: Vec<String>,

    /// Secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or
    /// `id=ID,env=VAR` (also `type=file|env`). Repeatable.
    #[arg(long = "secret", value_name = "id=ID,src=FILE")]
    secrets: Vec<String>,

    /// SSH agent for `RUN --mount=type=ssh`: `default` (the agent of
    /// SSH_AUTH_SOCK) or `ID=SOCKET`. Repeatable.
    #[arg(long = "ssh", value_name = "default|ID=SOCKET")]
    ssh: Vec<String>,

    /// Extra privilege the build may grant, as in buildx:
    /// `security.insecure` lets `RUN --security=insecure` run with every
    /// capability and unmasked /proc; `network.host` is accepted and
    /// changes nothing, because `RUN --network=host` needs no permission
    /// in forge. Repeatable or comma-separated.
    #[arg(
        long = "allow",
        value_enum,
        value_name = "ENTITLEMENT",
        value_delimiter = ','
    )]
    allow: Vec<Entitlement>,

    /// Compression of new layers.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    compression: CompressionArg,

    /// Compression level of new layers: gzip 0-9 (default 6), zstd up to
    /// 22 (default 3; negative levels are zstd's fast modes).
    #[arg(long, value_name = "LEVEL", allow_negative_numbers = true)]
    compression_level: Option<i32>,

    /// Seconds since the Unix epoch used as the image and history time and
    /// as the latest file mtime in new layers, for reproducible images.
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    source_date_epoch: Option<i64>,
}

/// A privilege named by `--allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Entitlement {
    /// `RUN --security=insecure`.
    #[value(name = "security.insecure")]
    SecurityInsecure,
    /// `RUN --network=host`, which forge allows without it.
    #[value(name = "network.host")]
    NetworkHost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompressionArg {
    Gzip,
    Zstd,
    Uncompressed,
}

impl CompressionArg {
    fn compression(self) -> Compression {
        match self {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Uncompressed => Compression::None,
        }
    }
}

/// Largest Dockerfile that `forge build` reads, in bytes (16 MiB).
const MAX_DOCKERFILE_SIZE: u64 = 16 << 20;

/// Runs `forge build`.
pub fn run(globals: &Globals, args: &BuildArgs) -> anyhow::Result<()> {
    check_unsupported(args)?;
    check_compression_level(args)?;
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
    let result = build_in(args, &store, unpacked.as_ref());
    if let Some(unpacked) = unpacked {
        let _ = std::fs::remove_dir_all(unpacked.dir);
    }
    result
}

fn build_in(
    args: &BuildArgs,
    store: &Store,
    unpacked: Option<&StdinContext>,
) -> anyhow::Result<()> {
    let context_dir = unpacked.map_or(args.context.as_path(), |unpacked| unpacked.dir.as_path());
    if !context_dir.is_dir() {
        bail!(
            "the build context `{}` is not a folder; pass a folder, or - to read a tar archive from standard input",
            args.context.display()
        );
    }

    // A Dockerfile on standard input replaces `-f`, as in docker. With an
    // archive on standard input, `-f` names a file inside the archive.
    let dockerfile_on_stdin = unpacked.is_some_and(|unpacked| unpacked.is_dockerfile);
    let archive_dockerfile = match unpacked {
        Some(unpacked) if !unpacked.is_dockerfile => {
            Some(dockerfile_in_archive(args.file.as_deref(), context_dir)?)
        }
        _ => None,
    };
    let file = if dockerfile_on_stdin {
        None
    } else if let Some(path) = &archive_dockerfile {
        Some(path.as_path())
    } else {
        args.file.as_deref()
    };
    let (mut dockerfile_name, text, inside) = read_dockerfile(file, context_dir)?;
    // Messages name a file of a context from standard input by its path
    // in that input, not by the work folder it was unpacked into.
    if dockerfile_on_stdin {
        dockerfile_name = "<stdin>".to_string();
    } else if unpacked.is_some()
        && let Some(inside) = &inside
    {
        dockerfile_name = format!("<stdin>/{}", inside.display());
    }
    let dockerfile = forge_parser::instructions::parse(&text)
        .map_err(|error| error.with_file(&dockerfile_name))?;
    let progress = display(args.progress, args.quiet);
    for warning in &dockerfile.warnings {
        progress.event(forge_builder::progress::ProgressEvent::Warning {
            message: format!("{dockerfile_name}:{}: {}", warning.line, warning.message),
        });
    }
    if args.push && args.tags.is_empty() {
        bail!("--push needs at least one -t NAME to push to");
    }
    let client = registry_client(args)?;
    let outputs = output_specs(&args.outputs)?;
    let (secrets, ssh) = secrets_and_agents(args)?;

    let origin = match unpacked {
        None => ContextOrigin::Folder,
        Some(unpacked) if unpacked.is_dockerfile => ContextOrigin::StdinDockerfile,
        Some(_) => ContextOrigin::StdinArchive,
    };
    let context = Context::open(context_dir, inside.as_deref())
        .with_context(|| format!("cannot open the build context `{}`", args.context.display()))?
        .with_origin(origin);
    let options = BuildOptions {
        dockerfile_name: dockerfile_name.clone(),
        build_args: build_args(&args.build_args)?,
        target: args.target.clone(),
        labels: labels(&args.labels)?,
        tags: args.tags.clone(),
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        compression: args.compression.compression(),
        compression_level: args.compression_level,
        source_date_epoch: args.source_date_epoch,
        hash_cache: unpacked
            .is_none()
            .then(|| hash_cache_path(store, context_dir)),
        cache_mounts: Some(store.root().join("forge").join("cache-mounts")),
        base_puller: client.clone().map(|client| BasePuller {
            client,
            options: PullOptions {
                jobs: args.registry.jobs.max(1),
                ..PullOptions::default()
            },
            always: args.pull,
        }),
        secrets,
        ssh,
        allow_insecure: args.allow.contains(&Entitlement::SecurityInsecure),
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
    let mut to_stdout = false;
    for spec in &outputs {
        to_stdout |= spec.dest == Some(Destination::Stdout);
        let mut stdout = io::stdout().lock();
        export(store, &output.manifest, &output.names, spec, &mut stdout)
            .with_context(|| format!("cannot write the output `{spec}`"))?;
        stdout.flush()?;
    }
    if args.push
        && let Some(client) = &client
    {
        for name in &output.names {
            let destination: forge_registry::Reference = name
                .parse()
                .with_context(|| format!("invalid image name `{name}` to push"))?;
            // The result line is written after the push, because the
            // push's progress threads write to standard error meanwhile.
            let mut result = Vec::new();
            super::push::push_one(
                client,
                store,
                &output.manifest,
                &destination,
                args.registry.jobs,
                args.quiet,
                &mut result,
            )?;
            io::stderr().write_all(&result)?;
        }
    }
    // An output on standard output leaves no room for the image id.
    if !to_stdout {
        let mut out = io::stdout().lock();
        writeln!(out, "{}", output.image_id)?;
        out.flush()?;
    }
    Ok(())
}

/// Parses the `--output` values; at most one may use standard output.
fn output_specs(values: &[String]) -> anyhow::Result<Vec<OutputSpec>> {
    let specs = values
        .iter()
        .map(|value| value.parse::<OutputSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let on_stdout = specs
        .iter()
        .filter(|spec| spec.dest == Some(Destination::Stdout))
        .count();
    if on_stdout > 1 {
        bail!("{on_stdout} outputs write to standard output (dest=-); give all but one a file");
    }
    Ok(specs)
}

/// Parses the `--secret` and `--ssh` values, reading environment variables
/// and `SSH_AUTH_SOCK` now.
fn secrets_and_agents(args: &BuildArgs) -> anyhow::Result<(Secrets, SshAgents)> {
    let mut secrets = Secrets::default();
    let env = |name: &str| std::env::var(name).ok();
    for spec in &args.secrets {
        secrets.add(spec, &env)?;
    }
    let mut agents = SshAgents::default();
    let agent_socket = std::env::var("SSH_AUTH_SOCK").ok();
    for spec in &args.ssh {
        agents.add(spec, agent_socket.as_deref())?;
    }
    Ok((secrets, agents))
}

/// Builds the registry client for pulling bases and pushing. Without
/// `--pull` and `--push` a client that cannot be set up only disables
/// pulling of missing bases.
fn registry_client(args: &BuildArgs) -> anyhow::Result<Option<Arc<forge_registry::Client>>> {
    match args.registry.client(None) {
        Ok(client) => Ok(Some(Arc::new(client))),
        Err(error) if !args.pull && !args.push => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "warning: base images missing from the store cannot be pulled: {error:#}"
                );
            }
            Ok(None)
        }
        Err(error) => Err(error),
    }
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
    Ok(())
}

/// Rejects a `--compression-level` outside the range of `--compression`
/// before any work, so that a build whose layers all come from the cache
/// rejects it too.
fn check_compression_level(args: &BuildArgs) -> anyhow::Result<()> {
    let Some(level) = args.compression_level else {
        return Ok(());
    };
    let compression = args.compression.compression();
    let (min, max) = compression.level_range();
    if level < min || level > max {
        let name = match args.compression {
            CompressionArg::Gzip => "gzip",
            CompressionArg::Zstd => "zstd",
            CompressionArg::Uncompressed => "uncompressed",
        };
        if min == max {
            bail!(
                "invalid --compression-level {level}: --compression {name} accepts only level {min}; drop --compression-level or pick another --compression"
            );
        }
        bail!(
            "invalid --compression-level {level}: --compression {name} accepts levels {min} to {max}; pass a level in that range"
        );
    }
    Ok(())
}

/// Reads at most [`MAX_DOCKERFILE_SIZE`] bytes of a Dockerfile from
/// `input`, and fails naming `name` when it contains more.
fn read_limited(input: impl Read, name: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    input
        .take(MAX_DOCKERFILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("failed to read {name}"))?;
    if bytes.len() as u64 > MAX_DOCKERFILE_SIZE {
        bail!(too_large(name, None));
    }
    Ok(bytes)
}

/// Formats the error for a Dockerfile over [`MAX_DOCKERFILE_SIZE`]. `size`
/// is its length when known.
fn too_large(name: &str, size: Option<u64>) -> String {
    let size = size
        .map(|size| format!(" ({size} bytes)"))
        .unwrap_or_default();
    format!(
        "{name}{size} is larger than the limit of 16 MiB ({MAX_DOCKERFILE_SIZE} bytes) for a Dockerfile; check that this is the Dockerfile you meant, or pass another with -f FILE"
    )
}

/// Reads a Dockerfile from `path`, checking its size before reading.
fn read_dockerfile_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let cannot_read = || {
        format!(
            "failed to read Dockerfile `{}`; pass its path with -f FILE",
            path.display()
        )
    };
    let file = std::fs::File::open(path).with_context(cannot_read)?;
    let name = format!("Dockerfile `{}`", path.display());
    let size = file.metadata().with_context(cannot_read)?.len();
    if size > MAX_DOCKERFILE_SIZE {
        bail!(too_large(&name, Some(size)));
    }
    // The size check above does not cover pipes and devices, and a file
    // can grow after it, so the read is bounded too.
    read_limited(file, &name)
}

/// Reads the Dockerfile. Returns its name for messages, its text and,
/// when it lies inside the context, its path relative to the context.
fn read_dockerfile(
    file: Option<&Path>,
    context: &Path,
) -> anyhow::Result<(String, String, Option<PathBuf>)> {
    let path = match file {
        Some(path) if path == Path::new("-") => {
            let bytes = read_limited(io::stdin(), "the Dockerfile on standard input")?;
            let text = String::from_utf8(bytes).map_err(|_| {
                anyhow::anyhow!(
                    "the Dockerfile on standard input is not valid UTF-8; save it as UTF-8"
                )
            })?;
            return Ok(("<stdin>".to_string(), text, None));
        }
        Some(path) => path.to_path_buf(),
        None => context.join("Dockerfile"),
    };
    let bytes = read_dockerfile_file(&path)?;
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

/// Finds the Dockerfile named by `-f` (default `Dockerfile`) inside a
/// context archive from standard input, unpacked into `context`. The path
/// is relative to the archive's root, as in docker, and must stay inside
/// the archive, through symbolic links too.
fn dockerfile_in_archive(file: Option<&Path>, context: &Path) -> anyhow::Result<PathBuf> {
    let path = file.unwrap_or(Path::new("Dockerfile"));
    let path_text = path.display();
    if path.has_root() {
        bail!(
            "invalid -f `{path_text}`: with a context archive on standard input, the Dockerfile is looked up inside the archive; pass its path relative to the archive's root, such as `sub/Dockerfile`"
        );
    }
    let mut depth: usize = 0;
    for component in path.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => depth -= 1,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => bail!(
                "invalid -f `{path_text}`: the path leaves the context archive on standard input, where the Dockerfile is looked up; pass a path inside the archive"
            ),
        }
    }

    let root = std::fs::canonicalize(context)
        .with_context(|| format!("cannot open the unpacked context `{}`", context.display()))?;
    let resolved = match std::fs::canonicalize(root.join(path)) {
        Ok(resolved) => resolved,
        Err(error) if error.kind() == io::ErrorKind::NotFound => bail!(
            "Dockerfile `{path_text}` not found in the context archive on standard input; -f names a path inside the archive, relative to its root (list the archive with `tar -tf`)"
        ),
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!(
                "failed to look up Dockerfile `{path_text}` in the context archive on standard input"
            )));
        }
    };
    if !resolved.starts_with(&root) {
        bail!(
            "Dockerfile `{path_text}` in the context archive on standard input is a symbolic link to a file outside the archive; pass the path of a file inside the archive"
        );
    }
    if !resolved.is_file() {
        bail!(
            "Dockerfile `{path_text}` in the context archive on standard input is not a file; pass the path of a file inside the archive"
        );
    }
    Ok(resolved)
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

/// A build context read from standard input into a work folder of the
/// store.
struct StdinContext {
    dir: PathBuf,
    /// Standard input held a Dockerfile, not an archive: the folder
    /// contains only that file, named `Dockerfile`.
    is_dockerfile: bool,
}

/// Reads standard input into a work folder of the store, as docker does. A
/// tar archive, detected by its compression magic or tar header checksum, is
/// unpacked, and entries that would leave the folder are rejected. Anything
/// else is taken as a Dockerfile with an otherwise empty context.
fn unpack_stdin_context(store: &Store) -> anyhow::Result<StdinContext> {
    let dir = store
        .create_work_dir()
        .context("cannot create a folder for the build context")?;
    let mut stdin = io::stdin();
    let mut head = Vec::with_capacity(512);
    let result = (&mut stdin)
        .take(512)
        .read_to_end(&mut head)
        .map_err(anyhow::Error::from)
        .and_then(|_| {
            let input = io::Cursor::new(head.clone()).chain(stdin);
            if forge_builder::context::is_archive_head(&head) {
                unpack_archive(Box::new(input), &dir).map(|()| false)
            } else {
                write_dockerfile(input, &dir).map(|()| true)
            }
        });
    match result {
        Ok(is_dockerfile) => Ok(StdinContext { dir, is_dockerfile }),
        Err(error) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(error.context("cannot read the build context from standard input"))
        }
    }
}

fn unpack_archive(input: Box<dyn Read + Send>, dir: &Path) -> anyhow::Result<()> {
    let tar = layer::decompress(input)?;
    // Context files belong to the caller, as files in a context folder do.
    let options = ExtractOptions {
        preserve_owners: false,
        skip_denied_devices: true,
        ..ExtractOptions::default()
    };
    layer::extract(tar, dir, &options)?;
    Ok(())
}

fn write_dockerfile(input: impl Read, dir: &Path) -> anyhow::Result<()> {
    let bytes = read_limited(input, "the Dockerfile on standard input")?;
    std::fs::write(dir.join("Dockerfile"), bytes)?;
    Ok(())
}
