//! The terminal of `forge run -t`, created inside the container as runc
//! creates it for docker.
//!
//! After the mount plan, the sandbox init opens the container's
//! `/dev/ptmx` (a link to `pts/ptmx` of the container's own devpts
//! instance), so the command's terminal is `/dev/pts/0` of that instance.
//! The init binds it to `/dev/console` too and sends the master to the
//! supervisor as `SCM_RIGHTS` ancillary data on a unix socket pair.
//!
//! The functions used by the init follow the rules of [`super::child`]:
//! raw system calls only, no allocation. [`receive_master`] runs in the
//! supervisor.

use std::ffi::CStr;
use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

use super::syscall::Errno;

/// Size of the buffer that [`pts_path`] writes to: `/dev/pts/`, ten
/// digits of a `u32` and the NUL.
pub(crate) const PTS_PATH_SIZE: usize = 20;

fn errno() -> Errno {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A pseudo-terminal opened with [`open_pty`]. The descriptors are
/// close-on-exec and owned by the caller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pty {
    pub(crate) master: RawFd,
    pub(crate) slave: RawFd,
    /// Number of the slave in its devpts instance (`/dev/pts/N`).
    pub(crate) index: u32,
}

/// Opens a new pseudo-terminal through `ptmx`, unlocks it, sets
/// `window_size` on it when given and opens its slave with
/// `TIOCGPTPEER` (Linux 4.13 and newer), which needs no path lookup.
#[allow(unsafe_code)]
pub(crate) fn open_pty(ptmx: &CStr, window_size: Option<&libc::winsize>) -> Result<Pty, Errno> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: `ptmx` is a NUL-terminated string.
    let master = unsafe { libc::open(ptmx.as_ptr(), flags) };
    if master < 0 {
        return Err(errno());
    }
    let close_master = |error: Errno| {
        // SAFETY: `master` is open and owned here.
        unsafe { libc::close(master) };
        Err(error)
    };

    let unlock: libc::c_int = 0;
    let mut index: libc::c_uint = 0;
    // SAFETY: TIOCSPTLCK reads an int, TIOCGPTN writes an unsigned int and
    // TIOCSWINSZ reads a winsize; each pointer is valid for the call.
    unsafe {
        if libc::ioctl(master, libc::TIOCSPTLCK, &unlock) < 0 {
            return close_master(errno());
        }
        if libc::ioctl(master, libc::TIOCGPTN, &mut index) < 0 {
            return close_master(errno());
        }
        if let Some(size) = window_size {
            if libc::ioctl(master, libc::TIOCSWINSZ, size) < 0 {
                return close_master(errno());
            }
        }
    }

    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor.
    let slave = unsafe { libc::ioctl(master, libc::TIOCGPTPEER, flags) };
    if slave < 0 {
        return close_master(errno());
    }
    Ok(Pty {
        master,
        slave,
        index,
    })
}

/// Writes `/dev/pts/INDEX` with a NUL into `buffer` and returns it.
pub(crate) fn pts_path(index: u32, buffer: &mut [u8; PTS_PATH_SIZE]) -> &CStr {
    const PREFIX: &[u8] = b"/dev/pts/";
    buffer[..PREFIX.len()].copy_from_slice(PREFIX);

    let mut digits = [0u8; 10];
    let mut count = 0;
    let mut rest = index;
    loop {
        digits[count] = b'0' + (rest % 10) as u8;
        count += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }

    let mut end = PREFIX.len();
    for digit in digits[..count].iter().rev() {
        buffer[end] = *digit;
        end += 1;
    }
    buffer[end] = 0;
    // The buffer ends with the NUL just written and contains no other NUL
    // before it, because every other byte is from PREFIX or a digit.
    CStr::from_bytes_with_nul(&buffer[..=end]).unwrap_or(c"/dev/pts/0")
}

/// Creates a close-on-exec unix stream socket pair.
///
/// # Errors
///
/// The error of `socketpair`.
pub(crate) fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let pair = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    Ok(pair)
}

/// Sends `fd` over the unix socket `socket` as `SCM_RIGHTS`, with one
/// data byte because a message without data carries no ancillary data on
/// a stream socket. The control buffer is on the stack, so the init may
/// call this.
#[allow(unsafe_code)]
pub(crate) fn send_fd(socket: RawFd, fd: RawFd) -> Result<(), Errno> {
    // SAFETY: the init owns both descriptors and keeps them open during the
    // call; the borrows end with it.
    let (socket, fd) = unsafe { (BorrowedFd::borrow_raw(socket), BorrowedFd::borrow_raw(fd)) };
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(libc::EINVAL);
    }
    let byte = [1u8];
    loop {
        match rustix::net::sendmsg(
            socket,
            &[IoSlice::new(&byte)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.raw_os_error()),
        }
    }
}

/// Receives the terminal master that the sandbox init sends with
/// [`send_fd`]. Returns `None` when the init closed the socket without
/// sending one, which it does only when it failed before.
///
/// # Errors
///
/// The error of `recvmsg`, or `InvalidData` for a message without a
/// descriptor or with more than one.
pub(crate) fn receive_master(socket: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = loop {
        match rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut byte)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(received) => break received,
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
    };

    let mut fds: Vec<OwnedFd> = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    if received.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    if received.flags.contains(ReturnFlags::CTRUNC) || fds.len() > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the terminal message had more descriptors than expected",
        ));
    }
    fds.pop().map(Some).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the sandbox sent a message without the terminal's descriptor",
        )
    })
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use std::os::fd::{AsRawFd, FromRawFd};

    use super::*;

    #[test]
    fn pts_path_formats_index() {
        let mut buffer = [0u8; PTS_PATH_SIZE];
        assert_eq!(pts_path(0, &mut buffer), c"/dev/pts/0");
        assert_eq!(pts_path(17, &mut buffer), c"/dev/pts/17");
        assert_eq!(pts_path(u32::MAX, &mut buffer), c"/dev/pts/4294967295");
    }

    #[test]
    #[allow(unsafe_code)]
    fn master_crosses_socket_pair() {
        let size = libc::winsize {
            ws_row: 12,
            ws_col: 34,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = open_pty(c"/dev/ptmx", Some(&size)).unwrap();
        // SAFETY: open_pty returned two new descriptors that nothing else owns.
        let (master, slave) = unsafe {
            (
                OwnedFd::from_raw_fd(pty.master),
                OwnedFd::from_raw_fd(pty.slave),
            )
        };
        let (ours, theirs) = socket_pair().unwrap();
        send_fd(theirs.as_raw_fd(), master.as_raw_fd()).unwrap();
        drop((theirs, master));

        let received = receive_master(ours.as_fd()).unwrap().expect("a descriptor");
        assert_eq!(receive_master(ours.as_fd()).unwrap().map(|_| ()), None);
        let kept = rustix::termios::tcgetwinsize(&slave).unwrap();
        assert_eq!((kept.ws_row, kept.ws_col), (12, 34));
        rustix::io::write(&received, b"x\n").unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(rustix::io::read(&slave, &mut byte).unwrap(), 1);
        assert_eq!(byte[0], b'x');
    }
}
