//! Attacks a public server would see, each run against the real `btest -s` binary over
//! loopback. Attackers use other 127.0.0.x source addresses (bound before connecting), so each
//! test can show that a normal client from 127.0.0.1 is served during the attack, and that
//! the server's threads (and memory) return to their baseline after it.
//!
//! Linux only: other systems route only 127.0.0.1 on the loopback interface.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use btest_rs::auth::ecsrp5::{EcSrp5Error, Msg, client_handshake};
use common::netns::{Netns, sh};
use common::*;

const USER: &str = "hostile";
const PASS: &str = "correct horse";

/// Starts a warmed-up server with extra arguments.
fn target(ecsrp5: bool, extra: &[&str]) -> Target {
    let mut args = vec!["-a", USER, "-p", PASS, "-v"];
    if ecsrp5 {
        args.push("--ecsrp5");
    }
    args.extend_from_slice(extra);
    let server = TestServer::start(&args);
    // Warm up (allocator, thread-stack cache) before the baseline, as tests/robust.rs does.
    Target::warmed_up(server, 30, Duration::from_millis(300), normal_test)
}

/// What the attacks of this file check.
impl Target {
    /// A normal test from 127.0.0.1 with the right password.
    fn normal_test(&self) {
        normal_test(self.server.port);
    }

    fn hello_from(&self, src: Ipv4Addr) -> TcpStream {
        hello(connect_from(src, self.addr).expect("connect"))
    }

    /// After an attack: threads and memory come back to the baseline.
    fn check_recovered(&self, attack: &str) {
        self.base.wait_recovered(self.server.pid(), attack, 512.0);
    }
}

/// A normal test against 127.0.0.1:`port` with the right password.
fn normal_test(port: u16) {
    // The client follows whichever method the server asks for.
    let args = ["-t", "-r", "-d", "1", "-b", "20M", "-a", USER, "-p", PASS];
    let out = client(port, &args);
    assert_eq!(code(&out), 0, "normal test failed: {}", stderr(&out));
    assert_consistent(&parse(&out.stdout), "RX");
}

/// One host opens 100 silent connections: it gets at most its 32 handshake places, the rest
/// are refused at once, a normal client is served meanwhile, and the silent ones are dropped
/// at the 3 s command deadline rather than the 10 s handshake deadline.
#[test]
fn one_host_cannot_take_every_handshake_place() {
    let t = target(false, &[]);
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let opened = Instant::now();
    let silent: Vec<TcpStream> = (0..100)
        .filter_map(|_| connect_from(attacker, t.addr).ok())
        .collect();
    t.server.wait_for_log(
        "connections in handshake (--max-handshakes-per-ip)",
        Duration::from_secs(5),
    );
    let peak = threads(t.server.pid());
    assert!(
        peak <= t.base.threads + 32 + 2,
        "{peak} threads for one host's silent connections (baseline {})",
        t.base.threads
    );
    t.normal_test();
    // Every silent connection ends: the ones refused at once, the others at the deadline.
    let mut got_hello = 0;
    for s in silent {
        let data = drain(s);
        if data == [1, 0, 0, 0] {
            got_hello += 1;
        }
    }
    assert!(got_hello <= 32, "{got_hello} connections got a HELLO");
    assert!(got_hello > 0, "no silent connection was served a HELLO");
    // Far below the 10 s handshake deadline, with room for a loaded machine.
    assert!(
        opened.elapsed() < Duration::from_secs(8),
        "silent connections held for {:?}",
        opened.elapsed()
    );
    t.server
        .wait_for_log("timed out during command", Duration::from_secs(5));
    t.check_recovered("handshake flood from one host");
}

/// Peers that send a command and then stall in authentication do not hold session places:
/// with --max-sessions 2, ten of them leave room for a normal test.
#[test]
fn unauthenticated_peers_hold_no_session_place() {
    let t = target(false, &["--max-sessions", "2"]);
    let attacker = Ipv4Addr::new(127, 0, 0, 3);
    let stalled: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut s = t.hello_from(attacker);
            s.write_all(&TCP_RECEIVE).unwrap();
            let mut challenge = [0u8; 20];
            s.read_exact(&mut challenge).unwrap();
            assert_eq!(&challenge[..4], &[2, 0, 0, 0], "MD5 challenge expected");
            s
        })
        .collect();
    t.normal_test();
    assert_eq!(t.server.count_log("max-sessions (2) reached"), 0);
    drop(stalled);
    t.check_recovered("stalled authentications");
}

