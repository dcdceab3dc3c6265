//! Starting, watching and stopping one sandbox (Linux only).

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use super::caps;
use super::child::{self, ChildSpec, CommandStage, REPORT_SIZE, Report};
use super::image::ImageView;
use super::plan::{self, Layout, Step};
use super::prepare::{self, DEFAULT_PATH, PointKind, StateDir, c_string};
use super::signals::Watch;
use super::title;
use super::user::{self, ExecUser};
use super::{Network, OutputSink, RunOutcome, RunSpec, SandboxError, Security, TAIL_LINES};

/// How long an interrupted command may take to exit before the sandbox is
/// killed.
const GRACE: Duration = Duration::from_secs(2);

/// The subordinate id ranges granted to the caller in `/etc/subuid` and
/// `/etc/subgid`, used with `newuidmap` and `newgidmap`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Subordinate {
    pub(super) uid_start: u32,
    pub(super) gid_start: u32,
    pub(super) count: u32,
}

/// A sandbox whose child processes are prepared but not started yet.
pub(super) struct Prepared {
    /// The command line, for messages.
    pub(super) command: String,
    /// The program, as the command line names it.
    pub(super) program: String,
    /// Whether the sandbox runs in its own user namespace.
    pub(super) rootless: bool,
    /// The caller's subordinate id ranges, used without root.
    pub(super) subordinate: Option<Subordinate>,
    /// Temporary host folder with the mount-point layer and `/etc` files.
    pub(super) state: StateDir,
    /// Data of the child processes; the standard streams are still -1.
    pub(super) child: ChildSpec,
    /// Paths the PATH lookup tries, in order.
    pub(super) candidates: Vec<String>,
    /// The PATH searched.
    pub(super) path_var: String,
}

/// Runs `spec`; see [`super::run_with_security`].
pub(crate) fn run(
    spec: &RunSpec,
    security: Security,
    output: &mut dyn OutputSink,
) -> Result<RunOutcome, SandboxError> {
    let Prepared {
        command,
        program,
        rootless,
        subordinate,
        state,
        mut child,
        candidates,
        path_var,
    } = prepare(spec, false)?;
    apply_security(&mut child, security);
    let points = if spec.work.as_os_str().is_empty() {
        let folder = state.path().join("mountpoints");
        let created =
            super::points::merge(&folder, &spec.upper).map_err(|source| SandboxError::Prepare {
                command: command.clone(),
                action: "create mount points in".to_string(),
                path: spec.upper.clone(),
                source,
            })?;
        Some(created)
    } else {
        None
    };
    let outcome = start_and_wait(spec, &command, &mut child, rootless, subordinate, output);
    if let Some(points) = points {
        points.remove();
    }
    let outcome = outcome?;
    let Finished {
        reports,
        init_status,
        interrupted,
        tail,
    } = outcome;
    drop(state);

    if let Some(signal) = interrupted {
        return Err(SandboxError::Interrupted {
            command,
            signal,
            tail,
        });
    }
    interpret(
        &command,
        &program,
        &path_var,
        &candidates,
        &child.steps,
        reports,
        init_status,
        tail,
        rootless,
    )
}

