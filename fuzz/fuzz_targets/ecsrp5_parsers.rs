//! Every EC-SRP5 message parser on arbitrary bytes.
//!
//! Properties: what a parser accepts has exactly the documented layout, and an accepted public
//! key re-encodes to bytes that parse to the same key.
#![no_main]

use btest_rs::auth::ecsrp5::Msg;
use btest_rs::auth::ecsrp5::srp::{
    MSG2_LEN, PROOF_LEN, PublicKey, parse_msg1, parse_msg2, parse_msg3, parse_msg4,
};
use libfuzzer_sys::fuzz_target;

fn check_key(key: &PublicKey, wire: &[u8], msg: Msg) {
    let bytes = key.to_bytes();
    assert_eq!(&bytes[..32], &wire[..32]);
    assert_eq!(key.parity(), wire[32] != 0);
    assert_eq!(bytes[32], u8::from(wire[32] != 0));
    let again = PublicKey::parse(&bytes, msg).expect("a canonical re-encoding must parse");
    assert_eq!(again.to_bytes(), bytes);
}

fuzz_target!(|data: &[u8]| {
    if let Ok((user, key)) = parse_msg1(data) {
        assert!(!user.contains(&0));
        assert_eq!(data.len(), user.len() + 1 + 33);
        assert_eq!(data[user.len()], 0);
        check_key(&key, &data[user.len() + 1..], Msg::Msg1);
    }
    if let Ok((key, salt)) = parse_msg2(data) {
        assert_eq!(data.len(), MSG2_LEN);
        assert_eq!(&salt[..], &data[33..]);
        check_key(&key, data, Msg::Msg2);
    }
    assert_eq!(parse_msg3(data).is_ok(), data.len() == PROOF_LEN);
    assert_eq!(parse_msg4(data).is_ok(), data.len() == PROOF_LEN);
    if let Ok(p) = parse_msg3(data) {
        assert_eq!(&p[..], data);
    }
    if let Some(wire) = data.first_chunk::<33>()
        && let Ok(key) = PublicKey::parse(wire, Msg::Msg2)
    {
        check_key(&key, wire, Msg::Msg2);
    }
});
