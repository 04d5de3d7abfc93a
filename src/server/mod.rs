//! The server: listeners, the accept loop, one thread per connection, the handshake under a
//! deadline, multi-connection joins, and one session per test.
//!
//! What differs between the plain and the pro server is injected through
//! [`Authenticator`](crate::handshake::server::Authenticator); the loop itself exists once.
#![forbid(unsafe_code)]

pub mod addrkey;
pub mod backoff;
mod deadline;
mod gauge;
mod guarded;
pub mod limits;
pub mod output;
pub mod policy;
pub mod recorder;
pub mod registry;
mod session;
pub mod udp;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use self::backoff::Backoff;
use self::deadline::DeadlineStream;
use self::gauge::Gauge;
use self::guarded::Guarded;
use self::limits::{ConnLimits, ConnSlot, LimitRefusal};
use self::policy::{Admission, AdmissionRequest, Refusal, RefusalKind, SessionSummary};
use self::registry::Registry;
pub use self::session::Policed;
use self::session::{log_session_end, run_tcp_session, user_suffix};
use crate::handshake::HandshakeError;
use crate::handshake::server::{self as hs, Authenticator};
use crate::proto::{Command, Protocol, Request};
use crate::{log, log_error};

/// Handshake places one address may use beyond its own while its multi-connection test waits
/// for its secondaries: a RouterOS test has up to 255 connections.
const MAX_JOIN_HANDSHAKES: usize = 255;

/// Stack of connection threads, which run the handshake (EC-SRP5 big-number math) and then the
/// session driver.
const CONNECTION_STACK_SIZE: usize = 256 * 1024;

/// Server settings.
#[derive(Clone)]
pub struct ServerConfig {
    /// IPv4 listen address (`None`: no IPv4 listener).
    pub listen4: Option<IpAddr>,
    /// IPv6 listen address (`None`: no IPv6 listener).
    pub listen6: Option<IpAddr>,
    /// Control port.
    pub port: u16,
    /// Who may run tests.
    pub auth: Arc<dyn Authenticator>,
    /// What they may do: budgets, limits, records.
    pub admission: Arc<dyn Admission>,
    /// Concurrent tests allowed.
    pub max_sessions: usize,
    /// Connections allowed in the handshake phase at once; idle sockets beyond it are closed
    /// so they cannot pin threads.
    pub max_handshakes: usize,
    /// Connections in the handshake phase from one address (IPv6: one prefix), so that one
    /// host cannot take every handshake place.
    pub max_handshakes_per_ip: usize,
    /// IPv6 peers within this prefix length count as one address for every per-address
    /// limit (see [`addrkey`]).
    pub ipv6_prefix: u8,
    /// Time a connection has to send its 16-byte command or join after our HELLO: a real
    /// client sends it at once, so a silent peer is dropped long before `handshake_timeout`.
    pub command_timeout: Duration,
    /// TCP connections held at once, all peers together (each costs at most three threads).
    pub max_connections: usize,
    /// TCP connections held at once from one address: enough for a RouterOS test with the
    /// largest connection count, low enough that one address cannot take the whole server.
    pub max_connections_per_ip: usize,
    /// Time a connection has to finish hello, command and authentication.
    pub handshake_timeout: Duration,
    /// Time a multi-connection session waits for its secondary connections.
    pub join_wait: Duration,
    /// Time running sessions get to end after a shutdown request.
    pub drain_timeout: Duration,
    /// First UDP data port; each concurrent UDP session takes the next free one.
    pub udp_port_base: u16,
}

impl ServerConfig {
    /// Defaults for everything but the listen addresses and port.
    pub fn new(listen4: Option<IpAddr>, listen6: Option<IpAddr>, port: u16) -> ServerConfig {
        ServerConfig {
            listen4,
            listen6,
            port,
            auth: Arc::new(hs::NoAuth),
            admission: Arc::new(policy::Unlimited),
            max_sessions: 100,
            max_handshakes: 256,
            max_handshakes_per_ip: 32,
            ipv6_prefix: addrkey::DEFAULT_IPV6_PREFIX,
            command_timeout: Duration::from_secs(3),
            max_connections: 2000,
            max_connections_per_ip: 300,
            handshake_timeout: Duration::from_secs(10),
            join_wait: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(3),
            udp_port_base: crate::proto::DEFAULT_UDP_PORT_BASE,
        }
    }

    /// The per-address key of `ip` (IPv6 grouped by [`ServerConfig::ipv6_prefix`]).
    pub fn addr_key(&self, ip: IpAddr) -> IpAddr {
        addrkey::addr_key(ip, self.ipv6_prefix)
    }
}

