//! Long-running sandboxes for `forge run`: the same namespaces, overlay and
//! init as a RUN step, but with the caller's standard streams or a terminal
//! of the container's own devpts, and cgroups joined before the command
//! starts. The caller watches the init and collects the exit status when it
//! ends.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use super::child::{self, REPORT_SIZE, Report, TerminalSpec};
use super::linux::{self, Prepared, Reaper};
use super::prepare::StateDir;
use super::signals::Watch;
use super::terminal;
use super::{Network, RunOutcome, RunSpec, SandboxError};

/// Standard streams and process settings of a launched sandbox.
#[derive(Debug)]
pub struct LaunchIo {
    /// Standard input, output and error of the command.
    pub streams: CommandStreams,
    /// `cgroup.procs` files that receive the sandbox init's PID before the
    /// command starts, so the command and its children run in those cgroups.
    pub cgroup_procs: Vec<PathBuf>,
}

/// The source of the command's standard streams.
#[derive(Debug)]
pub enum CommandStreams {
    /// Descriptors of the caller.
    Files {
        /// Standard input of the command.
        stdin: OwnedFd,
        /// Standard output of the command.
        stdout: OwnedFd,
        /// Standard error of the command.
        stderr: OwnedFd,
    },
    /// A new terminal of the container's own devpts instance, as docker
    /// gives `run -t`. The command finds it at `/dev/pts/0` and
    /// `/dev/console`, and it is the controlling terminal of the command's
    /// session. [`Launched::take_terminal`] returns its master.
    Terminal {
        /// Window size of the terminal when the command starts; `None`
        /// leaves it at 0x0.
        window_size: Option<rustix::termios::Winsize>,
    },
}

/// A running sandbox started by [`launch`]. Dropping it kills the sandbox.
pub struct Launched {
    command: String,
    program: String,
    path_var: String,
    candidates: Vec<String>,
    rootless: bool,
    steps: Vec<super::plan::Step>,
    reaper: Reaper,
    pidfd: OwnedFd,
    report: OwnedFd,
    terminal: Option<OwnedFd>,
    _state: StateDir,
}

impl std::fmt::Debug for Launched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launched")
            .field("command", &self.command)
            .field("pid", &self.reaper.pid)
            .finish_non_exhaustive()
    }
}

impl Launched {
    /// Returns the host PID of the sandbox init, PID 1 in its namespace.
    pub fn pid(&self) -> i32 {
        self.reaper.pid
    }

    /// Returns a pidfd of the init that becomes readable when it exits.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Returns the master of the terminal of [`CommandStreams::Terminal`]
    /// on the first call, else `None`.
    pub fn take_terminal(&mut self) -> Option<OwnedFd> {
        self.terminal.take()
    }

    /// Sends `signal` to the init, which forwards SIGINT, SIGTERM, SIGHUP,
    /// SIGQUIT, SIGUSR1 and SIGUSR2 to the command; SIGKILL ends the
    /// whole sandbox.
    pub fn signal(&self, signal: i32) {
        self.reaper.signal(signal);
    }

