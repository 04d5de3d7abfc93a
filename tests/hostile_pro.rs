//! Budgets under attack: five parallel tests of four connections each, at unlimited rate, from
//! one user against a 100 MB daily budget of `btest-server-pro` (real binaries, loopback).
//! The streams draw from the budget before they move data, so the user ends within a few
//! chunks of the budget however fast the link, and the stored usage is what the tests counted.
#![cfg(feature = "pro")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PRO: &str = env!("CARGO_BIN_EXE_btest-server-pro");
const BTEST: &str = env!("CARGO_BIN_EXE_btest");
const BUDGET: u64 = 100_000_000;

struct Db(PathBuf);

impl Db {
    fn new(tag: &str) -> Db {
        let p = std::env::temp_dir().join(format!("btest-hb-{}-{tag}.db", std::process::id()));
        let db = Db(p);
        db.clean();
        db
    }
    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
    fn clean(&self) {
        for s in ["", "-wal", "-shm", ".lock"] {
            let _ = std::fs::remove_file(format!("{}{s}", self.0.display()));
        }
    }
    fn query(&self, sql: &str) -> u64 {
        let conn = rusqlite::Connection::open(&self.0).expect("open db");
        conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .expect("query")
            .unwrap_or(0) as u64
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.clean();
    }
}

/// Starts the server, returns it with its port and log.
fn start(db: &Db, extra: &[&str]) -> (Child, u16, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(PRO)
        .args(["--db", db.path(), "-P", "0", "--listen", "127.0.0.1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn btest-server-pro");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1)
                && let Some(port) = rest.rsplit(':').next().and_then(|p| p.parse().ok())
            {
                let _ = tx.send(port);
            }
            sink.lock().unwrap().push(line);
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server did not start");
    (child, port, log)
}

/// Bytes of the client's `[ avg]` line for `dir` (0 without one).
fn summary(out: &Output, dir: &str) -> u64 {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("[ avg]") && l.contains(dir))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|b| b.parse().ok())
        .unwrap_or(0)
}

