//! What a test reports: each interval's figures, and at its end the totals and why it ended
//! (the whole test's, and each stream's).

use std::io;
use std::time::Duration;

use super::latency::TcpLatency;
use super::state::StreamSnapshot;

/// Why one stream (one thread) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The test was stopped on our side.
    Stopped,
    /// The peer closed or reset the connection.
    PeerClosed,
    /// The peer stopped reading or sending for longer than the timeout.
    Stalled,
    /// Another socket error.
    Error(io::ErrorKind),
    /// The thread panicked (a bug; logged where it happened).
    Panicked,
    /// The test's byte budget could not give this stream more (see [`super::budget`]).
    BudgetSpent,
}

/// Why the whole test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The requested duration elapsed.
    Duration,
    /// SIGINT or SIGTERM.
    Interrupted,
    /// The primary connection ended (peer closed, stalled or failed).
    Stream(StreamEnd),
    /// Asked to stop from outside (server shutdown).
    Stopped,
    /// Stopped by the server's policy (byte budget spent, time limit).
    Policy,
}

impl EndReason {
    /// True when the test ended the way the user asked (duration or interrupt).
    pub fn is_clean(self) -> bool {
        matches!(
            self,
            EndReason::Duration | EndReason::Interrupted | EndReason::Stopped
        )
    }

    /// A short description for logs.
    pub fn describe(self) -> String {
        match self {
            EndReason::Duration => "duration reached".into(),
            EndReason::Interrupted => "interrupted".into(),
            EndReason::Stopped => "stopped".into(),
            EndReason::Policy => "stopped by policy".into(),
            EndReason::Stream(StreamEnd::PeerClosed) => "peer closed the connection".into(),
            EndReason::Stream(StreamEnd::Stalled) => "peer stalled".into(),
            EndReason::Stream(StreamEnd::Stopped) => "stopped".into(),
            EndReason::Stream(StreamEnd::Panicked) => "internal error".into(),
            EndReason::Stream(StreamEnd::BudgetSpent) => "byte budget spent".into(),
            EndReason::Stream(StreamEnd::Error(kind)) => format!("socket error: {kind}"),
        }
    }
}

/// One interval's figures, handed to the reporter.
#[derive(Clone, Debug)]
pub struct Interval<'a> {
    /// 1 for the first interval.
    pub index: u32,
    /// Length of this interval (one second, except the last).
    pub duration: Duration,
    /// Bytes sent by all streams.
    pub tx_bytes: u64,
    /// Bytes received by all streams.
    pub rx_bytes: u64,
    /// Datagrams lost (UDP).
    pub lost: u64,
    /// Per-stream figures, in connection order.
    pub streams: &'a [StreamSnapshot],
    /// Our CPU load over the interval.
    pub local_cpu: Option<u8>,
    /// The peer's last reported CPU load.
    pub remote_cpu: Option<u8>,
    /// True for the partial interval that closes the test.
    pub last: bool,
    /// RTT and retransmissions of the TCP data connections (`TCP_INFO`), if any.
    pub tcp: Option<TcpLatency>,
}

impl Interval<'_> {
    /// Datagrams of this interval that arrived after a higher sequence number (UDP).
    pub fn reordered(&self) -> u64 {
        self.streams.iter().map(|s| s.reordered).sum()
    }

    /// Datagrams of this interval that arrived more than once (UDP).
    pub fn duplicates(&self) -> u64 {
        self.streams.iter().map(|s| s.duplicates).sum()
    }

    /// Datagrams received in this interval, all streams (UDP).
    pub fn rx_packets(&self) -> u64 {
        self.streams.iter().map(|s| s.rx_packets).sum()
    }
}

/// Totals of a finished test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Why it ended.
    pub reason: EndReason,
    /// From the start of data to the end.
    pub elapsed: Duration,
    /// The receive clock: from the first data datagram to the end in UDP tests (a server's
    /// session starts a round trip before the client's data arrives), else `elapsed`.
    pub rx_elapsed: Duration,
    /// Bytes sent, all streams.
    pub tx_bytes: u64,
    /// Bytes received, all streams.
    pub rx_bytes: u64,
    /// Datagrams lost (UDP).
    pub lost: u64,
    /// Bytes each stream sent and received over the whole test, in connection order.
    pub per_stream: Vec<(u64, u64)>,
    /// RTT min/avg/max over every sample and total retransmissions (TCP tests).
    pub tcp: Option<TcpLatency>,
    /// Bytes TCP senders wrote that the peer had not acknowledged when the test ended: left
    /// out of `tx_bytes`, since they had not crossed the link.
    pub unacknowledged: u64,
}
