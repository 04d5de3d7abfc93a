//! The 16-byte command / join classifier and the 4-byte reply on arbitrary bytes.
//!
//! Properties: short input is `Truncated` for both decoders; a decoded command re-encodes to
//! the same 16 bytes; `decode_request` agrees with `Command::decode` except for the join
//! marker; a join's token comes back through `encode_join`.
#![no_main]

use btest_rs::proto::{
    Command, CommandError, JOIN_MARKER, Reply, Request, decode_request, encode_join,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let request = decode_request(data);
    let command = Command::decode(data);
    let Some(head) = data.get(..16) else {
        let truncated = CommandError::Truncated { len: data.len() };
        assert_eq!(request, Err(truncated));
        assert_eq!(command, Err(truncated));
        return;
    };
    if let Ok(cmd) = command {
        assert_eq!(
            &cmd.encode()[..],
            head,
            "decoded command must re-encode to its bytes"
        );
        assert!(cmd.connection_count() >= 1);
    }
    match request {
        Ok(Request::Join { token }) => {
            assert_eq!(head[2], JOIN_MARKER);
            assert_eq!(token, u16::from_be_bytes([head[0], head[1]]));
            assert_eq!(
                decode_request(&encode_join(token)),
                Ok(Request::Join { token })
            );
            // Byte 2 = 02 is never a valid payload byte, whichever field is reported first.
            assert!(command.is_err());
        }
        Ok(Request::Command(cmd)) => assert_eq!(command, Ok(cmd)),
        Err(e) => {
            assert_ne!(head[2], JOIN_MARKER);
            assert_eq!(command, Err(e));
        }
    }

    // The reply classifier keeps the first byte and, for an OK, the token.
    let reply_bytes = [head[0], head[1], head[2], head[3]];
    let reply = Reply::decode(reply_bytes);
    let again = reply.encode();
    assert_eq!(again[0], head[0]);
    assert_eq!(Reply::decode(again), reply);
});
