//! End-to-end tests of `btest-server-pro --http`: the real server and the real `btest` client,
//! then every endpoint read over a tiny HTTP client on `std` and compared with the database
//! (opened read-only) and with the clients' own summaries.
#![cfg(feature = "pro")]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pro::{PRO, TempDb};
use common::web::{get, get_from, parse_response, raw};
use common::{TestServer, avg_bytes, skip, spawn_client, text};
use serde_json::Value;

const TOKEN: &str = "s3cret-token-for-tests";

/// One sample of the exposition: name and sorted labels.
type Series = (String, BTreeMap<String, String>);

/// A strict small parser of the Prometheus text format 0.0.4: every line is a HELP, a TYPE, a
/// comment or a sample `name{labels} value`; every sample's family has exactly one HELP and
/// TYPE before it; counters are named `_total` and not negative.
fn parse_prometheus(body: &str) -> HashMap<Series, f64> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut help = HashMap::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    assert!(body.ends_with('\n'), "exposition must end with a newline");
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (n, h) = rest.split_once(' ').expect("HELP text");
            assert!(name_ok(n) && !h.is_empty(), "{line}");
            assert!(
                help.insert(n.to_owned(), h.to_owned()).is_none(),
                "two HELP: {line}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (n, t) = rest.split_once(' ').expect("TYPE kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                "{line}"
            );
            assert!(
                types.insert(n.to_owned(), t.to_owned()).is_none(),
                "two TYPE: {line}"
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        assert!(!line.is_empty(), "empty line in the exposition");
        let (series, value) = line.rsplit_once(' ').expect("sample value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                let l = l.strip_suffix('}').expect("closing brace");
                let mut map = BTreeMap::new();
                for pair in l.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').expect("label =");
                    assert!(name_ok(k), "label name {k}");
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("label value quoted: {line}"));
                    assert!(!v.contains(['"', '\\', '\n']), "{line}");
                    map.insert(k.to_owned(), v.to_owned());
                }
                (n, map)
            }
            None => (series, BTreeMap::new()),
        };
        assert!(name_ok(name), "metric name {name}");
        let kind = types
            .get(name)
            .unwrap_or_else(|| panic!("sample before its TYPE: {line}"));
        assert!(help.contains_key(name), "sample without HELP: {line}");
        if kind == "counter" {
            assert!(name.ends_with("_total") && value >= 0.0, "{line}");
        }
        let key = (name.to_owned(), labels);
        assert!(
            samples.insert(key, value).is_none(),
            "duplicate series: {line}"
        );
    }
    samples
}