/// Resolves the user, mounts, mount plan, environment and PATH lookup of
/// `spec` without starting anything. With `console` the plan creates the
/// mount point `/dev/console` for the terminal of `forge run -t`.
pub(super) fn prepare(spec: &RunSpec, console: bool) -> Result<Prepared, SandboxError> {
    let command = spec.argv.join(" ");
    let Some(program) = spec.argv.first() else {
        return Err(SandboxError::InvalidSpec {
            command,
            reason: "the command is empty; give RUN a command".to_string(),
        });
    };
    let rootless = !rustix::process::geteuid().is_root();
    let prepare_error = |action: &str, path: &Path, source: io::Error| SandboxError::Prepare {
        command: command.clone(),
        action: action.to_string(),
        path: path.to_path_buf(),
        source,
    };

    let state =
        StateDir::create().map_err(|e| prepare_error("create", &std::env::temp_dir(), e))?;
    let state_path = state.path().to_path_buf();
    let layer = state_path.join("mountpoints");
    let root = state_path.join("root");
    let scratch = state_path.join("scratch");
    let copies = state_path.join("copies");
    for dir in [&layer, &root, &scratch, &copies] {
        fs::create_dir(dir).map_err(|e| prepare_error("create", dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| prepare_error("set the mode of", dir, e))?;
    }

    // The user, from the image's own account files.
    let view = ImageView::new(&spec.lowers);
    let read_text = |path: &str| -> Result<String, SandboxError> {
        let bytes = view
            .read_file(path)
            .map_err(|e| prepare_error("read", Path::new(path), e))?;
        Ok(bytes
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    };
    let exec_user = user::resolve(
        &spec.user,
        &read_text("/etc/passwd")?,
        &read_text("/etc/group")?,
    )
    .map_err(|reason| SandboxError::User {
        command: command.clone(),
        user: spec.user.clone(),
        reason,
    })?;
    let subordinate = if rootless { subordinate_ids() } else { None };
    if rootless {
        check_mapped(&command, spec, &exec_user, subordinate)?;
    }

    // RUN --mount entries and the mount points they need.
    let mut planned = Vec::new();
    let mut extra_env = Vec::new();
    let mut points = vec![
        ("/proc".to_string(), PointKind::Dir),
        ("/dev".to_string(), PointKind::Dir),
        ("/sys".to_string(), PointKind::Dir),
    ];
    for name in ["hosts", "resolv.conf", "hostname"] {
        let path = view
            .resolve(&format!("/etc/{name}"))
            .map_err(|e| prepare_error("resolve", Path::new(name), e))?;
        if path != format!("/etc/{name}") {
            // NOTE: an image whose /etc file is a symlink gets the
            // generated file at the symlink's target.
            tracing::debug!(name, %path, "generated /etc file follows a symlink");
        }
        points.push((path, PointKind::File));
    }
    let mut ssh_count = 0;
    for (index, mount) in spec.mounts.iter().enumerate() {
        let resolved =
            prepare::resolve_mount(&command, spec, &view, mount, index, ssh_count, &copies)?;
        if matches!(mount.kind, super::RunMountKind::Ssh { .. }) {
            ssh_count += 1;
        }
        if let Some(env) = resolved.env {
            extra_env.push(env);
        }
        if let Some(mount) = resolved.planned {
            points.push((mount.target.clone(), resolved.kind));
            planned.push(mount);
        }
    }
    for (path, kind) in &points {
        prepare::ensure_mount_point(&view, &layer, path, *kind).map_err(|reason| {
            SandboxError::InvalidSpec {
                command: command.clone(),
                reason,
            }
        })?;
    }
    let etc = state_path.join("etc");
    prepare::write_etc_files(&etc, &spec.hostname).map_err(|e| prepare_error("write", &etc, e))?;
    match_root_metadata(&view, &spec.upper)
        .map_err(|e| prepare_error("set the mode of", &spec.upper, e))?;

    let workdir = if spec.workdir.is_empty() {
        "/".to_string()
    } else if spec.workdir.starts_with('/') {
        spec.workdir.clone()
    } else {
        format!("/{}", spec.workdir)
    };
    let mut lowers = vec![layer.clone()];
    lowers.extend(spec.lowers.iter().cloned());
    let layout = Layout {
        root: root.clone(),
        lowers,
        upper: spec.upper.clone(),
        work: spec.work.clone(),
        etc,
        scratch,
        rootless,
        hostname: spec.hostname.clone(),
        mounts: planned,
        workdir: workdir.clone(),
        workdir_owner: (exec_user.uid, exec_user.gid),
        console,
        volatile: spec.volatile_upper && overlay_volatile_supported(),
    };
    let steps = plan::build(&layout).map_err(|error| SandboxError::InvalidSpec {
        command: command.clone(),
        reason: format!("`{}` contains a NUL byte", error.0),
    })?;

    // The command line, environment and PATH lookup.
    let env = prepare::environment(&spec.env, &exec_user, &extra_env);
    let path_var = env
        .iter()
        .find(|(name, _)| name == "PATH")
        .map_or(DEFAULT_PATH, |(_, value)| value.as_str())
        .to_string();
    let candidates = prepare::exec_candidates(program, &path_var);
    let mut child = ChildSpec {
        steps,
        candidates: candidates
            .iter()
            .map(|path| c_string(&command, "program path", path))
            .collect::<Result<_, _>>()?,
        argv: Vec::new(),
        argv_storage: spec
            .argv
            .iter()
            .map(|arg| c_string(&command, "argument", arg))
            .collect::<Result<_, _>>()?,
        envp: Vec::new(),
        env_storage: env
            .iter()
            .map(|(name, value)| {
                c_string(&command, "environment variable", &format!("{name}={value}"))
            })
            .collect::<Result<_, _>>()?,
        workdir: c_string(&command, "working directory", &workdir)?,
        uid: exec_user.uid,
        gid: exec_user.gid,
        groups: exec_user.groups.clone(),
        set_groups: !rootless || subordinate.is_some(),
        loopback_up: spec.network == Network::None,
        terminal: None,
        capabilities: Some(caps::DEFAULT_MASK),
        arg_region: title::arg_region(),
        stdin: -1,
        stdout: -1,
        stderr: -1,
        report: -1,
        sync: -1,
    };
    child.link_pointers();
    Ok(Prepared {
        command,
        program: program.clone(),
        rootless,
        subordinate,
        state,
        child,
        candidates,
        path_var,
    })
}

/// Lifts the limits of [`prepare`] for [`Security::Insecure`]: the command
/// keeps every capability and sees every kernel file.
pub(super) fn apply_security(child: &mut ChildSpec, security: Security) {
    if security == Security::Insecure {
        child.capabilities = None;
        plan::remove_kernel_masks(&mut child.steps);
    }
}

/// Outcome of a finished sandbox, as its parent observed it.
struct Finished {
    reports: Vec<Report>,
    init_status: i32,
    interrupted: Option<i32>,
    tail: Vec<String>,
}

/// Kills and reaps the sandbox init unless it was reaped already.
pub(super) struct Reaper {
    pub(super) pid: libc::pid_t,
    pub(super) reaped: bool,
}

impl Reaper {
    #[allow(unsafe_code)]
    pub(super) fn wait(&mut self) -> io::Result<i32> {
        let mut status = 0;
        loop {
            // SAFETY: `status` is a valid out pointer.
            let result = unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) };
            if result == self.pid {
                self.reaped = true;
                return Ok(status);
            }
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EINTR) {
                return Err(error);
            }
        }
    }

    #[allow(unsafe_code)]
    pub(super) fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill takes plain integers; the pid is our unreaped child,
        // so it cannot have been reused.
        unsafe { libc::kill(self.pid, signal) };
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGKILL);
            let _ = self.wait();
        }
    }
}

pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io::Error::from)
}

#[allow(clippy::too_many_lines)]
fn start_and_wait(
    spec: &RunSpec,
    command: &str,
    child: &mut ChildSpec,
    rootless: bool,
    subordinate: Option<Subordinate>,
    output: &mut dyn OutputSink,
) -> Result<Finished, SandboxError> {
    let process_error = |action: &str, source: io::Error| SandboxError::Process {
        command: command.to_string(),
        action: action.to_string(),
        source,
        hint: String::new(),
    };
    let (stdout_read, stdout_write) = pipe().map_err(|e| process_error("create a pipe", e))?;
    let (stderr_read, stderr_write) = pipe().map_err(|e| process_error("create a pipe", e))?;
    let (report_read, report_write) = pipe().map_err(|e| process_error("create a pipe", e))?;
    let (sync_read, sync_write) = pipe().map_err(|e| process_error("create a pipe", e))?;
    let stdin = fs::File::open("/dev/null").map_err(|e| process_error("open /dev/null", e))?;
    child.stdin = stdin.as_raw_fd();
    child.stdout = stdout_write.as_raw_fd();
    child.stderr = stderr_write.as_raw_fd();
    child.report = report_write.as_raw_fd();
    child.sync = sync_read.as_raw_fd();

    let watch = Watch::new().map_err(|e| process_error("watch for SIGINT and SIGTERM", e))?;

    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if spec.network == Network::None {
        flags |= libc::CLONE_NEWNET;
    }
    if rootless {
        flags |= libc::CLONE_NEWUSER;
    }
    let pid = match child::clone_process(flags) {
        Ok(0) => child::init_main(child),
        Ok(pid) => pid,
        Err(errno) => {
            let hint = if rootless {
                "; this system does not allow user namespaces for ordinary users \
                 (see sysctl user.max_user_namespaces); run forge as root"
            } else {
                ""
            };
            return Err(SandboxError::Process {
                command: command.to_string(),
                action: "create the sandbox's namespaces".to_string(),
                source: io::Error::from_raw_os_error(errno),
                hint: hint.to_string(),
            });
        }
    };
    let mut reaper = Reaper { pid, reaped: false };
    drop((stdout_write, stderr_write, report_write, sync_read, stdin));

    if rootless {
        map_sandbox_ids(pid, subordinate, command)?;
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

    let mut tail = Tail::default();
    let mut open = [Some(stdout_read), Some(stderr_read)];
    let mut init_exited = false;
    let mut interrupted: Option<i32> = None;
    let mut kill_at: Option<Instant> = None;
    let mut buffer = vec![0u8; 64 * 1024];
    while !(init_exited && open.iter().all(Option::is_none)) {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4);
        let mut owners: Vec<Option<usize>> = Vec::with_capacity(4);
        for (index, fd) in open.iter().enumerate() {
            if let Some(fd) = fd {
                fds.push(pollfd(fd.as_raw_fd()));
                owners.push(Some(index));
            }
        }
        let watch_slot = fds.len();
        fds.push(pollfd(watch.fd().as_raw_fd()));
        let pidfd_slot = fds.len();
        if !init_exited {
            fds.push(pollfd(pidfd.as_raw_fd()));
        }
        let timeout = kill_at.map_or(-1, |at| {
            i32::try_from(at.saturating_duration_since(Instant::now()).as_millis())
                .unwrap_or(i32::MAX)
        });
        poll(&mut fds, timeout).map_err(|e| process_error("wait for output", e))?;

        for (slot, owner) in owners.iter().enumerate() {
            let Some(index) = owner else { continue };
            if fds[slot].revents == 0 {
                continue;
            }
            let Some(fd) = open[*index].as_ref() else {
                continue;
            };
            match rustix::io::read(fd, &mut buffer) {
                Ok(0) => open[*index] = None,
                Ok(count) => {
                    let bytes = &buffer[..count];
                    if *index == 0 {
                        output.stdout(bytes);
                    } else {
                        output.stderr(bytes);
                    }
                    tail.push(*index, bytes);
                }
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(error) => return Err(process_error("read the command's output", error.into())),
            }
        }
        if fds[watch_slot].revents != 0 {
            if let Some(signal) = watch.take() {
                if interrupted.is_none() {
                    tracing::debug!(signal, pid, "forwarding signal to the sandbox");
                    interrupted = Some(signal);
                    reaper.signal(signal);
                    kill_at = Some(Instant::now() + GRACE);
                }
            }
        }
        if !init_exited && fds.get(pidfd_slot).is_some_and(|fd| fd.revents != 0) {
            init_exited = true;
        }
        if kill_at.is_some_and(|at| Instant::now() >= at) && !init_exited {
            reaper.signal(libc::SIGKILL);
            kill_at = None;
        }
    }

    let init_status = reaper
        .wait()
        .map_err(|e| process_error("wait for the sandbox", e))?;
    let mut reports = Vec::new();
    let mut record = [0u8; REPORT_SIZE];
    let mut filled = 0;
    loop {
        match rustix::io::read(&report_read, &mut record[filled..]) {
            Ok(0) => break,
            Ok(count) => {
                filled += count;
                if filled == REPORT_SIZE {
                    reports.extend(Report::decode(&record));
                    filled = 0;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(process_error("read the sandbox's report", error.into())),
        }
    }
    Ok(Finished {
        reports,
        init_status,
        interrupted,
        tail: tail.finish(),
    })
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

#[allow(unsafe_code)]
fn poll(fds: &mut [libc::pollfd], timeout: i32) -> io::Result<()> {
    // SAFETY: `fds` is a valid slice of pollfd structures of the given length.
    let result = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if result < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EINTR) {
            for fd in fds.iter_mut() {
                fd.revents = 0;
            }
            return Ok(());
        }
        return Err(error);
    }
    Ok(())
}

/// Turns the sandbox's reports into the result of [`run`].
#[allow(clippy::too_many_arguments)]
pub(super) fn interpret(
    command: &str,
    program: &str,
    path_var: &str,
    candidates: &[String],
    steps: &[Step],
    reports: Vec<Report>,
    init_status: i32,
    tail: Vec<String>,
    rootless: bool,
) -> Result<RunOutcome, SandboxError> {
    let Some(report) = reports.first().copied() else {
        return Err(SandboxError::Process {
            command: command.to_string(),
            action: "run the sandbox".to_string(),
            source: io::Error::other(format!(
                "the sandbox's init ended without a report ({})",
                describe_status(init_status)
            )),
            hint: String::new(),
        });
    };
    match report {
        Report::Status { status } => {
            let (exit_code, signal) = if libc::WIFEXITED(status) {
                (Some(libc::WEXITSTATUS(status)), None)
            } else if libc::WIFSIGNALED(status) {
                (None, Some(libc::WTERMSIG(status)))
            } else {
                (None, None)
            };
            Ok(RunOutcome {
                exit_code,
                signal,
                tail,
            })
        }
        Report::Step { index, errno } => {
            let step = usize::try_from(index).ok().and_then(|i| steps.get(i));
            let description = step.map_or_else(|| "set up the sandbox".to_string(), Step::describe);
            let hint = match (index, errno) {
                (1, libc::EPERM) if rootless => {
                    "; this kernel does not allow overlayfs in a user namespace; run forge as root"
                }
                (1, libc::EINVAL) => {
                    "; the upper and work folders must be empty folders on one file system that \
                     is not itself an overlay"
                }
                _ => "",
            };
            Err(SandboxError::Setup {
                command: command.to_string(),
                step: description,
                source: io::Error::from_raw_os_error(errno),
                hint: hint.to_string(),
            })
        }
        Report::Command { stage, errno } => Err(SandboxError::Setup {
            command: command.to_string(),
            step: CommandStage::describe(stage).to_string(),
            source: io::Error::from_raw_os_error(errno),
            hint: String::new(),
        }),
        Report::Exec { index, errno } => {
            let reason = match usize::try_from(index).ok().and_then(|i| candidates.get(i)) {
                Some(path) => format!("failed to execute `{path}`"),
                None if program.contains('/') => {
                    format!("`{program}` not found in the image; check the path")
                }
                None => format!(
                    "executable `{program}` not found in PATH `{path_var}`; install it in an \
                     earlier step or give its absolute path"
                ),
            };
            Err(SandboxError::Exec {
                command: command.to_string(),
                reason,
                source: io::Error::from_raw_os_error(errno),
            })
        }
    }
}

fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("wait status {status}")
    }
}

