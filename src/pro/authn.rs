//! Users from the database as an [`Authenticator`].
//!
//! EC-SRP5 needs only the stored salt and verifier. MD5 challenge-response needs the password
//! itself, so it is stored only for users added with `--md5`; the server offers one method
//! to every client (`--auth`), and a user without a secret for it is refused with a log line
//! that says how to fix it.

use crate::auth::ecsrp5::Verifier;
use crate::handshake::AuthMethod;
use crate::handshake::server::Authenticator;
use crate::log;

use super::db::Pool;

/// The user table, looked up per handshake through the read pool.
pub struct DbAuth {
    pool: Pool,
    method: AuthMethod,
}

impl DbAuth {
    /// Users of `pool`, offered `method` (MD5 or EC-SRP5).
    pub fn new(pool: Pool, method: AuthMethod) -> DbAuth {
        DbAuth { pool, method }
    }

    fn lookup<T>(
        &self,
        user: &[u8],
        query: &str,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Option<T> {
        let name = std::str::from_utf8(user).ok()?;
        let conn = match self.pool.get() {
            Ok(c) => c,
            Err(e) => {
                crate::log_error!("user lookup: {e}");
                return None;
            }
        };
        let mut stmt = conn.prepare_cached(query).ok()?;
        match stmt.query_row([name], f) {
            Ok(v) => Some(v),
            Err(rusqlite::Error::QueryReturnedNoRows) => None,
            Err(e) => {
                crate::log_error!("user lookup: {e}");
                None
            }
        }
    }
}

impl Authenticator for DbAuth {
    fn method(&self) -> AuthMethod {
        self.method
    }

    fn md5_password(&self, user: &[u8]) -> Option<Vec<u8>> {
        // The MD5 response carries at most 32 bytes of the name (RouterOS truncates longer
        // names the same way), so a 32-byte name also matches a longer user whose name starts
        // with it, if exactly one does. Compared as bytes: SQLite's substr counts characters.
        let secret = self.lookup(
            user,
            "SELECT md5_secret FROM users WHERE name = ?1 \
             UNION ALL SELECT md5_secret FROM users WHERE length(CAST(?1 AS BLOB)) = 32 \
             AND length(CAST(name AS BLOB)) > 32 AND substr(CAST(name AS BLOB), 1, 32) = CAST(?1 AS BLOB) \
             AND (SELECT count(*) FROM users WHERE length(CAST(name AS BLOB)) > 32 \
                  AND substr(CAST(name AS BLOB), 1, 32) = CAST(?1 AS BLOB)) = 1 \
             LIMIT 1",
            |r| r.get::<_, Option<Vec<u8>>>(0),
        )?;
        if secret.is_none() {
            log!(
                0,
                "user '{}' has no MD5 secret (added without --md5); refusing. Set one with \
                 'user passwd NAME PASSWORD --md5' or run the server with --auth ecsrp5",
                String::from_utf8_lossy(user)
            );
        }
        secret
    }

    fn ecsrp5_verifier(&self, user: &[u8]) -> Option<Verifier> {
        self.lookup(
            user,
            "SELECT salt, x_gamma, gamma_parity FROM users WHERE name = ?1",
            |r| {
                let salt: Vec<u8> = r.get(0)?;
                let x: Vec<u8> = r.get(1)?;
                let parity: bool = r.get(2)?;
                Ok((salt, x, parity))
            },
        )
        .and_then(|(salt, x, parity)| {
            Some(Verifier {
                salt: salt.try_into().ok()?,
                x_gamma: x.try_into().ok()?,
                gamma_parity: parity,
            })
        })
    }
}
