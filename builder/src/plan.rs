//! Planning: global build arguments, stage bases, the target stage, and
//! the order in which the needed stages build.
//!
//! A stage is needed when the target depends on it through `FROM`,
//! `COPY --from` or `RUN --mount=from=`, directly or not. Other stages are
//! never built, so their sources need not exist. Stages in one level of
//! [`Plan::levels`] do not depend on each other and may build at once.

use std::collections::{BTreeMap, BTreeSet};

use forge_parser::instructions::{Dockerfile, Expandable, InstructionKind, Mount, Stage};
use forge_parser::shell::Lexer;

use crate::error::{BuildError, Result};

/// Build arguments that every stage may read without declaring them. Their
/// values never enter the history.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The starting point of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: no layers, an empty config.
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image, named as written after expansion.
    Image(String),
}

/// The source of a `COPY --from` or `RUN --mount=from=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A stage of this Dockerfile, by index.
    Stage(usize),
    /// An image from the store.
    Image(String),
}

/// One stage as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    /// Position in the Dockerfile, from 0.
    pub index: usize,
    /// Name from `AS name`, in lower case.
    pub name: Option<String>,
    /// The expanded base.
    pub base: Base,
    /// Stages this stage reads from, its base stage included.
    pub dependencies: BTreeSet<usize>,
}

impl PlannedStage {
    /// Returns the stage name, or its index when it has none.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// The result of planning a build.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every stage of the Dockerfile, needed or not.
    pub stages: Vec<PlannedStage>,
    /// Index of the target stage.
    pub target: usize,
    /// Needed stages grouped by level: every stage depends only on stages
    /// of earlier levels. The last level holds only the target.
    pub levels: Vec<Vec<usize>>,
    /// Values of the global `ARG`s that have one, in declaration order.
    pub globals: Vec<(String, String)>,
    /// Names of every global `ARG`, with or without a value.
    pub global_names: BTreeSet<String>,
    /// Warnings for the user, such as build arguments no ARG declares.
    pub warnings: Vec<String>,
}

impl Plan {
    /// Returns whether the stage with `index` is built.
    pub fn is_needed(&self, index: usize) -> bool {
        self.levels.iter().any(|level| level.contains(&index))
    }

    /// Resolves a `--from` value (a stage name or index, or an image) as
    /// seen from the stage with index `from_stage`.
    pub fn resolve_source(&self, value: &str, from_stage: usize) -> Source {
        match find_stage(&self.stages, value, from_stage) {
            Some(index) => Source::Stage(index),
            None => Source::Image(value.to_string()),
        }
    }
}

/// Finds an earlier stage by name (any case) or index.
fn find_stage(stages: &[PlannedStage], value: &str, before: usize) -> Option<usize> {
    let lower = value.to_ascii_lowercase();
    if let Some(stage) = stages
        .iter()
        .take(before)
        .find(|stage| stage.name.as_deref() == Some(lower.as_str()))
    {
        return Some(stage.index);
    }
    match value.parse::<usize>() {
        Ok(index) if index < before => Some(index),
        _ => None,
    }
}

