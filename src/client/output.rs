//! The client's result sinks. Every interval feeds one [`Tally`] and then the chosen stdout
//! format; at the end the same tally gives the text summary, the JSON `end` and the CSV row,
//! so the three cannot disagree.
//!
//! Formats on stdout (errors always go to stderr):
//! * text (default): interval lines and a summary, the grammar of docs/btest.1; `-q` drops the
//!   interval lines, `-v` appends `rtt:`/`retr:` and adds an RTT summary line.
//! * `--json`: nothing until the end, then one JSON document `{"start","intervals","end"}`.
//! * `--json-lines`: one compact object per interval (`"type":"interval"`) as it happens, then
//!   one `"type":"end"` object holding `start` and `end`.

use std::io::{self, Write};
use std::time::Duration;

use super::{ClientConfig, Report};
use crate::engine::Interval;
use crate::proto::{Direction, Payload, Protocol};
use crate::report::csv::{CsvRow, CsvSink};
use crate::report::json::JsonWriter;
use crate::report::peer::{self, PeerView};
use crate::report::result::{self, Sides, StartInfo, Tally};
use crate::report::svg::{self, SvgSink};
use crate::report::text::{self, Dir, Extras};

/// What stdout carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Interval lines and a summary for people (and scripts that parse them).
    Text,
    /// One JSON document at the end.
    Json,
    /// One JSON object per interval, then an end object.
    JsonLines,
}

/// Prints intervals as text lines and the summary at the end.
pub struct TextOutput {
    directions: Vec<Dir>,
    quiet: bool,
    per_stream: bool,
    udp: bool,
    timestamps: bool,
    verbose: bool,
}

impl TextOutput {
    /// Output for a test in `direction` (server's point of view, as in the command).
    pub fn new(direction: Direction, udp: bool, quiet: bool, per_stream: bool) -> TextOutput {
        let mut directions = Vec::new();
        if direction.client_tx() {
            directions.push(Dir::Tx);
        }
        if direction.client_rx() {
            directions.push(Dir::Rx);
        }
        TextOutput {
            directions,
            quiet,
            per_stream,
            udp,
            timestamps: false,
            verbose: false,
        }
    }

    /// Prefix interval lines with the local time.
    pub fn with_timestamps(mut self, on: bool) -> TextOutput {
        self.timestamps = on;
        self
    }

    /// Append TCP RTT and retransmissions to interval lines and summarise them (`-v`).
    pub fn with_verbose(mut self, on: bool) -> TextOutput {
        self.verbose = on;
        self
    }

    /// Prints one interval's lines (none with `-q`).
    pub fn interval(&self, iv: &Interval<'_>) {
        if self.quiet {
            return;
        }
        let mut out = io::stdout().lock();
        for &dir in &self.directions {
            let bytes = match dir {
                Dir::Tx => iv.tx_bytes,
                Dir::Rx => iv.rx_bytes,
            };
            let extras = Extras {
                lost: (self.udp && dir == Dir::Rx).then_some(iv.lost),
                cpu: iv.local_cpu.map(|l| (l, iv.remote_cpu)),
                rtt: iv
                    .tcp
                    .filter(|_| self.verbose)
                    .map(|t| (t.rtt_avg_us, t.retransmits)),
            };
            let line = text::interval_line(iv.index, dir, bytes, iv.duration, extras);
            let _ = if self.timestamps {
                writeln!(out, "{} {line}", text::clock_prefix())
            } else {
                writeln!(out, "{line}")
            };
            if self.per_stream && iv.streams.len() > 1 {
                for (i, s) in iv.streams.iter().enumerate() {
                    let b = match dir {
                        Dir::Tx => s.tx_bytes,
                        Dir::Rx => s.rx_bytes,
                    };
                    let _ = writeln!(
                        out,
                        "{}",
                        text::stream_line(iv.index, dir, i + 1, b, iv.duration)
                    );
                }
            }
        }
        let _ = out.flush();
    }

