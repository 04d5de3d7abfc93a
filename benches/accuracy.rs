//! How close a TCP sender's report is to what the receiver counted, over a shaped 100 Mbit/s
//! link (two namespaces, `tbf`; see `tests/common/shaped_link.rs`), with 20 connections, the
//! RouterOS default. Prints `bench=accuracy_tcp_{send,recv}_20conn_pct`: reported minus
//! receiver-counted, as a percentage of receiver-counted (goal: within ±1 %). Needs root;
//! otherwise says why on a `# ` line. `BENCH_SECS` (default 5) sets the test length.

#[path = "../tests/common/mod.rs"]
mod common;

use common::shaped_link::{Link, TCP_CAPACITY_BPS};
use common::{parse, summary};

/// The rate (bit/s) and bytes on the `[ avg]` line of `dir` in the client's output.
fn rate_and_bytes(stdout: &[u8], dir: &str) -> Option<(f64, u64)> {
    summary(&parse(stdout), dir).map(|l| (l.bps, l.bytes))
}

/// One 20-connection test; `send` = the client transmits. Returns the reported and the
/// received rate (bit/s) and the error in percent: in rate when the client sends (the server
/// goes on receiving what was on its way at the stop), in bytes when it receives (its stop
/// ends both counts, while the server's clock starts and stops a little apart from ours).
fn run(send: bool, secs: &str) -> Result<(f64, f64, f64), String> {
    let link = Link::new(if send { "bs" } else { "br" })?;
    let server = link.server(&[]);
    let dir = if send { "-t" } else { "-r" };
    let out = link.client(&server, &[dir, "--connections", "20", "-d", secs, "-q"]);
    let (server_tx, server_rx, server_secs) = server.session_end(1);
    let server_bps = |bytes: u64| bytes as f64 * 8.0 / server_secs.max(1e-3);
    let pct = |ours: f64, theirs: f64| (ours - theirs) * 100.0 / theirs;
    if send {
        let (reported, _) = rate_and_bytes(&out.stdout, "TX").ok_or("no TX summary")?;
        let received = server_bps(server_rx);
        Ok((reported, received, pct(reported, received)))
    } else {
        let (received, got) = rate_and_bytes(&out.stdout, "RX").ok_or("no RX summary")?;
        let off = pct(server_tx as f64, got as f64);
        Ok((server_bps(server_tx), received, off))
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs = std::env::var("BENCH_SECS").unwrap_or_else(|_| "5".into());
    for (name, send) in [
        ("accuracy_tcp_send_20conn_pct", true),
        ("accuracy_tcp_recv_20conn_pct", false),
    ] {
        match run(send, &secs) {
            Ok((reported, received, pct)) => {
                println!(
                    "# {name}: reported {:.2} Mbit/s, receiver counted {:.2} Mbit/s, link \
                     payload capacity {:.2} Mbit/s",
                    reported / 1e6,
                    received / 1e6,
                    TCP_CAPACITY_BPS / 1e6
                );
                println!("bench={name} value={pct:.2} unit=%");
            }
            Err(e) => println!("# {name}: skipped: {e}"),
        }
    }
}
