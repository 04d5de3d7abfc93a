//! One start of a test for both ends. Once its connections are in, a client's test and a
//! server's are the same thing seen from opposite sides: the [`Role`] decides which of the
//! command's directions are ours, who sends status messages and how, and (UDP) where each
//! stream sends. Client and server keep only what truly differs: connecting or accepting, and
//! who owns the ports.

use std::io;
use std::net::TcpStream;
use std::sync::Arc;

use super::budget::Budget;
use super::session::{Session, StatusOut};
use super::state::TestState;
use super::tcp::{ReceivePlan, SendPlan};
use crate::proto::{Command, Direction};

/// Which end of the test we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// We sent the command.
    Client,
    /// We accepted it.
    Server,
}

impl Role {
    /// True when we send data in a test of direction `dir`.
    pub(crate) fn transmits(self, dir: Direction) -> bool {
        match self {
            Role::Client => dir.client_tx(),
            Role::Server => dir.server_tx(),
        }
    }

    /// True when we receive data in a test of direction `dir`.
    pub(crate) fn receives(self, dir: Direction) -> bool {
        match self {
            Role::Client => dir.client_rx(),
            Role::Server => dir.server_rx(),
        }
    }
}

/// What either end knows of a test once its handshake is done.
pub(crate) struct Setup<'a> {
    /// Our end.
    pub role: Role,
    /// The command, as sent or received.
    pub cmd: &'a Command,
    /// Our total transmit rate in bit/s when we transmit (0 = unlimited: the peer's status
    /// reports pace us).
    pub tx_bps: u64,
    /// The byte budget the streams draw from (a server's policy); `None` is unlimited.
    pub budget: Option<Arc<dyn Budget>>,
    /// Names the session's threads (the peer's address).
    pub label: String,
}

impl Setup<'_> {
    /// True when we send data.
    pub(crate) fn transmits(&self) -> bool {
        self.role.transmits(self.cmd.direction)
    }

    /// True when we receive data.
    pub(crate) fn receives(&self) -> bool {
        self.role.receives(self.cmd.direction)
    }

    /// The test's shared state, its budget armed before any stream can draw from it.
    pub(super) fn state(&self) -> Arc<TestState> {
        let state = TestState::new(if self.transmits() { self.tx_bps } else { 0 });
        if let Some(budget) = &self.budget {
            state.budget.set(budget.clone());
        }
        state
    }

    /// Where our status messages go in a TCP test. The client sends none; the server writes
    /// its own on the primary connection when that carries no data of ours, and between our
    /// data writes when it does.
    fn tcp_status_out(&self, primary: Option<&TcpStream>) -> io::Result<StatusOut> {
        if self.role == Role::Client {
            return Ok(StatusOut::None);
        }
        Ok(match (self.transmits(), self.receives()) {
            (false, true) => match primary {
                Some(primary) => StatusOut::Direct(primary.try_clone()?),
                None => StatusOut::None,
            },
            (true, true) => StatusOut::Inject,
            _ => StatusOut::None,
        })
    }
}

/// Starts a TCP test over `streams` (the primary connection first): a sender on each when we
/// transmit, a receiver on each always. The returned session is ready for its driver.
pub(crate) fn start_tcp(setup: &Setup<'_>, streams: Vec<TcpStream>) -> io::Result<Session> {
    let status_out = setup.tcp_status_out(streams.first())?;
    let inject = matches!(status_out, StatusOut::Inject);
    let mut session = Session::new(setup.state(), setup.label.clone(), status_out);
    let receives = setup.receives();
    for (i, stream) in streams.into_iter().enumerate() {
        let send = setup.transmits().then_some(SendPlan {
            tx_size: usize::from(setup.cmd.tx_size),
            payload: setup.cmd.payload,
            inject_status: inject && i == 0,
        });
        let receive = ReceivePlan {
            count: receives,
            scan_status: i == 0,
            expect_data: receives,
        };
        session.add_tcp(stream, send, receive)?;
    }
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Payload, Protocol};
    use std::net::TcpListener;

    fn command(direction: Direction) -> Command {
        Command {
            protocol: Protocol::Tcp,
            direction,
            payload: Payload::Zeros,
            tcp_conn_count: 0,
            tx_size: 32_768,
            client_buf_size: 0,
            remote_tx_speed: 0,
            local_tx_speed: 0,
        }
    }

    #[test]
    fn each_end_takes_its_side_of_the_direction() {
        for dir in [Direction::ServerRx, Direction::ServerTx, Direction::Both] {
            assert_eq!(Role::Client.transmits(dir), Role::Server.receives(dir));
            assert_eq!(Role::Client.receives(dir), Role::Server.transmits(dir));
        }
        assert!(Role::Server.transmits(Direction::ServerTx));
        assert!(!Role::Client.transmits(Direction::ServerTx));
    }

    /// Who sends status in a TCP test (protocol document 6.1): the client sends
    /// none; the server writes it directly when only receiving, between its writes when
    /// sending too, and not at all when only sending.
    #[test]
    fn only_the_server_sends_tcp_status() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let primary = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let status = |role, dir| {
            let cmd = command(dir);
            let setup = Setup {
                role,
                cmd: &cmd,
                tx_bps: 0,
                budget: None,
                label: "test".into(),
            };
            match setup.tcp_status_out(Some(&primary)).unwrap() {
                StatusOut::None => "none",
                StatusOut::Direct(_) => "direct",
                StatusOut::Inject => "inject",
            }
        };
        for dir in [Direction::ServerRx, Direction::ServerTx, Direction::Both] {
            assert_eq!(status(Role::Client, dir), "none");
        }
        assert_eq!(status(Role::Server, Direction::ServerRx), "direct");
        assert_eq!(status(Role::Server, Direction::ServerTx), "none");
        assert_eq!(status(Role::Server, Direction::Both), "inject");
    }

    #[test]
    fn our_rate_applies_only_when_we_transmit() {
        let cmd = command(Direction::ServerTx);
        let setup = |role| Setup {
            role,
            cmd: &cmd,
            tx_bps: 1_000_000,
            budget: None,
            label: "test".into(),
        };
        assert_eq!(setup(Role::Server).state().tx_rate_bps(), 1_000_000);
        // Not transmitting: no fixed rate, so the peer's reports would pace us.
        assert_eq!(setup(Role::Client).state().tx_rate_bps(), 0);
    }
}
