//! The EC-SRP5 message math, without I/O (docs/protocol.md 4.3.3 to 4.3.5).
//!
//! Every function here works on message *payloads* (no length byte) and fixed secrets, so the
//! exchange can be replayed from test vectors and every parser can be fuzzed. The I/O layer in
//! the parent module only frames, draws randomness and sequences these calls.

use num_bigint::BigUint;
use sha2::{Digest, Sha256};

use super::curve::{Affine, Jacobian, lift_x, mul_base};
use super::field::{self, Fe};
use super::{EcSrp5Error, Msg, UserNameProblem, Verifier};
use crate::auth::ct_eq;

/// The longest user name MSG1 can carry: 255 − 1 (NUL) − 33 (public key).
pub const MAX_USER_LEN: usize = 255 - 1 - 33;
/// Payload length of MSG2: server public key (33) and salt (16).
pub const MSG2_LEN: usize = 49;
/// Payload length of MSG3 and MSG4.
pub const PROOF_LEN: usize = 32;

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A public key as it travels: the Montgomery x (32 bytes, big-endian, always below p) and the
/// parity of y, together with the curve point it names (already checked to exist).
#[derive(Clone, Copy, Debug)]
pub struct PublicKey {
    x: [u8; 32],
    parity: bool,
    point: Affine,
}

impl PublicKey {
    /// The x coordinate as sent: 32 big-endian bytes, leading zeros kept.
    pub fn x(&self) -> &[u8; 32] {
        &self.x
    }

    /// The parity bit (lowest bit of y).
    pub fn parity(&self) -> bool {
        self.parity
    }

    /// The 33 bytes of the wire form: x, then `00` or `01`.
    pub fn to_bytes(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        let (x, parity) = out.split_at_mut(32);
        x.copy_from_slice(&self.x);
        parity.fill(u8::from(self.parity));
        out
    }

    fn from_point(point: Affine) -> PublicKey {
        PublicKey {
            x: point.mont_x(),
            parity: point.parity(),
            point,
        }
    }

    /// Validates a received 33-byte key: x must be below p (rejected, not reduced, so that the
    /// bytes hashed into j are the only encoding of the point), there must be a point with that
    /// x, and it must not lie in the small subgroup. Any non-zero parity byte means odd, as in
    /// the reference implementations.
    pub fn parse(bytes: &[u8; 33], msg: Msg) -> Result<PublicKey, EcSrp5Error> {
        let Some((x, parity)) = bytes.split_first_chunk::<32>() else {
            return Err(EcSrp5Error::BadLength {
                msg,
                got: bytes.len(),
                expected: 33,
            });
        };
        if !Fe::is_canonical_encoding(x) {
            return Err(EcSrp5Error::CoordinateOutOfRange { msg });
        }
        let parity = parity.iter().any(|&b| b != 0);
        let point = lift_x(&Fe::from_be_bytes(x), parity).ok_or(EcSrp5Error::NotOnCurve { msg })?;
        if point.has_small_order() {
            return Err(EcSrp5Error::LowOrderPoint { msg });
        }
        Ok(PublicKey {
            x: *x,
            parity,
            point,
        })
    }
}

/// `redp1(data, parity)`: hash to a curve point, returned in wire form with the number of
/// times the first hash had to be incremented (for tests and vectors).
pub fn redp1(data: &[u8; 32], parity: bool) -> (PublicKey, u32) {
    let (point, increments) = redp1_point(data, parity);
    (PublicKey::from_point(point), increments)
}

/// `redp1` proper. The loop is deterministic, so both sides always agree; it ends after two
/// tries on average (each candidate has about even odds of being on the curve).
fn redp1_point(data: &[u8; 32], parity: bool) -> (Affine, u32) {
    let mut x = sha256(&[data]);
    let mut increments = 0u32;
    loop {
        let u = Fe::from_be_bytes(&sha256(&[&x]));
        if let Some(point) = lift_x(&u, parity) {
            return (point, increments);
        }
        // Increment the first hash (not u) as a 256-bit big-endian integer.
        for byte in x.iter_mut().rev() {
            let (v, carry) = byte.overflowing_add(1);
            *byte = v;
            if !carry {
                break;
            }
        }
        increments = increments.saturating_add(1);
    }
}

/// The password scalar i = SHA-256(salt ‖ SHA-256(user ":" password)).
pub fn validator_i(user: &[u8], password: &[u8], salt: &[u8; 16]) -> [u8; 32] {
    let inner = sha256(&[user, b":", password]);
    sha256(&[salt, &inner])
}

/// Γ = i·G as (x_gamma, parity), or None if i is a multiple of r (odds 2^-252).
pub(crate) fn gamma(i: &[u8; 32]) -> Option<([u8; 32], bool)> {
    let g = mul_base(i).to_affine()?;
    Some((g.mont_x(), g.parity()))
}

