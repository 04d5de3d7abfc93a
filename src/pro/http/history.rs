//! What the HTTP side reads from the database: a subject's usage per period, session rows
//! and a session's intervals with their rates.

use std::net::IpAddr;

use rusqlite::OptionalExtension;

use super::Context;
use crate::pro::db::{DbError, sql};
use crate::pro::quota::{self, Kind, Limits, Period, Subject};
use crate::report::json::JsonWriter;

/// Most intervals returned for one session (a day at one per second).
pub(crate) const MAX_INTERVALS: u32 = 86_400;

/// One period's figures for a subject.
#[derive(Debug, Clone)]
pub(crate) struct PeriodUsage {
    /// Which period.
    pub period: Period,
    /// `2026-11-25`, `2026-W48`, `2026-11`.
    pub label: String,
    /// First Unix second.
    pub start: i64,
    /// One past the last Unix second.
    pub end: i64,
    /// Bytes the server received.
    pub used_in: u64,
    /// Bytes the server sent.
    pub used_out: u64,
    /// The effective budget (0 = unlimited per direction).
    pub limit: quota::Limit,
}

/// Usage and effective budgets of `s` in the current day, week and month: the stored usage
/// buckets against the server's defaults with the database's overrides on top, read fresh
/// (not through the admission's cache, which HTTP callers must not grow).
pub(crate) fn usage_of(ctx: &Context, s: &Subject) -> Result<Vec<PeriodUsage>, DbError> {
    let conn = ctx.pool.get().map_err(DbError::Pool)?;
    let defaults: Limits = match s.kind {
        Kind::User => ctx.defaults_user,
        Kind::Ip => ctx.defaults_ip,
    };
    let limits = quota::read_limits(&conn, s, defaults)?;
    let now = ctx.clock.now();
    Period::ALL
        .into_iter()
        .map(|p| {
            let (start, end) = ctx.tz.period_range(p, now);
            let (used_in, used_out) = quota::stored_usage(&conn, s, start, end)?;
            Ok(PeriodUsage {
                period: p,
                label: ctx.tz.period_label(p, now),
                start,
                end,
                used_in,
                used_out,
                limit: *limits.of(p),
            })
        })
        .collect()
}

/// One row of the sessions table.
#[derive(Debug, Clone)]
pub(crate) struct SessionRow {
    /// Id.
    pub id: i64,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// End, Unix ms (none while running).
    pub end_ms: Option<i64>,
    /// Client address.
    pub peer: String,
    /// User name.
    pub user: Option<String>,
    /// `tcp`/`udp`.
    pub proto: Option<String>,
    /// Client's direction.
    pub direction: Option<String>,
    /// Authentication method.
    pub auth: String,
    /// Connections.
    pub connections: u32,
    /// Bytes the server received.
    pub bytes_in: u64,
    /// Bytes the server sent.
    pub bytes_out: u64,
    /// Average receive rate, bit/s.
    pub avg_in_bps: Option<f64>,
    /// Average send rate, bit/s.
    pub avg_out_bps: Option<f64>,
    /// Outcome.
    pub outcome: String,
    /// Free-text detail.
    pub detail: Option<String>,
}

const SESSION_COLUMNS: &str = "id, start_ms, end_ms, peer, user, proto, direction, auth, \
                               connections, bytes_in, bytes_out, avg_in_bps, avg_out_bps, \
                               outcome, detail";

