//! TCP data loops: one sender and one receiver per connection.
//!
//! Per write or read the loops do the socket call, one relaxed atomic add, and (sender) one
//! `Instant::now()` when paced; buffers are allocated once per stream.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::budget::{Allowance, Flow};
use super::pacing::{Pacer, unit_for_rate};
use super::session::StreamEnd;
use super::state::{EndMode, StreamCounters, TestState};
use super::{IDLE_LIMIT, LINGER, RECV_TIMEOUT, SEND_TIMEOUT};
use crate::proto::{Payload, StatusScanner};

/// Size of unpaced writes: large writes mean fewer system calls per gigabyte.
pub(crate) const UNPACED_WRITE: usize = 128 * 1024;
/// Size of the receive buffer.
pub(crate) const READ_BUFFER: usize = 128 * 1024;

/// How a sender fills and sizes its writes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SendPlan {
    /// Largest paced write (the command's `tx_size`).
    pub tx_size: usize,
    /// Zeros or random bytes.
    pub payload: Payload,
    /// This connection carries the status messages the session driver leaves in the slot.
    pub inject_status: bool,
}

/// What a receiver does with the bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReceivePlan {
    /// Count received bytes as test data (false on a connection that only carries status).
    pub count: bool,
    /// Look for the peer's status messages in the stream.
    pub scan_status: bool,
    /// Treat the peer as gone after [`IDLE_LIMIT`] without a byte.
    pub expect_data: bool,
}

/// A buffer of `len` bytes: zeros, or random bytes drawn once (RouterOS `random-data`).
pub(crate) fn payload_buffer(len: usize, payload: Payload) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    if payload == Payload::Random {
        crate::sys::random::fill_or_abort(&mut buf);
    }
    buf
}

/// Maps a socket error to why the stream ended.
pub(crate) fn classify(err: &io::Error, state: &TestState) -> StreamEnd {
    if !state.running() {
        return StreamEnd::Stopped;
    }
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => StreamEnd::Stalled,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => StreamEnd::PeerClosed,
        _ => StreamEnd::Error(err.kind()),
    }
}

