//! The client: connect, handshake, join secondary connections, run the engine, print.

mod join;
mod output;
mod udp;

pub(crate) use output::{ClientOutput, Format, OutputOptions};

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::engine::{
    EndReason, Interval, Outcome, Role, RunOptions, Session, Setup, TestState, start_tcp,
};
use crate::handshake::client::{self as hs, Credentials, Established};
use crate::handshake::{AuthMethod, HandshakeError};
use crate::proto::{Command, Direction, Payload, Protocol};

/// How long connecting and the handshake may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the client needs to run one test.
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
    /// Server host name or address, as typed (brackets around IPv6 allowed).
    pub host: String,
    /// Server control port.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Direction (server's point of view, as on the wire).
    pub direction: Direction,
    /// Our transmit rate, bit/s, 0 = unlimited.
    pub local_bps: u64,
    /// The server's transmit rate, bit/s, 0 = unlimited.
    pub remote_bps: u64,
    /// Test length; `None` runs until interrupted.
    pub duration: Option<Duration>,
    /// Credentials for MD5 or EC-SRP5, whichever the server asks for.
    pub credentials: Option<Credentials>,
    /// TCP connections (1..=255).
    pub connections: u8,
    /// Zeros or random payload.
    pub payload: Payload,
    /// UDP packet size (whole IP packet).
    pub udp_size: u16,
    /// Send a NAT probe before receiving UDP.
    pub nat_probe: bool,
}

/// Why a test could not run or ended badly.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// The host did not resolve.
    Resolve { host: String, source: io::Error },
    /// No address of the host accepted the connection.
    Connect { host: String, source: io::Error },
    /// The handshake failed (wrong password, not a btest server, ...).
    Handshake(HandshakeError),
    /// Local resource trouble (threads, sockets).
    Io(io::Error),
    /// The server does not support what was asked.
    Unsupported(String),
}

impl ClientError {
    /// Process exit code for this error (see docs/btest.1, EXIT STATUS).
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            ClientError::Handshake(e) if e.is_auth_failure() => i32::from(crate::app::EXIT_AUTH),
            _ => i32::from(crate::app::EXIT_FAILED),
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Resolve { host, source } => write!(f, "cannot resolve '{host}': {source}"),
            ClientError::Connect { host, source } => {
                write!(f, "cannot connect to {host}: {source}")
            }
            ClientError::Handshake(e) => write!(f, "{e}"),
            ClientError::Io(e) => write!(f, "{e}"),
            ClientError::Unsupported(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ClientError {}

/// Strips the brackets of an IPv6 literal written as `[::1]`.
fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Resolves once and connects to the first address that answers; secondary connections go to
/// the same address, so a name with several addresses cannot split a session across servers.
fn connect(host: &str, port: u16) -> Result<(TcpStream, SocketAddr), ClientError> {
    let addrs: Vec<SocketAddr> = (bare_host(host), port)
        .to_socket_addrs()
        .map_err(|source| ClientError::Resolve {
            host: host.to_owned(),
            source,
        })?
        .collect();
    crate::log!(2, "{host} resolves to {addrs:?}");
    let mut last_err = io::Error::new(io::ErrorKind::NotFound, "no addresses");
    for addr in addrs {
        crate::log!(2, "connecting to {addr}");
        match TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT) {
            Ok(s) => return Ok((s, addr)),
            Err(e) => {
                crate::log!(1, "cannot connect to {addr}: {e}");
                last_err = e;
            }
        }
    }
    Err(ClientError::Connect {
        host: host.to_owned(),
        source: last_err,
    })
}

fn prepare(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))
}

/// The command a configuration sends.
pub(crate) fn command_for(cfg: &ClientConfig) -> Command {
    // RouterOS fills the count for UDP too: N streams from N client ports (protocol doc 7.5).
    let tcp_conn_count = if cfg.connections >= 2 {
        cfg.connections
    } else {
        0
    };
    Command {
        protocol: cfg.protocol,
        direction: cfg.direction,
        payload: cfg.payload,
        tcp_conn_count,
        tx_size: match cfg.protocol {
            Protocol::Tcp => crate::proto::DEFAULT_TCP_TX_SIZE,
            Protocol::Udp => cfg.udp_size,
        },
        client_buf_size: 0,
        remote_tx_speed: crate::cli::wire_rate(cfg.remote_bps, "--remote-tx-speed"),
        local_tx_speed: crate::cli::wire_rate(cfg.local_bps, "--local-tx-speed"),
    }
}

/// What the caller learns about a finished test.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// Totals and the reason it ended.
    pub outcome: Outcome,
    /// How we authenticated.
    pub auth: AuthMethod,
    /// Connections actually used.
    pub connections: usize,
    /// Bytes the peer said it received from us, summed over its status messages; `None` when
    /// it sent none (a TCP server that only transmits).
    pub peer_received: Option<u64>,
    /// How many status messages that sum is made of (one per interval of the peer's).
    pub peer_reports: u64,
}

