//! The one harness of the end-to-end tests and benches: run the real `btest` (and
//! `btest-server-pro`) binaries, learn the port a server bound from what it reports (`-P 0`),
//! run clients, parse what they print, and say why a test cannot run here.
//!
//! Included by every file under `tests/` that spawns a binary, and by the benches with
//! `#[path = "../tests/common/mod.rs"] mod common;`. Not every includer uses every helper,
//! hence the `allow` below rather than copies per file.
#![allow(dead_code)]
#![allow(unsafe_code)] // FFI for test tooling (signals, namespaces, sockets bound to a source address)

pub mod netns;
#[cfg(feature = "pro")]
pub mod pro;
pub mod shaped_link;
#[cfg(feature = "pro")]
pub mod web;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub const BTEST: &str = env!("CARGO_BIN_EXE_btest");

// ---- skipping ---------------------------------------------------------------------------------

/// Says on stderr why (part of) a test cannot run here, as `skipped: <why>`, and appends the
/// line to the file named by `BTEST_SKIP_LOG` (set by `make test`, which counts them: the
/// test harness captures a passing test's stderr, so a file is the only way they add up).
pub fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("?")
        .replace("::", " ");
    eprintln!("skipped: {why}");
    if let Some(path) = std::env::var_os("BTEST_SKIP_LOG") {
        use std::io::Write;
        let bin = std::env::args()
            .next()
            .and_then(|a| {
                let name = std::path::Path::new(&a)
                    .file_name()?
                    .to_string_lossy()
                    .into_owned();
                // test binaries are `NAME-<hash>`
                Some(
                    name.rsplit_once('-')
                        .map_or(name.clone(), |(n, _)| n.to_owned()),
                )
            })
            .unwrap_or_default();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{bin}: {test}: skipped: {why}");
        }
    }
}

/// Set by `make test-aarch64`, which runs the suite under qemu-user: memory and timings read
/// there are the emulator's.
pub fn under_emulation() -> bool {
    std::env::var_os("BTEST_UNDER_EMULATION").is_some()
}

/// Whether this process runs as root (namespaces, mounts, TUN devices).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Calls `f` every 20 ms until it gives a value; after `timeout`, panics with `why()`.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>, why: impl Fn() -> String) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{}", why());
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- processes --------------------------------------------------------------------------------

/// Output lines with the instant each arrived.
pub type Stamped = Arc<Mutex<Vec<(Instant, String)>>>;

/// Locks even a mutex a panicking thread poisoned: a reader must outlive a failed assertion.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn stamp_lines(pipe: impl Read + Send + 'static) -> (Stamped, JoinHandle<()>) {
    let sink: Stamped = Arc::default();
    let s = sink.clone();
    let h = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            lock(&s).push((Instant::now(), line));
        }
    });
    (sink, h)
}

/// A spawned binary whose stdout and stderr are collected line by line (stamped as they
/// arrive); killed and waited for on drop.
pub struct Running {
    child: Option<Child>,
    started: Instant,
    out: Stamped,
    err: Stamped,
    readers: Vec<JoinHandle<()>>,
}

/// A process that has exited: how long it ran, and its stamped output.
pub struct Finished {
    pub wall: Duration,
    pub success: bool,
    pub out: Vec<(Instant, String)>,
    pub err: Vec<(Instant, String)>,
}

impl Finished {
    /// Its stdout parsed as client output.
    pub fn lines(&self) -> Vec<Line> {
        let text: String = self.out.iter().map(|(_, l)| format!("{l}\n")).collect();
        parse(text.as_bytes())
    }

    /// When the first stderr line containing `needle` arrived.
    pub fn stderr_at(&self, needle: &str) -> Option<Instant> {
        self.err
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    }

    /// All output, for assertion messages.
    pub fn dump(&self) -> String {
        let all: Vec<&str> = self
            .out
            .iter()
            .chain(&self.err)
            .map(|(_, l)| l.as_str())
            .collect();
        all.join("\n")
    }
}

impl Running {
    /// Spawns `cmd` with both pipes collected.
    pub fn spawn(mut cmd: Command) -> Running {
        let started = Instant::now();
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let (out, ho) = stamp_lines(child.stdout.take().expect("stdout"));
        let (err, he) = stamp_lines(child.stderr.take().expect("stderr"));
        Running {
            child: Some(child),
            started,
            out,
            err,
            readers: vec![ho, he],
        }
    }

