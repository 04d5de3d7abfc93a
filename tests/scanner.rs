//! Unit tests of the TCP status scanner: every way a message can straddle reads, near misses
//! that must not match, and randomized streams against a naive reference of the rule in the
//! protocol document (section 6.2).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use btest_rs::proto::{STATUS_LEN, StatusMessage, StatusScanner};

fn msg(cpu: u8, seq: u32, bytes_received: u32) -> StatusMessage {
    StatusMessage {
        cpu,
        seq,
        bytes_received,
    }
}

/// RouterOS-server form: top bit of the CPU byte clear.
fn routeros(m: StatusMessage) -> [u8; STATUS_LEN] {
    let mut b = m.encode();
    b[1] &= 0x7f;
    b
}

fn scan(reads: &[&[u8]]) -> Vec<StatusMessage> {
    let mut s = StatusScanner::new();
    let mut out = Vec::new();
    for r in reads {
        s.feed(r, |m| out.push(m));
    }
    out
}

fn scan_one(data: &[u8]) -> Vec<StatusMessage> {
    scan(&[data])
}

fn scan_bytewise(data: &[u8]) -> Vec<StatusMessage> {
    let reads: Vec<&[u8]> = data.chunks(1).collect();
    scan(&reads)
}

fn with_message_at(len: usize, at: usize, m: &[u8; STATUS_LEN]) -> Vec<u8> {
    let mut v = vec![0u8; len];
    v[at..at + STATUS_LEN].copy_from_slice(m);
    v
}

const M1: StatusMessage = StatusMessage {
    cpu: 12,
    seq: 1,
    bytes_received: 1_250_000,
};
const M2: StatusMessage = StatusMessage {
    cpu: 40,
    seq: 2,
    bytes_received: 2_500_000,
};

#[test]
fn start_middle_end_of_buffer() {
    let m = M1.encode();
    for at in [0, 37, 100 - STATUS_LEN] {
        let data = with_message_at(100, at, &m);
        assert_eq!(scan_one(&data), vec![M1], "at {at}");
        assert_eq!(scan_bytewise(&data), vec![M1], "bytewise at {at}");
    }
    assert_eq!(scan_one(&m), vec![M1], "exactly one message, nothing else");
}

#[test]
fn split_at_every_point_found_once() {
    for lead in [0usize, 1, 5, 30] {
        let data = with_message_at(lead + STATUS_LEN + 20, lead, &M2.encode());
        for split in 1..=11 {
            let cut = lead + split;
            let found = scan(&[&data[..cut], &data[cut..]]);
            assert_eq!(found, vec![M2], "lead {lead} split {split}");
            // And with the message ending exactly at the second read's end.
            let end = lead + STATUS_LEN;
            let found = scan(&[&data[..cut], &data[cut..end], &data[end..]]);
            assert_eq!(found, vec![M2], "lead {lead} split {split} tight");
        }
    }
}

#[test]
fn split_into_tiny_reads() {
    let data = with_message_at(40, 13, &M1.encode());
    assert_eq!(scan_bytewise(&data), vec![M1]);
    for size in 2..=5 {
        let reads: Vec<&[u8]> = data.chunks(size).collect();
        assert_eq!(scan(&reads), vec![M1], "chunks of {size}");
    }
    // Three reads inside the message: 3 + 2 + 7.
    let m = M1.encode();
    assert_eq!(scan(&[&m[..3], &m[3..5], &m[5..]]), vec![M1]);
    // Empty reads in between change nothing.
    assert_eq!(scan(&[&m[..3], &[], &m[3..5], &[], &m[5..]]), vec![M1]);
}

#[test]
fn two_messages_in_one_read_and_back_to_back() {
    let mut data = with_message_at(80, 10, &M1.encode());
    data[50..62].copy_from_slice(&M2.encode());
    assert_eq!(scan_one(&data), vec![M1, M2]);
    assert_eq!(scan_bytewise(&data), vec![M1, M2]);

    let m3 = msg(100, 3, 0);
    let mut b2b = Vec::new();
    for m in [M1, M2, m3] {
        b2b.extend_from_slice(&m.encode());
    }
    assert_eq!(scan_one(&b2b), vec![M1, M2, m3]);
    assert_eq!(scan_bytewise(&b2b), vec![M1, M2, m3]);
    for split in 1..b2b.len() {
        assert_eq!(
            scan(&[&b2b[..split], &b2b[split..]]),
            vec![M1, M2, m3],
            "split {split}"
        );
    }
}

