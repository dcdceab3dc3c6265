//! Host-side preparation of a sandbox: the temporary state folder, the
//! mount-point layer, generated `/etc` files, the user and the environment.
//!
//! Mount points that the image lacks are created in a separate top lower
//! layer (the mount-point layer) instead of in the upper folder, so the
//! upper folder receives nothing but what the command writes. Folders in
//! that layer copy the mode, owner and times of the image's folder at the
//! same path, so a copy-up of such a folder into the upper folder carries
//! the image's metadata.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::SandboxError;
use super::image::ImageView;
use super::plan::{PlannedMount, PlannedSource, under};
use super::user::ExecUser;
use super::{RunMount, RunMountKind, RunSpec, SecretData};

/// PATH used for the lookup and the environment when the step sets none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A temporary host folder for one sandbox, removed on drop.
pub(crate) struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Creates a fresh folder below the system's temporary folder.
    pub(crate) fn create() -> io::Result<StateDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let name = format!(
                "forge-sandbox-{}-{}-{nanos:x}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = base.join(name);
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    // The overlay's lower folders must be reachable by the
                    // command's user, whatever the umask.
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
                    return Ok(StateDir { path });
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// The folder's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.path) {
            tracing::warn!(path = ?self.path, %error, "failed to remove the sandbox's state folder");
        }
    }
}

/// Whether a mount point is a folder or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PointKind {
    Dir,
    File,
}

/// Creates `image_path` (absolute, without symlinks) in the mount-point
/// layer `layer` unless the image has it.
///
/// # Errors
///
/// A message when the image has a different kind of entry at the path or at
/// one of its parents, or an I/O error.
pub(crate) fn ensure_mount_point(
    view: &ImageView<'_>,
    layer: &Path,
    image_path: &str,
    kind: PointKind,
) -> Result<(), String> {
    let io_error =
        |path: &Path, error: io::Error| format!("cannot create `{}`: {error}", path.display());
    if let Some((_, metadata)) = view.lstat(image_path).map_err(|e| e.to_string())? {
        return match (kind, metadata.is_dir()) {
            (PointKind::Dir, false) => Err(format!(
                "mount target `{image_path}` is not a folder in the image"
            )),
            (PointKind::File, true) => Err(format!(
                "mount target `{image_path}` is a folder in the image but the source is a file"
            )),
            _ => Ok(()),
        };
    }

    let parts: Vec<&str> = image_path.split('/').filter(|p| !p.is_empty()).collect();
    let mut prefix = String::new();
    for (index, part) in parts.iter().enumerate() {
        prefix.push('/');
        prefix.push_str(part);
        let host = under(layer, &prefix);
        let last = index + 1 == parts.len();
        if fs::symlink_metadata(&host).is_ok() {
            continue;
        }
        if last && kind == PointKind::File {
            fs::File::create(&host).map_err(|e| io_error(&host, e))?;
            fs::set_permissions(&host, fs::Permissions::from_mode(0o644))
                .map_err(|e| io_error(&host, e))?;
            break;
        }
        fs::create_dir(&host).map_err(|e| io_error(&host, e))?;
        match view.lstat(&prefix).map_err(|e| e.to_string())? {
            Some((_, metadata)) if metadata.is_dir() => {
                copy_dir_metadata(&host, &metadata).map_err(|e| io_error(&host, e))?
            }
            Some(_) => {
                return Err(format!(
                    "cannot mount on `{image_path}`: `{prefix}` is not a folder in the image"
                ));
            }
            None => fs::set_permissions(&host, fs::Permissions::from_mode(0o755))
                .map_err(|e| io_error(&host, e))?,
        }
    }
    Ok(())
}

fn copy_dir_metadata(host: &Path, metadata: &fs::Metadata) -> io::Result<()> {
    fs::set_permissions(host, fs::Permissions::from_mode(metadata.mode() & 0o7777))?;
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::lchown(host, Some(metadata.uid()), Some(metadata.gid()))?;
    }
    let times = fs::FileTimes::new()
        .set_accessed(metadata.accessed()?)
        .set_modified(metadata.modified()?);
    fs::File::open(host)?.set_times(times)
}

/// The contents of the generated `/etc/hosts`.
pub(crate) fn hosts_file(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback {hostname}\n"
    )
}

