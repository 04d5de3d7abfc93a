//! The HTML pages: one small document per view, inline CSS, the chart as inline SVG drawn on
//! the server from the interval rows. No scripts, fonts or anything fetched from elsewhere, so
//! the page works on a network without the internet and leaks no visit to a third party; the
//! response's content security policy forbids the browser any other request anyway.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::history::{IntervalRow, PeriodUsage, SessionRow};
use crate::pro::quota::{Dir, Tz};
use crate::sys::clock::utc_from_unix;

/// Everything the page of one address shows.
pub(crate) struct IpView<'a> {
    /// The address.
    pub ip: IpAddr,
    /// Zone of the periods.
    pub tz: Tz,
    /// Day, week and month.
    pub usage: &'a [PeriodUsage],
    /// Recent sessions, newest first.
    pub sessions: &'a [SessionRow],
    /// The session charted.
    pub chosen: Option<&'a SessionRow>,
    /// Its intervals.
    pub intervals: &'a [IntervalRow],
    /// This page's own path, for the session links.
    pub base: &'a str,
    /// Show user names and details.
    pub admin: bool,
}

/// Escapes text for HTML element content and quoted attribute values: the SVG writer's
/// escaping, which is valid HTML too.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    crate::report::svg::push_escaped(&mut out, s);
    out
}

/// `1.23 GB`, 1000-based like the rest of the tool's sizes.
pub(crate) fn bytes(n: u64) -> String {
    human(n as f64, "B")
}

/// `94.1 Mbit/s`.
pub(crate) fn rate(bps: f64) -> String {
    human(bps, "bit/s")
}

fn human(v: f64, unit: &str) -> String {
    let (scaled, prefix) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(f, _)| v >= *f)
        .map_or((v, ""), |(f, p)| (v / f, p));
    if prefix.is_empty() {
        format!("{scaled:.0} {unit}")
    } else {
        format!("{scaled:.2} {prefix}{unit}")
    }
}

fn time(ms: i64) -> String {
    let t = utc_from_unix(ms.div_euclid(1000)).iso8601();
    t.get(..19).map_or(t.clone(), |s| s.replace('T', " "))
}

/// The page's only style sheet. The content security policy admits it by its hash
/// ([`style_hash`]), so no other style (an inline attribute, or markup that slipped through)
/// would apply.
const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:60em;\
color:#222;padding:0 1em}h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}\
table{border-collapse:collapse;width:100%}th,td{text-align:right;padding:.2em .5em;\
border-bottom:1px solid #ddd}th:first-child,td:first-child{text-align:left}\
meter{width:8em}\
svg{background:#fafafa;border:1px solid #ddd}.rx{stroke:#2a6fdb}.tx{stroke:#d9822b}\
.muted{color:#777}a{color:#2a6fdb}";

/// The CSP source that admits [`STYLE`]: `'sha256-<base64 of its digest>'`.
pub(crate) fn style_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        use sha2::{Digest, Sha256};
        format!("'sha256-{}'", base64(&Sha256::digest(STYLE.as_bytes())))
    })
}

/// Standard base64 with padding (RFC 4648, section 4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            let c = ALPHABET[((n >> shift) & 63) as usize];
            out.push(if i <= chunk.len() { char::from(c) } else { '=' });
        }
    }
    out
}

/// The page of one address: budgets, recent sessions and the chart of one session.
pub(crate) fn ip_page(v: &IpView<'_>) -> String {
    let ip = escape(&v.ip.to_string());
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>btest: {ip}</title><style>{STYLE}</style></head><body>\
         <h1>Bandwidth tests from {ip}</h1>"
    );
    usage_table(&mut h, v);
    sessions_table(&mut h, v);
    chart_section(&mut h, v);
    h.push_str("</body></html>\n");
    h
}

fn usage_table(h: &mut String, v: &IpView<'_>) {
    let _ = write!(
        h,
        "<h2>Budget (periods in {})</h2><table id=\"usage\"><tr><th>period</th>\
         <th>direction</th><th>used</th><th>budget</th><th>left</th><th></th></tr>",
        escape(&v.tz.name())
    );
    for u in v.usage {
        for (d, used) in [
            (Dir::Total, u.used_in.saturating_add(u.used_out)),
            (Dir::In, u.used_in),
            (Dir::Out, u.used_out),
        ] {
            let limit = u.limit.get(d);
            // Directions without a budget are shown only for the total, to keep it short.
            if limit == 0 && d != Dir::Total {
                continue;
            }
            let (budget, left, bar) = if limit == 0 {
                ("unlimited".to_owned(), "-".to_owned(), String::new())
            } else {
                let pct = (used as f64 / limit as f64 * 100.0).min(100.0);
                (
                    bytes(limit),
                    bytes(limit.saturating_sub(used)),
                    // A meter draws the bar without a style attribute; past `high` it is shown
                    // as a warning.
                    format!(
                        "<meter min=\"0\" max=\"100\" low=\"80\" high=\"99\" optimum=\"0\" \
                         value=\"{pct:.0}\"></meter>"
                    ),
                )
            };
            let _ = write!(
                h,
                "<tr><td>{} {}</td><td>{}</td><td>{}</td><td>{budget}</td><td>{left}</td>\
                 <td>{bar}</td></tr>",
                u.period.name(),
                escape(&u.label),
                d.name(),
                bytes(used)
            );
        }
    }
    h.push_str("</table>");
}

