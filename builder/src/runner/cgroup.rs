//! Resource limits through cgroups: cgroup v2 where the unified hierarchy
//! offers the controller, else the v1 hierarchy of that controller. A
//! container gets `<mount>/forge/<id>` in each hierarchy it needs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::RunnerError;
use super::state::Limits;

/// Period of `--cpus`, in microseconds (the kernel's default CFS period).
const CPU_PERIOD: u64 = 100_000;

/// cgroup mounts of this system.
#[derive(Debug, Default)]
struct Mounts {
    /// Mount point of the unified (v2) hierarchy.
    unified: Option<PathBuf>,
    /// v1 mounts with the controllers each one carries.
    v1: Vec<(PathBuf, Vec<String>)>,
}

/// Parses `/proc/self/mountinfo` text.
fn parse_mounts(text: &str) -> Mounts {
    let mut mounts = Mounts::default();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split_whitespace().nth(4) else {
            continue;
        };
        let mut right = right.split_whitespace();
        let fstype = right.next();
        let options = right.nth(1).unwrap_or_default();
        match fstype {
            Some("cgroup2") => mounts.unified = Some(PathBuf::from(point)),
            Some("cgroup") => {
                let controllers = options
                    .split(',')
                    .filter(|option| !matches!(*option, "rw" | "ro") && !option.contains('='))
                    .map(str::to_string)
                    .collect();
                mounts.v1.push((PathBuf::from(point), controllers));
            }
            _ => {}
        }
    }
    mounts
}

/// The hierarchy of one controller: v2 or v1, with its mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    V2(PathBuf),
    V1(PathBuf),
}

impl Mounts {
    fn place(&self, controller: &str) -> Option<Place> {
        if let Some(unified) = &self.unified {
            let available =
                fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
            if available.split_whitespace().any(|c| c == controller) {
                return Some(Place::V2(unified.clone()));
            }
        }
        self.v1
            .iter()
            .find(|(_, controllers)| controllers.iter().any(|c| c == controller))
            .map(|(point, _)| Place::V1(point.clone()))
    }
}

fn write(path: &Path, value: &str, limit: &'static str) -> Result<(), RunnerError> {
    fs::write(path, value).map_err(|error| RunnerError::Cgroup {
        limit,
        reason: format!("failed to write `{value}` to {}: {error}", path.display()),
    })
}

fn make_dir(path: &Path, limit: &'static str) -> Result<(), RunnerError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(RunnerError::Cgroup {
            limit,
            reason: format!(
                "failed to create {}: {error}; run forge as root with a writable cgroup \
                 hierarchy",
                path.display()
            ),
        }),
    }
}

/// Copies a v1 cpuset file from the parent when the child's is empty, as
/// a v1 cpuset takes no tasks until both `cpus` and `mems` are set.
fn inherit_cpuset(dir: &Path, file: &str) -> Result<(), RunnerError> {
    let own = fs::read_to_string(dir.join(file)).unwrap_or_default();
    if !own.trim().is_empty() {
        return Ok(());
    }
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    let value = fs::read_to_string(parent.join(file)).unwrap_or_default();
    write(&dir.join(file), value.trim(), "--cpuset-cpus")
}

/// Creates the cgroups of container `id` and writes `limits`; returns the
/// created folders. Nothing is created when no limit is set.
///
/// # Errors
///
/// [`RunnerError::Cgroup`] naming the option and the missing controller
/// or the file that could not be written. Folders created before the
/// failure are removed.
pub(crate) fn create(id: &str, limits: &Limits) -> Result<Vec<PathBuf>, RunnerError> {
    if !limits.any() {
        return Ok(Vec::new());
    }
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(|error| RunnerError::Cgroup {
        limit: "resource limits",
        reason: format!("failed to read /proc/self/mountinfo: {error}"),
    })?;
    let mounts = parse_mounts(&text);
    let mut created: Vec<PathBuf> = Vec::new();
    let result = apply(id, limits, &mounts, &mut created);
    if let Err(error) = result {
        remove(&created);
        return Err(error);
    }
    Ok(created)
}

