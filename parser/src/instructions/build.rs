//! Grouping typed instructions into build stages, and placing problems at
//! a line and column.

use super::Problem;
use super::commands::{From, Typed, first_word, type_node};
use super::types::{Dockerfile, GlobalArg, Instruction, InstructionKind, Stage};
use crate::syntax::{Directives, SyntaxTree};
use crate::{Node, ParseError, Warning};

/// Parses Dockerfile text into stages of typed instructions (runs both
/// stages).
///
/// Error columns point at the offending flag or word.
///
/// # Errors
///
/// Returns the first syntax error, invalid instruction or flag, an
/// instruction other than ARG before the first FROM, a repeated stage
/// name, or a file without FROM.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let tree = crate::syntax::parse(text)?;
    build_with(
        &tree.nodes,
        tree.directives,
        tree.warnings,
        &Locator { source: Some(text) },
    )
}

/// Types an already parsed syntax tree.
///
/// Without the source text, an error column is found in the node's
/// `original` line, which joins continuation lines.
///
/// # Errors
///
/// As [`parse`], except for syntax errors.
pub fn from_syntax(tree: SyntaxTree) -> Result<Dockerfile, ParseError> {
    build_with(
        &tree.nodes,
        tree.directives,
        tree.warnings,
        &Locator { source: None },
    )
}

/// Finds where a problem's text sits in the Dockerfile.
pub(crate) struct Locator<'a> {
    /// The Dockerfile text, when the caller has it; otherwise columns are
    /// searched in the node's joined `original` line.
    pub source: Option<&'a str>,
}

impl Locator<'_> {
    /// Returns the line and column of `needle` within `node`, or of the
    /// instruction's first word when there is no needle or it is not found.
    fn locate(&self, node: &Node, needle: Option<&str>) -> (usize, usize) {
        let keyword = first_word(&node.original);
        let target_text = needle.filter(|n| !n.is_empty()).unwrap_or(&keyword);

        if let Some(source) = self.source {
            let source = source.strip_prefix('\u{feff}').unwrap_or(source);
            let lines = source
                .lines()
                .enumerate()
                .skip(node.span.start.saturating_sub(1));
            for (index, line) in lines.take(node.span.end.saturating_sub(node.span.start) + 1) {
                if let Some(offset) = line.find(target_text) {
                    return (index + 1, column(line, offset));
                }
            }
        }

        // NOTE: `original` joins continuation lines, so a column found past
        // the first physical line is counted from the start of the
        // instruction, not of its own line.
        match node.original.find(target_text) {
            Some(offset) => (node.span.start, column(&node.original, offset)),
            None => (node.span.start, 1),
        }
    }

    fn error(&self, node: &Node, problem: Problem) -> ParseError {
        let (line, column) = self.locate(node, problem.needle.as_deref());
        let error = ParseError::new(line, column, problem.message);
        match problem.hint {
            Some(hint) => error.with_hint(hint),
            None => error,
        }
    }
}

/// Converts a byte offset within `text` to a 1-based character column.
fn column(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.chars().count() + 1)
}

/// Types `node` as an instruction inside a stage, including ONBUILD and
/// its trigger.
fn type_instruction(node: &Node, escape: char, locator: &Locator<'_>) -> Result<Typed, ParseError> {
    if !node.keyword.eq_ignore_ascii_case("onbuild") {
        return type_node(node, escape).map_err(|problem| locator.error(node, problem));
    }

    if !node.flags.is_empty() {
        let flags = super::flags::Flags::parse("ONBUILD", &node.flags, &[]);
        if let Err(problem) = flags {
            return Err(locator.error(node, problem));
        }
    }
    let Some(inner) = node.inner.as_deref() else {
        let problem = Problem::new("ONBUILD requires an instruction to run")
            .with_hint("write ONBUILD RUN command");
        return Err(locator.error(node, problem));
    };
    let trigger = inner.keyword.to_ascii_uppercase();
    if matches!(trigger.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
        let message = if trigger == "ONBUILD" {
            "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string()
        } else {
            format!("{trigger} isn't allowed as an ONBUILD trigger")
        };
        return Err(locator.error(node, Problem::at(message, &first_word(&inner.original))));
    }

    // The trigger is located inside the outer instruction's lines.
    let mut placed = inner.clone();
    placed.span = node.span;
    match type_instruction(&placed, escape, locator)? {
        Typed::Instruction(kind) => Ok(Typed::Instruction(InstructionKind::Onbuild(Box::new(
            Instruction {
                span: node.span,
                original: inner.original.clone(),
                kind,
            },
        )))),
        Typed::From(_) => Err(locator.error(
            node,
            Problem::new("FROM isn't allowed as an ONBUILD trigger"),
        )),
    }
}

