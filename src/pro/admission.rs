//! The pro server's [`Admission`]: per-address concurrency slots, per-user and per-address
//! budgets checked at admission and charged every interval, and a session row for every test,
//! refusal and failed authentication — all written through the writer's channel.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use super::budget::SessionBudget;
use super::health::WriteHealth;
use super::live::{Live, LiveSession};
use super::quota::{Kind, Quotas, Spent, Subject, Uses, unix_ms};
use super::refusals::{Note, RefusalBook, Repeated};
use super::writer::{Op, SessionEnd, SessionRow, SessionStart};
use crate::engine::budget::Budget;
use crate::engine::session::StreamEnd;
use crate::engine::{EndReason, Interval};
use crate::handshake::AuthMethod;
use crate::log;
use crate::proto::Protocol;
use crate::server::addrkey::{addr_key, key_name};
use crate::server::policy::{
    Admission, AdmissionRequest, Refusal, RefusalKind, SessionSummary, Ticket, Verdict,
};

/// Limits beside the budgets.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest test.
    pub max_duration: Option<Duration>,
    /// Concurrent tests from one address.
    pub max_conn_per_ip: usize,
    /// IPv6 peers within this prefix share slots and budget (see
    /// `crate::server::addrkey`).
    pub ipv6_prefix: u8,
}

/// Concurrent tests per address, with slots that return on drop.
#[derive(Default)]
struct IpSlots(Mutex<HashMap<IpAddr, usize>>);

/// One address's place; given back when the ticket is dropped, whatever ended the test.
struct IpSlot {
    slots: Arc<IpSlots>,
    ip: IpAddr,
}

impl IpSlots {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut map = self.0.lock();
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.slots.0.lock();
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// The policy object given to the server core.
pub struct ProAdmission {
    quotas: Arc<Quotas>,
    writes: Sender<Op>,
    limits: Limits,
    slots: Arc<IpSlots>,
    live: Arc<Live>,
    health: Arc<WriteHealth>,
    refusals: Mutex<RefusalBook>,
}

impl ProAdmission {
    /// A policy charging `quotas`, recording through `writes` (SQLite gives the session rows
    /// their ids: [`super::writer::RowId`]).
    pub fn new(quotas: Arc<Quotas>, writes: Sender<Op>, limits: Limits) -> Self {
        ProAdmission {
            quotas,
            writes,
            limits,
            slots: Arc::default(),
            live: Arc::default(),
            health: Arc::default(),
            refusals: Mutex::default(),
        }
    }

    /// Refuses new tests while `health` says the database does not take writes.
    pub fn with_health(mut self, health: Arc<WriteHealth>) -> Self {
        self.health = health;
        self
    }

    /// The running sessions and counters this policy feeds (for the HTTP side).
    pub fn live(&self) -> Arc<Live> {
        self.live.clone()
    }

    /// Tests running from `ip` now.
    pub fn running_from(&self, ip: IpAddr) -> usize {
        self.slots.0.lock().get(&ip).copied().unwrap_or(0)
    }

    fn record_refusal(
        &self,
        peer: SocketAddr,
        user: Option<String>,
        auth: AuthMethod,
        req: Option<&AdmissionRequest<'_>>,
        outcome: &'static str,
        detail: String,
    ) {
        self.live.metrics.session_ended(outcome);
        let now_ms = unix_ms();
        let key = addr_key(peer.ip(), self.limits.ipv6_prefix);
        let (note, ended) = self.refusals.lock().note(key, outcome, &detail, now_ms);
        self.write_repeats(ended);
        let Note::First(id) = note else {
            return;
        };
        let _ = self.writes.send(Op::Start(SessionStart {
            id,
            start_ms: now_ms,
            peer: peer.ip().to_canonical().to_string(),
            user,
            proto: req.map(|r| r.cmd.protocol.name()),
            direction: req.map(|r| r.cmd.direction.client_name()),
            auth: auth.name(),
            outcome,
            detail: Some(detail),
        }));
    }

    fn write_repeats(&self, rows: Vec<Repeated>) {
        for r in rows {
            let _ = self.writes.send(Op::Repeats(r));
        }
    }

    /// Completes the rows of refusals that repeated in the current minute (at shutdown).
    pub fn flush_refusals(&self) {
        let rows = self.refusals.lock().drain();
        self.write_repeats(rows);
    }

