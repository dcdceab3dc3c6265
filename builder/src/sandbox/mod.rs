//! The RUN sandbox: Linux namespaces over an overlay of the parent layers.
//!
//! [`run`] executes one RUN step. The command sees an overlay whose lower
//! directories are the parent layers (top first) and whose upper directory
//! is [`RunSpec::upper`], so everything the command writes lands there and
//! the engine turns that folder into the step's layer. The sandbox has its
//! own mount, PID, UTS and IPC namespaces, and its own network namespace
//! for `--network=none`. Without root it also gets a user namespace that
//! maps the caller to root. [`launch`] starts the same sandbox for
//! `forge run` with the caller's standard streams and returns at once.
//!
//! Every mount lives in the sandbox's mount namespace, so the kernel drops
//! them all when its last process exits. Mount points that the sandbox had
//! to create in the upper directory (for `/proc`, `/dev`, `/etc/hosts`,
//! `RUN --mount` targets, ...) are removed again after the run unless the
//! image already had them or the command wrote below them.

#[cfg(target_os = "linux")]
mod caps;
#[cfg(target_os = "linux")]
mod child;
mod error;
#[cfg(target_os = "linux")]
mod image;
#[cfg(target_os = "linux")]
mod launch;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod owners;
#[cfg(target_os = "linux")]
mod plan;
#[cfg(target_os = "linux")]
mod points;
#[cfg(target_os = "linux")]
mod prepare;
#[cfg(target_os = "linux")]
mod signals;
#[cfg(target_os = "linux")]
mod syscall;
#[cfg(target_os = "linux")]
mod terminal;
#[cfg(target_os = "linux")]
mod title;
#[cfg(target_os = "linux")]
mod user;

pub use error::SandboxError;
#[cfg(target_os = "linux")]
pub use launch::{CommandStreams, InterruptWatch, LaunchIo, Launched, launch};

use std::path::PathBuf;

pub use forge_parser::instructions::{Network, Security};

/// Returns the id map of the RUN sandbox's user namespace, or `None` as
/// root, where the sandbox has no user namespace. Layers of a build without
/// root are written through this map, so they record container ids.
pub fn rootless_id_map() -> Option<forge_cache::layer::IdMap> {
    #[cfg(target_os = "linux")]
    {
        owners::rootless_id_map()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Returns the unpacked folder of a layer, the form that the sandbox
/// stacks, extracting it first when needed (see
/// [`forge_cache::store::Store::ensure_unpacked`]). Without root the files
/// get their owners from inside the sandbox's user namespace, through
/// [`set_layer_owners`], so that RUN steps find the owners that the layer records.
///
/// # Errors
///
/// As [`forge_cache::store::Store::ensure_unpacked_with_owners`].
pub fn unpack_layer(
    store: &forge_cache::store::Store,
    layer: &oci_spec::image::Descriptor,
    diff_id: &oci_spec::image::Digest,
) -> Result<PathBuf, forge_cache::store::StoreError> {
    let set_owners = |dir: &std::path::Path, owners: &[forge_cache::layer::RecordedOwner]| {
        set_layer_owners(dir, owners)
            .map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>)
    };
    let setter: Option<&forge_cache::store::OwnerSetter<'_>> =
        if rustix::process::geteuid().is_root() {
            None
        } else {
            Some(&set_owners)
        };
    store.ensure_unpacked_with_owners(layer, diff_id, setter)
}

/// Returns the unpacked folder of `layer`: the folder of a layer kept only
/// unpacked, or the blob unpacked by [`unpack_layer`].
///
/// # Errors
///
/// [`crate::BuildError::Store`] when the blob cannot be unpacked;
/// [`crate::BuildError::Io`] when a layer kept only unpacked has lost its
/// folder.
pub fn unpack_layer_ref(
    store: &forge_cache::store::Store,
    layer: &crate::image::LayerRef,
) -> Result<PathBuf, crate::BuildError> {
    match &layer.blob {
        crate::image::LayerBlob::Stored(descriptor) => {
            unpack_layer(store, descriptor, &layer.diff_id).map_err(crate::BuildError::store(
                format!("unpack layer {}", layer.diff_id),
            ))
        }
        crate::image::LayerBlob::Pending(_) => {
            store
                .unpacked_dir(&layer.diff_id)
                .ok_or_else(|| crate::BuildError::Io {
                    action: "find the unpacked folder of layer",
                    path: store
                        .root()
                        .join("forge/unpacked")
                        .join(layer.diff_id.digest()),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "missing, so `forge prune` or `forge store check --repair` removed it while the build ran. Build again",
                    ),
                })
        }
    }
}

