//! The client side of a UDP test.
//!
//! Stream `i` binds the server's announced port + 256 + `i` on the address our control
//! connection leaves from, sends to the server's one announced port, and receives from any
//! source port (never `connect()`ed: protocol document 7.1). The control connection carries our
//! status every second and the server's back; its end ends the test.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{ClientError, Hooks, Report, Started, drive};
use crate::engine::udp::{
    self as engine_udp, Demux, UdpReceivePlan, UdpSendPlan, UdpTotals, normalize,
};
use crate::engine::{Session, StatusOut, TestState};
use crate::proto::CLIENT_UDP_PORT_OFFSET;
use crate::proto::udp::{UDP_HEADER_LEN, payload_len, wire_bytes};

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
    let dir = cfg.direction;
    let server_ip = normalize(addr.ip());
    let ipv6 = server_ip.is_ipv6();
    let local_ip = control
        .local_addr()
        .map(|a| normalize(a.ip()))
        .map_err(io_context("control connection".into()))?;
    let streams = usize::from(cfg.connections.max(1));
    let server = SocketAddr::new(server_ip, server_port);
    let payload = payload_len(cmd.tx_size, ipv6).unwrap_or(UDP_HEADER_LEN);

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

    if dir.client_rx() && cfg.nat_probe {
        // Opens the return path through a NAT or firewall in front of us: one empty datagram
        // from each stream's port to the server's (protocol document 7.3).
        for sock in &sockets {
            sock.send_to(&[], server)
                .map_err(io_context(format!("NAT probe to {server}")))?;
        }
    }

    let state = TestState::new(if dir.client_tx() { cfg.local_bps } else { 0 });
    let mut session = Session::new(state.clone(), addr.to_string());
    let totals = Arc::new(UdpTotals::default());
    let strangers = Arc::new(AtomicU64::new(0));
    for (i, sock) in sockets.iter().enumerate() {
        session.track_udp(sock).map_err(ClientError::Io)?;
        let counters = state.add_stream(dir.client_tx());
        if dir.client_tx() {
            let plan = UdpSendPlan {
                dest: server,
                payload_len: payload,
                wire_bytes: wire_bytes(payload, ipv6),
                payload: cfg.payload,
            };
            let (s, st, c) = (
                sock.try_clone().map_err(ClientError::Io)?,
                state.clone(),
                counters.clone(),
            );
            session
                .spawn(&format!("udp-tx{i}"), false, move || {
                    engine_udp::send_loop(s, &st, &c, plan)
                })
                .map_err(ClientError::Io)?;
        }
        if dir.client_rx() {
            let plan = UdpReceivePlan {
                peer_ip: server_ip,
                ipv6,
                demux: Demux::Single,
                strangers: strangers.clone(),
                totals: totals.clone(),
            };
            let (s, st) = (sock.try_clone().map_err(ClientError::Io)?, state.clone());
            session
                .spawn(&format!("udp-rx{i}"), false, move || {
                    engine_udp::receive_loop(s, &st, vec![counters], plan)
                })
                .map_err(ClientError::Io)?;
        }
    }
    let reader = control.try_clone().map_err(ClientError::Io)?;
    let st = state.clone();
    session
        .spawn("ctl", true, move || engine_udp::control_reader(reader, &st))
        .map_err(ClientError::Io)?;
    crate::log!(
        1,
        "UDP: server port {server_port}, our ports {}..{}, {payload}-byte payload",
        usize::from(server_port) + usize::from(CLIENT_UDP_PORT_OFFSET),
        usize::from(server_port) + usize::from(CLIENT_UDP_PORT_OFFSET) + streams - 1
    );

    let verbose = crate::log::enabled(1) && dir.client_rx();
    let outcome = drive(cfg, session, StatusOut::Direct(control), hooks, |iv| {
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
    if dir.client_rx() {
        let received = totals.received.load(Ordering::Relaxed);
        let lost = totals.lost.load(Ordering::Relaxed);
        crate::log!(
            1,
            "UDP totals: received {received} lost {lost} ({:.3}%) reordered {} duplicates {} \
             ignored {}",
            loss_pct(lost, received),
            totals.reordered.load(Ordering::Relaxed),
            totals.duplicates.load(Ordering::Relaxed),
            strangers.load(Ordering::Relaxed)
        );
    }
    drop(sockets);
    Ok(Report {
        outcome,
        auth: established.auth,
        connections: streams,
        remote_cpu: state.remote_cpu(),
        peer_received: state.remote_received_total(),
        peer_reports: state.remote_received().1,
    })
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
