//! A test's byte budget as the data path sees it: the live counters of every period of the
//! test's user and address, drawn from in chunks by the streams (see
//! [`crate::engine::budget`]) and checked against their limits at each draw.
//!
//! The counters are the shared atomics of [`super::quota::Quotas`], so concurrent tests of one
//! user or address draw from the same remainder and together cannot pass it by more than the
//! chunks their streams hold. Drawing never touches the database: counters and limits are
//! resolved when the test is admitted. At the end the ticket settles: what was drawn and never
//! moved goes back, so the counters hold exactly the bytes counted for the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// The budget of one test.
pub struct SessionBudget {
    lines: Vec<Line>,
    drawn_in: AtomicU64,
    drawn_out: AtomicU64,
    spent: Mutex<Option<Spent>>,
}

impl SessionBudget {
    /// A budget over `lines`.
    pub fn new(lines: Vec<Line>) -> SessionBudget {
        SessionBudget {
            lines,
            drawn_in: AtomicU64::new(0),
            drawn_out: AtomicU64::new(0),
            spent: Mutex::new(None),
        }
    }

    /// The budget that refused a draw first, if any did.
    pub fn spent(&self) -> Option<Spent> {
        self.spent.lock().clone()
    }

    /// Bytes (in, out) drawn so far.
    pub fn drawn(&self) -> (u64, u64) {
        (
            self.drawn_in.load(Ordering::Acquire),
            self.drawn_out.load(Ordering::Acquire),
        )
    }

    /// Ends the test's drawing: the counters are set back by what was drawn beyond the bytes
    /// counted (`moved_in`, `moved_out`), or forward if more was counted than drawn.
    pub fn settle(&self, moved_in: u64, moved_out: u64) {
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
                let drawn = if inbound {
                    &self.drawn_in
                } else {
                    &self.drawn_out
                };
                drawn.fetch_add(grant, Ordering::AcqRel);
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
