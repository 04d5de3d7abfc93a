//! Socket options and calls that std does not expose.

use std::io;
use std::os::fd::RawFd;

/// Asks the kernel for send and/or receive buffers of the given sizes (`SO_SNDBUF`,
/// `SO_RCVBUF`); `None` leaves that one alone. High-rate tests need more than the defaults,
/// but the kernel may clamp or double the value, so the result is advisory: both options are
/// always attempted, and the first error is returned for the caller to log or ignore.
pub(crate) fn set_buffer_sizes(
    fd: RawFd,
    send: Option<usize>,
    recv: Option<usize>,
) -> io::Result<()> {
    let mut first_err = None;
    for (opt, size) in [(libc::SO_SNDBUF, send), (libc::SO_RCVBUF, recv)] {
        if let Some(size) = size {
            if let Err(e) = set_int(fd, opt, size) {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn set_int(fd: RawFd, opt: libc::c_int, value: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    // SAFETY: the option value is a valid c_int and the length is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Shuts a socket down in both directions, ignoring the answer: an unconnected UDP socket
/// answers `ENOTCONN`, but Linux still marks it shut and wakes its blocked readers and writers.
pub(crate) fn shutdown(fd: RawFd) {
    // SAFETY: shutdown takes no memory; a descriptor that is not a socket only gets an error.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Makes the last close of a TCP socket abortive (`SO_LINGER` on, zero seconds): the kernel
/// sends a reset and discards what is still queued instead of delivering it after a FIN.
pub(crate) fn abort_on_close(fd: RawFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a valid, initialised struct of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes written to a TCP socket that the peer has not acknowledged yet (unsent plus in
/// flight): `SIOCOUTQ` on Linux, `FIONWRITE` on FreeBSD, `SO_NWRITE` on macOS (the send
/// buffer, where TCP keeps data until it is acknowledged); `None` elsewhere or on error.
/// Written minus this is what the peer has taken: it tells a slow peer from a stalled one when
/// the kernel keeps growing the send buffer, and it is what a sender reports as sent.
pub(crate) fn unacked_bytes(fd: RawFd) -> Option<u64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let request = libc::TIOCOUTQ;
    #[cfg(target_os = "freebsd")]
    let request = libc::FIONWRITE;
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        let mut n: libc::c_int = 0;
        // SAFETY: the request writes one int into `n`, which we own.
        let rc = unsafe { libc::ioctl(fd, request as _, &mut n) };
        (rc == 0).then(|| u64::try_from(n).unwrap_or(0))
    }
    #[cfg(target_vendor = "apple")]
    {
        let mut n: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the option writes at most `len` bytes into `n`, which we own.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_NWRITE,
                (&mut n as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then(|| u64::try_from(n).unwrap_or(0))
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_vendor = "apple"
    )))]
    {
        let _ = fd;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn get_int(fd: RawFd, opt: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` is a writable c_int and `len` its size.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        value
    }

    #[test]
    fn sets_both_buffers() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = sock.as_raw_fd();
        set_buffer_sizes(fd, Some(64 * 1024), Some(96 * 1024)).unwrap();
        // Linux doubles the value for bookkeeping; others store it as given or clamp it.
        assert!(get_int(fd, libc::SO_SNDBUF) >= 32 * 1024);
        assert!(get_int(fd, libc::SO_RCVBUF) >= 48 * 1024);
        set_buffer_sizes(fd, None, None).unwrap();
    }

    #[test]
    fn bad_descriptor_is_an_error() {
        assert!(set_buffer_sizes(-1, Some(4096), None).is_err());
        assert!(set_buffer_sizes(-1, None, None).is_ok());
    }
}