/// Plans a build of `dockerfile`.
///
/// `build_args` contains the `--build-arg` values; `target` the `--target`
/// stage name, or `None` for the last stage.
///
/// # Errors
///
/// [`BuildError::Plan`] for an unknown target, a `FROM` line that expands
/// to nothing, or a variable expansion that fails.
pub fn plan(
    dockerfile: &Dockerfile,
    build_args: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Result<Plan> {
    let lexer = Lexer::new(dockerfile.directives.escape);

    // Global ARGs: a --build-arg wins over the default, and each default
    // may read the globals declared before it.
    let mut globals: Vec<(String, String)> = Vec::new();
    let mut global_names = BTreeSet::new();
    for global in &dockerfile.global_args {
        for definition in &global.arg.args {
            global_names.insert(definition.name.clone());
            let value = match (build_args.get(&definition.name), &definition.default) {
                (Some(value), _) => Some(value.clone()),
                (None, Some(default)) if default.has_variables => {
                    Some(lexer.expand_word(&default.raw, &globals).map_err(|error| {
                        BuildError::plan(format!(
                            "line {}: cannot expand `{}`: {error}",
                            global.span.start, default.raw
                        ))
                    })?)
                }
                (None, Some(default)) => Some(default.value.clone()),
                (None, None) => None,
            };
            if let Some(value) = value {
                globals.push((definition.name.clone(), value));
            }
        }
    }

    let mut stages: Vec<PlannedStage> = Vec::with_capacity(dockerfile.stages.len());
    for stage in &dockerfile.stages {
        let base = expand_from(&lexer, stage, &globals, &stages)?;
        let mut dependencies = BTreeSet::new();
        if let Base::Stage(index) = base {
            dependencies.insert(index);
        }
        for value in source_values(stage) {
            let value = lexer.expand_word(&value, &globals).unwrap_or(value);
            if let Some(index) = find_stage(&stages, &value, stage.index) {
                dependencies.insert(index);
            }
        }
        stages.push(PlannedStage {
            index: stage.index,
            name: stage.name.clone(),
            base,
            dependencies,
        });
    }

    let target = match target {
        None => stages.len().saturating_sub(1),
        Some(name) => {
            let lower = name.to_ascii_lowercase();
            match stages
                .iter()
                .find(|stage| stage.name.as_deref() == Some(lower.as_str()))
            {
                Some(stage) => stage.index,
                None => {
                    let names: Vec<String> = stages
                        .iter()
                        .filter_map(|stage| stage.name.clone())
                        .collect();
                    let known = if names.is_empty() {
                        "the Dockerfile names no stage (use `FROM image AS name`)".to_string()
                    } else {
                        format!("the stages are: {}", names.join(", "))
                    };
                    return Err(BuildError::plan(format!(
                        "target stage `{name}` not found; {known}"
                    )));
                }
            }
        }
    };

    let levels = order(&stages, target);
    let warnings = unused_build_args(dockerfile, build_args, &global_names, &levels);
    Ok(Plan {
        stages,
        target,
        levels,
        globals,
        global_names,
        warnings,
    })
}

/// Expands a `FROM` line's base with the global arguments.
fn expand_from(
    lexer: &Lexer,
    stage: &Stage,
    globals: &[(String, String)],
    earlier: &[PlannedStage],
) -> Result<Base> {
    let name = lexer.expand_word(&stage.base, &globals).map_err(|error| {
        BuildError::plan(format!(
            "line {}: cannot expand the base `{}`: {error}",
            stage.span.start, stage.base
        ))
    })?;
    if name.is_empty() {
        return Err(BuildError::plan(format!(
            "line {}: `{}` expands to an empty base image name; set the build argument with --build-arg or give it a default",
            stage.span.start, stage.original
        )));
    }
    if name.eq_ignore_ascii_case("scratch") {
        return Ok(Base::Scratch);
    }
    Ok(match find_stage(earlier, &name, stage.index) {
        Some(index) => Base::Stage(index),
        None => Base::Image(name),
    })
}

/// Returns the `COPY --from` and `RUN --mount=from=` values of a stage, as
/// written.
fn source_values(stage: &Stage) -> Vec<String> {
    let mut values = Vec::new();
    for instruction in &stage.instructions {
        match &instruction.kind {
            InstructionKind::Copy(copy) => values.extend(copy.from.clone()),
            InstructionKind::Run(run) => {
                for mount in &run.mounts {
                    match mount {
                        Expandable::Literal(mount) => values.extend(mount.from.clone()),
                        Expandable::Unexpanded(spec) => {
                            let mut keep = |text: &str| Ok(text.to_string());
                            if let Ok(Mount {
                                from: Some(from), ..
                            }) = Mount::parse_expanded(spec, &mut keep)
                            {
                                values.push(from);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    values
}

/// Groups the stages the target needs into levels of independent stages.
fn order(stages: &[PlannedStage], target: usize) -> Vec<Vec<usize>> {
    let mut needed = BTreeSet::new();
    let mut pending = vec![target];
    while let Some(index) = pending.pop() {
        if needed.insert(index)
            && let Some(stage) = stages.get(index)
        {
            pending.extend(stage.dependencies.iter().copied());
        }
    }

    // Dependencies always point to earlier stages, so one pass in index
    // order computes every dependency's level before the stage itself.
    let mut level_of: BTreeMap<usize, usize> = BTreeMap::new();
    for &index in &needed {
        let level = stages
            .get(index)
            .map(|stage| {
                stage
                    .dependencies
                    .iter()
                    .filter_map(|dep| level_of.get(dep))
                    .map(|level| level + 1)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        level_of.insert(index, level);
    }
    let depth = level_of.values().copied().max().map_or(0, |max| max + 1);
    let mut levels = vec![Vec::new(); depth];
    for (index, level) in level_of {
        if let Some(group) = levels.get_mut(level) {
            group.push(index);
        }
    }
    levels
}

/// Lists the build arguments that no ARG of a built stage (or of the
/// global section) declares, as docker warns about them.
fn unused_build_args(
    dockerfile: &Dockerfile,
    build_args: &BTreeMap<String, String>,
    global_names: &BTreeSet<String>,
    levels: &[Vec<usize>],
) -> Vec<String> {
    let mut declared = global_names.clone();
    for index in levels.iter().flatten() {
        let Some(stage) = dockerfile.stages.get(*index) else {
            continue;
        };
        for instruction in &stage.instructions {
            if let InstructionKind::Arg(arg) = &instruction.kind {
                declared.extend(arg.args.iter().map(|definition| definition.name.clone()));
            }
        }
    }
    let unused: Vec<&str> = build_args
        .keys()
        .filter(|name| !declared.contains(*name) && !PROXY_ARGS.contains(&name.as_str()))
        .map(String::as_str)
        .collect();
    if unused.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "build argument{} {} {} not consumed: no ARG in the built stages declares {}",
            if unused.len() == 1 { "" } else { "s" },
            unused
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if unused.len() == 1 { "was" } else { "were" },
            if unused.len() == 1 { "it" } else { "them" },
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Dockerfile {
        forge_parser::instructions::parse(text).expect("test Dockerfile parses")
    }

    #[test]
    fn target_needs_only_its_dependencies() {
        let dockerfile = parse(
            "FROM scratch AS a\nFROM scratch AS unused\nCOPY missing /\nFROM a AS b\nCOPY --from=0 / /\n",
        );
        let plan = plan(&dockerfile, &BTreeMap::new(), None).expect("plans");
        assert_eq!(plan.target, 2);
        assert!(plan.is_needed(0));
        assert!(!plan.is_needed(1));
        assert_eq!(plan.levels, vec![vec![0], vec![2]]);
    }

    #[test]
    fn independent_stages_share_a_level() {
        let dockerfile = parse(
            "FROM scratch AS a\nFROM scratch AS b\nFROM scratch\nCOPY --from=a / /\nCOPY --from=b / /\n",
        );
        let plan = plan(&dockerfile, &BTreeMap::new(), None).expect("plans");
        assert_eq!(plan.levels, vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn from_expands_global_args() {
        let dockerfile = parse("ARG BASE=scratch\nARG OTHER=${BASE}\nFROM ${OTHER}\n");
        let plan = plan(&dockerfile, &BTreeMap::new(), None).expect("plans");
        assert_eq!(plan.stages.first().map(|s| &s.base), Some(&Base::Scratch));

        let args = BTreeMap::from([("BASE".to_string(), "app:1".to_string())]);
        let plan = super::plan(&dockerfile, &args, None).expect("plans");
        assert_eq!(
            plan.stages.first().map(|s| &s.base),
            Some(&Base::Image("app:1".into()))
        );
    }

    #[test]
    fn unknown_target_lists_stages() {
        let dockerfile = parse("FROM scratch AS build\nFROM scratch AS final\n");
        let error = plan(&dockerfile, &BTreeMap::new(), Some("tset")).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`tset`"), "{message}");
        assert!(message.contains("build, final"), "{message}");
    }

    #[test]
    fn unused_build_arg_warns() {
        let dockerfile = parse("FROM scratch\nARG USED\n");
        let args = BTreeMap::from([
            ("USED".to_string(), "1".to_string()),
            ("EXTRA".to_string(), "2".to_string()),
            ("HTTP_PROXY".to_string(), "http://p".to_string()),
        ]);
        let plan = plan(&dockerfile, &args, None).expect("plans");
        assert_eq!(plan.warnings.len(), 1);
        let warning = plan.warnings.first().cloned().unwrap_or_default();
        assert!(warning.contains("`EXTRA`"), "{warning}");
        assert!(!warning.contains("USED"), "{warning}");
    }
}
