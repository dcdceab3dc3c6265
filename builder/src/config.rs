//! Config instructions: expanding their arguments and applying them to the
//! image config as docker writes it (`Env`, `Labels`, `ExposedPorts`, ...).
//!
//! A step is expanded first, so that its expanded text and the variables
//! it read can enter the cache key, and applied only on a cache miss. On a
//! hit the builder takes the recorded config instead.

use std::collections::BTreeSet;

use forge_parser::instructions::{
    CommandLine, Expandable, Healthcheck, InstructionKind, KeyValue, PortRange, Word, check_signal,
};
use forge_parser::shell::Lexer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The default shell of shell-form commands.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The image config a stage builds up: docker's `config` object and the
/// top-level `author`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigState {
    /// The `config` object of the image config, with docker's field names.
    pub config: Map<String, Value>,
    /// The image author from `MAINTAINER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

impl ConfigState {
    /// Returns the `Env` entries as name and value pairs, in order.
    pub fn env(&self) -> Vec<(String, String)> {
        string_list(self.config.get("Env"))
            .into_iter()
            .map(|entry| match entry.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => (entry, String::new()),
            })
            .collect()
    }

    /// Returns the working directory, `/` when none is set.
    pub fn workdir(&self) -> String {
        match self.config.get("WorkingDir").and_then(Value::as_str) {
            Some(dir) if !dir.is_empty() => dir.to_string(),
            _ => "/".to_string(),
        }
    }

    /// Returns the user, empty when none is set (root).
    pub fn user(&self) -> String {
        self.config
            .get("User")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// Returns the shell of shell-form commands.
    pub fn shell(&self) -> Vec<String> {
        let shell = string_list(self.config.get("Shell"));
        if shell.is_empty() {
            DEFAULT_SHELL.iter().map(|part| part.to_string()).collect()
        } else {
            shell
        }
    }

    /// Returns the `ONBUILD` triggers.
    pub fn on_build(&self) -> Vec<String> {
        string_list(self.config.get("OnBuild"))
    }

    /// Applies an expanded config change.
    pub fn apply(&mut self, change: &ConfigChange) {
        match change {
            ConfigChange::Env(pairs) => {
                let mut env = self.env();
                for (name, value) in pairs {
                    match env.iter_mut().find(|(existing, _)| existing == name) {
                        Some(entry) => entry.1.clone_from(value),
                        None => env.push((name.clone(), value.clone())),
                    }
                }
                let list = env
                    .into_iter()
                    .map(|(name, value)| Value::String(format!("{name}={value}")))
                    .collect();
                self.config.insert("Env".into(), Value::Array(list));
            }
            ConfigChange::Label(pairs) => {
                with_object(&mut self.config, "Labels", |labels| {
                    for (key, value) in pairs {
                        labels.insert(key.clone(), Value::String(value.clone()));
                    }
                });
            }
            ConfigChange::Expose(ports) => {
                with_object(&mut self.config, "ExposedPorts", |exposed| {
                    for port in ports {
                        exposed.insert(port.clone(), json!({}));
                    }
                });
            }
            ConfigChange::Volume(paths) => {
                with_object(&mut self.config, "Volumes", |volumes| {
                    for path in paths {
                        volumes.insert(path.clone(), json!({}));
                    }
                });
            }
            ConfigChange::User(user) => {
                self.config
                    .insert("User".into(), Value::String(user.clone()));
            }
            ConfigChange::Workdir(dir) => {
                self.config
                    .insert("WorkingDir".into(), Value::String(dir.clone()));
            }
            ConfigChange::Entrypoint { argv, clear_cmd } => {
                self.config.insert("Entrypoint".into(), list_value(argv));
                if *clear_cmd {
                    self.config.remove("Cmd");
                }
            }
            ConfigChange::Cmd(argv) => {
                self.config.insert("Cmd".into(), list_value(argv));
            }
            ConfigChange::Shell(argv) => {
                self.config.insert("Shell".into(), list_value(argv));
            }
            ConfigChange::StopSignal(signal) => {
                self.config
                    .insert("StopSignal".into(), Value::String(signal.clone()));
            }
            ConfigChange::Healthcheck(value) => {
                self.config.insert("Healthcheck".into(), value.clone());
            }
            ConfigChange::Maintainer(author) => self.author = Some(author.clone()),
            ConfigChange::OnBuild(trigger) => {
                let mut triggers = self.on_build();
                triggers.push(trigger.clone());
                self.config.insert("OnBuild".into(), list_value(&triggers));
            }
            ConfigChange::None => {}
        }
    }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn list_value(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

/// Runs `change` on the object under `key`, replacing a missing or
/// non-object value with an empty object first.
fn with_object(
    config: &mut Map<String, Value>,
    key: &str,
    change: impl FnOnce(&mut Map<String, Value>),
) {
    let mut object = match config.remove(key) {
        Some(Value::Object(object)) => object,
        _ => Map::new(),
    };
    change(&mut object);
    config.insert(key.to_string(), Value::Object(object));
}

/// A config change with every variable expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// `ENV`: variables to set, in order.
    Env(Vec<(String, String)>),
    /// `LABEL`: labels to set.
    Label(Vec<(String, String)>),
    /// `EXPOSE`: ports as `80/tcp`.
    Expose(Vec<String>),
    /// `VOLUME`: mount points.
    Volume(Vec<String>),
    /// `USER`: `user[:group]`.
    User(String),
    /// `WORKDIR`: the absolute, cleaned directory.
    Workdir(String),
    /// `ENTRYPOINT`: the argument list; `clear_cmd` drops an inherited
    /// `CMD`.
    Entrypoint {
        /// Program and arguments.
        argv: Vec<String>,
        /// Whether to remove `Cmd`, which happens when the stage has not
        /// set it itself.
        clear_cmd: bool,
    },
    /// `CMD`: the argument list.
    Cmd(Vec<String>),
    /// `SHELL`: the new shell.
    Shell(Vec<String>),
    /// `STOPSIGNAL`: the signal name or number.
    StopSignal(String),
    /// `HEALTHCHECK`: docker's `Healthcheck` object.
    Healthcheck(Value),
    /// `MAINTAINER`: the image author.
    Maintainer(String),
    /// `ONBUILD`: one trigger, as written.
    OnBuild(String),
    /// `ARG`: no change to the config.
    None,
}

/// Variables an instruction can read: build arguments in scope, then the
/// image environment, which wins for a name in both.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Build arguments in scope, in declaration order.
    pub args: Vec<(String, String)>,
    /// The image environment.
    pub env: Vec<(String, String)>,
}

