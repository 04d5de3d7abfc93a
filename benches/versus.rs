//! btest against iperf3, interleaved in one run (ours, theirs, ours, theirs, ...), so that each
//! ratio line compares figures taken under the same load; and the server under many sessions.
//!
//! Per case: `ROUNDS` rounds of one test each, the median of each side, and a ratio line (ours
//! over theirs). CPU is that of both processes (client and server), from `getrusage` of the
//! waited-for children, per gigabyte that arrived. `VERSUS_SECS` (default 4) sets the length
//! of each test; about four minutes in all.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Reaped, TestServer, children_cpu, free_port, proc_cpu, rss_kib};

/// The btest binary: this build's, or `VERSUS_BTEST` (to compare an older build).
fn btest_bin() -> String {
    std::env::var("VERSUS_BTEST").unwrap_or_else(|_| env!("CARGO_BIN_EXE_btest").to_string())
}
const ROUNDS: usize = 3;
/// Whole IP packets of the UDP cases: the default size and the smallest common one.
const UDP_SIZES: [(u64, &str); 2] = [(1500, "udp_pps"), (64, "udp_pps_64b")];
/// IPv4 + UDP headers: iperf3 is given the payload, btest the whole packet.
const UDP_HEADERS: u64 = 28;

fn emit(name: &str, value: f64, unit: &str) {
    println!("bench={name} value={value:.3} unit={unit}");
}

fn secs() -> u64 {
    common::env_u64("VERSUS_SECS", 4)
}

/// `btest -s -q` (this build's or `VERSUS_BTEST`) on a port it chooses, read from its socket
/// (`-q` prints none); killed and waited for on drop, so its CPU lands in `children_cpu`.
fn btest_server() -> TestServer {
    btest_server_with(&[])
}

fn btest_server_with(extra: &[&str]) -> TestServer {
    let mut cmd = Command::new(btest_bin());
    cmd.args(["-s", "-q", "--listen", "127.0.0.1", "-P", "0"]);
    cmd.args(extra);
    TestServer::spawn_quiet(cmd)
}

/// An iperf3 server on `port`. It cannot report a port of its choosing, and a probe
/// connection would count as its test: it is given time to listen instead.
fn iperf3_server(port: u16) -> Reaped {
    let child = Command::new("iperf3")
        .args(["-s", "-B", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start iperf3");
    std::thread::sleep(Duration::from_millis(300));
    Reaped(child)
}

/// One test's result: bytes that arrived, seconds, CPU seconds of both processes.
#[derive(Clone, Copy, Default)]
struct Sample {
    bytes: f64,
    secs: f64,
    cpu: f64,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.bytes / self.secs.max(1e-9)
    }
    fn cpu_per_gb(&self) -> f64 {
        self.cpu / (self.bytes / 1e9).max(1e-9)
    }
}

/// Sum of the `[ avg]` byte counts of the given directions, and the test's seconds.
fn avg_bytes(stdout: &str, dirs: &[&str]) -> (f64, f64) {
    let (mut bytes, mut secs) = (0.0, 0.0);
    for line in stdout.lines().filter(|l| l.starts_with("[ avg]")) {
        let words: Vec<&str> = line
            .split('(')
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if dirs.iter().any(|d| line.contains(&format!(" {d} "))) {
            bytes += words.first().and_then(|w| w.parse().ok()).unwrap_or(0.0);
            secs = words.get(3).and_then(|w| w.parse().ok()).unwrap_or(secs);
        }
    }
    (bytes, secs)
}

/// One btest test against a fresh server; counts the directions in `dirs`.
fn btest_sample(args: &[&str], dirs: &[&str]) -> Sample {
    let before = children_cpu();
    let server = btest_server();
    let out = Command::new(btest_bin())
        .args(["-c", "127.0.0.1", "-P", &server.port.to_string(), "-q"])
        .args(["-d", &secs().to_string()])
        .args(args)
        .output()
        .expect("run client");
    drop(server);
    let (bytes, secs) = avg_bytes(&String::from_utf8_lossy(&out.stdout), dirs);
    Sample {
        bytes,
        secs,
        cpu: children_cpu() - before,
    }
}

/// One iperf3 test against a fresh server; `bytes` reads the JSON result.
fn iperf3_sample(args: &[&str], bytes: impl Fn(&serde_json::Value) -> f64) -> Sample {
    let port = free_port();
    let p = port.to_string();
    let before = children_cpu();
    let server = iperf3_server(port);
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &p, "-J", "-t", &secs().to_string()])
        .args(args)
        .output()
        .expect("run iperf3");
    drop(server);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let end = &json["end"];
    let secs = end["sum_received"]["seconds"]
        .as_f64()
        .or(end["sum"]["seconds"].as_f64())
        .unwrap_or(secs() as f64);
    Sample {
        bytes: bytes(end),
        secs,
        cpu: children_cpu() - before,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs ours and theirs alternately `ROUNDS` times; returns the medians of (rate, CPU/GB).
fn interleave(ours: impl Fn() -> Sample, theirs: impl Fn() -> Sample) -> ((f64, f64), (f64, f64)) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        a.push(ours());
        b.push(theirs());
    }
    let med = |s: &[Sample]| {
        (
            median(s.iter().map(Sample::rate).collect()),
            median(s.iter().map(Sample::cpu_per_gb).collect()),
        )
    };
    (med(&a), med(&b))
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Name, btest client arguments, directions it counts, iperf3 arguments.
type TcpCase = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

