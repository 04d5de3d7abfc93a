//! A small JSON writer for `--json` and `--json-lines`.
//!
//! The output is a handful of flat records, so a streaming writer that appends to one
//! `String` is all we need; it keeps serde out of the runtime dependencies. Commas are placed
//! from a stack of open containers, so callers only say what comes next.

use std::fmt::Write as _;

/// Builds one JSON text. The caller is trusted to nest correctly (a key before each value in
/// an object, matching ends); misuse yields invalid JSON, never a panic.
#[derive(Debug, Default)]
pub(crate) struct JsonWriter {
    buf: String,
    /// One entry per open container: true once it holds an element, so the next needs a comma.
    stack: Vec<bool>,
    /// A key was just written, so the next value follows its colon without a comma.
    after_key: bool,
}

impl JsonWriter {
    /// An empty writer.
    pub(crate) fn new() -> JsonWriter {
        JsonWriter::default()
    }

    /// Writes the separator a value needs at this position.
    fn before_value(&mut self) {
        if self.after_key {
            self.after_key = false;
            return;
        }
        if let Some(nonempty) = self.stack.last_mut() {
            if *nonempty {
                self.buf.push(',');
            }
            *nonempty = true;
        }
    }

    fn open(&mut self, object: bool) {
        self.before_value();
        self.buf.push(if object { '{' } else { '[' });
        self.stack.push(false);
    }

    fn close(&mut self, object: bool) {
        self.after_key = false;
        self.stack.pop();
        self.buf.push(if object { '}' } else { ']' });
    }

    /// Opens `{`.
    pub(crate) fn begin_object(&mut self) -> &mut Self {
        self.open(true);
        self
    }

    /// Closes `}`.
    pub(crate) fn end_object(&mut self) -> &mut Self {
        self.close(true);
        self
    }

    /// Opens `[`.
    pub(crate) fn begin_array(&mut self) -> &mut Self {
        self.open(false);
        self
    }

    /// Closes `]`.
    pub(crate) fn end_array(&mut self) -> &mut Self {
        self.close(false);
        self
    }

    /// Writes an object key; the next call writes its value.
    pub(crate) fn key(&mut self, k: &str) -> &mut Self {
        if let Some(nonempty) = self.stack.last_mut() {
            if *nonempty {
                self.buf.push(',');
            }
            *nonempty = true;
        }
        self.buf.push('"');
        escape_into(&mut self.buf, k);
        self.buf.push_str("\":");
        self.after_key = true;
        self
    }

    /// Writes a string value.
    pub(crate) fn string(&mut self, v: &str) -> &mut Self {
        self.before_value();
        self.buf.push('"');
        escape_into(&mut self.buf, v);
        self.buf.push('"');
        self
    }

    /// Writes an unsigned integer. Byte counts exceed 2^53 only after petabytes, so readers
    /// that parse numbers as doubles are not a concern in practice.
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.before_value();
        let _ = write!(self.buf, "{v}");
        self
    }

    /// Writes a signed integer.
    #[cfg(any(test, feature = "pro"))]
    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.before_value();
        let _ = write!(self.buf, "{v}");
        self
    }

    /// Writes a number in its shortest form that reads back exactly; NaN and infinities,
    /// which JSON cannot express, become `null`. Very large or small magnitudes use exponent
    /// form (`1e300`), since `Display` would spell out hundreds of digits that some parsers
    /// reject; both forms are valid JSON.
    pub(crate) fn f64(&mut self, v: f64) -> &mut Self {
        self.before_value();
        if !v.is_finite() {
            self.buf.push_str("null");
        } else if v == 0.0 || (1e-6..1e15).contains(&v.abs()) {
            let _ = write!(self.buf, "{v}");
        } else {
            let _ = write!(self.buf, "{v:e}");
        }
        self
    }

    /// Writes a number rounded to `decimals` places (`941.23` rather than
    /// `941.2345678901`), for rates meant to be read by people as well; non-finite → `null`.
    pub(crate) fn f64_fixed(&mut self, v: f64, decimals: usize) -> &mut Self {
        self.before_value();
        if v.is_finite() {
            let _ = write!(self.buf, "{v:.decimals$}");
        } else {
            self.buf.push_str("null");
        }
        self
    }

    /// Writes `true` or `false`.
    pub(crate) fn bool(&mut self, v: bool) -> &mut Self {
        self.before_value();
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }

    /// Writes `null`.
    pub(crate) fn null(&mut self) -> &mut Self {
        self.before_value();
        self.buf.push_str("null");
        self
    }

    /// Writes `json`, a complete JSON value rendered earlier by another writer, as the next
    /// value: `--json` renders each interval when it happens and assembles the document at
    /// the end. The caller vouches that `json` is valid.
    pub(crate) fn raw_value(&mut self, json: &str) -> &mut Self {
        self.before_value();
        self.buf.push_str(json);
        self
    }

    /// `"k":"v"`.
    pub(crate) fn field_str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k).string(v)
    }

    /// `"k":v` for an unsigned integer.
    pub(crate) fn field_u64(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k).u64(v)
    }

    /// `"k":v` for a float (see [`JsonWriter::f64`]).
    #[cfg(any(test, feature = "pro"))]
    pub(crate) fn field_f64(&mut self, k: &str, v: f64) -> &mut Self {
        self.key(k).f64(v)
    }

    /// `"k":true|false`.
    pub(crate) fn field_bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k).bool(v)
    }

    /// The JSON text written so far.
    pub(crate) fn finish(self) -> String {
        self.buf
    }
}