fn apply(
    id: &str,
    limits: &Limits,
    mounts: &Mounts,
    created: &mut Vec<PathBuf>,
) -> Result<(), RunnerError> {
    let mut prepare =
        |controller: &str, limit: &'static str| -> Result<Place, RunnerError> {
            let place = mounts.place(controller).ok_or_else(|| RunnerError::Cgroup {
            limit,
            reason: format!(
                "the `{controller}` cgroup controller is not available (neither in a cgroup v2 \
                 hierarchy nor mounted as cgroup v1); enable it or drop {limit}"
            ),
        })?;
            let (Place::V1(mount) | Place::V2(mount)) = &place;
            let parent = mount.join("forge");
            make_dir(&parent, limit)?;
            if let Place::V2(_) = place {
                write(
                    &mount.join("cgroup.subtree_control"),
                    &format!("+{controller}"),
                    limit,
                )?;
                write(
                    &parent.join("cgroup.subtree_control"),
                    &format!("+{controller}"),
                    limit,
                )?;
            }
            if matches!(place, Place::V1(_)) && controller == "cpuset" {
                inherit_cpuset(&parent, "cpuset.cpus")?;
                inherit_cpuset(&parent, "cpuset.mems")?;
            }
            let dir = parent.join(id);
            make_dir(&dir, limit)?;
            if !created.contains(&dir) {
                created.push(dir.clone());
            }
            if matches!(place, Place::V1(_)) && controller == "cpuset" {
                inherit_cpuset(&dir, "cpuset.mems")?;
            }
            Ok(match place {
                Place::V1(_) => Place::V1(dir),
                Place::V2(_) => Place::V2(dir),
            })
        };

    if let Some(cpus) = &limits.cpuset_cpus {
        let (Place::V1(dir) | Place::V2(dir)) = prepare("cpuset", "--cpuset-cpus")?;
        write(&dir.join("cpuset.cpus"), cpus, "--cpuset-cpus")?;
    }
    if let Some(cpus) = limits.cpus {
        let quota = (cpus * CPU_PERIOD as f64).round() as u64;
        match prepare("cpu", "--cpus")? {
            Place::V1(dir) => {
                write(
                    &dir.join("cpu.cfs_period_us"),
                    &CPU_PERIOD.to_string(),
                    "--cpus",
                )?;
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string(), "--cpus")?;
            }
            Place::V2(dir) => write(
                &dir.join("cpu.max"),
                &format!("{quota} {CPU_PERIOD}"),
                "--cpus",
            )?,
        }
    }
    if let Some(bytes) = limits.memory {
        match prepare("memory", "--memory")? {
            Place::V1(dir) => write(
                &dir.join("memory.limit_in_bytes"),
                &bytes.to_string(),
                "--memory",
            )?,
            Place::V2(dir) => write(&dir.join("memory.max"), &bytes.to_string(), "--memory")?,
        }
    }
    if let Some(pids) = limits.pids_limit.filter(|limit| *limit > 0) {
        let (Place::V1(dir) | Place::V2(dir)) = prepare("pids", "--pids-limit")?;
        write(&dir.join("pids.max"), &pids.to_string(), "--pids-limit")?;
    }
    Ok(())
}

/// Removes cgroup folders, retrying for up to two seconds while the
/// kernel still counts exiting processes in them.
pub(crate) fn remove(dirs: &[PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(2);
    for dir in dirs {
        loop {
            match fs::remove_dir(dir) {
                Ok(()) => break,
                Err(error) if error.kind() == io::ErrorKind::NotFound => break,
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(path = %dir.display(), %error, "cgroup busy, retrying");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => {
                    tracing::warn!(path = %dir.display(), %error, "failed to remove cgroup");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mountinfo_lists_hierarchies() {
        let mounts = parse_mounts(MOUNTINFO);
        assert_eq!(
            mounts.unified,
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(mounts.v1.len(), 3);
        assert_eq!(mounts.v1[0].1, vec!["cpu".to_string()]);
        assert!(mounts.v1[2].1.is_empty());
    }

    #[test]
    fn v1_controller_is_found() {
        let mounts = Mounts {
            unified: None,
            v1: parse_mounts(MOUNTINFO).v1,
        };
        assert_eq!(
            mounts.place("memory"),
            Some(Place::V1(PathBuf::from("/sys/fs/cgroup/memory")))
        );
        assert_eq!(mounts.place("pids"), None);
    }

    #[test]
    fn no_limits_create_nothing() {
        assert!(create("x", &Limits::default()).unwrap().is_empty());
    }
}