impl Scope {
    fn variables(&self) -> Vec<(&str, &str)> {
        self.args
            .iter()
            .chain(self.env.iter())
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    }
}

/// Expands instruction arguments and collects the variables they read.
pub struct Expander<'a> {
    lexer: &'a Lexer,
    variables: Vec<(&'a str, &'a str)>,
    /// Names of every variable read so far.
    pub read: BTreeSet<String>,
}

impl<'a> Expander<'a> {
    /// Creates an expander over `scope`.
    pub fn new(lexer: &'a Lexer, scope: &'a Scope) -> Self {
        Expander {
            lexer,
            variables: scope.variables(),
            read: BTreeSet::new(),
        }
    }

    /// Expands `text` into one word, quotes removed.
    ///
    /// # Errors
    ///
    /// Returns the expansion error as a message naming the text.
    pub fn text(&mut self, text: &str) -> Result<String, String> {
        let (word, names) = self
            .lexer
            .expand_word_with_names(text, &self.variables)
            .map_err(|error| format!("cannot expand `{text}`: {error}"))?;
        self.read.extend(names);
        Ok(word)
    }

    /// Expands a parsed word, which needs work only when it has variables.
    ///
    /// # Errors
    ///
    /// As [`Expander::text`].
    pub fn word(&mut self, word: &Word) -> Result<String, String> {
        if word.has_variables {
            self.text(&word.raw)
        } else {
            Ok(word.value.clone())
        }
    }

    /// Expands a heredoc body: variables and escapes only, quotes kept.
    ///
    /// # Errors
    ///
    /// As [`Expander::text`].
    pub fn heredoc(&mut self, text: &str) -> Result<String, String> {
        let lexer = self.lexer.clone().with_skip_quotes(true);
        let (word, names) = lexer
            .expand_word_with_names(text, &self.variables)
            .map_err(|error| format!("cannot expand the heredoc: {error}"))?;
        self.read.extend(names);
        Ok(word)
    }

