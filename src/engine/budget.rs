//! Byte budgets enforced in the data path.
//!
//! A policy that limits bytes (the pro server's per-user and per-address budgets) hands the
//! test a [`Budget`]. Each stream holds an [`Allowance`]: bytes it has drawn from the budget
//! and not yet moved. A sender asks for its next write before writing and a receiver for room
//! before reading, so no stream ever moves a byte it has not drawn, at any speed. Draws come
//! in [`CHUNK`]s, so the shared budget (atomics behind a trait object) is touched once per
//! chunk, not per write; the per-write cost is one comparison and one subtraction on the
//! stream's own counter. Without a budget (the plain server) the allowance is unlimited and
//! never draws.
//!
//! When a draw fails the stream stops the whole test; what the other streams still hold is at
//! most one chunk each, drawn but never moved, and handed back by the policy at the end.

use std::sync::{Arc, OnceLock};

/// Which way bytes move, from this side of the test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flow {
    /// Bytes we send.
    Tx,
    /// Bytes we receive.
    Rx,
}

/// A shared byte budget.
pub trait Budget: Send + Sync {
    /// Takes up to `want` bytes for `flow` and returns how many it took: fewer near the end
    /// of the budget, 0 once it is spent.
    fn draw(&self, flow: Flow, want: u64) -> u64;
}

/// Bytes a stream draws at a time: small against any budget worth setting (20 streams hold
/// at most 5 MiB between them), large enough that a 10 Gbit/s stream draws ~5000 times a
/// second.
pub(crate) const CHUNK: u64 = 256 * 1024;

/// One stream's drawn and not yet moved bytes.
pub(crate) struct Allowance {
    budget: Option<Arc<dyn Budget>>,
    flow: Flow,
    left: u64,
}

impl Allowance {
    /// An allowance drawing from `budget`; unlimited without one.
    pub(crate) fn new(budget: Option<Arc<dyn Budget>>, flow: Flow) -> Allowance {
        let left = if budget.is_some() { 0 } else { u64::MAX };
        Allowance { budget, flow, left }
    }

    /// An allowance that never runs out.
    pub(crate) fn unlimited() -> Allowance {
        Allowance::new(None, Flow::Tx)
    }

    /// How many of `want` bytes the stream may move now (drawing a chunk when it holds none);
    /// 0 when the budget is spent. Call [`Allowance::spend`] with what was moved.
    #[inline]
    pub(crate) fn grant(&mut self, want: usize) -> usize {
        if self.left == 0 && !self.refill(1) {
            return 0;
        }
        usize::try_from(self.left).map_or(want, |left| want.min(left))
    }

    /// Takes `n` bytes, drawing more when the stream holds fewer; false (and nothing taken)
    /// when the budget cannot give them. For units that cannot be cut, such as datagrams.
    #[inline]
    pub(crate) fn take(&mut self, n: u64) -> bool {
        if self.left < n && !self.refill(n - self.left) {
            return false;
        }
        self.left -= n;
        true
    }

    /// Counts `n` bytes moved out of a [`Allowance::grant`].
    #[inline]
    pub(crate) fn spend(&mut self, n: usize) {
        self.left = self.left.saturating_sub(n as u64);
    }

    /// Returns `n` bytes taken but not moved (a datagram the kernel did not send) to this
    /// stream's allowance.
    #[inline]
    pub(crate) fn give_back(&mut self, n: u64) {
        self.left = self.left.saturating_add(n);
    }

    #[cold]
    fn refill(&mut self, need: u64) -> bool {
        let Some(budget) = &self.budget else {
            self.left = u64::MAX;
            return true;
        };
        // What is drawn stays in the allowance even when it falls short of `need`: it is
        // handed back with the rest at the end of the test.
        let got = budget.draw(self.flow, need.max(CHUNK));
        self.left += got;
        got >= need
    }
}

/// Where a test keeps its budget: set once, before the streams start.
#[derive(Default)]
pub(crate) struct BudgetSlot(OnceLock<Arc<dyn Budget>>);

impl BudgetSlot {
    /// Sets the budget; a second call is ignored (a test has one policy).
    pub(crate) fn set(&self, budget: Arc<dyn Budget>) {
        let _ = self.0.set(budget);
    }

    /// A new stream's allowance for `flow`.
    pub(crate) fn allowance(&self, flow: Flow) -> Allowance {
        Allowance::new(self.0.get().cloned(), flow)
    }
}

impl std::fmt::Debug for BudgetSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "BudgetSlot(set)"
        } else {
            "BudgetSlot(none)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A budget of so many bytes in total.
    struct Pot(AtomicU64);

    impl Budget for Pot {
        fn draw(&self, _flow: Flow, want: u64) -> u64 {
            match self
                .0
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    Some(left - left.min(want))
                }) {
                Ok(left) => left.min(want),
                Err(_) => 0,
            }
        }
    }

    #[test]
    fn unlimited_never_runs_out() {
        let mut a = Allowance::unlimited();
        for _ in 0..1000 {
            assert_eq!(a.grant(1 << 20), 1 << 20);
            a.spend(1 << 20);
            assert!(a.take(1500));
        }
    }

    #[test]
    fn streams_never_move_more_than_the_budget() {
        let pot: Arc<dyn Budget> = Arc::new(Pot(AtomicU64::new(3 * CHUNK + 1000)));
        let mut streams: Vec<Allowance> = (0..4)
            .map(|_| Allowance::new(Some(pot.clone()), Flow::Tx))
            .collect();
        let mut moved = 0u64;
        let mut open = true;
        while open {
            open = false;
            for s in &mut streams {
                let n = s.grant(100_000);
                if n > 0 {
                    s.spend(n);
                    moved += n as u64;
                    open = true;
                }
            }
        }
        assert_eq!(moved, 3 * CHUNK + 1000);
    }

    #[test]
    fn datagrams_are_taken_whole() {
        let pot: Arc<dyn Budget> = Arc::new(Pot(AtomicU64::new(4000)));
        let mut a = Allowance::new(Some(pot), Flow::Rx);
        assert!(a.take(1500));
        assert!(a.take(1500));
        assert!(!a.take(1500));
        assert!(a.take(1000));
        assert!(!a.take(1));
    }
}
