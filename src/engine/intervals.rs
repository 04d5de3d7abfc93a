//! Interval figures: what the session driver adds up across intervals, and the one interval
//! it may hold back until that interval's UDP loss has settled (see `rx_loss`).

use std::time::{Duration, Instant};

use super::latency::TcpLatency;
use super::session::{Interval, StatusOut};
use super::state::{StreamSnapshot, TestState};

/// An interval whose figures are taken but whose loss waits for the reorder window.
pub(super) struct Held {
    pub index: u32,
    pub duration: Duration,
    pub local_cpu: Option<u8>,
    pub tcp: Option<TcpLatency>,
    /// When the reorder window after the interval's end has passed.
    pub due: Instant,
}

/// At most one held interval, and its figures.
#[derive(Default)]
pub(super) struct Hold {
    held: Option<Held>,
    snapshots: Vec<StreamSnapshot>,
}

impl Hold {
    /// When the held interval, if any, may be reported.
    pub(super) fn due(&self) -> Option<Instant> {
        self.held.as_ref().map(|h| h.due)
    }

    /// Holds an interval back. Its figures move out of `snapshots`, which gets a spare vector
    /// in return (no allocation once both have grown).
    pub(super) fn hold(&mut self, held: Held, snapshots: &mut Vec<StreamSnapshot>) {
        std::mem::swap(&mut self.snapshots, snapshots);
        self.held = Some(held);
    }

    /// The held interval, if any, with its loss settled now, and its figures.
    pub(super) fn release(&mut self, state: &TestState) -> Option<(Held, &[StreamSnapshot])> {
        let held = self.held.take()?;
        state.settle_loss(&mut self.snapshots);
        Some((held, &self.snapshots))
    }
}

/// The reorder window of a UDP test, from the round-trip time of its control connection.
pub(super) fn reorder_window(out: &StatusOut) -> Duration {
    #[cfg(unix)]
    let rtt = match out {
        StatusOut::Direct(s) => {
            use std::os::fd::AsRawFd;
            crate::sys::tcp_info::tcp_stats(s.as_raw_fd())
                .filter(|t| t.rtt_us > 0)
                .map(|t| Duration::from_micros(u64::from(t.rtt_us)))
        }
        _ => None,
    };
    #[cfg(not(unix))]
    let rtt = {
        let _ = out;
        None
    };
    super::rx_loss::reorder_window(rtt)
}

/// Whole-test sums of the intervals reported so far.
#[derive(Default)]
pub(super) struct Totals {
    pub tx: u64,
    pub rx: u64,
    pub lost: u64,
    pub per_stream: Vec<(u64, u64)>,
}

impl Totals {
    /// Adds an interval's figures to the sums and builds the interval to report.
    pub(super) fn interval<'a>(
        &mut self,
        index: u32,
        duration: Duration,
        streams: &'a [StreamSnapshot],
        local_cpu: Option<u8>,
        remote_cpu: Option<u8>,
        last: bool,
    ) -> Interval<'a> {
        let (mut tx, mut rx, mut lost) = (0, 0, 0);
        self.per_stream.resize(streams.len(), (0, 0));
        for (s, total) in streams.iter().zip(self.per_stream.iter_mut()) {
            tx += s.tx_bytes;
            rx += s.rx_bytes;
            lost += s.lost;
            total.0 += s.tx_bytes;
            total.1 += s.rx_bytes;
        }
        self.tx += tx;
        self.rx += rx;
        self.lost += lost;
        Interval {
            index,
            duration,
            tx_bytes: tx,
            rx_bytes: rx,
            lost,
            streams,
            local_cpu,
            remote_cpu,
            last,
            tcp: None,
        }
    }
}
