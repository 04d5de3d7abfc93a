//! Accuracy over a real bottleneck: two namespaces joined by a veth pair shaped to 100 Mbit/s
//! with `tbf` (see `common/shaped_link.rs`). What a sender reports must be what crossed the
//! link: within +1 % / -10 % of the link's payload capacity and within 2 % of what the
//! receiving side counted; UDP loss must match the sending qdisc's drops.
//!
//! The cases run one at a time (a lock), each on its own namespace pair, so they never share
//! the link or the CPU with each other. Each takes about 5 s.
//!
//! A TCP case whose only failure is a rate more than 10 % below capacity runs once more: on a
//! loaded machine the processes can be starved (seen here: a tick 200 ms late and the link
//! 20 % idle for a second), which leaves the link idle but the counts in agreement. A count
//! that disagrees with the receiver or exceeds the link fails at once.

mod common;

use std::sync::Mutex;

use common::shaped_link::{Link, TCP_CAPACITY_BPS, UDP_CAPACITY_BPS};
use common::{code, parse, stderr, summary};
use serde_json::Value;

/// One case at a time: a shared 2-core CI machine cannot run two 100 Mbit/s tests and a
/// third reading the clock fairly.
static SERIAL: Mutex<()> = Mutex::new(());

const SECS: &str = "4";

fn mbps(bps: f64) -> String {
    format!("{:.2} Mbit/s", bps / 1e6)
}

/// A check that failed; `idle` when only the link went unused (a rate too low).
struct Failure {
    idle: bool,
    why: String,
}

/// A sender's report against the link and against what the receiving side counted.
///
/// `reported` and `received` are rates, each over its own end's measuring window. Where the
/// receiver's count ends with the sender's (the client receives: its stop ends the test and,
/// as it stops acknowledging, the server's count too), `bytes` gives both ends' byte counts,
/// which are compared instead of the rates: the server's window starts and ends a little
/// apart from the client's (it cannot know when the client started or stopped counting),
/// which moves its rate by up to 2 % with 20 connections both ways while the bytes agree to
/// 0.1 %. Where the client sends, the server keeps receiving what was still on its way when
/// the client stopped, so its byte count is larger by design and the rates are compared.
fn check_rate(
    what: &str,
    reported: f64,
    received: f64,
    bytes: Option<(u64, u64)>,
    failures: &mut Vec<Failure>,
) {
    let cap = TCP_CAPACITY_BPS;
    let (ours, theirs) = match bytes {
        Some((sent, got)) => (sent as f64, got as f64),
        None => (reported, received),
    };
    let off_pct = (ours - theirs) * 100.0 / theirs;
    eprintln!(
        "{what}: reported {}, receiver counted {}, capacity {} ({off_pct:+.2} % {})",
        mbps(reported),
        mbps(received),
        mbps(cap),
        if bytes.is_some() {
            "in bytes"
        } else {
            "in rate"
        }
    );
    for (whose, v) in [("reported", reported), ("received", received)] {
        if !(cap * 0.90..=cap * 1.01).contains(&v) {
            let idle = v < cap * 0.90;
            let why = format!(
                "{what}: {whose} {} outside +1 %/-10 % of {}",
                mbps(v),
                mbps(cap)
            );
            failures.push(Failure { idle, why });
        }
    }
    if off_pct.abs() > 2.0 {
        failures.push(Failure {
            idle: false,
            why: format!("{what}: the sender's count is {off_pct:+.2} % from the receiver's"),
        });
    }
}

/// Runs one TCP test (`dir` is `-t`, `-r` or both) and checks each direction.
fn tcp_case(tag: &str, dir: &[&str], connections: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut earlier = Vec::new();
    for attempt in 1..=2 {
        let Some(link) = Link::or_skip(tag) else {
            return;
        };
        let failures = tcp_attempt(&link, tag, dir, connections);
        if failures.is_empty() {
            return;
        }
        let idle_only = failures.iter().all(|f| f.idle);
        let text: Vec<String> = failures.into_iter().map(|f| f.why).collect();
        earlier.push(format!("attempt {attempt}:\n{}", text.join("\n")));
        if !idle_only {
            break;
        }
        eprintln!("{tag}: the link went partly unused (a loaded machine?); once more");
    }
    panic!("{}", earlier.join("\n"));
}

