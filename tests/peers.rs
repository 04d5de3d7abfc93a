//! Tolerance of the peers that exist (issue 15): both join forms and the join's address, false
//! status matches in random payload, slow or repeating UDP status, UDP port reuse, EC-SRP5
//! refusal signals. Raw peers here speak the protocol over sockets themselves, against the real
//! `btest` binary.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use btest_rs::auth::ecsrp5::{Verifier, srp};
use btest_rs::proto::{Command, Direction, Payload, Protocol, StatusMessage};
use common::{BTEST, TestServer, code, connect_from, hello, skip, stderr};

fn tcp_command(direction: Direction, conns: u8) -> Command {
    Command {
        protocol: Protocol::Tcp,
        direction,
        payload: Payload::Zeros,
        tcp_conn_count: conns,
        tx_size: 32768,
        client_buf_size: 0,
        // The server's rate when it sends: low, so the test costs little CPU.
        remote_tx_speed: 50_000_000,
        local_tx_speed: 0,
    }
}

/// Opens a primary with `conns` connections and returns it with its session token.
fn primary(port: u16, cmd: &Command) -> (TcpStream, [u8; 2]) {
    let mut s = hello(TcpStream::connect(("127.0.0.1", port)).unwrap());
    s.write_all(&cmd.encode()).unwrap();
    let mut ok = [0u8; 4];
    s.read_exact(&mut ok).unwrap();
    assert_eq!(ok[0], 1, "{ok:02x?}");
    assert!(ok[1] >= 2, "token high byte {ok:02x?}");
    (s, [ok[1], ok[2]])
}

/// The older join: the token, then bytes 2..15 of the primary's command.
fn older_join(cmd: &Command, token: [u8; 2]) -> [u8; 16] {
    let mut join = cmd.encode();
    join[..2].copy_from_slice(&token);
    join
}

/// Moves data on `conns` for `secs` the way the client side of `dir` does; returns the bytes
/// each connection received.
fn run_data(conns: Vec<TcpStream>, dir: Direction, secs: u64) -> Vec<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for c in &conns {
        if dir.server_tx() {
            let mut r = c.try_clone().unwrap();
            let stop = stop.clone();
            readers.push(thread::spawn(move || {
                r.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut buf = vec![0u8; 65536];
                let mut got = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got += n as u64,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                }
                got
            }));
        }
        if dir.server_rx() {
            let mut w = c.try_clone().unwrap();
            let stop = stop.clone();
            writers.push(thread::spawn(move || {
                w.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                let buf = vec![0u8; 32768];
                while !stop.load(Ordering::Relaxed) {
                    if w.write_all(&buf).is_err() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(5));
                }
            }));
        }
    }
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let got = readers.into_iter().map(|r| r.join().unwrap()).collect();
    drop(conns);
    got
}

#[test]
fn older_join_form_carries_data_on_every_connection() {
    let server = TestServer::start(&["-v"]);
    const N: u8 = 3;
    for (session, dir) in [Direction::ServerTx, Direction::ServerRx, Direction::Both]
        .into_iter()
        .enumerate()
    {
        let cmd = tcp_command(dir, N);
        let (first, token) = primary(server.port, &cmd);
        let mut conns = vec![first];
        for _ in 1..N {
            let mut s = hello(TcpStream::connect(("127.0.0.1", server.port)).unwrap());
            s.write_all(&older_join(&cmd, token)).unwrap();
            let mut ack = [0u8; 4];
            s.read_exact(&mut ack).unwrap();
            assert_eq!(ack, [1, token[0], token[1], 0], "the join is answered");
            conns.push(s);
        }
        let got = run_data(conns, dir, 2);
        let streams = server.streams(session + 1);
        assert_eq!(streams.len(), usize::from(N), "{dir:?}: {streams:?}");
        for (i, (tx, rx)) in streams.iter().enumerate() {
            if dir.server_tx() {
                assert!(*tx > 0, "{dir:?}: connection {i} sent nothing: {streams:?}");
                assert!(got[i] > 0, "{dir:?}: connection {i} delivered nothing");
            }
            if dir.server_rx() {
                assert!(
                    *rx > 0,
                    "{dir:?}: connection {i} received nothing: {streams:?}"
                );
            }
        }
    }
    assert_eq!(server.count_log("unknown protocol byte"), 0);
}

