//! How the writer stores one batch: a transaction in which every write has its own savepoint,
//! so one failed write costs only itself, and the writes that failed (or all of them, if the
//! commit fails) come back to be tried again. Usage of one subject and bucket is summed first,
//! so a busy second is one upsert per subject, not one per session.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::Connection;

use super::db::{DbError, sql};
use super::quota::{BUCKET_SECS, Kind};
use super::writer::{Op, RowId};

/// What became of a batch.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// Rows written.
    pub rows: u64,
    /// Writes that failed, to be tried again.
    pub failed: Vec<Op>,
    /// How many writes failed.
    pub failures: u64,
    /// The first error.
    pub error: Option<String>,
}

impl Applied {
    fn fail(&mut self, op: Op, e: &dyn std::fmt::Display) {
        self.failures += 1;
        if self.error.is_none() {
            self.error = Some(e.to_string());
        }
        self.failed.push(op);
    }
}

const START: &str = "INSERT INTO sessions (start_ms, peer, user, proto, direction, auth, \
    outcome, detail, end_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
    CASE WHEN ?7 = 'running' THEN NULL ELSE ?1 END)";
const END: &str = "UPDATE sessions SET end_ms = ?2, connections = ?3, bytes_in = ?4, \
    bytes_out = ?5, avg_in_bps = ?6, avg_out_bps = ?7, outcome = ?8, detail = ?9 WHERE id = ?1";
const INTERVAL: &str = "INSERT OR REPLACE INTO session_intervals (session_id, idx, at_ms, \
    bytes_in, bytes_out) VALUES (?1, ?2, ?3, ?4, ?5)";
const REPEATS: &str = "UPDATE sessions SET detail = ?2, end_ms = ?3 WHERE id = ?1";
const USAGE: &str = "INSERT INTO usage (kind, subject, bucket, bytes_in, bytes_out) \
    VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (kind, subject, bucket) DO UPDATE SET \
    bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out";

/// Writes `ops`; see the module documentation.
pub(crate) fn apply(conn: &Connection, ops: impl Iterator<Item = Op>) -> Applied {
    let mut out = Applied::default();
    let mut usage: HashMap<(Kind, Arc<str>, i64), (u64, u64)> = HashMap::new();
    let mut others = Vec::new();
    for op in ops {
        match op {
            Op::Usage {
                kind,
                subject,
                at,
                bytes_in,
                bytes_out,
            } => {
                let e = usage
                    .entry((kind, subject, at.div_euclid(BUCKET_SECS)))
                    .or_default();
                e.0 += bytes_in;
                e.1 += bytes_out;
            }
            Op::Flush(_) | Op::Stop => {}
            op => others.push(op),
        }
    }
    let usage_ops = usage
        .into_iter()
        .map(|((kind, subject, bucket), (i, o))| Op::Usage {
            kind,
            subject,
            at: bucket * BUCKET_SECS,
            bytes_in: i,
            bytes_out: o,
        });
    let all: Vec<Op> = others.into_iter().chain(usage_ops).collect();
    if let Err(e) = conn.execute_batch("BEGIN") {
        for op in all {
            out.fail(op, &e);
        }
        return out;
    }
    let mut done = Vec::with_capacity(all.len());
    for op in all {
        match one(conn, &op) {
            Ok(()) => done.push(op),
            Err(e) => out.fail(op, &e),
        }
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        for op in done {
            // The rolled-back rows' ids are free again: the retry inserts them afresh.
            if let Op::Start(s) = &op {
                s.id.set(0);
            }
            out.fail(op, &e);
        }
        return out;
    }
    out.rows = done.len() as u64;
    out
}

/// Why one write failed.
#[derive(Debug)]
enum WriteError {
    /// SQLite refused it.
    Sql(rusqlite::Error),
    /// It names a session whose row is not stored yet (its insert failed and is held): it
    /// waits behind the insert.
    NoRowYet,
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Sql(e)
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Sql(e) => write!(f, "{e}"),
            WriteError::NoRowYet => f.write_str("the session's row is not stored yet"),
        }
    }
}

fn row_id(row: &RowId) -> Result<i64, WriteError> {
    row.get().ok_or(WriteError::NoRowYet)
}

/// One write in its own savepoint: undone alone if it fails.
fn one(conn: &Connection, op: &Op) -> Result<(), WriteError> {
    conn.execute_batch("SAVEPOINT w")?;
    let result = write(conn, op);
    match &result {
        Ok(()) => conn.execute_batch("RELEASE w")?,
        Err(_) => {
            let _ = conn.execute_batch("ROLLBACK TO w; RELEASE w");
        }
    }
    result
}

fn write(conn: &Connection, op: &Op) -> Result<(), WriteError> {
    match op {
        Op::Usage {
            kind,
            subject,
            at,
            bytes_in,
            bytes_out,
        } => conn.prepare_cached(USAGE)?.execute((
            kind.name(),
            &**subject,
            at.div_euclid(BUCKET_SECS),
            clamp(*bytes_in),
            clamp(*bytes_out),
        )),
        Op::Start(s) => {
            conn.prepare_cached(START)?.execute((
                s.start_ms,
                &s.peer,
                &s.user,
                s.proto,
                s.direction,
                s.auth,
                s.outcome,
                &s.detail,
            ))?;
            s.id.set(conn.last_insert_rowid());
            Ok(1)
        }
        Op::End(s) => conn.prepare_cached(END)?.execute((
            row_id(&s.id)?,
            s.end_ms,
            s.connections,
            clamp(s.bytes_in),
            clamp(s.bytes_out),
            s.avg_in_bps,
            s.avg_out_bps,
            s.outcome,
            &s.detail,
        )),
        Op::Interval {
            session,
            idx,
            at_ms,
            bytes_in,
            bytes_out,
        } => conn.prepare_cached(INTERVAL)?.execute((
            row_id(session)?,
            idx,
            at_ms,
            clamp(*bytes_in),
            clamp(*bytes_out),
        )),
        Op::Repeats(r) => conn.prepare_cached(REPEATS)?.execute((
            row_id(&r.id)?,
            format!("{} ({} times in this minute)", r.detail, r.count),
            r.last_ms,
        )),
        Op::Flush(_) | Op::Stop => Ok(0),
    }
    .map(drop)
    .map_err(WriteError::from)
}

