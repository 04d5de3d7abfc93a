//! The one writer: every database write of the server goes through a channel to this thread,
//! which batches whatever is waiting into one transaction. Nothing on a data path waits for
//! SQLite; sessions only `send` on an unbounded channel.
//!
//! Usage is sent once per interval (one second), and the writer commits as soon as it has
//! something, so `kill -9` loses at most the last second of usage.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use rusqlite::Connection;

use super::db::{DbError, sql};
use super::quota::{BUCKET_SECS, Kind};
use crate::log_error;

/// Most operations folded into one transaction.
const MAX_BATCH: usize = 20_000;

/// A finished (or refused) session's row.
#[derive(Debug, Clone, Default)]
pub struct SessionEnd {
    /// Session id.
    pub id: i64,
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
    /// Session id.
    pub id: i64,
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
        /// Session id.
        session: i64,
        /// Interval number.
        idx: u32,
        /// Unix milliseconds.
        at_ms: i64,
        /// Bytes the server received.
        bytes_in: u64,
        /// Bytes the server sent.
        bytes_out: u64,
    },
    /// Replies once everything sent before it is committed.
    Flush(Sender<()>),
    /// Commit what is queued and end the thread.
    Stop,
}

/// Handle of the writer thread.
pub struct Writer {
    tx: Sender<Op>,
    thread: Option<JoinHandle<u64>>,
}

impl Writer {
    /// Starts the writer on its own connection.
    pub fn start(conn: Connection) -> std::io::Result<Writer> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("btest-db-writer".into())
            .spawn(move || run(&conn, &rx))?;
        Ok(Writer {
            tx,
            thread: Some(thread),
        })
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

fn run(conn: &Connection, rx: &Receiver<Op>) -> u64 {
    let mut written = 0u64;
    let mut batch = Vec::with_capacity(1024);
    loop {
        let Ok(first) = rx.recv() else {
            return written;
        };
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
        match commit(conn, &mut batch) {
            Ok(n) => written += n,
            Err(e) => log_error!("{e}; {} queued writes lost", batch.len()),
        }
        for op in batch.drain(..) {
            if let Op::Flush(reply) = op {
                let _ = reply.send(());
            }
        }
        if stop {
            return written;
        }
    }
}

/// Writes a batch in one transaction; usage of one bucket is summed first so a busy second
/// is one upsert per subject, not one per session.
fn commit(conn: &Connection, batch: &mut [Op]) -> Result<u64, DbError> {
    let mut usage: HashMap<(Kind, Arc<str>, i64), (u64, u64)> = HashMap::new();
    let tx = conn
        .unchecked_transaction()
        .map_err(sql("starting a write transaction"))?;
    let mut rows = 0u64;
    {
        let mut start = tx
            .prepare_cached(
                "INSERT INTO sessions (id, start_ms, peer, user, proto, direction, auth, outcome, \
                 detail, end_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                 CASE WHEN ?8 = 'running' THEN NULL ELSE ?2 END)",
            )
            .map_err(sql("preparing"))?;
        let mut end = tx
            .prepare_cached(
                "UPDATE sessions SET end_ms = ?2, connections = ?3, bytes_in = ?4, bytes_out = ?5, \
                 avg_in_bps = ?6, avg_out_bps = ?7, outcome = ?8, detail = ?9 WHERE id = ?1",
            )
            .map_err(sql("preparing"))?;
        let mut interval = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO session_intervals (session_id, idx, at_ms, bytes_in, \
                 bytes_out) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(sql("preparing"))?;
        for op in batch.iter() {
            match op {
                Op::Usage {
                    kind,
                    subject,
                    at,
                    bytes_in,
                    bytes_out,
                } => {
                    let e = usage
                        .entry((*kind, subject.clone(), at.div_euclid(BUCKET_SECS)))
                        .or_default();
                    e.0 += bytes_in;
                    e.1 += bytes_out;
                }
                Op::Start(s) => {
                    start
                        .execute((
                            s.id,
                            s.start_ms,
                            &s.peer,
                            &s.user,
                            s.proto,
                            s.direction,
                            s.auth,
                            s.outcome,
                            &s.detail,
                        ))
                        .map_err(sql("recording a session"))?;
                    rows += 1;
                }
                Op::End(s) => {
                    end.execute((
                        s.id,
                        s.end_ms,
                        s.connections,
                        clamp(s.bytes_in),
                        clamp(s.bytes_out),
                        s.avg_in_bps,
                        s.avg_out_bps,
                        s.outcome,
                        &s.detail,
                    ))
                    .map_err(sql("recording a session's end"))?;
                    rows += 1;
                }
                Op::Interval {
                    session,
                    idx,
                    at_ms,
                    bytes_in,
                    bytes_out,
                } => {
                    interval
                        .execute((session, idx, at_ms, clamp(*bytes_in), clamp(*bytes_out)))
                        .map_err(sql("recording an interval"))?;
                    rows += 1;
                }
                Op::Flush(_) | Op::Stop => {}
            }
        }
        let mut up = tx
            .prepare_cached(
                "INSERT INTO usage (kind, subject, bucket, bytes_in, bytes_out) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (kind, subject, bucket) DO UPDATE SET \
                 bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out",
            )
            .map_err(sql("preparing"))?;
        for ((kind, subject, bucket), (i, o)) in &usage {
            up.execute((kind.name(), &**subject, bucket, clamp(*i), clamp(*o)))
                .map_err(sql("recording usage"))?;
            rows += 1;
        }
    }
    tx.commit().map_err(sql("committing"))?;
    Ok(rows)
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
