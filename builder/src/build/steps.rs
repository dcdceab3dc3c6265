//! Steps that write files: COPY and ADD, RUN, and the directory of WORKDIR.
//!
//! [`prepare`] expands a step and adds what it reads to the key inputs
//! before the cache lookup; [`execute`] runs it on a miss and turns the
//! written folder into a layer.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use forge_cache::layer::{DiffKind, WriteOptions, layer_diff_id, write_layer_threaded};
use forge_cache::store::PendingLayer;
use forge_parser::instructions::{
    CommandLine, Expandable, FileMode, Instruction, InstructionKind, Mount, MountType, Network,
    Security, Sharing, Source,
};
use oci_spec::image::Descriptor;

use super::cache_seed::{CacheSeed, seed_cache};
use super::cache_sharing::{CacheClaim, lock_cache_mounts};
use super::snapshotter::{self, Snapshotter};
use super::{BuildRun, StageResult, StageRun};
use crate::cachekey::KeyInputs;
use crate::config::{Expander, clean_path, command_argv, join_workdir};
use crate::copy::{AddOptions, CopyPlan, CopyRequest, CopySource, ScratchDir};
use crate::error::{BuildError, Result};
use crate::image::{self, ImageState, LayerBlob, LayerRef};
use crate::plan::{PROXY_ARGS, Source as FromSource};
use crate::progress::{ProgressEvent, StepId, Stream};
use crate::rootfs::RootView;
use crate::sandbox::{OutputSink, RunMount, RunMountKind, RunSpec, SandboxError};

/// A COPY, ADD or RUN step, expanded and ready to execute.
pub(super) enum Prepared {
    /// Files to copy over the stage's file system.
    Copy { plan: Box<CopyPlan>, root: RootView },
    /// A command to run, without its upper and work folders yet, the
    /// privileges it runs with, the cache mounts to seed before it runs,
    /// and the cache mounts to lock while it runs.
    Run(Box<RunSpec>, Security, Vec<CacheSeed>, Vec<CacheClaim>),
}

/// Returns the unpacked folders of `layers` as absolute paths, top first,
/// unpacking layers that are not unpacked yet.
///
/// A layer that occurs twice (two steps that wrote the same files, often
/// nothing) is listed once, at its top-most place: overlayfs rejects a
/// folder that appears twice among its lower folders, and the lower copy
/// is hidden by the upper one anyway.
fn unpacked_lowers(build: &BuildRun<'_>, layers: &[LayerRef]) -> Result<Vec<PathBuf>> {
    let mut lowers: Vec<PathBuf> = Vec::with_capacity(layers.len());
    for layer in layers.iter().rev() {
        let path = crate::sandbox::unpack_layer_ref(build.builder.store, layer)?;
        let path = absolute(path)?;
        if !lowers.contains(&path) {
            lowers.push(path);
        }
    }
    Ok(lowers)
}

/// Makes a store path absolute, since the sandbox mounts from another
/// working directory.
fn absolute(path: PathBuf) -> Result<PathBuf> {
    fs::canonicalize(&path).map_err(|source| BuildError::Io {
        action: "resolve the path",
        path,
        source,
    })
}

fn root_view(build: &BuildRun<'_>, state: &ImageState) -> Result<RootView> {
    Ok(RootView::new(unpacked_lowers(build, &state.layers)?))
}

/// Expands a COPY, ADD or RUN step, resolves its sources and records
/// what it reads in `inputs`.
pub(super) fn prepare(
    build: &BuildRun<'_>,
    run: &StageRun,
    instruction: &Instruction,
    expander: &mut Expander<'_>,
    inputs: &mut KeyInputs,
    done: &BTreeMap<usize, StageResult>,
    step: &StepId,
) -> Result<Prepared> {
    let error = |message: String| build.step_error(instruction, message);
    match &instruction.kind {
        InstructionKind::Copy(copy) => {
            let mut request = copy_request(
                &copy.sources,
                &copy.destination,
                copy.chown.as_deref(),
                copy.chmod.as_ref(),
                &copy.exclude,
                expander,
                &run.state.config.workdir(),
            )
            .map_err(error)?;
            request.parents = copy.parents;
            request.link = copy.link;
            let from = match &copy.from {
                Some(from) => Some(expander.plain(from).map_err(error)?),
                None => None,
            };
            plan_copy(
                build,
                run,
                instruction,
                request,
                from.as_deref(),
                inputs,
                done,
                step,
            )
        }
        InstructionKind::Add(add) => {
            let mut request = copy_request(
                &add.sources,
                &add.destination,
                add.chown.as_deref(),
                add.chmod.as_ref(),
                &add.exclude,
                expander,
                &run.state.config.workdir(),
            )
            .map_err(error)?;
            request.link = add.link;
            let checksum = match &add.checksum {
                Some(checksum) => Some(expander.plain(checksum).map_err(error)?),
                None => None,
            };
            request.add = Some(AddOptions {
                checksum,
                keep_git_dir: add.keep_git_dir,
                unpack: add.unpack,
                ..git_options(build, &request.sources)?
            });
            plan_copy(build, run, instruction, request, None, inputs, done, step)
        }
        InstructionKind::Run(command) => prepare_run(
            build,
            run,
            instruction,
            command,
            expander,
            inputs,
            done,
            step,
        ),
        _ => Err(error(format!(
            "{} is not a file-writing instruction",
            instruction.kind.keyword()
        ))),
    }
}