/// A side's ephemeral key: the secret scalar and W = s·G (for the server, W_b also carries the
/// password blinding).
#[derive(Clone, Debug)]
pub struct EphemeralKey {
    secret: [u8; 32],
    public: PublicKey,
}

impl EphemeralKey {
    /// The public half, as sent in MSG1 or MSG2.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }
}

/// Client: W_a = s_a·G. Fails only if s_a is a multiple of r (then draw again).
pub fn client_key(s_a: [u8; 32]) -> Result<EphemeralKey, EcSrp5Error> {
    let point = mul_base(&s_a)
        .to_affine()
        .ok_or(EcSrp5Error::PointAtInfinity {
            what: "the client public key s_a·G",
        })?;
    Ok(EphemeralKey {
        secret: s_a,
        public: PublicKey::from_point(point),
    })
}

/// Client: the MSG1 payload `user ‖ 00 ‖ x_m(W_a) ‖ parity`.
pub fn client_msg1(user: &[u8], key: &PublicKey) -> Result<Vec<u8>, EcSrp5Error> {
    if user.contains(&0) {
        return Err(EcSrp5Error::InvalidUserName(UserNameProblem::ContainsNul));
    }
    if user.len() > MAX_USER_LEN {
        return Err(EcSrp5Error::InvalidUserName(UserNameProblem::TooLong {
            len: user.len(),
        }));
    }
    let mut out = Vec::with_capacity(user.len() + 34);
    out.extend_from_slice(user);
    out.push(0);
    out.extend_from_slice(&key.to_bytes());
    Ok(out)
}

/// Server: splits MSG1 into the user name and the client's validated public key. The name
/// ends at the first NUL and exactly 33 bytes must follow it (what RouterOS sends).
pub fn parse_msg1(payload: &[u8]) -> Result<(&[u8], PublicKey), EcSrp5Error> {
    let nul = payload
        .iter()
        .position(|&b| b == 0)
        .ok_or(EcSrp5Error::InvalidUserName(UserNameProblem::MissingNul))?;
    let (user, rest) = payload
        .split_at_checked(nul)
        .ok_or(EcSrp5Error::InvalidUserName(UserNameProblem::MissingNul))?;
    let key = rest.get(1..).unwrap_or_default();
    let key: &[u8; 33] = key.try_into().map_err(|_| EcSrp5Error::BadLength {
        msg: Msg::Msg1,
        got: payload.len(),
        expected: nul + 1 + 33,
    })?;
    Ok((user, PublicKey::parse(key, Msg::Msg1)?))
}

/// Server: W_b = s_b·G + redp1(x_gamma, 0). Fails only with odds 2^-252 (W_b at infinity);
/// the caller then draws another s_b, so this can never make a handshake fail.
pub fn server_key(verifier: &Verifier, s_b: [u8; 32]) -> Result<EphemeralKey, EcSrp5Error> {
    let (blind, _) = redp1_point(&verifier.x_gamma, false);
    let point = mul_base(&s_b)
        .add(&Jacobian::from(blind))
        .to_affine()
        .ok_or(EcSrp5Error::PointAtInfinity {
            what: "the server public key W_b",
        })?;
    Ok(EphemeralKey {
        secret: s_b,
        public: PublicKey::from_point(point),
    })
}

/// Server: the MSG2 payload `x_m(W_b) ‖ parity ‖ salt`.
pub fn server_msg2(key: &PublicKey, salt: &[u8; 16]) -> [u8; MSG2_LEN] {
    let mut out = [0u8; MSG2_LEN];
    let (k, s) = out.split_at_mut(33);
    k.copy_from_slice(&key.to_bytes());
    s.copy_from_slice(salt);
    out
}

/// Client: splits MSG2 into the server's validated public key and the salt.
pub fn parse_msg2(payload: &[u8]) -> Result<(PublicKey, [u8; 16]), EcSrp5Error> {
    let bad = || EcSrp5Error::BadLength {
        msg: Msg::Msg2,
        got: payload.len(),
        expected: MSG2_LEN,
    };
    let payload: &[u8; MSG2_LEN] = payload.try_into().map_err(|_| bad())?;
    let (key, salt) = payload.split_first_chunk::<33>().ok_or_else(bad)?;
    let salt: [u8; 16] = salt.try_into().map_err(|_| bad())?;
    Ok((PublicKey::parse(key, Msg::Msg2)?, salt))
}

