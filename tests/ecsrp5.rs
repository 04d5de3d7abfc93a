//! EC-SRP5: the test vectors (`tests/vectors/ecsrp5.json`), real socket handshakes, a long random run against the parity
//! bug, and malformed messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{self, Cursor, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::thread;

use btest_rs::auth::ecsrp5::srp::{self, PublicKey};
use btest_rs::auth::ecsrp5::{
    EcSrp5Error, Msg, UserNameProblem, Verifier, client_handshake, server_handshake,
};
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/ecsrp5.json");

fn vectors() -> Value {
    let text = std::fs::read_to_string(VECTORS).unwrap_or_else(|e| {
        panic!(
            "cannot read the EC-SRP5 vectors at {VECTORS}: {e}. They are part of the \
             repository (tests/vectors/); see tests/vectors/README.md."
        )
    });
    serde_json::from_str(&text).expect("ecsrp5.json is not valid JSON")
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    unhex(v.as_str().unwrap()).try_into().unwrap()
}

fn text(v: &Value) -> &[u8] {
    v.as_str().unwrap().as_bytes()
}

fn bit(v: &Value) -> bool {
    v.as_u64().unwrap() != 0
}

/// A random source that hands out fixed 32-byte keys, in order.
fn fixed_random(keys: Vec<[u8; 32]>) -> impl FnMut(&mut [u8]) {
    let mut keys = keys.into_iter();
    move |buf: &mut [u8]| buf.copy_from_slice(&keys.next().expect("random source drained"))
}

/// A peer that has already said everything it will say, and records what we write.
struct Scripted {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl Scripted {
    fn new(input: Vec<u8>) -> Scripted {
        Scripted {
            input: Cursor::new(input),
            output: Vec::new(),
        }
    }
}

impl Read for Scripted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Scripted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::try_from(payload.len()).unwrap()];
    out.extend_from_slice(payload);
    out
}

#[test]
fn stored_validators() {
    let doc = vectors();
    for v in doc["stored_validators"].as_array().unwrap() {
        let salt = arr::<16>(&v["salt"]);
        assert_eq!(
            hex(&srp::validator_i(
                text(&v["username"]),
                text(&v["password"]),
                &salt
            )),
            v["validator_i"].as_str().unwrap()
        );
        let ver = Verifier::derive(text(&v["username"]), text(&v["password"]), salt);
        let mut dat = ver.x_gamma.to_vec();
        dat.push(u8::from(ver.gamma_parity));
        assert_eq!(
            hex(&dat),
            v["user_dat_v"].as_str().unwrap(),
            "{}",
            v["name"]
        );
    }
}

