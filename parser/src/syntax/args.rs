//! Splitting one logical instruction line into keyword, flags and
//! arguments, by the rule of each keyword.
//!
//! Every error carries a byte offset into the logical line, which the
//! caller turns into a line and column.
//!
//! NOTE: BuildKit reads flags and the HEALTHCHECK type one byte at a time,
//! so a non-ASCII character there can come out garbled or split the word.
//! This module reads whole characters instead.

use super::json::{ExecForm, parse_exec_form};
use crate::{Node, Span};

/// A problem in one logical line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LineError {
    /// Byte offset in the logical line.
    pub offset: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl LineError {
    fn new(offset: usize, message: String, hint: String) -> Self {
        LineError {
            offset,
            message,
            hint: Some(hint),
        }
    }
}

/// Arguments of one instruction.
#[derive(Debug, Default)]
struct Arguments {
    args: Vec<String>,
    json: bool,
    inner: Option<Box<Node>>,
}

/// Builds the node for one logical line. `span` and `comments` are left
/// for the caller to fill in.
///
/// # Errors
///
/// A JSON array with a non-string element, ENV or LABEL without a value or
/// `=`, and ONBUILD wrapping ONBUILD, FROM or MAINTAINER.
pub(super) fn node_from_line(line: &str, escape: char) -> Result<Node, LineError> {
    node_from_part(line, line, escape)
}

/// Builds the node for `part`, a slice of the logical line `line`.
fn node_from_part(line: &str, part: &str, escape: char) -> Result<Node, LineError> {
    let (keyword, flags, rest) = split_command(part);
    let keyword_lower = keyword.to_lowercase();
    let context = Context {
        line,
        keyword,
        rest,
        escape,
    };
    let arguments = match keyword_lower.as_str() {
        "add" | "copy" | "volume" => maybe_json_list(&context)?,
        "arg" => Arguments {
            args: parse_words(rest, escape)
                .into_iter()
                .map(|(_, word)| word)
                .collect(),
            ..Arguments::default()
        },
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(&context, rest)?,
        "env" | "label" => name_values(&context)?,
        "expose" | "from" => whitespace_separated(rest),
        "healthcheck" => healthcheck(&context)?,
        "onbuild" => onbuild(&context)?,
        // MAINTAINER, STOPSIGNAL, USER, WORKDIR and unknown keywords take
        // the rest of the line; the typed stage rejects unknown keywords.
        _ => whole_rest(rest),
    };

    Ok(Node {
        keyword: keyword_lower,
        flags,
        args: arguments.args,
        json: arguments.json,
        heredocs: Vec::new(),
        inner: arguments.inner,
        original: part.to_string(),
        span: Span { start: 0, end: 0 },
        comments: Vec::new(),
    })
}

/// The instruction being split, for error offsets and messages.
struct Context<'a> {
    /// The whole logical line.
    line: &'a str,
    /// The keyword as written.
    keyword: &'a str,
    /// The arguments after keyword and flags, trimmed.
    rest: &'a str,
    escape: char,
}

impl Context<'_> {
    /// Byte offset of `part`, a slice of the logical line.
    fn offset_of(&self, part: &str) -> usize {
        offset_in(self.line, part)
    }

    fn keyword_upper(&self) -> String {
        self.keyword.to_uppercase()
    }
}

/// Byte offset of `part` inside `outer`, or 0 when `part` is not a slice of
/// it.
pub(super) fn offset_in(outer: &str, part: &str) -> usize {
    let start = outer.as_ptr() as usize;
    let position = part.as_ptr() as usize;
    if position >= start && position <= start + outer.len() {
        position - start
    } else {
        0
    }
}

/// Whitespace that separates the keyword from its arguments and the words
/// of FROM, EXPOSE, VOLUME, ADD and COPY. Line feeds cannot occur in a
/// logical line, and other Unicode spaces do not separate.
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// Splits a line into keyword, flags and the trimmed rest.
fn split_command(line: &str) -> (&str, Vec<String>, &str) {
    let trimmed = line.trim();
    let Some((keyword, after)) = trimmed.split_once(is_separator) else {
        return (trimmed, Vec::new(), "");
    };
    let (rest, flags) = extract_flags(after.trim_start_matches(is_separator));
    (keyword, flags, rest.trim())
}

