//! Server side of the opening exchange, in three steps so that the server can decide between
//! them: [`read_request`] (HELLO, then a command or a join), [`authenticate`] (whatever the
//! [`Authenticator`] asks for) and [`accept`] (the OK, with session token and UDP port).
//!
//! The split is what lets the server register a multi-connection session's token *before* the
//! OK that announces it is written, so a fast secondary connection can never race it.

use std::io::{Read, Write};

use super::{AuthMethod, HandshakeError, Stage, printable_user};
use crate::auth::ecsrp5::{self, Verifier};
use crate::auth::md5;
use crate::proto::{HELLO, Reply, Request, decode_request};

/// What the server knows of its users. The plain server has at most one; the pro server looks
/// them up in its database.
pub trait Authenticator: Send + Sync {
    /// The method offered to every client.
    fn method(&self) -> AuthMethod;
    /// The password of `user` for MD5 (which needs the password itself), or `None` if unknown.
    fn md5_password(&self, user: &[u8]) -> Option<Vec<u8>>;
    /// The stored EC-SRP5 verifier of `user`, or `None` if unknown.
    fn ecsrp5_verifier(&self, user: &[u8]) -> Option<Verifier>;
    /// The secret EC-SRP5 derives unknown users' decoy answers from (see
    /// [`ecsrp5::server_handshake_hiding_users`]): by default drawn once per process.
    fn decoy_secret(&self) -> [u8; 32] {
        process_decoy_secret()
    }
}

/// A random secret drawn on first use and kept for the life of the process.
pub fn process_decoy_secret() -> [u8; 32] {
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    *SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        crate::sys::random::fill_or_abort(&mut s);
        s
    })
}

/// A server without authentication.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAuth;

impl Authenticator for NoAuth {
    fn method(&self) -> AuthMethod {
        AuthMethod::None
    }
    fn md5_password(&self, _user: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn ecsrp5_verifier(&self, _user: &[u8]) -> Option<Verifier> {
        None
    }
}

/// A server with one configured user (`btest -s -a USER -p PASS [--ecsrp5]`).
///
/// For EC-SRP5 only the salt and verifier are kept, derived once at start-up; MD5 needs the
/// password itself, so it is kept only when MD5 is the method.
pub struct SingleUser {
    user: Vec<u8>,
    secret: SingleUserSecret,
}

enum SingleUserSecret {
    Md5Password(Vec<u8>),
    EcSrp5(Verifier),
}

impl SingleUser {
    /// One user authenticated with MD5.
    pub fn md5(user: &str, password: &str) -> SingleUser {
        SingleUser {
            user: user.as_bytes().to_vec(),
            secret: SingleUserSecret::Md5Password(password.as_bytes().to_vec()),
        }
    }

    /// One user authenticated with EC-SRP5; the verifier is derived here, with a fresh salt.
    pub fn ecsrp5(user: &str, password: &str) -> SingleUser {
        let mut salt = [0u8; 16];
        crate::sys::random::fill_or_abort(&mut salt);
        SingleUser {
            user: user.as_bytes().to_vec(),
            secret: SingleUserSecret::EcSrp5(Verifier::derive(
                user.as_bytes(),
                password.as_bytes(),
                salt,
            )),
        }
    }
}

impl Authenticator for SingleUser {
    fn method(&self) -> AuthMethod {
        match self.secret {
            SingleUserSecret::Md5Password(_) => AuthMethod::Md5,
            SingleUserSecret::EcSrp5(_) => AuthMethod::EcSrp5,
        }
    }

    fn md5_password(&self, user: &[u8]) -> Option<Vec<u8>> {
        // The MD5 response carries at most 32 bytes of the name (RouterOS truncates longer
        // names the same way), so a longer configured name is matched by its first 32 bytes.
        let sent = self.user.get(..md5::USER_FIELD_LEN).unwrap_or(&self.user);
        match &self.secret {
            SingleUserSecret::Md5Password(p) if user == sent => Some(p.clone()),
            _ => None,
        }
    }

