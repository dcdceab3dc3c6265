//! The supervisor: starts a container's sandbox and stays with it until it
//! exits, copying output to the log (and to an attached terminal), serving
//! published ports and recording the exit code.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use super::logs::{LogStream, LogWriter};
use super::resize::{ResizeWatch, copy_window_size, window_size};
use super::state::{ContainerState, Containers, ProcessId, Status, now};
use super::{RunnerError, cgroup, forward};
use crate::sandbox::{
    self, CommandStreams, InterruptWatch, LaunchIo, Network, RunMount, RunMountKind, RunOutcome,
    RunSpec,
};

/// The destinations of the container's streams besides the log.
#[derive(Debug, Default)]
pub struct Attach {
    /// Standard input given to the command with `-i`.
    pub stdin: Option<OwnedFd>,
    /// Receives the command's standard output (and, with `-t`, all output).
    pub stdout: Option<OwnedFd>,
    /// Receives the command's standard error.
    pub stderr: Option<OwnedFd>,
    /// Whether SIGINT and SIGTERM sent to this process go to the container
    /// instead of ending this process.
    pub forward_signals: bool,
}

/// Starts the container `id` recorded under `store_root` and supervises
/// it until it exits; returns its exit code (128 + N when signal N killed
/// it). The record ends as [`Status::Exited`] with the exit code (or the
/// start error); its cgroups are removed, and with `--rm` the container
/// folder too.
///
/// # Errors
///
/// A [`RunnerError`] when the container could not be started; its
/// [`RunnerError::exit_code`] is docker's 125, 126 or 127.
pub fn supervise(store_root: &Path, id: &str, attach: Attach) -> Result<i32, RunnerError> {
    let containers = Containers::new(store_root);
    let mut state = containers.load(id)?;
    if state.status != Status::Created {
        return Err(RunnerError::State {
            name: state.name.clone(),
            reason: "was started before; run a new container with `forge run`".to_string(),
        });
    }
    let result = run(&containers, &mut state, attach);

    cgroup::remove(&state.cgroups);
    state.status = Status::Exited;
    state.finished_at = Some(now());
    state.supervisor = None;
    state.init_pid = None;
    match &result {
        Ok(code) => state.exit_code = Some(*code),
        Err(error) => {
            state.exit_code = Some(error.exit_code());
            state.error = Some(error.to_string());
        }
    }
    if state.auto_remove {
        let dir = containers.dir(id);
        if let Err(error) = forge_cache::store::remove_tree(&dir) {
            tracing::warn!(path = %dir.display(), %error, "failed to remove the container");
        }
    } else {
        containers.save(&state)?;
    }
    result
}

fn mounts(state: &ContainerState) -> Result<Vec<RunMount>, RunnerError> {
    let mut mounts = Vec::new();
    for volume in &state.volumes {
        let is_file = fs::metadata(&volume.source).is_ok_and(|m| !m.is_dir());
        let kind = match (is_file, volume.read_only) {
            (false, read_only) => RunMountKind::Cache {
                source: volume.source.clone(),
                uid: 0,
                gid: 0,
                mode: 0o755,
                read_only,
            },
            (true, true) => RunMountKind::Bind {
                source: volume.source.clone(),
                read_write: false,
            },
            (true, false) => {
                return Err(RunnerError::Invalid {
                    what: "volume",
                    value: format!("{}:{}", volume.source.display(), volume.target),
                    reason: "a single file can only be bound read-only; add `:ro` or bind its \
                             folder"
                        .to_string(),
                });
            }
        };
        mounts.push(RunMount {
            target: Some(volume.target.clone()),
            kind,
        });
    }
    Ok(mounts)
}

fn spec(containers: &Containers, state: &ContainerState) -> Result<RunSpec, RunnerError> {
    let dir = containers.dir(&state.id);
    Ok(RunSpec {
        lowers: state.lowers.clone(),
        upper: dir.join("upper"),
        work: dir.join("work"),
        argv: state.argv.clone(),
        env: state.env.clone(),
        workdir: state.workdir.clone(),
        user: state.user.clone(),
        network: if state.network == "host" {
            Network::Host
        } else {
            Network::None
        },
        hostname: state.hostname.clone(),
        mounts: mounts(state)?,
        // A container keeps its writes, so the overlay syncs them.
        volatile_upper: false,
    })
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io::Error::from)
}

