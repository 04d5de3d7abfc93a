//! MD5 challenge-response (RouterOS before 6.43).
//!
//! `hash = MD5(password || MD5(password || challenge))`; the client answers with 48 bytes: the
//! hash, then the user name NUL-padded or truncated to 32 bytes.

use md5::{Digest, Md5};

/// Length of the server's random challenge.
pub const CHALLENGE_LEN: usize = 16;
/// Length of the client's response.
pub const RESPONSE_LEN: usize = 48;
/// Room for the user name in the response.
pub const USER_FIELD_LEN: usize = 32;

/// The 16-byte hash both sides compute.
pub fn hash(password: &[u8], challenge: &[u8; CHALLENGE_LEN]) -> [u8; 16] {
    let inner = Md5::new()
        .chain_update(password)
        .chain_update(challenge)
        .finalize();
    let outer = Md5::new()
        .chain_update(password)
        .chain_update(inner)
        .finalize();
    outer.into()
}

/// The client's 48-byte response.
pub fn client_response(
    user: &[u8],
    password: &[u8],
    challenge: &[u8; CHALLENGE_LEN],
) -> [u8; RESPONSE_LEN] {
    let mut out = [0u8; RESPONSE_LEN];
    let (h, name) = out.split_at_mut(16);
    h.copy_from_slice(&hash(password, challenge));
    let n = user.len().min(USER_FIELD_LEN);
    if let (Some(dst), Some(src)) = (name.get_mut(..n), user.get(..n)) {
        dst.copy_from_slice(src);
    }
    out
}

/// The user name a response carries: the name field up to its first NUL.
pub fn response_user(response: &[u8; RESPONSE_LEN]) -> &[u8] {
    let field = response.get(16..).unwrap_or_default();
    let end = memchr::memchr(0, field).unwrap_or(field.len());
    field.get(..end).unwrap_or_default()
}

/// Checks a response against the expected user and password, in constant time for the hash.
///
/// The name is compared as RouterOS does it: the configured name truncated to 32 bytes.
pub fn verify(
    user: &[u8],
    password: &[u8],
    challenge: &[u8; CHALLENGE_LEN],
    response: &[u8; RESPONSE_LEN],
) -> bool {
    let expected = client_response(user, password, challenge);
    let name_ok = super::ct_eq(
        response_user(response),
        user.get(..user.len().min(USER_FIELD_LEN))
            .unwrap_or_default(),
    );
    let hash_ok = super::ct_eq(
        response.get(..16).unwrap_or_default(),
        expected.get(..16).unwrap_or_default(),
    );
    name_ok & hash_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_vector() {
        let challenge: [u8; 16] = [
            0xad, 0x32, 0xd6, 0xf9, 0x4d, 0x28, 0x16, 0x16, 0x25, 0xf2, 0xf3, 0x90, 0xbb, 0x89,
            0x56, 0x37,
        ];
        let h = hash(b"test", &challenge);
        assert_eq!(
            h,
            [
                0x3c, 0x96, 0x85, 0x65, 0xbc, 0x03, 0x14, 0xf2, 0x81, 0xa6, 0xda, 0x15, 0x71, 0xcf,
                0x72, 0x55
            ]
        );
        let r = client_response(b"test", b"test", &challenge);
        assert!(verify(b"test", b"test", &challenge, &r));
        assert!(!verify(b"test", b"nope", &challenge, &r));
        assert!(!verify(b"other", b"test", &challenge, &r));
    }
}
