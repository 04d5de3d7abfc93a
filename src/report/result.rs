//! One test's result as the machine-readable sinks see it: the running tally every sink shares
//! (so the text summary, the JSON `end` and the CSV row cannot disagree), and the JSON
//! rendering of the start parameters, each interval and the end.
//!
//! The interval object is written by [`write_interval`] alone, for both `--json` and
//! `--json-lines`: a figure added to [`Interval`] is added to the output in that one place.

use std::time::Duration;

use crate::engine::{Interval, Outcome, TcpLatency};
use crate::report::json::JsonWriter;
use crate::report::text::bits_per_second;

/// Which figures a test has, so absent directions are `null` rather than zeros a reader might
/// take for a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sides {
    /// We transmit.
    pub tx: bool,
    /// We receive.
    pub rx: bool,
    /// UDP test: loss is counted.
    pub udp: bool,
}

/// A mean of optional percentages (CPU load), ignoring intervals without a value.
#[derive(Clone, Copy, Debug, Default)]
struct Mean {
    sum: u64,
    n: u64,
}

impl Mean {
    fn add(&mut self, v: Option<u8>) {
        if let Some(v) = v {
            self.sum += u64::from(v);
            self.n += 1;
        }
    }

    fn get(&self) -> Option<u8> {
        // Rounded to nearest; the inputs are 0..=100, so is the mean.
        (self.n > 0).then(|| u8::try_from((self.sum + self.n / 2) / self.n).unwrap_or(100))
    }
}

/// Sums over the intervals seen so far.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Bytes we sent.
    pub tx_bytes: u64,
    /// Bytes we received.
    pub rx_bytes: u64,
    /// Datagrams lost (UDP).
    pub lost: u64,
    /// Sum of the interval lengths: the time the byte counts were measured over.
    pub elapsed: Duration,
    /// Intervals seen.
    pub intervals: u32,
    local_cpu: Mean,
    remote_cpu: Mean,
}

impl Tally {
    /// Adds one interval.
    pub fn add(&mut self, iv: &Interval<'_>) {
        self.tx_bytes += iv.tx_bytes;
        self.rx_bytes += iv.rx_bytes;
        self.lost += iv.lost;
        self.elapsed += iv.duration;
        self.intervals += 1;
        self.local_cpu.add(iv.local_cpu);
        self.remote_cpu.add(iv.remote_cpu);
    }

    /// Mean of our CPU load over the intervals that had a sample.
    pub fn local_cpu(&self) -> Option<u8> {
        self.local_cpu.get()
    }

    /// Mean of the peer's reported CPU load.
    pub fn remote_cpu(&self) -> Option<u8> {
        self.remote_cpu.get()
    }

    /// Average send rate, bit/s.
    pub fn tx_bps(&self) -> f64 {
        bits_per_second(self.tx_bytes, self.elapsed)
    }

    /// Average receive rate, bit/s.
    pub fn rx_bps(&self) -> f64 {
        bits_per_second(self.rx_bytes, self.elapsed)
    }
}

/// The parameters of a test, for the JSON `start` object.
#[derive(Clone, Debug)]
pub struct StartInfo {
    /// When the test started, ISO 8601 local time with offset.
    pub timestamp: String,
    /// The server as the user named it.
    pub host: String,
    /// Control port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// `transmit`, `receive` or `both` (client's point of view).
    pub direction: &'static str,
    /// Connections requested.
    pub connections: usize,
    /// Requested test length; `None` until interrupted.
    pub duration: Option<Duration>,
    /// Our transmit rate asked for, bit/s, 0 = unlimited.
    pub local_tx_bps: u64,
    /// The server's transmit rate asked for, bit/s, 0 = unlimited.
    pub remote_tx_bps: u64,
    /// UDP packet size (UDP tests only).
    pub udp_size: Option<u16>,
    /// `zeros` or `random`.
    pub payload: &'static str,
}

/// Writes the `start` object; `auth` is known only after the handshake, so it is passed apart.
pub fn write_start(w: &mut JsonWriter, info: &StartInfo, auth: Option<&str>) {
    w.begin_object()
        .field_str("version", env!("CARGO_PKG_VERSION"))
        .field_str("timestamp", &info.timestamp)
        .field_str("host", &info.host)
        .field_u64("port", u64::from(info.port))
        .field_str("protocol", info.protocol)
        .field_str("direction", info.direction)
        .field_u64("connections", info.connections as u64);
    w.key("duration_s");
    match info.duration {
        Some(d) => w.f64(d.as_secs_f64()),
        None => w.null(),
    };
    w.field_u64("local_tx_bps", info.local_tx_bps)
        .field_u64("remote_tx_bps", info.remote_tx_bps);
    w.key("udp_size");
    match info.udp_size {
        Some(s) => w.u64(u64::from(s)),
        None => w.null(),
    };
    w.field_str("payload", info.payload);
    w.key("auth");
    match auth {
        Some(a) => w.string(a),
        None => w.null(),
    };
    w.end_object();
}

