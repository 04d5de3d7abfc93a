//! The client side of a UDP test. (Placeholder.)

use std::net::{SocketAddr, TcpStream};

use crossbeam_channel::Receiver;

use super::{ClientConfig, ClientError, Report};
use crate::handshake::client::Established;
use crate::proto::Command;

/// Runs a UDP test after the handshake on `control`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    _cfg: &ClientConfig,
    _cmd: &Command,
    _control: TcpStream,
    _addr: SocketAddr,
    _established: Established,
    _stop: Option<&Receiver<i32>>,
    _cpu: &mut dyn FnMut() -> Option<u8>,
    _on_interval: &mut dyn FnMut(&crate::engine::Interval<'_>),
) -> Result<Report, ClientError> {
    Err(ClientError::Unsupported(
        "UDP tests are not implemented yet".into(),
    ))
}
