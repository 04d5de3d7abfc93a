//! EC-SRP5 (RouterOS 6.43 and later): the elliptic-curve SRP exchange of docs/protocol.md 4.3.
//!
//! Layers: `field` does arithmetic mod p, `curve` point arithmetic on top of it, [`srp`]
//! turns both into message payloads with no I/O (so every parser can be fuzzed and every
//! vector replayed), and this module frames the four messages (`[len:1][payload]`, no
//! handler byte) over any `Read + Write`.
//!
//! # Why a correct client never fails against our server by chance
//!
//! Several published implementations reject a correct password some fraction of the time.
//! Ours cannot, because every value both sides must agree on is computed deterministically
//! from the bytes on the wire and the stored verifier:
//!
//! * **Γ's parity comes from the store.** The server lifts `x_gamma` with the stored
//!   `gamma_parity`, so it uses Γ itself and not −Γ. Lifting with a fixed parity (the
//!   MarginResearch server) computes a different Z for about half of all salts.
//! * **All hash-to-curve paths are deterministic.** `redp1` walks the same candidate sequence
//!   on both sides and the parity argument selects one of the two roots, whichever square-root
//!   formula produced it.
//! * **Every 32-byte value is zero-padded big-endian.** x coordinates, z and the scalars go
//!   through fixed `[u8; 32]` encodings. A big-integer-to-bytes conversion that drops leading
//!   zero bytes would hash a 31-byte x into `j` or the proofs about one time in 256 and make
//!   the two sides disagree.
//! * **Points are encoded canonically.** Received x values at or above p are rejected rather
//!   than reduced, so the x hashed into `j` is the only encoding of the point.
//! * **Our own unlucky draws are redrawn, not failed.** The only computed values that can be
//!   the point at infinity without a hostile peer are `s_a·G` and `W_b` (odds about 2^-252);
//!   the handshake then draws another ephemeral key instead of giving up.
//!
//! The 2000-handshake test in `tests/ecsrp5.rs` guards this with random names, passwords and
//! salts.

mod curve;
mod field;
pub mod srp;

use std::fmt;
use std::io::{self, Read, Write};

use srp::{EphemeralKey, Session};

/// What a server keeps per user: the salt and the password verifier point Γ = i·G.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    /// 16 random bytes, drawn once per user.
    pub salt: [u8; 16],
    /// Montgomery x of Γ, big-endian, 32 bytes with leading zeros kept.
    pub x_gamma: [u8; 32],
    /// Parity (lowest bit) of Γ's y. The server must use it: see the module documentation.
    pub gamma_parity: bool,
}

impl Verifier {
    /// A stable stand-in for a user that does not exist: salt and password are hashes of a
    /// server secret and the name, so nobody without the secret can tell it from a real one.
    pub fn decoy(secret: &[u8; 32], user: &[u8]) -> Verifier {
        use sha2::{Digest, Sha256};
        let hash = |label: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(label);
            h.update(secret);
            h.update(user);
            h.finalize().into()
        };
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&hash(b"btest-rs decoy salt")[..16]);
        Verifier::derive(user, &hash(b"btest-rs decoy password"), salt)
    }

    /// Derives the verifier from a user name, password and salt (docs/protocol.md 4.3.4), as
    /// RouterOS stores it (`x_gamma ‖ parity` is its 33-byte `v` record).
    ///
    /// Should i be a multiple of the group order (odds 2^-252) Γ would be the point at infinity;
    /// the verifier then holds an x that is not on the curve and every handshake for the user
    /// fails with [`EcSrp5Error::InvalidVerifier`] instead of panicking.
    pub fn derive(user: &[u8], password: &[u8], salt: [u8; 16]) -> Verifier {
        let i = srp::validator_i(user, password, &salt);
        let (x_gamma, gamma_parity) = srp::gamma(&i).unwrap_or(([0xff; 32], false));
        Verifier {
            salt,
            x_gamma,
            gamma_parity,
        }
    }
}

/// The four EC-SRP5 messages, for error reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Client → server: user name and client public key.
    Msg1,
    /// Server → client: server public key and salt.
    Msg2,
    /// Client → server: client proof.
    Msg3,
    /// Server → client: server proof.
    Msg4,
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Msg::Msg1 => "MSG1 (user name and client key)",
            Msg::Msg2 => "MSG2 (server key and salt)",
            Msg::Msg3 => "MSG3 (client proof)",
            Msg::Msg4 => "MSG4 (server proof)",
        })
    }
}