/// Returns the options of ADD's Git sources: a clone folder under the
/// store's `forge/tmp` when a source is a Git repository, the `--ssh
/// default` agent, the `--insecure-registry` hosts that plain `http://` may
/// reach, and commit-time mtimes when SOURCE_DATE_EPOCH is set.
fn git_options(build: &BuildRun<'_>, sources: &[String]) -> Result<AddOptions> {
    if !sources.iter().any(|source| crate::copy::is_git(source)) {
        return Ok(AddOptions::default());
    }
    let scratch = build
        .builder
        .store
        .create_work_dir()
        .map_err(BuildError::store("create a folder for a Git clone"))?;
    Ok(AddOptions {
        git_scratch: Some(std::sync::Arc::new(ScratchDir::adopt(scratch))),
        ssh_auth_sock: build.options.ssh.get("default").map(Path::to_path_buf),
        plain_http_hosts: build
            .options
            .base_puller
            .as_ref()
            .map(|puller| puller.client.config().insecure_registries.clone())
            .unwrap_or_default(),
        git_commit_mtime: build.options.source_date_epoch.is_some(),
        ..AddOptions::default()
    })
}

/// Expands the words of a COPY or ADD into a request.
fn copy_request(
    sources: &[Source],
    destination: &str,
    chown: Option<&str>,
    chmod: Option<&Expandable<FileMode>>,
    exclude: &[String],
    expander: &mut Expander<'_>,
    workdir: &str,
) -> std::result::Result<CopyRequest, String> {
    let mut request = CopyRequest {
        destination: expander.plain(destination)?,
        workdir: workdir.to_string(),
        ..CopyRequest::default()
    };
    for source in sources {
        match source {
            Source::Path(path) => request.sources.push(expander.plain(path)?),
            Source::Heredoc(heredoc) => {
                let content = if heredoc.expand {
                    expander.heredoc(&heredoc.content)?
                } else {
                    heredoc.content.clone()
                };
                request.heredocs.push((heredoc.name.clone(), content));
            }
        }
    }
    request.chown = match chown {
        Some(chown) => Some(expander.plain(chown)?),
        None => None,
    };
    request.chmod = match chmod {
        None => None,
        Some(Expandable::Literal(mode)) => Some(mode_text(mode)),
        Some(Expandable::Unexpanded(text)) => {
            Some(mode_text(&FileMode::parse(&expander.text(text)?)?))
        }
    };
    for pattern in exclude {
        request.exclude.push(expander.plain(pattern)?);
    }
    Ok(request)
}

fn mode_text(mode: &FileMode) -> String {
    match mode {
        FileMode::Octal(bits) => format!("{bits:04o}"),
        FileMode::Symbolic(text) => text.clone(),
    }
}

/// Resolves the source of a COPY or ADD and plans the files.
#[allow(clippy::too_many_arguments)]
fn plan_copy(
    build: &BuildRun<'_>,
    run: &StageRun,
    instruction: &Instruction,
    request: CopyRequest,
    from: Option<&str>,
    inputs: &mut KeyInputs,
    done: &BTreeMap<usize, StageResult>,
    step: &StepId,
) -> Result<Prepared> {
    let root = root_view(build, &run.state)?;
    let source_root;
    let source = match from {
        None => match build.builder.context {
            Some(context) => CopySource::Context(context),
            None => {
                return Err(build.step_error(
                    instruction,
                    "this build has no context to copy from; pass a context folder",
                ));
            }
        },
        Some(from) => {
            let (state, key) = source_image(build, run, instruction, from, done, step)?;
            inputs.flags.insert("from".into(), key);
            source_root = root_view(build, &state)?;
            CopySource::Root(&source_root)
        }
    };

    let plan = CopyPlan::new(source, &request, &root, &build.hashes).map_err(|error| {
        BuildError::Step {
            file: build.options.dockerfile_name.clone(),
            line: instruction.span.start,
            instruction: instruction.original.clone(),
            message: error.to_string(),
            source: None,
        }
    })?;
    inputs
        .flags
        .insert("workdir".into(), request.workdir.clone());
    inputs.files = Some(plan.digest());
    inputs.file_summary = plan.summary();
    Ok(Prepared::Copy {
        plan: Box::new(plan),
        root,
    })
}

/// Returns the image state and key of a `--from` value: an earlier stage
/// or an image. An image missing from the store is pulled as a `FROM` base
/// is, and with `--pull` it is resolved in the registry in any case.
fn source_image(
    build: &BuildRun<'_>,
    run: &StageRun,
    instruction: &Instruction,
    from: &str,
    done: &BTreeMap<usize, StageResult>,
    step: &StepId,
) -> Result<(ImageState, String)> {
    let source = match build.plan.resolve_source(from, run.index) {
        FromSource::Stage(index) => match done.get(&index) {
            Some(result) => (result.state.clone(), result.key.clone()),
            None => {
                return Err(build.step_error(
                    instruction,
                    format!("stage `{from}` was not built before this stage"),
                ));
            }
        },
        FromSource::Image(name) => {
            let known_stages = || {
                let stages: Vec<String> = build
                    .plan
                    .stages
                    .iter()
                    .take(run.index)
                    .map(|stage| stage.label())
                    .collect();
                if stages.is_empty() {
                    "no stage comes before this one".to_string()
                } else {
                    format!("earlier stages: {}", stages.join(", "))
                }
            };
            if let Some(puller) = &build.options.base_puller {
                crate::transfer::ensure_base(
                    build.builder.store,
                    puller,
                    &name,
                    build.builder.progress,
                    step,
                )
                .map_err(|error| BuildError::Step {
                    file: build.options.dockerfile_name.clone(),
                    line: instruction.span.start,
                    instruction: instruction.original.clone(),
                    message: format!(
                        "--from=`{from}` names no earlier stage ({}), and pulling the image `{name}` failed",
                        known_stages()
                    ),
                    source: Some(Box::new(error)),
                })?;
            }
            let image = image::load_image(build.builder.store, &name).map_err(|error| {
                build.step_error(
                    instruction,
                    format!(
                        "--from=`{from}` names no earlier stage ({}), and {error}",
                        known_stages()
                    ),
                )
            })?;
            (image.state, image.manifest_digest)
        }
    };
    Ok(source)
}