#[test]
fn a_join_from_another_address_is_refused() {
    let server = TestServer::start(&["-v"]);
    let cmd = tcp_command(Direction::ServerTx, 2);
    let (first, token) = primary(server.port, &cmd);
    let stranger = match connect_from(Ipv4Addr::new(127, 0, 0, 2), server.addr()) {
        Ok(s) => hello(s),
        Err(e) => {
            skip(&format!("cannot connect from 127.0.0.2: {e}"));
            return;
        }
    };
    for join in [
        older_join(&cmd, token),
        btest_rs::proto::encode_join(u16::from_be_bytes(token)),
    ] {
        let mut s = if join[2] == 2 {
            hello(connect_from(Ipv4Addr::new(127, 0, 0, 2), server.addr()).unwrap())
        } else {
            stranger.try_clone().unwrap()
        };
        s.write_all(&join).unwrap();
        let mut ack = [0u8; 4];
        let n = s.read(&mut ack).unwrap_or(0);
        assert_eq!(n, 0, "a join from 127.0.0.2 got an answer: {ack:02x?}");
    }
    server.wait_for_log("not from its primary's address", Duration::from_secs(5));
    // The session still waits for its own connection, from the primary's address.
    let mut own = hello(TcpStream::connect(("127.0.0.1", server.port)).unwrap());
    own.write_all(&older_join(&cmd, token)).unwrap();
    let mut ack = [0u8; 4];
    own.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [1, token[0], token[1], 0]);
    server.wait_for_log(
        "session 1 start: tcp receive conns=2",
        Duration::from_secs(5),
    );
    drop((first, own));
}

// ---------------------------------------------------------------------------------------------
// A false status match in random payload

/// Data without a `07` byte, so that only the statuses written on purpose can match.
fn clean_random(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    btest_rs::sys::random::fill(&mut buf).unwrap();
    for b in &mut buf {
        if *b == 7 {
            *b = 8;
        }
    }
    buf
}

/// What the raw server writes when: real statuses at 0.5 s + k (CPU 11 before the false match,
/// 33 after it), and at 2.0 s a status-shaped false match with a huge seq, CPU 99 and a random
/// byte count.
fn status_plan() -> Vec<(Duration, [u8; 12])> {
    let real = |seq: u32, cpu: u8| StatusMessage {
        cpu,
        seq,
        // 10 Mbit/s received: the client paces itself to 15 Mbit/s.
        bytes_received: 1_250_000,
    };
    let mut false_match = StatusMessage {
        cpu: 99,
        seq: 1_000_000,
        bytes_received: 0x7fff_ffff,
    }
    .encode();
    false_match[1] = 99; // top bit clear, as in random data
    let ms = Duration::from_millis;
    vec![
        (ms(500), real(1, 11).encode()),
        (ms(1500), real(2, 11).encode()),
        (ms(2000), false_match),
        (ms(2500), real(3, 33).encode()),
        (ms(3500), real(4, 33).encode()),
        (ms(4500), real(5, 33).encode()),
        (ms(5500), real(6, 33).encode()),
    ]
}

