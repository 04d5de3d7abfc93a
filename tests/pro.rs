//! End-to-end tests of `btest-server-pro`: the real binary, the real `btest` client, a fresh
//! database per test under the temp directory.
#![cfg(feature = "pro")]

mod common;

use std::time::{Duration, Instant};

use common::pro::TempDb;
use common::{TestServer, avg_bytes, spawn_client, text};

/// Waits until the server has logged `n` session ends: a client may exit a moment before
/// the server has seen its test end and given the address's slot back.
fn wait_ends(server: &TestServer, n: usize) {
    server.wait_for_count(" end: ", n, Duration::from_secs(5));
}

#[test]
fn user_commands_round_trip() {
    let db = TempDb::new("pro-users");
    db.admin_ok(&["user", "add", "alice", "pw1"]);
    db.admin_ok(&["user", "add", "bob", "pw2", "--md5"]);
    assert!(!db.admin(&["user", "add", "alice", "x"]).status.success());
    let list = db.admin_ok(&["user", "list"]);
    assert!(list.contains("alice\tecsrp5\t0"), "{list}");
    assert!(list.contains("bob\tecsrp5,md5\t0"), "{list}");
    let show = db.admin_ok(&[
        "user",
        "set-quota",
        "alice",
        "--daily",
        "2G",
        "--direction",
        "in",
    ]);
    assert!(show.contains("day/in=2000000000"), "{show}");
    db.admin_ok(&["user", "set-quota", "alice", "--monthly", "500M"]);
    let show = db.admin_ok(&["user", "show", "alice"]);
    // The daily figure stayed when only --monthly was given.
    assert!(show.contains("day/in=2000000000"), "{show}");
    assert!(show.contains("month/total=500000000"), "{show}");
    db.admin_ok(&["user", "passwd", "alice", "pw3"]);
    db.admin_ok(&["user", "del", "bob"]);
    let list = db.admin_ok(&["user", "list"]);
    assert!(!list.contains("bob"), "{list}");
    assert_eq!(db.admin(&["user", "del", "bob"]).status.code(), Some(1));
    assert_eq!(
        db.admin(&["user", "set-quota", "alice", "--daily", "lots"])
            .status
            .code(),
        Some(2)
    );
    // EC-SRP5 keeps no password: only alice's MD5-less row, so no secret at all.
    assert_eq!(
        db.query_u64("SELECT count(*) FROM users WHERE md5_secret IS NOT NULL"),
        0
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(db.path()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // The changed password works; the old one does not.
    let server = TestServer::start_pro(&db, &[]);
    let ok = server.client_quiet(&["-a", "alice", "-p", "pw3", "-r", "-b", "8M", "-d", "1"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let bad = server.client_quiet(&["-a", "alice", "-p", "pw1", "-r", "-d", "1"]);
    assert_eq!(bad.status.code(), Some(3));
    server.stop();
    assert_eq!(
        db.query_u64("SELECT count(*) FROM sessions WHERE outcome = 'auth_failed'"),
        1
    );
}

#[test]
fn md5_needs_a_stored_secret() {
    let db = TempDb::new("pro-md5");
    db.admin_ok(&["user", "add", "m", "pw", "--md5"]);
    db.admin_ok(&["user", "add", "e", "pw"]);
    let server = TestServer::start_pro(&db, &["--auth", "md5"]);
    let ok = server.client_quiet(&["-a", "m", "-p", "pw", "-r", "-b", "8M", "-d", "1"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let no = server.client_quiet(&["-a", "e", "-p", "pw", "-r", "-d", "1"]);
    assert_eq!(no.status.code(), Some(3));
    let log = server.stop();
    assert!(log.contains("user 'e' has no MD5 secret"), "{log}");
}

#[test]
fn running_test_stops_within_one_interval_and_spent_budget_refuses() {
    let db = TempDb::new("pro-budget");
    db.admin_ok(&["user", "add", "alice", "pw"]);
    db.admin_ok(&["user", "set-quota", "alice", "--daily", "5M"]);
    let server = TestServer::start_pro(&db, &[]);
    let start = Instant::now();
    // 20 Mbit/s = 2.5 MB per interval: the 5 MB budget lasts two intervals of a 10 s test.
    let out = server.client_quiet(&["-a", "alice", "-p", "pw", "-t", "-b", "20M", "-d", "10"]);
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "not stopped early"
    );
    let sent = avg_bytes(&out, "TX");
    let one_interval = 20_000_000 / 8;
    assert!(sent >= 5_000_000, "stopped before the budget: {sent}");
    assert!(
        sent <= 5_000_000 + one_interval + one_interval / 10,
        "{sent}"
    );
    let refused = server.client_quiet(&["-a", "alice", "-p", "pw", "-t", "-d", "1"]);
    assert!(!refused.status.success());
    let log = server.stop();
    assert!(
        log.contains("refused: user alice daily total budget spent"),
        "{log}"
    );
    let got =
        db.query_u64("SELECT bytes_in FROM sessions WHERE outcome = 'quota' AND bytes_in > 0");
    assert!(got <= 5_000_000 + one_interval + one_interval / 10, "{got}");
    assert_eq!(
        got,
        db.query_u64("SELECT sum(bytes_in) FROM usage WHERE kind = 'user'")
    );
    // A restart keeps the day's usage.
    let server = TestServer::start_pro(&db, &[]);
    assert!(
        !server
            .client(&["-a", "alice", "-p", "pw", "-t", "-d", "1"])
            .status
            .success()
    );
    // An override of 0 means unlimited for this user, while the server default stays.
    db.admin_ok(&["user", "set-quota", "alice", "--daily", "0"]);
    std::thread::sleep(Duration::from_millis(5200)); // the budget cache TTL
    let ok = server.client_quiet(&["-a", "alice", "-p", "pw", "-t", "-b", "8M", "-d", "1"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    server.stop();
    assert_eq!(
        db.query_u64("SELECT count(*) FROM sessions WHERE outcome = 'quota'"),
        3
    );
}

#[test]
fn concurrent_sessions_share_one_budget() {
    let db = TempDb::new("pro-shared");
    // An IP budget of 6 MB, three sessions at 16 Mbit/s (2 MB per interval) each.
    let server = TestServer::start_pro(&db, &["--open", "--ip-daily-quota", "6M"]);
    let clients: Vec<_> = (0..3)
        .map(|_| spawn_client(server.port, &["-q", "-t", "-b", "16M", "-d", "10"]))
        .collect();
    let total: u64 = clients
        .into_iter()
        .map(|c| avg_bytes(&c.wait_with_output().expect("wait"), "TX"))
        .sum();
    server.stop();
    let server_total = db.query_u64("SELECT sum(bytes_in) FROM sessions");
    // One interval each at most beyond the budget, not 3 x the remainder (18 MB).
    assert!(
        server_total <= 6_000_000 + 3 * 2_000_000 + 300_000,
        "{server_total}"
    );
    assert!(total <= 6_000_000 + 3 * 2_000_000 + 600_000, "{total}");
    assert_eq!(
        server_total,
        db.query_u64("SELECT sum(bytes_in) FROM usage WHERE kind = 'ip'")
    );
}

#[test]
fn fifty_concurrent_sessions_are_all_accounted() {
    let db = TempDb::new("pro-fifty");
    // All 50 clients come from 127.0.0.1 at once: past the default 32 handshake places per
    // address, a client started under load could be turned away before its test begins.
    let server = TestServer::start_pro(
        &db,
        &[
            "--open",
            "--max-conn-per-ip",
            "60",
            "--max-sessions",
            "60",
            "--max-handshakes-per-ip",
            "64",
        ],
    );
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let dir = if i % 2 == 0 { "-t" } else { "-r" };
            spawn_client(server.port, &["-q", dir, "-b", "2M", "-d", "2"])
        })
        .collect();
    let mut client_bytes = 0u64;
    for c in clients {
        let out = c.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", text(&out.stderr));
        client_bytes += avg_bytes(&out, "TX") + avg_bytes(&out, "RX");
    }
    let log = server.stop();
    assert!(!log.contains("locked"), "{log}");
    assert!(!log.contains("error"), "{log}");
    assert_eq!(
        db.query_u64("SELECT count(*) FROM sessions WHERE outcome = 'completed'"),
        50
    );
    let rows = db.query_u64("SELECT sum(bytes_in + bytes_out) FROM sessions");
    let usage = db.query_u64("SELECT sum(bytes_in + bytes_out) FROM usage");
    let intervals = db.query_u64("SELECT sum(bytes_in + bytes_out) FROM session_intervals");
    // Server-side figures agree exactly; the clients' differ only by bytes in flight when a
    // test ends (counted by the sender, never read by the receiver).
    assert_eq!(rows, usage);
    assert!(intervals <= rows);
    let diff = rows.abs_diff(client_bytes);
    assert!(
        diff <= client_bytes / 50,
        "server {rows} vs clients {client_bytes}"
    );
}

#[test]
fn per_ip_slots_come_back_after_multi_connection_tests() {
    let db = TempDb::new("pro-slots");
    let server = TestServer::start_pro(&db, &["--open", "--max-conn-per-ip", "1"]);
    for i in 1..=3 {
        let out = server.client_quiet(&["-r", "-b", "8M", "-d", "1", "--connections", "3"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        wait_ends(&server, i);
    }
    let log = server.stop();
    assert!(!log.contains("--max-conn-per-ip"), "{log}");
}

#[test]
fn per_ip_limit_refuses_a_second_concurrent_test() {
    let db = TempDb::new("pro-perip");
    let server = TestServer::start_pro(&db, &["--open", "--max-conn-per-ip", "1"]);
    let first = spawn_client(server.port, &["-q", "-r", "-b", "4M", "-d", "3"]);
    std::thread::sleep(Duration::from_millis(700));
    let second = server.client_quiet(&["-r", "-d", "1"]);
    assert!(!second.status.success());
    assert!(first.wait_with_output().expect("wait").status.success());
    wait_ends(&server, 1);
    let third = server.client_quiet(&["-r", "-b", "4M", "-d", "1"]);
    assert!(third.status.success(), "slot not given back");
    let log = server.stop();
    assert!(
        log.contains("already runs 1 tests (--max-conn-per-ip)"),
        "{log}"
    );
}

#[test]
fn corrupt_or_read_only_database_is_a_clear_start_up_error() {
    let db = TempDb::new("pro-corrupt");
    std::fs::write(&db.0, vec![0x42; 4096]).unwrap();
    let out = db.run_server(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not a btest-server-pro SQLite database or is damaged"),
        "{}",
        text(&out.stderr)
    );
    db.clean();
    db.admin_ok(&["user", "list"]);
    std::fs::set_permissions(&db.0, std::os::unix::fs::PermissionsExt::from_mode(0o400)).unwrap();
    let out = db.run_server(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is read-only"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn usage_and_sessions_commands_report() {
    let db = TempDb::new("pro-report");
    let server = TestServer::start_pro(
        &db,
        &["--open", "--ip-monthly-quota", "1G", "--tz", "+02:00"],
    );
    let out = server.client_quiet(&["-r", "-b", "8M", "-d", "1"]);
    assert!(out.status.success());
    server.stop();
    let usage = db.admin_ok(&["usage", "--ip", "127.0.0.1", "--period", "month"]);
    assert!(usage.contains("PERIOD (+02:00)"), "{usage}");
    assert!(
        usage.contains("total") && usage.contains("/ 1000000000"),
        "{usage}"
    );
    let sessions = db.admin_ok(&["sessions", "--last", "5"]);
    assert!(
        sessions.contains("127.0.0.1\t-\ttcp\treceive\tnone\t1\t0\t"),
        "{sessions}"
    );
    assert!(sessions.contains("completed"), "{sessions}");
}

#[test]
fn kill_dash_9_loses_at_most_the_last_second() {
    let db = TempDb::new("pro-kill9");
    let server = TestServer::start_pro(&db, &["--open"]);
    let out = server.client_quiet(&["-t", "-b", "8M", "-d", "2"]);
    assert!(out.status.success());
    wait_ends(&server, 1);
    std::thread::sleep(Duration::from_millis(1100));
    // Dropping the server is SIGKILL: no drain, no final commit.
    drop(server);
    let sent = avg_bytes(&out, "TX");
    let stored = db.query_u64("SELECT sum(bytes_in) FROM usage WHERE kind = 'ip'");
    assert_eq!(
        stored,
        db.query_u64("SELECT bytes_in FROM sessions WHERE outcome = 'completed'")
    );
    assert!(
        stored.abs_diff(sent) <= sent / 50,
        "stored {stored}, sent {sent}"
    );
}
