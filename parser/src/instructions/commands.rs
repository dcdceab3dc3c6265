//! Typing of single instructions: arguments and flags of each keyword.

use super::Problem;
use super::flags::{FlagKind, Flags};
use super::mount::{Mount, ParsedMount};
use super::suggest::nearest;
use super::types::{
    Add, Arg, ArgDefinition, CommandLine, Copy, Healthcheck, HealthcheckCmd, InstructionKind,
    KeyValue, Network, Run, Security, Source, User,
};
use super::values::{
    Expandable, FileMode, PortRange, Word, check_checksum, check_signal, format_duration,
    has_variable, parse_duration,
};
use crate::{Heredoc, Node};

/// Every instruction keyword, in lower case.
pub(crate) const KEYWORDS: &[&str] = &[
    "from",
    "run",
    "cmd",
    "label",
    "maintainer",
    "expose",
    "env",
    "add",
    "copy",
    "entrypoint",
    "volume",
    "user",
    "workdir",
    "arg",
    "onbuild",
    "stopsignal",
    "healthcheck",
    "shell",
];

/// The shortest health-check interval Docker accepts, in nanoseconds.
const MIN_HEALTHCHECK_NS: i64 = 1_000_000;

/// The start of a build stage, from a `FROM` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct From {
    pub base: String,
    pub name: Option<String>,
    /// The stage name as written, before lower-casing.
    pub written_name: Option<String>,
    /// The `AS` keyword as written.
    pub as_keyword: Option<String>,
    pub platform: Option<String>,
}

/// One typed node: a stage start or an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Typed {
    From(From),
    Instruction(InstructionKind),
}

/// Types `node`, using `escape` to remove quotes from ENV, LABEL and ARG
/// values.
pub(crate) fn type_node(node: &Node, escape: char) -> Result<Typed, Problem> {
    let keyword = node.keyword.to_ascii_lowercase();
    let name = keyword.to_ascii_uppercase();
    let kind = match keyword.as_str() {
        "from" => return parse_from(node).map(Typed::From),
        "run" => InstructionKind::Run(parse_run(node)?),
        "cmd" => InstructionKind::Cmd(command_line(node, "CMD", &node.args, true)?),
        "entrypoint" => {
            InstructionKind::Entrypoint(command_line(node, "ENTRYPOINT", &node.args, true)?)
        }
        "label" => InstructionKind::Label(key_values(node, "LABEL", escape)?),
        "env" => InstructionKind::Env(key_values(node, "ENV", escape)?),
        "maintainer" => InstructionKind::Maintainer(one_argument(node, "MAINTAINER")?),
        "expose" => InstructionKind::Expose(parse_expose(node)?),
        "add" => InstructionKind::Add(parse_add(node)?),
        "copy" => InstructionKind::Copy(parse_copy(node)?),
        "volume" => InstructionKind::Volume(parse_volume(node)?),
        "user" => InstructionKind::User(parse_user(node)?),
        "workdir" => InstructionKind::Workdir(parse_workdir(node)?),
        "arg" => InstructionKind::Arg(parse_arg(node, escape)?),
        "stopsignal" => InstructionKind::Stopsignal(parse_stopsignal(node)?),
        "healthcheck" => InstructionKind::Healthcheck(parse_healthcheck(node)?),
        "shell" => InstructionKind::Shell(parse_shell(node)?),
        "onbuild" => {
            // ONBUILD needs its trigger placed and checked, which the
            // stage builder does before it calls this function.
            return Err(Problem::new(
                "ONBUILD must be typed together with its trigger",
            ));
        }
        _ => {
            let problem = Problem::at(
                format!("unknown instruction `{name}`"),
                &first_word(&node.original),
            );
            return Err(match nearest(&keyword, KEYWORDS) {
                Some(near) => {
                    problem.with_hint(format!("did you mean {}?", near.to_ascii_uppercase()))
                }
                None => {
                    problem.with_hint("see the Dockerfile reference for the list of instructions")
                }
            });
        }
    };
    Ok(Typed::Instruction(kind))
}

