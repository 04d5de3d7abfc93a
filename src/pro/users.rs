//! The administration commands: users, budget overrides, usage reports and session history.
//! They run in their own process on their own connection; a running server sees changes to
//! budgets within its cache TTL (5 s) and to users at the next handshake.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension};

use super::db::{DbError, sql};
use super::quota::{
    self, Dir, Kind, Limit, Limits, Period, Subject, Tz, parse_size, read_limits, stored_usage,
};
use crate::auth::ecsrp5::Verifier;

/// An administration command that cannot be done. Exit code 1 (2 for usage errors).
#[derive(Debug)]
pub enum AdminError {
    /// The command line is wrong.
    Usage(String),
    /// No such user.
    NoSuchUser(String),
    /// The user exists already.
    UserExists(String),
    /// The database failed.
    Db(DbError),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Usage(m) => f.write_str(m),
            AdminError::NoSuchUser(u) => write!(f, "no user '{u}' (see 'user list')"),
            AdminError::UserExists(u) => {
                write!(
                    f,
                    "user '{u}' exists; change the password with 'user passwd'"
                )
            }
            AdminError::Db(e) => write!(f, "{e}"),
        }
    }
}

impl From<DbError> for AdminError {
    fn from(e: DbError) -> Self {
        AdminError::Db(e)
    }
}

fn check_name(name: &str) -> Result<(), AdminError> {
    if name.is_empty() || name.len() > 221 || name.contains('\0') {
        return Err(AdminError::Usage(
            "user name must be 1..=221 bytes without NUL".into(),
        ));
    }
    Ok(())
}

fn secrets(name: &str, password: &str) -> Verifier {
    let mut salt = [0u8; 16];
    crate::sys::random::fill_or_abort(&mut salt);
    Verifier::derive(name.as_bytes(), password.as_bytes(), salt)
}

/// `user add`: stores the EC-SRP5 salt and verifier, and the password only with `md5`.
pub fn add(conn: &Connection, name: &str, password: &str, md5: bool) -> Result<(), AdminError> {
    check_name(name)?;
    let v = secrets(name, password);
    let md5_secret = md5.then(|| password.as_bytes().to_vec());
    let n = conn
        .execute(
            "INSERT OR IGNORE INTO users (name, salt, x_gamma, gamma_parity, md5_secret, created) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            (
                name,
                &v.salt[..],
                &v.x_gamma[..],
                v.gamma_parity,
                md5_secret,
                quota::unix_ms() / 1000,
            ),
        )
        .map_err(sql("adding a user"))?;
    if n == 0 {
        return Err(AdminError::UserExists(name.into()));
    }
    Ok(())
}

/// `user del`: removes the user and their budget overrides (history stays).
pub fn del(conn: &Connection, name: &str) -> Result<(), AdminError> {
    let n = conn
        .execute("DELETE FROM users WHERE name = ?1", [name])
        .map_err(sql("deleting a user"))?;
    if n == 0 {
        return Err(AdminError::NoSuchUser(name.into()));
    }
    conn.execute(
        "DELETE FROM quotas WHERE kind = 'user' AND subject = ?1",
        [name],
    )
    .map_err(sql("deleting a user's budgets"))?;
    Ok(())
}

