//! The TCP status scanner under arbitrary chunking.
//!
//! Input: byte 0 gives how many chunk-size bytes follow (1..=8); those sizes are cycled over
//! (0 = an empty read); the rest is the stream. The messages found when feeding it in those
//! chunks must equal those of a one-shot feed and those of a naive reference of the rule of
//! docs/protocol.md 6.2 written here.
#![no_main]

use btest_rs::proto::{STATUS_LEN, StatusMessage, StatusScanner};
use libfuzzer_sys::fuzz_target;

/// Section 6.2 over the whole stream: at each offset, 12 bytes `07`, cpu (low 7 bits at most
/// 100), `00`, `00` are a message and scanning resumes after it; otherwise move one byte on.
fn reference(stream: &[u8]) -> Vec<(usize, StatusMessage)> {
    let mut out = Vec::new();
    let mut k = 0;
    while k + STATUS_LEN <= stream.len() {
        let b = &stream[k..k + STATUS_LEN];
        if b[0] == 0x07 && (b[1] & 0x7f) <= 100 && b[2] == 0 && b[3] == 0 {
            out.push((
                k + STATUS_LEN,
                StatusMessage {
                    cpu: b[1] & 0x7f,
                    seq: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                    bytes_received: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
                },
            ));
            k += STATUS_LEN;
        } else {
            k += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8) + 1;
    if rest.len() < n {
        return;
    }
    let (sizes, stream) = rest.split_at(n);

    // Chunked: remember where in the stream each message's read ended.
    let mut scanner = StatusScanner::new();
    let mut chunked: Vec<(usize, StatusMessage)> = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < stream.len() {
        let size = usize::from(sizes[i % sizes.len()]);
        i += 1;
        let end = (pos + size).min(stream.len());
        let mut found = Vec::new();
        scanner.feed(&stream[pos..end], |m| found.push(m));
        chunked.extend(found.into_iter().map(|m| (end, m)));
        pos = end;
        if i > 4 * stream.len() + 16 {
            break; // all sizes zero: nothing more will be read
        }
    }
    let chunked_msgs: Vec<StatusMessage> = chunked.iter().map(|&(_, m)| m).collect();

    let mut one_shot = Vec::new();
    StatusScanner::new().feed(stream, |m| one_shot.push(m));

    let expected = reference(stream);
    let expected_msgs: Vec<StatusMessage> = expected.iter().map(|&(_, m)| m).collect();
    assert_eq!(
        one_shot, expected_msgs,
        "one-shot feed differs from the reference"
    );
    if pos == stream.len() {
        assert_eq!(
            chunked_msgs, expected_msgs,
            "chunked feed differs from the reference"
        );
        // Each message is reported by the read that holds its last byte.
        for (&(read_end, _), &(msg_end, _)) in chunked.iter().zip(&expected) {
            assert!(
                msg_end <= read_end,
                "message reported before its last byte was read"
            );
        }
    }
    for m in &expected_msgs {
        assert_eq!(StatusMessage::decode(&m.encode()), Some(*m));
    }
});
