//! The server's opening exchange (HELLO, request, authentication, OK) driven by a peer whose
//! bytes are the fuzz input.
//!
//! Input: byte 0 picks the authenticator (none, MD5 `admin`/`secret`, EC-SRP5 `testuser` with a
//! random salt, EC-SRP5 `testuser` with a fixed salt); byte 1 picks how the bytes are delivered
//! (see `StreamOptions`); the rest is what the client sends. Errors are fine; a panic is not,
//! and a success must name the configured user.
#![no_main]

use btest_rs::handshake::AuthMethod;
use btest_rs_fuzz::{
    FuzzStream, MD5_USER, SRP_USER, ServerOutcome, StreamOptions, authenticator, serve,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [selector, opts, peer @ ..] = data else {
        return;
    };
    let auth = authenticator(*selector);
    let mut stream = FuzzStream::new(peer, StreamOptions::from_byte(*opts));
    match serve(&mut stream, auth) {
        Ok(ServerOutcome::Accepted(who)) => {
            assert_eq!(who.method, auth.method());
            match who.method {
                AuthMethod::None => assert!(who.user.is_empty()),
                AuthMethod::Md5 => assert_eq!(who.user, MD5_USER.as_bytes()),
                AuthMethod::EcSrp5 => assert_eq!(who.user, SRP_USER.as_bytes()),
            }
        }
        Ok(ServerOutcome::Joined { .. }) | Err(_) => {}
    }
});