/// Takes the leading `--name[=value]` words off `text`. Quotes in a flag
/// are removed and `\` escapes the next character, regardless of the
/// escape directive. A lone `--` ends the flags and is dropped.
fn extract_flags(text: &str) -> (&str, Vec<String>) {
    let mut flags = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if !rest.starts_with("--") {
            return (rest, flags);
        }

        let (word, quoted, after) = read_flag_word(rest);
        if word == "--" {
            return (after, flags);
        }
        if quoted || !word.is_empty() {
            flags.push(word);
        }
        rest = after;
    }
}

/// Reads one flag word and returns it without quotes, whether it had
/// quotes, and the text after it.
fn read_flag_word(text: &str) -> (String, bool, &str) {
    let mut word = String::new();
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match quote {
            None if c.is_whitespace() => return (word, quoted, text.get(at..).unwrap_or_default()),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                quoted = true;
            }
            Some(open) if c == open => quote = None,
            _ if c == '\\' => match chars.next() {
                Some((_, escaped)) => word.push(escaped),
                // A backslash at the end is dropped, and so is an open quote.
                None => quote = None,
            },
            _ => word.push(c),
        }
    }
    (word, quoted, "")
}

/// Splits `rest` into words, keeping quotes and escapes as written. Quotes
/// group whitespace into a word; the escape character keeps the next
/// character in the word, except inside single quotes. An escape at the end
/// is dropped. Returns each word with its byte offset in `rest`.
fn parse_words(rest: &str, escape: char) -> Vec<(usize, String)> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }

    let mut words = Vec::new();
    let mut word = String::new();
    let mut start = 0;
    let mut keep_empty = false;
    let mut phase = Phase::Spaces;
    let mut chars = rest.char_indices();
    while let Some((at, c)) = chars.next() {
        if phase == Phase::Spaces {
            if c.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
            start = at;
        }
        match phase {
            Phase::Word if c.is_whitespace() => {
                if keep_empty || !word.is_empty() {
                    words.push((start, std::mem::take(&mut word)));
                }
                keep_empty = false;
                phase = Phase::Spaces;
                continue;
            }
            Phase::Word => {
                if c == '\'' || c == '"' {
                    phase = Phase::Quote(c);
                    keep_empty = true;
                }
            }
            Phase::Quote(quote) => {
                if c == quote {
                    phase = Phase::Word;
                }
                if c == escape && quote == '\'' {
                    word.push(c);
                    continue;
                }
            }
            Phase::Spaces => {}
        }
        if c == escape {
            match chars.next() {
                Some((_, escaped)) => {
                    word.push(c);
                    word.push(escaped);
                }
                None if phase != Phase::Word => phase = Phase::Word,
                None => {}
            }
            continue;
        }
        word.push(c);
    }
    if phase != Phase::Spaces && (keep_empty || !word.is_empty()) {
        words.push((start, word));
    }
    words
}

fn whole_rest(rest: &str) -> Arguments {
    let args = if rest.is_empty() {
        Vec::new()
    } else {
        vec![rest.to_string()]
    };
    Arguments {
        args,
        ..Arguments::default()
    }
}

fn whitespace_separated(rest: &str) -> Arguments {
    Arguments {
        args: rest
            .split(is_separator)
            .filter(|word| !word.is_empty())
            .map(str::to_string)
            .collect(),
        ..Arguments::default()
    }
}

