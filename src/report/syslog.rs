//! `--syslog HOST[:PORT]`: test start/end and authentication failures sent as RFC 3164
//! messages over UDP, the form every syslog daemon and RouterOS's own logging accept.
//!
//! Logging must never cost throughput or stall a test: the target is resolved once, the
//! socket is non-blocking, and every send error (daemon down, ICMP refusals, full buffers) is
//! dropped silently.

use crate::sys::clock;
use std::fmt::{self, Write as _};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};

/// The port syslog daemons listen on.
pub(crate) const DEFAULT_PORT: u16 = 514;

/// RFC 3164 caps a datagram at 1024 bytes.
const MAX_DATAGRAM: usize = 1024;

/// Facility "daemon" (3): btest runs as a long-lived service on the server side.
const FACILITY_DAEMON: u8 = 3;

/// How serious an event is; the numbers are the RFC 3164 / RFC 5424 severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Severity {
    /// A test failed.
    Error = 3,
    /// Authentication failed or a limit refused a client.
    Warning = 4,
    /// A test started or ended normally.
    Notice = 5,
}

/// Why the syslog target cannot be used; reported at start-up.
#[derive(Debug)]
pub(crate) enum SyslogError {
    /// Not `HOST`, `HOST:PORT`, `[V6]:PORT` or a bare IPv6 address.
    BadTarget {
        /// What the user gave.
        target: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Name resolution failed or returned no address.
    Resolve {
        /// What the user gave.
        target: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The local UDP socket could not be created.
    Socket {
        /// The target it was for.
        target: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for SyslogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogError::BadTarget { target, reason } => {
                write!(f, "invalid syslog target {target:?}: {reason}")
            }
            SyslogError::Resolve { target, source } => {
                write!(f, "cannot resolve syslog target {target:?}: {source}")
            }
            SyslogError::Socket { target, source } => {
                write!(
                    f,
                    "cannot create a UDP socket for syslog to {target}: {source}"
                )
            }
        }
    }
}

impl std::error::Error for SyslogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SyslogError::BadTarget { .. } => None,
            SyslogError::Resolve { source, .. } | SyslogError::Socket { source, .. } => {
                Some(source)
            }
        }
    }
}

/// A syslog destination. `send` takes `&self`, so one `Syslog` can be shared by all session
/// threads behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Syslog {
    socket: UdpSocket,
    target: SocketAddr,
    hostname: String,
    pid: u32,
}

impl Syslog {
    /// Resolves `target` (`HOST`, `HOST:PORT`, `[V6ADDR]:PORT` or bare `V6ADDR`; port 514 by
    /// default) once, and opens a non-blocking UDP socket of the matching family.
    pub(crate) fn connect(target: &str) -> Result<Syslog, SyslogError> {
        let (host, port) = split_target(target).map_err(|reason| SyslogError::BadTarget {
            target: target.to_string(),
            reason,
        })?;
        let resolve_err = |source| SyslogError::Resolve {
            target: target.to_string(),
            source,
        };
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(resolve_err)?
            .next()
            .ok_or_else(|| {
                resolve_err(io::Error::new(
                    io::ErrorKind::NotFound,
                    "no address for host",
                ))
            })?;
        let socket_err = |source| SyslogError::Socket {
            target: addr,
            source,
        };
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).into(),
            SocketAddr::V6(_) => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0).into(),
        };
        let socket = UdpSocket::bind(local).map_err(socket_err)?;
        socket.set_nonblocking(true).map_err(socket_err)?;
        // Connected, so the kernel routes once and we need not pass the address per send.
        socket.connect(addr).map_err(socket_err)?;
        Ok(Syslog {
            socket,
            target: addr,
            hostname: local_hostname(),
            pid: std::process::id(),
        })
    }

    /// The resolved destination, for `-v` output.
    pub(crate) fn target(&self) -> SocketAddr {
        self.target
    }

    /// Sends `msg` with the given severity. Never blocks and never fails: a lost log line is
    /// better than a slowed or aborted test.
    pub(crate) fn send(&self, severity: Severity, msg: &str) {
        let line = self.format(severity, &clock::local_now(), msg);
        let _ = self.socket.send(line.as_bytes());
    }

    /// `<PRI>Mmm dd hh:mm:ss HOSTNAME btest[PID]: MSG`, at most 1024 bytes.
    fn format(&self, severity: Severity, time: &clock::LocalTime, msg: &str) -> String {
        let mut line = String::with_capacity(128 + msg.len().min(MAX_DATAGRAM));
        let pri = FACILITY_DAEMON * 8 + severity as u8;
        let _ = write!(
            line,
            "<{pri}>{} {} btest[{}]: ",
            time.rfc3164(),
            self.hostname,
            self.pid
        );
        for c in msg.chars() {
            // Control characters would split or corrupt the record in the receiver's log.
            let c = if c.is_control() { ' ' } else { c };
            if line.len() + c.len_utf8() > MAX_DATAGRAM {
                break;
            }
            line.push(c);
        }
        line
    }
}

