use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;

use super::*;
use crate::engine::state::StreamSnapshot;
use crate::engine::{EndReason, Outcome};
use crate::proto::{Command, Direction, Protocol};
use crate::server::policy::Unlimited;

/// A sink that hands every written line to the test, or blocks until the test lets it go.
struct Capture {
    lines: Sender<String>,
    gate: Option<Receiver<()>>,
    partial: Vec<u8>,
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(gate) = &self.gate {
            let _ = gate.recv();
        }
        self.partial.extend_from_slice(buf);
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let _ = self.lines.send(text);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn capture(opts: Options, gate: Option<Receiver<()>>) -> (Arc<ServerOutput>, Receiver<String>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let sink = Capture {
        lines: tx,
        gate,
        partial: Vec::new(),
    };
    (ServerOutput::start(opts, Box::new(sink)).unwrap(), rx)
}

/// A test command; the recorder's tests use it too.
pub(in crate::server) fn cmd(direction: Direction, protocol: Protocol) -> Command {
    Command::sample(direction, protocol)
}

fn ticket(out: &Arc<ServerOutput>, c: &Command, id: usize) -> Box<dyn Ticket> {
    let peer: SocketAddr = "192.0.2.9:40000".parse().unwrap();
    let req = AdmissionRequest {
        peer,
        method: AuthMethod::None,
        user: b"",
        cmd: c,
    };
    let mut t = Announcer::new(Arc::new(Unlimited), out.clone())
        .admit(&req)
        .ok()
        .unwrap();
    t.started(id);
    t
}

fn interval(index: u32, duration: Duration, bytes: u64, last: bool) -> Interval<'static> {
    static STREAMS: [StreamSnapshot; 0] = [];
    Interval {
        index,
        duration,
        tx_bytes: bytes,
        rx_bytes: bytes / 2,
        lost: 0,
        streams: &STREAMS,
        local_cpu: Some(12),
        remote_cpu: None,
        last,
        tcp: None,
    }
}

fn outcome(tx: u64, rx: u64) -> Outcome {
    Outcome {
        reason: EndReason::Duration,
        elapsed: Duration::from_millis(3010),
        rx_elapsed: Duration::from_millis(3010),
        tx_bytes: tx,
        rx_bytes: rx,
        lost: 0,
        per_stream: vec![(tx, rx)],
        tcp: None,
        unacknowledged: 0,
    }
}

/// Runs a 3 s session (three full seconds and a 10 ms remnant) and collects what was shown.
fn three_seconds(opts: Options, c: &Command) -> Vec<String> {
    let (out, rx) = capture(opts, None);
    let mut t = ticket(&out, c, 7);
    for i in 1..=3 {
        t.interval(&interval(i, Duration::from_secs(1), 125_000_000, false));
    }
    t.interval(&interval(4, Duration::from_millis(10), 1_000_000, true));
    let o = outcome(376_000_000, 188_000_000);
    t.finish(&SessionSummary {
        connections: 1,
        outcome: &o,
    });
    drop(t);
    drop(out);
    rx.iter().collect()
}

#[test]
fn text_lines_carry_session_and_peer_in_the_clients_grammar() {
    let opts = Options {
        format: Format::Text,
        intervals: true,
    };
    let lines = three_seconds(opts, &cmd(Direction::ServerTx, Protocol::Tcp));
    assert_eq!(
        lines,
        [
            "[#7 192.0.2.9]  [   1]  TX  1.00 Gbps (125000000 bytes)  cpu: 12%/0%",
            "[#7 192.0.2.9]  [   2]  TX  1.00 Gbps (125000000 bytes)  cpu: 12%/0%",
            "[#7 192.0.2.9]  [   3]  TX  1.00 Gbps (125000000 bytes)  cpu: 12%/0%",
            "[#7 192.0.2.9]  [ avg]  TX  999.34 Mbps (376000000 bytes in 3.01 s)",
        ]
    );
    let both = three_seconds(opts, &cmd(Direction::Both, Protocol::Udp));
    assert_eq!(both.len(), 8, "{both:?}");
    assert!(
        both[1].contains("RX") && both[1].contains("lost: 0"),
        "{both:?}"
    );
}

