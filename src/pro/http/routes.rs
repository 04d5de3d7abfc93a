//! Routes, the privacy rules, and the JSON of each endpoint.
//!
//! Privacy, decided here once for the API and the pages:
//! * Without the admin token a caller sees only its own address: `/api/ip/{ip}/...`,
//!   and `/ip/{ip}` answer 403 unless `{ip}` is the address the request came from, and
//!   `/api/session/{id}` answers 404 for another address's session exactly as for a missing
//!   one, so ids cannot be probed. Sessions shown to a non-admin carry no user name, and
//!   no free-text detail when the session had a user (quota details name the user).
//! * `/api/user/{name}/usage` is admin only: nothing ties an HTTP request to a btest user
//!   (their password never crosses HTTP), and "a session of that user came from this address"
//!   would show one person's budget to everyone behind the same NAT.
//! * `/api/sessions/live` is admin only: it lists every address and user.
//! * `/metrics` is open: counts only, no names or addresses. Bind `--http` to an address only
//!   the scraper reaches if even counts are private.
//! * A wrong bearer token is refused (403) everywhere rather than quietly read as "no token",
//!   so a misconfigured scraper or script notices.

use std::net::IpAddr;
use std::sync::Arc;

use rusqlite::OptionalExtension;

use super::Context;
use super::page;
use super::request::{Request, Response};
use crate::auth::ct_eq;
use crate::log_error;
use crate::pro::db::{DbError, sql};
use crate::pro::health::WriteHealth;
use crate::pro::quota::{self, Dir, Kind, Limits, Period, Subject};
use crate::report::json::JsonWriter;

/// Sessions listed when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 20;
/// Most sessions one request lists.
pub const MAX_LIMIT: u32 = 200;
/// Most intervals returned for one session (a day at one per second).
pub const MAX_INTERVALS: u32 = 86_400;

