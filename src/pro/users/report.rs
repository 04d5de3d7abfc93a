//! The reading commands: `user show`, `ip show`, `usage` and `sessions`, as text tables.

use std::fmt::Write as _;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension};

use super::settings::{Settings, load_settings};
use super::{AdminError, subject_name};
use crate::pro::db::{DbError, sql};
use crate::pro::quota::{self, Kind, Period, Subject, read_limits, stored_usage};

fn fmt_limit(n: u64) -> String {
    if n == 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

/// Lines of usage against budget for one subject in one period.
fn usage_lines(
    conn: &Connection,
    s: &Subject,
    settings: &Settings,
    p: Period,
    now: i64,
    out: &mut String,
) -> Result<(), DbError> {
    let defaults = match s.kind {
        Kind::User => settings.user,
        Kind::Ip => settings.ip,
    };
    let limits = read_limits(conn, s, defaults)?;
    let (from, to) = settings.tz.period_range(p, now);
    let (i, o) = stored_usage(conn, s, from, to)?;
    let l = limits.of(p);
    let _ = writeln!(
        out,
        "{}\t{}\t{}\tin {} / {}\tout {} / {}\ttotal {} / {}",
        s.kind.name(),
        s.name,
        settings.tz.period_label(p, now),
        i,
        fmt_limit(l.bytes_in),
        o,
        fmt_limit(l.bytes_out),
        i + o,
        fmt_limit(l.total)
    );
    Ok(())
}

/// `user show`.
pub(crate) fn show_user(conn: &Connection, name: &str, now: i64) -> Result<String, AdminError> {
    let row: Option<(bool, i64)> = conn
        .query_row(
            "SELECT md5_secret IS NOT NULL, created FROM users WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql("reading a user"))?;
    let Some((md5, created)) = row else {
        return Err(AdminError::NoSuchUser(name.into()));
    };
    let mut out = format!(
        "user: {name}\nauth: {}\ncreated: {}\n",
        if md5 { "ecsrp5, md5" } else { "ecsrp5" },
        crate::sys::clock::utc_from_unix(created).iso8601()
    );
    show_subject(conn, Kind::User, name, now, &mut out)?;
    Ok(out)
}

/// `ip show`.
pub(crate) fn show_ip(conn: &Connection, addr: &str, now: i64) -> Result<String, AdminError> {
    let name = subject_name(Kind::Ip, addr)?;
    let mut out = format!("ip: {name}\n");
    show_subject(conn, Kind::Ip, &name, now, &mut out)?;
    Ok(out)
}

fn show_subject(
    conn: &Connection,
    kind: Kind,
    name: &str,
    now: i64,
    out: &mut String,
) -> Result<(), AdminError> {
    let settings = load_settings(conn)?;
    let s = Subject {
        kind,
        name: Arc::from(name),
    };
    let mut stmt = conn
        .prepare(
            "SELECT period, direction, bytes FROM quotas WHERE kind = ?1 AND subject = ?2 \
             ORDER BY period, direction",
        )
        .map_err(sql("reading budgets"))?;
    let rows = stmt
        .query_map((kind.name(), name), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(sql("reading budgets"))?;
    out.push_str("overrides:");
    let mut any = false;
    for row in rows {
        let (p, d, b) = row.map_err(sql("reading budgets"))?;
        let _ = write!(out, " {p}/{d}={}", fmt_limit(u64::try_from(b).unwrap_or(0)));
        any = true;
    }
    out.push_str(if any {
        "\n"
    } else {
        " none (server defaults)\n"
    });
    for p in Period::ALL {
        usage_lines(conn, &s, &settings, p, now, out)?;
    }
    Ok(())
}

/// `usage`: one subject, or every subject with usage in the period.
pub(crate) fn usage(
    conn: &Connection,
    user: Option<&str>,
    ip: Option<&str>,
    period: &str,
    now: i64,
) -> Result<String, AdminError> {
    let p = Period::parse(period).ok_or_else(|| {
        AdminError::Usage(format!(
            "--period must be day, week or month, not '{period}'"
        ))
    })?;
    let settings = load_settings(conn)?;
    let mut subjects = Vec::new();
    match (user, ip) {
        (Some(_), Some(_)) => {
            return Err(AdminError::Usage("give --user or --ip, not both".into()));
        }
        (Some(u), None) => subjects.push(Subject {
            kind: Kind::User,
            name: Arc::from(u),
        }),
        (None, Some(a)) => subjects.push(Subject {
            kind: Kind::Ip,
            name: Arc::from(subject_name(Kind::Ip, a)?.as_str()),
        }),
        (None, None) => {
            let (from, to) = settings.tz.period_range(p, now);
            let mut stmt = conn
                .prepare(
                    "SELECT DISTINCT kind, subject FROM usage WHERE bucket >= ?1 AND bucket < ?2 \
                     ORDER BY kind DESC, subject",
                )
                .map_err(sql("reading usage"))?;
            let rows = stmt
                .query_map((from / quota::BUCKET_SECS, to / quota::BUCKET_SECS), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(sql("reading usage"))?;
            for row in rows {
                let (k, n) = row.map_err(sql("reading usage"))?;
                subjects.push(Subject {
                    kind: if k == "user" { Kind::User } else { Kind::Ip },
                    name: Arc::from(n.as_str()),
                });
            }
        }
    }
    let mut out = format!(
        "KIND\tSUBJECT\tPERIOD ({})\tBYTES USED / BUDGET\n",
        settings.tz.name()
    );
    for s in &subjects {
        usage_lines(conn, s, &settings, p, now, &mut out)?;
    }
    Ok(out)
}

/// `sessions --last N`, newest first.
pub(crate) fn sessions(conn: &Connection, last: u32) -> Result<String, AdminError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, start_ms, end_ms, peer, user, proto, direction, auth, connections, \
             bytes_in, bytes_out, avg_in_bps, avg_out_bps, outcome, detail \
             FROM sessions ORDER BY id DESC LIMIT ?1",
        )
        .map_err(sql("reading sessions"))?;
    let mut out = String::from(
        "ID\tSTART\tSECS\tPEER\tUSER\tPROTO\tDIRECTION\tAUTH\tCONNS\tBYTES_IN\tBYTES_OUT\t\
         AVG_IN_BPS\tAVG_OUT_BPS\tOUTCOME\tDETAIL\n",
    );
    let mut rows = stmt.query([last]).map_err(sql("reading sessions"))?;
    while let Some(r) = rows.next().map_err(sql("reading sessions"))? {
        let get = |e| sql("reading sessions")(e);
        let start: i64 = r.get(1).map_err(get)?;
        let end: Option<i64> = r.get(2).map_err(get)?;
        let text = |i: usize| -> Result<String, DbError> {
            Ok(r.get::<_, Option<String>>(i)
                .map_err(get)?
                .unwrap_or_else(|| "-".into()))
        };
        let num = |i: usize| -> Result<String, DbError> {
            Ok(r.get::<_, Option<f64>>(i)
                .map_err(get)?
                .map_or_else(|| "-".into(), |v| format!("{v:.0}")))
        };
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.get::<_, i64>(0).map_err(get)?,
            crate::sys::clock::utc_from_unix(start.div_euclid(1000)).iso8601(),
            end.map_or_else(
                || "-".into(),
                |e| format!("{:.1}", (e - start) as f64 / 1000.0)
            ),
            text(3)?,
            text(4)?,
            text(5)?,
            text(6)?,
            text(7)?,
            r.get::<_, i64>(8).map_err(get)?,
            r.get::<_, i64>(9).map_err(get)?,
            r.get::<_, i64>(10).map_err(get)?,
            num(11)?,
            num(12)?,
            text(13)?,
            text(14)?,
        );
    }
    Ok(out)
}
