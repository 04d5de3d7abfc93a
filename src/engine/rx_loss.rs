//! Per-interval UDP loss, placed in the interval each lost datagram was due in.
//!
//! A gap is known as soon as a later sequence number arrives, but it is only a loss once the
//! missing datagram has had time to turn up reordered. So the session driver, at the end of
//! interval k, asks every receiver to [`mark`](IntervalLoss::mark_interval_end) where each of
//! its sequences stands; one reorder window later it asks them to
//! [`settle`](IntervalLoss::settle): whatever below the mark is still missing is lost, and is
//! reported in interval k, whose line the driver holds back until then. Datagrams that arrive
//! within the window count as reordered, not lost. Totals are unchanged by this: a number is
//! declared lost once, whether here, by the tracker's window sliding past it, or at the end.
//!
//! The receiver thread and the driver share a receiver's streams under one mutex, which the
//! receiver takes once per batch of datagrams and the driver twice per interval.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use super::state::StreamCounters;
use super::udp::UdpTotals;
use crate::proto::udp::{LossCounts, SeqMark, SeqTracker};

/// Shortest reorder window: how long a missing datagram may still arrive before it is lost.
pub(crate) const MIN_REORDER_WINDOW: Duration = Duration::from_millis(100);
/// Longest reorder window, so that an interval's line is never held back for long.
pub(crate) const MAX_REORDER_WINDOW: Duration = Duration::from_millis(500);

/// The reorder window for a path with smoothed round-trip time `rtt` (if known): three round
/// trips, within [`MIN_REORDER_WINDOW`] and [`MAX_REORDER_WINDOW`].
pub(crate) fn reorder_window(rtt: Option<Duration>) -> Duration {
    rtt.map_or(MIN_REORDER_WINDOW, |r| r * 3)
        .clamp(MIN_REORDER_WINDOW, MAX_REORDER_WINDOW)
}

/// Something whose loss is decided per interval by the session driver.
pub(crate) trait IntervalLoss: Send + Sync + std::fmt::Debug {
    /// The interval ends now: remember where every sequence stands.
    fn mark_interval_end(&self);
    /// The reorder window after the last mark has passed: declare lost what is still missing
    /// up to the mark, into the streams' counters.
    fn settle(&self);
}

/// Per-stream state of a UDP receiver.
#[derive(Debug)]
pub(crate) struct RxStream {
    /// Loss accounting from sequence numbers.
    pub tracker: SeqTracker,
    counters: Arc<StreamCounters>,
    /// Bytes of the current batch, not yet in the counters.
    pub bytes: u64,
    /// Datagrams of the current batch, not yet in the counters.
    pub packets: u64,
    /// Where the sequence stood at the end of the last interval, until settled.
    mark: Option<SeqMark>,
}

impl RxStream {
    fn new(counters: Arc<StreamCounters>) -> RxStream {
        RxStream {
            tracker: SeqTracker::new(),
            counters,
            bytes: 0,
            packets: 0,
            mark: None,
        }
    }

    /// Moves what the last batch added into the shared counters.
    pub(crate) fn flush(&mut self, totals: &UdpTotals) {
        if self.packets > 0 {
            self.counters.add_rx(self.bytes);
            self.counters.add_rx_packets(self.packets);
            self.bytes = 0;
            self.packets = 0;
        }
        let c = self.tracker.take_interval();
        self.account(c, totals);
    }

    fn account(&self, c: LossCounts, totals: &UdpTotals) {
        if c.lost + c.reordered + c.duplicates > 0 {
            self.counters.add_lost(c.lost);
            self.counters.add_reordered(c.reordered);
            self.counters.add_duplicates(c.duplicates);
        }
        totals.received.fetch_add(c.received, Ordering::Relaxed);
        totals.lost.fetch_add(c.lost, Ordering::Relaxed);
        totals.reordered.fetch_add(c.reordered, Ordering::Relaxed);
        totals.duplicates.fetch_add(c.duplicates, Ordering::Relaxed);
    }
}

/// The streams of one receiver thread.
#[derive(Debug)]
pub(crate) struct RxGroup {
    streams: Mutex<Vec<RxStream>>,
    totals: Arc<UdpTotals>,
}

impl RxGroup {
    /// A group of one stream per set of counters.
    pub(crate) fn new(counters: Vec<Arc<StreamCounters>>, totals: Arc<UdpTotals>) -> Arc<RxGroup> {
        Arc::new(RxGroup {
            streams: Mutex::new(counters.into_iter().map(RxStream::new).collect()),
            totals,
        })
    }

    /// The streams, for one batch of datagrams.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<RxStream>> {
        self.streams.lock()
    }

    /// Whole-test counts the group adds to.
    pub(crate) fn totals(&self) -> &UdpTotals {
        &self.totals
    }

    /// The receiver is done: every number still missing up to the highest seen is lost now.
    pub(crate) fn finish(&self) {
        for s in self.streams.lock().iter_mut() {
            s.flush(&self.totals);
            let last = s.tracker.finish();
            s.account(last, &self.totals);
            s.mark = None;
        }
    }
}

impl IntervalLoss for RxGroup {
    fn mark_interval_end(&self) {
        for s in self.streams.lock().iter_mut() {
            s.mark = s.tracker.mark();
        }
    }

    fn settle(&self) {
        for s in self.streams.lock().iter_mut() {
            if let Some(mark) = s.mark.take() {
                s.tracker.declare_missing_through(mark);
                s.flush(&self.totals);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_three_rtt_within_bounds() {
        assert_eq!(reorder_window(None), MIN_REORDER_WINDOW);
        assert_eq!(
            reorder_window(Some(Duration::from_millis(10))),
            MIN_REORDER_WINDOW
        );
        assert_eq!(
            reorder_window(Some(Duration::from_millis(40))),
            Duration::from_millis(120)
        );
        assert_eq!(
            reorder_window(Some(Duration::from_secs(1))),
            MAX_REORDER_WINDOW
        );
    }

    /// Loss lands in the interval whose mark it is behind, after the window; a datagram that
    /// fills a gap before the settle is reordered, not lost; totals are exact.
    #[test]
    fn loss_is_settled_into_the_interval_it_was_due_in() {
        let counters = Arc::new(StreamCounters::default());
        let totals = Arc::new(UdpTotals::default());
        let group = RxGroup::new(vec![counters.clone()], totals.clone());
        let feed = |seqs: &[u32]| {
            let mut g = group.lock();
            for &s in seqs {
                g[0].tracker.record(s);
                g[0].packets += 1;
                g[0].bytes += 100;
            }
            g[0].flush(&totals);
        };
        // Interval 1: 2, 4 and 7 missing.
        feed(&[0, 1, 3, 5, 6, 8]);
        group.mark_interval_end();
        let first = counters.take();
        assert_eq!((first.rx_packets, first.lost), (6, 0));
        // Within the window: 4 arrives late, interval 2 loses 10.
        feed(&[4, 9, 11]);
        group.settle();
        assert_eq!(counters.take().lost, 2, "2 and 7, not 4, not 10");
        group.mark_interval_end();
        feed(&[12]);
        group.settle();
        assert_eq!(counters.take().lost, 1, "10, in interval 2");
        feed(&[14]);
        group.finish();
        let last = counters.take();
        assert_eq!(last.lost, 1, "13, at the end");
        assert_eq!(totals.lost.load(Ordering::Relaxed), 4);
        assert_eq!(totals.reordered.load(Ordering::Relaxed), 1);
        assert_eq!(totals.received.load(Ordering::Relaxed), 11);
    }
}
