//! The 16-byte test command, the secondary-connection join, and the 4-byte server replies.

use std::fmt;

use super::bytes::{read, write};

/// Length of a command, and of the join that takes its place on a secondary connection.
pub const COMMAND_LEN: usize = 16;
/// Length of a server reply.
pub const REPLY_LEN: usize = 4;
/// Byte 2 of a secondary connection's join (a command has `00` or `01` there).
pub const JOIN_MARKER: u8 = 0x02;

/// Where each field sits (docs/protocol.md 3 and 4), named once for `encode` and `decode`.
mod field {
    use std::ops::Range;

    /// The test command. Multi-byte fields are little-endian.
    pub(super) mod command {
        use super::Range;
        pub(in crate::proto) const PROTOCOL: usize = 0;
        pub(in crate::proto) const DIRECTION: usize = 1;
        /// The random-data flag; in a join, the join marker.
        pub(in crate::proto) const PAYLOAD: usize = 2;
        pub(in crate::proto) const CONN_COUNT: usize = 3;
        pub(in crate::proto) const TX_SIZE: Range<usize> = 4..6;
        pub(in crate::proto) const CLIENT_BUF_SIZE: Range<usize> = 6..8;
        pub(in crate::proto) const REMOTE_TX_SPEED: Range<usize> = 8..12;
        pub(in crate::proto) const LOCAL_TX_SPEED: Range<usize> = 12..16;
    }

    /// A secondary connection's join: the session token big-endian, then the marker.
    pub(super) mod join {
        use super::Range;
        pub(in crate::proto) const TOKEN: Range<usize> = 0..2;
        pub(in crate::proto) const MARKER: usize = super::command::PAYLOAD;
    }

    /// A server reply: its kind, then for an OK the session token big-endian.
    pub(super) mod reply {
        use super::Range;
        pub(in crate::proto) const KIND: usize = 0;
        pub(in crate::proto) const TOKEN: Range<usize> = 1..3;
    }
}

/// Transport of the test data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Data in UDP datagrams; the TCP connection carries status messages only.
    Udp,
    /// Data over the TCP connection(s) themselves.
    Tcp,
}

impl Protocol {
    fn to_byte(self) -> u8 {
        match self {
            Protocol::Udp => 0,
            Protocol::Tcp => 1,
        }
    }

    /// Lower-case name as shown to users (`tcp`, `udp`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }
}

/// Which way data flows, as the command encodes it: from the **server's** point of view.
///
/// `ServerRx` is what a client asks for when it wants to upload (`-t`), `ServerTx` when it wants
/// to download (`-r`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Server receives, client transmits (`01`).
    ServerRx,
    /// Server transmits, client receives (`02`).
    ServerTx,
    /// Both at once (`03`).
    Both,
}

impl Direction {
    /// Builds a direction from the client's wishes; `None` when it wants neither.
    pub fn from_client(transmit: bool, receive: bool) -> Option<Direction> {
        match (transmit, receive) {
            (true, false) => Some(Direction::ServerRx),
            (false, true) => Some(Direction::ServerTx),
            (true, true) => Some(Direction::Both),
            (false, false) => None,
        }
    }

    fn to_byte(self) -> u8 {
        match self {
            Direction::ServerRx => 1,
            Direction::ServerTx => 2,
            Direction::Both => 3,
        }
    }

    /// The server sends data.
    pub fn server_tx(self) -> bool {
        self.to_byte() & 2 != 0
    }

    /// The server receives data.
    pub fn server_rx(self) -> bool {
        self.to_byte() & 1 != 0
    }

    /// The client sends data.
    pub fn client_tx(self) -> bool {
        self.server_rx()
    }

    /// The client receives data.
    pub fn client_rx(self) -> bool {
        self.server_tx()
    }

    /// Name from the client's point of view, as users think of it.
    pub fn client_name(self) -> &'static str {
        match self {
            Direction::ServerRx => "transmit",
            Direction::ServerTx => "receive",
            Direction::Both => "both",
        }
    }
}

/// Content of the data the sender fills its buffers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Payload {
    /// Random bytes (`random_data = 00`), for links that compress.
    Random,
    /// Zeros (`random_data = 01`), what every known implementation sends by default.
    Zeros,
}

/// The test command a client sends once, right after HELLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Command {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Direction, from the server's point of view.
    pub direction: Direction,
    /// Payload content requested.
    pub payload: Payload,
    /// Raw `tcp_conn_count`: `0` and `1` both mean one connection.
    pub tcp_conn_count: u8,
    /// Write size for TCP, datagram size for UDP.
    pub tx_size: u16,
    /// Sent by RouterOS as 0; carried through unchanged.
    pub client_buf_size: u16,
    /// Rate limit for the server's transmitter, bit/s, 0 = unlimited.
    pub remote_tx_speed: u32,
    /// Rate limit for the client's transmitter, bit/s, 0 = unlimited.
    pub local_tx_speed: u32,
}