/// Expands a RUN step into a sandbox spec.
#[allow(clippy::too_many_arguments)]
fn prepare_run(
    build: &BuildRun<'_>,
    run: &StageRun,
    instruction: &Instruction,
    command: &forge_parser::instructions::Run,
    expander: &mut Expander<'_>,
    inputs: &mut KeyInputs,
    done: &BTreeMap<usize, StageResult>,
    step: &StepId,
) -> Result<Prepared> {
    let error = |message: String| build.step_error(instruction, message);
    let network = match &command.network {
        None => Network::Default,
        Some(Expandable::Literal(network)) => *network,
        Some(Expandable::Unexpanded(text)) => {
            let expanded = expander.text(text).map_err(error)?;
            Network::parse(&expanded).ok_or_else(|| {
                error(format!(
                    "invalid network `{expanded}`: use default, none or host"
                ))
            })?
        }
    };
    let insecure = match &command.security {
        None => false,
        Some(Expandable::Literal(security)) => *security == Security::Insecure,
        Some(Expandable::Unexpanded(text)) => expander.text(text).map_err(error)? == "insecure",
    };
    if insecure && !build.options.allow_insecure {
        return Err(error(
            "RUN --security=insecure needs the `security.insecure` entitlement; pass \
             `--allow security.insecure` to forge build if you trust this Dockerfile, or \
             remove the flag"
                .into(),
        ));
    }
    let security = if insecure {
        Security::Insecure
    } else {
        Security::Sandbox
    };

    let (mounts, seeds, claims) = resolve_mounts(
        build,
        run,
        instruction,
        command,
        expander,
        inputs,
        done,
        step,
    )?;

    let config = &run.state.config;
    let argv = match (&command.command, command.heredocs.first()) {
        // A shell command that is only `<<NAME` runs the heredoc body as
        // the script.
        (CommandLine::Shell(text), Some(heredoc))
            if text
                .trim()
                .trim_start_matches("<<")
                .trim_start_matches('-')
                .trim_matches(['"', '\''])
                == heredoc.name =>
        {
            let mut argv = config.shell();
            argv.push(heredoc.content.clone());
            argv
        }
        (command_line, _) => command_argv(command_line, config),
    };

    // Build arguments reach RUN as environment variables unless ENV sets
    // the same name.
    let env_vars = config.env();
    let mut env: Vec<(String, String)> = build
        .args_in_scope(run)
        .into_iter()
        .filter(|(name, _)| !env_vars.iter().any(|(key, _)| key == name))
        .collect();
    env.extend(env_vars.iter().cloned());

    for (name, value) in &run.args {
        if !PROXY_ARGS.contains(&name.as_str()) {
            inputs.args.insert(name.clone(), value.clone());
        }
    }
    for (name, value) in &env_vars {
        inputs.env.insert(name.clone(), value.clone());
    }
    inputs
        .flags
        .insert("argv".into(), serde_json::json!(argv).to_string());
    inputs.flags.insert("user".into(), config.user());
    inputs.flags.insert("workdir".into(), config.workdir());
    inputs
        .flags
        .insert("network".into(), format!("{network:?}").to_lowercase());
    // Only insecure steps name their mode, so keys of existing steps stay.
    if insecure {
        inputs.flags.insert("security".into(), "insecure".into());
    }

    Ok(Prepared::Run(
        Box::new(RunSpec {
            lowers: Vec::new(),
            upper: PathBuf::new(),
            work: PathBuf::new(),
            argv,
            env,
            workdir: config.workdir(),
            user: config.user(),
            network,
            hostname: "buildkitsandbox".to_string(),
            mounts,
            // The step's writes are synced once when it ends, so fsync
            // calls of the command need not wait for the disk.
            volatile_upper: true,
        }),
        security,
        seeds,
        claims,
    ))
}

