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
//! The sink is fed the same intervals as the other sinks and keeps one small record per
//! second; the file is created when the client starts (a bad path fails before the test, as
//! `--csv` does) and written once, when the test ends.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::{Interval, TcpLatency};
use crate::report::result::Sides;
use crate::report::text::{bits_per_second, format_rate};

/// The SVG file could not be created; reported at start-up, before the test runs.
#[derive(Debug)]
pub struct SvgError {
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
struct Sample {
    /// Seconds from the start of data to the end of the interval.
    t: f64,
    tx_bps: f64,
    rx_bps: f64,
    /// Mean smoothed RTT of the interval, milliseconds.
    rtt_ms: Option<f64>,
    /// Datagrams lost, scaled to one second.
    lost_per_s: f64,
    local_cpu: Option<u8>,
    remote_cpu: Option<u8>,
}

/// What the title says: the test and its summary figures.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The server as the user named it.
    pub host: String,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// `transmit`, `receive` or `both`.
    pub direction: &'static str,
    /// Connections used.
    pub connections: usize,
    /// When the test started, ISO 8601.
    pub timestamp: String,
    /// Measured length.
    pub elapsed: Duration,
    /// Bytes sent over the whole test.
    pub tx_bytes: u64,
    /// Bytes received over the whole test.
    pub rx_bytes: u64,
    /// Datagrams lost (UDP).
    pub lost: u64,
    /// Mean CPU loads, local and remote.
    pub cpu: (Option<u8>, Option<u8>),
    /// RTT over the whole test (TCP).
    pub tcp: Option<TcpLatency>,
    /// Why the test ended, when not the way the user asked.
    pub early_end: Option<String>,
}

/// Collects intervals and writes the picture at the end.
#[derive(Debug)]
pub struct SvgSink {
    path: PathBuf,
    file: File,
    sides: Sides,
    samples: Vec<Sample>,
}

