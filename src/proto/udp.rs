//! UDP data datagrams: a big-endian sequence number, then filler. Placeholder: implemented with
//! loss accounting in its own change.

/// Bytes of header at the start of every UDP data datagram.
pub const UDP_HEADER_LEN: usize = 4;
