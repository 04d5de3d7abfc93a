//! MD5 challenge-response check.
//!
//! Input: byte 0 picks a mode, then a 16-byte challenge, then 48 bytes.
//! * Mode bit 0 clear: the 48 bytes are the response, checked against the fixed user
//!   `admin` / `secret`. It must verify exactly when the hash is the genuine one and the name
//!   field reads `admin` up to its first NUL (what follows the NUL is not looked at).
//! * Mode bit 0 set: the 48 bytes are XORed onto the genuine response (all-zero mask = the
//!   genuine response), so the accepting path is reached as easily as the rejecting one.
//! * Mode bit 1 set: user and password come from the rest of the input instead (the name is
//!   split at its first `:`); the genuine response must verify whenever the name has no NUL,
//!   and nothing verifies without the genuine hash.
#![no_main]

use btest_rs::auth::md5::{self, CHALLENGE_LEN, RESPONSE_LEN, USER_FIELD_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 1 + CHALLENGE_LEN + RESPONSE_LEN {
        return;
    }
    let mode = data[0];
    let challenge: [u8; CHALLENGE_LEN] = data[1..1 + CHALLENGE_LEN].try_into().unwrap();
    let body: [u8; RESPONSE_LEN] = data[1 + CHALLENGE_LEN..1 + CHALLENGE_LEN + RESPONSE_LEN]
        .try_into()
        .unwrap();
    let tail = &data[1 + CHALLENGE_LEN + RESPONSE_LEN..];

    let (user, password): (&[u8], &[u8]) = if mode & 2 != 0 {
        match tail.iter().position(|&b| b == b':') {
            Some(i) => (&tail[..i], &tail[i + 1..]),
            None => (tail, b""),
        }
    } else {
        (b"admin", b"secret")
    };

    let genuine = md5::client_response(user, password, &challenge);
    let response = if mode & 1 != 0 {
        let mut r = genuine;
        r.iter_mut().zip(&body).for_each(|(a, b)| *a ^= b);
        r
    } else {
        body
    };

    let ok = md5::verify(user, password, &challenge, &response);
    let name = md5::response_user(&response);
    assert!(name.len() <= USER_FIELD_LEN && !name.contains(&0));
    let hash_ok = response[..16] == genuine[..16];
    if ok {
        assert!(hash_ok, "accepted a response without the genuine hash");
    }
    if mode & 2 == 0 {
        assert_eq!(
            ok,
            hash_ok && name == b"admin",
            "verify disagrees with the rule"
        );
    } else {
        let expected_name = &user[..user.len().min(USER_FIELD_LEN)];
        assert_eq!(ok, hash_ok && name == expected_name);
        if !expected_name.contains(&0) {
            assert!(md5::verify(user, password, &challenge, &genuine));
        }
    }
    if response == genuine && !user[..user.len().min(USER_FIELD_LEN)].contains(&0) {
        assert!(ok, "the genuine response was refused");
    }
});
