//! Time for budgets: the clock, fixed-offset time zones and the day, week and month periods
//! they fall into (proleptic Gregorian, ISO weeks).

use std::sync::atomic::{AtomicI64, Ordering};

/// Gives "now" as Unix seconds; injected so tests can cross midnight.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        unix_ms() / 1000
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A clock that moves only when told (tests, benches).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `now`.
    pub fn new(now: i64) -> ManualClock {
        ManualClock(AtomicI64::new(now))
    }
    /// Moves the clock to `now`.
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A time zone as a fixed offset from UTC. Named zones (with daylight saving) are not
/// supported: converting them needs the process-global `TZ` of the C library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tz {
    /// Seconds east of UTC.
    pub offset_s: i32,
}

impl Tz {
    /// Parses `UTC`, `Z`, `+02:00`, `-0530`, `+2`.
    pub fn parse(s: &str) -> Result<Tz, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" || t.eq_ignore_ascii_case("gmt") {
            return Ok(Tz { offset_s: 0 });
        }
        let bad = || format!("invalid time zone '{s}': use UTC or an offset like +02:00");
        let t = t
            .strip_prefix("UTC")
            .or_else(|| t.strip_prefix("utc"))
            .unwrap_or(t);
        let (sign, rest) = match t.as_bytes().first() {
            Some(b'+') => (1, &t[1..]),
            Some(b'-') => (-1, &t[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = match rest.split_once(':') {
            Some((h, m)) => (h, m),
            None if rest.len() == 4 => rest.split_at(2),
            None => (rest, "0"),
        };
        let h: i32 = h.parse().map_err(|_| bad())?;
        let m: i32 = m.parse().map_err(|_| bad())?;
        if h > 14 || m > 59 || (h == 14 && m > 0) {
            return Err(bad());
        }
        // Usage is stored in 15-minute buckets; any other offset would split a bucket
        // between two days.
        if m % 15 != 0 {
            return Err(format!(
                "invalid time zone '{s}': the offset must be a whole number of quarter hours                  (usage is kept in 15-minute buckets)"
            ));
        }
        Ok(Tz {
            offset_s: sign * (h * 3600 + m * 60),
        })
    }

    /// `UTC` or `+02:00`.
    pub fn name(self) -> String {
        if self.offset_s == 0 {
            return "UTC".into();
        }
        let sign = if self.offset_s < 0 { '-' } else { '+' };
        let a = self.offset_s.unsigned_abs();
        format!("{sign}{:02}:{:02}", a / 3600, a / 60 % 60)
    }

    fn local_day(self, now: i64) -> i64 {
        (now + i64::from(self.offset_s)).div_euclid(86_400)
    }

    /// Which day, week or month `now` falls in, as a number that grows by one per period.
    pub fn period_index(self, period: Period, now: i64) -> i64 {
        let day = self.local_day(now);
        match period {
            Period::Day => day,
            // Day 0 (1970-01-01) was a Thursday; day -3 a Monday, where ISO weeks start.
            Period::Week => (day + 3).div_euclid(7),
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                y * 12 + i64::from(m) - 1
            }
        }
    }

    /// First and one-past-last Unix second of the period `now` falls in.
    pub fn period_range(self, period: Period, now: i64) -> (i64, i64) {
        let off = i64::from(self.offset_s);
        let day = self.local_day(now);
        let (first, next) = match period {
            Period::Day => (day, day + 1),
            Period::Week => {
                let monday = (day + 3).div_euclid(7) * 7 - 3;
                (monday, monday + 7)
            }
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (days_from_civil(y, m, 1), days_from_civil(ny, nm, 1))
            }
        };
        (first * 86_400 - off, next * 86_400 - off)
    }

    /// `2026-11-25`, `2026-W48` (ISO week-numbering year) or `2026-11`.
    pub fn period_label(self, period: Period, now: i64) -> String {
        let day = self.local_day(now);
        match period {
            Period::Day => {
                let (y, m, d) = civil_from_days(day);
                format!("{y:04}-{m:02}-{d:02}")
            }
            Period::Week => {
                let monday = (day + 3).div_euclid(7) * 7 - 3;
                let thursday = monday + 3;
                let (y, _, _) = civil_from_days(thursday);
                let week = (thursday - days_from_civil(y, 1, 1)) / 7 + 1;
                format!("{y:04}-W{week:02}")
            }
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                format!("{y:04}-{m:02}")
            }
        }
    }
}

/// Days since 1970-01-01 to (year, month, day) (proleptic Gregorian).
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// (year, month, day) to days since 1970-01-01, the inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A budget period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// Calendar day.
    Day,
    /// ISO week (Monday to Sunday).
    Week,
    /// Calendar month.
    Month,
}

impl Period {
    /// All periods, in the order limits are stored.
    pub const ALL: [Period; 3] = [Period::Day, Period::Week, Period::Month];

    /// `day`, `week`, `month` (database and CLI).
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The inverse of [`Period::name`].
    pub fn parse(s: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.name() == s)
    }

    pub(super) fn slot(self) -> usize {
        self as usize
    }
}
