//! Heredoc openers (`<<EOF`, `<<-EOF`, `<<"EOF"`) on RUN, COPY and ADD
//! lines.
//!
//! BuildKit finds openers in two steps, and this module does the same. The
//! line is first split into shell words with quotes and escapes kept, so
//! `"<<EOF"` stays one quoted word and is no opener. A word is an opener
//! when it reads `[digits]<<[-]NAME` with no `<` in `NAME` (so `<<<EOF` and
//! a lone `<<` are not). `NAME` is then read as one shell word: its quotes
//! are removed, and any quote in it turns off expansion of the body.
//! Variables are never expanded here: `<<$END` waits for a line `$END`.
//!
//! If the line has an unterminated quote or `${`, BuildKit's word splitting
//! fails and the line has no heredocs at all.

use std::iter::Peekable;
use std::str::CharIndices;

use nom::bytes::complete::{tag, take_while};
use nom::character::complete::{char, digit0};
use nom::combinator::{eof, opt};
use nom::{IResult, Parser};

/// The escape character of the heredoc word splitter. BuildKit uses `\`
/// here even when the file sets `# escape=``.
const ESCAPE: char = '\\';

/// A heredoc opener found on an instruction line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Opener {
    /// Delimiter with quotes removed.
    pub name: String,
    /// Whether the body is subject to variable expansion (no quotes in the
    /// delimiter).
    pub expand: bool,
    /// Whether the opener was `<<-`, which strips leading tabs.
    pub chomp: bool,
    /// Byte offset of the opener word in the line.
    pub offset: usize,
}

/// A heredoc opener whose delimiter cannot be read as one shell word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OpenerError {
    /// Byte offset of the opener word in the line.
    pub offset: usize,
    /// The opener word as written.
    pub word: String,
    /// Reason the delimiter is invalid.
    pub reason: String,
}

/// Returns the heredoc openers of an instruction line, in order.
///
/// # Errors
///
/// An opener word whose delimiter is not valid shell syntax, such as an
/// unclosed `${`.
pub(super) fn find_openers(line: &str) -> Result<Vec<Opener>, OpenerError> {
    let Ok(words) = Lexer::new(line, true, true).split() else {
        return Ok(Vec::new());
    };

    let mut openers = Vec::new();
    for (offset, word) in words {
        let parsed = parse_opener(&word).map_err(|reason| OpenerError {
            offset,
            word: word.clone(),
            reason,
        })?;
        if let Some((name, expand, chomp)) = parsed {
            openers.push(Opener {
                name,
                expand,
                chomp,
                offset,
            });
        }
    }
    Ok(openers)
}

/// Splits an opener word into its optional file descriptor, the `-` of
/// `<<-` and the raw delimiter.
fn opener_parts(word: &str) -> IResult<&str, (&str, Option<char>, &str)> {
    let (rest, (fd, _, dash, name, _)) = (
        digit0,
        tag("<<"),
        opt(char('-')),
        take_while(|c| c != '<'),
        eof,
    )
        .parse(word)?;
    Ok((rest, (fd, dash, name)))
}

/// Reads `word` as a heredoc opener and returns its delimiter, whether the
/// body expands, and whether it is `<<-`; `None` when it is no opener.
fn parse_opener(word: &str) -> Result<Option<(String, bool, bool)>, String> {
    let Ok((_, (_, dash, raw_name))) = opener_parts(word) else {
        return Ok(None);
    };
    if raw_name.is_empty() {
        return Ok(None);
    }

    let unquoted = Lexer::new(raw_name, false, false).split()?;
    let [(_, name)] = unquoted.as_slice() else {
        return Ok(None);
    };
    let quoted = Lexer::new(raw_name, true, false).split()?;
    let [(_, quoted_name)] = quoted.as_slice() else {
        return Err(format!(
            "the delimiter `{raw_name}` splits into a different number of words with quotes kept"
        ));
    };

    let expand = count_quotes(name) == count_quotes(quoted_name);
    Ok(Some((name.clone(), expand, dash.is_some())))
}

