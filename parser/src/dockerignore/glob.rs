//! Compiles one `.dockerignore` pattern (without its `!`) and matches it
//! against context paths.
//!
//! The rules are those of moby's patternmatcher, the matcher behind
//! `docker build`:
//!
//! * `*` matches a run of characters other than `/`, and `?` matches one
//!   character (a `char`, not a byte) other than `/`.
//! * `[...]` and `[^...]` match one character from a set of characters and
//!   ranges. A negated class can match `/`. Inside a class, `]` and `-`
//!   must be escaped with `\` unless `-` joins the two ends of a range, and
//!   a range must not run backwards.
//! * `\` makes the next character literal. A lone trailing `\` is invalid.
//! * `**` followed by more pattern matches nothing or any text that ends
//!   in `/`, and a `/` right after it is part of it, so `**/a` matches `a`
//!   and `x/y/a`. A final `**` matches any text, so `dir/**` matches what is
//!   below `dir` but not `dir` itself.
//! * Every other character, including regular-expression syntax such as
//!   `.`, `+`, `(` or `$`, is literal.
//!
//! moby compiles a pattern that starts with `**` and is otherwise plain
//! text to a suffix test instead of its regular expression, so `**file`
//! matches `xfile` and `dir/xfile`, and `**` alone matches every path. This
//! module does the same. Where moby uses its regular expression, `.` in the
//! expressions for `**` does not match a line feed, so neither does `**`
//! here outside the plain-text shortcuts.
//!
//! NOTE: classes follow Go's `filepath.Match`, which moby uses to validate
//! patterns, and not Go's regexp syntax, which moby matches with. The two
//! differ on class text few people write: POSIX names (`[[:digit:]]`), `*`
//! or `?` inside brackets, and backslash escapes of letters (`\d`), which
//! here are literal characters. moby also reads `^` outside a class as an
//! anchor, and here it is literal.
//!
//! globset is not used because it cannot express these rules: it rejects
//! `**` next to other characters (`a**/*.txt`, `**file`), it reads `[!a]`
//! as a negated class and `{a,b}` as alternatives (literal text for moby),
//! and it accepts `[]a]`, which moby rejects.
//!
//! Patterns outside the plain-text forms run as an NFA (see
//! [`super::nfa`]), in time linear in the path length.

use std::iter::Peekable;
use std::str::CharIndices;

use super::nfa::{Class, Program, Step, any_prefix_ends_with};

/// The syntax error that makes a pattern invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PatternSyntax {
    /// A `[` without the `]` that ends its class.
    #[error(
        "the character class opened by `[` is not closed; add `]`, or write `\\[` to match a literal `[`"
    )]
    UnclosedClass,
    /// A `]` as the first member of a class, which would leave the class empty.
    #[error("a `]` right after `[` or `[^` must be escaped as `\\]`")]
    LeadingBracket,
    /// A `-` in a class that is neither escaped nor between two range ends.
    #[error(
        "a `-` in a character class must be escaped as `\\-` unless it joins the two ends of a range such as `a-z`"
    )]
    UnescapedDash,
    /// A `\` at the end of the pattern, with nothing to escape.
    #[error("the pattern ends in a lone `\\`; write `\\\\` to match a backslash")]
    TrailingBackslash,
    /// A class range whose start comes after its end.
    #[error(
        "the range `{start}-{end}` in a character class runs backwards (U+{:04X} comes after U+{:04X}); write `{end}-{start}`",
        u32::from(*start),
        u32::from(*end)
    )]
    ReversedRange {
        /// First character of the range as written.
        start: char,
        /// Last character of the range as written.
        end: char,
    },
}

/// A compiled pattern.
///
/// The three text forms are the shortcuts moby takes for patterns without
/// wildcards other than one `**`. They keep moby's results where these
/// differ from the general rules (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Glob {
    /// Plain text, matching a path equal to it.
    Exact(String),
    /// Plain text before a final `**`, matching a path that starts with it.
    Prefix(String),
    /// Plain text after a leading `**`, matching a path that ends with it.
    /// When the text starts with `/`, the path equal to the rest also matches.
    Suffix(String),
    /// Any other pattern, run as an NFA.
    Steps(Program),
}

/// Parser state that decides which form a pattern compiles to, in the
/// order moby decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Exact,
    Prefix,
    Suffix,
    Steps,
}

