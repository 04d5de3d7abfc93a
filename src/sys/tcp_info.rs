//! Round-trip time and retransmissions of a TCP connection, from the kernel's `TCP_INFO`.
//!
//! A TCP test that falls short of the link rate is usually explained by RTT or loss; the
//! client shows these in verbose output and JSON so a user need not reach for `ss` or
//! `netstat` while the test runs.

use std::os::fd::RawFd;

/// What the kernel reports about one TCP connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TcpStats {
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: u32,
    /// Round-trip time variation, microseconds.
    pub rttvar_us: u32,
    /// Segments retransmitted over the life of the connection.
    pub retransmits_total: u32,
}

/// Reads the statistics of the TCP socket `fd`; `None` if it is not a TCP socket, the call
/// fails, or the platform has no `TCP_INFO` we understand.
pub(crate) fn tcp_stats(fd: RawFd) -> Option<TcpStats> {
    imp::tcp_stats(fd)
}

/// Bytes the peer has acknowledged over the life of the connection (`tcpi_bytes_acked`, Linux
/// 4.1 and later); `None` where the kernel or the C library does not have the field. Exact and
/// free of races with a concurrent writer, unlike written minus unacknowledged. It counts the
/// SYN and FIN too (one byte each), so callers take differences.
pub(crate) fn bytes_acked(fd: RawFd) -> Option<u64> {
    imp::bytes_acked(fd)
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
mod imp {
    use super::TcpStats;
    use std::os::fd::RawFd;

    /// The kernel's `tcp_info` and how many bytes of it the kernel filled in (an older kernel
    /// fills in less than the C library's struct holds).
    fn read(fd: RawFd) -> Option<(libc::tcp_info, usize)> {
        // SAFETY: an all-zero tcp_info is a valid plain C struct.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::tcp_info>()).ok()?;
        // SAFETY: `info` is writable and `len` is its size; the kernel writes at most `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        (rc == 0).then(|| (info, usize::try_from(len).unwrap_or(0)))
    }

    pub(super) fn tcp_stats(fd: RawFd) -> Option<TcpStats> {
        let (info, _) = read(fd)?;
        Some(TcpStats {
            rtt_us: info.tcpi_rtt,
            rttvar_us: info.tcpi_rttvar,
            retransmits_total: retransmits(&info),
        })
    }

    #[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
    pub(super) fn bytes_acked(fd: RawFd) -> Option<u64> {
        let (info, len) = read(fd)?;
        let end = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_acked) + 8;
        (len >= end).then_some(info.tcpi_bytes_acked)
    }

    #[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
    pub(super) fn bytes_acked(_fd: RawFd) -> Option<u64> {
        None
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn retransmits(info: &libc::tcp_info) -> u32 {
        info.tcpi_total_retrans
    }

    #[cfg(target_os = "freebsd")]
    fn retransmits(info: &libc::tcp_info) -> u32 {
        info.tcpi_snd_rexmitpack
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
mod imp {
    use super::TcpStats;
    use std::os::fd::RawFd;

    pub(super) fn tcp_stats(_fd: RawFd) -> Option<TcpStats> {
        None
    }

    pub(super) fn bytes_acked(_fd: RawFd) -> Option<u64> {
        None
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "freebsd")))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsRawFd;

    #[test]
    fn loopback_connection_has_stats() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let data = [7u8; 64 * 1024];
        client.write_all(&data).unwrap();
        let mut got = vec![0u8; data.len()];
        server.read_exact(&mut got).unwrap();
        server.write_all(b"ack").unwrap();
        let mut ack = [0u8; 3];
        client.read_exact(&mut ack).unwrap();
        let stats = tcp_stats(client.as_raw_fd()).expect("TCP_INFO on a TCP socket");
        assert!(stats.rtt_us < 1_000_000, "{stats:?}");
        // The peer has read (and so acknowledged) all 64 KiB; the SYN counts one more byte.
        if let Some(acked) = bytes_acked(client.as_raw_fd()) {
            assert!((65_536..=65_537).contains(&acked), "{acked}");
        }
    }

    #[test]
    fn not_a_tcp_socket() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(tcp_stats(udp.as_raw_fd()), None);
    }
}
