//! A new test on its primary connection, in three steps, each of which may end it:
//! [`admit`] (is the server open, who is this, is there a session place, does the policy let
//! them run this test), [`announce`] (session token, UDP port, the OK, then the secondary
//! connections) and [`run`] (the session under its ticket, with its log lines).

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::deadline::DeadlineStream;
use super::gauge::GaugeGuard;
use super::guarded::Guarded;
use super::limits::ConnSlot;
use super::policy::{AdmissionRequest, RefusalKind, SessionSummary, Ticket};
use super::session::{Policed, log_session_end, user_suffix};
use super::udp::{self, Prepared};
use super::{Shared, fill_random, refuse, unspecified_like};
use crate::engine::{Outcome, Role, Setup, start_tcp};
use crate::handshake::HandshakeError;
use crate::handshake::server::{self as hs, Authenticated};
use crate::proto::{Command, Protocol};
use crate::{log, log_error};

/// A new test on its primary connection: its command, and what it holds while it runs.
pub(super) struct Primary {
    pub peer: SocketAddr,
    pub cmd: Command,
    /// The connection slots of the test's connections, held until it ends.
    pub conns: Vec<ConnSlot>,
    /// The end of the handshake: hello, command, authentication and OK.
    pub deadline: Instant,
}

/// A test the server agreed to run: who asked, the policy's ticket, and its session place.
struct Admitted {
    who: Authenticated,
    ticket: Box<dyn Ticket>,
    session_slot: GaugeGuard,
}

/// A test whose OK went out, with every connection that joined it in time.
struct Announced {
    streams: Vec<TcpStream>,
    udp: Option<Prepared>,
}

/// Runs a new test: admission, authentication, the OK, the wait for secondary connections,
/// the session. `handshake_slot` is given back once the OK is sent.
pub(super) fn primary(
    shared: &Arc<Shared>,
    stream: TcpStream,
    mut test: Primary,
    handshake_slot: ConnSlot,
) {
    let Some(admitted) = admit(shared, &stream, &test) else {
        return;
    };
    let Some(announced) = announce(shared, stream, &mut test, handshake_slot) else {
        return;
    };
    run(shared, &test, admitted, announced);
}

/// Checks the server is open, authenticates the peer, takes a session place and asks the
/// admission policy; every refusal is logged and ends the test here.
fn admit(shared: &Arc<Shared>, stream: &TcpStream, test: &Primary) -> Option<Admitted> {
    let peer = test.peer;
    if shared.shutting_down.load(Ordering::SeqCst) {
        let detail = "server is shutting down".into();
        refuse(shared, peer, RefusalKind::Other, detail);
        return None;
    }
    let key = shared.cfg.addr_key(peer.ip());
    let guarded = Guarded::new(shared.cfg.auth.as_ref(), &shared.backoff);
    let mut io = DeadlineStream::new(stream, test.deadline);
    let who = match hs::authenticate(&mut io, &guarded, &mut fill_random) {
        Ok(who) => who,
        Err(e) => {
            log!(0, "{peer}: refused: {e}");
            if let HandshakeError::AuthRejected { method, user } = &e {
                shared.backoff.failed(key, user);
                shared.cfg.admission.auth_failed(peer, *method, user);
            }
            return None;
        }
    };
    // Taken only now, so peers that never authenticate cannot hold the session places.
    let Some(session_slot) = shared.sessions.try_enter(shared.cfg.max_sessions) else {
        let detail = format!("max-sessions ({}) reached", shared.cfg.max_sessions);
        refuse(shared, peer, RefusalKind::MaxSessions, detail);
        return None;
    };
    let request = AdmissionRequest {
        peer,
        method: who.method,
        user: &who.user,
        cmd: &test.cmd,
    };
    match shared.cfg.admission.admit(&request) {
        Ok(ticket) => Some(Admitted {
            who,
            ticket,
            session_slot,
        }),
        Err(refusal) => {
            log!(0, "{peer}: refused: {refusal}");
            None
        }
    }
}