/// What one side knows once the shared point is computed: everything both proofs need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// j = SHA-256(x_m(W_a) ‖ x_m(W_b)).
    pub j: [u8; 32],
    /// z = x_m(Z), the shared secret.
    pub z: [u8; 32],
    /// SHA-256(j ‖ z): MSG3.
    pub client_cc: [u8; 32],
    /// SHA-256(j ‖ client_cc ‖ z): MSG4.
    pub server_cc: [u8; 32],
}

impl Session {
    fn new(j: [u8; 32], shared: &Jacobian) -> Result<Session, EcSrp5Error> {
        let z = shared
            .to_affine()
            .ok_or(EcSrp5Error::PointAtInfinity {
                what: "the shared point Z",
            })?
            .mont_x();
        let client_cc = sha256(&[&j, &z]);
        let server_cc = sha256(&[&j, &client_cc, &z]);
        Ok(Session {
            j,
            z,
            client_cc,
            server_cc,
        })
    }
}

fn compute_j(w_a: &PublicKey, w_b: &PublicKey) -> [u8; 32] {
    sha256(&[&w_a.x, &w_b.x])
}

/// Client, after MSG2: Z = e·(W_b − redp1(x_gamma, 0)) with e = (i·j + s_a) mod r. The MSG3
/// payload is the returned `client_cc`; MSG4 must equal `server_cc`.
pub fn client_proof(
    user: &[u8],
    password: &[u8],
    key: &EphemeralKey,
    server: &PublicKey,
    salt: &[u8; 16],
) -> Result<Session, EcSrp5Error> {
    let i = validator_i(user, password, salt);
    let (x_gamma, _) = gamma(&i).ok_or(EcSrp5Error::PointAtInfinity {
        what: "the password point i·G",
    })?;
    let j = compute_j(&key.public, server);
    // redp1(x, 1) is −redp1(x, 0): adding it removes the server's blinding.
    let (unblind, _) = redp1_point(&x_gamma, true);
    let v = Jacobian::from(server.point).add(&Jacobian::from(unblind));
    let e = (BigUint::from_bytes_be(&i) * BigUint::from_bytes_be(&j)
        + BigUint::from_bytes_be(&key.secret))
        % &field::FIELD.r;
    Session::new(j, &v.mul(&field::be32(&e)))
}

/// Server, after MSG1: Z = s_b·(W_a + j·Γ), with Γ lifted from the *stored* parity.
pub fn server_session(
    verifier: &Verifier,
    key: &EphemeralKey,
    client: &PublicKey,
) -> Result<Session, EcSrp5Error> {
    if !Fe::is_canonical_encoding(&verifier.x_gamma) {
        return Err(EcSrp5Error::InvalidVerifier);
    }
    let gamma = lift_x(&Fe::from_be_bytes(&verifier.x_gamma), verifier.gamma_parity)
        .ok_or(EcSrp5Error::InvalidVerifier)?;
    let j = compute_j(client, &key.public);
    let sum = Jacobian::from(client.point).add(&Jacobian::from(gamma).mul(&j));
    Session::new(j, &sum.mul(&key.secret))
}

/// Reads MSG3 (or MSG4): exactly 32 bytes.
fn parse_proof(payload: &[u8], msg: Msg) -> Result<[u8; PROOF_LEN], EcSrp5Error> {
    payload.try_into().map_err(|_| EcSrp5Error::BadLength {
        msg,
        got: payload.len(),
        expected: PROOF_LEN,
    })
}

/// Server: the client's proof from MSG3.
pub fn parse_msg3(payload: &[u8]) -> Result<[u8; PROOF_LEN], EcSrp5Error> {
    parse_proof(payload, Msg::Msg3)
}

/// Client: the server's proof from MSG4.
pub fn parse_msg4(payload: &[u8]) -> Result<[u8; PROOF_LEN], EcSrp5Error> {
    parse_proof(payload, Msg::Msg4)
}

/// Server: checks MSG3 in constant time and returns the MSG4 payload. A mismatch means the
/// client does not know the password (or used another user's salt).
pub fn server_verify_and_msg4(
    session: &Session,
    user: &[u8],
    msg3: &[u8],
) -> Result<[u8; PROOF_LEN], EcSrp5Error> {
    let proof = parse_msg3(msg3)?;
    if ct_eq(&proof, &session.client_cc) {
        Ok(session.server_cc)
    } else {
        Err(EcSrp5Error::WrongPassword {
            user: user.to_vec(),
        })
    }
}

/// Client: checks MSG4 in constant time.
pub fn client_verify_msg4(session: &Session, msg4: &[u8]) -> Result<(), EcSrp5Error> {
    let proof = parse_msg4(msg4)?;
    if ct_eq(&proof, &session.server_cc) {
        Ok(())
    } else {
        Err(EcSrp5Error::ServerProofMismatch)
    }
}
