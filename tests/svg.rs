//! `--svg FILE` end to end: a real loopback test draws a picture that is well-formed XML, has
//! one point per interval in each series the test has, states the summary in its title, and
//! renders in headless Chromium when that is installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn temp_svg(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("btest-svg-{}-{tag}.svg", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Checks the document is well-formed in the ways a hand-written SVG can go wrong: every tag
/// closed in order, attributes quoted, `&` only in entities, one root. Returns the start tags
/// (name and raw attribute text) in document order.
fn well_formed(doc: &str) -> Vec<(String, String)> {
    let mut stack: Vec<String> = Vec::new();
    let mut tags = Vec::new();
    let mut rest = doc;
    let mut roots = 0;
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt]);
        rest = &rest[lt..];
        if let Some(body) = rest.strip_prefix("<?") {
            let end = body.find("?>").expect("unterminated <?");
            rest = &body[end + 2..];
            continue;
        }
        if let Some(body) = rest.strip_prefix("<!--") {
            let end = body.find("-->").expect("unterminated comment");
            rest = &body[end + 3..];
            continue;
        }
        let gt = tag_end(rest);
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack
                .pop()
                .unwrap_or_else(|| panic!("</{name}> without an open tag"));
            assert_eq!(open, name.trim(), "</{name}> closes <{open}>");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, attrs) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
        check_attrs(name, attrs);
        if stack.is_empty() {
            roots += 1;
        }
        tags.push((name.to_string(), attrs.to_string()));
        if !self_closing {
            stack.push(name.to_string());
        }
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
    assert_eq!(roots, 1, "one root element");
    tags
}

/// Index of the `>` ending the tag at the start of `s`, outside quoted attribute values.
fn tag_end(s: &str) -> usize {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return i,
            (None, '<') if i > 0 => panic!("'<' inside a tag: {}", &s[..i]),
            _ => {}
        }
    }
    panic!("unterminated tag: {s}")
}

fn check_text(text: &str) {
    assert!(!text.contains('>'), "bare '>' in text: {text}");
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..text[i..].find(';').map_or(text.len(), |e| i + e + 1)];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity),
            "bad entity {entity}"
        );
    }
}

/// `name="value"` pairs only, values without `<` or a bare `&`.
fn check_attrs(tag: &str, attrs: &str) {
    let mut rest = attrs.trim();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .unwrap_or_else(|| panic!("<{tag}>: attribute without value"));
        let name = rest[..eq].trim();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':'),
            "<{tag}>: bad attribute name {name:?}"
        );
        let after = &rest[eq + 1..];
        let q = after.chars().next().expect("value");
        assert!(q == '"' || q == '\'', "<{tag} {name}>: unquoted value");
        let close = after[1..].find(q).expect("closing quote") + 1;
        let value = &after[1..close];
        assert!(!value.contains('<'), "<{tag} {name}>: '<' in value");
        check_text(value);
        rest = after[close + 1..].trim_start();
    }
}

fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let start = attrs.find(&key)? + key.len();
    Some(&attrs[start..start + attrs[start..].find('"')?])
}

/// Point count of each `<polyline>` by id.
fn series(tags: &[(String, String)]) -> Vec<(String, usize)> {
    tags.iter()
        .filter(|(n, _)| n == "polyline")
        .map(|(_, a)| {
            let id = attr(a, "id").expect("polyline has an id").to_string();
            let points = attr(a, "points").expect("points");
            for p in points.split_whitespace() {
                let (x, y) = p.split_once(',').expect("x,y");
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!(
                    x.is_finite() && y.is_finite() && x >= 0.0 && y >= 0.0,
                    "{p}"
                );
            }
            (id, points.split_whitespace().count())
        })
        .collect()
}

fn title_of(doc: &str) -> &str {
    let start = doc.find("<title>").expect("<title>") + "<title>".len();
    &doc[start..start + doc[start..].find("</title>").expect("</title>")]
}

