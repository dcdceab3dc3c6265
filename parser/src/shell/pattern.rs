//! Shell glob patterns of the `${name#pattern}`, `${name%pattern}` and
//! `${name/pattern/string}` expansions.
//!
//! A pattern is compiled to a list of tokens and matched with the
//! preference order of a backtracking regular-expression engine, because
//! BuildKit (`frontend/dockerfile/shell/lex.go`) turns these patterns into Go
//! regular expressions and takes the leftmost-first match. A lazy `*` tries
//! the shortest run first (`#`, `%`) and a greedy `*` the longest (`##`,
//! `%%`, `/`, `//`). As in those regular expressions, `*` and `?` never
//! match a newline.

/// A pattern that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The escape character precedes a character that needs no escaping.
    #[error(
        "invalid escape `{escape}{character}`: only `*`, `?`, `[`, `]`, `{escape}`, `}}` and `/` can be escaped; drop the `{escape}`"
    )]
    InvalidEscape {
        /// The escape character of the lexer.
        escape: char,
        /// The character after it.
        character: char,
    },
    /// The pattern ends with an escape character that escapes nothing.
    #[error(
        "the pattern ends with a lone escape character `{escape}`; escape it as `{escape}{escape}`"
    )]
    TrailingEscape {
        /// The escape character of the lexer.
        escape: char,
    },
    /// A `[:name:]` class inside a bracket expression is not a POSIX class.
    #[error(
        "unknown character class `[:{name}:]`; use alnum, alpha, blank, cntrl, digit, graph, lower, print, punct, space, upper or xdigit"
    )]
    UnknownClass {
        /// The name between `[:` and `:]`.
        name: String,
    },
}

/// One POSIX character class usable as `[:name:]` in a bracket expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NamedClass {
    Alnum,
    Alpha,
    Blank,
    Cntrl,
    Digit,
    Graph,
    Lower,
    Print,
    Punct,
    Space,
    Upper,
    Xdigit,
}

impl NamedClass {
    fn from_name(name: &str) -> Option<Self> {
        let class = match name {
            "alnum" => NamedClass::Alnum,
            "alpha" => NamedClass::Alpha,
            "blank" => NamedClass::Blank,
            "cntrl" => NamedClass::Cntrl,
            "digit" => NamedClass::Digit,
            "graph" => NamedClass::Graph,
            "lower" => NamedClass::Lower,
            "print" => NamedClass::Print,
            "punct" => NamedClass::Punct,
            "space" => NamedClass::Space,
            "upper" => NamedClass::Upper,
            "xdigit" => NamedClass::Xdigit,
            _ => return None,
        };
        Some(class)
    }

    fn contains(self, c: char) -> bool {
        match self {
            NamedClass::Alnum => c.is_alphanumeric(),
            NamedClass::Alpha => c.is_alphabetic(),
            NamedClass::Blank => c == ' ' || c == '\t',
            NamedClass::Cntrl => c.is_control(),
            NamedClass::Digit => c.is_ascii_digit(),
            NamedClass::Graph => !c.is_control() && !c.is_whitespace(),
            NamedClass::Lower => c.is_lowercase(),
            NamedClass::Print => !c.is_control(),
            NamedClass::Punct => c.is_ascii_punctuation(),
            NamedClass::Space => c.is_whitespace(),
            NamedClass::Upper => c.is_uppercase(),
            NamedClass::Xdigit => c.is_ascii_hexdigit(),
        }
    }
}

/// One member of a bracket expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClassItem {
    Char(char),
    Range(char, char),
    Named(NamedClass),
}

/// A bracket expression such as `[a-z]`, `[!0-9]` or `[[:space:]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bracket {
    negated: bool,
    items: Vec<ClassItem>,
}

impl Bracket {
    fn matches(&self, c: char) -> bool {
        let found = self.items.iter().any(|item| match *item {
            ClassItem::Char(member) => member == c,
            ClassItem::Range(low, high) => low <= c && c <= high,
            ClassItem::Named(class) => class.contains(c),
        });
        found != self.negated
    }
}

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A character that must appear as is.
    Literal(char),
    /// `?`: any one character but a newline.
    Any,
    /// `*`: any run of characters without a newline.
    Star,
    /// `[...]`: one character of a set.
    Bracket(Bracket),
}

