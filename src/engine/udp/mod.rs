//! UDP data loops shared by client and server: a paced sender per stream, a receiver that
//! accounts loss exactly from sequence numbers, and the control-connection reader that governs
//! the whole UDP session.
//!
//! # Addressing
//!
//! Sockets are never `connect()`ed. A connected socket only accepts datagrams from the one
//! (address, port) it is connected to, and the protocol document (section 7.1) reports a client
//! connected to RouterOS's announced port that received nothing. Senders therefore address every
//! datagram explicitly (`sendto` / `sendmmsg` with a destination), and receivers accept any
//! source port, keeping only datagrams from the peer's IP (the control connection's). A stranger
//! flooding the port is counted and ignored rather than polluting the statistics.
//!
//! # Fast path
//!
//! On Linux datagrams go out and come in by the batch (`sendmmsg` / `recvmmsg`), so a system
//! call moves up to [`BATCH`] datagrams. The receiver copies only the first [`RECV_SLOT`] bytes of
//! each datagram (it needs the sequence number and nothing else) and learns the real length from
//! `MSG_TRUNC`. Elsewhere plain `send_to` / `recv_from` do the same work a datagram at a time.
//! Buffers and message headers are built once per stream; nothing is allocated per datagram.
//! Waits are the kernel's (`SO_RCVTIMEO` / `SO_SNDTIMEO`), never a timer per packet.
//!
//! # Layout
//!
//! One file per job: [`send_loop`] (`send.rs`) and its batch size and rate (`pacing.rs`),
//! [`receive_loop`] (`receive.rs`) and its source-port routing (`route.rs`), the control
//! connection's reader (`control.rs`), socket set-up and passing errors (`socket.rs`), and the
//! batches the loops move datagrams in (`batch.rs`, over `sys::mmsg` and `sys::udp_gso`).

mod batch;
mod control;
mod pacing;
mod receive;
mod route;
mod send;
mod socket;

pub(crate) use control::control_reader;
pub(crate) use receive::{UdpReceivePlan, UdpTotals, receive_loop};
pub(crate) use route::{Demux, normalize};
pub(crate) use send::{UdpSendPlan, send_loop};
pub(crate) use socket::{prepare_socket, shutdown};
