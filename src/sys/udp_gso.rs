//! UDP segmentation offload on Linux (`UDP_SEGMENT`, kernel 4.18+): one `sendmsg` hands the
//! kernel a buffer of equal-size datagrams back to back, and the kernel (or the NIC) cuts it
//! into separate datagrams, each with its own UDP header. What leaves is byte for byte what
//! `sendmmsg` of the same slots would send; the stack is walked once per buffer instead of once
//! per datagram.
//!
//! On receive, `UDP_GRO` lets the kernel hand over a train of equal-size datagrams from one
//! sender as one buffer, with the segment size in a control message; [`GroBatch`] receives such
//! buffers and indexes them back into datagrams.
//!
//! The kernel refuses with `EINVAL` when a segment plus headers does not fit the path's MTU or
//! the buffer holds too many segments, `EIO` when the device cannot checksum it, and
//! `ENOPROTOOPT` / `EOPNOTSUPP` before 4.18; [`is_refusal`] tells those apart so that the caller
//! falls back to `sendmmsg` for the rest of the stream.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use super::mmsg::{RawAddr, RecvBatch};

/// `SOL_UDP`: the UDP level of socket options and control messages.
const SOL_UDP: libc::c_int = 17;
/// `UDP_SEGMENT`: the control message (and option) that carries the segment size.
const UDP_SEGMENT: libc::c_int = 103;

/// `UDP_GRO`: the option that turns receive coalescing on, and its control message.
const UDP_GRO: libc::c_int = 104;

/// Most segments one send may carry (`UDP_MAX_SEGMENTS` of kernels before 6.x; newer allow 128).
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Most payload one send may carry: it must fit one IP datagram's 16-bit length with headers.
pub(crate) const MAX_BYTES: usize = 65_000;

/// Segments of `segment` bytes one send may carry.
pub(crate) fn segments_per_send(segment: usize) -> usize {
    (MAX_BYTES / segment.max(1)).clamp(1, MAX_SEGMENTS)
}

