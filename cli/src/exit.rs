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
        for line in message_lines(&error) {
            eprintln!("{line}");
        }
    }
    ExitCode::from(FAILURE)
}

/// Returns the lines that report `error`: the error, then each cause that
/// adds something. Library errors often quote their cause's text in their
/// own message, so a cause whose text the line above already contains is
/// left out.
pub(crate) fn message_lines(error: &anyhow::Error) -> Vec<String> {
    let mut lines = vec![format!("error: {error}")];
    let mut previous = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !previous.contains(&text) {
            lines.push(format!("  caused by: {text}"));
        }
        previous = text;
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to import `a.tar`: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("rejected tar entry `../x`")]
    struct Inner;

    #[test]
    fn message_skips_repeated_cause() {
        let error = anyhow::Error::new(Outer(Inner));
        assert_eq!(
            message_lines(&error),
            ["error: failed to import `a.tar`: rejected tar entry `../x`"]
        );
    }

    #[test]
    fn message_keeps_new_cause() {
        let error = anyhow::Error::new(Inner).context("cannot load the image");
        assert_eq!(
            message_lines(&error),
            [
                "error: cannot load the image",
                "  caused by: rejected tar entry `../x`"
            ]
        );
    }
}
