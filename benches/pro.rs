//! btest-server-pro benchmarks. Prints `bench=<name> value=<n> unit=<u>` lines:
//!
//! * `pro_admission_us`: median time of one `admit` with a warm budget cache (user and address
//!   budgets set, so both subjects are checked), in microseconds.
//! * `pro_writer_rows_per_s`: interval rows the writer thread commits per second.
//! * `pro_tcp_throughput_ratio`: TCP receive throughput through `btest-server-pro` (budgets
//!   charged every interval) over `btest -s`, same client, runs interleaved.
//!
//! `BENCH_SECS` (default 3) sets the length of each throughput test (4 rounds of each).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use btest_rs::handshake::AuthMethod;
use btest_rs::policy::{Admission, AdmissionRequest};
use btest_rs::pro::admission::{Limits as ConnLimits, ProAdmission};
use btest_rs::pro::db::Db;
use btest_rs::pro::quota::{Dir, Limits, Period, QuotaConfig, Quotas, SystemClock, Tz};
use btest_rs::pro::writer::{Op, Writer};
use btest_rs::proto::{Command as TestCommand, Direction, Payload, Protocol};
use common::pro::{PRO, TempDb};
use common::{BTEST, TestServer, client, summary_bytes};

fn report(name: &str, value: f64, unit: &str) {
    println!("bench={name} value={value:.2} unit={unit}");
}

fn admission() {
    let path = TempDb::new("bench-admit");
    let db = Db::open(&path.0).expect("db");
    let writer = Writer::start(db.connection().expect("conn")).expect("writer");
    let mut limits = Limits::default();
    limits.of_mut(Period::Day).set(Dir::Total, 1 << 50);
    let quotas = Arc::new(Quotas::new(
        db.pool().clone(),
        Arc::new(SystemClock),
        QuotaConfig {
            tz: Tz::default(),
            defaults_user: limits,
            defaults_ip: limits,
            ttl: Duration::from_secs(5),
        },
    ));
    let adm = ProAdmission::new(
        quotas,
        writer.sender(),
        ConnLimits {
            max_duration: None,
            max_conn_per_ip: 1_000_000,
            ipv6_prefix: 64,
        },
    );
    let cmd = TestCommand {
        protocol: Protocol::Tcp,
        direction: Direction::ServerTx,
        payload: Payload::Zeros,
        tcp_conn_count: 0,
        tx_size: 32768,
        client_buf_size: 0,
        remote_tx_speed: 0,
        local_tx_speed: 0,
    };
    let peer: SocketAddr = "192.0.2.7:40000".parse().expect("addr");
    let req = AdmissionRequest {
        peer,
        method: AuthMethod::EcSrp5,
        user: b"alice",
        cmd: &cmd,
    };
    drop(adm.admit(&req).expect("warm-up admit"));
    let mut times = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let t = Instant::now();
        let ticket = adm.admit(&req).expect("admit");
        times.push(t.elapsed());
        drop(ticket);
    }
    times.sort();
    report(
        "pro_admission_us",
        times[times.len() / 2].as_secs_f64() * 1e6,
        "us",
    );
    writer.flush();
    drop(writer);
}

fn writer_rows() {
    let path = TempDb::new("bench-writer");
    let db = Db::open(&path.0).expect("db");
    let writer = Writer::start(db.connection().expect("conn")).expect("writer");
    let tx = writer.sender();
    const ROWS: u32 = 200_000;
    let start = Instant::now();
    for i in 0..ROWS {
        let _ = tx.send(Op::Interval {
            session: btest_rs::pro::writer::RowId::known(i64::from(i % 50 + 1)),
            idx: i,
            at_ms: 0,
            bytes_in: 1_000_000,
            bytes_out: 0,
        });
    }
    writer.flush();
    let secs = start.elapsed().as_secs_f64();
    report("pro_writer_rows_per_s", f64::from(ROWS) / secs, "rows/s");
    drop(writer);
}

fn secs() -> u64 {
    common::env_u64("BENCH_SECS", 3)
}

/// A quiet server (`bin ARGS -q`) on 127.0.0.1, a port it chooses (read from its socket).
fn start(bin: &str, args: &[&str]) -> TestServer {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .args(["-q", "--listen", "127.0.0.1", "-P", "0"]);
    TestServer::spawn_quiet(cmd)
}

/// Bytes received by the client in one receive test.
fn receive(port: u16) -> u64 {
    let out = client(port, &["-q", "-r", "-d", &secs().to_string()]);
    summary_bytes(&out.stdout, "RX")
}

fn throughput_ratio() {
    let path = TempDb::new("bench-tcp");
    let db = path.path().to_owned();
    let (mut plain, mut pro) = (0u64, 0u64);
    // Interleaved, and the order flipped every round, so drift in the machine's load (other
    // builds on a two-core box) falls on both servers alike.
    const ROUNDS: u64 = 4;
    for round in 0..ROUNDS {
        for pro_turn in [round % 2 == 1, round % 2 == 0] {
            if pro_turn {
                let server = start(PRO, &["--db", &db, "--open", "--ip-daily-quota", "1000T"]);
                pro += receive(server.port);
                drop(server);
            } else {
                let server = start(BTEST, &["-s"]);
                plain += receive(server.port);
                drop(server);
            }
        }
    }
    let s = (ROUNDS * secs()) as f64;
    println!(
        "# tcp receive: btest -s {:.0} Mbps, btest-server-pro {:.0} Mbps",
        plain as f64 * 8.0 / s / 1e6,
        pro as f64 * 8.0 / s / 1e6
    );
    report(
        "pro_tcp_throughput_ratio",
        pro as f64 / (plain as f64).max(1.0),
        "ratio",
    );
}

fn main() {
    admission();
    writer_rows();
    throughput_ratio();
}