/// Why 16 bytes are not a valid command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// Fewer than 16 bytes.
    Truncated { len: usize },
    /// Byte 0 is neither `00` (UDP) nor `01` (TCP).
    BadProtocol(u8),
    /// Byte 1 is not `01`, `02` or `03`.
    BadDirection(u8),
    /// Byte 2 is neither `00` nor `01` (nor the join marker `02`).
    BadPayload(u8),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Truncated { len } => write!(f, "command truncated: {len} of 16 bytes"),
            CommandError::BadProtocol(b) => write!(f, "unknown protocol byte {b:#04x}"),
            CommandError::BadDirection(b) => write!(f, "invalid direction byte {b:#04x}"),
            CommandError::BadPayload(b) => write!(f, "invalid random-data byte {b:#04x}"),
        }
    }
}

impl std::error::Error for CommandError {}

impl Command {
    /// Number of TCP connections the command asks for (at least 1).
    pub fn connection_count(&self) -> usize {
        usize::from(self.tcp_conn_count.max(1))
    }

    /// True when this is a TCP test over two or more connections, which needs a session token.
    pub fn is_multi_connection(&self) -> bool {
        self.protocol == Protocol::Tcp && self.tcp_conn_count >= 2
    }

    /// The 16 bytes on the wire.
    pub fn encode(&self) -> [u8; COMMAND_LEN] {
        use field::command::*;
        let mut b = [0u8; COMMAND_LEN];
        b[PROTOCOL] = self.protocol.to_byte();
        b[DIRECTION] = self.direction.to_byte();
        b[PAYLOAD] = match self.payload {
            Payload::Random => 0,
            Payload::Zeros => 1,
        };
        b[CONN_COUNT] = self.tcp_conn_count;
        write(&mut b, TX_SIZE, &self.tx_size.to_le_bytes());
        write(&mut b, CLIENT_BUF_SIZE, &self.client_buf_size.to_le_bytes());
        write(&mut b, REMOTE_TX_SPEED, &self.remote_tx_speed.to_le_bytes());
        write(&mut b, LOCAL_TX_SPEED, &self.local_tx_speed.to_le_bytes());
        b
    }

    /// Parses a command; only the first 16 bytes are looked at.
    pub fn decode(bytes: &[u8]) -> Result<Command, CommandError> {
        use field::command::*;
        let b = first_16(bytes)?;
        let protocol = match b[PROTOCOL] {
            0 => Protocol::Udp,
            1 => Protocol::Tcp,
            other => return Err(CommandError::BadProtocol(other)),
        };
        let direction = match b[DIRECTION] {
            1 => Direction::ServerRx,
            2 => Direction::ServerTx,
            3 => Direction::Both,
            other => return Err(CommandError::BadDirection(other)),
        };
        let payload = match b[PAYLOAD] {
            0 => Payload::Random,
            1 => Payload::Zeros,
            other => return Err(CommandError::BadPayload(other)),
        };
        Ok(Command {
            protocol,
            direction,
            payload,
            tcp_conn_count: b[CONN_COUNT],
            tx_size: u16::from_le_bytes(read(b, TX_SIZE)),
            client_buf_size: u16::from_le_bytes(read(b, CLIENT_BUF_SIZE)),
            remote_tx_speed: u32::from_le_bytes(read(b, REMOTE_TX_SPEED)),
            local_tx_speed: u32::from_le_bytes(read(b, LOCAL_TX_SPEED)),
        })
    }
}

/// The first 16 bytes of `bytes`: the one length check of both kinds of request.
fn first_16(bytes: &[u8]) -> Result<&[u8; COMMAND_LEN], CommandError> {
    bytes
        .get(..COMMAND_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(CommandError::Truncated { len: bytes.len() })
}

/// What the first 16 bytes after HELLO turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// A new test.
    Command(Command),
    /// A secondary connection joining the session with this token.
    Join { token: u16 },
}

impl Request {
    /// Classifies the 16 bytes a client sends after HELLO: a join (byte 2 = `02`) or a command.
    pub fn decode(bytes: &[u8]) -> Result<Request, CommandError> {
        let b = first_16(bytes)?;
        if b[field::join::MARKER] == JOIN_MARKER {
            return Ok(Request::Join {
                token: u16::from_be_bytes(read(b, field::join::TOKEN)),
            });
        }
        Command::decode(b).map(Request::Command)
    }

    /// The 16 bytes on the wire. A join is the token high byte first, `02`, and 13 zeros.
    pub fn encode(&self) -> [u8; COMMAND_LEN] {
        match *self {
            Request::Command(cmd) => cmd.encode(),
            Request::Join { token } => {
                let mut b = [0u8; COMMAND_LEN];
                write(&mut b, field::join::TOKEN, &token.to_be_bytes());
                b[field::join::MARKER] = JOIN_MARKER;
                b
            }
        }
    }
}