/// Exec form when `text` is a JSON string array, otherwise `shell`.
fn exec_form_or(
    context: &Context<'_>,
    text: &str,
    shell: impl FnOnce() -> Arguments,
) -> Result<Arguments, LineError> {
    match parse_exec_form(text) {
        ExecForm::Shell => Ok(shell()),
        ExecForm::Strings(args) => Ok(Arguments {
            args,
            json: true,
            inner: None,
        }),
        ExecForm::NonString {
            index,
            offset,
            kind,
            text: element,
        } => {
            let keyword = context.keyword_upper();
            Err(LineError::new(
                context.offset_of(text) + offset,
                format!(
                    "the exec form of {keyword} must be a JSON array of strings, but element {} is a {kind}: {element}",
                    index + 1
                ),
                format!(
                    "quote the element, for example \"{}\"",
                    element.replace('"', "\\\"")
                ),
            ))
        }
    }
}

/// RUN, CMD, ENTRYPOINT and SHELL: a JSON array, or the whole text as one
/// shell-form argument.
fn maybe_json(context: &Context<'_>, text: &str) -> Result<Arguments, LineError> {
    if text.is_empty() {
        return Ok(Arguments::default());
    }
    exec_form_or(context, text, || whole_rest(text))
}

/// ADD, COPY and VOLUME: a JSON array, or whitespace-separated words.
fn maybe_json_list(context: &Context<'_>) -> Result<Arguments, LineError> {
    exec_form_or(context, context.rest, || whitespace_separated(context.rest))
}

/// HEALTHCHECK: the first word (CMD, NONE, ...), then the rest as for CMD.
fn healthcheck(context: &Context<'_>) -> Result<Arguments, LineError> {
    let rest = context.rest;
    if rest.is_empty() {
        return Ok(Arguments::default());
    }
    let (kind, command) = match rest.split_once(char::is_whitespace) {
        Some((kind, command)) => (kind, command.trim_start()),
        None => (rest, ""),
    };
    let mut arguments = maybe_json(context, command)?;
    arguments.args.insert(0, kind.to_string());
    Ok(arguments)
}

/// ENV and LABEL: key/value/separator triples.
///
/// `KEY name value words` (no `=` in the first word) gives one pair with the
/// rest of the line as value and an empty separator. Otherwise every word
/// must be `name=value`, giving `=` as separator. Quotes and escapes stay in
/// the value.
fn name_values(context: &Context<'_>) -> Result<Arguments, LineError> {
    let rest = context.rest;
    let words = parse_words(rest, context.escape);
    let Some((_, first)) = words.first() else {
        return Ok(Arguments::default());
    };
    let keyword = context.keyword_upper();

    if !first.contains('=') {
        let Some((name, value)) = rest.split_once(is_separator) else {
            return Err(LineError::new(
                context.offset_of(rest),
                format!("{keyword} `{rest}` has no value; expected `{keyword} name=value`"),
                format!(
                    "write `{keyword} {rest}=value`, or `{keyword} {rest}=` for an empty value"
                ),
            ));
        };
        let value = value.trim_start_matches(is_separator);
        return Ok(Arguments {
            args: vec![name.to_string(), value.to_string(), String::new()],
            ..Arguments::default()
        });
    }

    let mut args = Vec::with_capacity(words.len() * 3);
    for (offset, word) in words {
        let Some((name, value)) = word.split_once('=') else {
            return Err(LineError::new(
                context.offset_of(rest) + offset,
                format!("{keyword} expects name=value pairs, but `{word}` has no `=`"),
                format!(
                    "write `{word}=value`, or quote a value that contains spaces, as in `name=\"two words\"`"
                ),
            ));
        };
        args.push(name.to_string());
        args.push(value.to_string());
        args.push("=".to_string());
    }
    Ok(Arguments {
        args,
        ..Arguments::default()
    })
}