/// Writes `hosts`, `resolv.conf` and `hostname` into `dir`.
pub(crate) fn write_etc_files(dir: &Path, hostname: &str) -> io::Result<()> {
    fs::create_dir(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    let resolv = match fs::read("/etc/resolv.conf") {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    for (name, content) in [
        ("hosts", hosts_file(hostname).into_bytes()),
        ("resolv.conf", resolv),
        ("hostname", format!("{hostname}\n").into_bytes()),
    ] {
        let path = dir.join(name);
        fs::write(&path, content)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// A `RUN --mount` turned into a planned mount, with its mount-point kind
/// and any environment variable it adds.
pub(crate) struct ResolvedMount {
    pub(crate) planned: Option<PlannedMount>,
    pub(crate) kind: PointKind,
    pub(crate) env: Option<(String, String)>,
}

/// Resolves one `RUN --mount`: reads secrets, creates cache folders and
/// copies single files bound read-write into `copies`.
pub(crate) fn resolve_mount(
    command: &str,
    spec: &RunSpec,
    view: &ImageView<'_>,
    mount: &RunMount,
    index: usize,
    ssh_index: usize,
    copies: &Path,
) -> Result<ResolvedMount, SandboxError> {
    let invalid = |reason: String| SandboxError::InvalidSpec {
        command: command.to_string(),
        reason,
    };
    let prepare = |action: &str, path: &Path, source: io::Error| SandboxError::Prepare {
        command: command.to_string(),
        action: action.to_string(),
        path: path.to_path_buf(),
        source,
    };

    let target = match (&mount.target, &mount.kind) {
        (Some(target), _) => Some(target.clone()),
        (None, RunMountKind::Ssh { .. }) => Some(format!("/run/buildkit/ssh_agent.{ssh_index}")),
        (None, RunMountKind::Secret { env: Some(_), .. }) => None,
        (None, _) => {
            return Err(invalid(format!(
                "mount {index} has no target; give it `target=/path`"
            )));
        }
    };
    let target = match target {
        Some(target) => {
            let absolute = if target.starts_with('/') {
                target
            } else {
                format!("{}/{target}", spec.workdir.trim_end_matches('/'))
            };
            let resolved = view
                .resolve(&absolute)
                .map_err(|error| invalid(format!("mount target `{absolute}`: {error}")))?;
            if resolved == "/" {
                return Err(invalid(format!(
                    "mount target `{absolute}` is the root folder; pick a folder below it"
                )));
            }
            Some(resolved)
        }
        None => None,
    };

    let (source, kind, env) = match &mount.kind {
        RunMountKind::Bind { source, read_write } => {
            let metadata =
                fs::metadata(source).map_err(|e| prepare("read bind source", source, e))?;
            let kind = if metadata.is_dir() {
                PointKind::Dir
            } else {
                PointKind::File
            };
            let planned = match (read_write, kind) {
                (false, _) => PlannedSource::Bind {
                    source: source.clone(),
                    read_only: true,
                },
                (true, PointKind::Dir) => PlannedSource::DiscardWrites {
                    sources: vec![source.clone()],
                },
                (true, PointKind::File) => {
                    let copy = copies.join(format!("bind-{index}"));
                    fs::copy(source, &copy).map_err(|e| prepare("copy bind source", source, e))?;
                    PlannedSource::Bind {
                        source: copy,
                        read_only: false,
                    }
                }
            };
            (planned, kind, None)
        }
        RunMountKind::Layers {
            sources,
            read_write,
        } => {
            for source in sources {
                fs::metadata(source).map_err(|e| prepare("read bind source", source, e))?;
            }
            let planned = if *read_write {
                PlannedSource::DiscardWrites {
                    sources: sources.clone(),
                }
            } else {
                PlannedSource::Merged {
                    sources: sources.clone(),
                }
            };
            (planned, PointKind::Dir, None)
        }
        RunMountKind::Cache {
            source,
            uid,
            gid,
            mode,
            read_only,
        } => {
            if fs::symlink_metadata(source).is_err() {
                fs::create_dir_all(source)
                    .map_err(|e| prepare("create cache folder", source, e))?;
                if rustix::process::geteuid().is_root() {
                    std::os::unix::fs::lchown(source, Some(*uid), Some(*gid))
                        .map_err(|e| prepare("set the owner of cache folder", source, e))?;
                }
                fs::set_permissions(source, fs::Permissions::from_mode(*mode & 0o7777))
                    .map_err(|e| prepare("set the mode of cache folder", source, e))?;
            }
            let planned = PlannedSource::Bind {
                source: source.clone(),
                read_only: *read_only,
            };
            (planned, PointKind::Dir, None)
        }
        RunMountKind::Tmpfs { size } => {
            (PlannedSource::Tmpfs { size: *size }, PointKind::Dir, None)
        }
        RunMountKind::Secret {
            data,
            uid,
            gid,
            mode,
            env,
        } => {
            let bytes = match data {
                SecretData::Bytes(bytes) => bytes.clone(),
                SecretData::File(path) => {
                    fs::read(path).map_err(|e| prepare("read secret", path, e))?
                }
            };
            let env = env
                .as_ref()
                .map(|name| (name.clone(), String::from_utf8_lossy(&bytes).into_owned()));
            let planned = PlannedSource::Secret {
                data: bytes,
                uid: *uid,
                gid: *gid,
                mode: *mode & 0o7777,
            };
            (planned, PointKind::File, env)
        }
        RunMountKind::Ssh { socket, .. } => {
            fs::symlink_metadata(socket)
                .map_err(|e| prepare("find the SSH agent socket", socket, e))?;
            // NOTE: the socket keeps its host owner and mode; `uid`, `gid`
            // and `mode` of the mount are not applied.
            let planned = PlannedSource::Bind {
                source: socket.clone(),
                read_only: false,
            };
            let env = target
                .as_ref()
                .filter(|_| ssh_index == 0)
                .map(|target| ("SSH_AUTH_SOCK".to_string(), target.clone()));
            (planned, PointKind::File, env)
        }
    };

    Ok(ResolvedMount {
        planned: target.map(|target| PlannedMount { target, source }),
        kind,
        env,
    })
}

/// Builds the command's environment: the step's variables (later entries
/// win), then `PATH` and `HOME` when missing, then variables from mounts
/// that the step does not set itself.
pub(crate) fn environment(
    spec_env: &[(String, String)],
    user: &ExecUser,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let push = |env: &mut Vec<(String, String)>, name: &str, value: &str, replace: bool| match env
        .iter_mut()
        .find(|(existing, _)| existing == name)
    {
        Some(entry) if replace => entry.1 = value.to_string(),
        Some(_) => {}
        None => env.push((name.to_string(), value.to_string())),
    };
    for (name, value) in spec_env {
        push(&mut env, name, value, true);
    }
    push(&mut env, "PATH", DEFAULT_PATH, false);
    push(&mut env, "HOME", &user.home, false);
    for (name, value) in extra {
        push(&mut env, name, value, false);
    }
    env
}

/// Returns the paths `execve` tries for `program`, searching `path` as
/// `execvp` does when the program has no slash.
pub(crate) fn exec_candidates(program: &str, path: &str) -> Vec<String> {
    if program.contains('/') {
        return vec![program.to_string()];
    }
    path.split(':')
        .map(|dir| {
            let dir = if dir.is_empty() { "." } else { dir };
            format!("{}/{program}", dir.trim_end_matches('/'))
        })
        .collect()
}

/// Converts a string for the child, naming it on failure.
pub(crate) fn c_string(command: &str, what: &str, value: &str) -> Result<CString, SandboxError> {
    CString::new(value).map_err(|_| SandboxError::InvalidSpec {
        command: command.to_string(),
        reason: format!(
            "{what} `{}` contains a NUL byte",
            value.replace('\0', "\\0")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> ExecUser {
        ExecUser {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            home: "/root".to_string(),
        }
    }

    #[test]
    fn environment_adds_defaults() {
        let env = environment(&[("A".into(), "1".into())], &user(), &[]);
        assert_eq!(env[0], ("A".to_string(), "1".to_string()));
        assert!(env.contains(&("PATH".to_string(), DEFAULT_PATH.to_string())));
        assert!(env.contains(&("HOME".to_string(), "/root".to_string())));
    }

    #[test]
    fn environment_keeps_step_values() {
        let env = environment(
            &[
                ("PATH".into(), "/x".into()),
                ("A".into(), "1".into()),
                ("A".into(), "2".into()),
            ],
            &user(),
            &[("A".into(), "secret".into())],
        );
        assert_eq!(env.iter().filter(|(n, _)| n == "A").count(), 1);
        assert!(env.contains(&("A".to_string(), "2".to_string())));
        assert!(env.contains(&("PATH".to_string(), "/x".to_string())));
    }

    #[test]
    fn candidates_follow_path() {
        assert_eq!(exec_candidates("/bin/sh", "/a"), vec!["/bin/sh"]);
        assert_eq!(exec_candidates("./run", "/a"), vec!["./run"]);
        assert_eq!(
            exec_candidates("sh", "/a/:/b::"),
            vec!["/a/sh", "/b/sh", "./sh", "./sh"]
        );
    }

    #[test]
    fn hosts_names_hostname() {
        let hosts = hosts_file("box");
        assert!(hosts.starts_with("127.0.0.1\tlocalhost box\n"), "{hosts}");
    }
}