/// Returns the first whitespace-separated word of `text`.
pub(crate) fn first_word(text: &str) -> String {
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn no_flags(node: &Node, name: &str) -> Result<(), Problem> {
    Flags::parse(name, &node.flags, &[]).map(|_| ())
}

fn one_argument(node: &Node, name: &str) -> Result<String, Problem> {
    no_flags(node, name)?;
    match node.args.as_slice() {
        [only] if !only.trim().is_empty() => Ok(only.clone()),
        [] | [_] => Err(Problem::new(format!(
            "{name} requires exactly one argument"
        ))),
        [_, extra, ..] => Err(Problem::at(
            format!(
                "{name} requires exactly one argument, not {}",
                node.args.len()
            ),
            extra,
        )),
    }
}

fn parse_from(node: &Node) -> Result<From, Problem> {
    let flags = Flags::parse("FROM", &node.flags, &[("platform", FlagKind::Text)])?;
    let platform = flags.get("platform").map(|flag| flag.value.clone());
    if let Some(flag) = flags.get("platform").filter(|flag| flag.value.is_empty()) {
        return Err(Problem::at("FROM --platform needs a value", &flag.raw)
            .with_hint("write --platform=linux/amd64 or --platform=$BUILDPLATFORM"));
    }

    let usage = "write FROM image or FROM image AS name";
    match node.args.as_slice() {
        [base] => Ok(From {
            base: base.clone(),
            name: None,
            written_name: None,
            as_keyword: None,
            platform,
        }),
        [base, as_keyword, name] if as_keyword.eq_ignore_ascii_case("as") => {
            let lower = name.to_lowercase();
            if !is_valid_stage_name(&lower) {
                return Err(Problem::at(
                    format!("invalid stage name `{name}`: a name starts with a letter and contains only letters, digits, `-`, `_` and `.`"),
                    name,
                )
                .with_hint("rename the stage, for example AS build"));
            }
            Ok(From {
                base: base.clone(),
                name: Some(lower),
                written_name: Some(name.clone()),
                as_keyword: Some(as_keyword.clone()),
                platform,
            })
        }
        [_, word, _] => Err(Problem::at(
            format!("FROM expects AS before the stage name, not `{word}`"),
            word,
        )
        .with_hint(usage)),
        [] => Err(Problem::new("FROM requires a base image").with_hint(usage)),
        [_, extra, ..] => Err(Problem::at(
            format!(
                "FROM requires either one or three arguments, not {}",
                node.args.len()
            ),
            extra,
        )
        .with_hint(usage)),
    }
}

/// Checks a lower-cased stage name: a letter, then letters, digits, `-`,
/// `_` or `.`.
fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// Types the command of RUN, CMD, ENTRYPOINT or HEALTHCHECK CMD.
/// `allow_empty_exec` accepts `[]`.
fn command_line(
    node: &Node,
    name: &str,
    args: &[String],
    allow_empty_exec: bool,
) -> Result<CommandLine, Problem> {
    if name != "RUN" && name != "HEALTHCHECK" {
        no_flags(node, name)?;
    }
    if node.json {
        if args.is_empty() && !allow_empty_exec {
            return Err(Problem::new(format!(
                "{name} requires a command, but the JSON array is empty"
            )));
        }
        return Ok(CommandLine::Exec(args.to_vec()));
    }
    match args {
        [text] if !text.trim().is_empty() => Ok(CommandLine::Shell(text.clone())),
        _ => {
            let problem = Problem::new(format!("{name} requires a command"));
            Err(if allow_empty_exec {
                problem.with_hint(format!(
                    "write {name} [\"program\", \"arg\"], or {name} [] to clear it"
                ))
            } else {
                problem.with_hint(format!(
                    "write {name} followed by a shell command or a JSON array"
                ))
            })
        }
    }
}

fn parse_run(node: &Node) -> Result<Run, Problem> {
    let flags = Flags::parse(
        "RUN",
        &node.flags,
        &[
            ("mount", FlagKind::Texts),
            ("network", FlagKind::Text),
            ("security", FlagKind::Text),
        ],
    )?;

    let mut mounts = Vec::new();
    for flag in flags.all("mount") {
        let mount = match Mount::parse_literal(&flag.value) {
            Ok(ParsedMount::Typed(mount)) => Expandable::Literal(mount),
            Ok(ParsedMount::Deferred) => Expandable::Unexpanded(flag.value.clone()),
            Err((message, hint)) => {
                let problem = Problem::at(format!("invalid RUN --mount: {message}"), &flag.raw);
                return Err(match hint {
                    Some(hint) => problem.with_hint(hint),
                    None => problem,
                });
            }
        };
        mounts.push(mount);
    }

    let network = match flags.get("network") {
        Some(flag) => Some(Expandable::parse(
            &flag.value,
            |value| match Network::parse(value) {
                Some(network) => Ok(network),
                None => Err(Problem::at(
                    format!("invalid network mode `{value}` for RUN --network"),
                    &flag.raw,
                )
                .with_hint(choice(value, &["default", "none", "host"]))),
            },
        )?),
        None => None,
    };
    let security = match flags.get("security") {
        Some(flag) => Some(Expandable::parse(
            &flag.value,
            |value| match Security::parse(value) {
                Some(security) => Ok(security),
                None => Err(Problem::at(
                    format!("invalid security mode `{value}` for RUN --security"),
                    &flag.raw,
                )
                .with_hint(choice(value, &["sandbox", "insecure"]))),
            },
        )?),
        None => None,
    };

    Ok(Run {
        command: command_line(node, "RUN", &node.args, false)?,
        heredocs: node.heredocs.clone(),
        mounts,
        network,
        security,
    })
}

/// Returns a "did you mean" hint for `value`, or the list of choices.
fn choice(value: &str, choices: &[&str]) -> String {
    match nearest(value, choices) {
        Some(near) => format!("did you mean {near}?"),
        None => format!("use one of: {}", choices.join(", ")),
    }
}

fn key_values(node: &Node, name: &str, escape: char) -> Result<Vec<KeyValue>, Problem> {
    no_flags(node, name)?;
    if node.args.is_empty() {
        return Err(
            Problem::new(format!("{name} requires at least one argument"))
                .with_hint(format!("write {name} key=value")),
        );
    }
    let triples = node.args.chunks(3);
    if triples.len() * 3 != node.args.len() {
        return Err(Problem::new(format!(
            "{name} arguments are not key/value pairs"
        )));
    }

    let mut pairs = Vec::with_capacity(node.args.len() / 3);
    for triple in triples {
        let [key, value, _separator] = triple else {
            return Err(Problem::new(format!(
                "{name} arguments are not key/value pairs"
            )));
        };
        if key.is_empty() {
            return Err(Problem::new(format!("{name} names can not be blank"))
                .with_hint(format!("write {name} key=value")));
        }
        let key_word = Word::parse(key, escape)
            .map_err(|message| Problem::at(format!("invalid {name} key: {message}"), key))?;
        let value = Word::parse(value, escape)
            .map_err(|message| Problem::at(format!("invalid {name} value: {message}"), value))?;
        pairs.push(KeyValue {
            key: key_word.value,
            value,
        });
    }
    Ok(pairs)
}

fn parse_expose(node: &Node) -> Result<Vec<Expandable<PortRange>>, Problem> {
    no_flags(node, "EXPOSE")?;
    if node.args.is_empty() {
        return Err(Problem::new("EXPOSE requires at least one argument")
            .with_hint("write EXPOSE 80 or EXPOSE 53/udp"));
    }
    node.args
        .iter()
        .map(|port| {
            Expandable::parse(port, |text| {
                PortRange::parse(text).map_err(|message| Problem::at(message, port))
            })
        })
        .collect()
}

/// Reads COPY/ADD sources and destination, matching `<<NAME` sources with
/// the node's heredocs.
fn sources_and_destination(node: &Node, name: &str) -> Result<(Vec<Source>, String), Problem> {
    let Some((destination, sources)) = node
        .args
        .split_last()
        .filter(|(_, sources)| !sources.is_empty())
    else {
        return Err(Problem::new(format!(
            "{name} requires at least two arguments, but only {} given: the destination could not be determined",
            node.args.len()
        ))
        .with_hint(format!("write {name} source... destination")));
    };

    let mut unused: Vec<&Heredoc> = node.heredocs.iter().collect();
    let mut take_heredoc = |word: &str| -> Option<Heredoc> {
        let name = heredoc_name(word)?;
        let position = unused.iter().position(|heredoc| heredoc.name == name)?;
        Some(unused.remove(position).clone())
    };

    if !node.json && take_heredoc(destination).is_some() {
        return Err(Problem::at(
            format!("{name} cannot take a heredoc as its destination"),
            destination,
        )
        .with_hint(format!("write {name} <<EOF /path/of/file")));
    }
    let sources = sources
        .iter()
        .map(|source| match take_heredoc(source).filter(|_| !node.json) {
            Some(heredoc) => Source::Heredoc(heredoc),
            None => Source::Path(source.clone()),
        })
        .collect();
    Ok((sources, destination.clone()))
}

/// Returns the delimiter named by a heredoc opener word such as `<<EOF`,
/// `<<-EOF`, `<<"EOF"` or `<<'EOF'`.
fn heredoc_name(word: &str) -> Option<String> {
    let rest = word.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|&quote| rest.strip_prefix(quote).and_then(|r| r.strip_suffix(quote)))
        .unwrap_or(rest);
    (!unquoted.is_empty()).then(|| unquoted.to_string())
}

