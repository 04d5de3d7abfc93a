//! The 12-byte status message both sides exchange once a second.
//!
//! Layout: `07 | cpu | 00 00 | seq u32 LE | bytes_received u32 LE`. The CPU byte's top bit is set
//! by some senders (btest-rs, centrs, a RouterOS client) and clear in others (a RouterOS server),
//! so decoding ignores it and encoding sets it, which every known peer accepts.

use super::bytes::{read, write};

/// Length of a status message on the wire.
pub const STATUS_LEN: usize = 12;
/// First byte of every status message.
pub(crate) const STATUS_TYPE: u8 = 0x07;
/// Highest CPU percentage a status message can carry.
pub(crate) const MAX_CPU: u8 = 100;
/// The CPU byte's optional top bit.
const CPU_FLAG: u8 = 0x80;

/// Where each field sits, named once for `encode`, `decode` and the match rule.
mod field {
    use std::ops::Range;

    pub(super) const TYPE: usize = 0;
    pub(super) const CPU: usize = 1;
    /// Two zero bytes.
    pub(super) const PAD: Range<usize> = 2..4;
    /// Little-endian.
    pub(super) const SEQ: Range<usize> = 4..8;
    /// Little-endian.
    pub(super) const BYTES_RECEIVED: Range<usize> = 8..12;
}

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
        b[field::TYPE] = STATUS_TYPE;
        b[field::CPU] = CPU_FLAG | self.cpu.min(MAX_CPU);
        write(&mut b, field::SEQ, &self.seq.to_le_bytes());
        write(
            &mut b,
            field::BYTES_RECEIVED,
            &self.bytes_received.to_le_bytes(),
        );
        b
    }

    /// Decodes 12 bytes if they match the status pattern (see `looks_like_status`). `None` is
    /// no error: most 12-byte runs in a TCP stream are data, and [`StatusScanner`] tries each.
    ///
    /// [`StatusScanner`]: super::StatusScanner
    pub fn decode(b: &[u8; STATUS_LEN]) -> Option<StatusMessage> {
        if !looks_like_status(b) {
            return None;
        }
        Some(StatusMessage {
            cpu: (b[field::CPU] & !CPU_FLAG).min(MAX_CPU),
            seq: u32::from_le_bytes(read(b, field::SEQ)),
            bytes_received: u32::from_le_bytes(read(b, field::BYTES_RECEIVED)),
        })
    }
}

/// The matching rule of the protocol document, section 6.2, over as many of the first four bytes
/// as `prefix` holds: `07`, a CPU byte whose low 7 bits are at most 100 (top bit optional),
/// `00`, `00`. A prefix shorter than four bytes matches when what it has fits.
pub(crate) fn looks_like_status(prefix: &[u8]) -> bool {
    let expect = |i: usize, ok: fn(u8) -> bool| prefix.get(i).is_none_or(|&b| ok(b));
    expect(field::TYPE, |b| b == STATUS_TYPE)
        && expect(field::CPU, |b| b & !CPU_FLAG <= MAX_CPU)
        && field::PAD.into_iter().all(|i| expect(i, |b| b == 0))
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
