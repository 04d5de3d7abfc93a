//! What the server core asks its policy: may this test run, may it go on, and what happened.
//!
//! The plain server admits everything ([`Unlimited`]); the pro server implements [`Admission`]
//! with per-user and per-IP budgets and records every session. The accept loop, handshake and
//! data engine stay the same code for both.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::budget::Budget;
use crate::engine::{Interval, Outcome};
use crate::handshake::AuthMethod;
use crate::proto::Command;

/// A test asking to start: who, from where, and what.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionRequest<'a> {
    /// The primary connection's peer.
    pub peer: SocketAddr,
    /// How the client authenticated.
    pub method: AuthMethod,
    /// The authenticated user name (empty without authentication).
    pub user: &'a [u8],
    /// The test command.
    pub cmd: &'a Command,
}

/// Why a test was turned away, for logs, metrics and session history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// A byte budget of the user or address is spent.
    Quota,
    /// Too many concurrent tests from one address.
    PerIpLimit,
    /// Too many concurrent tests overall.
    MaxSessions,
    /// Authentication failed.
    Auth,
    /// Unauthenticated tests are not allowed.
    AuthRequired,
    /// Anything else the policy decides.
    Other,
}

impl RefusalKind {
    /// Stable lower-case name (metrics labels, database).
    pub fn name(self) -> &'static str {
        match self {
            RefusalKind::Quota => "quota",
            RefusalKind::PerIpLimit => "per_ip_limit",
            RefusalKind::MaxSessions => "max_sessions",
            RefusalKind::Auth => "auth",
            RefusalKind::AuthRequired => "auth_required",
            RefusalKind::Other => "other",
        }
    }
}

/// A refusal with the reason shown in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Category.
    pub kind: RefusalKind,
    /// Human-readable detail.
    pub detail: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Whether a running test may go on after an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep going.
    Continue,
    /// End the test now (budget spent).
    Stop,
}

/// How a session ended, for the policy's records.
#[derive(Debug, Clone)]
pub struct SessionSummary<'a> {
    /// Connections the test ran on.
    pub connections: usize,
    /// Totals and end reason.
    pub outcome: &'a Outcome,
}

/// A running test's admission: consulted each interval, told the end.
pub trait Ticket: Send {
    /// Longest the test may run.
    fn max_duration(&self) -> Option<Duration> {
        None
    }

    /// Called once when the test starts running, with the session number the log shows.
    fn started(&mut self, _id: usize) {}

    /// The byte budget the test's streams draw from before they move data (see
    /// `crate::engine::budget`); `None` (the default) leaves them unlimited at no cost.
    fn budget(&self) -> Option<Arc<dyn Budget>> {
        None
    }

    /// Called once per interval (and for the final partial one) with the bytes moved.
    fn interval(&mut self, _interval: &Interval<'_>) -> Verdict {
        Verdict::Continue
    }

    /// Called once when the test has ended.
    fn finish(&mut self, _summary: &SessionSummary<'_>) {}
}

/// The server's admission policy.
pub trait Admission: Send + Sync {
    /// Decides whether a test may start (after authentication, before the OK).
    fn admit(&self, req: &AdmissionRequest<'_>) -> Result<Box<dyn Ticket>, Refusal>;

    /// Told of every failed authentication.
    fn auth_failed(&self, _peer: SocketAddr, _method: AuthMethod, _user: &str) {}

    /// Told of every refusal made by the core itself (max-sessions, handshake cap, join
    /// refusals), so a policy can count them.
    fn refused(&self, _peer: SocketAddr, _refusal: &Refusal) {}
}

/// The plain server's policy: everything authenticated may run, without limits.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unlimited;

struct UnlimitedTicket;

impl Ticket for UnlimitedTicket {}

impl Admission for Unlimited {
    fn admit(&self, _req: &AdmissionRequest<'_>) -> Result<Box<dyn Ticket>, Refusal> {
        Ok(Box::new(UnlimitedTicket))
    }
}
