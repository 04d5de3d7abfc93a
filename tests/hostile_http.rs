//! Attacks on the HTTP side of `btest-server-pro` (real binary, loopback): clients that
//! trickle after their response, one address opening many connections, token guessing. Each
//! shows a normal request from another address is answered during the attack.
//! Linux only: other systems route only 127.0.0.1 on the loopback interface.
#![cfg(all(feature = "pro", target_os = "linux"))]

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use common::pro::{ADMIN_TOKEN, TempDb};
use common::web::{get_from, trickle};
use common::{TestServer, connect_from};

const TOKEN: &str = ADMIN_TOKEN;

/// A pro server with HTTP and an admin token, on a fresh database.
struct Server {
    server: TestServer,
    http: SocketAddr,
    _db: TempDb,
}

impl Server {
    fn start(tag: &str) -> Server {
        let db = TempDb::new(&format!("hh-{tag}"));
        let server = TestServer::start_pro_admin(&db, &[]);
        Server {
            http: SocketAddr::from((Ipv4Addr::LOCALHOST, server.http)),
            server,
            _db: db,
        }
    }

    /// One GET from `src`; returns the status.
    fn get(&self, src: Ipv4Addr, path: &str, token: Option<&str>) -> u16 {
        get_from(self.server.http, Some(src), path, token).status
    }
}

const NORMAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Four clients (one per handler thread) that keep trickling bytes after their response:
/// each connection is closed within the close-down limit, and a normal request is answered.
#[test]
fn trickling_clients_do_not_hold_the_handlers() {
    let s = Server::start("trickle");
    let tricklers: Vec<_> = (0..4u8)
        .map(|i| {
            let port = s.server.http;
            std::thread::spawn(move || trickle(port, Ipv4Addr::new(127, 0, 1, 1 + i)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(s.get(NORMAL, "/metrics", None), 200);
    for t in tricklers {
        let held = t.join().unwrap().expect("trickler connects");
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
    let silent: Vec<TcpStream> = (0..20)
        .map(|_| connect_from(attacker, s.http).expect("connect"))
        .collect();
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
    let db = TempDb::new("hh-short");
    let token = db.write_token("short", 0o600);
    let out = db.run_server(&["--http", "127.0.0.1:0", "--http-admin-token-file", &token]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 16 bytes"));
}
