//! How fast a UDP sender goes and how many datagrams it hands the kernel at a time.

use super::batch::BATCH;

/// A batch never holds more payload than this, so 64000-byte datagrams do not make a 4 MB
/// buffer per stream.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Datagrams per system call at `rate_bps` for `wire_bytes`-byte datagrams: about one
/// millisecond of traffic, at least one (low rates send datagram by datagram), at most
/// [`BATCH`] and [`MAX_BATCH_BYTES`] of payload. Unpaced senders use the largest batch.
pub(crate) fn batch_for(rate_bps: u64, wire_bytes: u64, payload_len: usize) -> usize {
    let cap = (MAX_BATCH_BYTES / payload_len.max(1)).clamp(1, BATCH);
    if rate_bps == 0 {
        return cap;
    }
    let per_ms = rate_bps / (wire_bytes.max(1) * 8) / 1000;
    usize::try_from(per_ms).unwrap_or(usize::MAX).clamp(1, cap)
}

/// The rate the pacer actually runs at: below two datagrams a second the protocol sends one
/// datagram a second (the interval clamp of protocol document section 8).
pub(crate) fn paced_rate(rate_bps: u64, wire_bytes: u64) -> u64 {
    let size = u32::try_from(wire_bytes).unwrap_or(u32::MAX);
    match crate::proto::rate::send_interval_ns(rate_bps, size) {
        Some(crate::proto::rate::CLAMPED_INTERVAL_NS) => wire_bytes * 8,
        _ => rate_bps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_is_a_millisecond_of_traffic() {
        assert_eq!(batch_for(0, 1500, 1472), BATCH);
        assert_eq!(batch_for(1_000_000, 1500, 1472), 1);
        assert_eq!(batch_for(120_000_000, 1500, 1472), 10);
        assert_eq!(batch_for(10_000_000_000, 1500, 1472), BATCH);
        assert_eq!(batch_for(0, 64000, 63972), 4);
    }

    #[test]
    fn slow_rates_clamp_to_one_datagram_a_second() {
        assert_eq!(paced_rate(24_000, 1500), 24_000);
        assert_eq!(paced_rate(1_000, 1500), 12_000);
        assert_eq!(paced_rate(0, 1500), 0);
    }
}
