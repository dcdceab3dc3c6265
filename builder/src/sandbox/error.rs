//! Errors of the RUN sandbox.

use std::io;
use std::path::PathBuf;

/// A failure to set up, run or tear down a RUN sandbox.
///
/// Every variant carries the step's command (`command`) so a message shows
/// which RUN failed. A command that runs and exits non-zero is not an
/// error; see [`super::RunOutcome`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The sandbox cannot run on this system or for this caller.
    #[error("cannot run `{command}` in a sandbox: {reason}")]
    Unsupported {
        /// The step's command.
        command: String,
        /// Why, with the fix.
        reason: String,
    },
    /// The [`super::RunSpec`] is not usable as given.
    #[error("invalid RUN step `{command}`: {reason}")]
    InvalidSpec {
        /// The step's command.
        command: String,
        /// Description of the problem, naming the value.
        reason: String,
    },
    /// The `USER` value does not resolve in the image.
    #[error("cannot run `{command}` as user `{user}`: {reason}")]
    User {
        /// The step's command.
        command: String,
        /// The `USER` value.
        user: String,
        /// Why, with the fix.
        reason: String,
    },
    /// A host-side file operation failed while preparing the sandbox.
    #[error("cannot run `{command}`: failed to {action} `{}`: {source}", path.display())]
    Prepare {
        /// The step's command.
        command: String,
        /// Operation that failed.
        action: String,
        /// The host path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A mount or other setup call inside the sandbox failed.
    #[error("cannot run `{command}`: failed to {step}: {source}{hint}")]
    Setup {
        /// The step's command.
        command: String,
        /// The failed step, naming the mount or path.
        step: String,
        /// The cause.
        #[source]
        source: io::Error,
        /// A sentence with a likely fix, starting with "; " or empty.
        hint: String,
    },
    /// The command's program was not found or could not be executed.
    #[error("cannot run `{command}`: {reason}")]
    Exec {
        /// The step's command.
        command: String,
        /// Description of the failure, naming the program and the PATH searched.
        reason: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Starting, mapping ids for or waiting for the sandbox failed.
    #[error("cannot run `{command}`: failed to {action}: {source}{hint}")]
    Process {
        /// The step's command.
        command: String,
        /// Operation that failed.
        action: String,
        /// The cause.
        #[source]
        source: io::Error,
        /// A sentence with a likely fix, starting with "; " or empty.
        hint: String,
    },
    /// forge received SIGINT or SIGTERM while the command ran; the sandbox
    /// was killed and is gone.
    #[error("`{command}` was interrupted by signal {signal}; the sandbox was stopped")]
    Interrupted {
        /// The step's command.
        command: String,
        /// The signal forge received.
        signal: i32,
        /// The last lines of the command's output.
        tail: Vec<String>,
    },
}
