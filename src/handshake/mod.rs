//! The opening exchange of a btest connection, for both roles, over any `Read + Write`.
//!
//! HELLO, the 16-byte command (or a secondary connection's join), the authentication the server
//! asks for, and the OK that starts the test. Nothing here knows about sockets, so the same code
//! runs over a `TcpStream`, an in-memory pipe in tests, or a fuzzer's byte source.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod client;
pub mod server;

use std::fmt;
use std::io;

use crate::auth::ecsrp5::EcSrp5Error;
use crate::proto::CommandError;

/// Authentication methods a server can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// No authentication.
    None,
    /// MD5 challenge-response.
    Md5,
    /// EC-SRP5.
    EcSrp5,
}

impl AuthMethod {
    /// Name as used in logs and CSV (`none`, `md5`, `ecsrp5`).
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Md5 => "md5",
            AuthMethod::EcSrp5 => "ecsrp5",
        }
    }
}

/// The step of the handshake an error happened in, for messages a user can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Sending or reading HELLO.
    Hello,
    /// Sending or reading the 16-byte command or join.
    Command,
    /// Sending or reading the server's first 4-byte reply.
    Reply,
    /// The authentication exchange.
    Auth,
    /// Sending or reading the OK (and UDP port).
    Ok,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Hello => "hello",
            Stage::Command => "command",
            Stage::Reply => "reply",
            Stage::Auth => "authentication",
            Stage::Ok => "ok",
        })
    }
}

/// Why a handshake did not produce a running test.
#[derive(Debug)]
pub enum HandshakeError {
    /// The transport failed (including timeouts and the peer closing).
    Io { stage: Stage, source: io::Error },
    /// The server's first 4 bytes were not HELLO.
    BadHello([u8; 4]),
    /// The 16 bytes after HELLO were not a valid command.
    BadCommand(CommandError),
    /// The server answered the command with bytes we do not know.
    UnknownReply([u8; 4]),
    /// The server requires authentication and no credentials were given.
    CredentialsRequired(AuthMethod),
    /// The credentials were refused (wrong user or password).
    AuthRejected { method: AuthMethod, user: String },
    /// The EC-SRP5 exchange failed for a reason other than the credentials.
    EcSrp5(EcSrp5Error),
    /// The server refused the test after authentication (policy).
    Refused(String),
}

impl HandshakeError {
    /// True when the failure means "wrong credentials" (exit code 3 on the client).
    pub fn is_auth_failure(&self) -> bool {
        match self {
            HandshakeError::CredentialsRequired(_) | HandshakeError::AuthRejected { .. } => true,
            HandshakeError::EcSrp5(e) => e.is_auth_failure(),
            _ => false,
        }
    }

    pub(crate) fn io(stage: Stage) -> impl FnOnce(io::Error) -> HandshakeError {
        move |source| HandshakeError::Io { stage, source }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io { stage, source } => {
                if source.kind() == io::ErrorKind::UnexpectedEof {
                    write!(f, "peer closed the connection during {stage}")
                } else if matches!(
                    source.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    write!(f, "timed out during {stage}")
                } else {
                    write!(f, "{stage}: {source}")
                }
            }
            HandshakeError::BadHello(b) => write!(
                f,
                "not a btest server: greeting {:02x}{:02x}{:02x}{:02x}",
                b[0], b[1], b[2], b[3]
            ),
            HandshakeError::BadCommand(e) => write!(f, "bad command: {e}"),
            HandshakeError::UnknownReply(b) => write!(
                f,
                "unexpected server reply {:02x}{:02x}{:02x}{:02x}",
                b[0], b[1], b[2], b[3]
            ),
            HandshakeError::CredentialsRequired(m) => write!(
                f,
                "server requires {} authentication: give -a USER -p PASS",
                m.name()
            ),
            HandshakeError::AuthRejected { method, user } => {
                write!(
                    f,
                    "{} authentication failed for user '{user}'",
                    method.name()
                )
            }
            HandshakeError::EcSrp5(e) => write!(f, "{e}"),
            HandshakeError::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandshakeError::Io { source, .. } => Some(source),
            HandshakeError::EcSrp5(e) => Some(e),
            _ => None,
        }
    }
}

/// A user name from the wire, shown in logs: lossy UTF-8 with control characters escaped, so a
/// hostile name cannot forge log lines.
pub fn printable_user(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).escape_debug().to_string()
}

#[cfg(test)]
pub(crate) mod pipe {
    //! An in-memory duplex byte pipe for handshake tests: two ends, each reading what the other
    //! wrote, blocking until data arrives or the other end is dropped.

    use std::io::{self, Read, Write};
    use std::sync::Arc;

    use parking_lot::{Condvar, Mutex};

    #[derive(Default)]
    struct Buf {
        data: std::collections::VecDeque<u8>,
        closed: bool,
    }

    #[derive(Default)]
    struct Chan {
        buf: Mutex<Buf>,
        ready: Condvar,
    }

    /// One end of the pipe.
    pub(crate) struct End {
        rx: Arc<Chan>,
        tx: Arc<Chan>,
    }

    /// A connected pair of ends.
    pub(crate) fn pair() -> (End, End) {
        let a = Arc::new(Chan::default());
        let b = Arc::new(Chan::default());
        (
            End {
                rx: a.clone(),
                tx: b.clone(),
            },
            End { rx: b, tx: a },
        )
    }

    impl Read for End {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let mut buf = self.rx.buf.lock();
            while buf.data.is_empty() && !buf.closed {
                self.rx.ready.wait(&mut buf);
            }
            let n = out.len().min(buf.data.len());
            for (slot, byte) in out.iter_mut().zip(buf.data.drain(..n)) {
                *slot = byte;
            }
            Ok(n)
        }
    }

    impl Write for End {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let mut buf = self.tx.buf.lock();
            if buf.closed {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            buf.data.extend(data);
            self.tx.ready.notify_all();
            Ok(data.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Drop for End {
        fn drop(&mut self) {
            for chan in [&self.rx, &self.tx] {
                chan.buf.lock().closed = true;
                chan.ready.notify_all();
            }
        }
    }
}