fn tcp_versus() {
    let received = |end: &serde_json::Value| {
        end["sum_received"]["bytes"].as_f64().unwrap_or(0.0)
            + end["sum_received_bidir_reverse"]["bytes"]
                .as_f64()
                .unwrap_or(0.0)
    };
    let cases: [TcpCase; 3] = [
        ("tx", &["-t"], &["TX"], &[]),
        ("rx", &["-r"], &["RX"], &["-R"]),
        ("both", &["-t", "-r"], &["TX", "RX"], &["--bidir"]),
    ];
    for (name, args, dirs, iperf_args) in cases {
        let ((ours, ours_cpu), (theirs, theirs_cpu)) = interleave(
            || btest_sample(args, dirs),
            || iperf3_sample(iperf_args, received),
        );
        emit(&format!("tcp_{name}_mbps"), ours * 8.0 / 1e6, "Mbps");
        emit(
            &format!("iperf3_tcp_{name}_mbps"),
            theirs * 8.0 / 1e6,
            "Mbps",
        );
        emit(
            &format!("tcp_{name}_ratio_iperf3"),
            ratio(ours, theirs),
            "x",
        );
        emit(&format!("tcp_{name}_cpu_s_per_gb"), ours_cpu, "s/GB");
        emit(
            &format!("iperf3_tcp_{name}_cpu_s_per_gb"),
            theirs_cpu,
            "s/GB",
        );
        emit(
            &format!("tcp_{name}_cpu_ratio_iperf3"),
            ratio(ours_cpu, theirs_cpu),
            "x",
        );
    }
}

/// Unlimited UDP, server to client (the client counts what arrived), at each packet size.
fn udp_versus() {
    for (packet, name) in UDP_SIZES {
        let size = packet.to_string();
        let payload = (packet - UDP_HEADERS).to_string();
        // Datagrams that arrived, counted as whole packets like ours.
        let arrived = |end: &serde_json::Value| {
            let bytes = end["sum_received"]["bytes"].as_f64().unwrap_or(0.0);
            (bytes / (packet - UDP_HEADERS) as f64).round() * packet as f64
        };
        let ((ours, ours_cpu), (theirs, theirs_cpu)) = interleave(
            || btest_sample(&["-u", "-r", "--udp-size", &size], &["RX"]),
            || iperf3_sample(&["-u", "-R", "-b", "0", "-l", &payload], arrived),
        );
        emit(&format!("{name}_versus"), ours / packet as f64, "pps");
        emit(
            &format!("iperf3_{name}_versus"),
            theirs / packet as f64,
            "pps",
        );
        emit(&format!("{name}_ratio_iperf3"), ratio(ours, theirs), "x");
        if packet == 1500 {
            emit("udp_cpu_s_per_gb_versus", ours_cpu, "s/GB");
            emit("iperf3_udp_cpu_s_per_gb_versus", theirs_cpu, "s/GB");
            emit("udp_cpu_ratio_iperf3", ratio(ours_cpu, theirs_cpu), "x");
        }
    }
}

