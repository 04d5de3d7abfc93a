//! The client side of a UDP test.
//!
//! Stream `i` binds the server's announced port + 256 + `i` on the address our control
//! connection leaves from, sends to the server's one announced port, and receives from any
//! source port (never `connect()`ed: protocol document 7.1). The control connection carries our
//! status every second and the server's back; its end ends the test.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use super::{ClientError, Hooks, Report, Started, drive, setup};
use crate::engine::udp::{self as engine_udp, normalize};
use crate::engine::{UdpCounts, UdpLink, start_udp};
use crate::proto::CLIENT_UDP_PORT_OFFSET;

fn io_context(what: String) -> impl FnOnce(io::Error) -> ClientError {
    move |e| ClientError::Io(io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// Runs a UDP test after the handshake on its control connection.
pub(super) fn run(started: Started<'_>, hooks: Hooks<'_>) -> Result<Report, ClientError> {
    let Started {
        cfg,
        cmd,
        control,
        addr,
        established,
    } = started;
    let server_port = established
        .udp_port
        .ok_or_else(|| ClientError::Unsupported("the server announced no UDP port".into()))?;
    let local_ip = control
        .local_addr()
        .map(|a| normalize(a.ip()))
        .map_err(io_context("control connection".into()))?;
    let streams = usize::from(cfg.connections.max(1));
    let link = UdpLink {
        sockets: bind_ports(local_ip, server_port, streams)?,
        peer_ip: normalize(addr.ip()),
        server_port,
    };
    if cfg.direction.client_rx() && cfg.nat_probe {
        nat_probe(&link)?;
    }
    let (session, stats) =
        start_udp(&setup(cfg, &cmd, addr), link, control).map_err(ClientError::Io)?;
    let first_port = usize::from(server_port) + usize::from(CLIENT_UDP_PORT_OFFSET);
    crate::log!(
        1,
        "UDP: server port {server_port}, our ports {first_port}..{}, {}-byte payload",
        first_port + streams - 1,
        stats.payload_len
    );
    let state = session.state().clone();
    let verbose = crate::log::enabled(1) && cfg.direction.client_rx();
    let outcome = drive(cfg, session, hooks, |iv| {
        if verbose {
            let rx = iv.rx_packets();
            let pct = loss_pct(iv.lost, rx);
            crate::log!(
                1,
                "[{:>4}]  RX  packets: {rx}  lost: {} ({pct:.3}%)  reordered: {}  duplicates: {}",
                iv.index,
                iv.lost,
                iv.reordered(),
                iv.duplicates()
            );
        }
    });
    if cfg.direction.client_rx() {
        log_totals(&stats.counts());
    }
    Ok(Report::new(outcome, established.auth, streams, &state))
}

/// Binds stream `i`'s port, the server's + 256 + `i`, on the address our control connection
/// leaves from.
fn bind_ports(
    local_ip: IpAddr,
    server_port: u16,
    streams: usize,
) -> Result<Vec<UdpSocket>, ClientError> {
    let mut sockets = Vec::with_capacity(streams);
    for i in 0..streams {
        let port =
            u16::try_from(usize::from(server_port) + usize::from(CLIENT_UDP_PORT_OFFSET) + i)
                .map_err(|_| {
                    ClientError::Unsupported(format!(
                        "server UDP port {server_port} leaves no room for {streams} client ports"
                    ))
                })?;
        let sock = UdpSocket::bind(SocketAddr::new(local_ip, port))
            .map_err(io_context(format!("cannot bind UDP port {port}")))?;
        engine_udp::prepare_socket(&sock).map_err(io_context(format!("UDP port {port}")))?;
        sockets.push(sock);
    }
    Ok(sockets)
}

/// Opens the return path through a NAT or firewall in front of us: one empty datagram from
/// each stream's port to the server's (protocol document 7.3).
fn nat_probe(link: &UdpLink) -> Result<(), ClientError> {
    let server = SocketAddr::new(link.peer_ip, link.server_port);
    for sock in &link.sockets {
        sock.send_to(&[], server)
            .map_err(io_context(format!("NAT probe to {server}")))?;
    }
    Ok(())
}

fn log_totals(c: &UdpCounts) {
    crate::log!(
        1,
        "UDP totals: received {} lost {} ({:.3}%) reordered {} duplicates {} ignored {}",
        c.received,
        c.lost,
        loss_pct(c.lost, c.received),
        c.reordered,
        c.duplicates,
        c.strangers
    );
}

/// Lost datagrams as a percentage of those that should have arrived.
fn loss_pct(lost: u64, received: u64) -> f64 {
    let expected = lost + received;
    if expected == 0 {
        0.0
    } else {
        lost as f64 * 100.0 / expected as f64
    }
}
