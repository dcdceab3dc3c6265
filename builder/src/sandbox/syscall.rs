//! The seam between the sandbox and the kernel.
//!
//! Mount plans and the sandbox's process setup call the kernel only through
//! [`Syscall`]. [`LinuxSyscall`] makes the real calls; the recording fake in
//! the tests stores each call as a line of text so a test can assert the
//! exact sequence without root.
//!
//! The real implementation runs in a process cloned from a multi-threaded
//! parent, where only async-signal-safe functions may be used. Every method
//! therefore takes ready-made C strings and slices, allocates nothing and
//! reports failures as a raw `errno` value.

use std::ffi::CStr;

/// A raw `errno` value of a failed call.
pub(crate) type Errno = i32;

/// Mount flags as `mount(2)` takes them.
pub(crate) type MountFlags = libc::c_ulong;

/// Kernel calls made while building the sandbox's file system and process.
pub(crate) trait Syscall {
    /// `mount(2)`.
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MountFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno>;
    /// `umount2(2)`.
    fn umount2(&self, target: &CStr, flags: libc::c_int) -> Result<(), Errno>;
    /// `pivot_root(2)`.
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno>;
    /// `chdir(2)`.
    fn chdir(&self, path: &CStr) -> Result<(), Errno>;
    /// `mkdir(2)`; `EEXIST` is returned as an error like any other.
    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno>;
    /// Creates `path` with `mode` and writes `data` to it, truncating an
    /// existing file.
    fn write_file(&self, path: &CStr, data: &[u8], mode: u32) -> Result<(), Errno>;
    /// `symlink(2)`: creates `link` pointing to `target`.
    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), Errno>;
    /// `lchown(2)`.
    fn lchown(&self, path: &CStr, uid: u32, gid: u32) -> Result<(), Errno>;
    /// `chmod(2)`, which the umask does not affect.
    fn chmod(&self, path: &CStr, mode: u32) -> Result<(), Errno>;
    /// Returns the `f_flag` field of `statvfs(3)`, whose `ST_*` bits have the
    /// values of the matching `MS_*` mount flags.
    fn statvfs_flags(&self, path: &CStr) -> Result<u64, Errno>;
    /// `sethostname(2)`.
    fn sethostname(&self, name: &[u8]) -> Result<(), Errno>;
    /// `setgroups(2)`.
    fn setgroups(&self, gids: &[libc::gid_t]) -> Result<(), Errno>;
    /// `setresgid(2)` with all three ids equal.
    fn setgid(&self, gid: u32) -> Result<(), Errno>;
    /// `setresuid(2)` with all three ids equal.
    fn setuid(&self, uid: u32) -> Result<(), Errno>;
    /// `execve(2)`; returns only on failure. `argv` and `envp` are
    /// null-terminated arrays of pointers to C strings.
    fn execve(
        &self,
        path: &CStr,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> Errno;
    /// `prctl(PR_CAPBSET_DROP)`: removes `capability` from the bounding
    /// set; `EINVAL` for a number the kernel does not know.
    fn drop_bounding_capability(&self, capability: u32) -> Result<(), Errno>;
    /// `capset(2)` of the calling thread, with one bit per capability
    /// number in each mask.
    fn set_capabilities(
        &self,
        effective: u64,
        permitted: u64,
        inheritable: u64,
    ) -> Result<(), Errno>;
    /// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)`.
    fn clear_ambient_capabilities(&self) -> Result<(), Errno>;
}

/// The real kernel calls.
pub(crate) struct LinuxSyscall;