#[test]
fn handshake_vectors() {
    let doc = vectors();
    let handshakes = doc["handshakes"].as_array().unwrap();
    assert!(handshakes.len() >= 7);
    for v in handshakes {
        let name = v["name"].as_str().unwrap();
        let salt = arr::<16>(&v["salt"]);
        let stored = &v["server_stored"];
        let verifier = Verifier::derive(
            text(&v["server_username"]),
            text(&v["server_password"]),
            salt,
        );
        assert_eq!(
            verifier,
            Verifier {
                salt: arr(&stored["salt"]),
                x_gamma: arr(&stored["x_gamma"]),
                gamma_parity: bit(&stored["gamma_parity"]),
            },
            "{name}: stored verifier"
        );
        let s_a = arr::<32>(&v["client_private_key"]);
        let s_b = arr::<32>(&v["server_private_key"]);
        let user = text(&v["username"]);
        let client_password = text(&v["client_password"]);
        let msgs = &v["messages"];

        // MSG1.
        let ckey = srp::client_key(s_a).unwrap();
        assert_eq!(
            hex(ckey.public().x()),
            v["client_public_key"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            ckey.public().parity(),
            bit(&v["client_public_key_parity"]),
            "{name}"
        );
        let msg1 = srp::client_msg1(user, ckey.public()).unwrap();
        assert_eq!(
            hex(&frame(&msg1)),
            msgs["msg1"].as_str().unwrap(),
            "{name}: msg1"
        );
        let (parsed_user, parsed_key) = srp::parse_msg1(&msg1).unwrap();
        assert_eq!(parsed_user, user);
        assert_eq!(parsed_key.to_bytes(), ckey.public().to_bytes());

        // The server over a scripted stream, fed the client's messages.
        let server_user = text(&v["server_username"]).to_vec();
        let lookup = |u: &[u8]| (u == server_user.as_slice()).then(|| verifier.clone());

        if v["rejected_at"].as_str() == Some("msg1") {
            let mut peer = Scripted::new(unhex(msgs["msg1"].as_str().unwrap()));
            let err =
                server_handshake(&mut peer, &lookup, &mut fixed_random(vec![s_b])).unwrap_err();
            assert!(
                matches!(&err, EcSrp5Error::UnknownUser { user: u } if u == user),
                "{name}: {err}"
            );
            assert!(err.is_auth_failure());
            assert!(
                peer.output.is_empty(),
                "{name}: no MSG2 for an unknown user"
            );
            // The client sees the server hang up before MSG2.
            let mut peer = Scripted::new(Vec::new());
            let err = client_handshake(
                &mut peer,
                user,
                client_password,
                &mut fixed_random(vec![s_a]),
            )
            .unwrap_err();
            assert!(
                matches!(err, EcSrp5Error::Rejected { before: Msg::Msg2 }),
                "{name}: {err}"
            );
            assert!(err.is_auth_failure());
            assert_eq!(hex(&peer.output), msgs["msg1"].as_str().unwrap());
            continue;
        }

        assert_eq!(
            hex(&srp::validator_i(user, client_password, &salt)),
            v["client_validator_i"].as_str().unwrap(),
            "{name}"
        );
        let (_, increments) = srp::redp1(&verifier.x_gamma, false);
        assert_eq!(
            u64::from(increments),
            v["redp1_increments"].as_u64().unwrap(),
            "{name}"
        );
        let (h0, _) = srp::redp1(&verifier.x_gamma, false);
        let (h1, _) = srp::redp1(&verifier.x_gamma, true);
        assert_eq!(h0.x(), h1.x(), "{name}: redp1 parities share x");
        assert_ne!(h0.parity(), h1.parity());

        // MSG2.
        let skey = srp::server_key(&verifier, s_b).unwrap();
        assert_eq!(
            hex(skey.public().x()),
            v["server_public_key"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            skey.public().parity(),
            bit(&v["server_public_key_parity"]),
            "{name}"
        );
        let msg2 = srp::server_msg2(skey.public(), &verifier.salt);
        assert_eq!(
            hex(&frame(&msg2)),
            msgs["msg2"].as_str().unwrap(),
            "{name}: msg2"
        );
        let (parsed_key, parsed_salt) = srp::parse_msg2(&msg2).unwrap();
        assert_eq!(parsed_salt, salt);

        // Both sides' shared values.
        let client =
            srp::client_proof(user, client_password, &ckey, &parsed_key, &parsed_salt).unwrap();
        let server = srp::server_session(&verifier, &skey, ckey.public()).unwrap();
        assert_eq!(hex(&client.j), v["j"].as_str().unwrap(), "{name}: j");
        assert_eq!(server.j, client.j);
        assert_eq!(
            hex(&client.z),
            v["z_client"].as_str().unwrap(),
            "{name}: z client"
        );
        assert_eq!(
            hex(&server.z),
            v["z_server"].as_str().unwrap(),
            "{name}: z server"
        );
        assert_eq!(
            hex(&client.client_cc),
            v["client_cc"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            hex(&frame(&client.client_cc)),
            msgs["msg3"].as_str().unwrap(),
            "{name}: msg3"
        );
        let msg3 = srp::parse_msg3(&client.client_cc).unwrap();
        assert_eq!(msg3, client.client_cc);

        let accepts = v["server_accepts"].as_bool().unwrap();
        let verdict = srp::server_verify_and_msg4(&server, user, &client.client_cc);
        let mut server_io = Scripted::new(
            [
                unhex(msgs["msg1"].as_str().unwrap()),
                unhex(msgs["msg3"].as_str().unwrap()),
            ]
            .concat(),
        );
        let server_result = server_handshake(&mut server_io, &lookup, &mut fixed_random(vec![s_b]));
        let mut client_input = unhex(msgs["msg2"].as_str().unwrap());
        if accepts {
            let msg4 = verdict.unwrap();
            assert_eq!(hex(&msg4), v["server_cc"].as_str().unwrap(), "{name}");
            assert_eq!(
                hex(&frame(&msg4)),
                msgs["msg4"].as_str().unwrap(),
                "{name}: msg4"
            );
            assert_eq!(srp::parse_msg4(&msg4).unwrap(), msg4);
            srp::client_verify_msg4(&client, &msg4).unwrap();
            assert_eq!(server_result.unwrap(), user);
            assert_eq!(
                hex(&server_io.output),
                format!(
                    "{}{}",
                    msgs["msg2"].as_str().unwrap(),
                    msgs["msg4"].as_str().unwrap()
                )
            );
            client_input.extend(unhex(msgs["msg4"].as_str().unwrap()));
        } else {
            assert!(msgs.get("msg4").is_none());
            let err = verdict.unwrap_err();
            assert!(
                matches!(err, EcSrp5Error::WrongPassword { .. }),
                "{name}: {err}"
            );
            assert_eq!(
                hex(&server.client_cc),
                v["server_expected_client_cc"].as_str().unwrap()
            );
            let err = server_result.unwrap_err();
            assert!(
                matches!(&err, EcSrp5Error::WrongPassword { user: u } if u == user),
                "{err}"
            );
            assert!(err.is_auth_failure());
            assert_eq!(
                hex(&server_io.output),
                msgs["msg2"].as_str().unwrap(),
                "{name}: no MSG4"
            );
        }

        // The client over a scripted stream.
        let mut client_io = Scripted::new(client_input);
        let result = client_handshake(
            &mut client_io,
            user,
            client_password,
            &mut fixed_random(vec![s_a]),
        );
        assert_eq!(
            hex(&client_io.output),
            format!(
                "{}{}",
                msgs["msg1"].as_str().unwrap(),
                msgs["msg3"].as_str().unwrap()
            )
        );
        if accepts {
            result.unwrap();
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(err, EcSrp5Error::Rejected { before: Msg::Msg4 }),
                "{name}: {err}"
            );
            assert!(err.is_auth_failure());
        }
    }
}

#[test]
fn captures_and_framing() {
    let doc = vectors();
    for c in doc["captures"].as_array().unwrap() {
        let msg1 = unhex(c["msg1"].as_str().unwrap());
        let msg2 = unhex(c["msg2"].as_str().unwrap());
        assert_eq!(usize::from(msg1[0]), msg1.len() - 1);
        assert_eq!(usize::from(msg2[0]), msg2.len() - 1);
        let (user, _) = srp::parse_msg1(&msg1[1..]).unwrap();
        assert_eq!(user, b"antar");
        srp::parse_msg2(&msg2[1..]).unwrap();
    }
    let key = srp::client_key([7; 32]).unwrap();
    for f in doc["framing"].as_array().unwrap() {
        let len = f["payload_len"].as_u64().unwrap() as usize;
        assert_eq!(format!("{len:02x}"), f["len_byte"].as_str().unwrap());
        match f["message"].as_str().unwrap() {
            "msg1" => {
                let msg1 = srp::client_msg1(text(&f["username"]), key.public()).unwrap();
                assert_eq!(msg1.len(), len, "{}", f["name"]);
            }
            "msg2" => assert_eq!(srp::MSG2_LEN, len),
            _ => assert_eq!(srp::PROOF_LEN, len),
        }
    }
}

/// Runs both sides over a real loopback TCP connection.
fn tcp_handshake(
    client_user: &[u8],
    client_password: &[u8],
    server_user: &[u8],
    server_password: &[u8],
) -> (Result<(), EcSrp5Error>, Result<Vec<u8>, EcSrp5Error>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut salt = [0u8; 16];
    btest_rs::sys::random::fill(&mut salt).unwrap();
    let verifier = Verifier::derive(server_user, server_password, salt);
    let server_user = server_user.to_vec();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let lookup = |u: &[u8]| (u == server_user.as_slice()).then(|| verifier.clone());
        server_handshake(
            &mut conn,
            &lookup,
            &mut btest_rs::sys::random::fill_or_abort,
        )
        // `conn` drops here: a refusal is a close.
    });
    let mut conn = TcpStream::connect(addr).unwrap();
    let client = client_handshake(
        &mut conn,
        client_user,
        client_password,
        &mut btest_rs::sys::random::fill_or_abort,
    );
    (client, server.join().unwrap())
}

