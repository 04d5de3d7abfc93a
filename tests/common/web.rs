//! A tiny HTTP/1.1 client on `std` for the pro server's web side: one request per
//! connection (the server closes after each), optionally from another loopback address.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{connect_from, text};

/// A response: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends raw bytes to 127.0.0.1:`port` (from `from`, if given) and reads the whole response.
pub fn raw(port: u16, from: Option<Ipv4Addr>, request: &[u8]) -> Resp {
    let mut s = connect(port, from);
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

/// A connection to the HTTP port, with a 15 s read timeout.
pub fn connect(port: u16, from: Option<Ipv4Addr>) -> TcpStream {
    let dst = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let s = match from {
        Some(ip) => connect_from(ip, dst).unwrap_or_else(|e| panic!("connect from {ip}: {e}")),
        None => TcpStream::connect(dst).expect("connect"),
    };
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Parses a whole response; a HEAD response's announced length is not checked.
pub fn parse_response(buf: &[u8]) -> Resp {
    let t = text(buf);
    let (head, body) = t
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {t:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<HashMap<_, _>>();
    // A HEAD response announces the length of a body it does not send.
    if let Some(len) = headers.get("content-length").filter(|_| !body.is_empty()) {
        assert_eq!(len.parse::<usize>().unwrap(), body.len(), "content-length");
    }
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// GET `path` from 127.0.0.1:`port`, with a bearer token if given.
pub fn get(port: u16, path: &str, token: Option<&str>) -> Resp {
    get_from(port, None, path, token)
}

/// GET `path` from the local address `from` (any of 127/8 on Linux).
pub fn get_from(port: u16, from: Option<Ipv4Addr>, path: &str, token: Option<&str>) -> Resp {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    raw(
        port,
        from,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes(),
    )
}

/// Connects from `src`, sends a request, then a byte every 100 ms until the server closes (20 s
/// at most); returns how long the connection lasted. A client that keeps trickling after its
/// response must not hold a handler past the close-down limit.
pub fn trickle(port: u16, src: Ipv4Addr) -> std::io::Result<Duration> {
    let mut c = connect_from(src, SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    let start = Instant::now();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
    c.set_read_timeout(Some(Duration::from_millis(100)))?;
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
    Ok(start.elapsed())
}
