//! The HTTP side of `btest-server-pro` (`--http ADDR:PORT`): usage, session history, live
//! sessions, Prometheus metrics and two small HTML pages, from the same database and the live
//! registry of the running server.
//!
//! Why our own server on `std` and not `tiny_http`: tiny_http 0.12 starts a new thread for every
//! connection once its four are busy (no upper bound), has no read timeouts, and reads header
//! lines of any size; a public server's dashboard would then hand its memory and threads to
//! whoever opens slow connections. A GET-only HTTP/1.x server with hard bounds is a few hundred
//! lines, and every bound is ours:
//!
//! * one accept thread and [`WORKERS`] handler threads; accepted connections wait in a queue of
//!   [`QUEUE`] and are answered 503 at once when it is full;
//! * at most [`MAX_PER_ADDRESS`] connections queued or handled per address (IPv6: prefix);
//! * a request head of at most [`request::MAX_HEAD`] bytes that must arrive within
//!   [`HEAD_DEADLINE`] of the accept (a client trickling bytes is cut off at the deadline,
//!   not per read), and one [`CONNECTION_DEADLINE`] over head, response and close-down, the
//!   close-down itself at most [`request::CLOSE_DOWN`];
//! * wrong admin tokens back off per address like failed logins (429);
//! * no request bodies are read (GET and HEAD only; others 405), one request per connection;
//! * responses are written with a timeout.
//!
//! Database reads go through the r2d2 pool, never through the writer.

pub(crate) mod api;
pub(crate) mod history;
pub(crate) mod page;
pub(crate) mod request;
pub(crate) mod routes;

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use self::request::{HttpError, Response};
use super::db::Pool;
use super::live::Live;
use super::quota::{Clock, Limits, Tz};
use super::writer::Op;
use crate::server::limits::{ConnLimits, ConnSlot};
use crate::{log, log_error};

/// Handler threads: enough for a dashboard and a scraper (a page costs a few small
/// queries), and more than one address may hold ([`MAX_PER_ADDRESS`]), so a single host
/// holding all of its places still leaves handlers for everyone else.
pub(crate) const WORKERS: usize = 12;

/// Accepted connections waiting for a handler.
pub(crate) const QUEUE: usize = 32;

/// Time a client has to send its request head, counted from accept (time spent waiting in
/// the queue counts too).
pub(crate) const HEAD_DEADLINE: Duration = Duration::from_secs(5);

/// Time one connection may take in all, from accept to close: head, response and close-down.
pub(crate) const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// Connections one address (IPv6: one prefix) may have queued or in a handler at once.
pub(crate) const MAX_PER_ADDRESS: usize = 8;

/// Shortest admin token accepted.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

/// Stack of each HTTP thread; SQLite and the page builders are shallow.
const STACK: usize = 512 * 1024;

/// Why the HTTP side cannot start.
#[derive(Debug)]
pub(crate) enum HttpStartError {
    /// The admin token file cannot be read.
    TokenUnreadable {
        /// The path given.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The admin token file is empty.
    TokenEmpty(String),
    /// The admin token is shorter than [`MIN_TOKEN_LEN`] bytes.
    TokenShort(String),
    /// The admin token file is readable by group or others.
    TokenExposed {
        /// The path given.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The address cannot be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A thread could not be started.
    Spawn(std::io::Error),
}

impl fmt::Display for HttpStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpStartError::TokenUnreadable { path, source } => {
                write!(f, "cannot read --http-admin-token-file {path}: {source}")
            }
            HttpStartError::TokenShort(p) => write!(
                f,
                "the token in --http-admin-token-file {p} is shorter than {MIN_TOKEN_LEN} \
                 bytes; put a long random token in it (e.g. from openssl rand -hex 24)"
            ),
            HttpStartError::TokenEmpty(p) => {
                write!(
                    f,
                    "--http-admin-token-file {p} is empty; put a long random token in it"
                )
            }
            HttpStartError::TokenExposed { path, mode } => write!(
                f,
                "--http-admin-token-file {path} is readable by other users (mode {mode:o}); \
                 chmod 600 it"
            ),
            HttpStartError::Bind { addr, source } => {
                write!(f, "cannot listen for HTTP on {addr}: {source}")
            }
            HttpStartError::Spawn(e) => write!(f, "cannot start the HTTP threads: {e}"),
        }
    }
}

impl std::error::Error for HttpStartError {}