fn sessions_table(h: &mut String, v: &IpView<'_>) {
    h.push_str("<h2>Recent tests</h2>");
    if v.sessions.is_empty() {
        h.push_str("<p class=\"muted\">No tests from this address yet.</p>");
        return;
    }
    h.push_str(
        "<table id=\"sessions\"><tr><th>start (UTC)</th><th>test</th><th>received</th>\
         <th>sent</th><th>avg in</th><th>avg out</th><th>outcome</th></tr>",
    );
    for s in v.sessions {
        let what = format!(
            "{} {}{}",
            s.proto.as_deref().unwrap_or("-"),
            s.direction.as_deref().unwrap_or("-"),
            match (&s.user, v.admin) {
                (Some(u), true) => format!(" ({u})"),
                _ => String::new(),
            }
        );
        let outcome = match s.visible_detail(v.admin) {
            Some(d) => format!("{}: {d}", s.outcome),
            None => s.outcome.clone(),
        };
        let _ = write!(
            h,
            "<tr><td><a href=\"{}?session={}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(v.base),
            s.id,
            time(s.start_ms),
            escape(&what),
            bytes(s.bytes_in),
            bytes(s.bytes_out),
            s.avg_in_bps.map_or("-".into(), rate),
            s.avg_out_bps.map_or("-".into(), rate),
            escape(&outcome)
        );
    }
    h.push_str("</table>");
}

/// Chart geometry: the SVG's user space, plot margins.
const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 30.0;

fn chart_section(h: &mut String, v: &IpView<'_>) {
    match v.chosen {
        Some(s) => {
            let _ = write!(
                h,
                "<h2>Test {} at {} UTC, per second</h2>",
                s.id,
                time(s.start_ms)
            );
        }
        None => h.push_str("<h2>Per second</h2>"),
    }
    h.push_str(&chart(v.intervals));
}

/// The rates of a session's intervals as an SVG line chart: received (server in) and sent
/// (server out) bit/s against seconds.
pub(crate) fn chart(ivs: &[IntervalRow]) -> String {
    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" \
         width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"rate per second\">"
    );
    let max = ivs
        .iter()
        .flat_map(|i| [i.in_bps, i.out_bps])
        .fold(0.0f64, f64::max);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let _ = write!(
        s,
        "<line x1=\"{LEFT}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"#999\"/>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{y}\" stroke=\"#999\"/>",
        y = TOP + ph,
        x2 = LEFT + pw
    );
    if ivs.is_empty() || max <= 0.0 {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#777\">no data moved \
             in this test</text></svg>",
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
        return s;
    }
    let n = ivs.len();
    let x = |i: usize| {
        if n <= 1 {
            LEFT + pw / 2.0
        } else {
            LEFT + pw * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| TOP + ph - ph * (v / max);
    for (class, pick) in [
        (
            "rx",
            (|i: &IntervalRow| i.in_bps) as fn(&IntervalRow) -> f64,
        ),
        ("tx", |i: &IntervalRow| i.out_bps),
    ] {
        if ivs.iter().all(|i| pick(i) == 0.0) {
            continue;
        }
        let _ = write!(
            s,
            "<polyline class=\"{class}\" fill=\"none\" stroke-width=\"2\" points=\""
        );
        for (i, iv) in ivs.iter().enumerate() {
            let _ = write!(s, "{:.1},{:.1} ", x(i), y(pick(iv)));
        }
        s.push_str("\"/>");
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\">0</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\">{} s</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#2a6fdb\">received by server</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#d9822b\">sent by server</text></svg>",
        LEFT - 4.0,
        TOP + 10.0,
        escape(&rate(max)),
        LEFT - 4.0,
        TOP + ph,
        LEFT + pw,
        H - 8.0,
        n,
        LEFT + 8.0,
        H - 8.0,
        LEFT + 140.0,
        H - 8.0
    );
    s
}

#[cfg(test)]
mod tests {

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(raw.as_bytes()), enc);
        }
    }

    #[test]
    fn the_style_hash_names_the_style_sheet() {
        let h = super::style_hash();
        assert!(h.starts_with("'sha256-") && h.ends_with("='"), "{h}");
        assert_eq!(h.len(), "'sha256-'".len() + 44);
    }
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;"
        );
    }

    #[test]
    fn chart_draws_one_point_per_interval() {
        let ivs: Vec<IntervalRow> = (1..=3)
            .map(|i| IntervalRow {
                idx: i,
                at_ms: i64::from(i) * 1000,
                bytes_in: 1000 * u64::from(i),
                bytes_out: 0,
                in_bps: 8000.0 * f64::from(i),
                out_bps: 0.0,
            })
            .collect();
        let svg = chart(&ivs);
        assert!(svg.starts_with("<svg id=\"chart\""));
        let points = svg
            .split("class=\"rx\"")
            .nth(1)
            .and_then(|r| r.split("points=\"").nth(1))
            .and_then(|r| r.split('"').next())
            .unwrap();
        assert_eq!(points.split_whitespace().count(), 3);
        assert!(
            !svg.contains("class=\"tx\""),
            "a silent direction is not drawn"
        );
        assert!(chart(&[]).contains("no data"));
        assert_eq!(rate(94_100_000.0), "94.10 Mbit/s");
        assert_eq!(bytes(999), "999 B");
    }
}
