//! One server session once its connections are in: the TCP data plan for the command's
//! direction, the policy it runs under (shared with UDP sessions), and its log lines.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::Shared;
use super::policy::{Ticket, Verdict};
use crate::engine::tcp::{ReceivePlan, SendPlan};
use crate::engine::{Outcome, RunOptions, Session, StatusOut, TestState};
use crate::handshake::AuthMethod;
use crate::handshake::printable_user;
use crate::handshake::server::Authenticated;
use crate::log;
use crate::proto::Command;
use crate::report::text::{bits_per_second, format_rate};

pub(super) fn run_tcp_session(
    shared: &Arc<Shared>,
    cmd: &Command,
    streams: Vec<TcpStream>,
    peer: SocketAddr,
    ticket: &mut dyn Ticket,
) -> io::Result<Outcome> {
    let dir = cmd.direction;
    let state = TestState::new(if dir.server_tx() {
        u64::from(cmd.remote_tx_speed)
    } else {
        0
    });
    let policed = Policed::new(shared, ticket);
    policed.arm(&state);
    let status_out = match (dir.server_tx(), dir.server_rx()) {
        (false, true) => match streams.first() {
            Some(primary) => StatusOut::Direct(primary.try_clone()?),
            None => StatusOut::None,
        },
        (true, true) => StatusOut::Inject,
        _ => StatusOut::None,
    };
    let mut session = Session::new(state, peer.to_string());
    for (i, stream) in streams.into_iter().enumerate() {
        let send = dir.server_tx().then_some(SendPlan {
            tx_size: usize::from(cmd.tx_size),
            payload: cmd.payload,
            inject_status: i == 0 && dir.server_rx(),
        });
        let receive = ReceivePlan {
            count: dir.server_rx(),
            scan_status: i == 0,
            expect_data: dir.server_rx(),
        };
        session.add_tcp(stream, send, receive)?;
    }
    Ok(policed.run(session, status_out))
}

/// What every server session runs under, TCP or UDP: the shared CPU reading for its status
/// messages, the server's shutdown, and the admission ticket's limits and verdicts.
pub struct Policed<'a> {
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

    /// Gives the test's streams the ticket's byte budget, if it has one; call before the
    /// first stream starts.
    pub fn arm(&self, state: &TestState) {
        if let Some(budget) = self.ticket.budget() {
            state.budget.set(budget);
        }
    }

    /// Drives `session` to its end; the ticket sees every interval and may stop it.
    pub fn run(self, session: Session, status_out: StatusOut) -> Outcome {
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
                status_out,
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