    fn child(&self) -> &Child {
        self.child.as_ref().expect("process still owned")
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    /// Lines written to stderr so far.
    pub fn log(&self) -> Vec<String> {
        lock(&self.err).iter().map(|(_, l)| l.clone()).collect()
    }

    /// Lines written to stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        lock(&self.out).iter().map(|(_, l)| l.clone()).collect()
    }

    /// The first stderr line that satisfies `pred`, waiting up to `timeout` (or panics).
    pub fn wait_for(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        self.wait_line(pred, "no such line from the process", timeout)
    }

    /// The first stderr line containing `needle`, waiting up to `timeout` (or panics).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let what = format!("never logged '{needle}'");
        self.wait_line(|l| l.contains(needle), &what, timeout)
    }

    fn wait_line(&self, pred: impl Fn(&str) -> bool, what: &str, timeout: Duration) -> String {
        poll(
            timeout,
            || self.log().into_iter().find(|l| pred(l)),
            || format!("{what}; log:\n{}", self.log().join("\n")),
        )
    }

    /// Waits until `n` stderr lines contain `needle`: a client may exit a moment before the
    /// server has logged its end.
    pub fn wait_for_count(&self, needle: &str, n: usize, timeout: Duration) {
        poll(
            timeout,
            || (self.count_log(needle) >= n).then_some(()),
            || {
                format!(
                    "fewer than {n} lines with '{needle}':\n{}",
                    self.log().join("\n")
                )
            },
        )
    }

    /// Number of stderr lines containing `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log().iter().filter(|l| l.contains(needle)).count()
    }

    /// Number of stderr lines satisfying `pred`.
    pub fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.log().iter().filter(|l| pred(l)).count()
    }

    /// Waits for the exit (up to `limit`, else panics) and the last of its output.
    pub fn finish(mut self, limit: Duration) -> Finished {
        let mut child = self.child.take().expect("process still owned");
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st;
            }
            if self.started.elapsed() >= limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("process did not end within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let wall = self.started.elapsed();
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
        Finished {
            wall,
            success: status.success(),
            out: lock(&self.out).clone(),
            err: lock(&self.err).clone(),
        }
    }

    /// Sends SIGTERM and waits (up to 15 s) for the exit status and the last of its output.
    pub fn terminate(mut self) -> ExitStatus {
        let status = self.signal_and_wait();
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
        status
    }

    /// Sends SIGTERM, waits, and returns the exit status with all of stdout and stderr.
    pub fn terminate_with_output(mut self) -> (ExitStatus, String, String) {
        let status = self.signal_and_wait();
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
        (status, self.stdout().join("\n"), self.log().join("\n"))
    }

    /// SIGTERM, then the exit must be a success (a pro server commits before it exits);
    /// returns everything it logged.
    pub fn stop(mut self) -> String {
        let status = self.signal_and_wait();
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
        let log = self.log().join("\n");
        assert!(status.success(), "exit {status:?} after SIGTERM: {log}");
        log
    }

    fn signal_and_wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("process still owned");
        // SAFETY: signalling our own child, which has not been waited for yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = child.try_wait().expect("wait") {
                return s;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no exit within 15 s of SIGTERM:\n{}", self.log().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---- servers ----------------------------------------------------------------------------------

/// A server on an OS-chosen port (`-P 0`), the port read from its `listening on` line (or, for
/// a quiet server that prints none, from its listening socket in `/proc`).
pub struct TestServer {
    run: Running,
    /// The test port it bound.
    pub port: u16,
    /// The HTTP port of a pro server started with `--http 127.0.0.1:0` (0 otherwise).
    pub http: u16,
}

impl std::ops::Deref for TestServer {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.run
    }
}

impl TestServer {
    /// `btest -s` on 127.0.0.1 with extra arguments.
    pub fn start(extra: &[&str]) -> TestServer {
        let mut args = vec!["-s", "-P", "0", "--listen", "127.0.0.1"];
        args.extend_from_slice(extra);
        Self::start_raw(&args)
    }

    /// `btest` with exactly these arguments (which must include `-P 0`).
    pub fn start_raw(args: &[&str]) -> TestServer {
        let mut cmd = Command::new(BTEST);
        cmd.args(args);
        Self::spawn(cmd)
    }

