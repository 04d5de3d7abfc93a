//! Whole-test TCP benchmarks: our client against our server over loopback (the comparisons
//! with iperf3 are in `benches/versus.rs`). Prints one `bench=<name> value=<n> unit=<u>` line per
//! figure. `BENCH_SECS` (default 10) sets the length of each test.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use btest_rs::proto::{StatusMessage, StatusScanner};
use common::{BTEST, TestServer, children_cpu, client, rss_kib, summary_bytes, threads};

/// `btest -s -q` on 127.0.0.1, a port it chooses (read from its socket: `-q` prints none).
fn server() -> TestServer {
    server_with(&[])
}

fn server_with(extra: &[&str]) -> TestServer {
    let mut cmd = Command::new(BTEST);
    cmd.args(["-s", "-q", "--listen", "127.0.0.1", "-P", "0"]);
    cmd.args(extra);
    TestServer::spawn_quiet(cmd)
}

fn report(name: &str, value: f64, unit: &str) {
    println!("bench={name} value={value:.2} unit={unit}");
}

fn secs() -> u64 {
    common::env_u64("BENCH_SECS", 10)
}

/// Runs one btest client test; returns (tx bytes, rx bytes, seconds, CPU seconds of both
/// processes).
fn btest_run(args: &[&str]) -> (u64, u64, f64, f64) {
    let cpu_before = children_cpu();
    let server = server();
    let d = secs().to_string();
    let start = Instant::now();
    let mut full = vec!["-d", &d, "-q"];
    full.extend_from_slice(args);
    let out = client(server.port, &full);
    let elapsed = start.elapsed().as_secs_f64().min(secs() as f64);
    drop(server);
    (
        summary_bytes(&out.stdout, "TX"),
        summary_bytes(&out.stdout, "RX"),
        elapsed,
        children_cpu() - cpu_before,
    )
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs / 1e6
}

/// Rate accuracy and a multi-connection figure; the single-connection rates and CPU per
/// gigabyte, beside iperf3's, are in `benches/versus.rs`.
fn tcp() {
    let (_, rx, s, _) = btest_run(&["-r", "-b", "500M"]);
    let achieved = mbps(rx, s);
    report(
        "tcp_rate_error_pct",
        (achieved - 500.0).abs() / 500.0 * 100.0,
        "%",
    );
    let (_, rx, s, _) = btest_run(&["-r", "--connections", "4"]);
    report("tcp_4conn_mbps", mbps(rx, s), "Mbps");
}

fn status_scan() {
    // 64 MiB of zeros with a status message every 32 KiB, fed in 64 KiB reads.
    let mut data = vec![0u8; 64 << 20];
    let msg = StatusMessage {
        cpu: 10,
        seq: 1,
        bytes_received: 1000,
    }
    .encode();
    for chunk in data.chunks_mut(32 << 10) {
        chunk[100..112].copy_from_slice(&msg);
    }
    let mut found = 0usize;
    let rounds = 8;
    let start = Instant::now();
    for _ in 0..rounds {
        let mut scanner = StatusScanner::new();
        for read in data.chunks(64 << 10) {
            scanner.feed(std::hint::black_box(read), |_| found += 1);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(found, rounds * 2048);
    report(
        "status_scan_gbps",
        (data.len() * rounds) as f64 * 8.0 / secs / 1e9,
        "Gbps",
    );
}

/// From writing the last join of a 2-connection receive test to the first data byte on the
/// primary: the server's join handling, wake-up of the waiting primary and session start.
fn join_latency() {
    use btest_rs::proto::{Command, Direction, Payload, Protocol, encode_join};
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let server = server();
    let port = server.port;
    let cmd = Command {
        protocol: Protocol::Tcp,
        direction: Direction::ServerTx,
        payload: Payload::Zeros,
        tcp_conn_count: 2,
        tx_size: 32768,
        client_buf_size: 0,
        remote_tx_speed: 0,
        local_tx_speed: 0,
    };
    let mut samples = Vec::new();
    for _ in 0..100 {
        let mut primary = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        primary.set_nodelay(true).ok();
        let mut buf = [0u8; 4];
        primary.read_exact(&mut buf).expect("hello");
        primary.write_all(&cmd.encode()).expect("command");
        primary.read_exact(&mut buf).expect("ok");
        let token = u16::from_be_bytes([buf[1], buf[2]]);
        let mut second = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        second.set_nodelay(true).ok();
        second.read_exact(&mut buf).expect("hello");
        let start = Instant::now();
        second.write_all(&encode_join(token)).expect("join");
        let mut byte = [0u8; 1];
        primary.read_exact(&mut byte).expect("data");
        samples.push(start.elapsed());
    }
    samples.sort();
    report(
        "join_latency_us",
        samples[samples.len() / 2].as_secs_f64() * 1e6,
        "us",
    );
}

/// Server memory idle and per session, with 20 rate-limited receive tests running.
fn server_rss() {
    let server = server();
    let port = server.port;
    std::thread::sleep(Duration::from_millis(300));
    let idle = rss_kib(server.pid());
    let clients: Vec<_> = (0..20)
        .map(|_| {
            Command::new(BTEST)
                .args([
                    "-c",
                    "127.0.0.1",
                    "-P",
                    &port.to_string(),
                    "-r",
                    "-b",
                    "1M",
                    "-d",
                    "4",
                    "-q",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("client")
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let busy = rss_kib(server.pid());
    for mut c in clients {
        let _ = c.wait();
    }
    report("server_rss_kib_idle", idle as f64, "KiB");
    // Per session with 100 sessions: benches/versus.rs.
    report(
        "server_rss_kib_20_sessions",
        busy.saturating_sub(idle) as f64 / 20.0,
        "KiB",
    );
}

/// Time for the server's thread count to return to its baseline after 500 idle connections
/// close at once.
fn robust_recovery() {
    // All 500 come from one address, which the default handshake cap (32) would refuse.
    let server = server_with(&["--max-handshakes-per-ip", "1000"]);
    let port = server.port;
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.pid();
    let base = threads(pid);
    let idle: Vec<_> = (0..500)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while threads(pid) < base + idle.len() as u64 / 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    drop(idle);
    while threads(pid) > base && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(1));
    }
    report(
        "robust_recovery_ms",
        start.elapsed().as_secs_f64() * 1e3,
        "ms",
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    robust_recovery();
    status_scan();
    join_latency();
    server_rss();
    tcp();
}
