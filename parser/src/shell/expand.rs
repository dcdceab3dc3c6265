//! The expansion itself: a cursor over the characters of one text that
//! removes quotes, applies escapes, expands `$` forms and splits words.

use std::collections::BTreeSet;

use super::pattern::Pattern;
use super::{Environment, ExpandError, Expansion, Lexer};

/// Collects the words of [`Lexer::expand_words`].
///
/// `in_word` is set once anything, even an empty quoted string, has been
/// added since the last separator. A word is only emitted when it is not
/// empty.
#[derive(Default)]
struct WordSplitter {
    words: Vec<String>,
    current: String,
    in_word: bool,
}

impl WordSplitter {
    /// Adds a character that separates words when it is whitespace.
    fn push_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.current.is_empty() {
                self.words.push(std::mem::take(&mut self.current));
                self.in_word = false;
            }
        } else {
            self.push_raw_char(c);
        }
    }

    /// Adds a character that never separates words.
    fn push_raw_char(&mut self, c: char) {
        self.current.push(c);
        self.in_word = true;
    }

    /// Adds the value of an unquoted expansion, split on whitespace.
    fn push_str(&mut self, text: &str) {
        for c in text.chars() {
            self.push_char(c);
        }
    }

    /// Adds quoted text as part of the current word.
    fn push_raw_str(&mut self, text: &str) {
        self.current.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.words.push(self.current);
        }
        self.words
    }
}

