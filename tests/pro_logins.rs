//! Who a login is, as `btest-server-pro` sees it (real binaries, loopback): an MD5 user whose
//! name is longer than the 32 bytes the response carries logs in and is charged under the
//! whole name, and an unknown EC-SRP5 name gets the same decoy salt after a restart, as a
//! real user keeps theirs.
#![cfg(feature = "pro")]
#![allow(unsafe_code)] // FFI for test tooling (signals, namespaces, sockets bound to a source address)

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use btest_rs::auth::ecsrp5::srp;

const PRO: &str = env!("CARGO_BIN_EXE_btest-server-pro");
const BTEST: &str = env!("CARGO_BIN_EXE_btest");
const TCP_RECEIVE: [u8; 16] = [1, 2, 1, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

struct Db(PathBuf);

impl Db {
    fn new(tag: &str) -> Db {
        let p = std::env::temp_dir().join(format!("btest-pl-{}-{tag}.db", std::process::id()));
        let db = Db(p);
        db.clean();
        db
    }
    fn clean(&self) {
        for s in ["", "-wal", "-shm", ".lock"] {
            let _ = std::fs::remove_file(format!("{}{s}", self.0.display()));
        }
    }
    fn add_user(&self, name: &str, password: &str, md5: bool) {
        let mut cmd = Command::new(PRO);
        cmd.arg("--db").arg(&self.0).args(["user", "add", name]);
        if md5 {
            cmd.arg("--md5");
        }
        let mut add = cmd
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("user add");
        add.stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        let out = add.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.clean();
    }
}

/// A running server on the database; stopped with SIGTERM (the writer commits first).
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(db: &Db, extra: &[&str]) -> Server {
        let mut child = Command::new(PRO)
            .arg("--db")
            .arg(&db.0)
            .args(["-P", "0", "--listen", "127.0.0.1"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn btest-server-pro");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(port) = rest.rsplit(':').next().and_then(|p| p.parse().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server did not start");
        Server { child, port }
    }

    fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert!(self.child.wait().unwrap().success());
        std::mem::forget(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A name whose 32nd byte is the first half of a two-byte character: the MD5 response cuts
/// it inside the character, so the cut name is not even valid UTF-8.
const LONG_NAME: &str = "thirty-one-bytes-of-user-name--é-and-some-more";

#[test]
fn md5_user_with_a_long_name_logs_in_and_is_charged_under_the_whole_name() {
    assert!(
        !LONG_NAME.is_char_boundary(32),
        "the cut must split a character"
    );
    let db = Db::new("md5-long");
    db.add_user(LONG_NAME, "pw-long", true);
    // Another user shares the first 31 bytes, not the 32nd: only the first one matches.
    db.add_user("thirty-one-bytes-of-user-name--x-other", "pw-other", true);
    let server = Server::start(&db, &["--auth", "md5"]);
    let client = |name: &str, password: &str| {
        Command::new(BTEST)
            .args(["-c", "127.0.0.1", "-P", &server.port.to_string()])
            .args([
                "-q", "-r", "-d", "1", "-b", "10M", "-a", name, "-p", password,
            ])
            .output()
            .unwrap()
    };
    let ok = client(LONG_NAME, "pw-long");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let wrong = client(LONG_NAME, "pw-other");
    assert!(!wrong.status.success(), "a wrong password was accepted");
    server.stop();
    let conn = rusqlite::Connection::open(&db.0).unwrap();
    let subjects: Vec<String> = conn
        .prepare("SELECT DISTINCT subject FROM usage WHERE kind = 'user'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(subjects, [LONG_NAME], "usage charged to the whole name");
    let users: Vec<String> = conn
        .prepare("SELECT user FROM sessions WHERE outcome = 'completed'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(users, [LONG_NAME], "session row under the whole name");
}

/// Asks the server for MSG2 as `user` would and returns the salt it carries.
fn msg2_salt(port: u16, user: &str) -> [u8; 16] {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = [0u8; 4];
    s.read_exact(&mut hello).unwrap();
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
    let db = Db::new("decoy");
    db.add_user("alice", "pw", false);
    let server = Server::start(&db, &[]);
    let before = [
        msg2_salt(server.port, "alice"),
        msg2_salt(server.port, "nobody"),
        msg2_salt(server.port, "nobody-else"),
    ];
    assert_eq!(before[1], msg2_salt(server.port, "nobody"));
    assert_ne!(before[1], before[2], "each name has its own decoy salt");
    server.stop();
    let server = Server::start(&db, &[]);
    let after = [
        msg2_salt(server.port, "alice"),
        msg2_salt(server.port, "nobody"),
        msg2_salt(server.port, "nobody-else"),
    ];
    server.stop();
    assert_eq!(before, after, "salts changed across a restart");
}
