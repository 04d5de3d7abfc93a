//! Attacks on the HTTP side of `btest-server-pro` (real binary, loopback): clients that
//! trickle after their response, one address opening many connections, token guessing. Each
//! shows a normal request from another address is answered during the attack.
//! Linux only: other systems route only 127.0.0.1 on the loopback interface.
#![cfg(all(feature = "pro", target_os = "linux"))]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PRO: &str = env!("CARGO_BIN_EXE_btest-server-pro");
const TOKEN: &str = "a-long-enough-admin-token";

/// Connects to `dst` from the local address `src` (any 127.0.0.0/8 address on Linux).
fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> TcpStream {
    let SocketAddr::V4(dst) = dst else {
        panic!("IPv4 only")
    };
    // SAFETY: plain socket calls on a descriptor handed to TcpStream at once.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
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
        assert_eq!(libc::bind(fd, (&raw const local).cast(), len), 0);
        let remote = sa(*dst.ip(), dst.port());
        assert_eq!(libc::connect(fd, (&raw const remote).cast(), len), 0);
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        stream
    }
}

struct Server {
    child: Child,
    http: SocketAddr,
    dir: PathBuf,
}

impl Server {
    fn start(tag: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("btest-hh-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, TOKEN).unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let mut child = Command::new(PRO)
            .arg("--db")
            .arg(dir.join("db"))
            .args(["-P", "0", "--listen", "127.0.0.1", "--http", "127.0.0.1:0"])
            .arg("--http-admin-token-file")
            .arg(&token)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("http: serving on http://").nth(1) {
                    let _ = tx.send(rest.trim_end_matches('/').to_owned());
                }
            }
        });
        let http = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("http address")
            .parse()
            .unwrap();
        Server { child, http, dir }
    }

    /// One GET from `src`; returns the status (0 if none came).
    fn get(&self, src: Ipv4Addr, path: &str, token: Option<&str>) -> u16 {
        let mut s = connect_from(src, self.http);
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const NORMAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Sends a request, then a byte every 100 ms until the server closes; returns how long the
/// connection lasted.
fn trickle(src: Ipv4Addr, http: SocketAddr) -> Duration {
    let mut c = connect_from(src, http);
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let start = Instant::now();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while start.elapsed() < Duration::from_secs(20) {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        if c.write_all(b"x").is_err() {
            break;
        }
    }
    start.elapsed()
}

/// Four clients (one per handler thread) that keep trickling bytes after their response:
/// each connection is closed within the close-down limit, and a normal request is answered.
#[test]
fn trickling_clients_do_not_hold_the_handlers() {
    let s = Server::start("trickle");
    let tricklers: Vec<_> = (0..4u8)
        .map(|i| {
            let http = s.http;
            std::thread::spawn(move || trickle(Ipv4Addr::new(127, 0, 1, 1 + i), http))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.get(NORMAL, "/metrics", None), 200);
    for t in tricklers {
        let held = t.join().unwrap();
        // Close-down is at most 1 s after the response; 20 s would mean no limit at all.
        assert!(held < Duration::from_secs(8), "trickler held for {held:?}");
    }
}

/// One address opening 20 silent connections gets 8 places; the rest are answered 503 at
/// once, and a normal request from another address is answered.
#[test]
fn one_address_gets_eight_connections() {
    let s = Server::start("per-address");
    let attacker = Ipv4Addr::new(127, 0, 2, 1);
    let silent: Vec<TcpStream> = (0..20).map(|_| connect_from(attacker, s.http)).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.get(NORMAL, "/metrics", None), 200);
    let mut busy = 0;
    for mut c in silent {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        if out.contains("too many connections from your address") {
            busy += 1;
        }
    }
    assert_eq!(busy, 12, "connections past the eighth must be refused");
}

/// Wrong admin tokens: after five in a minute that address gets 429 even with the right
/// token, while other addresses are served.
#[test]
fn wrong_tokens_are_rate_limited() {
    let s = Server::start("tokens");
    let guesser = Ipv4Addr::new(127, 0, 3, 1);
    for i in 0..5 {
        let status = s.get(guesser, "/api/sessions/live", Some(&format!("guess-{i}")));
        assert_eq!(status, 403);
    }
    assert_eq!(s.get(guesser, "/api/sessions/live", Some(TOKEN)), 429);
    assert_eq!(s.get(NORMAL, "/api/sessions/live", Some(TOKEN)), 200);
}

/// A short admin token is refused at start.
#[test]
fn a_short_admin_token_is_refused() {
    let dir = std::env::temp_dir().join(format!("btest-hh-{}-short", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "short").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new(PRO)
        .arg("--db")
        .arg(dir.join("db"))
        .args(["-P", "0", "--listen", "127.0.0.1", "--http", "127.0.0.1:0"])
        .arg("--http-admin-token-file")
        .arg(&token)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 16 bytes"));
}
