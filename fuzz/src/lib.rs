//! Pieces shared by the fuzz targets and the seed generator (`examples/seeds.rs`): a byte
//! source that plays the peer, deterministic randomness, and the server and client sessions
//! driven over it. Keeping them here means a seed recorded by the generator replays exactly
//! the same path in the fuzz target.

use std::io::{self, Read, Write};
use std::sync::LazyLock;

use btest_rs::auth::ecsrp5::{self, EcSrp5Error, Verifier};
use btest_rs::handshake::server::{
    self, Authenticated, Authenticator, NoAuth, SingleUser, accept, authenticate, read_request,
};
use btest_rs::handshake::{AuthMethod, HandshakeError};
use btest_rs::proto::{Protocol, Request};

/// User of every authenticating server here.
pub const MD5_USER: &str = "admin";
/// Password of the MD5 user.
pub const MD5_PASSWORD: &str = "secret";
/// EC-SRP5 user (the one of the `basic_testuser` vector).
pub const SRP_USER: &str = "testuser";
/// EC-SRP5 password.
pub const SRP_PASSWORD: &str = "testpass";
/// Salt of the fixed EC-SRP5 verifier (the `basic_testuser` vector's).
pub const SRP_SALT: [u8; 16] = [
    0xa8, 0xfb, 0x70, 0x08, 0x96, 0x48, 0x56, 0x2e, 0x66, 0x3b, 0x9e, 0x15, 0xad, 0x73, 0x94, 0x36,
];

/// Deterministic "randomness": successive calls continue one byte counter, so a run is
/// reproducible and a seed can carry a genuine MD5 response or EC-SRP5 proof.
pub fn counter_random() -> impl FnMut(&mut [u8]) {
    let mut next = 0u8;
    move |buf: &mut [u8]| {
        for b in buf {
            *b = next;
            next = next.wrapping_add(1);
        }
    }
}

/// An EC-SRP5 user whose verifier has a fixed salt, so a recorded client transcript passes
/// the proof check on every run ([`SingleUser::ecsrp5`] draws its salt from the kernel).
pub struct FixedSrpUser {
    verifier: Verifier,
}

impl Authenticator for FixedSrpUser {
    fn method(&self) -> AuthMethod {
        AuthMethod::EcSrp5
    }
    fn md5_password(&self, _user: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn ecsrp5_verifier(&self, user: &[u8]) -> Option<Verifier> {
        (user == SRP_USER.as_bytes()).then(|| self.verifier.clone())
    }
}

static MD5_AUTH: LazyLock<SingleUser> = LazyLock::new(|| SingleUser::md5(MD5_USER, MD5_PASSWORD));
static SRP_AUTH: LazyLock<SingleUser> =
    LazyLock::new(|| SingleUser::ecsrp5(SRP_USER, SRP_PASSWORD));
static FIXED_SRP_AUTH: LazyLock<FixedSrpUser> = LazyLock::new(|| FixedSrpUser {
    verifier: fixed_srp_verifier(),
});

/// The verifier of [`SRP_USER`] with the fixed salt [`SRP_SALT`].
pub fn fixed_srp_verifier() -> Verifier {
    Verifier::derive(SRP_USER.as_bytes(), SRP_PASSWORD.as_bytes(), SRP_SALT)
}

/// The authenticator chosen by a selector byte: none, MD5, EC-SRP5 with a random salt,
/// EC-SRP5 with the fixed salt. Built once per process (verifier derivation is not free).
pub fn authenticator(selector: u8) -> &'static dyn Authenticator {
    static NO_AUTH: NoAuth = NoAuth;
    match selector % 4 {
        0 => &NO_AUTH,
        1 => &*MD5_AUTH,
        2 => &*SRP_AUTH,
        _ => &*FIXED_SRP_AUTH,
    }
}