impl Token {
    /// Reports whether a single-character token accepts `c`. `Star` is
    /// handled by the matcher and accepts nothing here.
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Literal(expected) => *expected == c,
            Token::Any => c != '\n',
            Token::Star => false,
            Token::Bracket(bracket) => bracket.matches(c),
        }
    }
}

/// A compiled glob pattern.
///
/// Syntax: `*` matches any run of characters and `?` one character.
/// `[...]` matches one character of a set, and `[!...]` or `[^...]` one
/// character outside it. A set may hold ranges such as `a-z` and classes
/// such as `[:digit:]`. A `[` without a closing `]` is literal.
///
/// The escape character makes the next `*`, `?`, `[`, `]` or escape
/// character literal. Before `}` or `/` it is dropped, because there it only
/// kept the character from ending the `${...}` part. Every other character
/// is literal.
///
/// NOTE: BuildKit has no bracket expressions, so in BuildKit `[a-z]` matches
/// the five characters literally, and `\[`, `\]` are invalid escapes there.
/// BuildKit also always uses `\` as the pattern escape, while this type uses
/// the lexer's escape character, so that a Dockerfile with `# escape=`` ` ``
/// escapes patterns the way it escapes everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Compiles `pattern`, in which `escape` is the escape character.
    pub(crate) fn compile(pattern: &str, escape: char) -> Result<Self, PatternError> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut index = 0;

        while let Some(&c) = chars.get(index) {
            index += 1;
            if c == escape {
                match chars.get(index).copied() {
                    // The escape kept `}` or `/` from closing the expansion;
                    // the character itself is read as a literal next round.
                    Some('}' | '/') => {}
                    Some(next) if next == escape || matches!(next, '*' | '?' | '[' | ']') => {
                        tokens.push(Token::Literal(next));
                        index += 1;
                    }
                    Some(next) => {
                        return Err(PatternError::InvalidEscape {
                            escape,
                            character: next,
                        });
                    }
                    None => return Err(PatternError::TrailingEscape { escape }),
                }
                continue;
            }
            match c {
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                '[' => match parse_bracket(&chars, index, escape)? {
                    Some((bracket, next)) => {
                        tokens.push(Token::Bracket(bracket));
                        index = next;
                    }
                    None => tokens.push(Token::Literal('[')),
                },
                other => tokens.push(Token::Literal(other)),
            }
        }
        Ok(Pattern { tokens })
    }

    /// Returns the same pattern read from right to left, for matching a
    /// suffix as a prefix of the reversed value.
    fn reversed(&self) -> Self {
        Pattern {
            tokens: self.tokens.iter().rev().cloned().collect(),
        }
    }

    /// Computes, for every start index of `value`, the end index of the
    /// match that a backtracking engine finds first there, or `None`.
    ///
    /// The table is filled token by token from the last one, so the cost is
    /// O(tokens × characters) time and O(characters) memory, with no
    /// exponential backtracking.
    fn first_match_ends(&self, value: &[char], greedy: bool) -> Vec<Option<usize>> {
        // After the last token every start position matches the empty rest.
        let mut next: Vec<Option<usize>> = (0..=value.len()).map(Some).collect();

        for token in self.tokens.iter().rev() {
            let mut row: Vec<Option<usize>> = vec![None; value.len() + 1];
            if *token == Token::Star {
                for start in (0..=value.len()).rev() {
                    let skip = next.get(start).copied().flatten();
                    let consume = match value.get(start) {
                        Some(&c) if c != '\n' => row.get(start + 1).copied().flatten(),
                        _ => None,
                    };
                    let first = if greedy {
                        consume.or(skip)
                    } else {
                        skip.or(consume)
                    };
                    if let Some(slot) = row.get_mut(start) {
                        *slot = first;
                    }
                }
            } else {
                for (start, &c) in value.iter().enumerate() {
                    if token.matches(c) {
                        let end = next.get(start + 1).copied().flatten();
                        if let Some(slot) = row.get_mut(start) {
                            *slot = end;
                        }
                    }
                }
            }
            next = row;
        }
        next
    }

    /// Returns `value` without its prefix that matches, the shortest such
    /// prefix unless `longest` is set. A value without a matching prefix is
    /// returned unchanged.
    pub(crate) fn remove_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let ends = self.first_match_ends(&chars, longest);
        match ends.first().copied().flatten() {
            Some(end) => chars.get(end..).unwrap_or_default().iter().collect(),
            None => value.to_string(),
        }
    }

    /// Returns `value` without its suffix that matches, the shortest such
    /// suffix unless `longest` is set. A value without a matching suffix is
    /// returned unchanged.
    pub(crate) fn remove_suffix(&self, value: &str, longest: bool) -> String {
        // A suffix match of the pattern is a prefix match of the reversed
        // pattern on the reversed value.
        let reversed: Vec<char> = value.chars().rev().collect();
        let ends = self.reversed().first_match_ends(&reversed, longest);
        match ends.first().copied().flatten() {
            Some(end) => {
                let keep = reversed.len().saturating_sub(end);
                value.chars().take(keep).collect()
            }
            None => value.to_string(),
        }
    }

    /// Replaces the leftmost match in `value`, or every match when `all` is
    /// set, with `replacement`. Stars are greedy.
    ///
    /// When `all` is set, `replacement` is a template as in Go's
    /// `Regexp.ReplaceAllString`, which BuildKit calls. There `$$` is a `$`,
    /// `$0` or `${0}` is the matched text, any other `$name` or `${name}` is
    /// empty, and a `$` that starts no name stays as is. A single
    /// replacement inserts `replacement` unchanged, as BuildKit does.
    pub(crate) fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let ends = self.first_match_ends(&chars, true);
        let find_from = |from: usize| {
            ends.iter()
                .enumerate()
                .skip(from)
                .find_map(|(start, end)| end.map(|end| (start, end)))
        };
        let slice = |from: usize, to: usize| -> String {
            chars.get(from..to).unwrap_or_default().iter().collect()
        };

        if !all {
            return match find_from(0) {
                Some((start, end)) => {
                    let mut out = slice(0, start);
                    out.push_str(replacement);
                    out.push_str(&slice(end, chars.len()));
                    out
                }
                None => value.to_string(),
            };
        }

        // Successive non-overlapping matches, in the order of Go's
        // `Regexp.ReplaceAllString`: an empty match right after a previous
        // match is not replaced, and the search always advances.
        let mut out = String::new();
        let mut last_end = 0;
        let mut search = 0;
        while search <= chars.len() {
            let Some((start, end)) = find_from(search) else {
                break;
            };
            out.push_str(&slice(last_end, start));
            if end > last_end || start == 0 {
                out.push_str(&expand_template(replacement, &slice(start, end)));
            }
            last_end = end;
            search = if search + 1 > end { search + 1 } else { end };
        }
        out.push_str(&slice(last_end, chars.len()));
        out
    }
}