/// Executes a prepared step and returns its layer. A RUN that leaves its
/// upper folder empty returns `None`: BuildKit's image exporter drops such
/// an empty layer and marks the history entry `empty_layer`. COPY and ADD
/// always return a layer, as in BuildKit, even when they copy an empty
/// folder.
pub(super) fn execute(
    build: &BuildRun<'_>,
    run: &StageRun,
    instruction: &Instruction,
    prepared: Prepared,
    id: &StepId,
) -> Result<Option<LayerRef>> {
    let store = build.builder.store;
    let upper = store
        .create_work_dir()
        .map_err(BuildError::store("create a work folder"))?;
    match prepared {
        Prepared::Copy { plan, root } => {
            if let Err(error) = plan.apply(&upper, &root) {
                remove_quietly(&upper);
                return Err(BuildError::Step {
                    file: build.options.dockerfile_name.clone(),
                    line: instruction.span.start,
                    instruction: instruction.original.clone(),
                    message: error.to_string(),
                    source: None,
                });
            }
            snapshot(build, run.index, instruction, &upper, DiffKind::Plain).map(Some)
        }
        Prepared::Run(mut spec, security, mut seeds, claims) => {
            let Some(executor) = build.builder.executor else {
                remove_quietly(&upper);
                return Err(build.step_error(
                    instruction,
                    "RUN is not supported yet in this build: no sandbox executor is configured",
                ));
            };
            // The locks stay held until the sandbox has exited.
            let leases = lock_cache_mounts(build, instruction, id, &claims).inspect_err(|_| {
                remove_quietly(&upper);
            })?;
            for mount in &mut spec.mounts {
                if let RunMountKind::Cache { source, .. } = &mut mount.kind {
                    *source = leases.folder(source).to_path_buf();
                }
            }
            for seed in &mut seeds {
                seed.folder = leases.folder(&seed.folder).to_path_buf();
            }
            for seed in &seeds {
                if let Err(error) = seed_cache(build, instruction, seed) {
                    remove_quietly(&upper);
                    return Err(error);
                }
            }
            let snapshotter = Snapshotter::from_env().map_err(|message| {
                remove_quietly(&upper);
                build.step_error(instruction, message)
            })?;
            if snapshotter == Snapshotter::Copy {
                copy_snapshots_because(build, "FORGE_SNAPSHOTTER=copy".to_string());
            }
            let work = store
                .create_work_dir()
                .map_err(BuildError::store("create a work folder"))?;
            spec.lowers = unpacked_lowers(build, &run.state.layers)?;
            spec.upper = absolute(upper.clone())?;
            spec.work = absolute(work.clone())?;
            let mut sink = LineSink {
                build,
                id: id.clone(),
                stdout: Vec::new(),
                stderr: Vec::new(),
            };
            let mut copy_root = None;
            let outcome = if build.copy_snapshots.get().is_some() {
                run_on_copy(build, executor, &spec, security, &mut sink, &mut copy_root)
            } else {
                match executor.run_with_security(&spec, security, &mut sink) {
                    Err(SandboxError::Setup { step, source, .. })
                        if step.starts_with("mount overlay") =>
                    {
                        copy_snapshots_because(build, format!("mounting it failed: {source}"));
                        run_on_copy(build, executor, &spec, security, &mut sink, &mut copy_root)
                    }
                    result => result,
                }
            };
            sink.flush();
            drop(leases);
            remove_quietly(&work);
            let outcome = outcome.map_err(|error| {
                if let Some((root, _)) = &copy_root {
                    remove_quietly(root);
                }
                remove_quietly(&upper);
                BuildError::Step {
                    file: build.options.dockerfile_name.clone(),
                    line: instruction.span.start,
                    instruction: instruction.original.clone(),
                    message: "the sandbox failed".to_string(),
                    source: Some(Box::new(error)),
                }
            })?;
            if !outcome.success() {
                if let Some((root, _)) = &copy_root {
                    remove_quietly(root);
                }
                remove_quietly(&upper);
                let status = match (outcome.exit_code, outcome.signal) {
                    (Some(code), _) => format!("exit code {code}"),
                    (None, Some(signal)) => format!("signal {signal}"),
                    (None, None) => "an unknown status".to_string(),
                };
                let tail = if outcome.tail.is_empty() {
                    String::new()
                } else {
                    format!("\nlast output:\n  {}", outcome.tail.join("\n  "))
                };
                return Err(build.step_error(
                    instruction,
                    format!(
                        "the command `{}` failed with {status}{tail}",
                        spec.argv.join(" ")
                    ),
                ));
            }
            if copy_root.is_none() {
                sync_upper(&upper)?;
            }
            if let Some((root, copied)) = &copy_root {
                let diff = snapshotter::write_diff(&spec.lowers, root, copied, &upper);
                remove_quietly(root);
                diff.map_err(|source| {
                    remove_quietly(&upper);
                    BuildError::Io {
                        action: "compare the root file system copy with the parent layers",
                        path: root.clone(),
                        source,
                    }
                })?;
            }
            // The sandbox creates missing mount points in a lower layer of
            // its own, so an empty upper folder means the command changed
            // nothing. The layer format has no entry for the root folder,
            // so a change to the root's own mode is not kept either way.
            if is_empty_dir(&upper)? {
                remove_quietly(&upper);
                return Ok(None);
            }
            snapshot(build, run.index, instruction, &upper, DiffKind::Overlay).map(Some)
        }
    }
}

/// Syncs the file system of a RUN step's upper folder. Where the overlay
/// was mounted `volatile`, the command's writes reach the disk here, once,
/// before the step is recorded.
fn sync_upper(upper: &Path) -> Result<()> {
    let synced = fs::File::open(upper)
        .and_then(|folder| rustix::fs::syncfs(&folder).map_err(std::io::Error::from));
    synced.map_err(|source| {
        remove_quietly(upper);
        BuildError::Io {
            action: "sync the changes of the step in",
            path: upper.to_path_buf(),
            source,
        }
    })
}

/// Switches the build's RUN steps to the copy snapshotter and warns once.
fn copy_snapshots_because(build: &BuildRun<'_>, reason: String) {
    if build.copy_snapshots.set(reason.clone()).is_ok() {
        build.builder.progress.event(ProgressEvent::Warning {
            message: format!(
                "overlay is not available ({reason}); RUN steps copy the root file system instead, which is slower"
            ),
        });
    }
}

/// Runs `spec` on a copy of its parent layers. `copy_root` receives the
/// copy and what [`snapshotter::write_diff`] needs about it.
fn run_on_copy(
    build: &BuildRun<'_>,
    executor: &dyn crate::executor::StepExecutor,
    spec: &RunSpec,
    security: Security,
    sink: &mut LineSink<'_>,
    copy_root: &mut Option<(PathBuf, snapshotter::CopiedRoot)>,
) -> std::result::Result<crate::sandbox::RunOutcome, SandboxError> {
    let copy_error = |path: &Path, source: std::io::Error| SandboxError::Prepare {
        command: spec.argv.join(" "),
        action: "copy the parent layers into".to_string(),
        path: path.to_path_buf(),
        source,
    };
    let root = build
        .builder
        .store
        .create_work_dir()
        .map_err(|error| copy_error(Path::new("forge/tmp"), std::io::Error::other(error)))?;
    let root = fs::canonicalize(&root).map_err(|source| copy_error(&root, source))?;
    let copied = match snapshotter::copy_merged(&spec.lowers, &root) {
        Ok(copied) => copied,
        Err(source) => {
            remove_quietly(&root);
            return Err(copy_error(&root, source));
        }
    };
    let mut copy_spec = spec.clone();
    copy_spec.upper = root.clone();
    copy_spec.work = PathBuf::new();
    *copy_root = Some((root, copied));
    executor.run_with_security(&copy_spec, security, sink)
}