#[test]
fn near_misses_are_not_messages() {
    // CPU 101, with and without the top bit.
    for cpu_byte in [101u8, 0x80 | 101, 0x7f, 0xff] {
        let mut d = vec![0u8; 40];
        d[5] = 0x07;
        d[6] = cpu_byte;
        assert_eq!(scan_one(&d), vec![], "cpu byte {cpu_byte:#x}");
        assert_eq!(scan_bytewise(&d), vec![], "cpu byte {cpu_byte:#x}");
    }
    // Byte 2 or byte 3 not zero.
    for (i, b) in [(2usize, 1u8), (3, 1), (2, 0xff), (3, 0x80)] {
        let mut d = vec![0u8; 40];
        d[5] = 0x07;
        d[6] = 0x80;
        d[5 + i] = b;
        assert_eq!(scan_one(&d), vec![], "byte {i} = {b:#x}");
        assert_eq!(scan_bytewise(&d), vec![], "bytewise byte {i} = {b:#x}");
    }
    // The breaking byte is itself 07, followed by zeros: the candidate fails, and a real
    // (all-zero) message starts at that 07.
    for i in [2usize, 3] {
        let mut d = vec![0u8; 40];
        d[5] = 0x07;
        d[6] = 0x80;
        d[5 + i] = 0x07;
        assert_eq!(scan_one(&d), vec![msg(0, 0, 0)], "overlap at byte {i}");
        assert_eq!(
            scan_bytewise(&d),
            vec![msg(0, 0, 0)],
            "bytewise overlap {i}"
        );
    }
}

#[test]
fn trailing_07_that_turns_out_not_to_be_a_message() {
    let mut r1 = vec![0u8; 20];
    r1[19] = 0x07;
    // Next read breaks the pattern at once, then carries a real message later.
    let mut r2 = vec![0x65u8, 0, 0];
    r2.extend_from_slice(&[0; 5]);
    r2.extend_from_slice(&M1.encode());
    assert_eq!(scan(&[&r1, &r2]), vec![M1]);
    // Pattern broken only at byte 3, delivered one byte at a time.
    let r2 = [0x80u8, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut reads: Vec<&[u8]> = vec![&r1];
    reads.extend(r2.chunks(1));
    assert_eq!(scan(&reads), vec![]);
    // A trailing 07 whose successor is the start of a real message.
    let mut r2 = M2.encode().to_vec();
    r2.extend_from_slice(&[0; 4]);
    assert_eq!(scan(&[&r1, &r2]), vec![M2]);
}

#[test]
fn false_start_in_carry_then_real_message_from_later_carried_byte() {
    // The read ends "07 07": both could start a message. The next read "05 00 00 ..." breaks
    // the first (byte 2 = 05) but completes the second: 07 05 00 00 + 8 bytes.
    let r1 = [0u8, 0, 0, 0x07, 0x07];
    let mut r2 = vec![0x05u8, 0x00, 0x00];
    r2.extend_from_slice(&9u32.to_le_bytes());
    r2.extend_from_slice(&777u32.to_le_bytes());
    r2.extend_from_slice(&[0; 10]);
    let want = vec![msg(5, 9, 777)];
    assert_eq!(scan(&[&r1, &r2]), want);
    // Same, with the second read itself split after one byte and after three.
    assert_eq!(scan(&[&r1, &r2[..1], &r2[1..]]), want);
    assert_eq!(scan(&[&r1, &r2[..3], &r2[3..]]), want);
    let mut all = r1.to_vec();
    all.extend_from_slice(&r2);
    assert_eq!(scan_bytewise(&all), want);
    assert_eq!(scan_one(&all), want);
}

#[test]
fn carried_false_start_then_message_at_start_of_next_read() {
    let r1 = [0u8, 0, 0x07];
    let mut r2 = M1.encode().to_vec();
    r2.extend_from_slice(&[0; 3]);
    // 07 | 07 8c 00 00 ...: the carried 07 fails at its byte 2 (8c), the read's own 07 matches.
    assert_eq!(scan(&[&r1, &r2]), vec![M1]);
}

#[test]
fn routeros_form_top_bit_clear() {
    let m = msg(30, 7, 125_000);
    let b = routeros(m);
    assert_eq!(b[1], 30);
    let data = with_message_at(64, 16, &b);
    assert_eq!(scan_one(&data), vec![m]);
    assert_eq!(scan_bytewise(&data), vec![m]);
    let zero = msg(0, 1, 45_362_624);
    let data = with_message_at(64, 0, &routeros(zero));
    for split in 1..=11 {
        assert_eq!(scan(&[&data[..split], &data[split..]]), vec![zero]);
    }
}

#[test]
fn pattern_inside_fields_is_skipped() {
    // seq = 7 and bytes = 7: both fields read 07 00 00 00.
    let m = msg(0, 7, 7);
    let b = routeros(m);
    assert_eq!(&b[4..8], &[7, 0, 0, 0]);
    assert_eq!(&b[8..12], &[7, 0, 0, 0]);
    let data = with_message_at(40, 4, &b);
    assert_eq!(scan_one(&data), vec![m]);
    assert_eq!(scan_bytewise(&data), vec![m]);
    for split in 1..=11 {
        assert_eq!(scan(&[&data[..4 + split], &data[4 + split..]]), vec![m]);
    }
    // Fields that look like a message start followed by bytes that complete one: still only
    // the outer message, scanning resumes at k + 12.
    let m = msg(5, 0x0000_0007, 0x0000_6407);
    let b = m.encode();
    let mut data = b.to_vec();
    data.extend_from_slice(&[0; 12]);
    assert_eq!(scan_one(&data), vec![m]);
    assert_eq!(scan_bytewise(&data), vec![m]);
}

/// Tiny xorshift PRNG: deterministic, no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn message(&mut self) -> [u8; STATUS_LEN] {
        let m = msg(
            self.below(101) as u8,
            self.next() as u32,
            self.next() as u32,
        );
        if self.below(2) == 0 {
            m.encode()
        } else {
            routeros(m)
        }
    }
}

