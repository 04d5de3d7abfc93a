//! `--svg FILE`: one client test as a picture, for a ticket, a chat or a report.
//!
//! The picture has three panels sharing a time axis: throughput per direction, then TCP RTT
//! (when the kernel gave samples) or UDP datagrams lost per second, then the local and remote
//! CPU load. The summary figures the text output prints go in the title, so the picture alone
//! tells the result.
//!
//! The file is plain SVG 1.1 with a white background, generic font families and no script,
//! stylesheet, link or embedded font: it renders the same in a browser, an image viewer and a
//! document, offline. Every series is a `<polyline>` with a stable `id` (`tx`, `rx`, `rtt`,
//! `loss`, `cpu-local`, `cpu-remote`) so tools and tests can find it.
//!
//! The sink is fed the same intervals as the other sinks and keeps one small sample per
//! second; the title comes from the test's [`TestRecord`], as the other sinks' summaries do.
//! The file is created when the client starts (a bad path fails before the test, as `--csv`
//! does) and written once, when the test ends.
//!
//! `panels` decides what each panel shows; `draw` writes the SVG elements.

mod draw;

pub(crate) use draw::push_escaped;
mod panels;

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::draw::{GAP, HEADLINE, LEFT, PANEL_H, SUBTITLE, TOP, WIDTH, draw_panel, text};
use self::panels::{cpu_panel, middle_panel, throughput_panel};
use crate::engine::Interval;
use crate::report::record::{Sides, TestRecord};
use crate::report::text::{bits_per_second, format_rate};

/// The SVG file could not be created; reported at start-up, before the test runs.
#[derive(Debug)]
pub(crate) struct SvgError {
    path: PathBuf,
    source: io::Error,
}

impl fmt::Display for SvgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot create SVG file {}: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for SvgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// One interval as the picture needs it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Sample {
    /// Seconds from the start of data to the end of the interval.
    pub(super) t: f64,
    pub(super) tx_bps: f64,
    pub(super) rx_bps: f64,
    /// Mean smoothed RTT of the interval, milliseconds.
    pub(super) rtt_ms: Option<f64>,
    /// Datagrams lost, scaled to one second.
    pub(super) lost_per_s: f64,
    pub(super) local_cpu: Option<u8>,
    pub(super) remote_cpu: Option<u8>,
}

/// Collects intervals and writes the picture at the end.
#[derive(Debug)]
pub(crate) struct SvgSink {
    file: File,
    sides: Sides,
    samples: Vec<Sample>,
}

impl SvgSink {
    /// Creates (truncates) `path` now, so an unwritable path is known before the test.
    pub(crate) fn create(path: &Path, sides: Sides) -> Result<SvgSink, SvgError> {
        let file = File::create(path).map_err(|source| SvgError {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(SvgSink {
            file,
            sides,
            samples: Vec::with_capacity(64),
        })
    }

    /// Records one interval that started `offset` after the start of data.
    pub(crate) fn add(&mut self, iv: &Interval<'_>, offset: Duration) {
        let secs = iv.duration.as_secs_f64();
        self.samples.push(Sample {
            t: (offset + iv.duration).as_secs_f64(),
            tx_bps: bits_per_second(iv.tx_bytes, iv.duration),
            rx_bps: bits_per_second(iv.rx_bytes, iv.duration),
            rtt_ms: iv.tcp.map(|t| f64::from(t.rtt_avg_us) / 1000.0),
            lost_per_s: if secs > 0.0 {
                iv.lost as f64 / secs
            } else {
                0.0
            },
            local_cpu: iv.local_cpu,
            remote_cpu: iv.remote_cpu,
        });
    }

    /// Writes the picture of `rec`, replacing anything in the file.
    pub(crate) fn finish(&mut self, rec: &TestRecord) -> io::Result<()> {
        let svg = render(&self.samples, self.sides, rec);
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(svg.as_bytes())?;
        self.file.flush()
    }
}

// The element writers are kept out of line: inlined at each call site they cost the static
// router binary several KB for a picture drawn once per test.

/// Renders the whole document.
fn render(samples: &[Sample], sides: Sides, rec: &TestRecord) -> String {
    let t_max = samples.last().map_or(1.0, |x| x.t).max(1.0);
    let panels = [
        throughput_panel(samples, sides),
        middle_panel(samples, sides),
        cpu_panel(samples),
    ];
    let height = TOP + panels.len() as f64 * (PANEL_H + GAP) + 4.0;
    let mut out = String::with_capacity(8192 + samples.len() * 120);
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{WIDTH}\" \
         height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">\n<title>"
    );
    let (line1, line2) = title_lines(rec);
    push_escaped(&mut out, &line1);
    out.push_str("; ");
    push_escaped(&mut out, &line2);
    out.push_str("</title>\n<desc>btest-rs ");
    out.push_str(env!("CARGO_PKG_VERSION"));
    out.push_str(
        " --svg, one point per interval</desc>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n",
    );
    text(&mut out, LEFT, 28.0, HEADLINE, &line1);
    text(&mut out, LEFT, 52.0, SUBTITLE, &line2);
    for (i, p) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_H + GAP) + 18.0;
        draw_panel(&mut out, p, top, t_max);
    }
    out.push_str("</svg>\n");
    out
}