/// Creates the directory of a WORKDIR in a new layer when the image lacks
/// it, as BuildKit does: the path is resolved inside the image, so a symlink
/// on the way is followed and stays a symlink, and each directory created
/// belongs to the current USER. Parents that exist in the image are written
/// with their mode, owner, extended attributes and mtime, except the one
/// that receives the first new directory, whose mtime becomes the step's
/// time.
///
/// NOTE: owners are set only when forge runs as root.
pub(super) fn create_workdir(
    build: &BuildRun<'_>,
    run: &StageRun,
    instruction: &Instruction,
    dir: &str,
) -> Result<Option<LayerRef>> {
    let root = root_view(build, &run.state)?;
    let io_error = |path: &Path, action: &'static str, source| BuildError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let canonical = root
        .canonical_path(dir)
        .map_err(|source| io_error(Path::new(dir), "resolve the directory", source))?;
    let components = crate::rootfs::split_components(&canonical);

    // The directories of the path that the image already has, in order.
    let mut existing = Vec::new();
    let mut image_path = String::new();
    for component in &components {
        image_path.push('/');
        image_path.push_str(component);
        match root
            .lstat(&image_path)
            .map_err(|source| io_error(Path::new(&image_path), "look up the directory", source))?
        {
            Some((host, metadata)) if metadata.is_dir() => existing.push((host, metadata)),
            Some(_) => {
                return Err(build.step_error(
                    instruction,
                    format!(
                        "cannot create the working directory `{canonical}`: `{image_path}` exists in the image and is not a directory; remove it in an earlier step or choose another WORKDIR"
                    ),
                ));
            }
            None => break,
        }
    }
    if existing.len() == components.len() {
        return Ok(None);
    }

    let owner = workdir_owner(build, run, instruction, &root)?;
    let is_root = rustix::process::geteuid().is_root();
    let upper = build
        .builder
        .store
        .create_work_dir()
        .map_err(BuildError::store("create a work folder"))?;
    let mut host_path = upper.clone();
    let mut written = Vec::new();
    for (index, component) in components.iter().enumerate() {
        host_path.push(component);
        fs::create_dir(&host_path)
            .map_err(|source| io_error(&host_path, "create the directory", source))?;
        let (mode, uid, gid, mtime) = match existing.get(index) {
            Some((source, metadata)) => {
                let xattrs = crate::copy::read_xattrs(source).map_err(|source| {
                    io_error(&host_path, "read the extended attributes of", source)
                })?;
                crate::copy::write_xattrs(&host_path, &xattrs).map_err(|source| {
                    io_error(&host_path, "set the extended attributes of", source)
                })?;
                let keeps_mtime = index + 1 < existing.len();
                let mtime = keeps_mtime.then(|| (metadata.mtime(), metadata.mtime_nsec()));
                (
                    metadata.mode() & 0o7777,
                    metadata.uid(),
                    metadata.gid(),
                    mtime,
                )
            }
            None => (0o755, owner.0, owner.1, None),
        };
        if is_root {
            std::os::unix::fs::lchown(&host_path, Some(uid), Some(gid))
                .map_err(|source| io_error(&host_path, "set the owner of", source))?;
        }
        written.push((host_path.clone(), mode, mtime));
    }

    // Modes and mtimes go last, deepest first, so creating a child does not
    // change its parent's mtime afterwards.
    for (path, mode, mtime) in written.iter().rev() {
        fs::set_permissions(path, fs::Permissions::from_mode(*mode))
            .map_err(|source| io_error(path, "set the mode of", source))?;
        if let Some((seconds, nanoseconds)) = mtime {
            let time = rustix::fs::Timespec {
                tv_sec: *seconds,
                tv_nsec: *nanoseconds as _,
            };
            let times = rustix::fs::Timestamps {
                last_access: time,
                last_modification: time,
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                path,
                &times,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|source| io_error(path, "set the mtime of", source.into()))?;
        }
    }
    snapshot(build, run.index, instruction, &upper, DiffKind::Plain).map(Some)
}

/// Returns the uid and gid of the stage's USER from the image's
/// `/etc/passwd` and `/etc/group`: root when no USER is set, and 0 for a
/// name the image lacks, as BuildKit does for WORKDIR.
fn workdir_owner(
    build: &BuildRun<'_>,
    run: &StageRun,
    instruction: &Instruction,
    root: &RootView,
) -> Result<(u32, u32)> {
    let user = run.state.config.user();
    if user.is_empty() {
        return Ok((0, 0));
    }
    crate::copy::resolve_user_or_root(&user, root).map_err(|error| {
        build.step_error(
            instruction,
            format!("cannot look up the owner for USER `{user}`: {error}"),
        )
    })
}

