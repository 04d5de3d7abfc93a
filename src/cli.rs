//! The command line: flag definitions (the older Rust btest's names, plus RouterOS and iperf3
//! habits), value parsing, and validation into a client or server configuration.
//!
//! Everything a user can get wrong is caught here and reported as a usage error (exit 2)
//! before any socket is opened. The listening side of a server (`--listen`, `--listen6`, the
//! ports and the session limits) is parsed and validated in [`listening`] for
//! `btest-server-pro` too, so both servers read those flags alike; [`UsageError`] is both
//! binaries' usage error.

use std::fmt;
use std::time::Duration;

use argh::FromArgs;

use crate::proto::{DEFAULT_PORT, DEFAULT_UDP_PORT_BASE, DEFAULT_UDP_TX_SIZE};
use crate::server::addrkey::DEFAULT_IPV6_PREFIX;
use crate::server::{DEFAULT_MAX_HANDSHAKES_PER_IP, DEFAULT_MAX_SESSIONS, ServerConfig};

mod listening;

pub(crate) use listening::{Listen, limit, listen4, listen6, server_config};

/// MikroTik Bandwidth Test (btest) client and server, wire-compatible with RouterOS
/// `/tool bandwidth-test`.
#[derive(FromArgs, Debug, Default)]
#[argh(help_triggers("-h", "--help"))]
pub(crate) struct Args {
    /// run as server
    #[argh(switch, short = 's')]
    pub server: bool,

    /// run as client against HOST (name, IPv4 or IPv6 address, [::1] form accepted)
    #[argh(option, short = 'c', arg_name = "HOST")]
    pub client: Option<String>,

    /// client transmits (server receives); with -r: both directions
    #[argh(switch, short = 't')]
    pub transmit: bool,

    /// client receives (server transmits); with -t: both directions
    #[argh(switch, short = 'r')]
    pub receive: bool,

    /// UDP test instead of TCP
    #[argh(switch, short = 'u')]
    pub udp: bool,

    /// target rate per direction: 500K, 100M, 1.5G or bits/s (1000-based); default unlimited
    #[argh(option, short = 'b', arg_name = "RATE", from_str_fn(parse_rate))]
    pub bandwidth: Option<u64>,

    /// control port (default 2000)
    #[argh(option, short = 'P', arg_name = "PORT", default = "DEFAULT_PORT")]
    pub port: u16,

    /// server IPv4 listen address (default 0.0.0.0); "none" disables IPv4
    #[argh(option, arg_name = "ADDR", from_str_fn(listen4))]
    pub listen: Option<Listen>,

    /// server IPv6 listen address, e.g. "::" (off unless given)
    #[argh(option, arg_name = "ADDR", from_str_fn(listen6))]
    pub listen6: Option<Listen>,

    /// user name (server: the required user; client: credentials)
    #[argh(option, short = 'a', arg_name = "USER")]
    pub authuser: Option<String>,

    /// password (needs -a)
    #[argh(option, short = 'p', arg_name = "PASS")]
    pub authpass: Option<String>,

    /// server offers EC-SRP5 instead of MD5 (a client needs no flag: it follows the server)
    #[argh(switch)]
    pub ecsrp5: bool,

    /// client sends a probe datagram so a NAT in front of it opens for UDP receive
    #[argh(switch, short = 'n')]
    pub nat: bool,

    /// client test length in seconds, 0 = until interrupted (default 0)
    #[argh(option, short = 'd', arg_name = "SECS", from_str_fn(parse_seconds))]
    pub duration: Option<Duration>,

    /// append one result row per test to FILE (header written when new or empty; opened at
    /// start, so an unwritable path is an error before the test); the server writes a row per
    /// session from its own view: host = client IP, port = server port, tx/rx = server's
    #[argh(option, arg_name = "FILE")]
    pub csv: Option<String>,

    /// client: when the test ends, draw it into FILE as a self-contained SVG picture
    /// (throughput, TCP RTT or UDP loss, CPU per second; summary in the title)
    #[argh(option, arg_name = "FILE")]
    pub svg: Option<String>,

    /// no interval lines in text output (the summary and errors are still printed); server:
    /// only session start and end lines (and errors)
    #[argh(switch, short = 'q')]
    pub quiet: bool,

    /// send RFC 3164 events over UDP (default port 514): test start, end with totals,
    /// authentication failures and refusals; a down syslog server never slows a test
    #[argh(option, arg_name = "HOST[:PORT]")]
    pub syslog: Option<String>,

    /// more detail: -v adds TCP rtt/retransmits to interval lines and the summary and
    /// handshake steps on stderr; -vv adds per-thread start/end (passwords are never logged)
    #[argh(switch, short = 'v')]
    pub verbose: u8,

    /// TCP connections in one test, 1..=255 (RouterOS connection-count)
    #[argh(option, arg_name = "N")]
    pub connections: Option<u16>,

