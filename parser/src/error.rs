//! The error type of Dockerfile parsing.

use std::fmt;

/// A Dockerfile that cannot be parsed, with where and why.
///
/// `line` and `column` are 1-based. `column` is counted in characters and is
/// 1 when the error concerns a whole line. `file` is filled in by the caller
/// that knows the path, through [`ParseError::with_file`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// Path or name of the Dockerfile, when known.
    pub file: Option<String>,
    /// Line of the problem.
    pub line: usize,
    /// Column of the problem.
    pub column: usize,
    /// Description of the problem, naming the offending text.
    pub message: String,
    /// How to fix it, when there is a likely fix.
    pub hint: Option<String>,
}

impl ParseError {
    /// Creates an error at `line` and `column` with no hint.
    pub fn new(line: usize, column: usize, message: impl Into<String>) -> Self {
        ParseError {
            file: None,
            line,
            column,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint on how to fix the input.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Names the file the error was found in.
    #[must_use]
    pub fn with_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_deref().unwrap_or("Dockerfile");
        write!(f, "{file}:{}:{}: {}", self.line, self.column, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Something accepted but probably not meant, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// Line the warning is about (1-based).
    pub line: usize,
    /// Description of the suspicious input and of what to do instead.
    pub message: String,
}
