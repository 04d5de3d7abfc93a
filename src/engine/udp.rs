//! UDP data loops shared by client and server: a paced sender per stream, a receiver that
//! accounts loss exactly from sequence numbers, and the control-connection reader that governs
//! the whole UDP session.
//!
//! # Addressing
//!
//! Sockets are never `connect()`ed. A connected socket only accepts datagrams from the one
//! (address, port) it is connected to, and the protocol document (section 7.1) reports a client
//! connected to RouterOS's announced port that received nothing. Senders therefore address every
//! datagram explicitly (`sendto` / `sendmmsg` with a destination), and receivers accept any
//! source port, keeping only datagrams from the peer's IP (the control connection's). A stranger
//! flooding the port is counted and ignored rather than polluting the statistics.
//!
//! # Fast path
//!
//! On Linux datagrams go out and come in by the batch (`sendmmsg` / `recvmmsg`), so a system
//! call moves up to [`BATCH`] datagrams. The receiver copies only the first [`RECV_SLOT`] bytes of
//! each datagram (it needs the sequence number and nothing else) and learns the real length from
//! `MSG_TRUNC`. Elsewhere plain `send_to` / `recv_from` do the same work a datagram at a time.
//! Buffers and message headers are built once per stream; nothing is allocated per datagram.
//! Waits are the kernel's (`SO_RCVTIMEO` / `SO_SNDTIMEO`), never a timer per packet.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::RECV_TIMEOUT;
use super::budget::Flow;
use super::pacing::Pacer;
use super::rx_loss::RxGroup;
use super::session::StreamEnd;
use super::state::{StreamCounters, TestState};
use super::tcp::{classify, payload_buffer};
use crate::proto::udp::read_seq;
use crate::proto::{Payload, StatusScanner};

/// Most datagrams moved by one system call.
pub const BATCH: usize = 64;
/// A batch never holds more payload than this, so 64000-byte datagrams do not make a 4 MB
/// buffer per stream.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Bytes of each datagram the Linux receiver copies out of the kernel: enough for the sequence
/// number; the length comes from `MSG_TRUNC`.
pub const RECV_SLOT: usize = 64;
/// Socket buffer size asked for (the kernel clamps it to its own maximum): a burst of a few
/// milliseconds at gigabit rates must fit while the receiver is descheduled.
pub const SOCKET_BUFFER: usize = 4 << 20;
/// Pause after a send the kernel refused for lack of buffers (`ENOBUFS`, `EAGAIN`): long enough
/// for a queue to drain a little, short against the pacing schedule.
pub const SEND_BACKOFF: Duration = Duration::from_micros(200);
/// A peer that shows no sign of life (a well-formed status message on the control
/// connection, or data) for this long is gone. RouterOS's `interval` goes up to 5 s, so this is
/// three of its longest intervals; a peer seen to report even more slowly gets three of its own
/// intervals (see [`silence_limit`]).
pub const CONTROL_SILENCE: Duration = Duration::from_secs(15);
/// The silence limit never grows past this, however slowly the peer has reported.
pub const MAX_CONTROL_SILENCE: Duration = Duration::from_secs(60);

/// How long a UDP test waits for a sign of life: [`CONTROL_SILENCE`] or three of the longest
/// gaps seen between the peer's status messages, whichever is longer (at most
/// [`MAX_CONTROL_SILENCE`]).
pub fn silence_limit(longest_status_gap: Duration) -> Duration {
    (longest_status_gap * 3).clamp(CONTROL_SILENCE, MAX_CONTROL_SILENCE)
}

/// How a UDP sender fills and addresses its datagrams.
#[derive(Clone, Copy, Debug)]
pub struct UdpSendPlan {
    /// Where every datagram goes.
    pub dest: SocketAddr,
    /// UDP payload bytes per datagram (at least the 4-byte sequence number).
    pub payload_len: usize,
    /// Bytes one datagram counts for: the whole IP packet, as RouterOS counts.
    pub wire_bytes: u64,
    /// Zeros or random bytes.
    pub payload: Payload,
}

