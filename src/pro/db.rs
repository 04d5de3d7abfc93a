//! The database: one SQLite file in WAL mode, created with mode 0600, migrated on start
//! (`PRAGMA user_version` is the schema version), read through an r2d2 pool and written by
//! one writer thread ([`super::writer`]).
//!
//! Why 0600: a user allowed MD5 has their password stored (MD5 challenge-response needs the
//! password itself), so the file is as secret as a password file. SQLite gives the `-wal` and
//! `-shm` files the mode of the database file.

use std::fmt;
use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode};

/// The read pool.
pub type Pool = r2d2::Pool<SqliteConnectionManager>;

/// Schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = 3;

/// How long a statement waits for another writer (the admin commands, a second reader's
/// checkpoint) before giving up with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The columns of `sessions` after its id, as created by migration 1 and copied by 3.
macro_rules! session_columns {
    () => {
        "start_ms INTEGER NOT NULL, end_ms INTEGER, peer TEXT NOT NULL, user TEXT, \
         proto TEXT, direction TEXT, auth TEXT NOT NULL, \
         connections INTEGER NOT NULL DEFAULT 0, bytes_in INTEGER NOT NULL DEFAULT 0, \
         bytes_out INTEGER NOT NULL DEFAULT 0, avg_in_bps REAL, avg_out_bps REAL, \
         outcome TEXT NOT NULL, detail TEXT"
    };
}