/// Why a user name cannot be carried in, or read from, MSG1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserNameProblem {
    /// The name contains a NUL byte, which MSG1 uses as its terminator.
    ContainsNul,
    /// The name does not fit MSG1's one-byte length (at most [`srp::MAX_USER_LEN`] bytes).
    TooLong {
        /// Length of the rejected name.
        len: usize,
    },
    /// A received MSG1 has no NUL after the name.
    MissingNul,
}

/// Why an EC-SRP5 exchange failed.
#[derive(Debug)]
pub enum EcSrp5Error {
    /// The transport failed.
    Io(io::Error),
    /// The peer closed the connection in the middle of a message.
    Truncated {
        /// The message being read.
        msg: Msg,
        /// Payload bytes received.
        got: usize,
        /// Payload bytes announced by the length byte.
        expected: usize,
    },
    /// A complete message had the wrong length.
    BadLength {
        /// The message.
        msg: Msg,
        /// Its payload length.
        got: usize,
        /// The payload length it must have.
        expected: usize,
    },
    /// The user name cannot be sent, or the received MSG1 has no proper name.
    InvalidUserName(UserNameProblem),
    /// A public key's x is p or larger (not a canonical field element).
    CoordinateOutOfRange {
        /// The message that carried it.
        msg: Msg,
    },
    /// A public key's x is not the x of any curve point.
    NotOnCurve {
        /// The message that carried it.
        msg: Msg,
    },
    /// A public key lies in the small subgroup (order dividing 8, e.g. x = 0).
    LowOrderPoint {
        /// The message that carried it.
        msg: Msg,
    },
    /// A computed point is the point at infinity (only a hostile peer can cause this).
    PointAtInfinity {
        /// Which value.
        what: &'static str,
    },
    /// The server's stored verifier is not a point on the curve.
    InvalidVerifier,
    /// Server: MSG1 names a user we do not know.
    UnknownUser {
        /// The name as received.
        user: Vec<u8>,
    },
    /// Server: the client's proof did not match (wrong password).
    WrongPassword {
        /// The user the client claimed to be.
        user: Vec<u8>,
    },
    /// Client: the server's proof did not match; it does not know our password.
    ServerProofMismatch,
    /// Client: the server closed the connection, or sent an empty frame (`00`, also the start
    /// of `00 00 00 00`), instead of sending this message: how a server reports a wrong
    /// password or an unknown user.
    Rejected {
        /// The message that never came.
        before: Msg,
    },
    /// Server: the client closed the connection before sending this message.
    ClientGone {
        /// The message that never came.
        before: Msg,
    },
}

impl EcSrp5Error {
    /// True when the credentials were refused (as opposed to a transport or protocol fault):
    /// wrong password, unknown user, a server that hung up on us, or a proof mismatch.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            EcSrp5Error::WrongPassword { .. }
                | EcSrp5Error::UnknownUser { .. }
                | EcSrp5Error::Rejected { .. }
                | EcSrp5Error::ServerProofMismatch
        )
    }

    /// The user name the failure concerns, where the exchange got far enough to know it.
    pub fn user(&self) -> Option<&[u8]> {
        match self {
            EcSrp5Error::UnknownUser { user } | EcSrp5Error::WrongPassword { user } => Some(user),
            _ => None,
        }
    }
}