/// The bold line (what was tested) and the figures line (what came out).
#[inline(never)]
fn title_lines(rec: &TestRecord) -> (String, String) {
    let s = &rec.start;
    let end = rec.end();
    let connections = end.map_or(s.connections, |e| e.connections);
    let elapsed = rec.measured();
    let line1 = format!(
        "btest {} \u{2014} {} {}, {} connection{}, {:.2} s",
        s.host(),
        match s.protocol {
            "udp" => "UDP",
            _ => "TCP",
        },
        s.direction,
        connections,
        if connections == 1 { "" } else { "s" },
        elapsed.as_secs_f64()
    );
    let o = end.map(|e| &e.outcome);
    let (tx_bytes, rx_bytes) = o.map_or((0, 0), |o| (o.tx_bytes, o.rx_bytes));
    let mut parts: Vec<String> = Vec::new();
    if s.direction != "receive" {
        parts.push(format!(
            "TX {}",
            format_rate(bits_per_second(tx_bytes, elapsed))
        ));
    }
    if s.direction != "transmit" {
        parts.push(format!(
            "RX {}",
            format_rate(bits_per_second(rx_bytes, elapsed))
        ));
        if s.protocol == "udp" {
            parts.push(format!("lost {}", o.map_or(0, |o| o.lost)));
        }
    }
    if let Some(t) = o.and_then(|o| o.tcp) {
        let ms = |us: u32| f64::from(us) / 1000.0;
        parts.push(format!(
            "RTT {:.2}/{:.2}/{:.2} ms, retr {}",
            ms(t.rtt_min_us),
            ms(t.rtt_avg_us),
            ms(t.rtt_max_us),
            t.retransmits
        ));
    }
    let pct = |v: Option<u8>| v.map_or("-".to_string(), |v| format!("{v}%"));
    parts.push(format!(
        "cpu {}/{}",
        pct(rec.local_cpu()),
        pct(rec.remote_cpu())
    ));
    if let Some(why) = rec.reason().filter(|r| !r.is_clean()) {
        parts.push(format!("ended early: {}", why.describe()));
    }
    parts.push(s.timestamp.clone());
    (line1, parts.join(" \u{00b7} "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record::{sample_end, sample_start};

    fn sample(t: f64, tx: f64, rx: f64) -> Sample {
        Sample {
            t,
            tx_bps: tx,
            rx_bps: rx,
            rtt_ms: Some(0.25),
            lost_per_s: 0.0,
            local_cpu: Some(10),
            remote_cpu: None,
        }
    }

    #[test]
    fn hostile_host_is_escaped_and_series_are_named() {
        let mut start = sample_start();
        start.peer = crate::report::record::Peer::Server("<a&b>\"".into());
        let sides = start.sides;
        let mut rec = TestRecord::new(start);
        let mut end = sample_end(Duration::from_secs(2), 0, 0);
        end.connections = 2;
        rec.finish(end);
        let svg = render(&[sample(1.0, 5e8, 4e8), sample(2.0, 6e8, 3e8)], sides, &rec);
        assert!(svg.contains("&lt;a&amp;b&gt;&quot;"), "{svg}");
        assert!(!svg.contains("<a&b>"));
        assert!(svg.contains("2 connections"), "the connections used");
        for id in ["tx", "rx", "rtt", "cpu-local"] {
            assert!(svg.contains(&format!("id=\"{id}\"")), "{id} missing");
        }
        assert!(
            !svg.contains("id=\"cpu-remote\""),
            "remote CPU had no samples"
        );
        assert!(svg.contains("Mbit/s"));
        assert!(!svg.contains("<script") && !svg.contains("@font-face"));
    }

    #[test]
    fn udp_transmit_only_says_why_there_is_no_loss_line() {
        let sides = Sides {
            tx: true,
            rx: false,
            udp: true,
        };
        let rec = TestRecord::new(sample_start());
        let svg = render(&[sample(1.0, 1e6, 0.0)], sides, &rec);
        assert!(!svg.contains("id=\"loss\""));
        assert!(svg.contains("loss is counted by the server"));
    }
}