impl SvgSink {
    /// Creates (truncates) `path` now, so an unwritable path is known before the test.
    pub fn create(path: &Path, sides: Sides) -> Result<SvgSink, SvgError> {
        let file = File::create(path).map_err(|source| SvgError {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(SvgSink {
            path: path.to_path_buf(),
            file,
            sides,
            samples: Vec::with_capacity(64),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one interval that started `offset` after the start of data.
    pub fn add(&mut self, iv: &Interval<'_>, offset: Duration) {
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

    /// Writes the picture, replacing anything in the file.
    pub fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        let svg = render(&self.samples, self.sides, summary);
        self.file.set_len(0)?;
        self.file.rewind()?;
        self.file.write_all(svg.as_bytes())?;
        self.file.flush()
    }
}

const WIDTH: f64 = 960.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 74.0;
const PANEL_H: f64 = 170.0;
const GAP: f64 = 46.0;
const FONT: &str = "font-family=\"Helvetica, Arial, sans-serif\"";

const TX_COLOUR: &str = "#c0392b";
const RX_COLOUR: &str = "#1f6fb4";
const RTT_COLOUR: &str = "#7d3c98";
const LOSS_COLOUR: &str = "#d35400";
const LOCAL_COLOUR: &str = "#1e8449";
const REMOTE_COLOUR: &str = "#7f6000";

/// One line of a panel.
struct Series<'a> {
    id: &'static str,
    label: &'a str,
    colour: &'static str,
    dashed: bool,
    /// (seconds, value) points.
    points: Vec<(f64, f64)>,
}

/// A panel: a frame with a y scale, its series and a legend.
struct Panel<'a> {
    title: String,
    /// Unit divisor and name for the axis labels.
    scale: (f64, &'static str),
    /// Fixed top of the y axis (CPU: 100 %), or `None` for a round number above the data.
    max: Option<f64>,
    series: Vec<Series<'a>>,
    /// Shown in the frame when there is nothing to plot.
    empty_note: &'static str,
}

// The element writers are kept out of line: inlined at each call site they cost the static
// router binary several KB for a picture drawn once per test.

/// Renders the whole document.
fn render(samples: &[Sample], sides: Sides, s: &Summary) -> String {
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
    let (line1, line2) = title_lines(s);
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

/// Text styles, after `font-family`.
const HEADLINE: &str = "font-size=\"18\" font-weight=\"bold\" fill=\"#111111\"";
const SUBTITLE: &str = "font-size=\"13\" fill=\"#333333\"";
const PANEL_TITLE: &str = "font-size=\"14\" font-weight=\"bold\" fill=\"#222222\"";
const Y_LABEL: &str = "font-size=\"11\" fill=\"#444444\" text-anchor=\"end\"";
const X_LABEL: &str = "font-size=\"11\" fill=\"#444444\" text-anchor=\"middle\"";
const NOTE: &str = "font-size=\"13\" fill=\"#777777\" text-anchor=\"middle\"";
const LEGEND: &str = "font-size=\"12\" fill=\"#222222\"";

/// One `<text>` element; every text goes through here (one formatting site keeps the binary
/// small).
#[inline(never)]
fn text(out: &mut String, x: f64, y: f64, style: &str, content: &str) {
    let _ = write!(out, "<text x=\"{x:.1}\" y=\"{y:.1}\" {FONT} {style}>");
    push_escaped(out, content);
    out.push_str("</text>\n");
}

/// One `<line>` element with extra attributes.
#[inline(never)]
fn segment(out: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64), attrs: &str) {
    let _ = writeln!(
        out,
        "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" {attrs}/>"
    );
}

/// The bold line (what was tested) and the figures line (what came out).
#[inline(never)]
fn title_lines(s: &Summary) -> (String, String) {
    let line1 = format!(
        "btest {} \u{2014} {} {}, {} connection{}, {:.2} s",
        s.host,
        match s.protocol {
            "udp" => "UDP",
            _ => "TCP",
        },
        s.direction,
        s.connections,
        if s.connections == 1 { "" } else { "s" },
        s.elapsed.as_secs_f64()
    );
    let mut parts: Vec<String> = Vec::new();
    if s.direction != "receive" {
        parts.push(format!(
            "TX {}",
            format_rate(bits_per_second(s.tx_bytes, s.elapsed))
        ));
    }
    if s.direction != "transmit" {
        parts.push(format!(
            "RX {}",
            format_rate(bits_per_second(s.rx_bytes, s.elapsed))
        ));
        if s.protocol == "udp" {
            parts.push(format!("lost {}", s.lost));
        }
    }
    if let Some(t) = s.tcp {
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
    parts.push(format!("cpu {}/{}", pct(s.cpu.0), pct(s.cpu.1)));
    if let Some(why) = &s.early_end {
        parts.push(format!("ended early: {why}"));
    }
    parts.push(s.timestamp.clone());
    (line1, parts.join(" \u{00b7} "))
}

/// Throughput, scaled to the unit of the highest point.
fn throughput_panel(samples: &[Sample], sides: Sides) -> Panel<'static> {
    let peak = samples
        .iter()
        .map(|s| s.tx_bps.max(s.rx_bps))
        .fold(0.0, f64::max);
    let scale = if peak >= 1e9 {
        (1e9, "Gbit/s")
    } else if peak >= 1e6 {
        (1e6, "Mbit/s")
    } else {
        (1e3, "kbit/s")
    };
    let mut series = Vec::new();
    if sides.tx {
        series.push(line(samples, "tx", "TX (sent)", TX_COLOUR, false, |s| {
            Some(s.tx_bps)
        }));
    }
    if sides.rx {
        series.push(line(
            samples,
            "rx",
            "RX (received)",
            RX_COLOUR,
            false,
            |s| Some(s.rx_bps),
        ));
    }
    Panel {
        title: format!("Throughput per second ({})", scale.1),
        scale,
        max: None,
        series,
        empty_note: "no intervals",
    }
}

/// TCP: RTT when sampled; UDP: loss when this side receives.
fn middle_panel(samples: &[Sample], sides: Sides) -> Panel<'static> {
    if sides.udp {
        let series = if sides.rx {
            vec![line(
                samples,
                "loss",
                "lost datagrams",
                LOSS_COLOUR,
                false,
                |s| Some(s.lost_per_s),
            )]
        } else {
            Vec::new()
        };
        return Panel {
            title: "UDP datagrams lost per second".into(),
            scale: (1.0, "/s"),
            max: None,
            series,
            empty_note: "the client does not receive: loss is counted by the server",
        };
    }
    let rtt = line(samples, "rtt", "smoothed RTT", RTT_COLOUR, false, |s| {
        s.rtt_ms
    });
    Panel {
        title: "TCP round-trip time (ms)".into(),
        scale: (1.0, "ms"),
        max: None,
        series: if rtt.points.is_empty() {
            Vec::new()
        } else {
            vec![rtt]
        },
        empty_note: "no RTT samples (TCP_INFO unavailable)",
    }
}

fn cpu_panel(samples: &[Sample]) -> Panel<'static> {
    let series = vec![
        line(samples, "cpu-local", "local", LOCAL_COLOUR, false, |s| {
            s.local_cpu.map(f64::from)
        }),
        line(samples, "cpu-remote", "remote", REMOTE_COLOUR, true, |s| {
            s.remote_cpu.map(f64::from)
        }),
    ];
    Panel {
        title: "CPU load (%)".into(),
        scale: (1.0, "%"),
        max: Some(100.0),
        series: series
            .into_iter()
            .filter(|s| !s.points.is_empty())
            .collect(),
        empty_note: "no CPU figures",
    }
}

#[inline(never)]
fn line(
    samples: &[Sample],
    id: &'static str,
    label: &'static str,
    colour: &'static str,
    dashed: bool,
    value: fn(&Sample) -> Option<f64>,
) -> Series<'static> {
    Series {
        id,
        label,
        colour,
        dashed,
        points: samples
            .iter()
            .filter_map(|s| value(s).map(|v| (s.t, v)))
            .collect(),
    }
}

/// A round top for a y axis at or above `v` whose quarters are round too (1 for nothing).
fn nice_ceiling(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || v.is_infinite() {
        return 1.0;
    }
    // The power of ten at or below v, by steps: no pow/log10 from libm in the binary.
    let mut mag = 1.0;
    while mag * 10.0 <= v {
        mag *= 10.0;
    }
    while mag > v {
        mag /= 10.0;
    }
    [1.0, 1.2, 1.6, 2.0, 4.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|c| *c >= v * 0.999_999)
        .unwrap_or(10.0 * mag)
}

/// Seconds between time labels: about eight labels, on steps a clock reader expects.
fn time_step(t_max: f64) -> f64 {
    let want = t_max / 8.0;
    let mut scale = 1.0;
    loop {
        for step in [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0] {
            if step * scale >= want {
                return step * scale;
            }
        }
        scale *= 60.0;
    }
}

/// A number for an axis label, without trailing zeros: `0.25`, `0.5`, `12`.
fn axis_number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[inline(never)]
fn draw_panel(out: &mut String, p: &Panel<'_>, top: f64, t_max: f64) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let bottom = top + PANEL_H;
    let (div, _) = p.scale;
    let peak = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(_, v)| v / div))
        .fold(0.0, f64::max);
    let y_max = p.max.unwrap_or_else(|| nice_ceiling(peak * 1.05));
    let x = |t: f64| LEFT + t / t_max * plot_w;
    let y = |v: f64| bottom - (v / div / y_max).clamp(0.0, 1.0) * PANEL_H;
    text(out, LEFT, top - 7.0, PANEL_TITLE, &p.title);
    let _ = writeln!(
        out,
        "<rect x=\"{LEFT}\" y=\"{top:.1}\" width=\"{plot_w:.1}\" height=\"{PANEL_H}\" \
         fill=\"#fafafa\" stroke=\"#999999\" stroke-width=\"1\"/>"
    );
    // Four horizontal grid lines with their values.
    for i in 0..=4 {
        let gy = bottom - PANEL_H * f64::from(i) / 4.0;
        segment(out, (LEFT, gy), (LEFT + plot_w, gy), "stroke=\"#dddddd\"");
        let v = axis_number(y_max * f64::from(i) / 4.0);
        text(out, LEFT - 6.0, gy + 4.0, Y_LABEL, &v);
    }
    // Time ticks: about eight, on a round number of seconds.
    let step = time_step(t_max);
    let mut t = 0.0;
    while t <= t_max + 1e-9 {
        text(out, x(t), bottom + 15.0, X_LABEL, &format!("{t:.0} s"));
        t += step;
    }
    if p.series.is_empty() {
        text(
            out,
            LEFT + plot_w / 2.0,
            top + PANEL_H / 2.0,
            NOTE,
            p.empty_note,
        );
    }
    // The first series is drawn wide and underneath, so two lines on the same values (TX
    // and RX of a rate-limited test) both stay visible.
    for (i, s) in p.series.iter().enumerate() {
        draw_series(out, s, if i == 0 { 4.0 } else { 2.0 }, &x, &y);
    }
    // The legend sits right of the panel title, above the frame, never over a line.
    let mut legend_x = LEFT + plot_w;
    for s in p.series.iter().rev() {
        legend_x = draw_legend(out, s, legend_x, top - 7.0);
    }
}