impl fmt::Display for EcSrp5Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EcSrp5Error::Io(e) => write!(f, "EC-SRP5: connection error: {e}"),
            EcSrp5Error::Truncated { msg, got, expected } => write!(
                f,
                "EC-SRP5: connection closed in the middle of {msg} ({got} of {expected} bytes)"
            ),
            EcSrp5Error::BadLength { msg, got, expected } => write!(
                f,
                "EC-SRP5: {msg} has {got} bytes, expected {expected}; the peer does not speak \
                 btest EC-SRP5 as RouterOS does"
            ),
            EcSrp5Error::InvalidUserName(UserNameProblem::ContainsNul) => {
                write!(
                    f,
                    "EC-SRP5: the user name contains a NUL byte, which cannot be sent"
                )
            }
            EcSrp5Error::InvalidUserName(UserNameProblem::TooLong { len }) => write!(
                f,
                "EC-SRP5: the user name is {len} bytes long; at most {} fit",
                srp::MAX_USER_LEN
            ),
            EcSrp5Error::InvalidUserName(UserNameProblem::MissingNul) => {
                write!(f, "EC-SRP5: {} has no NUL after the user name", Msg::Msg1)
            }
            EcSrp5Error::CoordinateOutOfRange { msg } => write!(
                f,
                "EC-SRP5: the public key in {msg} is not reduced below p (corrupt or hostile peer)"
            ),
            EcSrp5Error::NotOnCurve { msg } => write!(
                f,
                "EC-SRP5: the public key in {msg} is not a curve point (corrupt or hostile peer)"
            ),
            EcSrp5Error::LowOrderPoint { msg } => write!(
                f,
                "EC-SRP5: the public key in {msg} has small order (hostile peer)"
            ),
            EcSrp5Error::PointAtInfinity { what } => write!(
                f,
                "EC-SRP5: {what} is the point at infinity (hostile peer or broken randomness)"
            ),
            EcSrp5Error::InvalidVerifier => write!(
                f,
                "EC-SRP5: the stored verifier for this user is not a curve point; set the \
                 user's password again"
            ),
            EcSrp5Error::UnknownUser { user } => write!(
                f,
                "EC-SRP5: unknown user {:?}",
                String::from_utf8_lossy(user)
            ),
            EcSrp5Error::WrongPassword { user } => write!(
                f,
                "EC-SRP5: wrong password for user {:?} (client proof did not match)",
                String::from_utf8_lossy(user)
            ),
            EcSrp5Error::ServerProofMismatch => write!(
                f,
                "EC-SRP5: the server's proof did not match: it does not know this user's \
                 password (misconfigured or impostor server)"
            ),
            EcSrp5Error::Rejected { before } => write!(
                f,
                "EC-SRP5 authentication failed: the server sent no {before} (it closed the \
                 connection or sent an empty frame): wrong user name or password"
            ),
            EcSrp5Error::ClientGone { before } => write!(
                f,
                "EC-SRP5: the client closed the connection before sending {before}"
            ),
        }
    }
}

impl std::error::Error for EcSrp5Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EcSrp5Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for EcSrp5Error {
    fn from(e: io::Error) -> Self {
        EcSrp5Error::Io(e)
    }
}

/// How many ephemeral keys to draw before blaming the random source: each draw fails with odds
/// about 2^-252, so a second failure means the source returns constants.
const KEY_DRAWS: usize = 8;

/// Reads one frame into `buf` (a frame can never exceed 255 bytes, so nothing is sized from
/// peer data). `Ok(None)` means the peer closed (or reset) the connection before the length
/// byte: the way a server refuses.
fn read_frame<'b, S: Read>(
    stream: &mut S,
    buf: &'b mut [u8; 255],
    msg: Msg,
) -> Result<Option<&'b [u8]>, EcSrp5Error> {
    let mut len = [0u8; 1];
    loop {
        match stream.read(&mut len) {
            Ok(0) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(EcSrp5Error::Io(e)),
        }
    }
    let [expected] = len;
    let expected = usize::from(expected);
    let payload = buf.get_mut(..expected).unwrap_or_default();
    let mut got = 0;
    while let Some(rest) = payload.get_mut(got..).filter(|r| !r.is_empty()) {
        match stream.read(rest) {
            Ok(0) => return Err(EcSrp5Error::Truncated { msg, got, expected }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(EcSrp5Error::Io(e)),
        }
    }
    Ok(Some(payload))
}

/// Writes `[len][payload]` in one write; payloads built here never exceed 255 bytes.
fn write_frame<S: Write>(stream: &mut S, payload: &[u8]) -> Result<(), EcSrp5Error> {
    let len = u8::try_from(payload.len()).map_err(|_| {
        EcSrp5Error::InvalidUserName(UserNameProblem::TooLong {
            len: payload.len().saturating_sub(34),
        })
    })?;
    let mut frame = [0u8; 256];
    let (head, body) = frame.split_at_mut(1);
    head.fill(len);
    body.get_mut(..payload.len())
        .unwrap_or_default()
        .copy_from_slice(payload);
    stream.write_all(frame.get(..=payload.len()).unwrap_or_default())?;
    stream.flush()?;
    Ok(())
}

