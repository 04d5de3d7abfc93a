//! What the server shows on stdout while it serves: per session, one line per second per
//! direction in the client's grammar, prefixed with the session number and the peer, then the
//! summary lines; or, with `--json-lines`, one object per session interval and one per session
//! end. Session start and end lines stay on stderr with the rest of the log.
//!
//! ```text
//! [#7 192.0.2.9]  [   3]  RX  941.23 Mbps (117653750 bytes)  cpu: 12%/30%
//! [#7 192.0.2.9]  [ avg]  RX  940.10 Mbps (2821230000 bytes in 3.00 s)
//! ```
//!
//! A session never waits for stdout. Its lines go into one bounded queue that a single writer
//! thread drains; when the queue is full (stdout is a slow pipe or a stopped terminal) the line
//! is dropped and counted, and the session's end says how many of its lines were lost. Lines
//! are built from the same [`Interval`]s the policy and the records see, and from the
//! session's [`TestRecord`], by the client's sinks ([`crate::report::lines`],
//! [`crate::report::result`]).
//!
//! It is an [`Admission`] decorator, like the recorder: it adds a display to any policy.

use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::policy::{Admission, AdmissionRequest, Refusal, SessionSummary, Ticket, Verdict};
use crate::engine::Interval;
use crate::handshake::AuthMethod;
use crate::report::json::JsonWriter;
use crate::report::lines::{self, LineStyle};
use crate::report::record::TestRecord;
use crate::report::result;

/// Lines the queue holds: with 100 sessions sending both directions, five seconds of output.
pub(crate) const QUEUE_LINES: usize = 1024;

/// A closing interval shorter than this (the few milliseconds between the last full second and
/// the client's close) gets no line of its own; the summary still counts its bytes.
pub(crate) const REMNANT: Duration = Duration::from_millis(500);

/// What stdout carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Lines in the client's grammar.
    Text,
    /// One JSON object per session interval and per session end.
    JsonLines,
}

/// How much the server shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// Text or JSON lines.
    pub format: Format,
    /// Interval lines (or objects) and text summaries; without them only the JSON end objects
    /// are written (`-q`, and `btest-server-pro` without `--intervals`).
    pub intervals: bool,
}

impl Options {
    /// True when nothing at all would be written.
    pub(crate) fn is_silent(&self) -> bool {
        !self.intervals && self.format == Format::Text
    }
}

/// What the queue carries.
enum Item {
    /// A line to write.
    Line(String),
    /// Write everything queued before, flush, and say so.
    Flush(Sender<()>),
}

/// The queue and its writer thread, shared by all sessions.
pub(crate) struct ServerOutput {
    opts: Options,
    lines: Sender<Item>,
}

impl ServerOutput {
    /// Output to stdout.
    pub(crate) fn stdout(opts: Options) -> io::Result<Arc<ServerOutput>> {
        ServerOutput::start(opts, Box::new(io::stdout()))
    }

    /// Output to any writer, drained by one thread that flushes whenever the queue is empty,
    /// so lines appear as they happen. The thread ends when the last session and the server
    /// have let go of the output.
    pub(crate) fn start(
        opts: Options,
        sink: Box<dyn Write + Send>,
    ) -> io::Result<Arc<ServerOutput>> {
        let (lines, rx) = crossbeam_channel::bounded(QUEUE_LINES);
        std::thread::Builder::new()
            .name("btest-output".into())
            .spawn(move || drain(&rx, sink))?;
        Ok(Arc::new(ServerOutput { opts, lines }))
    }

