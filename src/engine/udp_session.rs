//! One start of a UDP test for both ends (see [`super::role`]). The ports follow from the one
//! the server announced: the server sends every stream from that port, to the client's port +
//! 256 + `i`, and receives them all on it, telling streams apart by source port; the client
//! binds port + 256 + `i` for stream `i`, sends to the server's port, and receives each stream
//! on its own socket (protocol document 7.1). The control connection carries both ends'
//! status and its end ends the test.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::role::{Role, Setup};
use super::session::{Session, StatusOut};
use super::state::{StreamCounters, TestState};
use super::udp::{self as engine_udp, Demux, UdpReceivePlan, UdpSendPlan, UdpTotals};
use crate::proto::CLIENT_UDP_PORT_OFFSET;
use crate::proto::udp::{UDP_HEADER_LEN, payload_len, wire_bytes};

/// The sockets and addresses of a UDP test.
pub(crate) struct UdpLink {
    /// Our bound sockets: the client's one per stream, or the server's one for all.
    pub sockets: Vec<UdpSocket>,
    /// The peer's address (IPv4-mapped addresses normalized).
    pub peer_ip: IpAddr,
    /// The data port the server announced in its OK.
    pub server_port: u16,
}

impl UdpLink {
    /// The first of the client's ports: the server's + 256.
    pub(crate) fn client_port(&self) -> u16 {
        self.server_port.saturating_add(CLIENT_UDP_PORT_OFFSET)
    }

    /// Where stream `i` sends.
    fn dest(&self, role: Role, i: usize) -> SocketAddr {
        let port = match role {
            Role::Client => self.server_port,
            Role::Server => self
                .client_port()
                .saturating_add(u16::try_from(i).unwrap_or(u16::MAX)),
        };
        SocketAddr::new(self.peer_ip, port)
    }

    /// The socket stream `i` uses: its own, or the one every stream shares.
    fn socket(&self, i: usize) -> io::Result<UdpSocket> {
        self.sockets
            .get(i)
            .or(self.sockets.first())
            .ok_or_else(|| io::Error::other("a UDP test without a socket"))?
            .try_clone()
    }
}

/// Whole-test datagram counts of a UDP test's receivers, for the end-of-test log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UdpCounts {
    /// Datagrams received (duplicates included).
    pub received: u64,
    /// Datagrams that never arrived.
    pub lost: u64,
    /// Datagrams that arrived after a higher sequence number.
    pub reordered: u64,
    /// Datagrams that arrived twice.
    pub duplicates: u64,
    /// Datagrams from sources that are not the test's peer, ignored.
    pub strangers: u64,
}

/// What a started UDP test keeps beside its session: the payload size and the receivers'
/// whole-test counts.
pub(crate) struct UdpStats {
    /// Payload bytes per datagram (the UDP header's length when the packet size is too small).
    pub payload_len: usize,
    totals: Arc<UdpTotals>,
    strangers: Arc<AtomicU64>,
}

impl UdpStats {
    /// The counts so far (final once the session has ended).
    pub(crate) fn counts(&self) -> UdpCounts {
        UdpCounts {
            received: self.totals.received.load(Ordering::Relaxed),
            lost: self.totals.lost.load(Ordering::Relaxed),
            reordered: self.totals.reordered.load(Ordering::Relaxed),
            duplicates: self.totals.duplicates.load(Ordering::Relaxed),
            strangers: self.strangers.load(Ordering::Relaxed),
        }
    }
}

