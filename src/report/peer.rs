//! Why what we sent and what the peer says it got differ (`-v`).
//!
//! The peer reports what it received once a second, each report covering one of its
//! intervals. Its count therefore lags ours: what it received after its last report, and
//! reports still on their way when we stopped (a server sending both ways puts them between
//! its data writes, behind its send buffer), are not in it. Comparing its count with what we
//! had sent after as many intervals as it reported tells that lag from a real difference.

/// Sent and the peer's count differing by more than this (percent of sent) gets a note.
pub(crate) const PEER_DIFFERENCE_PCT: f64 = 2.0;

/// What is known about one direction we sent in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PeerView {
    /// Bytes we sent over the whole test.
    pub sent: u64,
    /// Bytes the peer said it received, summed over its reports.
    pub peer_got: u64,
    /// How many reports that sum is made of.
    pub reports: u64,
    /// Bytes we had sent after as many intervals as the peer reported; `None` when the peer
    /// reported at least as many intervals as we had.
    pub sent_in_reported: Option<u64>,
    /// Bytes our TCP senders wrote that were not acknowledged when the test stopped.
    pub unacked: u64,
    /// UDP: datagrams can be lost on the way.
    pub udp: bool,
}

fn pct(part: u64, whole: u64) -> f64 {
    (part as f64 - whole as f64) * 100.0 / whole as f64
}

/// The `-v` line explaining a difference of more than [`PEER_DIFFERENCE_PCT`]; `None` when
/// the two agree (or nothing was sent).
pub(crate) fn difference_note(v: &PeerView) -> Option<String> {
    if v.sent == 0 {
        return None;
    }
    let total = pct(v.peer_got, v.sent);
    if total.abs() <= PEER_DIFFERENCE_PCT {
        return None;
    }
    let mut why = Vec::new();
    let mut residual = total;
    if let Some(aligned) = v.sent_in_reported.filter(|&a| a > 0) {
        residual = pct(v.peer_got, aligned);
        why.push(format!(
            "its {} report(s) cover only our first {} s, over which it got {residual:+.1} % \
             (what it received later, or reports still on the way, is not in its count)",
            v.reports, v.reports
        ));
    }
    if residual < -PEER_DIFFERENCE_PCT {
        why.push(if v.udp {
            "datagrams lost on the way never reached it".to_string()
        } else {
            "its reports lag ours (a peer sending both ways queues them behind its data)"
                .to_string()
        });
    } else if residual > PEER_DIFFERENCE_PCT && v.sent_in_reported.is_some() {
        why.push(
            "its intervals start before ours (it starts counting first), so its first ones \
             hold more"
                .to_string(),
        );
    } else if residual > PEER_DIFFERENCE_PCT {
        why.push(format!(
            "it also counts what arrived after we stopped counting ({} bytes were not yet \
             acknowledged at the stop, so not counted as sent)",
            v.unacked
        ));
    }
    Some(format!(
        "[ avg] peer got {:.1} % {} than we sent: {}",
        total.abs(),
        if total < 0.0 { "less" } else { "more" },
        why.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(sent: u64, peer_got: u64) -> PeerView {
        PeerView {
            sent,
            peer_got,
            reports: 4,
            ..PeerView::default()
        }
    }

    #[test]
    fn agreement_within_two_percent_needs_no_note() {
        assert_eq!(difference_note(&view(1000, 981)), None);
        assert_eq!(difference_note(&view(0, 5)), None);
    }

    #[test]
    fn a_missing_last_report_is_told_from_loss() {
        let lagging = PeerView {
            sent_in_reported: Some(3010),
            reports: 3,
            ..view(4000, 3000)
        };
        let note = difference_note(&lagging).unwrap();
        assert!(
            note.starts_with("[ avg] peer got 25.0 % less than we sent: its 3 report(s) cover"),
            "{note}"
        );
        assert!(
            note.contains("it got -0.3 %") && !note.contains("lost"),
            "{note}"
        );

        let lossy = PeerView {
            udp: true,
            ..view(1000, 900)
        };
        let note = difference_note(&lossy).unwrap();
        assert!(
            note.ends_with("datagrams lost on the way never reached it"),
            "{note}"
        );
    }

    #[test]
    fn a_head_start_is_not_blamed_on_unacknowledged_bytes() {
        let v = PeerView {
            sent_in_reported: Some(1000),
            reports: 1,
            unacked: 5,
            ..view(4000, 1100)
        };
        let note = difference_note(&v).unwrap();
        assert!(
            note.contains("start before ours") && !note.contains("5 bytes"),
            "{note}"
        );
    }

    #[test]
    fn more_than_sent_points_at_unacknowledged_bytes() {
        let v = PeerView {
            unacked: 77,
            ..view(1000, 1100)
        };
        let note = difference_note(&v).unwrap();
        assert!(
            note.contains("10.0 % more") && note.contains("77 bytes"),
            "{note}"
        );
    }
}