    /// Queues a line without waiting; false when it had to be dropped.
    fn offer(&self, line: String) -> bool {
        match self.lines.try_send(Item::Line(line)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// Waits up to `limit` until every line queued so far is written: the server calls it
    /// before it exits, so the last sessions' summaries are not lost with the process.
    pub(crate) fn flush(&self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        self.lines
            .send_deadline(Item::Flush(done_tx), deadline)
            .is_ok()
            && done_rx.recv_deadline(deadline).is_ok()
    }
}

fn drain(rx: &Receiver<Item>, mut sink: Box<dyn Write + Send>) {
    for item in rx {
        match item {
            Item::Line(line) => {
                // A failed write (stdout closed) is ignored: sessions must never notice.
                if writeln!(sink, "{line}").is_ok() && rx.is_empty() {
                    let _ = sink.flush();
                }
            }
            Item::Flush(done) => {
                let _ = sink.flush();
                let _ = done.send(());
            }
        }
    }
    let _ = sink.flush();
}

/// An [`Admission`] decorator that shows each admitted session on the output.
pub(crate) struct Announcer {
    inner: Arc<dyn Admission>,
    out: Arc<ServerOutput>,
}

impl Announcer {
    /// Wraps `inner`.
    pub(crate) fn new(inner: Arc<dyn Admission>, out: Arc<ServerOutput>) -> Announcer {
        Announcer { inner, out }
    }
}

impl Admission for Announcer {
    fn admit(&self, req: &AdmissionRequest<'_>) -> Result<Box<dyn Ticket>, Refusal> {
        let inner = self.inner.admit(req)?;
        Ok(Box::new(ShowingTicket {
            inner,
            out: self.out.clone(),
            peer: req.peer.ip().to_canonical(),
            // The output shows no control port.
            record: super::recorder::record_of(req, 0),
            id: 0,
            dropped: 0,
        }))
    }

    fn auth_failed(&self, peer: std::net::SocketAddr, method: AuthMethod, user: &str) {
        self.inner.auth_failed(peer, method, user);
    }

    fn refused(&self, peer: std::net::SocketAddr, refusal: &Refusal) {
        self.inner.refused(peer, refusal);
    }
}

/// One session's view of the output.
struct ShowingTicket {
    inner: Box<dyn Ticket>,
    out: Arc<ServerOutput>,
    peer: IpAddr,
    record: TestRecord,
    /// The session number of the log's `session N start`; 0 until the session starts.
    id: usize,
    dropped: u64,
}

impl ShowingTicket {
    fn offer(&mut self, line: String) {
        if !self.out.offer(line) {
            self.dropped += 1;
        }
    }

    /// Offers `lines`, each after `[#7 192.0.2.9]  `.
    fn offer_text(&mut self, lines: Vec<String>) {
        let prefix = format!("[#{} {}]  ", self.id, self.peer);
        for line in lines {
            self.offer(format!("{prefix}{line}"));
        }
    }

    /// `{"type":T,"session":N,"peer":"IP",KEY:<value>}`.
    fn json_line(&self, kind: &str, key: &str, value: &str) -> String {
        let s = &self.record.start;
        let mut w = JsonWriter::new();
        w.begin_object()
            .field_str("type", kind)
            .field_u64("session", self.id as u64)
            .field_str("peer", &self.peer.to_string())
            .field_str("protocol", s.protocol)
            .field_str("direction", s.direction)
            .key(key)
            .raw_value(value);
        if kind == "end" {
            w.field_u64("dropped_lines", self.dropped);
        }
        w.end_object();
        w.finish()
    }

    fn show_interval(&mut self, iv: &Interval<'_>, start: Duration) {
        if !self.out.opts.intervals || (iv.last && iv.duration < REMNANT) {
            return;
        }
        let sides = self.record.start.sides;
        match self.out.opts.format {
            Format::Text => {
                let mut text = Vec::with_capacity(2);
                lines::interval_lines(iv, sides, LineStyle::default(), &mut text);
                self.offer_text(text);
            }
            Format::JsonLines => {
                let mut w = JsonWriter::new();
                result::write_interval(&mut w, iv, start, sides, None);
                let line = self.json_line("interval", "interval", &w.finish());
                self.offer(line);
            }
        }
    }

    fn show_end(&mut self) {
        match self.out.opts.format {
            Format::Text if self.out.opts.intervals => {
                let mut text = Vec::with_capacity(2);
                lines::summary_lines(&self.record, false, &[], &mut text);
                self.offer_text(text);
                if self.dropped > 0 {
                    let note = format!(
                        "[#{} {}]  {} output lines dropped: stdout was too slow",
                        self.id, self.peer, self.dropped
                    );
                    self.out.offer(note);
                }
            }
            Format::Text => {}
            Format::JsonLines => {
                let mut w = JsonWriter::new();
                result::write_end(&mut w, &self.record);
                let line = self.json_line("end", "end", &w.finish());
                self.offer(line);
            }
        }
        if self.dropped > 0 {
            crate::log!(
                -1,
                "{}: session {}: {} output lines dropped: stdout was too slow",
                self.peer,
                self.id,
                self.dropped
            );
        }
    }
}

impl Ticket for ShowingTicket {
    fn max_duration(&self) -> Option<Duration> {
        self.inner.max_duration()
    }

    fn started(&mut self, id: usize) {
        self.id = id;
        self.inner.started(id);
    }

    fn interval(&mut self, interval: &Interval<'_>) -> Verdict {
        let start = self.record.add(interval);
        self.show_interval(interval, start);
        self.inner.interval(interval)
    }

    fn finish(&mut self, summary: &SessionSummary<'_>) {
        self.inner.finish(summary);
        self.record.finish(super::recorder::end_of(summary));
        self.show_end();
    }
}

#[cfg(test)]
pub(super) mod tests;