fn dash(s: &Series<'_>) -> &'static str {
    if s.dashed {
        " stroke-dasharray=\"6 4\""
    } else {
        ""
    }
}

#[inline(never)]
fn draw_series(
    out: &mut String,
    s: &Series<'_>,
    width: f64,
    x: &dyn Fn(f64) -> f64,
    y: &dyn Fn(f64) -> f64,
) {
    let _ = write!(
        out,
        "<polyline id=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{width}\" \
         stroke-linejoin=\"round\"{} points=\"",
        s.id,
        s.colour,
        dash(s)
    );
    for (i, &(t, v)) in s.points.iter().enumerate() {
        let sep = if i == 0 { "" } else { " " };
        let _ = write!(out, "{sep}{:.1},{:.1}", x(t), y(v));
    }
    out.push_str("\"/>\n");
    // Dots make short tests (and one-point series) readable; long ones are lines only.
    if s.points.len() <= 60 {
        for &(t, v) in &s.points {
            let _ = writeln!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\"/>",
                x(t),
                y(v),
                s.colour
            );
        }
    }
}

/// Draws one legend entry ending at `right`; returns where the next one should end.
#[inline(never)]
fn draw_legend(out: &mut String, s: &Series<'_>, right: f64, y: f64) -> f64 {
    // Helvetica at 12 px averages about 6.5 px per character.
    let text_w = s.label.len() as f64 * 6.5;
    let start = right - text_w - 28.0;
    let attrs = format!("stroke=\"{}\" stroke-width=\"3\"{}", s.colour, dash(s));
    segment(out, (start, y - 4.0), (start + 22.0, y - 4.0), &attrs);
    text(out, start + 26.0, y, LEGEND, s.label);
    start - 16.0
}

