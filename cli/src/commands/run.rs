//! `forge run`: start a container from a stored image, like `docker run`.
//!
//! In the foreground, this process supervises the container and exits with
//! the command's exit code. With `-d` a detached `forge supervise-container`
//! process supervises it and `run` prints the container id. When forge
//! itself fails, the exit code is 125; 126 means the command could not be
//! executed and 127 that it was not found, as with docker.

use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use forge_builder::runner::{
    self, Attach, Containers, RunOptions, RunnerError, Status, state::Limits,
};

use crate::Globals;

/// How long `run -d` waits for the detached supervisor to start the
/// container.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `forge run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    detach: bool,

    /// Keep standard input open and pass it to the command.
    #[arg(short = 'i', long)]
    interactive: bool,

    /// Give the command a terminal; Ctrl-C then goes to the command, and
    /// the terminal follows the window size of forge's own terminal.
    #[arg(short = 't', long)]
    tty: bool,

    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,

    /// Name of the container; a random `adjective_surname` by default.
    #[arg(long)]
    name: Option<String>,

    /// Set an environment variable: NAME=VALUE, or NAME to copy forge's
    /// own value.
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,

    /// Read environment variables from a file, one NAME=VALUE per line.
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,

    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,

    /// User as name, uid, name:group or uid:gid.
    #[arg(short = 'u', long = "user")]
    user: Option<String>,

    /// Replace the image's ENTRYPOINT (and drop its CMD); "" clears it.
    #[arg(long, value_name = "COMMAND")]
    entrypoint: Option<String>,

    /// Host name inside the container; the short container id by default.
    #[arg(long)]
    hostname: Option<String>,

    /// Mount a host path or named volume: SOURCE:TARGET[:OPTIONS]. A
    /// SOURCE starting with `/` or `.` is a host path, anything else a
    /// volume name kept in the store. An empty named volume first gets the
    /// image's files at TARGET. OPTIONS are `ro`, `rw` and `nocopy` (do not
    /// copy the image's files), separated by commas. `-v TARGET` alone
    /// makes a new volume of this container, removed with it.
    #[arg(short = 'v', long = "volume", value_name = "SOURCE:TARGET[:OPTIONS]")]
    volume: Vec<String>,

    /// Network: `default` (own network namespace with loopback, reachable
    /// through -p), `none` (loopback only) or `host` (the host's network).
    #[arg(long, default_value = "default", value_name = "MODE")]
    network: String,

    /// Publish a container port: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp].
    /// The host side listens on 127.0.0.1 unless an IP such as 0.0.0.0 is
    /// given; without HOST_PORT a free port is picked.
    #[arg(short = 'p', long = "publish", value_name = "PORTS")]
    publish: Vec<String>,

    /// Publish every EXPOSE port of the image on a free port of 127.0.0.1.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,

    /// CPUs the container may use, such as `0` or `0-2,4`.
    #[arg(long = "cpuset-cpus", value_name = "CPUS")]
    cpuset_cpus: Option<String>,

    /// CPU time limit in CPUs, such as 0.5 or 2.
    #[arg(long, value_name = "NUMBER")]
    cpus: Option<f64>,

    /// Memory limit in bytes, or with a b, k, m or g suffix (64m).
    #[arg(short = 'm', long, value_name = "SIZE")]
    memory: Option<String>,

    /// Maximum number of processes; 0 or -1 for no limit.
    #[arg(
        long = "pids-limit",
        value_name = "NUMBER",
        allow_negative_numbers = true
    )]
    pids_limit: Option<i64>,

    /// Image name, digest or id.
    #[arg(value_name = "IMAGE")]
    image: String,

    /// Command and arguments; replace the image's CMD.
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

/// Arguments of the hidden `forge supervise-container`, which `run -d`
/// starts in the background.
#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// Id of a created container.
    id: String,
}

/// Runs `forge run` and exits with the container's exit code.
pub fn run(globals: &Globals, args: &RunArgs) -> anyhow::Result<()> {
    let code = match start(globals, args) {
        Ok(code) => code,
        Err(error) => {
            let code = error
                .chain()
                .find_map(|cause| cause.downcast_ref::<RunnerError>())
                .map_or(runner::EXIT_FORGE_ERROR, RunnerError::exit_code);
            print_error(&error);
            code
        }
    };
    let _ = io::stdout().flush();
    std::process::exit(code)
}