    /// Expands `text` only when it contains a variable; otherwise returns
    /// it unchanged. Paths and names that the parser keeps as written go
    /// through here.
    ///
    /// # Errors
    ///
    /// As [`Expander::text`].
    pub fn plain(&mut self, text: &str) -> Result<String, String> {
        if forge_parser::instructions::has_variable(text) {
            self.text(text)
        } else {
            Ok(text.to_string())
        }
    }
}

/// The stage state an instruction is expanded against.
pub struct StageView<'a> {
    /// The config before the instruction.
    pub config: &'a ConfigState,
    /// Whether the stage has set `CMD` itself.
    pub cmd_set: bool,
}

/// Expands a config instruction. Returns `None` for RUN, COPY and ADD,
/// which the builder executes instead.
///
/// # Errors
///
/// Returns a message naming the value that cannot be expanded or typed.
pub fn expand_config(
    kind: &InstructionKind,
    expander: &mut Expander<'_>,
    stage: &StageView<'_>,
) -> Result<Option<ConfigChange>, String> {
    let change = match kind {
        InstructionKind::Run(_) | InstructionKind::Copy(_) | InstructionKind::Add(_) => {
            return Ok(None);
        }
        InstructionKind::Env(pairs) => ConfigChange::Env(expand_pairs(pairs, expander)?),
        InstructionKind::Label(pairs) => ConfigChange::Label(expand_pairs(pairs, expander)?),
        InstructionKind::Expose(ports) => {
            let mut keys = Vec::new();
            for port in ports {
                let range = match port {
                    Expandable::Literal(range) => *range,
                    Expandable::Unexpanded(text) => {
                        let expanded = expander.text(text)?;
                        PortRange::parse(&expanded)?
                    }
                };
                for number in range.start..=range.end {
                    keys.push(format!("{number}/{}", range.protocol.as_str()));
                }
            }
            ConfigChange::Expose(keys)
        }
        InstructionKind::Volume(paths) => {
            let mut expanded = Vec::new();
            for path in paths {
                let path = expander.plain(path)?;
                if path.is_empty() {
                    return Err("VOLUME needs a non-empty path".to_string());
                }
                expanded.push(path);
            }
            ConfigChange::Volume(expanded)
        }
        InstructionKind::User(user) => {
            let name = expander.plain(&user.user)?;
            match &user.group {
                Some(group) => ConfigChange::User(format!("{name}:{}", expander.plain(group)?)),
                None => ConfigChange::User(name),
            }
        }
        InstructionKind::Workdir(dir) => {
            let dir = expander.plain(dir)?;
            ConfigChange::Workdir(join_workdir(&stage.config.workdir(), &dir))
        }
        InstructionKind::Entrypoint(command) => ConfigChange::Entrypoint {
            argv: command_argv(command, stage.config),
            clear_cmd: !stage.cmd_set,
        },
        InstructionKind::Cmd(command) => ConfigChange::Cmd(command_argv(command, stage.config)),
        InstructionKind::Shell(shell) => ConfigChange::Shell(shell.clone()),
        InstructionKind::Stopsignal(signal) => {
            let signal = expander.plain(signal)?;
            check_signal(&signal)?;
            ConfigChange::StopSignal(signal)
        }
        InstructionKind::Healthcheck(check) => ConfigChange::Healthcheck(healthcheck_value(check)),
        InstructionKind::Maintainer(author) => ConfigChange::Maintainer(author.clone()),
        InstructionKind::Onbuild(trigger) => ConfigChange::OnBuild(trigger.original.clone()),
        InstructionKind::Arg(_) => ConfigChange::None,
    };
    Ok(Some(change))
}

/// Expands `ENV` or `LABEL` pairs. Every value reads the variables as they
/// were before the instruction, as in docker.
fn expand_pairs(
    pairs: &[KeyValue],
    expander: &mut Expander<'_>,
) -> Result<Vec<(String, String)>, String> {
    let mut expanded = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let key = expander.plain(&pair.key)?;
        if key.is_empty() {
            return Err("a key must not be empty".to_string());
        }
        expanded.push((key, expander.word(&pair.value)?));
    }
    Ok(expanded)
}

/// Turns a command into the argument list the config stores: exec form as
/// written, shell form wrapped in the stage's shell.
pub fn command_argv(command: &CommandLine, config: &ConfigState) -> Vec<String> {
    match command {
        CommandLine::Exec(argv) => argv.clone(),
        CommandLine::Shell(text) => {
            let mut argv = config.shell();
            argv.push(text.clone());
            argv
        }
    }
}