/// The state of one expansion: the text as characters and a cursor.
pub(super) struct Expander<'a> {
    lexer: &'a Lexer,
    env: &'a dyn Environment,
    text: &'a str,
    chars: Vec<char>,
    /// Index in `chars` of the next character to read.
    index: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl<'a> Expander<'a> {
    pub(super) fn new(lexer: &'a Lexer, env: &'a dyn Environment, text: &'a str) -> Self {
        Expander {
            lexer,
            env,
            text,
            chars: text.chars().collect(),
            index: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        }
    }

    /// Expands the whole text.
    pub(super) fn run(mut self) -> Result<Expansion, ExpandError> {
        let (word, words) = self.process_until(None, self.lexer.raw_escapes)?;
        Ok(Expansion {
            word,
            words,
            matched: self.matched,
            unmatched: self.unmatched,
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.index).copied()
    }

    fn next_char(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.index += 1;
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.index >= self.chars.len()
    }

    /// Returns the 1-based position of the character at `index`.
    fn position(index: usize) -> usize {
        index + 1
    }

    /// Processes text up to `stop`, which is consumed, or up to the end of
    /// the text when `stop` is `None`. Returns the word and its split form.
    ///
    /// With `raw_escapes` the escape character is kept in the output next to
    /// the character it escapes. Patterns are read this way, so that their
    /// escapes reach the pattern compiler.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = WordSplitter::default();
        let escape = self.lexer.escape;
        let quotes_special = !self.lexer.skip_quotes;

        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.index += 1;
                return Ok((result, words.finish()));
            }

            if c == '$' {
                let value = self.process_dollar()?;
                words.push_str(&value);
                result.push_str(&value);
                continue;
            }
            if quotes_special && (c == '\'' || c == '"') {
                let value = if c == '\'' {
                    self.process_single_quote()?
                } else {
                    self.process_double_quote(raw_escapes)?
                };
                words.push_raw_str(&value);
                result.push_str(&value);
                continue;
            }

            self.index += 1;
            if c != escape {
                words.push_char(c);
                result.push(c);
                continue;
            }

            // The escape character makes the next character literal; at the
            // end of the text it escapes nothing and is dropped.
            if raw_escapes {
                words.push_raw_char(c);
                result.push(c);
            }
            let Some(escaped) = self.next_char() else {
                break;
            };
            words.push_raw_char(escaped);
            result.push(escaped);
        }

        match stop {
            // Every caller replaces this error with one about its own
            // construct, because only the caller can name what was left open.
            Some(_) => Err(ExpandError::MissingBrace {
                text: self.text.to_string(),
                position: Self::position(self.index),
            }),
            None => Ok((result, words.finish())),
        }
    }

    /// Processes a single-quoted string whose `'` is the next character.
    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        let open = self.index;
        let mut result = String::new();
        self.index += 1;
        if self.lexer.raw_quotes {
            result.push('\'');
        }

        loop {
            match self.next_char() {
                None => {
                    return Err(ExpandError::UnterminatedQuote {
                        text: self.text.to_string(),
                        position: Self::position(open),
                        quote: '\'',
                    });
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    /// Processes a double-quoted string whose `"` is the next character.
    fn process_double_quote(&mut self, raw_escapes: bool) -> Result<String, ExpandError> {
        let open = self.index;
        let escape = self.lexer.escape;
        let mut result = String::new();
        self.index += 1;
        if self.lexer.raw_quotes {
            result.push('"');
        }

        loop {
            let Some(c) = self.peek() else {
                return Err(ExpandError::UnterminatedQuote {
                    text: self.text.to_string(),
                    position: Self::position(open),
                    quote: '"',
                });
            };
            if c == '"' {
                self.index += 1;
                if self.lexer.raw_quotes {
                    result.push('"');
                }
                return Ok(result);
            }
            if c == '$' {
                let value = self.process_dollar()?;
                result.push_str(&value);
                continue;
            }

            self.index += 1;
            if c != escape {
                result.push(c);
                continue;
            }

            // Inside double quotes the escape character escapes only `"`,
            // `$` and itself. Before any other character it stays, so with
            // raw escapes it appears twice, as in BuildKit.
            if raw_escapes {
                result.push(c);
            }
            match self.peek() {
                None => {}
                Some(next) if next == '"' || next == '$' || next == escape => {
                    self.index += 1;
                    result.push(next);
                }
                Some(_) => result.push(c),
            }
        }
    }

    /// Reads a variable name, a run of digits (a positional parameter) or
    /// one special-parameter character. Returns an empty string when none
    /// starts at the cursor.
    fn read_name(&mut self) -> String {
        let mut name = String::new();

        while let Some(c) = self.peek() {
            if name.is_empty() && is_digit(c) {
                while let Some(digit) = self.peek().filter(|&d| is_digit(d)) {
                    name.push(digit);
                    self.index += 1;
                }
                return name;
            }
            if name.is_empty() && is_special_parameter(c) {
                self.index += 1;
                name.push(c);
                return name;
            }
            if !(is_letter(c) || is_digit(c) || c == '_') {
                break;
            }
            name.push(c);
            self.index += 1;
        }
        name
    }

    /// Looks `name` up and records it as matched or unmatched. Positional
    /// and special parameters and the empty name are never set and never
    /// recorded.
    fn lookup(&mut self, name: &str) -> Option<String> {
        let is_parameter = name
            .chars()
            .next()
            .is_none_or(|first| is_digit(first) || is_special_parameter(first));
        if is_parameter {
            return None;
        }

        match self.env.get(name) {
            Some(value) => {
                self.matched.insert(name.to_string());
                Some(value.to_string())
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }

    /// Processes an expansion whose `$` is the next character.
    fn process_dollar(&mut self) -> Result<String, ExpandError> {
        let dollar = self.index;
        self.index += 1;

        // `$name`, or a literal `$` when no name follows.
        if self.peek() != Some('{') {
            let name = self.read_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.lookup(&name).unwrap_or_default());
        }

        self.index += 1;
        match self.peek() {
            None => return Err(self.missing_brace(dollar)),
            Some('{' | '}' | ':') => {
                return Err(ExpandError::BadSubstitution {
                    text: self.text.to_string(),
                    position: Self::position(dollar),
                });
            }
            Some(_) => {}
        }

        let name = self.read_name();
        let operator_index = self.index;
        let Some(operator) = self.next_char() else {
            return Err(self.missing_brace(dollar));
        };

        match operator {
            '}' => Ok(self.lookup(&name).unwrap_or_default()),
            ':' => {
                // `:` makes an empty value count as unset. The character after
                // it is the operator, checked once the word is read.
                let modifier = self.next_char();
                let mut written = String::from(':');
                written.extend(modifier);
                if matches!(modifier, Some('#' | '%')) {
                    return Err(self.unsupported(operator_index, written));
                }
                self.process_operator(dollar, operator_index, &name, modifier, written, true)
            }
            '+' | '-' | '?' | '#' | '%' => self.process_operator(
                dollar,
                operator_index,
                &name,
                Some(operator),
                operator.to_string(),
                false,
            ),
            '/' => self.process_replace(dollar, &name),
            other => Err(self.unsupported(operator_index, other.to_string())),
        }
    }

    /// Processes the word and applies a `-`, `+`, `?`, `#` or `%` operator,
    /// with `null_is_unset` for the `:` forms. The word is expanded before
    /// the variable is read, also when its value is not used.
    fn process_operator(
        &mut self,
        dollar: usize,
        operator_index: usize,
        name: &str,
        operator: Option<char>,
        written: String,
        null_is_unset: bool,
    ) -> Result<String, ExpandError> {
        let is_pattern = matches!(operator, Some('#' | '%'));
        let word = self.process_word_until('}', is_pattern, dollar)?;
        let value = self.lookup(name);
        let missing = match &value {
            None => true,
            Some(value) => null_is_unset && value.is_empty(),
        };

        match operator {
            Some('-') if missing => Ok(word),
            Some('-') => Ok(value.unwrap_or_default()),
            Some('+') if missing => Ok(String::new()),
            Some('+') => Ok(word),
            Some('?') if missing => {
                let message = if !word.is_empty() {
                    word
                } else if value.is_none() {
                    "is not allowed to be unset".to_string()
                } else {
                    "is not allowed to be empty".to_string()
                };
                Err(ExpandError::Required {
                    text: self.text.to_string(),
                    position: Self::position(dollar),
                    name: name.to_string(),
                    message,
                })
            }
            Some('?') => Ok(value.unwrap_or_default()),
            Some(symbol @ ('#' | '%')) => {
                // A doubled operator (`##`, `%%`) removes the longest match.
                let (longest, pattern_text) = match word.strip_prefix(symbol) {
                    Some(rest) => (true, rest.to_string()),
                    None => (false, word),
                };
                let pattern = self.compile_pattern(&pattern_text, dollar)?;
                let value = value.unwrap_or_default();
                if symbol == '#' {
                    Ok(pattern.remove_prefix(&value, longest))
                } else {
                    Ok(pattern.remove_suffix(&value, longest))
                }
            }
            _ => Err(self.unsupported(operator_index, written)),
        }
    }

    /// Processes `${name/pattern/replacement}` and `${name//pattern/replacement}`
    /// after the first `/`.
    fn process_replace(&mut self, dollar: usize, name: &str) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.index += 1;
        }

        let pattern_text = match self.process_until(Some('/'), true) {
            Ok((pattern, _)) => pattern,
            Err(_) if self.at_end() => {
                return Err(ExpandError::MissingSlash {
                    text: self.text.to_string(),
                    position: Self::position(dollar),
                });
            }
            Err(error) => return Err(error),
        };
        // The replacement keeps its escape characters, as in BuildKit.
        let replacement = self.process_word_until('}', true, dollar)?;

        let value = self.lookup(name).unwrap_or_default();
        let pattern = self.compile_pattern(&pattern_text, dollar)?;
        Ok(pattern.replace(&value, &replacement, all))
    }

    /// Processes the word of a `${...}` form up to `stop`. Any failure that
    /// ran into the end of the text means the `${` at `dollar` is not
    /// closed, and is reported as that.
    fn process_word_until(
        &mut self,
        stop: char,
        raw_escapes: bool,
        dollar: usize,
    ) -> Result<String, ExpandError> {
        match self.process_until(Some(stop), raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.at_end() => Err(self.missing_brace(dollar)),
            Err(error) => Err(error),
        }
    }

    fn compile_pattern(&self, pattern: &str, dollar: usize) -> Result<Pattern, ExpandError> {
        Pattern::compile(pattern, self.lexer.escape).map_err(|source| ExpandError::InvalidPattern {
            text: self.text.to_string(),
            position: Self::position(dollar),
            pattern: pattern.to_string(),
            source,
        })
    }

    fn missing_brace(&self, dollar: usize) -> ExpandError {
        ExpandError::MissingBrace {
            text: self.text.to_string(),
            position: Self::position(dollar),
        }
    }

    fn unsupported(&self, operator_index: usize, modifier: String) -> ExpandError {
        ExpandError::UnsupportedModifier {
            text: self.text.to_string(),
            position: Self::position(operator_index),
            modifier,
        }
    }
}

/// Reports whether `c` is one of the special parameters of POSIX shells
/// (`@ * # ? - $ ! 0`).
fn is_special_parameter(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

// NOTE: BuildKit uses Go's `unicode.IsLetter` (general category L) and
// `unicode.IsDigit` (category Nd). The standard library has no general
// categories, so these use the close `is_alphabetic` and `is_numeric`
// properties, which also accept letter-like marks and numbers such as `²`.
// ASCII names behave the same either way.

fn is_letter(c: char) -> bool {
    c.is_alphabetic()
}

fn is_digit(c: char) -> bool {
    c.is_numeric()
}