/// Five wrong MD5 passwords from one address within a minute: that address is refused at
/// accept (logged once), while a normal client from another address is served.
#[test]
fn password_guessing_is_backed_off() {
    let t = target(false, &[]);
    let guesser = Ipv4Addr::new(127, 0, 0, 4);
    for i in 0..5 {
        let mut s = t.hello_from(guesser);
        s.write_all(&TCP_RECEIVE).unwrap();
        let mut challenge = [0u8; 20];
        s.read_exact(&mut challenge).unwrap();
        let mut response = [0u8; 48];
        response[..16].fill(i as u8);
        response[16..16 + 5].copy_from_slice(b"guess");
        s.write_all(&response).unwrap();
        assert_eq!(drain(s), [0, 0, 0, 0], "refusal expected");
    }
    t.server
        .wait_for_log("refusing this address for 10 s", Duration::from_secs(5));
    for _ in 0..5 {
        let s = connect_from(guesser, t.addr).expect("connect");
        assert!(drain(s).is_empty(), "a blocked address got a HELLO");
    }
    t.normal_test();
    assert_eq!(
        t.server.count_log("refusing this address"),
        1,
        "logged once"
    );
    t.check_recovered("password guessing");
}

/// EC-SRP5: an unknown user gets a MSG2 just like a known one (and fails at the same place
/// as a wrong password), so names cannot be probed.
#[test]
fn ecsrp5_does_not_reveal_which_users_exist() {
    let t = target(true, &[]);
    let attempt = |src: Ipv4Addr, user: &str, pass: &str| {
        let mut s = t.hello_from(src);
        s.write_all(&TCP_RECEIVE).unwrap();
        let mut reply = [0u8; 4];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(reply, [3, 0, 0, 0]);
        client_handshake(
            &mut s,
            user.as_bytes(),
            pass.as_bytes(),
            &mut btest_rs::sys::random::fill_or_abort,
        )
        .unwrap_err()
    };
    let wrong = attempt(Ipv4Addr::new(127, 0, 0, 5), USER, "nope");
    let unknown = attempt(Ipv4Addr::new(127, 0, 0, 6), "nobody", "nope");
    let before_msg4 = |e: &EcSrp5Error| matches!(e, EcSrp5Error::Rejected { before: Msg::Msg4 });
    assert!(before_msg4(&wrong), "wrong password: {wrong}");
    assert!(before_msg4(&unknown), "unknown user: {unknown}");
    t.normal_test();
    t.check_recovered("user probing");
}

/// A network namespace of our own with four IPv6 addresses on its loopback, deleted when
/// the test ends; its name.
fn ipv6_namespace() -> Result<(Netns, String), String> {
    if !is_root() {
        return Err("needs root and ip netns".into());
    }
    let name = format!("btest-i16-{}", std::process::id());
    let mut ns = Netns::default();
    ns.add(&name)?;
    sh(&["ip", "-n", &name, "link", "set", "lo", "up"])?;
    for a in [
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
        "2001:db8:1:2::3",
        "2001:db8:1:3::1",
    ] {
        let a = format!("{a}/128");
        sh(&["ip", "-n", &name, "addr", "add", &a, "dev", "lo", "nodad"])?;
    }
    Ok((ns, name))
}

/// IPv6 hosts of one /64 share the per-address handshake places: two addresses of
/// 2001:db8:1:2::/64 together get 4 with --max-handshakes-per-ip 4, while a host of another
/// /64 is served.
#[test]
fn ipv6_peers_are_counted_per_64() {
    let (_ns, name) = match ipv6_namespace() {
        Ok(ns) => ns,
        Err(e) => {
            skip(&e);
            return;
        }
    };
    let server = TestServer::start_in(
        &name,
        &[
            "-s",
            "-P",
            "0",
            "--listen",
            "none",
            "--listen6",
            "2001:db8:1:2::1",
            "--max-handshakes-per-ip",
            "4",
        ],
    );
    let port = server.port;
    let dst: SocketAddr = format!("[2001:db8:1:2::1]:{port}").parse().unwrap();
    let (first, second, other) = Netns::run_in(&name, move || {
        let hello = |src: &str| {
            let src: std::net::Ipv6Addr = src.parse().unwrap();
            let mut s = connect_from(src, dst).expect("connect");
            let mut buf = [0u8; 4];
            let got = s.read_exact(&mut buf).is_ok() && buf == [1, 0, 0, 0];
            (s, got)
        };
        let a: Vec<_> = (0..3).map(|_| hello("2001:db8:1:2::2")).collect();
        let b: Vec<_> = (0..3).map(|_| hello("2001:db8:1:2::3")).collect();
        let c = hello("2001:db8:1:3::1");
        let count = |v: &[(TcpStream, bool)]| v.iter().filter(|(_, g)| *g).count();
        (count(&a), count(&b), c.1)
    });
    drop(server);
    assert_eq!(first, 3);
    assert_eq!(second, 1, "the /64 had only one handshake place left");
    assert!(other, "a host of another /64 was not served");
}

/// The per-address handshake cap does not cut a RouterOS-size multi-connection test short:
/// while an address's test waits for its secondaries, they have places of their own.
#[test]
fn a_test_with_more_connections_than_the_cap_still_gets_them_all() {
    let server = TestServer::start(&["-v", "--max-handshakes-per-ip", "2"]);
    let out = client(server.port, &["-r", "-d", "1", "--connections", "40"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let start = server.wait_for_log("session 1 start", Duration::from_secs(5));
    assert!(start.contains("conns=40"), "{start}");
}
