//! What a server session runs under once its connections are in (the policy, the server's
//! shutdown, the shared CPU reading), and its log lines. The data plan itself is the
//! engine's, shared with the client ([`crate::engine::start_tcp`], [`crate::engine::start_udp`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::Shared;
use super::policy::{Ticket, Verdict};
use crate::engine::{Outcome, RunOptions, Session};
use crate::handshake::AuthMethod;
use crate::handshake::printable_user;
use crate::handshake::server::Authenticated;
use crate::log;
use crate::proto::Command;
use crate::report::text::{bits_per_second, format_rate};

/// What every server session runs under, TCP or UDP: the shared CPU reading for its status
/// messages, the server's shutdown, and the admission ticket's limits and verdicts.
pub(crate) struct Policed<'a> {
    cpu: Arc<crate::sys::cpu::SharedCpu>,
    shutdown: Receiver<()>,
    ticket: &'a mut dyn Ticket,
}

impl<'a> Policed<'a> {
    pub(super) fn new(shared: &Shared, ticket: &'a mut dyn Ticket) -> Policed<'a> {
        Policed {
            cpu: shared.cpu.clone(),
            shutdown: shared.shutdown_rx.clone(),
            ticket,
        }
    }

    /// Drives `session` to its end; the ticket sees every interval and may stop it.
    pub(crate) fn run(self, session: Session) -> Outcome {
        let Policed {
            cpu,
            shutdown,
            ticket,
        } = self;
        let mut cpu_now = move || cpu.get();
        let (policy_tx, policy_rx) = crossbeam_channel::bounded(1);
        session.run(
            RunOptions {
                deadline: ticket.max_duration().map(|d| Instant::now() + d),
                stop: None,
                cpu: &mut cpu_now,
                external_stop: Some(shutdown),
                policy_stop: Some(policy_rx),
            },
            |interval| {
                if ticket.interval(interval) == Verdict::Stop {
                    let _ = policy_tx.try_send(());
                }
            },
        )
    }
}

pub(super) fn user_suffix(who: &Authenticated) -> String {
    if who.method == AuthMethod::None {
        String::new()
    } else {
        format!(" user={}", printable_user(&who.user))
    }
}

pub(super) fn log_session_end(
    id: usize,
    peer: SocketAddr,
    cmd: &Command,
    connections: usize,
    who: &Authenticated,
    outcome: &Outcome,
) {
    let secs = outcome.elapsed.as_secs_f64();
    log!(
        crate::log::SESSION,
        "{peer}: session {id} end: {} {} conns={} auth={}{} tx={} rx={} bytes in {secs:.2} s \
         (tx {}, rx {}): {}",
        cmd.protocol.name(),
        cmd.direction.client_name(),
        connections,
        who.method.name(),
        user_suffix(who),
        outcome.tx_bytes,
        outcome.rx_bytes,
        format_rate(bits_per_second(outcome.tx_bytes, outcome.elapsed)),
        format_rate(bits_per_second(outcome.rx_bytes, outcome.rx_elapsed)),
        outcome.reason.describe()
    );
    if crate::log::enabled(1) && outcome.per_stream.len() > 1 {
        let streams: Vec<String> = outcome
            .per_stream
            .iter()
            .enumerate()
            .map(|(i, (tx, rx))| format!("#{}={tx}/{rx}", i + 1))
            .collect();
        log!(
            1,
            "{peer}: session {id} streams tx/rx: {}",
            streams.join(" ")
        );
    }
}
