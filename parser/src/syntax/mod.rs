//! First parsing stage: Dockerfile text to a list of [`Node`]s with line
//! spans, parser directives, line continuations and heredocs.
//!
//! The rules follow BuildKit's Dockerfile parser
//! (`frontend/dockerfile/parser` in github.com/moby/buildkit). A file is
//! read line by line. Comment and blank lines between instructions are
//! skipped. A line that ends with the escape character continues on the
//! next line, and comment and blank lines inside a continuation are
//! dropped. Each logical line becomes one node, split by the rule of its
//! keyword (see [`Node::args`]). RUN, COPY and ADD in shell form may open
//! heredocs, whose bodies follow the instruction line in order.

mod args;
mod directives;
mod heredoc;
mod json;

use serde::Serialize;

use self::directives::DirectiveReader;
pub use self::directives::Directives;
use self::heredoc::Opener;
use crate::{Heredoc, Node, ParseError, Span, Warning};

/// A Dockerfile split into instruction nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyntaxTree {
    /// Parser directives from the top of the file.
    pub directives: Directives,
    /// Instructions in file order. There is at least one.
    pub nodes: Vec<Node>,
    /// Input that parses but is probably a mistake.
    pub warnings: Vec<Warning>,
    /// From the first line of the first instruction to the last line of the
    /// last one.
    pub span: Span,
}

/// Parses Dockerfile text into nodes. Never panics.
///
/// A UTF-8 byte order mark at the start is dropped, and lines may end with
/// LF or CRLF. Heredoc bodies keep their lines exactly as written, CR
/// included, as BuildKit keeps them.
///
/// # Errors
///
/// A file with no instruction, an invalid or repeated parser directive,
/// ENV or LABEL without a value, an exec-form JSON array with a non-string
/// element, ONBUILD wrapping ONBUILD, FROM or MAINTAINER, an invalid heredoc
/// delimiter and a heredoc without its closing line. The error carries the
/// line and column of the offending text.
pub fn parse(text: &str) -> Result<SyntaxTree, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .split_inclusive('\n')
        .enumerate()
        .map(|(index, raw)| Line {
            number: index + 1,
            raw,
            text: raw.trim_end_matches(['\r', '\n']),
        });

    let mut directives = DirectiveReader::default();
    let mut nodes: Vec<Node> = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut last_line = 0;

    while let Some(line) = lines.next() {
        last_line = line.number;
        let content = line.text.trim_start();
        let indent = line.text.chars().count() - content.chars().count();

        // Comments collect until the next instruction. An empty `#` line
        // clears them, and directive lines are not kept.
        let comment = content.strip_prefix('#').map(str::trim);
        match comment {
            Some("") => comments.clear(),
            Some(comment) => comments.push(comment.to_string()),
            None => {}
        }
        if directives.read_line(content, line.number, indent)? {
            comments.pop();
        }
        let content = if comment.is_some() { "" } else { content };

        let escape = directives.directives().escape;
        let (first, continues) = trim_continuation(content, escape);
        if first.is_empty() && !continues {
            continue;
        }

        let mut logical = LogicalLine::new(first, line.number, indent + 1);
        let mut end = line.number;
        if continues {
            let joined = join_continuations(&mut lines, &mut logical, escape);
            end = joined.end;
            if let Some(empty_line) = joined.first_empty_line {
                warnings.push(Warning {
                    line: empty_line,
                    message: format!(
                        "empty line inside the continued instruction `{}`; remove it, because empty continuation lines are deprecated and BuildKit will reject them",
                        logical.text
                    ),
                });
            }
        }
        last_line = end;

        // NOTE: BuildKit keeps a node with an empty keyword when escapes
        // join only blank text, as with `\` alone on the last line. Such a
        // line gives no node here.
        if logical.text.trim().is_empty() {
            continue;
        }

        let mut node =
            args::node_from_line(&logical.text, escape).map_err(|error| logical.error(error))?;
        if can_contain_heredoc(&node) && logical.text.contains("<<") {
            if let Some(body_end) = read_heredocs(&mut lines, &mut node, &logical)? {
                end = body_end;
                last_line = body_end;
            }
        }

        node.span = Span {
            start: line.number,
            end,
        };
        node.comments = std::mem::take(&mut comments);
        if let Some(inner) = node.inner.as_deref_mut() {
            inner.span = node.span;
            inner.heredocs.clone_from(&node.heredocs);
        }
        nodes.push(node);
    }

    let (Some(first), Some(last)) = (nodes.first(), nodes.last()) else {
        return Err(ParseError::new(last_line.max(1), 1, "file with no instructions")
            .with_hint("a Dockerfile needs at least one instruction, usually starting with FROM, such as `FROM alpine`"));
    };
    let span = Span {
        start: first.span.start,
        end: last.span.end,
    };
    Ok(SyntaxTree {
        directives: directives.directives().clone(),
        nodes,
        warnings,
        span,
    })
}

/// One physical line of the file.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    /// 1-based line number.
    number: usize,
    /// The line with its line ending.
    raw: &'a str,
    /// The line without trailing CR and LF characters.
    text: &'a str,
}

/// Removes a line-continuation escape from the end of `line` and returns
/// the rest and whether the line continues.
///
/// The escape character continues the line when only spaces and tabs
/// follow it and it is not itself escaped: `a \\` ends the line.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let Some(before) = line.trim_end_matches([' ', '\t']).strip_suffix(escape) else {
        return (line, false);
    };
    if before.ends_with(escape) {
        return (line, false);
    }
    (before, true)
}

