//! Shell-word lexing and variable expansion with Dockerfile semantics.
//!
//! The builder expands instruction arguments with [`Lexer`]. The rules are
//! those of BuildKit's `frontend/dockerfile/shell/lex.go`, which mimics a
//! POSIX shell without running anything:
//!
//! * single quotes keep every character literally;
//! * double quotes keep every character but `$` expansions and the escape
//!   character, which there escapes only `"`, `$` and itself;
//! * outside quotes the escape character (`\`, or `` ` `` after
//!   `# escape=`` ` ``) makes the next character literal, and at the end of
//!   the text it is dropped;
//! * `$name`, `${name}` and `${name<op>word}` with the operators `:-` `-`
//!   `:+` `+` `:?` `?` `#` `##` `%` `%%` `/` `//` expand variables, and the
//!   word after an operator may hold quotes and further expansions;
//! * positional (`$1`, `${10}`) and special (`$@ $* $# $? $- $$ $! $0`)
//!   parameters are never set, and a `$` before any other character that
//!   cannot start a name stays literal.
//!
//! [`Lexer::expand_words`] also splits the result into words: unquoted
//! whitespace separates words, the value of an unquoted expansion is split
//! on whitespace, and a quoted one is not.

mod error;
mod expand;
mod pattern;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

pub use error::ExpandError;
pub use pattern::PatternError;

use expand::Expander;

/// Variables that an expansion can read.
///
/// Names are compared exactly, as on Linux.
pub trait Environment {
    /// Returns the value of `name`, or `None` when it is not set. A variable
    /// set to the empty string returns `Some("")`.
    fn get(&self, name: &str) -> Option<&str>;
}

impl<S: BuildHasher> Environment for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl Environment for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// A list of `(name, value)` pairs in which the last entry of a name wins,
/// as in an environment built up by successive `ENV` instructions.
impl<K: AsRef<str>, V: AsRef<str>> Environment for [(K, V)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(key, _)| key.as_ref() == name)
            .map(|(_, value)| value.as_ref())
    }
}

/// The same lookup as for a slice: the last entry of a name wins.
impl<K: AsRef<str>, V: AsRef<str>> Environment for Vec<(K, V)> {
    fn get(&self, name: &str) -> Option<&str> {
        Environment::get(self.as_slice(), name)
    }
}

/// The same lookup as for a slice: the last entry of a name wins.
impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Environment for [(K, V); N] {
    fn get(&self, name: &str) -> Option<&str> {
        Environment::get(self.as_slice(), name)
    }
}

/// A reference reads the environment it points to, so that a slice, which
/// cannot itself become a `&dyn Environment`, can be passed as `&slice`.
impl<T: Environment + ?Sized> Environment for &T {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

/// Expands quotes, escapes and variables in Dockerfile instruction
/// arguments.
///
/// A `Lexer` holds only settings, so one value can expand any number of
/// texts, also from several threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_quotes: bool,
}

impl Default for Lexer {
    /// Creates a lexer with `\` as the escape character.
    fn default() -> Self {
        Lexer::new('\\')
    }
}

/// The result of expanding one text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expansion {
    /// The text with quotes removed and variables expanded, whitespace kept.
    pub word: String,
    /// The same text split into words.
    pub words: Vec<String>,
    /// Names of the variables read that were set.
    pub matched: BTreeSet<String>,
    /// Names of the variables read that were not set.
    pub unmatched: BTreeSet<String>,
}

impl Expansion {
    /// Returns the names of all variables read, set or not.
    pub fn names(&self) -> BTreeSet<String> {
        self.matched.union(&self.unmatched).cloned().collect()
    }
}

impl Lexer {
    /// Creates a lexer whose escape character is `escape`: `\` by default,
    /// or `` ` `` when the Dockerfile has `# escape=`` ` ``.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_quotes: false,
        }
    }

    /// Returns the escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Keeps quote characters in the output instead of removing them. Quotes
    /// still group text and stop expansion inside single quotes.
    #[must_use]
    pub fn with_raw_quotes(mut self, raw_quotes: bool) -> Self {
        self.raw_quotes = raw_quotes;
        self
    }

    /// Keeps escape characters in the output instead of removing them. The
    /// escaped character still loses its special meaning.
    #[must_use]
    pub fn with_raw_escapes(mut self, raw_escapes: bool) -> Self {
        self.raw_escapes = raw_escapes;
        self
    }

    /// Treats quote characters as ordinary characters, as for the body of a
    /// heredoc, where only variables and escapes are processed.
    #[must_use]
    pub fn with_skip_quotes(mut self, skip_quotes: bool) -> Self {
        self.skip_quotes = skip_quotes;
        self
    }

    /// Expands `text` into one word: quotes are removed, escapes applied
    /// and variables replaced, and whitespace is kept.
    ///
    /// # Errors
    ///
    /// Returns [`ExpandError`] for an unterminated quote or `${`, a malformed
    /// or unsupported `${...}` form, an invalid pattern, or a `${name?}` or
    /// `${name:?}` whose variable is missing.
    pub fn expand_word(&self, text: &str, env: &dyn Environment) -> Result<String, ExpandError> {
        Ok(self.expand(text, env)?.word)
    }

    /// Expands `text` into a list of words, split on unquoted whitespace and
    /// on whitespace inside the values of unquoted expansions. Empty words
    /// are dropped, so `""` alone yields no word.
    ///
    /// # Errors
    ///
    /// The same as [`expand_word`](Self::expand_word).
    pub fn expand_words(
        &self,
        text: &str,
        env: &dyn Environment,
    ) -> Result<Vec<String>, ExpandError> {
        Ok(self.expand(text, env)?.words)
    }

    /// Expands `text` like [`expand_word`](Self::expand_word) and also
    /// returns the names of the variables it read, whether they were set or
    /// not. Positional and special parameters are not included.
    ///
    /// Every variable named in the text is read, also inside an operator
    /// word whose value ends up unused, such as `$B` in `${A:-$B}` with `A`
    /// set.
    ///
    /// # Errors
    ///
    /// The same as [`expand_word`](Self::expand_word).
    pub fn expand_word_with_names(
        &self,
        text: &str,
        env: &dyn Environment,
    ) -> Result<(String, BTreeSet<String>), ExpandError> {
        let expansion = self.expand(text, env)?;
        let names = expansion.names();
        Ok((expansion.word, names))
    }

    /// Expands `text` once and returns the word, the split words and the
    /// variables read, split into those that were set and those that were
    /// not.
    ///
    /// # Errors
    ///
    /// The same as [`expand_word`](Self::expand_word).
    pub fn expand(&self, text: &str, env: &dyn Environment) -> Result<Expansion, ExpandError> {
        Expander::new(self, env, text).run()
    }
}

#[cfg(test)]
mod tests;
