//! The UDP receiver: datagrams counted as whole IP packets, and loss, reordering and
//! duplicates per stream from their sequence numbers.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::batch::RxBatch;
use super::route::{Demux, Router, normalize};
use super::socket::is_passing;
use crate::engine::budget::{Allowance, Flow};
use crate::engine::rx_loss::{RxGroup, RxStream};
use crate::engine::session::StreamEnd;
use crate::engine::state::{StreamCounters, TestState};
use crate::engine::tcp::classify;
use crate::proto::udp::read_seq;

/// What a receiver accepts and how it counts.
#[derive(Clone, Debug)]
pub(crate) struct UdpReceivePlan {
    /// Only datagrams from this address are test data.
    pub peer_ip: IpAddr,
    /// Count received datagrams as IPv6 packets (48 bytes of headers) rather than IPv4 (28).
    pub ipv6: bool,
    /// Stream assignment.
    pub demux: Demux,
    /// Datagrams from other addresses, or from ports no stream can claim, are counted here.
    pub strangers: Arc<AtomicU64>,
    /// Loss totals of all streams, for the end-of-session log.
    pub totals: Arc<UdpTotals>,
}

/// Whole-test datagram counts, kept beside the per-interval counters for logs.
#[derive(Debug, Default)]
pub(crate) struct UdpTotals {
    /// Datagrams received (duplicates included).
    pub received: AtomicU64,
    /// Datagrams that never arrived.
    pub lost: AtomicU64,
    /// Datagrams that arrived after a higher sequence number.
    pub reordered: AtomicU64,
    /// Datagrams that arrived twice.
    pub duplicates: AtomicU64,
}

/// Receives datagrams until the test stops, counting bytes as whole IP packets and loss,
/// reordering and duplicates per stream from the sequence numbers.
///
/// A silent data path does not end the test: the control connection decides whether the peer
/// is still there (a receive test through a broken path should report 100 % loss, not stop).
pub(crate) fn receive_loop(
    sock: UdpSocket,
    state: &TestState,
    streams: Vec<Arc<StreamCounters>>,
    plan: UdpReceivePlan,
) -> StreamEnd {
    if streams.is_empty() {
        return StreamEnd::Stopped;
    }
    let mut sorter = Sorter {
        router: Router::new(plan.demux, streams.len()),
        peer_ip: normalize(plan.peer_ip),
        overhead: crate::proto::udp::wire_bytes(0, plan.ipv6),
        allowance: state.budget.allowance(Flow::Rx),
        strangers: 0,
        receiving: false,
    };
    // Shared with the session driver, which settles each interval's loss (see rx_loss).
    let group = RxGroup::new(streams, plan.totals.clone());
    state.add_interval_loss(group.clone());
    let mut rx = RxBatch::new();
    let end = loop {
        if !state.running() {
            break StreamEnd::Stopped;
        }
        match rx.recv(&sock) {
            Ok(count) => {
                if let Some(end) = sorter.take_batch(&rx, count, &group, state) {
                    break end;
                }
            }
            Err(e) if is_passing(&e) => {}
            Err(e) => break classify(&e, state),
        }
    };
    // Every number still missing up to the highest seen is lost now: the test is over.
    group.finish();
    plan.strangers
        .fetch_add(sorter.strangers, Ordering::Relaxed);
    end
}

/// Sorts received datagrams into their streams' counts, or aside as strangers'.
struct Sorter {
    router: Router,
    /// The peer's address, normalized: only its datagrams are data.
    peer_ip: IpAddr,
    /// Header bytes a datagram counts for beyond its UDP payload.
    overhead: u64,
    allowance: Allowance,
    /// Datagrams from elsewhere, added to the shared count when the loop ends.
    strangers: u64,
    /// Data has arrived (the receive clock has started).
    receiving: bool,
}

impl Sorter {
    /// Counts the `count` datagrams of the last receive; `Some` when the budget ran out (the
    /// rest of the batch is dropped uncounted).
    fn take_batch(
        &mut self,
        rx: &RxBatch,
        count: usize,
        group: &RxGroup,
        state: &TestState,
    ) -> Option<StreamEnd> {
        let mut streams = group.lock();
        let mut spent = false;
        for k in 0..count {
            let Some((src, len, head)) = rx.get(k) else {
                continue;
            };
            let Some((s, seq)) = self.data_stream(&mut streams, src, head) else {
                continue;
            };
            // Counted only if drawn.
            let bytes = len as u64 + self.overhead;
            if !self.allowance.take(bytes) {
                spent = true;
                break;
            }
            s.tracker.record(seq);
            s.bytes += bytes;
            s.packets += 1;
            self.receiving = true;
        }
        for s in streams.iter_mut() {
            if s.packets > 0 {
                s.flush(group.totals());
                // The peer's data is a sign of life for the control reader.
                state.note_data();
            }
        }
        drop(streams);
        if self.receiving {
            // The receive clock starts with the first data datagram.
            state.note_rx_start();
        }
        spent.then_some(StreamEnd::BudgetSpent)
    }

    /// The stream a datagram belongs to and its sequence number; `None` for a datagram that is
    /// not data (too short to carry a sequence number: a NAT probe or a neighbour-discovery
    /// primer) or not the peer's (counted as a stranger's).
    fn data_stream<'s>(
        &mut self,
        streams: &'s mut [RxStream],
        src: SocketAddr,
        head: &[u8],
    ) -> Option<(&'s mut RxStream, u32)> {
        let seq = read_seq(head)?;
        if normalize(src.ip()) != self.peer_ip {
            self.strangers += 1;
            return None;
        }
        let stream = self
            .router
            .route(src.port())
            .and_then(|i| streams.get_mut(i));
        if stream.is_none() {
            self.strangers += 1;
        }
        Some((stream?, seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Crafted sequence numbers through real loopback sockets: loss, reordering, duplicates
    /// and strangers land in the right counters, and bytes count as whole IPv4 packets.
    #[test]
    fn receiver_accounts_exactly() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        super::super::prepare_socket(&rx).unwrap();
        let to = rx.local_addr().unwrap();
        let state = TestState::new(0);
        let counters = state.add_stream(false);
        let totals = Arc::new(UdpTotals::default());
        let strangers = Arc::new(AtomicU64::new(0));
        let plan = UdpReceivePlan {
            peer_ip: "127.0.0.1".parse().unwrap(),
            ipv6: false,
            demux: Demux::Single,
            strangers: strangers.clone(),
            totals: totals.clone(),
        };
        let (st, c) = (state.clone(), counters.clone());
        let sock = rx.try_clone().unwrap();
        let thread = std::thread::spawn(move || receive_loop(sock, &st, vec![c], plan));
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut d = [0u8; 100];
        for seq in [0u32, 1, 3, 2, 2, 5] {
            crate::proto::udp::write_seq(&mut d, seq);
            tx.send_to(&d, to).unwrap();
        }
        tx.send_to(&[], to).unwrap(); // a NAT probe: not data
        std::thread::sleep(Duration::from_millis(200));
        state.stop();
        let _ = thread.join();
        let snap = counters.take();
        assert_eq!(snap.rx_packets, 6);
        assert_eq!(snap.rx_bytes, 6 * 128);
        assert_eq!((snap.lost, snap.reordered, snap.duplicates), (1, 1, 1));
        assert_eq!(totals.received.load(Ordering::Relaxed), 6);
        assert_eq!(strangers.load(Ordering::Relaxed), 0);
    }
}
