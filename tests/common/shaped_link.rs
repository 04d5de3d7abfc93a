//! A real bottleneck for accuracy tests and benches: two network namespaces joined by a veth
//! pair, each side's egress shaped by `tc ... tbf rate 100mbit` with a ~30 ms queue (`tbf`
//! exists where `netem` does not). The server runs in one namespace, the client in the other.
//! Shared by `tests/shaped.rs` and `benches/accuracy.rs` (included with `#[path]`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Runs a command; its stdout, or why it failed.
pub fn sh(args: &[&str]) -> Result<String, String> {
    let (first, rest) = args.split_first().ok_or("empty command")?;
    let out = Command::new(first)
        .args(rest)
        .output()
        .map_err(|e| format!("{first}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The two namespaces; deleted (with the veth) however the caller ends.
pub struct Link {
    /// Namespace the client runs in.
    pub client_ns: String,
    /// Namespace the server runs in.
    pub server_ns: String,
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.client_ns]);
        let _ = sh(&["ip", "netns", "del", &self.server_ns]);
    }
}

impl Link {
    /// Builds the pair; names carry `tag` and the process id, so parallel runs do not meet.
    pub fn new(tag: &str) -> Result<Link, String> {
        let id = std::process::id();
        let link = Link {
            client_ns: format!("bt19c-{tag}-{id}"),
            server_ns: format!("bt19s-{tag}-{id}"),
        };
        let (c, s) = (link.client_ns.as_str(), link.server_ns.as_str());
        sh(&["ip", "netns", "add", c])?;
        sh(&["ip", "netns", "add", s])?;
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
        Ok(link)
    }

    /// Builds the pair, or says on stderr why this machine cannot (`skipped: ...`).
    pub fn or_skip(tag: &str) -> Option<Link> {
        if std::env::var_os("BTEST_UNDER_EMULATION").is_some() {
            // Rates against a link's capacity say something only about a native build.
            eprintln!("skipped: link accuracy is measured on native builds, not under emulation");
            return None;
        }
        let root = sh(&["id", "-u"]).map(|u| u.trim() == "0").unwrap_or(false);
        if !root {
            eprintln!("skipped: needs root to create network namespaces");
            return None;
        }
        match Link::new(tag) {
            Ok(link) => Some(link),
            Err(e) => {
                eprintln!("skipped: cannot build the shaped namespace pair: {e}");
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

    /// Starts `btest -s` in the server namespace.
    pub fn server(&self, btest: &str, extra: &[&str]) -> ShapedServer {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.server_ns, btest])
            .args(["-s", "-P", "2000", "--listen", SERVER_IP])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let server = ShapedServer { child, log };
        server.wait_for("listening on", Duration::from_secs(5));
        server
    }

    /// Runs `btest -c` in the client namespace against the server.
    pub fn client(&self, btest: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.client_ns, btest])
            .args(["-c", SERVER_IP, "-P", "2000"])
            .args(args)
            .output()
            .expect("run client")
    }
}

/// A server in the server namespace, its stderr collected line by line.
pub struct ShapedServer {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for ShapedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ShapedServer {
    /// The first log line containing `needle`, waiting up to `limit` for it.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                start.elapsed() < limit,
                "server never logged '{needle}':\n{}",
                self.log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's totals of session `id` from its end line: (tx bytes, rx bytes, seconds).
    pub fn session_end(&self, id: u32) -> (u64, u64, f64) {
        let line = self.wait_for(&format!("session {id} end:"), Duration::from_secs(15));
        let word_after = |key: &str| -> &str {
            line.split(key)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or("")
        };
        let tx = word_after(" tx=").parse().unwrap_or(0);
        let rx = word_after(" rx=").parse().unwrap_or(0);
        let secs = word_after(" bytes in ").parse().unwrap_or(0.0);
        (tx, rx, secs)
    }

    /// `received N lost M` of the server's UDP receive log line.
    pub fn udp_received_lost(&self) -> (u64, u64) {
        let line = self.wait_for(" lost ", Duration::from_secs(15));
        let after = |key: &str| -> u64 {
            line.split(key)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (after(" received "), after(" lost "))
    }
}
