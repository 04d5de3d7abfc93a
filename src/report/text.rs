//! The human-readable output grammar, which users' scripts parse (see docs/btest.1):
//!
//! ```text
//! [   3]  TX  941.23 Mbps (117653750 bytes)  lost: 4  cpu: 12%/30%
//! [   3]  RX  #4  117.40 Mbps (14675000 bytes)
//! [ avg]  RX  940.10 Mbps (1175125000 bytes in 10.00 s)
//! ```

use std::fmt::Write as _;
use std::time::Duration;

/// `TX` or `RX`, from the point of view of the side printing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    /// What we sent.
    Tx,
    /// What we received.
    Rx,
}

impl Dir {
    /// The two-letter label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Dir::Tx => "TX",
            Dir::Rx => "RX",
        }
    }
}

/// Bits per second of `bytes` over `duration` (0 for an empty duration).
pub(crate) fn bits_per_second(bytes: u64, duration: Duration) -> f64 {
    let secs = duration.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        bytes as f64 * 8.0 / secs
    }
}

/// A rate with two decimals in bps, Kbps, Mbps or Gbps (1000-based).
pub(crate) fn format_rate(bps: f64) -> String {
    let (value, unit) = if bps >= 1e9 {
        (bps / 1e9, "Gbps")
    } else if bps >= 1e6 {
        (bps / 1e6, "Mbps")
    } else if bps >= 1e3 {
        (bps / 1e3, "Kbps")
    } else {
        (bps, "bps")
    };
    format!("{value:.2} {unit}")
}

/// Optional parts appended to an interval line.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Extras {
    /// Datagrams lost in the interval (UDP receive lines).
    pub lost: Option<u64>,
    /// Local and remote CPU load; the remote shows 0 % until the peer reports one.
    pub cpu: Option<(u8, Option<u8>)>,
    /// Mean smoothed RTT (µs) and retransmissions of the TCP connections; shown with `-v`
    /// only, so the default grammar stays what scripts parse.
    pub rtt: Option<(u32, u64)>,
}

/// One interval line: `[   3]  TX  941.23 Mbps (117653750 bytes)` plus extras.
pub(crate) fn interval_line(
    index: u32,
    dir: Dir,
    bytes: u64,
    duration: Duration,
    extras: Extras,
) -> String {
    let mut line = format!(
        "[{index:>4}] {:>3}  {} ({bytes} bytes)",
        dir.label(),
        format_rate(bits_per_second(bytes, duration))
    );
    if let Some(lost) = extras.lost {
        let _ = write!(line, "  lost: {lost}");
    }
    if let Some((local, remote)) = extras.cpu {
        let _ = write!(line, "  cpu: {local}%/{}%", remote.unwrap_or(0));
    }
    if let Some((rtt_us, retransmits)) = extras.rtt {
        let _ = write!(line, "  rtt: {}  retr: {retransmits}", format_ms(rtt_us));
    }
    line
}

/// Microseconds as milliseconds with two decimals: `1.25 ms`.
pub(crate) fn format_ms(us: u32) -> String {
    format!("{:.2} ms", f64::from(us) / 1000.0)
}

/// The `-v` summary of TCP latency under load:
/// `[ avg] rtt  0.03/0.05/0.12 ms (min/avg/max)  retr: 12`.
pub(crate) fn rtt_summary_line(min_us: u32, avg_us: u32, max_us: u32, retransmits: u64) -> String {
    let ms = |us: u32| f64::from(us) / 1000.0;
    format!(
        "[ avg] rtt  {:.2}/{:.2}/{:.2} ms (min/avg/max)  retr: {retransmits}",
        ms(min_us),
        ms(avg_us),
        ms(max_us)
    )
}

/// One per-connection line under an interval: `[   3]  RX  #4  117.40 Mbps (14675000 bytes)`.
pub(crate) fn stream_line(
    index: u32,
    dir: Dir,
    stream: usize,
    bytes: u64,
    duration: Duration,
) -> String {
    format!(
        "[{index:>4}] {:>3}  #{stream}  {} ({bytes} bytes)",
        dir.label(),
        format_rate(bits_per_second(bytes, duration))
    )
}

/// The summary line of one direction: `[ avg]  RX  940.10 Mbps (1175125000 bytes in 10.00 s)`.
pub(crate) fn summary_line(dir: Dir, bytes: u64, elapsed: Duration) -> String {
    format!(
        "[ avg] {:>3}  {} ({bytes} bytes in {:.2} s)",
        dir.label(),
        format_rate(bits_per_second(bytes, elapsed)),
        elapsed.as_secs_f64()
    )
}

/// The summary line of what we sent when the peer reported what it received:
/// `[ avg]  TX  95.10 Mbps (71330000 bytes in 6.00 s; peer got 71290000)`.
pub(crate) fn summary_line_with_peer(bytes: u64, elapsed: Duration, peer_got: u64) -> String {
    let mut line = summary_line(Dir::Tx, bytes, elapsed);
    line.pop();
    let _ = write!(line, "; peer got {peer_got})");
    line
}

/// Local wall-clock time for `--timestamps`, `hh:mm:ss`.
pub(crate) fn clock_prefix() -> String {
    crate::sys::clock::local_now().time_of_day()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_matches_cli_doc() {
        let line = interval_line(
            3,
            Dir::Tx,
            117_653_750,
            Duration::from_secs(1),
            Extras::default(),
        );
        assert_eq!(line, "[   3]  TX  941.23 Mbps (117653750 bytes)");
        let line = summary_line(Dir::Rx, 1_175_125_000, Duration::from_secs(10));
        assert_eq!(
            line,
            "[ avg]  RX  940.10 Mbps (1175125000 bytes in 10.00 s)"
        );
        let line = stream_line(3, Dir::Rx, 4, 14_675_000, Duration::from_secs(1));
        assert_eq!(line, "[   3]  RX  #4  117.40 Mbps (14675000 bytes)");
        let line = summary_line_with_peer(71_330_000, Duration::from_secs(6), 71_290_000);
        assert_eq!(
            line,
            "[ avg]  TX  95.11 Mbps (71330000 bytes in 6.00 s; peer got 71290000)"
        );
    }

    #[test]
    fn extras_and_units() {
        let line = interval_line(
            12,
            Dir::Rx,
            125,
            Duration::from_secs(1),
            Extras {
                lost: Some(4),
                cpu: Some((12, Some(30))),
                rtt: None,
            },
        );
        assert_eq!(
            line,
            "[  12]  RX  1.00 Kbps (125 bytes)  lost: 4  cpu: 12%/30%"
        );
        let line = interval_line(
            1,
            Dir::Tx,
            125,
            Duration::from_secs(1),
            Extras {
                lost: None,
                cpu: Some((1, None)),
                rtt: Some((1250, 3)),
            },
        );
        assert_eq!(
            line,
            "[   1]  TX  1.00 Kbps (125 bytes)  cpu: 1%/0%  rtt: 1.25 ms  retr: 3"
        );
        assert_eq!(
            rtt_summary_line(30, 50, 120, 12),
            "[ avg] rtt  0.03/0.05/0.12 ms (min/avg/max)  retr: 12"
        );
        assert_eq!(format_rate(0.0), "0.00 bps");
        assert_eq!(format_rate(999.0), "999.00 bps");
        assert_eq!(format_rate(2.5e9), "2.50 Gbps");
    }
}