/// Feeds `data` in random chunk sizes (including empty reads).
fn scan_random_chunks(rng: &mut Rng, data: &[u8], max_chunk: usize) -> Vec<StatusMessage> {
    let mut s = StatusScanner::new();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let n = rng.below(max_chunk + 1).min(data.len() - pos);
        s.feed(&data[pos..pos + n], |m| out.push(m));
        pos += n;
    }
    out
}

#[test]
fn random_zero_streams_with_inserted_messages() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..500 {
        let n = rng.below(8);
        let len = n * STATUS_LEN + rng.below(400);
        // Choose n non-overlapping offsets: spread the free bytes into n + 1 gaps.
        let free = len - n * STATUS_LEN;
        let mut cuts: Vec<usize> = (0..n).map(|_| rng.below(free + 1)).collect();
        cuts.sort_unstable();
        let mut data = vec![0u8; len];
        let mut want = Vec::new();
        for (i, &c) in cuts.iter().enumerate() {
            let at = c + i * STATUS_LEN;
            let b = rng.message();
            data[at..at + STATUS_LEN].copy_from_slice(&b);
            want.push(StatusMessage::decode(&b).unwrap());
        }
        let max_chunk = [1, 3, 11, 12, 13, 64, 1000][rng.below(7)];
        let got = scan_random_chunks(&mut rng, &data, max_chunk);
        assert_eq!(got, want, "round {round}, max chunk {max_chunk}");
    }
}

/// The rule of section 6.2, written as plainly as possible over the whole stream.
fn reference(stream: &[u8]) -> Vec<StatusMessage> {
    let mut out = Vec::new();
    let mut k = 0;
    while k + STATUS_LEN <= stream.len() {
        let w = &stream[k..k + STATUS_LEN];
        if w[0] == 0x07 && (w[1] & 0x7f) <= 100 && w[2] == 0 && w[3] == 0 {
            out.push(msg(
                w[1] & 0x7f,
                u32::from_le_bytes([w[4], w[5], w[6], w[7]]),
                u32::from_le_bytes([w[8], w[9], w[10], w[11]]),
            ));
            k += STATUS_LEN;
        } else {
            k += 1;
        }
    }
    out
}

#[test]
fn adversarial_bytes_match_reference() {
    // Bytes drawn mostly from the pattern's own alphabet, so near misses and overlapping
    // candidates are common.
    const ALPHABET: [u8; 9] = [0x07, 0x07, 0x00, 0x00, 0x00, 0x64, 0x65, 0xe4, 0x80];
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for round in 0..2000 {
        let len = rng.below(200);
        let data: Vec<u8> = (0..len)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect();
        let want = reference(&data);
        let max_chunk = [1, 2, 5, 11, 12, 13, 50][rng.below(7)];
        let got = scan_random_chunks(&mut rng, &data, max_chunk);
        assert_eq!(
            got, want,
            "round {round}, max chunk {max_chunk}, data {data:02x?}"
        );
    }
}