/// ONBUILD: the wrapped instruction, split by its own rules.
fn onbuild(context: &Context<'_>) -> Result<Arguments, LineError> {
    let rest = context.rest;
    if rest.is_empty() {
        return Ok(Arguments::default());
    }
    let inner = node_from_part(context.line, rest, context.escape)?;
    let offset = context.offset_of(rest);
    let hint = "ONBUILD can wrap any instruction except ONBUILD, FROM and MAINTAINER";
    match inner.keyword.as_str() {
        "onbuild" => Err(LineError::new(
            offset,
            "chaining ONBUILD via `ONBUILD ONBUILD` is not allowed".to_string(),
            hint.to_string(),
        )),
        "from" | "maintainer" => Err(LineError::new(
            offset,
            format!(
                "{} is not allowed as an ONBUILD trigger",
                inner.keyword.to_uppercase()
            ),
            hint.to_string(),
        )),
        _ => Ok(Arguments {
            inner: Some(Box::new(inner)),
            ..Arguments::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Node {
        node_from_line(line, '\\').unwrap()
    }

    fn args(line: &str) -> Vec<String> {
        parse(line).args
    }

    fn line_error(line: &str) -> LineError {
        node_from_line(line, '\\').unwrap_err()
    }

    fn words(rest: &str, escape: char) -> Vec<String> {
        parse_words(rest, escape)
            .into_iter()
            .map(|(_, word)| word)
            .collect()
    }

    #[test]
    fn keyword_is_lower_cased() {
        assert_eq!(parse("RuN echo").keyword, "run");
        assert_eq!(parse("from alpine").keyword, "from");
    }

    #[test]
    fn keyword_alone_has_no_arguments() {
        for line in [
            "RUN",
            "CMD",
            "FROM",
            "ENV",
            "ARG",
            "COPY",
            "USER",
            "HEALTHCHECK",
            "ONBUILD",
        ] {
            let node = parse(line);
            assert!(node.args.is_empty(), "{line}");
            assert!(node.inner.is_none(), "{line}");
        }
    }

    #[test]
    fn flags_are_taken_off_the_front() {
        let node = parse("COPY --from=build --chown=1:1 /a /b");
        assert_eq!(node.flags, vec!["--from=build", "--chown=1:1"]);
        assert_eq!(node.args, vec!["/a", "/b"]);
    }

    #[test]
    fn lone_double_dash_ends_flags() {
        let node = parse("COPY --doit=true -- --foo /tmp/");
        assert_eq!(node.flags, vec!["--doit=true"]);
        assert_eq!(node.args, vec!["--foo", "/tmp/"]);
        let node = parse("COPY -- foo /tmp/");
        assert!(node.flags.is_empty());
        assert_eq!(node.args, vec!["foo", "/tmp/"]);
    }

    #[test]
    fn flags_lose_quotes_and_backslashes() {
        let node = parse(r#"RUN --mount="type=cache,target=/a b" --x='y' --z=a\ b echo"#);
        assert_eq!(
            node.flags,
            vec!["--mount=type=cache,target=/a b", "--x=y", "--z=a b"]
        );
        assert_eq!(node.args, vec!["echo"]);
    }

    #[test]
    fn flags_keep_non_ascii() {
        assert_eq!(parse("LABEL --x=é a=b").flags, vec!["--x=é"]);
    }

    #[test]
    fn flags_only_line() {
        let node = parse("CMD --doit --");
        assert_eq!(node.flags, vec!["--doit"]);
        assert!(node.args.is_empty());
    }

    #[test]
    fn single_dash_is_not_a_flag() {
        let node = parse("RUN -x --y");
        assert!(node.flags.is_empty());
        assert_eq!(node.args, vec!["-x --y"]);
    }

    #[test]
    fn shell_form_keeps_the_rest_verbatim() {
        for keyword in ["RUN", "CMD", "ENTRYPOINT", "SHELL"] {
            let node = parse(&format!("{keyword}  echo \"a  b\" \\x 'c'  "));
            assert_eq!(node.args, vec!["echo \"a  b\" \\x 'c'"], "{keyword}");
            assert!(!node.json, "{keyword}");
        }
    }

    #[test]
    fn exec_form_decodes_json() {
        for keyword in ["RUN", "CMD", "ENTRYPOINT", "SHELL", "ADD", "COPY", "VOLUME"] {
            let node = parse(&format!(r#"{keyword} [ "a b", "c\"d" ]"#));
            assert_eq!(node.args, vec!["a b", "c\"d"], "{keyword}");
            assert!(node.json, "{keyword}");
        }
    }

    #[test]
    fn empty_exec_form_has_no_arguments() {
        let node = parse("CMD []");
        assert!(node.args.is_empty());
        assert!(node.json);
    }

    #[test]
    fn invalid_json_is_shell_form() {
        let node = parse("CMD ['echo','hi']");
        assert_eq!(node.args, vec!["['echo','hi']"]);
        assert!(!node.json);
        assert_eq!(args(r#"COPY ["a", "b""#), vec!["[\"a\",", "\"b\""]);
        assert_eq!(args(r#"RUN ["a"] && b"#), vec![r#"["a"] && b"#]);
    }

    #[test]
    fn non_string_json_element_is_an_error() {
        let error = line_error(r#"CMD ["a", 1]"#);
        assert_eq!(error.offset, 10);
        assert!(error.message.contains("CMD"), "{}", error.message);
        assert!(
            error.message.contains("element 2 is a number: 1"),
            "{}",
            error.message
        );
        assert!(error.hint.as_deref().unwrap_or_default().contains("\"1\""));
        let error = node_from_line(r#"COPY [true, "b"]"#, '\\').unwrap_err();
        assert!(error.message.contains("COPY"), "{}", error.message);
        assert!(
            error.message.contains("element 1 is a boolean"),
            "{}",
            error.message
        );
    }

    #[test]
    fn word_lists_split_on_whitespace() {
        assert_eq!(
            args("FROM\talpine  AS   build"),
            vec!["alpine", "AS", "build"]
        );
        assert_eq!(args("EXPOSE 80/tcp 443"), vec!["80/tcp", "443"]);
        assert_eq!(args("VOLUME /a /b"), vec!["/a", "/b"]);
        assert_eq!(args("ADD \"a b\" /c"), vec!["\"a", "b\"", "/c"]);
        assert_eq!(args("COPY a\u{a0}b c"), vec!["a\u{a0}b", "c"]);
    }

    #[test]
    fn single_argument_keywords() {
        for keyword in ["USER", "WORKDIR", "MAINTAINER", "STOPSIGNAL"] {
            assert_eq!(
                args(&format!("{keyword} a b  c")),
                vec!["a b  c"],
                "{keyword}"
            );
        }
    }

    #[test]
    fn unknown_keyword_keeps_the_rest() {
        let node = parse("FORM --x=1 alpine  latest");
        assert_eq!(node.keyword, "form");
        assert_eq!(node.flags, vec!["--x=1"]);
        assert_eq!(node.args, vec!["alpine  latest"]);
    }

    #[test]
    fn arg_gives_one_argument_per_word() {
        assert_eq!(args("ARG foo bar=baz"), vec!["foo", "bar=baz"]);
        assert_eq!(
            args(r#"ARG abc="123 456" def"#),
            vec![r#"abc="123 456""#, "def"]
        );
    }

    #[test]
    fn env_old_form_takes_the_rest_as_value() {
        assert_eq!(args("ENV k v w"), vec!["k", "v w", ""]);
        assert_eq!(args("ENV\tPATH\t/a:$PATH"), vec!["PATH", "/a:$PATH", ""]);
        assert_eq!(
            args(r#"LABEL maintainer James "j@x""#),
            vec!["maintainer", r#"James "j@x""#, ""]
        );
    }

    #[test]
    fn env_pairs_keep_quotes_and_escapes() {
        assert_eq!(args("ENV name=value"), vec!["name", "value", "="]);
        assert_eq!(
            args(r#"ENV a="b c" d=e\ f g='h"i'"#),
            vec!["a", "\"b c\"", "=", "d", "e\\ f", "=", "g", "'h\"i'", "="]
        );
        assert_eq!(args("LABEL a=b=c"), vec!["a", "b=c", "="]);
        assert_eq!(args("ENV a= b="), vec!["a", "", "=", "b", "", "="]);
    }

    #[test]
    fn env_without_value_is_an_error() {
        let error = line_error("ENV PATH");
        assert_eq!(error.offset, 4);
        assert!(
            error.message.contains("ENV `PATH` has no value"),
            "{}",
            error.message
        );
        assert!(error.hint.is_some());
    }

    #[test]
    fn label_key_without_equals_is_an_error() {
        let error = line_error("LABEL foo");
        assert!(error.message.contains("LABEL `foo`"), "{}", error.message);
        let error = node_from_line("LABEL a=b c d=e", '\\').unwrap_err();
        assert_eq!(error.offset, 10);
        assert!(
            error.message.contains("`c` has no `=`"),
            "{}",
            error.message
        );
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            words(r#"a "b c" 'd e'"#, '\\'),
            vec!["a", "\"b c\"", "'d e'"]
        );
        assert_eq!(words(r#"a\ b c"#, '\\'), vec!["a\\ b", "c"]);
        assert_eq!(words(r#""a\"b" 'a\'b"#, '\\'), vec!["\"a\\\"b\"", "'a\\'b"]);
        assert_eq!(words(r#"a="" b"#, '\\'), vec!["a=\"\"", "b"]);
        assert_eq!(words("a\\", '\\'), vec!["a"]);
        assert_eq!(words("a`  b", '`'), vec!["a` ", "b"]);
        assert_eq!(words("\"\"", '\\'), vec!["\"\""]);
        assert_eq!(words("\"a\\", '\\'), vec!["\"a"]);
    }

    #[test]
    fn word_offsets() {
        let offsets: Vec<usize> = parse_words("  a \"b c\"  d", '\\')
            .into_iter()
            .map(|(at, _)| at)
            .collect();
        assert_eq!(offsets, vec![2, 4, 11]);
    }

    #[test]
    fn healthcheck_splits_type_and_command() {
        assert_eq!(args("HEALTHCHECK NONE"), vec!["NONE"]);
        assert_eq!(
            args("HEALTHCHECK CMD curl -f http://x/ || exit 1"),
            vec!["CMD", "curl -f http://x/ || exit 1"]
        );
        let node = parse(r#"HEALTHCHECK --interval=5s CMD ["stat", "/app"]"#);
        assert_eq!(node.flags, vec!["--interval=5s"]);
        assert_eq!(node.args, vec!["CMD", "stat", "/app"]);
        assert!(node.json);
    }

    #[test]
    fn onbuild_wraps_an_instruction() {
        let node = parse(r#"ONBUILD RUN ["echo", "test"]"#);
        assert!(node.args.is_empty());
        let inner = node.inner.expect("inner node");
        assert_eq!(inner.keyword, "run");
        assert_eq!(inner.args, vec!["echo", "test"]);
        assert!(inner.json);
        assert_eq!(inner.original, r#"RUN ["echo", "test"]"#);

        let node = parse("onbuild copy --from=a . /");
        let inner = node.inner.expect("inner node");
        assert_eq!(inner.flags, vec!["--from=a"]);
        assert_eq!(inner.args, vec![".", "/"]);
    }

    #[test]
    fn onbuild_rejects_onbuild_from_and_maintainer() {
        let error = line_error("ONBUILD ONBUILD RUN x");
        assert_eq!(error.offset, 8);
        assert!(
            error.message.contains("ONBUILD ONBUILD"),
            "{}",
            error.message
        );
        assert!(
            line_error("ONBUILD FROM alpine")
                .message
                .contains("FROM is not allowed")
        );
        assert!(
            line_error("ONBUILD maintainer me")
                .message
                .contains("MAINTAINER is not allowed")
        );
    }

    #[test]
    fn onbuild_passes_inner_errors_on() {
        let error = line_error("ONBUILD ENV PATH");
        assert_eq!(error.offset, 12);
    }

    #[test]
    fn original_is_the_line() {
        assert_eq!(parse("RUN  a ").original, "RUN  a ");
    }
}