fn draw_key(
    random: &mut dyn FnMut(&mut [u8]),
    make: &mut dyn FnMut([u8; 32]) -> Result<EphemeralKey, EcSrp5Error>,
) -> Result<EphemeralKey, EcSrp5Error> {
    let mut last = None;
    for _ in 0..KEY_DRAWS {
        let mut secret = [0u8; 32];
        random(&mut secret);
        match make(secret) {
            Ok(key) => return Ok(key),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(EcSrp5Error::PointAtInfinity {
        what: "every ephemeral key drawn",
    }))
}

/// Client side, after the server's `03 00 00 00`: sends MSG1, reads MSG2, sends MSG3, reads
/// and checks MSG4. The caller then reads the server's OK.
///
/// A server that refuses closes the connection; that surfaces as [`EcSrp5Error::Rejected`].
pub fn client_handshake<S: Read + Write>(
    stream: &mut S,
    user: &[u8],
    password: &[u8],
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<(), EcSrp5Error> {
    // An unsendable name is reported by client_msg1, before anything is written.
    let key = draw_key(random, &mut srp::client_key)?;
    let msg1 = srp::client_msg1(user, key.public())?;
    write_frame(stream, &msg1)?;

    let mut buf = [0u8; 255];
    let msg2 = read_frame(stream, &mut buf, Msg::Msg2)?
        .ok_or(EcSrp5Error::Rejected { before: Msg::Msg2 })?;
    let (server_key, salt) = srp::parse_msg2(msg2)?;
    let session: Session = srp::client_proof(user, password, &key, &server_key, &salt)?;
    write_frame(stream, &session.client_cc)?;

    // A server that refuses our proof closes, or sends an empty frame (a lone `00`, which is
    // also how `00 00 00 00`, the MD5 refusal, reads here): all three are a wrong password.
    let msg4 = read_frame(stream, &mut buf, Msg::Msg4)?
        .filter(|m| !m.is_empty())
        .ok_or(EcSrp5Error::Rejected { before: Msg::Msg4 })?;
    srp::client_verify_msg4(&session, msg4)
}

/// Server side, after it sent `03 00 00 00`: reads MSG1, sends MSG2, reads and checks MSG3,
/// sends MSG4. Returns the authenticated user name; the caller then sends the OK. On any error
/// the caller should simply close the connection, as every known server does (docs/protocol.md
/// 4.3.6).
pub fn server_handshake<S: Read + Write>(
    stream: &mut S,
    lookup: &dyn Fn(&[u8]) -> Option<Verifier>,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<Vec<u8>, EcSrp5Error> {
    serve(stream, lookup, None, random)
}

/// [`server_handshake`] for a server facing strangers: an unknown user is answered with a
/// MSG2 made from a decoy verifier derived from `decoy_secret` and the name (the same name
/// always gets the same salt, as a real user does), so a peer cannot tell which names exist.
/// The exchange then fails as a wrong password would: the server reads MSG3 and closes.
pub fn server_handshake_hiding_users<S: Read + Write>(
    stream: &mut S,
    lookup: &dyn Fn(&[u8]) -> Option<Verifier>,
    decoy_secret: &[u8; 32],
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<Vec<u8>, EcSrp5Error> {
    serve(stream, lookup, Some(decoy_secret), random)
}

fn serve<S: Read + Write>(
    stream: &mut S,
    lookup: &dyn Fn(&[u8]) -> Option<Verifier>,
    decoy_secret: Option<&[u8; 32]>,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<Vec<u8>, EcSrp5Error> {
    let mut buf = [0u8; 255];
    let msg1 = read_frame(stream, &mut buf, Msg::Msg1)?
        .ok_or(EcSrp5Error::ClientGone { before: Msg::Msg1 })?;
    let (user, client_key) = srp::parse_msg1(msg1)?;
    let user = user.to_vec();
    let (verifier, known) = match (lookup(&user), decoy_secret) {
        (Some(v), _) => (v, true),
        (None, Some(secret)) => (Verifier::decoy(secret, &user), false),
        (None, None) => return Err(EcSrp5Error::UnknownUser { user }),
    };

    let key = draw_key(random, &mut |s_b| srp::server_key(&verifier, s_b))?;
    let session = srp::server_session(&verifier, &key, &client_key)?;
    write_frame(stream, &srp::server_msg2(key.public(), &verifier.salt))?;

    let msg3 = read_frame(stream, &mut buf, Msg::Msg3);
    if !known {
        return Err(EcSrp5Error::UnknownUser { user });
    }
    let msg3 = msg3?.ok_or(EcSrp5Error::ClientGone { before: Msg::Msg3 })?;
    let msg4 = srp::server_verify_and_msg4(&session, &user, msg3)?;
    write_frame(stream, &msg4)?;
    Ok(user)
}