/// A one-connection server that answers any TCP command with an OK, then sends random data (if
/// it transmits) with the planned statuses inserted, and discards what it receives.
fn raw_status_server() -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(&[1, 0, 0, 0]).unwrap();
        let mut cmd = [0u8; 16];
        s.read_exact(&mut cmd).unwrap();
        s.write_all(&[1, 0, 0, 0]).unwrap();
        let cmd = Command::decode(&cmd).unwrap();
        let server_tx = cmd.direction.server_tx();
        let mut r = s.try_clone().unwrap();
        let reader = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
        });
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let data = clean_random(16384);
        let start = Instant::now();
        let mut plan = status_plan().into_iter().peekable();
        loop {
            if let Some((at, msg)) = plan.peek()
                && start.elapsed() >= *at
            {
                if s.write_all(msg).is_err() {
                    break;
                }
                plan.next();
            }
            if server_tx && s.write_all(&data).is_err() {
                break;
            }
            if start.elapsed() > Duration::from_secs(8) {
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
        let _ = s.shutdown(std::net::Shutdown::Both);
        reader.join().unwrap();
    });
    (port, t)
}

#[test]
fn a_false_status_match_never_latches() {
    for dir in [&["-r"][..], &["-t"], &["-t", "-r"]] {
        let (port, server) = raw_status_server();
        let mut args = vec!["--random", "-d", "5"];
        args.extend_from_slice(dir);
        let out = common::client(port, &args);
        server.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(code(&out), 0, "{dir:?}: {}\n{stdout}", stderr(&out));
        let lines = common::parse(&out.stdout);
        let late: Vec<_> = lines
            .iter()
            .filter(|l| l.index.is_some_and(|i| (4..=5).contains(&i)))
            .collect();
        assert!(!late.is_empty(), "{dir:?}: {stdout}");
        for l in &late {
            let (_, remote) = l.cpu.unwrap_or_else(|| panic!("no cpu: {stdout}"));
            assert_eq!(
                remote, 33,
                "{dir:?}: the statuses after the false match were not used:\n{stdout}"
            );
            if l.dir == "TX" {
                // Paced from the real statuses' 10 Mbit/s (x1.5), not the false byte count.
                assert!(
                    l.bps < 40e6,
                    "{dir:?}: TX still at the false rate:\n{stdout}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// UDP

/// UDP data ports of this file's server, away from tests/udp.rs's ranges.
fn udp_base(slot: u16) -> u16 {
    61000 + (std::process::id() % 20) as u16 * 150 + slot * 20
}

fn udp_command(direction: Direction) -> Command {
    Command {
        protocol: Protocol::Udp,
        direction,
        payload: Payload::Zeros,
        tcp_conn_count: 0,
        tx_size: 500,
        client_buf_size: 0,
        remote_tx_speed: 400_000,
        local_tx_speed: 0,
    }
}

/// A raw UDP receive test of `secs` whose client sends status `seq_of(k)` at `every` * k.
/// Returns the time of the last datagram received and whether the server closed the control
/// connection before the end.
fn slow_status_peer(
    port: u16,
    every: Duration,
    seq_of: fn(u32) -> u32,
    secs: u64,
) -> (Duration, bool) {
    let mut ctl = hello(TcpStream::connect(("127.0.0.1", port)).unwrap());
    ctl.write_all(&udp_command(Direction::ServerTx).encode())
        .unwrap();
    let mut ok = [0u8; 6];
    ctl.read_exact(&mut ok).unwrap();
    assert_eq!(ok[..4], [1, 0, 0, 0]);
    let data_port = u16::from_be_bytes([ok[4], ok[5]]);
    let data = UdpSocket::bind(("127.0.0.1", data_port + 256)).unwrap();
    data.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    ctl.set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let start = Instant::now();
    let mut last_data = Duration::ZERO;
    let mut closed = false;
    let mut k = 0u32;
    let mut next_status = Duration::ZERO;
    let mut buf = [0u8; 2048];
    while start.elapsed() < Duration::from_secs(secs) {
        if start.elapsed() >= next_status {
            k += 1;
            let msg = StatusMessage {
                cpu: 5,
                seq: seq_of(k),
                bytes_received: 0,
            };
            if ctl.write_all(&msg.encode()).is_err() {
                closed = true;
            }
            next_status += every;
        }
        if data.recv_from(&mut buf).is_ok() {
            last_data = start.elapsed();
        }
        let mut status = [0u8; 64];
        if let Ok(0) = ctl.read(&mut status) {
            closed = true;
        }
    }
    (last_data, closed)
}

#[test]
fn udp_peers_with_slow_or_repeated_status_run_to_the_end() {
    let base = udp_base(0).to_string();
    let server = TestServer::start(&["-v", "--udp-port-base", &base]);
    let port = server.port;
    let every_5s = thread::spawn(move || slow_status_peer(port, Duration::from_secs(5), |k| k, 12));
    let repeats = thread::spawn(move || slow_status_peer(port, Duration::from_secs(1), |_| 1, 12));
    for (name, peer) in [("every 5 s", every_5s), ("repeated seq", repeats)] {
        let (last_data, closed) = peer.join().unwrap();
        assert!(!closed, "{name}: the server closed the control connection");
        assert!(
            last_data >= Duration::from_secs(11),
            "{name}: data stopped at {last_data:?}; log:\n{}",
            server.log().join("\n")
        );
    }
    assert_eq!(server.count_log("stalled"), 0, "{:?}", server.log());
}

#[test]
fn udp_tests_back_to_back_get_different_ports() {
    let base = udp_base(1);
    let b = base.to_string();
    let server = TestServer::start(&["-v", "--udp-port-base", &b]);
    let mut ports = Vec::new();
    for session in 1..=2 {
        let mut ctl = hello(TcpStream::connect(("127.0.0.1", server.port)).unwrap());
        ctl.write_all(&udp_command(Direction::ServerRx).encode())
            .unwrap();
        let mut ok = [0u8; 6];
        ctl.read_exact(&mut ok).unwrap();
        ports.push(u16::from_be_bytes([ok[4], ok[5]]));
        drop(ctl);
        server.wait_for_log(&format!("session {session} end"), Duration::from_secs(10));
    }
    assert_ne!(
        ports[0], ports[1],
        "a freed port was handed out again at once"
    );
    assert_eq!(ports, [base, base + 1], "round robin from the base");
}

// ---------------------------------------------------------------------------------------------
// EC-SRP5 refusal signals

/// A server that runs EC-SRP5 up to MSG3 as a real one would, then answers it with `answer`
/// (nothing: it closes).
fn ecsrp5_refuser(answer: &'static [u8]) -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&[1, 0, 0, 0]).unwrap();
        let mut cmd = [0u8; 16];
        s.read_exact(&mut cmd).unwrap();
        s.write_all(&[3, 0, 0, 0]).unwrap();
        let frame = |s: &mut TcpStream| {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).unwrap();
            let mut payload = vec![0u8; usize::from(len[0])];
            s.read_exact(&mut payload).unwrap();
            payload
        };
        let msg1 = frame(&mut s);
        let user = msg1.split(|&b| b == 0).next().unwrap().to_vec();
        let verifier = Verifier::derive(&user, b"the-real-password", [4; 16]);
        let key = srp::server_key(&verifier, [9; 32]).unwrap();
        let msg2 = srp::server_msg2(key.public(), &verifier.salt);
        let mut out = vec![msg2.len() as u8];
        out.extend_from_slice(&msg2);
        s.write_all(&out).unwrap();
        let msg3 = frame(&mut s);
        assert_eq!(msg3.len(), 32);
        s.write_all(answer).unwrap();
        thread::sleep(Duration::from_millis(200));
    });
    (port, t)
}

#[test]
fn ecsrp5_refusals_are_authentication_failures() {
    for (name, answer) in [
        ("empty frame", &[0u8][..]),
        ("00 00 00 00", &[0, 0, 0, 0][..]),
        ("close", &[][..]),
    ] {
        let (port, server) = ecsrp5_refuser(answer);
        let out = common::client(port, &["-r", "-d", "1", "-a", "admin", "-p", "wrong"]);
        server.join().unwrap();
        assert_eq!(code(&out), 3, "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("authentication failed"),
            "{name}: {}",
            stderr(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// What the server shows

/// Runs `btest -s EXTRA` and one 3 s receive test against it; returns the server's stdout and
/// stderr once it has stopped.
fn server_output_of_a_3s_receive(extra: &[&str]) -> (String, String) {
    let mut cmd = std::process::Command::new(BTEST);
    cmd.args(["-s", "-P", "0", "--listen", "127.0.0.1"])
        .args(extra);
    // `-q` prints no `listening on` line: the port is read from the listening socket.
    let server = TestServer::spawn_quiet(cmd);
    let out = common::client(server.port, &["-r", "-d", "3", "-b", "20M"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The session has ended on the server once a new connection is served; then stop it.
    thread::sleep(Duration::from_millis(500));
    let (_, stdout, stderr) = server.terminate_with_output();
    (stdout, stderr)
}

#[test]
fn server_prints_intervals_and_a_summary_per_session() {
    let (stdout, stderr) = server_output_of_a_3s_receive(&[]);
    // The test is session 1.
    let prefix = "[#1 127.0.0.1]  ";
    let mine: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .collect();
    assert_eq!(mine.len(), stdout.lines().count(), "{stdout}");
    let text = mine.join("\n");
    let lines = common::parse(text.as_bytes());
    let intervals = common::intervals(&lines, "TX");
    assert_eq!(intervals.len(), 3, "three seconds, three lines:\n{stdout}");
    assert!(common::intervals(&lines, "RX").is_empty(), "{stdout}");
    let summary = common::summary(&lines, "TX").unwrap_or_else(|| panic!("{stdout}"));
    assert!(summary.bytes >= intervals.iter().map(|l| l.bytes).sum::<u64>());
    assert!(summary.bps > 10e6 && summary.bps < 30e6, "{stdout}");
    assert!(stderr.contains("session 1 start"), "{stderr}");
    assert!(stderr.contains("session 1 end"), "{stderr}");
}

#[test]
fn server_quiet_keeps_only_session_start_and_end() {
    let (stdout, stderr) = server_output_of_a_3s_receive(&["-q"]);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("session 1 start"), "{stderr}");
    assert!(stderr.contains("session 1 end"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[test]
fn server_json_lines_per_interval_and_end() {
    let (stdout, _) = server_output_of_a_3s_receive(&["--json-lines"]);
    let objects: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["interval", "interval", "interval", "end"],
        "{stdout}"
    );
    for o in &objects {
        assert_eq!(o["session"], 1);
        assert_eq!(o["peer"], "127.0.0.1");
        assert_eq!(o["direction"], "receive");
    }
    let sent: u64 = objects[..3]
        .iter()
        .map(|o| o["interval"]["tx"]["bytes"].as_u64().unwrap())
        .sum();
    assert!(sent > 0);
    assert!(objects[3]["end"]["tx"]["bytes"].as_u64().unwrap() >= sent);
    assert_eq!(objects[3]["dropped_lines"], 0);
}

/// `btest-server-pro` faces many clients: start/end lines only, unless `--intervals`.
#[cfg(feature = "pro")]
#[test]
fn pro_server_shows_intervals_only_when_asked() {
    for (run, extra) in [&[][..], &["--intervals"][..]].into_iter().enumerate() {
        let db = common::pro::TempDb::new(&format!("peers-{run}"));
        let mut args = vec!["--open"];
        args.extend_from_slice(extra);
        let server = TestServer::start_pro(&db, &args);
        let out = common::client(server.port, &["-r", "-d", "2", "-b", "10M"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        server.wait_for_log("session 1 end", Duration::from_secs(10));
        let (_, stdout, _) = server.terminate_with_output();
        if extra.is_empty() {
            assert!(stdout.is_empty(), "{stdout}");
        } else {
            let lines: Vec<&str> = stdout
                .lines()
                .filter(|l| l.starts_with("[#1 127.0.0.1]  ["))
                .collect();
            assert!(lines.len() >= 3, "two intervals and a summary:\n{stdout}");
            assert!(lines.iter().any(|l| l.contains("[ avg]  TX")), "{stdout}");
        }
    }
}