/// Sends data until the test stops or the socket fails.
pub(crate) fn send_loop(
    mut stream: TcpStream,
    state: &TestState,
    counters: &StreamCounters,
    plan: SendPlan,
) -> StreamEnd {
    let mut rate = state.tx_rate_bps();
    let buf = payload_buffer(UNPACED_WRITE.max(plan.tx_size), plan.payload);
    // A sender that starts unlimited is later paced only by the 1.5x rule, which keeps it
    // half again above what the peer takes: it writes as large as an unpaced one (writing
    // `tx_size`, 32 KiB, there made up to four times the system calls per gigabyte). A rate
    // the user asked for keeps `tx_size` units so that it stays smooth.
    let max_paced = if rate == 0 {
        buf.len()
    } else {
        plan.tx_size.max(1)
    };
    let unit_for = |rate: u64| {
        if rate == 0 {
            buf.len()
        } else {
            unit_for_rate(rate, max_paced)
        }
    };
    let mut unit = unit_for(rate);
    let mut pacer = Pacer::new(rate, unit);
    let mut progress = Progress::new(&stream);
    let mut allowance = state.budget.allowance(Flow::Tx);
    while state.running() {
        if plan.inject_status
            && let Some(msg) = state.status_slot.take()
            && let Err(e) = stream.write_all(&msg)
        {
            return classify(&e, state);
        }
        let now_rate = state.tx_rate_bps();
        if now_rate != rate {
            rate = now_rate;
            unit = unit_for(rate);
            pacer.set_rate(rate, unit);
        }
        pacer.wait();
        let unit = allowance.grant(unit);
        if unit == 0 {
            return StreamEnd::BudgetSpent;
        }
        match stream.write(buf.get(..unit).unwrap_or(&buf)) {
            Ok(0) => return StreamEnd::PeerClosed,
            Ok(n) => {
                allowance.spend(n);
                counters.add_tx(n as u64);
                progress.sent(n);
                // A write the kernel cut short has blocked: is the peer still reading?
                if n < unit && progress.stalled() {
                    return StreamEnd::Stalled;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return classify(&e, state),
        }
    }
    StreamEnd::Stopped
}

/// Bytes the peer must take per [`SEND_TIMEOUT`] for a sender to count as moving.
///
/// A peer that stops reading does not always make a blocked write time out: the kernel keeps
/// growing the send buffer and taking more bytes now and then, and each such partial write
/// restarts the socket's send timeout (on loopback a never-reading peer kept a session alive
/// for over 30 s that way). So progress is what the peer acknowledged (written minus the
/// socket's unacknowledged bytes), looked at whenever a write comes back short: a sender whose
/// peer took less than this within the send timeout is stalled. 64 KiB per 10 s is 52 kbit/s,
/// below any link worth testing unpaced (paced senders write small units that never block).
pub(crate) const MIN_PROGRESS: u64 = 64 * 1024;

/// What the peer had taken at the last time it was seen moving.
struct Progress {
    fd: std::os::fd::RawFd,
    written: u64,
    mark: Instant,
    taken_at_mark: u64,
}

impl Progress {
    fn new(stream: &TcpStream) -> Progress {
        use std::os::fd::AsRawFd;
        Progress {
            fd: stream.as_raw_fd(),
            written: 0,
            mark: Instant::now(),
            taken_at_mark: 0,
        }
    }

    /// Counts a write; no clock, no system call.
    #[inline]
    fn sent(&mut self, n: usize) {
        self.written += n as u64;
    }

    /// After a short write: true when the peer has taken less than [`MIN_PROGRESS`] since the
    /// send timeout began.
    fn stalled(&mut self) -> bool {
        let unacked = crate::sys::sockopt::unacked_bytes(self.fd).unwrap_or(0);
        let taken = self.written.saturating_sub(unacked);
        if taken.saturating_sub(self.taken_at_mark) >= MIN_PROGRESS {
            self.mark = Instant::now();
            self.taken_at_mark = taken;
            return false;
        }
        self.mark.elapsed() >= SEND_TIMEOUT
    }
}

/// Receives until the peer closes, the test stops, or (when data is expected) the peer has
/// been silent for [`IDLE_LIMIT`].
pub(crate) fn receive_loop(
    stream: TcpStream,
    state: &TestState,
    counters: &StreamCounters,
    plan: ReceivePlan,
) -> StreamEnd {
    let reader = Reader {
        counters: plan.count.then_some(counters),
        scan_status: plan.scan_status,
        buffer: READ_BUFFER,
        liveness: IdleLimit {
            expect_data: plan.expect_data,
            idle: Duration::ZERO,
        },
    };
    reader.run(stream, state)
}

/// What one read of a TCP connection came to, for a [`Liveness`] to judge.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ReadEvent {
    /// Bytes arrived, among them this many well-formed status messages.
    Bytes { statuses: usize },
    /// The kernel's receive timeout passed without a byte.
    Waited,
    /// A signal cut the read short.
    Interrupted,
}

/// When a reader of a TCP connection gives up on a peer: the one thing a data connection and
/// the control connection of a UDP test read differently.
pub(crate) trait Liveness {
    /// Called after every read; `Some` ends the stream for that reason.
    fn after(&mut self, event: ReadEvent, state: &TestState) -> Option<StreamEnd>;
}

/// A data connection's rule: a peer expected to send that sends nothing for [`IDLE_LIMIT`] is
/// gone (counted in receive timeouts, so no clock is read per read).
struct IdleLimit {
    expect_data: bool,
    idle: Duration,
}

impl Liveness for IdleLimit {
    fn after(&mut self, event: ReadEvent, _state: &TestState) -> Option<StreamEnd> {
        match event {
            ReadEvent::Bytes { .. } => self.idle = Duration::ZERO,
            ReadEvent::Waited => {
                self.idle += RECV_TIMEOUT;
                if self.expect_data && self.idle >= IDLE_LIMIT {
                    return Some(StreamEnd::Stalled);
                }
            }
            ReadEvent::Interrupted => {}
        }
        None
    }
}

/// Reads a TCP connection until the peer closes, the test stops, the budget is spent or the
/// [`Liveness`] rule gives up; every TCP reader (data, or a UDP test's control) is one of these.
pub(crate) struct Reader<'a, L> {
    /// Where received bytes count as test data; `None` on a connection that only carries
    /// status (its bytes draw nothing from the budget either).
    pub counters: Option<&'a StreamCounters>,
    /// Look for the peer's status messages in the stream.
    pub scan_status: bool,
    /// Size of the read buffer, allocated once.
    pub buffer: usize,
    /// When to give up on a quiet peer.
    pub liveness: L,
}

