//! The text sink: which lines an interval and a finished test give, in the grammar of
//! [`crate::report::text`]. The client prints them; the server prefixes them with the session
//! and queues them.

use crate::engine::Interval;
use crate::report::peer::{self, PeerView};
use crate::report::record::{Sides, TestRecord};
use crate::report::text::{self, Dir, Extras};

/// What the interval lines carry besides the grammar's minimum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LineStyle {
    /// TCP RTT and retransmissions on interval lines, the peer's difference note and an RTT
    /// line in the summary (`-v`).
    pub verbose: bool,
    /// Per-connection lines under each interval line of a multi-connection test.
    pub per_stream: bool,
    /// The local time before each interval line (`--timestamps`).
    pub timestamps: bool,
}

/// The directions a side shows: what it sends, then what it receives.
pub(crate) fn directions(sides: Sides) -> impl Iterator<Item = Dir> {
    [(sides.tx, Dir::Tx), (sides.rx, Dir::Rx)]
        .into_iter()
        .filter_map(|(on, d)| on.then_some(d))
}

/// Appends one interval's lines to `out`: per direction the interval line, then its
/// per-connection lines.
pub(crate) fn interval_lines(
    iv: &Interval<'_>,
    sides: Sides,
    style: LineStyle,
    out: &mut Vec<String>,
) {
    for dir in directions(sides) {
        let bytes = match dir {
            Dir::Tx => iv.tx_bytes,
            Dir::Rx => iv.rx_bytes,
        };
        let extras = Extras {
            lost: (sides.udp && dir == Dir::Rx).then_some(iv.lost),
            cpu: iv.local_cpu.map(|l| (l, iv.remote_cpu)),
            rtt: iv
                .tcp
                .filter(|_| style.verbose)
                .map(|t| (t.rtt_avg_us, t.retransmits)),
        };
        let line = text::interval_line(iv.index, dir, bytes, iv.duration, extras);
        out.push(if style.timestamps {
            format!("{} {line}", text::clock_prefix())
        } else {
            line
        });
        if style.per_stream && iv.streams.len() > 1 {
            for (i, s) in iv.streams.iter().enumerate() {
                let b = match dir {
                    Dir::Tx => s.tx_bytes,
                    Dir::Rx => s.rx_bytes,
                };
                out.push(text::stream_line(iv.index, dir, i + 1, b, iv.duration));
            }
        }
    }
}

/// Appends the summary of a finished test to `out` (nothing before its end): one line per
/// direction over the measured time, and with `verbose` the note on the peer's count and the
/// TCP latency under load. `sent_after` holds what we had sent after each interval, where it
/// is kept, to tell the peer's lag from a real difference.
pub(crate) fn summary_lines(
    rec: &TestRecord,
    verbose: bool,
    sent_after: &[u64],
    out: &mut Vec<String>,
) {
    let Some(end) = rec.end() else {
        return;
    };
    let o = &end.outcome;
    let elapsed = rec.measured();
    for dir in directions(rec.start.sides) {
        let (bytes, peer) = match dir {
            Dir::Tx => (o.tx_bytes, end.peer_received),
            Dir::Rx => (o.rx_bytes, None),
        };
        out.push(match peer {
            Some(got) => text::summary_line_with_peer(bytes, elapsed, got),
            None => text::summary_line(dir, bytes, elapsed),
        });
        let reports = end.peer_reports;
        let view = |got| PeerView {
            sent: bytes,
            peer_got: got,
            reports,
            sent_in_reported: usize::try_from(reports)
                .ok()
                .filter(|&k| k > 0 && k < sent_after.len())
                .and_then(|k| sent_after.get(k - 1).copied()),
            unacked: o.unacknowledged,
            udp: rec.start.sides.udp,
        };
        if let Some(note) = peer
            .filter(|_| verbose)
            .and_then(|got| peer::difference_note(&view(got)))
        {
            out.push(note);
        }
    }
    if let Some(t) = o.tcp.filter(|_| verbose) {
        out.push(text::rtt_summary_line(
            t.rtt_min_us,
            t.rtt_avg_us,
            t.rtt_max_us,
            t.retransmits,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::TcpLatency;
    use crate::engine::state::StreamSnapshot;
    use crate::report::record::{sample_end, sample_start};
    use std::time::Duration;

    #[test]
    fn interval_lines_per_direction_with_streams_and_rtt() {
        let streams = [
            StreamSnapshot {
                tx_bytes: 100,
                rx_bytes: 25,
                ..StreamSnapshot::default()
            },
            StreamSnapshot {
                tx_bytes: 25,
                rx_bytes: 100,
                ..StreamSnapshot::default()
            },
        ];
        let iv = Interval {
            index: 2,
            duration: Duration::from_secs(1),
            tx_bytes: 125,
            rx_bytes: 125,
            lost: 3,
            streams: &streams,
            local_cpu: Some(5),
            remote_cpu: Some(7),
            last: false,
            tcp: Some(TcpLatency {
                rtt_min_us: 1,
                rtt_avg_us: 1250,
                rtt_max_us: 2000,
                retransmits: 4,
            }),
        };
        let sides = sample_start().sides;
        let mut out = Vec::new();
        interval_lines(&iv, sides, LineStyle::default(), &mut out);
        assert_eq!(
            out,
            [
                "[   2]  TX  1.00 Kbps (125 bytes)  cpu: 5%/7%",
                "[   2]  RX  1.00 Kbps (125 bytes)  cpu: 5%/7%",
            ]
        );
        out.clear();
        let style = LineStyle {
            verbose: true,
            per_stream: true,
            timestamps: false,
        };
        interval_lines(&iv, sides, style, &mut out);
        assert_eq!(out.len(), 6, "{out:?}");
        assert!(out[0].ends_with("rtt: 1.25 ms  retr: 4"), "{out:?}");
        assert_eq!(out[2], "[   2]  TX  #2  200.00 bps (25 bytes)");
        out.clear();
        let udp_rx = Sides {
            tx: false,
            rx: true,
            udp: true,
        };
        interval_lines(&iv, udp_rx, LineStyle::default(), &mut out);
        assert_eq!(
            out,
            ["[   2]  RX  1.00 Kbps (125 bytes)  lost: 3  cpu: 5%/7%"]
        );
    }

    #[test]
    fn summary_after_the_end_only_with_the_peers_count() {
        let mut rec = TestRecord::new(sample_start());
        let mut out = Vec::new();
        summary_lines(&rec, true, &[], &mut out);
        assert!(out.is_empty(), "no end, no summary");
        let mut end = sample_end(Duration::from_secs(9), 1_000_000, 500_000);
        end.peer_received = Some(500_000);
        end.peer_reports = 1;
        rec.finish(end);
        summary_lines(&rec, false, &[], &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].ends_with("peer got 500000)"), "{out:?}");
        out.clear();
        summary_lines(&rec, true, &[400_000, 1_000_000], &mut out);
        assert_eq!(out.len(), 3, "a note under the TX line: {out:?}");
        assert!(out[1].contains("report(s)"), "{out:?}");
    }
}
