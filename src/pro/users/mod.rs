//! The administration commands: users, budget overrides, usage reports and session history.
//! They run in their own process on their own connection; a running server sees changes to
//! budgets within its cache TTL (5 s) and to users at the next handshake.

use std::fmt::Write as _;
use std::net::IpAddr;

use rusqlite::{Connection, OptionalExtension};

use super::db::{DbError, sql};
use super::quota::{self, Dir, Kind, Period, parse_size};
use crate::auth::ecsrp5::Verifier;

mod report;
mod settings;

pub(crate) use self::report::{sessions, show_ip, show_user, usage};
pub(crate) use self::settings::{Settings, save_settings};

/// An administration command that cannot be done. Exit code 1 (2 for usage errors).
#[derive(Debug)]
pub(crate) enum AdminError {
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
pub(crate) fn add(
    conn: &Connection,
    name: &str,
    password: &str,
    md5: bool,
) -> Result<(), AdminError> {
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
pub(crate) fn del(conn: &Connection, name: &str) -> Result<(), AdminError> {
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
pub(crate) fn passwd(
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
pub(crate) fn list(conn: &Connection) -> Result<String, AdminError> {
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

/// `set-quota` for a user or an address: the given periods are set (0 = unlimited,
/// `default` = remove the override); the others stay as they were.
pub(crate) fn set_quota(
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