/// Starts a UDP test over `link`, with `control` as its control connection: a sender per
/// stream when we transmit, receivers when we receive, and the control reader. The returned
/// session is ready for its driver; the sockets close when it ends.
pub(crate) fn start_udp(
    setup: &Setup<'_>,
    link: UdpLink,
    control: TcpStream,
) -> io::Result<(Session, UdpStats)> {
    let ipv6 = link.peer_ip.is_ipv6();
    let stats = UdpStats {
        payload_len: payload_len(setup.cmd.tx_size, ipv6).unwrap_or(UDP_HEADER_LEN),
        totals: Arc::default(),
        strangers: Arc::default(),
    };
    let state = setup.state();
    let reader = control.try_clone()?;
    let mut session = Session::new(
        state.clone(),
        setup.label.clone(),
        StatusOut::Direct(control),
    );
    for sock in &link.sockets {
        session.track_udp(sock)?;
    }
    let counters: Vec<_> = (0..setup.cmd.connection_count())
        .map(|_| state.add_stream(setup.transmits()))
        .collect();
    if setup.transmits() {
        spawn_senders(setup, &link, &mut session, &state, &counters, &stats)?;
    }
    if setup.receives() {
        spawn_receivers(setup.role, &link, &mut session, &state, counters, &stats)?;
    }
    session.spawn("ctl", true, move || {
        engine_udp::control_reader(reader, &state)
    })?;
    Ok((session, stats))
}

fn spawn_senders(
    setup: &Setup<'_>,
    link: &UdpLink,
    session: &mut Session,
    state: &Arc<TestState>,
    counters: &[Arc<StreamCounters>],
    stats: &UdpStats,
) -> io::Result<()> {
    let ipv6 = link.peer_ip.is_ipv6();
    for (i, c) in counters.iter().enumerate() {
        let plan = UdpSendPlan {
            dest: link.dest(setup.role, i),
            payload_len: stats.payload_len,
            wire_bytes: wire_bytes(stats.payload_len, ipv6),
            payload: setup.cmd.payload,
        };
        let (sock, st, c) = (link.socket(i)?, state.clone(), c.clone());
        session.spawn(&format!("udp-tx{i}"), false, move || {
            engine_udp::send_loop(sock, &st, &c, plan)
        })?;
    }
    Ok(())
}

/// The client receives each stream on its own socket; the server receives every stream on
/// its one socket and tells them apart by the client's source port.
fn spawn_receivers(
    role: Role,
    link: &UdpLink,
    session: &mut Session,
    state: &Arc<TestState>,
    counters: Vec<Arc<StreamCounters>>,
    stats: &UdpStats,
) -> io::Result<()> {
    let plan = |demux| UdpReceivePlan {
        peer_ip: link.peer_ip,
        ipv6: link.peer_ip.is_ipv6(),
        demux,
        strangers: stats.strangers.clone(),
        totals: stats.totals.clone(),
    };
    let mut receive = |name: String, i: usize, counters, plan| {
        let (sock, st) = (link.socket(i)?, state.clone());
        session.spawn(&name, false, move || {
            engine_udp::receive_loop(sock, &st, counters, plan)
        })
    };
    match role {
        Role::Client => {
            for (i, c) in counters.into_iter().enumerate() {
                receive(format!("udp-rx{i}"), i, vec![c], plan(Demux::Single))?;
            }
            Ok(())
        }
        Role::Server => {
            let demux = if counters.len() > 1 {
                Demux::ByPort {
                    base: link.client_port(),
                }
            } else {
                Demux::Single
            };
            receive("udp-rx".into(), 0, counters, plan(demux))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn streams_send_to_the_ports_the_role_implies() {
        let link = UdpLink {
            sockets: Vec::new(),
            peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            server_port: 2000,
        };
        assert_eq!(link.client_port(), 2256);
        for i in 0..3 {
            assert_eq!(
                link.dest(Role::Client, i).port(),
                2000,
                "the server's one port"
            );
        }
        assert_eq!(link.dest(Role::Server, 0).port(), 2256);
        assert_eq!(link.dest(Role::Server, 2).port(), 2258, "client port + i");
        assert!(link.socket(0).is_err(), "no socket, no stream");
    }

    #[test]
    fn a_shared_socket_serves_every_stream() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        let link = UdpLink {
            sockets: vec![sock],
            peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            server_port: port,
        };
        for i in 0..4 {
            assert_eq!(link.socket(i).unwrap().local_addr().unwrap().port(), port);
        }
    }
}