#[test]
fn tcp_right_password() {
    let (client, server) = tcp_handshake(b"testuser", b"testpass", b"testuser", b"testpass");
    client.unwrap();
    assert_eq!(server.unwrap(), b"testuser");
}

#[test]
fn tcp_wrong_password() {
    let (client, server) = tcp_handshake(b"testuser", b"wrongpass", b"testuser", b"testpass");
    let server = server.unwrap_err();
    assert!(
        matches!(server, EcSrp5Error::WrongPassword { .. }),
        "{server}"
    );
    assert!(server.is_auth_failure());
    let client = client.unwrap_err();
    assert!(client.is_auth_failure(), "{client}");
    assert!(
        matches!(client, EcSrp5Error::Rejected { before: Msg::Msg4 }),
        "{client}"
    );
}

#[test]
fn tcp_unknown_user() {
    let (client, server) = tcp_handshake(b"nobody", b"testpass", b"testuser", b"testpass");
    let server = server.unwrap_err();
    assert!(
        matches!(server, EcSrp5Error::UnknownUser { .. }),
        "{server}"
    );
    assert!(server.is_auth_failure());
    let client = client.unwrap_err();
    assert!(client.is_auth_failure(), "{client}");
    assert!(
        matches!(client, EcSrp5Error::Rejected { before: Msg::Msg2 }),
        "{client}"
    );
}

