//! Code that runs in the sandbox's processes after `clone`.
//!
//! The parent is multi-threaded, so between `clone` and `execve` the child
//! may call only async-signal-safe functions: it allocates nothing, takes
//! no locks and makes raw system calls with data the parent prepared in a
//! [`ChildSpec`]. Failures go back to the parent as fixed-size records on
//! the report pipe (see [`Report`]).
//!
//! Two processes run this code. The sandbox init is PID 1 of the new PID
//! namespace: it builds the root file system, starts the command, forwards
//! signals to it, reaps every orphan and exits when the command has exited,
//! which makes the kernel kill what is left in the namespace. The command
//! process sets its ids, working directory and standard streams and execs.

use std::ffi::CString;
use std::os::fd::RawFd;

use super::caps;
use super::plan::{self, Step};
use super::syscall::{Errno, LinuxSyscall, Syscall};
use super::terminal;
use super::title::{self, ArgRegion};

/// Everything the child processes need, prepared by the parent.
pub(crate) struct ChildSpec {
    pub(crate) steps: Vec<Step>,
    /// Paths `execve` tries in order (the PATH lookup done in advance).
    pub(crate) candidates: Vec<CString>,
    /// Null-terminated `argv` whose pointers point into `argv_storage`.
    pub(crate) argv: Vec<*const libc::c_char>,
    pub(crate) argv_storage: Vec<CString>,
    /// Null-terminated `envp` whose pointers point into `env_storage`.
    pub(crate) envp: Vec<*const libc::c_char>,
    pub(crate) env_storage: Vec<CString>,
    pub(crate) workdir: CString,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) groups: Vec<libc::gid_t>,
    /// False in a user namespace whose `setgroups` file says `deny`.
    pub(crate) set_groups: bool,
    /// Whether the sandbox has its own network namespace whose loopback
    /// interface must be brought up.
    pub(crate) loopback_up: bool,
    /// A terminal that the init creates in the container's devpts for the
    /// command (`forge run -t`). It replaces `stdin`, `stdout` and `stderr`
    /// and becomes the controlling terminal of the command's session, so
    /// Ctrl-C there sends SIGINT.
    pub(crate) terminal: Option<TerminalSpec>,
    /// Capability mask that the command keeps (see [`caps`]); `None` keeps
    /// every capability (`RUN --security=insecure`).
    pub(crate) capabilities: Option<u64>,
    /// Argument memory of the parent, which the init overwrites with
    /// [`title::INIT_TITLE`]; `None` when it could not be read.
    pub(crate) arg_region: Option<ArgRegion>,
    pub(crate) stdin: RawFd,
    pub(crate) stdout: RawFd,
    pub(crate) stderr: RawFd,
    pub(crate) report: RawFd,
    /// Read end of the pipe on which the parent allows the child to go on
    /// (after writing the user namespace's id maps).
    pub(crate) sync: RawFd,
}

/// The terminal of [`ChildSpec::terminal`].
#[derive(Clone, Copy)]
pub(crate) struct TerminalSpec {
    /// The init's end of the unix socket pair on which it sends the
    /// terminal's master to the supervisor.
    pub(crate) socket: RawFd,
    /// Window size set before the command starts; `None` leaves 0x0.
    pub(crate) window_size: Option<libc::winsize>,
}

impl ChildSpec {
    /// Builds the pointer arrays of `argv_storage` and `env_storage`.
    pub(crate) fn link_pointers(&mut self) {
        self.argv = self.argv_storage.iter().map(|s| s.as_ptr()).collect();
        self.argv.push(std::ptr::null());
        self.envp = self.env_storage.iter().map(|s| s.as_ptr()).collect();
        self.envp.push(std::ptr::null());
    }
}

/// A record on the report pipe: a kind byte, a `u32` and an `i32`, both
/// little-endian. Writes of 9 bytes to a pipe are atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// Plan step `index` failed with `errno`.
    Step { index: u32, errno: Errno },
    /// A command setup call ([`CommandStage`]) failed with `errno`.
    Command { stage: u32, errno: Errno },
    /// `execve` of candidate `index` failed with `errno`; `u32::MAX` means
    /// no candidate was found.
    Exec { index: u32, errno: Errno },
    /// The command ended with this wait status.
    Status { status: i32 },
}

/// Size of one report record.
pub(crate) const REPORT_SIZE: usize = 9;

