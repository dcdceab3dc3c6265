//! The typed Dockerfile: stages, instructions and their arguments.

use serde::Serialize;

use super::mount::Mount;
use super::values::{Expandable, FileMode, PortRange, Word};
use crate::{Heredoc, Span, Warning};

/// A Dockerfile with typed instructions grouped in build stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// Parser directives from the top of the file.
    pub directives: crate::syntax::Directives,
    /// `ARG` instructions before the first `FROM`; they may be used in
    /// `FROM` lines.
    pub global_args: Vec<GlobalArg>,
    /// Build stages in file order; there is at least one.
    pub stages: Vec<Stage>,
    /// Constructs that are accepted but probably not meant, from both
    /// parsing stages.
    pub warnings: Vec<Warning>,
}

/// An `ARG` instruction before the first `FROM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GlobalArg {
    /// Lines of the instruction.
    pub span: Span,
    /// The instruction as written, continuations joined.
    pub original: String,
    /// The declared build arguments.
    pub arg: Arg,
}

/// A build stage: a `FROM` line and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// Position of the stage in the file, from 0.
    pub index: usize,
    /// Name from `AS name`, in lower case.
    pub name: Option<String>,
    /// Base image or earlier stage name, as written (it may contain global
    /// build arguments).
    pub base: String,
    /// Value of `--platform`, as written.
    pub platform: Option<String>,
    /// Lines from the `FROM` line to the end of the stage's last
    /// instruction.
    pub span: Span,
    /// The `FROM` line as written.
    pub original: String,
    /// Instructions after `FROM`, in order.
    pub instructions: Vec<Instruction>,
}

/// One typed instruction with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// Lines of the instruction, heredoc bodies included.
    pub span: Span,
    /// The instruction as written, continuations joined, without heredoc
    /// bodies.
    pub original: String,
    /// Operation of the instruction, with typed arguments and flags.
    pub kind: InstructionKind,
}

/// The instructions that may appear inside a build stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "instruction", content = "arguments", rename_all = "lowercase")]
pub enum InstructionKind {
    /// `RUN`: a command run in the build container.
    Run(Run),
    /// `CMD`: the image's default command or `ENTRYPOINT` arguments.
    Cmd(CommandLine),
    /// `LABEL`: image labels.
    Label(Vec<KeyValue>),
    /// `MAINTAINER` (deprecated): the author, stored as a label by Docker.
    Maintainer(String),
    /// `EXPOSE`: ports the container listens on.
    Expose(Vec<Expandable<PortRange>>),
    /// `ENV`: environment variables for later instructions and the image.
    Env(Vec<KeyValue>),
    /// `ADD`: files from the context, URLs, Git repositories or heredocs.
    Add(Add),
    /// `COPY`: files from the context, a stage, an image or heredocs.
    Copy(Copy),
    /// `ENTRYPOINT`: the image's entry point.
    Entrypoint(CommandLine),
    /// `VOLUME`: mount points for anonymous volumes.
    Volume(Vec<String>),
    /// `USER`: the user (and group) later instructions and the container
    /// run as.
    User(User),
    /// `WORKDIR`: the working directory, as written (relative paths are
    /// relative to the previous one).
    Workdir(String),
    /// `ARG`: build arguments declared in the stage.
    Arg(Arg),
    /// `ONBUILD`: an instruction stored in the image to run in builds that
    /// use it as their base.
    Onbuild(Box<Instruction>),
    /// `STOPSIGNAL`: the signal that stops the container, as written (a
    /// name or number, checked unless it has a variable).
    Stopsignal(String),
    /// `HEALTHCHECK`: the container health check.
    Healthcheck(Healthcheck),
    /// `SHELL`: the shell for shell-form commands, as an exec-form list.
    Shell(Vec<String>),
}

impl InstructionKind {
    /// Returns the instruction keyword in upper case, such as `RUN`.
    pub fn keyword(&self) -> &'static str {
        match self {
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Maintainer(_) => "MAINTAINER",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::User(_) => "USER",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::Stopsignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Shell(_) => "SHELL",
        }
    }
}

/// A command in exec form or shell form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandLine {
    /// A JSON array: the program and its arguments, run without a shell.
    /// It may be empty for `CMD []` and `ENTRYPOINT []`.
    Exec(Vec<String>),
    /// Text run by the stage's shell (`SHELL`, default `/bin/sh -c`),
    /// exactly as written.
    Shell(String),
}