/// Turns `dir`, the changes of a step in stage `stage`, into a layer and
/// keeps it as the layer's unpacked folder.
///
/// In a stage that the output image contains, the layer blob is written
/// now. In other stages (a builder stage that the image only copies from)
/// only the diff id is computed and the blob stays pending: such layers
/// serve as lower folders of later steps and no image lists them, so
/// compressing them would be wasted unless a later build outputs that
/// stage, which then writes the blob from the folder
/// ([`write_pending_blob`]).
fn snapshot(
    build: &BuildRun<'_>,
    stage: usize,
    instruction: &Instruction,
    dir: &Path,
    kind: DiffKind,
) -> Result<LayerRef> {
    let store = build.builder.store;
    let pending = PendingLayer {
        overlay: kind == DiffKind::Overlay,
        source_date_epoch: build.options.source_date_epoch,
    };
    let layer = if build.exported.contains(&stage) {
        write_blob(build, instruction, dir, pending).inspect_err(|_| remove_quietly(dir))?
    } else {
        let (diff_id, size) =
            layer_diff_id(dir, &write_options(build, pending)).map_err(|source| {
                remove_quietly(dir);
                BuildError::Layer {
                    instruction: instruction.original.clone(),
                    source,
                }
            })?;
        store.record_layer_size(&diff_id, size);
        LayerRef {
            blob: LayerBlob::Pending(pending),
            diff_id,
        }
    };
    store
        .adopt_unpacked(&layer.diff_id, dir)
        .map_err(BuildError::store("keep the unpacked layer"))?;
    // When the layer was unpacked already, `dir` stays behind.
    if dir.exists() {
        remove_quietly(dir);
    }
    Ok(layer)
}

/// The options that write a layer from a folder described by `pending`
/// with the build's compression.
fn write_options(build: &BuildRun<'_>, pending: PendingLayer) -> WriteOptions {
    WriteOptions {
        compression: build.options.compression,
        level: build.options.compression_level,
        source_date_epoch: pending.source_date_epoch,
        kind: if pending.overlay {
            DiffKind::Overlay
        } else {
            DiffKind::Plain
        },
        // Without root the folder holds host ids of the sandbox's user
        // namespace, and the layer records the container ids they stand for.
        // NOTE: the writer reads the folder as the caller, outside that
        // namespace, so a file only another container user may read fails.
        id_map: crate::sandbox::rootless_id_map(),
    }
}

/// Writes `dir` as a layer blob into the store.
fn write_blob(
    build: &BuildRun<'_>,
    instruction: &Instruction,
    dir: &Path,
    pending: PendingLayer,
) -> Result<LayerRef> {
    let store = build.builder.store;
    // write_layer hashes what it writes, so the blob writer need not.
    let mut writer = store
        .blob_writer_hashed_by_caller()
        .map_err(BuildError::store("start a layer blob"))?;
    // SIGINT and SIGTERM end the write with an error instead of the
    // process, so the writer is dropped and removes its temporary file.
    let watch = crate::sandbox::InterruptWatch::new().ok();
    let mut sink = InterruptibleSink {
        inner: &mut writer,
        watch: watch.as_ref(),
    };
    let written =
        write_layer_threaded(dir, &write_options(build, pending), &mut sink).map_err(|source| {
            BuildError::Layer {
                instruction: instruction.original.clone(),
                source,
            }
        })?;
    drop(watch);
    writer
        .commit(Some(&written.digest))
        .map_err(BuildError::store("store the layer blob"))?;
    store.record_layer_size(&written.diff_id, written.uncompressed_size);
    Ok(LayerRef::stored(
        Descriptor::new(written.media_type, written.size, written.digest),
        written.diff_id,
    ))
}

/// A layer blob sink whose writes fail once SIGINT or SIGTERM arrived.
struct InterruptibleSink<'a> {
    inner: &'a mut forge_cache::store::BlobWriter,
    watch: Option<&'a crate::sandbox::InterruptWatch>,
}

impl std::io::Write for InterruptibleSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(signal) = self.watch.and_then(crate::sandbox::InterruptWatch::take) {
            // Not ErrorKind::Interrupted, which write_all retries.
            return Err(std::io::Error::other(format!(
                "interrupted by signal {signal}; the partial blob was removed"
            )));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the blob of `layer`, a layer kept only unpacked by the step
/// `instruction`, from its folder, and returns the layer with the blob.
/// Fails when the folder is gone or no longer gives the recorded diff id.
pub(super) fn write_pending_blob(
    build: &BuildRun<'_>,
    instruction: &Instruction,
    layer: &LayerRef,
) -> Result<LayerRef> {
    let LayerBlob::Pending(pending) = &layer.blob else {
        return Ok(layer.clone());
    };
    let store = build.builder.store;
    let dir = store.unpacked_dir(&layer.diff_id).ok_or_else(|| {
        build.step_error(
            instruction,
            format!("the unpacked folder of layer {} is gone", layer.diff_id),
        )
    })?;
    let written = write_blob(build, instruction, &dir, *pending)?;
    if written.diff_id != layer.diff_id {
        // The folder changed since the step wrote it, so lower folders of
        // later steps must not come from it: the step runs again and puts
        // a fresh folder in its place.
        if let Err(error) = store.remove_unpacked(&layer.diff_id) {
            tracing::warn!(%error, diff_id = %layer.diff_id, "cannot remove a damaged unpacked layer");
        }
        return Err(build.step_error(
            instruction,
            format!(
                "the unpacked folder of layer {} now gives diff id {}",
                layer.diff_id, written.diff_id
            ),
        ));
    }
    Ok(written)
}

fn is_empty_dir(dir: &Path) -> Result<bool> {
    let mut entries = fs::read_dir(dir).map_err(|source| BuildError::Io {
        action: "read the folder",
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(entries.next().is_none())
}

fn remove_quietly(dir: &Path) {
    if let Err(error) = forge_cache::store::remove_tree(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %dir.display(), %error, "cannot remove a work folder");
    }
}

/// Splits RUN output into lines and sends them as progress events.
struct LineSink<'a> {
    build: &'a BuildRun<'a>,
    id: StepId,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl LineSink<'_> {
    fn emit(&self, stream: Stream, line: &[u8]) {
        self.build.builder.progress.event(ProgressEvent::Output {
            step: self.id.clone(),
            stream,
            line: String::from_utf8_lossy(line)
                .trim_end_matches('\r')
                .to_string(),
        });
    }

    fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let mut buffer = match stream {
            Stream::Stdout => std::mem::take(&mut self.stdout),
            Stream::Stderr => std::mem::take(&mut self.stderr),
        };
        buffer.extend_from_slice(bytes);
        while let Some(end) = buffer.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            self.emit(stream, line.strip_suffix(b"\n").unwrap_or(&line));
        }
        match stream {
            Stream::Stdout => self.stdout = buffer,
            Stream::Stderr => self.stderr = buffer,
        }
    }

    fn flush(&mut self) {
        let stdout = std::mem::take(&mut self.stdout);
        if !stdout.is_empty() {
            self.emit(Stream::Stdout, &stdout);
        }
        let stderr = std::mem::take(&mut self.stderr);
        if !stderr.is_empty() {
            self.emit(Stream::Stderr, &stderr);
        }
    }
}

