//! The client's text output on stdout: interval lines and the summary.

use std::io::Write;
use std::time::Duration;

use crate::engine::Interval;
use crate::proto::Direction;
use crate::report::text::{self, Dir, Extras};

/// Prints intervals as they come and the summary at the end.
pub struct TextOutput {
    directions: Vec<Dir>,
    quiet: bool,
    per_stream: bool,
    udp: bool,
    timestamps: bool,
    totals: [u64; 2],
    elapsed: Duration,
}

impl TextOutput {
    /// Output for a test in `direction` (server's point of view, as in the command).
    pub fn new(direction: Direction, udp: bool, quiet: bool, per_stream: bool) -> TextOutput {
        let mut directions = Vec::new();
        if direction.client_tx() {
            directions.push(Dir::Tx);
        }
        if direction.client_rx() {
            directions.push(Dir::Rx);
        }
        TextOutput {
            directions,
            quiet,
            per_stream,
            udp,
            timestamps: false,
            totals: [0; 2],
            elapsed: Duration::ZERO,
        }
    }

    /// Prefix interval lines with the local time.
    pub fn with_timestamps(mut self, on: bool) -> TextOutput {
        self.timestamps = on;
        self
    }

    fn slot(dir: Dir) -> usize {
        match dir {
            Dir::Tx => 0,
            Dir::Rx => 1,
        }
    }

    /// Takes one interval: adds it to the totals and prints its lines.
    pub fn interval(&mut self, iv: &Interval<'_>) {
        self.elapsed += iv.duration;
        let mut out = std::io::stdout().lock();
        for &dir in &self.directions {
            let bytes = match dir {
                Dir::Tx => iv.tx_bytes,
                Dir::Rx => iv.rx_bytes,
            };
            self.totals[Self::slot(dir)] += bytes;
            if self.quiet {
                continue;
            }
            let extras = Extras {
                lost: (self.udp && dir == Dir::Rx).then_some(iv.lost),
                cpu: iv.local_cpu.map(|l| (l, iv.remote_cpu)),
            };
            let line = text::interval_line(iv.index, dir, bytes, iv.duration, extras);
            let _ = if self.timestamps {
                writeln!(out, "{} {line}", crate::report::text::clock_prefix())
            } else {
                writeln!(out, "{line}")
            };
            if self.per_stream && iv.streams.len() > 1 {
                for (i, s) in iv.streams.iter().enumerate() {
                    let b = match dir {
                        Dir::Tx => s.tx_bytes,
                        Dir::Rx => s.rx_bytes,
                    };
                    let _ = writeln!(
                        out,
                        "{}",
                        text::stream_line(iv.index, dir, i + 1, b, iv.duration)
                    );
                }
            }
        }
        let _ = out.flush();
    }

    /// Prints the summary: one line per direction over the whole test.
    pub fn summary(&self) {
        let mut out = std::io::stdout().lock();
        for &dir in &self.directions {
            let _ = writeln!(
                out,
                "{}",
                text::summary_line(dir, self.totals[Self::slot(dir)], self.elapsed)
            );
        }
        let _ = out.flush();
    }

    /// Bytes per direction so far (TX, RX).
    pub fn totals(&self) -> (u64, u64) {
        (self.totals[0], self.totals[1])
    }
}
