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
use crate::proto::{Payload, Protocol};
use crate::report::csv::{CsvRow, CsvSink};
use crate::report::events::{self, Event};
use crate::report::record::{End, Peer, Sides, Span, Start, TestRecord};
use crate::report::syslog::Syslog;

/// An [`Admission`] decorator that writes a CSV row per session and sends syslog events.
pub(crate) struct Recorder {
    inner: Arc<dyn Admission>,
    csv: Option<Arc<Mutex<CsvSink>>>,
    syslog: Option<Arc<Syslog>>,
    /// The control port for CSV rows; set once the listener is bound (it may be port 0 in the
    /// configuration).
    port: AtomicU16,
}

impl Recorder {
    /// Wraps `inner`; either sink may be absent.
    pub(crate) fn new(
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
    pub(crate) fn set_port(&self, port: u16) {
        self.port.store(port, Ordering::Relaxed);
    }

    fn event(&self, ev: &Event) {
        if let Some(s) = &self.syslog {
            ev.send_to(s);
        }
    }

    fn refused_event(&self, peer: SocketAddr, refusal: &Refusal) {
        let detail = refusal.to_string();
        self.event(&events::refused(peer, refusal.kind.name(), &detail));
    }
}

/// The record of a session the server admits: what the client asked, in the client's words
/// (`direction`), the method and user of its handshake, and which figures the server has.
/// `port` is the server's control port.
pub(super) fn record_of(req: &AdmissionRequest<'_>, port: u16) -> TestRecord {
    let cmd = req.cmd;
    let udp = cmd.protocol == Protocol::Udp;
    let mut rec = TestRecord::new(Start {
        timestamp: crate::sys::clock::local_now().iso8601(),
        peer: Peer::Client(req.peer),
        port,
        protocol: cmd.protocol.name(),
        direction: cmd.direction.client_name(),
        connections: cmd.connection_count(),
        duration: None,
        local_tx_bps: u64::from(cmd.local_tx_speed),
        remote_tx_bps: u64::from(cmd.remote_tx_speed),
        udp_size: udp.then_some(cmd.tx_size),
        payload: match cmd.payload {
            Payload::Zeros => "zeros",
            Payload::Random => "random",
        },
        sides: Sides {
            tx: cmd.direction.server_tx(),
            rx: cmd.direction.server_rx(),
            udp,
        },
        span: Span::Session,
        auth: None,
        user: None,
    });
    let user = (req.method != AuthMethod::None).then(|| printable_user(req.user));
    rec.authenticated(req.method.name(), user);
    rec
}

/// The end of a server session: the server does not keep the client's status reports past
/// the session.
pub(super) fn end_of(summary: &SessionSummary<'_>) -> End {
    End {
        outcome: summary.outcome.clone(),
        connections: summary.connections,
        peer_received: None,
        peer_reports: 0,
    }
}

impl Admission for Recorder {
    fn admit(&self, req: &AdmissionRequest<'_>) -> Result<Box<dyn Ticket>, Refusal> {
        match self.inner.admit(req) {
            Ok(inner) => {
                let record = record_of(req, self.port.load(Ordering::Relaxed));
                self.event(&events::started(&record));
                Ok(Box::new(RecordingTicket {
                    inner,
                    record,
                    csv: self.csv.clone(),
                    syslog: self.syslog.clone(),
                    finished: false,
                }))
            }
            Err(refusal) => {
                self.refused_event(req.peer, &refusal);
                Err(refusal)
            }
        }
    }

    fn auth_failed(&self, peer: SocketAddr, method: AuthMethod, user: &str) {
        self.inner.auth_failed(peer, method, user);
        let user = printable_user(user.as_bytes());
        self.event(&events::login_failed(peer, method.name(), &user));
    }

    fn refused(&self, peer: SocketAddr, refusal: &Refusal) {
        self.inner.refused(peer, refusal);
        self.refused_event(peer, refusal);
    }
}

/// Forwards to the wrapped ticket and records the session when it ends.
struct RecordingTicket {
    inner: Box<dyn Ticket>,
    /// The session's record: its intervals give the CPU means, its end the engine's totals.
    record: TestRecord,
    csv: Option<Arc<Mutex<CsvSink>>>,
    syslog: Option<Arc<Syslog>>,
    finished: bool,
}

impl RecordingTicket {
    fn event(&self, ev: &Event) {
        if let Some(s) = &self.syslog {
            ev.send_to(s);
        }
    }
}

impl Drop for RecordingTicket {
    /// A ticket dropped unfinished is a session that was admitted (its start event sent) but
    /// never ran: the final handshake step or the UDP set-up failed. Saying so keeps every
    /// start event paired with an end in the syslog.
    fn drop(&mut self) {
        if !self.finished {
            self.event(&events::abandoned(&self.record));
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
        self.record.add(interval);
        self.inner.interval(interval)
    }

    fn finish(&mut self, summary: &SessionSummary<'_>) {
        self.finished = true;
        self.inner.finish(summary);
        self.record.finish(end_of(summary));
        if let Some(ev) = events::ended(&self.record) {
            self.event(&ev);
        }
        if let (Some(csv), Some(row)) = (&self.csv, CsvRow::of(&self.record))
            && let Err(e) = csv.lock().append(&row)
        {
            log_error!("{}: cannot write the CSV row: {e}", self.record.start.peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EndReason, Outcome};
    use crate::proto::Direction;
    use crate::report::syslog::tests::listener;
    use crate::server::output::tests::cmd;
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

    fn recv(sock: &UdpSocket) -> String {
        let mut buf = [0u8; 2048];
        let n = sock.recv(&mut buf).expect("a syslog datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn events_and_csv_row_from_the_servers_view() {
        let listener = listener("127.0.0.1:0");
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
        let c = cmd(Direction::Both, Protocol::Tcp);
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
