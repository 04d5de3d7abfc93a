//! The state one test shares between its threads: atomics updated per packet with `Relaxed`,
//! swapped out once per interval by the session driver.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;

use super::budget::BudgetSlot;
use super::rx_loss::IntervalLoss;
use super::seq_gate::{SeqGate, Verdict};
use crate::proto::status::{STATUS_LEN, StatusMessage};

/// Highest status sequence number we believe. A message "found" in random TCP payload has a
/// uniformly random seq; real peers count up from 1 once a second, so a test would need 12 days
/// to get here.
pub(crate) const MAX_PLAUSIBLE_STATUS_SEQ: u32 = 1_080_000;

/// Marker for "the peer's CPU load is unknown".
const CPU_UNKNOWN: u8 = u8::MAX;

/// Byte and packet counters of one stream (a TCP connection or a UDP flow), per interval.
#[derive(Debug, Default)]
pub(crate) struct StreamCounters {
    tx: AtomicU64,
    rx: AtomicU64,
    tx_packets: AtomicU64,
    rx_packets: AtomicU64,
    lost: AtomicU64,
    reordered: AtomicU64,
    duplicates: AtomicU64,
}

/// What [`StreamCounters::take`] hands the driver once per interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamSnapshot {
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Datagrams sent (UDP).
    pub tx_packets: u64,
    /// Datagrams received (UDP).
    pub rx_packets: u64,
    /// Datagrams lost (UDP).
    pub lost: u64,
    /// Datagrams that arrived after a higher sequence number (UDP; not lost).
    pub reordered: u64,
    /// Datagrams that arrived more than once (UDP).
    pub duplicates: u64,
}

