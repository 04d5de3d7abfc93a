//! Over a long path: a client and a server in two network namespaces joined by a delay line of
//! our own (this kernel has no netem). Each namespace gets a TUN device; a relay in this test
//! process reads every packet from one device, holds it for the one-way delay and writes it
//! into the other, so the path has a 40 ms round trip. The relay can drop UDP datagrams at
//! random on their way to the client, and notes when it forwarded or dropped each one and when
//! the client's once-a-second status messages passed, which tells us where the client's
//! intervals begin and end on the relay's clock.
//!
//! Linux only, and root only (namespaces, TUN); elsewhere each test prints `skipped: <why>`.
#![allow(unsafe_code)] // FFI for test tooling (signals, namespaces, sockets bound to a source address)
#![cfg(target_os = "linux")]

mod common;

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::netns::{Netns, sh};
use common::{BTEST, Finished, Line, Running, TestServer, XorShift, is_root, lock, skip};

/// Round trip of the emulated path.
const RTT: Duration = Duration::from_millis(40);
const CLIENT_IP: &str = "10.210.0.1";
const SERVER_IP: &str = "10.210.0.2";
const DEV: &str = "tlp0";

/// Opens (and so creates) TUN device `dev` inside namespace `ns`: a thread of ours enters the
/// namespace, and the descriptor keeps working from any thread afterwards.
fn open_tun(ns: &str, dev: &str) -> Result<OwnedFd, String> {
    let path = format!("/var/run/netns/{ns}");
    let dev = dev.to_string();
    std::thread::spawn(move || -> Result<OwnedFd, String> {
        let netns = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: setns on a descriptor we hold; it moves only this short-lived thread.
        if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", std::io::Error::last_os_error()));
        }
        let tun = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| format!("/dev/net/tun: {e}"))?;
        // struct ifreq: the name, then the flags as a short.
        let mut ifr = [0u8; 40];
        ifr[..dev.len()].copy_from_slice(dev.as_bytes());
        let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as i16;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes an ifreq, which `ifr` is large enough to hold.
        if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, ifr.as_mut_ptr()) } < 0 {
            return Err(format!("TUNSETIFF: {}", std::io::Error::last_os_error()));
        }
        Ok(OwnedFd::from(tun))
    })
    .join()
    .map_err(|_| "tun thread panicked".to_string())?
}

/// What the relay saw, on the test's clock.
#[derive(Clone, Default)]
struct Seen {
    /// Client status messages (sequence number, when the relay read it): the client sends
    /// status `k` at the end of its interval `k`.
    status: Vec<(u32, Instant)>,
    /// UDP data datagrams towards the client: when each was due at the client, and whether
    /// the relay dropped it.
    udp_to_client: Vec<(Instant, bool)>,
}

/// The IPv4 payload of a packet and its protocol.
fn ipv4_payload(pkt: &[u8]) -> Option<(u8, &[u8])> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    Some((pkt[9], pkt.get(ihl..)?))
}

/// A client status message's sequence number, if this packet carries exactly one.
fn client_status(pkt: &[u8]) -> Option<u32> {
    let (6, tcp) = ipv4_payload(pkt)? else {
        return None;
    };
    let data = tcp.get(usize::from(tcp.get(12)? >> 4) * 4..)?;
    (data.len() == 12 && data[0] == 0x07 && data[2..4] == [0, 0])
        .then(|| u32::from_le_bytes([data[4], data[5], data[6], data[7]]))
}

/// True for a UDP datagram carrying at least a sequence number.
fn is_udp_data(pkt: &[u8]) -> bool {
    matches!(ipv4_payload(pkt), Some((17, udp)) if udp.len() >= 12)
}

fn read_packet(fd: &OwnedFd, buf: &mut [u8]) -> Option<usize> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
        return None;
    }
    // SAFETY: reads into a buffer we own, at most its length.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).ok().filter(|&n| n > 0)
}

/// One direction of the delay line: a reader that stamps each packet with its due time, and a
/// writer that sleeps until then (a FIFO with a constant delay keeps order and spacing).
fn direction(
    from: Arc<OwnedFd>,
    to: Arc<OwnedFd>,
    to_client: bool,
    loss_per_10k: u64,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) -> [JoinHandle<()>; 2] {
    let (tx, rx) = crossbeam_channel::unbounded::<(Instant, Vec<u8>)>();
    let seen_r = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let Some(n) = read_packet(&from, &mut buf) else {
                continue;
            };
            let now = Instant::now();
            let pkt = buf[..n].to_vec();
            if !to_client && let Some(seq) = client_status(&pkt) {
                lock(&seen_r).status.push((seq, now));
            }
            if tx.send((now + RTT / 2, pkt)).is_err() {
                break;
            }
        }
    });
    let writer = std::thread::spawn(move || {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id()));
        while let Ok((due, pkt)) = rx.recv() {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to_client && is_udp_data(&pkt) {
                let drop = rng.below(10_000) < loss_per_10k;
                lock(&seen).udp_to_client.push((due, drop));
                if drop {
                    continue;
                }
            }
            // SAFETY: writes a packet we own to the device.
            unsafe { libc::write(to.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
        }
    });
    [reader, writer]
}