    /// Waits for the init to exit and returns how the command ended. An
    /// init killed by SIGKILL counts as a command killed by SIGKILL.
    ///
    /// # Errors
    ///
    /// [`SandboxError::Setup`] when a mount or the command's setup failed,
    /// [`SandboxError::Exec`] when the program was not found or could not
    /// be executed, [`SandboxError::Process`] when waiting failed.
    pub fn wait(mut self) -> Result<RunOutcome, SandboxError> {
        let process_error = |action: &str, source: io::Error| SandboxError::Process {
            command: self.command.clone(),
            action: action.to_string(),
            source,
            hint: String::new(),
        };
        let init_status = self
            .reaper
            .wait()
            .map_err(|e| process_error("wait for the sandbox", e))?;
        let mut reports = Vec::new();
        let mut record = [0u8; REPORT_SIZE];
        let mut filled = 0;
        loop {
            match rustix::io::read(&self.report, &mut record[filled..]) {
                Ok(0) => break,
                Ok(count) => {
                    filled += count;
                    if filled == REPORT_SIZE {
                        reports.extend(Report::decode(&record));
                        filled = 0;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(error) => {
                    return Err(process_error("read the sandbox's report", error.into()));
                }
            }
        }
        // SIGKILL from `forge stop`, `forge kill` or the OOM killer ends the
        // init before it can report, and it ends the command with it.
        if reports.is_empty()
            && libc::WIFSIGNALED(init_status)
            && libc::WTERMSIG(init_status) == libc::SIGKILL
        {
            return Ok(RunOutcome {
                exit_code: None,
                signal: Some(libc::SIGKILL),
                tail: Vec::new(),
            });
        }
        linux::interpret(
            &self.command,
            &self.program,
            &self.path_var,
            &self.candidates,
            &self.steps,
            reports,
            init_status,
            Vec::new(),
            self.rootless,
        )
    }
}

/// Starts `spec` in a new sandbox with the streams of `io` and returns
/// without waiting. `spec.upper` and `spec.work` must stay in place until
/// the sandbox has exited.
///
/// # Errors
///
/// A [`SandboxError`] naming the command and the step that failed before
/// the sandbox started: preparing mounts, resolving the user, creating the
/// namespaces, joining a cgroup or mapping ids. With
/// [`CommandStreams::Terminal`] also the error of a mount or of creating
/// the terminal, because the init reports those before the command starts.
pub fn launch(spec: &RunSpec, io: LaunchIo) -> Result<Launched, SandboxError> {
    let console = matches!(io.streams, CommandStreams::Terminal { .. });
    let Prepared {
        command,
        program,
        rootless,
        subordinate,
        state,
        mut child,
        candidates,
        path_var,
    } = linux::prepare(spec, console)?;
    let process_error = |action: &str, source: io::Error| SandboxError::Process {
        command: command.clone(),
        action: action.to_string(),
        source,
        hint: String::new(),
    };

    let (report_read, report_write) =
        linux::pipe().map_err(|e| process_error("create a pipe", e))?;
    let (sync_read, sync_write) = linux::pipe().map_err(|e| process_error("create a pipe", e))?;
    // The supervisor's end of the socket pair that carries the terminal,
    // and the descriptors that only the child needs.
    let mut terminal_socket = None;
    let child_fds = match io.streams {
        CommandStreams::Files {
            stdin,
            stdout,
            stderr,
        } => {
            child.stdin = stdin.as_raw_fd();
            child.stdout = stdout.as_raw_fd();
            child.stderr = stderr.as_raw_fd();
            vec![stdin, stdout, stderr]
        }
        CommandStreams::Terminal { window_size } => {
            let (ours, theirs) = terminal::socket_pair()
                .map_err(|e| process_error("create a socket pair for the terminal", e))?;
            child.terminal = Some(TerminalSpec {
                socket: theirs.as_raw_fd(),
                window_size: window_size.map(|size| libc::winsize {
                    ws_row: size.ws_row,
                    ws_col: size.ws_col,
                    ws_xpixel: size.ws_xpixel,
                    ws_ypixel: size.ws_ypixel,
                }),
            });
            terminal_socket = Some(ours);
            vec![theirs]
        }
    };
    child.report = report_write.as_raw_fd();
    child.sync = sync_read.as_raw_fd();

    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if spec.network == Network::None {
        flags |= libc::CLONE_NEWNET;
    }
    if rootless {
        flags |= libc::CLONE_NEWUSER;
    }
    let pid = match child::clone_process(flags) {
        Ok(0) => child::init_main(&child),
        Ok(pid) => pid,
        Err(errno) => {
            return Err(process_error(
                "create the sandbox's namespaces",
                io::Error::from_raw_os_error(errno),
            ));
        }
    };
    let reaper = Reaper { pid, reaped: false };
    drop((report_write, sync_read, child_fds));

    for procs in &io.cgroup_procs {
        fs::write(procs, pid.to_string()).map_err(|source| SandboxError::Prepare {
            command: command.clone(),
            action: "add the sandbox to the cgroup".to_string(),
            path: procs.clone(),
            source,
        })?;
    }
    if rootless {
        linux::map_sandbox_ids(pid, subordinate, &command)?;
    }
    rustix::io::write(&sync_write, &[1])
        .map_err(|e| process_error("start the sandbox", e.into()))?;
    drop(sync_write);

    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid)
            .ok_or_else(|| process_error("watch the sandbox", io::ErrorKind::InvalidData.into()))?,
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(|e| process_error("watch the sandbox", e.into()))?;

    let mut launched = Launched {
        command,
        program,
        path_var,
        candidates,
        rootless,
        steps: std::mem::take(&mut child.steps),
        reaper,
        pidfd,
        report: report_read,
        terminal: None,
        _state: state,
    };
    if let Some(socket) = terminal_socket {
        // The init sends the master after its mounts and before the command
        // starts, or closes the socket when it failed before.
        match terminal::receive_master(socket.as_fd()) {
            Ok(Some(master)) => launched.terminal = Some(master),
            Ok(None) => {
                let command = launched.command.clone();
                return Err(match launched.wait() {
                    Err(error) => error,
                    Ok(_) => SandboxError::Process {
                        command,
                        action: "receive the terminal from the sandbox".to_string(),
                        source: io::Error::other("the sandbox's init ended without sending it"),
                        hint: String::new(),
                    },
                });
            }
            Err(error) => {
                return Err(SandboxError::Process {
                    command: launched.command.clone(),
                    action: "receive the terminal from the sandbox".to_string(),
                    source: error,
                    hint: String::new(),
                });
            }
        }
    }
    Ok(launched)
}

/// A registration for SIGINT and SIGTERM sent to this process. While it
/// exists, those signals no longer end the process: they become readable
/// on [`InterruptWatch::fd`].
pub struct InterruptWatch(Watch);

impl std::fmt::Debug for InterruptWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InterruptWatch")
    }
}

impl InterruptWatch {
    /// Installs the handler.
    ///
    /// # Errors
    ///
    /// The error of `pipe` or `sigaction`.
    pub fn new() -> io::Result<InterruptWatch> {
        Watch::new().map(InterruptWatch)
    }

    /// Returns a descriptor that is readable once a signal arrived.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.fd()
    }

    /// Returns the first signal received since the last call, if any.
    pub fn take(&self) -> Option<i32> {
        self.0.take()
    }
}
