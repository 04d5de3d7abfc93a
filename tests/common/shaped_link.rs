//! A real bottleneck for accuracy tests and benches: two network namespaces joined by a veth
//! pair, each side's egress shaped by `tc ... tbf rate 100mbit` with a ~30 ms queue (`tbf`
//! exists where `netem` does not). The server runs in one namespace, the client in the other.
//! Used by `tests/shaped.rs` and `benches/accuracy.rs`.

use std::process::Output;
use std::time::Duration;

use super::netns::{Netns, sh};
use super::{TestServer, client_in, skip, word_after};

/// The shaped rate, bit/s.
pub const RATE_BPS: f64 = 100e6;
/// TCP payload the link carries: 1448 bytes (MSS with timestamps) per 1514-byte frame.
pub const TCP_CAPACITY_BPS: f64 = RATE_BPS * 1448.0 / 1514.0;
/// UDP as btest counts it (the 1500-byte IP packet) per 1514-byte frame.
pub const UDP_CAPACITY_BPS: f64 = RATE_BPS * 1500.0 / 1514.0;

const SERVER_IP: &str = "10.219.0.2";
const CLIENT_IP: &str = "10.219.0.1";
const CLIENT_DEV: &str = "bt19c";
const SERVER_DEV: &str = "bt19s";

/// The two namespaces; deleted (with the veth) however the caller ends.
pub struct Link {
    /// Namespace the client runs in.
    pub client_ns: String,
    /// Namespace the server runs in.
    pub server_ns: String,
    _guard: Netns,
}

impl Link {
    /// Builds the pair; names carry `tag` and the process id, so parallel runs do not meet.
    pub fn new(tag: &str) -> Result<Link, String> {
        let id = std::process::id();
        let (client_ns, server_ns) = (format!("bt19c-{tag}-{id}"), format!("bt19s-{tag}-{id}"));
        let (c, s) = (client_ns.as_str(), server_ns.as_str());
        let mut guard = Netns::default();
        guard.add(c)?;
        guard.add(s)?;
        sh(&[
            "ip", "-n", c, "link", "add", CLIENT_DEV, "type", "veth", "peer", "name", SERVER_DEV,
            "netns", s,
        ])?;
        for (ns, dev, ip) in [(c, CLIENT_DEV, CLIENT_IP), (s, SERVER_DEV, SERVER_IP)] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ])?;
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            sh(&[
                "tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", "100mbit",
                "burst", "32kb", "latency", "30ms",
            ])?;
        }
        Ok(Link {
            client_ns,
            server_ns,
            _guard: guard,
        })
    }

    /// Builds the pair, or says on stderr why this machine cannot (`skipped: ...`).
    pub fn or_skip(tag: &str) -> Option<Link> {
        if super::under_emulation() {
            // Rates against a link's capacity say something only about a native build.
            skip("link accuracy is measured on native builds, not under emulation");
            return None;
        }
        if !super::is_root() {
            skip("needs root to create network namespaces");
            return None;
        }
        match Link::new(tag) {
            Ok(link) => Some(link),
            Err(e) => {
                skip(&format!("cannot build the shaped namespace pair: {e}"));
                None
            }
        }
    }

    /// Packets sent and dropped by the tbf qdisc on the client's (`true`) or server's egress.
    pub fn qdisc_stats(&self, client_side: bool) -> (u64, u64) {
        let (ns, dev) = if client_side {
            (&self.client_ns, CLIENT_DEV)
        } else {
            (&self.server_ns, SERVER_DEV)
        };
        let out = sh(&["tc", "-n", ns, "-s", "qdisc", "show", "dev", dev]).unwrap_or_default();
        let after = |key: &str| -> u64 {
            out.split(key)
                .nth(1)
                .and_then(|r| {
                    r.split(|c: char| !c.is_ascii_digit())
                        .find(|w| !w.is_empty())
                })
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (after(" bytes "), after("dropped "))
    }

    /// Starts `btest -s` in the server namespace on a port it chooses.
    pub fn server(&self, extra: &[&str]) -> TestServer {
        let mut args = vec!["-s", "-P", "0", "--listen", SERVER_IP];
        args.extend_from_slice(extra);
        TestServer::start_in(&self.server_ns, &args)
    }

    /// Runs `btest -c` in the client namespace against `server`.
    pub fn client(&self, server: &TestServer, args: &[&str]) -> Output {
        client_in(&self.client_ns, SERVER_IP, server.port, args)
    }
}

/// What a shaped test's server logged.
impl TestServer {
    /// The server's totals of session `id` from its end line: (tx bytes, rx bytes, seconds).
    pub fn session_end(&self, id: u32) -> (u64, u64, f64) {
        let line = self.wait_for_log(&format!("session {id} end:"), Duration::from_secs(15));
        let tx = word_after(&line, " tx=").parse().unwrap_or(0);
        let rx = word_after(&line, " rx=").parse().unwrap_or(0);
        let secs = word_after(&line, " bytes in ").parse().unwrap_or(0.0);
        (tx, rx, secs)
    }

    /// `received N lost M` of the server's UDP receive log line.
    pub fn udp_received_lost(&self) -> (u64, u64) {
        let line = self.wait_for_log(" lost ", Duration::from_secs(15));
        let n = |key: &str| word_after(&line, key).parse().unwrap_or(0);
        (n(" received "), n(" lost "))
    }
}