/// Two namespaces, `c` (client, 10.210.0.1) and `s` (server, 10.210.0.2), and the relay.
struct LongPath {
    client_ns: String,
    server_ns: String,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    seen: Arc<Mutex<Seen>>,
    namespaces: Netns,
}

impl LongPath {
    /// Builds the path, or says why it cannot (not root, no TUN, ...).
    fn new(tag: &str, loss_per_10k: u64) -> Result<LongPath, String> {
        if std::env::var_os("BTEST_UNDER_EMULATION").is_some() {
            // Join and clock timings say something only about a native build.
            return Err("path timings are measured on native builds, not under emulation".into());
        }
        if !is_root() {
            return Err("needs root to create network namespaces and TUN devices".into());
        }
        let pid = std::process::id();
        let mut path = LongPath {
            client_ns: format!("btlp-{tag}c{pid}"),
            server_ns: format!("btlp-{tag}s{pid}"),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            seen: Arc::default(),
            namespaces: Netns::default(),
        };
        let mut fds = Vec::new();
        for (ns, ours, theirs) in [
            (path.client_ns.clone(), CLIENT_IP, SERVER_IP),
            (path.server_ns.clone(), SERVER_IP, CLIENT_IP),
        ] {
            path.namespaces.add(&ns)?;
            fds.push(Arc::new(open_tun(&ns, DEV)?));
            sh(&[
                "ip", "-n", &ns, "addr", "add", ours, "peer", theirs, "dev", DEV,
            ])?;
            sh(&["ip", "-n", &ns, "link", "set", DEV, "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        let (c, s) = (fds[0].clone(), fds[1].clone());
        let (stop, seen) = (path.stop.clone(), path.seen.clone());
        path.threads.extend(direction(
            c.clone(),
            s.clone(),
            false,
            0,
            stop.clone(),
            seen.clone(),
        ));
        path.threads
            .extend(direction(s, c, true, loss_per_10k, stop, seen));
        Ok(path)
    }

    /// Starts a server in the server namespace on a port it chooses.
    fn server(&self) -> TestServer {
        TestServer::start_in(&self.server_ns, &["-s", "-P", "0"])
    }

    /// Runs a client in the client namespace against `server` to its end.
    fn client(&self, server: &TestServer, args: &[&str]) -> Finished {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.client_ns, BTEST])
            .args(["-c", SERVER_IP, "-P", &server.port.to_string()])
            .args(args);
        Running::spawn(cmd).finish(Duration::from_secs(60))
    }

    /// What the relay has seen so far.
    fn seen(&self) -> Seen {
        lock(&self.seen).clone()
    }
}

impl Drop for LongPath {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // The namespaces go with `self.namespaces`, after the relay has stopped.
    }
}

macro_rules! path_or_skip {
    ($tag:expr, $loss:expr) => {
        match LongPath::new($tag, $loss) {
            Ok(p) => p,
            Err(e) => {
                skip(&e);
                return;
            }
        }
    };
}

/// All 20 connections join within 4 round trips of the first secondary connect, and the
/// clock starts then: a 10-second test takes little more than 10 seconds.
#[test]
fn twenty_connections_join_in_parallel() {
    let path = path_or_skip!("j", 0);
    let server = path.server();
    let run = path.client(
        &server,
        &[
            "-t",
            "-b",
            "4M",
            "--connections",
            "20",
            "-d",
            "10",
            "-v",
            "-v",
        ],
    );
    assert!(run.success, "{}", run.dump());
    let connect = run.stderr_at("connecting to").expect("connect logged");
    let open = run.stderr_at("more connections").expect("joins logged");
    let joined = run
        .stderr_at("connection 20/20 joined")
        .expect("all joined");
    let joins = joined - open;
    eprintln!(
        "longpath: 19 joins took {:.0} ms ({:.1} RTT), {:.0} ms after the first connect; \
         -d 10 ran {:.2} s",
        joins.as_secs_f64() * 1e3,
        joins.as_secs_f64() / RTT.as_secs_f64(),
        (joined - connect).as_secs_f64() * 1e3,
        run.wall.as_secs_f64()
    );
    assert!(joins <= RTT * 4, "joins took {joins:?}");
    assert!(
        run.wall <= Duration::from_millis(10_500),
        "-d 10 ran {:?}",
        run.wall
    );
    let summary = run
        .lines()
        .into_iter()
        .find(|l| l.index.is_none() && l.dir == "TX")
        .expect("TX summary");
    // The test itself lasts its 10 s (a late wake-up under load may add a little).
    let secs = summary.secs.unwrap();
    eprintln!("longpath: the client's summary covers {secs:.2} s");
    assert!((9.95..10.3).contains(&secs), "{summary:?}");
    let end = server.wait_for_log("session 1 end", Duration::from_secs(5));
    assert!(end.contains("conns=20"), "{end}");
}

