//! EC-SRP5 (RouterOS 6.43 and later). Placeholder: implemented in its own change.

use std::io::{self, Read, Write};

/// What a server keeps per user: the salt and the password verifier point Γ = i·G.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    /// 16 random bytes, drawn once per user.
    pub salt: [u8; 16],
    /// Montgomery x of Γ, big-endian.
    pub x_gamma: [u8; 32],
    /// Parity (lowest bit) of Γ's y.
    pub gamma_parity: bool,
}

/// Why an EC-SRP5 exchange failed.
#[derive(Debug)]
pub enum EcSrp5Error {
    /// The transport failed.
    Io(io::Error),
}

impl std::fmt::Display for EcSrp5Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EcSrp5Error::Io(e) => write!(f, "EC-SRP5 I/O: {e}"),
        }
    }
}

impl std::error::Error for EcSrp5Error {}

impl EcSrp5Error {
    /// True when the failure means wrong credentials.
    pub fn is_auth_failure(&self) -> bool {
        false
    }

    /// The user name the client sent, when the failure is about a known message.
    pub fn user(&self) -> Option<&[u8]> {
        None
    }
}

impl Verifier {
    /// Derives the verifier from a user name, password and salt.
    pub fn derive(_user: &[u8], _password: &[u8], salt: [u8; 16]) -> Verifier {
        Verifier {
            salt,
            x_gamma: [0; 32],
            gamma_parity: false,
        }
    }
}

/// Client side, after the server's `03 00 00 00`.
pub fn client_handshake<S: Read + Write>(
    _stream: &mut S,
    _user: &[u8],
    _password: &[u8],
    _random: &mut dyn FnMut(&mut [u8]),
) -> Result<(), EcSrp5Error> {
    Err(EcSrp5Error::Io(io::Error::other("EC-SRP5 not implemented")))
}

/// Server side, after it sent `03 00 00 00`. Returns the authenticated user name.
pub fn server_handshake<S: Read + Write>(
    _stream: &mut S,
    _lookup: &dyn Fn(&[u8]) -> Option<Verifier>,
    _random: &mut dyn FnMut(&mut [u8]),
) -> Result<Vec<u8>, EcSrp5Error> {
    Err(EcSrp5Error::Io(io::Error::other("EC-SRP5 not implemented")))
}
