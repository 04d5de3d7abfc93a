//! Output sinks end to end: CSV, JSON, JSON lines, syslog, verbosity; the real binary over
//! loopback.

mod common;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn temp_path(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("btest-outputs-{}-{tag}.csv", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

fn ok(out: &std::process::Output) {
    assert_eq!(code(out), 0, "client failed: {}", stderr(out));
}

const HEADER: &str = "timestamp,host,port,protocol,direction,duration_s,tx_avg_mbps,\
rx_avg_mbps,tx_bytes,rx_bytes,lost_packets,local_cpu_pct,remote_cpu_pct,auth_type";

#[test]
fn unwritable_csv_is_exit_2_naming_the_path_before_connecting() {
    let path = temp_path("missing").join("no").join("such.csv");
    let p = path.to_str().unwrap();
    // Port 1 on loopback: nothing listens, so exit 2 (not 1) proves the file came first.
    let out = client(1, &["-r", "-d", "1", "--csv", p]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains(p), "{}", stderr(&out));

    let out = Command::new(BTEST)
        .args(["-s", "-P", "0", "--listen", "127.0.0.1", "--csv", p])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains(p));
}

/// Splits a row without quoted fields (none of ours has one here).
fn fields(line: &str) -> Vec<String> {
    line.split(',').map(str::to_string).collect()
}

#[test]
fn csv_header_once_and_rows_match_the_summary() {
    let client_csv = temp_path("client");
    let server_csv = temp_path("server");
    let server = TestServer::start(&["--csv", server_csv.to_str().unwrap()]);
    let c = client_csv.to_str().unwrap();
    let first = client(server.port, &["-r", "-d", "1.5", "-b", "40M", "--csv", c]);
    ok(&first);
    let second = client(
        server.port,
        &["-t", "-r", "-d", "1", "-b", "30M", "--csv", c],
    );
    ok(&second);

    let text = std::fs::read_to_string(&client_csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], HEADER);
    assert_eq!(text.matches("timestamp,").count(), 1);
    let header: Vec<&str> = HEADER.split(',').collect();

    for (line, out, dirs) in [
        (lines[1], &first, &["RX"][..]),
        (lines[2], &second, &["TX", "RX"][..]),
    ] {
        let row = fields(line);
        assert_eq!(row.len(), header.len(), "{line}");
        let col = |name: &str| &row[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!(col("host"), "127.0.0.1");
        assert_eq!(col("port"), &server.port.to_string());
        assert_eq!(col("protocol"), "tcp");
        assert_eq!(col("auth_type"), "none");
        assert_eq!(col("lost_packets"), "0");
        let lines = parse(&out.stdout);
        for dir in ["TX", "RX"] {
            let (bytes_col, mbps_col) = if dir == "TX" {
                ("tx_bytes", "tx_avg_mbps")
            } else {
                ("rx_bytes", "rx_avg_mbps")
            };
            match summary(&lines, dir) {
                Some(sum) if dirs.contains(&dir) => {
                    assert_eq!(col(bytes_col), &sum.bytes.to_string(), "{dir} bytes");
                    // Both rates come from the same bytes and seconds: equal to 2 decimals.
                    let printed = String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .find(|l| l.starts_with("[ avg]") && l.contains(dir))
                        .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
                        .unwrap();
                    assert_eq!(col(mbps_col), &printed, "{dir} Mbps ({line})");
                    assert_eq!(col("duration_s"), &format!("{:.2}", sum.secs.unwrap()));
                }
                _ => {
                    assert_eq!(col(bytes_col), "0");
                    assert!(!dirs.contains(&dir));
                }
            }
        }
        let cpu: u8 = col("local_cpu_pct").parse().expect("local CPU measured");
        assert!(cpu <= 100);
    }
    assert_eq!(fields(lines[1])[4], "receive");
    assert_eq!(fields(lines[2])[4], "both");

    // The server's rows, one per session, from its own point of view.
    server.wait_for_log("session 2 end", Duration::from_secs(5));
    let text = std::fs::read_to_string(&server_csv).unwrap();
    let _ = std::fs::remove_file(&server_csv);
    let _ = std::fs::remove_file(&client_csv);
    let rows: Vec<Vec<String>> = text.lines().skip(1).map(fields).collect();
    assert_eq!(text.lines().next(), Some(HEADER));
    assert_eq!(rows.len(), 2, "{text}");
    assert_eq!(rows[0][1], "127.0.0.1");
    assert_eq!(rows[0][2], server.port.to_string(), "server's control port");
    assert_eq!(rows[0][4], "receive");
    let server_tx: u64 = rows[0][8].parse().unwrap();
    assert!(server_tx > 0, "the server sent in a receive test: {text}");
    assert_eq!(rows[0][9], "0");
    assert_eq!(rows[1][4], "both");
}

fn sum_intervals(intervals: &[Value], dir: &str) -> u64 {
    intervals
        .iter()
        .map(|iv| iv[dir]["bytes"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn json_document_parses_and_its_totals_are_the_sum_of_intervals() {
    let server = TestServer::start(&[]);
    let out = client(
        server.port,
        &["-t", "-r", "-d", "2", "--connections", "2", "--json"],
    );
    ok(&out);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", stderr(&out)));
    let start = &doc["start"];
    assert_eq!(start["host"], "127.0.0.1");
    assert_eq!(start["port"], server.port);
    assert_eq!(start["protocol"], "tcp");
    assert_eq!(start["direction"], "both");
    assert_eq!(start["connections"], 2);
    assert_eq!(start["duration_s"], 2.0);
    assert_eq!(start["auth"], "none");

    let intervals = doc["intervals"].as_array().unwrap();
    assert!(intervals.len() >= 2);
    let end = &doc["end"];
    for dir in ["tx", "rx"] {
        let total = sum_intervals(intervals, dir);
        assert!(total > 0, "{dir} moved no data");
        assert_eq!(end[dir]["bytes"].as_u64(), Some(total), "{dir}");
    }
    let secs: f64 = intervals
        .iter()
        .map(|iv| iv["duration_s"].as_f64().unwrap())
        .sum();
    assert!((end["seconds"].as_f64().unwrap() - secs).abs() < 1e-5);
    for iv in intervals {
        let streams = iv["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 2);
        let tx: u64 = streams
            .iter()
            .map(|s| s["tx_bytes"].as_u64().unwrap())
            .sum();
        assert_eq!(iv["tx"]["bytes"].as_u64(), Some(tx));
        let local = iv["cpu"]["local"].as_u64().expect("local CPU");
        assert!(local <= 100);
        let rtt = &iv["tcp"]["rtt_us"];
        assert!(rtt["min"].as_u64() <= rtt["avg"].as_u64());
        assert!(rtt["avg"].as_u64() <= rtt["max"].as_u64());
    }
    // The server receives, so it reports its CPU in status messages (decoded as sent).
    let remote = intervals
        .iter()
        .filter_map(|iv| iv["cpu"]["remote"].as_u64())
        .next_back()
        .expect("the server reported its CPU");
    assert!(remote <= 100);
    assert_eq!(end["reason"], "duration reached");
    assert_eq!(end["connections"], 2);
    assert!(end["tcp"]["retransmits"].is_u64());
    assert!(end["tcp"]["rtt_us"]["max"].as_u64() >= end["tcp"]["rtt_us"]["min"].as_u64());
    assert_eq!(end["streams"].as_array().map(Vec::len), Some(2));
    // Both ends' views: ours of what we sent and received, the peer's of what it got from us.
    assert_eq!(end["tx"]["sent"], end["tx"]["bytes"]);
    assert!(end["tx"]["received"].is_u64() || end["tx"]["received"].is_null());
    assert!(end["rx"]["sent"].is_null());
    assert_eq!(end["rx"]["received"], end["rx"]["bytes"]);
    assert!(end["tx_unacknowledged"].is_u64());
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn json_lines_stream_one_object_per_interval_then_the_end() {
    let server = TestServer::start(&[]);
    let out = client(server.port, &["-r", "-d", "2", "--json-lines"]);
    ok(&out);
    let objects: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (end, intervals) = objects.split_last().unwrap();
    assert!(intervals.len() >= 2);
    assert!(intervals.iter().all(|o| o["type"] == "interval"));
    assert_eq!(end["type"], "end");
    assert_eq!(end["start"]["direction"], "receive");
    let total = sum_intervals(intervals, "rx");
    assert!(total > 0);
    assert_eq!(end["end"]["rx"]["bytes"].as_u64(), Some(total));
    assert!(end["end"]["tx"].is_null());
}

#[test]
fn json_modes_report_errors_and_exclude_each_other() {
    let out = client(1, &["-r", "-d", "1", "--json"]);
    assert_eq!(code(&out), 1);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["error"].as_str().unwrap().contains("cannot connect"));
    assert!(doc["end"].is_null());
    assert!(stderr(&out).contains("cannot connect"));

    let out = client(1, &["-r", "--json", "--json-lines"]);
    assert_eq!(code(&out), 2);
    assert!(out.stdout.is_empty());
}

#[test]
fn quiet_keeps_the_summary_and_verbose_adds_rtt_without_leaking_the_password() {
    let server = TestServer::start(&["-a", "admin", "-p", "pw-Zq81x"]);
    let auth = ["-a", "admin", "-p", "pw-Zq81x"];
    let mut args = vec!["-r", "-d", "1", "-q"];
    args.extend_from_slice(&auth);
    let out = client(server.port, &args);
    ok(&out);
    let lines = parse(&out.stdout);
    assert!(intervals(&lines, "RX").is_empty());
    assert!(summary(&lines, "RX").is_some());

    let plain = client(server.port, &[&["-t", "-d", "1"][..], &auth].concat());
    ok(&plain);
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("rtt"));

    let out = client(
        server.port,
        &[&["-t", "-d", "2", "-vv", "--connections", "2"][..], &auth].concat(),
    );
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = stderr(&out);
    assert!(
        stdout
            .lines()
            .filter(|l| l.starts_with("[  "))
            .all(|l| l.contains("  rtt: ") && l.contains("  retr: ")),
        "{stdout}"
    );
    assert!(stdout.contains("[ avg] rtt "), "{stdout}");
    // The server receives and reports what it got once a second: the summary shows it.
    let tx_summary = stdout.lines().find(|l| l.starts_with("[ avg]  TX  "));
    let peer_got = tx_summary
        .and_then(|l| l.split_once("; peer got "))
        .and_then(|(_, n)| n.trim_end_matches(')').parse::<u64>().ok());
    assert!(peer_got.is_some_and(|n| n > 0), "{stdout}");
    // The grammar of the rate lines is unchanged: they still parse and add up.
    assert_consistent(&parse(&out.stdout), "TX");
    assert!(err.contains("connected to"), "{err}");
    assert!(err.contains("joined session"), "{err}");
    assert!(err.contains("thread btest-tx0-"), "{err}");
    assert!(err.contains("admin"), "{err}");
    assert!(!err.contains("pw-Zq81x"), "password on stderr: {err}");
    assert!(!stdout.contains("pw-Zq81x"));
}

/// A parsed RFC 3164 datagram: `<PRI>Mmm dd hh:mm:ss HOST btest[PID]: MSG`.
struct Syslog3164 {
    pri: u8,
    msg: String,
}

fn bad<T>(datagram: &str) -> T {
    panic!("not RFC 3164: {datagram:?}")
}

fn parse_3164(datagram: &str) -> Syslog3164 {
    let rest = datagram.strip_prefix('<').unwrap_or_else(|| bad(datagram));
    let (pri, rest) = rest.split_once('>').unwrap_or_else(|| bad(datagram));
    let pri: u8 = pri.parse().unwrap_or_else(|_| bad(datagram));
    assert!(pri < 192);
    let (stamp, rest) = rest.split_at(15);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    assert!(months.contains(&&stamp[..3]), "{datagram:?}");
    let day = stamp[4..6]
        .trim_start()
        .parse::<u8>()
        .unwrap_or_else(|_| bad(datagram));
    assert!((1..=31).contains(&day));
    assert_eq!(&stamp[3..4], " ");
    let clock: Vec<&str> = stamp[7..].split(':').collect();
    assert_eq!(clock.len(), 3, "{datagram:?}");
    assert!(
        clock
            .iter()
            .all(|p| p.len() == 2 && p.parse::<u8>().is_ok())
    );
    let rest = rest.strip_prefix(' ').unwrap_or_else(|| bad(datagram));
    let (host, rest) = rest.split_once(' ').unwrap_or_else(|| bad(datagram));
    assert!(!host.is_empty());
    let rest = rest.strip_prefix("btest[").unwrap_or_else(|| bad(datagram));
    let (pid, msg) = rest.split_once("]: ").unwrap_or_else(|| bad(datagram));
    assert!(pid.parse::<u32>().is_ok());
    assert!(datagram.len() <= 1024 && !datagram.contains('\n'));
    Syslog3164 {
        pri,
        msg: msg.to_string(),
    }
}

#[test]
fn server_syslog_sends_start_end_and_auth_failure() {
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = TestServer::start(&["-a", "admin", "-p", "s3cret", "--syslog", &target]);
    let good = client(
        server.port,
        &["-r", "-d", "1", "-b", "20M", "-a", "admin", "-p", "s3cret"],
    );
    ok(&good);
    let bad = client(server.port, &["-r", "-d", "1", "-a", "admin", "-p", "nope"]);
    assert_eq!(code(&bad), 3);
    server.wait_for_log("authentication failed", Duration::from_secs(5));

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 3 && Instant::now() < deadline {
        let mut buf = [0u8; 2048];
        if let Ok(n) = listener.recv(&mut buf) {
            got.push(parse_3164(&String::from_utf8_lossy(&buf[..n])));
        }
    }
    let find = |needle: &str| {
        got.iter()
            .find(|m| m.msg.starts_with(needle))
            .unwrap_or_else(|| {
                panic!(
                    "no '{needle}' event in {:?}",
                    got.iter().map(|m| &m.msg).collect::<Vec<_>>()
                )
            })
    };
    let start = find("session start");
    assert_eq!(start.pri, 3 * 8 + 5, "daemon.notice");
    assert!(
        start
            .msg
            .contains("proto=tcp dir=receive conns=1 auth=md5 user=admin")
    );
    let end = find("session end");
    let rx_line = summary(&parse(&good.stdout), "RX").unwrap().bytes;
    let tx_bytes: u64 = end
        .msg
        .split_whitespace()
        .find_map(|w| w.strip_prefix("tx_bytes="))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(tx_bytes > 0 && tx_bytes >= rx_line / 2, "{}", end.msg);
    assert!(end.msg.contains("rx_bytes=0") && end.msg.contains("tx_mbps="));
    let fail = find("auth failure");
    assert_eq!(fail.pri, 3 * 8 + 4, "daemon.warning");
    assert!(fail.msg.contains("method=md5 user=admin"), "{}", fail.msg);
    assert!(
        got.iter()
            .all(|m| !m.msg.contains("s3cret") && !m.msg.contains("nope"))
    );
}

#[test]
fn client_syslog_to_a_dead_port_does_not_slow_or_fail_the_test() {
    let server = TestServer::start(&[]);
    // Bound and dropped: nothing listens there now, so sends draw ICMP refusals.
    let dead = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let t0 = Instant::now();
    let out = client(
        server.port,
        &["-r", "-d", "1", "--syslog", &dead.to_string()],
    );
    ok(&out);
    assert!(t0.elapsed() < Duration::from_secs(4));
    assert_consistent(&parse(&out.stdout), "RX");
}