/// Puts a terminal into raw mode and restores it on drop.
struct RawMode {
    fd: OwnedFd,
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = rustix::termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &raw).ok()?;
        let fd = fd.try_clone_to_owned().ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            &self.fd,
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// The supervisor's side of the container's streams.
struct Streams {
    /// Output sources: the pty master, or the stdout and stderr pipes.
    outputs: Vec<(OwnedFd, LogStream)>,
    /// The pty master that receives attached input, and the input's source.
    input: Option<(OwnedFd, OwnedFd)>,
    /// The pty master with `-t`, which receives window size changes.
    pty: Option<OwnedFd>,
    /// With `-it`, the attached input until the pty master exists.
    pending_input: Option<OwnedFd>,
    /// The write end of a detached `-i` stdin, kept so the command does
    /// not see end of file.
    _held_stdin: Option<OwnedFd>,
}

impl Streams {
    /// Makes `master`, the master of the terminal that the sandbox created
    /// for `-t`, the source of all output and the target of attached input.
    fn use_terminal(&mut self, master: OwnedFd) -> io::Result<()> {
        if let Some(source) = self.pending_input.take() {
            self.input = Some((master.try_clone()?, source));
        }
        self.pty = Some(master.try_clone()?);
        self.outputs = vec![(master, LogStream::Stdout)];
        Ok(())
    }
}

/// Returns a copy of the attached terminal whose window size the
/// container's pty follows: standard output, else standard input, as long
/// as it is a terminal.
fn attached_terminal(attach: &Attach) -> Option<OwnedFd> {
    [attach.stdout.as_ref(), attach.stdin.as_ref()]
        .into_iter()
        .flatten()
        .find(|fd| rustix::termios::isatty(fd))
        .and_then(|fd| fd.try_clone().ok())
}

fn streams(
    state: &ContainerState,
    attach: &mut Attach,
    terminal: Option<BorrowedFd<'_>>,
) -> io::Result<(Streams, LaunchIo)> {
    let null = || -> io::Result<OwnedFd> { Ok(fs::File::open("/dev/null")?.into()) };
    if state.tty {
        // The sandbox creates the terminal in the container's devpts and
        // returns its master, which `Streams::use_terminal` takes.
        let pending_input = if state.interactive {
            attach.stdin.take()
        } else {
            None
        };
        let io = LaunchIo {
            streams: CommandStreams::Terminal {
                window_size: terminal.and_then(window_size),
            },
            cgroup_procs: Vec::new(),
        };
        let streams = Streams {
            outputs: Vec::new(),
            input: None,
            pty: None,
            pending_input,
            _held_stdin: None,
        };
        return Ok((streams, io));
    }

    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    let mut held = None;
    let stdin = match (state.interactive, attach.stdin.take()) {
        (true, Some(source)) => source,
        (true, None) => {
            let (read, write) = pipe()?;
            held = Some(write);
            read
        }
        (false, _) => null()?,
    };
    let io = LaunchIo {
        streams: CommandStreams::Files {
            stdin,
            stdout: stdout_write,
            stderr: stderr_write,
        },
        cgroup_procs: Vec::new(),
    };
    let streams = Streams {
        outputs: vec![
            (stdout_read, LogStream::Stdout),
            (stderr_read, LogStream::Stderr),
        ],
        input: None,
        pty: None,
        pending_input: None,
        _held_stdin: held,
    };
    Ok((streams, io))
}

fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(count) => bytes = &bytes[count..],
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

fn pollfd(fd: BorrowedFd<'_>) -> libc::pollfd {
    libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }
}

#[allow(unsafe_code)]
fn poll(fds: &mut [libc::pollfd]) -> io::Result<()> {
    // SAFETY: `fds` is a valid slice of pollfd structures of the given length.
    let result = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
    if result < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EINTR) {
            fds.iter_mut().for_each(|fd| fd.revents = 0);
            return Ok(());
        }
        return Err(error);
    }
    Ok(())
}

fn exit_code(outcome: &RunOutcome) -> i32 {
    match (outcome.exit_code, outcome.signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 137,
    }
}