/// Compiles a cleaned pattern (no leading `!`).
pub(super) fn compile(pattern: &str) -> Result<Glob, PatternSyntax> {
    let mut steps = Vec::new();
    let mut form = Form::Exact;
    // The plain text that the Exact, Prefix and Suffix forms compare with.
    let mut text = String::new();
    let mut chars = pattern.char_indices().peekable();

    while let Some((start, c)) = chars.next() {
        match c {
            '*' if chars.next_if(|&(_, next)| next == '*').is_some() => {
                let ate_slash = chars.next_if(|&(_, next)| next == '/').is_some();
                if chars.peek().is_none() {
                    if form == Form::Exact {
                        form = Form::Prefix;
                    } else {
                        steps.push(Step::Rest);
                        form = Form::Steps;
                    }
                } else {
                    steps.push(Step::Dirs);
                    form = Form::Steps;
                }
                if start == 0 {
                    form = Form::Suffix;
                    text.clear();
                    if ate_slash {
                        text.push('/');
                    }
                }
            }
            '*' => {
                steps.push(Step::Star);
                form = Form::Steps;
            }
            '?' => {
                steps.push(Step::AnyButSlash);
                form = Form::Steps;
            }
            '\\' => {
                let (_, escaped) = chars.next().ok_or(PatternSyntax::TrailingBackslash)?;
                steps.push(Step::Char(escaped));
                form = Form::Steps;
            }
            '[' => {
                steps.push(Step::Class(parse_class(&mut chars)?));
                form = Form::Steps;
            }
            // A `]` outside a class is literal, but moby still takes the
            // regular-expression path for it, which matters after `**`.
            ']' => {
                steps.push(Step::Char(']'));
                form = Form::Steps;
            }
            _ => {
                steps.push(Step::Char(c));
                text.push(c);
            }
        }
    }

    Ok(match form {
        Form::Exact => Glob::Exact(text),
        Form::Prefix => Glob::Prefix(text),
        Form::Suffix => Glob::Suffix(text),
        Form::Steps => Glob::Steps(Program::new(steps)),
    })
}

/// Parses a class after its `[`, by the rules of Go's `filepath.Match`,
/// and rejects a backwards range as moby's regular expression does.
fn parse_class(chars: &mut Peekable<CharIndices<'_>>) -> Result<Class, PatternSyntax> {
    let negated = chars.next_if(|&(_, c)| c == '^').is_some();
    let mut ranges = Vec::new();

    loop {
        if !ranges.is_empty() && chars.next_if(|&(_, c)| c == ']').is_some() {
            return Ok(Class { negated, ranges });
        }
        let start = class_member(chars, PatternSyntax::LeadingBracket)?;
        let end = if chars.next_if(|&(_, c)| c == '-').is_some() {
            // `[x-]`: the `]` ends the class, so the `-` has no range end.
            class_member(chars, PatternSyntax::UnescapedDash)?
        } else {
            start
        };
        if start > end {
            return Err(PatternSyntax::ReversedRange { start, end });
        }
        ranges.push((start, end));
    }
}

/// Reads one class member or range end, which must be followed by more of
/// the class. `bracket_error` is the error for an unescaped `]` here.
fn class_member(
    chars: &mut Peekable<CharIndices<'_>>,
    bracket_error: PatternSyntax,
) -> Result<char, PatternSyntax> {
    let member = match chars.next() {
        None => return Err(PatternSyntax::UnclosedClass),
        Some((_, '-')) => return Err(PatternSyntax::UnescapedDash),
        Some((_, ']')) => return Err(bracket_error),
        Some((_, '\\')) => match chars.next() {
            Some((_, escaped)) => escaped,
            None => return Err(PatternSyntax::UnclosedClass),
        },
        Some((_, c)) => c,
    };
    if chars.peek().is_none() {
        return Err(PatternSyntax::UnclosedClass);
    }
    Ok(member)
}

impl Glob {
    /// Checks whether the pattern matches `path` or one of its ancestor
    /// directories (`a` and `a/b` for `a/b/c`).
    pub(super) fn matches_path_or_ancestor(&self, path: &str) -> bool {
        match self {
            Glob::Exact(text) => is_path_or_ancestor(path, text),
            // An ancestor that starts with the text makes the path start with it.
            Glob::Prefix(text) => path.starts_with(text.as_str()),
            Glob::Suffix(text) => {
                any_prefix_ends_with(path, text)
                    || text
                        .strip_prefix('/')
                        .is_some_and(|name| is_path_or_ancestor(path, name))
            }
            Glob::Steps(program) => program.matches_path_or_ancestor(path),
        }
    }

    /// Checks whether the pattern can match some path below the directory `dir`.
    ///
    /// A `false` is always right, but a `true` can be wrong, for example when
    /// only a path with an empty element such as `dir//x` would match.
    pub(super) fn may_match_below(&self, dir: &str) -> bool {
        match self {
            Glob::Exact(text) => text
                .strip_prefix(dir)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|below| !below.is_empty()),
            // Some path `dir/...` starts with the text when the text starts
            // with `dir/`, or is itself the start of `dir/`.
            Glob::Prefix(text) => match text.strip_prefix(dir) {
                Some(rest) => rest.is_empty() || rest.starts_with('/'),
                None => dir.starts_with(text.as_str()),
            },
            // `dir/` followed by the text ends with the text.
            Glob::Suffix(_) => true,
            Glob::Steps(program) => program.matches_some_path_below(dir),
        }
    }
}