/// Reads `--chmod`, checking it unless it has a variable.
fn chmod_flag(flags: &Flags, name: &str) -> Result<Option<Expandable<FileMode>>, Problem> {
    flags
        .get("chmod")
        .map(|flag| {
            Expandable::parse(&flag.value, |value| {
                FileMode::parse(value).map_err(|message| {
                    Problem::at(format!("invalid {name} --chmod: {message}"), &flag.raw)
                })
            })
        })
        .transpose()
}

/// Reads `--chown`, which must not be empty.
fn chown_flag(flags: &Flags, name: &str) -> Result<Option<String>, Problem> {
    match flags.get("chown") {
        Some(flag) if flag.value.is_empty() => Err(Problem::at(
            format!("{name} --chown needs a user"),
            &flag.raw,
        )
        .with_hint("write --chown=user or --chown=user:group")),
        Some(flag) => Ok(Some(flag.value.clone())),
        None => Ok(None),
    }
}

fn parse_copy(node: &Node) -> Result<Copy, Problem> {
    let flags = Flags::parse(
        "COPY",
        &node.flags,
        &[
            ("from", FlagKind::Text),
            ("chown", FlagKind::Text),
            ("chmod", FlagKind::Text),
            ("link", FlagKind::Bool),
            ("parents", FlagKind::Bool),
            ("exclude", FlagKind::Texts),
        ],
    )?;
    let (sources, destination) = sources_and_destination(node, "COPY")?;
    let from = match flags.get("from") {
        Some(flag) if flag.value.is_empty() => {
            return Err(Problem::at(
                "COPY --from needs a stage name, stage index or image",
                &flag.raw,
            )
            .with_hint("write --from=build or --from=alpine:3"));
        }
        Some(flag) => Some(flag.value.clone()),
        None => None,
    };
    Ok(Copy {
        sources,
        destination,
        from,
        chown: chown_flag(&flags, "COPY")?,
        chmod: chmod_flag(&flags, "COPY")?,
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        exclude: flags
            .all("exclude")
            .map(|flag| flag.value.clone())
            .collect(),
    })
}

