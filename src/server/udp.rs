//! UDP tests on the server: data port allocation and the session.
//!
//! A UDP test gets one data port, bound before the OK that announces it (so the announcement
//! never names a port we cannot use), held by an RAII guard for as long as the session runs, and
//! released however the session ends: duration, client gone (control end-of-file or silence),
//! server shutdown, or an error. With `tcp_conn_count = N` the one port serves N streams; each
//! client stream sends from its own port (client port + i) and is told apart by it.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::engine::udp::{self as engine_udp, normalize};
use crate::engine::{Outcome, Setup, UdpLink, start_udp};
use crate::proto::{CLIENT_UDP_PORT_OFFSET, Command};

/// Ports tried before an allocation gives up: ports the OS refuses (another program holds them)
/// are skipped, but not forever.
pub(crate) const MAX_PORT_ATTEMPTS: usize = 1000;

/// Why a UDP test could not get ready.
#[derive(Debug)]
pub enum UdpError {
    /// No port from the base on could be bound.
    NoPort {
        /// First port tried.
        base: u16,
        /// Ports tried.
        attempts: usize,
        /// Why the last bind failed, if one was tried.
        last: Option<io::Error>,
    },
    /// A socket call on the bound port failed.
    Socket {
        /// The port.
        port: u16,
        /// What we were doing.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for UdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UdpError::NoPort {
                base,
                attempts,
                last,
            } => {
                write!(f, "no free UDP port from {base} ({attempts} tried)")?;
                if let Some(e) = last {
                    write!(f, ": last error: {e}")?;
                }
                Ok(())
            }
            UdpError::Socket { port, what, source } => {
                write!(f, "UDP port {port}: {what}: {source}")
            }
        }
    }
}

impl std::error::Error for UdpError {}

impl From<UdpError> for io::Error {
    fn from(e: UdpError) -> io::Error {
        io::Error::other(e.to_string())
    }
}

/// Ports in the pool: from the base upward, as far as allocation has always reached.
pub(crate) const POOL_SPAN: usize = MAX_PORT_ATTEMPTS;

/// The server's pool of UDP data ports, handed out round robin: each allocation starts after
/// the port handed out last, so a port comes back only after the rest of the pool. A port
/// reused at once could receive a stray datagram of the test before it, which would start the
/// new test's sequence tracking at a foreign number and read as reordering.
pub(crate) struct UdpPorts {
    base: u16,
    span: usize,
    pool: Arc<Mutex<Pool>>,
}

#[derive(Default)]
struct Pool {
    in_use: BTreeSet<u16>,
    /// Where the next search starts.
    next: usize,
}

/// A port taken from the pool; gives it back when dropped.
pub(crate) struct PortGuard {
    port: u16,
    pool: Arc<Mutex<Pool>>,
}

impl PortGuard {
    /// The port held.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortGuard {
    fn drop(&mut self) {
        self.pool.lock().in_use.remove(&self.port);
    }
}

impl UdpPorts {
    /// A pool of [`POOL_SPAN`] ports starting at `base`.
    pub(crate) fn new(base: u16) -> UdpPorts {
        UdpPorts::with_span(base, POOL_SPAN)
    }

    /// A pool of `span` ports starting at `base`.
    pub(crate) fn with_span(base: u16, span: usize) -> UdpPorts {
        let base = base.max(1);
        UdpPorts {
            base,
            span: span.max(1),
            pool: Arc::new(Mutex::new(Pool {
                in_use: BTreeSet::new(),
                next: usize::from(base),
            })),
        }
    }

