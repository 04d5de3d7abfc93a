//! Which stream a received datagram belongs to, by its source port.

use std::net::IpAddr;

/// How a receiver assigns datagrams to streams.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Demux {
    /// Every datagram belongs to the one stream (a client socket per stream).
    Single,
    /// Stream `i` sends from port `base + i` (a RouterOS client with connection-count N sends
    /// from N consecutive ports to the server's one port, protocol document 7.5).
    ByPort {
        /// Source port of stream 0.
        base: u16,
    },
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
pub(crate) fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Maps a datagram's source port to a stream.
pub(super) struct Router {
    demux: Demux,
    /// Source port each stream has been seen from (0: none yet).
    ports: Vec<u16>,
}

impl Router {
    pub(super) fn new(demux: Demux, streams: usize) -> Router {
        Router {
            demux,
            ports: vec![0; streams],
        }
    }

    /// The stream a datagram from `port` belongs to. The expected port `base + i` maps to
    /// stream `i`; a port outside that range (a NAT rewrote it) claims the first stream that
    /// has not been heard from, and keeps it; when none is left the datagram is a stranger's.
    pub(super) fn route(&mut self, port: u16) -> Option<usize> {
        let Demux::ByPort { base } = self.demux else {
            return Some(0);
        };
        let n = self.ports.len();
        let offset = usize::from(port.wrapping_sub(base));
        if offset < n {
            if let Some(p) = self.ports.get_mut(offset) {
                *p = port;
            }
            return Some(offset);
        }
        if let Some(i) = self.ports.iter().position(|&p| p == port) {
            return Some(i);
        }
        let free = self.ports.iter().position(|&p| p == 0)?;
        if let Some(p) = self.ports.get_mut(free) {
            *p = port;
        }
        Some(free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_maps_ports_and_claims_rewritten_ones() {
        let mut r = Router::new(Demux::ByPort { base: 3000 }, 3);
        assert_eq!(r.route(3001), Some(1));
        assert_eq!(r.route(40000), Some(0));
        assert_eq!(r.route(40000), Some(0));
        assert_eq!(r.route(40001), Some(2));
        assert_eq!(r.route(40002), None);
        let mut single = Router::new(Demux::Single, 1);
        assert_eq!(single.route(9), Some(0));
    }

    #[test]
    fn mapped_addresses_compare_as_ipv4() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(normalize(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(normalize(v6), v6);
    }
}