fn parse_add(node: &Node) -> Result<Add, Problem> {
    let flags = Flags::parse(
        "ADD",
        &node.flags,
        &[
            ("chown", FlagKind::Text),
            ("chmod", FlagKind::Text),
            ("link", FlagKind::Bool),
            ("keep-git-dir", FlagKind::Bool),
            ("checksum", FlagKind::Text),
            ("unpack", FlagKind::Bool),
            ("exclude", FlagKind::Texts),
        ],
    )?;
    let (sources, destination) = sources_and_destination(node, "ADD")?;

    let checksum = match flags.get("checksum") {
        Some(flag) => {
            if !has_variable(&flag.value) {
                check_checksum(&flag.value).map_err(|message| {
                    Problem::at(format!("invalid ADD --checksum: {message}"), &flag.raw)
                })?;
            }
            if sources.len() > 1 {
                return Err(
                    Problem::at("ADD --checksum takes exactly one source", &flag.raw)
                        .with_hint("split the sources into one ADD each"),
                );
            }
            Some(flag.value.clone())
        }
        None => None,
    };

    Ok(Add {
        sources,
        destination,
        chown: chown_flag(&flags, "ADD")?,
        chmod: chmod_flag(&flags, "ADD")?,
        link: flags.bool("link"),
        keep_git_dir: flags.bool("keep-git-dir"),
        checksum,
        unpack: flags.optional_bool("unpack"),
        exclude: flags
            .all("exclude")
            .map(|flag| flag.value.clone())
            .collect(),
    })
}