/// Per-second loss, through a path that drops 1 % of the datagrams towards the client, lands
/// in the interval the relay dropped them in.
#[test]
fn per_second_loss_matches_the_path() {
    let path = path_or_skip!("l", 100);
    let server = path.server();
    let run = path.client(&server, &["-u", "-r", "-b", "12M", "-d", "6"]);
    assert!(run.success, "{}", run.dump());
    let rx: Vec<Line> = run
        .lines()
        .into_iter()
        .filter(|l| l.dir == "RX" && l.index.is_some() && l.stream.is_none())
        .collect();
    assert_eq!(rx.len(), 6, "{}", run.dump());
    let seen = path.seen();
    // Interval k of the client runs from its status k-1 to its status k; the last one ends at
    // the deadline, one second after the last status.
    let mut ends: Vec<Instant> = (1..=5u32)
        .map(|k| {
            seen.status
                .iter()
                .find(|(s, _)| *s == k)
                .map(|(_, t)| *t)
                .unwrap_or_else(|| panic!("status {k} never passed the relay"))
        })
        .collect();
    ends.push(ends[4] + Duration::from_secs(1));
    let (mut mismatch, mut dropped_total) = (0u64, 0u64);
    for k in 2..=6usize {
        let (from, to) = (ends[k - 2], ends[k - 1]);
        let window = seen
            .udp_to_client
            .iter()
            .filter(|(t, _)| *t >= from && *t < to);
        let (sent, dropped) = window.fold((0u64, 0u64), |(s, d), (_, drop)| {
            (s + 1, d + u64::from(*drop))
        });
        let line = &rx[k - 1];
        let lost = line.lost.expect("lost: on RX lines");
        let received = line.bytes / 1500;
        let ours = lost as f64 * 100.0 / (received + lost).max(1) as f64;
        let theirs = dropped as f64 * 100.0 / sent.max(1) as f64;
        eprintln!(
            "longpath: interval {k}: client lost {lost} of {} ({ours:.2} %), path dropped \
             {dropped} of {sent} ({theirs:.2} %)",
            received + lost
        );
        assert!(
            (ours - theirs).abs() <= 1.0,
            "interval {k}: {ours:.2} % vs {theirs:.2} %"
        );
        mismatch += lost.abs_diff(dropped);
        dropped_total += dropped;
    }
    assert!(
        dropped_total >= 20,
        "too few drops to judge: {dropped_total}"
    );
    // Beyond the 1-point rule: nearly every loss is in the very interval of its drop (a loss
    // one interval late would make the mismatch about as large as the drops themselves).
    assert!(
        mismatch <= 3 + dropped_total / 10,
        "{mismatch} misplaced of {dropped_total}"
    );
}

/// The server's UDP receive rate over a 4-second test is the client's send rate, although the
/// server's session starts a round trip before the first datagram arrives.
#[test]
fn server_udp_receive_rate_uses_the_receive_clock() {
    let path = path_or_skip!("r", 0);
    let server = path.server();
    let run = path.client(&server, &["-u", "-t", "-b", "12M", "-d", "4"]);
    assert!(run.success, "{}", run.dump());
    let sent = run
        .lines()
        .into_iter()
        .find(|l| l.index.is_none() && l.dir == "TX")
        .expect("TX summary")
        .bps;
    let end = server.wait_for_log("session 1 end", Duration::from_secs(5));
    let rate = end.split("rx ").last().unwrap();
    let mut words = rate.split_whitespace();
    let value: f64 = words.next().unwrap().parse().unwrap();
    let unit = words.next().unwrap().trim_end_matches(&[')', ':'][..]);
    let received = value
        * match unit {
            "Kbps" => 1e3,
            "Mbps" => 1e6,
            "Gbps" => 1e9,
            _ => 1.0,
        };
    let off = (received - sent).abs() / sent * 100.0;
    eprintln!(
        "longpath: client sent {sent} bit/s, server received {received} bit/s ({off:.3} % off)"
    );
    assert!(off <= 0.3, "{end}");
}

/// A join that fails ends the attempt as it always has, parallel or not: an error and exit
/// code 1, and the connections that did join are closed. (Loopback; no namespace needed.)
#[test]
fn a_failed_join_ends_the_attempt() {
    use btest_rs::handshake::server::{accept, read_request};
    use std::net::TcpListener;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = std::thread::spawn(move || {
        let (mut primary, _) = listener.accept().unwrap();
        read_request(&mut primary).unwrap();
        accept(&mut primary, 0x1234, None).unwrap();
        // The client gives up at the first failure, so some joins may never come.
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        let (mut accepted, mut left_open) = (0, 0);
        while accepted < 4 && Instant::now() < deadline {
            let mut s = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(e) => panic!("accept: {e}"),
            };
            accepted += 1;
            if accepted == 1 {
                continue; // closed without HELLO: this join fails
            }
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = read_request(&mut s);
            match s.read(&mut [0u8; 1]) {
                Ok(0) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                _ => left_open += 1,
            }
        }
        drop(primary);
        left_open
    });
    let started = Instant::now();
    let out = common::client(port, &["-t", "--connections", "5", "-d", "3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "{stderr}");
    assert_eq!(fake.join().unwrap(), 0, "every joined connection is closed");
}
