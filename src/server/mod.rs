//! The server: listeners, the accept loop, one thread per connection, the handshake under a
//! deadline, multi-connection joins, and one session per test.
//!
//! What differs between the plain and the pro server is injected through
//! [`Authenticator`](crate::handshake::server::Authenticator); the loop itself exists once.

pub(crate) mod addrkey;
pub(crate) mod backoff;
mod deadline;
mod gauge;
mod guarded;
pub(crate) mod limits;
pub(crate) mod output;
pub mod policy;
mod primary;
pub(crate) mod recorder;
pub(crate) mod registry;
mod session;
pub(crate) mod udp;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use self::backoff::Backoff;
use self::deadline::DeadlineStream;
use self::gauge::Gauge;
use self::limits::{ConnLimits, ConnSlot, LimitRefusal};
use self::policy::{Admission, Refusal, RefusalKind};
use self::registry::Registry;
pub(crate) use self::session::Policed;
use crate::handshake::server::{self as hs, Authenticator};
use crate::proto::Request;
use crate::{log, log_error};

/// Handshake places one address may use beyond its own while its multi-connection test waits
/// for its secondaries: a RouterOS test has up to 255 connections.
const MAX_JOIN_HANDSHAKES: usize = 255;

/// Stack of connection threads, which run the handshake (EC-SRP5 big-number math) and then the
/// session driver.
const CONNECTION_STACK_SIZE: usize = 256 * 1024;

/// Concurrent tests a server allows unless told otherwise (`--max-sessions`).
pub(crate) const DEFAULT_MAX_SESSIONS: usize = 100;

/// Handshake places one address may hold unless told otherwise (`--max-handshakes-per-ip`).
pub(crate) const DEFAULT_MAX_HANDSHAKES_PER_IP: usize = 32;

/// Server settings.
#[derive(Clone)]
pub(crate) struct ServerConfig {
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
    pub(crate) fn new(listen4: Option<IpAddr>, listen6: Option<IpAddr>, port: u16) -> ServerConfig {
        ServerConfig {
            listen4,
            listen6,
            port,
            auth: Arc::new(hs::NoAuth),
            admission: Arc::new(policy::Unlimited),
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_handshakes: 256,
            max_handshakes_per_ip: DEFAULT_MAX_HANDSHAKES_PER_IP,
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
    pub(crate) fn addr_key(&self, ip: IpAddr) -> IpAddr {
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
pub(crate) struct Server {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
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
    pub(crate) fn bind(cfg: ServerConfig) -> io::Result<Server> {
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
    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Accepts connections until a message arrives on `stop` (SIGINT/SIGTERM), then stops
    /// accepting, gives running sessions a few seconds to end, and returns.
    pub(crate) fn serve(self, stop: &Receiver<i32>) -> io::Result<()> {
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
    let shared = shared.clone();
    let spawned = crate::engine::spawn_guarded(
        format!("btest-conn-{peer}"),
        CONNECTION_STACK_SIZE,
        move || handle_connection(&shared, stream, conn, peer, slot),
        move |panicked| {
            if panicked {
                log_error!("{peer}: connection thread panicked; session dropped");
            }
        },
    );
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
            let test = primary::Primary {
                peer,
                cmd,
                conns: vec![conn],
                deadline,
            };
            primary::primary(shared, stream, test, handshake_slot);
        }
    }
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
