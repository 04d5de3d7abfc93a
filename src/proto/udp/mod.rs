//! UDP data datagrams: the sequence header, the announced port, packet sizes; and ([`SeqTracker`])
//! exact loss accounting from the sequence numbers.
//!
//! Every data datagram starts with a 4-byte big-endian sequence number, +1 per datagram; the
//! rest is filler (protocol document, section 7.2). The server's UDP port travels once over TCP
//! as 2 big-endian bytes (section 7.1).
//!
//! # Sizes
//!
//! RouterOS counts UDP traffic as whole IP packets (IP + UDP headers + data), and its size
//! options start at 28, the size of an empty IPv4/UDP packet. We therefore read a packet size
//! (`--udp-size`, the command's `tx_size`) as the IP packet size and derive the UDP payload from
//! it with [`payload_len`]; [`wire_bytes`] goes back the other way for rate accounting.

mod loss;

pub use loss::{LossCounts, MAX_COUNTED_GAP, SEQ_WINDOW, SeqMark, SeqTracker};

/// Where each field of a data datagram sits: only the sequence number, big-endian; the rest is
/// filler.
mod field {
    use std::ops::Range;

    pub(super) const SEQ: Range<usize> = 0..4;
}

/// Bytes of header at the start of every UDP data datagram.
pub const UDP_HEADER_LEN: usize = field::SEQ.end;
/// Length of the server's port announcement (after the OK, on TCP).
pub const PORT_LEN: usize = 2;
/// IPv4 header (20, no options) + UDP header (8).
pub const IPV4_UDP_OVERHEAD: usize = 28;
/// IPv6 header (40, no extension headers) + UDP header (8).
pub const IPV6_UDP_OVERHEAD: usize = 48;

/// Writes `seq` big-endian into the first 4 bytes of `datagram`. Returns `false`, writing
/// nothing, when the buffer is shorter than [`UDP_HEADER_LEN`].
pub fn write_seq(datagram: &mut [u8], seq: u32) -> bool {
    match datagram.get_mut(field::SEQ) {
        Some(head) => {
            head.copy_from_slice(&seq.to_be_bytes());
            true
        }
        None => false,
    }
}

/// The sequence number of a received datagram; `None` when it is shorter than 4 bytes
/// (receivers ignore such datagrams, for example the empty NAT probe).
pub fn read_seq(datagram: &[u8]) -> Option<u32> {
    let head: [u8; UDP_HEADER_LEN] = datagram.get(field::SEQ)?.try_into().ok()?;
    Some(u32::from_be_bytes(head))
}

/// The 2 bytes a server sends on TCP to announce its UDP port.
pub fn encode_port(port: u16) -> [u8; PORT_LEN] {
    port.to_be_bytes()
}

/// Reads the port a server announced.
pub fn decode_port(bytes: [u8; PORT_LEN]) -> u16 {
    u16::from_be_bytes(bytes)
}

fn overhead(ipv6: bool) -> usize {
    if ipv6 {
        IPV6_UDP_OVERHEAD
    } else {
        IPV4_UDP_OVERHEAD
    }
}

/// UDP payload length for an IP packet of `packet_size` bytes; `None` when the packet is too
/// small to carry even the 4-byte sequence number.
pub fn payload_len(packet_size: u16, ipv6: bool) -> Option<usize> {
    let payload = usize::from(packet_size).checked_sub(overhead(ipv6))?;
    (payload >= UDP_HEADER_LEN).then_some(payload)
}

/// Bytes a datagram with `payload_len` bytes of UDP payload occupies as an IP packet, which is
/// what RouterOS counts.
pub fn wire_bytes(payload_len: usize, ipv6: bool) -> u64 {
    u64::try_from(payload_len.saturating_add(overhead(ipv6))).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_port_helpers() {
        let mut d = [0xaau8; 8];
        assert!(write_seq(&mut d, 0x0102_0304));
        assert_eq!(d, [1, 2, 3, 4, 0xaa, 0xaa, 0xaa, 0xaa]);
        assert_eq!(read_seq(&d), Some(0x0102_0304));
        let mut short = [0u8; 3];
        assert!(!write_seq(&mut short, 7));
        assert_eq!(short, [0, 0, 0]);
        assert_eq!(read_seq(&short), None);
        assert_eq!(read_seq(&[]), None);
        assert_eq!(encode_port(2001), [0x07, 0xd1]);
        assert_eq!(decode_port([0x08, 0xfc]), 2300);
    }

    #[test]
    fn sizes() {
        assert_eq!(payload_len(1500, false), Some(1472));
        assert_eq!(payload_len(1500, true), Some(1452));
        assert_eq!(payload_len(32, false), Some(4));
        assert_eq!(payload_len(31, false), None);
        assert_eq!(payload_len(28, false), None);
        assert_eq!(payload_len(0, false), None);
        assert_eq!(payload_len(51, true), None);
        assert_eq!(payload_len(52, true), Some(4));
        assert_eq!(wire_bytes(1472, false), 1500);
        assert_eq!(wire_bytes(1452, true), 1500);
    }
}