/// Parses a bracket expression whose `[` ends just before `start`.
///
/// Returns the expression and the index after its `]`, or `None` when no
/// `]` closes it, in which case the `[` is a literal character.
fn parse_bracket(
    chars: &[char],
    start: usize,
    escape: char,
) -> Result<Option<(Bracket, usize)>, PatternError> {
    let mut index = start;
    let negated = matches!(chars.get(index), Some('!' | '^'));
    if negated {
        index += 1;
    }

    let mut items = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(index) else {
            return Ok(None);
        };
        if c == ']' && !first {
            return Ok(Some((Bracket { negated, items }, index + 1)));
        }
        first = false;

        // `[:name:]` names a class.
        let class_length = if c == '[' && chars.get(index + 1) == Some(&':') {
            find_class_end(chars, index + 2)
        } else {
            None
        };
        if let Some(length) = class_length {
            let name: String = chars
                .get(index + 2..index + 2 + length)
                .unwrap_or_default()
                .iter()
                .collect();
            let class = NamedClass::from_name(&name).ok_or(PatternError::UnknownClass { name })?;
            items.push(ClassItem::Named(class));
            index += length + 4;
            continue;
        }

        let Some((low, after_low)) = bracket_char(chars, index, escape) else {
            return Ok(None);
        };
        index = after_low;

        // `a-z` is a range unless the `-` is the last member.
        let is_range = chars.get(index) == Some(&'-')
            && chars
                .get(index + 1)
                .is_some_and(|&after_dash| after_dash != ']');
        let high = if is_range {
            bracket_char(chars, index + 1, escape)
        } else {
            None
        };
        match high {
            Some((high, after_high)) => {
                items.push(ClassItem::Range(low, high));
                index = after_high;
            }
            None => items.push(ClassItem::Char(low)),
        }
    }
}