fn pos(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl SessionRow {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
        Ok(SessionRow {
            id: r.get(0)?,
            start_ms: r.get(1)?,
            end_ms: r.get(2)?,
            peer: r.get(3)?,
            user: r.get(4)?,
            proto: r.get(5)?,
            direction: r.get(6)?,
            auth: r.get(7)?,
            connections: u32::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
            bytes_in: pos(r.get(9)?),
            bytes_out: pos(r.get(10)?),
            avg_in_bps: r.get(11)?,
            avg_out_bps: r.get(12)?,
            outcome: r.get(13)?,
            detail: r.get(14)?,
        })
    }

    /// The detail a caller may see: all of it for the admin; for others none when the session
    /// had a user (quota details name them).
    pub(crate) fn visible_detail(&self, admin: bool) -> Option<&str> {
        if admin || self.user.is_none() {
            self.detail.as_deref()
        } else {
            None
        }
    }

    /// Writes the row as a JSON object; `user` only for the admin.
    pub(crate) fn write(&self, w: &mut JsonWriter, admin: bool) {
        let opt_str = |w: &mut JsonWriter, k: &str, v: Option<&str>| {
            w.key(k);
            match v {
                Some(s) => w.string(s),
                None => w.null(),
            };
        };
        let opt_f64 = |w: &mut JsonWriter, k: &str, v: Option<f64>| {
            w.key(k);
            match v {
                Some(x) => w.f64_fixed(x, 1),
                None => w.null(),
            };
        };
        w.begin_object()
            .key("id")
            .i64(self.id)
            .key("start_ms")
            .i64(self.start_ms)
            .key("end_ms");
        match self.end_ms {
            Some(e) => w.i64(e),
            None => w.null(),
        };
        w.field_str("peer", &self.peer);
        if admin {
            opt_str(w, "user", self.user.as_deref());
        }
        opt_str(w, "proto", self.proto.as_deref());
        opt_str(w, "direction", self.direction.as_deref());
        w.field_str("auth", &self.auth)
            .field_u64("connections", u64::from(self.connections))
            .field_u64("bytes_in", self.bytes_in)
            .field_u64("bytes_out", self.bytes_out);
        opt_f64(w, "avg_in_bps", self.avg_in_bps);
        opt_f64(w, "avg_out_bps", self.avg_out_bps);
        w.field_str("outcome", &self.outcome);
        opt_str(w, "detail", self.visible_detail(admin));
        w.end_object();
    }
}

/// The newest `limit` sessions of `ip`.
pub(crate) fn sessions_of(
    conn: &rusqlite::Connection,
    ip: IpAddr,
    limit: u32,
) -> Result<Vec<SessionRow>, DbError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE peer = ?1 ORDER BY id DESC LIMIT ?2"
        ))
        .map_err(sql("listing sessions"))?;
    let rows = stmt
        .query_map((ip.to_string(), limit), SessionRow::from_row)
        .map_err(sql("listing sessions"))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(sql("listing sessions"))
}

/// One session.
pub(crate) fn session(conn: &rusqlite::Connection, id: i64) -> Result<Option<SessionRow>, DbError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"
        ))
        .map_err(sql("reading a session"))?;
    stmt.query_row([id], SessionRow::from_row)
        .optional()
        .map_err(sql("reading a session"))
}

/// One interval of a session, with its rates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IntervalRow {
    /// Interval number (1 = first).
    pub idx: u32,
    /// When it was recorded, Unix ms.
    pub at_ms: i64,
    /// Bytes the server received.
    pub bytes_in: u64,
    /// Bytes the server sent.
    pub bytes_out: u64,
    /// Receive rate, bit/s.
    pub in_bps: f64,
    /// Send rate, bit/s.
    pub out_bps: f64,
}

/// A session's intervals in order. Rates divide by the time since the previous interval (one
/// second, except the closing partial one), taken from the recorded times and clamped so a
/// stall in the writer cannot make a spike.
pub(crate) fn intervals(conn: &rusqlite::Connection, id: i64) -> Result<Vec<IntervalRow>, DbError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT idx, at_ms, bytes_in, bytes_out FROM session_intervals \
             WHERE session_id = ?1 ORDER BY idx LIMIT ?2",
        )
        .map_err(sql("reading intervals"))?;
    let rows = stmt
        .query_map((id, MAX_INTERVALS), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(sql("reading intervals"))?;
    let mut out = Vec::new();
    let mut prev: Option<i64> = None;
    for row in rows {
        let (idx, at_ms, i, o) = row.map_err(sql("reading intervals"))?;
        let dt_ms = prev.map_or(1000, |p| (at_ms - p).clamp(100, 10_000));
        prev = Some(at_ms);
        let secs = dt_ms as f64 / 1000.0;
        out.push(IntervalRow {
            idx: u32::try_from(idx).unwrap_or(0),
            at_ms,
            bytes_in: pos(i),
            bytes_out: pos(o),
            in_bps: pos(i) as f64 * 8.0 / secs,
            out_bps: pos(o) as f64 * 8.0 / secs,
        });
    }
    Ok(out)
}
