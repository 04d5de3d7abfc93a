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
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use btest_rs::auth::ecsrp5::{EcSrp5Error, Msg, client_handshake};
use common::*;

const USER: &str = "hostile";
const PASS: &str = "correct horse";
const TCP_RECEIVE: [u8; 16] = [1, 2, 1, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Connects to `dst` from the local address `src` (any 127.0.0.0/8 address works on Linux).
fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let SocketAddr::V4(dst) = dst else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    // SAFETY: plain socket calls on a descriptor we own; it is handed to TcpStream at once.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let sa = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip.octets()),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = sa(src, 0);
        if libc::bind(fd, (&raw const local).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sa(*dst.ip(), dst.port());
        if libc::connect(fd, (&raw const remote).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        Ok(stream)
    }
}

fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A server under attack, with its baseline threads and memory.
struct Target {
    server: TestServer,
    addr: SocketAddr,
    base_threads: u64,
    base_rss: u64,
}

impl Target {
    fn start(ecsrp5: bool, extra: &[&str]) -> Target {
        let mut args = vec!["-a", USER, "-p", PASS, "-v"];
        if ecsrp5 {
            args.push("--ecsrp5");
        }
        args.extend_from_slice(extra);
        let server = TestServer::start(&args);
        let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
        let mut t = Target {
            server,
            addr,
            base_threads: 0,
            base_rss: 0,
        };
        // Warm up (allocator, thread-stack cache) before the baseline, as tests/robust.rs does.
        t.normal_test();
        let burst: Vec<TcpStream> = (0..30)
            .filter_map(|_| TcpStream::connect(t.addr).ok())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        drop(burst);
        std::thread::sleep(Duration::from_millis(300));
        t.normal_test();
        std::thread::sleep(Duration::from_millis(300));
        t.base_threads = proc_status(t.server.pid(), "Threads:");
        t.base_rss = proc_status(t.server.pid(), "VmRSS:");
        t
    }

    /// A normal test from 127.0.0.1 with the right password.
    fn normal_test(&self) {
        // The client follows whichever method the server asks for.
        let args = ["-t", "-r", "-d", "1", "-b", "20M", "-a", USER, "-p", PASS];
        let out = client(self.server.port, &args);
        assert_eq!(code(&out), 0, "normal test failed: {}", stderr(&out));
        assert_consistent(&parse(&out.stdout), "RX");
    }

    fn hello_from(&self, src: Ipv4Addr) -> TcpStream {
        let mut s = connect_from(src, self.addr).expect("connect");
        let mut hello = [0u8; 4];
        s.read_exact(&mut hello).expect("hello");
        assert_eq!(hello, [1, 0, 0, 0]);
        s
    }

    /// After an attack: threads and memory come back to the baseline.
    fn check_recovered(&self, attack: &str) {
        let pid = self.server.pid();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = proc_status(pid, "Threads:");
            let rss = proc_status(pid, "VmRSS:");
            let under_emulation = std::env::var_os("BTEST_UNDER_EMULATION").is_some();
            let rss_ok = under_emulation || rss as f64 <= self.base_rss as f64 * 1.1 + 512.0;
            if t as f64 <= self.base_threads as f64 * 1.1 && rss_ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{attack}: threads {t} (baseline {}), rss {rss} KiB (baseline {}) did not \
                 return",
                self.base_threads,
                self.base_rss
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Reads until the server closes; returns what it sent (or what came before an error).
fn drain(mut s: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// One host opens 100 silent connections: it gets at most its 32 handshake places, the rest
/// are refused at once, a normal client is served meanwhile, and the silent ones are dropped
/// at the 3 s command deadline rather than the 10 s handshake deadline.
#[test]
fn one_host_cannot_take_every_handshake_place() {
    let t = Target::start(false, &[]);
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let opened = Instant::now();
    let silent: Vec<TcpStream> = (0..100)
        .filter_map(|_| connect_from(attacker, t.addr).ok())
        .collect();
    t.server.wait_for_log(
        "connections in handshake (--max-handshakes-per-ip)",
        Duration::from_secs(5),
    );
    let peak = proc_status(t.server.pid(), "Threads:");
    assert!(
        peak <= t.base_threads + 32 + 2,
        "{peak} threads for one host's silent connections (baseline {})",
        t.base_threads
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
    let t = Target::start(false, &["--max-sessions", "2"]);
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
    let t = Target::start(false, &[]);
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
    let t = Target::start(true, &[]);
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

/// A network namespace of our own, deleted when the test ends.
struct Netns(String);

impl Netns {
    fn create() -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let name = format!("btest-i16-{}", std::process::id());
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = Netns(name);
        let ok = ip(&["-n", &ns.0, "link", "set", "lo", "up"])
            && [
                "2001:db8:1:2::1",
                "2001:db8:1:2::2",
                "2001:db8:1:2::3",
                "2001:db8:1:3::1",
            ]
            .iter()
            .all(|a| {
                ip(&[
                    "-n",
                    &ns.0,
                    "addr",
                    "add",
                    &format!("{a}/128"),
                    "dev",
                    "lo",
                    "nodad",
                ])
            });
        ok.then_some(ns)
    }

    /// Runs `f` on a thread inside the namespace (sockets it creates live there).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("netns file");
            use std::os::fd::AsRawFd;
            // SAFETY: setns on this thread only, with a namespace descriptor we hold open.
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            f()
        })
        .join()
        .expect("namespace thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// Connects from `src` to `dst` (IPv6), binding first.
fn connect6_from(src: std::net::Ipv6Addr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let SocketAddr::V6(dst) = dst else {
        return Err(std::io::Error::other("IPv6 only"));
    };
    // SAFETY: plain socket calls on a descriptor handed to TcpStream at once.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let sa = |ip: std::net::Ipv6Addr, port: u16| {
            let mut a: libc::sockaddr_in6 = std::mem::zeroed();
            a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            a.sin6_port = port.to_be();
            a.sin6_addr.s6_addr = ip.octets();
            a
        };
        let len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        let local = sa(src, 0);
        if libc::bind(fd, (&raw const local).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sa(*dst.ip(), dst.port());
        if libc::connect(fd, (&raw const remote).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(stream)
    }
}

/// IPv6 hosts of one /64 share the per-address handshake places: two addresses of
/// 2001:db8:1:2::/64 together get 4 with --max-handshakes-per-ip 4, while a host of another
/// /64 is served.
#[test]
fn ipv6_peers_are_counted_per_64() {
    let Some(ns) = Netns::create() else {
        eprintln!("skipped: needs root and ip netns");
        return;
    };
    let mut server = std::process::Command::new("ip")
        .args([
            "netns", "exec", &ns.0, BTEST, "-s", "-P", "0", "--listen", "none",
        ])
        .args([
            "--listen6",
            "2001:db8:1:2::1",
            "--max-handshakes-per-ip",
            "4",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("server in the namespace");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        server.stderr.take().expect("stderr"),
    ));
    let port: u16 = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("listening on ")
                .nth(1)
                .and_then(|r| r.rsplit(':').next())
                .and_then(|p| p.parse().ok())
        })
        .expect("port");
    std::thread::spawn(move || for _ in lines {});
    let dst: SocketAddr = format!("[2001:db8:1:2::1]:{port}").parse().unwrap();
    let (first, second, other) = ns.run(move || {
        let hello = |src: &str| {
            let mut s = connect6_from(src.parse().unwrap(), dst).expect("connect");
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
    let _ = server.kill();
    let _ = server.wait();
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
