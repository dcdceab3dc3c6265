//! File owners of rootless builds.
//!
//! Without root the sandbox runs in a user namespace that maps the caller
//! to root and container ids from 1 to the caller's subordinate ids (see
//! [`super::linux::map_ids`]). Layers record container ids, so the layer
//! writer maps host owners back through [`rootless_id_map`], and unpacked
//! lower layers get their owners from [`set_owners`], which runs in a user
//! namespace with the same map because only there may the caller give
//! files to its subordinate ids.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use forge_cache::layer::{IdMap, IdRange, RecordedOwner};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use super::child;
use super::linux::{self, Subordinate};

/// Returns the id map of the sandbox's user namespace, or `None` when
/// forge runs as root and the sandbox has no user namespace.
pub(crate) fn rootless_id_map() -> Option<IdMap> {
    if rustix::process::geteuid().is_root() {
        return None;
    }
    Some(id_map(linux::subordinate_ids()))
}

fn id_map(subordinate: Option<Subordinate>) -> IdMap {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let own = |host| IdRange {
        container: 0,
        host,
        count: 1,
    };
    let mut map = IdMap {
        uids: vec![own(uid)],
        gids: vec![own(gid)],
    };
    if let Some(sub) = subordinate {
        map.uids.push(IdRange {
            container: 1,
            host: sub.uid_start,
            count: sub.count,
        });
        map.gids.push(IdRange {
            container: 1,
            host: sub.gid_start,
            count: sub.count,
        });
    }
    map
}

/// One owner change, prepared for the child process.
struct Change {
    path: CString,
    uid: u32,
    gid: u32,
    /// Mode to set again after the owner, when it has setuid or setgid
    /// bits that changing the owner clears.
    mode: Option<u32>,
}

/// Gives the entries of the extracted layer folder `dir` the container
/// owners they record, from inside a user namespace with the sandbox's id
/// map. The caller owns every extracted file, so each appears as root in
/// the sandbox until this runs.
///
/// An id that the map lacks (no subordinate ids, or a range too small)
/// is left to the caller, so the file belongs to root in the sandbox. A
/// warning names the first such path and id.
///
/// NOTE: changing the owner removes a file's `security.capability`
/// xattr, and it is not set again, so a file with capabilities and an
/// owner other than root loses them in the unpacked folder. The layer
/// blob keeps them.
///
/// # Errors
///
/// When the helper process cannot be started, the ids cannot be mapped
/// (`newuidmap`, `newgidmap`), or an owner cannot be set; the message
/// names the path.
pub(crate) fn set_owners(dir: &Path, owners: &[RecordedOwner]) -> io::Result<()> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let subordinate = linux::subordinate_ids();
    let limit = subordinate.map_or(0, |sub| sub.count);
    let mapped = |id: u32| if id <= limit { Some(id) } else { None };

    let mut changes = Vec::new();
    let mut unmapped: Option<(&Path, u32)> = None;
    for owner in owners {
        let (uid, gid) = match (mapped(owner.uid), mapped(owner.gid)) {
            (Some(uid), Some(gid)) => (uid, gid),
            (uid, gid) => {
                let id = if uid.is_none() { owner.uid } else { owner.gid };
                unmapped.get_or_insert((&owner.path, id));
                (uid.unwrap_or(0), gid.unwrap_or(0))
            }
        };
        if uid == 0 && gid == 0 {
            continue;
        }
        let path = if owner.path.as_os_str().is_empty() {
            c".".to_owned()
        } else {
            CString::new(owner.path.as_os_str().as_bytes()).map_err(|_| {
                io::Error::other(format!("`{}` contains a NUL byte", owner.path.display()))
            })?
        };
        let mode = (!owner.symlink && owner.mode & 0o6000 != 0).then_some(owner.mode);
        changes.push(Change {
            path,
            uid,
            gid,
            mode,
        });
    }
    if let Some((path, id)) = unmapped {
        tracing::warn!(
            folder = %dir.display(),
            path = %path.display(),
            id,
            "a layer file belongs to an id outside the caller's subordinate ids, so it belongs to root in RUN steps; grant more ids in /etc/subuid and /etc/subgid"
        );
    }
    if changes.is_empty() {
        return Ok(());
    }

    let root = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let failure = run_in_namespace(&root, &changes, subordinate)?;
    match failure {
        None => Ok(()),
        Some((index, errno)) => {
            let path = changes
                .get(index)
                .map(|change| String::from_utf8_lossy(change.path.as_bytes()).into_owned())
                .unwrap_or_default();
            let change = changes.get(index);
            Err(io::Error::new(
                io::Error::from_raw_os_error(errno).kind(),
                format!(
                    "failed to set the owner {}:{} of `{}` in `{}`: {}",
                    change.map_or(0, |change| change.uid),
                    change.map_or(0, |change| change.gid),
                    path,
                    dir.display(),
                    io::Error::from_raw_os_error(errno)
                ),
            ))
        }
    }
}

