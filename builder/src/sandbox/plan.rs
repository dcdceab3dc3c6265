//! The mount plan: every file system step that builds the sandbox's root,
//! computed up front as data so the cloned child only replays it.
//!
//! [`build`] turns a [`Layout`] into [`Step`]s; [`apply`] replays them
//! through a [`Syscall`]. The child runs `apply` right after `clone`, where
//! it must not allocate, so steps carry ready C strings.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::syscall::{Errno, MountFlags, Syscall};

/// Device nodes bound from the host's `/dev` into the sandbox's `/dev`.
pub(crate) const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Kernel files and folders hidden from the command, as Docker hides them:
/// a file gets `/dev/null` bound over it and a folder an empty read-only
/// tmpfs. They show host memory, keys, hardware and timing details.
pub(crate) const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Kernel files and folders the command may read but not write, because
/// writing them changes the host: kernel parameters, the SysRq trigger,
/// interrupt and bus settings.
pub(crate) const READ_ONLY_PATHS: [&str; 6] = [
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host folders and settings the plan mounts together.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// Empty host folder where the overlay is mounted; becomes `/`.
    pub(crate) root: PathBuf,
    /// Overlay lower folders, top first.
    pub(crate) lowers: Vec<PathBuf>,
    /// Overlay upper folder.
    pub(crate) upper: PathBuf,
    /// Overlay work folder. An empty path means that `upper` is a complete
    /// root file system, bind-mounted as `/` in place of the overlay.
    pub(crate) work: PathBuf,
    /// Host folder holding the generated `hosts`, `resolv.conf` and
    /// `hostname` files.
    pub(crate) etc: PathBuf,
    /// Empty host folder where a private tmpfs contains secrets and the upper
    /// folders of writable bind mounts.
    pub(crate) scratch: PathBuf,
    /// Whether the sandbox runs in its own user namespace (without root):
    /// the overlay then stores its attributes as `user.overlay.*`.
    pub(crate) rootless: bool,
    /// Host name of the sandbox.
    pub(crate) hostname: String,
    /// `RUN --mount` entries with targets resolved inside the image.
    pub(crate) mounts: Vec<PlannedMount>,
    /// Working directory and the owner of the folders created for it.
    pub(crate) workdir: String,
    /// Owner of created working directory folders.
    pub(crate) workdir_owner: (u32, u32),
    /// Whether `/dev/console` gets an empty file as the mount point of the
    /// terminal that the init creates for `forge run -t`.
    pub(crate) console: bool,
    /// Whether the root overlay is mounted with `volatile`, which turns
    /// fsync calls into no-ops and skips the sync at unmount.
    pub(crate) volatile: bool,
}

/// A `RUN --mount` entry ready to mount.
#[derive(Debug, Clone)]
pub(crate) struct PlannedMount {
    /// Absolute path in the image without symlinks.
    pub(crate) target: String,
    /// Mount source and kind for this target.
    pub(crate) source: PlannedSource,
}

/// The source of a [`PlannedMount`].
#[derive(Clone)]
pub(crate) enum PlannedSource {
    /// A bind mount of a host path.
    Bind { source: PathBuf, read_only: bool },
    /// Host folders merged by an overlay (the first one on top) whose upper
    /// folder is on the private tmpfs, so writes are discarded with the
    /// sandbox.
    DiscardWrites { sources: Vec<PathBuf> },
    /// Two or more host folders merged read-only by an overlay without an
    /// upper folder, the first one on top.
    Merged { sources: Vec<PathBuf> },
    /// A fresh tmpfs.
    Tmpfs { size: Option<u64> },
    /// A file on the private tmpfs, bound read-only.
    Secret {
        data: Vec<u8>,
        uid: u32,
        gid: u32,
        mode: u32,
    },
}

impl std::fmt::Debug for PlannedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlannedSource::Bind { source, read_only } => {
                write!(f, "Bind({}, read_only={read_only})", source.display())
            }
            PlannedSource::DiscardWrites { sources } => {
                write!(f, "DiscardWrites({sources:?})")
            }
            PlannedSource::Merged { sources } => write!(f, "Merged({sources:?})"),
            PlannedSource::Tmpfs { size } => write!(f, "Tmpfs({size:?})"),
            PlannedSource::Secret { data, .. } => write!(f, "Secret(<{} bytes>)", data.len()),
        }
    }
}