    fn refuse(
        &self,
        req: &AdmissionRequest<'_>,
        user: Option<String>,
        kind: RefusalKind,
        detail: String,
    ) -> Refusal {
        self.live.metrics.refused(kind);
        let outcome = if kind == RefusalKind::Quota {
            "quota"
        } else {
            "refused"
        };
        self.record_refusal(
            req.peer,
            user,
            req.method,
            Some(req),
            outcome,
            detail.clone(),
        );
        Refusal { kind, detail }
    }
}

fn db_refusal(e: impl std::fmt::Display) -> (RefusalKind, String) {
    (RefusalKind::Other, format!("budget unavailable: {e}"))
}

/// Whose budgets a test draws on: its user's, if it has one, and its address's.
fn subjects(user: Option<&str>, ip_name: &str) -> Vec<Subject> {
    let user = user.map(|u| Subject {
        kind: Kind::User,
        name: Arc::from(u),
    });
    let ip = Subject {
        kind: Kind::Ip,
        name: Arc::from(ip_name),
    };
    user.into_iter().chain([ip]).collect()
}

impl ProAdmission {
    /// The test's budget over every period of `subjects`, or why there is none: a budget is
    /// spent already, or the database cannot say.
    fn budget_for(
        &self,
        subjects: &[Subject],
        uses: Uses,
    ) -> Result<Arc<SessionBudget>, (RefusalKind, String)> {
        let now = self.quotas.now();
        for s in subjects {
            match self.quotas.spent(s, uses, now) {
                Ok(None) => {}
                Ok(Some(spent)) => return Err((RefusalKind::Quota, spent.to_string())),
                Err(e) => return Err(db_refusal(e)),
            }
        }
        let mut lines = Vec::with_capacity(subjects.len() * 3);
        for s in subjects {
            lines.extend(self.quotas.lines(s, now).map_err(db_refusal)?);
        }
        Ok(Arc::new(SessionBudget::new(lines)))
    }

    /// Writes the running session's row and shows it in the live view; returns its row and
    /// live key.
    fn open(&self, req: &AdmissionRequest<'_>, user: Option<String>) -> (SessionRow, u64) {
        let row = SessionRow::default();
        let peer = req.peer.ip().to_canonical();
        let start_ms = unix_ms();
        let _ = self.writes.send(Op::Start(SessionStart {
            id: row.clone(),
            start_ms,
            peer: peer.to_string(),
            user: user.clone(),
            proto: Some(req.cmd.protocol.name()),
            direction: Some(req.cmd.direction.client_name()),
            auth: req.method.name(),
            outcome: "running",
            detail: None,
        }));
        let key = self.live.start(LiveSession {
            row: row.clone(),
            peer,
            user,
            proto: req.cmd.protocol.name(),
            direction: req.cmd.direction.client_name(),
            auth: req.method.name(),
            start_ms,
            bytes_in: 0,
            bytes_out: 0,
            rate_in_bps: 0.0,
            rate_out_bps: 0.0,
            intervals: 0,
        });
        (row, key)
    }
}

impl ProAdmission {
    /// The user a test is charged to. An MD5 response carries at most 32 bytes of the name,
    /// so a name of 32 bytes from MD5 is looked up the way the login was
    /// ([`super::authn::md5_user`]): a longer user's budget is theirs, not a stranger's of
    /// the cut name.
    fn account(&self, req: &AdmissionRequest<'_>) -> Option<String> {
        let wire = || String::from_utf8_lossy(req.user).into_owned();
        match req.method {
            AuthMethod::None => None,
            AuthMethod::Md5 if req.user.len() >= crate::auth::md5::USER_FIELD_LEN => {
                let full = self
                    .quotas
                    .pool()
                    .get()
                    .ok()
                    .and_then(|conn| super::authn::md5_user(&conn, req.user).ok().flatten());
                Some(full.map_or_else(wire, |u| u.name))
            }
            _ => Some(wire()),
        }
    }
}

impl Admission for ProAdmission {
    fn admit(&self, req: &AdmissionRequest<'_>) -> Result<Box<dyn Ticket>, Refusal> {
        let user = self.account(req);
        if self.health.failing() {
            // Fail closed: a test whose usage cannot be stored would be free.
            let detail = "database writes are failing; no new tests until they succeed".into();
            return Err(self.refuse(req, user, RefusalKind::Other, detail));
        }
        let ip = addr_key(req.peer.ip(), self.limits.ipv6_prefix);
        let ip_name = key_name(ip, self.limits.ipv6_prefix);
        let Some(slot) = self.slots.take(ip, self.limits.max_conn_per_ip) else {
            let detail = format!(
                "{ip_name} already runs {} tests (--max-conn-per-ip)",
                self.limits.max_conn_per_ip
            );
            return Err(self.refuse(req, user, RefusalKind::PerIpLimit, detail));
        };
        let subjects = subjects(user.as_deref(), &ip_name);
        let uses = Uses {
            rx: req.cmd.direction.server_rx(),
            tx: req.cmd.direction.server_tx(),
        };
        let budget = match self.budget_for(&subjects, uses) {
            Ok(budget) => budget,
            Err((kind, detail)) => return Err(self.refuse(req, user, kind, detail)),
        };
        let (row, live_key) = self.open(req, user);
        Ok(Box::new(ProTicket {
            row,
            live_key,
            proto: req.cmd.protocol,
            live: self.live.clone(),
            quotas: self.quotas.clone(),
            writes: self.writes.clone(),
            subjects,
            budget,
            max_duration: self.limits.max_duration,
            seen: (0, 0),
            spent: None,
            finished: false,
            _slot: slot,
        }))
    }

    fn auth_failed(&self, peer: SocketAddr, method: AuthMethod, user: &str) {
        self.live.metrics.auth_failed(method);
        self.live.metrics.refused(RefusalKind::Auth);
        self.record_refusal(
            peer,
            Some(user.to_owned()),
            method,
            None,
            "auth_failed",
            "authentication failed".into(),
        );
    }

