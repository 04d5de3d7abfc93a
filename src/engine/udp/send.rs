//! The UDP sender: sequence-numbered datagrams, paced per batch.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use super::batch::TxBatch;
use super::pacing::{batch_for, paced_rate};
use super::socket::is_transient_send_error;
use crate::engine::budget::Flow;
use crate::engine::pacing::Pacer;
use crate::engine::session::StreamEnd;
use crate::engine::state::{StreamCounters, TestState};
use crate::engine::tcp::{classify, payload_buffer};
use crate::proto::Payload;

/// Pause after a send the kernel refused for lack of buffers (`ENOBUFS`, `EAGAIN`): long enough
/// for a queue to drain a little, short against the pacing schedule.
pub(crate) const SEND_BACKOFF: Duration = Duration::from_micros(200);

/// How a UDP sender fills and addresses its datagrams.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UdpSendPlan {
    /// Where every datagram goes.
    pub dest: SocketAddr,
    /// UDP payload bytes per datagram (at least the 4-byte sequence number).
    pub payload_len: usize,
    /// Bytes one datagram counts for: the whole IP packet, as RouterOS counts.
    pub wire_bytes: u64,
    /// Zeros or random bytes.
    pub payload: Payload,
}

/// Sends datagrams until the test stops: sequence numbers from 0, paced per batch at the
/// stream's share of the test's rate, which the 1.5x rule may change while it runs.
pub(crate) fn send_loop(
    sock: UdpSocket,
    state: &TestState,
    counters: &StreamCounters,
    plan: UdpSendPlan,
) -> StreamEnd {
    let len = plan.payload_len.max(crate::proto::udp::UDP_HEADER_LEN);
    let cap = batch_for(0, plan.wire_bytes, len);
    let mut tx = TxBatch::new(payload_buffer(len * cap, plan.payload), len, plan.dest);
    let mut seq: u32 = 0;
    let mut asked = state.tx_rate_bps();
    let mut rate = paced_rate(asked, plan.wire_bytes);
    let mut size = batch_for(rate, plan.wire_bytes, len);
    let mut pacer = Pacer::new(rate, size * len_as_wire(plan.wire_bytes));
    let mut allowance = state.budget.allowance(Flow::Tx);
    while state.running() {
        let now_asked = state.tx_rate_bps();
        if now_asked != asked {
            asked = now_asked;
            rate = paced_rate(asked, plan.wire_bytes);
            size = batch_for(rate, plan.wire_bytes, len);
            pacer.set_rate(rate, size * len_as_wire(plan.wire_bytes));
        }
        pacer.wait();
        let mut done = 0;
        while done < size {
            if !state.running() {
                return StreamEnd::Stopped;
            }
            // Drawn per datagram before the send; what the kernel did not take is kept.
            let mut allowed = 0;
            while allowed < size - done && allowance.take(plan.wire_bytes) {
                allowed += 1;
            }
            if allowed == 0 {
                return StreamEnd::BudgetSpent;
            }
            let sent = tx.send(&sock, seq, allowed);
            let unsent = allowed - sent.as_ref().map_or(0, |n| (*n).min(allowed));
            allowance.give_back(plan.wire_bytes * unsent as u64);
            match sent {
                Ok(n) => {
                    seq = seq.wrapping_add(n as u32);
                    done += n;
                    counters.add_tx(plan.wire_bytes * n as u64);
                    counters.add_tx_packets(n as u64);
                }
                Err(e) if is_transient_send_error(&e) => std::thread::sleep(SEND_BACKOFF),
                Err(e) => return classify(&e, state),
            }
        }
    }
    StreamEnd::Stopped
}

fn len_as_wire(wire_bytes: u64) -> usize {
    usize::try_from(wire_bytes).unwrap_or(usize::MAX)
}