impl Report {
    fn encode(self) -> [u8; REPORT_SIZE] {
        let (kind, first, second) = match self {
            Report::Step { index, errno } => (b'E', index, errno),
            Report::Command { stage, errno } => (b'C', stage, errno),
            Report::Exec { index, errno } => (b'X', index, errno),
            Report::Status { status } => (b'S', 0, status),
        };
        let mut record = [0u8; REPORT_SIZE];
        record[0] = kind;
        record[1..5].copy_from_slice(&first.to_le_bytes());
        record[5..9].copy_from_slice(&second.to_le_bytes());
        record
    }

    /// Decodes a record; `None` for an unknown kind.
    pub(crate) fn decode(record: &[u8; REPORT_SIZE]) -> Option<Report> {
        let first = u32::from_le_bytes([record[1], record[2], record[3], record[4]]);
        let second = i32::from_le_bytes([record[5], record[6], record[7], record[8]]);
        match record[0] {
            b'E' => Some(Report::Step {
                index: first,
                errno: second,
            }),
            b'C' => Some(Report::Command {
                stage: first,
                errno: second,
            }),
            b'X' => Some(Report::Exec {
                index: first,
                errno: second,
            }),
            b'S' => Some(Report::Status { status: second }),
            _ => None,
        }
    }
}

/// Setup calls of the command process, numbered for [`Report::Command`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum CommandStage {
    Streams = 1,
    Groups = 2,
    Gid = 3,
    Uid = 4,
    Workdir = 5,
    Fork = 6,
    Loopback = 7,
    Capabilities = 8,
    Terminal = 9,
    Console = 10,
    TerminalHandoff = 11,
    TerminalOwner = 12,
}

impl CommandStage {
    /// Describes the stage for error messages.
    pub(crate) fn describe(stage: u32) -> &'static str {
        match stage {
            1 => "connect the standard streams",
            2 => "set the supplementary groups",
            3 => "set the group id",
            4 => "set the user id",
            5 => "change to the working directory",
            6 => "start the command process",
            7 => "bring up the loopback interface",
            8 => "limit the capabilities of the command",
            9 => "create a terminal with the container's /dev/ptmx",
            10 => "bind the terminal to /dev/console",
            11 => "send the terminal to the supervisor",
            12 => "give the terminal to the command's user",
            _ => "prepare the command",
        }
    }
}

/// Signals the init forwards to the command.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

#[allow(unsafe_code)]
fn report(fd: RawFd, record: Report) {
    let bytes = record.encode();
    // SAFETY: `bytes` is valid for its length; a failed write is ignored
    // because the parent then sees a missing record and says so.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

#[allow(unsafe_code)]
fn exit(code: libc::c_int) -> ! {
    // SAFETY: `_exit` ends the process without running Rust or libc
    // cleanup, which must not run in a cloned child.
    unsafe { libc::_exit(code) }
}

fn errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Forks the calling process with `clone(2)` and extra namespace `flags`.
///
/// Returns 0 in the child and the child's PID in the parent. The raw system
/// call (no stack argument) behaves like `fork` but skips glibc's fork
/// handlers; the child must then follow the rules in the module docs.
#[allow(unsafe_code)]
pub(crate) fn clone_process(flags: libc::c_int) -> Result<libc::pid_t, Errno> {
    let flags = (flags | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: with a null stack the child runs on a copy of the caller's
    // stack, like fork; the null parent/child TID and TLS arguments are
    // ignored without the CLONE_*TID and CLONE_SETTLS flags.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
            0usize,
        )
    };
    if pid < 0 {
        Err(errno())
    } else {
        Ok(pid as libc::pid_t)
    }
}

/// Closes every descriptor except those in `keep`.
#[allow(unsafe_code)]
fn close_other_fds(keep: &mut [RawFd]) {
    keep.sort_unstable();
    let mut next: u32 = 0;
    for fd in keep.iter() {
        let Ok(fd) = u32::try_from(*fd) else { continue };
        if fd > next {
            // SAFETY: close_range takes plain integers.
            unsafe { libc::syscall(libc::SYS_close_range, next, fd - 1, 0u32) };
        }
        next = fd.saturating_add(1);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, next, u32::MAX, 0u32) };
}