/// `SESSIONS` clients at 10 Mbit/s each against one server, UDP and then TCP: the worst rate
/// error of any session, and the server's CPU and memory per session.
fn many_sessions() {
    const SESSIONS: usize = 100;
    const RATE: f64 = 10e6;
    let d = (secs() + 2).to_string();
    let mut worst: f64 = 0.0;
    for proto in [&["-u"][..], &[][..]] {
        // Every client comes from 127.0.0.1 at once: above the default handshake cap (32).
        let server = btest_server_with(&["--max-handshakes-per-ip", "200"]);
        let (port, pid) = (server.port, server.pid());
        std::thread::sleep(Duration::from_millis(200));
        let idle = rss_kib(pid) as f64;
        let cpu_start = proc_cpu(pid);
        let started = Instant::now();
        let clients: Vec<Child> = (0..SESSIONS)
            .filter_map(|_| {
                Command::new(btest_bin())
                    .args(["-c", "127.0.0.1", "-P", &port.to_string(), "-q", "-r"])
                    .args(["-b", "10M", "-d", &d])
                    .args(proto)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect();
        std::thread::sleep(Duration::from_secs(secs()));
        let busy = rss_kib(pid) as f64;
        let outputs: Vec<_> = clients
            .into_iter()
            .filter_map(|c| c.wait_with_output().ok())
            .collect();
        let wall = started.elapsed().as_secs_f64();
        let server_cpu = proc_cpu(pid) - cpu_start;
        let mut worst_here: f64 = if outputs.len() < SESSIONS { 100.0 } else { 0.0 };
        for out in &outputs {
            let (bytes, secs) = avg_bytes(&String::from_utf8_lossy(&out.stdout), &["RX"]);
            let achieved = bytes * 8.0 / secs.max(1e-9);
            worst_here = worst_here.max((achieved - RATE).abs() / RATE * 100.0);
        }
        worst = worst.max(worst_here);
        let kind = if proto.is_empty() { "tcp" } else { "udp" };
        emit(
            &format!("server_100x10M_rate_error_pct_max_{kind}"),
            worst_here,
            "%",
        );
        emit(
            &format!("server_cpu_pct_per_session_{kind}"),
            server_cpu / wall * 100.0 / SESSIONS as f64,
            "%",
        );
        emit(
            &format!("server_rss_kib_per_session_{kind}"),
            (busy - idle).max(0.0) / SESSIONS as f64,
            "KiB",
        );
        if kind == "udp" {
            emit(
                "server_cpu_pct_per_session",
                server_cpu / wall * 100.0 / SESSIONS as f64,
                "%",
            );
            emit(
                "server_rss_kib_per_session",
                (busy - idle).max(0.0) / SESSIONS as f64,
                "KiB",
            );
        }
    }
    emit("server_100x10M_rate_error_pct_max", worst, "%");
}

fn tcp_20conn() {
    let s = btest_sample(&["-r", "--connections", "20"], &["RX"]);
    emit("tcp_20conn_mbps", s.rate() * 8.0 / 1e6, "Mbps");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    tcp_20conn();
    many_sessions();
    if Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        println!("# iperf3 not installed: no *_ratio_iperf3 lines (apt-get install iperf3)");
        return;
    }
    tcp_versus();
    udp_versus();
}