/// Splits `HOST[:PORT]`, accepting `[V6]:PORT`, `[V6]` and bare `V6` (more than one colon).
fn split_target(target: &str) -> Result<(&str, u16), &'static str> {
    let target = target.trim();
    if target.is_empty() {
        return Err("empty");
    }
    if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("missing ']'")?;
        if host.is_empty() {
            return Err("empty host");
        }
        return match after {
            "" => Ok((host, DEFAULT_PORT)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host, parse_port(p)?)),
                None => Err("expected ':PORT' after ']'"),
            },
        };
    }
    match target.matches(':').count() {
        0 => Ok((target, DEFAULT_PORT)),
        1 => {
            let (host, port) = target.split_once(':').ok_or("expected HOST:PORT")?;
            if host.is_empty() {
                return Err("empty host");
            }
            Ok((host, parse_port(port)?))
        }
        _ => Ok((target, DEFAULT_PORT)),
    }
}

fn parse_port(p: &str) -> Result<u16, &'static str> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err("port must be 1..=65535"),
        Ok(port) => Ok(port),
    }
}

/// This host's name as RFC 3164 wants it: no domain, no spaces; `localhost` if unknown.
fn local_hostname() -> String {
    let Some(full) = crate::sys::hostname::get() else {
        return "localhost".to_string();
    };
    let short = if full.parse::<IpAddr>().is_ok() {
        full.as_ref()
    } else {
        full.split('.').next().unwrap_or_default()
    };
    let name: String = short
        .chars()
        .map(|c| {
            if c.is_control() || c.is_whitespace() {
                '-'
            } else {
                c
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];

    /// What a receiver sees in one RFC 3164 datagram.
    #[derive(Debug)]
    struct Parsed {
        pri: u8,
        hostname: String,
        pid: u32,
        msg: String,
    }

    /// A strict hand-written parser for the one form we emit.
    fn parse(datagram: &[u8]) -> Parsed {
        let text = std::str::from_utf8(datagram).expect("UTF-8");
        let rest = text.strip_prefix('<').expect("<PRI>");
        let (pri, rest) = rest.split_once('>').expect("PRI end");
        assert!((1..=3).contains(&pri.len()) && pri.bytes().all(|b| b.is_ascii_digit()));
        let pri: u8 = pri.parse().unwrap();
        assert!(pri <= 191);
        let (ts, rest) = rest.split_at(15);
        let b = ts.as_bytes();
        assert!(MONTHS.contains(&&ts[..3]), "month in {ts:?}");
        assert_eq!(b[3], b' ');
        assert!(
            b[4] == b' ' || (b'1'..=b'3').contains(&b[4]),
            "day in {ts:?}"
        );
        assert!(b[5].is_ascii_digit(), "day in {ts:?}");
        assert_eq!(b[6], b' ');
        for (i, &c) in b[7..].iter().enumerate() {
            if i == 2 || i == 5 {
                assert_eq!(c, b':', "{ts:?}");
            } else {
                assert!(c.is_ascii_digit(), "{ts:?}");
            }
        }
        let rest = rest.strip_prefix(' ').expect("space after timestamp");
        let (hostname, rest) = rest.split_once(' ').expect("hostname");
        assert!(!hostname.is_empty());
        let rest = rest.strip_prefix("btest[").expect("tag");
        let (pid, msg) = rest.split_once("]: ").expect("pid end");
        Parsed {
            pri,
            hostname: hostname.to_string(),
            pid: pid.parse().unwrap(),
            msg: msg.to_string(),
        }
    }

    /// A syslog receiver for tests, bound to `addr`, that waits at most five seconds for a
    /// datagram.
    pub(crate) fn listener(addr: &str) -> UdpSocket {
        let listener = UdpSocket::bind(addr).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        listener
    }

    fn receive(listener: &UdpSocket) -> Parsed {
        let mut buf = [0u8; 2048];
        let n = listener.recv(&mut buf).unwrap();
        assert!(n <= MAX_DATAGRAM);
        parse(&buf[..n])
    }

    #[test]
    fn messages_arrive_in_rfc3164_form() {
        let listener = listener("127.0.0.1:0");
        let log = Syslog::connect(&listener.local_addr().unwrap().to_string()).unwrap();
        assert_eq!(log.target(), listener.local_addr().unwrap());

        let cases = [
            (Severity::Notice, "test start: peer 192.0.2.7 tcp both", 29),
            (
                Severity::Notice,
                "test end: tx 941.23 Mbps rx 940.10 Mbps",
                29,
            ),
            (
                Severity::Warning,
                "auth failed: user \"admin\" from 192.0.2.9",
                28,
            ),
            (Severity::Error, "test failed: timeout", 27),
        ];
        for (sev, msg, pri) in cases {
            log.send(sev, msg);
            let got = receive(&listener);
            assert_eq!(got.pri, pri);
            assert_eq!(got.msg, msg);
            assert_eq!(got.pid, std::process::id());
            assert!(!got.hostname.contains([' ', '.']));
        }
    }

    #[test]
    fn control_characters_replaced_and_length_capped() {
        let listener = listener("127.0.0.1:0");
        let log = Syslog::connect(&listener.local_addr().unwrap().to_string()).unwrap();
        log.send(Severity::Warning, "line1\nline2\r\x00\x1b[31m");
        assert_eq!(receive(&listener).msg, "line1 line2   [31m");

        let long: String = "ż".repeat(2000);
        log.send(Severity::Notice, &long);
        let got = receive(&listener);
        assert!(got.msg.chars().all(|c| c == 'ż'));
        assert!(got.msg.len() > 800);
    }

    #[test]
    fn closed_port_neither_errors_nor_blocks() {
        let port = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let log = Syslog::connect(&format!("127.0.0.1:{port}")).unwrap();
        let start = Instant::now();
        for i in 0..200 {
            log.send(Severity::Notice, &format!("nobody listens {i}"));
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "sending to a closed port waited {:?}",
            start.elapsed()
        );
        // The refusals (ICMP port unreachable) cost at most the one message that reports
        // them: once a daemon listens, the same sink delivers again.
        let Ok(listener) = UdpSocket::bind(("127.0.0.1", port)) else {
            eprintln!("skipped: port {port} was taken before the daemon could bind it");
            return;
        };
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        log.send(Severity::Notice, "a daemon listens");
        log.send(Severity::Notice, "a daemon listens");
        assert_eq!(receive(&listener).msg, "a daemon listens");
    }

    #[test]
    fn ipv6_target_if_available() {
        let Ok(listener) = UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 loopback on this machine
        };
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Syslog::connect(&format!("[::1]:{port}")).unwrap();
        assert!(log.target().is_ipv6());
        log.send(Severity::Notice, "over v6");
        assert_eq!(receive(&listener).msg, "over v6");
    }

    #[test]
    fn target_forms() {
        assert_eq!(split_target("logs.example"), Ok(("logs.example", 514)));
        assert_eq!(split_target("10.0.0.1:1514"), Ok(("10.0.0.1", 1514)));
        assert_eq!(split_target("[::1]:515"), Ok(("::1", 515)));
        assert_eq!(split_target("[fe80::1]"), Ok(("fe80::1", 514)));
        assert_eq!(split_target("::1"), Ok(("::1", 514)));
        assert_eq!(split_target("2001:db8::5"), Ok(("2001:db8::5", 514)));
        assert!(split_target("").is_err());
        assert!(split_target("host:").is_err());
        assert!(split_target("host:0").is_err());
        assert!(split_target("host:70000").is_err());
        assert!(split_target(":514").is_err());
        assert!(split_target("[::1").is_err());
        assert!(split_target("[::1]x").is_err());
        assert!(split_target("[]:514").is_err());
    }

    #[test]
    fn unresolvable_host_is_a_clear_error() {
        let err = Syslog::connect("no-such-host.invalid").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no-such-host.invalid"), "{msg}");
        assert!(matches!(err, SyslogError::Resolve { .. }));
        assert!(matches!(
            Syslog::connect("host:x"),
            Err(SyslogError::BadTarget { .. })
        ));
    }

    #[test]
    fn hostname_is_a_single_token() {
        let h = local_hostname();
        assert!(!h.is_empty());
        assert!(!h.contains(char::is_whitespace));
    }
}
