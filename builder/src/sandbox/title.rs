//! The command line that the sandbox's init shows in `/proc/1/cmdline`.
//!
//! The init is a clone of forge that never calls `execve`, so it starts
//! with forge's own command line, which names store and context paths of
//! the host. The kernel reads `/proc/PID/cmdline` from the process's
//! argument memory, the range `arg_start..arg_end` of its first stack, so
//! the init overwrites that memory with a neutral title.
//!
//! Two other ways exist. `prctl(PR_SET_MM_ARG_START)` needs
//! `CAP_SYS_RESOURCE` in the initial user namespace and so fails without
//! root. Re-executing `/proc/self/exe` would have to pass the whole child
//! setup to a new program. Writing the memory works in both cases.

use std::fs;

/// The command line of the sandbox's init.
pub(crate) const INIT_TITLE: &[u8] = b"forge-init";

/// The argument memory of this process, as `/proc/self/stat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArgRegion {
    /// Address of the first byte of `argv[0]`.
    pub(crate) start: usize,
    /// Address just after the last argument's NUL byte.
    pub(crate) end: usize,
}

/// Reads the argument memory of this process from `/proc/self/stat`;
/// `None` when the file is unreadable or has no such fields (before
/// Linux 3.5).
pub(crate) fn arg_region() -> Option<ArgRegion> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&stat)
}

/// Returns fields 48 (`arg_start`) and 49 (`arg_end`) of a
/// `/proc/PID/stat` line, counted from 1 as proc(5) does.
fn parse_stat(stat: &str) -> Option<ArgRegion> {
    // The second field is the command name in parentheses, which may itself
    // contain spaces and parentheses. The fields after the last `)` start
    // with field 3.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(48 - 3);
    let start: usize = fields.next()?.parse().ok()?;
    let end: usize = fields.next()?.parse().ok()?;
    (start < end).then_some(ArgRegion { start, end })
}

/// Replaces the argument memory of the calling process with `title`.
///
/// Safe to call in a process cloned from a multi-threaded parent: it
/// allocates nothing and makes no system call.
#[allow(unsafe_code)]
pub(crate) fn overwrite(region: ArgRegion, title: &[u8]) {
    let Some(length) = region.end.checked_sub(region.start) else {
        return;
    };
    // SAFETY: `start..end` is the argument memory that the kernel placed on
    // the process's first stack, read from /proc/self/stat by the parent of
    // this clone, so it is mapped writable at the same addresses here. Rust
    // code keeps no references into it: `std::env::args` copies the
    // arguments, and this process does not call it.
    let memory = unsafe { std::slice::from_raw_parts_mut(region.start as *mut u8, length) };
    fill(memory, title);
}

/// Writes `title`, a NUL byte and filler to `memory`.
///
/// When the last byte of the argument memory is not NUL, the kernel
/// treats it as set by `setproctitle` and shows only the first string, so
/// the filler keeps the old arguments' length from showing as empty
/// arguments. A memory too small for the title gets a truncated one.
fn fill(memory: &mut [u8], title: &[u8]) {
    let Some(last) = memory.len().checked_sub(1) else {
        return;
    };
    let kept = title.len().min(last);
    for (slot, byte) in memory.iter_mut().zip(title.iter().take(kept)) {
        *slot = *byte;
    }
    for slot in memory.iter_mut().skip(kept) {
        *slot = b' ';
    }
    if let Some(end) = memory.get_mut(kept) {
        *end = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_parsed() {
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[48 - 3] = "140737488347136".to_string();
        fields[49 - 3] = "140737488347200".to_string();
        let line = format!("4242 (a) b (c)) {}\n", fields.join(" "));
        assert_eq!(
            parse_stat(&line),
            Some(ArgRegion {
                start: 140_737_488_347_136,
                end: 140_737_488_347_200,
            })
        );
    }

    #[test]
    fn short_stat_is_none() {
        assert_eq!(parse_stat("1 (init) S 0 1 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn own_region_found() {
        let region = arg_region().unwrap();
        let arguments: usize = std::env::args_os().map(|arg| arg.len() + 1).sum();
        assert_eq!(region.end - region.start, arguments);
    }

    #[test]
    fn fill_ends_with_filler() {
        let mut memory = *b"/usr/bin/forge\0build\0/var/lib/forge\0";
        fill(&mut memory, b"forge-init");
        assert_eq!(&memory[..11], b"forge-init\0");
        assert!(memory[11..].iter().all(|byte| *byte == b' '));
    }

    #[test]
    fn fill_truncates_title() {
        let mut memory = *b"f\0sh\0";
        fill(&mut memory, b"forge-init");
        assert_eq!(&memory, b"forg\0");
    }

    #[test]
    fn fill_exact_fit() {
        let mut memory = [b'x'; 11];
        fill(&mut memory, b"forge-init");
        assert_eq!(&memory, b"forge-init\0");
    }

    #[test]
    fn fill_empty_memory() {
        let mut memory: [u8; 0] = [];
        fill(&mut memory, b"forge-init");
        assert!(memory.is_empty());
    }
}