struct Shared {
    cfg: ServerConfig,
    registry: Registry<(TcpStream, ConnSlot)>,
    limits: Arc<ConnLimits>,
    sessions: Arc<Gauge>,
    handshakes: Arc<ConnLimits>,
    /// Handshake places of secondary connections, used when their address is out of its own:
    /// RouterOS opens all of a test's connections at once, up to 255 (see `on_accept`).
    join_handshakes: Arc<ConnLimits>,
    /// Addresses whose multi-connection test waits for its secondaries now.
    awaiting_joins: Arc<ConnLimits>,
    backoff: Backoff,
    shutting_down: AtomicBool,
    /// Dropped at shutdown: every running session's driver sees the disconnection and stops.
    shutdown_tx: Mutex<Option<Sender<()>>>,
    shutdown_rx: Receiver<()>,
    sessions_total: AtomicUsize,
    udp_ports: udp::UdpPorts,
    cpu: Arc<crate::sys::cpu::SharedCpu>,
}

/// A bound server, ready to serve.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
}

/// A server serving on background threads (tests, benches).
pub struct ServerHandle {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    stop_tx: Sender<i32>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl ServerHandle {
    /// The addresses the server listens on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Sessions running now.
    pub fn active_sessions(&self) -> usize {
        self.shared.sessions.get()
    }

    /// Stops the server and waits for it.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        let _ = self.stop_tx.send(libc::SIGTERM);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn unspecified_to_loopback(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// The wildcard address of `addr`'s family.
fn unspecified_like(addr: SocketAddr) -> IpAddr {
    match addr {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

impl Server {
    /// Binds the configured listeners.
    pub fn bind(cfg: ServerConfig) -> io::Result<Server> {
        crate::sys::alloc::tune_for_server();
        if let Some(limit) = limits::raise_open_files_limit() {
            log!(2, "open files limit: {limit}");
        }
        let udp_port_base = cfg.udp_port_base;
        let limits = ConnLimits::new(cfg.max_connections, cfg.max_connections_per_ip);
        let handshakes = ConnLimits::new(cfg.max_handshakes, cfg.max_handshakes_per_ip);
        let cfg_max_handshakes = cfg.max_handshakes;
        let mut listeners = Vec::new();
        for ip in [cfg.listen4, cfg.listen6].into_iter().flatten() {
            let addr = SocketAddr::new(ip, cfg.port);
            let listener = TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            listeners.push(listener);
        }
        let (shutdown_tx, shutdown_rx) = crossbeam_channel::bounded(0);
        let cpu = crate::sys::cpu::SharedCpu::start(shutdown_rx.clone());
        Ok(Server {
            shared: Arc::new(Shared {
                cfg,
                registry: Registry::default(),
                limits,
                sessions: Arc::default(),
                handshakes,
                join_handshakes: ConnLimits::new(cfg_max_handshakes, MAX_JOIN_HANDSHAKES),
                awaiting_joins: ConnLimits::new(usize::MAX, usize::MAX),
                backoff: Backoff::default(),
                shutting_down: AtomicBool::new(false),
                shutdown_tx: Mutex::new(Some(shutdown_tx)),
                shutdown_rx,
                sessions_total: AtomicUsize::new(0),
                udp_ports: udp::UdpPorts::new(udp_port_base),
                cpu,
            }),
            listeners,
        })
    }

    /// The bound addresses (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves on background threads until the handle is shut down or dropped.
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let addrs = self.local_addrs();
        let shared = self.shared.clone();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("btest-server".into())
            .spawn(move || self.serve(&stop_rx))?;
        Ok(ServerHandle {
            shared,
            addrs,
            stop_tx,
            thread: Some(thread),
        })
    }

    /// Accepts connections until a message arrives on `stop` (SIGINT/SIGTERM), then stops
    /// accepting, gives running sessions a few seconds to end, and returns.
    pub fn serve(self, stop: &Receiver<i32>) -> io::Result<()> {
        let addrs = self.local_addrs();
        for addr in &addrs {
            log!(0, "listening on {addr}");
        }
        let mut acceptors = Vec::new();
        for listener in self.listeners {
            let shared = self.shared.clone();
            let name = format!("btest-accept-{}", listener.local_addr()?);
            acceptors.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || accept_loop(&shared, &listener))?,
            );
        }
        let _ = stop.recv();
        log!(0, "shutting down: no new tests; waiting for running ones");
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        for addr in &addrs {
            // Wake each blocked accept() with a connection of our own.
            let _ = TcpStream::connect_timeout(
                &unspecified_to_loopback(*addr),
                Duration::from_millis(200),
            );
        }
        drop(self.shared.shutdown_tx.lock().take());
        for a in acceptors {
            let _ = a.join();
        }
        let deadline = Instant::now() + self.shared.cfg.drain_timeout;
        if !self.shared.sessions.wait_zero(deadline) {
            log_error!(
                "{} session(s) still running at shutdown",
                self.shared.sessions.get()
            );
        }
        Ok(())
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = listener.accept();
        if shared.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                on_accept(shared, stream, peer);
            }
            Err(e) => {
                // Out of file descriptors and the like: log, wait a little, keep serving.
                log_error!("accept failed: {e}; retrying in {} ms", backoff.as_millis());
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn on_accept(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let key = shared.cfg.addr_key(peer.ip());
    // A blocked guesser is closed without a word or a log line (its block was logged once).
    if shared.backoff.addr_blocked(key).is_some() {
        return;
    }
    let conn = match shared.limits.acquire(key) {
        Ok(conn) => conn,
        Err(refusal) => {
            refuse(shared, peer, RefusalKind::Other, refusal.to_string());
            return;
        }
    };
    // The secondaries of a multi-connection test come in a burst from the primary's address:
    // while that address has a test waiting for them, they may use places of their own.
    let slot = shared.handshakes.acquire(key).or_else(|e| match e {
        LimitRefusal::PerIp(_) if shared.awaiting_joins.held_by(key) > 0 => {
            shared.join_handshakes.acquire(key)
        }
        e => Err(e),
    });
    let slot = match slot {
        Ok(slot) => slot,
        Err(LimitRefusal::Total(n)) => {
            let detail = format!("{n} connections already in handshake");
            refuse(shared, peer, RefusalKind::Other, detail);
            return;
        }
        Err(LimitRefusal::PerIp(n)) => {
            let detail =
                format!("address has {n} connections in handshake (--max-handshakes-per-ip)");
            refuse(shared, peer, RefusalKind::PerIpLimit, detail);
            return;
        }
    };
    let shared2 = shared.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("btest-conn-{peer}"))
        .stack_size(CONNECTION_STACK_SIZE)
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                handle_connection(&shared2, stream, conn, peer, slot)
            }));
            if result.is_err() {
                log_error!("{peer}: connection thread panicked; session dropped");
            }
            crate::sys::alloc::release_unused_stack();
        });
    if let Err(e) = spawned {
        log_error!("{peer}: cannot start a thread: {e}");
    }
}