/// One run of a TCP case on a fresh link; what failed.
fn tcp_attempt(link: &Link, tag: &str, dir: &[&str], connections: &str) -> Vec<Failure> {
    let server = link.server(&[]);
    let mut args = dir.to_vec();
    args.extend_from_slice(&["--connections", connections, "-d", SECS, "-q"]);
    let out = link.client(&server, &args);
    assert_eq!(code(&out), 0, "client failed: {}", stderr(&out));
    let lines = parse(&out.stdout);
    let (server_tx, server_rx, server_secs) = server.session_end(1);
    assert!(server_secs > 0.0, "no server totals");
    let server_bps = |bytes: u64| bytes as f64 * 8.0 / server_secs;
    let mut failures = Vec::new();
    if let Some(tx) = summary(&lines, "TX") {
        check_rate(
            &format!("{tag}: client TX"),
            tx.bps,
            server_bps(server_rx),
            None,
            &mut failures,
        );
    }
    if let Some(rx) = summary(&lines, "RX") {
        check_rate(
            &format!("{tag}: server TX"),
            server_bps(server_tx),
            rx.bps,
            Some((server_tx, rx.bytes)),
            &mut failures,
        );
    }
    assert!(
        summary(&lines, "TX").is_some() || summary(&lines, "RX").is_some(),
        "no summary: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    failures
}

#[test]
fn tcp_send_1_connection() {
    tcp_case("s1", &["-t"], "1");
}

#[test]
fn tcp_send_20_connections() {
    tcp_case("s20", &["-t"], "20");
}

#[test]
fn tcp_receive_1_connection() {
    tcp_case("r1", &["-r"], "1");
}

#[test]
fn tcp_receive_20_connections() {
    tcp_case("r20", &["-r"], "20");
}

#[test]
fn tcp_both_1_connection() {
    tcp_case("b1", &["-t", "-r"], "1");
}

#[test]
fn tcp_both_20_connections() {
    tcp_case("b20", &["-t", "-r"], "20");
}

/// UDP at 150 Mbit/s into the 100 Mbit/s link: the receiver's rate is the link's, and the
/// datagrams it calls lost are the ones the sending qdisc dropped.
fn udp_case(tag: &str, client_sends: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(link) = Link::or_skip(tag) else {
        return;
    };
    let server = link.server(&[]);
    let dir = if client_sends { "-t" } else { "-r" };
    let out = link.client(&server, &["-u", dir, "-b", "150M", "-d", SECS, "--json"]);
    assert_eq!(code(&out), 0, "client failed: {}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let end = &doc["end"];
    let (server_tx, server_rx, server_secs) = server.session_end(1);
    let (rate, lost, sent_bytes) = if client_sends {
        let (_, lost) = server.udp_received_lost();
        let tx = end["tx"]["bytes"].as_u64().unwrap_or(0);
        (server_rx as f64 * 8.0 / server_secs, lost, tx)
    } else {
        let rate = end["rx"]["bits_per_second"].as_f64().unwrap_or(0.0);
        (rate, end["rx"]["lost"].as_u64().unwrap_or(0), server_tx)
    };
    let sent_packets = sent_bytes / 1500;
    let (_, drops) = link.qdisc_stats(client_sends);
    eprintln!(
        "{tag}: receiver's rate {} (capacity {}), lost {lost}, qdisc dropped {drops} of \
         {sent_packets} sent",
        mbps(rate),
        mbps(UDP_CAPACITY_BPS)
    );
    assert!(
        (rate - UDP_CAPACITY_BPS).abs() <= UDP_CAPACITY_BPS * 0.05,
        "{tag}: rate {} not within 5 % of {}",
        mbps(rate),
        mbps(UDP_CAPACITY_BPS)
    );
    assert!(
        drops > sent_packets / 10,
        "{tag}: the link dropped too little to judge"
    );
    assert!(
        lost.abs_diff(drops) * 100 <= sent_packets,
        "{tag}: lost {lost} vs qdisc drops {drops}: more than 1 % of {sent_packets} apart"
    );
}

#[test]
fn udp_send_150m() {
    udp_case("us", true);
}

#[test]
fn udp_receive_150m() {
    udp_case("ur", false);
}
