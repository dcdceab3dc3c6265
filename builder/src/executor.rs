//! The seam between the build engine and the RUN sandbox.
//!
//! The engine runs RUN steps through a [`StepExecutor`], so a build can
//! use the real sandbox ([`SandboxExecutor`]), a test double, or none: a
//! build without an executor fails at the first RUN with a message that
//! names the line.

use crate::sandbox::{self, OutputSink, RunOutcome, RunSpec, SandboxError, Security};

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

    /// Runs `spec` with the privileges of `security`; see
    /// [`sandbox::run_with_security`].
    ///
    /// # Errors
    ///
    /// As [`StepExecutor::run`]. The default implementation runs
    /// [`Security::Sandbox`] through `run` and rejects
    /// [`Security::Insecure`] with [`SandboxError::Unsupported`].
    fn run_with_security(
        &self,
        spec: &RunSpec,
        security: Security,
        output: &mut dyn OutputSink,
    ) -> Result<RunOutcome, SandboxError> {
        match security {
            Security::Sandbox => self.run(spec, output),
            Security::Insecure => Err(SandboxError::Unsupported {
                command: spec.argv.join(" "),
                reason: "this executor cannot run RUN --security=insecure; remove the flag"
                    .to_string(),
            }),
        }
    }
}

/// The executor backed by the Linux sandbox in [`crate::sandbox`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SandboxExecutor;

impl StepExecutor for SandboxExecutor {
    fn run(&self, spec: &RunSpec, output: &mut dyn OutputSink) -> Result<RunOutcome, SandboxError> {
        sandbox::run(spec, output)
    }

    fn run_with_security(
        &self,
        spec: &RunSpec,
        security: Security,
        output: &mut dyn OutputSink,
    ) -> Result<RunOutcome, SandboxError> {
        sandbox::run_with_security(spec, security, output)
    }
}