fn count_quotes(text: &str) -> usize {
    text.chars().filter(|c| *c == '\'' || *c == '"').count()
}

/// Words collected by the lexer, each with the byte offset where it starts.
#[derive(Debug, Default)]
struct Words {
    done: Vec<(usize, String)>,
    current: String,
    start: usize,
    in_word: bool,
}

impl Words {
    /// Adds a character that separates words when it is whitespace.
    fn add_char(&mut self, c: char, at: usize) {
        if c.is_whitespace() {
            // An empty quoted string starts a word that whitespace does not
            // end, as in BuildKit.
            if self.in_word && !self.current.is_empty() {
                self.finish_word();
            }
        } else {
            self.add_raw_char(c, at);
        }
    }

    fn add_raw_char(&mut self, c: char, at: usize) {
        self.mark_start(at);
        self.current.push(c);
        self.in_word = true;
    }

    /// Adds text that whitespace inside splits, such as a variable.
    fn add_string(&mut self, text: &str, at: usize) {
        for c in text.chars() {
            self.add_char(c, at);
        }
    }

    /// Adds text that stays in the current word, such as a quoted string.
    fn add_raw_string(&mut self, text: &str, at: usize) {
        self.mark_start(at);
        self.current.push_str(text);
        self.in_word = true;
    }

    fn mark_start(&mut self, at: usize) {
        if self.current.is_empty() {
            self.start = at;
        }
    }

    fn finish_word(&mut self) {
        let word = std::mem::take(&mut self.current);
        self.done.push((self.start, word));
        self.in_word = false;
    }

    fn finish(mut self) -> Vec<(usize, String)> {
        if !self.current.is_empty() {
            self.finish_word();
        }
        self.done
    }
}