    /// Ports held by running sessions.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> Vec<u16> {
        self.pool.lock().in_use.iter().copied().collect()
    }

    /// Binds the next port of the pool, round robin from the one after the last handed out,
    /// that no session of ours holds and the OS lets us bind on `ip`, such that the client's
    /// ports (ours + 256 .. + 256 + streams) exist too.
    pub(crate) fn allocate(
        &self,
        ip: IpAddr,
        streams: usize,
    ) -> Result<(UdpSocket, PortGuard), UdpError> {
        let max_port = usize::from(u16::MAX)
            .saturating_sub(usize::from(CLIENT_UDP_PORT_OFFSET))
            .saturating_sub(streams.saturating_sub(1));
        let first = usize::from(self.base);
        let end = first.saturating_add(self.span).min(max_port + 1);
        let len = end.saturating_sub(first);
        let mut pool = self.pool.lock();
        let start = pool.next.saturating_sub(first) % len.max(1);
        let mut last = None;
        let mut attempts = 0;
        for i in 0..len {
            if attempts >= MAX_PORT_ATTEMPTS {
                break;
            }
            let p = u16::try_from(first + (start + i) % len).unwrap_or(u16::MAX);
            if pool.in_use.contains(&p) {
                continue;
            }
            attempts += 1;
            match UdpSocket::bind(SocketAddr::new(ip, p)) {
                Ok(sock) => {
                    pool.in_use.insert(p);
                    pool.next = usize::from(p) + 1;
                    return Ok((
                        sock,
                        PortGuard {
                            port: p,
                            pool: self.pool.clone(),
                        },
                    ));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(UdpError::NoPort {
            base: self.base,
            attempts,
            last,
        })
    }
}

/// A UDP session made ready before the OK: its port is allocated and its socket bound.
pub(crate) struct Prepared {
    socket: UdpSocket,
    guard: PortGuard,
}

impl Prepared {
    /// The data port announced to the client.
    pub(crate) fn port(&self) -> u16 {
        self.guard.port()
    }
}

/// Allocates a data port for a new UDP test from `peer`, bound on `local`, the address the
/// client reached us at, so that our datagrams leave from the address the client knows.
pub(crate) fn prepare(
    ports: &UdpPorts,
    cmd: &Command,
    _peer: SocketAddr,
    local: IpAddr,
) -> Result<Prepared, UdpError> {
    let (socket, guard) = ports.allocate(normalize(local), cmd.connection_count())?;
    engine_udp::prepare_socket(&socket).map_err(|source| UdpError::Socket {
        port: guard.port(),
        what: "socket options",
        source,
    })?;
    Ok(Prepared { socket, guard })
}

/// Runs a UDP test over the prepared socket, governed by the control connection: the test
/// ends when the client closes it or goes silent, or when the server shuts down.
pub(super) fn run_session(
    setup: &Setup<'_>,
    prepared: Prepared,
    control: TcpStream,
    peer: SocketAddr,
    policed: super::Policed<'_>,
) -> io::Result<Outcome> {
    let Prepared { socket, guard } = prepared;
    let port = guard.port();
    let link = UdpLink {
        sockets: vec![socket],
        peer_ip: normalize(peer.ip()),
        server_port: port,
    };
    let client_port = link.client_port();
    let (session, stats) = start_udp(setup, link, control)?;
    crate::log!(
        1,
        "{peer}: UDP port {port}, client port {client_port}, {} stream(s), {}-byte payload",
        setup.cmd.connection_count(),
        stats.payload_len
    );
    let outcome = policed.run(session);
    if setup.receives() {
        let c = stats.counts();
        crate::log!(
            0,
            "{peer}: UDP port {port}: received {} lost {} reordered {} duplicates {} \
             strangers {}",
            c.received,
            c.lost,
            c.reordered,
            c.duplicates,
            c.strangers
        );
    }
    // Every thread has been joined and the socket closed: the port can go back to the pool.
    drop(guard);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn ports_are_distinct_and_released() {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        let pool = UdpPorts::new(base);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (_a, ga) = pool.allocate(ip, 1).unwrap();
        let (_b, gb) = pool.allocate(ip, 1).unwrap();
        assert_ne!(ga.port(), gb.port());
        let first = ga.port();
        drop(ga);
        drop(_a);
        assert_eq!(pool.in_use(), vec![gb.port()]);
        let (_c, gc) = pool.allocate(ip, 1).unwrap();
        assert_ne!(gc.port(), first, "a freed port is not reused at once");
        assert_eq!(gc.port(), gb.port() + 1, "round robin");
    }

    #[test]
    fn round_robin_wraps_and_skips_busy_ports() {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        let pool = UdpPorts::with_span(base, 3);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (sa, ga) = pool.allocate(ip, 1).unwrap();
        let (sb, gb) = pool.allocate(ip, 1).unwrap();
        assert_eq!((ga.port(), gb.port()), (base, base + 1));
        drop((sb, gb));
        let (_c, gc) = pool.allocate(ip, 1).unwrap();
        assert_eq!(gc.port(), base + 2);
        // base is still held, base + 1 was freed: the search wraps and skips the busy one.
        let (_d, gd) = pool.allocate(ip, 1).unwrap();
        assert_eq!(gd.port(), base + 1);
        assert!(matches!(pool.allocate(ip, 1), Err(UdpError::NoPort { .. })));
        drop((sa, ga));
        let (_e, ge) = pool.allocate(ip, 1).unwrap();
        assert_eq!(ge.port(), base);
    }

    #[test]
    fn ports_the_os_refuses_are_skipped() {
        let held = UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = held.local_addr().unwrap().port();
        let pool = UdpPorts::new(base);
        let (_s, g) = pool.allocate(IpAddr::V4(Ipv4Addr::LOCALHOST), 1).unwrap();
        assert_ne!(g.port(), base);
    }

    #[test]
    fn client_ports_must_exist() {
        let pool = UdpPorts::new(u16::MAX - 200);
        assert!(matches!(
            pool.allocate(IpAddr::V4(Ipv4Addr::LOCALHOST), 1),
            Err(UdpError::NoPort { .. })
        ));
    }
}