/// One step of the plan.
pub(crate) enum Step {
    /// `mount(2)` as given.
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: MountFlags,
        data: Option<CString>,
    },
    /// Makes the bind mount at `target` read-only and `nodev`, keeping the
    /// flags that the kernel locks in a user namespace (nosuid, nodev,
    /// noexec, atime). A read-only mount alone still lets a device node
    /// below it be opened for writing.
    RemountReadOnly { target: CString },
    /// `mkdir(2)`; the folder must not exist.
    Mkdir { path: CString, mode: u32 },
    /// `mkdir(2)` that accepts an existing entry and sets the owner only of
    /// a folder it created.
    MkdirOwned {
        path: CString,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// Writes a file and then sets its owner and mode.
    WriteFile {
        path: CString,
        data: Vec<u8>,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    /// `symlink(2)`.
    Symlink { target: CString, link: CString },
    /// A read-only `/sys`: a new sysfs where the kernel allows it, else a
    /// read-only recursive bind of the host's `/sys`.
    Sysfs { target: CString },
    /// Makes `new_root` the root and detaches the old one.
    PivotRoot { new_root: CString },
    /// `sethostname(2)`.
    SetHostname { name: Vec<u8> },
    /// Hides `target`: binds the host's `/dev/null` over a file, or mounts
    /// an empty read-only tmpfs over a folder. A missing target is skipped.
    Mask { target: CString },
    /// Makes `target` read-only by binding it onto itself. A missing target
    /// is skipped.
    ReadOnlyPath { target: CString },
    /// Adds `nodev` to the bind mount at `target`, so device nodes that the
    /// command creates below it cannot be opened.
    RemountNoDevices { target: CString },
}

impl Step {
    /// Describes the step for error messages.
    pub(crate) fn describe(&self) -> String {
        let text = |value: &CString| value.to_string_lossy().into_owned();
        match self {
            Step::Mount {
                source,
                target,
                fstype,
                data,
                ..
            } => {
                let kind = fstype.as_ref().map_or_else(|| "bind".to_string(), text);
                let mut description = format!("mount {kind}");
                if let Some(source) = source.as_ref().filter(|_| fstype.is_none()) {
                    description.push_str(&format!(" of {}", text(source)));
                }
                description.push_str(&format!(" on {}", text(target)));
                if let Some(data) = data {
                    description.push_str(&format!(" ({})", text(data)));
                }
                description
            }
            Step::RemountReadOnly { target } => format!("make {} read-only", text(target)),
            Step::Mkdir { path, .. } | Step::MkdirOwned { path, .. } => {
                format!("create folder {}", text(path))
            }
            Step::WriteFile { path, .. } => format!("write {}", text(path)),
            Step::Symlink { link, .. } => format!("create symlink {}", text(link)),
            Step::Sysfs { target } => format!("mount sysfs on {}", text(target)),
            Step::PivotRoot { new_root } => format!("pivot_root into {}", text(new_root)),
            Step::SetHostname { name } => {
                format!("set host name `{}`", String::from_utf8_lossy(name))
            }
            Step::Mask { target } => format!("hide {}", text(target)),
            Step::ReadOnlyPath { target } => format!("make {} read-only", text(target)),
            Step::RemountNoDevices { target } => {
                format!("make device nodes below {} unusable", text(target))
            }
        }
    }
}

/// Replays `steps` through `sys`; on failure returns the index of the
/// failed step and its errno. Allocates nothing.
pub(crate) fn apply(steps: &[Step], sys: &dyn Syscall) -> Result<(), (usize, Errno)> {
    for (index, step) in steps.iter().enumerate() {
        apply_step(step, sys).map_err(|errno| (index, errno))?;
    }
    Ok(())
}

/// Flags that a read-only remount must repeat because a user namespace
/// locks them on mounts it inherited.
const LOCKED_FLAGS: MountFlags = libc::MS_NOSUID
    | libc::MS_NODEV
    | libc::MS_NOEXEC
    | libc::MS_NOATIME
    | libc::MS_NODIRATIME
    | libc::MS_RELATIME;

fn apply_step(step: &Step, sys: &dyn Syscall) -> Result<(), Errno> {
    match step {
        Step::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => sys.mount(
            source.as_deref(),
            target,
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        ),
        Step::RemountReadOnly { target } => remount_read_only(target, sys),
        Step::Mkdir { path, mode } => {
            sys.mkdir(path, *mode)?;
            sys.chmod(path, *mode)
        }
        Step::MkdirOwned {
            path,
            mode,
            uid,
            gid,
        } => match sys.mkdir(path, *mode) {
            Ok(()) => sys.lchown(path, *uid, *gid),
            Err(libc::EEXIST) => Ok(()),
            Err(errno) => Err(errno),
        },
        Step::WriteFile {
            path,
            data,
            uid,
            gid,
            mode,
        } => {
            sys.write_file(path, data, 0o600)?;
            sys.lchown(path, *uid, *gid)?;
            sys.chmod(path, *mode)
        }
        Step::Symlink { target, link } => sys.symlink(target, link),
        Step::Sysfs { target } => {
            let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            match sys.mount(Some(c"sysfs"), target, Some(c"sysfs"), flags, None) {
                Ok(()) => Ok(()),
                // A user namespace that does not own the network namespace
                // may not mount sysfs; the host's view is the fallback.
                Err(libc::EPERM | libc::EACCES) => {
                    sys.mount(
                        Some(c"/sys"),
                        target,
                        None,
                        libc::MS_BIND | libc::MS_REC,
                        None,
                    )?;
                    remount_read_only(target, sys)
                }
                Err(errno) => Err(errno),
            }
        }
        Step::PivotRoot { new_root } => {
            // pivot_root(".", ".") stacks the old root on top of the new one,
            // so no folder for the old root is needed in the image, and the
            // lazy unmount then drops the old root from this namespace.
            sys.chdir(new_root)?;
            sys.pivot_root(c".", c".")?;
            sys.umount2(c".", libc::MNT_DETACH)?;
            sys.chdir(c"/")
        }
        Step::SetHostname { name } => sys.sethostname(name),
        Step::Mask { target } => mask_path(target, sys),
        Step::ReadOnlyPath { target } => {
            match sys.mount(
                Some(target),
                target,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            ) {
                Ok(()) => remount_read_only(target, sys),
                Err(libc::ENOENT) => Ok(()),
                Err(errno) => Err(errno),
            }
        }
        Step::RemountNoDevices { target } => {
            let current = sys.statvfs_flags(target)? as MountFlags;
            let kept = current & (LOCKED_FLAGS | libc::MS_RDONLY);
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NODEV | kept;
            sys.mount(None, target, None, flags, None)
        }
    }
}

/// Binds `/dev/null` over the file `target`; the kernel rejects a file
/// bound over a folder with `ENOTDIR`, and such a folder gets an empty
/// read-only tmpfs instead.
fn mask_path(target: &std::ffi::CStr, sys: &dyn Syscall) -> Result<(), Errno> {
    match sys.mount(Some(c"/dev/null"), target, None, libc::MS_BIND, None) {
        Ok(()) | Err(libc::ENOENT) => Ok(()),
        Err(libc::ENOTDIR) => sys.mount(
            Some(c"tmpfs"),
            target,
            Some(c"tmpfs"),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(c"mode=555"),
        ),
        Err(errno) => Err(errno),
    }
}

/// Removes the [`Step::Mask`] and [`Step::ReadOnlyPath`] steps, for a
/// command that may see and change every kernel file
/// (`RUN --security=insecure`, like `docker run --privileged`).
pub(crate) fn remove_kernel_masks(steps: &mut Vec<Step>) {
    steps.retain(|step| !matches!(step, Step::Mask { .. } | Step::ReadOnlyPath { .. }));
}

fn remount_read_only(target: &std::ffi::CStr, sys: &dyn Syscall) -> Result<(), Errno> {
    let current = sys.statvfs_flags(target)? as MountFlags;
    let flags = libc::MS_BIND
        | libc::MS_REMOUNT
        | libc::MS_RDONLY
        | libc::MS_NODEV
        | (current & LOCKED_FLAGS);
    sys.mount(None, target, None, flags, None)
}

/// A string for the plan contains a NUL byte.
#[derive(Debug)]
pub(crate) struct NulInPath(pub(crate) String);

fn c_path(path: &Path) -> Result<CString, NulInPath> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| NulInPath(path.display().to_string()))
}

