//! Records what the server does, for `--csv` and `--syslog`, by wrapping any [`Admission`]
//! policy: the core already tells its policy about every admission, refusal, failed
//! authentication and session end, so the records need no second copy of the server loop, and
//! the pro server can wrap its own policy the same way.
//!
//! The server's CSV row, per session: `host` is the client's IP address, `port` the server's
//! control port (as in the client's row, so rows of both ends line up), `direction` the
//! client's name for it (`transmit` = the client sent), and `tx_*`/`rx_*` from the **server's**
//! point of view (`tx_bytes` = what the server sent). CPU columns average the intervals the
//! session reported; they are empty for sessions that report none.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::policy::{Admission, AdmissionRequest, Refusal, SessionSummary, Ticket, Verdict};
use crate::engine::Interval;
use crate::handshake::{AuthMethod, printable_user};
use crate::log_error;
use crate::proto::Command;
use crate::report::csv::{CsvRow, CsvSink};
use crate::report::result::Tally;
use crate::report::syslog::{Severity, Syslog};
use crate::report::text::bits_per_second;

/// An [`Admission`] decorator that writes a CSV row per session and sends syslog events.
pub struct Recorder {
    inner: Arc<dyn Admission>,
    csv: Option<Arc<Mutex<CsvSink>>>,
    syslog: Option<Arc<Syslog>>,
    /// The control port for CSV rows; set once the listener is bound (it may be port 0 in the
    /// configuration).
    port: AtomicU16,
}

impl Recorder {
    /// Wraps `inner`; either sink may be absent.
    pub fn new(
        inner: Arc<dyn Admission>,
        csv: Option<CsvSink>,
        syslog: Option<Syslog>,
        port: u16,
    ) -> Recorder {
        Recorder {
            inner,
            csv: csv.map(|c| Arc::new(Mutex::new(c))),
            syslog: syslog.map(Arc::new),
            port: AtomicU16::new(port),
        }
    }

    /// Sets the control port shown in CSV rows, once the listener knows it.
    pub fn set_port(&self, port: u16) {
        self.port.store(port, Ordering::Relaxed);
    }

    fn log(&self, severity: Severity, msg: &str) {
        if let Some(s) = &self.syslog {
            s.send(severity, msg);
        }
    }
}

/// `proto=tcp dir=both conns=2 auth=md5 user=admin`, shared by start and end events.
fn describe(cmd: &Command, method: AuthMethod, user: &str) -> String {
    let mut s = format!(
        "proto={} dir={} conns={} auth={}",
        cmd.protocol.name(),
        cmd.direction.client_name(),
        cmd.connection_count(),
        method.name()
    );
    if method != AuthMethod::None {
        s.push_str(" user=");
        s.push_str(user);
    }
    s
}

impl Admission for Recorder {
    fn admit(&self, req: &AdmissionRequest<'_>) -> Result<Box<dyn Ticket>, Refusal> {
        let what = describe(req.cmd, req.method, &printable_user(req.user));
        match self.inner.admit(req) {
            Ok(inner) => {
                self.log(
                    Severity::Notice,
                    &format!("session start peer={} {what}", req.peer),
                );
                Ok(Box::new(RecordingTicket {
                    inner,
                    peer: req.peer,
                    cmd: *req.cmd,
                    method: req.method,
                    what,
                    tally: Tally::default(),
                    csv: self.csv.clone(),
                    syslog: self.syslog.clone(),
                    port: self.port.load(Ordering::Relaxed),
                    finished: false,
                }))
            }
            Err(refusal) => {
                self.log(
                    Severity::Warning,
                    &format!(
                        "refused peer={} reason={}: {refusal}",
                        req.peer,
                        refusal.kind.name()
                    ),
                );
                Err(refusal)
            }
        }
    }

    fn auth_failed(&self, peer: SocketAddr, method: AuthMethod, user: &str) {
        self.inner.auth_failed(peer, method, user);
        self.log(
            Severity::Warning,
            &format!(
                "auth failure peer={peer} method={} user={}",
                method.name(),
                printable_user(user.as_bytes())
            ),
        );
    }

    fn refused(&self, peer: SocketAddr, refusal: &Refusal) {
        self.inner.refused(peer, refusal);
        self.log(
            Severity::Warning,
            &format!(
                "refused peer={peer} reason={}: {refusal}",
                refusal.kind.name()
            ),
        );
    }
}

/// Forwards to the wrapped ticket and records the session when it ends.
struct RecordingTicket {
    inner: Box<dyn Ticket>,
    peer: SocketAddr,
    cmd: Command,
    method: AuthMethod,
    what: String,
    /// Only the CPU means are used: byte totals come from the session's outcome, which also
    /// covers sessions (UDP) that report no intervals to their ticket.
    tally: Tally,
    csv: Option<Arc<Mutex<CsvSink>>>,
    syslog: Option<Arc<Syslog>>,
    port: u16,
    finished: bool,
}

impl Drop for RecordingTicket {
    /// A ticket dropped unfinished is a session that was admitted (its start event sent) but
    /// never ran: the final handshake step or the UDP set-up failed. Saying so keeps every
    /// start event paired with an end in the syslog.
    fn drop(&mut self) {
        if !self.finished
            && let Some(s) = &self.syslog
        {
            s.send(
                Severity::Warning,
                &format!(
                    "session abandoned peer={} {}: it did not start",
                    self.peer, self.what
                ),
            );
        }
    }
}

impl Ticket for RecordingTicket {
    fn max_duration(&self) -> Option<Duration> {
        self.inner.max_duration()
    }

