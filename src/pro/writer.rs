//! The one writer: every database write of the server goes through a channel to this thread,
//! which batches whatever is waiting into one transaction. Nothing on a data path waits for
//! SQLite; sessions only `send` on an unbounded channel.
//!
//! Usage is sent once per interval (one second), and the writer commits as soon as it has
//! something, so `kill -9` loses at most the last second of usage.
//!
//! A write that fails (disk full, I/O error) loses nothing: each write runs in its own
//! savepoint, the ones that failed are held in memory and tried again every second, and while
//! any are held `WriteHealth` says so and the server takes no new tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::thread::JoinHandle;

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::Connection;

use super::health::WriteHealth;
use super::quota::Kind;
use super::store;
use crate::{log, log_error};

/// History kept by default (`--history-days`).
pub const DEFAULT_HISTORY_DAYS: u32 = 90;

/// Most operations folded into one transaction.
const MAX_BATCH: usize = 20_000;

/// A session row's id, assigned by SQLite when the writer inserts the row (`sessions.id` is
/// `AUTOINCREMENT`, so an id is never handed out twice, not even after its row is pruned).
/// The session holds it from admission on; its later writes (intervals, the end) name the
/// row through it, and they are queued behind the insert, so the writer always knows it by
/// the time it needs it. Unset (0) until then.
#[derive(Debug, Default)]
pub struct RowId(AtomicI64);

/// A session's handle on its row, shared by the session and the writer.
pub type SessionRow = Arc<RowId>;

impl RowId {
    /// A handle on a row whose id is known already (tests, benches).
    pub fn known(id: i64) -> SessionRow {
        Arc::new(RowId(AtomicI64::new(id)))
    }

    /// The id, once SQLite has assigned it.
    pub fn get(&self) -> Option<i64> {
        Some(self.0.load(Ordering::Acquire)).filter(|&id| id > 0)
    }

    /// Records the id SQLite assigned (0: forget it, the insert was rolled back).
    pub(super) fn set(&self, id: i64) {
        self.0.store(id, Ordering::Release);
    }
}

impl std::fmt::Display for RowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.get() {
            Some(id) => write!(f, "{id}"),
            None => f.write_str("(not yet stored)"),
        }
    }
}

/// A finished (or refused) session's row.
#[derive(Debug, Clone, Default)]
pub struct SessionEnd {
    /// The row.
    pub id: SessionRow,
    /// End, Unix milliseconds.
    pub end_ms: i64,
    /// Connections the test ran on.
    pub connections: u32,
    /// Bytes the server received.
    pub bytes_in: u64,
    /// Bytes the server sent.
    pub bytes_out: u64,
    /// Average receive rate, bit/s.
    pub avg_in_bps: f64,
    /// Average send rate, bit/s.
    pub avg_out_bps: f64,
    /// `completed`, `quota`, `error`, ...
    pub outcome: &'static str,
    /// Free text (reason).
    pub detail: Option<String>,
}

/// A session's opening row.
#[derive(Debug, Clone, Default)]
pub struct SessionStart {
    /// The row, whose id the insert sets.
    pub id: SessionRow,
    /// Start, Unix milliseconds.
    pub start_ms: i64,
    /// Peer address.
    pub peer: String,
    /// User name, if authenticated.
    pub user: Option<String>,
    /// `tcp` or `udp`.
    pub proto: Option<&'static str>,
    /// The client's direction: `transmit`, `receive`, `both`.
    pub direction: Option<&'static str>,
    /// `none`, `md5`, `ecsrp5`.
    pub auth: &'static str,
    /// `running` for a started test, or the final outcome of a refused one.
    pub outcome: &'static str,
    /// Free text (refusal reason).
    pub detail: Option<String>,
}

/// One write.
#[derive(Debug)]
pub enum Op {
    /// Add bytes to a subject's usage bucket.
    Usage {
        /// User or address.
        kind: Kind,
        /// Name or address.
        subject: Arc<str>,
        /// Unix seconds (the bucket is derived).
        at: i64,
        /// Bytes the server received.
        bytes_in: u64,
        /// Bytes the server sent.
        bytes_out: u64,
    },
    /// A session row is created.
    Start(SessionStart),
    /// A session row is completed.
    End(SessionEnd),
    /// One interval of a session (for the dashboard's graphs).
    Interval {
        /// The session's row.
        session: SessionRow,
        /// Interval number.
        idx: u32,
        /// Unix milliseconds.
        at_ms: i64,
        /// Bytes the server received.
        bytes_in: u64,
        /// Bytes the server sent.
        bytes_out: u64,
    },
    /// Refusals of one address and minute after the first: the row's detail gets the count.
    Repeats(super::refusals::Repeated),
    /// Replies once everything sent before it is committed.
    Flush(Sender<()>),
    /// Commit what is queued and end the thread.
    Stop,
}