/// Checks whether `name` is `path` or one of its ancestor directories.
fn is_path_or_ancestor(path: &str, name: &str) -> bool {
    path.strip_prefix(name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        match compile(pattern) {
            Ok(glob) => glob.matches_path_or_ancestor(path),
            Err(error) => panic!("pattern {pattern:?} failed to compile: {error}"),
        }
    }

    fn below(pattern: &str, dir: &str) -> bool {
        match compile(pattern) {
            Ok(glob) => glob.may_match_below(dir),
            Err(error) => panic!("pattern {pattern:?} failed to compile: {error}"),
        }
    }

    #[test]
    fn plain_text_compiles_to_exact() {
        assert_eq!(compile("a.b+c"), Ok(Glob::Exact("a.b+c".to_owned())));
    }

    #[test]
    fn final_double_star_compiles_to_prefix() {
        assert_eq!(compile("abc/**"), Ok(Glob::Prefix("abc/".to_owned())));
    }

    #[test]
    fn leading_double_star_compiles_to_suffix() {
        assert_eq!(compile("**/a.go"), Ok(Glob::Suffix("/a.go".to_owned())));
        assert_eq!(compile("**file"), Ok(Glob::Suffix("file".to_owned())));
        assert_eq!(compile("**"), Ok(Glob::Suffix(String::new())));
    }

    #[test]
    fn wildcard_after_double_star_compiles_to_steps() {
        assert!(matches!(compile("**/*.go"), Ok(Glob::Steps(_))));
        assert!(matches!(compile("**\\x"), Ok(Glob::Steps(_))));
        assert!(matches!(compile("**]"), Ok(Glob::Steps(_))));
    }

    #[test]
    fn star_stays_within_one_element() {
        assert!(matches("a*", "abc"));
        assert!(matches("a*", "a"));
        assert!(!matches("a*b", "a/b"));
        assert!(matches("*/b", "x/b"));
        assert!(!matches("*/b", "x/y/b"));
    }

    #[test]
    fn question_mark_is_one_char() {
        assert!(matches("a?c", "abc"));
        assert!(matches("a?c", "a☺c"));
        assert!(!matches("a?c", "ac"));
        assert!(!matches("a?c", "a/c"));
        assert!(!matches("a??c", "a☺c"));
    }

    #[test]
    fn class_matches_listed_chars_and_ranges() {
        assert!(matches("[abc]", "b"));
        assert!(matches("x[0-9]", "x7"));
        assert!(!matches("x[0-9]", "xa"));
        assert!(matches("[α-ω]", "λ"));
    }

    #[test]
    fn negated_class_excludes_listed_chars() {
        assert!(matches("[^a-c]", "d"));
        assert!(!matches("[^a-c]", "b"));
    }

    #[test]
    fn negated_class_can_match_slash() {
        assert!(matches("a[^x]b", "a/b"));
    }

    #[test]
    fn class_accepts_escaped_bracket_and_dash() {
        assert!(matches("[\\]]", "]"));
        assert!(matches("[a\\-]", "-"));
        assert!(matches("[\\--/]", "."));
    }

    #[test]
    fn backslash_makes_next_char_literal() {
        assert!(matches("a\\*", "a*"));
        assert!(!matches("a\\*", "ab"));
        assert!(matches("\\[x]", "[x]"));
        assert!(matches("a\\\\", "a\\"));
    }

    #[test]
    fn regex_syntax_is_literal() {
        assert!(matches("a.c", "a.c"));
        assert!(!matches("a.c", "abc"));
        assert!(matches("*(x)+{y}|$^", "w(x)+{y}|$^"));
        assert!(!matches("*(x)", "wx"));
    }

    #[test]
    fn double_star_matches_zero_or_more_dirs() {
        assert!(matches("a/**/b", "a/b"));
        assert!(matches("a/**/b", "a/x/y/b"));
        assert!(!matches("a/**/b", "a/xb"));
        assert!(matches("**/*.go", "main.go"));
        assert!(matches("**/*.go", "x/y/main.go"));
    }

    #[test]
    fn final_double_star_matches_only_below() {
        assert!(!matches("dir/**", "dir"));
        assert!(matches("dir/**", "dir/a"));
        assert!(matches("dir/**", "dir/a/b"));
        assert!(!matches("d*/**", "dir"));
        assert!(matches("d*/**", "dir/a/b"));
    }

    #[test]
    fn leading_double_star_text_is_a_suffix() {
        assert!(matches("**file", "xfile"));
        assert!(matches("**file", "a/xfile"));
        assert!(matches("**/file", "file"));
        assert!(matches("**/file", "a/b/file"));
        assert!(!matches("**/file", "xfile"));
        assert!(matches("**", "a/b"));
    }

    #[test]
    fn double_star_in_steps_stops_at_line_feed() {
        assert!(!matches("a/**/*.txt", "a/x\ny/b.txt"));
        assert!(!matches("a*/**", "ab/x\ny"));
        assert!(matches("*/b", "a\nc/b"));
    }

    #[test]
    fn pattern_matches_ancestor_directory() {
        assert!(matches("a/b", "a/b/c/d"));
        assert!(matches("a*", "ab/c"));
        assert!(matches("*/temp*", "x/temporary/y"));
        assert!(!matches("a/b", "x/a/b"));
        assert!(!matches("dir", "dirx/y"));
    }

    #[test]
    fn leading_double_star_suffix_checks_ancestors() {
        assert!(matches("**/node_modules", "src/node_modules/x/index.js"));
        assert!(!matches("**/node_modules", "src/node_modules_x"));
    }

    #[test]
    fn long_pattern_uses_large_state_set() {
        let long = "a".repeat(200);
        let pattern = format!("{long}*/k?");
        assert!(matches(&pattern, &format!("{long}xyz/kq/more")));
        assert!(!matches(&pattern, &format!("{}b/kq", "a".repeat(199))));
        assert!(below(&pattern, &long));
        assert!(!below(&pattern, "b"));
    }

    #[test]
    fn star_heavy_pattern_runs_in_linear_time() {
        let path = "a".repeat(10_000);
        assert!(!matches("*a*a*a*a*a*a*a*a*a*a*b", &path));
    }

    #[test]
    fn exact_may_match_below_its_parents_only() {
        assert!(below("docs/keep", "docs"));
        assert!(!below("docs/keep", "docs/keep"));
        assert!(!below("docs/keep", "doc"));
        assert!(!below("docs/keep", "other"));
    }

    #[test]
    fn prefix_may_match_below_overlapping_dirs() {
        assert!(below("abc**", "abcdef"));
        assert!(below("abc/**", "abc"));
        assert!(below("a/b/**", "a"));
        assert!(!below("abcd**", "abc"));
        assert!(!below("x/**", "abc"));
    }

    #[test]
    fn steps_may_match_below_when_still_live() {
        assert!(below("**/*.go", "vendor"));
        assert!(below("src/*/keep", "src/lib"));
        assert!(!below("src/*/keep", "src/lib/deep"));
        assert!(!below("src/*.rs", "target"));
        assert!(below("[a-c]*/x", "b1"));
    }

    #[test]
    fn suffix_may_match_below_any_dir() {
        assert!(below("**/keep", "anything"));
    }

    #[test]
    fn trailing_backslash_is_rejected() {
        assert_eq!(compile("a\\"), Err(PatternSyntax::TrailingBackslash));
    }

    #[test]
    fn unclosed_class_is_rejected() {
        assert_eq!(compile("["), Err(PatternSyntax::UnclosedClass));
        assert_eq!(compile("[^"), Err(PatternSyntax::UnclosedClass));
        assert_eq!(compile("a[bc"), Err(PatternSyntax::UnclosedClass));
        assert_eq!(compile("[a-"), Err(PatternSyntax::UnclosedClass));
        assert_eq!(compile("[\\"), Err(PatternSyntax::UnclosedClass));
        assert_eq!(compile("[a\\]"), Err(PatternSyntax::UnclosedClass));
    }

    #[test]
    fn leading_bracket_in_class_is_rejected() {
        assert_eq!(compile("[]a]"), Err(PatternSyntax::LeadingBracket));
        assert_eq!(compile("[]"), Err(PatternSyntax::LeadingBracket));
        assert_eq!(compile("[^]a]"), Err(PatternSyntax::LeadingBracket));
    }

    #[test]
    fn stray_dash_in_class_is_rejected() {
        assert_eq!(compile("[-]"), Err(PatternSyntax::UnescapedDash));
        assert_eq!(compile("[-x]"), Err(PatternSyntax::UnescapedDash));
        assert_eq!(compile("[x-]"), Err(PatternSyntax::UnescapedDash));
        assert_eq!(compile("[a-b-c]"), Err(PatternSyntax::UnescapedDash));
    }

    #[test]
    fn backwards_range_is_rejected() {
        assert_eq!(
            compile("[Local-Only]"),
            Err(PatternSyntax::ReversedRange {
                start: 'l',
                end: 'O'
            })
        );
    }

    #[test]
    fn backwards_range_message_names_range_and_fix() {
        let message = PatternSyntax::ReversedRange {
            start: 'l',
            end: 'O',
        }
        .to_string();
        assert!(message.contains("`l-O`"), "{message}");
        assert!(message.contains("write `O-l`"), "{message}");
    }
}
