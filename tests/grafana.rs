//! contrib/grafana/btest-server-pro.json queries only what the pro server exports: every metric
//! name in every panel's PromQL, every label it groups by and every label value it selects
//! appear in a real `/metrics` response of a running `btest-server-pro --http` after a test.
#![cfg(feature = "pro")]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const PRO: &str = env!("CARGO_BIN_EXE_btest-server-pro");
const BTEST: &str = env!("CARGO_BIN_EXE_btest");

/// A running pro server and its database, both gone on drop.
struct Pro {
    child: Child,
    db: String,
}

impl Drop for Pro {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for s in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{s}", self.db));
        }
    }
}

/// Starts `btest-server-pro --open` with HTTP on OS-chosen ports; returns (server, test port,
/// http port).
fn start() -> (Pro, u16, u16) {
    let db = std::env::temp_dir()
        .join(format!("btest-grafana-{}.db", std::process::id()))
        .display()
        .to_string();
    let _ = std::fs::remove_file(&db);
    let mut child = Command::new(PRO)
        .args(["--db", &db, "-P", "0", "--listen", "127.0.0.1", "--open"])
        .args(["--http", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn btest-server-pro");
    let stderr = child.stderr.take().expect("stderr");
    let pro = Pro { child, db };
    let port_of =
        |s: &str| -> Option<u16> { s.trim_end_matches('/').rsplit(':').next()?.parse().ok() };
    let (mut port, mut http) = (None, None);
    let mut lines = BufReader::new(stderr).lines();
    while port.is_none() || http.is_none() {
        let line = lines
            .next()
            .expect("server exited before it listened")
            .expect("stderr");
        if let Some(p) = line.split("http: serving on ").nth(1).and_then(port_of) {
            http = Some(p);
        } else if let Some(p) = line.split("listening on ").nth(1).and_then(port_of) {
            port = Some(p);
        }
    }
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (pro, port.unwrap(), http.unwrap())
}

fn metrics(http: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", http)).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let (head, body) = buf.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// Every `expr` in the dashboard, and the template variable queries.
fn queries(dash: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            out.push(t["expr"].as_str().expect("expr").to_owned());
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["definition"].as_str() {
            out.push(q.to_owned());
        }
    }
    out
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Words of `expr` that name btest metrics.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !ident_char(c))
        .filter(|w| w.starts_with("btest_"))
        .map(String::from)
        .collect()
}

/// `by (a, b)` label lists, and `label="value"` matchers (the `instance` label comes from
/// Prometheus, not from the server, and `=~` matchers are patterns; both are left out).
fn labels(expr: &str) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let mut by = BTreeSet::new();
    for part in expr.split("by (").skip(1) {
        let list = part.split(')').next().unwrap_or("");
        by.extend(list.split(',').map(|l| l.trim().to_owned()));
    }
    let mut exact = BTreeSet::new();
    for (i, _) in expr.match_indices("=\"") {
        if expr[..i].ends_with(['=', '!', '~']) {
            continue;
        }
        let name: String = expr[..i]
            .chars()
            .rev()
            .take_while(|c| ident_char(*c))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let value = expr[i + 2..].split('"').next().unwrap_or("").to_owned();
        exact.insert((name, value));
    }
    by.remove("instance");
    exact.retain(|(n, _)| n != "instance");
    (by, exact)
}

#[test]
fn every_dashboard_query_names_exported_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/grafana/btest-server-pro.json");
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    let exprs = queries(&dash);
    assert!(exprs.len() >= 8, "{exprs:?}");

    let (_pro, port, http) = start();
    let out = Command::new(BTEST)
        .args([
            "-c",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-t",
            "-r",
            "-d",
            "1",
        ])
        .output()
        .expect("run client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = metrics(http);
    let samples: Vec<&str> = body.lines().filter(|l| !l.starts_with('#')).collect();
    let sample_of = |name: &str| -> Vec<&str> {
        samples
            .iter()
            .copied()
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .collect()
    };

    let mut checked = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "query names no btest metric: {expr}");
        let (by, exact) = labels(expr);
        for name in &names {
            let lines = sample_of(name);
            assert!(
                !lines.is_empty(),
                "{name} (in `{expr}`) is not in /metrics:\n{body}"
            );
            for l in &by {
                assert!(
                    lines.iter().any(|s| s.contains(&format!("{l}=\""))),
                    "{name} has no label {l} (grouped by in `{expr}`)"
                );
            }
            for (l, v) in &exact {
                assert!(
                    lines.iter().any(|s| s.contains(&format!("{l}=\"{v}\""))),
                    "no {name} series with {l}=\"{v}\" (selected in `{expr}`)"
                );
            }
            checked.insert(name.clone());
        }
    }
    // The test moved data, so the throughput the dashboard draws is really there.
    let moved: f64 = sample_of("btest_bytes_total")
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(moved > 0.0, "no bytes counted after a test:\n{body}");
    eprintln!("dashboard metrics found in /metrics: {checked:?}");
}
