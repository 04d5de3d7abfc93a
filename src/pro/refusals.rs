//! Refusals, failed logins and unknown join tokens, aggregated per address (IPv6: prefix),
//! outcome and minute: the first of each writes a session row at once, the rest of that
//! minute only count, and the row's detail gets the count when the minute ends. An
//! unauthenticated peer can thus add at most one row per minute and outcome, and at most
//! [`MAX_KEYS`] addresses a minute are recorded at all (the rest are counted in `/metrics`).

use std::collections::HashMap;
use std::net::IpAddr;

use super::writer::SessionRow;

/// Addresses and outcomes recorded per minute at most.
pub(crate) const MAX_KEYS: usize = 1024;

/// What to do with one refusal.
#[derive(Debug, Clone)]
pub(crate) enum Note {
    /// The first of its minute: write this row.
    First(SessionRow),
    /// Counted into an existing row.
    Repeat,
    /// Too many distinct addresses this minute: not recorded.
    Dropped,
}

/// A row whose refusals repeated, to be completed when its minute ends.
#[derive(Debug, Clone)]
pub struct Repeated {
    /// The row.
    pub id: SessionRow,
    /// Refusals in the minute, the first included.
    pub count: u64,
    /// The last refusal's detail.
    pub detail: String,
    /// When the last one came, Unix milliseconds.
    pub last_ms: i64,
}

#[derive(Debug)]
struct Entry {
    id: SessionRow,
    count: u64,
    detail: String,
    last_ms: i64,
}

/// The current minute's refusals.
#[derive(Debug, Default)]
pub(crate) struct RefusalBook {
    minute: i64,
    entries: HashMap<(IpAddr, &'static str), Entry>,
}

impl RefusalBook {
    /// Counts a refusal of `key` with `outcome` at `now_ms`. Returns what to write, and the
    /// rows of an ended minute that need their counts.
    pub(crate) fn note(
        &mut self,
        key: IpAddr,
        outcome: &'static str,
        detail: &str,
        now_ms: i64,
    ) -> (Note, Vec<Repeated>) {
        let minute = now_ms.div_euclid(60_000);
        let ended = if minute != self.minute {
            self.minute = minute;
            self.drain()
        } else {
            Vec::new()
        };
        if let Some(e) = self.entries.get_mut(&(key, outcome)) {
            e.count += 1;
            e.last_ms = now_ms;
            detail.clone_into(&mut e.detail);
            return (Note::Repeat, ended);
        }
        if self.entries.len() >= MAX_KEYS {
            return (Note::Dropped, ended);
        }
        let id = SessionRow::default();
        self.entries.insert(
            (key, outcome),
            Entry {
                id: id.clone(),
                count: 1,
                detail: detail.to_owned(),
                last_ms: now_ms,
            },
        );
        (Note::First(id), ended)
    }

    /// Every row that saw more than one refusal (at a minute's end or at shutdown).
    pub(crate) fn drain(&mut self) -> Vec<Repeated> {
        self.entries
            .drain()
            .filter(|(_, e)| e.count > 1)
            .map(|(_, e)| Repeated {
                id: e.id,
                count: e.count,
                detail: e.detail,
                last_ms: e.last_ms,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(note: Note) -> SessionRow {
        match note {
            Note::First(row) => row,
            other => panic!("{other:?} is not a first refusal"),
        }
    }

    #[test]
    fn one_row_per_address_outcome_and_minute() {
        let mut book = RefusalBook::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t = 60_000 * 1000;
        let row = first(book.note(a, "refused", "x", t).0);
        for _ in 0..100 {
            assert!(matches!(
                book.note(a, "refused", "y", t + 5).0,
                Note::Repeat
            ));
        }
        first(book.note(a, "auth_failed", "z", t).0);
        first(book.note(b, "refused", "x", t).0);
        let (note, ended) = book.note(a, "refused", "x", t + 60_000);
        first(note);
        assert_eq!(ended.len(), 1);
        let r = &ended[0];
        assert!(std::sync::Arc::ptr_eq(&r.id, &row));
        assert_eq!((r.count, r.detail.as_str(), r.last_ms), (101, "y", t + 5));
    }

    #[test]
    fn distinct_addresses_per_minute_are_bounded() {
        let mut book = RefusalBook::default();
        let mut dropped = 0;
        for i in 0..(MAX_KEYS as u32 + 10) {
            if matches!(
                book.note(IpAddr::from(i.to_be_bytes()), "refused", "", 0).0,
                Note::Dropped
            ) {
                dropped += 1;
            }
        }
        assert_eq!(dropped, 10);
    }
}