    fn ecsrp5_verifier(&self, user: &[u8]) -> Option<Verifier> {
        match &self.secret {
            SingleUserSecret::EcSrp5(v) if user == self.user.as_slice() => Some(v.clone()),
            _ => None,
        }
    }
}

/// Sends HELLO and reads the 16 bytes that follow: a new test's command or a join.
pub fn read_request<S: Read + Write>(stream: &mut S) -> Result<Request, HandshakeError> {
    read_request_with(stream, &|_| false)
}

/// [`read_request`] for a server with sessions waiting for joins: `is_waiting` says whether a
/// token belongs to one. A join is recognised by its first two bytes being such a token,
/// whatever follows. RouterOS 7 sends `HI LO 02` and 13 zeros (which [`decode_request`]
/// knows by its `02`); older clients send `HI LO` and bytes 2..15 of the primary's command,
/// which would otherwise read as a command with a bad protocol byte. Tokens have a high byte
/// of at least 2, so a real command (protocol byte 0 or 1) can never be taken for a join.
pub fn read_request_with<S: Read + Write>(
    stream: &mut S,
    is_waiting: &dyn Fn(u16) -> bool,
) -> Result<Request, HandshakeError> {
    stream
        .write_all(&HELLO)
        .map_err(HandshakeError::io(Stage::Hello))?;
    let mut buf = [0u8; 16];
    stream
        .read_exact(&mut buf)
        .map_err(HandshakeError::io(Stage::Command))?;
    let [hi, lo, ..] = buf;
    let token = u16::from_be_bytes([hi, lo]);
    if hi >= MIN_TOKEN_HIGH_BYTE && is_waiting(token) {
        return Ok(Request::Join { token });
    }
    decode_request(&buf).map_err(HandshakeError::BadCommand)
}

/// Lowest high byte of a session token: above every command's protocol byte.
pub const MIN_TOKEN_HIGH_BYTE: u8 = 2;

/// Who passed authentication, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The method used.
    pub method: AuthMethod,
    /// The user name as sent (empty without authentication).
    pub user: Vec<u8>,
}