    /// `btest ARGS` inside network namespace `ns` (`ip netns exec`).
    pub fn start_in(ns: &str, args: &[&str]) -> TestServer {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, BTEST]).args(args);
        Self::spawn(cmd)
    }

    /// Any server command; waits for the port it reports.
    pub fn spawn(cmd: Command) -> TestServer {
        let run = Running::spawn(cmd);
        let port = listening_port(&run, |l| l.split("listening on ").nth(1));
        TestServer { run, port, http: 0 }
    }

    /// A server started with `-q`, which reports no port: it is read from the process's
    /// listening socket instead (`/proc/PID/net/tcp*`; Linux).
    pub fn spawn_quiet(cmd: Command) -> TestServer {
        let run = Running::spawn(cmd);
        let port = poll(
            Duration::from_secs(10),
            || proc_listening_port(run.pid()),
            || format!("quiet server never listened:\n{}", run.log().join("\n")),
        );
        TestServer { run, port, http: 0 }
    }

    /// Runs a client against this server on 127.0.0.1.
    pub fn client(&self, extra: &[&str]) -> Output {
        client(self.port, extra)
    }

    /// Runs a client with `-q` (summary lines only).
    pub fn client_quiet(&self, extra: &[&str]) -> Output {
        let mut args = vec!["-q"];
        args.extend_from_slice(extra);
        client(self.port, &args)
    }

    /// Per-stream (tx, rx) bytes from the `-v` line `session N streams tx/rx: #1=TX/RX ...`.
    pub fn streams(&self, session: usize) -> Vec<(u64, u64)> {
        let needle = format!("session {session} streams tx/rx:");
        let line = self.wait_for_log(&needle, Duration::from_secs(10));
        line.split(&needle)
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(|w| {
                let (_, v) = w.split_once('=').unwrap();
                let (tx, rx) = v.split_once('/').unwrap();
                (tx.parse().unwrap(), rx.parse().unwrap())
            })
            .collect()
    }

    /// Its address on 127.0.0.1.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(self) -> ExitStatus {
        self.run.terminate()
    }

    /// Sends SIGTERM; the exit status, stdout and stderr.
    pub fn terminate_with_output(self) -> (ExitStatus, String, String) {
        self.run.terminate_with_output()
    }

    /// SIGTERM; the exit must be a success. Returns the whole log.
    pub fn stop(self) -> String {
        self.run.stop()
    }
}

/// The port in the first log line `after` finds text in (`...:PORT` or `...:PORT/`).
fn listening_port(run: &Running, after: impl Fn(&str) -> Option<&str>) -> u16 {
    poll(
        Duration::from_secs(10),
        || {
            run.log().iter().find_map(|l| {
                let rest = after(l)?;
                rest.trim_end_matches('/').rsplit(':').next()?.parse().ok()
            })
        },
        || {
            format!(
                "the server did not report its port:\n{}",
                run.log().join("\n")
            )
        },
    )
}

/// The port of a listening TCP socket of process `pid`, from its network namespace's tables.
fn proc_listening_port(pid: u32) -> Option<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local address, state (0A = LISTEN), inode
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next()?;
                return u16::from_str_radix(port, 16).ok();
            }
        }
    }
    None
}

/// A number from environment variable `name` (bench lengths), or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A port nothing listens on right now, for peers that cannot bind port 0 and say which they
/// got (iperf3). Racy by nature: never use it for `btest`, which reports its port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(2000)
}

/// A number in `0..n` that no other running process holding the same `name` has (an
/// exclusive `flock` on `<temp>/btest-<name>-<i>.lock`, held until this process exits), so
/// that test processes running at once on this machine can keep to their own resources,
/// such as UDP port ranges. When all `n` are held, says so and falls back to the process id.
pub fn exclusive_slot(name: &str, n: u32) -> u32 {
    use std::os::fd::AsRawFd;
    for i in 0..n {
        let path = std::env::temp_dir().join(format!("btest-{name}-{i}.lock"));
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
        else {
            continue;
        };
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            // The lock lasts as long as the descriptor: keep it open until the process ends.
            std::mem::forget(file);
            return i;
        }
    }
    eprintln!("all {n} '{name}' slots are held by other processes: sharing one");
    std::process::id() % n
}

/// A child killed and waited for on drop (so its CPU time lands in [`children_cpu`]).
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---- clients ----------------------------------------------------------------------------------