    fn started(&mut self, id: usize) {
        self.inner.started(id);
    }

    fn interval(&mut self, interval: &Interval<'_>) -> Verdict {
        self.tally.add(interval);
        self.inner.interval(interval)
    }

    fn finish(&mut self, summary: &SessionSummary<'_>) {
        self.finished = true;
        self.inner.finish(summary);
        let o = summary.outcome;
        let secs = o.elapsed.as_secs_f64();
        let tx_mbps = bits_per_second(o.tx_bytes, o.elapsed) / 1e6;
        let rx_mbps = bits_per_second(o.rx_bytes, o.rx_elapsed) / 1e6;
        if let Some(s) = &self.syslog {
            s.send(
                Severity::Notice,
                &format!(
                    "session end peer={} {} tx_bytes={} rx_bytes={} secs={secs:.2} \
                     tx_mbps={tx_mbps:.2} rx_mbps={rx_mbps:.2} lost={} reason={}",
                    self.peer,
                    self.what,
                    o.tx_bytes,
                    o.rx_bytes,
                    o.lost,
                    o.reason.describe()
                ),
            );
        }
        if let Some(csv) = &self.csv {
            let row = CsvRow {
                timestamp: crate::sys::clock::local_now().iso8601(),
                host: self.peer.ip().to_string(),
                port: self.port,
                protocol: self.cmd.protocol.name(),
                direction: self.cmd.direction.client_name(),
                duration_s: secs,
                tx_avg_mbps: tx_mbps,
                rx_avg_mbps: rx_mbps,
                tx_bytes: o.tx_bytes,
                rx_bytes: o.rx_bytes,
                lost_packets: o.lost,
                local_cpu_pct: self.tally.local_cpu(),
                remote_cpu_pct: self.tally.remote_cpu(),
                auth_type: self.method.name(),
            };
            if let Err(e) = csv.lock().append(&row) {
                log_error!("{}: cannot write the CSV row: {e}", self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EndReason, Outcome};
    use crate::proto::{Direction, Payload, Protocol};
    use crate::server::policy::{RefusalKind, Unlimited};
    use std::net::UdpSocket;

    struct Deny;
    impl Admission for Deny {
        fn admit(&self, _req: &AdmissionRequest<'_>) -> Result<Box<dyn Ticket>, Refusal> {
            Err(Refusal {
                kind: RefusalKind::Quota,
                detail: "budget spent".into(),
            })
        }
    }

    fn cmd() -> Command {
        Command {
            protocol: Protocol::Tcp,
            direction: Direction::Both,
            payload: Payload::Zeros,
            tcp_conn_count: 0,
            tx_size: 32768,
            client_buf_size: 0,
            remote_tx_speed: 0,
            local_tx_speed: 0,
        }
    }

    fn recv(sock: &UdpSocket) -> String {
        let mut buf = [0u8; 2048];
        let n = sock.recv(&mut buf).expect("a syslog datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn events_and_csv_row_from_the_servers_view() {
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let path = std::env::temp_dir().join(format!("btest-recorder-{}.csv", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let csv = CsvSink::open(&path).unwrap();
        let rec = Recorder::new(
            Arc::new(Unlimited),
            Some(csv),
            Some(Syslog::connect(&target).unwrap()),
            0,
        );
        rec.set_port(2000);
        let peer: SocketAddr = "192.0.2.9:40000".parse().unwrap();
        let c = cmd();
        let req = AdmissionRequest {
            peer,
            method: AuthMethod::Md5,
            user: b"admin",
            cmd: &c,
        };
        let mut ticket = rec.admit(&req).ok().unwrap();
        assert!(recv(&listener).contains("session start peer=192.0.2.9:40000 proto=tcp"));
        let outcome = Outcome {
            reason: EndReason::Duration,
            elapsed: Duration::from_secs(2),
            rx_elapsed: Duration::from_secs(2),
            tx_bytes: 2_500_000,
            rx_bytes: 500_000,
            lost: 0,
            per_stream: vec![(2_500_000, 500_000)],
            tcp: None,
            unacknowledged: 0,
        };
        ticket.finish(&SessionSummary {
            connections: 1,
            outcome: &outcome,
        });
        let end = recv(&listener);
        assert!(end.contains("tx_bytes=2500000 rx_bytes=500000"), "{end}");
        assert!(end.contains("tx_mbps=10.00 rx_mbps=2.00"), "{end}");
        rec.auth_failed(peer, AuthMethod::Md5, "ev\nil");
        let fail = recv(&listener);
        assert!(fail.starts_with("<28>"), "daemon.warning: {fail}");
        assert!(fail.contains("auth failure peer=192.0.2.9:40000 method=md5"));
        assert!(!fail.contains('\n'));

        drop(ticket);
        drop(rec.admit(&req));
        assert!(recv(&listener).contains("session start"));
        assert!(recv(&listener).contains("session abandoned peer=192.0.2.9:40000"));

        let denied = Recorder::new(Arc::new(Deny), None, Syslog::connect(&target).ok(), 0);
        assert!(denied.admit(&req).is_err());
        assert!(recv(&listener).contains("refused peer=192.0.2.9:40000 reason=quota"));

        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let row = text.lines().nth(1).unwrap();
        let fields: Vec<&str> = row.split(',').collect();
        assert_eq!(
            &fields[1..],
            [
                "192.0.2.9",
                "2000",
                "tcp",
                "both",
                "2.00",
                "10.00",
                "2.00",
                "2500000",
                "500000",
                "0",
                "",
                "",
                "md5"
            ]
        );
    }
}
