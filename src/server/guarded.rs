//! The configured [`Authenticator`] behind the password-guessing back-off: a user name that is
//! blocked is looked up as unknown, so its login fails whatever the password, and the peer
//! cannot tell a block from a wrong password.

use super::backoff::Backoff;
use crate::auth::ecsrp5::Verifier;
use crate::handshake::AuthMethod;
use crate::handshake::server::Authenticator;

/// An authenticator that refuses blocked user names.
pub(super) struct Guarded<'a> {
    inner: &'a dyn Authenticator,
    backoff: &'a Backoff,
}

impl<'a> Guarded<'a> {
    /// `inner` with `backoff`'s user blocks applied.
    pub(super) fn new(inner: &'a dyn Authenticator, backoff: &'a Backoff) -> Guarded<'a> {
        Guarded { inner, backoff }
    }
}

impl Authenticator for Guarded<'_> {
    fn method(&self) -> AuthMethod {
        self.inner.method()
    }

    fn md5_password(&self, user: &[u8]) -> Option<Vec<u8>> {
        if self.backoff.user_blocked(user) {
            return None;
        }
        self.inner.md5_password(user)
    }

    fn ecsrp5_verifier(&self, user: &[u8]) -> Option<Verifier> {
        if self.backoff.user_blocked(user) {
            return None;
        }
        self.inner.ecsrp5_verifier(user)
    }

    fn decoy_secret(&self) -> [u8; 32] {
        self.inner.decoy_secret()
    }
}
