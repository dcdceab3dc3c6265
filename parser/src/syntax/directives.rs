//! Parser directives: `# syntax=`, `# escape=` and `# check=` comments at
//! the top of a Dockerfile.
//!
//! Directives are read only from the first lines. The first line that is not
//! a known directive (an ordinary comment, a blank line or an instruction)
//! ends them, and any directive after that is a plain comment.

use nom::bytes::complete::take_while;
use nom::character::complete::{char, satisfy};
use nom::combinator::recognize;
use nom::{IResult, Parser};
use serde::Serialize;

use crate::ParseError;

/// The parser directives of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// Value of `# syntax=`, the frontend image that the file requests.
    pub syntax: Option<String>,
    /// Escape character, `\` unless `# escape=` sets a backtick. It escapes
    /// characters in words and, at the end of a line, continues the line.
    pub escape: char,
    /// Value of `# check=`, the build-check configuration.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// Reads directives from the first lines of a file, one line at a time.
#[derive(Debug, Default)]
pub(super) struct DirectiveReader {
    directives: Directives,
    /// Names seen so far, with the line of each.
    seen: Vec<(&'static str, usize)>,
    done: bool,
}

impl DirectiveReader {
    /// Reads `line` (1-based number `number`) as a possible directive and
    /// returns whether it was one.
    ///
    /// `line` has its leading whitespace removed; `indent` is the number of
    /// characters removed, used for error columns. The first line that is
    /// not a directive ends the directives for good.
    ///
    /// # Errors
    ///
    /// A directive given a second time, and an escape value other than `\`
    /// or a backtick.
    pub(super) fn read_line(
        &mut self,
        line: &str,
        number: usize,
        indent: usize,
    ) -> Result<bool, ParseError> {
        if self.done {
            return Ok(false);
        }
        let Some((name, value, value_offset)) = split_directive(line) else {
            self.done = true;
            return Ok(false);
        };
        let name = match name.to_ascii_lowercase().as_str() {
            "syntax" => "syntax",
            "escape" => "escape",
            "check" => "check",
            _ => {
                self.done = true;
                return Ok(false);
            }
        };
        let column = indent + line.get(..value_offset).unwrap_or_default().chars().count() + 1;

        if let Some((_, first)) = self.seen.iter().find(|(seen, _)| *seen == name) {
            return Err(ParseError::new(
                number,
                indent + 1,
                format!("the `{name}` parser directive is given twice (first on line {first})"),
            )
            .with_hint(format!("keep only one `# {name}=` line")));
        }
        self.seen.push((name, number));

        match name {
            "syntax" => self.directives.syntax = Some(value.to_string()),
            "check" => self.directives.check = Some(value.to_string()),
            _ => self.directives.escape = parse_escape(value, number, column)?,
        }
        Ok(true)
    }

    /// Returns the directives read so far.
    pub(super) fn directives(&self) -> &Directives {
        &self.directives
    }
}

fn parse_escape(value: &str, line: usize, column: usize) -> Result<char, ParseError> {
    match value {
        "\\" => Ok('\\'),
        "`" => Ok('`'),
        _ => Err(ParseError::new(
            line,
            column,
            format!("invalid escape directive value `{value}`: expected `\\` or a backtick (`)"),
        )
        .with_hint("write `# escape=\\` or `# escape=``")),
    }
}

/// Whitespace as Go's regular expressions define `\s`.
fn is_regex_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{c}' | '\r')
}

/// Parses a directive name: an ASCII letter, then ASCII letters and digits.
fn name(input: &str) -> IResult<&str, &str> {
    recognize((
        satisfy(|c| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric()),
    ))
    .parse(input)
}