pub(crate) fn build_with(
    nodes: &[Node],
    directives: Directives,
    mut warnings: Vec<Warning>,
    locator: &Locator<'_>,
) -> Result<Dockerfile, ParseError> {
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();

    for node in nodes {
        let typed = type_instruction(node, directives.escape, locator)?;
        match typed {
            Typed::From(from) => {
                check_stage_name(&stages, node, &from, locator)?;
                warn_from_casing(node, &from, &mut warnings);
                stages.push(Stage {
                    index: stages.len(),
                    name: from.name,
                    base: from.base,
                    platform: from.platform,
                    span: node.span,
                    original: node.original.clone(),
                    instructions: Vec::new(),
                });
            }
            Typed::Instruction(kind) => {
                let Some(stage) = stages.last_mut() else {
                    let InstructionKind::Arg(arg) = kind else {
                        let keyword = kind.keyword();
                        let problem = Problem::new(format!("{keyword} comes before the first FROM"))
                            .with_hint("only ARG may come before the first FROM; start a build stage with FROM image");
                        return Err(locator.error(node, problem));
                    };
                    global_args.push(GlobalArg {
                        span: node.span,
                        original: node.original.clone(),
                        arg,
                    });
                    continue;
                };
                warn_instruction(node, &kind, stage, &mut warnings);
                stage.span.end = stage.span.end.max(node.span.end);
                stage.instructions.push(Instruction {
                    span: node.span,
                    original: node.original.clone(),
                    kind,
                });
            }
        }
    }

    if stages.is_empty() {
        let line = nodes.last().map_or(1, |node| node.span.end);
        return Err(
            ParseError::new(line, 1, "the Dockerfile has no FROM instruction").with_hint(
                "start a build stage with FROM image, such as FROM debian:bookworm or FROM scratch",
            ),
        );
    }

    Ok(Dockerfile {
        directives,
        global_args,
        stages,
        warnings,
    })
}

fn check_stage_name(
    stages: &[Stage],
    node: &Node,
    from: &From,
    locator: &Locator<'_>,
) -> Result<(), ParseError> {
    let Some(name) = &from.name else {
        return Ok(());
    };
    match stages
        .iter()
        .find(|stage| stage.name.as_ref() == Some(name))
    {
        Some(first) => {
            let written = from.written_name.as_deref().unwrap_or(name);
            let problem = Problem::at(
                format!(
                    "duplicate stage name `{name}`: it is first defined on line {}",
                    first.span.start
                ),
                written,
            )
            .with_hint("give each stage its own name");
            Err(locator.error(node, problem))
        }
        None => Ok(()),
    }
}

/// Warns, as BuildKit's checks do, about a stage name that is not lower
/// case and an `AS` whose case differs from `FROM`'s.
fn warn_from_casing(node: &Node, from: &From, warnings: &mut Vec<Warning>) {
    if let Some(written) = &from.written_name
        && written.chars().any(|c| c.is_uppercase())
    {
        warnings.push(Warning {
            line: node.span.start,
            message: format!(
                "stage name `{written}` should be lower case; stage names are matched in lower case"
            ),
        });
    }
    let keyword = first_word(&node.original);
    if let Some(as_keyword) = &from.as_keyword {
        let upper = |s: &str| s.chars().all(|c| !c.is_lowercase());
        let lower = |s: &str| s.chars().all(|c| !c.is_uppercase());
        if (upper(&keyword) && !upper(as_keyword)) || (lower(&keyword) && !lower(as_keyword)) {
            warnings.push(Warning {
                line: node.span.start,
                message: format!("`{as_keyword}` and `{keyword}` keywords' casing do not match; write both in the same case"),
            });
        }
    }
}

/// Warns about deprecated and repeated instructions and the legacy
/// `ENV key value` form.
fn warn_instruction(
    node: &Node,
    kind: &InstructionKind,
    stage: &Stage,
    warnings: &mut Vec<Warning>,
) {
    let line = node.span.start;
    match kind {
        InstructionKind::Maintainer(_) => warnings.push(Warning {
            line,
            message: "MAINTAINER is deprecated; use LABEL org.opencontainers.image.authors=\"name\" instead".to_string(),
        }),
        InstructionKind::Cmd(_) | InstructionKind::Entrypoint(_) | InstructionKind::Healthcheck(_) => {
            let keyword = kind.keyword();
            let earlier = stage.instructions.iter().find(|i| i.kind.keyword() == keyword);
            if let Some(earlier) = earlier {
                warnings.push(Warning {
                    line,
                    message: format!(
                        "{keyword} is already set on line {} of this stage; only the last {keyword} takes effect",
                        earlier.span.start
                    ),
                });
            }
        }
        InstructionKind::Env(_) | InstructionKind::Label(_) => {
            let legacy = node.args.chunks(3).any(|triple| triple.get(2).is_some_and(String::is_empty));
            if legacy {
                let keyword = kind.keyword();
                warnings.push(Warning {
                    line,
                    message: format!("legacy `{keyword} key value` form; write `{keyword} key=value`"),
                });
            }
        }
        _ => {}
    }
}
