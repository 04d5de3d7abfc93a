//! The request head of HTTP/1.x, parsed from bytes without I/O, and the response written back.
//!
//! Only what a GET-only server needs: the request line, the `Authorization` header and the
//! query string. Everything else in the head is checked for shape and skipped. Malformed input
//! is an [`HttpError`] that maps to a 4xx status, never a panic.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Largest request head (request line and headers) read: a browser's GET with cookies fits in
/// far less, and a bound here bounds each handler's memory.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// Longest request target; longer ones get 414.
pub(crate) const MAX_TARGET: usize = 2 * 1024;

/// Most header lines.
const MAX_HEADERS: usize = 64;

/// Why a request cannot be served, each with its status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HttpError {
    /// 400: not HTTP/1.x, or a malformed line, target or encoding.
    BadRequest(&'static str),
    /// 405: anything but GET or HEAD.
    MethodNotAllowed,
    /// 408: the head did not arrive in time.
    Timeout,
    /// 414: the target exceeds [`MAX_TARGET`].
    UriTooLong,
    /// 431: the head exceeds [`MAX_HEAD`] or has too many lines.
    HeadTooLarge,
}

impl HttpError {
    /// The status code.
    pub(crate) fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::MethodNotAllowed => 405,
            HttpError::Timeout => 408,
            HttpError::UriTooLong => 414,
            HttpError::HeadTooLarge => 431,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::MethodNotAllowed => f.write_str("only GET and HEAD are served"),
            HttpError::Timeout => f.write_str("the request did not arrive in time"),
            HttpError::UriTooLong => write!(f, "request target longer than {MAX_TARGET} bytes"),
            HttpError::HeadTooLarge => write!(f, "request head larger than {MAX_HEAD} bytes"),
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// HEAD asks for the headers only.
    pub head_only: bool,
    /// Path segments after the leading `/`, percent-decoded (`/` is `[""]`).
    pub segments: Vec<String>,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// The `Authorization` header's value, if sent.
    pub authorization: Option<String>,
}

impl Request {
    /// The first value of query parameter `key`.
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Where the head ends (the index after the blank line), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| i + 4);
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Reads a request head from `stream` until the blank line, within `deadline` and
/// [`MAX_HEAD`] bytes. A client trickling bytes cannot hold a handler longer than the deadline:
/// the socket timeout is reset to what is left before every read.
pub(crate) fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::Timeout);
        }
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|_| HttpError::Timeout)?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(HttpError::BadRequest("connection closed mid-request")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HttpError::Timeout);
            }
            Err(_) => return Err(HttpError::BadRequest("read error")),
        };
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = buf.get(from..).and_then(head_end) {
            buf.truncate(from + end);
            return Ok(buf);
        }
        if buf.len() > MAX_HEAD {
            // A request line that has not ended yet is an overlong target, not big headers.
            return Err(if memchr::memchr(b'\n', &buf).is_none() {
                HttpError::UriTooLong
            } else {
                HttpError::HeadTooLarge
            });
        }
    }
}