/// Result of joining continuation lines.
#[derive(Debug, Clone, Copy)]
struct Joined {
    /// Last line that the instruction occupies.
    end: usize,
    /// First blank line inside the continuation, which BuildKit warns about.
    first_empty_line: Option<usize>,
}

/// Appends continuation lines to `logical` until a line does not end with
/// the escape character or the file ends. Comment and blank lines in between
/// are dropped.
fn join_continuations<'a>(
    lines: &mut impl Iterator<Item = Line<'a>>,
    logical: &mut LogicalLine,
    escape: char,
) -> Joined {
    let mut joined = Joined {
        end: logical.segments.first().map_or(0, |segment| segment.line),
        first_empty_line: None,
    };
    for next in lines {
        joined.end = next.number;
        let stripped = next.text.trim_start();
        if stripped.starts_with('#') {
            continue;
        }
        if stripped.is_empty() {
            joined.first_empty_line.get_or_insert(next.number);
            continue;
        }

        let (part, continues) = trim_continuation(next.text, escape);
        logical.push(part, next.number, 1);
        if !continues {
            break;
        }
    }
    joined
}

/// Reads the bodies of the heredocs that the node's line opens, in order,
/// and returns the last line read, or `None` when the line opens none.
fn read_heredocs<'a>(
    lines: &mut impl Iterator<Item = Line<'a>>,
    node: &mut Node,
    logical: &LogicalLine,
) -> Result<Option<usize>, ParseError> {
    let openers = heredoc::find_openers(&logical.text).map_err(|error| {
        let (line, column) = logical.position(error.offset);
        ParseError::new(
            line,
            column,
            format!(
                "invalid heredoc delimiter in `{}`: {}",
                error.word, error.reason
            ),
        )
        .with_hint("write the delimiter as one plain or quoted word, such as <<EOF or <<'EOF'")
    })?;

    let mut end = None;
    for opener in openers {
        let (heredoc, body_end) = read_heredoc(lines, &opener, logical)?;
        node.heredocs.push(heredoc);
        end = Some(body_end);
    }
    Ok(end)
}

/// Returns whether the node may open heredocs: RUN, COPY and ADD in shell
/// form, also when wrapped in ONBUILD.
fn can_contain_heredoc(node: &Node) -> bool {
    let target = match (&node.inner, node.keyword.as_str()) {
        (Some(inner), "onbuild") => inner,
        _ => node,
    };
    matches!(target.keyword.as_str(), "run" | "copy" | "add") && !target.json
}

/// Reads the body of one heredoc up to its delimiter line and returns the
/// heredoc with the number of the delimiter line.
fn read_heredoc<'a>(
    lines: &mut impl Iterator<Item = Line<'a>>,
    opener: &Opener,
    logical: &LogicalLine,
) -> Result<(Heredoc, usize), ParseError> {
    let mut content = String::new();
    for line in lines {
        let mut candidate = line.text;
        if opener.chomp {
            candidate = candidate.trim_start_matches('\t');
        }
        if candidate == opener.name {
            let heredoc = Heredoc {
                name: opener.name.clone(),
                content,
                expand: opener.expand,
                chomp: opener.chomp,
            };
            return Ok((heredoc, line.number));
        }
        if opener.chomp {
            content.push_str(line.raw.trim_start_matches('\t'));
        } else {
            content.push_str(line.raw);
        }
    }

    let (line, column) = logical.position(opener.offset);
    let tabs = if opener.chomp {
        " (leading tabs are allowed after <<-)"
    } else {
        ""
    };
    Err(ParseError::new(
        line,
        column,
        format!(
            "heredoc `{}` opened on line {line} is not terminated: the file ends before a line that contains only `{}`",
            opener.name, opener.name
        ),
    )
    .with_hint(format!(
        "end the heredoc with a line that contains only `{}`{tabs}",
        opener.name
    )))
}

/// An instruction with its continuation lines joined, and where each part
/// came from.
#[derive(Debug)]
struct LogicalLine {
    text: String,
    /// Start of each part, in order of `offset`.
    segments: Vec<Segment>,
}

/// Start position of one part of a logical line in the file.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Byte offset in the logical line.
    offset: usize,
    /// 1-based line number.
    line: usize,
    /// 1-based column, in characters, of the part's first character.
    column: usize,
}

impl LogicalLine {
    fn new(first: &str, line: usize, column: usize) -> Self {
        let mut logical = LogicalLine {
            text: String::new(),
            segments: Vec::new(),
        };
        logical.push(first, line, column);
        logical
    }

    fn push(&mut self, part: &str, line: usize, column: usize) {
        self.segments.push(Segment {
            offset: self.text.len(),
            line,
            column,
        });
        self.text.push_str(part);
    }

    /// Returns the line and column of a byte offset in the logical line.
    fn position(&self, offset: usize) -> (usize, usize) {
        let segment = self
            .segments
            .iter()
            .rev()
            .find(|segment| segment.offset <= offset)
            .or(self.segments.first());
        let Some(segment) = segment else {
            return (1, 1);
        };
        let before = self.text.get(segment.offset..offset).unwrap_or_default();
        (segment.line, segment.column + before.chars().count())
    }

    fn error(&self, error: args::LineError) -> ParseError {
        let (line, column) = self.position(error.offset);
        let parse_error = ParseError::new(line, column, error.message);
        match error.hint {
            Some(hint) => parse_error.with_hint(hint),
            None => parse_error,
        }
    }
}

#[cfg(test)]
mod tests;
