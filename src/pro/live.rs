//! What the server is doing now, for the HTTP side: the registry of running sessions and the
//! counters behind `/metrics`.
//!
//! Both live in memory and are fed by [`super::admission`] on paths that already run once per
//! session or once per interval, so they cost a lock or an atomic add per second per session,
//! never per packet. The database stays the record; these are the view of "now" it cannot give
//! (a running test's current rate) and the totals since start a scraper wants.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::writer::SessionRow;

use crate::handshake::AuthMethod;
use crate::proto::Protocol;
use crate::server::policy::RefusalKind;

/// One running test as the admin's live view shows it.
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// The database row (its id is set once the writer has stored it).
    pub row: SessionRow,
    /// Client address.
    pub peer: IpAddr,
    /// Authenticated user, if any.
    pub user: Option<String>,
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// The client's direction name.
    pub direction: &'static str,
    /// `none`, `md5`, `ecsrp5`.
    pub auth: &'static str,
    /// Start, Unix milliseconds.
    pub start_ms: i64,
    /// Bytes the server received so far.
    pub bytes_in: u64,
    /// Bytes the server sent so far.
    pub bytes_out: u64,
    /// Receive rate of the last interval, bit/s.
    pub rate_in_bps: f64,
    /// Send rate of the last interval, bit/s.
    pub rate_out_bps: f64,
    /// Intervals seen.
    pub intervals: u32,
}

/// Final outcomes of session rows, in the order of [`Metrics::sessions`]. They are the values of
/// the `outcome` column, so the metric and the database agree.
pub(crate) const OUTCOMES: [&str; 5] = ["completed", "quota", "error", "refused", "auth_failed"];

/// Refusal reasons, in the order of [`Metrics::refusals`].
const REASONS: [RefusalKind; 6] = [
    RefusalKind::Quota,
    RefusalKind::PerIpLimit,
    RefusalKind::MaxSessions,
    RefusalKind::Auth,
    RefusalKind::AuthRequired,
    RefusalKind::Other,
];

/// Authentication methods that can fail, in the order of [`Metrics::auth_failures`].
const METHODS: [AuthMethod; 3] = [AuthMethod::Md5, AuthMethod::EcSrp5, AuthMethod::None];

/// Counters since the server started. Fixed label sets, so every series exists from the first
/// scrape (a counter that appears only after its first event breaks `rate()`).
#[derive(Debug, Default)]
pub struct Metrics {
    sessions: [AtomicU64; OUTCOMES.len()],
    /// Bytes by [direction in/out][protocol tcp/udp].
    bytes: [[AtomicU64; 2]; 2],
    refusals: [AtomicU64; REASONS.len()],
    auth_failures: [AtomicU64; METHODS.len()],
}

fn proto_slot(p: Protocol) -> usize {
    match p {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
    }
}

