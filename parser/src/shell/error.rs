//! The error type of shell-word expansion.

use super::pattern::PatternError;

/// A word that cannot be expanded.
///
/// Every variant carries `text`, the whole text given to the lexer, and
/// `position`, the 1-based character position in `text` of the construct at
/// fault: the opening quote, the `$` of the expansion, or the modifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// A single or double quote is never closed.
    #[error(
        "unterminated {} quote at position {position} in {text:?}; add the closing {quote}",
        quote_name(*quote)
    )]
    UnterminatedQuote {
        /// The text being expanded.
        text: String,
        /// Position of the opening quote.
        position: usize,
        /// The quote character, `'` or `"`.
        quote: char,
    },

    /// A `${` has no closing `}`.
    #[error(
        "missing '}}' for the expansion at position {position} in {text:?}; close it with '}}', or escape the '$' to keep it literal"
    )]
    MissingBrace {
        /// The text being expanded.
        text: String,
        /// Position of the `$`.
        position: usize,
    },

    /// `${` is followed by `}`, `{` or `:` instead of a variable name.
    #[error(
        "bad substitution at position {position} in {text:?}: '${{' must be followed by a variable name; escape the '$' to keep it literal"
    )]
    BadSubstitution {
        /// The text being expanded.
        text: String,
        /// Position of the `$`.
        position: usize,
    },

    /// `${name` is followed by an operator that is not supported.
    #[error(
        "unsupported modifier {modifier:?} in substitution at position {position} in {text:?}; use one of :- - :+ + :? ? # ## % %% / //"
    )]
    UnsupportedModifier {
        /// The text being expanded.
        text: String,
        /// Position of the modifier.
        position: usize,
        /// The modifier as written, such as `:=` or `.`.
        modifier: String,
    },

    /// `${name/pattern` has no `/` before the replacement.
    #[error(
        "missing '/' after the pattern of the substitution at position {position} in {text:?}; write ${{name/pattern/replacement}}"
    )]
    MissingSlash {
        /// The text being expanded.
        text: String,
        /// Position of the `$`.
        position: usize,
    },

    /// `${name?message}` found the variable unset, or `${name:?message}`
    /// found it unset or empty.
    #[error(
        "{name}: {message} (required by the expansion at position {position} in {text:?}); give {name} a value with ARG, ENV or --build-arg"
    )]
    Required {
        /// The text being expanded.
        text: String,
        /// Position of the `$`.
        position: usize,
        /// Name of the variable.
        name: String,
        /// The message written after `?`, or "is not allowed to be unset"
        /// or "is not allowed to be empty" when none was written.
        message: String,
    },

    /// The pattern of a `#`, `%` or `/` operator does not compile.
    #[error(
        "invalid pattern {pattern:?} in substitution at position {position} in {text:?}: {source}"
    )]
    InvalidPattern {
        /// The text being expanded.
        text: String,
        /// Position of the `$`.
        position: usize,
        /// The pattern after its own expansions.
        pattern: String,
        /// The reason the pattern was rejected.
        #[source]
        source: PatternError,
    },
}

impl ExpandError {
    /// Returns the text the error was found in.
    pub fn text(&self) -> &str {
        match self {
            ExpandError::UnterminatedQuote { text, .. }
            | ExpandError::MissingBrace { text, .. }
            | ExpandError::BadSubstitution { text, .. }
            | ExpandError::UnsupportedModifier { text, .. }
            | ExpandError::MissingSlash { text, .. }
            | ExpandError::Required { text, .. }
            | ExpandError::InvalidPattern { text, .. } => text,
        }
    }

    /// Returns the 1-based character position of the fault in
    /// [`text`](Self::text).
    pub fn position(&self) -> usize {
        match self {
            ExpandError::UnterminatedQuote { position, .. }
            | ExpandError::MissingBrace { position, .. }
            | ExpandError::BadSubstitution { position, .. }
            | ExpandError::UnsupportedModifier { position, .. }
            | ExpandError::MissingSlash { position, .. }
            | ExpandError::Required { position, .. }
            | ExpandError::InvalidPattern { position, .. } => *position,
        }
    }
}

fn quote_name(quote: char) -> &'static str {
    if quote == '\'' { "single" } else { "double" }
}