/// Random credentials and salts, both sides ours: any chance failure (parity, dropped leading
/// zero bytes) shows up here. Two workers share the runs so a debug build stays quick.
#[test]
fn many_random_handshakes() {
    const RUNS: usize = 2000;
    const WORKERS: usize = 2;
    let failures: Vec<String> = thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| scope.spawn(move || random_handshakes(w, RUNS / WORKERS)))
            .collect();
        workers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {RUNS} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn random_handshakes(worker: usize, runs: usize) -> Vec<String> {
    let mut failures = Vec::new();
    for run in 0..runs {
        let mut rnd = [0u8; 16 + 2 + 64 + 64];
        btest_rs::sys::random::fill(&mut rnd).unwrap();
        let salt: [u8; 16] = rnd[..16].try_into().unwrap();
        let user_len = 1 + usize::from(rnd[16]) % 64;
        let pass_len = usize::from(rnd[17]) % 65;
        // Any byte but NUL (mapping 0 to 1 keeps the names random enough).
        let user: Vec<u8> = rnd[18..18 + user_len].iter().map(|&b| b.max(1)).collect();
        let password = rnd[82..82 + pass_len].to_vec();
        let verifier = Verifier::derive(&user, &password, salt);
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let server_user = user.clone();
        let server = thread::spawn(move || {
            let lookup = |u: &[u8]| (u == server_user.as_slice()).then(|| verifier.clone());
            server_handshake(&mut b, &lookup, &mut btest_rs::sys::random::fill_or_abort)
        });
        let client = client_handshake(
            &mut a,
            &user,
            &password,
            &mut btest_rs::sys::random::fill_or_abort,
        );
        let server = server.join().unwrap();
        match (client, server) {
            (Ok(()), Ok(u)) if u == user => {}
            (c, s) => failures.push(format!(
                "worker {worker} run {run}: user {user:02x?} pw {password:02x?} salt {salt:02x?}: \
                 {c:?} / {s:?}"
            )),
        }
    }
    failures
}

// ---------------------------------------------------------------- malformed messages ---

/// Feeds raw bytes to our server and returns its error (and what it wrote).
fn server_on(input: Vec<u8>) -> (EcSrp5Error, Vec<u8>) {
    let verifier = Verifier::derive(b"testuser", b"testpass", [1; 16]);
    let lookup = |u: &[u8]| (u == b"testuser").then(|| verifier.clone());
    let mut peer = Scripted::new(input);
    let err = server_handshake(&mut peer, &lookup, &mut fixed_random(vec![[9; 32]])).unwrap_err();
    (err, peer.output)
}

