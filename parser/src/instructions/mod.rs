//! Second parsing stage: [`Node`]s to typed instructions grouped in build
//! stages, with every flag read and checked.
//!
//! The rules follow BuildKit's Dockerfile frontend. Values that may hold
//! build variables (`$VAR`, `${VAR}`) are kept as written for the builder
//! to expand. A value that needs a type is checked here when it has no
//! variable. Otherwise it is kept as [`Expandable::Unexpanded`].

mod build;
mod commands;
mod flags;
mod mount;
mod suggest;
#[cfg(test)]
mod tests;
mod types;
mod values;

pub use crate::syntax::Directives;
pub use build::{from_syntax, parse};
pub use mount::{Mount, MountError, MountType, Sharing};
pub use types::{
    Add, Arg, ArgDefinition, CommandLine, Copy, Dockerfile, GlobalArg, Healthcheck, HealthcheckCmd,
    Instruction, InstructionKind, KeyValue, Network, Run, Security, Source, Stage, User,
};
pub use values::{
    Expandable, FileMode, PortRange, Protocol, Word, check_checksum, check_signal, has_variable,
    parse_duration, parse_size,
};

/// A problem found while typing one instruction, before it is placed in
/// the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Message naming the offending value.
    pub message: String,
    /// Likely fix, when there is one.
    pub hint: Option<String>,
    /// Text of the instruction to point the column at, such as the flag.
    pub needle: Option<String>,
}

impl Problem {
    /// Creates a problem about the instruction as a whole.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            hint: None,
            needle: None,
        }
    }

    /// Creates a problem about `needle`, a piece of the instruction's text.
    pub(crate) fn at(message: impl Into<String>, needle: &str) -> Self {
        Problem {
            message: message.into(),
            hint: None,
            needle: Some(needle.to_string()),
        }
    }

    /// Adds a hint on how to fix the input.
    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}
