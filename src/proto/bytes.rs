//! Reading and writing a fixed-width field of a message, given where it sits.
//!
//! Each message file names its layout once, smoltcp style, as a `mod field` of offsets and
//! ranges; `encode` and `decode` both go through these two functions, so neither repeats an
//! offset. They never index: a range that does not fit (a layout mistake, which the vector
//! tests would show) reads as zeros and writes nothing instead of panicking.

use std::ops::Range;

/// The `N` bytes of `msg` at `at`.
pub(super) fn read<const N: usize>(msg: &[u8], at: Range<usize>) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, b) in out.iter_mut().zip(msg.get(at).unwrap_or_default()) {
        *o = *b;
    }
    out
}

/// Writes `bytes` into `msg` at `at`.
pub(super) fn write(msg: &mut [u8], at: Range<usize>, bytes: &[u8]) {
    for (o, b) in msg.get_mut(at).unwrap_or_default().iter_mut().zip(bytes) {
        *o = *b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_misfits_are_harmless() {
        let mut msg = [0u8; 6];
        write(&mut msg, 2..4, &[0xab, 0xcd]);
        assert_eq!(msg, [0, 0, 0xab, 0xcd, 0, 0]);
        assert_eq!(read::<2>(&msg, 2..4), [0xab, 0xcd]);
        write(&mut msg, 5..9, &[1, 2, 3, 4]);
        assert_eq!(
            msg,
            [0, 0, 0xab, 0xcd, 0, 0],
            "a range past the end writes nothing"
        );
        assert_eq!(read::<4>(&msg, 5..9), [0; 4], "and reads zeros");
    }
}
