//! Containers from stored images: `forge run`, `ps`, `logs`, `stop`,
//! `kill` and `rm`.
//!
//! [`create`] turns an image and [`RunOptions`] into a container record
//! under `ROOT/forge/containers/<id>/` (see [`state`]). [`supervise`] then
//! starts the command in the RUN sandbox's namespaces over an overlay of
//! the image's unpacked layers and the container's own upper folder. It
//! stays with the command until it exits. Meanwhile it copies output to
//! the log and to an attached terminal, passes that terminal's window size
//! changes on, serves published ports and keeps the cgroup limits, and at
//! the end it records the exit code. The CLI runs the supervisor in its
//! own process for `run`, or in a detached `forge` process for `run -d`.
//!
//! NOTE: `forge prune` does not yet add `Store::container_image_roots` to
//! its roots, so it may remove the unpacked layers of an image whose name
//! was removed while a container of it still exists.

mod cgroup;
mod control;
mod forward;
mod logs;
mod names;
mod options;
#[cfg(target_os = "linux")]
mod resize;
pub(crate) mod seed;
pub mod state;
#[cfg(target_os = "linux")]
mod supervise;

use std::io;
use std::path::{Path, PathBuf};

pub use control::{kill, remove, stop};
pub use logs::{LogRecord, LogStream, read_logs};
pub use options::{
    RunOptions, VolumeSource, VolumeSpec, create, parse_memory, parse_port, parse_volume,
};
pub use state::{ContainerState, Containers, PortMapping, Status};
#[cfg(target_os = "linux")]
pub use supervise::{Attach, supervise};

/// Exit code of `run` when forge itself failed (docker's convention).
pub const EXIT_FORGE_ERROR: i32 = 125;
/// Exit code when the command exists but could not be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
/// Exit code when the command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// A failure to create, start or manage a container.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// A command-line value is invalid.
    #[error("invalid {what} `{value}`: {reason}")]
    Invalid {
        /// The option or argument.
        what: &'static str,
        /// The value given.
        value: String,
        /// The problem and its fix.
        reason: String,
    },
    /// The image could not be loaded or unpacked.
    #[error("cannot use image `{image}`")]
    Image {
        /// The image as given.
        image: String,
        /// The cause.
        #[source]
        source: Box<crate::BuildError>,
    },
    /// No container has this name, id or id prefix.
    #[error("no such container `{key}`; list containers with `forge ps -a`")]
    NotFound {
        /// The name or id given.
        key: String,
    },
    /// An id prefix matches several containers.
    #[error("container id prefix `{key}` matches {count} containers; give more digits")]
    Ambiguous {
        /// The prefix given.
        key: String,
        /// The number of matches.
        count: usize,
    },
    /// The name is taken.
    #[error(
        "container name `{name}` is already used by container {id}; remove it with \
         `forge rm {name}` or pick another --name"
    )]
    NameInUse {
        /// The name.
        name: String,
        /// Short id of the container that has it.
        id: String,
    },
    /// The operation needs a container in another state.
    #[error("container `{name}` {reason}")]
    State {
        /// The container's name.
        name: String,
        /// The problem, with the fix.
        reason: String,
    },
    /// A record file is damaged.
    #[error("container record `{}` is invalid: {reason}; remove the folder", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// A file operation failed.
    #[error("failed to {action} `{}`", path.display())]
    Io {
        /// The operation that failed.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup could not be set up.
    #[error("cannot apply {limit}: {reason}")]
    Cgroup {
        /// The option, such as `--memory`.
        limit: &'static str,
        /// The failure, with the path and the fix.
        reason: String,
    },
    /// Publishing a port failed.
    #[error("cannot publish {mapping}")]
    Port {
        /// The mapping, as `ps` shows it.
        mapping: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The sandbox failed to start or run the command.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// Sending a signal failed.
    #[error("failed to send signal {signal} to process {pid} of container `{name}`")]
    Signal {
        /// The container's name.
        name: String,
        /// The signal number.
        signal: i32,
        /// The host PID.
        pid: i32,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl RunnerError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> RunnerError {
        RunnerError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Returns docker's exit code for this error: 127 when the command was
    /// not found, 126 when it could not be executed, else 125.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunnerError::Sandbox(crate::sandbox::SandboxError::Exec { source, .. }) => {
                match source.raw_os_error() {
                    Some(libc::ENOENT) | Some(libc::ENOTDIR) => EXIT_NOT_FOUND,
                    _ => EXIT_NOT_EXECUTABLE,
                }
            }
            _ => EXIT_FORGE_ERROR,
        }
    }
}

/// Signal names and numbers on Linux (x86-64 and arm64 share them).
const SIGNALS: [(&str, i32); 31] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Parses a signal given as a name (`SIGTERM`, `term`) or a number.
///
/// # Errors
///
/// [`RunnerError::Invalid`] naming the value.
pub fn parse_signal(text: &str) -> Result<i32, RunnerError> {
    let invalid = || RunnerError::Invalid {
        what: "signal",
        value: text.to_string(),
        reason: "expected a name such as SIGTERM or KILL, or a number from 1 to 64".to_string(),
    };
    if let Ok(number) = text.parse::<i32>() {
        return if (1..=64).contains(&number) {
            Ok(number)
        } else {
            Err(invalid())
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(candidate, _)| *candidate == name)
        .map(|(_, number)| *number)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_and_numbers() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("kill").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("SIGWINCH").unwrap(), libc::SIGWINCH);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn exec_errors_map_to_docker_codes() {
        let exec = |errno| {
            RunnerError::Sandbox(crate::sandbox::SandboxError::Exec {
                command: "x".to_string(),
                reason: String::new(),
                source: io::Error::from_raw_os_error(errno),
            })
        };
        assert_eq!(exec(libc::ENOENT).exit_code(), 127);
        assert_eq!(exec(libc::EACCES).exit_code(), 126);
        let other = RunnerError::NotFound { key: "k".into() };
        assert_eq!(other.exit_code(), 125);
    }
}