/// Reads the admin token: whitespace trimmed, not empty, and the file not readable by group or
/// others. Refusing an exposed file (as ssh does with keys) is safer than a warning nobody
/// reads: the token grants every user's and address's history.
pub(crate) fn read_token(path: &str) -> Result<Vec<u8>, HttpStartError> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |source| HttpStartError::TokenUnreadable {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(Path::new(path)).map_err(unreadable)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(HttpStartError::TokenExposed {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(HttpStartError::TokenEmpty(path.to_owned()));
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(HttpStartError::TokenShort(path.to_owned()));
    }
    Ok(token.as_bytes().to_vec())
}

/// What the handlers read: the database pool, the configuration of budgets, the live
/// registry, the writer's channel (for its depth) and the admin token.
pub(crate) struct Context {
    /// Read pool.
    pub pool: Pool,
    /// Time zone of the periods.
    pub tz: Tz,
    /// Default budgets of users.
    pub defaults_user: Limits,
    /// Default budgets of addresses.
    pub defaults_ip: Limits,
    /// "Now", the same clock the budgets use.
    pub clock: Arc<dyn Clock>,
    /// Running sessions and counters.
    pub live: Arc<Live>,
    /// The writer's channel; only its length is read.
    pub writes: Sender<Op>,
    /// The admin bearer token; `None` turns the admin endpoints off.
    pub admin_token: Option<Vec<u8>>,
    /// IPv6 addresses are accounted by this prefix length.
    pub ipv6_prefix: u8,
    /// Wrong admin tokens per address; a guesser gets 429 for a growing time.
    pub token_failures: crate::server::backoff::Backoff,
    /// Whether the database takes writes (`/api/health`, `/metrics`).
    pub health: Arc<super::health::WriteHealth>,
}

/// The running HTTP side.
pub(crate) struct HttpServer {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` and starts the accept and handler threads.
    pub(crate) fn start(addr: SocketAddr, ctx: Arc<Context>) -> Result<HttpServer, HttpStartError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| HttpStartError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| HttpStartError::Bind { addr, source })?;
        let (tx, rx) = crossbeam_channel::bounded::<Accepted>(QUEUE);
        let per_address = ConnLimits::new(usize::MAX, MAX_PER_ADDRESS);
        let prefix = ctx.ipv6_prefix;
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(WORKERS);
        for i in 0..WORKERS {
            let rx = rx.clone();
            let ctx = ctx.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("btest-http-{i}"))
                    .stack_size(STACK)
                    .spawn(move || work(&rx, &ctx))
                    .map_err(HttpStartError::Spawn)?,
            );
        }
        let flag = stop.clone();
        let acceptor = std::thread::Builder::new()
            .name("btest-http-accept".into())
            .stack_size(STACK)
            .spawn(move || accept(&listener, &tx, &flag, &per_address, prefix))
            .map_err(HttpStartError::Spawn)?;
        log!(0, "http: serving on http://{local}/");
        Ok(HttpServer {
            local,
            stop,
            acceptor: Some(acceptor),
            workers,
        })
    }

    /// Stops accepting, lets the handlers finish what they hold (bounded by the head deadline
    /// and write timeout) and joins every thread.
    pub(crate) fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let wake = match self.local.ip() {
            IpAddr::V4(a) if a.is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], self.local.port()))
            }
            IpAddr::V6(a) if a.is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, self.local.port()))
            }
            _ => self.local,
        };
        // Wake the blocked accept() with a connection of our own.
        let _ = TcpStream::connect_timeout(&wake, Duration::from_millis(500));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        // The acceptor held the only sender: the handlers' recv() fails once the queue is empty.
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if self.acceptor.is_some() {
            self.stop_threads();
        }
    }
}

/// A connection waiting for a handler: its socket, when it was accepted (its deadlines count
/// from there) and its place among its address's connections.
struct Accepted {
    stream: TcpStream,
    at: Instant,
    _slot: ConnSlot,
}

fn accept(
    listener: &TcpListener,
    queue: &Sender<Accepted>,
    stop: &AtomicBool,
    per_address: &Arc<ConnLimits>,
    prefix: u8,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                log!(1, "http: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let at = Instant::now();
        let key = stream
            .peer_addr()
            .map(|p| crate::server::addrkey::addr_key(p.ip(), prefix));
        let Ok(Ok(slot)) = key.map(|k| per_address.acquire(k)) else {
            busy(stream, "too many connections from your address\n");
            continue;
        };
        let accepted = Accepted {
            stream,
            at,
            _slot: slot,
        };
        match queue.try_send(accepted) {
            Ok(()) => {}
            Err(TrySendError::Full(a)) => busy(a.stream, "busy, try again\n"),
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Answers 503 without waiting: a fresh socket's send buffer takes this whole, and the
/// acceptor must never block.
fn busy(mut stream: TcpStream, why: &str) {
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(
        &Response::text(503, why)
            .with("Retry-After", "1")
            .to_bytes(false),
    );
}

fn work(queue: &Receiver<Accepted>, ctx: &Context) {
    while let Ok(accepted) = queue.recv() {
        let mut stream = accepted.stream;
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let deadline = accepted.at + CONNECTION_DEADLINE;
        let head_deadline = accepted.at + HEAD_DEADLINE;
        let parsed =
            request::read_head(&mut stream, head_deadline).and_then(|h| request::parse(&h));
        let (response, head_only) = match parsed {
            Ok(req) => {
                // A handler bug must cost one request, not a thread of the pool.
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    routes::handle(ctx, peer.ip().to_canonical(), &req)
                }))
                .unwrap_or_else(|_| {
                    log_error!("http: handler panicked on a request from {peer}");
                    Response::text(500, "internal error\n")
                });
                (r, req.head_only)
            }
            Err(e) => (error_response(&e), false),
        };
        log!(1, "http: {peer} {}", response.status);
        // A peer that did not send its head in time gets its 408 without a close-down.
        let deadline = if response.status == 408 {
            deadline.min(Instant::now() + Duration::from_millis(100))
        } else {
            deadline
        };
        response.send(&mut stream, head_only, deadline);
    }
}

fn error_response(e: &HttpError) -> Response {
    let r = Response::text(e.status(), format!("{e}\n"));
    if *e == HttpError::MethodNotAllowed {
        r.with("Allow", "GET, HEAD")
    } else {
        r
    }
}
