//! The JSON form of a [`TestRecord`]: its start, each interval and its end, for `--json` and
//! `--json-lines` of the client and `--json-lines` of the server.
//!
//! The interval object is written by [`write_interval`] alone, for both `--json` and
//! `--json-lines`: a figure added to [`Interval`] is added to the output in that one place.

use std::time::Duration;

use crate::engine::{Interval, TcpLatency};
use crate::report::json::JsonWriter;
use crate::report::record::{Sides, Start, TestRecord};
use crate::report::text::bits_per_second;

/// Writes the `start` object; `auth` is `null` until the handshake has told it.
pub(crate) fn write_start(w: &mut JsonWriter, info: &Start) {
    w.begin_object()
        .field_str("version", env!("CARGO_PKG_VERSION"))
        .field_str("timestamp", &info.timestamp)
        .field_str("host", &info.host())
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
    match info.auth {
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
pub(crate) fn write_interval(
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

/// Writes the `end` object, or `null` for a test without an end: totals of the engine, the
/// measured time, CPU means and interval count of the record, how it ended; the `tx` view
/// carries what the peer said it got from us.
pub(crate) fn write_end(w: &mut JsonWriter, rec: &TestRecord) {
    let Some(end) = rec.end() else {
        w.null();
        return;
    };
    let (o, sides) = (&end.outcome, rec.start.sides);
    w.begin_object()
        .key("seconds")
        .f64_fixed(rec.measured().as_secs_f64(), 6)
        .field_u64("intervals", u64::from(rec.intervals()));
    let lost = sides.udp.then_some(o.lost);
    // Each direction as both ends saw it, like iperf3's sum_sent and sum_received; the peer
    // never says what it sent us.
    let tx_views = Views {
        sent: Some(o.tx_bytes),
        received: end.peer_received,
    };
    let rx_views = Views {
        sent: None,
        received: Some(o.rx_bytes),
    };
    let span = rec.measured();
    write_direction(w, "tx", sides.tx, o.tx_bytes, span, None, Some(tx_views));
    write_direction(w, "rx", sides.rx, o.rx_bytes, span, lost, Some(rx_views));
    if sides.tx && !sides.udp {
        w.field_u64("tx_unacknowledged", o.unacknowledged);
    }
    w.field_u64("lost", o.lost)
        .field_str("reason", &o.reason.describe())
        .field_bool("clean", o.reason.is_clean())
        .field_u64("connections", end.connections as u64);
    write_cpu(w, rec.local_cpu(), rec.remote_cpu());
    if !sides.udp {
        write_tcp(w, o.tcp);
    }
    w.key("streams").begin_array();
    for (tx, rx) in &o.per_stream {
        w.begin_object()
            .field_u64("tx_bytes", *tx)
            .field_u64("rx_bytes", *rx)
            .end_object();
    }
    w.end_array().end_object();
}

/// The client's JSON at the end of a test: with `intervals` (each already rendered) the
/// `--json` document `{"start","intervals","end"}`, without them the last `--json-lines`
/// object `{"type":"end","start","end"}`. With `error` the test could not run: the document
/// ends in `"end":null,"error":...`, the object is `{"type":"error","start","error"}`.
pub(crate) fn write_document(
    w: &mut JsonWriter,
    rec: &TestRecord,
    intervals: Option<&[String]>,
    error: Option<&str>,
) {
    w.begin_object();
    if intervals.is_none() {
        w.field_str("type", if error.is_some() { "error" } else { "end" });
    }
    w.key("start");
    write_start(w, &rec.start);
    if let Some(intervals) = intervals {
        w.key("intervals").begin_array();
        for iv in intervals {
            w.raw_value(iv);
        }
        w.end_array();
    }
    match error {
        Some(e) => {
            if intervals.is_some() {
                w.key("end").null();
            }
            w.field_str("error", e);
        }
        None => {
            w.key("end");
            write_end(w, rec);
        }
    }
    w.end_object();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::StreamSnapshot;
    use crate::report::record::{Peer, sample_end, sample_start};
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
        let mut start = sample_start();
        start.sides = Sides {
            tx: true,
            rx: false,
            udp: false,
        };
        let sides = start.sides;
        let mut rec = TestRecord::new(start);
        let mut w = JsonWriter::new();
        w.begin_array();
        for (i, cpu) in [(1, Some(10)), (2, None), (3, Some(21))] {
            let iv = interval(i, &streams, cpu);
            let offset = rec.add(&iv);
            write_interval(&mut w, &iv, offset, sides, Some("interval"));
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

        let mut w = JsonWriter::new();
        write_end(&mut w, &rec);
        assert_eq!(w.finish(), "null", "no end yet");

        let mut end = sample_end(Duration::from_millis(1500), 450, 15);
        end.outcome.per_stream = vec![(300, 15), (150, 0)];
        end.connections = 2;
        end.peer_received = Some(440);
        rec.finish(end);
        let mut w = JsonWriter::new();
        write_end(&mut w, &rec);
        let end: Value = serde_json::from_str(&w.finish()).unwrap();
        assert_eq!(end["tx"]["bytes"], 450);
        assert_eq!(end["tx"]["seconds"], 1.5);
        assert_eq!(end["tx"]["bits_per_second"], 2400.0);
        assert_eq!(end["intervals"], 3);
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
        let mut info = sample_start();
        info.peer = Peer::Server("we\"ird\n\u{1}host\\".into());
        info.remote_tx_bps = 5;
        info.auth = Some("md5");
        let mut w = JsonWriter::new();
        write_start(&mut w, &info);
        let v: Value = serde_json::from_str(&w.finish()).unwrap();
        assert_eq!(v["host"], "we\"ird\n\u{1}host\\");
        assert!(v["duration_s"].is_null());
        assert_eq!(v["auth"], "md5");
    }

    #[test]
    fn documents_of_both_json_formats() {
        let mut rec = TestRecord::new(sample_start());
        let mut w = JsonWriter::new();
        write_document(&mut w, &rec, Some(&[]), Some("refused"));
        let v: Value = serde_json::from_str(&w.finish()).unwrap();
        assert!(v["end"].is_null() && v["type"].is_null(), "{v}");
        assert_eq!(v["error"], "refused");
        assert_eq!(v["intervals"].as_array().map(Vec::len), Some(0));
        let mut w = JsonWriter::new();
        write_document(&mut w, &rec, None, Some("refused"));
        let v: Value = serde_json::from_str(&w.finish()).unwrap();
        assert_eq!(v["type"], "error");
        assert!(
            v.get("end").is_none() && v.get("intervals").is_none(),
            "{v}"
        );

        rec.finish(sample_end(Duration::from_secs(1), 10, 20));
        let mut w = JsonWriter::new();
        write_document(&mut w, &rec, None, None);
        let v: Value = serde_json::from_str(&w.finish()).unwrap();
        assert_eq!(v["type"], "end");
        assert_eq!(v["end"]["rx"]["bytes"], 20);
        let mut w = JsonWriter::new();
        write_document(&mut w, &rec, Some(&["{\"index\":1}".to_string()]), None);
        let v: Value = serde_json::from_str(&w.finish()).unwrap();
        assert_eq!(v["intervals"][0]["index"], 1);
        assert!(v.get("type").is_none());
    }
}