/// Gives the files of an unpacked layer folder the container owners that
/// the layer records, as the RUN sandbox's user namespace shows them. Does
/// nothing as root, where extraction sets owners itself.
///
/// # Errors
///
/// When the owners cannot be set; the error names the path.
pub fn set_layer_owners(
    dir: &std::path::Path,
    owners: &[forge_cache::layer::RecordedOwner],
) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        owners::set_owners(dir, owners)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (dir, owners);
        Ok(())
    }
}

/// Everything one RUN step needs, resolved by the engine.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Unpacked layer folders, top first. Empty for `FROM scratch`.
    pub lowers: Vec<PathBuf>,
    /// Fresh, empty folder that receives the command's writes. It must sit
    /// on the same file system as `work` and must not be on an overlay.
    pub upper: PathBuf,
    /// Fresh, empty overlay work folder on the file system of `upper`. An
    /// empty path selects the copy snapshotter: `upper` is then a complete
    /// copy of the root file system, which the sandbox mounts as `/` in
    /// place of an overlay, so the command's writes change it directly.
    pub work: PathBuf,
    /// Command and arguments, executed directly; the engine has already
    /// wrapped shell-form commands in the stage's SHELL.
    pub argv: Vec<String>,
    /// Environment of the command, in order; later entries win.
    pub env: Vec<(String, String)>,
    /// Working directory in the image; created when missing. Empty means `/`.
    pub workdir: String,
    /// `USER` value: `name`, `uid`, `uid:gid`, `name:group` or empty for root,
    /// resolved with the image's `/etc/passwd` and `/etc/group`.
    pub user: String,
    /// Network of the step: `none` gets a new network namespace with only a
    /// loopback interface; `default` and `host` share the host's network.
    pub network: Network,
    /// Host name inside the sandbox, also written to `/etc/hostname`.
    pub hostname: String,
    /// Resolved `RUN --mount` entries, mounted in order.
    pub mounts: Vec<RunMount>,
    /// Whether the overlay skips syncing `upper`: the command's `fsync`
    /// calls return at once, and the overlay does not sync when it is
    /// unmounted. The caller then syncs the file system of `upper` itself
    /// once the command has ended, as build steps do. Ignored where the
    /// kernel lacks overlayfs' `volatile` option (before Linux 5.10).
    pub volatile_upper: bool,
}

/// One resolved `RUN --mount`.
#[derive(Debug, Clone)]
pub struct RunMount {
    /// Absolute mount point in the container. `None` is allowed only for
    /// [`RunMountKind::Ssh`] (the socket goes to `/run/buildkit/ssh_agent.N`)
    /// and for a secret exposed only through its `env` variable.
    pub target: Option<String>,
    /// Kind and source of the mount.
    pub kind: RunMountKind,
}

/// The source of a [`RunMount`].
#[derive(Debug, Clone)]
pub enum RunMountKind {
    /// A host folder or file (from the build context, a stage or an image).
    /// With `read_write` the command may write below the target, but the
    /// writes go to a throw-away overlay and never reach `source`.
    Bind {
        /// Host path to mount.
        source: PathBuf,
        /// Whether the command may write (to a discarded copy).
        read_write: bool,
    },
    /// A folder of a stage or image whose content several layers add to:
    /// the layers' host folders merged by an overlay, the top layer first.
    /// With `read_write` the command may write below the target, and the
    /// writes are discarded.
    Layers {
        /// Host folders of the same image folder in each layer that shows
        /// it, the top layer first; at least two.
        sources: Vec<PathBuf>,
        /// Whether the command may write (to a discarded upper folder).
        read_write: bool,
    },
    /// A persistent host folder kept between builds. The sandbox creates it
    /// when missing and sets its owner and mode when it creates it.
    Cache {
        /// Host folder of the cache.
        source: PathBuf,
        /// Owner of the folder when created.
        uid: u32,
        /// Group of the folder when created.
        gid: u32,
        /// Permission bits of the folder when created (Docker uses 0755).
        mode: u32,
        /// Whether the mount is read-only.
        read_only: bool,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Size limit in bytes; the kernel default (half of RAM) when `None`.
        size: Option<u64>,
    },
    /// A secret file on a private tmpfs. It never reaches the upper folder.
    Secret {
        /// Content of the secret.
        data: SecretData,
        /// Owner of the file inside the sandbox.
        uid: u32,
        /// Group of the file inside the sandbox.
        gid: u32,
        /// Permission bits of the file (0400 by default).
        mode: u32,
        /// Environment variable that also receives the secret's value.
        env: Option<String>,
    },
    /// An SSH agent socket bound into the sandbox. `SSH_AUTH_SOCK` points to
    /// the first SSH mount unless the step's environment sets it.
    Ssh {
        /// Host path of the agent socket.
        socket: PathBuf,
        /// Owner of the socket inside the sandbox.
        uid: u32,
        /// Group of the socket inside the sandbox.
        gid: u32,
        /// Permission bits of the socket (0600 by default).
        mode: u32,
    },
}