#[test]
fn quiet_shows_nothing_and_json_lines_keep_the_ends() {
    let quiet = Options {
        format: Format::Text,
        intervals: false,
    };
    assert!(quiet.is_silent());
    assert!(three_seconds(quiet, &cmd(Direction::Both, Protocol::Tcp)).is_empty());

    let json = Options {
        format: Format::JsonLines,
        intervals: true,
    };
    let lines = three_seconds(json, &cmd(Direction::ServerRx, Protocol::Tcp));
    assert_eq!(lines.len(), 4, "three intervals and the end: {lines:?}");
    let v: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, iv) in v[..3].iter().enumerate() {
        assert_eq!(iv["type"], "interval");
        assert_eq!(iv["session"], 7);
        assert_eq!(iv["peer"], "192.0.2.9");
        assert_eq!(iv["interval"]["index"], i as u64 + 1);
        assert!(iv["interval"]["tx"].is_null(), "the server only receives");
        assert_eq!(iv["interval"]["rx"]["bytes"], 62_500_000);
    }
    assert_eq!(v[3]["type"], "end");
    assert_eq!(v[3]["session"], 7);
    assert_eq!(v[3]["direction"], "transmit");
    assert_eq!(v[3]["end"]["rx"]["bytes"], 188_000_000);
    assert_eq!(v[3]["dropped_lines"], 0);

    let json_quiet = Options {
        format: Format::JsonLines,
        intervals: false,
    };
    let lines = three_seconds(json_quiet, &cmd(Direction::Both, Protocol::Tcp));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("\"type\":\"end\""));
}

/// 100 sessions against a stdout that does not move: no session waits, the lines beyond the
/// queue are dropped and counted, and each session's end says so once stdout moves again.
#[test]
fn a_stuck_stdout_never_blocks_a_session() {
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded();
    let opts = Options {
        format: Format::Text,
        intervals: true,
    };
    let (out, lines) = capture(opts, Some(gate_rx));
    let c = cmd(Direction::Both, Protocol::Tcp);
    let mut tickets: Vec<_> = (1..=100).map(|id| ticket(&out, &c, id)).collect();
    let start = std::time::Instant::now();
    for second in 1..=10 {
        for t in &mut tickets {
            t.interval(&interval(second, Duration::from_secs(1), 1000, false));
        }
    }
    // 2000 lines offered, at most QUEUE_LINES + 1 (one in the writer's hands) taken.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "sessions waited for stdout"
    );
    let o = outcome(10_000, 5_000);
    for t in &mut tickets {
        t.finish(&SessionSummary {
            connections: 1,
            outcome: &o,
        });
    }
    drop(tickets);
    drop(out);
    // Let stdout move: everything queued comes out.
    drop(gate_tx);
    let shown: Vec<String> = lines.iter().collect();
    assert!(shown.len() <= QUEUE_LINES + 2, "{}", shown.len());
    assert!(shown.len() >= QUEUE_LINES, "{}", shown.len());
    assert!(
        shown.iter().all(|l| l.starts_with("[#")),
        "only whole lines"
    );
}

#[test]
fn drops_are_reported_at_the_session_end() {
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded();
    let opts = Options {
        format: Format::Text,
        intervals: true,
    };
    let (out, lines) = capture(opts, Some(gate_rx));
    let c = cmd(Direction::ServerTx, Protocol::Tcp);
    let mut t = ticket(&out, &c, 3);
    for i in 1..=(QUEUE_LINES as u32 + 10) {
        t.interval(&interval(i, Duration::from_secs(1), 1000, false));
    }
    // Let the writer catch up, then end the session.
    for _ in 0..10 * (QUEUE_LINES + 10) {
        let _ = gate_tx.send(());
    }
    while !out.lines.is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = outcome(1000, 0);
    t.finish(&SessionSummary {
        connections: 1,
        outcome: &o,
    });
    drop(t);
    drop(out);
    drop(gate_tx);
    let shown: Vec<String> = lines.iter().collect();
    let note = shown.last().unwrap();
    assert!(
        note.starts_with("[#3 192.0.2.9]  ") && note.contains("output lines dropped"),
        "{note}"
    );
    let n: u64 = note
        .split_whitespace()
        .nth(2)
        .and_then(|w| w.parse().ok())
        .unwrap();
    assert!((9..=10).contains(&n), "{note}");
}

#[test]
fn flush_waits_for_the_queue_but_not_forever() {
    let opts = Options {
        format: Format::Text,
        intervals: true,
    };
    let (out, lines) = capture(opts, None);
    let c = cmd(Direction::ServerTx, Protocol::Tcp);
    let mut t = ticket(&out, &c, 1);
    for i in 1..=50 {
        t.interval(&interval(i, Duration::from_secs(1), 1000, false));
    }
    assert!(out.flush(Duration::from_secs(5)));
    assert_eq!(
        lines.try_iter().count(),
        50,
        "all written before flush returned"
    );

    let (_gate_tx, gate_rx) = crossbeam_channel::unbounded::<()>();
    let (stuck, _lines) = capture(opts, Some(gate_rx));
    let mut t = ticket(&stuck, &c, 2);
    t.interval(&interval(1, Duration::from_secs(1), 1000, false));
    let start = std::time::Instant::now();
    assert!(!stuck.flush(Duration::from_millis(200)));
    assert!(start.elapsed() < Duration::from_secs(3));
}
