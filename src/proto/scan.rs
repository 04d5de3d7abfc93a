//! Finding status messages inside a TCP byte stream.
//!
//! In a TCP test a side that receives data also receives the peer's status messages, inserted
//! between data writes with no framing. [`StatusScanner`] treats all reads of one connection as
//! one stream, finds each message exactly once by the rule of the protocol document (section
//! 6.2), and carries up to 11 bytes of a possible message over to the next read.

use super::status::{STATUS_LEN, STATUS_TYPE, StatusMessage, looks_like_status};

/// Streaming status finder with a carry across reads. Allocation-free.
#[derive(Clone, Debug, Default)]
pub struct StatusScanner {
    carry: [u8; STATUS_LEN - 1],
    carry_len: usize,
}

impl StatusScanner {
    /// A scanner at the start of a stream.
    pub fn new() -> StatusScanner {
        StatusScanner::default()
    }

    /// Feeds the next read of the stream; calls `on_message` for each status message whose last
    /// byte is in `data`, in stream order.
    pub fn feed(&mut self, data: &[u8], mut on_message: impl FnMut(StatusMessage)) {
        if data.is_empty() {
            return;
        }
        let mut pos = self.scan_carry(data, &mut on_message);
        while let Some(rest) = data.get(pos..) {
            let Some(found) = memchr::memchr(STATUS_TYPE, rest) else {
                break;
            };
            let start = pos + found;
            let candidate = data.get(start..).unwrap_or_default();
            if candidate.len() < STATUS_LEN {
                if looks_like_status(candidate) {
                    self.set_carry(candidate);
                    return;
                }
                pos = start + 1;
                continue;
            }
            let msg_bytes: Option<&[u8; STATUS_LEN]> =
                candidate.get(..STATUS_LEN).and_then(|s| s.try_into().ok());
            match msg_bytes.and_then(StatusMessage::decode) {
                Some(msg) => {
                    on_message(msg);
                    pos = start + STATUS_LEN;
                }
                None => pos = start + 1,
            }
        }
    }

    /// Tries every start position inside the carried bytes, completed from `data`. Returns how
    /// many bytes of `data` are consumed by a message found there (0 if none).
    fn scan_carry(&mut self, data: &[u8], on_message: &mut impl FnMut(StatusMessage)) -> usize {
        let carry_len = std::mem::take(&mut self.carry_len);
        let mut window = [0u8; 2 * STATUS_LEN];
        for start in 0..carry_len {
            let from_carry = self.carry.get(start..carry_len).unwrap_or_default();
            if from_carry.first() != Some(&STATUS_TYPE) {
                continue;
            }
            let need = STATUS_LEN - from_carry.len();
            let len = from_carry.len() + need.min(data.len());
            let (head, tail) = window.split_at_mut(from_carry.len());
            head.copy_from_slice(from_carry);
            let taken = data.get(..need.min(data.len())).unwrap_or_default();
            if let Some(dst) = tail.get_mut(..taken.len()) {
                dst.copy_from_slice(taken);
            }
            let candidate = window.get(..len).unwrap_or_default();
            if !looks_like_status(candidate) {
                continue;
            }
            if len < STATUS_LEN {
                // Still incomplete (a very short read): keep carrying from this start.
                self.set_carry(candidate);
                return data.len();
            }
            let msg_bytes: Option<&[u8; STATUS_LEN]> = candidate.try_into().ok();
            if let Some(msg) = msg_bytes.and_then(StatusMessage::decode) {
                on_message(msg);
                return need;
            }
        }
        0
    }

    /// Keeps the start of a possible message for the next read. `bytes` is always shorter than
    /// a message; the length is checked here once, so a wrong length drops the carry instead of
    /// panicking.
    fn set_carry(&mut self, bytes: &[u8]) {
        match self.carry.get_mut(..bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.carry_len = bytes.len();
            }
            None => self.carry_len = 0,
        }
    }
}