/// Handle of the writer thread.
pub struct Writer {
    tx: Sender<Op>,
    health: Arc<WriteHealth>,
    thread: Option<JoinHandle<u64>>,
}

impl Writer {
    /// Starts the writer on its own connection, keeping history for the default 90 days.
    pub fn start(conn: Connection) -> std::io::Result<Writer> {
        Writer::start_with(conn, DEFAULT_HISTORY_DAYS)
    }

    /// Starts the writer on its own connection; history older than `keep_days` is pruned.
    pub fn start_with(conn: Connection, keep_days: u32) -> std::io::Result<Writer> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let health = Arc::new(WriteHealth::default());
        let h = health.clone();
        let thread = std::thread::Builder::new()
            .name("btest-db-writer".into())
            .spawn(move || run(&conn, &rx, &h, keep_days))?;
        Ok(Writer {
            tx,
            health,
            thread: Some(thread),
        })
    }

    /// Whether writes succeed (shared with the admission and the HTTP side).
    pub fn health(&self) -> Arc<WriteHealth> {
        self.health.clone()
    }

    /// A sender for sessions.
    pub fn sender(&self) -> Sender<Op> {
        self.tx.clone()
    }

    /// Waits until everything sent so far is committed.
    pub fn flush(&self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.tx.send(Op::Flush(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// Commits what is queued, ends the thread and returns the rows it wrote in its life.
    pub fn shutdown(mut self) -> u64 {
        self.stop()
    }

    fn stop(&mut self) -> u64 {
        let _ = self.tx.send(Op::Stop);
        self.thread.take().map_or(0, |t| {
            t.join().unwrap_or_else(|_| {
                log_error!("database writer panicked");
                0
            })
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How often held writes are tried again while the database fails.
const RETRY: Duration = Duration::from_secs(1);

/// Interval rows held at most while the database fails (they only draw the graphs); usage
/// and session rows are always held.
const MAX_HELD_INTERVALS: usize = 10_000;

/// How often history older than the retention is deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

fn run(conn: &Connection, rx: &Receiver<Op>, health: &WriteHealth, keep_days: u32) -> u64 {
    let mut written = 0u64;
    let mut batch = Vec::with_capacity(1024);
    let mut held: Vec<Op> = Vec::new();
    let mut last_prune: Option<Instant> = None;
    loop {
        let first = if held.is_empty() {
            rx.recv().ok()
        } else {
            match rx.recv_timeout(RETRY) {
                Ok(op) => Some(op),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => Some(Op::Stop),
            }
        };
        let Some(first) = first.or_else(|| (!held.is_empty()).then_some(Op::Flush(never_reply())))
        else {
            return written;
        };
        // Held writes go first, so a session's end never lands before its start.
        batch.append(&mut held);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let stop = batch.iter().any(|op| matches!(op, Op::Stop));
        if stop {
            // Whatever was sent before the stop is in the channel now: take all of it.
            batch.extend(rx.try_iter());
        }
        let mut replies = Vec::new();
        batch.retain_mut(|op| match op {
            Op::Flush(reply) => {
                replies.push(reply.clone());
                false
            }
            Op::Stop => false,
            _ => true,
        });
        let outcome = store::apply(conn, batch.drain(..));
        written += outcome.rows;
        held = outcome.failed;
        let intervals = held
            .iter()
            .filter(|op| matches!(op, Op::Interval { .. }))
            .count();
        if intervals > MAX_HELD_INTERVALS {
            held.retain(|op| !matches!(op, Op::Interval { .. }));
        }
        health.record(outcome.failures, outcome.error, held.len());
        for reply in replies {
            let _ = reply.send(());
        }
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) && held.is_empty() {
            last_prune = Some(Instant::now());
            match store::prune(conn, keep_days) {
                Ok(0) => {}
                Ok(n) => log!(1, "database: pruned {n} rows older than {keep_days} days"),
                Err(e) => log_error!("{e}"),
            }
        }
        if stop {
            if !held.is_empty() {
                log_error!("{} writes could not be stored at shutdown", held.len());
            }
            return written;
        }
    }
}

/// A reply channel nobody listens to (a retry round has no flush to answer).
fn never_reply() -> Sender<()> {
    crossbeam_channel::bounded(1).0
}
