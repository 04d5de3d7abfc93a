//! `--csv FILE`: one row per finished test, appended to a file that scripts and spreadsheets
//! collect over many runs. The columns are those of the older Rust btest tool, in its order,
//! so existing files keep growing without a format break.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::report::record::TestRecord;

/// The header line, written once when the file is new or empty.
pub(crate) const HEADER: &str = "timestamp,host,port,protocol,direction,duration_s,tx_avg_mbps,\
rx_avg_mbps,tx_bytes,rx_bytes,lost_packets,local_cpu_pct,remote_cpu_pct,auth_type";

/// The file could not be opened or its header written; shown to the user at start-up, before
/// any test runs, so a typo in the path does not cost a whole test's result.
#[derive(Debug)]
pub(crate) struct CsvError {
    path: PathBuf,
    source: io::Error,
}

impl CsvError {
    /// The path that was being opened.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot open CSV file {} for appending: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for CsvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// One test's result, one line of the file.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CsvRow {
    /// When the test ended, e.g. [`crate::sys::clock::LocalTime::iso8601`].
    pub timestamp: String,
    /// The peer as the user named it.
    pub host: String,
    /// Control port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// `transmit`, `receive` or `both`, from the client's point of view.
    pub direction: &'static str,
    /// Test length in seconds.
    pub duration_s: f64,
    /// Average send rate, megabits per second (1000-based).
    pub tx_avg_mbps: f64,
    /// Average receive rate, megabits per second (1000-based).
    pub rx_avg_mbps: f64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// UDP datagrams lost (0 for TCP).
    pub lost_packets: u64,
    /// This host's average CPU load, if measured.
    pub local_cpu_pct: Option<u8>,
    /// The peer's average CPU load, if it reported one.
    pub remote_cpu_pct: Option<u8>,
    /// `none`, `md5` or `ecsrp5`.
    pub auth_type: &'static str,
}

impl CsvRow {
    /// The row of a finished test, stamped now; `None` before its end. Bytes and loss are the
    /// engine's totals, length and rates follow the record's [`crate::report::record::Span`],
    /// CPU columns average the intervals that had a figure.
    pub(crate) fn of(rec: &TestRecord) -> Option<CsvRow> {
        let (o, r) = (&rec.end()?.outcome, rec.rates()?);
        let s = &rec.start;
        Some(CsvRow {
            timestamp: crate::sys::clock::local_now().iso8601(),
            host: s.host(),
            port: s.port,
            protocol: s.protocol,
            direction: s.direction,
            duration_s: r.secs,
            tx_avg_mbps: r.tx_mbps,
            rx_avg_mbps: r.rx_mbps,
            tx_bytes: o.tx_bytes,
            rx_bytes: o.rx_bytes,
            lost_packets: o.lost,
            local_cpu_pct: rec.local_cpu(),
            remote_cpu_pct: rec.remote_cpu(),
            auth_type: s.auth.unwrap_or("none"),
        })
    }
}

/// An open CSV file. Held for the life of the program so that an unwritable path fails at
/// start-up rather than after the test.
#[derive(Debug)]
pub(crate) struct CsvSink {
    file: File,
    /// Reused for every row, so appending allocates only the first time.
    line: String,
}