/// Runs the changes in a child process in a new user namespace and returns
/// the index and errno of the change that failed, if one did.
#[allow(unsafe_code)]
fn run_in_namespace(
    root: &OwnedFd,
    changes: &[Change],
    subordinate: Option<Subordinate>,
) -> io::Result<Option<(usize, i32)>> {
    let (report_read, report_write) = linux::pipe()?;
    let (sync_read, sync_write) = linux::pipe()?;
    let pid = child::clone_process(libc::CLONE_NEWUSER).map_err(io::Error::from_raw_os_error)?;
    if pid == 0 {
        // The child: only system calls on prepared data from here on.
        let mut byte = [0u8; 1];
        if !matches!(rustix::io::read(&sync_read, &mut byte), Ok(1)) {
            // SAFETY: _exit ends the process without running any handler.
            unsafe { libc::_exit(2) };
        }
        let status = match apply_changes(root, changes) {
            Ok(()) => 0,
            Err((index, errno)) => {
                let mut record = [0u8; 12];
                record[..8].copy_from_slice(&(index as u64).to_le_bytes());
                record[8..].copy_from_slice(&errno.to_le_bytes());
                let _ = rustix::io::write(&report_write, &record);
                1
            }
        };
        // SAFETY: as above.
        unsafe { libc::_exit(status) };
    }
    let mut reaper = linux::Reaper { pid, reaped: false };
    drop((report_write, sync_read));

    linux::map_ids(pid, subordinate).map_err(|error| {
        io::Error::other(format!(
            "failed to map user ids for the helper that sets layer file owners: {error}; check /etc/subuid and /etc/subgid and that newuidmap and newgidmap (package uidmap) are installed"
        ))
    })?;
    rustix::io::write(&sync_write, &[1])?;
    drop(sync_write);

    // The status comes first: a process cloned meanwhile by another thread
    // may hold a copy of the pipe's write end, so its end of file can come
    // late. A child that exits with 1 has written its record already, and
    // 12 bytes fit in the pipe's buffer.
    let status = reaper.wait()?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Ok(None);
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1 {
        let mut record = [0u8; 12];
        let mut filled = 0;
        while filled < record.len() {
            match rustix::io::read(&report_read, &mut record[filled..]) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        if filled == record.len() {
            let index = u64::from_le_bytes(record[..8].try_into().unwrap_or_default());
            let errno = i32::from_le_bytes(record[8..].try_into().unwrap_or_default());
            return Ok(Some((usize::try_from(index).unwrap_or(usize::MAX), errno)));
        }
    }
    Err(io::Error::other(format!(
        "the helper that sets layer file owners ended with wait status {status}"
    )))
}

/// Applies each change below `root`, resolving paths inside it, and
/// returns the index and errno of the first failure. A path that no longer
/// exists is skipped. Runs in the child: no allocation.
fn apply_changes(root: &OwnedFd, changes: &[Change]) -> Result<(), (usize, i32)> {
    for (index, change) in changes.iter().enumerate() {
        let fail = |errno: rustix::io::Errno| (index, errno.raw_os_error());
        let fd = match rustix::fs::openat2(
            root,
            change.path.as_c_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(errno) => return Err(fail(errno)),
        };
        rustix::fs::chownat(
            &fd,
            c"",
            Some(rustix::fs::Uid::from_raw(change.uid)),
            Some(rustix::fs::Gid::from_raw(change.gid)),
            AtFlags::EMPTY_PATH,
        )
        .map_err(fail)?;
        if let Some(mode) = change.mode {
            let mut buffer = [0u8; 40];
            let proc_path = fd_path(&mut buffer, fd.as_raw_fd());
            rustix::fs::chmod(proc_path, Mode::from_raw_mode(mode)).map_err(fail)?;
        }
    }
    Ok(())
}

/// Writes `/proc/self/fd/FD` and a NUL into `buffer` without allocating.
fn fd_path(buffer: &mut [u8; 40], fd: i32) -> &std::ffi::CStr {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buffer[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 12];
    let mut count = 0;
    let mut value = fd.unsigned_abs();
    loop {
        digits[count] = b'0' + (value % 10) as u8;
        count += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for (offset, digit) in digits[..count].iter().rev().enumerate() {
        buffer[PREFIX.len() + offset] = *digit;
    }
    let end = PREFIX.len() + count;
    buffer[end] = 0;
    std::ffi::CStr::from_bytes_with_nul(&buffer[..=end]).unwrap_or(c"/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_path_formats_number() {
        let mut buffer = [0u8; 40];
        assert_eq!(fd_path(&mut buffer, 7).to_bytes(), b"/proc/self/fd/7");
        assert_eq!(fd_path(&mut buffer, 1234).to_bytes(), b"/proc/self/fd/1234");
        assert_eq!(fd_path(&mut buffer, 0).to_bytes(), b"/proc/self/fd/0");
    }

    #[test]
    fn id_map_maps_caller_to_root() {
        let map = id_map(Some(Subordinate {
            uid_start: 100_000,
            gid_start: 200_000,
            count: 65536,
        }));
        let uid = rustix::process::getuid().as_raw();
        use forge_cache::layer::IdKind;
        assert_eq!(map.to_container(IdKind::Uid, uid), Some(0));
        assert_eq!(map.to_container(IdKind::Uid, 100_999), Some(1000));
        assert_eq!(map.to_container(IdKind::Gid, 200_999), Some(1000));
        assert_eq!(map.to_host(IdKind::Gid, 1000), Some(200_999));
    }
}
