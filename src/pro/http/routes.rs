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

use super::history::{intervals, session, sessions_of, usage_of};
use super::request::{Request, Response};
use super::{Context, api, page};
use crate::auth::ct_eq;
use crate::log_error;
use crate::pro::db::DbError;
use crate::pro::quota::{Kind, Subject};
use crate::report::json::JsonWriter;

/// Sessions listed when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: u32 = 20;
/// Most sessions one request lists.
pub(crate) const MAX_LIMIT: u32 = 200;

/// Why a request is refused; each maps to one status.
#[derive(Debug)]
pub(crate) enum ApiError {
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
pub(crate) struct Caller {
    /// The HTTP peer's address (IPv4-mapped addresses as IPv4).
    pub ip: IpAddr,
    /// A valid admin token was sent.
    pub admin: bool,
}

impl Caller {
    /// May this caller see data of `ip`?
    pub(crate) fn may_see(&self, ip: IpAddr) -> bool {
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
pub(crate) fn handle(ctx: &Context, ip: IpAddr, req: &Request) -> Response {
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
            body: ctx.live.prometheus(ctx.writes.len()) + &api::db_metrics(&ctx.health),
            headers: Vec::new(),
        }),
        ["api", "health"] => Ok(api::health_json(&ctx.health)),
        ["api", "ip", ip, "usage"] => {
            let ip = own_ip(caller, ip)?;
            let body = api::usage_json(ctx, &ip_subject(ctx, ip))?;
            Ok(Response::json(200, body))
        }
        ["api", "ip", ip, "sessions"] => {
            let ip = own_ip(caller, ip)?;
            let limit = parse_limit(req)?;
            let conn = ctx.pool.get().map_err(DbError::Pool)?;
            let rows = sessions_of(&conn, ip, limit)?;
            Ok(Response::json(
                200,
                api::ip_sessions_json(ip, &rows, caller.admin),
            ))
        }
        ["api", "user", name, "usage"] => {
            need_admin(ctx, caller)?;
            let s = Subject {
                kind: Kind::User,
                name: Arc::from(*name),
            };
            Ok(Response::json(200, api::usage_json(ctx, &s)?))
        }
        ["api", "session", id] => session_for(ctx, caller, parse_id(id)?),
        ["api", "sessions", "live"] => {
            need_admin(ctx, caller)?;
            Ok(Response::json(200, api::live_json(ctx)))
        }
        _ => Err(ApiError::NotFound("no such page")),
    }
}

/// `/api/session/{id}`. Another address's session gets the same answer as a missing one, so
/// that ids cannot be probed for existence.
fn session_for(ctx: &Context, caller: Caller, id: i64) -> Result<Response, ApiError> {
    let conn = ctx.pool.get().map_err(DbError::Pool)?;
    let row = session(&conn, id)?
        .filter(|row| row.peer.parse::<IpAddr>().is_ok_and(|p| caller.may_see(p)))
        .ok_or(ApiError::NotFound("no such session"))?;
    let ivs = intervals(&conn, id)?;
    Ok(Response::json(
        200,
        api::session_json(&row, &ivs, caller.admin),
    ))
}

/// The budget subject of `ip`: IPv6 addresses are accounted by prefix, so the usage shown is
/// the prefix's (its name says so, e.g. `2001:db8:1:2::/64`).
fn ip_subject(ctx: &Context, ip: IpAddr) -> Subject {
    Subject {
        kind: Kind::Ip,
        name: Arc::from(crate::server::addrkey::key_name(ip, ctx.ipv6_prefix)),
    }
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
