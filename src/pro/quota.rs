//! Budgets: periods in a fixed-offset time zone, limits with per-subject overrides (cached
//! with a TTL), and the live counters every session of a user or address draws from.
//!
//! The live counters decide: they are atomics shared by all sessions of one subject and
//! period, so two concurrent sessions cannot each spend the whole remainder; each interval's
//! bytes are added with one `fetch_add` and the sum is checked right after. The streams draw
//! from the same counters in small chunks before they move data (`pro::budget`,
//! `engine::budget`), so a session stops within one chunk per stream of the budget running
//! out, at any speed.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::OptionalExtension;

use super::db::{DbError, Pool, sql};

/// Usage buckets are this many seconds long: every time zone offset in use is a multiple of
/// 15 minutes, so day, week and month sums in any zone are exact sums of buckets.
pub const BUCKET_SECS: i64 = 900;

/// Subjects whose budgets are cached at most.
pub const MAX_CACHED_LIMITS: usize = 4096;

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

    fn slot(self) -> usize {
        self as usize
    }
}

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
        let (i, o) = used;
        if inbound && self.bytes_in > 0 && i > self.bytes_in {
            return Some((Dir::In, i, self.bytes_in));
        }
        if !inbound && self.bytes_out > 0 && o > self.bytes_out {
            return Some((Dir::Out, o, self.bytes_out));
        }
        if self.total > 0 && i.saturating_add(o) > self.total {
            return Some((Dir::Total, i.saturating_add(o), self.total));
        }
        None
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
        let (i, o) = used;
        if inbound && self.bytes_in > 0 && i >= self.bytes_in {
            return Some((Dir::In, i, self.bytes_in));
        }
        if !inbound && self.bytes_out > 0 && o >= self.bytes_out {
            return Some((Dir::Out, o, self.bytes_out));
        }
        if self.total > 0 && i.saturating_add(o) >= self.total {
            return Some((Dir::Total, i.saturating_add(o), self.total));
        }
        None
    }

    /// The first budget of this limit spent by `used`, among the directions the test uses.
    fn spent(&self, used: (u64, u64), uses: Uses) -> Option<(Dir, u64, u64)> {
        let (i, o) = used;
        if uses.rx && self.bytes_in > 0 && i >= self.bytes_in {
            return Some((Dir::In, i, self.bytes_in));
        }
        if uses.tx && self.bytes_out > 0 && o >= self.bytes_out {
            return Some((Dir::Out, o, self.bytes_out));
        }
        if self.total > 0 && i.saturating_add(o) >= self.total {
            return Some((Dir::Total, i.saturating_add(o), self.total));
        }
        None
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

/// Whose budget: a user name or a source address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    /// User or address.
    pub kind: Kind,
    /// The name or the address as text.
    pub name: Arc<str>,
}

/// Kinds of subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An authenticated user.
    User,
    /// A source IP address.
    Ip,
}

impl Kind {
    /// `user` or `ip` (database).
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Ip => "ip",
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.name)
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

/// A spent budget, for the log and the session row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spent {
    /// Whose.
    pub subject: Subject,
    /// Which period.
    pub period: Period,
    /// Which direction.
    pub dir: Dir,
    /// Bytes used.
    pub used: u64,
    /// The budget.
    pub limit: u64,
}

impl fmt::Display for Spent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} budget spent ({} of {} bytes)",
            self.subject,
            match self.period {
                Period::Day => "daily",
                Period::Week => "weekly",
                Period::Month => "monthly",
            },
            self.dir.name(),
            self.used,
            self.limit
        )
    }
}

/// Bytes used by one subject in one period, shared by all its sessions.
#[derive(Debug, Default)]
pub struct Counter {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

impl Counter {
    /// Adds bytes and returns the totals after the addition.
    pub fn add(&self, bytes_in: u64, bytes_out: u64) -> (u64, u64) {
        let i = self.bytes_in.fetch_add(bytes_in, Ordering::AcqRel) + bytes_in;
        let o = self.bytes_out.fetch_add(bytes_out, Ordering::AcqRel) + bytes_out;
        (i, o)
    }
    /// Takes bytes back (bytes drawn for a test but never moved); never below zero.
    pub fn sub(&self, bytes_in: u64, bytes_out: u64) {
        let down = |a: &AtomicU64, n: u64| {
            let _ = a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
        };
        down(&self.bytes_in, bytes_in);
        down(&self.bytes_out, bytes_out);
    }