/// Reads one member character of a bracket expression at `index`, where
/// the escape character makes the next character literal.
fn bracket_char(chars: &[char], index: usize, escape: char) -> Option<(char, usize)> {
    let c = *chars.get(index)?;
    if c == escape {
        let escaped = *chars.get(index + 1)?;
        return Some((escaped, index + 2));
    }
    Some((c, index + 1))
}

/// Returns the length of the class name starting at `from` when `:]`
/// follows it.
fn find_class_end(chars: &[char], from: usize) -> Option<usize> {
    let rest = chars.get(from..)?;
    let length = rest.iter().position(|&c| c == ':')?;
    (rest.get(length + 1) == Some(&']')).then_some(length)
}

/// Expands a Go `Regexp.Expand` template for a pattern without capture
/// groups: `$$` is `$`, `$0`/`${0}` is `matched`, other names are empty,
/// and a `$` that starts no valid name is kept.
fn expand_template(template: &str, matched: &str) -> String {
    let mut out = String::new();
    let mut rest = template;

    while let Some(dollar) = rest.find('$') {
        out.push_str(rest.get(..dollar).unwrap_or_default());
        rest = rest.get(dollar + 1..).unwrap_or_default();

        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_reference(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
    out
}

/// Splits a `name` or `{name}` reference off the text after a `$` in a
/// template, returning the name and the text after the reference.
fn template_reference(text: &str) -> Option<(&str, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let length = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
        .map_or(body.len(), |(at, _)| at);
    if length == 0 {
        return None;
    }
    let name = body.get(..length)?;
    let after = body.get(length..)?;
    if braced {
        let after = after.strip_prefix('}')?;
        return Some((name, after));
    }
    Some((name, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(pattern: &str) -> Pattern {
        match Pattern::compile(pattern, '\\') {
            Ok(compiled) => compiled,
            Err(error) => panic!("pattern {pattern:?} failed to compile: {error}"),
        }
    }

    #[test]
    fn prefix_shortest_and_longest() {
        let pattern = compile("*/");
        assert_eq!(pattern.remove_prefix("a/b/c", false), "b/c");
        assert_eq!(pattern.remove_prefix("a/b/c", true), "c");
        assert_eq!(pattern.remove_prefix("abc", true), "abc");
    }

    #[test]
    fn suffix_shortest_and_longest() {
        let pattern = compile(".*");
        assert_eq!(pattern.remove_suffix("a.tar.gz", false), "a.tar");
        assert_eq!(pattern.remove_suffix("a.tar.gz", true), "a");
        assert_eq!(pattern.remove_suffix("abc", false), "abc");
    }

    #[test]
    fn question_mark_one_character() {
        let pattern = compile("??");
        assert_eq!(pattern.remove_prefix("한국어", false), "어");
        assert_eq!(pattern.remove_suffix("abc", false), "a");
        assert_eq!(pattern.remove_prefix("a", false), "a");
    }

    #[test]
    fn star_and_question_skip_newline() {
        assert_eq!(compile("*").remove_prefix("a\nb", true), "\nb");
        assert_eq!(compile("?").remove_prefix("\nb", false), "\nb");
    }

    #[test]
    fn bracket_range_and_negation() {
        assert_eq!(compile("[a-c]*").remove_prefix("beta", false), "eta");
        assert_eq!(compile("[a-c]*").remove_prefix("zeta", false), "zeta");
        assert_eq!(compile("[!a-c]").remove_prefix("zeta", false), "eta");
        assert_eq!(compile("[^z]").remove_prefix("zeta", false), "zeta");
        assert_eq!(compile("[0-9]*").remove_suffix("v1.2", true), "v");
    }

    #[test]
    fn bracket_members_and_classes() {
        assert_eq!(compile("[]x]").remove_prefix("]y", false), "y");
        assert_eq!(compile("[a-]").remove_prefix("-y", false), "y");
        assert_eq!(compile("[[:digit:]]*").remove_suffix("ab12", true), "ab");
        assert_eq!(compile("[[:space:]]").remove_prefix(" x", false), "x");
        assert_eq!(compile("[\\]]").remove_prefix("]x", false), "x");
    }

    #[test]
    fn unclosed_bracket_is_literal() {
        assert_eq!(compile("[a").remove_prefix("[ab", false), "b");
        assert_eq!(compile("[a").remove_prefix("ab", false), "ab");
    }

    #[test]
    fn unknown_class_rejected() {
        let error = Pattern::compile("[[:word:]]", '\\');
        assert_eq!(
            error,
            Err(PatternError::UnknownClass {
                name: "word".to_string()
            })
        );
    }

    #[test]
    fn escaped_wildcards_are_literal() {
        assert_eq!(compile("\\**").remove_suffix("xx**", true), "xx");
        assert_eq!(compile("?\\?").remove_prefix("???y", false), "?y");
        assert_eq!(compile("\\[a]").remove_prefix("[a]b", false), "b");
        assert_eq!(compile("a\\\\").remove_prefix("a\\b", false), "b");
    }

    #[test]
    fn escape_before_brace_or_slash_dropped() {
        assert_eq!(compile("a\\}").remove_prefix("a}b", false), "b");
        assert_eq!(compile("\\/").remove_prefix("/b", false), "b");
    }

    #[test]
    fn invalid_escapes_rejected() {
        assert_eq!(
            Pattern::compile("\\x", '\\'),
            Err(PatternError::InvalidEscape {
                escape: '\\',
                character: 'x'
            })
        );
        assert_eq!(
            Pattern::compile("a\\", '\\'),
            Err(PatternError::TrailingEscape { escape: '\\' })
        );
        assert_eq!(
            Pattern::compile("\\\\\\", '\\'),
            Err(PatternError::TrailingEscape { escape: '\\' })
        );
    }

    #[test]
    fn backtick_escape_in_pattern() {
        let pattern = match Pattern::compile("`*x", '`') {
            Ok(pattern) => pattern,
            Err(error) => panic!("backtick pattern failed: {error}"),
        };
        assert_eq!(pattern.remove_prefix("*xy", false), "y");
        assert_eq!(pattern.remove_prefix("axy", false), "axy");
        assert_eq!(compile("C:\\\\").remove_prefix("C:\\dir", false), "dir");
    }

    #[test]
    fn regex_characters_are_literal() {
        let pattern = compile("()[]{\\}^$.\\*\\?|\\\\");
        assert_eq!(pattern.remove_prefix("()[]{}^$.*?|\\x", false), "x");
    }

    #[test]
    fn replace_first_and_all() {
        let pattern = compile("\\*/");
        assert_eq!(pattern.replace("/foo*/*/*.txt", ".", false), "/foo.*/*.txt");
        assert_eq!(pattern.replace("/foo*/*/*.txt", ".", true), "/foo..*.txt");
        assert_eq!(
            compile("/?/").replace("/a/foo/b/c.txt", "/", true),
            "/foo/c.txt"
        );
    }

    #[test]
    fn replace_greedy_star() {
        assert_eq!(compile("a*b").replace("xaabab", "-", false), "x-");
        assert_eq!(compile("b*").replace("abcb", "-", false), "a-");
    }

    #[test]
    fn replace_empty_pattern() {
        let pattern = compile("");
        assert_eq!(pattern.replace("xy", "w", false), "wxy");
        assert_eq!(pattern.replace("xy", "-", true), "-x-y-");
        assert_eq!(pattern.replace("xy", "", true), "xy");
    }

    #[test]
    fn replace_star_skips_empty_after_match() {
        assert_eq!(compile("*").replace("ab", "-", true), "-");
        assert_eq!(compile("*").replace("a\nb", "-", true), "-\n-");
    }

    #[test]
    fn replace_all_template() {
        let pattern = compile("b");
        assert_eq!(pattern.replace("abc", "[$0]", true), "a[b]c");
        assert_eq!(pattern.replace("abc", "[${0}]", true), "a[b]c");
        assert_eq!(pattern.replace("abc", "$$", true), "a$c");
        assert_eq!(pattern.replace("abc", "$x.", true), "a.c");
        assert_eq!(pattern.replace("abc", "$.", true), "a$.c");
        assert_eq!(pattern.replace("abc", "${x", true), "a${xc");
        assert_eq!(pattern.replace("abc", "$0", false), "a$0c");
    }

    #[test]
    fn long_value_is_linear() {
        let value = "a".repeat(20_000);
        let pattern = compile("*a*a*a*a*b");
        assert_eq!(pattern.remove_prefix(&value, false), value);
        assert_eq!(pattern.remove_suffix(&value, true), value);
    }
}