fn healthcheck_value(check: &Healthcheck) -> Value {
    let Healthcheck::Cmd(check) = check else {
        return json!({ "Test": ["NONE"] });
    };
    let mut test = Vec::new();
    match &check.command {
        CommandLine::Exec(argv) => {
            test.push("CMD".to_string());
            test.extend(argv.iter().cloned());
        }
        CommandLine::Shell(text) => {
            test.push("CMD-SHELL".to_string());
            test.push(text.clone());
        }
    }
    let mut value = Map::new();
    value.insert("Test".into(), list_value(&test));
    let durations = [
        ("Interval", check.interval_ns),
        ("Timeout", check.timeout_ns),
        ("StartPeriod", check.start_period_ns),
        ("StartInterval", check.start_interval_ns),
    ];
    for (key, nanoseconds) in durations {
        if let Some(nanoseconds) = nanoseconds {
            value.insert(key.into(), json!(nanoseconds));
        }
    }
    if let Some(retries) = check.retries {
        value.insert("Retries".into(), json!(retries));
    }
    Value::Object(value)
}

/// Resolves `dir` against the current working directory and cleans the
/// result (`.` and `..` components, repeated slashes).
pub fn join_workdir(current: &str, dir: &str) -> String {
    let joined = if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("{current}/{dir}")
    };
    clean_path(&joined)
}

/// Cleans an absolute path lexically, as Go's `path.Clean` does.
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdir_joins_relative_paths() {
        assert_eq!(join_workdir("/", "app"), "/app");
        assert_eq!(join_workdir("/app", "src"), "/app/src");
        assert_eq!(join_workdir("/app", "/opt//x/"), "/opt/x");
        assert_eq!(join_workdir("/app/src", "../lib"), "/app/lib");
        assert_eq!(join_workdir("/", ".."), "/");
    }

    #[test]
    fn env_replaces_existing_names() {
        let mut state = ConfigState::default();
        state.apply(&ConfigChange::Env(vec![("A".into(), "1".into())]));
        state.apply(&ConfigChange::Env(vec![
            ("B".into(), "2".into()),
            ("A".into(), "3".into()),
        ]));
        assert_eq!(
            state.env(),
            vec![
                ("A".to_string(), "3".to_string()),
                ("B".to_string(), "2".to_string())
            ]
        );
    }

    #[test]
    fn entrypoint_clears_inherited_cmd() {
        let mut state = ConfigState::default();
        state.apply(&ConfigChange::Cmd(vec!["sh".into()]));
        state.apply(&ConfigChange::Entrypoint {
            argv: vec!["/app".into()],
            clear_cmd: true,
        });
        assert!(!state.config.contains_key("Cmd"));
        assert_eq!(state.config.get("Entrypoint"), Some(&json!(["/app"])));
    }

    #[test]
    fn entrypoint_keeps_own_cmd() {
        let mut state = ConfigState::default();
        state.apply(&ConfigChange::Cmd(vec!["sh".into()]));
        state.apply(&ConfigChange::Entrypoint {
            argv: vec!["/app".into()],
            clear_cmd: false,
        });
        assert_eq!(state.config.get("Cmd"), Some(&json!(["sh"])));
    }

    #[test]
    fn shell_form_uses_stage_shell() {
        let mut state = ConfigState::default();
        let command = CommandLine::Shell("echo hi".into());
        assert_eq!(
            command_argv(&command, &state),
            vec!["/bin/sh", "-c", "echo hi"]
        );
        state.apply(&ConfigChange::Shell(vec!["/bin/bash".into(), "-ec".into()]));
        assert_eq!(
            command_argv(&command, &state),
            vec!["/bin/bash", "-ec", "echo hi"]
        );
    }

    #[test]
    fn expander_records_names() {
        let lexer = Lexer::default();
        let scope = Scope {
            args: vec![("A".into(), "arg".into()), ("B".into(), "b".into())],
            env: vec![("A".into(), "env".into())],
        };
        let mut expander = Expander::new(&lexer, &scope);
        assert_eq!(expander.text("$A-${C:-c}"), Ok("env-c".to_string()));
        assert!(expander.read.contains("A"));
        assert!(expander.read.contains("C"));
        assert!(!expander.read.contains("B"));
    }
}