impl Metrics {
    /// Counts a session row that reached its final `outcome`.
    pub fn session_ended(&self, outcome: &str) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.sessions[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts bytes moved by a test.
    pub fn bytes(&self, proto: Protocol, bytes_in: u64, bytes_out: u64) {
        let p = proto_slot(proto);
        self.bytes[0][p].fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes[1][p].fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// Counts a refusal.
    pub fn refused(&self, kind: RefusalKind) {
        if let Some(i) = REASONS.iter().position(|k| *k == kind) {
            self.refusals[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a failed authentication.
    pub fn auth_failed(&self, method: AuthMethod) {
        if let Some(i) = METHODS.iter().position(|m| *m == method) {
            self.auth_failures[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The running sessions and the counters, shared by the admission policy and the HTTP side.
#[derive(Debug, Default)]
pub struct Live {
    /// By a key of this registry's own: the row id may not be known yet.
    sessions: Mutex<HashMap<u64, LiveSession>>,
    next_key: AtomicU64,
    /// Counters since start.
    pub metrics: Metrics,
}

impl Live {
    /// Adds a running session; returns its key in this registry.
    pub fn start(&self, s: LiveSession) -> u64 {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.sessions.lock().insert(key, s);
        key
    }

    /// Updates a running session after an interval of `secs` seconds.
    pub fn interval(&self, key: u64, bytes_in: u64, bytes_out: u64, secs: f64) {
        if let Some(s) = self.sessions.lock().get_mut(&key) {
            s.bytes_in += bytes_in;
            s.bytes_out += bytes_out;
            let secs = secs.max(1e-3);
            s.rate_in_bps = bytes_in as f64 * 8.0 / secs;
            s.rate_out_bps = bytes_out as f64 * 8.0 / secs;
            s.intervals += 1;
        }
    }

    /// Removes a session that has ended.
    pub fn end(&self, key: u64) {
        self.sessions.lock().remove(&key);
    }

    /// The running sessions, oldest first.
    pub fn snapshot(&self) -> Vec<LiveSession> {
        let mut v: Vec<LiveSession> = self.sessions.lock().values().cloned().collect();
        v.sort_by_key(|s| (s.start_ms, s.row.get()));
        v
    }

    /// Sessions running now.
    pub fn running(&self) -> usize {
        self.sessions.lock().len()
    }

    /// The Prometheus text exposition (format 0.0.4) of the counters, with the writer's queue
    /// depth given by the caller (it owns the channel).
    pub fn prometheus(&self, queue_depth: usize) -> String {
        let m = &self.metrics;
        let mut out = String::with_capacity(2048);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let running = [(String::new(), self.running() as u64)];
        family(
            &mut out,
            "btest_sessions_running",
            "gauge",
            "Tests running now.",
            running,
        );
        let sessions = OUTCOMES
            .iter()
            .zip(&m.sessions)
            .map(|(o, a)| (format!("outcome=\"{o}\""), load(a)));
        family(
            &mut out,
            "btest_sessions_total",
            "counter",
            "Session rows that reached a final outcome since start (refusals included).",
            sessions,
        );
        let bytes = ["in", "out"].iter().zip(&m.bytes).flat_map(|(d, row)| {
            ["tcp", "udp"]
                .iter()
                .zip(row)
                .map(move |(p, a)| (format!("direction=\"{d}\",protocol=\"{p}\""), load(a)))
        });
        family(
            &mut out,
            "btest_bytes_total",
            "counter",
            "Test bytes moved since start; in = received by the server.",
            bytes,
        );
        let refusals = REASONS
            .iter()
            .zip(&m.refusals)
            .map(|(k, a)| (format!("reason=\"{}\"", k.name()), load(a)));
        family(
            &mut out,
            "btest_refusals_total",
            "counter",
            "Tests refused since start, by reason.",
            refusals,
        );
        let failures = METHODS
            .iter()
            .zip(&m.auth_failures)
            .map(|(meth, a)| (format!("method=\"{}\"", meth.name()), load(a)));
        family(
            &mut out,
            "btest_auth_failures_total",
            "counter",
            "Failed authentications since start, by method.",
            failures,
        );
        family(
            &mut out,
            "btest_db_writer_queue_depth",
            "gauge",
            "Writes waiting for the database writer thread.",
            [(String::new(), queue_depth as u64)],
        );
        out
    }
}

/// One metric family: its HELP and TYPE lines, then a sample per (labels, value); empty labels
/// give a bare sample.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_tracks_rates_and_forgets_ended_sessions() {
        let live = Live::default();
        let key = live.start(LiveSession {
            row: crate::pro::writer::RowId::known(7),
            peer: IpAddr::from([192, 0, 2, 1]),
            user: None,
            proto: "tcp",
            direction: "both",
            auth: "none",
            start_ms: 0,
            bytes_in: 0,
            bytes_out: 0,
            rate_in_bps: 0.0,
            rate_out_bps: 0.0,
            intervals: 0,
        });
        live.interval(key, 1_000, 500, 0.5);
        let s = &live.snapshot()[0];
        assert_eq!((s.bytes_in, s.bytes_out, s.intervals), (1_000, 500, 1));
        assert_eq!(s.rate_in_bps, 16_000.0);
        live.end(key);
        assert_eq!(live.running(), 0);
    }

    #[test]
    fn exposition_has_every_series_from_the_start() {
        let live = Live::default();
        live.metrics.session_ended("quota");
        live.metrics.bytes(Protocol::Udp, 3, 4);
        live.metrics.refused(RefusalKind::PerIpLimit);
        live.metrics.auth_failed(AuthMethod::EcSrp5);
        let text = live.prometheus(9);
        for line in [
            "btest_sessions_total{outcome=\"quota\"} 1",
            "btest_sessions_total{outcome=\"completed\"} 0",
            "btest_bytes_total{direction=\"in\",protocol=\"udp\"} 3",
            "btest_bytes_total{direction=\"out\",protocol=\"udp\"} 4",
            "btest_refusals_total{reason=\"per_ip_limit\"} 1",
            "btest_auth_failures_total{method=\"ecsrp5\"} 1",
            "btest_db_writer_queue_depth 9",
            "# TYPE btest_sessions_running gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
