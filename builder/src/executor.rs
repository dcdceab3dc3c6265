//! The seam between the build engine and the RUN sandbox.
//!
//! The engine runs RUN steps through a [`StepExecutor`], so a build can
//! use the real sandbox ([`SandboxExecutor`]), a test double, or none: a
//! build without an executor fails at the first RUN with a message that
//! names the line.

use crate::sandbox::{self, OutputSink, RunOutcome, RunSpec, SandboxError};

/// Runs the command of one RUN step.
pub trait StepExecutor: Send + Sync {
    /// Runs `spec` and streams its output to `output`.
    ///
    /// # Errors
    ///
    /// A [`SandboxError`] when the command cannot be started or the
    /// sandbox fails. A command that exits non-zero returns `Ok` with its
    /// exit code.
    fn run(&self, spec: &RunSpec, output: &mut dyn OutputSink) -> Result<RunOutcome, SandboxError>;
}

/// The executor backed by the Linux sandbox in [`crate::sandbox`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SandboxExecutor;

impl StepExecutor for SandboxExecutor {
    fn run(&self, spec: &RunSpec, output: &mut dyn OutputSink) -> Result<RunOutcome, SandboxError> {
        sandbox::run(spec, output)
    }
}