/// Migrations in order; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: users, quota overrides, usage buckets, session history and per-second intervals.
    concat!(
        "
    CREATE TABLE users (
        name TEXT PRIMARY KEY NOT NULL,
        salt BLOB NOT NULL,
        x_gamma BLOB NOT NULL,
        gamma_parity INTEGER NOT NULL,
        md5_secret BLOB,
        created INTEGER NOT NULL
    );
    CREATE TABLE quotas (
        kind TEXT NOT NULL CHECK (kind IN ('user', 'ip')),
        subject TEXT NOT NULL,
        period TEXT NOT NULL CHECK (period IN ('day', 'week', 'month')),
        direction TEXT NOT NULL CHECK (direction IN ('in', 'out', 'total')),
        bytes INTEGER NOT NULL,
        PRIMARY KEY (kind, subject, period, direction)
    ) WITHOUT ROWID;
    CREATE TABLE usage (
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL DEFAULT 0,
        bytes_out INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (kind, subject, bucket)
    ) WITHOUT ROWID;
    CREATE TABLE sessions (id INTEGER PRIMARY KEY, ",
        session_columns!(),
        ");
    CREATE INDEX sessions_by_start ON sessions (start_ms);
    CREATE INDEX sessions_by_user ON sessions (user, start_ms);
    CREATE TABLE session_intervals (
        session_id INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        bytes_in INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        PRIMARY KEY (session_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE settings (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    "
    ),
    // 2: the HTTP side lists one address's sessions, newest first, for whoever asks from that
    // address; without an index each such request would scan the whole history.
    "CREATE INDEX sessions_by_peer ON sessions (peer, id);",
    // 3: SQLite assigns session ids, never reusing one (AUTOINCREMENT), so a link to a
    // pruned session cannot come to show a newer one. A column constraint cannot be added in
    // place: the table is copied.
    concat!(
        "
    CREATE TABLE sessions_v3 (id INTEGER PRIMARY KEY AUTOINCREMENT, ",
        session_columns!(),
        ");
    INSERT INTO sessions_v3 (id, start_ms, end_ms, peer, user, proto, direction, auth,
        connections, bytes_in, bytes_out, avg_in_bps, avg_out_bps, outcome, detail)
        SELECT id, start_ms, end_ms, peer, user, proto, direction, auth, connections,
        bytes_in, bytes_out, avg_in_bps, avg_out_bps, outcome, detail FROM sessions;
    DROP TABLE sessions;
    ALTER TABLE sessions_v3 RENAME TO sessions;
    CREATE INDEX sessions_by_start ON sessions (start_ms);
    CREATE INDEX sessions_by_user ON sessions (user, start_ms);
    CREATE INDEX sessions_by_peer ON sessions (peer, id);
    "
    ),
];

/// Why the database cannot be used. Each message says what to do about it.
#[derive(Debug)]
pub enum DbError {
    /// The file could not be created.
    Create {
        /// The database path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The path exists but is not a regular file.
    NotAFile(PathBuf),
    /// The file (or its directory) is not writable.
    ReadOnly(PathBuf),
    /// The file is not a SQLite database or is damaged.
    Corrupt {
        /// The database path.
        path: PathBuf,
        /// SQLite's words.
        detail: String,
    },
    /// A newer btest-server-pro wrote this schema.
    TooNew {
        /// The database path.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// Any other SQLite failure.
    Sqlite {
        /// What we were doing.
        context: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The read pool could not be built.
    Pool(r2d2::Error),
    /// Another server holds the database's lock file.
    Locked(PathBuf),
    /// Other users may read the file, and it holds MD5 passwords.
    Exposed {
        /// The database path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Create { path, source } => write!(
                f,
                "cannot create database {}: {source}; check the directory exists and is writable",
                path.display()
            ),
            DbError::NotAFile(p) => {
                write!(f, "database path {} is not a regular file", p.display())
            }
            DbError::ReadOnly(p) => write!(
                f,
                "database {} is read-only; the server must write usage and sessions (fix the \
                 file's permissions or pass another --db)",
                p.display()
            ),
            DbError::Corrupt { path, detail } => write!(
                f,
                "database {} is not a btest-server-pro SQLite database or is damaged ({detail}); \
                 move it away or restore a backup",
                path.display()
            ),
            DbError::TooNew { path, found } => write!(
                f,
                "database {} has schema version {found}, newer than this build understands \
                 ({SCHEMA_VERSION}); upgrade btest-server-pro",
                path.display()
            ),
            DbError::Sqlite { context, source } => {
                write!(f, "database error while {context}: {source}")
            }
            DbError::Pool(e) => write!(f, "cannot open database connections: {e}"),
            DbError::Locked(p) => write!(
                f,
                "database {} is in use by another btest-server-pro (its lock file {}.lock is \
                 held); two servers on one database would collide",
                p.display(),
                p.display()
            ),
            DbError::Exposed { path, mode } => write!(
                f,
                "database {} holds MD5 passwords and is readable by other users (mode {mode:o}); \
                 run chmod 600 on it",
                path.display()
            ),
        }
    }
}

impl std::error::Error for DbError {}

/// Wraps a SQLite error with what we were doing.
pub fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> DbError {
    move |source| DbError::Sqlite { context, source }
}

/// An opened, migrated database: its path, for more connections, and a read pool.
pub struct Db {
    path: PathBuf,
    pool: Pool,
}

impl Db {
    /// Creates (mode 0600) or opens the file, checks it, switches to WAL, migrates the schema
    /// and builds the read pool.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let mode = prepare_file(path)?;
        let conn = connect(path)?;
        migrate(&conn, path)?;
        refuse_if_exposed(&conn, path, mode)?;
        drop(conn);
        Ok(Db {
            path: path.to_path_buf(),
            pool: pool(path, 4)?,
        })
    }

    /// A pool of its own for a part that must not wait on the others (the HTTP side, so a
    /// busy dashboard cannot delay logins and admissions).
    pub fn separate_pool(&self, size: u32) -> Result<Pool, DbError> {
        pool(&self.path, size)
    }

    /// Takes the server's exclusive lock on the database (`PATH.lock`, held until the
    /// returned file is dropped): two servers on one file would each count only their own
    /// sessions against the budgets.
    pub fn lock_exclusive(&self) -> Result<std::fs::File, DbError> {
        let lock_path = PathBuf::from(format!("{}.lock", self.path.display()));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| DbError::Create {
                path: lock_path,
                source,
            })?;
        if !crate::sys::flock::try_lock_exclusive(&file) {
            return Err(DbError::Locked(self.path.clone()));
        }
        Ok(file)
    }

    /// The read pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A connection of its own (the writer thread, admin commands).
    pub fn connection(&self) -> Result<Connection, DbError> {
        connect(&self.path)
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A file others may read is refused once it holds an MD5 password (a password in the clear,
/// like the admin-token file, which is refused the same way); without one it only warns.
fn refuse_if_exposed(conn: &Connection, path: &Path, mode: u32) -> Result<(), DbError> {
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let md5: i64 = conn
        .query_row(
            "SELECT count(*) FROM users WHERE md5_secret IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .map_err(|e| classify(path, "reading users", e))?;
    if md5 > 0 {
        return Err(DbError::Exposed {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    crate::log!(
        0,
        "warning: database {} is readable by other users (mode {:o}); it will hold MD5 \
         passwords if a user is added with --md5: chmod 600 it",
        path.display(),
        mode & 0o777
    );
    Ok(())
}

/// How long a reader waits for a pooled connection before giving up: short, so a slow
/// dashboard or a stuck query delays an admission by at most this (r2d2 waits 30 s by
/// default). The data path never uses the database at all.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(2);

fn pool(path: &Path, size: u32) -> Result<Pool, DbError> {
    let manager = SqliteConnectionManager::file(path).with_init(|c| configure(c));
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(CHECKOUT_TIMEOUT)
        .build(manager)
        .map_err(DbError::Pool)
}

/// Creates the file with mode 0600 before SQLite sees it, or checks the existing one; returns
/// its permission bits.
fn prepare_file(path: &Path) -> Result<u32, DbError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            if !meta.is_file() {
                return Err(DbError::NotAFile(path.to_path_buf()));
            }
            // Checked by the bits, not by trying: root would be let through by the kernel and
            // then fail later, mid-session, on the first commit.
            if meta.permissions().mode() & 0o200 == 0 {
                return Err(DbError::ReadOnly(path.to_path_buf()));
            }
            Ok(meta.permissions().mode())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map(|_| 0o600)
            .map_err(|source| DbError::Create {
                path: path.to_path_buf(),
                source,
            }),
        Err(source) => Err(DbError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL with NORMAL: a commit is durable after the next checkpoint's fsync, and never
    // corrupts; losing the last instant of usage on power loss is the accepted cost.
    conn.pragma_update(None, "synchronous", "NORMAL")
}

fn classify(path: &Path, context: &'static str, e: rusqlite::Error) -> DbError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => DbError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        Some(ErrorCode::ReadOnly)
        | Some(ErrorCode::CannotOpen)
        | Some(ErrorCode::PermissionDenied) => DbError::ReadOnly(path.to_path_buf()),
        _ => DbError::Sqlite { context, source: e },
    }
}

/// Opens a connection, sets WAL and the busy timeout, and proves the file is a database.
fn connect(path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open(path).map_err(|e| classify(path, "opening", e))?;
    configure(&conn).map_err(|e| classify(path, "configuring", e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| classify(path, "switching to WAL", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("journal mode stays '{mode}'"),
        });
    }
    Ok(conn)
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), DbError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| classify(path, "reading the schema version", e))?;
    if version > SCHEMA_VERSION {
        return Err(DbError::TooNew {
            path: path.to_path_buf(),
            found: version,
        });
    }
    if version == 0 {
        // A version-0 file must be empty: anything else is some other program's database.
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| classify(path, "reading the schema", e))?;
        if tables > 0 {
            return Err(DbError::Corrupt {
                path: path.to_path_buf(),
                detail: "it has tables but no btest-server-pro schema version".into(),
            });
        }
    }
    for (from, script) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let to = from as i64 + 1;
        let batch = format!("BEGIN IMMEDIATE; {script} PRAGMA user_version = {to}; COMMIT;");
        if let Err(e) = conn.execute_batch(&batch) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(classify(path, "migrating the schema", e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("btest-db-{}-{name}.db", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn creates_with_mode_0600_and_migrates_once() {
        let p = temp("create");
        let db = Db::open(&p).expect("open");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(db);
        let db = Db::open(&p).expect("reopen");
        let v: i64 = db
            .connection()
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let _ = std::fs::remove_file(&p);
    }

    /// A schema 2 database keeps its sessions through migration 3, and new ids continue
    /// after the highest one.
    #[test]
    fn migration_3_keeps_sessions_and_continues_their_ids() {
        let p = temp("v2");
        {
            let conn = Connection::open(&p).unwrap();
            for m in &MIGRATIONS[..2] {
                conn.execute_batch(m).unwrap();
            }
            conn.execute_batch(
                "PRAGMA user_version = 2; INSERT INTO sessions (id, start_ms, peer, auth, \
                 outcome) VALUES (41, 1, '192.0.2.1', 'none', 'completed');",
            )
            .unwrap();
        }
        let conn = Db::open(&p).unwrap().connection().unwrap();
        conn.execute(
            "INSERT INTO sessions (start_ms, peer, auth, outcome) VALUES (2, 'x', 'none', 'x')",
            [],
        )
        .unwrap();
        let ids: Vec<i64> = conn
            .prepare("SELECT id FROM sessions ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ids, [41, 42]);
        for s in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{s}", p.display()));
        }
    }

    #[test]
    fn garbage_and_read_only_files_are_clear_errors() {
        let p = temp("garbage");
        std::fs::write(&p, vec![0x5a; 8192]).unwrap();
        let e = Db::open(&p).err().expect("garbage must fail");
        assert!(matches!(e, DbError::Corrupt { .. }), "{e}");
        std::fs::remove_file(&p).unwrap();
        let p = temp("ro");
        drop(Db::open(&p).unwrap());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        let e = Db::open(&p).err().expect("read-only must fail");
        assert!(matches!(e, DbError::ReadOnly(_)), "{e}");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_readable_file_with_md5_passwords_is_refused() {
        let p = temp("exposed");
        let db = Db::open(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(db);
        // Without MD5 passwords: only a warning.
        let db = Db::open(&p).expect("no MD5 password yet");
        db.connection()
            .unwrap()
            .execute(
                "INSERT INTO users VALUES ('m', x'00', x'00', 0, x'7077', 0)",
                [],
            )
            .unwrap();
        drop(db);
        let e = Db::open(&p).err().expect("MD5 password in a readable file");
        assert!(matches!(e, DbError::Exposed { mode: 0o644, .. }), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Db::open(&p).is_ok());
        for s in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{s}", p.display()));
        }
    }
}