/// Gives the upper folder the mode (and, as root, the owner) of the image's
/// root folder: the overlay's root takes them from the upper folder.
fn match_root_metadata(view: &ImageView<'_>, upper: &Path) -> io::Result<()> {
    let (mode, owner) = match view.lstat("/")? {
        Some((_, metadata)) => (
            metadata.mode() & 0o7777,
            Some((metadata.uid(), metadata.gid())),
        ),
        None => (0o755, Some((0, 0))),
    };
    fs::set_permissions(upper, fs::Permissions::from_mode(mode))?;
    if let (Some((uid, gid)), true) = (owner, rustix::process::geteuid().is_root()) {
        std::os::unix::fs::lchown(upper, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// The last lines of output, for failure messages.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    partial: [Vec<u8>; 2],
}

impl Tail {
    fn push(&mut self, stream: usize, bytes: &[u8]) {
        let Some(partial) = self.partial.get_mut(stream) else {
            return;
        };
        partial.extend_from_slice(bytes);
        while let Some(end) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.lines.push_back(text);
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
        // A line without end stays bounded.
        if partial.len() > 4096 {
            let cut = partial.len() - 4096;
            partial.drain(..cut);
        }
    }

    fn finish(mut self) -> Vec<String> {
        for partial in &self.partial {
            if !partial.is_empty() {
                self.lines
                    .push_back(String::from_utf8_lossy(partial).into_owned());
            }
        }
        while self.lines.len() > TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.into()
    }
}

/// Returns the caller's subordinate ranges when both files grant one and
/// `newuidmap` and `newgidmap` are installed.
pub(super) fn subordinate_ids() -> Option<Subordinate> {
    let uid = rustix::process::getuid().as_raw();
    let name = fs::read_to_string("/etc/passwd").ok().and_then(|text| {
        text.lines().find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let entry_uid: u32 = fields.nth(1)?.parse().ok()?;
            (entry_uid == uid).then(|| name.to_string())
        })
    });
    let find = |file: &str| -> Option<(u32, u32)> {
        let text = fs::read_to_string(file).ok()?;
        text.lines().find_map(|line| {
            let mut fields = line.split(':');
            let owner = fields.next()?;
            let start = fields.next()?.parse().ok()?;
            let count = fields.next()?.trim().parse().ok()?;
            let matches = owner == uid.to_string() || Some(owner) == name.as_deref();
            matches.then_some((start, count))
        })
    };
    let has_tool = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
    };
    let (uid_start, uid_count) = find("/etc/subuid")?;
    let (gid_start, gid_count) = find("/etc/subgid")?;
    if !has_tool("newuidmap") || !has_tool("newgidmap") {
        return None;
    }
    Some(Subordinate {
        uid_start,
        gid_start,
        count: uid_count.min(gid_count),
    })
}