fn metric(m: &HashMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> i64 {
    let key = (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    *m.get(&key)
        .unwrap_or_else(|| panic!("no series {name}{labels:?}")) as i64
}

/// Waits until the database has `n` finished sessions and none running: the writer commits a
/// moment after the client exits.
fn wait_settled(f: &TempDb, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let done = f.q("SELECT count(*) FROM sessions WHERE outcome != 'running'");
        let running = f.q("SELECT count(*) FROM sessions WHERE outcome = 'running'");
        if done >= n && running == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{done} of {n} sessions settled");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn u(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

#[test]
fn every_endpoint_agrees_with_the_database_and_the_clients() {
    let f = TempDb::new("http-all");
    f.admin_ok(&["user", "add", "alice", "pw"]);
    f.admin_ok(&[
        "user",
        "set-quota",
        "alice",
        "--monthly",
        "2G",
        "--direction",
        "in",
    ]);
    f.admin_ok(&["ip", "set-quota", "127.0.0.1", "--weekly", "3G"]);
    let token = f.write_token(&format!("  {TOKEN}\n"), 0o600);
    let s = TestServer::start_pro_http(
        &f,
        &[
            "--ip-daily-quota",
            "1G",
            "--daily-quota",
            "500M",
            "--http-admin-token-file",
            &token,
        ],
    );
    let rx = s.client_quiet(&["-a", "alice", "-p", "pw", "-r", "-b", "8M", "-d", "2"]);
    assert!(rx.status.success(), "{}", text(&rx.stderr));
    let tx = s.client_quiet(&["-a", "alice", "-p", "pw", "-t", "-b", "8M", "-d", "2"]);
    assert!(tx.status.success(), "{}", text(&tx.stderr));
    let bad = s.client_quiet(&["-a", "alice", "-p", "wrong", "-r", "-d", "1"]);
    assert_eq!(bad.status.code(), Some(3));
    wait_settled(&f, 3);

    // Usage of the caller's own address: equal to the stored buckets and, within the bytes in
    // flight at a test's end, to what the clients counted; limits from flags and overrides.
    let usage = get(s.http, "/api/ip/127.0.0.1/usage", None);
    assert_eq!(usage.status, 200, "{}", usage.body);
    assert_eq!(usage.headers["content-type"], "application/json");
    let j = usage.json();
    let db_in = f.q("SELECT sum(bytes_in) FROM usage WHERE kind = 'ip'");
    let db_out = f.q("SELECT sum(bytes_out) FROM usage WHERE kind = 'ip'");
    let day = &j["periods"]["day"];
    assert_eq!(u(&day["used"]["in"]), db_in);
    assert_eq!(u(&day["used"]["out"]), db_out);
    assert_eq!(u(&day["used"]["total"]), db_in + db_out);
    let client_out = avg_bytes(&rx, "RX") as i64;
    let client_in = avg_bytes(&tx, "TX") as i64;
    assert!(client_out > 1_000_000 && client_in > 1_000_000);
    assert!(
        (db_out - client_out).abs() <= client_out / 50,
        "{db_out} vs {client_out}"
    );
    assert!(
        (db_in - client_in).abs() <= client_in / 50,
        "{db_in} vs {client_in}"
    );
    assert_eq!(u(&day["limit"]["total"]), 1_000_000_000);
    assert_eq!(
        u(&day["remaining"]["total"]),
        1_000_000_000 - db_in - db_out
    );
    assert!(day["limit"]["in"].is_null());
    assert_eq!(u(&j["periods"]["week"]["limit"]["total"]), 3_000_000_000);
    assert!(j["periods"]["month"]["limit"]["total"].is_null());
    assert_eq!(j["tz"], "UTC");

    // Sessions of the address: the database's rows; no user names without the token.
    let list = get(s.http, "/api/ip/127.0.0.1/sessions?limit=10", None);
    assert_eq!(list.status, 200, "{}", list.body);
    let rows = list.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(rows.len() as i64, f.q("SELECT count(*) FROM sessions"));
    for r in &rows {
        let id = u(&r["id"]);
        assert!(r.get("user").is_none(), "user name leaked: {r}");
        assert!(!list.body.contains("alice"), "{}", list.body);
        assert_eq!(
            u(&r["bytes_in"]),
            f.q(&format!("SELECT bytes_in FROM sessions WHERE id = {id}"))
        );
        assert_eq!(
            u(&r["bytes_out"]),
            f.q(&format!("SELECT bytes_out FROM sessions WHERE id = {id}"))
        );
    }
    assert_eq!(u(&rows[0]["id"]), f.q("SELECT max(id) FROM sessions"));
    let one = get(s.http, "/api/ip/127.0.0.1/sessions?limit=1", None).json();
    assert_eq!(one["sessions"].as_array().unwrap().len(), 1);
    let admin_list = get(s.http, "/api/ip/127.0.0.1/sessions", Some(TOKEN)).json();
    assert_eq!(admin_list["sessions"][0]["user"], "alice");

    // One session with its intervals, as stored.
    let rx_id = f.q("SELECT min(id) FROM sessions WHERE direction = 'receive'");
    let one = get(s.http, &format!("/api/session/{rx_id}"), None);
    assert_eq!(one.status, 200, "{}", one.body);
    let j = one.json();
    assert_eq!(u(&j["session"]["id"]), rx_id);
    assert_eq!(j["session"]["outcome"], "completed");
    let ivs = j["intervals"].as_array().unwrap();
    assert_eq!(
        ivs.len() as i64,
        f.q(&format!(
            "SELECT count(*) FROM session_intervals WHERE session_id = {rx_id}"
        ))
    );
    assert!(ivs.len() >= 2);
    let sum: i64 = ivs.iter().map(|i| u(&i["bytes_out"])).sum();
    assert_eq!(
        sum,
        f.q(&format!(
            "SELECT sum(bytes_out) FROM session_intervals WHERE session_id = {rx_id}"
        ))
    );
    assert!(sum <= u(&j["session"]["bytes_out"]));
    assert!(ivs[0]["out_bps"].as_f64().unwrap() > 4e6, "{}", ivs[0]);

    // User usage: admin only, then equal to the user's buckets and its own budgets.
    assert_eq!(get(s.http, "/api/user/alice/usage", None).status, 401);
    assert_eq!(
        get(s.http, "/api/user/alice/usage", Some("nope")).status,
        403
    );
    let uj = get(s.http, "/api/user/alice/usage", Some(TOKEN));
    assert_eq!(uj.status, 200, "{}", uj.body);
    let uj = uj.json();
    assert_eq!(
        u(&uj["periods"]["day"]["used"]["total"]),
        f.q("SELECT sum(bytes_in + bytes_out) FROM usage WHERE kind = 'user'")
    );
    assert_eq!(u(&uj["periods"]["day"]["limit"]["total"]), 500_000_000);
    assert_eq!(u(&uj["periods"]["month"]["limit"]["in"]), 2_000_000_000);

    // Metrics: counts equal the database.
    let m = get(s.http, "/metrics", None);
    assert_eq!(m.status, 200);
    assert!(m.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    let m = parse_prometheus(&m.body);
    assert_eq!(metric(&m, "btest_sessions_running", &[]), 0);
    assert_eq!(
        metric(&m, "btest_sessions_total", &[("outcome", "completed")]),
        f.q("SELECT count(*) FROM sessions WHERE outcome = 'completed'")
    );
    assert_eq!(
        metric(&m, "btest_sessions_total", &[("outcome", "auth_failed")]),
        1
    );
    assert_eq!(
        metric(&m, "btest_auth_failures_total", &[("method", "ecsrp5")]),
        1
    );
    assert_eq!(metric(&m, "btest_refusals_total", &[("reason", "auth")]), 1);
    assert_eq!(
        metric(
            &m,
            "btest_bytes_total",
            &[("direction", "in"), ("protocol", "tcp")]
        ),
        f.q("SELECT sum(bytes_in) FROM sessions")
    );
    assert_eq!(
        metric(
            &m,
            "btest_bytes_total",
            &[("direction", "out"), ("protocol", "tcp")]
        ),
        f.q("SELECT sum(bytes_out) FROM sessions")
    );
    assert_eq!(
        metric(
            &m,
            "btest_bytes_total",
            &[("direction", "out"), ("protocol", "udp")]
        ),
        0
    );
    assert_eq!(metric(&m, "btest_db_writer_queue_depth", &[]), 0);

    // The live view while a test runs: admin only, with a current rate.
    let running = spawn_client(
        s.port,
        &["-q", "-a", "alice", "-p", "pw", "-r", "-b", "8M", "-d", "3"],
    );
    std::thread::sleep(Duration::from_millis(1800));
    assert_eq!(get(s.http, "/api/sessions/live", None).status, 401);
    assert_eq!(get(s.http, "/api/sessions/live", Some("x")).status, 403);
    let live = get(s.http, "/api/sessions/live", Some(TOKEN));
    assert_eq!(live.status, 200, "{}", live.body);
    let live = live.json();
    let ls = live["sessions"].as_array().unwrap();
    assert_eq!(ls.len(), 1, "{live}");
    assert_eq!(ls[0]["user"], "alice");
    assert_eq!(ls[0]["peer"], "127.0.0.1");
    let rate = ls[0]["rate_out_bps"].as_f64().unwrap();
    assert!((4e6..12e6).contains(&rate), "{rate}");
    let m = parse_prometheus(&get(s.http, "/metrics", None).body);
    assert_eq!(metric(&m, "btest_sessions_running", &[]), 1);
    assert!(running.wait_with_output().unwrap().status.success());
    wait_settled(&f, 4);
    let live = get(s.http, "/api/sessions/live", Some(TOKEN)).json();
    assert_eq!(live["sessions"].as_array().unwrap().len(), 0);

    isolation(&s, rx_id);
    malformed(&s);
    let log = s.stop();
    assert!(!log.contains("panicked"), "{log}");
}

/// Another address (127.0.0.2) sees nothing of 127.0.0.1 without the token.
fn isolation(s: &TestServer, id: i64) {
    if !cfg!(target_os = "linux") {
        skip("address isolation needs 127.0.0.2 on loopback (Linux)");
        return;
    }
    let other = Some(Ipv4Addr::new(127, 0, 0, 2));
    for path in [
        "/api/ip/127.0.0.1/sessions".to_owned(),
        "/api/ip/127.0.0.1/usage".to_owned(),
        format!("/api/session/{id}"),
        "/ip/127.0.0.1".to_owned(),
        // The same address spelled as IPv4-mapped IPv6 is the same address.
        "/api/ip/::ffff:127.0.0.1/sessions".to_owned(),
    ] {
        let r = get_from(s.http, other, &path, None);
        // Another address's session answers as a missing one would (ids cannot be probed).
        let want = if path.starts_with("/api/session/") {
            404
        } else {
            403
        };
        assert_eq!(r.status, want, "{path}: {}", r.body);
        assert!(!r.body.contains("bytes"), "{}", r.body);
    }
    let own = get_from(s.http, other, "/api/ip/127.0.0.2/sessions", None);
    assert_eq!(own.status, 200);
    assert_eq!(own.json()["sessions"].as_array().unwrap().len(), 0);
    let page = get_from(s.http, other, "/", None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("127.0.0.2") && !page.body.contains("127.0.0.1"));
    // The admin may read any address from anywhere.
    let r = get_from(s.http, other, "/api/ip/127.0.0.1/sessions", Some(TOKEN));
    assert_eq!(r.status, 200);
    let r = get_from(s.http, other, &format!("/api/session/{id}"), Some(TOKEN));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["session"]["user"], "alice");
}

/// Bad requests get 4xx, slow ones are cut off, and the server keeps serving.
fn malformed(s: &TestServer) {
    // A client that sends half a request and stalls holds one handler for the head deadline
    // only; the others keep answering meanwhile.
    let mut slow = TcpStream::connect(("127.0.0.1", s.http)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost:").unwrap();
    let started = Instant::now();
    for (path, status) in [
        ("/api/ip/not-an-ip/usage", 400),
        ("/api/session/abc", 400),
        ("/api/session/-1", 400),
        ("/api/session/99999", 404),
        ("//..", 404),
        ("/../../etc/passwd", 404),
        ("/api/ip/127.0.0.1/sessions?limit=0", 400),
        ("/api/ip/127.0.0.1/sessions?limit=x", 400),
        ("/api/ip/127.0.0.1/sessions?limit=100000", 400),
        ("/%zz", 400),
        ("/api/user/%ff/usage", 400),
        ("/metrics/", 404),
        ("/nope", 404),
    ] {
        let r = get(s.http, path, None);
        assert_eq!(r.status, status, "{path}: {}", r.body);
    }
    let long = format!("/{}", "a".repeat(10_000));
    assert_eq!(get(s.http, &long, None).status, 414);
    let mid = format!("/{}", "a".repeat(3_000));
    assert_eq!(get(s.http, &mid, None).status, 414);
    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "b".repeat(20_000));
    assert_eq!(raw(s.http, None, huge.as_bytes()).status, 431);
    let post = raw(
        s.http,
        None,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(post.status, 405);
    assert_eq!(post.headers["allow"], "GET, HEAD");
    assert_eq!(raw(s.http, None, b"GARBAGE\r\n\r\n").status, 400);
    assert_eq!(raw(s.http, None, b"GET / HTTP/9.9\r\n\r\n").status, 400);
    let head = raw(s.http, None, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "others waited on the slow client"
    );
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    assert_eq!(parse_response(&buf).status, 408);
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(get(s.http, "/metrics", None).status, 200, "still serving");
}

#[test]
fn admin_endpoints_are_off_without_a_token_file_and_exposed_tokens_refuse_to_start() {
    let f = TempDb::new("http-notoken");
    let s = TestServer::start_pro_http(&f, &["--open"]);
    let r = get(s.http, "/api/sessions/live", None);
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(get(s.http, "/api/user/x/usage", None).status, 404);
    assert_eq!(get(s.http, "/api/sessions/live", Some(TOKEN)).status, 403);
    assert_eq!(get(s.http, "/metrics", None).status, 200);
    s.stop();
    for mode in [0o644, 0o640] {
        let token = f.write_token(&format!("  {TOKEN}\n"), mode);
        let out = f.run_server(&["--http", "127.0.0.1:0", "--http-admin-token-file", &token]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("chmod 600"),
            "{}",
            text(&out.stderr)
        );
    }
    std::fs::write(f.token(), " \n").unwrap();
    std::fs::set_permissions(f.token(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = f.run_server(&[
        "--http",
        "127.0.0.1:0",
        "--http-admin-token-file",
        &f.token(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is empty"),
        "{}",
        text(&out.stderr)
    );
    let out = f.admin(&["--http", "localhost"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn pages_render_in_headless_chromium_with_the_svg_chart() {
    let f = TempDb::new("http-chromium");
    let s = TestServer::start_pro_http(&f, &["--open", "--ip-daily-quota", "1G"]);
    let out = s.client_quiet(&["-r", "-b", "8M", "-d", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_settled(&f, 1);
    // What the browser will load, checked without one first.
    for path in ["/", "/ip/127.0.0.1"] {
        let page = get(s.http, path, None);
        assert_eq!(page.status, 200);
        assert!(page.headers["content-type"].starts_with("text/html"));
        let csp = &page.headers["content-security-policy"];
        assert!(csp.contains("default-src 'none'"), "{csp}");
        // The one style sheet is admitted by its hash; no inline style is allowed.
        assert!(csp.contains("style-src 'sha256-"), "{csp}");
        assert!(!csp.contains("inline"), "{csp}");
        assert!(!page.body.contains("style=\""), "{path}: a style attribute");
        for needle in [
            "<svg id=\"chart\"",
            "<polyline class=\"tx\"",
            "id=\"usage\"",
        ] {
            assert!(page.body.contains(needle), "{path}: {needle}");
        }
        for external in ["http://", "https://", "<script", "<link", "src="] {
            let outside_svg_ns = page.body.replace("http://www.w3.org/2000/svg", "");
            assert!(!outside_svg_ns.contains(external), "{path}: {external}");
        }
    }
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(chromium) = chromium else {
        skip("Chromium is not installed (apt-get install chromium to run it)");
        return;
    };
    let profile = std::env::temp_dir().join(format!("btest-http-chromium-{}", std::process::id()));
    let url = format!("http://127.0.0.1:{}/", s.http);
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&profile);
            panic!("chromium did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let dom = reader.join().unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(dom.contains("<svg"), "no SVG in the DOM: {dom}");
    assert!(dom.contains("id=\"chart\""), "{dom}");
    assert!(dom.contains("<polyline"), "{dom}");
    assert!(dom.contains("Bandwidth tests from 127.0.0.1"), "{dom}");
    s.stop();
}

#[test]
fn man_page_documents_every_flag_of_help() {
    let help = Command::new(PRO).arg("--help").output().unwrap();
    let help = text(&help.stdout);
    let man = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/btest-server-pro.1"
    ))
    .unwrap()
    .replace("\\-", "-");
    let flags: Vec<&str> = help
        .split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == ',')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .collect();
    assert!(flags.contains(&"--http") && flags.contains(&"--http-admin-token-file"));
    for flag in flags {
        assert!(
            man.contains(flag),
            "{flag} is not in docs/btest-server-pro.1"
        );
    }
}