fn msg1_with_key(x: [u8; 32], parity: u8) -> Vec<u8> {
    let mut payload = b"testuser\0".to_vec();
    payload.extend_from_slice(&x);
    payload.push(parity);
    frame(&payload)
}

fn small_x(v: u8) -> [u8; 32] {
    let mut x = [0u8; 32];
    x[31] = v;
    x
}

const P: [u8; 32] = {
    let mut p = [0xff; 32];
    p[0] = 0x7f;
    p[31] = 0xed;
    p
};

#[test]
fn malformed_msg1() {
    let good_key = *srp::client_key([3; 32]).unwrap().public();

    // Connection closes before anything / inside the message.
    let (err, _) = server_on(Vec::new());
    assert!(
        matches!(err, EcSrp5Error::ClientGone { before: Msg::Msg1 }),
        "{err}"
    );
    let (err, _) = server_on(vec![0x2a, b't', b'e']);
    assert!(
        matches!(
            err,
            EcSrp5Error::Truncated {
                msg: Msg::Msg1,
                got: 2,
                expected: 42
            }
        ),
        "{err}"
    );

    // No NUL anywhere, and an empty frame.
    let (err, _) = server_on(frame(&[b'u'; 60]));
    assert!(
        matches!(
            err,
            EcSrp5Error::InvalidUserName(UserNameProblem::MissingNul)
        ),
        "{err}"
    );
    let (err, _) = server_on(frame(&[]));
    assert!(
        matches!(
            err,
            EcSrp5Error::InvalidUserName(UserNameProblem::MissingNul)
        ),
        "{err}"
    );

    // Wrong key length after the NUL (one short, one long).
    let mut short = b"testuser\0".to_vec();
    short.extend_from_slice(&good_key.to_bytes()[..32]);
    let (err, _) = server_on(frame(&short));
    assert!(
        matches!(
            err,
            EcSrp5Error::BadLength {
                msg: Msg::Msg1,
                got: 41,
                expected: 42
            }
        ),
        "{err}"
    );
    let mut long = b"testuser\0".to_vec();
    long.extend_from_slice(&good_key.to_bytes());
    long.push(0);
    let (err, _) = server_on(frame(&long));
    assert!(
        matches!(
            err,
            EcSrp5Error::BadLength {
                msg: Msg::Msg1,
                got: 43,
                ..
            }
        ),
        "{err}"
    );

    // x = 2 has no point; x = 0 (order 2) and x = 1 (order 4) are small-order points.
    let (err, out) = server_on(msg1_with_key(small_x(2), 0));
    assert!(
        matches!(err, EcSrp5Error::NotOnCurve { msg: Msg::Msg1 }),
        "{err}"
    );
    assert!(out.is_empty());
    for x in [0, 1] {
        for parity in [0, 1] {
            let (err, _) = server_on(msg1_with_key(small_x(x), parity));
            assert!(
                matches!(err, EcSrp5Error::LowOrderPoint { msg: Msg::Msg1 }),
                "x={x}: {err}"
            );
        }
    }

    // x ≥ p is rejected, not reduced (p + 9 would otherwise be the generator).
    let mut p_plus_9 = P;
    p_plus_9[31] = 0xf6;
    for x in [P, p_plus_9, [0xff; 32]] {
        let (err, _) = server_on(msg1_with_key(x, 0));
        assert!(
            matches!(err, EcSrp5Error::CoordinateOutOfRange { msg: Msg::Msg1 }),
            "{err}"
        );
    }

    // Unknown user with a valid key.
    let mut other = b"someone\0".to_vec();
    other.extend_from_slice(&good_key.to_bytes());
    let (err, out) = server_on(frame(&other));
    assert!(matches!(err, EcSrp5Error::UnknownUser { .. }), "{err}");
    assert!(out.is_empty());
}