/// How a receiver assigns datagrams to streams.
#[derive(Clone, Copy, Debug)]
pub enum Demux {
    /// Every datagram belongs to the one stream (a client socket per stream).
    Single,
    /// Stream `i` sends from port `base + i` (a RouterOS client with connection-count N sends
    /// from N consecutive ports to the server's one port, protocol document 7.5).
    ByPort {
        /// Source port of stream 0.
        base: u16,
    },
}

/// What a receiver accepts and how it counts.
#[derive(Clone, Debug)]
pub struct UdpReceivePlan {
    /// Only datagrams from this address are test data.
    pub peer_ip: IpAddr,
    /// Count received datagrams as IPv6 packets (48 bytes of headers) rather than IPv4 (28).
    pub ipv6: bool,
    /// Stream assignment.
    pub demux: Demux,
    /// Datagrams from other addresses, or from ports no stream can claim, are counted here.
    pub strangers: Arc<AtomicU64>,
    /// Loss totals of all streams, for the end-of-session log.
    pub totals: Arc<UdpTotals>,
}

/// Whole-test datagram counts, kept beside the per-interval counters for logs.
#[derive(Debug, Default)]
pub struct UdpTotals {
    /// Datagrams received (duplicates included).
    pub received: AtomicU64,
    /// Datagrams that never arrived.
    pub lost: AtomicU64,
    /// Datagrams that arrived after a higher sequence number.
    pub reordered: AtomicU64,
    /// Datagrams that arrived twice.
    pub duplicates: AtomicU64,
}

/// Datagrams per system call at `rate_bps` for `wire_bytes`-byte datagrams: about one
/// millisecond of traffic, at least one (low rates send datagram by datagram), at most
/// [`BATCH`] and [`MAX_BATCH_BYTES`] of payload. Unpaced senders use the largest batch.
pub fn batch_for(rate_bps: u64, wire_bytes: u64, payload_len: usize) -> usize {
    let cap = (MAX_BATCH_BYTES / payload_len.max(1)).clamp(1, BATCH);
    if rate_bps == 0 {
        return cap;
    }
    let per_ms = rate_bps / (wire_bytes.max(1) * 8) / 1000;
    usize::try_from(per_ms).unwrap_or(usize::MAX).clamp(1, cap)
}

/// The rate the pacer actually runs at: below two datagrams a second the protocol sends one
/// datagram a second (the interval clamp of protocol document section 8).
pub fn paced_rate(rate_bps: u64, wire_bytes: u64) -> u64 {
    let size = u32::try_from(wire_bytes).unwrap_or(u32::MAX);
    match crate::proto::rate::send_interval_ns(rate_bps, size) {
        Some(crate::proto::rate::CLAMPED_INTERVAL_NS) => wire_bytes * 8,
        _ => rate_bps,
    }
}