/// A `btest -c HOST -P PORT EXTRA` command, to spawn or to run.
pub fn client_command(host: &str, port: u16, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BTEST);
    cmd.args(["-c", host, "-P", &port.to_string()]).args(extra);
    cmd
}

/// Runs a client against 127.0.0.1:`port` and returns its output.
pub fn client(port: u16, extra: &[&str]) -> Output {
    client_at("127.0.0.1", port, extra)
}

/// Runs a client against `host`:`port` and returns its output.
pub fn client_at(host: &str, port: u16, extra: &[&str]) -> Output {
    client_command(host, port, extra)
        .output()
        .expect("run client")
}

/// Runs a client inside network namespace `ns` against `host`:`port`.
pub fn client_in(ns: &str, host: &str, port: u16, extra: &[&str]) -> Output {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            BTEST,
            "-c",
            host,
            "-P",
            &port.to_string(),
        ])
        .args(extra)
        .output()
        .expect("run client")
}

/// Starts a client against 127.0.0.1:`port` with its output piped, to wait for later.
pub fn spawn_client(port: u16, extra: &[&str]) -> Child {
    client_command("127.0.0.1", port, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client")
}

/// Exit code of a finished client.
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Bytes as text, for assertion messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Text of a client's stderr, for assertion messages.
pub fn stderr(out: &Output) -> String {
    text(&out.stderr)
}

// ---- the client's output grammar --------------------------------------------------------------

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

/// Bytes of the `[ avg]` line of `dir` in a client's stdout (0 without one).
pub fn summary_bytes(stdout: &[u8], dir: &str) -> u64 {
    summary(&parse(stdout), dir).map_or(0, |l| l.bytes)
}

/// Bytes of the `[ avg]` line of `dir` in a finished client's output (0 without one).
pub fn avg_bytes(out: &Output, dir: &str) -> u64 {
    summary_bytes(&out.stdout, dir)
}

/// Asserts the summary of `dir` exists, moved data, and equals the sum of its interval lines.
pub fn assert_consistent(lines: &[Line], dir: &str) -> u64 {
    let total: u64 = intervals(lines, dir).iter().map(|l| l.bytes).sum();
    let sum = summary(lines, dir).unwrap_or_else(|| panic!("no {dir} summary in {lines:?}"));
    assert_eq!(sum.bytes, total, "{dir} summary != sum of intervals");
    assert!(total > 0, "{dir} moved no data");
    total
}

/// The first whitespace-delimited word after `key` in `line`.
pub fn word_after<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(key)
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("")
}

// ---- raw peers --------------------------------------------------------------------------------