fn handle_connection(
    shared: &Arc<Shared>,
    stream: TcpStream,
    conn: ConnSlot,
    peer: SocketAddr,
    handshake_slot: ConnSlot,
) {
    let _ = stream.set_nodelay(true);
    let now = Instant::now();
    let deadline = now + shared.cfg.handshake_timeout;
    let command_deadline = (now + shared.cfg.command_timeout).min(deadline);
    let request =
        match hs::read_request_with(&mut DeadlineStream::new(&stream, command_deadline), &|t| {
            shared.registry.is_waiting(t)
        }) {
            Ok(r) => r,
            Err(e) => {
                log!(0, "{peer}: dropped: {e}");
                return;
            }
        };
    let mut io = DeadlineStream::new(&stream, deadline);
    match request {
        Request::Join { token } => match shared.registry.reserve(token, peer.ip()) {
            Ok(slot) => {
                if let Err(e) = hs::accept(&mut io, token, None) {
                    log!(0, "{peer}: join dropped: {e}");
                    return;
                }
                log!(2, "{peer}: joined session {token:#06x}");
                slot.deliver((stream, conn));
            }
            Err(refusal) => refuse(shared, peer, RefusalKind::Other, refusal.to_string()),
        },
        Request::Command(cmd) => {
            let conns = vec![conn];
            primary(shared, stream, conns, peer, cmd, deadline, handshake_slot)
        }
    }
}

