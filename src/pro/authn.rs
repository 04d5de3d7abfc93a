//! Users from the database as an [`Authenticator`].
//!
//! EC-SRP5 needs only the stored salt and verifier. MD5 challenge-response needs the password
//! itself, so it is stored only for users added with `--md5`; the server offers one method
//! to every client (`--auth`), and a user without a secret for it is refused with a log line
//! that says how to fix it.

use std::sync::OnceLock;

use rusqlite::{Connection, OptionalExtension};

use crate::auth::ecsrp5::Verifier;
use crate::auth::md5::USER_FIELD_LEN;
use crate::handshake::AuthMethod;
use crate::handshake::server::{Authenticator, process_decoy_secret};
use crate::{log, log_error};

use super::db::{DbError, Pool, sql};

/// The user table, looked up per handshake through the read pool.
pub(crate) struct DbAuth {
    pool: Pool,
    method: AuthMethod,
    decoy: OnceLock<[u8; 32]>,
}

impl DbAuth {
    /// Users of `pool`, offered `method` (MD5 or EC-SRP5).
    pub(crate) fn new(pool: Pool, method: AuthMethod) -> DbAuth {
        DbAuth {
            pool,
            method,
            decoy: OnceLock::new(),
        }
    }

    fn connection(&self) -> Option<r2d2::PooledConnection<r2d2_sqlite::SqliteConnectionManager>> {
        self.pool
            .get()
            .map_err(|e| log_error!("user lookup: {e}"))
            .ok()
    }
}

/// A user an MD5 response names, with their MD5 secret (`None`: added without `--md5`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Md5User {
    /// The name as stored: the whole name, where the response carries at most 32 bytes.
    pub name: String,
    /// The password MD5 needs.
    pub secret: Option<Vec<u8>>,
}

/// The user whose name an MD5 response carries, compared as the response carries it
/// ([`crate::auth::md5::response_user`]): the stored name cut to the field's 32 bytes must
/// equal the `wire` name, byte for byte (a cut may fall inside a character, so never as
/// text). A shorter name matches only itself; a 32-byte one the user of exactly that name,
/// else the one longer name starting with it (none if several do: RouterOS cuts names the
/// same way, and nothing on the wire tells them apart).
pub(crate) fn md5_user(conn: &Connection, wire: &[u8]) -> Result<Option<Md5User>, DbError> {
    let query = if wire.len() < USER_FIELD_LEN {
        "SELECT name, md5_secret FROM users WHERE CAST(name AS BLOB) = ?1"
    } else {
        "SELECT name, md5_secret FROM users WHERE length(CAST(name AS BLOB)) >= 32 \
         AND substr(CAST(name AS BLOB), 1, 32) = ?1 \
         ORDER BY length(CAST(name AS BLOB)) LIMIT 2"
    };
    let mut stmt = conn.prepare_cached(query).map_err(sql("reading a user"))?;
    let rows = stmt
        .query_map([wire], |r| {
            Ok(Md5User {
                name: r.get(0)?,
                secret: r.get(1)?,
            })
        })
        .map_err(sql("reading a user"))?;
    let found = rows
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql("reading a user"))?;
    let exact = found.iter().position(|u| u.name.as_bytes() == wire);
    Ok(match (exact, found.len()) {
        (Some(i), _) => found.into_iter().nth(i),
        (None, 1) => found.into_iter().next(),
        _ => None,
    })
}

