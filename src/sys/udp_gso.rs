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
use std::os::fd::RawFd;

/// `SOL_UDP`: the UDP level of socket options and control messages.
const SOL_UDP: libc::c_int = 17;
/// `UDP_SEGMENT`: the control message (and option) that carries the segment size.
const UDP_SEGMENT: libc::c_int = 103;

/// `UDP_GRO`: the option that turns receive coalescing on, and its control message.
const UDP_GRO: libc::c_int = 104;

/// Most segments one send may carry (`UDP_MAX_SEGMENTS` of kernels before 6.x; newer allow 128).
pub const MAX_SEGMENTS: usize = 64;
/// Most payload one send may carry: it must fit one IP datagram's 16-bit length with headers.
pub const MAX_BYTES: usize = 65_000;

/// Segments of `segment` bytes one send may carry.
pub fn segments_per_send(segment: usize) -> usize {
    (MAX_BYTES / segment.max(1)).clamp(1, MAX_SEGMENTS)
}

/// Sends `data` as datagrams of `segment` bytes each (the last may be shorter) to the address
/// `name`/`name_len`, in one system call. Returns the bytes sent, which is all of `data`: the
/// kernel takes a segmented buffer whole or not at all.
pub fn send_segments(
    fd: RawFd,
    data: &[u8],
    segment: u16,
    name: &libc::sockaddr_storage,
    name_len: libc::socklen_t,
) -> io::Result<usize> {
    // Room for one control message with a u16, aligned for cmsghdr.
    let mut control = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain old data; zero is valid for the fields left alone.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (name as *const libc::sockaddr_storage as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = name_len;
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
pub fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
    )
}

/// Asks the kernel to coalesce received datagrams (`UDP_GRO`, Linux 5.0+). False when it does
/// not know the option; the socket then keeps receiving datagram by datagram.
pub fn enable_gro(fd: RawFd) -> bool {
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
/// Control-message room per buffer: one cmsghdr with an int, aligned.
const GRO_CONTROL: usize = 8;

/// Where one datagram of the last batch lies: buffer, offset, length.
#[derive(Clone, Copy, Debug, Default)]
struct Segment {
    slot: u32,
    offset: u32,
    len: u32,
}

/// `recvmmsg` into [`GRO_SLOTS`] whole buffers on a socket with `UDP_GRO` on, and the datagrams
/// found in them. The message headers point into vectors owned by the struct, which live on the
/// heap and are never resized, so the pointers stay valid when the struct moves.
pub struct GroBatch {
    bufs: Vec<u8>,
    _iov: Vec<libc::iovec>,
    hdr: Vec<libc::mmsghdr>,
    addrs: Vec<libc::sockaddr_storage>,
    _control: Vec<[u64; GRO_CONTROL]>,
    segments: Vec<Segment>,
}

impl Default for GroBatch {
    fn default() -> GroBatch {
        GroBatch::new()
    }
}

impl GroBatch {
    /// Buffers for [`GRO_SLOTS`] coalesced receives (256 KiB, touched only as data arrives).
    pub fn new() -> GroBatch {
        let mut bufs = vec![0u8; GRO_SLOTS * GRO_SLOT_BYTES];
        // SAFETY: sockaddr_storage is plain old data.
        let mut addrs: Vec<libc::sockaddr_storage> = (0..GRO_SLOTS)
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        let mut control = vec![[0u64; GRO_CONTROL]; GRO_SLOTS];
        let base = bufs.as_mut_ptr();
        let mut iov: Vec<libc::iovec> = (0..GRO_SLOTS)
            .map(|k| libc::iovec {
                // SAFETY: k * GRO_SLOT_BYTES + GRO_SLOT_BYTES <= bufs.len().
                iov_base: unsafe { base.add(k * GRO_SLOT_BYTES) }.cast(),
                iov_len: GRO_SLOT_BYTES,
            })
            .collect();
        let (iov_base, addr_base, ctl_base) =
            (iov.as_mut_ptr(), addrs.as_mut_ptr(), control.as_mut_ptr());
        let hdr = (0..GRO_SLOTS)
            .map(|k| {
                // SAFETY: plain old data; zero is valid for the fields left alone.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                // SAFETY: k < GRO_SLOTS, the length of iov, addrs and control.
                unsafe {
                    m.msg_hdr.msg_iov = iov_base.add(k);
                    m.msg_hdr.msg_name = addr_base.add(k).cast();
                    m.msg_hdr.msg_control = ctl_base.add(k).cast();
                }
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        GroBatch {
            bufs,
            _iov: iov,
            hdr,
            addrs,
            _control: control,
            segments: Vec::with_capacity(GRO_SLOTS * 64),
        }
    }

    /// Waits (up to the socket's receive timeout) for data and takes what is queued; returns
    /// how many datagrams the batch holds once coalesced trains are split again.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for m in &mut self.hdr {
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
            m.msg_hdr.msg_controllen = std::mem::size_of::<[u64; GRO_CONTROL]>() as _;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
        // SAFETY: every header points at live buffers, addresses and control space of self.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.hdr.as_mut_ptr(),
                GRO_SLOTS as libc::c_uint,
                // glibc declares the flags `int`, musl `unsigned int`.
                libc::MSG_WAITFORONE as _,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.segments.clear();
        for (slot, m) in self.hdr.iter().take(rc as usize).enumerate() {
            let total = (m.msg_len as usize).min(GRO_SLOT_BYTES);
            let size = match gro_size(&m.msg_hdr) {
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
    pub fn get(&self, k: usize) -> Option<(&libc::sockaddr_storage, usize, &[u8])> {
        let s = self.segments.get(k)?;
        let start = s.slot as usize * GRO_SLOT_BYTES + s.offset as usize;
        let data = self.bufs.get(start..start + s.len as usize)?;
        Some((self.addrs.get(s.slot as usize)?, s.len as usize, data))
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

    fn raw(addr: std::net::SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        let std::net::SocketAddr::V4(a) = addr else {
            panic!("v4 only")
        };
        // SAFETY: plain old data.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
        unsafe {
            std::ptr::write(
                (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>(),
                sin,
            )
        };
        (storage, std::mem::size_of::<libc::sockaddr_in>() as _)
    }

    #[test]
    fn one_send_arrives_as_separate_datagrams() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (name, len) = raw(rx.local_addr().unwrap());
        let data: Vec<u8> = (0..10u8).flat_map(|k| [k; 100]).collect();
        match send_segments(tx.as_raw_fd(), &data, 100, &name, len) {
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
        let (name, len) = raw(rx.local_addr().unwrap());
        // Ten datagrams of 100 bytes and a short last one, in one offloaded send.
        let mut data: Vec<u8> = (0..10u8).flat_map(|k| [k; 100]).collect();
        data.extend_from_slice(&[10u8; 40]);
        if let Err(e) = send_segments(tx.as_raw_fd(), &data, 100, &name, len) {
            eprintln!("skipped: kernel refuses UDP_SEGMENT: {e}");
            return;
        }
        let mut batch = GroBatch::new();
        let mut seen = Vec::new();
        while seen.len() < 11 {
            let n = batch.recv(rx.as_raw_fd()).unwrap();
            for k in 0..n {
                let (src, len, bytes) = batch.get(k).unwrap();
                assert_eq!(i32::from(src.ss_family), libc::AF_INET);
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
