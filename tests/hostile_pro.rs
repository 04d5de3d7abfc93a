//! Budgets under attack: five parallel tests of four connections each, at unlimited rate, from
//! one user against a 100 MB daily budget of `btest-server-pro` (real binaries, loopback).
//! The streams draw from the budget before they move data, so the user ends within a few
//! chunks of the budget however fast the link, and the stored usage is what the tests counted.
#![cfg(feature = "pro")]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::pro::{PRO, TempDb};
use common::web::get;
use common::{TestServer, avg_bytes, is_root, skip, spawn_client, text};

const BUDGET: u64 = 100_000_000;

/// Five 4-connection tests at once, each asking the server for `dir` at unlimited rate;
/// returns (stored user usage, bytes the clients counted, the server log).
fn attack(tag: &str, proto: &[&str], dir: &str) -> (u64, u64, String) {
    // One attack at a time: each wants the whole machine, and UDP tests would share ports.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let db = TempDb::new(&format!("hb-{tag}"));
    db.admin_ok(&["user", "add", "alice", "pw"]);
    // UDP ports away from the default 2001, which other tests on this machine use.
    let udp_base = (20_000 + std::process::id() % 20_000).to_string();
    let server = TestServer::start_pro(
        &db,
        &["--daily-quota", "100M", "-v", "--udp-port-base", &udp_base],
    );
    let client_dir = if dir == "out" { "-r" } else { "-t" };
    let mut args = vec!["-q", client_dir];
    args.extend_from_slice(proto);
    args.extend_from_slice(&["--connections", "4", "-d", "8", "-a", "alice", "-p", "pw"]);
    let clients: Vec<Child> = (0..5).map(|_| spawn_client(server.port, &args)).collect();
    let mut seen = 0;
    for c in clients {
        let out = c.wait_with_output().expect("client output");
        seen += avg_bytes(&out, if dir == "out" { "RX" } else { "TX" });
    }
    // SIGTERM: the writer commits everything before the process exits.
    let log = server.stop();
    let stored = db.query_u64(
        "SELECT sum(bytes_in) + sum(bytes_out) FROM usage WHERE kind = 'user' AND subject = 'alice'",
    );
    let sessions = db.query_u64("SELECT sum(bytes_in) + sum(bytes_out) FROM sessions");
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
    let db = TempDb::new("hb-md5-long");
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
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The positional form still works, with a warning.
    let old = db.admin(&["user", "add", "bob", "pw"]);
    assert!(old.status.success());
    assert!(String::from_utf8_lossy(&old.stderr).contains("visible in ps"));
    // Offsets that are not whole quarter hours are refused (usage is kept in 15-minute buckets).
    let tz = db.admin(&["--tz", "+02:10", "-P", "0"]);
    assert_eq!(
        tz.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&tz.stderr)
    );

    let server = TestServer::start_pro(&db, &["--auth", "md5"]);
    let client =
        server.client_quiet(&["-r", "-d", "1", "-b", "10M", "-a", name, "-p", "from-stdin"]);
    let log = server.log().join("\n");
    let _ = server.terminate();
    assert!(client.status.success(), "{}\n{log}", text(&client.stderr));
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

/// The database on a tiny file system that fills up during a test: no usage a client was told
/// about is lost, new tests are refused while writes fail (log, /metrics, /api/health say
/// so), and service comes back when space does.
#[test]
fn a_full_disk_loses_no_usage_and_fails_closed() {
    if !is_root() {
        skip("mounting a tmpfs needs root");
        return;
    }
    let Some(fs) = Tmpfs::mount("2m") else {
        skip("cannot mount a tmpfs here");
        return;
    };
    let db = TempDb::at(fs.0.join("full.db"));
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
    let server = TestServer::start_pro_http(&db, &["-v"]);
    let http_port = server.http;
    let spawn = |secs: &str| {
        spawn_client(
            server.port,
            &[
                "-q", "-r", "-b", "20M", "-d", secs, "-a", "alice", "-p", "pw",
            ],
        )
    };
    let run = |secs: &str| spawn(secs).wait_with_output().expect("client");
    let mut told = 0;
    let first = run("1");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    told += avg_bytes(&first, "RX");
    assert_eq!(get(http_port, "/api/health", None).status, 200);

    // A test running when the disk fills keeps going and its bytes are held in memory. The
    // disk fills once it has started (its start line logged), so admission saw a healthy
    // database and the fill lands mid-test.
    let starts = || server.count_log(" start: ");
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
    told += avg_bytes(&during, "RX");
    server.wait_for_log("database writes failing", Duration::from_secs(20));
    let refused = run("1");
    assert!(
        !refused.status.success(),
        "a new test ran while writes fail"
    );
    let health = get(http_port, "/api/health", None);
    let (status, body) = (health.status, health.body);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"accepting_tests\":false"), "{body}");
    let metrics = get(http_port, "/metrics", None).body;
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("btest_db_write_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("btest_db_write_errors_total");
    assert!(errors > 0, "{metrics}");

    std::fs::remove_file(fs.0.join("filler")).unwrap();
    server.wait_for_log("database writes succeed again", Duration::from_secs(20));
    assert_eq!(get(http_port, "/api/health", None).status, 200);
    let after = run("1");
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    told += avg_bytes(&after, "RX");

    server.stop();
    let stored = db.query_u64("SELECT sum(bytes_out) FROM usage WHERE kind = 'user'");
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
    let db = TempDb::new("hb-lock");
    let first = TestServer::start_pro(&db, &[]);
    let second = db.run_server(&[]);
    let _ = first.terminate();
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
    let db = TempDb::new("hb-refusals");
    let server = TestServer::start_pro(&db, &["--open"]);
    let port = server.port;
    for i in 0..30u16 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut hello = [0u8; 4];
        s.read_exact(&mut hello).unwrap();
        s.write_all(&btest_rs::proto::encode_join(0x0303 + i))
            .unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    assert!(server.terminate().success());
    let rows = db.query_u64("SELECT count(*) FROM sessions WHERE outcome = 'refused'");
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
