//! Container records in the store: `ROOT/forge/containers/<id>/` contains
//! `state.json`, the log `container.log`, the overlay `upper/` and `work/`
//! folders and the anonymous volumes `volumes/N/`.
//!
//! `state.json` is replaced atomically (written to a temporary name and
//! renamed), so readers never see a partial record.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RunnerError;

/// Lifecycle of a container as its record stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Recorded but not started yet.
    Created,
    /// The supervisor started the sandbox.
    Running,
    /// The command ended; the record has its exit code.
    Exited,
}

/// One published port: a host socket forwarded to a container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Host address the forwarder listens on.
    pub host_ip: String,
    /// Host port; 0 until the supervisor picked a free port.
    pub host_port: u16,
    /// Port inside the container's network namespace.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

impl PortMapping {
    /// Formats the mapping as `ps` shows it: `127.0.0.1:8080->80/tcp`.
    pub fn display(&self) -> String {
        format!(
            "{}:{}->{}/{}",
            self.host_ip, self.host_port, self.container_port, self.protocol
        )
    }
}

/// A host folder or file mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// Host path (a bind source, or the folder of a named or anonymous
    /// volume).
    pub source: PathBuf,
    /// Absolute path in the container.
    pub target: String,
    /// Whether the container may only read.
    pub read_only: bool,
}

/// Resource limits applied through cgroups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// `--cpuset-cpus` list, such as `0` or `0-2,4`.
    pub cpuset_cpus: Option<String>,
    /// `--cpus`: CPU time per period, in CPUs.
    pub cpus: Option<f64>,
    /// `--memory` in bytes.
    pub memory: Option<u64>,
    /// `--pids-limit`; -1 or 0 means unlimited.
    pub pids_limit: Option<i64>,
}

impl Limits {
    /// Returns whether any limit is set.
    pub fn any(&self) -> bool {
        self.cpuset_cpus.is_some()
            || self.cpus.is_some()
            || self.memory.is_some()
            || self.pids_limit.is_some_and(|limit| limit > 0)
    }
}

/// A process identified by PID and start time, so a reused PID is not
/// mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// Host PID.
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    pub start_time: u64,
}

impl ProcessId {
    /// Identifies the running process `pid`; `None` when it is gone.
    pub fn of(pid: i32) -> Option<ProcessId> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) is in parentheses and may hold spaces.
        let after = &stat[stat.rfind(')')? + 1..];
        let start_time = after.split_whitespace().nth(19)?.parse().ok()?;
        Some(ProcessId { pid, start_time })
    }

    /// Returns whether the process still exists and is not a zombie.
    pub fn alive(&self) -> bool {
        let Ok(stat) = fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let Some(close) = stat.rfind(')') else {
            return false;
        };
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next();
        let start = fields.nth(18).and_then(|value| value.parse::<u64>().ok());
        state != Some("Z") && start == Some(self.start_time)
    }
}

/// The record of one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerState {
    /// 64 lowercase hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// Digest of the image manifest.
    pub image_digest: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: f64,
    /// Command and arguments, after ENTRYPOINT and CMD were combined.
    pub argv: Vec<String>,
    /// Environment, in order.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub workdir: String,
    /// `USER` value.
    pub user: String,
    /// Host name.
    pub hostname: String,
    /// Signal that `stop` sends first.
    pub stop_signal: String,
    /// `default`, `none` or `host`.
    pub network: String,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// Mounted volumes and bind mounts.
    pub volumes: Vec<VolumeMount>,
    /// Unpacked image layers, top first.
    pub lowers: Vec<PathBuf>,
    /// Resource limits.
    pub limits: Limits,
    /// Whether the container is removed when it exits (`--rm`).
    pub auto_remove: bool,
    /// Whether the command got a terminal (`-t`).
    pub tty: bool,
    /// Whether standard input stays open (`-i`).
    pub interactive: bool,
    /// Recorded lifecycle status; see [`ContainerState::effective`].
    pub status: Status,
    /// The supervisor process while running.
    pub supervisor: Option<ProcessId>,
    /// Host PID of the sandbox init while running.
    pub init_pid: Option<i32>,
    /// Start time, seconds since the Unix epoch.
    pub started_at: Option<f64>,
    /// End time, seconds since the Unix epoch.
    pub finished_at: Option<f64>,
    /// Exit code: the command's, 128 + signal, or 125 to 127 when it could
    /// not start.
    pub exit_code: Option<i32>,
    /// The error that kept the container from starting, if any.
    pub error: Option<String>,
    /// cgroup folders created for the container.
    pub cgroups: Vec<PathBuf>,
}

impl ContainerState {
    /// Returns the record with a dead supervisor taken into account: a
    /// container recorded as running whose supervisor is gone has exited,
    /// with exit code 137 when the supervisor could not record one.
    pub fn effective(&self) -> ContainerState {
        let mut state = self.clone();
        if state.status == Status::Running
            && !state.supervisor.as_ref().is_some_and(ProcessId::alive)
        {
            state.status = Status::Exited;
            state.exit_code = state.exit_code.or(Some(137));
            state.finished_at = state.finished_at.or(state.started_at);
        }
        state
    }

    /// Returns the first 12 hex digits of the id.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// The folder of all container records.
#[derive(Debug, Clone)]
pub struct Containers {
    root: PathBuf,
}

/// Name of the record file in a container folder.
const STATE_FILE: &str = "state.json";
/// Name of the log file in a container folder.
pub(crate) const LOG_FILE: &str = "container.log";

impl Containers {
    /// Returns the records under `store_root/forge/containers`.
    pub fn new(store_root: &Path) -> Containers {
        Containers {
            root: store_root.join("forge").join("containers"),
        }
    }

