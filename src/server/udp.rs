//! UDP tests on the server: data port allocation and the session. (Placeholder.)

use std::io;
use std::net::{SocketAddr, TcpStream};

use crossbeam_channel::Receiver;

use crate::engine::Outcome;
use crate::proto::Command;

/// The server's pool of UDP data ports.
pub struct UdpPorts {
    base: u16,
}

impl UdpPorts {
    /// A pool starting at `base`.
    pub fn new(base: u16) -> UdpPorts {
        UdpPorts { base }
    }
}

/// A UDP session made ready before the OK: its port is allocated and its socket bound.
pub struct Prepared {
    port: u16,
}

impl Prepared {
    /// The data port announced to the client.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Allocates a data port for a new UDP test from `peer`.
pub fn prepare(ports: &UdpPorts, _cmd: &Command, _peer: SocketAddr) -> io::Result<Prepared> {
    let _ = ports.base;
    Err(io::Error::other("UDP tests are not supported yet"))
}

/// Runs a UDP test over the prepared socket, governed by the control connection.
pub fn run_session(
    prepared: Prepared,
    _cmd: &Command,
    _control: TcpStream,
    _peer: SocketAddr,
    _shutdown: Receiver<()>,
) -> io::Result<Outcome> {
    let _ = prepared.port;
    Err(io::Error::other("UDP tests are not supported yet"))
}