fn parse_volume(node: &Node) -> Result<Vec<String>, Problem> {
    no_flags(node, "VOLUME")?;
    if node.args.is_empty() {
        return Err(
            Problem::new("VOLUME requires at least one argument").with_hint("write VOLUME /data")
        );
    }
    node.args
        .iter()
        .map(|volume| {
            let trimmed = volume.trim();
            if trimmed.is_empty() {
                Err(Problem::new("VOLUME paths can not be empty"))
            } else {
                Ok(trimmed.to_string())
            }
        })
        .collect()
}

fn parse_user(node: &Node) -> Result<User, Problem> {
    let text = one_argument(node, "USER")?;
    let (user, group) = match text.split_once(':') {
        Some((user, group)) => (user.to_string(), Some(group.to_string())),
        None => (text.clone(), None),
    };
    if user.is_empty() || group.as_deref() == Some("") {
        return Err(Problem::at(
            format!("invalid USER `{text}`: expected user or user:group"),
            &text,
        ));
    }
    Ok(User { user, group })
}

fn parse_workdir(node: &Node) -> Result<String, Problem> {
    one_argument(node, "WORKDIR")
}

fn parse_stopsignal(node: &Node) -> Result<String, Problem> {
    let signal = one_argument(node, "STOPSIGNAL")?;
    if !has_variable(&signal) {
        check_signal(&signal).map_err(|message| Problem::at(message, &signal))?;
    }
    Ok(signal)
}

fn parse_arg(node: &Node, escape: char) -> Result<Arg, Problem> {
    no_flags(node, "ARG")?;
    if node.args.is_empty() {
        return Err(Problem::new("ARG requires at least one argument")
            .with_hint("write ARG NAME or ARG NAME=default"));
    }
    let mut args = Vec::with_capacity(node.args.len());
    for word in &node.args {
        let (name, default) = match word.split_once('=') {
            Some((name, value)) => {
                let default = Word::parse(value, escape).map_err(|message| {
                    Problem::at(format!("invalid ARG default: {message}"), word)
                })?;
                (name, Some(default))
            }
            None => (word.as_str(), None),
        };
        if name.is_empty() {
            return Err(
                Problem::at("ARG names can not be blank", word).with_hint("write ARG NAME=value")
            );
        }
        args.push(ArgDefinition {
            name: name.to_string(),
            default,
        });
    }
    Ok(Arg { args })
}

