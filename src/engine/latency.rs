//! Latency under load: the smoothed RTT and retransmissions of a test's TCP data connections,
//! read from the kernel's `TCP_INFO` once per interval.
//!
//! A TCP test that falls short of the link rate is usually explained by queueing (RTT grows)
//! or loss (retransmissions); showing both next to the rate saves reaching for `ss` while the
//! test runs. The cost is one `getsockopt` per connection per second, nothing per packet.

use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};

use crate::sys::tcp_info::tcp_stats;

/// RTT and retransmissions over a span (one interval or the whole test).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpLatency {
    /// Smallest smoothed RTT seen on any connection, microseconds.
    pub rtt_min_us: u32,
    /// Mean of the samples taken, microseconds.
    pub rtt_avg_us: u32,
    /// Largest smoothed RTT seen on any connection, microseconds.
    pub rtt_max_us: u32,
    /// Segments retransmitted in the span, all connections.
    pub retransmits: u64,
}

/// Running min/avg/max over samples, plus a retransmission sum.
#[derive(Clone, Copy, Debug, Default)]
struct Aggregate {
    min: u32,
    max: u32,
    sum: u64,
    samples: u64,
    retransmits: u64,
}

impl Aggregate {
    fn add_rtt(&mut self, rtt_us: u32) {
        if self.samples == 0 {
            self.min = rtt_us;
            self.max = rtt_us;
        } else {
            self.min = self.min.min(rtt_us);
            self.max = self.max.max(rtt_us);
        }
        self.sum += u64::from(rtt_us);
        self.samples += 1;
    }

    fn merge(&mut self, other: &Aggregate) {
        if other.samples > 0 {
            if self.samples == 0 {
                self.min = other.min;
                self.max = other.max;
            } else {
                self.min = self.min.min(other.min);
                self.max = self.max.max(other.max);
            }
            self.sum += other.sum;
            self.samples += other.samples;
        }
        self.retransmits += other.retransmits;
    }

    fn result(&self) -> Option<TcpLatency> {
        (self.samples > 0).then(|| TcpLatency {
            rtt_min_us: self.min,
            rtt_avg_us: u32::try_from(self.sum / self.samples).unwrap_or(u32::MAX),
            rtt_max_us: self.max,
            retransmits: self.retransmits,
        })
    }
}

/// The data connections of one session and what they reported last.
#[derive(Debug, Default)]
pub(crate) struct LatencyProbe {
    /// Descriptors of the session's tracked socket clones, which live as long as the session.
    fds: Vec<RawFd>,
    /// Each connection's retransmission counter at the previous sample.
    last_retransmits: Vec<u32>,
    test: Aggregate,
}

impl LatencyProbe {
    /// Adds a data connection. `socket` must stay open as long as the probe samples it (the
    /// session's tracked clone does).
    pub(crate) fn add(&mut self, socket: &TcpStream) {
        self.fds.push(socket.as_raw_fd());
        self.last_retransmits.push(0);
    }

    /// Reads every connection once; `None` when there are none or the platform has no
    /// `TCP_INFO`.
    pub(crate) fn sample(&mut self) -> Option<TcpLatency> {
        let mut interval = Aggregate::default();
        for (fd, last) in self.fds.iter().zip(self.last_retransmits.iter_mut()) {
            if let Some(stats) = tcp_stats(*fd) {
                interval.add_rtt(stats.rtt_us);
                interval.retransmits += u64::from(stats.retransmits_total.saturating_sub(*last));
                *last = stats.retransmits_total;
            }
        }
        self.test.merge(&interval);
        interval.result()
    }

    /// Min/avg/max over every sample of the test and the total retransmissions.
    pub(crate) fn test_total(&self) -> Option<TcpLatency> {
        self.test.result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_min_avg_max_and_merge() {
        let mut a = Aggregate::default();
        assert_eq!(a.result(), None);
        for v in [300, 100, 200] {
            a.add_rtt(v);
        }
        a.retransmits = 2;
        let mut total = Aggregate::default();
        total.merge(&a);
        let mut b = Aggregate::default();
        b.add_rtt(50);
        b.retransmits = 3;
        total.merge(&b);
        assert_eq!(
            a.result(),
            Some(TcpLatency {
                rtt_min_us: 100,
                rtt_avg_us: 200,
                rtt_max_us: 300,
                retransmits: 2
            })
        );
        assert_eq!(
            total.result(),
            Some(TcpLatency {
                rtt_min_us: 50,
                rtt_avg_us: 162,
                rtt_max_us: 300,
                retransmits: 5
            })
        );
    }

    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    #[test]
    fn probe_reads_a_loopback_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let mut probe = LatencyProbe::default();
        assert_eq!(probe.sample(), None);
        probe.add(&client);
        let s = probe.sample().expect("TCP_INFO on loopback");
        assert!(s.rtt_min_us <= s.rtt_avg_us && s.rtt_avg_us <= s.rtt_max_us);
        assert_eq!(probe.test_total().map(|t| t.rtt_max_us), Some(s.rtt_max_us));
    }
}
