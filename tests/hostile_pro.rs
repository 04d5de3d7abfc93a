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
