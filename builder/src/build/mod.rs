//! The build: stages level by level, each stage's steps in order with the
//! step cache, and the image at the end.
//!
//! For every step the builder expands the instruction, computes its cache
//! key from [`KeyInputs`] and looks it up. A hit reuses the recorded
//! config, history entry and layer without reading the layer. A miss
//! executes the step: config instructions change the config, COPY and ADD
//! write a fresh folder that becomes a layer, RUN runs through the
//! [`StepExecutor`], and WORKDIR creates its directory.
//!
//! Layers: COPY and ADD always produce a layer, even an empty one, as
//! BuildKit does. RUN produces a layer only when the command changed a
//! file, because BuildKit's image exporter drops empty layers. WORKDIR
//! produces a layer only when the directory does not exist yet in the
//! image. A step without a layer has its history entry marked
//! `empty_layer`, and its cache entry records no layer, so a cached
//! rebuild gives the same image.

mod cache_seed;
mod cache_sharing;
mod cached_compression;
pub mod export;
mod snapshotter;
mod steps;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use forge_cache::layer::Compression;
use forge_cache::store::{StepEntry, Store};
use forge_parser::instructions::{Dockerfile, Instruction, InstructionKind};
use forge_parser::shell::Lexer;
use oci_spec::image::Descriptor;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cachekey::{KeyInputs, last_build_key};
use crate::config::{ConfigState, Expander, Scope, StageView, expand_config};
use crate::context::{Context, HashCache};
use crate::error::{BuildError, Result};
use crate::executor::StepExecutor;
use crate::image::{self, ImageState, LayerRef, WrittenImage};
use crate::plan::{self, Base, PROXY_ARGS, Plan};
use crate::progress::{Progress, ProgressEvent, StepId};

/// Options of one build, as `forge build` takes them.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Name of the Dockerfile for messages, and the identity under which
    /// the inputs of the latest build are kept for miss explanations (an
    /// absolute path works best).
    pub dockerfile_name: String,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build; the last one when `None`.
    pub target: Option<String>,
    /// `--label`: labels added to the image.
    pub labels: BTreeMap<String, String>,
    /// `-t`: names for the image, normalised to docker's short form.
    pub tags: Vec<String>,
    /// `--no-cache`: execute every step.
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (by name or index) whose steps execute
    /// without the cache.
    pub no_cache_filter: Vec<String>,
    /// Compression of new layers.
    pub compression: Compression,
    /// Compression level of new layers; the compression's default when
    /// `None`.
    pub compression_level: Option<i32>,
    /// `SOURCE_DATE_EPOCH`: the time of the config, the history and the
    /// upper bound of file mtimes in new layers.
    pub source_date_epoch: Option<i64>,
    /// File in which content hashes of the context are kept between
    /// builds; no hash reuse when `None`.
    pub hash_cache: Option<PathBuf>,
    /// Folder that keeps the folders of `RUN --mount=type=cache` between
    /// builds, one per cache id; cache mounts fail when `None`.
    pub cache_mounts: Option<PathBuf>,
    /// Pulls `FROM` images that are not in the store; such a `FROM`
    /// fails when `None`.
    pub base_puller: Option<crate::transfer::BasePuller>,
    /// `--secret`: secrets that `RUN --mount=type=secret` mounts by id.
    pub secrets: crate::secrets::Secrets,
    /// `--ssh`: agent sockets that `RUN --mount=type=ssh` mounts by id.
    pub ssh: crate::secrets::SshAgents,
    /// `--allow security.insecure`: lets `RUN --security=insecure` run with
    /// every capability of the sandbox's root. Without it such a step fails.
    pub allow_insecure: bool,
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The image id: the config digest, `sha256:HEX`.
    pub image_id: String,
    /// The manifest descriptor.
    pub manifest: Descriptor,
    /// Names set on the image, in docker's short form.
    pub names: Vec<String>,
    /// Warnings for the user, also sent as progress events.
    pub warnings: Vec<String>,
}

/// What a build needs besides the Dockerfile and options.
pub struct Builder<'a> {
    /// The store that holds bases, layers, the cache and the result.
    pub store: &'a Store,
    /// The build context; COPY and ADD from the context fail without one.
    pub context: Option<&'a Context>,
    /// Runs RUN steps; RUN fails when `None`.
    pub executor: Option<&'a dyn StepExecutor>,
    /// Receives progress events.
    pub progress: &'a dyn Progress,
}

