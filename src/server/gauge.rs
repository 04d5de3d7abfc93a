//! A bounded count with a wait for "back to zero": sessions running, connections in the
//! handshake phase.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Counts of something bounded, with a wait for "back to zero".
#[derive(Default)]
pub(super) struct Gauge {
    count: Mutex<usize>,
    zero: Condvar,
}

impl Gauge {
    pub(super) fn try_enter(self: &Arc<Self>, limit: usize) -> Option<GaugeGuard> {
        let mut n = self.count.lock();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(GaugeGuard(self.clone()))
    }

    pub(super) fn get(&self) -> usize {
        *self.count.lock()
    }

    pub(super) fn wait_zero(&self, deadline: Instant) -> bool {
        let mut n = self.count.lock();
        while *n > 0 {
            if self.zero.wait_until(&mut n, deadline).timed_out() {
                return *n == 0;
            }
        }
        true
    }
}

/// Held while something counted is alive; gives the place back on drop, whatever path ends it.
pub(super) struct GaugeGuard(Arc<Gauge>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        let mut n = self.0.count.lock();
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.0.zero.notify_all();
        }
    }
}
