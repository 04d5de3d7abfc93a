//! The two rate formulas of the data plane, as pure functions so that they can be checked
//! against the test vectors before the pacing code that uses them exists.
//!
//! * The **1.5x rule** (protocol document, section 8): a transmitter that learns from the peer's
//!   status how many bytes arrived in the last interval sets its rate to 1.5 times that, in bit/s.
//!   btest-rs truncates the result to `u32` and so wraps above about 4.29 Gbit/s; we keep `u64`.
//! * The **send interval**: the gap between data units of `tx_size` bytes at a given rate, with the
//!   clamp RouterOS applies (anything slower than two units a second becomes one unit a second).

/// Nanoseconds in one second.
const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Intervals longer than this are replaced by [`CLAMPED_INTERVAL_NS`].
pub const MAX_UNCLAMPED_INTERVAL_NS: u64 = 500_000_000;
/// What an interval above [`MAX_UNCLAMPED_INTERVAL_NS`] becomes: exactly one second.
pub const CLAMPED_INTERVAL_NS: u64 = NANOS_PER_SEC;

/// The transmit rate the 1.5x rule gives for a peer report of `bytes_received` in one interval:
/// `bytes_received × 8 × 1.5 = bytes_received × 12` bit/s.
///
/// `None` for 0, which means "keep the current rate": a peer that reports nothing may simply not
/// have received yet, and slowing to zero would stall the test for good.
pub fn adapted_rate_bps(bytes_received: u32) -> Option<u64> {
    if bytes_received == 0 {
        return None;
    }
    // u32::MAX * 12 < 2^36: cannot overflow u64.
    Some(u64::from(bytes_received) * 12)
}

/// Gap in nanoseconds between two data units of `tx_size` bytes sent at `tx_speed_bps`:
/// `floor(1e9 × tx_size × 8 / tx_speed_bps)`, replaced by exactly one second when it exceeds
/// half a second, and at least 1 ns.
///
/// `None` when `tx_speed_bps` is 0: the transmitter is unpaced. A `tx_size` of 0 yields the
/// 1 ns minimum (there is nothing to pace, but a caller that loops on the result must still make
/// progress).
pub fn send_interval_ns(tx_speed_bps: u64, tx_size: u32) -> Option<u64> {
    if tx_speed_bps == 0 {
        return None;
    }
    // 1e9 × (2^32 − 1) × 8 overflows u64, so compute in u128; the quotient is at most that
    // numerator and is clamped to one second below, so the narrowing cannot lose anything.
    let bits = u128::from(tx_size) * 8;
    let raw = u128::from(NANOS_PER_SEC) * bits / u128::from(tx_speed_bps);
    if raw > u128::from(MAX_UNCLAMPED_INTERVAL_NS) {
        return Some(CLAMPED_INTERVAL_NS);
    }
    // raw <= 500 000 000 here, so it fits in u64.
    let ns = u64::try_from(raw).unwrap_or(CLAMPED_INTERVAL_NS);
    Some(ns.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_report_keeps_rate() {
        assert_eq!(adapted_rate_bps(0), None);
        assert_eq!(adapted_rate_bps(1), Some(12));
        assert_eq!(adapted_rate_bps(u32::MAX), Some(u64::from(u32::MAX) * 12));
    }

    #[test]
    fn interval_clamp_and_minimum() {
        assert_eq!(send_interval_ns(0, 1500), None);
        assert_eq!(send_interval_ns(24_000, 1500), Some(500_000_000));
        assert_eq!(send_interval_ns(23_999, 1500), Some(1_000_000_000));
        assert_eq!(send_interval_ns(u64::MAX, 1), Some(1));
        assert_eq!(send_interval_ns(1, u32::MAX), Some(1_000_000_000));
        assert_eq!(send_interval_ns(100, 0), Some(1));
    }
}