/// A TCP receive command (the server transmits), for raw peers.
pub const TCP_RECEIVE: [u8; 16] = [1, 2, 1, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Reads the server's HELLO from `s` (5 s at most) and returns the stream.
pub fn hello(mut s: TcpStream) -> TcpStream {
    if s.read_timeout().ok().flatten().is_none() {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let mut hello = [0u8; 4];
    s.read_exact(&mut hello).expect("hello");
    assert_eq!(hello, [1, 0, 0, 0]);
    s
}

/// Reads until the peer closes; returns what it sent (or what came before an error).
pub fn drain(mut s: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Connects to `dst` from the local address `src`, bound first (any 127.0.0.0/8 address
/// works on Linux; IPv6 as well); reads time out after 15 s.
pub fn connect_from(src: impl Into<IpAddr>, dst: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor we own, handed to TcpStream at once; the
    // sockaddr structs are zeroed (BSDs have a length field) and then filled in.
    unsafe {
        let mut local: libc::sockaddr_storage = std::mem::zeroed();
        let mut remote: libc::sockaddr_storage = std::mem::zeroed();
        let (family, len) = match (src.into(), dst) {
            (IpAddr::V4(s), SocketAddr::V4(d)) => {
                let put = |st: &mut libc::sockaddr_storage, ip: Ipv4Addr, port: u16| {
                    let a = &mut *(st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                    a.sin_family = libc::AF_INET as libc::sa_family_t;
                    a.sin_port = port.to_be();
                    a.sin_addr.s_addr = u32::from_ne_bytes(ip.octets());
                };
                put(&mut local, s, 0);
                put(&mut remote, *d.ip(), d.port());
                (libc::AF_INET, std::mem::size_of::<libc::sockaddr_in>())
            }
            (IpAddr::V6(s), SocketAddr::V6(d)) => {
                let put = |st: &mut libc::sockaddr_storage, ip: Ipv6Addr, port: u16| {
                    let a = &mut *(st as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                    a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                    a.sin6_port = port.to_be();
                    a.sin6_addr.s6_addr = ip.octets();
                };
                put(&mut local, s, 0);
                put(&mut remote, *d.ip(), d.port());
                (libc::AF_INET6, std::mem::size_of::<libc::sockaddr_in6>())
            }
            _ => {
                return Err(std::io::Error::other(
                    "source and destination families differ",
                ));
            }
        };
        let len = len as libc::socklen_t;
        let fd = libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        if libc::bind(fd, (&raw const local).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::connect(fd, (&raw const remote).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        Ok(stream)
    }
}

/// Tiny deterministic xorshift PRNG for attack bytes and simulated loss.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---- /proc and CPU ----------------------------------------------------------------------------

/// A numeric field of `/proc/PID/status` (`Threads:`, `VmRSS:` in KiB); 0 if unreadable.
pub fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Threads of process `pid`.
pub fn threads(pid: u32) -> u64 {
    proc_status(pid, "Threads:")
}

/// Resident set of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:")
}

/// CPU seconds (user + system) a live process has used so far (`/proc/PID/stat`).
pub fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// CPU seconds (user + system) of all waited-for children so far.
pub fn children_cpu() -> f64 {
    // SAFETY: rusage is plain old data and getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A server under attack: its address, and its threads and memory after warm-up.
pub struct Target {
    pub server: TestServer,
    pub addr: SocketAddr,
    pub base: Baseline,
}

impl Target {
    /// Warms `server` up ([`Baseline::after_warm_up`], `normal_test` given its port) and
    /// takes its baseline.
    pub fn warmed_up(
        server: TestServer,
        burst: usize,
        settle: Duration,
        normal_test: impl Fn(u16),
    ) -> Target {
        let port = server.port;
        let base = Baseline::after_warm_up(&server, burst, settle, || normal_test(port));
        Target {
            addr: server.addr(),
            server,
            base,
        }
    }
}

/// A server's thread count and memory after warm-up, to show it returns there after an attack.
pub struct Baseline {
    pub threads: u64,
    pub rss: u64,
}

impl Baseline {
    pub fn take(pid: u32) -> Baseline {
        Baseline {
            threads: threads(pid),
            rss: rss_kib(pid),
        }
    }

    /// Warms `server` up before taking the baseline: a normal test, a burst of `burst` idle
    /// connections (closed after 300 ms, then `settle` to let their threads go), another
    /// normal test. The allocator and glibc's cache of exited threads' stacks are bounded
    /// caches that fill once; the baseline is the server as it is after its first burst.
    pub fn after_warm_up(
        server: &TestServer,
        burst: usize,
        settle: Duration,
        normal_test: impl Fn(),
    ) -> Baseline {
        normal_test();
        let conns: Vec<TcpStream> = (0..burst)
            .filter_map(|_| TcpStream::connect(server.addr()).ok())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        drop(conns);
        std::thread::sleep(settle);
        normal_test();
        std::thread::sleep(Duration::from_millis(300));
        Baseline::take(server.pid())
    }

    /// Waits (20 s at most) until threads are within 10 % of the baseline and memory within
    /// 10 % plus `rss_slack_kib` (memory is not judged under emulation, where the resident
    /// set is qemu's, whose translation cache grows with every new code path).
    pub fn wait_recovered(&self, pid: u32, attack: &str, rss_slack_kib: f64) {
        self.wait_within(pid, attack, 1.1, rss_slack_kib);
    }

    /// [`Baseline::wait_recovered`] with threads at most `thread_ratio` times the baseline
    /// (1.0: not one more than before).
    pub fn wait_within(&self, pid: u32, attack: &str, thread_ratio: f64, rss_slack_kib: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (t, rss) = (threads(pid), rss_kib(pid));
            let threads_ok = t as f64 <= self.threads as f64 * thread_ratio;
            let rss_ok = under_emulation() || rss as f64 <= self.rss as f64 * 1.1 + rss_slack_kib;
            if threads_ok && rss_ok {
                eprintln!("{attack}: back to {t} threads, {rss} KiB");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{attack}: threads {t} (baseline {}), rss {rss} KiB (baseline {}) did not \
                 return to baseline",
                self.threads,
                self.rss
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