/// The recorded part of a step besides its layer, kept in
/// [`StepEntry::config`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordedStep {
    /// The stage's config after the step.
    config: ConfigState,
    /// The step's history entry.
    history: Value,
    /// The inputs of the step's key.
    inputs: KeyInputs,
}

/// A finished stage: its image state and the key of its last step.
#[derive(Debug, Clone)]
struct StageResult {
    state: ImageState,
    key: String,
}

/// The changing state of a stage while its steps run.
struct StageRun {
    index: usize,
    state: ImageState,
    /// Key of the last step, the parent of the next.
    key: String,
    /// Build arguments declared in the stage so far, with values.
    args: Vec<(String, String)>,
    /// Whether the stage set `CMD` itself.
    cmd_set: bool,
    no_cache: bool,
}

impl Builder<'_> {
    /// Builds `dockerfile` and writes and names the image.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the stage, instruction or value that failed.
    pub fn build(&self, dockerfile: &Dockerfile, options: &BuildOptions) -> Result<BuildOutput> {
        let names = options
            .tags
            .iter()
            .map(|tag| normalise_tag(tag))
            .collect::<Result<Vec<_>>>()?;
        let plan = plan::plan(dockerfile, &options.build_args, options.target.as_deref())?;
        for warning in &plan.warnings {
            self.progress.event(ProgressEvent::Warning {
                message: warning.clone(),
            });
        }

        let numbers = step_numbers(dockerfile, &plan);
        let hashes = options
            .hash_cache
            .as_deref()
            .map(HashCache::load)
            .unwrap_or_default();
        let run = BuildRun {
            builder: self,
            dockerfile,
            options,
            plan: &plan,
            numbers,
            hashes,
            lexer: Lexer::new(dockerfile.directives.escape),
            created: created_time(options.source_date_epoch),
            copy_snapshots: std::sync::OnceLock::new(),
            exported: exported_stages(&plan),
            compression_warned: std::sync::atomic::AtomicBool::new(false),
        };

        let mut results: BTreeMap<usize, StageResult> = BTreeMap::new();
        for level in &plan.levels {
            let built: Vec<(usize, StageResult)> = level
                .par_iter()
                .map(|&index| {
                    run.build_stage(index, &results)
                        .map(|result| (index, result))
                })
                .collect::<Result<_>>()?;
            results.extend(built);
        }
        // Only newly hashed files add entries, so without them the file on
        // disk is already up to date.
        if let (Some(path), Some(_)) = (&options.hash_cache, self.context)
            && run.hashes.hashed_files() > 0
            && let Err(error) = run.hashes.save(path)
        {
            tracing::warn!(path = %path.display(), %error, "cannot save the context hash cache");
        }

        let Some(mut target) = results.remove(&plan.target).map(|result| result.state) else {
            return Err(BuildError::plan("the target stage was not built"));
        };
        if !options.labels.is_empty() {
            let labels = options
                .labels
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            target
                .config
                .apply(&crate::config::ConfigChange::Label(labels));
        }
        // The image is as old as its last step, so a build whose steps all
        // come from the cache writes the same image again.
        let created = match options.source_date_epoch {
            Some(_) => run.created.clone(),
            None => target
                .history
                .iter()
                .rev()
                .find_map(|entry| entry.get("created").and_then(Value::as_str))
                .map_or_else(|| run.created.clone(), str::to_string),
        };
        let WrittenImage { manifest, id } = image::write_image(self.store, &target, &created)?;
        for name in &names {
            self.store
                .set_name(name, &manifest)
                .map_err(BuildError::store(format!("name the image `{name}`")))?;
        }
        // Without `-t` the image is kept unnamed, so its id finds it.
        if names.is_empty() {
            self.store
                .add_unnamed(&manifest)
                .map_err(BuildError::store("keep the unnamed image"))?;
        }
        Ok(BuildOutput {
            image_id: id,
            manifest,
            names,
            warnings: plan.warnings.clone(),
        })
    }
}

/// Returns the stages whose layers the output image contains: the target
/// and the stages it starts from, through `FROM stage`.
fn exported_stages(plan: &Plan) -> BTreeSet<usize> {
    let mut exported = BTreeSet::new();
    let mut index = plan.target;
    while exported.insert(index) {
        match plan.stages.get(index).map(|stage| &stage.base) {
            Some(Base::Stage(base)) => index = *base,
            _ => break,
        }
    }
    exported
}