    /// Returns the folder of the container `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Returns the log file of the container `id`.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(LOG_FILE)
    }

    /// Returns the folder of the named volume `name`, next to the
    /// container records.
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.root
            .parent()
            .map_or_else(|| self.root.join("volumes"), |forge| forge.join("volumes"))
            .join(name)
    }

    /// Reads the record of `id`.
    ///
    /// # Errors
    ///
    /// [`RunnerError::Io`] when the file cannot be read,
    /// [`RunnerError::Corrupt`] when it is not a valid record.
    pub fn load(&self, id: &str) -> Result<ContainerState, RunnerError> {
        let path = self.dir(id).join(STATE_FILE);
        let mut text = String::new();
        fs::File::open(&path)
            .and_then(|mut file| file.read_to_string(&mut text))
            .map_err(|source| RunnerError::io("read", &path, source))?;
        serde_json::from_str(&text).map_err(|source| RunnerError::Corrupt {
            path,
            reason: source.to_string(),
        })
    }

    /// Writes `state` atomically, creating the container folder.
    ///
    /// # Errors
    ///
    /// [`RunnerError::Io`] when the folder or file cannot be written.
    pub fn save(&self, state: &ContainerState) -> Result<(), RunnerError> {
        let dir = self.dir(&state.id);
        fs::create_dir_all(&dir).map_err(|source| RunnerError::io("create", &dir, source))?;
        let path = dir.join(STATE_FILE);
        let temp = dir.join(format!(".{STATE_FILE}.{}", std::process::id()));
        let text = serde_json::to_vec_pretty(state).map_err(|source| RunnerError::Corrupt {
            path: path.clone(),
            reason: source.to_string(),
        })?;
        fs::write(&temp, text).map_err(|source| RunnerError::io("write", &temp, source))?;
        fs::rename(&temp, &path)
            .map_err(|source| RunnerError::io("rename into place", &path, source))
    }

    /// Lists every readable record, oldest first. Folders without a valid
    /// record (a container being created or removed) are skipped.
    ///
    /// # Errors
    ///
    /// [`RunnerError::Io`] when the folder cannot be listed.
    pub fn list(&self) -> Result<Vec<ContainerState>, RunnerError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(RunnerError::io("list", &self.root, source)),
        };
        let mut states = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| RunnerError::io("list", &self.root, source))?;
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            match self.load(&id) {
                Ok(state) => states.push(state),
                Err(error) => tracing::debug!(%id, %error, "skipping unreadable container record"),
            }
        }
        states.sort_by(|a, b| a.created.total_cmp(&b.created));
        Ok(states)
    }

    /// Finds a container by full name, full id or unique id prefix.
    ///
    /// # Errors
    ///
    /// [`RunnerError::NotFound`] when nothing matches,
    /// [`RunnerError::Ambiguous`] when an id prefix matches several.
    pub fn find(&self, key: &str) -> Result<ContainerState, RunnerError> {
        let states = self.list()?;
        if let Some(state) = states.iter().find(|s| s.name == key || s.id == key) {
            return Ok(state.clone());
        }
        let matches: Vec<&ContainerState> = if key.is_empty() {
            Vec::new()
        } else {
            states.iter().filter(|s| s.id.starts_with(key)).collect()
        };
        match matches.as_slice() {
            [state] => Ok((*state).clone()),
            [] => Err(RunnerError::NotFound {
                key: key.to_string(),
            }),
            _ => Err(RunnerError::Ambiguous {
                key: key.to_string(),
                count: matches.len(),
            }),
        }
    }
}

/// Returns the current time in seconds since the Unix epoch.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, name: &str) -> ContainerState {
        ContainerState {
            id: id.to_string(),
            name: name.to_string(),
            image: "busybox".to_string(),
            image_digest: String::new(),
            created: now(),
            argv: vec!["true".to_string()],
            env: Vec::new(),
            workdir: "/".to_string(),
            user: String::new(),
            hostname: "h".to_string(),
            stop_signal: "SIGTERM".to_string(),
            network: "default".to_string(),
            ports: Vec::new(),
            volumes: Vec::new(),
            lowers: Vec::new(),
            limits: Limits::default(),
            auto_remove: false,
            tty: false,
            interactive: false,
            status: Status::Running,
            supervisor: None,
            init_pid: None,
            started_at: Some(now()),
            finished_at: None,
            exit_code: None,
            error: None,
            cgroups: Vec::new(),
        }
    }

    #[test]
    fn find_by_name_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let containers = Containers::new(dir.path());
        containers.save(&sample(&"ab".repeat(32), "one")).unwrap();
        containers.save(&sample(&"ac".repeat(32), "two")).unwrap();
        assert_eq!(containers.find("one").unwrap().name, "one");
        assert_eq!(containers.find("abab").unwrap().name, "one");
        assert!(matches!(
            containers.find("a"),
            Err(RunnerError::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(
            containers.find("zz"),
            Err(RunnerError::NotFound { .. })
        ));
    }

    #[test]
    fn dead_supervisor_means_exited() {
        let mut state = sample(&"cd".repeat(32), "gone");
        state.supervisor = Some(ProcessId {
            pid: i32::MAX,
            start_time: 1,
        });
        let effective = state.effective();
        assert_eq!(effective.status, Status::Exited);
        assert_eq!(effective.exit_code, Some(137));
    }

    #[test]
    fn own_process_is_alive() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        let reused = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!reused.alive());
    }
}