    /// rate of the client's transmitter (overrides -b)
    #[argh(option, arg_name = "RATE", from_str_fn(parse_rate))]
    pub local_tx_speed: Option<u64>,

    /// rate of the server's transmitter (overrides -b)
    #[argh(option, arg_name = "RATE", from_str_fn(parse_rate))]
    pub remote_tx_speed: Option<u64>,

    /// UDP packet size in bytes, the whole IP packet as RouterOS counts it (default 1500)
    #[argh(option, arg_name = "BYTES", default = "DEFAULT_UDP_TX_SIZE")]
    pub udp_size: u16,

    /// random payload instead of zeros (RouterOS random-data)
    #[argh(switch)]
    pub random: bool,

    /// first server UDP data port (default 2001)
    #[argh(option, arg_name = "N", default = "DEFAULT_UDP_PORT_BASE")]
    pub udp_port_base: u16,

    /// server: concurrent tests allowed (default 100)
    #[argh(option, arg_name = "N", default = "DEFAULT_MAX_SESSIONS")]
    pub max_sessions: usize,

    /// server: connections one address may hold in the handshake at once (default 32)
    #[argh(option, arg_name = "N", default = "DEFAULT_MAX_HANDSHAKES_PER_IP")]
    pub max_handshakes_per_ip: usize,

    /// server: IPv6 peers within a prefix of this length count as one address for every
    /// per-address limit (default 64)
    #[argh(option, arg_name = "N", default = "DEFAULT_IPV6_PREFIX")]
    pub ipv6_prefix: u8,

    /// output one JSON document on stdout at the end, iperf3-like {"start", "intervals",
    /// "end"}, instead of text lines; errors stay on stderr
    #[argh(switch)]
    pub json: bool,

    /// output one compact JSON object per line on stdout instead of text: "type":"interval"
    /// each second, then one "type":"end" (with "start" and "end"); excludes --json; server:
    /// one object per session interval and per session end, with the session number
    #[argh(switch)]
    pub json_lines: bool,

    /// local time on interval lines
    #[argh(switch)]
    pub timestamps: bool,

    /// one line per connection under each interval
    #[argh(switch)]
    pub per_stream: bool,

    /// print the version and enabled features
    #[argh(switch, short = 'V')]
    pub version: bool,
}

/// A command line that cannot run, in either binary. Always exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsageError(pub String);

impl From<String> for UsageError {
    fn from(msg: String) -> UsageError {
        UsageError(msg)
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError(msg.into())
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    let secs: f64 = value
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("'{value}' is not a number of seconds"))?;
    if !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration '{value}' out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a rate in bit/s: `500K`, `100M`, `1.5G`, `2T`, or a plain number; an optional `bps`
/// or `b` suffix is accepted. Multipliers are 1000-based, as RouterOS and iperf use them.
pub(crate) fn parse_rate(value: &str) -> Result<u64, String> {
    let bad = || format!("invalid rate '{value}': use e.g. 500K, 100M, 1.5G or bits/s");
    let trimmed = value.trim();
    let lower = trimmed.to_ascii_lowercase();
    let body = lower
        .strip_suffix("bps")
        .or_else(|| lower.strip_suffix("bit/s"))
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (number, multiplier) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 1e3),
        Some('m') => (&body[..body.len() - 1], 1e6),
        Some('g') => (&body[..body.len() - 1], 1e9),
        Some('t') => (&body[..body.len() - 1], 1e12),
        _ => (body, 1.0),
    };
    let n: f64 = number.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    let bps = (n * multiplier).round();
    if bps > 1e15 {
        return Err(format!("rate '{value}' is too large"));
    }
    Ok(bps as u64)
}

/// The largest rate the command's u32 speed fields carry; higher rates are clamped to it with a
/// warning rather than wrapped.
pub(crate) const MAX_WIRE_RATE: u64 = u32::MAX as u64;

/// Clamps a rate to what the wire can carry, warning when it had to.
pub(crate) fn wire_rate(bps: u64, what: &str) -> u32 {
    match u32::try_from(bps) {
        Ok(r) => r,
        Err(_) => {
            crate::log_error!(
                "{what} {bps} bit/s exceeds what the protocol can carry; using {MAX_WIRE_RATE} bit/s"
            );
            u32::MAX
        }
    }
}

/// Credentials from `-a` / `-p`; `-a` without `-p` (or the reverse) is an error, never a silent
/// "no authentication".
pub(crate) fn credentials(args: &Args) -> Result<Option<(String, String)>, UsageError> {
    match (&args.authuser, &args.authpass) {
        (Some(u), Some(p)) => {
            if u.is_empty() {
                return Err(usage("-a needs a non-empty user name"));
            }
            if u.as_bytes().contains(&0) || u.len() > 221 {
                return Err(usage("user name must be 1..=221 bytes without NUL"));
            }
            Ok(Some((u.clone(), p.clone())))
        }
        (Some(_), None) => Err(usage(
            "-a USER needs -p PASS (use -p '' for an empty password)",
        )),
        (None, Some(_)) => Err(usage("-p PASS needs -a USER")),
        (None, None) => Ok(None),
    }
}