/// The rate as the summary line prints it: `9.26 Gbps`.
fn summary_rate(stdout: &[u8], dir: &str) -> String {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("[ avg]") && l.contains(&format!(" {dir} ")))
        .unwrap_or_else(|| panic!("no {dir} summary in {text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    format!("{} {}", words[3], words[4])
}

/// Renders `svg` in headless Chromium and checks a PNG came out; skips without Chromium.
fn render_in_chromium(svg: &Path) {
    let Some(browser) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
    else {
        skip("chromium not installed, SVG not rendered");
        return;
    };
    let png = svg.with_extension("png");
    let _ = std::fs::remove_file(&png);
    let out = Command::new("timeout")
        .arg("120")
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=960,740",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", svg.display()))
        .output()
        .expect("run chromium");
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "chromium wrote no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank 960x740 page compresses to a few KB; the chart's text and lines take far more.
    assert!(
        bytes.len() > 10_000,
        "screenshot only {} bytes",
        bytes.len()
    );
    let _ = std::fs::remove_file(&png);
}

#[test]
fn tcp_both_ways_draws_rates_rtt_and_cpu() {
    let server = TestServer::start(&[]);
    let path = temp_svg("tcp");
    let out = client(
        server.port,
        &["-t", "-r", "-d", "3", "--svg", path.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lines = parse(&out.stdout);
    let n_tx = intervals(&lines, "TX").len();
    let n_rx = intervals(&lines, "RX").len();
    let doc = std::fs::read_to_string(&path).expect("SVG written");
    let tags = well_formed(&doc);
    assert_eq!(tags[0].0, "svg");
    assert!(attr(&tags[0].1, "xmlns") == Some("http://www.w3.org/2000/svg"));
    let got = series(&tags);
    let count = |id: &str| got.iter().find(|(i, _)| i == id).map(|(_, n)| *n);
    assert_eq!(count("tx"), Some(n_tx), "{got:?}");
    assert_eq!(count("rx"), Some(n_rx), "{got:?}");
    assert!(count("rtt").is_some_and(|n| n >= 1), "{got:?}");
    assert!(count("cpu-local").is_some_and(|n| n >= 1), "{got:?}");
    assert_eq!(count("loss"), None, "a TCP test has no loss series");
    let title = title_of(&doc);
    for want in [
        format!("TX {}", summary_rate(&out.stdout, "TX")),
        format!("RX {}", summary_rate(&out.stdout, "RX")),
        "127.0.0.1".to_string(),
        "TCP both".to_string(),
        "RTT ".to_string(),
    ] {
        assert!(title.contains(&want), "title lacks {want:?}: {title}");
    }
    // Self-contained: nothing fetched, nothing run.
    for banned in [
        "<script",
        "<style",
        "@import",
        "@font-face",
        "href=",
        "url(",
    ] {
        assert!(!doc.contains(banned), "{banned} in the SVG");
    }
    render_in_chromium(&path);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn udp_receive_draws_loss_instead_of_rtt() {
    let server = TestServer::start(&[]);
    let path = temp_svg("udp");
    let out = client(
        server.port,
        &[
            "-u",
            "-r",
            "-b",
            "20M",
            "-d",
            "2",
            "--svg",
            path.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let n_rx = intervals(&parse(&out.stdout), "RX").len();
    let doc = std::fs::read_to_string(&path).expect("SVG written");
    let got = series(&well_formed(&doc));
    let ids: Vec<&str> = got.iter().map(|(i, _)| i.as_str()).collect();
    assert!(ids.contains(&"rx") && ids.contains(&"loss"), "{ids:?}");
    assert!(!ids.contains(&"tx") && !ids.contains(&"rtt"), "{ids:?}");
    assert!(got.iter().any(|(i, n)| i == "loss" && *n == n_rx));
    assert!(title_of(&doc).contains("lost "), "{}", title_of(&doc));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn unwritable_svg_path_is_a_usage_error_before_connecting() {
    let path = temp_svg("missing").join("no").join("such.svg");
    // Port 1 on loopback: nothing listens, so exit 2 (not 1) proves the file came first.
    let out = client(1, &["-r", "-d", "1", "--svg", path.to_str().unwrap()]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("such.svg"), "{}", stderr(&out));
    let out = Command::new(BTEST)
        .args(["-s", "-P", "0", "--svg", "x.svg"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "the server has no picture to draw");
}