fn parse_healthcheck(node: &Node) -> Result<Healthcheck, Problem> {
    let Some((kind, rest)) = node.args.split_first() else {
        return Err(Problem::new("HEALTHCHECK requires at least one argument")
            .with_hint("write HEALTHCHECK CMD command or HEALTHCHECK NONE"));
    };
    if kind.eq_ignore_ascii_case("none") {
        no_flags(node, "HEALTHCHECK NONE")?;
        if let Some(extra) = rest.first() {
            return Err(Problem::at("HEALTHCHECK NONE takes no arguments", extra));
        }
        return Ok(Healthcheck::None);
    }

    let flags = Flags::parse(
        "HEALTHCHECK",
        &node.flags,
        &[
            ("interval", FlagKind::Text),
            ("timeout", FlagKind::Text),
            ("start-period", FlagKind::Text),
            ("start-interval", FlagKind::Text),
            ("retries", FlagKind::Text),
        ],
    )?;
    if !kind.eq_ignore_ascii_case("cmd") {
        return Err(
            Problem::at(format!("unknown HEALTHCHECK type `{kind}`"), kind)
                .with_hint("write HEALTHCHECK CMD command or HEALTHCHECK NONE"),
        );
    }
    let command = command_line(node, "HEALTHCHECK", rest, false).map_err(|problem| Problem {
        message: "HEALTHCHECK CMD requires a command".to_string(),
        ..problem
    })?;

    let duration = |name: &str| -> Result<Option<u64>, Problem> {
        let Some(flag) = flags.get(name) else {
            return Ok(None);
        };
        let nanos = parse_duration(&flag.value).map_err(|message| {
            Problem::at(
                format!("invalid HEALTHCHECK --{name}: {message}"),
                &flag.raw,
            )
        })?;
        if nanos == 0 {
            return Ok(None);
        }
        if nanos < MIN_HEALTHCHECK_NS {
            return Err(Problem::at(
                format!(
                    "HEALTHCHECK --{name} cannot be less than {}, got `{}`",
                    format_duration(MIN_HEALTHCHECK_NS),
                    flag.value
                ),
                &flag.raw,
            ));
        }
        Ok(u64::try_from(nanos).ok())
    };

    let retries = match flags.get("retries") {
        Some(flag) => {
            let value: i32 = flag.value.parse().map_err(|_| {
                Problem::at(
                    format!(
                        "invalid HEALTHCHECK --retries `{}`: expected a whole number",
                        flag.value
                    ),
                    &flag.raw,
                )
            })?;
            let retries = u32::try_from(value).map_err(|_| {
                Problem::at(
                    format!("HEALTHCHECK --retries cannot be negative, got `{value}`"),
                    &flag.raw,
                )
            })?;
            Some(retries)
        }
        None => None,
    };

    Ok(Healthcheck::Cmd(HealthcheckCmd {
        command,
        interval_ns: duration("interval")?,
        timeout_ns: duration("timeout")?,
        start_period_ns: duration("start-period")?,
        start_interval_ns: duration("start-interval")?,
        retries,
    }))
}

fn parse_shell(node: &Node) -> Result<Vec<String>, Problem> {
    no_flags(node, "SHELL")?;
    if !node.json {
        return Err(
            Problem::new("SHELL requires the arguments to be in JSON form")
                .with_hint("write SHELL [\"/bin/bash\", \"-c\"]"),
        );
    }
    if node.args.is_empty() {
        return Err(Problem::new("SHELL requires at least one argument")
            .with_hint("write SHELL [\"/bin/bash\", \"-c\"]"));
    }
    Ok(node.args.clone())
}