/// Registers the session token of a multi-connection test, binds the data port of a UDP test,
/// sends the OK that announces them, and gathers the secondary connections.
fn announce(
    shared: &Arc<Shared>,
    stream: TcpStream,
    test: &mut Primary,
    handshake_slot: ConnSlot,
) -> Option<Announced> {
    let (peer, cmd) = (test.peer, &test.cmd);
    let joins = cmd.is_multi_connection().then(|| {
        let secondaries = cmd.connection_count() - 1;
        shared
            .registry
            .register(secondaries, peer.ip(), &mut fill_random)
    });
    let key = shared.cfg.addr_key(peer.ip());
    let awaiting = joins
        .as_ref()
        .and_then(|_| shared.awaiting_joins.acquire(key).ok());
    let token = joins.as_ref().map_or(0, |(t, _)| *t);
    let udp = if cmd.protocol == Protocol::Udp {
        let local = stream
            .local_addr()
            .map_or_else(|_| unspecified_like(peer), |a| a.ip());
        match udp::prepare(&shared.udp_ports, cmd, peer, local) {
            Ok(prepared) => Some(prepared),
            Err(e) => {
                refuse(shared, peer, RefusalKind::Other, e.to_string());
                return None;
            }
        }
    } else {
        None
    };
    let udp_port = udp.as_ref().map(|u| u.port());
    let mut io = DeadlineStream::new(&stream, test.deadline);
    if let Err(e) = hs::accept(&mut io, token, udp_port) {
        log!(0, "{peer}: dropped: {e}");
        if token != 0 {
            shared.registry.remove(token);
        }
        return None;
    }
    drop(handshake_slot);
    let mut streams = vec![stream];
    if let Some((token, joins)) = joins {
        gather(shared, test, token, &joins, &mut streams);
        drop(awaiting);
    }
    Some(Announced { streams, udp })
}

/// Waits up to the join wait for the secondary connections of session `token`; the test
/// starts with those that came.
fn gather(
    shared: &Shared,
    test: &mut Primary,
    token: u16,
    joins: &Receiver<(TcpStream, ConnSlot)>,
    streams: &mut Vec<TcpStream>,
) {
    let wanted = test.cmd.connection_count();
    let wait_until = Instant::now() + shared.cfg.join_wait;
    while streams.len() < wanted {
        match joins.recv_deadline(wait_until) {
            Ok((s, conn)) => {
                streams.push(s);
                test.conns.push(conn);
            }
            Err(_) => break,
        }
    }
    shared.registry.remove(token);
    if streams.len() < wanted {
        log!(
            0,
            "{}: session {token:#06x}: {} of {wanted} connections joined; starting with those",
            test.peer,
            streams.len(),
        );
    }
}

/// Runs the session under its ticket, logs its start and end, and tells the ticket.
fn run(shared: &Arc<Shared>, test: &Primary, admitted: Admitted, announced: Announced) {
    let Admitted {
        who,
        mut ticket,
        session_slot,
    } = admitted;
    let (peer, cmd) = (test.peer, &test.cmd);
    let connections = announced.streams.len();
    let id = shared.sessions_total.fetch_add(1, Ordering::Relaxed) + 1;
    log!(
        log::SESSION,
        "{peer}: session {id} start: {} {} conns={} auth={}{}",
        cmd.protocol.name(),
        cmd.direction.client_name(),
        connections,
        who.method.name(),
        user_suffix(&who)
    );
    ticket.started(id);
    match run_session(shared, test, announced, ticket.as_mut()) {
        Ok(outcome) => {
            log_session_end(id, peer, cmd, connections, &who, &outcome);
            ticket.finish(&SessionSummary {
                connections,
                outcome: &outcome,
            });
        }
        Err(e) => log_error!("{peer}: session {id} could not start: {e}"),
    }
    drop(session_slot);
}

/// Starts the engine's session for the test's protocol and drives it under the ticket.
fn run_session(
    shared: &Shared,
    test: &Primary,
    announced: Announced,
    ticket: &mut dyn Ticket,
) -> std::io::Result<Outcome> {
    let setup = Setup {
        role: Role::Server,
        cmd: &test.cmd,
        tx_bps: u64::from(test.cmd.remote_tx_speed),
        budget: ticket.budget(),
        label: test.peer.to_string(),
    };
    let Announced { mut streams, udp } = announced;
    let policed = Policed::new(shared, ticket);
    match udp {
        // The control connection of a UDP test is the only connection it has.
        Some(prepared) => {
            let control = streams.swap_remove(0);
            udp::run_session(&setup, prepared, control, test.peer, policed)
        }
        None => Ok(policed.run(start_tcp(&setup, streams)?)),
    }
}
