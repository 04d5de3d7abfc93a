//! The btest wire format, without I/O.
//!
//! Every type here is a plain value with an `encode` into a fixed array and a `decode` from a
//! slice that returns an error for malformed input. Nothing here panics on peer data; the
//! lints below make the compiler hold us to it.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod command;
pub mod rate;
pub mod scan;
pub mod status;
pub mod udp;

pub use command::{
    Command, CommandError, Direction, JOIN_MARKER, Payload, Protocol, Reply, Request,
    decode_request, encode_join,
};
pub use scan::StatusScanner;
pub use status::{STATUS_LEN, StatusMessage};

/// Default TCP control port of a btest server.
pub const DEFAULT_PORT: u16 = 2000;
/// Default first UDP data port of a server; the client uses the server's port + 256.
pub const DEFAULT_UDP_PORT_BASE: u16 = 2001;
/// Offset between a server's UDP data port and the client's.
pub const CLIENT_UDP_PORT_OFFSET: u16 = 256;
/// The 4 bytes a server sends first on every TCP connection.
pub const HELLO: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
/// Default TCP write size (the command's `tx_size` for TCP tests).
pub const DEFAULT_TCP_TX_SIZE: u16 = 32768;
/// Default UDP packet size: the whole IP packet, our reading of the command's size (RouterOS
/// counts UDP traffic with headers; see docs/protocol.md 7.2).
pub const DEFAULT_UDP_TX_SIZE: u16 = 1500;