/// Brings up the loopback interface of a new network namespace.
#[allow(unsafe_code)]
fn loopback_up() -> Result<(), Errno> {
    // SAFETY: socket takes plain integers.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return Err(errno());
    }
    // SAFETY: ifreq is plain data for which all-zero bytes are valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: `request` is a valid ifreq naming `lo`; both ioctls read and
    // write only that structure. The union field is read after the kernel
    // filled it in.
    let result = unsafe {
        if libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request) < 0 {
            -1
        } else {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(socket, libc::SIOCSIFFLAGS, &request)
        }
    };
    let error = if result < 0 { Some(errno()) } else { None };
    // SAFETY: `socket` is open and owned here.
    unsafe { libc::close(socket) };
    error.map_or(Ok(()), Err)
}

/// Runs the sandbox init; never returns.
#[allow(unsafe_code)]
pub(crate) fn init_main(spec: &ChildSpec) -> ! {
    if let Some(region) = spec.arg_region {
        title::overwrite(region, title::INIT_TITLE);
    }
    // SAFETY: prctl and read take plain integers and a valid buffer.
    unsafe {
        // The init dies with the thread that started it, which takes the
        // whole PID namespace with it.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        let mut go = [0u8; 1];
        if libc::read(spec.sync, go.as_mut_ptr().cast(), 1) != 1 {
            exit(1);
        }
    }
    let socket = spec.terminal.map_or(-1, |terminal| terminal.socket);
    let mut keep = [spec.stdin, spec.stdout, spec.stderr, spec.report, socket];
    close_other_fds(&mut keep);
    // SAFETY: umask takes a plain integer.
    unsafe { libc::umask(0) };

    if let Err((index, errno)) = plan::apply(&spec.steps, &LinuxSyscall) {
        report(
            spec.report,
            Report::Step {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                errno,
            },
        );
        exit(1);
    }
    if spec.loopback_up {
        if let Err(errno) = loopback_up() {
            report(
                spec.report,
                Report::Command {
                    stage: CommandStage::Loopback as u32,
                    errno,
                },
            );
            exit(1);
        }
    }

    let streams = match &spec.terminal {
        Some(terminal) => match create_terminal(terminal) {
            Ok(slave) => [slave; 3],
            Err((stage, errno)) => {
                report(
                    spec.report,
                    Report::Command {
                        stage: stage as u32,
                        errno,
                    },
                );
                exit(1);
            }
        },
        None => [spec.stdin, spec.stdout, spec.stderr],
    };

    // Signals stay blocked in the init and are taken with sigwaitinfo, so
    // the kernel delivers them although PID 1 has no handlers.
    // SAFETY: the sigset functions only write to `set`, a valid local value.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        for signal in FORWARDED {
            libc::sigaddset(&mut set, signal);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };

    let command = match clone_process(0) {
        Ok(0) => command_main(spec, streams),
        Ok(pid) => pid,
        Err(errno) => {
            report(
                spec.report,
                Report::Command {
                    stage: CommandStage::Fork as u32,
                    errno,
                },
            );
            exit(1);
        }
    };
    if spec.terminal.is_some() {
        // Only the command has the slave open now, so reading the master
        // fails with EIO once the command and everything it started closed it.
        // SAFETY: the slave is open and owned by the init.
        unsafe { libc::close(streams[0]) };
    }

    loop {
        // SAFETY: `set` is a valid signal set; the info argument may be null.
        let signal = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        if signal == libc::SIGCHLD {
            loop {
                let mut status = 0;
                // SAFETY: `status` is a valid out pointer.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid == command {
                    report(spec.report, Report::Status { status });
                    exit(0);
                }
                if pid <= 0 {
                    break;
                }
            }
        } else if signal > 0 {
            // SAFETY: kill takes plain integers.
            unsafe { libc::kill(command, signal) };
        }
    }
}

/// Creates the command's terminal in the container's devpts, binds it to
/// `/dev/console`, sends its master to the supervisor and returns the
/// slave. Runs in the init after `pivot_root`.
#[allow(unsafe_code)]
fn create_terminal(spec: &TerminalSpec) -> Result<RawFd, (CommandStage, Errno)> {
    let pty = terminal::open_pty(c"/dev/ptmx", spec.window_size.as_ref())
        .map_err(|errno| (CommandStage::Terminal, errno))?;
    let mut buffer = [0u8; terminal::PTS_PATH_SIZE];
    let path = terminal::pts_path(pty.index, &mut buffer);
    let bound = LinuxSyscall
        .mount(Some(path), c"/dev/console", None, libc::MS_BIND, None)
        .map_err(|errno| (CommandStage::Console, errno));
    let sent = bound.and_then(|()| {
        terminal::send_fd(spec.socket, pty.master)
            .map_err(|errno| (CommandStage::TerminalHandoff, errno))
    });
    // SAFETY: the master and the socket are open and owned by the init,
    // which needs neither once the supervisor has the master.
    unsafe {
        libc::close(pty.master);
        libc::close(spec.socket);
    }
    sent.map(|()| pty.slave)
}