/// How the fake peer delivers its bytes, from one option byte:
/// bits 0-3: largest read (0 = unlimited); bit 4: every other read fails with `Interrupted`;
/// bit 5: writes fail once more than `4 + 16 * (bits 6-7)` bytes would have been written.
#[derive(Clone, Copy, Debug)]
pub struct StreamOptions {
    /// Largest number of bytes one read returns (`usize::MAX`: no limit).
    pub max_read: usize,
    /// Every other read returns `ErrorKind::Interrupted`.
    pub interrupt: bool,
    /// Writes beyond this many bytes fail with `BrokenPipe`.
    pub write_limit: Option<usize>,
}

impl StreamOptions {
    /// Decodes the option byte described on the type.
    pub fn from_byte(b: u8) -> StreamOptions {
        let chunk = usize::from(b & 0x0f);
        StreamOptions {
            max_read: if chunk == 0 { usize::MAX } else { chunk },
            interrupt: b & 0x10 != 0,
            write_limit: (b & 0x20 != 0).then(|| 4 + 16 * usize::from(b >> 6)),
        }
    }

    /// Plain delivery: whole reads, no errors.
    pub fn plain() -> StreamOptions {
        StreamOptions::from_byte(0)
    }
}

/// A connection whose peer is a byte string: reads come from `input` (EOF at its end), writes
/// go to a sink that only counts them.
pub struct FuzzStream<'a> {
    input: &'a [u8],
    opts: StreamOptions,
    interrupt_next: bool,
    /// Bytes accepted by `write` so far.
    pub written: usize,
}

impl<'a> FuzzStream<'a> {
    /// A stream that plays `input` back with `opts`.
    pub fn new(input: &'a [u8], opts: StreamOptions) -> FuzzStream<'a> {
        FuzzStream {
            input,
            opts,
            interrupt_next: opts.interrupt,
            written: 0,
        }
    }

    /// Bytes of the input not read yet.
    pub fn remaining(&self) -> usize {
        self.input.len()
    }
}

impl Read for FuzzStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.opts.interrupt {
            self.interrupt_next = !self.interrupt_next;
            if !self.interrupt_next {
                return Err(io::ErrorKind::Interrupted.into());
            }
        }
        let n = buf.len().min(self.input.len()).min(self.opts.max_read);
        let (head, tail) = self.input.split_at(n);
        buf[..n].copy_from_slice(head);
        self.input = tail;
        Ok(n)
    }
}

impl Write for FuzzStream<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self
            .opts
            .write_limit
            .is_some_and(|limit| self.written + data.len() > limit)
        {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.written += data.len();
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What one server connection came to.
#[derive(Debug)]
pub enum ServerOutcome {
    /// A secondary connection joined (and was answered with the OK).
    Joined {
        /// Its token.
        token: u16,
    },
    /// A test was accepted.
    Accepted(Authenticated),
}

/// One server connection as the real server runs it: HELLO and the request, authentication
/// for a new test, then the OK (token for multi-connection TCP, UDP port for UDP).
pub fn serve<S: Read + Write>(
    stream: &mut S,
    auth: &dyn Authenticator,
) -> Result<ServerOutcome, HandshakeError> {
    let mut random = counter_random();
    match read_request(stream)? {
        Request::Join { token } => {
            accept(stream, token, None)?;
            Ok(ServerOutcome::Joined { token })
        }
        Request::Command(cmd) => {
            let who = authenticate(stream, auth, &mut random)?;
            let token = if cmd.is_multi_connection() { 0xbc04 } else { 0 };
            let udp_port = (cmd.protocol == Protocol::Udp).then_some(2001);
            server::accept(stream, token, udp_port)?;
            Ok(ServerOutcome::Accepted(who))
        }
    }
}

/// The EC-SRP5 client exchange against a server played by `stream`.
pub fn srp_client<S: Read + Write>(stream: &mut S) -> Result<(), EcSrp5Error> {
    let mut random = counter_random();
    ecsrp5::client_handshake(
        stream,
        SRP_USER.as_bytes(),
        SRP_PASSWORD.as_bytes(),
        &mut random,
    )
}
