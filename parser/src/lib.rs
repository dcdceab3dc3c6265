//! Dockerfile parsing for forge: text to a syntax tree with line spans,
//! then to typed instructions; shell-word and variable expansion; and
//! `.dockerignore` pattern reading and matching.
//!
//! The crate reads only the text it is given and never prints. Warnings
//! come back as data for the caller to show.

pub mod dockerignore;
pub mod error;
pub mod instructions;
pub mod node;
pub mod shell;
pub mod syntax;

pub use error::{ParseError, Warning};
pub use node::{Heredoc, Node, Span};
