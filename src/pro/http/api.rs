//! The JSON (and Prometheus text) bodies of the API endpoints, built from what
//! [`super::history`] and the live registry hold.

use std::net::IpAddr;

use super::Context;
use super::history::{IntervalRow, MAX_INTERVALS, SessionRow, usage_of};
use super::request::Response;
use crate::pro::db::DbError;
use crate::pro::health::WriteHealth;
use crate::pro::quota::{self, Dir, Subject};
use crate::report::json::JsonWriter;

/// The writer's counters in the Prometheus text format.
pub(crate) fn db_metrics(h: &WriteHealth) -> String {
    format!(
        "# HELP btest_db_write_errors_total Database writes that failed since start (each is \
         held and tried again).\n# TYPE btest_db_write_errors_total counter\n\
         btest_db_write_errors_total {}\n# HELP btest_db_writes_failing 1 while writes fail \
         and new tests are refused.\n# TYPE btest_db_writes_failing gauge\n\
         btest_db_writes_failing {}\n",
        h.errors_total(),
        u8::from(h.failing())
    )
}

/// 200 while the database takes writes, 503 (and the error) while it does not and new tests
/// are refused. Open to all, like `/metrics`: it names no address or user.
pub(crate) fn health_json(h: &WriteHealth) -> Response {
    let failing = h.failing();
    let mut w = JsonWriter::new();
    w.begin_object()
        .field_str("status", if failing { "failing" } else { "ok" })
        .field_bool("accepting_tests", !failing)
        .field_u64("db_write_errors_total", h.errors_total());
    if let Some(e) = h.last_error() {
        w.field_str("db_error", &e);
    }
    w.end_object();
    Response::json(if failing { 503 } else { 200 }, w.finish())
}

pub(crate) fn usage_json(ctx: &Context, s: &Subject) -> Result<String, DbError> {
    let periods = usage_of(ctx, s)?;
    let mut w = JsonWriter::new();
    w.begin_object()
        .field_str("kind", s.kind.name())
        .field_str("subject", &s.name)
        .field_str("tz", &ctx.tz.name());
    w.key("periods").begin_object();
    for u in &periods {
        w.key(u.period.name()).begin_object();
        w.field_str("label", &u.label)
            .key("start")
            .i64(u.start)
            .key("end")
            .i64(u.end);
        let used = [
            (Dir::In, u.used_in),
            (Dir::Out, u.used_out),
            (Dir::Total, u.used_in.saturating_add(u.used_out)),
        ];
        for (name, f) in [("used", 0u8), ("limit", 1), ("remaining", 2)] {
            w.key(name).begin_object();
            for (d, n) in used {
                let limit = u.limit.get(d);
                w.key(d.name());
                match (f, limit) {
                    (0, _) => w.u64(n),
                    (_, 0) => w.null(),
                    (1, l) => w.u64(l),
                    (_, l) => w.u64(l.saturating_sub(n)),
                };
            }
            w.end_object();
        }
        w.end_object();
    }
    w.end_object().end_object();
    Ok(w.finish())
}

/// `/api/ip/{ip}/sessions`: the address's newest sessions.
pub(crate) fn ip_sessions_json(ip: IpAddr, rows: &[SessionRow], admin: bool) -> String {
    let mut w = JsonWriter::new();
    w.begin_object().field_str("ip", &ip.to_string());
    w.key("sessions").begin_array();
    for r in rows {
        r.write(&mut w, admin);
    }
    w.end_array().end_object();
    w.finish()
}

/// `/api/session/{id}`: the row and its intervals.
pub(crate) fn session_json(row: &SessionRow, ivs: &[IntervalRow], admin: bool) -> String {
    let mut w = JsonWriter::new();
    w.begin_object();
    w.key("session");
    row.write(&mut w, admin);
    w.key("intervals").begin_array();
    for iv in ivs {
        w.begin_object()
            .field_u64("idx", u64::from(iv.idx))
            .key("at_ms")
            .i64(iv.at_ms)
            .field_u64("bytes_in", iv.bytes_in)
            .field_u64("bytes_out", iv.bytes_out)
            .field_f64("in_bps", iv.in_bps)
            .field_f64("out_bps", iv.out_bps)
            .end_object();
    }
    w.end_array()
        .field_bool("truncated", ivs.len() >= MAX_INTERVALS as usize)
        .end_object();
    w.finish()
}

/// `/api/sessions/live`: every running session with its counters.
pub(crate) fn live_json(ctx: &Context) -> String {
    let now = quota::unix_ms();
    let mut w = JsonWriter::new();
    w.begin_object().key("sessions").begin_array();
    for s in ctx.live.snapshot() {
        w.begin_object().key("id");
        match s.row.get() {
            Some(id) => w.i64(id),
            None => w.null(),
        };
        w.field_str("peer", &s.peer.to_string()).key("user");
        match &s.user {
            Some(u) => w.string(u),
            None => w.null(),
        };
        w.field_str("proto", s.proto)
            .field_str("direction", s.direction)
            .field_str("auth", s.auth)
            .key("start_ms")
            .i64(s.start_ms)
            .field_f64(
                "elapsed_s",
                (now.saturating_sub(s.start_ms)) as f64 / 1000.0,
            )
            .field_u64("intervals", u64::from(s.intervals))
            .field_u64("bytes_in", s.bytes_in)
            .field_u64("bytes_out", s.bytes_out)
            .field_f64("rate_in_bps", s.rate_in_bps)
            .field_f64("rate_out_bps", s.rate_out_bps)
            .end_object();
    }
    w.end_array().end_object();
    w.finish()
}
