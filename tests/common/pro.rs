//! `btest-server-pro` for the tests: a fresh database per test under the temp directory, the
//! admin commands run against it, and the server started on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{TestServer, text};

/// Path of the pro server binary under test.
pub const PRO: &str = env!("CARGO_BIN_EXE_btest-server-pro");

/// The admin token [`TestServer::start_pro_admin`] gives its server.
pub const ADMIN_TOKEN: &str = "a-long-enough-admin-token";

/// A database file (and its WAL, lock and token files) removed when the test ends.
pub struct TempDb(pub PathBuf);

impl TempDb {
    /// `btest-<tag>-<pid>.db` in the temp directory, removed first.
    pub fn new(tag: &str) -> TempDb {
        Self::at(std::env::temp_dir().join(format!("btest-{tag}-{}.db", std::process::id())))
    }

    /// A database at `path`, removed first.
    pub fn at(path: PathBuf) -> TempDb {
        let db = TempDb(path);
        db.clean();
        db
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }

    /// The admin token file beside the database.
    pub fn token(&self) -> String {
        format!("{}.token", self.0.display())
    }

    /// Writes `contents` to the token file with permissions `mode`; returns its path.
    pub fn write_token(&self, contents: &str, mode: u32) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = self.token();
        std::fs::write(&p, contents).expect("token file");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    pub fn clean(&self) {
        for s in ["", "-wal", "-shm", ".lock", ".token"] {
            let _ = std::fs::remove_file(format!("{}{s}", self.0.display()));
        }
    }

    /// `btest-server-pro --db PATH ARGS` (user, ip, usage, sessions commands).
    pub fn admin(&self, args: &[&str]) -> Output {
        Command::new(PRO)
            .args(["--db", self.path()])
            .args(args)
            .output()
            .expect("run admin command")
    }

    /// An admin command that must succeed; its stdout.
    pub fn admin_ok(&self, args: &[&str]) -> String {
        let out = self.admin(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// `user add NAME EXTRA` with the password on standard input, as an operator adds one
    /// (the positional form leaves it visible in `ps`); must succeed.
    pub fn add_user(&self, name: &str, password: &str, extra: &[&str]) {
        use std::io::Write;
        use std::process::Stdio;
        let mut add = Command::new(PRO)
            .args(["--db", self.path(), "user", "add", name])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run user add");
        if let Some(mut stdin) = add.stdin.take() {
            stdin
                .write_all(format!("{password}\n").as_bytes())
                .expect("password to user add");
        }
        let out = add.wait_with_output().expect("wait for user add");
        assert!(
            out.status.success(),
            "user add {name}: {}",
            text(&out.stderr)
        );
    }

    /// The first column of every row `sql` returns, as text.
    pub fn strings(&self, sql: &str) -> Vec<String> {
        let conn = self.read_only();
        let mut stmt = conn.prepare(sql).expect(sql);
        stmt.query_map([], |r| r.get(0))
            .expect(sql)
            .collect::<Result<_, _>>()
            .expect(sql)
    }

    /// One number from the database (NULL is 0).
    pub fn query_u64(&self, sql: &str) -> u64 {
        let conn = rusqlite::Connection::open(&self.0).expect("open db");
        conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .expect("query")
            .unwrap_or(0) as u64
    }

    /// The database opened read-only, as a reader beside a running server would.
    pub fn read_only(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(&self.0, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db read-only")
    }

    /// One number through a read-only connection (NULL is 0).
    pub fn q(&self, sql: &str) -> i64 {
        self.read_only()
            .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .expect(sql)
            .unwrap_or(0)
    }

    /// `btest-server-pro --db PATH -P 0 --listen 127.0.0.1 EXTRA`, run to its exit (start-up
    /// errors).
    pub fn run_server(&self, extra: &[&str]) -> Output {
        Command::new(PRO)
            .args(["--db", self.path(), "-P", "0", "--listen", "127.0.0.1"])
            .args(extra)
            .output()
            .expect("run btest-server-pro")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.clean();
    }
}

impl TestServer {
    /// `btest-server-pro` on `db`, 127.0.0.1, a port it chooses.
    pub fn start_pro(db: &TempDb, extra: &[&str]) -> TestServer {
        Self::start_pro_at(&db.0, extra)
    }

    /// `btest-server-pro` on the database at `db`.
    pub fn start_pro_at(db: &Path, extra: &[&str]) -> TestServer {
        let mut cmd = Command::new(PRO);
        cmd.arg("--db")
            .arg(db)
            .args(["-P", "0", "--listen", "127.0.0.1"])
            .args(extra);
        TestServer::spawn(cmd)
    }

    /// `btest-server-pro --http 127.0.0.1:0` as well; `http` is the port it serves on.
    pub fn start_pro_http(db: &TempDb, extra: &[&str]) -> TestServer {
        let mut args = vec!["--http", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut server = Self::start_pro(db, &args);
        server.http = server.http_port();
        server
    }

    /// [`TestServer::start_pro_http`] with [`ADMIN_TOKEN`] as its admin token (written to
    /// the token file beside `db`).
    pub fn start_pro_admin(db: &TempDb, extra: &[&str]) -> TestServer {
        let token = db.write_token(ADMIN_TOKEN, 0o600);
        let mut args = vec!["--http-admin-token-file", &token];
        args.extend_from_slice(extra);
        Self::start_pro_http(db, &args)
    }

    /// The port of the `http: serving on http://ADDR:PORT/` line.
    pub fn http_port(&self) -> u16 {
        let line = self.wait_for_log("http: serving on ", std::time::Duration::from_secs(10));
        line.trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line}"))
    }
}
