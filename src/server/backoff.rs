//! Back-off for password guessing: after [`FAILURES`] failed logins within [`WINDOW`], from one
//! address (or IPv6 prefix) or for one user name, that address is refused at accept, and that
//! user name fails authentication, for a time that doubles with each new block.
//!
//! The user block is capped much lower than the address block: anyone can fail logins for
//! someone else's name, so a long user block would let a stranger lock a real user out. The
//! address block is what stops a guesser; the user block only slows a guesser that rotates
//! addresses. Each block is logged once, when it starts.
//!
//! The table is bounded ([`MAX_ENTRIES`]): past it, entries that are neither blocked nor
//! recently failing are forgotten first, so a flood of one-off failures cannot grow memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::handshake::printable_user;
use crate::log;

/// Failed logins within [`WINDOW`] that start a block.
pub(crate) const FAILURES: u32 = 5;
/// The window failures are counted in.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Length of the first block; each further block doubles it.
pub(crate) const FIRST_BLOCK: Duration = Duration::from_secs(10);
/// Longest block of an address.
pub(crate) const MAX_ADDR_BLOCK: Duration = Duration::from_secs(15 * 60);
/// Longest block of a user name (kept short: see the module documentation).
pub(crate) const MAX_USER_BLOCK: Duration = Duration::from_secs(60);
/// Entries kept at most.
pub(crate) const MAX_ENTRIES: usize = 4096;
/// An entry with no failure for this long is forgotten (its block history too).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Addr(IpAddr),
    User(Box<str>),
}

#[derive(Debug)]
struct Entry {
    window_start: Instant,
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
    strikes: u32,
}

/// The failure table of one server.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Backoff {
    /// How long `addr` (an address key) stays refused, if it is blocked now.
    pub(crate) fn addr_blocked(&self, addr: IpAddr) -> Option<Duration> {
        self.blocked(&Key::Addr(addr), Instant::now())
    }

    /// True while the user name `raw` (as received) is blocked.
    pub(crate) fn user_blocked(&self, raw: &[u8]) -> bool {
        !raw.is_empty()
            && self
                .blocked(&Key::User(printable_user(raw).into()), Instant::now())
                .is_some()
    }

    fn blocked(&self, key: &Key, now: Instant) -> Option<Duration> {
        let map = self.entries.lock();
        let until = map.get(key)?.blocked_until?;
        let left = until.saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }

    /// Records a failed login from `addr` (an address key) for `user` (the name as
    /// [`printable_user`] shows it; may be empty).
    pub(crate) fn failed(&self, addr: IpAddr, user: &str) {
        let now = Instant::now();
        let mut map = self.entries.lock();
        if map.len() + 2 > MAX_ENTRIES {
            sweep(&mut map, now);
        }
        if let Some(block) = record(&mut map, Key::Addr(addr), now, MAX_ADDR_BLOCK) {
            log!(
                0,
                "{addr}: {FAILURES} failed logins within {} s; refusing this address for {} s",
                WINDOW.as_secs(),
                block.as_secs()
            );
        }
        if !user.is_empty()
            && let Some(block) = record(&mut map, Key::User(user.into()), now, MAX_USER_BLOCK)
        {
            log!(
                0,
                "user {user}: {FAILURES} failed logins within {} s; refusing its logins for {} s",
                WINDOW.as_secs(),
                block.as_secs()
            );
        }
    }

    /// Entries held now (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

/// Counts one failure; returns the new block's length when this failure starts one.
fn record(
    map: &mut HashMap<Key, Entry>,
    key: Key,
    now: Instant,
    max: Duration,
) -> Option<Duration> {
    let e = map.entry(key).or_insert(Entry {
        window_start: now,
        failures: 0,
        last_failure: now,
        blocked_until: None,
        strikes: 0,
    });
    if now.duration_since(e.window_start) > WINDOW {
        e.window_start = now;
        e.failures = 0;
    }
    e.failures += 1;
    e.last_failure = now;
    if e.failures < FAILURES || e.blocked_until.is_some_and(|u| u > now) {
        return None;
    }
    let block = FIRST_BLOCK
        .saturating_mul(1u32 << e.strikes.min(16))
        .min(max);
    e.strikes += 1;
    e.failures = 0;
    e.window_start = now;
    e.blocked_until = Some(now + block);
    Some(block)
}

/// Forgets stale entries, then, if still full, every entry that is not blocked now.
fn sweep(map: &mut HashMap<Key, Entry>, now: Instant) {
    map.retain(|_, e| now.duration_since(e.last_failure) < FORGET_AFTER);
    if map.len() + 2 > MAX_ENTRIES {
        map.retain(|_, e| e.blocked_until.is_some_and(|u| u > now));
    }
    if map.len() + 2 > MAX_ENTRIES {
        map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_block_the_address_and_the_user() {
        let b = Backoff::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..FAILURES - 1 {
            b.failed(ip, "bob");
        }
        assert!(b.addr_blocked(ip).is_none());
        assert!(!b.user_blocked(b"bob"));
        b.failed(ip, "bob");
        let left = b.addr_blocked(ip).expect("blocked");
        assert!(left <= FIRST_BLOCK && left > FIRST_BLOCK / 2);
        assert!(b.user_blocked(b"bob"));
        assert!(!b.user_blocked(b"alice"));
        assert!(b.addr_blocked("192.0.2.2".parse().unwrap()).is_none());
    }

    #[test]
    fn blocks_grow_and_are_capped() {
        let mut map = HashMap::new();
        let now = Instant::now();
        let key = Key::User(Box::from("u"));
        let mut blocks = Vec::new();
        for round in 0..10u64 {
            let t = now + Duration::from_secs(round * 100_000);
            for _ in 0..FAILURES {
                if let Some(b) = record(&mut map, key.clone(), t, MAX_USER_BLOCK) {
                    blocks.push(b.as_secs());
                }
            }
        }
        assert_eq!(&blocks[..4], &[10, 20, 40, 60]);
        assert!(blocks.iter().all(|&b| b <= 60));
    }

    #[test]
    fn the_table_is_bounded() {
        let b = Backoff::default();
        for i in 0..(MAX_ENTRIES as u32 * 2) {
            b.failed(IpAddr::from(i.to_be_bytes()), "");
        }
        assert!(b.len() <= MAX_ENTRIES);
    }
}
