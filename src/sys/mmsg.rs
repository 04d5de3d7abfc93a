//! Datagrams by the batch on Linux: `sendmmsg` / `recvmmsg` behind a safe API, and the raw
//! socket addresses they (and [`super::udp_gso`]) hand to the kernel.
//!
//! A batch owns its buffers and the message headers that point into them. The buffers live on
//! the heap and are never resized after the headers are built, so the pointers stay valid when
//! the batch moves; everything is allocated once, and a send or receive allocates nothing.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// A socket address in the kernel's layout, built once and handed to every send.
pub(crate) struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    /// `addr` as a `sockaddr_in` or `sockaddr_in6`.
    pub(crate) fn new(addr: SocketAddr) -> RawAddr {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let at = (&mut storage as *mut libc::sockaddr_storage).cast::<u8>();
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe { std::ptr::write(at.cast::<libc::sockaddr_in>(), sin) };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe { std::ptr::write(at.cast::<libc::sockaddr_in6>(), sin6) };
                size_of::<libc::sockaddr_in6>()
            }
        };
        RawAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }

    /// The address as the kernel reads it (for a `msghdr`'s name).
    pub(super) fn name(&self) -> (*mut libc::c_void, libc::socklen_t) {
        let ptr = &self.storage as *const libc::sockaddr_storage as *mut libc::sockaddr_storage;
        (ptr.cast(), self.len)
    }
}

/// The address the kernel wrote into `storage` (a datagram's source); `None` for a family other
/// than IPv4 and IPv6.
pub(super) fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in when the family is AF_INET.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 when the family is AF_INET6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Room for one source address, as `recvmmsg` wants it.
fn empty_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    unsafe { zeroed() }
}

/// A message header with every field zero but the ones given.
fn header(iov: *mut libc::iovec, name: *mut libc::c_void, namelen: u32) -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain old data; zero is valid for the fields left alone.
    let mut m: libc::mmsghdr = unsafe { zeroed() };
    m.msg_hdr.msg_iov = iov;
    m.msg_hdr.msg_iovlen = 1;
    m.msg_hdr.msg_name = name;
    m.msg_hdr.msg_namelen = namelen;
    m
}

/// Slots of `len` bytes back to back in one buffer, all sent to one address by `sendmmsg`.
/// The caller writes into the slots between sends (each datagram its own sequence number).
pub(crate) struct SendBatch {
    buf: Vec<u8>,
    len: usize,
    _iov: Vec<libc::iovec>,
    hdr: Vec<libc::mmsghdr>,
    /// On the heap, so that the headers' pointer to it survives a move.
    dest: Box<RawAddr>,
}