/// Why a request is refused; each maps to one status.
#[derive(Debug)]
pub enum ApiError {
    /// 400 with a reason.
    BadRequest(&'static str),
    /// 401: an admin endpoint without a token.
    Unauthorized,
    /// 403 with a reason.
    Forbidden(&'static str),
    /// 404 with a reason.
    NotFound(&'static str),
    /// 500: the database failed (details go to the log, not to the caller).
    Db(DbError),
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::Db(e)
    }
}

impl ApiError {
    fn response(&self) -> Response {
        let (status, msg) = match self {
            ApiError::BadRequest(m) => (400, *m),
            ApiError::Unauthorized => (401, "this endpoint needs the admin bearer token"),
            ApiError::Forbidden(m) => (403, *m),
            ApiError::NotFound(m) => (404, *m),
            ApiError::Db(e) => {
                log_error!("http: {e}");
                (500, "database error")
            }
        };
        let mut w = JsonWriter::new();
        w.begin_object().field_str("error", msg).end_object();
        let r = Response::json(status, w.finish());
        if status == 401 {
            r.with("WWW-Authenticate", "Bearer")
        } else {
            r
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The HTTP peer's address (IPv4-mapped addresses as IPv4).
    pub ip: IpAddr,
    /// A valid admin token was sent.
    pub admin: bool,
}

impl Caller {
    /// May this caller see data of `ip`?
    pub fn may_see(&self, ip: IpAddr) -> bool {
        self.admin || self.ip == ip
    }
}

/// Checks the `Authorization` header: `Ok(true)` for the right bearer token, `Ok(false)` for
/// none, 403 for a wrong one.
fn authorize(ctx: &Context, req: &Request) -> Result<bool, ApiError> {
    let Some(value) = &req.authorization else {
        return Ok(false);
    };
    let Some(token) = &ctx.admin_token else {
        return Err(ApiError::Forbidden(
            "no admin token is configured on this server",
        ));
    };
    let given = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match given {
        Some(t) if ct_eq(t.as_bytes(), token) => Ok(true),
        _ => Err(ApiError::Forbidden("wrong bearer token")),
    }
}

fn need_admin(ctx: &Context, caller: Caller) -> Result<(), ApiError> {
    if ctx.admin_token.is_none() {
        return Err(ApiError::NotFound(
            "admin endpoints are off (no --http-admin-token-file)",
        ));
    }
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Parses an address from the path; IPv4-mapped IPv6 is the IPv4 address, as stored.
fn parse_ip(s: &str) -> Result<IpAddr, ApiError> {
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| ip.to_canonical())
        .map_err(|_| ApiError::BadRequest("not an IP address"))
}

fn own_ip(caller: Caller, s: &str) -> Result<IpAddr, ApiError> {
    let ip = parse_ip(s)?;
    if caller.may_see(ip) {
        Ok(ip)
    } else {
        Err(ApiError::Forbidden(
            "only your own address's data is shown without the admin token",
        ))
    }
}

fn parse_limit(req: &Request) -> Result<u32, ApiError> {
    match req.param("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest("limit must be 1 to 200")),
        },
    }
}

fn parse_id(s: &str) -> Result<i64, ApiError> {
    match s.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ApiError::BadRequest("a session id is a positive integer")),
    }
}

/// Answers one request from `ip`.
pub fn handle(ctx: &Context, ip: IpAddr, req: &Request) -> Response {
    let key = crate::server::addrkey::addr_key(ip, ctx.ipv6_prefix);
    if req.authorization.is_some() && ctx.token_failures.addr_blocked(key).is_some() {
        return Response::text(429, "too many wrong tokens; try again later\n")
            .with("Retry-After", "60");
    }
    let authorized = authorize(ctx, req);
    if matches!(authorized, Err(ApiError::Forbidden("wrong bearer token"))) {
        ctx.token_failures.failed(key, "");
    }
    let result = authorized.and_then(|admin| {
        let caller = Caller { ip, admin };
        route(ctx, caller, req)
    });
    result.unwrap_or_else(|e| e.response())
}

fn route(ctx: &Context, caller: Caller, req: &Request) -> Result<Response, ApiError> {
    let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    match seg.as_slice() {
        [""] => page_for(ctx, caller, caller.ip, req),
        ["ip", ip] => {
            let ip = own_ip(caller, ip)?;
            page_for(ctx, caller, ip, req)
        }
        ["metrics"] => Ok(Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: ctx.live.prometheus(ctx.writes.len()) + &db_metrics(&ctx.health),
            headers: Vec::new(),
        }),
        ["api", "health"] => Ok(health_json(&ctx.health)),
        ["api", "ip", ip, "usage"] => {
            let ip = own_ip(caller, ip)?;
            Ok(Response::json(200, usage_json(ctx, &ip_subject(ctx, ip))?))
        }
        ["api", "ip", ip, "sessions"] => {
            let ip = own_ip(caller, ip)?;
            let limit = parse_limit(req)?;
            let conn = ctx.pool.get().map_err(DbError::Pool)?;
            let rows = sessions_of(&conn, ip, limit)?;
            let mut w = JsonWriter::new();
            w.begin_object().field_str("ip", &ip.to_string());
            w.key("sessions").begin_array();
            for r in &rows {
                r.write(&mut w, caller.admin);
            }
            w.end_array().end_object();
            Ok(Response::json(200, w.finish()))
        }
        ["api", "user", name, "usage"] => {
            need_admin(ctx, caller)?;
            let s = Subject {
                kind: Kind::User,
                name: Arc::from(*name),
            };
            Ok(Response::json(200, usage_json(ctx, &s)?))
        }
        ["api", "session", id] => {
            let id = parse_id(id)?;
            let conn = ctx.pool.get().map_err(DbError::Pool)?;
            // Another address's session gets the same answer as a missing one, so that ids
            // cannot be probed for existence.
            let row = session(&conn, id)?
                .filter(|row| row.peer.parse::<IpAddr>().is_ok_and(|p| caller.may_see(p)))
                .ok_or(ApiError::NotFound("no such session"))?;
            let ivs = intervals(&conn, id)?;
            let mut w = JsonWriter::new();
            w.begin_object();
            w.key("session");
            row.write(&mut w, caller.admin);
            w.key("intervals").begin_array();
            for iv in &ivs {
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
            Ok(Response::json(200, w.finish()))
        }
        ["api", "sessions", "live"] => {
            need_admin(ctx, caller)?;
            let now = quota::unix_ms();
            let mut w = JsonWriter::new();
            w.begin_object().key("sessions").begin_array();
            for s in ctx.live.snapshot() {
                w.begin_object()
                    .key("id")
                    .i64(s.id)
                    .field_str("peer", &s.peer.to_string())
                    .key("user");
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
            Ok(Response::json(200, w.finish()))
        }
        _ => Err(ApiError::NotFound("no such page")),
    }
}

/// The writer's counters in the Prometheus text format.
fn db_metrics(h: &WriteHealth) -> String {
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
fn health_json(h: &WriteHealth) -> Response {
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

/// The budget subject of `ip`: IPv6 addresses are accounted by prefix, so the usage shown is
/// the prefix's (its name says so, e.g. `2001:db8:1:2::/64`).
fn ip_subject(ctx: &Context, ip: IpAddr) -> Subject {
    Subject {
        kind: Kind::Ip,
        name: Arc::from(crate::server::addrkey::key_name(ip, ctx.ipv6_prefix)),
    }
}

/// One period's figures for a subject.
#[derive(Debug, Clone)]
pub struct PeriodUsage {
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
pub fn usage_of(ctx: &Context, s: &Subject) -> Result<Vec<PeriodUsage>, DbError> {
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

fn usage_json(ctx: &Context, s: &Subject) -> Result<String, DbError> {
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

/// One row of the sessions table.
#[derive(Debug, Clone)]
pub struct SessionRow {
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
    pub fn visible_detail(&self, admin: bool) -> Option<&str> {
        if admin || self.user.is_none() {
            self.detail.as_deref()
        } else {
            None
        }
    }

    /// Writes the row as a JSON object; `user` only for the admin.
    pub fn write(&self, w: &mut JsonWriter, admin: bool) {
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
pub fn sessions_of(
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
pub fn session(conn: &rusqlite::Connection, id: i64) -> Result<Option<SessionRow>, DbError> {
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
pub struct IntervalRow {
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
pub fn intervals(conn: &rusqlite::Connection, id: i64) -> Result<Vec<IntervalRow>, DbError> {
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

fn page_for(
    ctx: &Context,
    caller: Caller,
    ip: IpAddr,
    req: &Request,
) -> Result<Response, ApiError> {
    let usage = usage_of(ctx, &ip_subject(ctx, ip))?;
    let conn = ctx.pool.get().map_err(DbError::Pool)?;
    let sessions = sessions_of(&conn, ip, DEFAULT_LIMIT)?;
    // The chart shows the chosen session if it is this address's, else the newest one.
    let chosen = match req.param("session") {
        Some(v) => {
            let id = parse_id(v)?;
            Some(
                session(&conn, id)?
                    .filter(|s| s.peer == ip.to_string())
                    .ok_or(ApiError::NotFound("no such session for this address"))?,
            )
        }
        None => sessions.first().cloned(),
    };
    let ivs = match &chosen {
        Some(s) => intervals(&conn, s.id)?,
        None => Vec::new(),
    };
    let base = if ip == caller.ip && req.segments.first().is_some_and(String::is_empty) {
        "/".to_owned()
    } else {
        format!("/ip/{ip}")
    };
    Ok(Response::html(
        200,
        page::ip_page(&page::IpView {
            ip,
            tz: ctx.tz,
            usage: &usage,
            sessions: &sessions,
            chosen: chosen.as_ref(),
            intervals: &ivs,
            base: &base,
            admin: caller.admin,
        }),
    ))
}