impl OutputSink for LineSink<'_> {
    fn stdout(&mut self, bytes: &[u8]) {
        self.push(Stream::Stdout, bytes);
    }

    fn stderr(&mut self, bytes: &[u8]) {
        self.push(Stream::Stderr, bytes);
    }
}

/// Resolves the `--mount` flags of a RUN into sandbox mounts and the cache
/// mounts to seed from a stage or image, and records what each mount
/// contributes to the cache key: the content digest of a bind mount from
/// the context, the key of a stage or image bound or seeded from, and the
/// identity of cache and tmpfs mounts.
#[allow(clippy::too_many_arguments)]
fn resolve_mounts(
    build: &BuildRun<'_>,
    run: &StageRun,
    instruction: &Instruction,
    command: &forge_parser::instructions::Run,
    expander: &mut Expander<'_>,
    inputs: &mut KeyInputs,
    done: &BTreeMap<usize, StageResult>,
    step: &StepId,
) -> Result<(Vec<RunMount>, Vec<CacheSeed>, Vec<CacheClaim>)> {
    let error = |message: String| build.step_error(instruction, message);
    let workdir = run.state.config.workdir();
    let mut mounts = Vec::new();
    let mut seeds = Vec::new();
    let mut claims = Vec::new();
    let mut described = Vec::new();

    for mount in &command.mounts {
        let mount = match mount {
            Expandable::Literal(mount) => expand_mount_paths(mount, expander).map_err(error)?,
            Expandable::Unexpanded(spec) => {
                let mut expand = |text: &str| expander.text(text);
                Mount::parse_expanded(spec, &mut expand).map_err(|mount_error| {
                    let hint = mount_error
                        .hint
                        .map(|hint| format!("; {hint}"))
                        .unwrap_or_default();
                    error(format!("{}{hint}", mount_error.message))
                })?
            }
        };
        let target = mount
            .target
            .as_deref()
            .map(|target| join_workdir(&workdir, target));

        let kind = match mount.kind {
            MountType::Bind => 'bind: {
                let source_path = clean_path(mount.source.as_deref().unwrap_or("/"));
                let source = match &mount.from {
                    None => {
                        let Some(context) = build.builder.context else {
                            return Err(error(
                                "RUN --mount=type=bind needs a build context; pass a context folder"
                                    .into(),
                            ));
                        };
                        // The digest of the mounted files enters the key,
                        // as for a COPY of the same source.
                        let request = CopyRequest {
                            sources: vec![source_path.clone()],
                            destination: "/".to_string(),
                            workdir: "/".to_string(),
                            ..CopyRequest::default()
                        };
                        let plan = CopyPlan::new(
                            CopySource::Context(context),
                            &request,
                            &RootView::empty(),
                            &build.hashes,
                        )
                        .map_err(|copy_error| error(copy_error.to_string()))?;
                        described.push(format!("bind context:{source_path} {}", plan.digest()));
                        context.root().join(source_path.trim_start_matches('/'))
                    }
                    Some(from) => {
                        let (state, key) = source_image(build, run, instruction, from, done, step)?;
                        described.push(format!("bind {key}:{source_path}"));
                        let view = root_view(build, &state)?;
                        // A directory that several layers add to is their
                        // overlay, so the command sees all of it.
                        let layers = view.directory_layers(&source_path).map_err(|io_error| {
                            error(format!(
                                "cannot look up mount source `{source_path}` in `{from}`: {io_error}"
                            ))
                        })?;
                        if let Some(sources) = layers.filter(|sources| sources.len() > 1) {
                            break 'bind RunMountKind::Layers {
                                sources,
                                read_write: !mount.read_only,
                            };
                        }
                        match view.lstat(&source_path) {
                            Ok(Some((host, _))) => host,
                            Ok(None) => {
                                return Err(error(format!(
                                    "mount source `{source_path}` does not exist in `{from}`"
                                )));
                            }
                            Err(io_error) => {
                                return Err(error(format!(
                                    "cannot look up mount source `{source_path}` in `{from}`: {io_error}"
                                )));
                            }
                        }
                    }
                };
                RunMountKind::Bind {
                    source,
                    read_write: !mount.read_only,
                }
            }
            MountType::Cache => {
                let Some(root) = &build.options.cache_mounts else {
                    return Err(error(
                        "RUN --mount=type=cache needs a folder for cache mounts, and this build has none"
                            .into(),
                    ));
                };
                let id = mount
                    .id
                    .clone()
                    .or_else(|| target.clone())
                    .unwrap_or_default();
                // A cache seeded from a stage or image is a separate cache
                // for each stage key or image digest and source path, as
                // BuildKit keeps one per id and snapshot of `from`.
                let (identity, seed) = match &mount.from {
                    None => {
                        described.push(format!("cache {id}"));
                        (id.clone(), None)
                    }
                    Some(from) => {
                        let source_path = clean_path(mount.source.as_deref().unwrap_or("/"));
                        let (key, image) =
                            cache_source(build, run, instruction, from, &source_path, done, step)?;
                        described.push(format!("cache {id} from {key}:{source_path}"));
                        (
                            format!("{id}\n{key}:{source_path}"),
                            Some((image, source_path)),
                        )
                    }
                };
                let name = {
                    use sha2::Digest as _;
                    hex::encode(sha2::Sha256::digest(identity.as_bytes()))
                };
                claims.push(CacheClaim {
                    folder: root.join(&name),
                    id: id.clone(),
                    sharing: mount.sharing.unwrap_or(Sharing::Shared),
                });
                if let Some((image, source)) = seed {
                    seeds.push(CacheSeed {
                        folder: root.join(&name),
                        image,
                        source,
                    });
                }
                // NOTE: with `from`, the cache folder takes the owner and
                // mode of the source directory and `uid`, `gid` and `mode`
                // are not used. BuildKit ignores them too when `source` is
                // not `/`, but with `source=/` it mounts a `/cache` folder
                // that it creates in `from` with them.
                RunMountKind::Cache {
                    source: root.join(name),
                    uid: mount.uid.unwrap_or(0),
                    gid: mount.gid.unwrap_or(0),
                    mode: mount.mode.unwrap_or(0o755),
                    read_only: mount.read_only,
                }
            }
            MountType::Tmpfs => {
                described.push(format!("tmpfs {:?}", mount.size));
                RunMountKind::Tmpfs { size: mount.size }
            }
            MountType::Secret | MountType::Ssh => {
                // Only the id and target enter the key, never the content.
                let secret = mount.kind == MountType::Secret;
                let id = match (&mount.id, secret) {
                    (Some(id), _) => id.clone(),
                    (None, false) => "default".to_string(),
                    (None, true) => {
                        return Err(error(
                            "RUN --mount=type=secret needs an id; write id=NAME".into(),
                        ));
                    }
                };
                described.push(format!("{} {id}", mount.kind.as_str()));
                if let Some(target) = &target {
                    described.push(format!("target {target}"));
                }
                match secret_or_agent(build, &mount, &id) {
                    Some(kind) => mounts.push(RunMount {
                        target: target.clone(),
                        kind,
                    }),
                    None if mount.required => {
                        return Err(error(if secret {
                            format!(
                                "secret `{id}` is required but was not given; pass --secret id={id},src=FILE"
                            )
                        } else {
                            format!(
                                "SSH agent `{id}` is required but was not given; pass --ssh {id} or --ssh {id}=SOCKET"
                            )
                        }));
                    }
                    // A missing optional secret or agent is left out, so
                    // the step runs without the file or socket.
                    None => {
                        tracing::debug!(%id, kind = mount.kind.as_str(), "optional mount not given")
                    }
                }
                continue;
            }
        };
        if let Some(target) = &target {
            described.push(format!("target {target}"));
        }
        mounts.push(RunMount { target, kind });
    }

    if !described.is_empty() {
        inputs
            .flags
            .insert("mounts".into(), serde_json::json!(described).to_string());
    }
    Ok((mounts, seeds, claims))
}