    /// The totals now.
    pub fn get(&self) -> (u64, u64) {
        (
            self.bytes_in.load(Ordering::Acquire),
            self.bytes_out.load(Ordering::Acquire),
        )
    }
}

type CounterKey = (Subject, Period, i64);

/// The budget book of a running server.
pub struct Quotas {
    pool: Pool,
    clock: Arc<dyn Clock>,
    tz: Tz,
    defaults_user: Limits,
    defaults_ip: Limits,
    ttl: Duration,
    limits: Mutex<HashMap<Subject, (Instant, Limits)>>,
    counters: Mutex<HashMap<CounterKey, Arc<Counter>>>,
}

/// Settings of the budget book.
pub struct QuotaConfig {
    /// Time zone of the periods.
    pub tz: Tz,
    /// Default budgets of users.
    pub defaults_user: Limits,
    /// Default budgets of addresses.
    pub defaults_ip: Limits,
    /// How long budgets read from the database are trusted.
    pub ttl: Duration,
}

impl Quotas {
    /// A budget book over the database `pool`.
    pub fn new(pool: Pool, clock: Arc<dyn Clock>, cfg: QuotaConfig) -> Quotas {
        Quotas {
            pool,
            clock,
            tz: cfg.tz,
            defaults_user: cfg.defaults_user,
            defaults_ip: cfg.defaults_ip,
            ttl: cfg.ttl,
            limits: Mutex::default(),
            counters: Mutex::default(),
        }
    }

    /// Subjects whose budgets are cached now.
    pub fn cached_limits(&self) -> usize {
        self.limits.lock().len()
    }

    /// The clock's now.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The budgets of `s`: cached for the TTL so admission does not query per connection.
    pub fn limits(&self, s: &Subject) -> Result<Limits, DbError> {
        if let Some((at, l)) = self.limits.lock().get(s)
            && at.elapsed() < self.ttl
        {
            return Ok(*l);
        }
        let defaults = match s.kind {
            Kind::User => self.defaults_user,
            Kind::Ip => self.defaults_ip,
        };
        let conn = self.pool.get().map_err(DbError::Pool)?;
        let l = read_limits(&conn, s, defaults)?;
        let mut cache = self.limits.lock();
        if cache.len() >= MAX_CACHED_LIMITS {
            // Bounded: expired entries go first, and if every entry is fresh (a flood of new
            // addresses within one TTL) the whole cache; it is only a cache.
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= MAX_CACHED_LIMITS {
                cache.clear();
            }
        }
        cache.insert(s.clone(), (Instant::now(), l));
        Ok(l)
    }

    /// The live counter of `s` in the period containing `now`. Created on first use from the
    /// usage already stored for that period (so a restart keeps the day's usage).
    pub fn counter(&self, s: &Subject, p: Period, now: i64) -> Result<Arc<Counter>, DbError> {
        let index = self.tz.period_index(p, now);
        let key = (s.clone(), p, index);
        if let Some(c) = self.counters.lock().get(&key) {
            return Ok(c.clone());
        }
        let (from, to) = self.tz.period_range(p, now);
        let conn = self.pool.get().map_err(DbError::Pool)?;
        let (i, o) = stored_usage(&conn, s, from, to)?;
        let mut map = self.counters.lock();
        // Periods that have ended are never charged again.
        map.retain(|(_, kp, ki), _| *ki >= self.tz.period_index(*kp, now));
        let c = map
            .entry(key)
            .or_insert_with(|| {
                let c = Counter::default();
                c.add(i, o);
                Arc::new(c)
            })
            .clone();
        Ok(c)
    }