/// Checks that the command's ids exist in the user namespace.
fn check_mapped(
    command: &str,
    spec: &RunSpec,
    user: &ExecUser,
    subordinate: Option<Subordinate>,
) -> Result<(), SandboxError> {
    let limit = subordinate.map_or(0, |sub| sub.count);
    let ids = [user.uid, user.gid]
        .into_iter()
        .chain(user.groups.iter().copied());
    for id in ids {
        if id != 0 && id > limit {
            let reason = match subordinate {
                Some(_) => format!(
                    "id {id} is outside the {limit} ids that /etc/subuid and /etc/subgid grant; \
                     grant a larger range or run forge as root"
                ),
                None => format!(
                    "without root only id 0 exists in the sandbox and id {id} is not mapped; \
                     grant the caller subordinate ids in /etc/subuid and /etc/subgid (usermod \
                     --add-subuids, package uidmap) or run forge as root"
                ),
            };
            return Err(SandboxError::User {
                command: command.to_string(),
                user: spec.user.clone(),
                reason,
            });
        }
    }
    Ok(())
}

/// Writes the user namespace's id maps for process `pid`: the caller is
/// root, and ids from 1 map to the subordinate range when there is one.
/// Maps the ids of the sandbox process `pid`, with an error that names
/// `command` and the packages that provide the helpers.
pub(super) fn map_sandbox_ids(
    pid: libc::pid_t,
    subordinate: Option<Subordinate>,
    command: &str,
) -> Result<(), SandboxError> {
    map_ids(pid, subordinate).map_err(|source| SandboxError::Process {
        command: command.to_string(),
        action: format!("map user ids for the sandbox (process {pid})"),
        source,
        hint: "; check /etc/subuid and /etc/subgid and that newuidmap and newgidmap \
               (package uidmap) are installed"
            .to_string(),
    })
}

