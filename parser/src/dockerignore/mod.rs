//! `.dockerignore` reading and matching: which paths of a build context
//! are left out of it.
//!
//! The behaviour follows `docker build` on Unix (moby's `ignorefile` and
//! `patternmatcher` packages). Each line is a glob pattern that matches a
//! context path or any of its ancestor directories, a line starting with
//! `!` is an exception that puts matching paths back, and the last line
//! that matches a path decides. A pattern is anchored at the context root,
//! so `node_modules` does not match `src/node_modules`, and `**/` matches
//! any number of directories. `\` escapes the next character, as docker
//! reads it on Unix (on Windows, docker reads `\` as a path separator).
//!
//! ```
//! use forge_parser::dockerignore::Matcher;
//!
//! let matcher = Matcher::from_text("target\n*.log\n!keep.log\n")?;
//! assert!(matcher.is_excluded("target/debug/forge"));
//! assert!(matcher.is_excluded("build.log"));
//! assert!(!matcher.is_excluded("keep.log"));
//! assert!(matcher.can_skip_dir("target"));
//! # Ok::<(), forge_parser::dockerignore::IgnoreError>(())
//! ```

mod glob;
mod nfa;
mod read;

use std::fmt;

use glob::Glob;
pub use glob::PatternSyntax;

/// Reads `.dockerignore` text into patterns.
///
/// A UTF-8 byte order mark at the start is dropped, and a line is a comment
/// when its first character is `#`. Other lines are trimmed of whitespace,
/// a leading `!` is kept and the whitespace after it trimmed, and the rest
/// is path-cleaned (`.`, `..`, repeated and trailing `/`) and loses a
/// leading `/` unless it is only `/`. Lines that end up empty are skipped.
/// A lone `!` is returned as `"!"`, and [`Matcher::new`] rejects it.
pub fn read_patterns(text: &str) -> Vec<String> {
    read::numbered_patterns(text)
        .map(|(_, pattern)| pattern)
        .collect()
}

/// A `.dockerignore` pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// A `!` with no path after it, after path cleaning (`!/` is one too).
    #[error(
        "{}invalid pattern `{pattern}`: an exception needs the path to include again after `!`, as in `!docs/README.md`; add the path or remove the line",
        LinePrefix(*.line)
    )]
    EmptyException {
        /// The pattern as read.
        pattern: String,
        /// 1-based line in the `.dockerignore` text, when read from text.
        line: Option<usize>,
    },
    /// A pattern that is not a valid glob.
    #[error("{}invalid pattern `{pattern}`: {reason}", LinePrefix(*.line))]
    InvalidPattern {
        /// The pattern as read, with its `!` if it has one.
        pattern: String,
        /// 1-based line in the `.dockerignore` text, when read from text.
        line: Option<usize>,
        /// The syntax rule the pattern breaks.
        reason: PatternSyntax,
    },
}

/// Formats `line 3: ` before a message, or nothing when the line is unknown.
struct LinePrefix(Option<usize>);

impl fmt::Display for LinePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, "line {line}: "),
            None => Ok(()),
        }
    }
}

/// Compiled `.dockerignore` patterns that decide which context paths are
/// excluded.
///
/// A matcher has no mutable state, so one instance can serve several
/// threads, and matching a path allocates nothing for patterns shorter than
/// 128 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// The patterns in file order.
    rules: Vec<Rule>,
}

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// Whether the pattern started with `!`, so a match includes the path.
    exception: bool,
    glob: Glob,
}

impl Matcher {
    /// Compiles patterns as [`read_patterns`] returns them.
    ///
    /// Each pattern is trimmed and path-cleaned again, and blank patterns are
    /// skipped. A leading `/` is kept, so `/a` matches no context path.
    ///
    /// # Errors
    ///
    /// [`IgnoreError::EmptyException`] for a lone `!` (also `!/`, which
    /// cleaning turns into one), and
    /// [`IgnoreError::InvalidPattern`] for invalid glob syntax, such as an
    /// unclosed `[`, a class range that runs backwards, or a trailing `\`.
    /// The errors carry no line number.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Matcher, IgnoreError> {
        let mut rules = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            if let Some(rule) = Rule::compile(pattern.as_ref(), None)? {
                rules.push(rule);
            }
        }
        Ok(Matcher { rules })
    }

    /// Reads and compiles the text of a `.dockerignore` file.
    ///
    /// # Errors
    ///
    /// As [`Matcher::new`], with the 1-based line number of the offending
    /// pattern.
    pub fn from_text(text: &str) -> Result<Matcher, IgnoreError> {
        let mut rules = Vec::new();
        for (line, pattern) in read::numbered_patterns(text) {
            if let Some(rule) = Rule::compile(&pattern, Some(line))? {
                rules.push(rule);
            }
        }
        Ok(Matcher { rules })
    }

    /// Whether the `/`-separated context-relative path is excluded.
    ///
    /// The path should be clean (no `.` or `..` elements). A trailing `/` and
    /// leading `./` or `/` are ignored. The context root (`.` or the empty
    /// path) is never excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        let Some(path) = context_path(path) else {
            return false;
        };
        self.rules
            .iter()
            .rev()
            .find(|rule| rule.glob.matches_path_or_ancestor(path))
            .is_some_and(|rule| !rule.exception)
    }

    /// Whether nothing under the directory `dir` can be included again by a
    /// later `!` pattern, so a walker may skip the whole directory.
    ///
    /// This is true when `dir` itself is excluded and no `!` pattern after the
    /// last pattern that excludes it can match a path below it. The result
    /// errs towards `false`: `["docs", "!docs/a", "docs/*"]` excludes all of
    /// `docs`, but the walker still has to enter it. `dir` is read as in
    /// [`Matcher::is_excluded`].
    pub fn can_skip_dir(&self, dir: &str) -> bool {
        let Some(dir) = context_path(dir) else {
            return false;
        };
        let Some(last) = self
            .rules
            .iter()
            .rposition(|rule| rule.glob.matches_path_or_ancestor(dir))
        else {
            return false;
        };

        let mut deciding_and_later = self.rules.iter().skip(last);
        if deciding_and_later.next().is_none_or(|rule| rule.exception) {
            return false;
        }
        !deciding_and_later.any(|rule| rule.exception && rule.glob.may_match_below(dir))
    }
}

