//! A test's byte budget as the data path sees it: the live counters of every period of the
//! test's user and address, drawn from in chunks by the streams (see
//! [`crate::engine::budget`]) and checked against their limits at each draw.
//!
//! The counters are the shared atomics of [`super::quota::Quotas`], so concurrent tests of one
//! user or address draw from the same remainder and together cannot pass it by more than the
//! chunks their streams hold. Drawing never touches the database: counters and limits are
//! resolved when the test is admitted. At the end the ticket settles: what was drawn and never
//! moved goes back, so the counters hold exactly the bytes counted for the test.
//!
//! The asked rate is capped by what remains: a test's draws in each direction are paced so
//! that it spends what its budget had left at admission over at least [`SPREAD`]. A test asking
//! for an unlimited rate with 1 MB left moves about 1 MB/s, not a megabyte in a millisecond at
//! line rate, where the peer's socket buffers (megabytes per connection) would carry more
//! than the remainder across the link before the stop, and the one-second intervals and status
//! messages would never see the test run. A budget with much left paces far above any link
//! (100 GB left: 100 GB/s), so ordinary tests never notice. Pacing is a wait inside the draw,
//! so a sender writes and a receiver reads no faster: a TCP client's upload slows with the
//! closing window.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::quota::{Counter, Limit, Period, Spent, Subject};
use crate::engine::budget::{Budget, Flow};

/// One subject's counter for one period, with its limit.
pub struct Line {
    /// Whose budget.
    pub subject: Subject,
    /// Which period.
    pub period: Period,
    /// The live counter (shared by every test of the subject).
    pub counter: Arc<Counter>,
    /// The limit (all zero: unlimited, counted only).
    pub limit: Limit,
}

/// The shortest time a test may take to spend what its budget had left when it was admitted.
pub(crate) const SPREAD: Duration = Duration::from_secs(1);

/// One direction's pace: draws are spread at `per_sec` bytes a second at most.
struct Pace {
    /// Bytes a second; `None`: no budget applies, unpaced.
    per_sec: Option<f64>,
    /// When the bytes drawn so far have all had their time.
    next: Mutex<Option<Instant>>,
}

impl Pace {
    fn new(left: u64) -> Pace {
        Pace {
            per_sec: (left != u64::MAX).then(|| (left as f64 / SPREAD.as_secs_f64()).max(1.0)),
            next: Mutex::new(None),
        }
    }

    /// Waits until `bytes` more may move: the streams of a test take turns in one schedule.
    fn wait(&self, bytes: u64) {
        let Some(per_sec) = self.per_sec else {
            return;
        };
        let cost = Duration::from_secs_f64(bytes as f64 / per_sec);
        let now = Instant::now();
        let due = {
            let mut next = self.next.lock();
            let due = next.map_or(now, |n| n.max(now)) + cost;
            *next = Some(due);
            due
        };
        // Never longer than the spread: bytes handed back by other tests can give more than
        // the admission saw, and a stream must stay responsive to the stop.
        std::thread::sleep(due.saturating_duration_since(now).min(SPREAD));
    }
}

/// The budget of one test.
pub(crate) struct SessionBudget {
    lines: Vec<Line>,
    drawn_in: AtomicU64,
    drawn_out: AtomicU64,
    spent: Mutex<Option<Spent>>,
    pace_in: Pace,
    pace_out: Pace,
}

impl SessionBudget {
    /// A budget over `lines`, paced by what they have left now.
    pub(crate) fn new(lines: Vec<Line>) -> SessionBudget {
        let left = |inbound| {
            lines
                .iter()
                .map(|line| line.limit.headroom(line.counter.get(), inbound))
                .min()
                .unwrap_or(u64::MAX)
        };
        let (pace_in, pace_out) = (Pace::new(left(true)), Pace::new(left(false)));
        SessionBudget {
            lines,
            drawn_in: AtomicU64::new(0),
            drawn_out: AtomicU64::new(0),
            spent: Mutex::new(None),
            pace_in,
            pace_out,
        }
    }

    /// The budget that refused a draw first, if any did.
    pub(crate) fn spent(&self) -> Option<Spent> {
        self.spent.lock().clone()
    }

    /// Bytes (in, out) drawn so far.
    #[cfg(test)]
    pub(crate) fn drawn(&self) -> (u64, u64) {
        (
            self.drawn_in.load(Ordering::Acquire),
            self.drawn_out.load(Ordering::Acquire),
        )
    }

    /// Ends the test's drawing: the counters are set back by what was drawn beyond the bytes
    /// counted (`moved_in`, `moved_out`), or forward if more was counted than drawn.
    pub(crate) fn settle(&self, moved_in: u64, moved_out: u64) {
        let (di, d_o) = (
            self.drawn_in.swap(0, Ordering::AcqRel),
            self.drawn_out.swap(0, Ordering::AcqRel),
        );
        let back = (di.saturating_sub(moved_in), d_o.saturating_sub(moved_out));
        let fwd = (moved_in.saturating_sub(di), moved_out.saturating_sub(d_o));
        for line in &self.lines {
            line.counter.sub(back.0, back.1);
            if fwd != (0, 0) {
                line.counter.add(fwd.0, fwd.1);
            }
        }
    }
}

