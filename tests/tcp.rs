//! TCP tests end to end: the real `btest` binary as client and server over loopback.
#![allow(unsafe_code)] // FFI for test tooling (signals, namespaces, sockets bound to a source address)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn run_ok(server: &TestServer, args: &[&str]) -> Vec<Line> {
    let out = client(server.port, args);
    assert_eq!(code(&out), 0, "client failed: {}", stderr(&out));
    parse(&out.stdout)
}

#[test]
fn receive_transmit_and_both_move_data_and_add_up() {
    let server = TestServer::start(&[]);
    let lines = run_ok(&server, &["-r", "-d", "2"]);
    assert_consistent(&lines, "RX");
    assert!(summary(&lines, "TX").is_none());

    let lines = run_ok(&server, &["-t", "-d", "2"]);
    assert_consistent(&lines, "TX");
    assert!(summary(&lines, "RX").is_none());

    let lines = run_ok(&server, &["-t", "-r", "-d", "2"]);
    assert_consistent(&lines, "TX");
    assert_consistent(&lines, "RX");
    server.wait_for_log("session 3 end", Duration::from_secs(5));
}

#[test]
fn first_interval_covers_a_whole_second() {
    let server = TestServer::start(&[]);
    let lines = run_ok(&server, &["-r", "-d", "2", "-b", "10M"]);
    let first = intervals(&lines, "RX")[0];
    // 10 Mbit/s for a full second; the older tool printed ~0 here.
    assert!(first.bps > 5e6, "first interval shows {} bit/s", first.bps);
}

#[test]
fn md5_right_password_wrong_password_and_the_next_client() {
    let server = TestServer::start(&["-a", "admin", "-p", "s3cret"]);
    let lines = run_ok(&server, &["-r", "-d", "1", "-a", "admin", "-p", "s3cret"]);
    assert_consistent(&lines, "RX");

    let out = client(
        server.port,
        &["-r", "-d", "1", "-a", "admin", "-p", "guess"],
    );
    assert_eq!(code(&out), 3, "wrong password: {}", stderr(&out));
    assert!(stderr(&out).contains("authentication failed"));
    let out = client(server.port, &["-r", "-d", "1"]);
    assert_eq!(code(&out), 3, "no credentials: {}", stderr(&out));
    server.wait_for_log(
        "authentication failed for user 'admin'",
        Duration::from_secs(5),
    );

    let lines = run_ok(&server, &["-t", "-d", "1", "-a", "admin", "-p", "s3cret"]);
    assert_consistent(&lines, "TX");
    let log = server.log().join("\n");
    assert!(!log.contains("s3cret"), "password in the server log");
}

#[test]
fn garbage_truncated_and_stalled_peers_do_not_stop_the_server() {
    let server = TestServer::start(&[]);
    let addr = ("127.0.0.1", server.port);

    // A peer that connects and never speaks: held open during the next test.
    let stalled = TcpStream::connect(addr).unwrap();

    // 16 bytes that are not a command.
    let mut s = TcpStream::connect(addr).unwrap();
    let mut hello = [0u8; 4];
    s.read_exact(&mut hello).unwrap();
    assert_eq!(hello, [1, 0, 0, 0]);
    s.write_all(&[
        0x05, 0x09, 0x07, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ])
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "server answered garbage");
    server.wait_for_log("bad command", Duration::from_secs(5));

    // A command cut short.
    let mut s = TcpStream::connect(addr).unwrap();
    s.read_exact(&mut hello).unwrap();
    s.write_all(&[1, 2, 1]).unwrap();
    drop(s);
    server.wait_for_log(
        "peer closed the connection during command",
        Duration::from_secs(5),
    );

    let lines = run_ok(&server, &["-t", "-r", "-d", "1"]);
    assert_consistent(&lines, "RX");
    drop(stalled);
}

#[test]
fn duration_is_kept() {
    let server = TestServer::start(&[]);
    let start = Instant::now();
    let lines = run_ok(&server, &["-r", "-d", "2"]);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "a 2 s test took {took:?}");
    let secs = summary(&lines, "RX").unwrap().secs.unwrap();
    assert!((1.9..2.5).contains(&secs), "summary says {secs} s");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["-c", "127.0.0.1", "-r", "-a", "admin"],
        vec!["-c", "127.0.0.1", "-r", "-b", "lots"],
        vec!["-c", "127.0.0.1"],
        vec!["--no-such-flag"],
        vec!["-c", "127.0.0.1", "-r", "--connections", "0"],
        vec!["-c", "127.0.0.1", "-u", "-r", "--udp-size", "20"],
        vec!["-s", "--listen", "none"],
    ] {
        let out = std::process::Command::new(BTEST)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn rate_limit_is_applied_to_the_right_direction() {
    let server = TestServer::start(&[]);
    // -r -b: the server sends at the rate.
    let lines = run_ok(&server, &["-r", "-d", "2", "-b", "20M"]);
    let total = assert_consistent(&lines, "RX");
    let expected = 20e6 / 8.0 * 2.0;
    assert!(
        (total as f64) > expected * 0.5 && (total as f64) < expected * 1.3,
        "receive at 20M moved {total} bytes"
    );
    // -t -b: we send at the rate.
    let lines = run_ok(&server, &["-t", "-d", "2", "-b", "20M"]);
    let total = assert_consistent(&lines, "TX");
    assert!(
        (total as f64) > expected * 0.5 && (total as f64) < expected * 1.3,
        "transmit at 20M moved {total} bytes"
    );
    // Per-direction overrides in a both test.
    let lines = run_ok(
        &server,
        &[
            "-t",
            "-r",
            "-d",
            "2",
            "--local-tx-speed",
            "8M",
            "--remote-tx-speed",
            "24M",
        ],
    );
    let tx = assert_consistent(&lines, "TX") as f64;
    let rx = assert_consistent(&lines, "RX") as f64;
    assert!(rx / tx > 2.0 && rx / tx < 4.0, "tx {tx} rx {rx}");
}

#[test]
fn client_sigterm_prints_summary_and_exits_0() {
    let server = TestServer::start(&[]);
    let child = spawn_client(server.port, &["-r", "-d", "0"]);
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines = parse(&out.stdout);
    assert_consistent(&lines, "RX");
}

#[test]
fn server_sigterm_exits_0() {
    let server = TestServer::start(&[]);
    let status = server.terminate();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn ecsrp5_right_wrong_and_unknown_user() {
    let server = TestServer::start(&["-a", "admin", "-p", "pw", "--ecsrp5"]);
    let lines = run_ok(&server, &["-r", "-d", "1", "-a", "admin", "-p", "pw"]);
    assert_consistent(&lines, "RX");
    let out = client(server.port, &["-r", "-d", "1", "-a", "admin", "-p", "bad"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let out = client(server.port, &["-r", "-d", "1", "-a", "nobody", "-p", "pw"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    server.wait_for_log(
        "ecsrp5 authentication failed for user 'nobody'",
        Duration::from_secs(5),
    );
    let lines = run_ok(
        &server,
        &[
            "-t",
            "-d",
            "1",
            "-a",
            "admin",
            "-p",
            "pw",
            "--connections",
            "2",
        ],
    );
    assert_consistent(&lines, "TX");
}
