//! UDP header reading and loss accounting from arbitrary sequence numbers.
//!
//! Input: byte 0 is the mode, byte 1 the interval length (`take_interval` after every n-th
//! datagram; 0 = never), then the datagrams' first bytes, 4 a piece.
//! * Mode bit 7 clear ("wild"): each 4 bytes are a raw big-endian sequence number, as
//!   `read_seq` reads it; mode bits 0-6 (when not 0) also call `expire_older_than(mode * 3)`
//!   every `mode`-th datagram. Invariants checked: intervals plus finish add up to the totals,
//!   `received` counts every datagram, and the other counters stay within it.
//! * Mode bit 7 set ("tame"): each 4 bytes are a base plus a 12-bit offset, so every number is
//!   within 4096 of the others and the window never slides past one; the counts must then
//!   equal a simple set-based reference exactly.
#![no_main]

use std::collections::HashSet;

use btest_rs::proto::udp::{LossCounts, SeqTracker, read_seq, write_seq};
use libfuzzer_sys::fuzz_target;

fn add(sum: &mut LossCounts, c: &LossCounts) {
    sum.received += c.received;
    sum.lost += c.lost;
    sum.reordered += c.reordered;
    sum.duplicates += c.duplicates;
}

/// Exact counts for numbers given as offsets that never differ by a window or more.
fn reference(order: &[u64]) -> LossCounts {
    let mut c = LossCounts::default();
    let Some(&first) = order.first() else {
        return c;
    };
    let mut seen = HashSet::new();
    let mut highest = first;
    for &i in order {
        c.received += 1;
        if i < first {
            c.reordered += 1;
            continue;
        }
        if !seen.insert(i) {
            c.duplicates += 1;
            continue;
        }
        if i < highest {
            c.reordered += 1;
        }
        highest = highest.max(i);
    }
    c.lost = (first..=highest).filter(|i| !seen.contains(i)).count() as u64;
    c
}

fuzz_target!(|data: &[u8]| {
    let [mode, period, rest @ ..] = data else {
        return;
    };
    let tame = mode & 0x80 != 0;
    let expire_every = usize::from(mode & 0x7f);
    let period = usize::from(*period);
    // A base for tame mode near the wrap point half of the time.
    let base: u32 = if mode & 1 != 0 { u32::MAX - 2048 } else { 1000 };

    let mut tracker = SeqTracker::new();
    let mut sum = LossCounts::default();
    let mut offsets = Vec::new();
    let mut records = 0u64;
    for (k, chunk) in rest.chunks(4).enumerate() {
        let Some(raw) = read_seq(chunk) else {
            assert!(chunk.len() < 4);
            continue;
        };
        let mut again = [0u8; 4];
        assert!(write_seq(&mut again, raw));
        assert_eq!(&again[..], chunk);
        let seq = if tame {
            let offset = u64::from(raw & 0x0fff);
            offsets.push(offset);
            base.wrapping_add(offset as u32)
        } else {
            raw
        };
        tracker.record(seq);
        records += 1;
        if period != 0 && (k + 1) % period == 0 {
            add(&mut sum, &tracker.take_interval());
        }
        if !tame && expire_every != 0 && (k + 1) % expire_every == 0 {
            tracker.expire_older_than(expire_every as u64 * 3);
        }
        let t = tracker.totals();
        assert_eq!(t.received, records);
        assert!(t.reordered + t.duplicates <= t.received, "{t:?}");
    }
    add(&mut sum, &tracker.finish());
    let totals = tracker.totals();
    assert_eq!(
        sum, totals,
        "intervals and finish must add up to the totals"
    );
    assert_eq!(tracker.take_interval(), LossCounts::default());
    assert_eq!(tracker.totals(), totals, "finish is final");
    assert_eq!(totals.received, records);
    assert!(totals.reordered + totals.duplicates + tracker.discarded() <= totals.received);
    assert!(tracker.late_after_loss() <= totals.reordered);
    if tame {
        assert_eq!(totals, reference(&offsets), "offsets {offsets:?}");
        assert_eq!(tracker.late_after_loss(), 0);
        assert_eq!(tracker.discarded(), 0);
    }
});