/// Normalises a `-t` value to the name the store keeps.
fn normalise_tag(tag: &str) -> Result<String> {
    match tag.parse::<forge_registry::Reference>() {
        Ok(reference) if reference.digest().is_none() => Ok(reference.familiar()),
        Ok(_) => Err(BuildError::plan(format!(
            "invalid tag `{tag}`: a tag cannot contain a digest; use a name such as app:1.0"
        ))),
        Err(error) => Err(BuildError::plan(format!(
            "invalid tag `{tag}`: {error}; use a name such as app or registry.example/app:1.0"
        ))),
    }
}

/// Returns the creation time for the config and history.
fn created_time(source_date_epoch: Option<i64>) -> String {
    if let Some(seconds) = source_date_epoch {
        return image::rfc3339(seconds, 0);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    image::rfc3339(
        i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        now.subsec_nanos(),
    )
}

/// Numbers every step of the needed stages in index order: each stage's
/// `FROM` and then its instructions. Returns the first number of each
/// stage and the total.
fn step_numbers(dockerfile: &Dockerfile, plan: &Plan) -> (BTreeMap<usize, usize>, usize) {
    let mut first = BTreeMap::new();
    let mut next = 1;
    for stage in &dockerfile.stages {
        if plan.is_needed(stage.index) {
            first.insert(stage.index, next);
            next += 1 + stage.instructions.len();
        }
    }
    (first, next - 1)
}

/// Everything one build shares across its stages.
struct BuildRun<'a> {
    builder: &'a Builder<'a>,
    dockerfile: &'a Dockerfile,
    options: &'a BuildOptions,
    plan: &'a Plan,
    numbers: (BTreeMap<usize, usize>, usize),
    hashes: HashCache,
    lexer: Lexer,
    created: String,
    /// Why RUN steps use the copy snapshotter, once a step found overlay
    /// unavailable or `FORGE_SNAPSHOTTER=copy` asked for it.
    copy_snapshots: std::sync::OnceLock<String>,
    /// Stages whose layers the output image contains; steps of the other
    /// stages keep their layers only unpacked.
    exported: BTreeSet<usize>,
    /// Whether a cache hit already warned that it reuses a layer of
    /// another compression than `--compression`.
    compression_warned: std::sync::atomic::AtomicBool,
}

