//! Multi-connection TCP, IPv6, and server limits, end to end.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

fn multi(server: &TestServer, session: usize, n: usize, dir: &[&str]) {
    let n_s = n.to_string();
    let mut args = vec!["-d", "2", "--connections", &n_s, "--per-stream"];
    args.extend_from_slice(dir);
    let out = client(server.port, &args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines = parse(&out.stdout);
    let streams = server.streams(session);
    assert_eq!(streams.len(), n, "server saw {streams:?}");
    for (i, (tx, rx)) in streams.iter().enumerate() {
        if dir.contains(&"-r") {
            assert!(*tx > 0, "connection {} sent nothing: {streams:?}", i + 1);
        }
        if dir.contains(&"-t") {
            assert!(
                *rx > 0,
                "connection {} received nothing: {streams:?}",
                i + 1
            );
        }
    }
    for d in ["TX", "RX"] {
        if summary(&lines, d).is_some() {
            assert_consistent(&lines, d);
            let per: Vec<_> = lines
                .iter()
                .filter(|l| l.dir == d && l.index == Some(1) && l.stream.is_some())
                .collect();
            assert_eq!(per.len(), n, "per-stream lines for interval 1");
            let sum: u64 = per.iter().map(|l| l.bytes).sum();
            assert_eq!(
                sum,
                intervals(&lines, d)[0].bytes,
                "per-stream lines add up"
            );
        }
    }
}

#[test]
fn four_and_twenty_connections_in_each_direction() {
    let server = TestServer::start(&["-v"]);
    multi(&server, 1, 4, &["-r"]);
    multi(&server, 2, 4, &["-t"]);
    multi(&server, 3, 4, &["-t", "-r"]);
    multi(&server, 4, 20, &["-r"]);
    multi(&server, 5, 20, &["-t"]);
    multi(&server, 6, 20, &["-t", "-r"]);
}

#[test]
fn multi_connection_with_md5() {
    let server = TestServer::start(&["-v", "-a", "u", "-p", "p"]);
    let out = client(
        server.port,
        &["-r", "-d", "1", "--connections", "3", "-a", "u", "-p", "p"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(server.streams(1).len(), 3);
}

#[test]
fn wrong_token_is_refused_while_the_real_session_runs() {
    let server = TestServer::start(&["-v"]);
    let child = spawn_client(server.port, &["-r", "-d", "3", "--connections", "4"]);
    server.wait_for_log("session 1 start", Duration::from_secs(5));
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let mut hello = [0u8; 4];
    s.read_exact(&mut hello).unwrap();
    s.write_all(&btest_rs::proto::encode_join(0x0202)).unwrap();
    server.wait_for_log("unknown session token 0x0202", Duration::from_secs(5));
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_consistent(&parse(&out.stdout), "RX");
    assert_eq!(server.streams(1).len(), 4);
}

#[test]
fn idle_connections_do_not_stop_a_test() {
    // All from 127.0.0.1, like the client: lift the per-address handshake cap (32), which
    // would otherwise refuse the client too (tests/hostile_public.rs covers the cap).
    let server = TestServer::start(&["--max-handshakes-per-ip", "256"]);
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).unwrap())
        .collect();
    let out = client(server.port, &["-t", "-r", "-d", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_consistent(&parse(&out.stdout), "RX");
    drop(idle);
}

#[test]
fn max_sessions_refuses_then_serves() {
    let server = TestServer::start(&["--max-sessions", "1"]);
    let first = spawn_client(server.port, &["-r", "-d", "2"]);
    server.wait_for_log("session 1 start", Duration::from_secs(5));
    let refused = client(server.port, &["-r", "-d", "1"]);
    assert_eq!(code(&refused), 1, "second test should be refused");
    server.wait_for_log("max-sessions (1) reached", Duration::from_secs(5));
    let out = first.wait_with_output().unwrap();
    assert_eq!(code(&out), 0);
    server.wait_for_log("session 1 end", Duration::from_secs(5));
    let out = client(server.port, &["-r", "-d", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        skip("this machine has no IPv6 loopback");
        return;
    }
    let server = TestServer::start_raw(&["-s", "-P", "0", "--listen", "none", "--listen6", "::1"]);
    for host in ["::1", "[::1]", "localhost"] {
        if host == "localhost"
            && !std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 1))
                .map(|mut a| a.any(|a| a.is_ipv6()))
                .unwrap_or(false)
        {
            skip("localhost has no IPv6 address here: only ::1 and [::1] tried");
            continue;
        }
        let out = client_at(host, server.port, &["-t", "-r", "-d", "1"]);
        assert_eq!(code(&out), 0, "{host}: {}", stderr(&out));
        assert_consistent(&parse(&out.stdout), "RX");
    }
}