/// A shell word splitter with an empty environment in which unset
/// variables stay as written, like BuildKit's lexer with `SkipUnsetEnv`.
struct Lexer<'a> {
    chars: Peekable<CharIndices<'a>>,
    /// Keep quote characters in the output.
    raw_quotes: bool,
    /// Keep escape characters in the output.
    raw_escapes: bool,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str, raw_quotes: bool, raw_escapes: bool) -> Self {
        Lexer {
            chars: text.char_indices().peekable(),
            raw_quotes,
            raw_escapes,
        }
    }

    fn split(mut self) -> Result<Vec<(usize, String)>, String> {
        let raw_escapes = self.raw_escapes;
        let (_, words) = self.process(None, raw_escapes)?;
        Ok(words.finish())
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|(_, c)| *c)
    }

    /// Reads up to `stop` (or the end for `None`) and returns the text read
    /// and its words.
    fn process(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Words), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(&(at, c)) = self.chars.peek() {
            if Some(c) == stop {
                self.chars.next();
                return Ok((result, words));
            }
            match c {
                '\'' => {
                    let quoted = self.single_quote()?;
                    result.push_str(&quoted);
                    words.add_raw_string(&quoted, at);
                }
                '"' => {
                    let quoted = self.double_quote(raw_escapes)?;
                    result.push_str(&quoted);
                    words.add_raw_string(&quoted, at);
                }
                '$' => {
                    let variable = self.dollar()?;
                    result.push_str(&variable);
                    words.add_string(&variable, at);
                }
                _ => {
                    self.chars.next();
                    if c == ESCAPE {
                        if raw_escapes {
                            words.add_raw_char(c, at);
                            result.push(c);
                        }
                        let Some((_, escaped)) = self.chars.next() else {
                            break;
                        };
                        words.add_raw_char(escaped, at);
                        result.push(escaped);
                    } else {
                        words.add_char(c, at);
                        result.push(c);
                    }
                }
            }
        }
        match stop {
            Some(stop) => Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )),
            None => Ok((result, words)),
        }
    }

    fn single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        self.chars.next();
        if self.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.chars.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_string(),
                    );
                }
                Some((_, '\'')) => {
                    if self.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some((_, c)) => result.push(c),
            }
        }
    }

    fn double_quote(&mut self, raw_escapes: bool) -> Result<String, String> {
        let mut result = String::new();
        self.chars.next();
        if self.raw_quotes {
            result.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_string(),
                    );
                }
                Some('"') => {
                    self.chars.next();
                    if self.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => result.push_str(&self.dollar()?),
                Some(_) => {
                    let Some((_, mut c)) = self.chars.next() else {
                        continue;
                    };
                    if c == ESCAPE {
                        if raw_escapes {
                            result.push(c);
                        }
                        match self.peek() {
                            // An escape at the end is dropped; the missing
                            // closing quote is reported on the next turn.
                            None => continue,
                            Some('"' | '$' | ESCAPE) => {
                                if let Some((_, escaped)) = self.chars.next() {
                                    c = escaped;
                                }
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(c);
                }
            }
        }
    }

    /// Reads `$name` or `${...}` and returns it as written, because every
    /// variable is unset.
    fn dollar(&mut self) -> Result<String, String> {
        self.chars.next();
        if self.peek() != Some('{') {
            return Ok(format!("${}", self.name()));
        }

        self.chars.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_string()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_string()),
            Some(_) => {}
        }
        let name = self.name();
        let Some((_, operator)) = self.chars.next() else {
            return Err("unsupported modifier in substitution".to_string());
        };
        match operator {
            '}' => Ok(format!("${{{name}}}")),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut modifier = operator.to_string();
                let mut kind = operator;
                if operator == ':' {
                    let Some((_, next)) = self.chars.next() else {
                        return Err("syntax error: missing '}'".to_string());
                    };
                    modifier.push(next);
                    kind = next;
                }
                let raw_escapes = kind == '#' || kind == '%';
                if operator == ':' && raw_escapes {
                    return Err(format!("unsupported modifier ({modifier}) in substitution"));
                }
                let word = self.nested(Some('}'), raw_escapes, "syntax error: missing '}'")?;
                Ok(format!("${{{name}{modifier}{word}}}"))
            }
            '/' => {
                if self.peek() == Some('/') {
                    self.chars.next();
                }
                let pattern = self.nested(Some('/'), true, "syntax error: missing '/' in ${}")?;
                let replacement = self.nested(Some('}'), true, "syntax error: missing '}'")?;
                Ok(format!("${{{name}/{pattern}/{replacement}}}"))
            }
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }

    /// Reads a nested word up to `stop`; at the end of the text the error
    /// is `at_end`.
    fn nested(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        at_end: &str,
    ) -> Result<String, String> {
        match self.process(stop, raw_escapes) {
            Ok((text, _)) => Ok(text),
            Err(_) if self.peek().is_none() => Err(at_end.to_string()),
            Err(error) => Err(error),
        }
    }

    /// Reads a variable name: digits, one special parameter character, or
    /// letters, digits and underscores.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_numeric() {
                while let Some(digit) = self.peek().filter(|d| d.is_numeric()) {
                    self.chars.next();
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.chars.next();
                name.push(c);
                return name;
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            self.chars.next();
            name.push(c);
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<String> {
        find_openers(line)
            .unwrap()
            .into_iter()
            .map(|opener| opener.name)
            .collect()
    }

    fn opener(word: &str) -> Option<(String, bool, bool)> {
        parse_opener(word).unwrap()
    }

    #[test]
    fn plain_opener() {
        assert_eq!(opener("<<EOF"), Some(("EOF".to_string(), true, false)));
    }

    #[test]
    fn chomp_opener() {
        assert_eq!(opener("<<-EOF"), Some(("EOF".to_string(), true, true)));
    }

    #[test]
    fn quoted_openers_do_not_expand() {
        assert_eq!(opener("<<'EOF'"), Some(("EOF".to_string(), false, false)));
        assert_eq!(opener("<<\"EOF\""), Some(("EOF".to_string(), false, false)));
        assert_eq!(opener("<<-'EOF'"), Some(("EOF".to_string(), false, true)));
        assert_eq!(opener("<<E\"O\"F"), Some(("EOF".to_string(), false, false)));
    }

    #[test]
    fn file_descriptor_prefix_is_allowed() {
        assert_eq!(opener("3<<EOF"), Some(("EOF".to_string(), true, false)));
    }

    #[test]
    fn variable_delimiter_is_kept_as_written() {
        assert_eq!(opener("<<$END"), Some(("$END".to_string(), true, false)));
        assert_eq!(
            opener("<<${END}"),
            Some(("${END}".to_string(), true, false))
        );
        assert_eq!(names("RUN cat <<$END"), vec!["$END"]);
    }

    #[test]
    fn non_openers() {
        for word in [
            "", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "a<<EOF", "<<EOF<", "<<''",
        ] {
            assert_eq!(opener(word), None, "{word:?}");
        }
    }

    #[test]
    fn unterminated_quote_in_delimiter_is_an_error() {
        for word in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_opener(word).is_err(), "{word:?}");
        }
    }

    #[test]
    fn openers_on_a_line() {
        assert_eq!(names("RUN <<EOF"), vec!["EOF"]);
        assert_eq!(names("RUN 4<<EOF"), vec!["EOF"]);
        assert_eq!(names("COPY <<FILE1 <<FILE2 /dest"), vec!["FILE1", "FILE2"]);
        assert_eq!(
            names("RUN --mount=type=cache,target=/x <<MOUNT"),
            vec!["MOUNT"]
        );
        assert_eq!(names("RUN python3 <<'PY' > out"), vec!["PY"]);
    }

    #[test]
    fn quoted_or_split_openers_are_not_heredocs() {
        assert!(names("RUN '<<EOF'").is_empty());
        assert!(names("RUN \"<<EOF\"").is_empty());
        assert!(names("RUN echo \\<<EOF").is_empty());
        assert!(names("RUN cat << EOF").is_empty());
        assert!(names("RUN cat <<<EOF").is_empty());
    }

    #[test]
    fn unterminated_quote_on_line_means_no_heredocs() {
        assert!(names("RUN cat <<EOF \"unclosed").is_empty());
        assert!(names("RUN cat <<EOF ${unclosed").is_empty());
    }

    #[test]
    fn opener_offsets_point_at_the_word() {
        let openers = find_openers("COPY <<A  <<-'B' /").unwrap();
        assert_eq!(openers.len(), 2);
        assert_eq!(openers[0].offset, 5);
        assert_eq!(openers[1].offset, 10);
        assert!(openers[1].chomp);
        assert!(!openers[1].expand);
    }

    #[test]
    fn delimiter_that_splits_inside_braces_is_an_error() {
        // The line splitter splits `${X:-a b}` at the space, which leaves
        // an unclosed `${` in the opener word, as in BuildKit.
        let error = find_openers("RUN cat <<${X:-a b}").unwrap_err();
        assert_eq!(error.word, "<<${X:-a");
        assert!(error.reason.contains("missing '}'"), "{}", error.reason);
    }

    #[test]
    fn lexer_keeps_or_removes_quotes_and_escapes() {
        let split = |text, quotes, escapes| -> Vec<String> {
            Lexer::new(text, quotes, escapes)
                .split()
                .unwrap()
                .into_iter()
                .map(|(_, word)| word)
                .collect()
        };
        assert_eq!(
            split(r#"a "b c" 'd\e'"#, true, true),
            vec!["a", "\"b c\"", "'d\\e'"]
        );
        assert_eq!(
            split(r#"a "b c" 'd\e'"#, false, false),
            vec!["a", "b c", "d\\e"]
        );
        assert_eq!(split(r#"x\ y "q\"r""#, false, false), vec!["x y", "q\"r"]);
        assert_eq!(split(r#"x\ y"#, true, true), vec!["x\\ y"]);
        assert_eq!(
            split("$a ${b:-c} $$ $", true, true),
            vec!["$a", "${b:-c}", "$$", "$"]
        );
    }

    #[test]
    fn lexer_reports_substitution_errors() {
        for text in ["${", "${}", "${:x}", "${a", "${a:#b}", "${a!}", "${a:-b"] {
            assert!(Lexer::new(text, true, true).split().is_err(), "{text:?}");
        }
    }
}