/// Prints an error as `exit::report` does, for errors that need another
/// exit code than 1.
#[allow(clippy::print_stderr)]
fn print_error(error: &anyhow::Error) {
    for line in crate::exit::message_lines(error) {
        eprintln!("{line}");
    }
}

fn options(args: &RunArgs) -> anyhow::Result<RunOptions> {
    let mut env_files = Vec::new();
    for path in &args.env_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --env-file `{}`", path.display()))?;
        env_files.push(text);
    }
    let memory = args
        .memory
        .as_deref()
        .map(runner::parse_memory)
        .transpose()?;
    if let Some(cpus) = args.cpus {
        if !(cpus > 0.0 && cpus.is_finite()) {
            anyhow::bail!("invalid --cpus `{cpus}`: give a positive number such as 0.5 or 2");
        }
    }
    Ok(RunOptions {
        image: args.image.clone(),
        command: args.command.clone(),
        entrypoint: args.entrypoint.clone(),
        env: args.env.clone(),
        env_files,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        hostname: args.hostname.clone(),
        name: args.name.clone(),
        auto_remove: args.rm,
        interactive: args.interactive,
        tty: args.tty,
        volumes: args.volume.clone(),
        network: args.network.clone(),
        publish: args.publish.clone(),
        publish_all: args.publish_all,
        limits: Limits {
            cpuset_cpus: args.cpuset_cpus.clone(),
            cpus: args.cpus,
            memory,
            pids_limit: args.pids_limit,
        },
    })
}

fn duplicate(fd: impl AsFd) -> io::Result<OwnedFd> {
    fd.as_fd().try_clone_to_owned()
}

fn start(globals: &Globals, args: &RunArgs) -> anyhow::Result<i32> {
    // A terminal echoes piped input and never sends its end, so the
    // command would wait for more input forever, as docker also refuses.
    if args.interactive && args.tty && !args.detach && !io::stdin().is_terminal() {
        anyhow::bail!(
            "the input device is not a terminal; drop -t to pipe input into the command, or run forge from a terminal"
        );
    }
    let store = globals.open_store()?;
    let options = options(args)?;
    let state = runner::create(&store, &options)?;

    if args.detach {
        return detach(store.root(), &state.id);
    }
    let attach = Attach {
        stdin: if args.interactive {
            Some(duplicate(io::stdin())?)
        } else {
            None
        },
        stdout: Some(duplicate(io::stdout())?),
        stderr: Some(duplicate(io::stderr())?),
        forward_signals: true,
    };
    Ok(runner::supervise(store.root(), &state.id, attach)?)
}

/// Starts a detached supervisor for container `id`, waits until it has
/// started the command and prints the id.
fn detach(root: &Path, id: &str) -> anyhow::Result<i32> {
    let program = std::env::current_exe().context("cannot find the forge program to start")?;
    let mut child = Command::new(&program)
        .arg("--root")
        .arg(root)
        .arg("supervise-container")
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A process group of its own keeps Ctrl-C in this terminal away.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start `{}`", program.display()))?;

    let containers = Containers::new(root);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let state = match containers.load(id) {
            Ok(state) => Some(state),
            // `--rm` removes the folder of a command that already ended.
            Err(_) if !containers.dir(id).exists() => None,
            Err(error) => return Err(error.into()),
        };
        match state {
            Some(state) if state.status == Status::Created => {}
            Some(state) => {
                if let Some(error) = state.error {
                    print_error(&anyhow::anyhow!(
                        "container `{}` failed to start: {error}",
                        state.name
                    ));
                    return Ok(state.exit_code.unwrap_or(runner::EXIT_FORGE_ERROR));
                }
                break;
            }
            None => break,
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the container's supervisor exited ({status}) before it started");
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the container did not start within {} seconds",
                START_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = io::stdout().lock();
    writeln!(out, "{id}")?;
    out.flush()?;
    Ok(0)
}

/// Runs the hidden `forge supervise-container ID` and exits with the
/// container's exit code. Errors are recorded in the container's record.
pub fn supervise(globals: &Globals, args: &SuperviseArgs) -> anyhow::Result<()> {
    let store = globals.open_store()?;
    let code = match runner::supervise(store.root(), &args.id, Attach::default()) {
        Ok(code) => code,
        Err(error) => error.exit_code(),
    };
    std::process::exit(code)
}