/// Content of a secret mount.
#[derive(Clone)]
pub enum SecretData {
    /// The secret's bytes.
    Bytes(Vec<u8>),
    /// A host file whose bytes are the secret.
    File(PathBuf),
}

impl std::fmt::Debug for SecretData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bytes of a secret never go to logs or error messages.
        match self {
            SecretData::Bytes(bytes) => write!(f, "Bytes(<{} bytes>)", bytes.len()),
            SecretData::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

/// Receives the command's output as it arrives.
pub trait OutputSink: Send {
    /// Receives bytes the command wrote to its standard output.
    fn stdout(&mut self, bytes: &[u8]);
    /// Receives bytes the command wrote to its standard error.
    fn stderr(&mut self, bytes: &[u8]);
}

/// How a RUN command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Exit code when the command exited normally.
    pub exit_code: Option<i32>,
    /// Signal number when a signal killed the command.
    pub signal: Option<i32>,
    /// The last lines (at most [`TAIL_LINES`]) of stdout and stderr
    /// interleaved as they arrived, for failure messages.
    pub tail: Vec<String>,
}

/// Number of output lines kept in [`RunOutcome::tail`].
pub const TAIL_LINES: usize = 20;

impl RunOutcome {
    /// Returns whether the command exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Runs one RUN step in a new sandbox and waits for it.
///
/// Output goes to `output` while the command runs. When the process
/// receives SIGINT or SIGTERM meanwhile, the signal is forwarded to the
/// sandbox, the sandbox's PID namespace is killed and
/// [`SandboxError::Interrupted`] is returned. In every case the sandbox's
/// processes and mounts are gone when this function returns.
///
/// # Errors
///
/// A [`SandboxError`] naming the step's command and the mount, path or
/// system call that failed. A command that exits non-zero is not an error:
/// see [`RunOutcome`].
pub fn run(spec: &RunSpec, output: &mut dyn OutputSink) -> Result<RunOutcome, SandboxError> {
    run_with_security(spec, Security::Sandbox, output)
}

/// Runs one RUN step like [`run`], with the privileges of `security`.
///
/// [`Security::Sandbox`] is what [`run`] does: the command keeps only
/// Docker's default capabilities (CHOWN, DAC_OVERRIDE, FSETID, FOWNER,
/// MKNOD, NET_RAW, SETGID, SETUID, SETFCAP, SETPCAP, NET_BIND_SERVICE,
/// SYS_CHROOT, KILL, AUDIT_WRITE; none in its effective set when it runs
/// as another user than root) and sees sensitive files of `/proc` and
/// `/sys` hidden or read-only. [`Security::Insecure`] keeps every
/// capability of the sandbox's root and hides nothing, like
/// `docker run --privileged`; callers allow it only on request.
///
/// In both modes the root file system, `/dev` and every `RUN --mount` are
/// `nodev`, so a device node that the image contains or the command
/// creates cannot be opened. The usable nodes are the `/dev` entries bound
/// from the host and the pseudo-terminals of `/dev/pts`.
///
/// # Errors
///
/// As [`run`].
pub fn run_with_security(
    spec: &RunSpec,
    security: Security,
    output: &mut dyn OutputSink,
) -> Result<RunOutcome, SandboxError> {
    #[cfg(target_os = "linux")]
    {
        linux::run(spec, security, output)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (security, output);
        Err(SandboxError::Unsupported {
            command: spec.argv.join(" "),
            reason: "RUN needs Linux namespaces; build on a Linux host".to_string(),
        })
    }
}