#[allow(clippy::too_many_lines)]
fn run(
    containers: &Containers,
    state: &mut ContainerState,
    mut attach: Attach,
) -> Result<i32, RunnerError> {
    let dir = containers.dir(&state.id);
    let spec = spec(containers, state)?;
    state.cgroups = cgroup::create(&state.id, &state.limits)?;
    containers.save(state)?;
    let sockets = forward::bind(&mut state.ports)?;

    // The watch starts before the first size is read, so no change is lost.
    let terminal = state.tty.then(|| attached_terminal(&attach)).flatten();
    let resize = match &terminal {
        Some(_) => match ResizeWatch::new() {
            Ok(watch) => Some(watch),
            Err(error) => {
                tracing::warn!(id = %state.id, %error, "window size changes will not reach the container");
                None
            }
        },
        None => None,
    };
    let (mut streams, mut io) = streams(state, &mut attach, terminal.as_ref().map(AsFd::as_fd))
        .map_err(|e| RunnerError::io("set up the streams of", &dir, e))?;
    io.cgroup_procs = state
        .cgroups
        .iter()
        .map(|dir| dir.join("cgroup.procs"))
        .collect();
    let watch = if attach.forward_signals {
        Some(InterruptWatch::new().map_err(|e| RunnerError::io("watch signals for", &dir, e))?)
    } else {
        None
    };
    let log_path = containers.log_path(&state.id);
    let mut log =
        LogWriter::open(&log_path).map_err(|e| RunnerError::io("open the log", &log_path, e))?;

    let mut launched = sandbox::launch(&spec, io)?;
    if let Some(master) = launched.take_terminal() {
        streams
            .use_terminal(master)
            .map_err(|e| RunnerError::io("set up the terminal of", &dir, e))?;
    }
    let init_pid = launched.pid();
    let _forwarders = if sockets.is_empty() {
        None
    } else {
        let netns_path = format!("/proc/{init_pid}/ns/net");
        let netns: OwnedFd = fs::File::open(&netns_path)
            .map_err(|e| RunnerError::io("open", Path::new(&netns_path), e))?
            .into();
        Some(forward::start(sockets, &state.ports, Arc::new(netns)))
    };
    state.status = Status::Running;
    state.supervisor = ProcessId::of(std::process::id() as i32);
    state.init_pid = Some(init_pid);
    state.started_at = Some(now());
    containers.save(state)?;
    tracing::debug!(id = %state.id, init_pid, "container started");

    let _raw = match (&streams.input, state.tty) {
        (Some((_, source)), true) => RawMode::enter(source.as_fd()),
        _ => None,
    };
    let mut outputs: Vec<Option<(OwnedFd, LogStream)>> =
        streams.outputs.into_iter().map(Some).collect();
    let mut input = streams.input;
    let pty = streams.pty;
    let mut init_exited = false;
    let mut buffer = vec![0u8; 64 * 1024];
    while !(init_exited && outputs.iter().all(Option::is_none)) {
        let mut fds = Vec::new();
        let mut slots: Vec<usize> = Vec::new();
        for (index, output) in outputs.iter().enumerate() {
            if let Some((fd, _)) = output {
                fds.push(pollfd(fd.as_fd()));
                slots.push(index);
            }
        }
        let input_slot = input.as_ref().map(|(_, source)| {
            fds.push(pollfd(source.as_fd()));
            fds.len() - 1
        });
        let watch_slot = watch.as_ref().map(|watch| {
            fds.push(pollfd(watch.fd()));
            fds.len() - 1
        });
        let resize_slot = resize.as_ref().map(|resize| {
            fds.push(pollfd(resize.fd()));
            fds.len() - 1
        });
        let pidfd_slot = (!init_exited).then(|| {
            fds.push(pollfd(launched.pidfd()));
            fds.len() - 1
        });
        poll(&mut fds).map_err(|e| RunnerError::io("wait for output of", &dir, e))?;

        for (position, index) in slots.iter().enumerate() {
            if fds[position].revents == 0 {
                continue;
            }
            let Some((fd, stream)) = outputs[*index].as_ref() else {
                continue;
            };
            let stream = *stream;
            match rustix::io::read(fd, &mut buffer) {
                // A pty master reports EIO once every slave descriptor is closed.
                Ok(0) | Err(rustix::io::Errno::IO) => outputs[*index] = None,
                Ok(count) => {
                    let bytes = &buffer[..count];
                    log.write(stream, bytes);
                    let target = match stream {
                        LogStream::Stdout => attach.stdout.as_ref(),
                        LogStream::Stderr => attach.stderr.as_ref(),
                    };
                    if let Some(target) = target {
                        if write_all(target, bytes).is_err() {
                            attach.stdout = None;
                            attach.stderr = None;
                        }
                    }
                }
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(_) => outputs[*index] = None,
            }
        }
        if let Some(slot) = input_slot.filter(|slot| fds[*slot].revents != 0) {
            let forwarded = input.as_ref().map(|(master, source)| {
                match rustix::io::read(source, &mut buffer) {
                    Ok(0) | Err(_) => false,
                    Ok(count) => write_all(master, &buffer[..count]).is_ok(),
                }
            });
            if forwarded == Some(false) {
                input = None;
            }
            let _ = slot;
        }
        if let (Some(slot), Some(watch)) = (watch_slot, watch.as_ref()) {
            if fds[slot].revents != 0 {
                if let Some(signal) = watch.take() {
                    tracing::debug!(signal, init_pid, "forwarding signal to the container");
                    launched.signal(signal);
                }
            }
        }
        if let (Some(slot), Some(resize)) = (resize_slot, resize.as_ref()) {
            if fds[slot].revents != 0 && resize.take() {
                if let (Some(terminal), Some(pty)) = (terminal.as_ref(), pty.as_ref()) {
                    tracing::debug!(init_pid, "passing a window size change to the container");
                    copy_window_size(terminal.as_fd(), pty.as_fd());
                }
            }
        }
        if pidfd_slot.is_some_and(|slot| fds[slot].revents != 0) {
            init_exited = true;
        }
    }
    drop(input);

    let outcome = launched.wait()?;
    Ok(exit_code(&outcome))
}

