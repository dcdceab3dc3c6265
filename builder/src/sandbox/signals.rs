//! SIGINT and SIGTERM while sandboxes run.
//!
//! While at least one [`Watch`] exists, a process-wide handler writes the
//! signal number to the pipe of every watch, so each running sandbox can
//! forward the signal and tear itself down. The handler then calls the
//! handler that was installed before, if it was a function. The previous
//! dispositions come back when the last watch is dropped.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

/// Signals that interrupt a running sandbox.
pub(crate) const WATCHED: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// Write ends of the watches' pipes; -1 marks a free slot.
static SLOTS: [AtomicI32; 64] = [const { AtomicI32::new(-1) }; 64];

/// Number of live watches and the dispositions they replaced.
static STATE: Mutex<(usize, Vec<(libc::c_int, libc::sigaction)>)> = Mutex::new((0, Vec::new()));

/// Previous handler functions, readable from the signal handler.
static PREVIOUS: [std::sync::atomic::AtomicUsize; 2] =
    [const { std::sync::atomic::AtomicUsize::new(0) }; 2];

#[allow(unsafe_code)]
extern "C" fn on_signal(signal: libc::c_int) {
    let saved = std::io::Error::last_os_error().raw_os_error();
    let byte = [u8::try_from(signal).unwrap_or(0)];
    for slot in &SLOTS {
        let fd = slot.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: write is async-signal-safe; a full pipe (non-blocking)
            // already holds a pending notification, so errors are ignored.
            unsafe { libc::write(fd, byte.as_ptr().cast(), 1) };
        }
    }
    if let Some(index) = WATCHED.iter().position(|s| *s == signal) {
        let previous = PREVIOUS[index].load(Ordering::SeqCst);
        if previous != 0 {
            // SAFETY: the value was stored from the `sa_sigaction` field of a
            // handler installed without SA_SIGINFO, which is a function of
            // this type (SIG_DFL and SIG_IGN are stored as 0).
            let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(previous) };
            handler(signal);
        }
    }
    if let Some(errno) = saved {
        // SAFETY: restores errno for the interrupted code.
        unsafe { *libc::__errno_location() = errno };
    }
}

/// A registration for SIGINT and SIGTERM; readable when one arrived.
pub(crate) struct Watch {
    read: OwnedFd,
    /// Write end, kept open while its number sits in [`SLOTS`].
    _write: OwnedFd,
    slot: usize,
}

impl Watch {
    /// Registers a watch, installing the handler for the first one.
    pub(crate) fn new() -> io::Result<Watch> {
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )?;
        let mut state = STATE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = SLOTS
            .iter()
            .position(|slot| {
                slot.compare_exchange(-1, write.as_raw_fd(), Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            })
            .ok_or_else(|| io::Error::other("more than 64 sandboxes run at once"))?;
        if state.0 == 0 {
            match install() {
                Ok(previous) => state.1 = previous,
                Err(error) => {
                    SLOTS[slot].store(-1, Ordering::SeqCst);
                    return Err(error);
                }
            }
        }
        state.0 += 1;
        Ok(Watch {
            read,
            _write: write,
            slot,
        })
    }

    /// The read end, readable once a watched signal arrived.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Returns the first signal received since the last call, if any.
    pub(crate) fn take(&self) -> Option<libc::c_int> {
        let mut buffer = [0u8; 16];
        match rustix::io::read(&self.read, &mut buffer) {
            Ok(count) if count > 0 => Some(libc::c_int::from(buffer[0])),
            _ => None,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut state = STATE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        SLOTS[self.slot].store(-1, Ordering::SeqCst);
        state.0 = state.0.saturating_sub(1);
        if state.0 == 0 {
            restore(&state.1);
            state.1.clear();
        }
    }
}

#[allow(unsafe_code)]
fn install() -> io::Result<Vec<(libc::c_int, libc::sigaction)>> {
    let mut previous = Vec::new();
    for (index, signal) in WATCHED.iter().enumerate() {
        // SAFETY: sigaction reads `action` and writes `old`, both valid;
        // `on_signal` only makes async-signal-safe calls.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(*signal, &action, &mut old) < 0 {
                let error = io::Error::last_os_error();
                restore(&previous);
                return Err(error);
            }
            let function = old.sa_sigaction;
            let is_function = function != libc::SIG_DFL
                && function != libc::SIG_IGN
                && old.sa_flags & libc::SA_SIGINFO == 0;
            PREVIOUS[index].store(if is_function { function } else { 0 }, Ordering::SeqCst);
            previous.push((*signal, old));
        }
    }
    Ok(previous)
}

#[allow(unsafe_code)]
fn restore(previous: &[(libc::c_int, libc::sigaction)]) {
    for (signal, action) in previous {
        // SAFETY: `action` is a disposition that sigaction returned earlier.
        unsafe { libc::sigaction(*signal, action, std::ptr::null_mut()) };
    }
    for slot in &PREVIOUS {
        slot.store(0, Ordering::SeqCst);
    }
}
