//! The btest wire format, without I/O.
//!
//! One shape for every message: a `*_LEN` constant, `encode(&self) -> [u8; LEN]`, and an
//! associated `decode`. Each file names its layout once in a private `mod field` (offsets and
//! ranges, read and written through `bytes`), so `encode` and `decode` share every offset.
//! What `decode` takes and returns says what the bytes can be:
//!
//! * The command and the request (command or join) come from a peer as "the next 16 bytes",
//!   possibly cut short or malformed: `decode(&[u8]) -> Result<_, CommandError>`, and the server
//!   reports why.
//! * A status message is tried on every 12-byte candidate of a TCP stream, and most are data:
//!   `decode(&[u8; STATUS_LEN]) -> Option` ([`StatusScanner`] does the slicing).
//! * Every 4 bytes are some reply, every 2 some port: `Reply::decode([u8; REPLY_LEN]) -> Reply`
//!   and `udp::decode_port([u8; PORT_LEN]) -> u16` cannot fail.
//!
//! Nothing here panics on peer data; the lints below make the compiler hold us to it.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod bytes;
pub(crate) mod command;
pub mod rate;
pub(crate) mod scan;
pub(crate) mod status;
pub mod udp;

pub use command::{
    COMMAND_LEN, Command, CommandError, Direction, JOIN_MARKER, Payload, Protocol, REPLY_LEN,
    Reply, Request, decode_request, encode_join,
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
