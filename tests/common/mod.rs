//! Helpers for end-to-end tests: run the real `btest` binary as server and client over
//! loopback and parse what it prints.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub const BTEST: &str = env!("CARGO_BIN_EXE_btest");

/// A `btest -s` child on an OS-chosen port, with its stderr collected.
pub struct TestServer {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 with extra arguments.
    pub fn start(extra: &[&str]) -> TestServer {
        let mut args = vec!["-s", "-P", "0", "--listen", "127.0.0.1"];
        args.extend_from_slice(extra);
        Self::start_raw(&args)
    }

    /// Starts a server with exactly these arguments (must include `-P 0`).
    pub fn start_raw(args: &[&str]) -> TestServer {
        let mut child = Command::new(BTEST)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(port) = rest.rsplit(':').next().and_then(|p| p.parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server did not report its port");
        TestServer { child, port, log }
    }

    /// Lines the server wrote to stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle` (or panics after `timeout`).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "server never logged '{needle}'; log:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Number of log lines containing `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log().iter().filter(|l| l.contains(needle)).count()
    }

    /// Process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        std::mem::forget(self);
        status
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client against 127.0.0.1:`port` and returns its output.
pub fn client(port: u16, extra: &[&str]) -> Output {
    let port = port.to_string();
    let mut args = vec!["-c", "127.0.0.1", "-P", port.as_str()];
    args.extend_from_slice(extra);
    Command::new(BTEST)
        .args(&args)
        .output()
        .expect("run client")
}

/// One parsed output line of the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Interval number, or `None` for the `[ avg]` summary.
    pub index: Option<u32>,
    /// `TX` or `RX`.
    pub dir: String,
    /// Stream number for `--per-stream` lines.
    pub stream: Option<usize>,
    /// Rate in bit/s as printed.
    pub bps: f64,
    /// Byte count as printed.
    pub bytes: u64,
    /// `lost: N`, if present.
    pub lost: Option<u64>,
    /// `cpu: L%/R%`, if present.
    pub cpu: Option<(u8, u8)>,
    /// Seconds, for the summary.
    pub secs: Option<f64>,
}

/// Parses the client's stdout into lines of the output grammar; other lines are ignored.
pub fn parse(stdout: &[u8]) -> Vec<Line> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Line> {
    let start = line.find('[')?;
    let line = &line[start..];
    let close = line.find(']')?;
    let label = line[1..close].trim();
    let index = if label == "avg" {
        None
    } else {
        Some(label.parse().ok()?)
    };
    let mut words = line[close + 1..].split_whitespace().peekable();
    let dir = words.next()?.to_string();
    let stream = match words.peek() {
        Some(w) if w.starts_with('#') => {
            let n = w[1..].parse().ok();
            words.next();
            n
        }
        _ => None,
    };
    let value: f64 = words.next()?.parse().ok()?;
    let unit = words.next()?;
    let bps = value
        * match unit {
            "bps" => 1.0,
            "Kbps" => 1e3,
            "Mbps" => 1e6,
            "Gbps" => 1e9,
            _ => return None,
        };
    let bytes: u64 = words.next()?.trim_start_matches('(').parse().ok()?;
    let rest: Vec<&str> = words.collect();
    let mut lost = None;
    let mut cpu = None;
    let mut secs = None;
    for (i, w) in rest.iter().enumerate() {
        match *w {
            "lost:" => lost = rest.get(i + 1).and_then(|v| v.parse().ok()),
            "cpu:" => {
                cpu = rest.get(i + 1).and_then(|v| {
                    let (l, r) = v.split_once('/')?;
                    Some((
                        l.trim_end_matches('%').parse().ok()?,
                        r.trim_end_matches('%').parse().ok()?,
                    ))
                })
            }
            "in" => secs = rest.get(i + 1).and_then(|v| v.parse().ok()),
            _ => {}
        }
    }
    Some(Line {
        index,
        dir,
        stream,
        bps,
        bytes,
        lost,
        cpu,
        secs,
    })
}

/// Interval lines (not per-stream, not summary) of one direction.
pub fn intervals<'a>(lines: &'a [Line], dir: &str) -> Vec<&'a Line> {
    lines
        .iter()
        .filter(|l| l.index.is_some() && l.stream.is_none() && l.dir == dir)
        .collect()
}

/// The summary line of one direction.
pub fn summary<'a>(lines: &'a [Line], dir: &str) -> Option<&'a Line> {
    lines.iter().find(|l| l.index.is_none() && l.dir == dir)
}

/// Asserts the summary of `dir` exists, moved data, and equals the sum of its interval lines.
pub fn assert_consistent(lines: &[Line], dir: &str) -> u64 {
    let total: u64 = intervals(lines, dir).iter().map(|l| l.bytes).sum();
    let sum = summary(lines, dir).unwrap_or_else(|| panic!("no {dir} summary in {lines:?}"));
    assert_eq!(sum.bytes, total, "{dir} summary != sum of intervals");
    assert!(total > 0, "{dir} moved no data");
    total
}

/// Exit code of a finished client.
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Text of a client's stderr, for assertion messages.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
