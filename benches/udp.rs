//! UDP benchmarks over loopback with the real binary: packet rates unlimited, rate accuracy
//! when paced, CPU per gigabyte, and iperf3 at the same datagram size when it is installed.
//!
//! Prints `bench=NAME value=V unit=U` lines (what `make bench` collects). About 40 s in all.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    BTEST, Reaped, TestServer, children_cpu, client, free_port, parse, proc_cpu, summary,
};

/// Whole IP packet, the default: 1472 bytes of UDP payload over IPv4.
const PACKET: u64 = 1500;
const PPS_SECS: u64 = 5;
const RATE_SECS: u64 = 4;

fn emit(name: &str, value: f64, unit: &str) {
    println!("bench={name} value={value:.3} unit={unit}");
}

/// Waits until a peer that cannot report its port (iperf3) accepts connections.
fn wait_listening(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs one client; returns (TX avg bytes, RX avg bytes, seconds, client CPU seconds).
fn run_client(port: u16, args: &[&str]) -> (u64, u64, f64, f64) {
    let before = children_cpu();
    let mut full = vec!["-u", "-q"];
    full.extend_from_slice(args);
    let out = client(port, &full);
    let cpu = children_cpu() - before;
    let lines = parse(&out.stdout);
    let (mut tx, mut rx, mut secs) = (0, 0, 0.0);
    if let Some(l) = summary(&lines, "TX") {
        (tx, secs) = (l.bytes, l.secs.unwrap_or(0.0));
    }
    if let Some(l) = summary(&lines, "RX") {
        (rx, secs) = (l.bytes, l.secs.unwrap_or(0.0));
    }
    (tx, rx, secs, cpu)
}

fn ours() {
    let mut cmd = Command::new(BTEST);
    cmd.args(["-s", "-q", "-P", "0", "--listen", "127.0.0.1"])
        .args(["--udp-port-base", "31001"]);
    // `-q` prints no port: it is read from the server's socket.
    let server = TestServer::spawn_quiet(cmd);
    let port = server.port;
    let d = PPS_SECS.to_string();

    let (tx, _, secs, _) = run_client(port, &["-t", "-d", &d]);
    emit("udp_tx_pps", tx as f64 / PACKET as f64 / secs, "pps");

    let server_before = proc_cpu(server.pid());
    let (_, rx, secs, client_cpu) = run_client(port, &["-r", "-d", &d]);
    let server_cpu = proc_cpu(server.pid()) - server_before;
    emit("udp_rx_pps", rx as f64 / PACKET as f64 / secs, "pps");
    emit(
        "udp_cpu_s_per_gb",
        (client_cpu + server_cpu) / (rx as f64 / 1e9),
        "s/GB",
    );

    let d = RATE_SECS.to_string();
    for (name, rate, bps) in [
        ("10M", "10M", 10e6),
        ("100M", "100M", 100e6),
        ("1G", "1G", 1e9),
    ] {
        let (tx, _, secs, _) = run_client(port, &["-t", "-b", rate, "-d", &d]);
        let achieved = tx as f64 * 8.0 / secs;
        emit(
            &format!("udp_rate_error_pct_{name}"),
            (achieved - bps) / bps * 100.0,
            "%",
        );
    }
}

fn iperf3() {
    if Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("iperf3 not installed: no iperf3_udp_* lines");
        return;
    }
    let port = free_port();
    let server = Reaped(
        Command::new("iperf3")
            .args(["-s", "-p", &port.to_string(), "-B", "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    let server_before = proc_cpu(server.0.id());
    let before = children_cpu();
    let out = Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", &port.to_string(), "-u", "-b", "0"])
        .args(["-l", "1472", "-t", &PPS_SECS.to_string(), "-J"])
        .output()
        .unwrap();
    let client_cpu = children_cpu() - before;
    std::thread::sleep(Duration::from_millis(200));
    let server_cpu = proc_cpu(server.0.id()) - server_before;
    let json: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("iperf3 output unreadable: {e}");
            return;
        }
    };
    let sum = &json["end"]["sum"];
    let packets = sum["packets"].as_f64().unwrap_or(0.0);
    let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
    let secs = sum["seconds"].as_f64().unwrap_or(PPS_SECS as f64);
    emit("iperf3_udp_pps", packets / secs, "pps");
    emit("iperf3_udp_rx_pps", (packets - lost) / secs, "pps");
    let gb = (packets - lost) * PACKET as f64 / 1e9;
    if gb > 0.0 {
        emit(
            "iperf3_udp_cpu_s_per_gb",
            (client_cpu + server_cpu) / gb,
            "s/GB",
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    ours();
    iperf3();
}