/// Runs a new test on its primary connection: admission, authentication, the OK, the wait
/// for secondary connections, the session. `conns` holds the connection slots until it ends.
fn primary(
    shared: &Arc<Shared>,
    stream: TcpStream,
    mut conns: Vec<ConnSlot>,
    peer: SocketAddr,
    cmd: Command,
    deadline: Instant,
    handshake_slot: ConnSlot,
) {
    let mut io = DeadlineStream::new(&stream, deadline);
    if shared.shutting_down.load(Ordering::SeqCst) {
        refuse(
            shared,
            peer,
            RefusalKind::Other,
            "server is shutting down".into(),
        );
        return;
    }
    let key = shared.cfg.addr_key(peer.ip());
    let guarded = Guarded::new(shared.cfg.auth.as_ref(), &shared.backoff);
    let who = match hs::authenticate(&mut io, &guarded, &mut fill_random) {
        Ok(who) => who,
        Err(e) => {
            log!(0, "{peer}: refused: {e}");
            if let HandshakeError::AuthRejected { method, user } = &e {
                shared.backoff.failed(key, user);
                shared.cfg.admission.auth_failed(peer, *method, user);
            }
            return;
        }
    };
    // Taken only now, so peers that never authenticate cannot hold the session places.
    let Some(session_slot) = shared.sessions.try_enter(shared.cfg.max_sessions) else {
        let detail = format!("max-sessions ({}) reached", shared.cfg.max_sessions);
        refuse(shared, peer, RefusalKind::MaxSessions, detail);
        return;
    };
    let request = AdmissionRequest {
        peer,
        method: who.method,
        user: &who.user,
        cmd: &cmd,
    };
    let ticket = match shared.cfg.admission.admit(&request) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            log!(0, "{peer}: refused: {refusal}");
            return;
        }
    };

    let joins = if cmd.is_multi_connection() {
        let secondaries = cmd.connection_count() - 1;
        Some(
            shared
                .registry
                .register(secondaries, peer.ip(), &mut fill_random),
        )
    } else {
        None
    };
    let awaiting = joins
        .as_ref()
        .and_then(|_| shared.awaiting_joins.acquire(key).ok());
    let token = joins.as_ref().map_or(0, |(t, _)| *t);
    let udp = if cmd.protocol == Protocol::Udp {
        let local = stream
            .local_addr()
            .map_or_else(|_| unspecified_like(peer), |a| a.ip());
        match udp::prepare(&shared.udp_ports, &cmd, peer, local) {
            Ok(prepared) => Some(prepared),
            Err(e) => {
                refuse(shared, peer, RefusalKind::Other, e.to_string());
                return;
            }
        }
    } else {
        None
    };
    let udp_port = udp.as_ref().map(|u| u.port());
    if let Err(e) = hs::accept(&mut io, token, udp_port) {
        log!(0, "{peer}: dropped: {e}");
        if token != 0 {
            shared.registry.remove(token);
        }
        return;
    }
    drop(handshake_slot);

    let mut streams = vec![stream];
    if let Some((token, joins)) = joins {
        let wait_until = Instant::now() + shared.cfg.join_wait;
        while streams.len() < cmd.connection_count() {
            match joins.recv_deadline(wait_until) {
                Ok((s, conn)) => {
                    streams.push(s);
                    conns.push(conn);
                }
                Err(_) => break,
            }
        }
        shared.registry.remove(token);
        drop(awaiting);
        if streams.len() < cmd.connection_count() {
            log!(
                0,
                "{peer}: session {token:#06x}: {} of {} connections joined; starting with those",
                streams.len(),
                cmd.connection_count()
            );
        }
    }

    let id = shared.sessions_total.fetch_add(1, Ordering::Relaxed) + 1;
    log!(
        log::SESSION,
        "{peer}: session {id} start: {} {} conns={} auth={}{}",
        cmd.protocol.name(),
        cmd.direction.client_name(),
        streams.len(),
        who.method.name(),
        user_suffix(&who)
    );
    let connections = streams.len();
    let mut ticket = ticket;
    ticket.started(id);
    let outcome = match udp {
        Some(prepared) => udp::run_session(
            prepared,
            &cmd,
            stream_of(streams),
            peer,
            Policed::new(shared, ticket.as_mut()),
        ),
        None => run_tcp_session(shared, &cmd, streams, peer, ticket.as_mut()),
    };
    match outcome {
        Ok(outcome) => {
            log_session_end(id, peer, &cmd, connections, &who, &outcome);
            ticket.finish(&SessionSummary {
                connections,
                outcome: &outcome,
            });
        }
        Err(e) => log_error!("{peer}: session {id} could not start: {e}"),
    }
    drop(session_slot);
}

/// The control connection of a UDP test (the only connection it has).
fn stream_of(mut streams: Vec<TcpStream>) -> TcpStream {
    streams.swap_remove(0)
}

fn refuse(shared: &Shared, peer: SocketAddr, kind: RefusalKind, detail: String) {
    log!(0, "{peer}: refused: {detail}");
    shared
        .cfg
        .admission
        .refused(peer, &Refusal { kind, detail });
}

fn fill_random(buf: &mut [u8]) {
    crate::sys::random::fill_or_abort(buf);
}
