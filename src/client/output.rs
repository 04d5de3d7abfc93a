//! The client's sinks. One [`TestRecord`] is built over the test: every interval goes to it
//! and then to the chosen stdout format and the picture; at the end the same record gives the
//! text summary, the JSON `end`, the CSV row and the syslog event, so they cannot disagree.
//!
//! Formats on stdout (errors always go to stderr):
//! * text (default): interval lines and a summary, the grammar of docs/btest.1; `-q` drops the
//!   interval lines, `-v` appends `rtt:`/`retr:` and adds an RTT summary line.
//! * `--json`: nothing until the end, then one JSON document `{"start","intervals","end"}`.
//! * `--json-lines`: one compact object per interval (`"type":"interval"`) as it happens, then
//!   one `"type":"end"` object holding `start` and `end`.

use std::io::{self, Write};
use std::time::Duration;

use super::{ClientConfig, ClientError, Report};
use crate::engine::Interval;
use crate::proto::{Payload, Protocol};
use crate::report::csv::{CsvRow, CsvSink};
use crate::report::events;
use crate::report::json::JsonWriter;
use crate::report::lines::{self, LineStyle};
use crate::report::record::{End, Peer, Sides, Span, Start, TestRecord};
use crate::report::result;
use crate::report::svg::SvgSink;
use crate::report::syslog::Syslog;

/// What stdout carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Interval lines and a summary for people (and scripts that parse them).
    Text,
    /// One JSON document at the end.
    Json,
    /// One JSON object per interval, then an end object.
    JsonLines,
}

/// Prints intervals as text lines and the summary at the end.
pub(crate) struct TextOutput {
    sides: Sides,
    style: LineStyle,
    quiet: bool,
    /// Reused for every interval's lines.
    lines: Vec<String>,
}

impl TextOutput {
    /// Output for a test with `sides`; `quiet` drops the interval lines.
    pub(crate) fn new(sides: Sides, style: LineStyle, quiet: bool) -> TextOutput {
        TextOutput {
            sides,
            style,
            quiet,
            lines: Vec::new(),
        }
    }

    /// Prints one interval's lines (none with `-q`).
    pub(crate) fn interval(&mut self, iv: &Interval<'_>) {
        if self.quiet {
            return;
        }
        self.lines.clear();
        lines::interval_lines(iv, self.sides, self.style, &mut self.lines);
        print_lines(&self.lines);
    }

    /// Prints the summary of `rec`; `sent_after` holds what we had sent after each interval.
    pub(crate) fn summary(&mut self, rec: &TestRecord, sent_after: &[u64]) {
        self.lines.clear();
        lines::summary_lines(rec, self.style.verbose, sent_after, &mut self.lines);
        print_lines(&self.lines);
    }
}

/// Display options of [`ClientOutput`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutputOptions {
    /// Text, JSON or JSON lines on stdout.
    pub format: Format,
    /// No interval lines in text mode.
    pub quiet: bool,
    /// Per-connection lines in text mode.
    pub per_stream: bool,
    /// Local time on text interval lines.
    pub timestamps: bool,
    /// RTT and retransmissions on text lines.
    pub verbose: bool,
}

/// Every sink of one client test, fed by the same intervals and the same record.
pub(crate) struct ClientOutput {
    format: Format,
    text: TextOutput,
    record: TestRecord,
    /// What we had sent after each interval, for telling the peer's lag from a difference.
    sent_after: Vec<u64>,
    /// `--json`: each interval rendered when it happens, assembled at the end.
    json_intervals: Vec<String>,
    csv: Option<CsvSink>,
    svg: Option<SvgSink>,
    syslog: Option<Syslog>,
}

impl ClientOutput {
    /// Sinks for a test of `cfg`; `csv` was opened at start-up so a bad path fails before
    /// connecting.
    pub(crate) fn new(
        cfg: &ClientConfig,
        opts: OutputOptions,
        csv: Option<CsvSink>,
    ) -> ClientOutput {
        let style = LineStyle {
            verbose: opts.verbose,
            per_stream: opts.per_stream,
            timestamps: opts.timestamps,
        };
        ClientOutput {
            format: opts.format,
            text: TextOutput::new(ClientOutput::sides(cfg), style, opts.quiet),
            record: TestRecord::new(start(cfg)),
            sent_after: Vec::new(),
            json_intervals: Vec::new(),
            csv,
            svg: None,
            syslog: None,
        }
    }

    /// Also draws the test into `svg` (`--svg`), created at start-up like the CSV file.
    pub(crate) fn with_svg(mut self, svg: Option<SvgSink>) -> ClientOutput {
        self.svg = svg;
        self
    }

    /// Also sends the test's events to `syslog` (`--syslog`), resolved at start-up.
    pub(crate) fn with_syslog(mut self, syslog: Option<Syslog>) -> ClientOutput {
        self.syslog = syslog;
        self
    }

