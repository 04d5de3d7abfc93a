//! Wall-clock date and time for humans and logs: CSV timestamps, `--timestamps` interval
//! lines and syslog headers. Local time comes from the C library (`localtime_r`), which knows
//! the zone rules; UTC is plain arithmetic, which cannot fail and serves as the fallback.

use std::fmt::Write as _;
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

/// A broken-down calendar time with the offset from UTC that applied at that instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocalTime {
    /// Full year, e.g. 2026.
    pub year: i32,
    /// Month, 1 = January.
    pub month: u8,
    /// Day of the month, 1..=31.
    pub day: u8,
    /// Hour, 0..=23.
    pub hour: u8,
    /// Minute, 0..=59.
    pub minute: u8,
    /// Second, 0..=60 (60 only on a leap second, if the C library reports one).
    pub second: u8,
    /// Seconds east of UTC (local = UTC + offset).
    pub utc_offset_s: i32,
    /// Day of the week, 0 = Sunday.
    pub weekday: u8,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The current local time.
pub(crate) fn local_now() -> LocalTime {
    local_from_unix(unix_now())
}

/// The local time at `secs` seconds since the Unix epoch. Falls back to UTC if the C library
/// cannot convert it (out of range for its `time_t` or no zone information).
pub(crate) fn local_from_unix(secs: i64) -> LocalTime {
    static TZSET: Once = Once::new();
    // localtime_r need not read TZ itself (POSIX); tzset once makes the zone take effect.
    // SAFETY: tzset has no arguments; Once makes this the only call from our code.
    TZSET.call_once(|| unsafe { tzset() });

    // musl marks its time_t alias deprecated (it became 64-bit in musl 1.2); the value is
    // range-checked here whatever its width.
    #[allow(deprecated)]
    let Some(t) = libc::time_t::try_from(secs).ok() else {
        return utc_from_unix(secs);
    };
    // SAFETY: an all-zero tm is a valid plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to valid local values; localtime_r is the thread-safe form.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return utc_from_unix(secs);
    }
    LocalTime {
        year: tm.tm_year.saturating_add(1900),
        month: field(tm.tm_mon + 1),
        day: field(tm.tm_mday),
        hour: field(tm.tm_hour),
        minute: field(tm.tm_min),
        second: field(tm.tm_sec),
        utc_offset_s: i32::try_from(tm.tm_gmtoff).unwrap_or(0),
        weekday: field(tm.tm_wday),
    }
}

// libc declares tzset only for some targets; it is POSIX everywhere we build.
unsafe extern "C" {
    fn tzset();
}

fn field(v: libc::c_int) -> u8 {
    u8::try_from(v).unwrap_or(0)
}

/// The time at `secs` seconds since the Unix epoch in UTC, computed without the C library
/// (proleptic Gregorian calendar, civil-from-days), so it is exact and infallible.
pub(crate) fn utc_from_unix(secs: i64) -> LocalTime {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    LocalTime {
        year: i32::try_from(year).unwrap_or(if year < 0 { i32::MIN } else { i32::MAX }),
        month,
        day,
        hour: (rem / 3600) as u8,
        minute: (rem / 60 % 60) as u8,
        second: (rem % 60) as u8,
        utc_offset_s: 0,
        // 1970-01-01 was a Thursday (4).
        weekday: (days + 4).rem_euclid(7) as u8,
    }
}

/// Days since 1970-01-01 to (year, month, day), counting in 400-year eras of 146097 days
/// whose years start on 1 March, so the leap day is the last day of the year.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365, from 1 March
    let mp = (5 * doy + 2) / 153; // 0 = March .. 11 = February
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

impl LocalTime {
    /// `2026-11-25T19:06:43+01:00`: sortable and unambiguous across zones, for CSV rows.
    pub(crate) fn iso8601(&self) -> String {
        let mut s = String::with_capacity(25);
        let sign = if self.utc_offset_s < 0 { '-' } else { '+' };
        let off_min = self.utc_offset_s.unsigned_abs() / 60;
        let _ = write!(
            s,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{:02}:{:02}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            sign,
            off_min / 60,
            off_min % 60
        );
        s
    }

    /// `19:06:43`, the prefix of interval lines under `--timestamps`.
    pub(crate) fn time_of_day(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }

    /// `Nov  5 19:06:43`: the RFC 3164 TIMESTAMP, day padded with a space, no year or zone.
    pub(crate) fn rfc3164(&self) -> String {
        let month = MONTHS
            .get(usize::from(self.month).wrapping_sub(1))
            .copied()
            .unwrap_or("Jan");
        format!(
            "{} {:>2} {:02}:{:02}:{:02}",
            month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_known_instants() {
        let epoch = utc_from_unix(0);
        assert_eq!(epoch.iso8601(), "1970-01-01T00:00:00+00:00");
        assert_eq!(epoch.weekday, 4);
        let t = utc_from_unix(1_700_000_000);
        assert_eq!(t.iso8601(), "2023-11-14T22:13:20+00:00");
        assert_eq!(t.weekday, 2, "a Tuesday");
        assert_eq!(t.time_of_day(), "22:13:20");
        assert_eq!(t.rfc3164(), "Nov 14 22:13:20");
        // Leap day, end of a century, before the epoch.
        assert_eq!(
            utc_from_unix(951_782_400).iso8601(),
            "2000-02-29T00:00:00+00:00"
        );
        assert_eq!(utc_from_unix(-1).iso8601(), "1969-12-31T23:59:59+00:00");
        assert_eq!(
            utc_from_unix(4_107_542_400).iso8601(),
            "2100-03-01T00:00:00+00:00"
        );
    }

    #[test]
    fn rfc3164_pads_day_with_space() {
        let t = utc_from_unix(1_699_142_400 + 3_723); // 2023-11-05 01:02:03
        assert_eq!(t.rfc3164(), "Nov  5 01:02:03");
        assert_eq!(t.rfc3164().len(), 15);
    }

    #[test]
    fn iso8601_negative_and_half_hour_offsets() {
        let mut t = utc_from_unix(0);
        t.utc_offset_s = -(3 * 3600 + 30 * 60);
        assert!(t.iso8601().ends_with("-03:30"));
        t.utc_offset_s = 5 * 3600 + 45 * 60;
        assert!(t.iso8601().ends_with("+05:45"));
    }

    #[test]
    fn local_agrees_with_utc_shifted_by_offset() {
        for secs in [0, 951_782_400, 1_700_000_000, 1_764_097_603] {
            let local = local_from_unix(secs);
            let shifted = utc_from_unix(secs + i64::from(local.utc_offset_s));
            assert_eq!(
                (
                    local.year,
                    local.month,
                    local.day,
                    local.hour,
                    local.minute,
                    local.second
                ),
                (
                    shifted.year,
                    shifted.month,
                    shifted.day,
                    shifted.hour,
                    shifted.minute,
                    shifted.second
                )
            );
            assert_eq!(local.weekday, shifted.weekday);
        }
        let now = local_now();
        assert!(now.year >= 2024 && (1..=12).contains(&now.month));
    }
}