fn write_cpu(w: &mut JsonWriter, local: Option<u8>, remote: Option<u8>) {
    w.key("cpu").begin_object();
    for (k, v) in [("local", local), ("remote", remote)] {
        w.key(k);
        match v {
            Some(v) => w.u64(u64::from(v)),
            None => w.null(),
        };
    }
    w.end_object();
}

fn write_tcp(w: &mut JsonWriter, tcp: Option<TcpLatency>) {
    w.key("tcp");
    match tcp {
        Some(t) => {
            w.begin_object().key("rtt_us").begin_object();
            w.field_u64("min", u64::from(t.rtt_min_us))
                .field_u64("avg", u64::from(t.rtt_avg_us))
                .field_u64("max", u64::from(t.rtt_max_us))
                .end_object();
            w.field_u64("retransmits", t.retransmits).end_object();
        }
        None => {
            w.null();
        }
    }
}

/// One direction's bytes as the sending end and the receiving end counted them; `None` where
/// that end's count is not known here.
#[derive(Clone, Copy, Debug)]
struct Views {
    sent: Option<u64>,
    received: Option<u64>,
}

/// `{"bytes":B,"bits_per_second":R[,"seconds":S,"sent":T,"received":U]}` or `null` for a
/// direction the test lacks; the totals (`views`) carry seconds and both ends' counts.
fn write_direction(
    w: &mut JsonWriter,
    key: &str,
    present: bool,
    bytes: u64,
    duration: Duration,
    lost: Option<u64>,
    views: Option<Views>,
) {
    w.key(key);
    if !present {
        w.null();
        return;
    }
    w.begin_object()
        .field_u64("bytes", bytes)
        .key("bits_per_second")
        .f64_fixed(bits_per_second(bytes, duration), 2);
    if let Some(views) = views {
        w.key("seconds").f64_fixed(duration.as_secs_f64(), 6);
        for (k, v) in [("sent", views.sent), ("received", views.received)] {
            w.key(k);
            match v {
                Some(v) => w.u64(v),
                None => w.null(),
            };
        }
    }
    if let Some(lost) = lost {
        w.field_u64("lost", lost);
    }
    w.end_object();
}

/// Writes one interval as an object; `tag` adds `"type":tag` first (for `--json-lines`).
/// `start` is the interval's offset from the start of the test. Times are seconds with
/// microsecond precision: more digits would be float noise.
pub fn write_interval(
    w: &mut JsonWriter,
    iv: &Interval<'_>,
    start: Duration,
    sides: Sides,
    tag: Option<&str>,
) {
    w.begin_object();
    if let Some(tag) = tag {
        w.field_str("type", tag);
    }
    w.field_u64("index", u64::from(iv.index))
        .key("start_s")
        .f64_fixed(start.as_secs_f64(), 6)
        .key("duration_s")
        .f64_fixed(iv.duration.as_secs_f64(), 6)
        .field_bool("last", iv.last);
    let lost = sides.udp.then_some(iv.lost);
    write_direction(w, "tx", sides.tx, iv.tx_bytes, iv.duration, None, None);
    write_direction(w, "rx", sides.rx, iv.rx_bytes, iv.duration, lost, None);
    write_cpu(w, iv.local_cpu, iv.remote_cpu);
    if !sides.udp {
        write_tcp(w, iv.tcp);
    }
    w.key("streams").begin_array();
    for s in iv.streams {
        w.begin_object()
            .field_u64("tx_bytes", s.tx_bytes)
            .field_u64("rx_bytes", s.rx_bytes)
            .end_object();
    }
    w.end_array().end_object();
}