/// A `RUN` instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The command.
    pub command: CommandLine,
    /// Heredocs opened on the `RUN` line, in order. A shell-form command
    /// that is only `<<NAME` runs the heredoc body as a script.
    pub heredocs: Vec<Heredoc>,
    /// `--mount` flags in order. A mount with a variable in a typed value
    /// (such as `uid=$UID`) is kept as written for the builder, which
    /// expands it and types it with [`Mount::parse_expanded`].
    pub mounts: Vec<Expandable<Mount>>,
    /// `--network`; the default network when `None`.
    pub network: Option<Expandable<Network>>,
    /// `--security`; the sandbox when `None`.
    pub security: Option<Expandable<Security>>,
}

/// The network of a `RUN` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The builder's default network.
    Default,
    /// No network: only a loopback interface.
    None,
    /// The host's network namespace.
    Host,
}

impl Network {
    /// Parses `default`, `none` or `host`; returns `None` for anything else.
    pub fn parse(text: &str) -> Option<Network> {
        match text {
            "default" => Some(Network::Default),
            "none" => Some(Network::None),
            "host" => Some(Network::Host),
            _ => None,
        }
    }
}

/// The security mode of a `RUN` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// The normal sandbox.
    Sandbox,
    /// Extended privileges; the builder must allow it explicitly.
    Insecure,
}

impl Security {
    /// Parses `sandbox` or `insecure`; returns `None` for anything else.
    pub fn parse(text: &str) -> Option<Security> {
        match text {
            "sandbox" => Some(Security::Sandbox),
            "insecure" => Some(Security::Insecure),
            _ => None,
        }
    }
}

/// A source of `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A path or pattern (or, for `ADD`, a URL or Git address), as written.
    Path(String),
    /// A heredoc whose body becomes a file named after its delimiter.
    Heredoc(Heredoc),
}

/// A `COPY` instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    /// Sources, in order.
    pub sources: Vec<Source>,
    /// Destination path, as written.
    pub destination: String,
    /// `--from`: a stage name, stage index or image; the build context
    /// when `None`.
    pub from: Option<String>,
    /// `--chown`: `user[:group]`, as written.
    pub chown: Option<String>,
    /// `--chmod`: the mode of copied files.
    pub chmod: Option<Expandable<FileMode>>,
    /// `--link`: copy into an independent layer.
    pub link: bool,
    /// `--parents`: keep the source's parent directories.
    pub parents: bool,
    /// `--exclude` patterns, in order.
    pub exclude: Vec<String>,
}

/// An `ADD` instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    /// Sources, in order.
    pub sources: Vec<Source>,
    /// Destination path, as written.
    pub destination: String,
    /// `--chown`: `user[:group]`, as written.
    pub chown: Option<String>,
    /// `--chmod`: the mode of added files.
    pub chmod: Option<Expandable<FileMode>>,
    /// `--link`: add into an independent layer.
    pub link: bool,
    /// `--keep-git-dir`: keep the `.git` directory of a Git source.
    pub keep_git_dir: bool,
    /// `--checksum`: the expected digest of a URL source or commit of a
    /// Git source, as written (checked unless it has a variable).
    pub checksum: Option<String>,
    /// `--unpack`: whether to extract archives; `None` leaves the default
    /// (extract local archives, not downloaded ones).
    pub unpack: Option<bool>,
    /// `--exclude` patterns, in order.
    pub exclude: Vec<String>,
}

/// A `key=value` pair of `ENV` or `LABEL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// Key with its quotes removed.
    pub key: String,
    /// Value as written and with its quotes removed.
    pub value: Word,
}

/// An `ARG` instruction: one or more build arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arg {
    /// The declared arguments, in order.
    pub args: Vec<ArgDefinition>,
}

/// One build argument of an `ARG` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDefinition {
    /// Argument name.
    pub name: String,
    /// Default value after `=`, if any.
    pub default: Option<Word>,
}

/// The user of a `USER` instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// User name or ID, as written.
    pub user: String,
    /// Group name or ID after `:`, as written.
    pub group: Option<String>,
}

/// A `HEALTHCHECK` instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any check inherited from the base image.
    None,
    /// `HEALTHCHECK [flags] CMD command`.
    Cmd(HealthcheckCmd),
}

/// The command and timing of a `HEALTHCHECK CMD`.
///
/// Durations are in nanoseconds. `None` means the flag was not given or
/// was zero; both leave the runtime's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckCmd {
    /// The check command; exec form becomes `CMD`, shell form `CMD-SHELL`
    /// in the image configuration.
    pub command: CommandLine,
    /// `--interval`: time between checks.
    pub interval_ns: Option<u64>,
    /// `--timeout`: time after which one check counts as failed.
    pub timeout_ns: Option<u64>,
    /// `--start-period`: start-up time during which failures do not count.
    pub start_period_ns: Option<u64>,
    /// `--start-interval`: time between checks during the start period.
    pub start_interval_ns: Option<u64>,
    /// `--retries`: consecutive failures before the container is unhealthy.
    pub retries: Option<u32>,
}
