//! Moving datagrams by the batch: on Linux `sendmmsg` / `recvmmsg` ([`crate::sys::mmsg`]) and
//! segmentation offload ([`crate::sys::udp_gso`]); elsewhere one datagram per system call.
//! Either way a batch is built once per stream and nothing is allocated per datagram.

/// Most datagrams moved by one system call.
pub(crate) const BATCH: usize = 64;
/// Bytes of each datagram the Linux receiver copies out of the kernel: enough for the sequence
/// number; the length comes from `MSG_TRUNC`.
#[cfg(target_os = "linux")]
pub(crate) const RECV_SLOT: usize = 64;

#[cfg(target_os = "linux")]
pub(super) use linux::{RxBatch, TxBatch};
#[cfg(not(target_os = "linux"))]
pub(super) use portable::{RxBatch, TxBatch};

#[cfg(target_os = "linux")]
mod linux {
    //! A batch's slots lie back to back in one buffer, which is also the layout segmentation
    //! offload (`UDP_SEGMENT`) sends in one go; that is tried first and dropped for `sendmmsg`
    //! when the kernel refuses it. Receiving, `UDP_GRO` is asked for once, and plain
    //! `recvmmsg` of datagram heads serves when the kernel does not know it.

    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    use super::{BATCH, RECV_SLOT};
    use crate::proto::udp::write_seq;
    use crate::sys::mmsg::{RecvBatch, SendBatch};
    use crate::sys::udp_gso::{self, GroBatch};

    /// Fewest datagrams worth one segmentation-offload send. Smaller batches (paced below
    /// about 100 Mbit/s at 1500 bytes) cost few system calls anyway, and sending them as
    /// separate packets keeps them separate inside this host too: a train stays one packet
    /// through veth pairs and namespaces, where a per-packet filter or counter would drop or
    /// count it as one (a physical NIC or the stack cuts it before the wire either way).
    const GSO_MIN_SEGMENTS: usize = 16;

    /// Up to [`BATCH`] datagrams of `len` bytes, each with its own copy of the payload so that
    /// each can carry its own sequence number.
    pub(crate) struct TxBatch {
        slots: SendBatch,
        /// Slots one segmentation-offload send carries; 0 once the kernel has refused it
        /// (then every batch goes by `sendmmsg`).
        gso_segments: usize,
    }

    impl TxBatch {
        /// `buf` holds the payload of every slot back to back (`len` bytes each).
        pub(crate) fn new(buf: Vec<u8>, len: usize, dest: SocketAddr) -> TxBatch {
            let slots = SendBatch::new(buf, len, BATCH, dest);
            let gso_segments = match u16::try_from(len) {
                Ok(_) => udp_gso::segments_per_send(len).min(slots.slots()),
                Err(_) => 0,
            };
            TxBatch {
                slots,
                gso_segments,
            }
        }

        /// Sends up to `count` slots in one segmentation-offload send; `None` when this batch
        /// is too small for it or the stream does not (or no longer) use it.
        fn send_gso(&mut self, sock: &UdpSocket, count: usize) -> Option<io::Result<usize>> {
            let n = count.min(self.gso_segments);
            if n < GSO_MIN_SEGMENTS {
                return None;
            }
            let data = self.slots.first(n)?;
            let segment = u16::try_from(self.slots.slot_len()).ok()?;
            match udp_gso::send_segments(sock.as_raw_fd(), data, segment, self.slots.dest()) {
                Ok(_) => Some(Ok(n)),
                Err(e) if udp_gso::is_refusal(&e) => {
                    crate::log!(
                        2,
                        "UDP segmentation offload refused ({e}): sendmmsg from now on"
                    );
                    self.gso_segments = 0;
                    None
                }
                Err(e) => Some(Err(e)),
            }
        }

        /// Sends up to `count` datagrams numbered from `seq`; returns how many went out.
        pub(crate) fn send(
            &mut self,
            sock: &UdpSocket,
            seq: u32,
            count: usize,
        ) -> io::Result<usize> {
            let count = count.clamp(1, self.slots.slots());
            for k in 0..count {
                if let Some(slot) = self.slots.slot_mut(k) {
                    write_seq(slot, seq.wrapping_add(k as u32));
                }
            }
            if let Some(sent) = self.send_gso(sock, count) {
                return sent;
            }
            self.slots.send(sock.as_raw_fd(), count)
        }
    }

    /// [`BATCH`] receive slots of [`RECV_SLOT`] bytes, with source addresses; or, when the
    /// kernel coalesces datagrams for us (`UDP_GRO`), whole buffers split back into datagrams.
    pub(crate) struct RxBatch {
        heads: RecvBatch,
        /// Set up on the first receive, when the socket accepts `UDP_GRO`.
        gro: Option<Box<GroBatch>>,
        gro_tried: bool,
    }

    impl RxBatch {
        pub(crate) fn new() -> RxBatch {
            RxBatch {
                heads: RecvBatch::heads(BATCH, RECV_SLOT),
                gro: None,
                gro_tried: false,
            }
        }

        /// Waits (up to the socket's receive timeout) for at least one datagram and takes every
        /// one already queued, up to [`BATCH`].
        pub(crate) fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
            if !self.gro_tried {
                self.gro_tried = true;
                if udp_gso::enable_gro(sock.as_raw_fd()) {
                    self.gro = Some(Box::default());
                }
            }
            match self.gro.as_mut() {
                Some(gro) => gro.recv(sock.as_raw_fd()),
                None => self.heads.recv(sock.as_raw_fd()),
            }
        }

        /// Source, full length and the copied head of datagram `k` of the last batch.
        pub(crate) fn get(&self, k: usize) -> Option<(SocketAddr, usize, &[u8])> {
            let Some(gro) = self.gro.as_ref() else {
                return self.heads.get(k);
            };
            let (src, len, data) = gro.get(k)?;
            Some((src, len, data.get(..len.min(RECV_SLOT))?))
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod portable {
    //! One datagram per system call, for systems without `sendmmsg` / `recvmmsg`.

    use std::io;
    use std::net::{SocketAddr, UdpSocket};

    use crate::proto::udp::write_seq;

    /// One datagram buffer and its destination.
    pub(crate) struct TxBatch {
        buf: Vec<u8>,
        len: usize,
        dest: SocketAddr,
    }

    impl TxBatch {
        pub(crate) fn new(buf: Vec<u8>, len: usize, dest: SocketAddr) -> TxBatch {
            TxBatch { buf, len, dest }
        }

        /// Sends one datagram numbered `seq`.
        pub(crate) fn send(
            &mut self,
            sock: &UdpSocket,
            seq: u32,
            _count: usize,
        ) -> io::Result<usize> {
            let Some(slot) = self.buf.get_mut(..self.len) else {
                return Err(io::Error::other("payload buffer too short"));
            };
            write_seq(slot, seq);
            sock.send_to(slot, self.dest)?;
            Ok(1)
        }
    }

    /// One full-size receive buffer.
    pub(crate) struct RxBatch {
        buf: Vec<u8>,
        last: Option<(SocketAddr, usize)>,
    }

    impl RxBatch {
        pub(crate) fn new() -> RxBatch {
            RxBatch {
                buf: vec![0u8; 65536],
                last: None,
            }
        }

        pub(crate) fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
            let (n, src) = sock.recv_from(&mut self.buf)?;
            self.last = Some((src, n));
            Ok(1)
        }

        pub(crate) fn get(&self, k: usize) -> Option<(SocketAddr, usize, &[u8])> {
            if k != 0 {
                return None;
            }
            let (src, n) = self.last?;
            Some((src, n, self.buf.get(..n)?))
        }
    }
}
