//! Transmit pacing: an absolute schedule of send times, one `Instant::now()` per send.
//!
//! Each send is due `interval` after the previous one's due time (not after it actually went
//! out), so sleep overshoot is paid back on the next send and the long-run rate is exact. A
//! sender that falls far behind (a stalled socket, a descheduled thread) restarts its schedule
//! from now instead of bursting to catch up.
//!
//! At high rates the interval between sends is shorter than the kernel's sleep granularity
//! (tens of microseconds), so the pacer sleeps only when it is ahead by more than
//! [`SLEEP_SLACK`] and lets the debt of an oversleep be repaid by sending without sleeping.

use std::time::{Duration, Instant};

/// Sends are let through without sleeping while the schedule is less than this far ahead:
/// shorter sleeps cost more in overshoot than they shape.
pub(crate) const SLEEP_SLACK: Duration = Duration::from_micros(200);

/// A sender further behind its schedule than this (or two intervals, whichever is longer)
/// forgets the debt instead of bursting to repay it. Shorter stalls are repaid: on a busy
/// server a sender thread is often kept off the CPU for tens of milliseconds (100 sessions
/// at 10 Mbit/s on two cores lost up to 11 % of a second that way with 20 ms here), and only
/// repaying them keeps each test's rate within 1 %.
pub(crate) const MAX_DEBT: Duration = Duration::from_millis(200);

/// Paces sends of one stream.
#[derive(Debug)]
pub(crate) struct Pacer {
    interval: Duration,
    next: Option<Instant>,
}

impl Pacer {
    /// A pacer for `unit_bytes`-byte sends at `rate_bps` (0 = unpaced).
    pub(crate) fn new(rate_bps: u64, unit_bytes: usize) -> Pacer {
        Pacer {
            interval: interval_for(rate_bps, unit_bytes),
            next: None,
        }
    }

    /// Changes the rate from the next send on, keeping the schedule's phase.
    pub(crate) fn set_rate(&mut self, rate_bps: u64, unit_bytes: usize) {
        self.interval = interval_for(rate_bps, unit_bytes);
    }

    /// Blocks until the next send is due, then books it.
    pub(crate) fn wait(&mut self) {
        if self.interval.is_zero() {
            return;
        }
        let now = Instant::now();
        let due = match self.next {
            Some(due) if now < due => {
                if due - now > SLEEP_SLACK {
                    std::thread::sleep(due - now);
                }
                due
            }
            Some(due) if now - due <= (2 * self.interval).max(MAX_DEBT) => due,
            _ => now,
        };
        self.next = Some(due + self.interval);
    }
}

/// Time between sends of `unit_bytes` at `rate_bps`; zero when unpaced.
///
/// Unlike the protocol's UDP interval rule this never clamps: callers size their units so that
/// a paced stream sends many of them per second (see [`unit_for_rate`]).
pub(crate) fn interval_for(rate_bps: u64, unit_bytes: usize) -> Duration {
    if rate_bps == 0 {
        return Duration::ZERO;
    }
    let ns = (unit_bytes as u128 * 8 * 1_000_000_000) / u128::from(rate_bps);
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX).max(1))
}

/// Write size for a paced TCP stream: at most `max_unit`, small enough for about 50 writes a
/// second so that low rates are smooth and exact, and never below 64 bytes.
pub(crate) fn unit_for_rate(rate_bps: u64, max_unit: usize) -> usize {
    if rate_bps == 0 {
        return max_unit;
    }
    let per_fiftieth = usize::try_from(rate_bps / 8 / 50).unwrap_or(usize::MAX);
    per_fiftieth.clamp(64.min(max_unit), max_unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_math() {
        assert_eq!(interval_for(0, 1500), Duration::ZERO);
        assert_eq!(interval_for(8_000_000, 1000), Duration::from_millis(1));
        assert_eq!(interval_for(1, 1), Duration::from_secs(8));
    }

    #[test]
    fn unit_is_bounded() {
        assert_eq!(unit_for_rate(0, 32768), 32768);
        assert_eq!(unit_for_rate(1_000_000_000, 32768), 32768);
        assert_eq!(unit_for_rate(8_000, 32768), 64);
        assert_eq!(unit_for_rate(10_000_000, 32768), 25_000);
    }

    #[test]
    fn schedule_restarts_after_a_long_stall() {
        let mut p = Pacer::new(8_000_000, 1000);
        p.wait();
        let first = p.next.unwrap();
        std::thread::sleep(MAX_DEBT + Duration::from_millis(10));
        p.wait();
        assert!(p.next.unwrap() > first + MAX_DEBT);
    }
}