impl StreamCounters {
    /// Counts bytes sent.
    #[inline]
    pub(crate) fn add_tx(&self, bytes: u64) {
        self.tx.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts bytes received.
    #[inline]
    pub(crate) fn add_rx(&self, bytes: u64) {
        self.rx.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts datagrams sent.
    #[inline]
    pub(crate) fn add_tx_packets(&self, n: u64) {
        self.tx_packets.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts datagrams received.
    #[inline]
    pub(crate) fn add_rx_packets(&self, n: u64) {
        self.rx_packets.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts datagrams lost.
    #[inline]
    pub(crate) fn add_lost(&self, n: u64) {
        self.lost.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts datagrams that arrived out of order.
    #[inline]
    pub(crate) fn add_reordered(&self, n: u64) {
        self.reordered.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts datagrams that arrived twice.
    #[inline]
    pub(crate) fn add_duplicates(&self, n: u64) {
        self.duplicates.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes the datagrams lost since the last take.
    pub(crate) fn take_lost(&self) -> u64 {
        self.lost.swap(0, Ordering::Relaxed)
    }

    /// Swaps every counter to zero and returns what it held, so each byte is reported in
    /// exactly one interval.
    pub(crate) fn take(&self) -> StreamSnapshot {
        StreamSnapshot {
            tx_bytes: self.tx.swap(0, Ordering::Relaxed),
            rx_bytes: self.rx.swap(0, Ordering::Relaxed),
            tx_packets: self.tx_packets.swap(0, Ordering::Relaxed),
            rx_packets: self.rx_packets.swap(0, Ordering::Relaxed),
            lost: self.lost.swap(0, Ordering::Relaxed),
            reordered: self.reordered.swap(0, Ordering::Relaxed),
            duplicates: self.duplicates.swap(0, Ordering::Relaxed),
        }
    }
}

/// A status message waiting for the transmitting thread to put it between two data writes.
#[derive(Debug, Default)]
pub(crate) struct StatusSlot {
    pending: AtomicBool,
    message: Mutex<[u8; STATUS_LEN]>,
}

impl StatusSlot {
    /// Leaves a message for the transmitter (replacing one not yet sent).
    pub(crate) fn put(&self, msg: &StatusMessage) {
        let mut message = self.message.lock();
        *message = msg.encode();
        self.pending.store(true, Ordering::Release);
    }

    /// Takes the pending message, if any: one relaxed load when there is none.
    #[inline]
    pub(crate) fn take(&self) -> Option<[u8; STATUS_LEN]> {
        if !self.pending.load(Ordering::Relaxed) {
            return None;
        }
        // Flag and message change together under the lock (see `put`), so a message put while
        // this one is taken is neither lost nor sent twice.
        let message = self.message.lock();
        self.pending.store(false, Ordering::Relaxed);
        Some(*message)
    }
}

/// How a test's TCP connections are wound up once it stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum EndMode {
    /// We ended the test (duration, signal, a policy or budget stop, a stalled or failed
    /// stream): the connections are reset, which tells the peer at once and discards what is
    /// still queued for it. Only acknowledged bytes were reported (and charged) as sent, so
    /// nothing that counted is lost, and nothing uncounted reaches the peer after the end.
    Abort = 0,
    /// The peer ended the test: what it sent before its end is still arriving on the other
    /// connections. We shut for writing and read each connection to its end (or [`LINGER`]),
    /// counting those bytes, before the reset; what we still had queued is discarded as in
    /// `Abort`.
    ///
    /// [`LINGER`]: super::LINGER
    Collect = 1,
}

/// Everything the threads of one test share.
#[derive(Debug)]
pub(crate) struct TestState {
    running: AtomicBool,
    /// How the TCP readers finish once the test stops (an [`EndMode`] as a byte).
    end_mode: AtomicU8,
    streams: Mutex<Vec<Arc<StreamCounters>>>,
    /// Total transmit rate of the test in bit/s (0 = unpaced), shared by the senders.
    tx_total_bps: AtomicU64,
    /// Apply the peer's reports to our rate (the 1.5x rule): only when no rate was asked for.
    feedback: bool,
    tx_streams: AtomicUsize,
    remote_cpu: AtomicU8,
    /// Which status sequence numbers to believe (see [`SeqGate`]); taken once per message.
    remote_seq: Mutex<SeqGate>,
    /// Set by UDP receivers when data arrives; the control reader takes it as a sign of life.
    data_seen: AtomicBool,
    /// Sum of the byte counts in every status message the peer sent: its view of our sending.
    remote_bytes_total: AtomicU64,
    remote_reports: AtomicU64,
    /// Status for the primary connection's transmitter to insert (TCP, server sending).
    pub status_slot: StatusSlot,
    /// The byte budget streams draw from (see [`super::budget`]); unset means unlimited.
    pub budget: BudgetSlot,
    /// UDP receivers whose loss the driver settles per interval.
    interval_loss: Mutex<Vec<Arc<dyn IntervalLoss>>>,
    /// When the first data datagram arrived (UDP): the start of the receive clock.
    rx_started: OnceLock<Instant>,
}

impl TestState {
    /// State for a test whose total transmit rate is `tx_rate_bps` (0 = unlimited, in which case
    /// the peer's status reports pace us).
    pub(crate) fn new(tx_rate_bps: u64) -> Arc<TestState> {
        Arc::new(TestState {
            running: AtomicBool::new(true),
            end_mode: AtomicU8::new(EndMode::Abort as u8),
            streams: Mutex::new(Vec::new()),
            tx_total_bps: AtomicU64::new(tx_rate_bps),
            feedback: tx_rate_bps == 0,
            tx_streams: AtomicUsize::new(0),
            remote_cpu: AtomicU8::new(CPU_UNKNOWN),
            remote_seq: Mutex::new(SeqGate::default()),
            data_seen: AtomicBool::new(false),
            remote_bytes_total: AtomicU64::new(0),
            remote_reports: AtomicU64::new(0),
            status_slot: StatusSlot::default(),
            budget: BudgetSlot::default(),
            interval_loss: Mutex::new(Vec::new()),
            rx_started: OnceLock::new(),
        })
    }

    /// True until the test is stopped; every loop checks it after each blocking call.
    #[inline]
    pub(crate) fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Stops the test; loops notice within one socket timeout (or at once when their socket is
    /// shut down).
    pub(crate) fn stop(&self) {
        self.running.store(false, Ordering::Relaxed);
    }

    /// Sets how the TCP readers finish, before [`TestState::stop`].
    pub(crate) fn set_end_mode(&self, mode: EndMode) {
        self.end_mode.store(mode as u8, Ordering::Relaxed);
    }

    /// How the TCP readers finish once the test has stopped.
    pub(crate) fn end_mode(&self) -> EndMode {
        match self.end_mode.load(Ordering::Relaxed) {
            x if x == EndMode::Collect as u8 => EndMode::Collect,
            _ => EndMode::Abort,
        }
    }

    /// Registers a new stream and returns its counters.
    pub(crate) fn add_stream(&self, transmits: bool) -> Arc<StreamCounters> {
        let counters = Arc::new(StreamCounters::default());
        self.streams.lock().push(counters.clone());
        if transmits {
            self.tx_streams.fetch_add(1, Ordering::Relaxed);
        }
        counters
    }

    /// Number of streams registered so far: the position the next one's counters get.
    pub(crate) fn stream_count(&self) -> usize {
        self.streams.lock().len()
    }

    /// Snapshot of every stream's interval counters, in registration order.
    pub(crate) fn take_streams(&self, out: &mut Vec<StreamSnapshot>) {
        out.clear();
        out.extend(self.streams.lock().iter().map(|s| s.take()));
    }

    /// Registers a receiver whose loss is settled per interval (see `rx_loss`).
    pub(crate) fn add_interval_loss(&self, loss: Arc<dyn IntervalLoss>) {
        self.interval_loss.lock().push(loss);
    }

    /// True when some receiver's loss is settled per interval: the driver then holds each
    /// interval back for a reorder window.
    pub(crate) fn settles_loss(&self) -> bool {
        !self.interval_loss.lock().is_empty()
    }

    /// The interval ends now: every receiver remembers where its sequences stand.
    pub(crate) fn mark_interval_end(&self) {
        for l in self.interval_loss.lock().iter() {
            l.mark_interval_end();
        }
    }

    /// The reorder window after the last mark has passed: receivers declare what is still
    /// missing, and each stream's loss is added to `out` (in registration order).
    pub(crate) fn settle_loss(&self, out: &mut [StreamSnapshot]) {
        for l in self.interval_loss.lock().iter() {
            l.settle();
        }
        for (s, snap) in self.streams.lock().iter().zip(out.iter_mut()) {
            snap.lost += s.take_lost();
        }
    }

    /// Starts the receive clock, unless it has started.
    pub(crate) fn note_rx_start(&self) {
        self.rx_started.get_or_init(Instant::now);
    }

    /// When the first data datagram arrived, if one has.
    pub(crate) fn rx_started(&self) -> Option<Instant> {
        self.rx_started.get().copied()
    }

    /// Current per-stream transmit rate in bit/s (0 = unpaced): the test's rate shared evenly
    /// by its transmitting streams.
    #[inline]
    pub(crate) fn tx_rate_bps(&self) -> u64 {
        let streams = self.tx_streams.load(Ordering::Relaxed).max(1) as u64;
        self.tx_total_bps.load(Ordering::Relaxed) / streams
    }

    /// Takes in a status message from the peer: its CPU load, and, when we are not held to a
    /// fixed rate, its received byte count for the 1.5x rule. Messages with an implausible
    /// sequence number, a repeated one, or one out of line that the next message does not
    /// confirm (false matches in random payload, see [`SeqGate`]) are ignored; returns whether
    /// this one was used.
    pub(crate) fn on_remote_status(&self, msg: StatusMessage) -> bool {
        if msg.seq == 0 || msg.seq > MAX_PLAUSIBLE_STATUS_SEQ {
            return false;
        }
        if self.remote_seq.lock().check(msg.seq) != Verdict::Accept {
            return false;
        }
        self.remote_cpu.store(msg.cpu, Ordering::Relaxed);
        self.remote_bytes_total
            .fetch_add(u64::from(msg.bytes_received), Ordering::Relaxed);
        self.remote_reports.fetch_add(1, Ordering::Relaxed);
        if self.feedback
            && let Some(total) = crate::proto::rate::adapted_rate_bps(msg.bytes_received)
        {
            self.tx_total_bps.store(total, Ordering::Relaxed);
        }
        true
    }

    /// Notes that data arrived (UDP receivers, once per batch): the peer is alive. A load
    /// first, so the cache line is written only when the flag was taken meanwhile.
    #[inline]
    pub(crate) fn note_data(&self) {
        if !self.data_seen.load(Ordering::Relaxed) {
            self.data_seen.store(true, Ordering::Relaxed);
        }
    }

    /// True when data arrived since the last call.
    pub(crate) fn take_data_seen(&self) -> bool {
        self.data_seen.swap(false, Ordering::Relaxed)
    }

    /// The peer's last reported CPU load.
    pub(crate) fn remote_cpu(&self) -> Option<u8> {
        match self.remote_cpu.load(Ordering::Relaxed) {
            CPU_UNKNOWN => None,
            cpu => Some(cpu),
        }
    }

    /// How many of the peer's status messages were taken in.
    pub(crate) fn remote_reports(&self) -> u64 {
        self.remote_reports.load(Ordering::Relaxed)
    }

    /// What the peer said it received over the whole test (the sum of its reports); `None`
    /// when it sent none. The peer reports once a second, so bytes it received after its last
    /// report are not in this.
    pub(crate) fn remote_received_total(&self) -> Option<u64> {
        (self.remote_reports.load(Ordering::Relaxed) > 0)
            .then(|| self.remote_bytes_total.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_taken_once() {
        let state = TestState::new(0);
        let a = state.add_stream(true);
        let b = state.add_stream(false);
        a.add_tx(100);
        b.add_rx(50);
        let mut snap = Vec::new();
        state.take_streams(&mut snap);
        assert_eq!(snap[0].tx_bytes, 100);
        assert_eq!(snap[1].rx_bytes, 50);
        state.take_streams(&mut snap);
        assert_eq!(snap[0].tx_bytes + snap[1].rx_bytes, 0);
    }

    #[test]
    fn feedback_only_when_unlimited() {
        let free = TestState::new(0);
        free.add_stream(true);
        let msg = StatusMessage {
            cpu: 5,
            seq: 1,
            bytes_received: 1000,
        };
        assert_eq!(free.remote_received_total(), None);
        assert!(free.on_remote_status(msg));
        assert!(free.on_remote_status(StatusMessage { seq: 2, ..msg }));
        assert_eq!(free.remote_received_total(), Some(2000));
        assert_eq!(free.tx_rate_bps(), 12_000);
        assert_eq!(free.remote_cpu(), Some(5));

        let fixed = TestState::new(1_000_000);
        fixed.add_stream(true);
        fixed.on_remote_status(msg);
        assert_eq!(fixed.tx_rate_bps(), 1_000_000);
    }

    #[test]
    fn fixed_rate_is_shared_by_streams() {
        let s = TestState::new(900);
        s.add_stream(true);
        s.add_stream(true);
        s.add_stream(false);
        s.add_stream(true);
        assert_eq!(s.tx_rate_bps(), 300);
    }

    #[test]
    fn implausible_status_is_ignored() {
        let s = TestState::new(0);
        let mut m = StatusMessage {
            cpu: 1,
            seq: 2,
            bytes_received: 10,
        };
        assert!(s.on_remote_status(m));
        assert!(!s.on_remote_status(m), "repeated seq");
        m.seq = MAX_PLAUSIBLE_STATUS_SEQ + 1;
        assert!(!s.on_remote_status(m));
    }

    #[test]
    fn a_false_match_never_latches() {
        let s = TestState::new(0);
        s.add_stream(true);
        let real = |seq, cpu| StatusMessage {
            cpu,
            seq,
            bytes_received: 1000,
        };
        assert!(s.on_remote_status(real(1, 10)));
        assert!(s.on_remote_status(real(2, 10)));
        let false_match = StatusMessage {
            cpu: 99,
            seq: 1_000_000,
            bytes_received: 0x7fff_ffff,
        };
        assert!(!s.on_remote_status(false_match));
        assert_eq!(s.remote_cpu(), Some(10));
        assert_eq!(s.tx_rate_bps(), 12_000, "the random byte count is not used");
        assert!(s.on_remote_status(real(3, 20)));
        assert!(s.on_remote_status(real(4, 30)));
        assert_eq!(s.remote_cpu(), Some(30));
        assert_eq!(s.remote_reports(), 4);
        assert_eq!(s.remote_received_total(), Some(4000));
    }
}