/// Parses a request head (as returned by [`read_head`]).
pub(crate) fn parse(head: &[u8]) -> Result<Request, HttpError> {
    if head.len() > MAX_HEAD + 4 {
        return Err(HttpError::HeadTooLarge);
    }
    let text = std::str::from_utf8(head).map_err(|_| HttpError::BadRequest("head not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest("malformed request line"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::BadRequest("not HTTP/1.x"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::BadRequest("malformed method"));
    }
    if target.len() > MAX_TARGET {
        return Err(HttpError::UriTooLong);
    }
    let mut authorization = None;
    let mut count = 0;
    for l in lines.take_while(|l| !l.is_empty()) {
        count += 1;
        if count > MAX_HEADERS {
            return Err(HttpError::HeadTooLarge);
        }
        let Some((name, value)) = l.split_once(':') else {
            return Err(HttpError::BadRequest("header line without a colon"));
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace() || b < 0x21) {
            return Err(HttpError::BadRequest("malformed header name"));
        }
        if name.eq_ignore_ascii_case("authorization") {
            if authorization.is_some() {
                return Err(HttpError::BadRequest("two Authorization headers"));
            }
            authorization = Some(value.trim().to_owned());
        }
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(HttpError::MethodNotAllowed),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = path
        .strip_prefix('/')
        .ok_or(HttpError::BadRequest("target must be an absolute path"))?;
    let segments = path
        .split('/')
        .map(|s| decode(s, false))
        .collect::<Result<Vec<_>, _>>()?;
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k, true)?, decode(v, true)?))
        })
        .collect::<Result<Vec<_>, HttpError>>()?;
    Ok(Request {
        head_only,
        segments,
        query,
        authorization,
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one path segment or query part; the result must be UTF-8 without control
/// characters (nothing we serve is named with them, and they have no business in a log line).
fn decode(s: &str, plus_is_space: bool) -> Result<String, HttpError> {
    let bad = HttpError::BadRequest("malformed percent-encoding");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex).ok_or(bad.clone())?;
                let lo = b.get(i + 2).copied().and_then(hex).ok_or(bad.clone())?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    let s = String::from_utf8(out).map_err(|_| bad)?;
    if s.chars().any(char::is_control) {
        return Err(HttpError::BadRequest("control character in the target"));
    }
    Ok(s)
}

/// A response; always sent with `Connection: close`.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// A JSON response.
    pub(crate) fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            body,
            headers: Vec::new(),
        }
    }

    /// A plain text response.
    pub(crate) fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// An HTML page.
    pub(crate) fn html(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "text/html; charset=utf-8",
            body,
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub(crate) fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The response bytes. The security headers go on every response: the content security
    /// policy forbids the browser any request beyond the page itself, so even a bug that let
    /// markup through could not make it load anything.
    pub(crate) fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
             Referrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n\
             Content-Security-Policy: default-src 'none'; style-src {}; \
             form-action 'none'; frame-ancestors 'none'; base-uri 'none'\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            super::page::style_hash()
        );
        for (k, v) in &self.headers {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }

    /// Writes the response and closes politely: the write side first, then a short bounded
    /// drain of whatever the client still sends (a body we never read), so the kernel does
    /// not answer that data with a reset that could destroy the response in flight.
    /// Writes the response and closes the connection, all before `deadline`: the write may
    /// take what is left of it, and the close-down (reading what the client still sends, so
    /// the close does not reset the response away) at most [`CLOSE_DOWN`] more, in total,
    /// however the client trickles.
    pub(crate) fn send(&self, stream: &mut TcpStream, head_only: bool, deadline: Instant) {
        let left = |until: Instant| until.saturating_duration_since(Instant::now());
        if left(deadline).is_zero()
            || stream
                .set_write_timeout(Some(left(deadline).max(Duration::from_millis(1))))
                .is_err()
        {
            return;
        }
        if stream.write_all(&self.to_bytes(head_only)).is_err() {
            return;
        }
        let _ = stream.flush();
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let close_by = deadline.min(Instant::now() + CLOSE_DOWN);
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 256 * 1024 {
            let wait = left(close_by);
            if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
                break;
            }
            match stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
}

/// Longest close-down after a response.
pub(crate) const CLOSE_DOWN: Duration = Duration::from_secs(1);

/// The reason phrase of the codes we send.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_query_and_authorization() {
        let r = parse(
            b"GET /api/user/al%20ice/usage?limit=5&x=a+b HTTP/1.1\r\nHost: h\r\n\
              authorization:  Bearer t0k \r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.segments, ["api", "user", "al ice", "usage"]);
        assert_eq!(r.param("limit"), Some("5"));
        assert_eq!(r.param("x"), Some("a b"));
        assert_eq!(r.authorization.as_deref(), Some("Bearer t0k"));
        assert!(!r.head_only);
        assert_eq!(parse(b"GET / HTTP/1.0\n\n").unwrap().segments, [""]);
    }

    #[test]
    fn malformed_heads_are_errors_with_4xx() {
        for (head, status) in [
            (&b"POST / HTTP/1.1\r\n\r\n"[..], 405),
            (b"GET / HTTP/2\r\n\r\n", 400),
            (b"GET /  HTTP/1.1\r\n\r\n", 400),
            (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
            (b"GET /%zz HTTP/1.1\r\n\r\n", 400),
            (b"GET /%ff HTTP/1.1\r\n\r\n", 400),
            (b"GET /%0a HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
            (
                b"GET / HTTP/1.1\r\nA: 1\r\nauthorization: x\r\nAuthorization: y\r\n\r\n",
                400,
            ),
            (b"get / HTTP/1.1\r\n\r\n", 400),
            (b"\xff\xfe\r\n\r\n", 400),
            (b"", 400),
        ] {
            let e = parse(head).expect_err(&String::from_utf8_lossy(head));
            assert_eq!(e.status(), status, "{}", String::from_utf8_lossy(head));
        }
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET));
        assert_eq!(parse(long.as_bytes()), Err(HttpError::UriTooLong));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("h{i}: v\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(head.as_bytes()), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn head_end_finds_either_line_ending() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nrest"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn response_carries_length_and_no_body_for_head() {
        let r = Response::text(404, "nope");
        let full = String::from_utf8(r.to_bytes(false)).unwrap();
        assert!(full.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(full.contains("Content-Length: 4\r\n"));
        assert!(full.ends_with("\r\n\r\nnope"));
        let head = String::from_utf8(r.to_bytes(true)).unwrap();
        assert!(head.ends_with("\r\n\r\n"));
    }
}