/// Five 4-connection tests at once, each asking the server for `dir` at unlimited rate;
/// returns (stored user usage, bytes the clients counted, the server log).
fn attack(tag: &str, proto: &[&str], dir: &str) -> (u64, u64, String) {
    // One attack at a time: each wants the whole machine, and UDP tests would share ports.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let db = Db::new(tag);
    let add = Command::new(PRO)
        .args(["--db", db.path(), "user", "add", "alice", "pw"])
        .output()
        .expect("user add");
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    // UDP ports away from the default 2001, which other tests on this machine use.
    let udp_base = (20_000 + std::process::id() % 20_000).to_string();
    let (mut server, port, log) = start(
        &db,
        &["--daily-quota", "100M", "-v", "--udp-port-base", &udp_base],
    );
    let port = port.to_string();
    let client_dir = if dir == "out" { "-r" } else { "-t" };
    let clients: Vec<Child> = (0..5)
        .map(|_| {
            Command::new(BTEST)
                .args(["-c", "127.0.0.1", "-P", &port, "-q", client_dir])
                .args(proto)
                .args(["--connections", "4", "-d", "8", "-a", "alice", "-p", "pw"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("client")
        })
        .collect();
    let mut seen = 0;
    for c in clients {
        let out = c.wait_with_output().expect("client output");
        seen += summary(&out, if dir == "out" { "RX" } else { "TX" });
    }
    // SIGTERM: the writer commits everything before the process exits.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let status = server.wait().expect("wait");
    let log = log.lock().unwrap().join("\n");
    assert!(status.success(), "server exit {status:?}: {log}");
    let stored = db.query(
        "SELECT sum(bytes_in) + sum(bytes_out) FROM usage WHERE kind = 'user' AND subject = 'alice'",
    );
    let sessions = db.query("SELECT sum(bytes_in) + sum(bytes_out) FROM sessions");
    assert_eq!(stored, sessions, "usage rows and session rows disagree");
    eprintln!("bench=budget_attack_{tag} value={stored} unit=bytes (clients saw {seen})");
    (stored, seen, log)
}

/// Runs [`attack`] and checks the bound; with `tolerance`, also that the clients counted what
/// was stored (only meaningful where the server sends: a sending client counts what its kernel
/// took, including megabytes the server never read after the budget stopped it).
fn check(tag: &str, proto: &[&str], dir: &str, tolerance: Option<f64>) {
    let (stored, seen, log) = attack(tag, proto, dir);
    assert!(
        stored <= BUDGET * 11 / 10,
        "{tag}: {stored} bytes stored for a {BUDGET}-byte budget\n{log}"
    );
    assert!(
        stored >= BUDGET * 8 / 10,
        "{tag}: only {stored} bytes moved\n{log}"
    );
    assert!(
        log.contains("budget spent"),
        "{tag}: no budget stop logged\n{log}"
    );
    let Some(tolerance) = tolerance else {
        return;
    };
    let diff = stored.abs_diff(seen) as f64 / stored.max(1) as f64;
    assert!(
        diff <= tolerance,
        "{tag}: stored {stored} vs clients' {seen} ({:.2} %)",
        diff * 100.0
    );
}

#[test]
fn tcp_budget_holds_when_the_clients_send() {
    check("tcp-in", &[], "in", None);
}

#[test]
fn tcp_budget_holds_when_the_server_sends() {
    check("tcp-out", &[], "out", Some(0.01));
}

#[test]
fn udp_budget_holds_when_the_clients_send() {
    check("udp-in", &["-u"], "in", None);
}

#[test]
fn udp_budget_holds_when_the_server_sends() {
    // The clients see what arrived, less what loopback dropped at this rate: bound only.
    check("udp-out", &["-u"], "out", None);
}

/// `user add` reads the password from standard input (not the command line, where `ps` and
/// the shell history keep it), and a user whose name is longer than the 32 bytes the MD5
/// response carries can still log in with MD5.
#[test]
fn md5_login_with_a_long_name_added_from_stdin() {
    use std::io::Write;
    let db = Db::new("md5-long");
    let name = "a-user-name-longer-than-thirty-two-bytes";
    let mut add = Command::new(PRO)
        .args(["--db", db.path(), "user", "add", name, "--md5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("user add");
    add.stdin
        .take()
        .expect("stdin")
        .write_all(b"from-stdin\n")
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The positional form still works, with a warning.
    let old = Command::new(PRO)
        .args(["--db", db.path(), "user", "add", "bob", "pw"])
        .output()
        .unwrap();
    assert!(old.status.success());
    assert!(String::from_utf8_lossy(&old.stderr).contains("visible in ps"));
    // Offsets that are not whole quarter hours are refused (usage is kept in 15-minute buckets).
    let tz = Command::new(PRO)
        .args(["--db", db.path(), "--tz", "+02:10", "-P", "0"])
        .output()
        .unwrap();
    assert_eq!(
        tz.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&tz.stderr)
    );

    let (mut server, port, log) = start(&db, &["--auth", "md5"]);
    let client = Command::new(BTEST)
        .args([
            "-c",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-q",
            "-r",
            "-d",
            "1",
        ])
        .args(["-b", "10M", "-a", name, "-p", "from-stdin"])
        .output()
        .unwrap();
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let _ = server.wait();
    assert!(
        client.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&client.stderr),
        log.lock().unwrap().join("\n")
    );
}

/// A tmpfs mount removed when the test ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!("btest-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Fills the file system holding `path` until it refuses a byte.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0x5a_u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

/// One GET over plain TCP; returns (status, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("http connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

fn wait_log(log: &Arc<Mutex<Vec<String>>>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = log.lock().unwrap().iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never logged '{needle}':\n{}",
            log.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The database on a tiny file system that fills up during a test: no usage a client was told
/// about is lost, new tests are refused while writes fail (log, /metrics, /api/health say
/// so), and service comes back when space does.
#[test]
fn a_full_disk_loses_no_usage_and_fails_closed() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let Some(fs) = Tmpfs::mount("2m") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let db = Db(fs.0.join("full.db"));
    let add = Command::new(PRO)
        .args([
            "--db",
            db.path(),
            "user",
            "add",
            "alice",
            "--password-file",
            "/dev/stdin",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(b"pw\n")?;
            c.wait()
        })
        .expect("user add");
    assert!(add.success());
    let (mut server, port, log) = start(&db, &["--http", "127.0.0.1:0", "-v"]);
    let http_port: u16 = wait_log(&log, "http: serving on http://")
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("http port");
    let port = port.to_string();
    let spawn = |secs: &str| {
        Command::new(BTEST)
            .args([
                "-c",
                "127.0.0.1",
                "-P",
                &port,
                "-q",
                "-r",
                "-b",
                "20M",
                "-d",
                secs,
            ])
            .args(["-a", "alice", "-p", "pw"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("client")
    };
    let run = |secs: &str| spawn(secs).wait_with_output().expect("client");
    let mut told = 0;
    let first = run("1");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    told += summary(&first, "RX");
    assert_eq!(http_get(http_port, "/api/health").0, 200);

    // A test running when the disk fills keeps going and its bytes are held in memory. The
    // disk fills once it has started (its start line logged), so admission saw a healthy
    // database and the fill lands mid-test.
    let starts = || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(" start: "))
            .count()
    };
    let before = starts();
    let during = spawn("3");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while starts() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the test never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    fill(&fs.0.join("filler"));
    let during = during.wait_with_output().expect("client");
    assert!(
        during.status.success(),
        "{}",
        String::from_utf8_lossy(&during.stderr)
    );
    told += summary(&during, "RX");
    wait_log(&log, "database writes failing");
    let refused = run("1");
    assert!(
        !refused.status.success(),
        "a new test ran while writes fail"
    );
    let (status, body) = http_get(http_port, "/api/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"accepting_tests\":false"), "{body}");
    let (_, metrics) = http_get(http_port, "/metrics");
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("btest_db_write_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("btest_db_write_errors_total");
    assert!(errors > 0, "{metrics}");

    std::fs::remove_file(fs.0.join("filler")).unwrap();
    wait_log(&log, "database writes succeed again");
    assert_eq!(http_get(http_port, "/api/health").0, 200);
    let after = run("1");
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    told += summary(&after, "RX");

    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert!(server.wait().expect("wait").success());
    let stored = db.query("SELECT sum(bytes_out) FROM usage WHERE kind = 'user'");
    // The server counts what it wrote; the clients what arrived: a few bytes of status apart.
    assert!(
        stored.abs_diff(told) <= told / 100,
        "stored {stored}, clients were told {told}"
    );
    drop(db);
    drop(fs);
}

/// Two servers on one database would hand out the same session ids: the second refuses to
/// start while the first holds the lock file.
#[test]
fn a_second_server_on_one_database_refuses_to_start() {
    let db = Db::new("lock");
    let (mut first, _, _) = start(&db, &[]);
    let second = Command::new(PRO)
        .args(["--db", db.path(), "-P", "0", "--listen", "127.0.0.1"])
        .output()
        .expect("second server");
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    let _ = first.wait();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("in use by another btest-server-pro"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
}

/// Unknown join tokens (refusals before any authentication) add one history row per address,
/// outcome and minute, not one per connection.
#[test]
fn refusals_are_aggregated_per_address_and_minute() {
    use std::io::{Read, Write};
    let db = Db::new("refusals");
    let (mut server, port, _log) = start(&db, &["--open"]);
    for i in 0..30u16 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut hello = [0u8; 4];
        s.read_exact(&mut hello).unwrap();
        s.write_all(&btest_rs::proto::encode_join(0x0303 + i))
            .unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert!(server.wait().expect("wait").success());
    let rows = db.query("SELECT count(*) FROM sessions WHERE outcome = 'refused'");
    // Two rows if the attack straddled a minute boundary.
    assert!((1..=2).contains(&rows), "{rows} rows for 30 refusals");
    let conn = rusqlite::Connection::open(&db.0).unwrap();
    let mut stmt = conn
        .prepare("SELECT detail FROM sessions WHERE outcome = 'refused'")
        .unwrap();
    let total: u64 = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| {
            let d = d.unwrap();
            d.split(" (")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(1)
        })
        .sum();
    assert_eq!(total, 30);
}
