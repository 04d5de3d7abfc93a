//! Setting up a UDP data socket, and which of its errors are only a passing condition.

use std::io;
use std::net::UdpSocket;

use crate::engine::RECV_TIMEOUT;

/// Socket buffer size asked for (the kernel clamps it to its own maximum): a burst of a few
/// milliseconds at gigabit rates must fit while the receiver is descheduled.
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;

/// Asks for large socket buffers and sets the kernel timeouts every loop relies on.
pub(crate) fn prepare_socket(sock: &UdpSocket) -> io::Result<()> {
    sock.set_read_timeout(Some(RECV_TIMEOUT))?;
    sock.set_write_timeout(Some(RECV_TIMEOUT))?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        if let Err(e) = crate::sys::sockopt::set_buffer_sizes(
            sock.as_raw_fd(),
            Some(SOCKET_BUFFER),
            Some(SOCKET_BUFFER),
        ) {
            crate::log!(2, "UDP socket buffers: {e}");
        }
    }
    Ok(())
}

/// True for errors after which the loop just goes round again: the kernel timeout that lets it
/// check whether the test still runs, a signal, or an ICMP port-unreachable from an earlier
/// datagram (`ECONNREFUSED`, which says nothing about this one).
pub(super) fn is_passing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
    )
}

/// True for send errors that mean "the queue is full right now": wait a little and retry.
pub(super) fn is_transient_send_error(e: &io::Error) -> bool {
    if is_passing(e) {
        return true;
    }
    #[cfg(unix)]
    {
        // ENOBUFS: a qdisc or device queue is full. EPERM: a firewall rule dropped it; the test
        // goes on and the loss shows on the receiver.
        matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EPERM))
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Shuts a UDP socket down. An unconnected socket answers `ENOTCONN`, but Linux still marks it
/// shut and wakes its blocked readers and writers, which is all we want.
pub(crate) fn shutdown(socket: &UdpSocket) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        crate::sys::sockopt::shutdown(socket.as_raw_fd());
    }
    #[cfg(not(unix))]
    let _ = socket;
}
