//! Client side of the opening exchange: read HELLO, send the command, answer whichever
//! authentication the server asks for, read the OK (and UDP port); or, for a secondary
//! connection of a multi-connection test, send the join.

use std::io::{Read, Write};

use super::{AuthMethod, HandshakeError, Stage};
use crate::auth::{ecsrp5, md5};
use crate::proto::{Command, HELLO, Protocol, Reply, encode_join};

/// User name and password given with `-a` / `-p`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name, as typed.
    pub user: String,
    password: String,
}

impl Credentials {
    /// Credentials from the command line.
    pub fn new(user: &str, password: &str) -> Credentials {
        Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    /// Never prints the password, whatever the verbosity.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What the server told us once the test can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Established {
    /// Session token for secondary connections (0: none, run on one connection).
    pub token: u16,
    /// The server's UDP data port (UDP tests only).
    pub udp_port: Option<u16>,
    /// How we authenticated.
    pub auth: AuthMethod,
}

fn read_hello<S: Read>(stream: &mut S) -> Result<(), HandshakeError> {
    let mut hello = [0u8; 4];
    stream
        .read_exact(&mut hello)
        .map_err(HandshakeError::io(Stage::Hello))?;
    if hello != HELLO {
        return Err(HandshakeError::BadHello(hello));
    }
    Ok(())
}

fn read_reply<S: Read>(stream: &mut S, stage: Stage) -> Result<Reply, HandshakeError> {
    let mut reply = [0u8; 4];
    stream
        .read_exact(&mut reply)
        .map_err(HandshakeError::io(stage))?;
    Ok(Reply::decode(reply))
}

/// Runs the whole client handshake for `cmd` on a fresh connection.
pub fn handshake<S: Read + Write>(
    stream: &mut S,
    cmd: &Command,
    creds: Option<&Credentials>,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<Established, HandshakeError> {
    read_hello(stream)?;
    stream
        .write_all(&cmd.encode())
        .map_err(HandshakeError::io(Stage::Command))?;

    let (auth, reply) = match read_reply(stream, Stage::Reply)? {
        Reply::Md5 => {
            let creds = creds.ok_or(HandshakeError::CredentialsRequired(AuthMethod::Md5))?;
            let mut challenge = [0u8; md5::CHALLENGE_LEN];
            stream
                .read_exact(&mut challenge)
                .map_err(HandshakeError::io(Stage::Auth))?;
            let response =
                md5::client_response(creds.user.as_bytes(), creds.password.as_bytes(), &challenge);
            stream
                .write_all(&response)
                .map_err(HandshakeError::io(Stage::Auth))?;
            (
                AuthMethod::Md5,
                read_auth_outcome(stream, AuthMethod::Md5, creds)?,
            )
        }
        Reply::EcSrp5 => {
            let creds = creds.ok_or(HandshakeError::CredentialsRequired(AuthMethod::EcSrp5))?;
            ecsrp5::client_handshake(
                stream,
                creds.user.as_bytes(),
                creds.password.as_bytes(),
                random,
            )
            .map_err(|e| {
                if e.is_auth_failure() {
                    HandshakeError::AuthRejected {
                        method: AuthMethod::EcSrp5,
                        user: creds.user.clone(),
                    }
                } else {
                    HandshakeError::EcSrp5(e)
                }
            })?;
            (
                AuthMethod::EcSrp5,
                read_auth_outcome(stream, AuthMethod::EcSrp5, creds)?,
            )
        }
        other => (AuthMethod::None, other),
    };

    let token = match reply {
        Reply::Ok { token } => token,
        Reply::Unknown(b) => return Err(HandshakeError::UnknownReply(b)),
        // A refusal where no authentication ran: the server turned the test down.
        _ => {
            return Err(HandshakeError::Refused(
                "server answered 00 00 00 00".into(),
            ));
        }
    };
    // Only a multi-connection TCP test has a token; anything else in bytes 1-2 is ignored.
    let token = if cmd.is_multi_connection() { token } else { 0 };
    let udp_port = if cmd.protocol == Protocol::Udp {
        let mut port = [0u8; 2];
        stream
            .read_exact(&mut port)
            .map_err(HandshakeError::io(Stage::Ok))?;
        Some(crate::proto::udp::decode_port(port))
    } else {
        None
    };
    Ok(Established {
        token,
        udp_port,
        auth,
    })
}

/// Reads the reply that ends authentication; a refusal or a closed connection there means the
/// credentials were wrong.
fn read_auth_outcome<S: Read>(
    stream: &mut S,
    method: AuthMethod,
    creds: &Credentials,
) -> Result<Reply, HandshakeError> {
    let rejected = || HandshakeError::AuthRejected {
        method,
        user: creds.user.clone(),
    };
    match read_reply(stream, Stage::Ok) {
        Ok(Reply::Ok { token }) => Ok(Reply::Ok { token }),
        Ok(Reply::Failed) => Err(rejected()),
        Ok(other) => Ok(other),
        // After EC-SRP5 the server has proved it knows our verifier, so a close here is a
        // refusal by policy (budget, limits), not a wrong password. After MD5 nothing tells
        // the two apart.
        Err(HandshakeError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            if method == AuthMethod::EcSrp5 {
                Err(HandshakeError::Refused(
                    "server closed the connection after authentication (refused by its policy)"
                        .into(),
                ))
            } else {
                Err(rejected())
            }
        }
        Err(e) => Err(e),
    }
}

/// Joins a secondary connection to a session: read HELLO, send the 16-byte join. Does not wait
/// for a reply: a RouterOS server stays silent until every connection has joined.
pub fn join<S: Read + Write>(stream: &mut S, token: u16) -> Result<(), HandshakeError> {
    read_hello(stream)?;
    stream
        .write_all(&encode_join(token))
        .map_err(HandshakeError::io(Stage::Command))
}
