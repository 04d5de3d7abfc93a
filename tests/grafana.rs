//! contrib/grafana/btest-server-pro.json queries only what the pro server exports: every metric
//! name in every panel's PromQL, every label it groups by and every label value it selects
//! appear in a real `/metrics` response of a running `btest-server-pro --http` after a test.
#![cfg(feature = "pro")]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::pro::TempDb;
use common::web::get;
use common::{TestServer, text};
use serde_json::Value;

/// `/metrics` once the server has closed every session: the client's exit and the server's
/// end of the same test are a few milliseconds apart, and a session's bytes are counted when
/// its interval or its end is.
fn metrics(http: u16) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = get(http, "/metrics", None);
        assert_eq!(r.status, 200, "{}", r.body);
        let idle = r.body.lines().any(|l| l == "btest_sessions_running 0");
        if idle || std::time::Instant::now() >= deadline {
            return r.body;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
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

    let db = TempDb::new("grafana");
    let pro = TestServer::start_pro_http(&db, &["--open"]);
    let out = pro.client(&["-t", "-r", "-d", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = metrics(pro.http);
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