fn c_text(text: &str) -> Result<CString, NulInPath> {
    CString::new(text).map_err(|_| NulInPath(text.to_string()))
}

/// Joins an absolute image path below `root`.
pub(crate) fn under(root: &Path, image_path: &str) -> PathBuf {
    root.join(image_path.trim_start_matches('/'))
}

/// Escapes a path for an overlay option list, where `,`, `:` and `\`
/// separate or escape values.
fn overlay_escape(path: &Path) -> String {
    let mut escaped = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Returns the overlay mount options for the given folders.
pub(crate) fn overlay_options(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    rootless: bool,
) -> String {
    let lowerdir: Vec<String> = lowers.iter().map(|path| overlay_escape(path)).collect();
    let mut options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir.join(":"),
        overlay_escape(upper),
        overlay_escape(work)
    );
    if rootless {
        options.push_str(",userxattr");
    }
    options
}

/// Returns the mount options of the root overlay of `layout`.
fn root_overlay_options(layout: &Layout) -> String {
    let mut options = overlay_options(&layout.lowers, &layout.upper, &layout.work, layout.rootless);
    if layout.volatile {
        options.push_str(",volatile");
    }
    options
}

/// Builds the plan for `layout`.
///
/// # Errors
///
/// [`NulInPath`] when a path or name contains a NUL byte.
pub(crate) fn build(layout: &Layout) -> Result<Vec<Step>, NulInPath> {
    let root = &layout.root;
    let at = |image_path: &str| c_path(&under(root, image_path));
    let mut steps = Vec::new();

    // Nothing mounted below may propagate back to the host.
    steps.push(Step::Mount {
        source: None,
        target: c"/".to_owned(),
        fstype: None,
        flags: libc::MS_REC | libc::MS_PRIVATE,
        data: None,
    });
    // Device nodes in the image or made by the command cannot be opened:
    // the usable nodes in /dev are bind mounts of the host's.
    if layout.work.as_os_str().is_empty() {
        // The copy snapshotter: `upper` is a complete root file system.
        steps.push(Step::Mount {
            source: Some(c_path(&layout.upper)?),
            target: c_path(root)?,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
        });
        steps.push(Step::RemountNoDevices {
            target: c_path(root)?,
        });
    } else {
        steps.push(Step::Mount {
            source: Some(c"overlay".to_owned()),
            target: c_path(root)?,
            fstype: Some(c"overlay".to_owned()),
            flags: libc::MS_NODEV,
            data: Some(c_text(&root_overlay_options(layout))?),
        });
    }

    steps.push(Step::Mount {
        source: Some(c"proc".to_owned()),
        target: at("/proc")?,
        fstype: Some(c"proc".to_owned()),
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: None,
    });
    push_dev(&mut steps, layout)?;
    steps.push(Step::Sysfs {
        target: at("/sys")?,
    });
    push_kernel_masks(&mut steps, layout)?;

    for name in ["hosts", "resolv.conf", "hostname"] {
        let target = at(&format!("/etc/{name}"))?;
        steps.push(Step::Mount {
            source: Some(c_path(&layout.etc.join(name))?),
            target: target.clone(),
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        });
        steps.push(Step::RemountReadOnly { target });
    }

    push_run_mounts(&mut steps, layout)?;

    steps.push(Step::PivotRoot {
        new_root: c_path(root)?,
    });
    steps.push(Step::SetHostname {
        name: layout.hostname.as_bytes().to_vec(),
    });

    // The working directory is created inside the new root, so symlinks in
    // it resolve within the image.
    let (uid, gid) = layout.workdir_owner;
    let mut prefix = String::new();
    for component in layout.workdir.split('/').filter(|c| !c.is_empty()) {
        prefix.push('/');
        prefix.push_str(component);
        steps.push(Step::MkdirOwned {
            path: c_text(&prefix)?,
            mode: 0o755,
            uid,
            gid,
        });
    }
    Ok(steps)
}

