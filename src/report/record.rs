//! One test as every sink sees it: the facts known at its start, what its intervals add up to
//! that the engine does not hand out (the measured time, the interval count, the CPU means),
//! and its end (the engine's [`Outcome`] with the connections used and the peer's reports).
//!
//! Client and server build the same [`TestRecord`] and hand it to the same sinks (text
//! summary, JSON, CSV, syslog, SVG), so two ends of a test, or two formats of one end, cannot
//! disagree. Byte totals are the engine's: the record never adds up bytes a second time.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::engine::{EndReason, Interval, Outcome};
use crate::report::text::bits_per_second;

/// Which figures a test has, so absent directions are `null` rather than zeros a reader might
/// take for a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sides {
    /// We transmit.
    pub tx: bool,
    /// We receive.
    pub rx: bool,
    /// UDP test: loss is counted.
    pub udp: bool,
}

/// The far end of the test, as the records name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    /// We are the client: the server as the user named it.
    Server(String),
    /// We are the server: the client's address.
    Client(SocketAddr),
}

impl fmt::Display for Peer {
    /// The server's name, or the client's address and port.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Server(name) => f.write_str(name),
            Peer::Client(addr) => write!(f, "{addr}"),
        }
    }
}

/// What the one-line records (the CSV row, the syslog end event) measure a test over. Each
/// end kept the clock its users' files were written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Span {
    /// The sum of the interval lengths, as the summary lines: the client's row says what it
    /// printed.
    Intervals,
    /// The session's clock, and for received bytes its receive clock: a server's UDP session
    /// starts a round trip before the client's data arrives.
    Session,
}

/// What is known when the test starts.
#[derive(Clone, Debug)]
pub(crate) struct Start {
    /// When the test started, ISO 8601 local time with offset.
    pub timestamp: String,
    /// Who we test with.
    pub peer: Peer,
    /// The server's control port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// `transmit`, `receive` or `both`, from the client's point of view.
    pub direction: &'static str,
    /// Connections asked for.
    pub connections: usize,
    /// Requested test length; `None` until interrupted.
    pub duration: Option<Duration>,
    /// The client's transmit rate asked for, bit/s, 0 = unlimited.
    pub local_tx_bps: u64,
    /// The server's transmit rate asked for, bit/s, 0 = unlimited.
    pub remote_tx_bps: u64,
    /// UDP packet size (UDP tests only).
    pub udp_size: Option<u16>,
    /// `zeros` or `random`.
    pub payload: &'static str,
    /// Which figures this side has.
    pub sides: Sides,
    /// The clock of the one-line records.
    pub span: Span,
    /// The authentication method, once the handshake has told it.
    pub auth: Option<&'static str>,
    /// The authenticated user, where the records name it (the server's).
    pub user: Option<String>,
}

impl Start {
    /// The peer as the `host` of the CSV row and the JSON start: the server's name, or the
    /// client's IP address.
    pub(crate) fn host(&self) -> String {
        match &self.peer {
            Peer::Server(name) => name.clone(),
            Peer::Client(addr) => addr.ip().to_string(),
        }
    }
}

/// How the test ended.
#[derive(Clone, Debug)]
pub(crate) struct End {
    /// The engine's totals and end reason.
    pub outcome: Outcome,
    /// Connections the test ran on.
    pub connections: usize,
    /// Bytes the peer said it received from us, summed over its status messages; `None` when
    /// it sent none or they are not kept (the server's).
    pub peer_received: Option<u64>,
    /// How many status messages that sum is made of.
    pub peer_reports: u64,
}

/// Length and average rates of a test for the one-line records, after its [`Span`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rates {
    /// Test length, seconds.
    pub secs: f64,
    /// Average send rate, megabits per second (1000-based).
    pub tx_mbps: f64,
    /// Average receive rate, megabits per second.
    pub rx_mbps: f64,
}

/// A mean of optional percentages (CPU load), ignoring intervals without a value.
#[derive(Clone, Copy, Debug, Default)]
struct Mean {
    sum: u64,
    n: u64,
}

impl Mean {
    fn add(&mut self, v: Option<u8>) {
        if let Some(v) = v {
            self.sum += u64::from(v);
            self.n += 1;
        }
    }

    fn get(&self) -> Option<u8> {
        // Rounded to nearest; the inputs are 0..=100, so is the mean.
        (self.n > 0).then(|| u8::try_from((self.sum + self.n / 2) / self.n).unwrap_or(100))
    }
}

/// One test: its start, what its intervals add up to, and its end once it has one.
#[derive(Clone, Debug)]
pub(crate) struct TestRecord {
    /// The facts known at the start.
    pub start: Start,
    measured: Duration,
    intervals: u32,
    local_cpu: Mean,
    remote_cpu: Mean,
    end: Option<End>,
}

impl TestRecord {
    /// A test that has started and has no interval yet.
    pub(crate) fn new(start: Start) -> TestRecord {
        TestRecord {
            start,
            measured: Duration::ZERO,
            intervals: 0,
            local_cpu: Mean::default(),
            remote_cpu: Mean::default(),
            end: None,
        }
    }

    /// Records the authentication method (and the user, where it is shown).
    pub(crate) fn authenticated(&mut self, method: &'static str, user: Option<String>) {
        self.start.auth = Some(method);
        self.start.user = user;
    }

