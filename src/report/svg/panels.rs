//! The three panels of the picture: which series each draws, on what scale.

use super::Sample;
use crate::report::record::Sides;

const TX_COLOUR: &str = "#c0392b";
const RX_COLOUR: &str = "#1f6fb4";
const RTT_COLOUR: &str = "#7d3c98";
const LOSS_COLOUR: &str = "#d35400";
const LOCAL_COLOUR: &str = "#1e8449";
const REMOTE_COLOUR: &str = "#7f6000";

/// One line of a panel.
pub(super) struct Series<'a> {
    pub(super) id: &'static str,
    pub(super) label: &'a str,
    pub(super) colour: &'static str,
    pub(super) dashed: bool,
    /// (seconds, value) points.
    pub(super) points: Vec<(f64, f64)>,
}

/// A panel: a frame with a y scale, its series and a legend.
pub(super) struct Panel<'a> {
    pub(super) title: String,
    /// Unit divisor and name for the axis labels.
    pub(super) scale: (f64, &'static str),
    /// Fixed top of the y axis (CPU: 100 %), or `None` for a round number above the data.
    pub(super) max: Option<f64>,
    pub(super) series: Vec<Series<'a>>,
    /// Shown in the frame when there is nothing to plot.
    pub(super) empty_note: &'static str,
}

/// Throughput, scaled to the unit of the highest point.
pub(super) fn throughput_panel(samples: &[Sample], sides: Sides) -> Panel<'static> {
    let peak = samples
        .iter()
        .map(|s| s.tx_bps.max(s.rx_bps))
        .fold(0.0, f64::max);
    let scale = if peak >= 1e9 {
        (1e9, "Gbit/s")
    } else if peak >= 1e6 {
        (1e6, "Mbit/s")
    } else {
        (1e3, "kbit/s")
    };
    let mut series = Vec::new();
    if sides.tx {
        series.push(line(samples, "tx", "TX (sent)", TX_COLOUR, false, |s| {
            Some(s.tx_bps)
        }));
    }
    if sides.rx {
        series.push(line(
            samples,
            "rx",
            "RX (received)",
            RX_COLOUR,
            false,
            |s| Some(s.rx_bps),
        ));
    }
    Panel {
        title: format!("Throughput per second ({})", scale.1),
        scale,
        max: None,
        series,
        empty_note: "no intervals",
    }
}

/// TCP: RTT when sampled; UDP: loss when this side receives.
pub(super) fn middle_panel(samples: &[Sample], sides: Sides) -> Panel<'static> {
    if sides.udp {
        let series = if sides.rx {
            vec![line(
                samples,
                "loss",
                "lost datagrams",
                LOSS_COLOUR,
                false,
                |s| Some(s.lost_per_s),
            )]
        } else {
            Vec::new()
        };
        return Panel {
            title: "UDP datagrams lost per second".into(),
            scale: (1.0, "/s"),
            max: None,
            series,
            empty_note: "the client does not receive: loss is counted by the server",
        };
    }
    let rtt = line(samples, "rtt", "smoothed RTT", RTT_COLOUR, false, |s| {
        s.rtt_ms
    });
    Panel {
        title: "TCP round-trip time (ms)".into(),
        scale: (1.0, "ms"),
        max: None,
        series: if rtt.points.is_empty() {
            Vec::new()
        } else {
            vec![rtt]
        },
        empty_note: "no RTT samples (TCP_INFO unavailable)",
    }
}

pub(super) fn cpu_panel(samples: &[Sample]) -> Panel<'static> {
    let series = vec![
        line(samples, "cpu-local", "local", LOCAL_COLOUR, false, |s| {
            s.local_cpu.map(f64::from)
        }),
        line(samples, "cpu-remote", "remote", REMOTE_COLOUR, true, |s| {
            s.remote_cpu.map(f64::from)
        }),
    ];
    Panel {
        title: "CPU load (%)".into(),
        scale: (1.0, "%"),
        max: Some(100.0),
        series: series
            .into_iter()
            .filter(|s| !s.points.is_empty())
            .collect(),
        empty_note: "no CPU figures",
    }
}

#[inline(never)]
fn line(
    samples: &[Sample],
    id: &'static str,
    label: &'static str,
    colour: &'static str,
    dashed: bool,
    value: fn(&Sample) -> Option<f64>,
) -> Series<'static> {
    Series {
        id,
        label,
        colour,
        dashed,
        points: samples
            .iter()
            .filter_map(|s| value(s).map(|v| (s.t, v)))
            .collect(),
    }
}
