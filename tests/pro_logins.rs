//! Who a login is, as `btest-server-pro` sees it (real binaries, loopback): an MD5 user whose
//! name is longer than the 32 bytes the response carries logs in and is charged under the
//! whole name, and an unknown EC-SRP5 name gets the same decoy salt after a restart, as a
//! real user keeps theirs.
#![cfg(feature = "pro")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use btest_rs::auth::ecsrp5::srp;
use common::pro::TempDb;
use common::{TCP_RECEIVE, TestServer, hello, text};

/// A name whose 32nd byte is the first half of a two-byte character: the MD5 response cuts
/// it inside the character, so the cut name is not even valid UTF-8.
const LONG_NAME: &str = "thirty-one-bytes-of-user-name--é-and-some-more";

#[test]
fn md5_user_with_a_long_name_logs_in_and_is_charged_under_the_whole_name() {
    assert!(
        !LONG_NAME.is_char_boundary(32),
        "the cut must split a character"
    );
    let db = TempDb::new("pl-md5-long");
    db.add_user(LONG_NAME, "pw-long", &["--md5"]);
    // Another user shares the first 31 bytes, not the 32nd: only the first one matches.
    db.add_user(
        "thirty-one-bytes-of-user-name--x-other",
        "pw-other",
        &["--md5"],
    );
    let server = TestServer::start_pro(&db, &["--auth", "md5"]);
    let client = |name: &str, password: &str| {
        server.client_quiet(&["-r", "-d", "1", "-b", "10M", "-a", name, "-p", password])
    };
    let ok = client(LONG_NAME, "pw-long");
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let wrong = client(LONG_NAME, "pw-other");
    assert!(!wrong.status.success(), "a wrong password was accepted");
    server.stop();
    let subjects = db.strings("SELECT DISTINCT subject FROM usage WHERE kind = 'user'");
    assert_eq!(subjects, [LONG_NAME], "usage charged to the whole name");
    let users = db.strings("SELECT user FROM sessions WHERE outcome = 'completed'");
    assert_eq!(users, [LONG_NAME], "session row under the whole name");
}

/// Asks the server for MSG2 as `user` would and returns the salt it carries.
fn msg2_salt(port: u16, user: &str) -> [u8; 16] {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = hello(s);
    s.write_all(&TCP_RECEIVE).unwrap();
    let mut reply = [0u8; 4];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [3, 0, 0, 0], "EC-SRP5 expected");
    let key = srp::client_key([7; 32]).unwrap();
    let msg1 = srp::client_msg1(user.as_bytes(), key.public()).unwrap();
    let mut frame = vec![u8::try_from(msg1.len()).unwrap()];
    frame.extend_from_slice(&msg1);
    s.write_all(&frame).unwrap();
    let mut len = [0u8; 1];
    s.read_exact(&mut len).unwrap();
    let mut msg2 = vec![0u8; usize::from(len[0])];
    s.read_exact(&mut msg2).unwrap();
    srp::parse_msg2(&msg2).unwrap().1
}

/// An unknown name's decoy salt is derived from a secret kept in the database, so it is the
/// same after a restart, like a real user's stored salt: a restart does not tell them apart.
#[test]
fn an_unknown_names_decoy_salt_survives_a_restart() {
    let db = TempDb::new("pl-decoy");
    db.add_user("alice", "pw", &[]);
    let server = TestServer::start_pro(&db, &[]);
    let before = [
        msg2_salt(server.port, "alice"),
        msg2_salt(server.port, "nobody"),
        msg2_salt(server.port, "nobody-else"),
    ];
    assert_eq!(before[1], msg2_salt(server.port, "nobody"));
    assert_ne!(before[1], before[2], "each name has its own decoy salt");
    server.stop();
    let server = TestServer::start_pro(&db, &[]);
    let after = [
        msg2_salt(server.port, "alice"),
        msg2_salt(server.port, "nobody"),
        msg2_salt(server.port, "nobody-else"),
    ];
    server.stop();
    assert_eq!(before, after, "salts changed across a restart");
}