pub(super) fn map_ids(pid: libc::pid_t, subordinate: Option<Subordinate>) -> io::Result<()> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let Some(sub) = subordinate else {
        fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
        fs::write(format!("/proc/{pid}/uid_map"), format!("0 {uid} 1\n"))?;
        fs::write(format!("/proc/{pid}/gid_map"), format!("0 {gid} 1\n"))?;
        return Ok(());
    };
    for (tool, own, start) in [
        ("newuidmap", uid, sub.uid_start),
        ("newgidmap", gid, sub.gid_start),
    ] {
        let output = std::process::Command::new(tool)
            .arg(pid.to_string())
            .args(["0", &own.to_string(), "1"])
            .args(["1", &start.to_string(), &sub.count.to_string()])
            .stdin(std::process::Stdio::null())
            .output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "{tool} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// Returns whether the running kernel's overlayfs has the `volatile` mount
/// option, which Linux 5.10 added.
fn overlay_volatile_supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        kernel_at_least(&release, (5, 10))
    })
}

/// Compares a kernel release such as `6.1.0-13-amd64` with `minimum`.
fn kernel_at_least(release: &str, minimum: (u32, u32)) -> bool {
    let mut parts = release.trim().split(['.', '-']);
    let number = |part: Option<&str>| part.and_then(|text| text.parse::<u32>().ok());
    match (number(parts.next()), number(parts.next())) {
        (Some(major), Some(minor)) => (major, minor) >= minimum,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_release_compares() {
        assert!(kernel_at_least("6.18.44", (5, 10)));
        assert!(kernel_at_least("5.10.0-28-amd64", (5, 10)));
        assert!(!kernel_at_least("5.4.0-150-generic", (5, 10)));
        assert!(!kernel_at_least("4.19.0", (5, 10)));
        assert!(!kernel_at_least("unknown", (5, 10)));
    }

    #[test]
    fn tail_keeps_last_lines() {
        let mut tail = Tail::default();
        for i in 0..30 {
            tail.push(i % 2, format!("line {i}\n").as_bytes());
        }
        tail.push(0, b"partial");
        let lines = tail.finish();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.last().map(String::as_str), Some("partial"));
        assert_eq!(lines.first().map(String::as_str), Some("line 11"));
    }

    #[test]
    fn tail_joins_split_lines() {
        let mut tail = Tail::default();
        tail.push(1, b"hel");
        tail.push(1, b"lo\nworld\n");
        assert_eq!(
            tail.finish(),
            vec!["hello".to_string(), "world".to_string()]
        );
    }
}