impl BuildRun<'_> {
    fn step_id(&self, stage: usize, label: &str, offset: usize) -> StepId {
        StepId {
            number: self.numbers.0.get(&stage).copied().unwrap_or(0) + offset,
            total: self.numbers.1,
            stage: label.to_string(),
        }
    }

    fn build_stage(
        &self,
        index: usize,
        done: &BTreeMap<usize, StageResult>,
    ) -> Result<StageResult> {
        let (Some(stage), Some(planned)) = (
            self.dockerfile.stages.get(index),
            self.plan.stages.get(index),
        ) else {
            return Err(BuildError::plan(format!("stage {index} does not exist")));
        };
        let label = planned.label();
        let started = Instant::now();
        let from_id = self.step_id(index, &label, 0);
        self.builder.progress.event(ProgressEvent::StepStarted {
            step: from_id.clone(),
            text: stage.original.clone(),
        });

        let (mut state, key) = match &planned.base {
            Base::Scratch => (ImageState::default(), "scratch".to_string()),
            Base::Stage(base) => match done.get(base) {
                Some(result) => (result.state.clone(), result.key.clone()),
                None => {
                    return Err(BuildError::plan(format!(
                        "stage `{label}` starts from stage {base}, which was not built first"
                    )));
                }
            },
            Base::Image(name) => {
                if let Some(puller) = &self.options.base_puller {
                    crate::transfer::ensure_base(
                        self.builder.store,
                        puller,
                        name,
                        self.builder.progress,
                        &from_id,
                    )
                    .map_err(|error| BuildError::Step {
                        file: self.options.dockerfile_name.clone(),
                        line: stage.span.start,
                        instruction: stage.original.clone(),
                        message: format!("cannot pull the base image `{name}`"),
                        source: Some(Box::new(error)),
                    })?;
                }
                let image =
                    image::load_image(self.builder.store, name).map_err(|error| match error {
                        BuildError::Plan { message } => BuildError::Step {
                            file: self.options.dockerfile_name.clone(),
                            line: stage.span.start,
                            instruction: stage.original.clone(),
                            message,
                            source: None,
                        },
                        other => other,
                    })?;
                if let Some(message) = image.platform_warning(name) {
                    self.builder
                        .progress
                        .event(ProgressEvent::Warning { message });
                }
                (image.state, image.manifest_digest)
            }
        };
        self.builder.progress.event(ProgressEvent::StepFinished {
            step: from_id.clone(),
            layer: None,
            duration: started.elapsed(),
        });

        // ONBUILD triggers of the base run first; the new image does not
        // inherit them.
        let triggers = state.config.on_build();
        state.config.config.remove("OnBuild");
        let trigger_instructions = self.parse_triggers(&triggers, stage.span.start)?;

        let no_cache =
            self.options.no_cache
                || self.options.no_cache_filter.iter().any(|filter| {
                    filter.eq_ignore_ascii_case(&label) || *filter == index.to_string()
                });
        let mut run = StageRun {
            index,
            state,
            key,
            args: Vec::new(),
            cmd_set: false,
            no_cache,
        };
        let mut position = 0;
        for instruction in &trigger_instructions {
            self.step(&mut run, instruction, position, from_id.clone(), done)?;
            position += 1;
        }
        for (offset, instruction) in stage.instructions.iter().enumerate() {
            let id = self.step_id(index, &label, offset + 1);
            self.step(&mut run, instruction, position, id, done)?;
            position += 1;
        }
        Ok(StageResult {
            state: run.state,
            key: run.key,
        })
    }

    /// Parses `ONBUILD` triggers into instructions placed at `line`.
    fn parse_triggers(&self, triggers: &[String], line: usize) -> Result<Vec<Instruction>> {
        if triggers.is_empty() {
            return Ok(Vec::new());
        }
        let text = format!("FROM scratch\n{}\n", triggers.join("\n"));
        let parsed =
            forge_parser::instructions::parse(&text).map_err(|error| BuildError::Step {
                file: self.options.dockerfile_name.clone(),
                line,
                instruction: "FROM".to_string(),
                message: format!(
                    "the base image has an invalid ONBUILD trigger: {}",
                    error.message
                ),
                source: None,
            })?;
        Ok(parsed
            .stages
            .into_iter()
            .flat_map(|stage| stage.instructions)
            .map(|mut instruction| {
                instruction.span.start = line;
                instruction.span.end = line;
                instruction
            })
            .collect())
    }

    fn step_error(&self, instruction: &Instruction, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            file: self.options.dockerfile_name.clone(),
            line: instruction.span.start,
            instruction: instruction.original.clone(),
            message: message.into(),
            source: None,
        }
    }

    /// Runs one step with the cache.
    fn step(
        &self,
        run: &mut StageRun,
        instruction: &Instruction,
        position: usize,
        id: StepId,
        done: &BTreeMap<usize, StageResult>,
    ) -> Result<()> {
        let started = Instant::now();
        let progress = self.builder.progress;
        progress.event(ProgressEvent::StepStarted {
            step: id.clone(),
            text: instruction.original.clone(),
        });

        if let InstructionKind::Arg(arg) = &instruction.kind {
            self.declare_args(run, arg, instruction)?;
        }

        let scope = Scope {
            args: self.args_in_scope(run),
            env: run.state.config.env(),
        };
        let mut expander = Expander::new(&self.lexer, &scope);
        let view = StageView {
            config: &run.state.config,
            cmd_set: run.cmd_set,
        };
        let change = expand_config(&instruction.kind, &mut expander, &view)
            .map_err(|message| self.step_error(instruction, message))?;

        let mut inputs = KeyInputs {
            parent: run.key.clone(),
            instruction: instruction.original.clone(),
            ..KeyInputs::default()
        };
        let prepared = match &change {
            Some(_) => None,
            None => Some(steps::prepare(
                self,
                run,
                instruction,
                &mut expander,
                &mut inputs,
                done,
                &id,
            )?),
        };
        if !matches!(instruction.kind, InstructionKind::Arg(_)) {
            for name in &expander.read {
                if let Some(value) = scope.env.iter().rev().find(|(key, _)| key == name) {
                    inputs.env.insert(name.clone(), value.1.clone());
                } else if let Some(value) = scope.args.iter().rev().find(|(key, _)| key == name) {
                    inputs.args.insert(name.clone(), value.1.clone());
                }
            }
        }
        if matches!(instruction.kind, InstructionKind::Cmd(_)) {
            run.cmd_set = true;
        }

        let key = inputs.key();
        let store = self.builder.store;
        let record_key = last_build_key(&self.record_identity(), run.index, position);
        let previous = store
            .get_step(&record_key)
            .ok()
            .flatten()
            .and_then(|entry| serde_json::from_value::<KeyInputs>(entry.config).ok());
        // An unchanged record is not written again, so that a build whose
        // inputs did not change writes nothing here.
        if previous.as_ref() != Some(&inputs) {
            let record = StepEntry {
                layer: None,
                diff_id: None,
                config: serde_json::to_value(&inputs).unwrap_or(Value::Null),
                pending: None,
            };
            if let Err(error) = store.put_step(&record_key, &record) {
                tracing::warn!(%error, "cannot record the inputs of this build for miss explanations");
            }
        }

        let cached = if run.no_cache {
            None
        } else {
            store
                .get_step(&key)
                .map_err(BuildError::store("read the step cache"))?
        };
        let cached = cached.and_then(|entry| {
            let recorded = serde_json::from_value::<RecordedStep>(entry.config.clone()).ok()?;
            Some((entry, recorded))
        });
        // A hit whose layer was kept only unpacked gets its blob now when
        // the output image contains the stage; when that fails, the step
        // runs again.
        let mut unusable_hit = None;
        let cached = match cached {
            Some((entry, recorded)) if entry.is_pending() && self.exported.contains(&run.index) => {
                match self.store_pending_layer(instruction, &key, entry) {
                    Ok(entry) => Some((entry, recorded)),
                    Err(error) => {
                        unusable_hit = Some(error.to_string());
                        None
                    }
                }
            }
            other => other,
        };

        let layer = if let Some((entry, recorded)) = cached {
            progress.event(ProgressEvent::CacheHit { step: id.clone() });
            tracing::debug!(%key, instruction = %instruction.original, "step cache hit");
            run.state.config = recorded.config;
            let mut history = recorded.history;
            if self.options.source_date_epoch.is_some() {
                history["created"] = json!(self.created);
            }
            run.state.history.push(history);
            let layer = LayerRef::from_step(&entry);
            if let Some(layer) = &layer {
                if let Some(descriptor) = layer.descriptor() {
                    cached_compression::warn_on_mismatch(self, &id, descriptor.media_type());
                }
                run.state.layers.push(layer.clone());
            }
            layer
        } else {
            let reason = if run.no_cache {
                Some("the cache is disabled for this stage".to_string())
            } else if let Some(error) = unusable_hit {
                Some(format!("the cached layer cannot be used: {error}"))
            } else {
                previous.and_then(|previous| inputs.explain(&previous))
            };
            tracing::debug!(%key, instruction = %instruction.original, ?reason, "step cache miss");
            progress.event(ProgressEvent::CacheMiss {
                step: id.clone(),
                reason,
            });
            let layer = match (&change, prepared) {
                (Some(change), _) => {
                    let layer = match (&instruction.kind, change) {
                        (
                            InstructionKind::Workdir(_),
                            crate::config::ConfigChange::Workdir(dir),
                        ) => steps::create_workdir(self, run, instruction, dir)?,
                        _ => None,
                    };
                    run.state.config.apply(change);
                    layer
                }
                (None, Some(prepared)) => steps::execute(self, run, instruction, prepared, &id)?,
                (None, None) => None,
            };
            let history = self.history_entry(run, instruction, layer.is_none());
            run.state.history.push(history.clone());
            if let Some(layer) = &layer {
                run.state.layers.push(layer.clone());
            }
            let recorded = RecordedStep {
                config: run.state.config.clone(),
                history,
                inputs: inputs.clone(),
            };
            let entry = StepEntry {
                layer: layer.as_ref().and_then(|layer| layer.descriptor().cloned()),
                diff_id: layer.as_ref().map(|layer| layer.diff_id.clone()),
                config: serde_json::to_value(&recorded).unwrap_or(Value::Null),
                pending: layer.as_ref().and_then(LayerRef::pending),
            };
            store
                .put_step(&key, &entry)
                .map_err(BuildError::store("record the step cache entry"))?;
            layer
        };

        run.key = key;
        progress.event(ProgressEvent::StepFinished {
            step: id,
            layer: layer.map(|layer| match layer.descriptor() {
                Some(descriptor) => descriptor.digest().to_string(),
                None => layer.diff_id.to_string(),
            }),
            duration: started.elapsed(),
        });
        Ok(())
    }

    /// Writes the blob of a cached step's layer that was kept only
    /// unpacked, and records the entry with the blob, so that later builds
    /// find it stored.
    fn store_pending_layer(
        &self,
        instruction: &Instruction,
        key: &str,
        entry: StepEntry,
    ) -> Result<StepEntry> {
        let Some(layer) = LayerRef::from_step(&entry) else {
            return Ok(entry);
        };
        let stored = steps::write_pending_blob(self, instruction, &layer)?;
        let entry = StepEntry {
            layer: stored.descriptor().cloned(),
            diff_id: Some(stored.diff_id),
            pending: None,
            ..entry
        };
        if let Err(error) = self.builder.store.put_step(key, &entry) {
            tracing::warn!(%error, "cannot record the stored layer in the step cache");
        }
        Ok(entry)
    }

    /// Declares the build arguments of an `ARG` line in the stage: the
    /// `--build-arg` value wins, then the global value for an ARG without
    /// default, then the default.
    fn declare_args(
        &self,
        run: &mut StageRun,
        arg: &forge_parser::instructions::Arg,
        instruction: &Instruction,
    ) -> Result<()> {
        for definition in &arg.args {
            let name = &definition.name;
            let value = if let Some(value) = self.options.build_args.get(name) {
                Some(value.clone())
            } else if let Some(default) = &definition.default {
                let scope = Scope {
                    args: self.args_in_scope(run),
                    env: run.state.config.env(),
                };
                let mut expander = Expander::new(&self.lexer, &scope);
                Some(
                    expander
                        .word(default)
                        .map_err(|message| self.step_error(instruction, message))?,
                )
            } else {
                self.plan
                    .globals
                    .iter()
                    .rev()
                    .find(|(global, _)| global == name)
                    .map(|(_, value)| value.clone())
            };
            run.args.retain(|(existing, _)| existing != name);
            if let Some(value) = value {
                run.args.push((name.clone(), value));
            }
        }
        Ok(())
    }

    /// Returns the build arguments a step sees: the proxy arguments given
    /// with `--build-arg`, then the stage's declared arguments.
    fn args_in_scope(&self, run: &StageRun) -> Vec<(String, String)> {
        let mut args: Vec<(String, String)> = PROXY_ARGS
            .iter()
            .filter_map(|name| {
                self.options
                    .build_args
                    .get(*name)
                    .map(|value| (name.to_string(), value.clone()))
            })
            .collect();
        args.extend(run.args.iter().cloned());
        args
    }

    /// Names the Dockerfile under which the inputs of its latest build
    /// are kept. A Dockerfile without a path of its own (standard input)
    /// is told apart by its context, so that builds of unrelated projects
    /// are not compared with each other.
    fn record_identity(&self) -> String {
        let name = &self.options.dockerfile_name;
        if Path::new(name).is_absolute() {
            return name.clone();
        }
        match self.builder.context {
            Some(context) => format!("{name} in {}", context.root().display()),
            None => name.clone(),
        }
    }

    /// Builds the history entry of a step as BuildKit writes it.
    fn history_entry(&self, run: &StageRun, instruction: &Instruction, empty_layer: bool) -> Value {
        let created_by = match &instruction.kind {
            InstructionKind::Run(command) => {
                let argv = crate::config::command_argv(&command.command, &run.state.config);
                let args: Vec<String> = run
                    .args
                    .iter()
                    .filter(|(name, _)| !PROXY_ARGS.contains(&name.as_str()))
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect();
                let prefix = if args.is_empty() {
                    String::new()
                } else {
                    format!("|{} {} ", args.len(), args.join(" "))
                };
                format!("RUN {prefix}{} # buildkit", argv.join(" "))
            }
            InstructionKind::Copy(_) | InstructionKind::Add(_) => {
                format!("{} # buildkit", instruction.original)
            }
            _ => instruction.original.clone(),
        };
        let mut entry = serde_json::Map::new();
        entry.insert("created".into(), json!(self.created));
        entry.insert("created_by".into(), json!(created_by));
        entry.insert("comment".into(), json!("buildkit.dockerfile.v0"));
        if empty_layer {
            entry.insert("empty_layer".into(), json!(true));
        }
        Value::Object(entry)
    }
}