    /// Prints the summary: one line per direction over the whole test, and with `-v` the TCP
    /// latency under load. `tx_after` holds what we had sent after each interval.
    pub fn summary(&self, tally: &Tally, report: &Report, tx_after: &[u64]) {
        let mut out = io::stdout().lock();
        for &dir in &self.directions {
            let (bytes, peer) = match dir {
                Dir::Tx => (tally.tx_bytes, report.peer_received),
                Dir::Rx => (tally.rx_bytes, None),
            };
            let line = match peer {
                Some(got) => text::summary_line_with_peer(bytes, tally.elapsed, got),
                None => text::summary_line(dir, bytes, tally.elapsed),
            };
            let _ = writeln!(out, "{line}");
            let reports = report.peer_reports;
            let view = |got| PeerView {
                sent: bytes,
                peer_got: got,
                reports,
                sent_in_reported: usize::try_from(reports)
                    .ok()
                    .filter(|&k| k > 0 && k < tx_after.len())
                    .and_then(|k| tx_after.get(k - 1).copied()),
                unacked: report.outcome.unacknowledged,
                udp: self.udp,
            };
            if let Some(note) = peer
                .filter(|_| self.verbose)
                .and_then(|got| peer::difference_note(&view(got)))
            {
                let _ = writeln!(out, "{note}");
            }
        }
        if let Some(t) = report.outcome.tcp.filter(|_| self.verbose) {
            let _ = writeln!(
                out,
                "{}",
                text::rtt_summary_line(t.rtt_min_us, t.rtt_avg_us, t.rtt_max_us, t.retransmits)
            );
        }
        let _ = out.flush();
    }
}

/// Display options of [`ClientOutput`].
#[derive(Clone, Copy, Debug)]
pub struct OutputOptions {
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

/// Every sink of one client test, fed by the same intervals.
pub struct ClientOutput {
    format: Format,
    text: TextOutput,
    tally: Tally,
    /// What we had sent after each interval, for telling the peer's lag from a difference.
    tx_after: Vec<u64>,
    sides: Sides,
    start: StartInfo,
    /// `--json`: each interval rendered when it happens, assembled at the end.
    json_intervals: Vec<String>,
    csv: Option<CsvSink>,
    svg: Option<SvgSink>,
}

impl ClientOutput {
    /// Sinks for a test of `cfg`; `csv` was opened at start-up so a bad path fails before
    /// connecting.
    pub fn new(cfg: &ClientConfig, opts: OutputOptions, csv: Option<CsvSink>) -> ClientOutput {
        let udp = cfg.protocol == Protocol::Udp;
        ClientOutput {
            format: opts.format,
            text: TextOutput::new(cfg.direction, udp, opts.quiet, opts.per_stream)
                .with_timestamps(opts.timestamps)
                .with_verbose(opts.verbose),
            tally: Tally::default(),
            tx_after: Vec::new(),
            sides: Sides {
                tx: cfg.direction.client_tx(),
                rx: cfg.direction.client_rx(),
                udp,
            },
            start: start_info(cfg),
            json_intervals: Vec::new(),
            csv,
            svg: None,
        }
    }

    /// Also draws the test into `svg` (`--svg`), created at start-up like the CSV file.
    pub fn with_svg(mut self, svg: Option<SvgSink>) -> ClientOutput {
        self.svg = svg;
        self
    }

    /// The sides of this test (which directions, UDP or not), for sinks opened apart.
    pub fn sides(cfg: &ClientConfig) -> Sides {
        Sides {
            tx: cfg.direction.client_tx(),
            rx: cfg.direction.client_rx(),
            udp: cfg.protocol == Protocol::Udp,
        }
    }

    /// Takes one interval: adds it to the tally and writes it in the chosen format.
    pub fn interval(&mut self, iv: &Interval<'_>) {
        let offset = self.tally.elapsed;
        self.tally.add(iv);
        self.tx_after.push(self.tally.tx_bytes);
        if let Some(svg) = self.svg.as_mut() {
            svg.add(iv, offset);
        }
        match self.format {
            Format::Text => self.text.interval(iv),
            Format::Json => {
                let mut w = JsonWriter::new();
                result::write_interval(&mut w, iv, offset, self.sides, None);
                self.json_intervals.push(w.finish());
            }
            Format::JsonLines => {
                let mut w = JsonWriter::new();
                result::write_interval(&mut w, iv, offset, self.sides, Some("interval"));
                print_line(&w.finish());
            }
        }
    }