    /// Every period counter of `s` with its limit, for a test's data-path budget.
    pub fn lines(&self, s: &Subject, now: i64) -> Result<Vec<super::budget::Line>, DbError> {
        let limits = self.limits(s)?;
        Period::ALL
            .into_iter()
            .map(|p| {
                Ok(super::budget::Line {
                    subject: s.clone(),
                    period: p,
                    counter: self.counter(s, p, now)?,
                    limit: *limits.of(p),
                })
            })
            .collect()
    }

    /// The first spent budget of `s` for a test that `uses` these directions.
    pub fn spent(&self, s: &Subject, uses: Uses, now: i64) -> Result<Option<Spent>, DbError> {
        let limits = self.limits(s)?;
        for p in Period::ALL {
            let limit = limits.of(p);
            if *limit == Limit::default() {
                continue;
            }
            let used = self.counter(s, p, now)?.get();
            if let Some((dir, used, limit)) = limit.spent(used, uses) {
                return Ok(Some(Spent {
                    subject: s.clone(),
                    period: p,
                    dir,
                    used,
                    limit,
                }));
            }
        }
        Ok(None)
    }

    /// Adds a session's bytes to every period counter of `s`, and says whether a budget is
    /// now spent. All sessions of `s` add to the same atomics.
    pub fn charge(
        &self,
        s: &Subject,
        bytes_in: u64,
        bytes_out: u64,
        uses: Uses,
        now: i64,
    ) -> Result<Option<Spent>, DbError> {
        let limits = self.limits(s)?;
        let mut first = None;
        for p in Period::ALL {
            let used = self.counter(s, p, now)?.add(bytes_in, bytes_out);
            if first.is_none()
                && let Some((dir, used, limit)) = limits.of(p).spent(used, uses)
            {
                first = Some(Spent {
                    subject: s.clone(),
                    period: p,
                    dir,
                    used,
                    limit,
                });
            }
        }
        Ok(first)
    }
}

/// The budgets of `s`: the defaults with the database's overrides (0 = unlimited) on top.
pub fn read_limits(
    conn: &rusqlite::Connection,
    s: &Subject,
    defaults: Limits,
) -> Result<Limits, DbError> {
    let mut l = defaults;
    let mut stmt = conn
        .prepare_cached(
            "SELECT period, direction, bytes FROM quotas WHERE kind = ?1 AND subject = ?2",
        )
        .map_err(sql("reading budgets"))?;
    let rows = stmt
        .query_map((s.kind.name(), &*s.name), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(sql("reading budgets"))?;
    for row in rows {
        let (p, d, b) = row.map_err(sql("reading budgets"))?;
        if let (Some(p), Some(d)) = (Period::parse(&p), Dir::parse(&d)) {
            l.of_mut(p).set(d, u64::try_from(b).unwrap_or(0));
        }
    }
    Ok(l)
}

/// Bytes (in, out) stored for `s` between two Unix seconds.
pub fn stored_usage(
    conn: &rusqlite::Connection,
    s: &Subject,
    from: i64,
    to: i64,
) -> Result<(u64, u64), DbError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT sum(bytes_in), sum(bytes_out) FROM usage \
             WHERE kind = ?1 AND subject = ?2 AND bucket >= ?3 AND bucket < ?4",
        )
        .map_err(sql("reading usage"))?;
    let row: Option<(Option<i64>, Option<i64>)> = stmt
        .query_row(
            (
                s.kind.name(),
                &*s.name,
                from / BUCKET_SECS,
                to / BUCKET_SECS,
            ),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql("reading usage"))?;
    let (i, o) = row.unwrap_or((None, None));
    let pos = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
    Ok((pos(i), pos(o)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// 2026-11-25 12:00:00 UTC, a Wednesday.
    const NOV25: i64 = 1_795_608_000;

    #[test]
    fn civil_round_trip_and_known_dates() {
        for d in -800_000..800_000i64 {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(days_from_civil(2026, 11, 25), NOV25 / 86_400);
    }

    #[test]
    fn periods_roll_at_local_midnight() {
        let utc = Tz::default();
        let plus2 = Tz::parse("+02:00").unwrap();
        let midnight_utc = NOV25 - 12 * 3600 + 86_400; // 2026-11-26 00:00 UTC
        assert_ne!(
            utc.period_index(Period::Day, midnight_utc - 1),
            utc.period_index(Period::Day, midnight_utc)
        );
        // In +02:00 the day rolled two hours earlier.
        assert_eq!(
            plus2.period_index(Period::Day, midnight_utc - 2 * 3600 - 1) + 1,
            plus2.period_index(Period::Day, midnight_utc - 2 * 3600)
        );
        assert_eq!(
            plus2.period_label(Period::Day, midnight_utc - 7200),
            "2026-11-26"
        );
        // ISO weeks: Monday 2026-11-30 starts W49; 2021-01-03 (Sunday) is in 2020-W53.
        let mon = days_from_civil(2026, 11, 30) * 86_400;
        assert_eq!(utc.period_label(Period::Week, mon - 1), "2026-W48");
        assert_eq!(utc.period_label(Period::Week, mon), "2026-W49");
        assert_eq!(
            utc.period_label(Period::Week, days_from_civil(2021, 1, 3) * 86_400),
            "2020-W53"
        );
        assert_eq!(utc.period_range(Period::Week, mon + 5).0, mon);
        // Months: 2028-02-29 (leap) rolls into March.
        let mar1 = days_from_civil(2028, 3, 1) * 86_400;
        assert_eq!(utc.period_label(Period::Month, mar1 - 1), "2028-02");
        assert_eq!(utc.period_label(Period::Month, mar1), "2028-03");
        assert_eq!(
            utc.period_range(Period::Month, mar1 - 1),
            (days_from_civil(2028, 2, 1) * 86_400, mar1)
        );
        assert_eq!(
            utc.period_index(Period::Month, mar1) - utc.period_index(Period::Month, mar1 - 1),
            1
        );
    }

    #[test]
    fn tz_and_size_parsing() {
        assert_eq!(Tz::parse("UTC").unwrap().offset_s, 0);
        assert_eq!(Tz::parse("-05:30").unwrap().offset_s, -19_800);
        assert_eq!(Tz::parse("+0545").unwrap().offset_s, 20_700);
        assert_eq!(Tz::parse("+2").unwrap().name(), "+02:00");
        assert!(Tz::parse("Europe/Riga").is_err());
        assert!(Tz::parse("+15:00").is_err());
        assert!(Tz::parse("+02:10").is_err());
        assert!(Tz::parse("-0931").is_err());
        assert_eq!(Tz::parse("+12:45").unwrap().offset_s, 45_900);
        assert_eq!(parse_size("2G").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("500M").unwrap(), 500_000_000);
        assert_eq!(parse_size("1MiB").unwrap(), 1_048_576);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn limit_spent_only_counts_directions_in_use() {
        let l = Limit {
            bytes_in: 10,
            bytes_out: 0,
            total: 0,
        };
        let rx = Uses {
            rx: true,
            tx: false,
        };
        let tx = Uses {
            rx: false,
            tx: true,
        };
        assert!(l.spent((10, 0), rx).is_some());
        assert!(l.spent((10, 0), tx).is_none());
    }

    fn book(tag: &str, period: Period, tz: Tz, clock: Arc<ManualClock>) -> (Quotas, PathBuf) {
        let path =
            std::env::temp_dir().join(format!("btest-quota-{}-{tag}.db", std::process::id()));
        remove(&path);
        let db = super::super::db::Db::open(&path).expect("db");
        let mut limits = Limits::default();
        limits.of_mut(period).set(Dir::Total, 100);
        let q = Quotas::new(
            db.pool().clone(),
            clock,
            QuotaConfig {
                tz,
                defaults_user: limits,
                defaults_ip: Limits::default(),
                ttl: Duration::from_secs(5),
            },
        );
        (q, path)
    }

    fn remove(path: &std::path::Path) {
        for s in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{s}", path.display()));
        }
    }

    fn alice() -> Subject {
        Subject {
            kind: Kind::User,
            name: Arc::from("alice"),
        }
    }

    const BOTH: Uses = Uses { rx: true, tx: true };

    /// Charges the whole budget at `spend`, then checks it is spent at `still` and fresh at
    /// `fresh` (the first second of the next period).
    fn rolls(period: Period, tz: Tz, spend: i64, still: i64, fresh: i64) {
        let clock = Arc::new(ManualClock::new(spend));
        let (q, path) = book(period.name(), period, tz, clock.clone());
        assert!(q.charge(&alice(), 60, 40, BOTH, spend).unwrap().is_some());
        clock.set(still);
        let spent = q.spent(&alice(), BOTH, q.now()).unwrap();
        assert_eq!(spent.map(|s| s.period), Some(period), "at {still}");
        clock.set(fresh);
        assert_eq!(
            q.spent(&alice(), BOTH, q.now()).unwrap(),
            None,
            "at {fresh}"
        );
        remove(&path);
    }

    #[test]
    fn budgets_roll_over_at_day_week_and_month_boundaries() {
        let day = |y, m, d| days_from_civil(y, m, d) * 86_400;
        let utc = Tz::default();
        // Day: spent all Wednesday, fresh at Thursday 00:00.
        rolls(
            Period::Day,
            utc,
            day(2026, 11, 25),
            day(2026, 11, 26) - 1,
            day(2026, 11, 26),
        );
        // In +02:00 the day ends at 22:00 UTC.
        let plus2 = Tz::parse("+02:00").unwrap();
        let end = day(2026, 11, 26) - 7200;
        rolls(Period::Day, plus2, end - 3600, end - 1, end);
        // ISO week: spent Friday, still spent over the weekend, fresh on Monday.
        rolls(
            Period::Week,
            utc,
            day(2026, 11, 27),
            day(2026, 11, 30) - 1,
            day(2026, 11, 30),
        );
        // Month: spent on the 1st, still on the 30th, fresh on December 1st.
        rolls(
            Period::Month,
            utc,
            day(2026, 11, 1),
            day(2026, 12, 1) - 1,
            day(2026, 12, 1),
        );
    }

    #[test]
    fn the_budget_cache_is_bounded() {
        let clock = Arc::new(ManualClock::new(NOV25));
        let (q, path) = book("cache", Period::Day, Tz::default(), clock);
        for i in 0..MAX_CACHED_LIMITS + 100 {
            let s = Subject {
                kind: Kind::Ip,
                name: Arc::from(format!("10.0.{}.{}", i / 256, i % 256)),
            };
            q.limits(&s).unwrap();
            assert!(q.cached_limits() <= MAX_CACHED_LIMITS);
        }
        remove(&path);
    }

    #[test]
    fn counters_start_from_stored_usage() {
        let now = days_from_civil(2026, 11, 25) * 86_400 + 3600;
        let clock = Arc::new(ManualClock::new(now));
        let (_, path) = book("stored", Period::Day, Tz::default(), clock.clone());
        {
            let db = super::super::db::Db::open(&path).unwrap();
            let w = super::super::writer::Writer::start(db.connection().unwrap()).unwrap();
            let _ = w.sender().send(super::super::writer::Op::Usage {
                kind: Kind::User,
                subject: Arc::from("alice"),
                at: now - 60,
                bytes_in: 70,
                bytes_out: 30,
            });
            w.flush();
        }
        // A new book over the same file (a restarted server) sees the day's 100 bytes.
        let q = {
            let db = super::super::db::Db::open(&path).unwrap();
            let mut limits = Limits::default();
            limits.of_mut(Period::Day).set(Dir::Total, 100);
            Quotas::new(
                db.pool().clone(),
                clock,
                QuotaConfig {
                    tz: Tz::default(),
                    defaults_user: limits,
                    defaults_ip: Limits::default(),
                    ttl: Duration::from_secs(5),
                },
            )
        };
        assert!(q.spent(&alice(), BOTH, now).unwrap().is_some());
        remove(&path);
    }
}