impl SendBatch {
    /// `buf` holds the payload of every slot back to back: `buf.len() / len` slots, at least
    /// one and at most `max_slots` (the buffer is grown with zeros to fill one slot).
    pub(crate) fn new(
        mut buf: Vec<u8>,
        len: usize,
        max_slots: usize,
        dest: SocketAddr,
    ) -> SendBatch {
        let len = len.max(1);
        let slots = (buf.len() / len).clamp(1, max_slots.max(1));
        if buf.len() < slots * len {
            buf.resize(slots * len, 0);
        }
        let dest = Box::new(RawAddr::new(dest));
        let (name, namelen) = dest.name();
        let mut iov: Vec<libc::iovec> = buf
            .chunks_exact_mut(len)
            .take(slots)
            .map(|slot| libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: len,
            })
            .collect();
        let hdr = iov
            .iter_mut()
            .map(|iov| header(iov, name, namelen))
            .collect();
        SendBatch {
            buf,
            len,
            _iov: iov,
            hdr,
            dest,
        }
    }

    /// How many datagrams one send can carry.
    pub(crate) fn slots(&self) -> usize {
        self.hdr.len()
    }

    /// The bytes of slot `k`, to write its sequence number into.
    pub(crate) fn slot_mut(&mut self, k: usize) -> Option<&mut [u8]> {
        self.buf.get_mut(k * self.len..(k + 1) * self.len)
    }

    /// The first `n` slots back to back: the layout one segmentation-offload send takes.
    pub(crate) fn first(&self, n: usize) -> Option<&[u8]> {
        self.buf.get(..n * self.len)
    }

    /// Bytes per slot.
    pub(crate) fn slot_len(&self) -> usize {
        self.len
    }

    /// Where every datagram goes.
    pub(crate) fn dest(&self) -> &RawAddr {
        &self.dest
    }

    /// Sends the first `count` slots (at least one, at most [`Self::slots`]) to the
    /// destination; returns how many the kernel took.
    pub(crate) fn send(&mut self, fd: RawFd, count: usize) -> io::Result<usize> {
        let count = count.clamp(1, self.hdr.len());
        // SAFETY: every header points at a live iovec, buffer slot and address owned by self,
        // and `count` does not exceed the number of headers.
        let rc = unsafe { libc::sendmmsg(fd, self.hdr.as_mut_ptr(), count as libc::c_uint, 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }
}

/// Control-message room per receive slot, in aligned words: a few `cmsghdr`s with an int each.
const CONTROL_WORDS: usize = 8;

/// Receive slots for `recvmmsg`, each with its source address: either heads that keep only
/// the first bytes of each datagram with its full length (`MSG_TRUNC`), enough for a receiver
/// that reads a sequence number, or whole buffers with room for control messages.
pub(crate) struct RecvBatch {
    bufs: Vec<u8>,
    slot: usize,
    _iov: Vec<libc::iovec>,
    hdr: Vec<libc::mmsghdr>,
    addrs: Vec<libc::sockaddr_storage>,
    control: Vec<[u64; CONTROL_WORDS]>,
    flags: libc::c_int,
}

impl RecvBatch {
    /// `slots` datagrams per receive, `head` bytes kept of each.
    pub(crate) fn heads(slots: usize, head: usize) -> RecvBatch {
        RecvBatch::build(slots, head, 0, libc::MSG_WAITFORONE | libc::MSG_TRUNC)
    }

    /// `slots` buffers of `slot` bytes per receive, each with room for control messages.
    pub(super) fn whole(slots: usize, slot: usize) -> RecvBatch {
        RecvBatch::build(slots, slot, slots, libc::MSG_WAITFORONE)
    }

    fn build(slots: usize, slot: usize, controls: usize, flags: libc::c_int) -> RecvBatch {
        let (slots, slot) = (slots.max(1), slot.max(1));
        let mut bufs = vec![0u8; slots * slot];
        let mut addrs: Vec<libc::sockaddr_storage> = (0..slots).map(|_| empty_storage()).collect();
        let mut control = vec![[0u64; CONTROL_WORDS]; controls];
        let mut iov: Vec<libc::iovec> = bufs
            .chunks_exact_mut(slot)
            .map(|h| libc::iovec {
                iov_base: h.as_mut_ptr().cast(),
                iov_len: slot,
            })
            .collect();
        let mut hdr: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .zip(addrs.iter_mut())
            .map(|(iov, addr)| header(iov, (addr as *mut libc::sockaddr_storage).cast(), 0))
            .collect();
        for (m, c) in hdr.iter_mut().zip(control.iter_mut()) {
            m.msg_hdr.msg_control = c.as_mut_ptr().cast();
        }
        RecvBatch {
            bufs,
            slot,
            _iov: iov,
            hdr,
            addrs,
            control,
            flags,
        }
    }

    /// Waits (up to the socket's receive timeout) for at least one datagram and takes every
    /// one already queued, up to the number of slots; returns how many slots were filled.
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let control_len = if self.control.is_empty() {
            0
        } else {
            size_of::<[u64; CONTROL_WORDS]>()
        };
        for m in &mut self.hdr {
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_hdr.msg_controllen = control_len as _;
            m.msg_hdr.msg_flags = 0;
            m.msg_len = 0;
        }
        // SAFETY: every header points at live slots, addresses and control room owned by self
        // (`msg_controllen` is 0 where there is none).
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.hdr.as_mut_ptr(),
                self.hdr.len() as libc::c_uint,
                // glibc declares the flags `int`, musl `unsigned int`.
                self.flags as _,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// Source, full length and the kept bytes of slot `k` of the last receive.
    pub(crate) fn get(&self, k: usize) -> Option<(SocketAddr, usize, &[u8])> {
        let len = self.hdr.get(k)?.msg_len as usize;
        let src = socket_addr(self.addrs.get(k)?)?;
        let start = k * self.slot;
        let kept = self.bufs.get(start..start + len.min(self.slot))?;
        Some((src, len, kept))
    }

    /// The header of slot `k` as the last receive left it, for its control messages.
    pub(super) fn msghdr(&self, k: usize) -> Option<&libc::msghdr> {
        Some(&self.hdr.get(k)?.msg_hdr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn addresses_survive_the_kernel_layout() {
        for text in [
            "192.0.2.7:2000",
            "[2001:db8::1]:65535",
            "[::ffff:10.0.0.1]:1",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(socket_addr(&RawAddr::new(addr).storage), Some(addr));
        }
        assert_eq!(socket_addr(&empty_storage()), None);
    }

    #[test]
    fn a_batch_goes_out_and_comes_back_as_heads() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut send = SendBatch::new(vec![0u8; 300], 100, 8, rx.local_addr().unwrap());
        assert_eq!(send.slots(), 3);
        for k in 0..3 {
            send.slot_mut(k).unwrap().fill(k as u8 + 1);
        }
        assert_eq!(send.send(tx.as_raw_fd(), 3).unwrap(), 3);
        let mut recv = RecvBatch::heads(4, 8);
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let n = recv.recv(rx.as_raw_fd()).unwrap();
            for k in 0..n {
                let (src, len, head) = recv.get(k).unwrap();
                assert_eq!(src, tx.local_addr().unwrap());
                assert_eq!((len, head.len()), (100, 8));
                seen.push(head[0]);
            }
        }
        assert_eq!(seen, [1, 2, 3]);
    }
}