/// Appends `s` escaped for use inside a JSON string: `"` and `\`, every control character
/// below U+0020 (JSON forbids them raw), and U+2028/U+2029, which JSON allows but JavaScript
/// before ES2019 treats as line ends, breaking `--json-lines` consumers that `eval`.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{08}' => Some("\\b"),
            '\u{0c}' => Some("\\f"),
            '\u{2028}' => Some("\\u2028"),
            '\u{2029}' => Some("\\u2029"),
            c if c < ' ' => None,
            _ => continue,
        };
        out.push_str(s.get(start..i).unwrap_or_default());
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(s.get(start..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("invalid JSON {s:?}: {e}"))
    }

    #[test]
    fn flat_object_with_every_type() {
        let mut w = JsonWriter::new();
        w.begin_object()
            .field_str("host", "10.0.0.1")
            .field_u64("bytes", u64::MAX)
            .key("delta")
            .i64(-5)
            .field_f64("mbps", 941.25)
            .key("rounded")
            .f64_fixed(941.23456, 2)
            .field_bool("udp", true)
            .key("cpu")
            .null()
            .field_f64("nan", f64::NAN)
            .field_f64("inf", f64::INFINITY)
            .end_object();
        let text = w.finish();
        assert_eq!(
            parse(&text),
            json!({"host": "10.0.0.1", "bytes": u64::MAX, "delta": -5, "mbps": 941.25,
                   "rounded": 941.23, "udp": true, "cpu": null, "nan": null, "inf": null})
        );
        assert!(text.contains("\"rounded\":941.23,"));
    }

    #[test]
    fn floats_are_valid_json_at_extremes() {
        for v in [
            0.0,
            -0.0,
            1e-300,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            0.1 + 0.2,
        ] {
            let mut w = JsonWriter::new();
            w.f64(v);
            let text = w.finish();
            assert_eq!(parse(&text).as_f64(), Some(v), "{text}");
            assert!(text.len() <= 24, "{text}");
        }
    }

    #[test]
    fn nested_and_empty_containers() {
        let mut w = JsonWriter::new();
        w.begin_object();
        w.key("empty_obj").begin_object().end_object();
        w.key("empty_arr").begin_array().end_array();
        w.key("intervals").begin_array();
        for i in 0..3u64 {
            w.begin_object().field_u64("i", i).key("xs").begin_array();
            w.u64(i).u64(i + 1).begin_array().end_array();
            w.end_array().end_object();
        }
        w.end_array();
        w.field_str("after", "x").end_object();
        assert_eq!(
            parse(&w.finish()),
            json!({"empty_obj": {}, "empty_arr": [], "intervals": [
                {"i": 0, "xs": [0, 1, []]}, {"i": 1, "xs": [1, 2, []]}, {"i": 2, "xs": [2, 3, []]}
            ], "after": "x"})
        );
        let mut top = JsonWriter::new();
        top.begin_array().end_array();
        assert_eq!(top.finish(), "[]");
    }

    #[test]
    fn strings_round_trip_through_escaping() {
        let mut samples: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "quote \" and backslash \\ and slash /".into(),
            "line\nfeed\rtab\tbs\u{08}ff\u{0c}".into(),
            "unicode: żółw 日本 🦀".into(),
            "separators \u{2028} \u{2029}".into(),
            "del \u{7f} stays".into(),
        ];
        samples.push((0u8..0x20).map(char::from).collect());
        for s in &samples {
            let mut w = JsonWriter::new();
            w.begin_object().field_str(s, s).end_object();
            let text = w.finish();
            assert!(!text.contains('\u{2028}') && !text.contains('\u{2029}'));
            assert!(
                text.bytes().all(|b| b >= 0x20),
                "raw control byte in {text:?}"
            );
            assert_eq!(parse(&text), json!({ s.as_str(): s.as_str() }));
        }
    }

    #[test]
    fn raw_values_take_their_place_in_arrays() {
        let mut w = JsonWriter::new();
        w.begin_object().key("xs").begin_array();
        w.raw_value("{\"a\":1}").raw_value("[2]");
        w.end_array().key("y").raw_value("null").end_object();
        assert_eq!(
            parse(&w.finish()),
            json!({"xs": [{"a": 1}, [2]], "y": null})
        );
    }

    #[test]
    fn escape_forms() {
        let mut out = String::new();
        escape_into(&mut out, "a\u{01}\u{1f}\n\u{2028}");
        assert_eq!(out, "a\\u0001\\u001f\\n\\u2028");
    }
}