/// Returns the key and file system of the stage or image that a cache
/// mount's `from` names, after checking that `source` is a directory in it.
/// An image missing from the store is pulled as for a bind mount.
#[allow(clippy::too_many_arguments)]
fn cache_source(
    build: &BuildRun<'_>,
    run: &StageRun,
    instruction: &Instruction,
    from: &str,
    source: &str,
    done: &BTreeMap<usize, StageResult>,
    step: &StepId,
) -> Result<(String, RootView)> {
    let error = |message: String| build.step_error(instruction, message);
    let (state, key) = source_image(build, run, instruction, from, done, step)?;
    let view = root_view(build, &state)?;
    let lookup_error = |io_error: std::io::Error| {
        error(format!(
            "cannot look up cache mount source `{source}` in `{from}`: {io_error}"
        ))
    };
    let resolved = view.canonical_path(source).map_err(lookup_error)?;
    match view.lstat(&resolved).map_err(lookup_error)? {
        Some((_, metadata)) if metadata.is_dir() => Ok((key, view)),
        Some(_) => Err(error(format!(
            "cache mount source `{source}` in `{from}` is not a directory; set source= to a directory"
        ))),
        None => Err(error(format!(
            "cache mount source `{source}` does not exist in `{from}`"
        ))),
    }
}

/// Returns the sandbox mount of secret or SSH agent `id`, or `None` when
/// `forge build` was not given it.
fn secret_or_agent(build: &BuildRun<'_>, mount: &Mount, id: &str) -> Option<RunMountKind> {
    let uid = mount.uid.unwrap_or(0);
    let gid = mount.gid.unwrap_or(0);
    if mount.kind == MountType::Secret {
        let data = build.options.secrets.get(id)?;
        Some(RunMountKind::Secret {
            data,
            uid,
            gid,
            mode: mount.mode.unwrap_or(0o400),
            env: mount.env.clone(),
        })
    } else {
        let socket = build.options.ssh.get(id)?;
        Some(RunMountKind::Ssh {
            socket: socket.to_path_buf(),
            uid,
            gid,
            mode: mount.mode.unwrap_or(0o600),
        })
    }
}

/// Expands the path and name fields of a mount that the parser typed
/// with their variables kept.
fn expand_mount_paths(
    mount: &Mount,
    expander: &mut Expander<'_>,
) -> std::result::Result<Mount, String> {
    let mut expanded = mount.clone();
    for field in [
        &mut expanded.target,
        &mut expanded.source,
        &mut expanded.from,
        &mut expanded.id,
        &mut expanded.env,
    ] {
        if let Some(value) = field.as_mut() {
            *value = expander.plain(value)?;
        }
    }
    Ok(expanded)
}