impl CsvSink {
    /// Opens `path` for appending, creating it if missing, and writes the header if the file
    /// is empty (new, or truncated since).
    pub(crate) fn open(path: &Path) -> Result<CsvSink, CsvError> {
        let err = |source| CsvError {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if len == 0 {
            let mut header = String::with_capacity(HEADER.len() + 1);
            header.push_str(HEADER);
            header.push('\n');
            file.write_all(header.as_bytes()).map_err(err)?;
        }
        Ok(CsvSink {
            file,
            line: String::with_capacity(256),
        })
    }

    /// Appends one row. The line goes out in a single `write` on an `O_APPEND` file, so rows
    /// from concurrent processes do not interleave, and nothing is left in a buffer if the
    /// process is killed afterwards.
    pub(crate) fn append(&mut self, row: &CsvRow) -> io::Result<()> {
        self.line.clear();
        format_row(&mut self.line, row);
        self.file.write_all(self.line.as_bytes())?;
        self.file.flush()
    }
}

/// Formats `row` as one CSV line ending in `\n`.
fn format_row(out: &mut String, row: &CsvRow) {
    push_text(out, &row.timestamp);
    out.push(',');
    push_text(out, &row.host);
    let _ = write!(out, ",{},", row.port);
    push_text(out, row.protocol);
    out.push(',');
    push_text(out, row.direction);
    out.push(',');
    push_f2(out, row.duration_s);
    out.push(',');
    push_f2(out, row.tx_avg_mbps);
    out.push(',');
    push_f2(out, row.rx_avg_mbps);
    let _ = write!(
        out,
        ",{},{},{},",
        row.tx_bytes, row.rx_bytes, row.lost_packets
    );
    push_opt(out, row.local_cpu_pct);
    out.push(',');
    push_opt(out, row.remote_cpu_pct);
    out.push(',');
    push_text(out, row.auth_type);
    out.push('\n');
}

/// A text field, quoted per RFC 4180 when it holds a comma, quote or line break (the host
/// is user input), with inner quotes doubled.
fn push_text(out: &mut String, s: &str) {
    if s.contains([',', '"', '\r', '\n']) {
        out.push('"');
        for c in s.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// Two decimals; an empty field for NaN or infinity, which no spreadsheet reads as a number.
fn push_f2(out: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{v:.2}");
    }
}

fn push_opt(out: &mut String, v: Option<u8>) {
    if let Some(v) = v {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn temp_path(tag: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!(
            "btest-csv-{}-{}-{}.csv",
            std::process::id(),
            tag,
            n
        ))
    }

    fn row() -> CsvRow {
        CsvRow {
            timestamp: "2026-11-25T19:06:43+00:00".into(),
            host: "192.0.2.7".into(),
            port: 2000,
            protocol: "udp",
            direction: "both",
            duration_s: 10.004,
            tx_avg_mbps: 941.234,
            rx_avg_mbps: 0.0,
            tx_bytes: 1_176_542_500,
            rx_bytes: 7,
            lost_packets: 12,
            local_cpu_pct: Some(37),
            remote_cpu_pct: None,
            auth_type: "ecsrp5",
        }
    }

    /// Splits one line per RFC 4180, for checking what we wrote.
    fn split(line: &str) -> Vec<String> {
        let mut fields = vec![String::new()];
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            let cur = fields.last_mut().unwrap();
            match (c, quoted) {
                ('"', false) => quoted = true,
                ('"', true) if chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                ('"', true) => quoted = false,
                (',', false) => fields.push(String::new()),
                (c, _) => cur.push(c),
            }
        }
        fields
    }

    #[test]
    fn header_once_and_values_in_columns() {
        let path = temp_path("cols");
        let mut sink = CsvSink::open(&path).unwrap();
        sink.append(&row()).unwrap();
        drop(sink);
        let mut sink = CsvSink::open(&path).unwrap();
        let mut second = row();
        second.protocol = "tcp";
        second.remote_cpu_pct = Some(100);
        second.local_cpu_pct = None;
        sink.append(&second).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);

        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], HEADER);
        assert!(text.ends_with('\n'));
        let header: Vec<&str> = HEADER.split(',').collect();
        assert_eq!(header.len(), 14);
        let first = split(lines[1]);
        assert_eq!(first.len(), header.len());
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        assert_eq!(first[col("timestamp")], "2026-11-25T19:06:43+00:00");
        assert_eq!(first[col("host")], "192.0.2.7");
        assert_eq!(first[col("port")], "2000");
        assert_eq!(first[col("protocol")], "udp");
        assert_eq!(first[col("direction")], "both");
        assert_eq!(first[col("duration_s")], "10.00");
        assert_eq!(first[col("tx_avg_mbps")], "941.23");
        assert_eq!(first[col("rx_avg_mbps")], "0.00");
        assert_eq!(first[col("tx_bytes")], "1176542500");
        assert_eq!(first[col("rx_bytes")], "7");
        assert_eq!(first[col("lost_packets")], "12");
        assert_eq!(first[col("local_cpu_pct")], "37");
        assert_eq!(first[col("remote_cpu_pct")], "");
        assert_eq!(first[col("auth_type")], "ecsrp5");
        let second = split(lines[2]);
        assert_eq!(second[col("protocol")], "tcp");
        assert_eq!(second[col("local_cpu_pct")], "");
        assert_eq!(second[col("remote_cpu_pct")], "100");
    }

    #[test]
    fn hostile_host_is_quoted() {
        let mut r = row();
        r.host = "evil,\"host\"\r\nx".into();
        r.tx_avg_mbps = f64::NAN;
        let mut line = String::new();
        format_row(&mut line, &r);
        assert!(line.starts_with("2026-11-25T19:06:43+00:00,\"evil,\"\"host\"\"\r\nx\",2000,"));
        let fields = split(line.trim_end_matches('\n'));
        assert_eq!(fields.len(), 14);
        assert_eq!(fields[1], "evil,\"host\"\r\nx");
        assert_eq!(fields[6], "");
    }

    #[test]
    fn unopenable_path_names_itself() {
        let path = temp_path("missing-dir").join("nested").join("out.csv");
        let err = CsvSink::open(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("No such file"), "{msg}");
        assert_eq!(err.path(), path.as_path());

        let dir = std::env::temp_dir();
        let err = CsvSink::open(&dir).unwrap_err();
        assert!(err.to_string().contains(&dir.display().to_string()));
    }
}