/// Most tries of a draw that raced another test's draw of the same counters.
const DRAW_TRIES: usize = 8;

impl SessionBudget {
    /// Bytes of `flow` every line can still give, by the counters now.
    fn headroom(&self, inbound: bool) -> u64 {
        self.lines
            .iter()
            .map(|line| line.limit.headroom(line.counter.get(), inbound))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn note_spent(&self, inbound: bool) {
        let mut spent = self.spent.lock();
        if spent.is_some() {
            return;
        }
        for line in &self.lines {
            let used = line.counter.get();
            if line.limit.headroom(used, inbound) == 0
                && let Some((dir, used, limit)) = line.limit.reached(used, inbound)
            {
                *spent = Some(Spent {
                    subject: line.subject.clone(),
                    period: line.period,
                    dir,
                    used,
                    limit,
                });
                return;
            }
        }
    }
}

impl Budget for SessionBudget {
    fn draw(&self, flow: Flow, want: u64) -> u64 {
        let inbound = flow == Flow::Rx;
        for _ in 0..DRAW_TRIES {
            let grant = want.min(self.headroom(inbound));
            if grant == 0 {
                self.note_spent(inbound);
                return 0;
            }
            let (i, o) = if inbound { (grant, 0) } else { (0, grant) };
            let over = self
                .lines
                .iter()
                .map(|line| line.limit.exceeded(line.counter.add(i, o), inbound))
                .fold(false, |any, e| any | e.is_some());
            if !over {
                let (drawn, pace) = if inbound {
                    (&self.drawn_in, &self.pace_in)
                } else {
                    (&self.drawn_out, &self.pace_out)
                };
                drawn.fetch_add(grant, Ordering::AcqRel);
                pace.wait(grant);
                return grant;
            }
            // Another test drew between our look and our add: put ours back and look again.
            for line in &self.lines {
                line.counter.sub(i, o);
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pro::quota::{Dir, Kind};

    fn line(counter: &Arc<Counter>, total: u64) -> Line {
        let mut limit = Limit::default();
        limit.set(Dir::Total, total);
        Line {
            subject: Subject {
                kind: Kind::User,
                name: Arc::from("alice"),
            },
            period: Period::Day,
            counter: counter.clone(),
            limit,
        }
    }

    #[test]
    fn two_tests_share_one_remainder_and_settle_to_what_moved() {
        let day = Arc::new(Counter::default());
        day.add(40, 0);
        let a = SessionBudget::new(vec![line(&day, 100)]);
        let b = SessionBudget::new(vec![line(&day, 100)]);
        assert_eq!(a.draw(Flow::Tx, 20), 20);
        assert_eq!(b.draw(Flow::Rx, 30), 30);
        assert_eq!(a.draw(Flow::Tx, 50), 10, "only the rest");
        assert_eq!(a.draw(Flow::Tx, 1), 0, "100 of 100 used");
        assert_eq!(day.get(), (70, 30));
        assert_eq!(a.spent().map(|s| s.limit), Some(100));
        assert!(b.spent().is_none());
        a.settle(0, 10);
        b.settle(30, 0);
        assert_eq!(day.get(), (70, 10));
    }

    /// 1 MB left and four streams drawing as fast as they can: the megabyte takes about the
    /// spread, not a moment; without a budget nothing waits.
    #[test]
    fn the_rate_is_capped_by_what_remains() {
        let day = Arc::new(Counter::default());
        day.add(0, 99_000_000);
        let budget = Arc::new(SessionBudget::new(vec![line(&day, 100_000_000)]));
        let start = Instant::now();
        let moved: u64 = std::thread::scope(|s| {
            let streams: Vec<_> = (0..4)
                .map(|_| {
                    let b = budget.clone();
                    s.spawn(move || {
                        let mut n = 0;
                        loop {
                            match b.draw(Flow::Tx, crate::engine::budget::CHUNK) {
                                0 => return n,
                                got => n += got,
                            }
                        }
                    })
                })
                .collect();
            streams.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let took = start.elapsed();
        assert_eq!(moved, 1_000_000);
        assert!(took >= SPREAD * 9 / 10, "1 MB spent in {took:?}");
        assert!(took < SPREAD * 3, "paced far too slowly: {took:?}");

        let free = SessionBudget::new(vec![line(&Arc::new(Counter::default()), 0)]);
        let start = Instant::now();
        for _ in 0..1000 {
            assert_eq!(free.draw(Flow::Rx, 1 << 20), 1 << 20);
        }
        assert!(start.elapsed() < Duration::from_millis(200));
    }

    #[test]
    fn a_refused_draw_leaves_every_counter_as_it_was() {
        let user = Arc::new(Counter::default());
        let ip = Arc::new(Counter::default());
        let budget = SessionBudget::new(vec![line(&user, 1000), line(&ip, 10)]);
        assert_eq!(budget.draw(Flow::Tx, 11), 10, "the smaller budget decides");
        assert_eq!(budget.draw(Flow::Tx, 1), 0);
        assert_eq!(user.get(), (0, 10));
        assert_eq!(ip.get(), (0, 10));
        assert_eq!(budget.drawn(), (0, 10));
        assert_eq!(budget.spent().map(|s| s.limit), Some(10));
    }
}
