//! SVG elements: text, lines, a panel's frame, grid and axes, its series and legend.

use std::fmt::Write as _;

use super::panels::{Panel, Series};

pub(super) const WIDTH: f64 = 960.0;
pub(super) const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
pub(super) const TOP: f64 = 74.0;
pub(super) const PANEL_H: f64 = 170.0;
pub(super) const GAP: f64 = 46.0;
const FONT: &str = "font-family=\"Helvetica, Arial, sans-serif\"";

/// Text styles, after `font-family`.
pub(super) const HEADLINE: &str = "font-size=\"18\" font-weight=\"bold\" fill=\"#111111\"";
pub(super) const SUBTITLE: &str = "font-size=\"13\" fill=\"#333333\"";
const PANEL_TITLE: &str = "font-size=\"14\" font-weight=\"bold\" fill=\"#222222\"";
const Y_LABEL: &str = "font-size=\"11\" fill=\"#444444\" text-anchor=\"end\"";
const X_LABEL: &str = "font-size=\"11\" fill=\"#444444\" text-anchor=\"middle\"";
const NOTE: &str = "font-size=\"13\" fill=\"#777777\" text-anchor=\"middle\"";
const LEGEND: &str = "font-size=\"12\" fill=\"#222222\"";

/// One `<text>` element; every text goes through here (one formatting site keeps the binary
/// small).
#[inline(never)]
pub(super) fn text(out: &mut String, x: f64, y: f64, style: &str, content: &str) {
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
pub(super) fn draw_panel(out: &mut String, p: &Panel<'_>, top: f64, t_max: f64) {
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
pub(crate) fn push_escaped(out: &mut String, s: &str) {
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
}