impl<L: Liveness> Reader<'_, L> {
    /// Reads until the stream ends and says why.
    ///
    /// Once the test stops, the [`EndMode`] says whether the reader goes on to the peer's end
    /// of file (at most [`LINGER`]), counting what still arrives.
    pub(crate) fn run(mut self, mut stream: TcpStream, state: &TestState) -> StreamEnd {
        let mut buf = vec![0u8; self.buffer];
        let mut scanner = self.scan_status.then(StatusScanner::new);
        let mut allowance = match self.counters {
            Some(_) => state.budget.allowance(Flow::Rx),
            None => Allowance::unlimited(),
        };
        let mut drain_until: Option<Instant> = None;
        loop {
            match drain_until {
                None if state.running() => {}
                None => match state.end_mode() {
                    EndMode::Abort => return StreamEnd::Stopped,
                    EndMode::Collect => drain_until = Some(Instant::now() + LINGER),
                },
                Some(until) if Instant::now() >= until => return StreamEnd::Stopped,
                Some(_) => {}
            }
            let room = allowance.grant(buf.len());
            if room == 0 {
                return StreamEnd::BudgetSpent;
            }
            let event = match stream.read(buf.get_mut(..room).unwrap_or_default()) {
                Ok(0) if drain_until.is_some() || !state.running() => return StreamEnd::Stopped,
                Ok(0) => return StreamEnd::PeerClosed,
                Ok(n) => {
                    allowance.spend(n);
                    if let Some(counters) = self.counters {
                        counters.add_rx(n as u64);
                    }
                    let mut statuses = 0;
                    if let Some(scanner) = scanner.as_mut() {
                        scanner.feed(buf.get(..n).unwrap_or_default(), |msg| {
                            statuses += 1;
                            state.on_remote_status(msg);
                        });
                    }
                    ReadEvent::Bytes { statuses }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => ReadEvent::Interrupted,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if drain_until.is_some() {
                        return StreamEnd::Stopped;
                    }
                    ReadEvent::Waited
                }
                Err(e) => return classify(&e, state),
            };
            if let Some(end) = self.liveness.after(event, state) {
                return end;
            }
        }
    }
}

/// Makes the socket's last close a reset (see [`EndMode::Abort`]); a socket that refuses is
/// closed normally.
pub(super) fn abort_on_close(socket: &TcpStream) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let _ = crate::sys::sockopt::abort_on_close(socket.as_raw_fd());
    }
    #[cfg(not(unix))]
    let _ = socket;
}

/// Reads and drops what the peer still sends until it closes its side, or `deadline`.
///
/// Closing a socket that holds unread bytes makes the kernel reset the connection, and the
/// reset discards the data still queued for the peer: bytes a server counted (and a budget
/// charged) as sent would never arrive. A peer closes once our FIN reaches it, so this
/// normally returns within a round trip; a peer that never closes costs `deadline`.
pub(super) fn linger(socket: &TcpStream, deadline: Instant) {
    let mut sink = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*socket).read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