/// Sets up and execs the command with `streams` as its standard input,
/// output and error; never returns.
#[allow(unsafe_code)]
fn command_main(spec: &ChildSpec, streams: [RawFd; 3]) -> ! {
    let sys = LinuxSyscall;
    let fail = |stage: CommandStage, errno: Errno| -> ! {
        report(
            spec.report,
            Report::Command {
                stage: stage as u32,
                errno,
            },
        );
        exit(127)
    };

    // SAFETY: signal, dup2 and setsid take plain integers.
    unsafe {
        // Ignored signals stay ignored across execve (the Rust runtime
        // ignores SIGPIPE), so every signal gets its default action back.
        for signal in 1..libc::SIGRTMIN() {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        for (to, from) in streams.into_iter().enumerate() {
            // dup2 onto the same number keeps close-on-exec, so the flag
            // is cleared explicitly.
            let to = to as libc::c_int;
            if libc::dup2(from, to) < 0 || libc::fcntl(to, libc::F_SETFD, 0) < 0 {
                fail(CommandStage::Streams, errno());
            }
        }
        libc::setsid();
        if spec.terminal.is_some() {
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                fail(CommandStage::Streams, errno());
            }
            // The command's user owns its terminal, as runc's init does it
            // for docker (fixStdioPermissions in libcontainer). The group
            // stays the one devpts gave it: `tty` (gid 5) as root.
            if libc::fchown(0, spec.uid, libc::gid_t::MAX) < 0 {
                fail(CommandStage::TerminalOwner, errno());
            }
        }
    }

    // The bounding set shrinks while CAP_SETPCAP is still effective; the
    // other sets follow the id change, which empties them for non-root.
    if let Some(keep) = spec.capabilities {
        if let Err(errno) = caps::limit_bounding_set(&sys, keep) {
            fail(CommandStage::Capabilities, errno);
        }
    }
    if spec.set_groups {
        if let Err(errno) = sys.setgroups(&spec.groups) {
            fail(CommandStage::Groups, errno);
        }
    }
    if let Err(errno) = sys.setgid(spec.gid) {
        fail(CommandStage::Gid, errno);
    }
    if let Err(errno) = sys.setuid(spec.uid) {
        fail(CommandStage::Uid, errno);
    }
    if let Some(keep) = spec.capabilities {
        if let Err(errno) = caps::limit_process_sets(&sys, keep, spec.uid) {
            fail(CommandStage::Capabilities, errno);
        }
    }
    if let Err(errno) = sys.chdir(&spec.workdir) {
        fail(CommandStage::Workdir, errno);
    }
    // SAFETY: umask and sigprocmask take a plain integer and a valid set.
    unsafe {
        libc::umask(0o022);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }

    exec_candidates(spec, &sys)
}

/// Tries each PATH candidate as `execvp` does: a missing file or a
/// candidate without permission moves on to the next one.
fn exec_candidates(spec: &ChildSpec, sys: &dyn Syscall) -> ! {
    let mut denied: Option<u32> = None;
    for (index, path) in spec.candidates.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        match sys.execve(path, &spec.argv, &spec.envp) {
            libc::ENOENT | libc::ENOTDIR => {}
            libc::EACCES => denied = denied.or(Some(index)),
            errno => {
                report(spec.report, Report::Exec { index, errno });
                exit(127);
            }
        }
    }
    let record = match denied {
        Some(index) => Report::Exec {
            index,
            errno: libc::EACCES,
        },
        None => Report::Exec {
            index: u32::MAX,
            errno: libc::ENOENT,
        },
    };
    report(spec.report, record);
    exit(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trip() {
        for record in [
            Report::Step {
                index: 7,
                errno: libc::EPERM,
            },
            Report::Command {
                stage: 4,
                errno: libc::EINVAL,
            },
            Report::Exec {
                index: u32::MAX,
                errno: libc::ENOENT,
            },
            Report::Status { status: 3 << 8 },
        ] {
            assert_eq!(Report::decode(&record.encode()), Some(record));
        }
    }

    #[test]
    fn report_unknown_kind() {
        assert_eq!(Report::decode(&[b'?'; REPORT_SIZE]), None);
    }
}
