//! Which peers count as one "address" for per-address limits, budgets and back-off.
//!
//! An IPv4 host has one address, but an IPv6 host is usually given a whole /64 and can pick a
//! new source address for every connection; counting IPv6 peers per address would give such a
//! host unlimited slots and budget. So IPv6 peers are grouped by a prefix (default /64), and
//! IPv4-mapped IPv6 addresses are treated as the IPv4 address they carry.

use std::net::{IpAddr, Ipv6Addr};

/// The default IPv6 prefix length that counts as one peer.
pub(crate) const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The key of `ip` for per-address accounting: IPv4 as is, IPv6 masked to `v6_prefix` bits.
pub(crate) fn addr_key(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u32::from(v6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// How a key is shown in logs, usage pages and the database: `192.0.2.1`, or
/// `2001:db8:1:2::/64` for an IPv6 prefix shorter than 128 bits.
#[cfg(any(test, feature = "pro"))]
pub(crate) fn key_name(ip: IpAddr, v6_prefix: u8) -> String {
    match addr_key(ip, v6_prefix) {
        IpAddr::V6(v6) if v6_prefix < 128 => format!("{v6}/{v6_prefix}"),
        key => key.to_string(),
    }
}

/// Checks a `--ipv6-prefix` value.
pub(crate) fn parse_prefix(n: u8) -> Result<u8, String> {
    if (1..=128).contains(&n) {
        Ok(n)
    } else {
        Err(format!("--ipv6-prefix must be 1 to 128, not {n}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_hosts_of_one_prefix_share_a_key() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(addr_key(a, 64), addr_key(b, 64));
        assert_ne!(addr_key(a, 64), addr_key(c, 64));
        assert_ne!(addr_key(a, 128), addr_key(b, 128));
        assert_eq!(addr_key(a, 48), addr_key(c, 48));
        assert_eq!(key_name(a, 64), "2001:db8:1:2::/64");
        assert_eq!(key_name(a, 128), "2001:db8:1:2:aaaa::1");
    }

    #[test]
    fn v4_and_mapped_v4_are_the_address() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(addr_key(mapped, 64), v4);
        assert_eq!(key_name(mapped, 64), "192.0.2.7");
        assert!(parse_prefix(0).is_err());
        assert!(parse_prefix(129).is_err());
        assert_eq!(parse_prefix(56), Ok(56));
    }
}