/// Sends `data` as datagrams of `segment` bytes each (the last may be shorter) to `dest`, in
/// one system call. Returns the bytes sent, which is all of `data`: the
/// kernel takes a segmented buffer whole or not at all.
pub(crate) fn send_segments(
    fd: RawFd,
    data: &[u8],
    segment: u16,
    dest: &RawAddr,
) -> io::Result<usize> {
    // Room for one control message with a u16, aligned for cmsghdr.
    let mut control = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain old data; zero is valid for the fields left alone.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    (msg.msg_name, msg.msg_namelen) = dest.name();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    debug_assert!(space <= std::mem::size_of_val(&control));
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `control`, which is large enough for one cmsghdr with a
    // u16 (checked above), so CMSG_FIRSTHDR is non-null and CMSG_DATA is inside the buffer.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = SOL_UDP;
        (*cmsg).cmsg_type = UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
    }
    // SAFETY: every pointer in `msg` refers to memory that outlives the call; the kernel only
    // reads the payload.
    let rc = unsafe { libc::sendmsg(fd, &msg, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// True when an error from [`send_segments`] means "this kernel, device or size does not do
/// segmentation offload" rather than a passing or fatal condition of the socket.
pub(crate) fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// Asks the kernel to coalesce received datagrams (`UDP_GRO`, Linux 5.0+). False when it does
/// not know the option; the socket then keeps receiving datagram by datagram.
pub(crate) fn enable_gro(fd: RawFd) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: the option value is a valid c_int and the length is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_UDP,
            UDP_GRO,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

/// Buffers one [`GroBatch`] receive fills.
const GRO_SLOTS: usize = 4;
/// One buffer holds the largest coalesced train (or the largest datagram).
const GRO_SLOT_BYTES: usize = 65_536;

/// Where one datagram of the last batch lies: buffer, offset, length.
#[derive(Clone, Copy, Debug, Default)]
struct Segment {
    slot: u32,
    offset: u32,
    len: u32,
}

/// `recvmmsg` into [`GRO_SLOTS`] whole buffers on a socket with `UDP_GRO` on, and the datagrams
/// found in them.
pub(crate) struct GroBatch {
    slots: RecvBatch,
    segments: Vec<Segment>,
}

impl Default for GroBatch {
    fn default() -> GroBatch {
        GroBatch::new()
    }
}

impl GroBatch {
    /// Buffers for [`GRO_SLOTS`] coalesced receives (256 KiB, touched only as data arrives).
    pub(crate) fn new() -> GroBatch {
        GroBatch {
            slots: RecvBatch::whole(GRO_SLOTS, GRO_SLOT_BYTES),
            segments: Vec::with_capacity(GRO_SLOTS * 64),
        }
    }

    /// Waits (up to the socket's receive timeout) for data and takes what is queued; returns
    /// how many datagrams the batch holds once coalesced trains are split again.
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let filled = self.slots.recv(fd)?;
        self.segments.clear();
        for slot in 0..filled {
            let Some(msg) = self.slots.msghdr(slot) else {
                break;
            };
            let total = self.slots.get(slot).map_or(0, |(_, _, kept)| kept.len());
            let size = match gro_size(msg) {
                Some(size) if size > 0 => size,
                _ => total.max(1),
            };
            let mut offset = 0;
            loop {
                let len = size.min(total - offset);
                self.segments.push(Segment {
                    slot: slot as u32,
                    offset: offset as u32,
                    len: len as u32,
                });
                offset += len;
                if offset >= total {
                    break;
                }
            }
        }
        Ok(self.segments.len())
    }

    /// Source address, length and bytes of datagram `k` of the last batch.
    pub(crate) fn get(&self, k: usize) -> Option<(SocketAddr, usize, &[u8])> {
        let s = self.segments.get(k)?;
        let (src, _, kept) = self.slots.get(s.slot as usize)?;
        let start = s.offset as usize;
        let data = kept.get(start..start + s.len as usize)?;
        Some((src, s.len as usize, data))
    }
}

/// The segment size the kernel put in a `UDP_GRO` control message of `msg`, if any.
fn gro_size(msg: &libc::msghdr) -> Option<usize> {
    // SAFETY: the kernel filled msg_control up to msg_controllen with well-formed cmsghdrs; the
    // CMSG_* macros stay inside that range.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).ok();
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn one_send_arrives_as_separate_datagrams() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = RawAddr::new(rx.local_addr().unwrap());
        let data: Vec<u8> = (0..10u8).flat_map(|k| [k; 100]).collect();
        match send_segments(tx.as_raw_fd(), &data, 100, &dest) {
            Ok(n) => assert_eq!(n, 1000),
            Err(e) if is_refusal(&e) => {
                eprintln!("skipped: kernel refuses UDP_SEGMENT: {e}");
                return;
            }
            Err(e) => panic!("send: {e}"),
        }
        let mut buf = [0u8; 2000];
        for k in 0..10u8 {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(n, 100, "datagram {k} has its own length");
            assert!(buf[..n].iter().all(|&b| b == k), "datagram {k} in order");
        }
    }

    #[test]
    fn coalesced_train_is_split_back_into_datagrams() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        if !enable_gro(rx.as_raw_fd()) {
            eprintln!("skipped: kernel has no UDP_GRO");
            return;
        }
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = RawAddr::new(rx.local_addr().unwrap());
        // Ten datagrams of 100 bytes and a short last one, in one offloaded send.
        let mut data: Vec<u8> = (0..10u8).flat_map(|k| [k; 100]).collect();
        data.extend_from_slice(&[10u8; 40]);
        if let Err(e) = send_segments(tx.as_raw_fd(), &data, 100, &dest) {
            eprintln!("skipped: kernel refuses UDP_SEGMENT: {e}");
            return;
        }
        let mut batch = GroBatch::new();
        let mut seen = Vec::new();
        while seen.len() < 11 {
            let n = batch.recv(rx.as_raw_fd()).unwrap();
            for k in 0..n {
                let (src, len, bytes) = batch.get(k).unwrap();
                assert_eq!(src, tx.local_addr().unwrap());
                assert_eq!(len, bytes.len());
                assert!(bytes.iter().all(|&b| b == bytes[0]));
                seen.push((bytes[0], len));
            }
        }
        let want: Vec<(u8, usize)> = (0..11u8)
            .map(|k| (k, if k == 10 { 40 } else { 100 }))
            .collect();
        assert_eq!(seen, want);
        assert!(batch.get(11).is_none());
    }

    #[test]
    fn per_send_limits() {
        assert_eq!(segments_per_send(1472), 44);
        assert_eq!(segments_per_send(36), MAX_SEGMENTS);
        assert_eq!(segments_per_send(64_000), 1);
    }
}