/// Usage buckets are kept at least this long whatever the history setting: monthly budgets
/// are sums of the month's buckets.
const MIN_USAGE_DAYS: u32 = 40;

/// Deletes sessions and their intervals older than `keep_days`, and usage buckets older than
/// that or [`MIN_USAGE_DAYS`], whichever is longer; returns the rows deleted.
pub(crate) fn prune(conn: &Connection, keep_days: u32) -> Result<usize, DbError> {
    let now_ms = super::quota::unix_ms();
    let cutoff_ms = now_ms - i64::from(keep_days) * 86_400_000;
    let usage_days = i64::from(keep_days.max(MIN_USAGE_DAYS));
    let bucket = (now_ms / 1000 - usage_days * 86_400) / BUCKET_SECS;
    let mut n = conn
        .execute(
            "DELETE FROM session_intervals WHERE session_id IN \
             (SELECT id FROM sessions WHERE start_ms < ?1 AND outcome != 'running')",
            [cutoff_ms],
        )
        .map_err(sql("pruning intervals"))?;
    n += conn
        .execute(
            "DELETE FROM sessions WHERE start_ms < ?1 AND outcome != 'running'",
            [cutoff_ms],
        )
        .map_err(sql("pruning sessions"))?;
    n += conn
        .execute("DELETE FROM usage WHERE bucket < ?1", [bucket])
        .map_err(sql("pruning usage"))?;
    Ok(n)
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pro::writer::{SessionRow, SessionStart};

    #[test]
    fn a_failed_write_costs_only_itself() {
        let conn = Connection::open_in_memory().unwrap();
        // No session_intervals table: an interval is the write that fails.
        conn.execute_batch(
            "CREATE TABLE sessions (id INTEGER PRIMARY KEY AUTOINCREMENT, \
             start_ms INTEGER NOT NULL, end_ms INTEGER, peer TEXT NOT NULL, user TEXT, \
             proto TEXT, direction TEXT, auth TEXT NOT NULL, outcome TEXT NOT NULL, \
             detail TEXT); \
             CREATE TABLE usage (kind TEXT, subject TEXT, bucket INTEGER, bytes_in INTEGER, \
             bytes_out INTEGER, PRIMARY KEY (kind, subject, bucket));",
        )
        .unwrap();
        let (a, b) = (SessionRow::default(), SessionRow::default());
        let usage = Op::Usage {
            kind: Kind::Ip,
            subject: Arc::from("192.0.2.1"),
            at: 1000,
            bytes_in: 5,
            bytes_out: 6,
        };
        let interval = Op::Interval {
            session: a.clone(),
            idx: 1,
            at_ms: 0,
            bytes_in: 1,
            bytes_out: 1,
        };
        let ops = vec![start(&a), interval, usage, start(&b)];
        let out = apply(&conn, ops.into_iter());
        assert_eq!(out.rows, 3);
        assert_eq!(out.failures, 1);
        assert!(matches!(out.failed.as_slice(), [Op::Interval { .. }]));
        assert_eq!(
            (a.get(), b.get()),
            (Some(1), Some(2)),
            "ids come from SQLite"
        );
        let bytes: i64 = conn
            .query_row("SELECT bytes_out FROM usage", [], |r| r.get(0))
            .unwrap();
        assert_eq!(bytes, 6);
    }

    fn start(row: &SessionRow) -> Op {
        Op::Start(SessionStart {
            id: row.clone(),
            peer: "192.0.2.1".into(),
            auth: "none",
            outcome: "running",
            ..SessionStart::default()
        })
    }

    /// Session ids are SQLite's: after history is pruned to nothing, a new session still
    /// gets a new id, so an old link to `/api/session/{id}` never shows another test.
    #[test]
    fn session_ids_are_never_handed_out_twice() {
        let path = std::env::temp_dir().join(format!("btest-ids-{}.db", std::process::id()));
        let clean = || {
            for s in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{s}", path.display()));
            }
        };
        clean();
        let conn = crate::pro::db::Db::open(&path)
            .unwrap()
            .connection()
            .unwrap();
        let first = SessionRow::default();
        assert_eq!(apply(&conn, [start(&first)].into_iter()).failures, 0);
        let end = Op::End(crate::pro::writer::SessionEnd {
            id: first.clone(),
            outcome: "completed",
            ..Default::default()
        });
        assert_eq!(apply(&conn, [end].into_iter()).failures, 0);
        conn.execute("DELETE FROM sessions", []).unwrap();
        let second = SessionRow::default();
        assert_eq!(apply(&conn, [start(&second)].into_iter()).failures, 0);
        assert_eq!((first.get(), second.get()), (Some(1), Some(2)));
        clean();
    }
}
