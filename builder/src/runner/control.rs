//! `stop`, `kill` and `rm` of recorded containers.

use std::fs;
use std::io;
use std::time::{Duration, Instant};

use super::state::{ContainerState, Containers, Status};
use super::{RunnerError, cgroup, parse_signal};

/// How long `stop`, `kill` and `rm -f` wait for the supervisor to record
/// the exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Returns the host PID of the container's command: the first child of
/// the sandbox init.
fn command_pid(init: i32) -> Option<i32> {
    let children = fs::read_to_string(format!("/proc/{init}/task/{init}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// Returns whether `init` is still the sandbox init started by the
/// container's supervisor (its parent is the supervisor).
fn init_belongs(state: &ContainerState, init: i32) -> bool {
    let Some(supervisor) = &state.supervisor else {
        return false;
    };
    let Ok(status) = fs::read_to_string(format!("/proc/{init}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|ppid| ppid.trim().parse::<i32>().ok())
        == Some(supervisor.pid)
}

#[allow(unsafe_code)]
fn send(state: &ContainerState, pid: i32, signal: i32) -> Result<(), RunnerError> {
    // SAFETY: kill takes plain integers; `pid` was checked to be the
    // container's init or its child just before.
    let result = unsafe { libc::kill(pid, signal) };
    if result < 0 {
        let source = io::Error::last_os_error();
        if source.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(RunnerError::Signal {
            name: state.name.clone(),
            signal,
            pid,
            source,
        });
    }
    Ok(())
}

/// Sends `signal` to a running container: SIGKILL ends the sandbox's whole
/// PID namespace, any other signal goes to the command.
fn signal_running(state: &ContainerState, signal: i32) -> Result<bool, RunnerError> {
    let Some(init) = state.init_pid.filter(|init| init_belongs(state, *init)) else {
        return Ok(false);
    };
    let target = if signal == libc::SIGKILL {
        init
    } else {
        command_pid(init).unwrap_or(init)
    };
    send(state, target, signal)?;
    Ok(true)
}

/// Waits until the container's record shows it exited, for at most
/// `timeout`; returns the last record. A container whose record is gone
/// was removed by `--rm` after it exited, so `last` is returned as exited
/// without an exit code.
fn wait_exited(
    containers: &Containers,
    last: &ContainerState,
    timeout: Duration,
) -> Result<ContainerState, RunnerError> {
    let deadline = Instant::now() + timeout;
    loop {
        let state = match containers.load(&last.id) {
            Ok(state) => state.effective(),
            Err(RunnerError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                let mut removed = last.clone();
                removed.status = Status::Exited;
                return Ok(removed);
            }
            Err(error) => return Err(error),
        };
        if state.status != Status::Running || Instant::now() >= deadline {
            return Ok(state);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn running(containers: &Containers, key: &str) -> Result<ContainerState, RunnerError> {
    let state = containers.find(key)?.effective();
    if state.status != Status::Running {
        return Err(RunnerError::State {
            name: state.name.clone(),
            reason: "is not running".to_string(),
        });
    }
    Ok(state)
}

/// Sends `signal` (a name or number) to the running container `key`.
///
/// # Errors
///
/// [`RunnerError::State`] when it is not running, [`RunnerError::Invalid`]
/// for an unknown signal, [`RunnerError::Signal`] when `kill` failed.
pub fn kill(
    containers: &Containers,
    key: &str,
    signal: &str,
) -> Result<ContainerState, RunnerError> {
    let number = parse_signal(signal)?;
    let state = running(containers, key)?;
    signal_running(&state, number)?;
    if number == libc::SIGKILL {
        return wait_exited(containers, &state, KILL_WAIT);
    }
    Ok(state)
}

/// Stops the container `key`: sends its stop signal (the image's
/// STOPSIGNAL, SIGTERM by default), waits up to `timeout` for it to exit,
/// then sends SIGKILL. A container that is not running is left as it is,
/// and one that `--rm` removed after its exit counts as stopped.
///
/// # Errors
///
/// [`RunnerError::NotFound`] for an unknown container, and the errors of
/// [`kill`].
pub fn stop(
    containers: &Containers,
    key: &str,
    timeout: Duration,
) -> Result<ContainerState, RunnerError> {
    let state = containers.find(key)?.effective();
    if state.status != Status::Running {
        return Ok(state);
    }
    let signal = parse_signal(&state.stop_signal).unwrap_or(libc::SIGTERM);
    signal_running(&state, signal)?;
    let state = wait_exited(containers, &state, timeout)?;
    if state.status != Status::Running {
        return Ok(state);
    }
    tracing::debug!(name = %state.name, "stop timed out, sending SIGKILL");
    signal_running(&state, libc::SIGKILL)?;
    wait_exited(containers, &state, KILL_WAIT)
}

/// Removes the container `key`: its folder (upper folder, log, anonymous
/// volumes) and any cgroup left behind. With `force` a running container
/// is killed first.
///
/// # Errors
///
/// [`RunnerError::State`] when it runs and `force` is false, or when it
/// did not exit after SIGKILL; [`RunnerError::Io`] when the folder cannot
/// be removed.
pub fn remove(
    containers: &Containers,
    key: &str,
    force: bool,
) -> Result<ContainerState, RunnerError> {
    let mut state = containers.find(key)?.effective();
    if state.status == Status::Running {
        if !force {
            return Err(RunnerError::State {
                name: state.name.clone(),
                reason: format!(
                    "is running; stop it first with `forge stop {}` or remove it with `forge rm \
                     -f`",
                    state.name
                ),
            });
        }
        signal_running(&state, libc::SIGKILL)?;
        state = wait_exited(containers, &state, KILL_WAIT)?;
        if state.status == Status::Running {
            return Err(RunnerError::State {
                name: state.name.clone(),
                reason: "did not exit after SIGKILL; try again".to_string(),
            });
        }
    }
    cgroup::remove(&state.cgroups);
    let dir = containers.dir(&state.id);
    match forge_cache::store::remove_tree(&dir) {
        Ok(()) => Ok(state),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(state),
        Err(source) => Err(RunnerError::io("remove", &dir, source)),
    }
}
