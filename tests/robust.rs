//! Hostile input against a running server: after each attack a normal test completes and the
//! server's thread count and memory return to their baseline (read from /proc).
#![allow(unsafe_code)] // FFI for test tooling (signals, namespaces, sockets bound to a source address)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const USER: &str = "robust";
const PASS: &str = "hunter2";

/// The server all attacks of a test go to, warmed up.
fn harness() -> Target {
    raise_fd_limit();
    let server = TestServer::start(&["-a", USER, "-p", PASS, "--ecsrp5", "-v"]);
    // Warm-up: the EC-SRP5 tables too, and glibc keeps up to 40 MiB of exited threads'
    // stacks (the server gives back all but their top pages, so about 1 MiB when full).
    Target::warmed_up(server, 300, Duration::from_millis(500), normal_test)
}

/// What the attacks of this file check after each other.
impl Target {
    fn normal_test(&self) {
        normal_test(self.server.port);
    }

    /// After an attack: a normal test works and threads and memory come back.
    fn check_recovered(&self, attack: &str) {
        self.normal_test();
        self.base.wait_recovered(self.server.pid(), attack, 256.0);
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s
    }

    fn hello(&self) -> TcpStream {
        hello(self.connect())
    }
}

fn normal_test(port: u16) {
    let out = client(
        port,
        &["-t", "-r", "-d", "1", "-b", "50M", "-a", USER, "-p", PASS],
    );
    assert_eq!(code(&out), 0, "normal test failed: {}", stderr(&out));
    assert_consistent(&parse(&out.stdout), "RX");
}

fn raise_fd_limit() {
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// An EC-SRP5 MSG1 for `user` with the given 32-byte x and parity.
fn msg1(user: &str, x: [u8; 32], parity: u8) -> Vec<u8> {
    let mut payload = user.as_bytes().to_vec();
    payload.push(0);
    payload.extend_from_slice(&x);
    payload.push(parity);
    let mut m = vec![payload.len() as u8];
    m.extend_from_slice(&payload);
    m
}

fn ecsrp5_attack(h: &Target, msg: &[u8]) {
    let mut s = h.hello();
    s.write_all(&TCP_RECEIVE).unwrap();
    let mut reply = [0u8; 4];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [3, 0, 0, 0], "server should ask for EC-SRP5");
    s.write_all(msg).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let answer = drain(s);
    assert!(
        !answer.starts_with(&[1]),
        "malformed MSG1 was answered with an OK"
    );
}