/// Returns the calling thread's `errno`.
fn errno() -> Errno {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Turns a libc return value into a result.
fn check(result: libc::c_int) -> Result<(), Errno> {
    if result < 0 { Err(errno()) } else { Ok(()) }
}

fn ptr_or_null(value: Option<&CStr>) -> *const libc::c_char {
    value.map_or(std::ptr::null(), CStr::as_ptr)
}

// The libc calls below get pointers from `&CStr` values (valid and
// NUL-terminated for the duration of the call) or from slices with their own
// lengths, which is all these functions read.
#[allow(unsafe_code)]
impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MountFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        // SAFETY: every pointer is null or a NUL-terminated string that
        // outlives the call.
        check(unsafe {
            libc::mount(
                ptr_or_null(source),
                target.as_ptr(),
                ptr_or_null(fstype),
                flags,
                ptr_or_null(data).cast(),
            )
        })
    }

    fn umount2(&self, target: &CStr, flags: libc::c_int) -> Result<(), Errno> {
        // SAFETY: `target` is a NUL-terminated string.
        check(unsafe { libc::umount2(target.as_ptr(), flags) })
    }

    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
        // SAFETY: both arguments are NUL-terminated strings; glibc has no
        // wrapper, so the system call is made directly.
        let result =
            unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
        if result < 0 { Err(errno()) } else { Ok(()) }
    }

    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        // SAFETY: `path` is a NUL-terminated string.
        check(unsafe { libc::chdir(path.as_ptr()) })
    }

    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
        // SAFETY: `path` is a NUL-terminated string.
        check(unsafe { libc::mkdir(path.as_ptr(), mode) })
    }

    fn write_file(&self, path: &CStr, data: &[u8], mode: u32) -> Result<(), Errno> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
        // SAFETY: `path` is a NUL-terminated string; the mode is passed as
        // the variadic third argument `open` expects with O_CREAT.
        let fd = unsafe { libc::open(path.as_ptr(), flags, mode) };
        if fd < 0 {
            return Err(errno());
        }
        let mut written = 0;
        while written < data.len() {
            let rest = &data[written..];
            // SAFETY: `fd` is open and `rest` is valid for `rest.len()` bytes.
            let count = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if count < 0 {
                let error = errno();
                if error == libc::EINTR {
                    continue;
                }
                // SAFETY: `fd` is open and owned here.
                unsafe { libc::close(fd) };
                return Err(error);
            }
            written += count.unsigned_abs();
        }
        // SAFETY: `fd` is open and owned here.
        check(unsafe { libc::close(fd) })
    }

    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), Errno> {
        // SAFETY: both arguments are NUL-terminated strings.
        check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })
    }

    fn lchown(&self, path: &CStr, uid: u32, gid: u32) -> Result<(), Errno> {
        // SAFETY: `path` is a NUL-terminated string.
        check(unsafe { libc::lchown(path.as_ptr(), uid, gid) })
    }

    fn chmod(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
        // SAFETY: `path` is a NUL-terminated string.
        check(unsafe { libc::chmod(path.as_ptr(), mode) })
    }

    fn statvfs_flags(&self, path: &CStr) -> Result<u64, Errno> {
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is a NUL-terminated string and `stat` points to
        // writable memory of the right size.
        check(unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) })?;
        // SAFETY: statvfs succeeded, so it filled in the structure.
        Ok(unsafe { stat.assume_init() }.f_flag)
    }

    fn sethostname(&self, name: &[u8]) -> Result<(), Errno> {
        // SAFETY: `name` is valid for `name.len()` bytes.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
    }

    fn setgroups(&self, gids: &[libc::gid_t]) -> Result<(), Errno> {
        // The raw system call changes only this thread's groups, which is
        // the whole process here, and skips glibc's broadcast to all threads,
        // which is not async-signal-safe.
        // SAFETY: `gids` is valid for `gids.len()` entries.
        let result = unsafe { libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) };
        if result < 0 { Err(errno()) } else { Ok(()) }
    }

    fn setgid(&self, gid: u32) -> Result<(), Errno> {
        // SAFETY: plain integer arguments.
        let result = unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) };
        if result < 0 { Err(errno()) } else { Ok(()) }
    }

    fn setuid(&self, uid: u32) -> Result<(), Errno> {
        // SAFETY: plain integer arguments.
        let result = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
        if result < 0 { Err(errno()) } else { Ok(()) }
    }

    fn execve(
        &self,
        path: &CStr,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> Errno {
        if argv.last().is_some_and(|last| !last.is_null())
            || envp.last().is_some_and(|last| !last.is_null())
        {
            return libc::EINVAL;
        }
        // SAFETY: `path` is a NUL-terminated string and both arrays end with
        // a null pointer (checked above), pointing to strings that the
        // caller keeps alive.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        errno()
    }

    fn drop_bounding_capability(&self, capability: u32) -> Result<(), Errno> {
        // SAFETY: prctl with PR_CAPBSET_DROP takes plain integers.
        check(unsafe {
            libc::prctl(
                libc::PR_CAPBSET_DROP,
                libc::c_ulong::from(capability),
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        })
    }

    fn set_capabilities(
        &self,
        effective: u64,
        permitted: u64,
        inheritable: u64,
    ) -> Result<(), Errno> {
        /// `struct __user_cap_header_struct` of `linux/capability.h`.
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        /// `struct __user_cap_data_struct`: one 32-bit half of each set.
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        /// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets as two halves.
        const VERSION_3: u32 = 0x2008_0522;

        let half = |mask: u64, high: bool| -> u32 {
            let shifted = if high { mask >> 32 } else { mask };
            (shifted & 0xffff_ffff) as u32
        };
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let data = [false, true].map(|high| Data {
            effective: half(effective, high),
            permitted: half(permitted, high),
            inheritable: half(inheritable, high),
        });
        // SAFETY: `header` and `data` have the layout capset(2) expects for
        // version 3 (a header and two data structures, low half first) and
        // live for the call; pid 0 means the calling thread.
        let result = unsafe {
            libc::syscall(
                libc::SYS_capset,
                std::ptr::addr_of_mut!(header),
                data.as_ptr(),
            )
        };
        if result < 0 { Err(errno()) } else { Ok(()) }
    }

    fn clear_ambient_capabilities(&self) -> Result<(), Errno> {
        // SAFETY: prctl with PR_CAP_AMBIENT takes plain integers.
        check(unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        })
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A [`Syscall`] that records calls instead of making them.

    use super::{Errno, MountFlags, Syscall};
    use std::cell::RefCell;
    use std::ffi::CStr;

    /// Records every call as one line of text and fails the calls that
    /// [`RecordingSyscall::fail_on`] names.
    #[derive(Default)]
    pub(crate) struct RecordingSyscall {
        pub(crate) calls: RefCell<Vec<String>>,
        /// A call (by its recorded text prefix) that returns this errno.
        pub(crate) failure: Option<(String, Errno)>,
    }

    impl RecordingSyscall {
        /// Makes the first call whose text starts with `prefix` fail.
        pub(crate) fn fail_on(prefix: &str, errno: Errno) -> Self {
            Self {
                calls: RefCell::default(),
                failure: Some((prefix.to_string(), errno)),
            }
        }

        /// Returns the recorded calls.
        pub(crate) fn calls(&self) -> Vec<String> {
            self.calls.borrow().clone()
        }

        fn record(&self, call: String) -> Result<(), Errno> {
            let fail = self
                .failure
                .as_ref()
                .filter(|(prefix, _)| call.starts_with(prefix.as_str()))
                .map(|(_, errno)| *errno);
            self.calls.borrow_mut().push(call);
            match fail {
                Some(errno) => Err(errno),
                None => Ok(()),
            }
        }
    }

    fn text(value: Option<&CStr>) -> String {
        value.map_or_else(|| "-".to_string(), |v| v.to_string_lossy().into_owned())
    }

    /// Names the mount flags set in `flags`, for readable assertions.
    pub(crate) fn flag_names(flags: MountFlags) -> String {
        const NAMES: &[(MountFlags, &str)] = &[
            (libc::MS_RDONLY, "ro"),
            (libc::MS_NOSUID, "nosuid"),
            (libc::MS_NODEV, "nodev"),
            (libc::MS_NOEXEC, "noexec"),
            (libc::MS_REMOUNT, "remount"),
            (libc::MS_BIND, "bind"),
            (libc::MS_REC, "rec"),
            (libc::MS_PRIVATE, "private"),
            (libc::MS_STRICTATIME, "strictatime"),
        ];
        let names: Vec<&str> = NAMES
            .iter()
            .filter(|(bit, _)| flags & bit != 0)
            .map(|(_, name)| *name)
            .collect();
        if names.is_empty() {
            "0".to_string()
        } else {
            names.join("|")
        }
    }

    impl Syscall for RecordingSyscall {
        fn mount(
            &self,
            source: Option<&CStr>,
            target: &CStr,
            fstype: Option<&CStr>,
            flags: MountFlags,
            data: Option<&CStr>,
        ) -> Result<(), Errno> {
            self.record(format!(
                "mount {} {} {} {} {}",
                text(source),
                text(Some(target)),
                text(fstype),
                flag_names(flags),
                text(data)
            ))
        }
        fn umount2(&self, target: &CStr, flags: libc::c_int) -> Result<(), Errno> {
            self.record(format!("umount2 {} {flags}", text(Some(target))))
        }
        fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
            self.record(format!(
                "pivot_root {} {}",
                text(Some(new_root)),
                text(Some(put_old))
            ))
        }
        fn chdir(&self, path: &CStr) -> Result<(), Errno> {
            self.record(format!("chdir {}", text(Some(path))))
        }
        fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
            self.record(format!("mkdir {} {mode:o}", text(Some(path))))
        }
        fn write_file(&self, path: &CStr, data: &[u8], mode: u32) -> Result<(), Errno> {
            self.record(format!(
                "write_file {} {} bytes {mode:o}",
                text(Some(path)),
                data.len()
            ))
        }
        fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), Errno> {
            self.record(format!(
                "symlink {} {}",
                text(Some(target)),
                text(Some(link))
            ))
        }
        fn lchown(&self, path: &CStr, uid: u32, gid: u32) -> Result<(), Errno> {
            self.record(format!("lchown {} {uid}:{gid}", text(Some(path))))
        }
        fn chmod(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
            self.record(format!("chmod {} {mode:o}", text(Some(path))))
        }
        fn statvfs_flags(&self, path: &CStr) -> Result<u64, Errno> {
            self.record(format!("statvfs {}", text(Some(path))))
                .map(|()| libc::ST_NOSUID)
        }
        fn sethostname(&self, name: &[u8]) -> Result<(), Errno> {
            self.record(format!("sethostname {}", String::from_utf8_lossy(name)))
        }
        fn setgroups(&self, gids: &[libc::gid_t]) -> Result<(), Errno> {
            self.record(format!("setgroups {gids:?}"))
        }
        fn setgid(&self, gid: u32) -> Result<(), Errno> {
            self.record(format!("setgid {gid}"))
        }
        fn setuid(&self, uid: u32) -> Result<(), Errno> {
            self.record(format!("setuid {uid}"))
        }
        fn execve(
            &self,
            path: &CStr,
            argv: &[*const libc::c_char],
            _envp: &[*const libc::c_char],
        ) -> Errno {
            let _ = self.record(format!(
                "execve {} ({} args)",
                text(Some(path)),
                argv.len().saturating_sub(1)
            ));
            libc::ENOENT
        }
        fn drop_bounding_capability(&self, capability: u32) -> Result<(), Errno> {
            self.record(format!("capbset_drop {capability}"))
        }
        fn set_capabilities(
            &self,
            effective: u64,
            permitted: u64,
            inheritable: u64,
        ) -> Result<(), Errno> {
            self.record(format!(
                "capset effective={effective:x} permitted={permitted:x} \
                 inheritable={inheritable:x}"
            ))
        }
        fn clear_ambient_capabilities(&self) -> Result<(), Errno> {
            self.record("clear_ambient".to_string())
        }
    }
}
