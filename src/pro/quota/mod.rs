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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::OptionalExtension;

use super::db::{DbError, Pool, sql};

mod calendar;
mod limit;

pub use self::calendar::{
    Clock, ManualClock, Period, SystemClock, Tz, civil_from_days, days_from_civil, unix_ms,
};
pub use self::limit::{Dir, Limit, Limits, Uses, parse_size};

/// Usage buckets are this many seconds long: every time zone offset in use is a multiple of
/// 15 minutes, so day, week and month sums in any zone are exact sums of buckets.
pub const BUCKET_SECS: i64 = 900;

/// Subjects whose budgets are cached at most.
pub const MAX_CACHED_LIMITS: usize = 4096;

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

    /// The read pool the book reads through (the admission reads user names through it too).
    pub fn pool(&self) -> &Pool {
        &self.pool
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
        let db = crate::pro::db::Db::open(&path).expect("db");
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
        let (utc, plus2) = (Tz::default(), Tz::parse("+02:00").unwrap());
        // In +02:00 the day ends at 22:00 UTC.
        let end = day(2026, 11, 26) - 7200;
        // (period, zone, spent at, still spent at, fresh at)
        let cases = [
            // Spent all Wednesday, fresh at Thursday 00:00.
            (
                Period::Day,
                utc,
                day(2026, 11, 25),
                day(2026, 11, 26) - 1,
                day(2026, 11, 26),
            ),
            (Period::Day, plus2, end - 3600, end - 1, end),
            // ISO week: spent Friday, still spent over the weekend, fresh on Monday.
            (
                Period::Week,
                utc,
                day(2026, 11, 27),
                day(2026, 11, 30) - 1,
                day(2026, 11, 30),
            ),
            // Month: spent on the 1st, still on the 30th, fresh on December 1st.
            (
                Period::Month,
                utc,
                day(2026, 11, 1),
                day(2026, 12, 1) - 1,
                day(2026, 12, 1),
            ),
        ];
        for (period, tz, spend, still, fresh) in cases {
            rolls(period, tz, spend, still, fresh);
        }
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
            let db = crate::pro::db::Db::open(&path).unwrap();
            let w = crate::pro::writer::Writer::start(db.connection().unwrap()).unwrap();
            let _ = w.sender().send(crate::pro::writer::Op::Usage {
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
            let db = crate::pro::db::Db::open(&path).unwrap();
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