#[test]
fn malformed_msg3() {
    let key = *srp::client_key([3; 32]).unwrap().public();
    let msg1 = frame(&srp::client_msg1(b"testuser", &key).unwrap());

    for len in [0usize, 31, 33, 255] {
        let (err, out) = server_on([msg1.clone(), frame(&vec![0xab; len])].concat());
        assert!(
            matches!(err, EcSrp5Error::BadLength { msg: Msg::Msg3, got, expected: 32 } if got == len),
            "{err}"
        );
        assert_eq!(out.len(), 50, "MSG2 only");
    }
    let (err, _) = server_on([msg1.clone(), vec![0x20, 1, 2, 3]].concat());
    assert!(
        matches!(
            err,
            EcSrp5Error::Truncated {
                msg: Msg::Msg3,
                got: 3,
                expected: 32
            }
        ),
        "{err}"
    );
    let (err, _) = server_on(msg1.clone());
    assert!(
        matches!(err, EcSrp5Error::ClientGone { before: Msg::Msg3 }),
        "{err}"
    );
    // Right length, wrong proof.
    let (err, _) = server_on([msg1, frame(&[0; 32])].concat());
    assert!(matches!(err, EcSrp5Error::WrongPassword { .. }), "{err}");
}

#[test]
fn malformed_server_messages() {
    let run = |input: Vec<u8>| {
        let mut peer = Scripted::new(input);
        client_handshake(
            &mut peer,
            b"testuser",
            b"testpass",
            &mut fixed_random(vec![[5; 32]]),
        )
        .unwrap_err()
    };
    let good = srp::server_key(
        &Verifier::derive(b"testuser", b"testpass", [1; 16]),
        [9; 32],
    )
    .unwrap();
    let msg2 = frame(&srp::server_msg2(good.public(), &[1; 16]));

    let err = run(frame(&[0; 48]));
    assert!(
        matches!(
            err,
            EcSrp5Error::BadLength {
                msg: Msg::Msg2,
                got: 48,
                expected: 49
            }
        ),
        "{err}"
    );
    let mut bad_x = [0u8; 49];
    bad_x[31] = 2;
    let err = run(frame(&bad_x));
    assert!(
        matches!(err, EcSrp5Error::NotOnCurve { msg: Msg::Msg2 }),
        "{err}"
    );
    let mut big_x = [0u8; 49];
    big_x[..32].copy_from_slice(&P);
    let err = run(frame(&big_x));
    assert!(
        matches!(err, EcSrp5Error::CoordinateOutOfRange { msg: Msg::Msg2 }),
        "{err}"
    );
    let err = run(frame(&[0; 49]));
    assert!(
        matches!(err, EcSrp5Error::LowOrderPoint { msg: Msg::Msg2 }),
        "{err}"
    );

    let err = run([msg2.clone(), frame(&[0; 31])].concat());
    assert!(
        matches!(
            err,
            EcSrp5Error::BadLength {
                msg: Msg::Msg4,
                got: 31,
                ..
            }
        ),
        "{err}"
    );
    let err = run([msg2.clone(), frame(&[0; 32])].concat());
    assert!(matches!(err, EcSrp5Error::ServerProofMismatch), "{err}");
    assert!(err.is_auth_failure());
    let err = run([msg2, vec![0x20, 0]].concat());
    assert!(
        matches!(
            err,
            EcSrp5Error::Truncated {
                msg: Msg::Msg4,
                got: 1,
                expected: 32
            }
        ),
        "{err}"
    );
}

#[test]
fn client_rejects_unsendable_names() {
    let key = *srp::client_key([3; 32]).unwrap().public();
    assert!(matches!(
        srp::client_msg1(b"a\0b", &key),
        Err(EcSrp5Error::InvalidUserName(UserNameProblem::ContainsNul))
    ));
    assert!(matches!(
        srp::client_msg1(&[b'x'; 222], &key),
        Err(EcSrp5Error::InvalidUserName(UserNameProblem::TooLong {
            len: 222
        }))
    ));
    assert_eq!(srp::client_msg1(&[b'x'; 221], &key).unwrap().len(), 255);
}

/// Random bytes through every parser: errors are fine, panics are not.
#[test]
fn parsers_never_panic() {
    let mut buf = [0u8; 256];
    for _ in 0..3000 {
        btest_rs::sys::random::fill(&mut buf).unwrap();
        let len = usize::from(buf[0]);
        let payload = &buf[1..1 + len];
        let _ = srp::parse_msg1(payload);
        let _ = srp::parse_msg2(payload);
        let _ = srp::parse_msg3(payload);
        let _ = srp::parse_msg4(payload);
        let key: [u8; 33] = buf[..33].try_into().unwrap();
        let _ = PublicKey::parse(&key, Msg::Msg1);
    }
}
