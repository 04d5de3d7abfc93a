//! The pro server's own attacks, as tests/hostile_public.rs runs the plain server's: HTTP
//! clients that trickle, admin token guessing, password guessing and a flood of refusals,
//! each against a running `btest-server-pro` (real binaries, loopback). Attackers use other
//! 127.0.0.x source addresses; each test shows that a normal client from 127.0.0.1 is served
//! during the attack (a bandwidth test and an HTTP request), and that the server's threads
//! (/proc/PID/task) and memory (VmRSS) return to their baseline after it.
//!
//! Linux only: other systems route only 127.0.0.1 on the loopback interface.
#![cfg(all(feature = "pro", target_os = "linux"))]
#![allow(unsafe_code)] // FFI for test tooling (signals, namespaces, sockets bound to a source address)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PRO: &str = env!("CARGO_BIN_EXE_btest-server-pro");
const BTEST: &str = env!("CARGO_BIN_EXE_btest");
const TOKEN: &str = "a-long-enough-admin-token";
const USER: &str = "alice";
const PASS: &str = "correct horse";
const TCP_RECEIVE: [u8; 16] = [1, 2, 1, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const NORMAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Connects to `dst` from the local address `src` (any 127.0.0.0/8 address on Linux).
fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    let SocketAddr::V4(dst) = dst else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    // SAFETY: plain socket calls on a descriptor handed to TcpStream at once.
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

/// Reads until the peer closes; returns what came.
fn drain(mut s: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Threads of `pid`, counted from /proc/PID/task.
fn threads(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count() as u64)
}

/// Resident memory of `pid` in KiB (VmRSS of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A running `btest-server-pro` (MD5 logins, HTTP with an admin token) and its baseline.
struct Target {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    http: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    base_threads: u64,
    base_rss: u64,
}

impl Target {
    fn start(tag: &str) -> Target {
        let dir = std::env::temp_dir().join(format!("btest-pa-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, TOKEN).unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let db = dir.join("db");
        let mut add = Command::new(PRO)
            .arg("--db")
            .arg(&db)
            .args(["user", "add", USER, "--md5"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("user add");
        add.stdin
            .take()
            .unwrap()
            .write_all(format!("{PASS}\n").as_bytes())
            .unwrap();
        assert!(add.wait().unwrap().success());
        let mut child = Command::new(PRO)
            .arg("--db")
            .arg(&db)
            .args(["-P", "0", "--listen", "127.0.0.1", "--auth", "md5", "-v"])
            .args(["--http", "127.0.0.1:0", "--http-admin-token-file"])
            .arg(&token)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn btest-server-pro");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let port = rest.rsplit(':').next().unwrap_or_default().to_owned();
                    let _ = tx.send((false, format!("127.0.0.1:{port}")));
                }
                if let Some(rest) = line.split("http: serving on http://").nth(1) {
                    let _ = tx.send((true, rest.trim_end_matches('/').to_owned()));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let (mut addr, mut http) = (None, None);
        while addr.is_none() || http.is_none() {
            let (is_http, a) = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("server did not report its addresses");
            let a: SocketAddr = a.parse().unwrap();
            if is_http {
                http = Some(a)
            } else {
                addr = Some(a)
            }
        }
        let (addr, http) = (addr.unwrap(), http.unwrap());
        let mut t = Target {
            child,
            dir,
            addr,
            http,
            log,
            base_threads: 0,
            base_rss: 0,
        };
        t.warm_up();
        t
    }

    /// Everything a normal client and the attacks touch, once, before the baseline is taken
    /// (allocator arenas, thread-stack cache, SQLite page caches), as tests/robust.rs does.
    fn warm_up(&mut self) {
        self.normal_client();
        let burst: Vec<TcpStream> = (0..30)
            .filter_map(|_| connect_from(NORMAL, self.addr).ok())
            .collect();
        let http_burst: Vec<TcpStream> = (0..8)
            .filter_map(|_| connect_from(NORMAL, self.http).ok())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        drop(burst);
        drop(http_burst);
        for path in ["/metrics", "/api/sessions/live", "/", "/api/health"] {
            self.get(NORMAL, path, Some(TOKEN));
        }
        std::thread::sleep(Duration::from_millis(300));
        self.normal_client();
        std::thread::sleep(Duration::from_millis(500));
        let pid = self.child.id();
        self.base_threads = threads(pid);
        self.base_rss = rss_kib(pid);
        eprintln!(
            "baseline: {} threads, {} KiB",
            self.base_threads, self.base_rss
        );
    }

    /// A normal client from 127.0.0.1: a one-second test with the right password, and a
    /// page of the HTTP side.
    fn normal_client(&self) {
        let out = Command::new(BTEST)
            .args(["-c", "127.0.0.1", "-P", &self.addr.port().to_string()])
            .args(["-r", "-d", "1", "-b", "20M", "-a", USER, "-p", PASS])
            .output()
            .expect("client");
        assert!(
            out.status.success(),
            "normal test failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log.lock().unwrap().join("\n")
        );
        assert_eq!(self.get(NORMAL, "/api/health", None), 200);
    }

    /// One GET from `src`; returns the status (0 if none came).
    fn get(&self, src: Ipv4Addr, path: &str, token: Option<&str>) -> u16 {
        let Ok(mut s) = connect_from(src, self.http) else {
            return 0;
        };
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// After an attack: threads and memory come back to the baseline.
    fn check_recovered(&self, attack: &str) {
        let pid = self.child.id();
        let under_emulation = std::env::var_os("BTEST_UNDER_EMULATION").is_some();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (t, rss) = (threads(pid), rss_kib(pid));
            let rss_ok = under_emulation || rss as f64 <= self.base_rss as f64 * 1.1 + 1024.0;
            if t <= self.base_threads && rss_ok {
                eprintln!("{attack}: back to {t} threads, {rss} KiB");
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

fn log_has(log: &Arc<Mutex<Vec<String>>>, needle: &str) -> bool {
    log.lock().unwrap().iter().any(|l| l.contains(needle))
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends a request, then a byte every 100 ms until the server closes (at most 20 s).
fn trickle(src: Ipv4Addr, http: SocketAddr) -> Duration {
    let start = Instant::now();
    let Ok(mut c) = connect_from(src, http) else {
        return start.elapsed();
    };
    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
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

/// Eight addresses trickle bytes after their HTTP response, more than there are handler
/// places for one address and enough to keep every handler busy without the close-down limit.
#[test]
fn http_trickling_leaves_service_and_resources_intact() {
    let t = Target::start("trickle");
    let tricklers: Vec<_> = (0..8u8)
        .flat_map(|i| [i; 2])
        .map(|i| {
            let http = t.http;
            std::thread::spawn(move || trickle(Ipv4Addr::new(127, 0, 1, 1 + i), http))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    t.normal_client();
    for h in tricklers {
        let held = h.join().unwrap();
        assert!(held < Duration::from_secs(8), "trickler held for {held:?}");
    }
    t.check_recovered("HTTP trickle");
}

/// Hundreds of wrong admin tokens from one address, several at a time: it is soon answered
/// 429, and others are served.
#[test]
fn admin_token_guessing_leaves_service_and_resources_intact() {
    let t = Target::start("tokens");
    let guesser = Ipv4Addr::new(127, 0, 3, 1);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let guessers: Vec<_> = (0..4)
            .map(|g| {
                let t = &t;
                s.spawn(move || {
                    (0..50)
                        .map(|i| t.get(guesser, "/api/sessions/live", Some(&format!("g{g}-{i}"))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        t.normal_client();
        assert_eq!(t.get(NORMAL, "/api/sessions/live", Some(TOKEN)), 200);
        guessers
            .into_iter()
            .flat_map(|g| g.join().unwrap())
            .collect()
    });
    assert!(
        statuses.iter().all(|s| [403, 429, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|&&s| s == 429).count() > 150,
        "guessing was not rate-limited: {statuses:?}"
    );
    t.check_recovered("admin token guessing");
}

/// Wrong MD5 passwords from one address, several connections at a time: the address is
/// refused after five, and a normal client is served. (The guesses name another user: failures
/// also back off the user they name.)
#[test]
fn password_guessing_leaves_service_and_resources_intact() {
    let t = Target::start("passwords");
    let guesser = Ipv4Addr::new(127, 0, 4, 1);
    std::thread::scope(|s| {
        let guessers: Vec<_> = (0..4u8)
            .map(|g| {
                let addr = t.addr;
                s.spawn(move || {
                    for i in 0..25u8 {
                        let Ok(mut c) = connect_from(guesser, addr) else {
                            continue;
                        };
                        let mut hello = [0u8; 4];
                        if c.read_exact(&mut hello).is_err() {
                            continue; // refused at accept: backed off
                        }
                        let _ = c.write_all(&TCP_RECEIVE);
                        let mut challenge = [0u8; 20];
                        if c.read_exact(&mut challenge).is_ok() {
                            let mut response = [0u8; 48];
                            response[..16].fill(g ^ i);
                            response[16..23].copy_from_slice(b"mallory");
                            let _ = c.write_all(&response);
                        }
                        drain(c);
                    }
                })
            })
            .collect();
        t.normal_client();
        for g in guessers {
            g.join().unwrap();
        }
    });
    assert!(
        log_has(&t.log, "refusing this address"),
        "no back-off logged:\n{}",
        t.log.lock().unwrap().join("\n")
    );
    t.normal_client();
    t.check_recovered("password guessing");
}

/// Hundreds of refused connections (unknown join tokens) from one address: few history rows,
/// and a normal client is served.
#[test]
fn a_refusal_flood_leaves_service_and_resources_intact() {
    let t = Target::start("refusals");
    let flooder = Ipv4Addr::new(127, 0, 5, 1);
    std::thread::scope(|s| {
        let floods: Vec<_> = (0..8u16)
            .map(|f| {
                let addr = t.addr;
                s.spawn(move || {
                    for i in 0..50u16 {
                        let Ok(mut c) = connect_from(flooder, addr) else {
                            continue;
                        };
                        let mut hello = [0u8; 4];
                        if c.read_exact(&mut hello).is_ok() {
                            let join = btest_rs::proto::encode_join(0x0300 + f * 64 + i);
                            let _ = c.write_all(&join);
                        }
                        drain(c);
                    }
                })
            })
            .collect();
        t.normal_client();
        for f in floods {
            f.join().unwrap();
        }
    });
    t.normal_client();
    t.check_recovered("refusal flood");
    let conn = rusqlite::Connection::open(t.dir.join("db")).unwrap();
    let rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM sessions WHERE peer = '127.0.5.1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(rows <= 4, "{rows} history rows for one flooding address");
}