/// The secret unknown users' EC-SRP5 decoys are derived from, kept in the database: made
/// once, on first use, so an unknown name's salt stays the same across restarts as a real
/// user's does (a per-process secret would change it, and tell the two apart).
fn stored_decoy_secret(conn: &Connection) -> Result<[u8; 32], DbError> {
    let read = || -> Result<Option<[u8; 32]>, DbError> {
        let hex: Option<String> = conn
            .query_row(
                "SELECT value FROM settings WHERE key = 'decoy_secret'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("reading the decoy secret"))?;
        Ok(hex.as_deref().and_then(from_hex))
    };
    if let Some(secret) = read()? {
        return Ok(secret);
    }
    let mut fresh = [0u8; 32];
    crate::sys::random::fill_or_abort(&mut fresh);
    let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    // OR IGNORE: a secret stored meanwhile (another handshake, an admin command) wins.
    conn.execute(
        "INSERT OR IGNORE INTO settings (key, value) VALUES ('decoy_secret', ?1)",
        [hex],
    )
    .map_err(sql("storing the decoy secret"))?;
    read()?.ok_or(DbError::Sqlite {
        context: "reading the decoy secret",
        source: rusqlite::Error::QueryReturnedNoRows,
    })
}

fn from_hex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Authenticator for DbAuth {
    fn method(&self) -> AuthMethod {
        self.method
    }

    fn md5_password(&self, user: &[u8]) -> Option<Vec<u8>> {
        let conn = self.connection()?;
        let found = md5_user(&conn, user)
            .map_err(|e| log_error!("user lookup: {e}"))
            .ok()??;
        if found.secret.is_none() {
            log!(
                0,
                "user '{}' has no MD5 secret (added without --md5); refusing. Set one with \
                 'user passwd NAME PASSWORD --md5' or run the server with --auth ecsrp5",
                found.name
            );
        }
        found.secret
    }

    fn ecsrp5_verifier(&self, user: &[u8]) -> Option<Verifier> {
        let conn = self.connection()?;
        let mut stmt = conn
            .prepare_cached("SELECT salt, x_gamma, gamma_parity FROM users WHERE name = ?1")
            .ok()?;
        let row = stmt.query_row([std::str::from_utf8(user).ok()?], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, bool>(2)?,
            ))
        });
        let (salt, x, parity) = match row {
            Ok(v) => v,
            Err(rusqlite::Error::QueryReturnedNoRows) => return None,
            Err(e) => {
                log_error!("user lookup: {e}");
                return None;
            }
        };
        Some(Verifier {
            salt: salt.try_into().ok()?,
            x_gamma: x.try_into().ok()?,
            gamma_parity: parity,
        })
    }

    fn decoy_secret(&self) -> [u8; 32] {
        if let Some(secret) = self.decoy.get() {
            return *secret;
        }
        match self.connection().map(|c| stored_decoy_secret(&c)) {
            Some(Ok(secret)) => *self.decoy.get_or_init(|| secret),
            Some(Err(e)) => {
                // Still a decoy, only not a stable one; the next handshake tries again.
                log_error!("{e}");
                process_decoy_secret()
            }
            None => process_decoy_secret(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(names: &[&str]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE users (name TEXT PRIMARY KEY, md5_secret BLOB); \
             CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )
        .unwrap();
        for n in names {
            conn.execute("INSERT INTO users VALUES (?1, x'7077')", [n])
                .unwrap();
        }
        conn
    }

    fn found(conn: &Connection, wire: &[u8]) -> Option<String> {
        md5_user(conn, wire).unwrap().map(|u| u.name)
    }

    #[test]
    fn md5_names_compare_as_the_response_cuts_them() {
        let long = "a".repeat(31) + "é-more";
        let conn = users(&[
            "bob",
            &long,
            &("b".repeat(32) + "1"),
            &("b".repeat(32) + "2"),
        ]);
        assert_eq!(found(&conn, b"bob").as_deref(), Some("bob"));
        assert_eq!(
            found(&conn, b"bo"),
            None,
            "a short name matches only itself"
        );
        // Cut inside the 'é': not UTF-8, still found.
        assert_eq!(found(&conn, &long.as_bytes()[..32]), Some(long.clone()));
        // Two users behind one cut name: nothing on the wire tells them apart.
        assert_eq!(found(&conn, "b".repeat(32).as_bytes()), None);
        conn.execute("INSERT INTO users VALUES (?1, NULL)", ["b".repeat(32)])
            .unwrap();
        assert_eq!(
            found(&conn, "b".repeat(32).as_bytes()),
            Some("b".repeat(32))
        );
    }

    #[test]
    fn the_decoy_secret_is_made_once() {
        let conn = users(&[]);
        let first = stored_decoy_secret(&conn).unwrap();
        assert_eq!(stored_decoy_secret(&conn).unwrap(), first);
        assert_ne!(first, [0; 32]);
    }
}