/// Appends `s` as XML character data (also safe inside attribute values); control characters
/// are dropped, as XML 1.0 cannot carry them.
#[inline(never)]
fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c < ' ' => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 4.0);
        assert_eq!(nice_ceiling(11.0), 12.0);
        assert_eq!(nice_ceiling(988.0), 1000.0);
        assert!((nice_ceiling(0.13) - 0.16).abs() < 1e-9);
        assert_eq!(nice_ceiling(200.0), 200.0);
        assert_eq!(time_step(3.0), 1.0);
        assert_eq!(time_step(12.0), 2.0);
        assert_eq!(time_step(100.0), 15.0);
        assert_eq!(time_step(3600.0), 600.0);
        assert_eq!(axis_number(0.25), "0.25");
        assert_eq!(axis_number(15.0), "15");
        assert_eq!(axis_number(0.0), "0");
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
    }

    #[test]
    fn hostile_host_is_escaped_and_series_are_named() {
        let sides = Sides {
            tx: true,
            rx: true,
            udp: false,
        };
        let summary = Summary {
            host: "<a&b>\"".into(),
            protocol: "tcp",
            direction: "both",
            connections: 2,
            elapsed: Duration::from_secs(2),
            ..Summary::default()
        };
        let svg = render(
            &[sample(1.0, 5e8, 4e8), sample(2.0, 6e8, 3e8)],
            sides,
            &summary,
        );
        assert!(svg.contains("&lt;a&amp;b&gt;&quot;"), "{svg}");
        assert!(!svg.contains("<a&b>"));
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
        let svg = render(&[sample(1.0, 1e6, 0.0)], sides, &Summary::default());
        assert!(!svg.contains("id=\"loss\""));
        assert!(svg.contains("loss is counted by the server"));
    }
}
