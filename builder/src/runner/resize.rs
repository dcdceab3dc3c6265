//! Window size changes of the terminal that an attached `run -t` uses.
//!
//! While a [`ResizeWatch`] exists, a SIGWINCH handler writes a byte to a
//! non-blocking pipe, and the supervisor polls its read end. The supervisor
//! then copies the terminal's new size to the container's pty with
//! [`copy_window_size`]. Setting the size on the pty master makes the kernel
//! send SIGWINCH to the foreground process group of the container's
//! terminal, as on any terminal.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// Write end of the pipe of the live watch; -1 when there is none.
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

#[allow(unsafe_code)]
extern "C" fn on_winch(_signal: libc::c_int) {
    let saved = io::Error::last_os_error().raw_os_error();
    let fd = WRITE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = [1u8];
        // SAFETY: write is async-signal-safe. A full pipe already contains a
        // pending notification, so the result is ignored.
        unsafe { libc::write(fd, byte.as_ptr().cast(), 1) };
    }
    if let Some(errno) = saved {
        // SAFETY: restores errno for the interrupted code.
        unsafe { *libc::__errno_location() = errno };
    }
}

/// A SIGWINCH registration; its descriptor is readable after a window size
/// change. Only one watch may exist at a time in a process.
pub(super) struct ResizeWatch {
    read: OwnedFd,
    /// Write end, kept open while its number is in [`WRITE_FD`].
    _write: OwnedFd,
    previous: libc::sigaction,
}

impl ResizeWatch {
    /// Installs the SIGWINCH handler.
    ///
    /// # Errors
    ///
    /// The error of `pipe` or `sigaction`, or an error when another watch
    /// exists in this process.
    #[allow(unsafe_code)]
    pub(super) fn new() -> io::Result<ResizeWatch> {
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )?;
        WRITE_FD
            .compare_exchange(-1, write.as_raw_fd(), Ordering::SeqCst, Ordering::SeqCst)
            .map_err(|_| io::Error::other("another container in this process watches SIGWINCH"))?;
        // SAFETY: sigaction reads `action` and writes `previous`, both valid;
        // `on_winch` only makes async-signal-safe calls.
        let previous = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_winch as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGWINCH, &action, &mut previous) < 0 {
                let error = io::Error::last_os_error();
                WRITE_FD.store(-1, Ordering::SeqCst);
                return Err(error);
            }
            previous
        };
        Ok(ResizeWatch {
            read,
            _write: write,
            previous,
        })
    }

    /// Returns the read end, which is readable once SIGWINCH arrived.
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Empties the pipe; returns whether SIGWINCH arrived since the last
    /// call.
    pub(super) fn take(&self) -> bool {
        let mut buffer = [0u8; 64];
        let mut arrived = false;
        while let Ok(count) = rustix::io::read(&self.read, &mut buffer) {
            if count == 0 {
                break;
            }
            arrived = true;
        }
        arrived
    }
}

impl Drop for ResizeWatch {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: `previous` is the disposition that sigaction returned.
        unsafe { libc::sigaction(libc::SIGWINCH, &self.previous, std::ptr::null_mut()) };
        WRITE_FD.store(-1, Ordering::SeqCst);
    }
}

/// Returns the window size of the terminal `from`, or `None` when it
/// cannot be read or is 0x0. A terminal that never got a size, such as one
/// that `script` opens without a terminal on its input, has 0x0, and the
/// docker CLI skips that size too.
pub(super) fn window_size(from: BorrowedFd<'_>) -> Option<rustix::termios::Winsize> {
    match rustix::termios::tcgetwinsize(from) {
        Ok(size) if size.ws_row == 0 && size.ws_col == 0 => {
            tracing::debug!("the attached terminal has no window size, keeping the container's");
            None
        }
        Ok(size) => Some(size),
        Err(error) => {
            tracing::debug!(%error, "failed to read the window size");
            None
        }
    }
}

/// Sets the window size of the terminal `from` on the terminal `to`,
/// unless [`window_size`] returns `None` for `from`. Errors are ignored:
/// `from` may have been closed, and the container's terminal may be gone
/// once its command exited.
pub(super) fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    if let Some(size) = window_size(from) {
        if let Err(error) = rustix::termios::tcsetwinsize(to, size) {
            tracing::debug!(%error, "failed to set the container's window size");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(unsafe_code)]
    fn winch_makes_watch_readable() {
        let watch = ResizeWatch::new().unwrap();
        assert!(!watch.take());
        assert!(ResizeWatch::new().is_err());
        // SAFETY: raise takes a plain signal number.
        unsafe { libc::raise(libc::SIGWINCH) };
        assert!(watch.take());
        assert!(!watch.take());
        drop(watch);
        let again = ResizeWatch::new().unwrap();
        drop(again);
    }
}