/// Asks for large socket buffers and sets the kernel timeouts every loop relies on.
pub fn prepare_socket(sock: &UdpSocket) -> io::Result<()> {
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

/// True for send errors that mean "the queue is full right now": wait a little and retry.
fn is_transient_send_error(e: &io::Error) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
    ) {
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

/// Sends datagrams until the test stops: sequence numbers from 0, paced per batch at the
/// stream's share of the test's rate, which the 1.5x rule may change while it runs.
pub fn send_loop(
    sock: UdpSocket,
    state: &TestState,
    counters: &StreamCounters,
    plan: UdpSendPlan,
) -> StreamEnd {
    let len = plan.payload_len.max(crate::proto::udp::UDP_HEADER_LEN);
    let cap = batch_for(0, plan.wire_bytes, len);
    let mut tx = batch::TxBatch::new(payload_buffer(len * cap, plan.payload), len, plan.dest);
    let mut seq: u32 = 0;
    let mut asked = state.tx_rate_bps();
    let mut rate = paced_rate(asked, plan.wire_bytes);
    let mut size = batch_for(rate, plan.wire_bytes, len);
    let mut pacer = Pacer::new(rate, size * len_as_wire(plan.wire_bytes));
    let mut allowance = state.budget.allowance(Flow::Tx);
    while state.running() {
        let now_asked = state.tx_rate_bps();
        if now_asked != asked {
            asked = now_asked;
            rate = paced_rate(asked, plan.wire_bytes);
            size = batch_for(rate, plan.wire_bytes, len);
            pacer.set_rate(rate, size * len_as_wire(plan.wire_bytes));
        }
        pacer.wait();
        let mut done = 0;
        while done < size {
            if !state.running() {
                return StreamEnd::Stopped;
            }
            // Drawn per datagram before the send; what the kernel did not take is kept.
            let mut allowed = 0;
            while allowed < size - done && allowance.take(plan.wire_bytes) {
                allowed += 1;
            }
            if allowed == 0 {
                return StreamEnd::BudgetSpent;
            }
            let sent = tx.send(&sock, seq, allowed);
            let unsent = allowed - sent.as_ref().map_or(0, |n| (*n).min(allowed));
            allowance.give_back(plan.wire_bytes * unsent as u64);
            match sent {
                Ok(n) => {
                    seq = seq.wrapping_add(n as u32);
                    done += n;
                    counters.add_tx(plan.wire_bytes * n as u64);
                    counters.add_tx_packets(n as u64);
                }
                Err(e) if is_transient_send_error(&e) => std::thread::sleep(SEND_BACKOFF),
                Err(e) => return classify(&e, state),
            }
        }
    }
    StreamEnd::Stopped
}

fn len_as_wire(wire_bytes: u64) -> usize {
    usize::try_from(wire_bytes).unwrap_or(usize::MAX)
}

/// Maps a datagram's source port to a stream.
struct Router {
    demux: Demux,
    /// Source port each stream has been seen from (0: none yet).
    ports: Vec<u16>,
}

impl Router {
    fn new(demux: Demux, streams: usize) -> Router {
        Router {
            demux,
            ports: vec![0; streams],
        }
    }

    /// The stream a datagram from `port` belongs to. The expected port `base + i` maps to
    /// stream `i`; a port outside that range (a NAT rewrote it) claims the first stream that
    /// has not been heard from, and keeps it; when none is left the datagram is a stranger's.
    fn route(&mut self, port: u16) -> Option<usize> {
        let Demux::ByPort { base } = self.demux else {
            return Some(0);
        };
        let n = self.ports.len();
        let offset = usize::from(port.wrapping_sub(base));
        if offset < n {
            if let Some(p) = self.ports.get_mut(offset) {
                *p = port;
            }
            return Some(offset);
        }
        if let Some(i) = self.ports.iter().position(|&p| p == port) {
            return Some(i);
        }
        let free = self.ports.iter().position(|&p| p == 0)?;
        if let Some(p) = self.ports.get_mut(free) {
            *p = port;
        }
        Some(free)
    }
}

/// Receives datagrams until the test stops, counting bytes as whole IP packets and loss,
/// reordering and duplicates per stream from the sequence numbers.
///
/// A silent data path does not end the test: the control connection decides whether the peer
/// is still there (a receive test through a broken path should report 100 % loss, not stop).
pub fn receive_loop(
    sock: UdpSocket,
    state: &TestState,
    streams: Vec<Arc<StreamCounters>>,
    plan: UdpReceivePlan,
) -> StreamEnd {
    if streams.is_empty() {
        return StreamEnd::Stopped;
    }
    let mut router = Router::new(plan.demux, streams.len());
    // Shared with the session driver, which settles each interval's loss (see rx_loss).
    let group = RxGroup::new(streams, plan.totals.clone());
    state.add_interval_loss(group.clone());
    let mut rx = batch::RxBatch::new();
    let overhead = crate::proto::udp::wire_bytes(0, plan.ipv6);
    let peer_ip = normalize(plan.peer_ip);
    let mut strangers = 0u64;
    let mut allowance = state.budget.allowance(Flow::Rx);
    let mut spent = false;
    let mut receiving = false;
    let end = loop {
        if !state.running() {
            break StreamEnd::Stopped;
        }
        match rx.recv(&sock) {
            Ok(count) => {
                let mut rx_streams = group.lock();
                for k in 0..count {
                    let Some((src, len, head)) = rx.get(k) else {
                        continue;
                    };
                    let Some(seq) = read_seq(head) else {
                        // Shorter than a sequence number: a NAT probe or a neighbour-discovery
                        // primer, not data.
                        continue;
                    };
                    if normalize(src.ip()) != peer_ip {
                        strangers += 1;
                        continue;
                    }
                    let Some(s) = router.route(src.port()).and_then(|i| rx_streams.get_mut(i))
                    else {
                        strangers += 1;
                        continue;
                    };
                    // Counted only if drawn; the rest of the batch is dropped uncounted.
                    if !allowance.take(len as u64 + overhead) {
                        spent = true;
                        break;
                    }
                    s.tracker.record(seq);
                    s.bytes += len as u64 + overhead;
                    s.packets += 1;
                    receiving = true;
                }
                for s in rx_streams.iter_mut() {
                    if s.packets > 0 {
                        s.flush(group.totals());
                        // The peer's data is a sign of life for the control reader.
                        state.note_data();
                    }
                }
                drop(rx_streams);
                if receiving {
                    // The receive clock starts with the first data datagram.
                    state.note_rx_start();
                }
                if spent {
                    break StreamEnd::BudgetSpent;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => break classify(&e, state),
        }
    };
    // Every number still missing up to the highest seen is lost now: the test is over.
    group.finish();
    plan.strangers.fetch_add(strangers, Ordering::Relaxed);
    end
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Reads the peer's status messages on the control connection of a UDP test and feeds them to
/// the state (CPU, and the 1.5x rule where our rate is unlimited). This thread is the session's
/// primary stream: the control connection governs the data, so its end-of-file, an error on it,
/// or a silence past [`silence_limit`] ends the whole test and frees its port.
///
/// Liveness is deliberately looser than acceptance: every well-formed status counts, even one
/// whose seq repeats or is not believed (RouterOS may repeat a seq), and so does data arriving.
pub fn control_reader(mut control: TcpStream, state: &TestState) -> StreamEnd {
    if let Err(e) = control.set_read_timeout(Some(RECV_TIMEOUT)) {
        return classify(&e, state);
    }
    let mut buf = [0u8; 512];
    let mut scanner = StatusScanner::new();
    let mut last_alive = Instant::now();
    let mut last_status: Option<Instant> = None;
    let mut longest_gap = Duration::ZERO;
    while state.running() {
        match control.read(&mut buf) {
            Ok(0) => {
                return if state.running() {
                    StreamEnd::PeerClosed
                } else {
                    StreamEnd::Stopped
                };
            }
            Ok(n) => {
                let mut seen = false;
                scanner.feed(buf.get(..n).unwrap_or_default(), |msg| {
                    seen = true;
                    state.on_remote_status(msg);
                });
                if seen {
                    let now = Instant::now();
                    if let Some(prev) = last_status {
                        longest_gap = longest_gap.max(now - prev);
                    }
                    last_status = Some(now);
                    last_alive = now;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return classify(&e, state),
        }
        if state.take_data_seen() {
            last_alive = Instant::now();
        }
        if last_alive.elapsed() >= silence_limit(longest_gap) {
            return if state.running() {
                StreamEnd::Stalled
            } else {
                StreamEnd::Stopped
            };
        }
    }
    StreamEnd::Stopped
}

#[cfg(target_os = "linux")]
mod batch {
    //! `sendmmsg` / `recvmmsg` batches. The message headers point into buffers owned by the
    //! same struct; those live on the heap and are never resized, so the pointers stay valid
    //! when the struct moves. A batch's slots lie back to back in one buffer, which is also the
    //! layout segmentation offload (`UDP_SEGMENT`) sends in one go; that is tried first and
    //! dropped for `sendmmsg` when the kernel refuses it.

    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    use super::{BATCH, RECV_SLOT};

    /// Fewest datagrams worth one segmentation-offload send. Smaller batches (paced below
    /// about 100 Mbit/s at 1500 bytes) cost few system calls anyway, and sending them as
    /// separate packets keeps them separate inside this host too: a train stays one packet
    /// through veth pairs and namespaces, where a per-packet filter or counter would drop or
    /// count it as one (a physical NIC or the stack cuts it before the wire either way).
    const GSO_MIN_SEGMENTS: usize = 16;
    use crate::proto::udp::write_seq;
    use crate::sys::udp_gso;

    fn to_raw(addr: SocketAddr) -> (Box<libc::sockaddr_storage>, libc::socklen_t) {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let mut storage: Box<libc::sockaddr_storage> = Box::new(unsafe { zeroed() });
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
                unsafe {
                    std::ptr::write(
                        (&mut *storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>(),
                        sin,
                    );
                }
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
                unsafe {
                    std::ptr::write(
                        (&mut *storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>(),
                        sin6,
                    );
                }
                size_of::<libc::sockaddr_in6>()
            }
        };
        (storage, len as libc::socklen_t)
    }

    fn from_raw(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in when the family is AF_INET.
                let sin = unsafe {
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
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

    /// Up to [`BATCH`] datagrams of `len` bytes, each with its own copy of the payload so that
    /// each can carry its own sequence number.
    pub struct TxBatch {
        buf: Vec<u8>,
        len: usize,
        _iov: Vec<libc::iovec>,
        hdr: Vec<libc::mmsghdr>,
        dest: Box<libc::sockaddr_storage>,
        dest_len: libc::socklen_t,
        /// Slots one segmentation-offload send carries; 0 once the kernel has refused it
        /// (then every batch goes by `sendmmsg`).
        gso_segments: usize,
    }

    impl TxBatch {
        /// `buf` holds the payload of every slot back to back (`len` bytes each).
        pub fn new(mut buf: Vec<u8>, len: usize, dest: SocketAddr) -> TxBatch {
            let slots = (buf.len() / len.max(1)).clamp(1, BATCH);
            if buf.len() < slots * len {
                buf.resize(slots * len, 0);
            }
            let (mut dest_raw, dest_len) = to_raw(dest);
            let base = buf.as_mut_ptr();
            let mut iov: Vec<libc::iovec> = (0..slots)
                .map(|k| libc::iovec {
                    // SAFETY: k * len + len <= buf.len(), so the pointer stays in the buffer.
                    iov_base: unsafe { base.add(k * len) }.cast(),
                    iov_len: len,
                })
                .collect();
            let name: *mut libc::sockaddr_storage = &mut *dest_raw;
            let iov_base = iov.as_mut_ptr();
            let hdr = (0..slots)
                .map(|k| {
                    // SAFETY: msghdr is plain old data; zero is valid for the fields we leave.
                    let mut m: libc::mmsghdr = unsafe { zeroed() };
                    m.msg_hdr.msg_name = name.cast();
                    m.msg_hdr.msg_namelen = dest_len;
                    // SAFETY: k < slots == iov.len().
                    m.msg_hdr.msg_iov = unsafe { iov_base.add(k) };
                    m.msg_hdr.msg_iovlen = 1;
                    m
                })
                .collect();
            let gso_segments = match u16::try_from(len) {
                Ok(_) => udp_gso::segments_per_send(len).min(slots),
                Err(_) => 0,
            };
            TxBatch {
                buf,
                len,
                _iov: iov,
                hdr,
                dest: dest_raw,
                dest_len,
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
            let data = self.buf.get(..n * self.len)?;
            let segment = u16::try_from(self.len).ok()?;
            match udp_gso::send_segments(sock.as_raw_fd(), data, segment, &self.dest, self.dest_len)
            {
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
        pub fn send(&mut self, sock: &UdpSocket, seq: u32, count: usize) -> io::Result<usize> {
            let count = count.clamp(1, self.hdr.len());
            for k in 0..count {
                if let Some(slot) = self.buf.get_mut(k * self.len..) {
                    write_seq(slot, seq.wrapping_add(k as u32));
                }
            }
            if let Some(sent) = self.send_gso(sock, count) {
                return sent;
            }
            // SAFETY: every header points at a live iovec, buffer slot and address owned by
            // self, and `count` does not exceed the number of headers.
            let rc = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    self.hdr.as_mut_ptr(),
                    count as libc::c_uint,
                    0,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(rc as usize)
        }
    }

    /// [`BATCH`] receive slots of [`RECV_SLOT`] bytes, with source addresses; or, when the
    /// kernel coalesces datagrams for us (`UDP_GRO`), whole buffers split back into datagrams.
    pub struct RxBatch {
        _iov: Vec<libc::iovec>,
        hdr: Vec<libc::mmsghdr>,
        addrs: Vec<libc::sockaddr_storage>,
        heads: Vec<[u8; RECV_SLOT]>,
        /// Set up on the first receive, when the socket accepts `UDP_GRO`.
        gro: Option<Box<udp_gso::GroBatch>>,
        gro_tried: bool,
    }

    impl RxBatch {
        pub fn new() -> RxBatch {
            let mut heads = vec![[0u8; RECV_SLOT]; BATCH];
            // SAFETY: sockaddr_storage is plain old data.
            let mut addrs: Vec<libc::sockaddr_storage> =
                (0..BATCH).map(|_| unsafe { zeroed() }).collect();
            let mut iov: Vec<libc::iovec> = heads
                .iter_mut()
                .map(|h| libc::iovec {
                    iov_base: h.as_mut_ptr().cast(),
                    iov_len: RECV_SLOT,
                })
                .collect();
            let iov_base = iov.as_mut_ptr();
            let addr_base = addrs.as_mut_ptr();
            let hdr = (0..BATCH)
                .map(|k| {
                    // SAFETY: plain old data.
                    let mut m: libc::mmsghdr = unsafe { zeroed() };
                    // SAFETY: k < BATCH == iov.len() == addrs.len().
                    m.msg_hdr.msg_iov = unsafe { iov_base.add(k) };
                    m.msg_hdr.msg_iovlen = 1;
                    m.msg_hdr.msg_name = unsafe { addr_base.add(k) }.cast();
                    m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                    m
                })
                .collect();
            RxBatch {
                _iov: iov,
                hdr,
                addrs,
                heads,
                gro: None,
                gro_tried: false,
            }
        }

        /// Waits (up to the socket's receive timeout) for at least one datagram and takes every
        /// one already queued, up to [`BATCH`].
        pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
            if !self.gro_tried {
                self.gro_tried = true;
                if udp_gso::enable_gro(sock.as_raw_fd()) {
                    self.gro = Some(Box::default());
                }
            }
            if let Some(gro) = self.gro.as_mut() {
                return gro.recv(sock.as_raw_fd());
            }
            for m in &mut self.hdr {
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                m.msg_hdr.msg_flags = 0;
                m.msg_len = 0;
            }
            // SAFETY: every header points at live slots and addresses owned by self.
            let rc = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    self.hdr.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    // glibc declares the flags `int`, musl `unsigned int`.
                    (libc::MSG_WAITFORONE | libc::MSG_TRUNC) as _,
                    std::ptr::null_mut(),
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(rc as usize)
        }

        /// Source, full length and the copied head of datagram `k` of the last batch.
        pub fn get(&self, k: usize) -> Option<(SocketAddr, usize, &[u8])> {
            if let Some(gro) = self.gro.as_ref() {
                let (addr, len, data) = gro.get(k)?;
                return Some((from_raw(addr)?, len, data.get(..len.min(RECV_SLOT))?));
            }
            let m = self.hdr.get(k)?;
            let src = from_raw(self.addrs.get(k)?)?;
            let len = m.msg_len as usize;
            let head = self.heads.get(k)?.get(..len.min(RECV_SLOT))?;
            Some((src, len, head))
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod batch {
    //! One datagram per system call, for systems without `sendmmsg` / `recvmmsg`.

    use std::io;
    use std::net::{SocketAddr, UdpSocket};

    use crate::proto::udp::write_seq;

    /// One datagram buffer and its destination.
    pub struct TxBatch {
        buf: Vec<u8>,
        len: usize,
        dest: SocketAddr,
    }

    impl TxBatch {
        pub fn new(buf: Vec<u8>, len: usize, dest: SocketAddr) -> TxBatch {
            TxBatch { buf, len, dest }
        }

        /// Sends one datagram numbered `seq`.
        pub fn send(&mut self, sock: &UdpSocket, seq: u32, _count: usize) -> io::Result<usize> {
            let Some(slot) = self.buf.get_mut(..self.len) else {
                return Err(io::Error::other("payload buffer too short"));
            };
            write_seq(slot, seq);
            sock.send_to(slot, self.dest)?;
            Ok(1)
        }
    }

    /// One full-size receive buffer.
    pub struct RxBatch {
        buf: Vec<u8>,
        last: Option<(SocketAddr, usize)>,
    }

    impl RxBatch {
        pub fn new() -> RxBatch {
            RxBatch {
                buf: vec![0u8; 65536],
                last: None,
            }
        }

        pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
            let (n, src) = sock.recv_from(&mut self.buf)?;
            self.last = Some((src, n));
            Ok(1)
        }

        pub fn get(&self, k: usize) -> Option<(SocketAddr, usize, &[u8])> {
            if k != 0 {
                return None;
            }
            let (src, n) = self.last?;
            Some((src, n, self.buf.get(..n)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_limit_is_15_s_or_three_status_gaps() {
        assert_eq!(silence_limit(Duration::ZERO), Duration::from_secs(15));
        assert_eq!(
            silence_limit(Duration::from_secs(5)),
            Duration::from_secs(15)
        );
        assert_eq!(
            silence_limit(Duration::from_secs(7)),
            Duration::from_secs(21)
        );
        assert_eq!(silence_limit(Duration::from_secs(600)), MAX_CONTROL_SILENCE);
    }

    #[test]
    fn data_is_a_sign_of_life_taken_once() {
        let state = TestState::new(0);
        assert!(!state.take_data_seen());
        state.note_data();
        state.note_data();
        assert!(state.take_data_seen());
        assert!(!state.take_data_seen());
    }

    #[test]
    fn batch_is_a_millisecond_of_traffic() {
        assert_eq!(batch_for(0, 1500, 1472), BATCH);
        assert_eq!(batch_for(1_000_000, 1500, 1472), 1);
        assert_eq!(batch_for(120_000_000, 1500, 1472), 10);
        assert_eq!(batch_for(10_000_000_000, 1500, 1472), BATCH);
        assert_eq!(batch_for(0, 64000, 63972), 4);
    }

    #[test]
    fn slow_rates_clamp_to_one_datagram_a_second() {
        assert_eq!(paced_rate(24_000, 1500), 24_000);
        assert_eq!(paced_rate(1_000, 1500), 12_000);
        assert_eq!(paced_rate(0, 1500), 0);
    }

    /// Crafted sequence numbers through real loopback sockets: loss, reordering, duplicates
    /// and strangers land in the right counters, and bytes count as whole IPv4 packets.
    #[test]
    fn receiver_accounts_exactly() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        prepare_socket(&rx).unwrap();
        let to = rx.local_addr().unwrap();
        let state = TestState::new(0);
        let counters = state.add_stream(false);
        let totals = Arc::new(UdpTotals::default());
        let strangers = Arc::new(AtomicU64::new(0));
        let plan = UdpReceivePlan {
            peer_ip: "127.0.0.1".parse().unwrap(),
            ipv6: false,
            demux: Demux::Single,
            strangers: strangers.clone(),
            totals: totals.clone(),
        };
        let (st, c) = (state.clone(), counters.clone());
        let sock = rx.try_clone().unwrap();
        let thread = std::thread::spawn(move || receive_loop(sock, &st, vec![c], plan));
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut d = [0u8; 100];
        for seq in [0u32, 1, 3, 2, 2, 5] {
            crate::proto::udp::write_seq(&mut d, seq);
            tx.send_to(&d, to).unwrap();
        }
        tx.send_to(&[], to).unwrap(); // a NAT probe: not data
        std::thread::sleep(Duration::from_millis(200));
        state.stop();
        let _ = thread.join();
        let snap = counters.take();
        assert_eq!(snap.rx_packets, 6);
        assert_eq!(snap.rx_bytes, 6 * 128);
        assert_eq!((snap.lost, snap.reordered, snap.duplicates), (1, 1, 1));
        assert_eq!(totals.received.load(Ordering::Relaxed), 6);
        assert_eq!(strangers.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn router_maps_ports_and_claims_rewritten_ones() {
        let mut r = Router::new(Demux::ByPort { base: 3000 }, 3);
        assert_eq!(r.route(3001), Some(1));
        assert_eq!(r.route(40000), Some(0));
        assert_eq!(r.route(40000), Some(0));
        assert_eq!(r.route(40001), Some(2));
        assert_eq!(r.route(40002), None);
        let mut single = Router::new(Demux::Single, 1);
        assert_eq!(single.route(9), Some(0));
    }
}