/// Validates the server-side flags into a configuration (authentication and outputs are the
/// caller's).
pub(crate) fn server_args(args: &Args) -> Result<ServerConfig, UsageError> {
    if args.client.is_some() {
        return Err(usage("-s and -c exclude each other"));
    }
    let listen = [
        args.listen.unwrap_or(Listen::DEFAULT_V4),
        args.listen6.unwrap_or(Listen::DEFAULT_V6),
    ];
    let mut cfg = server_config(listen, args.port, args.udp_port_base)?;
    if args.ecsrp5 && args.authuser.is_none() {
        return Err(usage("--ecsrp5 needs -a USER -p PASS"));
    }
    if args.max_sessions == 0 {
        return Err(usage("--max-sessions must be at least 1"));
    }
    if args.max_handshakes_per_ip == 0 {
        return Err(usage("--max-handshakes-per-ip must be at least 1"));
    }
    limit(
        &mut cfg,
        args.max_sessions,
        args.max_handshakes_per_ip,
        args.ipv6_prefix,
    )?;
    Ok(cfg)
}

/// Rates of both transmitters after `-b` and the per-direction overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rates {
    /// Our (the client's) transmitter, bit/s, 0 = unlimited.
    pub local_bps: u64,
    /// The server's transmitter, bit/s, 0 = unlimited.
    pub remote_bps: u64,
}

/// `-b` applies to every direction the test runs; the RouterOS-style flags override it.
pub(crate) fn rates(args: &Args) -> Rates {
    Rates {
        local_bps: args.local_tx_speed.or(args.bandwidth).unwrap_or(0),
        remote_bps: args.remote_tx_speed.or(args.bandwidth).unwrap_or(0),
    }
}

/// Validates `--udp-size` (the whole IP packet; RouterOS accepts 28..=64000, and our 4-byte
/// sequence header needs at least 32 over IPv4).
pub(crate) fn udp_size(args: &Args) -> Result<u16, UsageError> {
    let size = args.udp_size;
    if !(32..=64000).contains(&size) {
        return Err(usage(format!("--udp-size {size} out of range 32..=64000")));
    }
    Ok(size)
}

/// Validates `--connections`.
pub(crate) fn connections(args: &Args) -> Result<u8, UsageError> {
    match args.connections {
        None => Ok(1),
        Some(n @ 1..=255) => Ok(n as u8),
        Some(n) => Err(usage(format!("--connections {n} out of range 1..=255"))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("100M").unwrap(), 100_000_000);
        assert_eq!(parse_rate("1.5G").unwrap(), 1_500_000_000);
        assert_eq!(parse_rate("500K").unwrap(), 500_000);
        assert_eq!(parse_rate("500k").unwrap(), 500_000);
        assert_eq!(parse_rate("12345").unwrap(), 12345);
        assert_eq!(parse_rate("10Mbps").unwrap(), 10_000_000);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("-5M").is_err());
        assert!(parse_rate("").is_err());
        assert!(parse_rate("M").is_err());
        assert!(parse_rate("NaN").is_err());
    }

    /// `--help` of `T` with its line wrapping undone.
    pub(crate) fn help_of<T: argh::TopLevelCommand>() -> String {
        let help = T::from_args(&["btest"], &["--help"]).err().unwrap().output;
        help.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn help_states_the_defaults_in_force() {
        let help = help_of::<Args>();
        for phrase in [
            format!("--port control port (default {DEFAULT_PORT})"),
            format!("first server UDP data port (default {DEFAULT_UDP_PORT_BASE})"),
            format!("concurrent tests allowed (default {DEFAULT_MAX_SESSIONS})"),
            format!("handshake at once (default {DEFAULT_MAX_HANDSHAKES_PER_IP})"),
            format!("per-address limit (default {DEFAULT_IPV6_PREFIX})"),
            format!("counts it (default {DEFAULT_UDP_TX_SIZE})"),
        ] {
            assert!(help.contains(&phrase), "{phrase:?} not in {help}");
        }
    }

    #[test]
    fn wire_rate_clamps() {
        assert_eq!(wire_rate(5_000_000_000, "rate"), u32::MAX);
        assert_eq!(wire_rate(5, "rate"), 5);
    }

    #[test]
    fn user_without_password_is_usage_error() {
        let args = Args {
            authuser: Some("admin".into()),
            ..Args::default()
        };
        assert!(credentials(&args).is_err());
    }

    #[test]
    fn b_applies_to_both_unless_overridden() {
        let args = Args {
            bandwidth: Some(10_000_000),
            remote_tx_speed: Some(1_000_000),
            ..Args::default()
        };
        assert_eq!(
            rates(&args),
            Rates {
                local_bps: 10_000_000,
                remote_bps: 1_000_000
            }
        );
    }
}
