//! What a budget is: bytes in, out or in total per period, and the sizes they are given in.

use super::calendar::Period;

/// Which bytes a budget counts, from the server's side: `in` is what the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Bytes the server received.
    In,
    /// Bytes the server sent.
    Out,
    /// Both.
    Total,
}

impl Dir {
    /// `in`, `out`, `total`.
    pub fn name(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
            Dir::Total => "total",
        }
    }
    /// The inverse of [`Dir::name`].
    pub fn parse(s: &str) -> Option<Dir> {
        [Dir::In, Dir::Out, Dir::Total]
            .into_iter()
            .find(|d| d.name() == s)
    }
}

/// One period's budget; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit {
    /// Bytes the server may receive.
    pub bytes_in: u64,
    /// Bytes the server may send.
    pub bytes_out: u64,
    /// Both together.
    pub total: u64,
}

impl Limit {
    /// Sets one direction's figure.
    pub fn set(&mut self, dir: Dir, bytes: u64) {
        match dir {
            Dir::In => self.bytes_in = bytes,
            Dir::Out => self.bytes_out = bytes,
            Dir::Total => self.total = bytes,
        }
    }

    /// One direction's figure.
    pub fn get(&self, dir: Dir) -> u64 {
        match dir {
            Dir::In => self.bytes_in,
            Dir::Out => self.bytes_out,
            Dir::Total => self.total,
        }
    }

    /// The first budget of this limit that `used` goes beyond (strictly: a draw may take a
    /// budget to exactly zero left), checking only what moving bytes `inbound` or outbound
    /// can change.
    pub fn exceeded(&self, used: (u64, u64), inbound: bool) -> Option<(Dir, u64, u64)> {
        self.first_over(used, Uses::one_way(inbound), |used, limit| used > limit)
    }

    /// Bytes moving `inbound` (or out) may still add before a budget of this limit is gone
    /// (`u64::MAX` when none applies).
    pub fn headroom(&self, used: (u64, u64), inbound: bool) -> u64 {
        let (i, o) = used;
        let left = |limit: u64, used: u64| {
            if limit == 0 {
                u64::MAX
            } else {
                limit.saturating_sub(used)
            }
        };
        let own = if inbound {
            left(self.bytes_in, i)
        } else {
            left(self.bytes_out, o)
        };
        own.min(left(self.total, i.saturating_add(o)))
    }

    /// The budget of this limit that `used` has reached, for what moving bytes `inbound` (or
    /// out) draws on.
    pub fn reached(&self, used: (u64, u64), inbound: bool) -> Option<(Dir, u64, u64)> {
        self.spent(used, Uses::one_way(inbound))
    }

    /// The first budget of this limit spent by `used`, among the directions the test uses.
    pub(super) fn spent(&self, used: (u64, u64), uses: Uses) -> Option<(Dir, u64, u64)> {
        self.first_over(used, uses, |used, limit| used >= limit)
    }

    /// The first set budget (in, out, then total) among those `uses` draws on whose figure
    /// `over` says is passed, as (which, used, limit).
    fn first_over(
        &self,
        (i, o): (u64, u64),
        uses: Uses,
        over: impl Fn(u64, u64) -> bool,
    ) -> Option<(Dir, u64, u64)> {
        [
            (Dir::In, uses.rx, i, self.bytes_in),
            (Dir::Out, uses.tx, o, self.bytes_out),
            (Dir::Total, true, i.saturating_add(o), self.total),
        ]
        .into_iter()
        .find(|&(_, applies, used, limit)| applies && limit > 0 && over(used, limit))
        .map(|(dir, _, used, limit)| (dir, used, limit))
    }
}

/// Day, week and month budgets of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits(pub [Limit; 3]);

impl Limits {
    /// The budget of one period.
    pub fn of(&self, p: Period) -> &Limit {
        &self.0[p.slot()]
    }
    /// The budget of one period, to change.
    pub fn of_mut(&mut self, p: Period) -> &mut Limit {
        &mut self.0[p.slot()]
    }
}

/// Which directions a test moves data in, from the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uses {
    /// The server receives.
    pub rx: bool,
    /// The server sends.
    pub tx: bool,
}

impl Uses {
    /// Only receiving (`inbound`) or only sending.
    pub fn one_way(inbound: bool) -> Uses {
        Uses {
            rx: inbound,
            tx: !inbound,
        }
    }
}

/// Parses a byte size: `5000000`, `500M`, `2G`, `1.5T`, `64K` (1000-based, like rates), or
/// `512MiB`, `2GiB` (1024-based); `0` means unlimited.
pub fn parse_size(value: &str) -> Result<u64, String> {
    let bad = || format!("invalid size '{value}': use e.g. 500M, 2G, 1.5T, 512MiB or bytes");
    let t = value.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, mult) = if let Some(n) = body.strip_suffix("ki") {
        (n, 1024.0)
    } else if let Some(n) = body.strip_suffix("mi") {
        (n, 1024.0 * 1024.0)
    } else if let Some(n) = body.strip_suffix("gi") {
        (n, 1024.0 * 1024.0 * 1024.0)
    } else if let Some(n) = body.strip_suffix("ti") {
        (n, 1024.0f64.powi(4))
    } else if let Some(n) = body.strip_suffix('k') {
        (n, 1e3)
    } else if let Some(n) = body.strip_suffix('m') {
        (n, 1e6)
    } else if let Some(n) = body.strip_suffix('g') {
        (n, 1e9)
    } else if let Some(n) = body.strip_suffix('t') {
        (n, 1e12)
    } else {
        (body, 1.0)
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 || n * mult > 9.0e18 {
        return Err(bad());
    }
    Ok((n * mult).round() as u64)
}