/// [`Request::decode`], by the name the server's reader, the tests and the fuzz targets use.
pub fn decode_request(bytes: &[u8]) -> Result<Request, CommandError> {
    Request::decode(bytes)
}

/// The join a secondary connection sends: [`Request::encode`] of a [`Request::Join`].
pub fn encode_join(token: u16) -> [u8; COMMAND_LEN] {
    Request::Join { token }.encode()
}

/// The server's 4-byte answer to a command, classified by its first byte (the client rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `01 HI LO 00`: go; `token` is 0 when there is none.
    Ok { token: u16 },
    /// `02 00 00 00`: MD5 challenge follows.
    Md5,
    /// `03 00 00 00`: EC-SRP5 exchange follows.
    EcSrp5,
    /// `00 00 00 00`: authentication failed.
    Failed,
    /// Anything else.
    Unknown([u8; 4]),
}

impl Reply {
    /// The 4 bytes on the wire.
    pub fn encode(&self) -> [u8; REPLY_LEN] {
        let (kind, token) = match *self {
            Reply::Ok { token } => (0x01, token),
            Reply::Md5 => (0x02, 0),
            Reply::EcSrp5 => (0x03, 0),
            Reply::Failed => (0x00, 0),
            Reply::Unknown(b) => return b,
        };
        let mut b = [0u8; REPLY_LEN];
        b[field::reply::KIND] = kind;
        write(&mut b, field::reply::TOKEN, &token.to_be_bytes());
        b
    }

    /// Classifies 4 bytes by their first byte. Total: every 4 bytes are some reply, so this
    /// takes exactly 4 and returns no error.
    pub fn decode(b: [u8; REPLY_LEN]) -> Reply {
        match b[field::reply::KIND] {
            0x01 => Reply::Ok {
                token: u16::from_be_bytes(read(&b, field::reply::TOKEN)),
            },
            0x02 => Reply::Md5,
            0x03 => Reply::EcSrp5,
            0x00 => Reply::Failed,
            _ => Reply::Unknown(b),
        }
    }
}

#[cfg(test)]
impl Command {
    /// A TCP-shaped command for unit tests elsewhere in the crate: no connections asked,
    /// 32 KiB writes, no rates.
    pub(crate) fn sample(direction: Direction, protocol: Protocol) -> Command {
        Command {
            protocol,
            direction,
            payload: Payload::Zeros,
            tcp_conn_count: 0,
            tx_size: 32768,
            client_buf_size: 0,
            remote_tx_speed: 0,
            local_tx_speed: 0,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn example_from_protocol_doc_round_trips() {
        let bytes = [1, 2, 1, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let cmd = Command::decode(&bytes).unwrap();
        assert_eq!(cmd.protocol, Protocol::Tcp);
        assert_eq!(cmd.direction, Direction::ServerTx);
        assert_eq!(cmd.payload, Payload::Zeros);
        assert_eq!(cmd.tx_size, 32768);
        assert_eq!(cmd.encode(), bytes);
    }

    #[test]
    fn invalid_fields_are_errors() {
        let mut b = [1u8, 2, 1, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        b[0] = 2;
        assert_eq!(Command::decode(&b), Err(CommandError::BadProtocol(2)));
        b[0] = 1;
        b[1] = 0;
        assert_eq!(Command::decode(&b), Err(CommandError::BadDirection(0)));
        b[1] = 4;
        assert_eq!(Command::decode(&b), Err(CommandError::BadDirection(4)));
        assert_eq!(
            Command::decode(&b[..7]),
            Err(CommandError::Truncated { len: 7 })
        );
    }

    #[test]
    fn join_is_told_apart_from_command_by_byte_2() {
        let join = encode_join(0x0102);
        assert_eq!(
            join,
            [1, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "token 01 02 looks like a TCP receive command but for byte 2"
        );
        assert_eq!(decode_request(&join), Ok(Request::Join { token: 0x0102 }));
    }

    #[test]
    fn reply_classified_by_first_byte() {
        assert_eq!(
            Reply::decode([1, 0xbc, 0x04, 0]),
            Reply::Ok { token: 0xbc04 }
        );
        assert_eq!(Reply::decode([2, 0, 0, 0]), Reply::Md5);
        assert_eq!(Reply::decode([3, 0, 0, 0]), Reply::EcSrp5);
        assert_eq!(Reply::decode([0, 0, 0, 0]), Reply::Failed);
        assert_eq!(Reply::Ok { token: 0xbc04 }.encode(), [1, 0xbc, 4, 0]);
    }
}