/// Writes the `end` object: totals over the intervals (`tally`), how it ended and the
/// connection-level figures (`outcome`); `peer_received` is what the peer said it got from us.
pub fn write_end(
    w: &mut JsonWriter,
    tally: &Tally,
    outcome: &Outcome,
    sides: Sides,
    connections: usize,
    peer_received: Option<u64>,
) {
    w.begin_object()
        .key("seconds")
        .f64_fixed(tally.elapsed.as_secs_f64(), 6)
        .field_u64("intervals", u64::from(tally.intervals));
    let lost = sides.udp.then_some(tally.lost);
    // Each direction as both ends saw it, like iperf3's sum_sent and sum_received; the peer
    // never says what it sent us.
    let tx_views = Views {
        sent: Some(tally.tx_bytes),
        received: peer_received,
    };
    let rx_views = Views {
        sent: None,
        received: Some(tally.rx_bytes),
    };
    write_direction(
        w,
        "tx",
        sides.tx,
        tally.tx_bytes,
        tally.elapsed,
        None,
        Some(tx_views),
    );
    write_direction(
        w,
        "rx",
        sides.rx,
        tally.rx_bytes,
        tally.elapsed,
        lost,
        Some(rx_views),
    );
    if sides.tx && !sides.udp {
        w.field_u64("tx_unacknowledged", outcome.unacknowledged);
    }
    w.field_u64("lost", tally.lost)
        .field_str("reason", &outcome.reason.describe())
        .field_bool("clean", outcome.reason.is_clean())
        .field_u64("connections", connections as u64);
    write_cpu(w, tally.local_cpu(), tally.remote_cpu());
    if !sides.udp {
        write_tcp(w, outcome.tcp);
    }
    w.key("streams").begin_array();
    for (tx, rx) in &outcome.per_stream {
        w.begin_object()
            .field_u64("tx_bytes", *tx)
            .field_u64("rx_bytes", *rx)
            .end_object();
    }
    w.end_array().end_object();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EndReason, StreamSnapshot};
    use serde_json::Value;

    fn interval(index: u32, streams: &[StreamSnapshot], cpu: Option<u8>) -> Interval<'_> {
        Interval {
            index,
            duration: Duration::from_millis(500),
            tx_bytes: streams.iter().map(|s| s.tx_bytes).sum(),
            rx_bytes: streams.iter().map(|s| s.rx_bytes).sum(),
            lost: 0,
            streams,
            local_cpu: cpu,
            remote_cpu: None,
            last: false,
            tcp: Some(TcpLatency {
                rtt_min_us: 10,
                rtt_avg_us: 20,
                rtt_max_us: 30,
                retransmits: 1,
            }),
        }
    }

    #[test]
    fn interval_and_end_parse_and_add_up() {
        let streams = [
            StreamSnapshot {
                tx_bytes: 100,
                rx_bytes: 5,
                ..StreamSnapshot::default()
            },
            StreamSnapshot {
                tx_bytes: 50,
                rx_bytes: 0,
                ..StreamSnapshot::default()
            },
        ];
        let sides = Sides {
            tx: true,
            rx: false,
            udp: false,
        };
        let mut tally = Tally::default();
        let mut w = JsonWriter::new();
        w.begin_array();
        for (i, cpu) in [(1, Some(10)), (2, None), (3, Some(21))] {
            let iv = interval(i, &streams, cpu);
            write_interval(&mut w, &iv, tally.elapsed, sides, Some("interval"));
            tally.add(&iv);
        }
        w.end_array();
        let ivs: Value = serde_json::from_str(&w.finish()).unwrap();
        assert_eq!(ivs[0]["type"], "interval");
        assert_eq!(ivs[1]["start_s"], 0.5);
        assert_eq!(ivs[0]["tx"]["bytes"], 150);
        assert_eq!(ivs[0]["tx"]["bits_per_second"], 2400.0);
        assert!(ivs[0]["rx"].is_null());
        assert_eq!(ivs[1]["cpu"]["local"], Value::Null);
        assert_eq!(ivs[2]["tcp"]["rtt_us"]["max"], 30);
        assert_eq!(ivs[2]["streams"][1]["tx_bytes"], 50);

        let outcome = Outcome {
            reason: EndReason::Duration,
            elapsed: Duration::from_millis(1500),
            rx_elapsed: Duration::from_millis(1500),
            tx_bytes: 450,
            rx_bytes: 15,
            lost: 0,
            per_stream: vec![(300, 15), (150, 0)],
            tcp: None,
            unacknowledged: 0,
        };
        let mut w = JsonWriter::new();
        write_end(&mut w, &tally, &outcome, sides, 2, Some(440));
        let end: Value = serde_json::from_str(&w.finish()).unwrap();
        assert_eq!(end["tx"]["bytes"], 450);
        assert_eq!(end["tx"]["seconds"], 1.5);
        assert_eq!(end["tx"]["bits_per_second"], 2400.0);
        assert_eq!(end["cpu"]["local"], 16, "mean of 10 and 21, rounded");
        assert_eq!(end["reason"], "duration reached");
        assert!(end["tcp"].is_null());
        assert_eq!(end["connections"], 2);
        assert_eq!(end["tx"]["sent"], 450);
        assert_eq!(end["tx"]["received"], 440);
        assert_eq!(end["tx_unacknowledged"], 0);
        assert!(end["rx"].is_null());
    }

    #[test]
    fn start_escapes_the_host() {
        let info = StartInfo {
            timestamp: "2026-01-01T00:00:00+00:00".into(),
            host: "we\"ird\n\u{1}host\\".into(),
            port: 2000,
            protocol: "tcp",
            direction: "both",
            connections: 1,
            duration: None,
            local_tx_bps: 0,
            remote_tx_bps: 5,
            udp_size: None,
            payload: "zeros",
        };
        let mut w = JsonWriter::new();
        write_start(&mut w, &info, Some("md5"));
        let v: Value = serde_json::from_str(&w.finish()).unwrap();
        assert_eq!(v["host"], "we\"ird\n\u{1}host\\");
        assert!(v["duration_s"].is_null());
        assert_eq!(v["auth"], "md5");
    }
}
