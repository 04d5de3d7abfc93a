//! Rate rules of the protocol (document section 8): the 1.5x speed adaptation and the UDP send
//! interval with its 500 ms clamp.

/// New transmit rate after the peer reported `bytes_received` in one interval: 1.5 times what
/// arrived, in bit/s (`bytes × 12`); `None` for 0, which means "keep the current rate". Kept in
/// u64, so it never wraps the way a u32 would above 4.29 Gbit/s.
pub fn adapted_rate_bps(bytes_received: u32) -> Option<u64> {
    (bytes_received > 0).then(|| u64::from(bytes_received) * 12)
}

/// Gap between `tx_size`-byte units at `tx_speed_bps`; `None` when unpaced (rate 0). Gaps over
/// 500 ms become exactly one second, as RouterOS does.
pub fn send_interval_ns(tx_speed_bps: u64, tx_size: u32) -> Option<u64> {
    if tx_speed_bps == 0 {
        return None;
    }
    let ns = u128::from(tx_size) * 8 * 1_000_000_000 / u128::from(tx_speed_bps);
    let ns = u64::try_from(ns).unwrap_or(u64::MAX);
    Some(if ns > 500_000_000 { 1_000_000_000 } else { ns })
}