#[cfg(test)]
mod tests {
    use std::os::fd::FromRawFd;

    use super::*;

    #[test]
    fn exit_codes_follow_docker() {
        let outcome = |exit_code, signal| RunOutcome {
            exit_code,
            signal,
            tail: Vec::new(),
        };
        assert_eq!(exit_code(&outcome(Some(3), None)), 3);
        assert_eq!(exit_code(&outcome(None, Some(9))), 137);
        assert_eq!(exit_code(&outcome(None, Some(15))), 143);
    }

    /// Opens a pseudo-terminal of the host's devpts and returns its
    /// master and its slave.
    #[allow(unsafe_code)]
    fn open_pty() -> (OwnedFd, OwnedFd) {
        // SAFETY: posix_openpt takes flags and returns a new descriptor or -1.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        assert!(master >= 0, "{}", io::Error::last_os_error());
        // SAFETY: `master` is a fresh descriptor owned by nothing else.
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        // SAFETY: unlockpt and TIOCGPTPEER take an open pty master and plain
        // flags; TIOCGPTPEER returns a new descriptor or -1.
        let slave = unsafe {
            assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
            libc::ioctl(
                master.as_raw_fd(),
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY,
            )
        };
        assert!(slave >= 0, "{}", io::Error::last_os_error());
        // SAFETY: `slave` is a fresh descriptor owned by nothing else.
        (master, unsafe { OwnedFd::from_raw_fd(slave) })
    }

    #[test]
    fn zero_window_size_not_copied() {
        let (outer, _outer_slave) = open_pty();
        let (inner, inner_slave) = open_pty();
        let size = |rows, cols| rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&inner, size(10, 20)).unwrap();

        copy_window_size(outer.as_fd(), inner.as_fd());
        let kept = rustix::termios::tcgetwinsize(&inner_slave).unwrap();
        assert_eq!((kept.ws_row, kept.ws_col), (10, 20));

        rustix::termios::tcsetwinsize(&outer, size(5, 6)).unwrap();
        copy_window_size(outer.as_fd(), inner.as_fd());
        let copied = rustix::termios::tcgetwinsize(&inner_slave).unwrap();
        assert_eq!((copied.ws_row, copied.ws_col), (5, 6));
    }
}