    /// Adds one interval; returns its start as an offset from the start of data.
    pub(crate) fn add(&mut self, iv: &Interval<'_>) -> Duration {
        let offset = self.measured;
        self.measured += iv.duration;
        self.intervals += 1;
        self.local_cpu.add(iv.local_cpu);
        self.remote_cpu.add(iv.remote_cpu);
        offset
    }

    /// Records the end.
    pub(crate) fn finish(&mut self, end: End) {
        self.end = Some(end);
    }

    /// The end, once the test has one.
    pub(crate) fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// Why the test ended, once it has.
    pub(crate) fn reason(&self) -> Option<EndReason> {
        self.end.as_ref().map(|e| e.outcome.reason)
    }

    /// Sum of the interval lengths: the time the byte counts were measured over.
    pub(crate) fn measured(&self) -> Duration {
        self.measured
    }

    /// Intervals seen.
    pub(crate) fn intervals(&self) -> u32 {
        self.intervals
    }

    /// Mean of our CPU load over the intervals that had a sample.
    pub(crate) fn local_cpu(&self) -> Option<u8> {
        self.local_cpu.get()
    }

    /// Mean of the peer's reported CPU load.
    pub(crate) fn remote_cpu(&self) -> Option<u8> {
        self.remote_cpu.get()
    }

    /// Length and rates for the one-line records; `None` before the end.
    pub(crate) fn rates(&self) -> Option<Rates> {
        let o = &self.end.as_ref()?.outcome;
        let (secs, tx, rx) = match self.start.span {
            Span::Intervals => (self.measured, self.measured, self.measured),
            Span::Session => (o.elapsed, o.elapsed, o.rx_elapsed),
        };
        Some(Rates {
            secs: secs.as_secs_f64(),
            tx_mbps: bits_per_second(o.tx_bytes, tx) / 1e6,
            rx_mbps: bits_per_second(o.rx_bytes, rx) / 1e6,
        })
    }
}

/// A record for the tests of the sinks: a client's TCP test in both directions.
#[cfg(test)]
pub(crate) fn sample_start() -> Start {
    Start {
        timestamp: "2026-01-01T00:00:00+00:00".into(),
        peer: Peer::Server("192.0.2.7".into()),
        port: 2000,
        protocol: "tcp",
        direction: "both",
        connections: 1,
        duration: None,
        local_tx_bps: 0,
        remote_tx_bps: 0,
        udp_size: None,
        payload: "zeros",
        sides: Sides {
            tx: true,
            rx: true,
            udp: false,
        },
        span: Span::Intervals,
        auth: None,
        user: None,
    }
}

/// An end for the tests of the sinks.
#[cfg(test)]
pub(crate) fn sample_end(elapsed: Duration, tx_bytes: u64, rx_bytes: u64) -> End {
    End {
        outcome: Outcome {
            reason: EndReason::Duration,
            elapsed,
            rx_elapsed: elapsed,
            tx_bytes,
            rx_bytes,
            lost: 0,
            per_stream: vec![(tx_bytes, rx_bytes)],
            tcp: None,
            unacknowledged: 0,
        },
        connections: 1,
        peer_received: None,
        peer_reports: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::StreamSnapshot;

    fn interval(cpu: Option<u8>, millis: u64) -> Interval<'static> {
        static STREAMS: [StreamSnapshot; 0] = [];
        Interval {
            index: 1,
            duration: Duration::from_millis(millis),
            tx_bytes: 0,
            rx_bytes: 0,
            lost: 0,
            streams: &STREAMS,
            local_cpu: cpu,
            remote_cpu: None,
            last: false,
            tcp: None,
        }
    }

    #[test]
    fn offsets_means_and_the_clocks_of_the_rates() {
        let mut rec = TestRecord::new(sample_start());
        assert_eq!(rec.add(&interval(Some(10), 1000)), Duration::ZERO);
        assert_eq!(rec.add(&interval(None, 1000)), Duration::from_secs(1));
        assert_eq!(rec.add(&interval(Some(21), 500)), Duration::from_secs(2));
        assert_eq!(rec.intervals(), 3);
        assert_eq!(rec.local_cpu(), Some(16), "mean of 10 and 21, rounded");
        assert_eq!(rec.remote_cpu(), None);
        assert!(rec.rates().is_none(), "no rates before the end");

        let mut end = sample_end(Duration::from_secs(5), 2_500_000, 1_250_000);
        end.outcome.rx_elapsed = Duration::from_millis(2500);
        rec.finish(end);
        let by_intervals = rec.rates().unwrap();
        assert_eq!(by_intervals.secs, 2.5);
        assert_eq!(by_intervals.tx_mbps, 8.0);
        assert_eq!(by_intervals.rx_mbps, 4.0);
        rec.start.span = Span::Session;
        let by_session = rec.rates().unwrap();
        assert_eq!(by_session.secs, 5.0);
        assert_eq!(by_session.tx_mbps, 4.0);
        assert_eq!(
            by_session.rx_mbps, 4.0,
            "received bytes over the receive clock"
        );
    }

    #[test]
    fn host_names_the_peer() {
        let mut start = sample_start();
        assert_eq!(start.host(), "192.0.2.7");
        start.peer = Peer::Client("[2001:db8::1]:40000".parse().unwrap());
        assert_eq!(start.host(), "2001:db8::1");
    }
}
