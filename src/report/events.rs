//! What `--syslog` says: a test's start, end, failure or abandonment from its
//! [`TestRecord`], and the server's refusals and failed logins. The words are fixed (log
//! watchers match them); each event is one line of `key=value` pairs after a few words.
//!
//! A test is named by the far end and what was asked, the same at start and end:
//! `server=HOST port=P proto=tcp dir=both conns=1` for the client's,
//! `peer=ADDR:PORT proto=tcp dir=both conns=2 auth=md5 user=admin` for the server's (the
//! method and user known at its start).

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::report::record::{Peer, TestRecord};
use crate::report::syslog::{Severity, Syslog};

/// One syslog message and how serious it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    /// The syslog severity.
    pub severity: Severity,
    /// The message.
    pub text: String,
}

impl Event {
    /// Sends the event; like every syslog send, it never blocks or fails.
    pub(crate) fn send_to(&self, syslog: &Syslog) {
        syslog.send(self.severity, &self.text);
    }
}

/// `test` for the client's records, `session` for the server's.
fn noun(rec: &TestRecord) -> &'static str {
    match rec.start.peer {
        Peer::Server(_) => "test",
        Peer::Client(_) => "session",
    }
}

/// The far end and what was asked, with the authentication once it is known.
fn subject(rec: &TestRecord) -> String {
    let s = &rec.start;
    let mut out = match &s.peer {
        Peer::Server(host) => format!("server={host} port={}", s.port),
        Peer::Client(addr) => format!("peer={addr}"),
    };
    let _ = write!(
        out,
        " proto={} dir={} conns={}",
        s.protocol, s.direction, s.connections
    );
    if let Some(auth) = s.auth {
        let _ = write!(out, " auth={auth}");
    }
    if let Some(user) = &s.user {
        let _ = write!(out, " user={user}");
    }
    out
}

/// The test started (the server: it was admitted).
pub(crate) fn started(rec: &TestRecord) -> Event {
    Event {
        severity: Severity::Notice,
        text: format!("{} start {}", noun(rec), subject(rec)),
    }
}

/// The test ended: its totals, rates and reason; `None` before its end.
pub(crate) fn ended(rec: &TestRecord) -> Option<Event> {
    let (end, r) = (rec.end()?, rec.rates()?);
    let o = &end.outcome;
    Some(Event {
        severity: Severity::Notice,
        text: format!(
            "{} end {} tx_bytes={} rx_bytes={} secs={:.2} tx_mbps={:.2} rx_mbps={:.2} lost={} \
             reason={}",
            noun(rec),
            subject(rec),
            o.tx_bytes,
            o.rx_bytes,
            r.secs,
            r.tx_mbps,
            r.rx_mbps,
            o.lost,
            o.reason.describe()
        ),
    })
}

/// The test could not run: `why`, as an authentication failure (a warning) or an error.
pub(crate) fn failed(rec: &TestRecord, why: &str, auth_failure: bool) -> Event {
    if auth_failure {
        Event {
            severity: Severity::Warning,
            text: format!("auth failure {}: {why}", subject(rec)),
        }
    } else {
        Event {
            severity: Severity::Error,
            text: format!("{} failed {}: {why}", noun(rec), subject(rec)),
        }
    }
}

/// The test was admitted (its start event sent) but never ran, so its start still gets an
/// end in the log.
pub(crate) fn abandoned(rec: &TestRecord) -> Event {
    Event {
        severity: Severity::Warning,
        text: format!("{} abandoned {}: it did not start", noun(rec), subject(rec)),
    }
}

/// The server turned a client away (`reason` is the refusal's stable name).
pub(crate) fn refused(peer: SocketAddr, reason: &str, detail: &str) -> Event {
    Event {
        severity: Severity::Warning,
        text: format!("refused peer={peer} reason={reason}: {detail}"),
    }
}

/// A client failed to authenticate; `user` is already printable.
pub(crate) fn login_failed(peer: SocketAddr, method: &str, user: &str) -> Event {
    Event {
        severity: Severity::Warning,
        text: format!("auth failure peer={peer} method={method} user={user}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record::{sample_end, sample_start};
    use std::time::Duration;

    #[test]
    fn the_client_and_the_server_name_their_tests() {
        let mut rec = TestRecord::new(sample_start());
        assert_eq!(
            started(&rec).text,
            "test start server=192.0.2.7 port=2000 proto=tcp dir=both conns=1"
        );
        assert!(ended(&rec).is_none());
        let fail = failed(&rec, "timed out", false);
        assert_eq!(fail.severity, Severity::Error);
        assert!(
            fail.text.starts_with("test failed server=192.0.2.7 "),
            "{fail:?}"
        );
        assert!(
            failed(&rec, "no", true)
                .text
                .starts_with("auth failure server=")
        );
        rec.authenticated("md5", None);
        rec.finish(sample_end(Duration::from_secs(2), 2_500_000, 0));
        assert_eq!(
            ended(&rec).unwrap().text,
            "test end server=192.0.2.7 port=2000 proto=tcp dir=both conns=1 auth=md5 \
             tx_bytes=2500000 rx_bytes=0 secs=0.00 tx_mbps=0.00 rx_mbps=0.00 lost=0 \
             reason=duration reached"
        );

        let mut start = sample_start();
        start.peer = Peer::Client("192.0.2.9:40000".parse().unwrap());
        let mut rec = TestRecord::new(start);
        rec.authenticated("md5", Some("admin".into()));
        assert_eq!(
            abandoned(&rec).text,
            "session abandoned peer=192.0.2.9:40000 proto=tcp dir=both conns=1 auth=md5 \
             user=admin: it did not start"
        );
    }
}