fn push_dev(steps: &mut Vec<Step>, layout: &Layout) -> Result<(), NulInPath> {
    let dev = under(&layout.root, "/dev");
    let at = |name: &str| c_path(&dev.join(name));

    steps.push(Step::Mount {
        source: Some(c"tmpfs".to_owned()),
        target: c_path(&dev)?,
        fstype: Some(c"tmpfs".to_owned()),
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_STRICTATIME,
        data: Some(c"mode=755,size=65536k".to_owned()),
    });
    // Device nodes are bind mounts of the host's nodes, each a mount of the
    // host's /dev without `nodev`: mknod is not allowed in a user
    // namespace, and the tmpfs below them is `nodev`.
    for name in DEVICES {
        steps.push(Step::WriteFile {
            path: at(name)?,
            data: Vec::new(),
            uid: 0,
            gid: 0,
            mode: 0o666,
        });
        steps.push(Step::Mount {
            source: Some(c_text(&format!("/dev/{name}"))?),
            target: at(name)?,
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        });
    }
    if layout.console {
        steps.push(Step::WriteFile {
            path: at("console")?,
            data: Vec::new(),
            uid: 0,
            gid: 0,
            mode: 0o620,
        });
    }
    steps.push(Step::Mkdir {
        path: at("pts")?,
        mode: 0o755,
    });
    // gid 5 is the `tty` group; a user namespace has only the caller mapped.
    let devpts = if layout.rootless {
        c"newinstance,ptmxmode=0666,mode=0620".to_owned()
    } else {
        c"newinstance,ptmxmode=0666,mode=0620,gid=5".to_owned()
    };
    steps.push(Step::Mount {
        source: Some(c"devpts".to_owned()),
        target: at("pts")?,
        fstype: Some(c"devpts".to_owned()),
        flags: libc::MS_NOSUID | libc::MS_NOEXEC,
        data: Some(devpts),
    });
    steps.push(Step::Symlink {
        target: c"pts/ptmx".to_owned(),
        link: at("ptmx")?,
    });
    steps.push(Step::Mkdir {
        path: at("shm")?,
        mode: 0o1777,
    });
    steps.push(Step::Mount {
        source: Some(c"shm".to_owned()),
        target: at("shm")?,
        fstype: Some(c"tmpfs".to_owned()),
        flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        data: Some(c"mode=1777,size=65536k".to_owned()),
    });
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink {
            target: c_text(target)?,
            link: at(link)?,
        });
    }
    Ok(())
}

fn push_kernel_masks(steps: &mut Vec<Step>, layout: &Layout) -> Result<(), NulInPath> {
    for path in MASKED_PATHS {
        steps.push(Step::Mask {
            target: c_path(&under(&layout.root, path))?,
        });
    }
    for path in READ_ONLY_PATHS {
        steps.push(Step::ReadOnlyPath {
            target: c_path(&under(&layout.root, path))?,
        });
    }
    Ok(())
}

