//! The serving settings the server stores at start (time zone, default budgets), so the
//! administration reports use the same zone and defaults as the running server.

use rusqlite::{Connection, OptionalExtension};

use crate::pro::db::{DbError, sql};
use crate::pro::quota::{Limit, Limits, Period, Tz};

/// What the server stores of its own settings, so reports use the same zone and defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Settings {
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
pub(crate) fn save_settings(conn: &Connection, s: &Settings) -> Result<(), DbError> {
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
pub(crate) fn load_settings(conn: &Connection) -> Result<Settings, DbError> {
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