impl Rule {
    /// Compiles one pattern, or returns `None` for a blank one.
    fn compile(pattern: &str, line: Option<usize>) -> Result<Option<Rule>, IgnoreError> {
        let trimmed = pattern.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }

        // The `!` is split off after cleaning, as moby does, so `!/` cleans
        // to a lone `!`.
        let cleaned = read::clean(trimmed);
        let (exception, path) = match cleaned.strip_prefix('!') {
            Some("") => {
                return Err(IgnoreError::EmptyException {
                    pattern: trimmed.to_owned(),
                    line,
                });
            }
            Some(rest) => (true, rest),
            None => (false, cleaned.as_str()),
        };
        let glob = glob::compile(path).map_err(|reason| IgnoreError::InvalidPattern {
            pattern: trimmed.to_owned(),
            line,
            reason,
        })?;
        Ok(Some(Rule { exception, glob }))
    }
}

/// Strips what [`Matcher::is_excluded`] ignores from a path, or returns
/// `None` for the context root.
fn context_path(path: &str) -> Option<&str> {
    let mut path = path.trim_end_matches('/');
    while let Some(rest) = path.strip_prefix("./").or_else(|| path.strip_prefix('/')) {
        path = rest;
    }
    if path.is_empty() || path == "." {
        return None;
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(text: &str) -> Matcher {
        match Matcher::from_text(text) {
            Ok(matcher) => matcher,
            Err(error) => panic!("{text:?} was rejected: {error}"),
        }
    }

    #[test]
    fn read_patterns_normalises_lines() {
        let text = "\u{feff}# comment\n\n  /build/  \n! ./keep//me\n!\nfoo/../bar\n";
        assert_eq!(read_patterns(text), vec!["build", "!keep/me", "!", "bar"]);
    }

    #[test]
    fn no_patterns_exclude_nothing() {
        let matcher = matcher("");
        assert!(!matcher.is_excluded("a"));
        assert!(!matcher.is_excluded("a/b"));
    }

    #[test]
    fn pattern_excludes_whole_subtree() {
        let matcher = matcher("node_modules");
        assert!(matcher.is_excluded("node_modules"));
        assert!(matcher.is_excluded("node_modules/a/b.js"));
        assert!(!matcher.is_excluded("src/node_modules"));
        assert!(!matcher.is_excluded("node_modules_x"));
    }

    #[test]
    fn last_matching_line_decides() {
        let matcher = matcher("*.md\n!README*.md\nREADME-secret.md");
        assert!(matcher.is_excluded("CHANGES.md"));
        assert!(!matcher.is_excluded("README.md"));
        assert!(matcher.is_excluded("README-secret.md"));
    }

    #[test]
    fn exception_before_pattern_has_no_effect() {
        let matcher = matcher("!keep.go\n*.go");
        assert!(matcher.is_excluded("keep.go"));
    }

    #[test]
    fn exception_reincludes_below_excluded_dir() {
        let matcher = matcher("docs\n!docs/keep");
        assert!(matcher.is_excluded("docs/other.md"));
        assert!(!matcher.is_excluded("docs/keep"));
        assert!(!matcher.is_excluded("docs/keep/a.txt"));
    }

    #[test]
    fn context_root_is_never_excluded() {
        let matcher = matcher("*\n**\n.");
        assert!(!matcher.is_excluded("."));
        assert!(!matcher.is_excluded(""));
        assert!(!matcher.is_excluded("./"));
    }

    #[test]
    fn path_decorations_are_ignored() {
        let matcher = matcher("dir/*.txt");
        assert!(matcher.is_excluded("./dir/a.txt"));
        assert!(matcher.is_excluded("/dir/a.txt"));
        assert!(matcher.is_excluded("dir/a.txt/"));
    }

    #[test]
    fn new_accepts_read_patterns() {
        let patterns = read_patterns("*.go\n!keep.go\n");
        let matcher = match Matcher::new(&patterns) {
            Ok(matcher) => matcher,
            Err(error) => panic!("{patterns:?} were rejected: {error}"),
        };
        assert!(matcher.is_excluded("main.go"));
        assert!(!matcher.is_excluded("keep.go"));
    }

    #[test]
    fn new_skips_blank_and_cleans_patterns() {
        let matcher = match Matcher::new(&["  ", "", " ./docs/ "]) {
            Ok(matcher) => matcher,
            Err(error) => panic!("rejected: {error}"),
        };
        assert_eq!(matcher.rules.len(), 1);
        assert!(matcher.is_excluded("docs/a"));
    }

    #[test]
    fn can_skip_excluded_dir_without_exceptions() {
        let matcher = matcher("target\n*.log");
        assert!(matcher.can_skip_dir("target"));
        assert!(matcher.can_skip_dir("target/debug"));
    }

    #[test]
    fn cannot_skip_included_dir() {
        let matcher = matcher("target");
        assert!(!matcher.can_skip_dir("src"));
        assert!(!matcher.can_skip_dir("."));
        assert!(!matcher.can_skip_dir(""));
    }

    #[test]
    fn cannot_skip_dir_with_exception_below() {
        let matcher = matcher("docs\n!docs/keep");
        assert!(!matcher.can_skip_dir("docs"));
        assert!(matcher.can_skip_dir("docs/other"));
    }

    #[test]
    fn cannot_skip_dir_with_wildcard_exception() {
        let matcher = matcher("**\n!**/*.go");
        assert!(!matcher.can_skip_dir("vendor"));
        assert!(!matcher.can_skip_dir("vendor/deep/er"));
    }

    #[test]
    fn can_skip_dir_when_exception_points_elsewhere() {
        let matcher = matcher("*\n!src");
        assert!(matcher.can_skip_dir("target"));
        assert!(!matcher.can_skip_dir("src"));
    }

    #[test]
    fn can_skip_dir_when_exception_comes_first() {
        let matcher = matcher("!docs/keep\ndocs");
        assert!(matcher.can_skip_dir("docs"));
    }

    #[test]
    fn cannot_skip_dir_reincluded_by_exception() {
        let matcher = matcher("docs\n!docs");
        assert!(!matcher.can_skip_dir("docs"));
    }

    #[test]
    fn cannot_skip_dir_with_prefix_exception_below() {
        let matcher = matcher("**\n!build/out/**");
        assert!(!matcher.can_skip_dir("build"));
        assert!(matcher.can_skip_dir("other"));
    }

    #[test]
    fn can_skip_dir_errs_towards_false() {
        let matcher = matcher("docs\n!docs/a\ndocs/*");
        assert!(matcher.is_excluded("docs/a"));
        assert!(!matcher.can_skip_dir("docs"));
    }

    #[test]
    fn lone_exception_is_rejected_with_line() {
        assert_eq!(
            Matcher::from_text("a\n\n!  \n"),
            Err(IgnoreError::EmptyException {
                pattern: "!".to_owned(),
                line: Some(3)
            })
        );
    }

    #[test]
    fn exception_of_root_is_rejected() {
        assert_eq!(
            Matcher::from_text("!/"),
            Err(IgnoreError::EmptyException {
                pattern: "!/".to_owned(),
                line: Some(1)
            })
        );
    }

    #[test]
    fn lone_exception_is_rejected_by_new() {
        assert_eq!(
            Matcher::new(&["a", " ! "]),
            Err(IgnoreError::EmptyException {
                pattern: "!".to_owned(),
                line: None
            })
        );
    }

    #[test]
    fn invalid_glob_is_rejected_with_pattern_and_line() {
        assert_eq!(
            Matcher::from_text("ok\n!src/[x-]\n"),
            Err(IgnoreError::InvalidPattern {
                pattern: "!src/[x-]".to_owned(),
                line: Some(2),
                reason: PatternSyntax::UnescapedDash,
            })
        );
    }

    #[test]
    fn invalid_pattern_message_names_line_pattern_and_fix() {
        let error = IgnoreError::InvalidPattern {
            pattern: "a\\".to_owned(),
            line: Some(7),
            reason: PatternSyntax::TrailingBackslash,
        };
        let message = error.to_string();
        assert!(
            message.starts_with("line 7: invalid pattern `a\\`"),
            "{message}"
        );
        assert!(message.contains("write `\\\\`"), "{message}");
    }

    #[test]
    fn message_without_line_has_no_prefix() {
        let message = IgnoreError::EmptyException {
            pattern: "!".to_owned(),
            line: None,
        }
        .to_string();
        assert!(message.starts_with("invalid pattern `!`"), "{message}");
    }
}