    /// The sides of this test (which directions, UDP or not), for sinks opened apart.
    pub(crate) fn sides(cfg: &ClientConfig) -> Sides {
        Sides {
            tx: cfg.direction.client_tx(),
            rx: cfg.direction.client_rx(),
            udp: cfg.protocol == Protocol::Udp,
        }
    }

    /// The test is about to start: says so on syslog.
    pub(crate) fn started(&self) {
        self.event(&events::started(&self.record));
    }

    /// Takes one interval: adds it to the record and writes it in the chosen format.
    pub(crate) fn interval(&mut self, iv: &Interval<'_>) {
        let offset = self.record.add(iv);
        let sent = self.sent_after.last().copied().unwrap_or(0) + iv.tx_bytes;
        self.sent_after.push(sent);
        if let Some(svg) = self.svg.as_mut() {
            svg.add(iv, offset);
        }
        let sides = self.record.start.sides;
        match self.format {
            Format::Text => self.text.interval(iv),
            Format::Json => {
                let mut w = JsonWriter::new();
                result::write_interval(&mut w, iv, offset, sides, None);
                self.json_intervals.push(w.finish());
            }
            Format::JsonLines => {
                let mut w = JsonWriter::new();
                result::write_interval(&mut w, iv, offset, sides, Some("interval"));
                print_line(&w.finish());
            }
        }
    }

    /// Ends the record with `report`, writes the summary in the chosen format, sends the
    /// syslog event and appends the CSV row. The error is the CSV file's: the result reached
    /// stdout, but the row was lost and the user must know.
    pub(crate) fn finish(&mut self, report: &Report) -> io::Result<()> {
        self.record.authenticated(report.auth.name(), None);
        self.record.finish(End {
            outcome: report.outcome.clone(),
            connections: report.connections,
            peer_received: report.peer_received,
            peer_reports: report.peer_reports,
        });
        match self.format {
            Format::Text => self.text.summary(&self.record, &self.sent_after),
            Format::Json | Format::JsonLines => self.print_document(None),
        }
        if let Some(ev) = events::ended(&self.record) {
            self.event(&ev);
        }
        match (self.csv.as_mut(), CsvRow::of(&self.record)) {
            (Some(csv), Some(row)) => csv.append(&row),
            _ => Ok(()),
        }
    }

    /// The test could not run: in the JSON formats, stdout still gets a document (with
    /// `"error"`) so a script reading it learns why rather than finding nothing; syslog gets
    /// the failure.
    pub(crate) fn failed(&mut self, error: &ClientError) {
        let why = error.to_string();
        if self.format != Format::Text {
            self.print_document(Some(&why));
        }
        let auth_failure = matches!(error, ClientError::Handshake(e) if e.is_auth_failure());
        self.event(&events::failed(&self.record, &why, auth_failure));
    }

    /// Writes the `--svg` picture, if one was asked for, after [`ClientOutput::finish`]; apart
    /// from it so the caller can name the file that failed.
    pub(crate) fn finish_svg(&mut self) -> io::Result<()> {
        match self.svg.as_mut() {
            Some(sink) => sink.finish(&self.record),
            None => Ok(()),
        }
    }

    /// The JSON document (`--json`) or end object (`--json-lines`) of the test, or of its
    /// failure with `error`.
    fn print_document(&self, error: Option<&str>) {
        let intervals = (self.format == Format::Json).then_some(&self.json_intervals[..]);
        let mut w = JsonWriter::new();
        result::write_document(&mut w, &self.record, intervals, error);
        print_line(&w.finish());
    }

    fn event(&self, ev: &events::Event) {
        if let Some(s) = &self.syslog {
            ev.send_to(s);
        }
    }
}

/// What the client knows when the test starts.
fn start(cfg: &ClientConfig) -> Start {
    Start {
        timestamp: crate::sys::clock::local_now().iso8601(),
        peer: Peer::Server(cfg.host.clone()),
        port: cfg.port,
        protocol: cfg.protocol.name(),
        direction: cfg.direction.client_name(),
        connections: usize::from(cfg.connections),
        duration: cfg.duration.filter(|d| *d > Duration::ZERO),
        local_tx_bps: cfg.local_bps,
        remote_tx_bps: cfg.remote_bps,
        udp_size: (cfg.protocol == Protocol::Udp).then_some(cfg.udp_size),
        payload: match cfg.payload {
            Payload::Zeros => "zeros",
            Payload::Random => "random",
        },
        sides: ClientOutput::sides(cfg),
        span: Span::Intervals,
        auth: None,
        user: None,
    }
}

fn print_lines(lines: &[String]) {
    let mut out = io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}

fn print_line(s: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}
