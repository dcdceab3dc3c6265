//! Turns a command's result into an exit code, printing the error chain
//! once, at the edge.
//!
//! Exit codes: 0 success, 1 the command failed (invalid input, a failed
//! step, an I/O error), 2 invalid command-line usage (clap's own code).

use std::io;
use std::process::ExitCode;

/// Exit code for a command that failed.
pub const FAILURE: u8 = 1;

/// Prints `result`'s error with its causes, if any, and returns the exit code.
///
/// A broken pipe on standard output (`forge parse | head`) is a normal end,
/// not a failure.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::SUCCESS;
    };
    let broken_pipe = error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::SUCCESS;
    }

    #[allow(clippy::print_stderr)]
    {
        eprintln!("error: {error}");
        for cause in error.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
    }
    ExitCode::from(FAILURE)
}
