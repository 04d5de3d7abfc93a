//! The pro server's own attacks, as tests/hostile_public.rs runs the plain server's: HTTP
//! clients that trickle, admin token guessing, password guessing and a flood of refusals,
//! each against a running `btest-server-pro` (real binaries, loopback). Attackers use other
//! 127.0.0.x source addresses; each test shows that a normal client from 127.0.0.1 is served
//! during the attack (a bandwidth test and an HTTP request), and that the server's threads
//! (/proc/PID/status) and memory (VmRSS) return to their baseline after it.
//!
//! Linux only: other systems route only 127.0.0.1 on the loopback interface.
#![cfg(all(feature = "pro", target_os = "linux"))]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::pro::{ADMIN_TOKEN, TempDb};
use common::web::{get_from, trickle};
use common::{TCP_RECEIVE, Target, TestServer, client, connect_from, drain, text};

const TOKEN: &str = ADMIN_TOKEN;
const USER: &str = "alice";
const PASS: &str = "correct horse";
const NORMAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A running `btest-server-pro` (MD5 logins, HTTP with an admin token), warmed up, with its
/// baseline.
struct Attacked {
    target: Target,
    db: TempDb,
}

impl Attacked {
    fn start(tag: &str) -> Attacked {
        let db = TempDb::new(&format!("pa-{tag}"));
        db.add_user(USER, PASS, &["--md5"]);
        let server = TestServer::start_pro_admin(&db, &["--auth", "md5", "-v"]);
        warm_up_http(&server);
        let http = server.http;
        // Everything a normal client and the attacks touch, once, before the baseline is
        // taken (allocator arenas, thread-stack cache, SQLite page caches), as
        // tests/robust.rs does.
        let target = Target::warmed_up(server, 30, Duration::from_millis(300), |port| {
            normal_client(port, http, &[]);
        });
        eprintln!(
            "baseline: {} threads, {} KiB",
            target.base.threads, target.base.rss
        );
        Attacked { target, db }
    }

    /// The test port.
    fn addr(&self) -> SocketAddr {
        self.target.addr
    }

    /// A normal client from 127.0.0.1: a one-second test with the right password, and a
    /// page of the HTTP side.
    fn normal_client(&self) {
        let server = &self.target.server;
        normal_client(server.port, server.http, &server.log());
    }

    /// One GET from `src`; returns the status.
    fn get(&self, src: Ipv4Addr, path: &str, token: Option<&str>) -> u16 {
        get_from(self.target.server.http, Some(src), path, token).status
    }

    /// After an attack: threads come back to the baseline (not one more) and memory to
    /// within 10 % and 1 MiB of it.
    fn check_recovered(&self, attack: &str) {
        let pid = self.target.server.pid();
        self.target.base.wait_within(pid, attack, 1.0, 1024.0);
    }
}

/// The HTTP side's share of the warm-up: a burst of idle connections, then each page once.
fn warm_up_http(server: &TestServer) {
    let http = SocketAddr::from((Ipv4Addr::LOCALHOST, server.http));
    let burst: Vec<TcpStream> = (0..8)
        .filter_map(|_| connect_from(NORMAL, http).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    drop(burst);
    for path in ["/metrics", "/api/sessions/live", "/", "/api/health"] {
        get_from(server.http, Some(NORMAL), path, Some(TOKEN));
    }
}

/// A one-second test from 127.0.0.1 with the right password against test port `port`, and
/// the health page from HTTP port `http`; `log` (the server's, if at hand) for the message.
fn normal_client(port: u16, http: u16, log: &[String]) {
    let out = client(
        port,
        &["-r", "-d", "1", "-b", "20M", "-a", USER, "-p", PASS],
    );
    assert!(
        out.status.success(),
        "normal test failed: {}\n{}",
        text(&out.stderr),
        log.join("\n")
    );
    assert_eq!(
        get_from(http, Some(NORMAL), "/api/health", None).status,
        200
    );
}

/// Eight addresses trickle bytes after their HTTP response, more than there are handler
/// places for one address and enough to keep every handler busy without the close-down limit.
#[test]
fn http_trickling_leaves_service_and_resources_intact() {
    let t = Attacked::start("trickle");
    let tricklers: Vec<_> = (0..8u8)
        .flat_map(|i| [i; 2])
        .map(|i| {
            let port = t.target.server.http;
            std::thread::spawn(move || trickle(port, Ipv4Addr::new(127, 0, 1, 1 + i)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    t.normal_client();
    for h in tricklers {
        // A trickler that could not connect held nothing.
        let held = h.join().unwrap().unwrap_or_default();
        assert!(held < Duration::from_secs(8), "trickler held for {held:?}");
    }
    t.check_recovered("HTTP trickle");
}

/// Hundreds of wrong admin tokens from one address, several at a time: it is soon answered
/// 429, and others are served.
#[test]
fn admin_token_guessing_leaves_service_and_resources_intact() {
    let t = Attacked::start("tokens");
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
    let t = Attacked::start("passwords");
    let guesser = Ipv4Addr::new(127, 0, 4, 1);
    std::thread::scope(|s| {
        let guessers: Vec<_> = (0..4u8)
            .map(|g| {
                let addr = t.addr();
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
        t.target.server.count_log("refusing this address") > 0,
        "no back-off logged:\n{}",
        t.target.server.log().join("\n")
    );
    t.normal_client();
    t.check_recovered("password guessing");
}

/// Hundreds of refused connections (unknown join tokens) from one address: few history rows,
/// and a normal client is served.
#[test]
fn a_refusal_flood_leaves_service_and_resources_intact() {
    let t = Attacked::start("refusals");
    let flooder = Ipv4Addr::new(127, 0, 5, 1);
    std::thread::scope(|s| {
        let floods: Vec<_> = (0..8u16)
            .map(|f| {
                let addr = t.addr();
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
    let rows =
        t.db.q("SELECT count(*) FROM sessions WHERE peer = '127.0.5.1'");
    assert!(rows <= 4, "{rows} history rows for one flooding address");
}