/// Runs one test; `on_interval` sees every interval, `stop` ends the test early (Ctrl-C).
pub(crate) fn run(cfg: &ClientConfig, hooks: Hooks<'_>) -> Result<Report, ClientError> {
    let cmd = command_for(cfg);
    let (mut primary, addr) = connect(&cfg.host, cfg.port)?;
    prepare(&primary).map_err(ClientError::Io)?;
    // The command and the user name only: the password never reaches a log.
    crate::log!(2, "sending command {cmd:?}");
    if let Some(c) = &cfg.credentials {
        crate::log!(2, "credentials for user '{}' ready if asked", c.user);
    }
    let established = hs::handshake(
        &mut primary,
        &cmd,
        cfg.credentials.as_ref(),
        &mut crate::sys::random::fill_or_abort,
    )
    .map_err(ClientError::Handshake)?;
    crate::log!(
        1,
        "connected to {addr}, auth {}, token {:#06x}",
        established.auth.name(),
        established.token
    );
    let started = Started {
        cfg,
        cmd,
        control: primary,
        addr,
        established,
    };
    match cfg.protocol {
        Protocol::Tcp => run_tcp(started, hooks),
        Protocol::Udp => udp::run(started, hooks),
    }
}

/// How the caller watches and ends a test.
pub(crate) struct Hooks<'a> {
    /// Ends the test early when a signal arrives (Ctrl-C, SIGTERM).
    pub stop: Option<&'a Receiver<i32>>,
    /// Samples our CPU load once per interval.
    pub cpu: &'a mut dyn FnMut() -> Option<u8>,
    /// Sees every interval, and the final partial one.
    pub on_interval: &'a mut dyn FnMut(&Interval<'_>),
}

/// A test whose handshake is done, ready for its transport's data plan.
struct Started<'a> {
    cfg: &'a ClientConfig,
    cmd: Command,
    /// The primary connection: data in TCP tests, status only in UDP tests.
    control: TcpStream,
    addr: SocketAddr,
    established: Established,
}

/// What both ends of the test share once its connections are in, from our side.
fn setup<'a>(cfg: &ClientConfig, cmd: &'a Command, addr: SocketAddr) -> Setup<'a> {
    Setup {
        role: Role::Client,
        cmd,
        tx_bps: cfg.local_bps,
        budget: None,
        label: addr.to_string(),
    }
}

impl Report {
    /// The report of a test that ran over `connections` streams, with the peer's figures
    /// from its state.
    fn new(outcome: Outcome, auth: AuthMethod, connections: usize, state: &TestState) -> Report {
        Report {
            outcome,
            auth,
            connections,
            peer_received: state.remote_received_total(),
            peer_reports: state.remote_reports(),
        }
    }
}

/// Runs `session` for the configured duration; `also` sees every interval after the caller's
/// hook.
fn drive(
    cfg: &ClientConfig,
    session: Session,
    hooks: Hooks<'_>,
    mut also: impl FnMut(&Interval<'_>),
) -> Outcome {
    let Hooks {
        stop,
        cpu,
        on_interval,
    } = hooks;
    session.run(
        RunOptions {
            deadline: cfg.duration.map(|d| Instant::now() + d),
            stop,
            cpu,
            external_stop: None,
            policy_stop: None,
        },
        |iv| {
            on_interval(iv);
            also(iv);
        },
    )
}

fn run_tcp(started: Started<'_>, hooks: Hooks<'_>) -> Result<Report, ClientError> {
    let Started {
        cfg,
        cmd,
        control,
        addr,
        established,
    } = started;
    let mut streams = vec![control];
    if cmd.is_multi_connection() {
        if established.token == 0 {
            crate::log_error!(
                "warning: server gave no session token; running on one connection instead of {}",
                cfg.connections
            );
        } else {
            let extra = usize::from(cfg.connections).saturating_sub(1);
            streams.extend(join::join_all(cfg, addr, established.token, extra)?);
        }
    }
    let connections = streams.len();
    let session = start_tcp(&setup(cfg, &cmd, addr), streams).map_err(ClientError::Io)?;
    let state = session.state().clone();
    let outcome = drive(cfg, session, hooks, |_| {});
    Ok(Report::new(outcome, established.auth, connections, &state))
}

/// Exit code for a test that ran: 0 when it ended as asked, 1 when the peer or the network
/// ended it first.
pub(crate) fn exit_code(report: &Report) -> i32 {
    match report.outcome.reason {
        reason if reason.is_clean() => 0,
        EndReason::Stream(_) => 1,
        _ => 1,
    }
}
