//! Capability sets of the RUN command.
//!
//! The sandbox's processes start with every capability of root (of the host
//! or of the sandbox's user namespace). Before the command execs, the
//! command process limits its bounding set to [`DEFAULT_CAPABILITIES`],
//! changes its ids and then sets its permitted and effective sets to that
//! list for root, or leaves them empty as `setuid` made them for another
//! user. The inheritable and ambient sets end up empty, as in Docker
//! 20.10.14 and containerd 1.5.11 and later, so a non-root command cannot
//! gain capabilities through a file's inheritable bits. `execve` then applies the
//! usual rules: root gets the bounding set, another user gets nothing
//! unless it runs a set-user-ID-root program or a program with file
//! capabilities, both limited by the bounding set.
//!
//! `RUN --security=insecure` skips all of this and keeps every capability.

use super::syscall::{Errno, Syscall};

/// Capability numbers from `linux/capability.h`.
pub(crate) mod number {
    pub(crate) const CHOWN: u32 = 0;
    pub(crate) const DAC_OVERRIDE: u32 = 1;
    pub(crate) const FOWNER: u32 = 3;
    pub(crate) const FSETID: u32 = 4;
    pub(crate) const KILL: u32 = 5;
    pub(crate) const SETGID: u32 = 6;
    pub(crate) const SETUID: u32 = 7;
    pub(crate) const SETPCAP: u32 = 8;
    pub(crate) const NET_BIND_SERVICE: u32 = 10;
    pub(crate) const NET_RAW: u32 = 13;
    pub(crate) const SYS_CHROOT: u32 = 18;
    pub(crate) const MKNOD: u32 = 27;
    pub(crate) const AUDIT_WRITE: u32 = 29;
    pub(crate) const SETFCAP: u32 = 31;
}

/// The capabilities Docker gives a container by default.
pub(crate) const DEFAULT_CAPABILITIES: [u32; 14] = [
    number::CHOWN,
    number::DAC_OVERRIDE,
    number::FSETID,
    number::FOWNER,
    number::MKNOD,
    number::NET_RAW,
    number::SETGID,
    number::SETUID,
    number::SETFCAP,
    number::SETPCAP,
    number::NET_BIND_SERVICE,
    number::SYS_CHROOT,
    number::KILL,
    number::AUDIT_WRITE,
];

/// Number of bits in a capability mask of `capset(2)` version 3. The
/// kernel defines no capability number at or above it.
const MASK_BITS: u32 = 64;

/// Returns the bit mask of `capabilities`, as `/proc/PID/status` shows it.
pub(crate) const fn mask(capabilities: &[u32]) -> u64 {
    let mut mask = 0u64;
    let mut index = 0;
    while index < capabilities.len() {
        mask |= 1u64 << capabilities[index];
        index += 1;
    }
    mask
}

/// The mask of [`DEFAULT_CAPABILITIES`]: `0xa80425fb`.
pub(crate) const DEFAULT_MASK: u64 = mask(&DEFAULT_CAPABILITIES);

/// Removes every capability outside `keep` from the bounding set.
///
/// Runs before the command process changes its ids, while it still has
/// `CAP_SETPCAP`. Stops at the first number the kernel does not define
/// (`EINVAL`), because capability numbers are dense.
pub(crate) fn limit_bounding_set(sys: &dyn Syscall, keep: u64) -> Result<(), Errno> {
    for capability in 0..MASK_BITS {
        if keep & (1u64 << capability) != 0 {
            continue;
        }
        match sys.drop_bounding_capability(capability) {
            Ok(()) => {}
            Err(libc::EINVAL) => break,
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

/// Sets the permitted and effective sets to `keep` for `uid` 0 and to
/// nothing for any other user, and empties the inheritable and ambient
/// sets.
///
/// Runs after `setresuid`, which has already emptied the permitted and
/// effective sets of a non-root user.
pub(crate) fn limit_process_sets(sys: &dyn Syscall, keep: u64, uid: u32) -> Result<(), Errno> {
    let permitted = if uid == 0 { keep } else { 0 };
    sys.set_capabilities(permitted, permitted, 0)?;
    match sys.clear_ambient_capabilities() {
        // Kernels before 4.3 have no ambient set.
        Ok(()) | Err(libc::EINVAL) => Ok(()),
        Err(errno) => Err(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::syscall::fake::RecordingSyscall;

    #[test]
    fn default_mask_matches_docker() {
        // The CapEff line of a root process in `docker run busybox`.
        assert_eq!(DEFAULT_MASK, 0x0000_0000_a804_25fb);
    }

    #[test]
    fn bounding_drops_others() {
        let sys = RecordingSyscall::default();
        limit_bounding_set(&sys, DEFAULT_MASK).unwrap();
        let dropped: Vec<String> = sys.calls();
        assert_eq!(dropped.len(), 64 - DEFAULT_CAPABILITIES.len());
        assert_eq!(dropped.first().map(String::as_str), Some("capbset_drop 2"));
        assert!(
            dropped.contains(&"capbset_drop 21".to_string()),
            "{dropped:?}"
        );
        for kept in DEFAULT_CAPABILITIES {
            assert!(
                !dropped.contains(&format!("capbset_drop {kept}")),
                "capability {kept} was dropped"
            );
        }
    }

    #[test]
    fn bounding_stops_at_unknown() {
        let sys = RecordingSyscall::fail_on("capbset_drop 41", libc::EINVAL);
        limit_bounding_set(&sys, DEFAULT_MASK).unwrap();
        let calls = sys.calls();
        assert_eq!(calls.last().map(String::as_str), Some("capbset_drop 41"));
    }

    #[test]
    fn bounding_error_is_returned() {
        let sys = RecordingSyscall::fail_on("capbset_drop 2", libc::EPERM);
        assert_eq!(limit_bounding_set(&sys, DEFAULT_MASK), Err(libc::EPERM));
        assert_eq!(sys.calls().len(), 1);
    }

    #[test]
    fn root_keeps_default_set() {
        let sys = RecordingSyscall::default();
        limit_process_sets(&sys, DEFAULT_MASK, 0).unwrap();
        assert_eq!(
            sys.calls(),
            [
                "capset effective=a80425fb permitted=a80425fb inheritable=0",
                "clear_ambient"
            ]
        );
    }

    #[test]
    fn other_user_gets_nothing() {
        let sys = RecordingSyscall::default();
        limit_process_sets(&sys, DEFAULT_MASK, 65534).unwrap();
        assert_eq!(
            sys.calls(),
            [
                "capset effective=0 permitted=0 inheritable=0",
                "clear_ambient"
            ]
        );
    }

    #[test]
    fn missing_ambient_set_is_fine() {
        let sys = RecordingSyscall::fail_on("clear_ambient", libc::EINVAL);
        assert_eq!(limit_process_sets(&sys, DEFAULT_MASK, 0), Ok(()));
    }
}
