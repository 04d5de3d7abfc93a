//! The 12-byte status message both sides exchange once a second.
//!
//! Layout: `07 | cpu | 00 00 | seq u32 LE | bytes_received u32 LE`. The CPU byte's top bit is set
//! by some senders (btest-rs, centrs, a RouterOS client) and clear in others (a RouterOS server),
//! so decoding ignores it and encoding sets it, which every known peer accepts.

/// Length of a status message on the wire.
pub const STATUS_LEN: usize = 12;
/// First byte of every status message.
pub const STATUS_TYPE: u8 = 0x07;
/// Highest CPU percentage a status message can carry.
pub const MAX_CPU: u8 = 100;

/// A decoded status message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct StatusMessage {
    /// Sender's CPU load, percent (0..=100).
    pub cpu: u8,
    /// Sequence number: 1 for the first message a side sends, then +1.
    pub seq: u32,
    /// Bytes the sender received during its last interval (not cumulative).
    pub bytes_received: u32,
}

impl StatusMessage {
    /// The 12 bytes on the wire, with the CPU byte's top bit set.
    pub fn encode(&self) -> [u8; STATUS_LEN] {
        let mut b = [0u8; STATUS_LEN];
        b[0] = STATUS_TYPE;
        b[1] = 0x80 | self.cpu.min(MAX_CPU);
        b[4..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..12].copy_from_slice(&self.bytes_received.to_le_bytes());
        b
    }

    /// Decodes 12 bytes that match the status pattern (see [`looks_like_status`]).
    pub fn decode(b: &[u8; STATUS_LEN]) -> Option<StatusMessage> {
        if !looks_like_status(b) {
            return None;
        }
        Some(StatusMessage {
            cpu: (b[1] & 0x7f).min(MAX_CPU),
            seq: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            bytes_received: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

/// The matching rule of the protocol document, section 6.2, over as many of the first four bytes
/// as `prefix` holds: `07`, a CPU byte whose low 7 bits are at most 100 (top bit optional),
/// `00`, `00`. A prefix shorter than four bytes matches when what it has fits.
pub fn looks_like_status(prefix: &[u8]) -> bool {
    let expect = |i: usize, ok: fn(u8) -> bool| prefix.get(i).is_none_or(|&b| ok(b));
    expect(0, |b| b == STATUS_TYPE)
        && expect(1, |b| b & 0x7f <= MAX_CPU)
        && expect(2, |b| b == 0)
        && expect(3, |b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_sets_top_bit_and_decode_ignores_it() {
        let m = StatusMessage {
            cpu: 37,
            seq: 2,
            bytes_received: 1000,
        };
        let b = m.encode();
        assert_eq!(b, [7, 0xa5, 0, 0, 2, 0, 0, 0, 0xe8, 3, 0, 0]);
        assert_eq!(StatusMessage::decode(&b), Some(m));
        let mut routeros_server = b;
        routeros_server[1] = 37;
        assert_eq!(StatusMessage::decode(&routeros_server), Some(m));
    }

    #[test]
    fn zero_percent_with_top_bit_is_zero() {
        let b = [7, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(StatusMessage::decode(&b).map(|m| m.cpu), Some(0));
    }

    #[test]
    fn cpu_over_100_is_not_a_status() {
        let b = [7, 0x80 | 101, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(StatusMessage::decode(&b), None);
    }
}