#[test]
fn hostile_peers_leave_the_server_as_it_was() {
    let h = harness();
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);

    // Connect and stall: silent peers are dropped at the handshake deadline.
    let stalled: Vec<TcpStream> = (0..20).map(|_| h.connect()).collect();
    h.normal_test();
    for s in stalled {
        let mut s = s;
        let mut hello = [0u8; 4];
        s.read_exact(&mut hello).unwrap();
        let mut rest = Vec::new();
        let n = s.read_to_end(&mut rest);
        assert!(
            matches!(n, Ok(0)) || n.is_err(),
            "stalled peer got data after hello"
        );
    }
    h.server
        .wait_for_log("timed out during command", Duration::from_secs(5));
    h.check_recovered("connect-and-stall");

    // Random 16-byte commands (some are valid commands: those start a test we end at once).
    for _ in 0..200 {
        let mut s = h.hello();
        let mut cmd = [0u8; 16];
        rng.fill(&mut cmd);
        let _ = s.write_all(&cmd);
        drop(s);
    }
    h.check_recovered("random commands");

    // Truncated commands.
    for len in 0..16 {
        let mut s = h.hello();
        let _ = s.write_all(&TCP_RECEIVE[..len]);
        drop(s);
    }
    h.server.wait_for_log(
        "peer closed the connection during command",
        Duration::from_secs(5),
    );
    h.check_recovered("truncated commands");

    // Malformed EC-SRP5: truncated, wrong length, off-curve, zero point, x >= p.
    let mut off_curve = [0u8; 32];
    off_curve[31] = 2;
    ecsrp5_attack(&h, &msg1(USER, [0u8; 32], 0)[..10]);
    ecsrp5_attack(&h, &[5, b'a', 0, 1, 2, 3]);
    ecsrp5_attack(&h, &msg1(USER, off_curve, 0));
    ecsrp5_attack(&h, &msg1(USER, [0u8; 32], 0));
    ecsrp5_attack(&h, &msg1(USER, [0xff; 32], 1));
    ecsrp5_attack(&h, &msg1("no-such-user", [9u8; 32], 0));
    h.check_recovered("malformed EC-SRP5");

    // Joins with session tokens that match nothing.
    for _ in 0..50 {
        let mut s = h.hello();
        let token = rng.next() as u16 | 0x0202;
        s.write_all(&btest_rs::proto::encode_join(token)).unwrap();
        drain(s);
    }
    h.server
        .wait_for_log("unknown session token", Duration::from_secs(5));
    h.check_recovered("wrong session token");

    // 500 idle connections, then all closed at once.
    let idle: Vec<TcpStream> = (0..500)
        .filter_map(|_| TcpStream::connect(h.addr).ok())
        .collect();
    assert!(
        idle.len() >= 400,
        "could open only {} connections",
        idle.len()
    );
    drop(idle);
    h.check_recovered("500 idle connections");

    // A flood of connection attempts past the caps: the excess is refused at once.
    let flood: Vec<TcpStream> = (0..700)
        .filter_map(|_| TcpStream::connect(h.addr).ok())
        .collect();
    h.server.wait_for_log("refused: ", Duration::from_secs(5));
    drop(flood);
    h.check_recovered("connection flood");

    // A UDP flood at a running test's data port from a stranger's address (127.0.0.2): the
    // datagrams are counted as strangers and ignored; the test's own accounting is untouched.
    let udp_client = spawn_client(
        h.server.port,
        &["-u", "-t", "-d", "3", "-b", "10M", "-a", USER, "-p", PASS],
    );
    let line = h.server.wait_for_log("UDP port ", Duration::from_secs(5));
    let data_port: u16 = line
        .split("UDP port ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("UDP port in the log");
    let stranger = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    let mut junk = [0u8; 1200];
    for i in 0..20_000u32 {
        junk[..4].copy_from_slice(&i.to_be_bytes());
        let _ = stranger.send_to(&junk, ("127.0.0.1", data_port));
    }
    let out = udp_client.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "UDP test under a flood: {}", stderr(&out));
    let end = h.server.wait_for_log("strangers ", Duration::from_secs(5));
    let strangers: u64 = end
        .split("strangers ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(strangers > 0, "flood not seen as strangers: {end}");
    // Had the stranger's sequence numbers (0..20000) been taken for the test's, they would
    // show as duplicates and reordering. Loss may be real: the flood can overrun the socket.
    let field = |name: &str| -> u64 {
        end.split(&format!(" {name} "))
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX)
    };
    assert_eq!(field("duplicates"), 0, "{end}");
    assert_eq!(field("reordered"), 0, "{end}");
    assert!(field("received") > 0, "{end}");
    h.check_recovered("UDP flood from a stranger");

    let log = h.server.log().join("\n");
    assert!(!log.contains(PASS), "password in the server log");
    assert!(!log.contains("panicked"), "a thread panicked:\n{log}");
}

/// A client that asks the server to transmit and then never reads: the server's writes block,
/// and the session ends within the send timeout instead of holding its threads forever.
#[test]
fn a_peer_that_stops_reading_is_dropped() {
    let server = TestServer::start(&["-v"]);
    // Default buffers: the server fills ours and its own within a second, then the window
    // closes and nothing more gets through.
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let mut hello = [0u8; 4];
    s.read_exact(&mut hello).unwrap();
    s.write_all(&TCP_RECEIVE).unwrap();
    let mut ok = [0u8; 4];
    s.read_exact(&mut ok).unwrap();
    assert_eq!(ok[0], 1);
    server.wait_for_log("session 1 start", Duration::from_secs(5));
    let start = Instant::now();
    let line = server.wait_for_log("session 1 end", Duration::from_secs(30));
    assert!(line.contains("peer stalled"), "{line}");
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "stalled reader held the session for {:?}",
        start.elapsed()
    );
    drop(s);
}