    /// Sums so far.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Writes the summary in the chosen format and appends the CSV row. The error is the CSV
    /// file's: the result reached stdout, but the row was lost and the user must know.
    pub fn finish(&mut self, report: &Report) -> io::Result<()> {
        let auth = report.auth.name();
        match self.format {
            Format::Text => self.text.summary(&self.tally, report, &self.tx_after),
            Format::Json | Format::JsonLines => {
                let mut w = JsonWriter::new();
                w.begin_object();
                if self.format == Format::JsonLines {
                    w.field_str("type", "end");
                }
                w.key("start");
                result::write_start(&mut w, &self.start, Some(auth));
                if self.format == Format::Json {
                    w.key("intervals").begin_array();
                    for iv in &self.json_intervals {
                        w.raw_value(iv);
                    }
                    w.end_array();
                }
                w.key("end");
                result::write_end(
                    &mut w,
                    &self.tally,
                    &report.outcome,
                    self.sides,
                    report.connections,
                    report.peer_received,
                );
                w.end_object();
                print_line(&w.finish());
            }
        }
        if self.csv.is_none() {
            return Ok(());
        }
        let row = self.csv_row(auth);
        match self.csv.as_mut() {
            Some(csv) => csv.append(&row),
            None => Ok(()),
        }
    }

    /// The test could not run: in the JSON formats, stdout still gets a document (with
    /// `"error"`) so a script reading it learns why rather than finding nothing.
    pub fn failed(&mut self, error: &str) {
        if self.format == Format::Text {
            return;
        }
        let mut w = JsonWriter::new();
        w.begin_object();
        if self.format == Format::JsonLines {
            w.field_str("type", "error");
        }
        w.key("start");
        result::write_start(&mut w, &self.start, None);
        if self.format == Format::Json {
            w.key("intervals").begin_array().end_array();
            w.key("end").null();
        }
        w.field_str("error", error).end_object();
        print_line(&w.finish());
    }

    /// Writes the `--svg` picture, if one was asked for. Apart from [`ClientOutput::finish`] so
    /// the caller can name the file that failed.
    pub fn finish_svg(&mut self, report: &Report) -> io::Result<()> {
        let Some(sink) = self.svg.as_mut() else {
            return Ok(());
        };
        let t = &self.tally;
        let reason = report.outcome.reason;
        let summary = svg::Summary {
            host: self.start.host.clone(),
            protocol: self.start.protocol,
            direction: self.start.direction,
            connections: report.connections,
            timestamp: self.start.timestamp.clone(),
            elapsed: t.elapsed,
            tx_bytes: t.tx_bytes,
            rx_bytes: t.rx_bytes,
            lost: t.lost,
            cpu: (t.local_cpu(), t.remote_cpu()),
            tcp: report.outcome.tcp,
            early_end: (!reason.is_clean()).then(|| reason.describe()),
        };
        sink.finish(&summary)
    }

    fn csv_row(&self, auth: &'static str) -> CsvRow {
        let t = &self.tally;
        CsvRow {
            timestamp: crate::sys::clock::local_now().iso8601(),
            host: self.start.host.clone(),
            port: self.start.port,
            protocol: self.start.protocol,
            direction: self.start.direction,
            duration_s: t.elapsed.as_secs_f64(),
            tx_avg_mbps: t.tx_bps() / 1e6,
            rx_avg_mbps: t.rx_bps() / 1e6,
            tx_bytes: t.tx_bytes,
            rx_bytes: t.rx_bytes,
            lost_packets: t.lost,
            local_cpu_pct: t.local_cpu(),
            remote_cpu_pct: t.remote_cpu(),
            auth_type: auth,
        }
    }
}

fn start_info(cfg: &ClientConfig) -> StartInfo {
    StartInfo {
        timestamp: crate::sys::clock::local_now().iso8601(),
        host: cfg.host.clone(),
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
    }
}

fn print_line(s: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}