    fn refused(&self, peer: SocketAddr, refusal: &Refusal) {
        self.live.metrics.refused(refusal.kind);
        self.record_refusal(
            peer,
            None,
            AuthMethod::None,
            None,
            "refused",
            refusal.detail.clone(),
        );
    }
}

/// One admitted test.
struct ProTicket {
    /// The session's row.
    row: SessionRow,
    /// Its key in the live view.
    live_key: u64,
    proto: Protocol,
    /// The live view: this session's entry and the byte counters.
    live: Arc<Live>,
    quotas: Arc<Quotas>,
    writes: Sender<Op>,
    subjects: Vec<Subject>,
    /// What the streams draw from; the counters advance there, not here.
    budget: Arc<SessionBudget>,
    max_duration: Option<Duration>,
    /// Bytes (in, out) charged so far.
    seen: (u64, u64),
    spent: Option<Spent>,
    finished: bool,
    _slot: IpSlot,
}

impl ProTicket {
    /// Records counted bytes: metrics and usage rows. The live counters already hold them
    /// (the streams drew them before moving them); true once a draw has been refused.
    fn charge(&mut self, bytes_in: u64, bytes_out: u64) -> bool {
        self.seen.0 += bytes_in;
        self.seen.1 += bytes_out;
        self.live.metrics.bytes(self.proto, bytes_in, bytes_out);
        let now = self.quotas.now();
        if bytes_in | bytes_out != 0 {
            for s in &self.subjects {
                let _ = self.writes.send(Op::Usage {
                    kind: s.kind,
                    subject: s.name.clone(),
                    at: now,
                    bytes_in,
                    bytes_out,
                });
            }
        }
        if self.spent.is_none()
            && let Some(spent) = self.budget.spent()
        {
            log!(0, "session {}: stopping: {spent}", self.row);
            self.spent = Some(spent);
        }
        self.spent.is_some()
    }
}

impl Ticket for ProTicket {
    fn max_duration(&self) -> Option<Duration> {
        self.max_duration
    }

    fn budget(&self) -> Option<Arc<dyn Budget>> {
        Some(self.budget.clone())
    }

    fn interval(&mut self, iv: &Interval<'_>) -> Verdict {
        let (bytes_in, bytes_out) = (iv.rx_bytes, iv.tx_bytes);
        self.live.interval(
            self.live_key,
            bytes_in,
            bytes_out,
            iv.duration.as_secs_f64(),
        );
        let _ = self.writes.send(Op::Interval {
            session: self.row.clone(),
            idx: iv.index,
            at_ms: unix_ms(),
            bytes_in,
            bytes_out,
        });
        if self.charge(bytes_in, bytes_out) {
            Verdict::Stop
        } else {
            Verdict::Continue
        }
    }

    fn finish(&mut self, summary: &SessionSummary<'_>) {
        let o = summary.outcome;
        // Whatever the intervals did not report (UDP sessions, which get no interval calls,
        // or a last partial interval) is charged now, so usage always equals the session row.
        // Bytes still unacknowledged at the stop are not charged: the session resets its
        // connections when it ends (engine `EndMode`), which discards them, so they never
        // cross the link and the budget hands them back.
        let rest_in = o.rx_bytes.saturating_sub(self.seen.0);
        let rest_out = o.tx_bytes.saturating_sub(self.seen.1);
        self.charge(rest_in, rest_out);
        self.budget.settle(self.seen.0, self.seen.1);
        let secs = o.elapsed.as_secs_f64().max(1e-3);
        let (outcome, detail) = match (&self.spent, o.reason) {
            (Some(s), _) => ("quota", Some(s.to_string())),
            (None, EndReason::Stream(StreamEnd::Error(_) | StreamEnd::Panicked)) => {
                ("error", Some(o.reason.describe()))
            }
            (None, r) => ("completed", Some(r.describe())),
        };
        let _ = self.writes.send(Op::End(SessionEnd {
            id: self.row.clone(),
            end_ms: unix_ms(),
            connections: u32::try_from(summary.connections).unwrap_or(u32::MAX),
            bytes_in: self.seen.0,
            bytes_out: self.seen.1,
            avg_in_bps: self.seen.0 as f64 * 8.0 / secs,
            avg_out_bps: self.seen.1 as f64 * 8.0 / secs,
            outcome,
            detail,
        }));
        self.live.metrics.session_ended(outcome);
        self.live.end(self.live_key);
        self.finished = true;
    }
}

impl Drop for ProTicket {
    fn drop(&mut self) {
        if !self.finished {
            self.budget.settle(self.seen.0, self.seen.1);
            self.live.metrics.session_ended("error");
            self.live.end(self.live_key);
            let _ = self.writes.send(Op::End(SessionEnd {
                id: self.row.clone(),
                end_ms: unix_ms(),
                bytes_in: self.seen.0,
                bytes_out: self.seen.1,
                outcome: "error",
                detail: Some("the test could not start".into()),
                ..SessionEnd::default()
            }));
        }
    }
}
