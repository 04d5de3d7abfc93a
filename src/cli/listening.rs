//! The listening side of a server's command line, which `btest -s` and `btest-server-pro`
//! share: `--listen` and `--listen6` (parsed by argh through [`listen4`] and [`listen6`]), the
//! ports, and the session limits, validated into a [`ServerConfig`]. Each binary declares the
//! flags itself (argh cannot embed one flag struct in another) with these parsers and the
//! server's default constants, and keeps only its own checks.

use std::net::{IpAddr, Ipv4Addr};

use super::{UsageError, usage};
use crate::server::ServerConfig;
use crate::server::addrkey;

/// The value of `--listen` or `--listen6`: an address of that family, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listen {
    /// `none`: no listener of this family.
    Off,
    /// Listen on this address.
    At(IpAddr),
}

impl Listen {
    /// `--listen` not given: every IPv4 address.
    pub(crate) const DEFAULT_V4: Listen = Listen::At(IpAddr::V4(Ipv4Addr::UNSPECIFIED));

    /// `--listen6` not given: no IPv6 listener.
    pub(crate) const DEFAULT_V6: Listen = Listen::Off;

    /// The address to listen on, if any.
    pub(crate) fn addr(self) -> Option<IpAddr> {
        match self {
            Listen::Off => None,
            Listen::At(addr) => Some(addr),
        }
    }
}

/// Parses `--listen` (argh `from_str_fn`): an IPv4 address or `none`.
pub(crate) fn listen4(value: &str) -> Result<Listen, String> {
    parse_listen(value, false)
}

/// Parses `--listen6` (argh `from_str_fn`): an IPv6 address, `[::1]` form too, or `none`.
pub(crate) fn listen6(value: &str) -> Result<Listen, String> {
    parse_listen(value, true)
}

fn parse_listen(value: &str, v6: bool) -> Result<Listen, String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok(Listen::Off);
    }
    let trimmed = value.trim_start_matches('[').trim_end_matches(']');
    let addr: IpAddr = trimmed
        .parse()
        .map_err(|_| format!("invalid listen address '{value}'"))?;
    if addr.is_ipv6() != v6 {
        let flag = if v6 { "--listen6" } else { "--listen" };
        return Err(format!(
            "{flag} takes an IPv{} address, got '{value}'",
            if v6 { 6 } else { 4 }
        ));
    }
    Ok(Listen::At(addr))
}

/// The listening side both servers share: the listeners of `--listen` and `--listen6`, the
/// control port and the first UDP data port.
pub(crate) fn server_config(
    [listen, listen6]: [Listen; 2],
    port: u16,
    udp_port_base: u16,
) -> Result<ServerConfig, UsageError> {
    let (listen4, listen6) = (listen.addr(), listen6.addr());
    if listen4.is_none() && listen6.is_none() {
        return Err(usage(
            "--listen none without --listen6 leaves nothing to listen on",
        ));
    }
    let mut cfg = ServerConfig::new(listen4, listen6, port);
    cfg.udp_port_base = udp_port_base;
    Ok(cfg)
}

/// The limits both servers share, after each checked its counts its own way: concurrent
/// tests, handshakes per address, and the IPv6 prefix that makes an address (checked here).
pub(crate) fn limit(
    cfg: &mut ServerConfig,
    max_sessions: usize,
    max_handshakes_per_ip: usize,
    ipv6_prefix: u8,
) -> Result<(), UsageError> {
    cfg.ipv6_prefix = addrkey::parse_prefix(ipv6_prefix)?;
    cfg.max_sessions = max_sessions;
    cfg.max_handshakes_per_ip = max_handshakes_per_ip;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_flags_take_their_family_or_none() {
        assert_eq!(listen4("none"), Ok(Listen::Off));
        assert_eq!(listen6("[::1]"), Ok(Listen::At("::1".parse().unwrap())));
        assert_eq!(
            listen4("::1"),
            Err("--listen takes an IPv4 address, got '::1'".into())
        );
        assert!(listen6("bogus").is_err());
        let nothing = server_config([Listen::Off, Listen::DEFAULT_V6], 2000, 2001);
        assert!(nothing.is_err());
    }
}