fn push_run_mounts(steps: &mut Vec<Step>, layout: &Layout) -> Result<(), NulInPath> {
    let needs_scratch = layout.mounts.iter().any(|mount| {
        matches!(
            mount.source,
            PlannedSource::Secret { .. } | PlannedSource::DiscardWrites { .. }
        )
    });
    if needs_scratch {
        steps.push(Step::Mount {
            source: Some(c"tmpfs".to_owned()),
            target: c_path(&layout.scratch)?,
            fstype: Some(c"tmpfs".to_owned()),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            data: Some(c"mode=700".to_owned()),
        });
    }

    for (index, mount) in layout.mounts.iter().enumerate() {
        let target = c_path(&under(&layout.root, &mount.target))?;
        match &mount.source {
            PlannedSource::Bind { source, read_only } => {
                steps.push(Step::Mount {
                    source: Some(c_path(source)?),
                    target: target.clone(),
                    fstype: None,
                    flags: libc::MS_BIND | libc::MS_REC,
                    data: None,
                });
                if *read_only {
                    steps.push(Step::RemountReadOnly { target });
                } else {
                    steps.push(Step::RemountNoDevices { target });
                }
            }
            PlannedSource::DiscardWrites { sources } => {
                let folder = layout.scratch.join(format!("bind-{index}"));
                let upper = folder.join("upper");
                let work = folder.join("work");
                for path in [&folder, &upper, &work] {
                    steps.push(Step::Mkdir {
                        path: c_path(path)?,
                        mode: 0o755,
                    });
                }
                let options = overlay_options(sources, &upper, &work, layout.rootless);
                steps.push(Step::Mount {
                    source: Some(c"overlay".to_owned()),
                    target,
                    fstype: Some(c"overlay".to_owned()),
                    flags: libc::MS_NODEV,
                    data: Some(c_text(&options)?),
                });
            }
            PlannedSource::Merged { sources } => {
                let lowerdir: Vec<String> =
                    sources.iter().map(|path| overlay_escape(path)).collect();
                let mut options = format!("lowerdir={}", lowerdir.join(":"));
                if layout.rootless {
                    options.push_str(",userxattr");
                }
                steps.push(Step::Mount {
                    source: Some(c"overlay".to_owned()),
                    target,
                    fstype: Some(c"overlay".to_owned()),
                    flags: libc::MS_RDONLY | libc::MS_NODEV,
                    data: Some(c_text(&options)?),
                });
            }
            PlannedSource::Tmpfs { size } => {
                let data = size.map(|size| format!("size={size}"));
                steps.push(Step::Mount {
                    source: Some(c"tmpfs".to_owned()),
                    target,
                    fstype: Some(c"tmpfs".to_owned()),
                    flags: libc::MS_NOSUID | libc::MS_NODEV,
                    data: data.as_deref().map(c_text).transpose()?,
                });
            }
            PlannedSource::Secret {
                data,
                uid,
                gid,
                mode,
            } => {
                let file = c_path(&layout.scratch.join(format!("secret-{index}")))?;
                steps.push(Step::WriteFile {
                    path: file.clone(),
                    data: data.clone(),
                    uid: *uid,
                    gid: *gid,
                    mode: *mode,
                });
                steps.push(Step::Mount {
                    source: Some(file),
                    target: target.clone(),
                    fstype: None,
                    flags: libc::MS_BIND,
                    data: None,
                });
                steps.push(Step::RemountReadOnly { target });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::syscall::fake::RecordingSyscall;

    fn layout(mounts: Vec<PlannedMount>, rootless: bool) -> Layout {
        Layout {
            root: PathBuf::from("/s/root"),
            lowers: vec![PathBuf::from("/s/mp"), PathBuf::from("/l/a:b")],
            upper: PathBuf::from("/u"),
            work: PathBuf::from("/w"),
            etc: PathBuf::from("/s/etc"),
            scratch: PathBuf::from("/s/scratch"),
            rootless,
            hostname: "box".to_string(),
            mounts,
            workdir: "/app/src".to_string(),
            workdir_owner: (1000, 100),
            console: false,
            volatile: false,
        }
    }

    fn mounts_only(calls: &[String]) -> Vec<String> {
        calls
            .iter()
            .filter(|c| c.starts_with("mount "))
            .cloned()
            .collect()
    }

    #[test]
    fn plan_volatile_root_overlay() {
        let mut volatile = layout(Vec::new(), true);
        volatile.volatile = true;
        let steps = build(&volatile).unwrap();
        let sys = RecordingSyscall::default();
        apply(&steps, &sys).unwrap();
        assert!(sys.calls().contains(
            &"mount overlay /s/root overlay nodev lowerdir=/s/mp:/l/a\\:b,upperdir=/u,workdir=/w,userxattr,volatile"
                .to_string()
        ));
    }

    #[test]
    fn plan_mounts_in_order() {
        let steps = build(&layout(Vec::new(), false)).unwrap();
        let sys = RecordingSyscall::default();
        apply(&steps, &sys).unwrap();
        // The masks of kernel files have their own tests.
        let calls: Vec<String> = sys
            .calls()
            .into_iter()
            .filter(|c| !c.contains(" /s/root/proc/") && !c.contains(" /s/root/sys/"))
            .collect();
        let expected = vec![
            "mount - / - rec|private -",
            "mount overlay /s/root overlay nodev lowerdir=/s/mp:/l/a\\:b,upperdir=/u,workdir=/w",
            "mount proc /s/root/proc proc nosuid|nodev|noexec -",
            "mount tmpfs /s/root/dev tmpfs nosuid|nodev|strictatime mode=755,size=65536k",
            "mount /dev/null /s/root/dev/null - bind -",
            "mount /dev/zero /s/root/dev/zero - bind -",
            "mount /dev/full /s/root/dev/full - bind -",
            "mount /dev/random /s/root/dev/random - bind -",
            "mount /dev/urandom /s/root/dev/urandom - bind -",
            "mount /dev/tty /s/root/dev/tty - bind -",
            "mount devpts /s/root/dev/pts devpts nosuid|noexec newinstance,ptmxmode=0666,mode=0620,gid=5",
            "mount shm /s/root/dev/shm tmpfs nosuid|nodev|noexec mode=1777,size=65536k",
            "mount sysfs /s/root/sys sysfs ro|nosuid|nodev|noexec -",
            "mount /s/etc/hosts /s/root/etc/hosts - bind -",
            "mount - /s/root/etc/hosts - ro|nosuid|nodev|remount|bind -",
            "mount /s/etc/resolv.conf /s/root/etc/resolv.conf - bind -",
            "mount - /s/root/etc/resolv.conf - ro|nosuid|nodev|remount|bind -",
            "mount /s/etc/hostname /s/root/etc/hostname - bind -",
            "mount - /s/root/etc/hostname - ro|nosuid|nodev|remount|bind -",
        ];
        assert_eq!(mounts_only(&calls), expected);
    }

    #[test]
    fn kernel_files_masked() {
        let steps = build(&layout(Vec::new(), false)).unwrap();
        let sys = RecordingSyscall::default();
        apply(&steps, &sys).unwrap();
        let calls = sys.calls();
        let first = calls
            .iter()
            .position(|c| c.contains(" /s/root/proc/acpi "))
            .unwrap();
        let expected = vec![
            "mount /dev/null /s/root/proc/acpi - bind -",
            "mount /dev/null /s/root/proc/kcore - bind -",
            "mount /dev/null /s/root/proc/keys - bind -",
            "mount /dev/null /s/root/proc/latency_stats - bind -",
            "mount /dev/null /s/root/proc/timer_list - bind -",
            "mount /dev/null /s/root/proc/timer_stats - bind -",
            "mount /dev/null /s/root/proc/sched_debug - bind -",
            "mount /dev/null /s/root/proc/scsi - bind -",
            "mount /dev/null /s/root/sys/firmware - bind -",
            "mount /dev/null /s/root/sys/devices/virtual/powercap - bind -",
            "mount /s/root/proc/asound /s/root/proc/asound - bind|rec -",
            "statvfs /s/root/proc/asound",
            "mount - /s/root/proc/asound - ro|nosuid|nodev|remount|bind -",
            "mount /s/root/proc/bus /s/root/proc/bus - bind|rec -",
            "statvfs /s/root/proc/bus",
            "mount - /s/root/proc/bus - ro|nosuid|nodev|remount|bind -",
            "mount /s/root/proc/fs /s/root/proc/fs - bind|rec -",
            "statvfs /s/root/proc/fs",
            "mount - /s/root/proc/fs - ro|nosuid|nodev|remount|bind -",
            "mount /s/root/proc/irq /s/root/proc/irq - bind|rec -",
            "statvfs /s/root/proc/irq",
            "mount - /s/root/proc/irq - ro|nosuid|nodev|remount|bind -",
            "mount /s/root/proc/sys /s/root/proc/sys - bind|rec -",
            "statvfs /s/root/proc/sys",
            "mount - /s/root/proc/sys - ro|nosuid|nodev|remount|bind -",
            "mount /s/root/proc/sysrq-trigger /s/root/proc/sysrq-trigger - bind|rec -",
            "statvfs /s/root/proc/sysrq-trigger",
            "mount - /s/root/proc/sysrq-trigger - ro|nosuid|nodev|remount|bind -",
        ];
        assert_eq!(calls[first..first + expected.len()], expected);
        let sysfs = calls
            .iter()
            .position(|c| c.starts_with("mount sysfs"))
            .unwrap();
        assert!(sysfs < first, "/sys is masked before sysfs is mounted");
    }

    #[test]
    fn masked_folder_gets_tmpfs() {
        let steps = build(&layout(Vec::new(), false)).unwrap();
        let sys = RecordingSyscall::fail_on("mount /dev/null /s/root/proc/acpi", libc::ENOTDIR);
        apply(&steps, &sys).unwrap();
        let calls = sys.calls();
        let at = calls
            .iter()
            .position(|c| c.starts_with("mount /dev/null /s/root/proc/acpi"))
            .unwrap();
        assert_eq!(
            calls[at + 1],
            "mount tmpfs /s/root/proc/acpi tmpfs ro|nosuid|nodev|noexec mode=555"
        );
        assert_eq!(calls[at + 2], "mount /dev/null /s/root/proc/kcore - bind -");
    }

    #[test]
    fn missing_kernel_files_skipped() {
        let steps = build(&layout(Vec::new(), false)).unwrap();
        let sys = RecordingSyscall::fail_on("mount /dev/null /s/root/proc/kcore", libc::ENOENT);
        apply(&steps, &sys).unwrap();
        let calls = sys.calls();
        let at = calls
            .iter()
            .position(|c| c.contains("/proc/kcore"))
            .unwrap();
        assert_eq!(calls[at + 1], "mount /dev/null /s/root/proc/keys - bind -");

        let sys = RecordingSyscall::fail_on("mount /s/root/proc/asound", libc::ENOENT);
        apply(&steps, &sys).unwrap();
        let calls = sys.calls();
        let at = calls
            .iter()
            .position(|c| c.contains("/proc/asound"))
            .unwrap();
        assert_eq!(
            calls[at + 1],
            "mount /s/root/proc/bus /s/root/proc/bus - bind|rec -"
        );
    }

    #[test]
    fn mask_failure_is_reported() {
        let steps = build(&layout(Vec::new(), false)).unwrap();
        let sys = RecordingSyscall::fail_on("mount /dev/null /s/root/proc/keys", libc::EPERM);
        let (index, errno) = apply(&steps, &sys).unwrap_err();
        assert_eq!(errno, libc::EPERM);
        assert_eq!(steps[index].describe(), "hide /s/root/proc/keys");
    }

    #[test]
    fn insecure_removes_kernel_masks() {
        let mut steps = build(&layout(Vec::new(), false)).unwrap();
        let before = steps.len();
        remove_kernel_masks(&mut steps);
        assert_eq!(
            before - steps.len(),
            MASKED_PATHS.len() + READ_ONLY_PATHS.len()
        );
        let sys = RecordingSyscall::default();
        apply(&steps, &sys).unwrap();
        let calls = sys.calls();
        assert!(
            !calls
                .iter()
                .any(|c| c.contains("/proc/kcore") || c.contains("/proc/sys ")),
            "{calls:?}"
        );
        assert!(calls.iter().any(|c| c.starts_with("mount proc ")));
    }

    #[test]
    fn writable_bind_is_nodev() {
        let mounts = vec![PlannedMount {
            target: "/cache".into(),
            source: PlannedSource::Bind {
                source: "/host/cache".into(),
                read_only: false,
            },
        }];
        let steps = build(&layout(mounts, false)).unwrap();
        let sys = RecordingSyscall::default();
        apply(&steps, &sys).unwrap();
        let calls = sys.calls();
        let at = calls
            .iter()
            .position(|c| c == "mount /host/cache /s/root/cache - bind|rec -")
            .unwrap();
        assert_eq!(calls[at + 1], "statvfs /s/root/cache");
        assert_eq!(
            calls[at + 2],
            "mount - /s/root/cache - nosuid|nodev|remount|bind -"
        );
    }

    #[test]
    fn device_binds_keep_devices() {
        let steps = build(&layout(Vec::new(), false)).unwrap();
        let sys = RecordingSyscall::default();
        apply(&steps, &sys).unwrap();
        for name in DEVICES {
            let bind = format!("mount /dev/{name} /s/root/dev/{name} - bind -");
            assert!(sys.calls().contains(&bind), "missing {bind}");
        }
        let devpts = sys
            .calls()
            .into_iter()
            .find(|c| c.starts_with("mount devpts"))
            .unwrap();
        assert!(!devpts.contains("nodev"), "{devpts}");
    }

    #[test]
    fn plan_ends_with_pivot_and_workdir() {
        let steps = build(&layout(Vec::new(), false)).unwrap();
        let sys = RecordingSyscall::default();
        apply(&steps, &sys).unwrap();
        let calls = sys.calls();
        let pivot = calls
            .iter()
            .position(|c| c.starts_with("pivot_root"))
            .unwrap();
        assert_eq!(
            calls[pivot - 1..],
            [
                "chdir /s/root",
                "pivot_root . .",
                "umount2 . 2",
                "chdir /",
                "sethostname box",
                "mkdir /app 755",
                "lchown /app 1000:100",
                "mkdir /app/src 755",
                "lchown /app/src 1000:100",
            ]
        );
        assert!(
            !calls[..pivot]
                .iter()
                .any(|c| c.starts_with("mount") && c.contains(" /app"))
        );
    }

    #[test]
    fn plan_run_mounts() {
        let mounts = vec![
            PlannedMount {
                target: "/src".into(),
                source: PlannedSource::Bind {
                    source: "/ctx".into(),
                    read_only: true,
                },
            },
            PlannedMount {
                target: "/rw".into(),
                source: PlannedSource::DiscardWrites {
                    sources: vec!["/ctx2".into()],
                },
            },
            PlannedMount {
                target: "/tmp/t".into(),
                source: PlannedSource::Tmpfs { size: Some(1024) },
            },
            PlannedMount {
                target: "/run/secrets/k".into(),
                source: PlannedSource::Secret {
                    data: b"xyz".to_vec(),
                    uid: 0,
                    gid: 0,
                    mode: 0o400,
                },
            },
        ];
        let steps = build(&layout(mounts, true)).unwrap();
        let sys = RecordingSyscall::default();
        apply(&steps, &sys).unwrap();
        let calls = sys.calls();
        let first = calls
            .iter()
            .position(|c| c.contains("/s/scratch tmpfs"))
            .unwrap();
        let pivot = calls
            .iter()
            .position(|c| c.starts_with("chdir /s/root"))
            .unwrap();
        let expected = vec![
            "mount tmpfs /s/scratch tmpfs nosuid|nodev mode=700",
            "mount /ctx /s/root/src - bind|rec -",
            "statvfs /s/root/src",
            "mount - /s/root/src - ro|nosuid|nodev|remount|bind -",
            "mkdir /s/scratch/bind-1 755",
            "chmod /s/scratch/bind-1 755",
            "mkdir /s/scratch/bind-1/upper 755",
            "chmod /s/scratch/bind-1/upper 755",
            "mkdir /s/scratch/bind-1/work 755",
            "chmod /s/scratch/bind-1/work 755",
            "mount overlay /s/root/rw overlay nodev lowerdir=/ctx2,upperdir=/s/scratch/bind-1/upper,workdir=/s/scratch/bind-1/work,userxattr",
            "mount tmpfs /s/root/tmp/t tmpfs nosuid|nodev size=1024",
            "write_file /s/scratch/secret-3 3 bytes 600",
            "lchown /s/scratch/secret-3 0:0",
            "chmod /s/scratch/secret-3 400",
            "mount /s/scratch/secret-3 /s/root/run/secrets/k - bind -",
            "statvfs /s/root/run/secrets/k",
            "mount - /s/root/run/secrets/k - ro|nosuid|nodev|remount|bind -",
        ];
        assert_eq!(calls[first..pivot], expected);
    }

    #[test]
    fn console_mount_point_when_set() {
        let mut with_console = layout(Vec::new(), false);
        with_console.console = true;
        let steps = build(&with_console).unwrap();
        let sys = RecordingSyscall::default();
        apply(&steps, &sys).unwrap();
        let calls = sys.calls();
        let written = calls
            .iter()
            .position(|c| c == "write_file /s/root/dev/console 0 bytes 600")
            .unwrap();
        assert_eq!(calls[written + 2], "chmod /s/root/dev/console 620");
        let console_calls: Vec<&String> = calls.iter().filter(|c| c.contains("console")).collect();
        assert_eq!(console_calls.len(), 3, "{console_calls:?}");

        let steps = build(&layout(Vec::new(), false)).unwrap();
        let sys = RecordingSyscall::default();
        apply(&steps, &sys).unwrap();
        assert!(!sys.calls().iter().any(|c| c.contains("console")));
    }

    #[test]
    fn rootless_devpts_has_no_gid() {
        let steps = build(&layout(Vec::new(), true)).unwrap();
        let sys = RecordingSyscall::default();
        apply(&steps, &sys).unwrap();
        let devpts = sys
            .calls()
            .into_iter()
            .find(|c| c.contains(" devpts "))
            .unwrap();
        assert!(!devpts.contains("gid="), "{devpts}");
        assert!(sys.calls()[1].ends_with(",userxattr"), "{}", sys.calls()[1]);
    }

    #[test]
    fn copy_root_is_bind_mounted() {
        let mut copy = layout(Vec::new(), false);
        copy.work = PathBuf::new();
        let steps = build(&copy).unwrap();
        let sys = RecordingSyscall::default();
        apply(&steps, &sys).unwrap();
        let calls = sys.calls();
        assert_eq!(calls[1], "mount /u /s/root - bind|rec -");
        assert_eq!(calls[2], "statvfs /s/root");
        // The recording statvfs reports nosuid, which the remount keeps.
        assert_eq!(calls[3], "mount - /s/root - nosuid|nodev|remount|bind -");
        assert!(
            !calls.iter().any(|call| call.contains("overlay")),
            "{calls:?}"
        );
    }

    #[test]
    fn sysfs_falls_back_to_bind() {
        let steps = build(&layout(Vec::new(), true)).unwrap();
        let sys = RecordingSyscall::fail_on("mount sysfs", libc::EPERM);
        apply(&steps, &sys).unwrap();
        let calls = sys.calls();
        let at = calls
            .iter()
            .position(|c| c.starts_with("mount sysfs"))
            .unwrap();
        assert_eq!(calls[at + 1], "mount /sys /s/root/sys - bind|rec -");
        assert_eq!(
            calls[at + 3],
            "mount - /s/root/sys - ro|nosuid|nodev|remount|bind -"
        );
    }

    #[test]
    fn failed_step_is_reported() {
        let steps = build(&layout(Vec::new(), false)).unwrap();
        let sys = RecordingSyscall::fail_on("mount proc", libc::EBUSY);
        let (index, errno) = apply(&steps, &sys).unwrap_err();
        assert_eq!(errno, libc::EBUSY);
        assert_eq!(steps[index].describe(), "mount proc on /s/root/proc");
        assert_eq!(sys.calls().len(), 3);
    }

    #[test]
    fn nul_in_target_is_rejected() {
        let mounts = vec![PlannedMount {
            target: "/a\0b".into(),
            source: PlannedSource::Tmpfs { size: None },
        }];
        assert!(build(&layout(mounts, false)).is_err());
    }
}