/// Splits `# name = value` into the name, the value and the value's byte
/// offset in `line`.
///
/// This follows BuildKit's pattern `#\s*name\s*=\s*(.+?)\s*$`. Unicode
/// whitespace may follow the `#`. A value made only of whitespace is the
/// last whitespace character, because the regular expression needs at least
/// one character in the value.
fn split_directive(line: &str) -> Option<(&str, &str, usize)> {
    let after_hash = line.strip_prefix('#')?.trim_start();
    let (after_name, name) = name(after_hash).ok()?;
    let (after_equals, _) = char::<_, nom::error::Error<&str>>('=')
        .parse(after_name.trim_start_matches(is_regex_space))
        .ok()?;

    let trimmed = after_equals.trim_start_matches(is_regex_space);
    if trimmed.is_empty() {
        let last = after_equals.chars().next_back()?;
        let offset = line.len() - last.len_utf8();
        return Some((name, line.get(offset..)?, offset));
    }
    let offset = line.len() - trimmed.len();
    Some((name, trimmed.trim_end_matches(is_regex_space), offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(lines: &[&str]) -> Result<(Directives, Vec<bool>), ParseError> {
        let mut reader = DirectiveReader::default();
        let mut found = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            found.push(reader.read_line(line, i + 1, 0)?);
        }
        Ok((reader.directives().clone(), found))
    }

    #[test]
    fn default_escape_is_backslash() {
        assert_eq!(Directives::default().escape, '\\');
        assert_eq!(Directives::default().syntax, None);
        assert_eq!(Directives::default().check, None);
    }

    #[test]
    fn each_directive_is_read() {
        let (directives, found) = read_all(&[
            "# syntax=docker/dockerfile:1",
            "# escape=`",
            "# check=skip=JSONArgsRecommended",
        ])
        .unwrap();
        assert_eq!(directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(directives.escape, '`');
        assert_eq!(
            directives.check.as_deref(),
            Some("skip=JSONArgsRecommended")
        );
        assert_eq!(found, vec![true, true, true]);
    }

    #[test]
    fn names_ignore_case_and_spaces() {
        let (directives, _) =
            read_all(&["#ESCAPE = `", "#  Syntax\t=\tdocker/dockerfile:1  "]).unwrap();
        assert_eq!(directives.escape, '`');
        assert_eq!(directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    }

    #[test]
    fn ordinary_comment_ends_directives() {
        let (directives, found) = read_all(&["# a comment", "# escape=`"]).unwrap();
        assert_eq!(directives.escape, '\\');
        assert_eq!(found, vec![false, false]);
    }

    #[test]
    fn blank_line_ends_directives() {
        let (directives, found) = read_all(&["# syntax=a", "", "# escape=`"]).unwrap();
        assert_eq!(directives.syntax.as_deref(), Some("a"));
        assert_eq!(directives.escape, '\\');
        assert_eq!(found, vec![true, false, false]);
    }

    #[test]
    fn unknown_directive_ends_directives() {
        let (directives, found) = read_all(&["# foo=bar", "# escape=`"]).unwrap();
        assert_eq!(directives.escape, '\\');
        assert_eq!(found, vec![false, false]);
    }

    #[test]
    fn directive_seen_twice_is_an_error() {
        let error = read_all(&["# syntax=a", "# SYNTAX=b"]).unwrap_err();
        assert_eq!(error.line, 2);
        assert_eq!(error.column, 1);
        assert!(error.message.contains("`syntax`"), "{}", error.message);
        assert!(error.message.contains("line 1"), "{}", error.message);
    }

    #[test]
    fn invalid_escape_is_an_error_naming_the_value() {
        let error = read_all(&["# escape=x"]).unwrap_err();
        assert_eq!(error.line, 1);
        assert_eq!(error.column, 10);
        assert!(error.message.contains("`x`"), "{}", error.message);
        assert!(error.hint.is_some());
    }

    #[test]
    fn whitespace_only_value_is_one_character() {
        assert_eq!(split_directive("# escape=  "), Some(("escape", " ", 10)));
        let error = read_all(&["# escape=  "]).unwrap_err();
        assert!(error.message.contains("` `"), "{}", error.message);
    }

    #[test]
    fn split_directive_forms() {
        assert_eq!(split_directive("#escape=\\"), Some(("escape", "\\", 8)));
        assert_eq!(split_directive("# a1 = b c "), Some(("a1", "b c", 7)));
        assert_eq!(split_directive("# escape="), None);
        assert_eq!(split_directive("# 1a=b"), None);
        assert_eq!(split_directive("# a-b=c"), None);
        assert_eq!(split_directive("escape=`"), None);
        assert_eq!(split_directive(""), None);
    }
}