/// Runs the authentication the authenticator asks for. Without authentication it writes
/// nothing (the OK of [`accept`] is the whole answer). On failure with MD5 it sends the
/// `00 00 00 00` refusal; EC-SRP5 failures end with the connection closed, as every known
/// server does (what RouterOS sends is not recorded: docs/protocol.md 4.3.6).
pub fn authenticate<S: Read + Write>(
    stream: &mut S,
    auth: &dyn Authenticator,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<Authenticated, HandshakeError> {
    match auth.method() {
        AuthMethod::None => Ok(Authenticated {
            method: AuthMethod::None,
            user: Vec::new(),
        }),
        AuthMethod::Md5 => authenticate_md5(stream, auth, random),
        AuthMethod::EcSrp5 => {
            stream
                .write_all(&Reply::EcSrp5.encode())
                .map_err(HandshakeError::io(Stage::Reply))?;
            let lookup = |user: &[u8]| auth.ecsrp5_verifier(user);
            let secret = auth.decoy_secret();
            match ecsrp5::server_handshake_hiding_users(stream, &lookup, &secret, random) {
                Ok(user) => Ok(Authenticated {
                    method: AuthMethod::EcSrp5,
                    user,
                }),
                Err(e) if e.is_auth_failure() => Err(HandshakeError::AuthRejected {
                    method: AuthMethod::EcSrp5,
                    user: e.user().map(printable_user).unwrap_or_default(),
                }),
                Err(e) => Err(HandshakeError::EcSrp5(e)),
            }
        }
    }
}

fn authenticate_md5<S: Read + Write>(
    stream: &mut S,
    auth: &dyn Authenticator,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<Authenticated, HandshakeError> {
    // Reply and challenge in one write: RouterOS sends them in one segment.
    let mut hello = [0u8; 4 + md5::CHALLENGE_LEN];
    let (reply, challenge) = hello.split_at_mut(4);
    reply.copy_from_slice(&Reply::Md5.encode());
    random(challenge);
    let mut challenge_arr = [0u8; md5::CHALLENGE_LEN];
    challenge_arr.copy_from_slice(challenge);
    stream
        .write_all(&hello)
        .map_err(HandshakeError::io(Stage::Reply))?;

    let mut response = [0u8; md5::RESPONSE_LEN];
    stream
        .read_exact(&mut response)
        .map_err(HandshakeError::io(Stage::Auth))?;
    let user = md5::response_user(&response).to_vec();
    let accepted = auth
        .md5_password(&user)
        .is_some_and(|password| md5::verify(&user, &password, &challenge_arr, &response));
    if accepted {
        Ok(Authenticated {
            method: AuthMethod::Md5,
            user,
        })
    } else {
        // Best effort: the peer learns it failed; the connection is closed either way.
        let _ = stream.write_all(&Reply::Failed.encode());
        Err(HandshakeError::AuthRejected {
            method: AuthMethod::Md5,
            user: printable_user(&user),
        })
    }
}

/// Writes the OK that starts the test: `01 HI LO 00` with the session token (0 for none), then
/// for UDP tests the server's data port (2 bytes, big-endian). One write, so the client sees
/// both in one segment.
pub fn accept<S: Write>(
    stream: &mut S,
    token: u16,
    udp_port: Option<u16>,
) -> Result<(), HandshakeError> {
    let mut out = [0u8; 6];
    out[..4].copy_from_slice(&Reply::Ok { token }.encode());
    let len = match udp_port {
        Some(port) => {
            out[4..6].copy_from_slice(&crate::proto::udp::encode_port(port));
            6
        }
        None => 4,
    };
    stream
        .write_all(out.get(..len).unwrap_or_default())
        .map_err(HandshakeError::io(Stage::Ok))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::client::{self, Credentials};
    use crate::handshake::pipe;
    use crate::proto::{Command, Direction, Protocol};

    fn command() -> Command {
        Command::sample(Direction::ServerTx, Protocol::Tcp)
    }

    fn run_pair(
        auth: impl Authenticator + 'static,
        creds: Option<Credentials>,
    ) -> (
        Result<Authenticated, HandshakeError>,
        Result<client::Established, HandshakeError>,
    ) {
        let (mut s, mut c) = pipe::pair();
        let server = std::thread::spawn(move || {
            let req = read_request(&mut s)?;
            assert_eq!(req, Request::Command(command()));
            let who = authenticate(&mut s, &auth, &mut |b| b.fill(7))?;
            accept(&mut s, 0, None)?;
            Ok(who)
        });
        let client = client::handshake(&mut c, &command(), creds.as_ref(), &mut |b| b.fill(9));
        drop(c);
        (server.join().unwrap(), client)
    }

    #[test]
    fn no_auth_over_pipe() {
        let (s, c) = run_pair(NoAuth, None);
        assert_eq!(s.unwrap().method, AuthMethod::None);
        let c = c.unwrap();
        assert_eq!(c.token, 0);
        assert_eq!(c.auth, AuthMethod::None);
    }

    #[test]
    fn md5_right_password() {
        let (s, c) = run_pair(
            SingleUser::md5("admin", "secret"),
            Some(Credentials::new("admin", "secret")),
        );
        assert_eq!(s.unwrap().user, b"admin");
        assert_eq!(c.unwrap().auth, AuthMethod::Md5);
    }

    #[test]
    fn md5_wrong_password_is_rejected_on_both_sides() {
        let (s, c) = run_pair(
            SingleUser::md5("admin", "secret"),
            Some(Credentials::new("admin", "guess")),
        );
        assert!(s.unwrap_err().is_auth_failure());
        assert!(c.unwrap_err().is_auth_failure());
    }

    #[test]
    fn md5_without_credentials_is_an_auth_failure_on_the_client() {
        let (_s, c) = run_pair(SingleUser::md5("admin", "secret"), None);
        let err = c.unwrap_err();
        assert!(err.is_auth_failure(), "{err}");
    }

    #[test]
    fn truncated_command_is_an_io_error() {
        let (mut s, mut c) = pipe::pair();
        let t = std::thread::spawn(move || {
            let mut hello = [0u8; 4];
            c.read_exact(&mut hello).unwrap();
            c.write_all(&[1, 2, 1]).unwrap();
        });
        let err = read_request(&mut s).unwrap_err();
        t.join().unwrap();
        assert!(matches!(
            err,
            HandshakeError::Io {
                stage: Stage::Command,
                ..
            }
        ));
    }

    #[test]
    fn both_join_forms_are_recognised_by_a_waiting_token() {
        let cmd = Command {
            tcp_conn_count: 3,
            ..command()
        }
        .encode();
        let mut older = [0u8; 16];
        older[..2].copy_from_slice(&0x5a21u16.to_be_bytes());
        older[2..].copy_from_slice(&cmd[2..]);
        let routeros = crate::proto::encode_join(0x5a21);
        for form in [older, routeros] {
            let (mut s, mut c) = pipe::pair();
            let t = std::thread::spawn(move || {
                let mut hello = [0u8; 4];
                c.read_exact(&mut hello).unwrap();
                c.write_all(&form).unwrap();
                c
            });
            let req = read_request_with(&mut s, &|t| t == 0x5a21).unwrap();
            assert_eq!(req, Request::Join { token: 0x5a21 });
            drop(t.join().unwrap());
        }
        // Without a waiting session the older form is what it looks like: a bad command.
        let (mut s, mut c) = pipe::pair();
        let t = std::thread::spawn(move || {
            let mut hello = [0u8; 4];
            c.read_exact(&mut hello).unwrap();
            c.write_all(&older).unwrap();
            c
        });
        assert!(matches!(
            read_request_with(&mut s, &|_| false),
            Err(HandshakeError::BadCommand(_))
        ));
        drop(t.join().unwrap());
    }

    #[test]
    fn udp_port_follows_ok() {
        let mut out = Vec::new();
        accept(&mut out, 0, Some(2001)).unwrap();
        assert_eq!(out, [1, 0, 0, 0, 0x07, 0xd1]);
    }
}