/// `user passwd`: new salt and verifier; the MD5 secret follows the flags, or is kept in step
/// if the user had one.
pub fn passwd(
    conn: &Connection,
    name: &str,
    password: &str,
    md5: bool,
    no_md5: bool,
) -> Result<(), AdminError> {
    if md5 && no_md5 {
        return Err(AdminError::Usage(
            "--md5 and --no-md5 exclude each other".into(),
        ));
    }
    let had_md5: Option<bool> = conn
        .query_row(
            "SELECT md5_secret IS NOT NULL FROM users WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql("reading a user"))?;
    let Some(had_md5) = had_md5 else {
        return Err(AdminError::NoSuchUser(name.into()));
    };
    let keep_md5 = md5 || (had_md5 && !no_md5);
    let v = secrets(name, password);
    conn.execute(
        "UPDATE users SET salt = ?2, x_gamma = ?3, gamma_parity = ?4, md5_secret = ?5 \
         WHERE name = ?1",
        (
            name,
            &v.salt[..],
            &v.x_gamma[..],
            v.gamma_parity,
            keep_md5.then(|| password.as_bytes().to_vec()),
        ),
    )
    .map_err(sql("changing a password"))?;
    Ok(())
}

/// `user list`: one line per user.
pub fn list(conn: &Connection) -> Result<String, AdminError> {
    let mut stmt = conn
        .prepare(
            "SELECT u.name, u.md5_secret IS NOT NULL, \
             (SELECT count(*) FROM quotas q WHERE q.kind = 'user' AND q.subject = u.name) \
             FROM users u ORDER BY u.name",
        )
        .map_err(sql("listing users"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(sql("listing users"))?;
    let mut out = String::from("USER\tAUTH\tBUDGET OVERRIDES\n");
    for row in rows {
        let (name, md5, n) = row.map_err(sql("listing users"))?;
        let auth = if md5 { "ecsrp5,md5" } else { "ecsrp5" };
        let _ = writeln!(out, "{name}\t{auth}\t{n}");
    }
    Ok(out)
}

/// Parses `--direction`.
pub fn parse_dir(s: &str) -> Result<Dir, AdminError> {
    Dir::parse(s).ok_or_else(|| {
        AdminError::Usage(format!("--direction must be in, out or total, not '{s}'"))
    })
}

/// `set-quota` for a user or an address: the given periods are set (0 = unlimited,
/// `default` = remove the override); the others stay as they were.
pub fn set_quota(
    conn: &Connection,
    kind: Kind,
    name: &str,
    sizes: [Option<&str>; 3],
    dir: Dir,
) -> Result<(), AdminError> {
    if kind == Kind::User && !user_exists(conn, name)? {
        return Err(AdminError::NoSuchUser(name.into()));
    }
    let name = subject_name(kind, name)?;
    if sizes.iter().all(Option::is_none) {
        return Err(AdminError::Usage(
            "give at least one of --daily, --weekly, --monthly".into(),
        ));
    }
    for (p, size) in Period::ALL.into_iter().zip(sizes) {
        let Some(size) = size else { continue };
        if size.eq_ignore_ascii_case("default") {
            conn.execute(
                "DELETE FROM quotas WHERE kind = ?1 AND subject = ?2 AND period = ?3 \
                 AND direction = ?4",
                (kind.name(), &name, p.name(), dir.name()),
            )
            .map_err(sql("removing a budget"))?;
            continue;
        }
        let bytes = parse_size(size).map_err(AdminError::Usage)?;
        conn.execute(
            "INSERT INTO quotas (kind, subject, period, direction, bytes) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (kind, subject, period, direction) \
             DO UPDATE SET bytes = excluded.bytes",
            (
                kind.name(),
                &name,
                p.name(),
                dir.name(),
                i64::try_from(bytes).unwrap_or(i64::MAX),
            ),
        )
        .map_err(sql("setting a budget"))?;
    }
    Ok(())
}

fn subject_name(kind: Kind, name: &str) -> Result<String, AdminError> {
    match kind {
        Kind::User => Ok(name.to_owned()),
        Kind::Ip => name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map(|ip| ip.to_canonical().to_string())
            .map_err(|_| AdminError::Usage(format!("'{name}' is not an IP address"))),
    }
}

fn user_exists(conn: &Connection, name: &str) -> Result<bool, AdminError> {
    Ok(conn
        .query_row("SELECT 1 FROM users WHERE name = ?1", [name], |_| Ok(()))
        .optional()
        .map_err(sql("reading a user"))?
        .is_some())
}

/// What the server stores of its own settings, so reports use the same zone and defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// Time zone of the periods.
    pub tz: Tz,
    /// Default user budgets.
    pub user: Limits,
    /// Default address budgets.
    pub ip: Limits,
}

fn encode(l: &Limits) -> String {
    let v: Vec<String> =
        l.0.iter()
            .flat_map(|x| [x.bytes_in, x.bytes_out, x.total])
            .map(|n| n.to_string())
            .collect();
    v.join(",")
}

fn decode(s: &str) -> Limits {
    let v: Vec<u64> = s.split(',').filter_map(|n| n.parse().ok()).collect();
    let mut l = Limits::default();
    if v.len() == 9 {
        for (i, p) in Period::ALL.into_iter().enumerate() {
            *l.of_mut(p) = Limit {
                bytes_in: v[i * 3],
                bytes_out: v[i * 3 + 1],
                total: v[i * 3 + 2],
            };
        }
    }
    l
}

/// Stores the serving settings (called by the server at start).
pub fn save_settings(conn: &Connection, s: &Settings) -> Result<(), DbError> {
    for (k, v) in [
        ("tz", s.tz.name()),
        ("default_user", encode(&s.user)),
        ("default_ip", encode(&s.ip)),
    ] {
        conn.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)",
            (k, v),
        )
        .map_err(sql("saving settings"))?;
    }
    Ok(())
}

/// The settings the server last started with (UTC and no defaults if it never ran).
pub fn load_settings(conn: &Connection) -> Result<Settings, DbError> {
    let get = |k: &str| -> Result<Option<String>, DbError> {
        conn.query_row("SELECT value FROM settings WHERE key = ?1", [k], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql("reading settings"))
    };
    Ok(Settings {
        tz: get("tz")?
            .and_then(|t| Tz::parse(&t).ok())
            .unwrap_or_default(),
        user: get("default_user")?.map(|s| decode(&s)).unwrap_or_default(),
        ip: get("default_ip")?.map(|s| decode(&s)).unwrap_or_default(),
    })
}

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
pub fn show_user(conn: &Connection, name: &str, now: i64) -> Result<String, AdminError> {
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
pub fn show_ip(conn: &Connection, addr: &str, now: i64) -> Result<String, AdminError> {
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
pub fn usage(
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
pub fn sessions(conn: &Connection, last: u32) -> Result<String, AdminError> {
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
