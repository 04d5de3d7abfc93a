//! Writes seed inputs for every fuzz target from the test vectors (`tests/vectors/`), plus
//! transcripts of complete handshakes recorded against the same harness the targets use (so the
//! fuzzer starts from inputs that reach the accepting paths).
//!
//! `cargo run --example seeds -- VECTORS_DIR CORPUS_DIR` (run from `fuzz/`; `fuzz/run.sh`
//! does it). Seeds are named `seed-*` and rewritten on every run.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use btest_rs::auth::{ecsrp5, md5};
use btest_rs::handshake::client::{Credentials, handshake};
use btest_rs::proto::{Command, Direction, Payload, Protocol, StatusMessage, encode_join};
use btest_rs_fuzz::{
    FuzzStream, MD5_PASSWORD, MD5_USER, SRP_PASSWORD, SRP_USER, StreamOptions, authenticator,
    counter_random, fixed_srp_verifier, serve, srp_client,
};
use serde_json::Value;

struct Seeds {
    dir: PathBuf,
    count: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.dir.join(target);
        fs::create_dir_all(&dir).expect("create corpus folder");
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        fs::write(dir.join(format!("seed-{clean}")), bytes).expect("write seed");
        self.count += 1;
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn load(dir: &Path, file: &str) -> Value {
    let text = fs::read_to_string(dir.join(file)).expect("read vectors");
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v[key].as_array().into_iter().flatten()
}

fn name(v: &Value) -> &str {
    v["name"].as_str().unwrap_or("unnamed")
}

/// Records what one side writes.
struct Tee {
    inner: UnixStream,
    log: Vec<u8>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for Tee {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.log.extend_from_slice(&data[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn command(protocol: Protocol, direction: Direction, conns: u8) -> Command {
    Command {
        protocol,
        direction,
        payload: Payload::Zeros,
        tcp_conn_count: conns,
        tx_size: 1500,
        client_buf_size: 0,
        remote_tx_speed: 0,
        local_tx_speed: 0,
    }
}

/// The client's bytes of a whole exchange with `serve(selector)`.
fn record_client(selector: u8, cmd: Command, creds: Option<Credentials>) -> Vec<u8> {
    let (s, c) = UnixStream::pair().expect("socket pair");
    let server = std::thread::spawn(move || {
        let mut s = s;
        let _ = serve(&mut s, authenticator(selector));
    });
    let mut tee = Tee {
        inner: c,
        log: Vec::new(),
    };
    let mut random = counter_random();
    let _ = handshake(&mut tee, &cmd, creds.as_ref(), &mut random);
    drop(tee.inner);
    server.join().expect("server thread");
    tee.log
}

/// The server's bytes of a whole exchange, the client being what `ecsrp5_client` runs.
fn record_server(selector: u8, cmd: Command, creds: Option<Credentials>) -> Vec<u8> {
    let (s, c) = UnixStream::pair().expect("socket pair");
    let server = std::thread::spawn(move || {
        let mut tee = Tee {
            inner: s,
            log: Vec::new(),
        };
        let _ = serve(&mut tee, authenticator(selector));
        tee.log
    });
    let mut c = c;
    let mut random = counter_random();
    let _ = handshake(&mut c, &cmd, creds.as_ref(), &mut random);
    drop(c);
    server.join().expect("server thread")
}

/// The server's bytes of the bare EC-SRP5 exchange against `srp_client`.
fn record_srp_server() -> Vec<u8> {
    let (s, c) = UnixStream::pair().expect("socket pair");
    let server = std::thread::spawn(move || {
        let mut tee = Tee {
            inner: s,
            log: Vec::new(),
        };
        let verifier = fixed_srp_verifier();
        let lookup = |user: &[u8]| (user == SRP_USER.as_bytes()).then(|| verifier.clone());
        let mut random = counter_random();
        let result = ecsrp5::server_handshake(&mut tee, &lookup, &mut random);
        assert!(
            result.is_ok(),
            "recorded EC-SRP5 exchange failed: {result:?}"
        );
        tee.log
    });
    let mut c = c;
    srp_client(&mut c).expect("EC-SRP5 client against the fixed server");
    drop(c);
    server.join().expect("server thread")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, vectors, corpus] = &args[..] else {
        eprintln!("usage: seeds VECTORS_DIR CORPUS_DIR");
        std::process::exit(2);
    };
    let vectors = Path::new(vectors);
    let mut seeds = Seeds {
        dir: PathBuf::from(corpus),
        count: 0,
    };

    // command: every command and control reply (the joins are 16 bytes too).
    let cmd = load(vectors, "command.json");
    for v in items(&cmd, "vectors").chain(items(&cmd, "control_replies")) {
        if let Some(b) = v["bytes"].as_str() {
            seeds.put("command", name(v), &hex(b));
        }
    }

    // status_scanner: each stream with its reads' sizes (capped) as the chunking.
    let status = load(vectors, "status.json");
    for v in items(&status, "streams") {
        let reads: Vec<Vec<u8>> = items(v, "reads")
            .filter_map(|r| r.as_str().map(hex))
            .collect();
        let sizes: Vec<u8> = reads
            .iter()
            .take(8)
            .map(|r| r.len().clamp(1, 255) as u8)
            .collect();
        let mut input = vec![sizes.len().max(1) as u8 - 1];
        input.extend(if sizes.is_empty() { vec![1] } else { sizes });
        reads.iter().for_each(|r| input.extend(r));
        seeds.put("status_scanner", name(v), &input);
        let mut one_byte = vec![0u8, 1];
        reads.iter().for_each(|r| one_byte.extend(r));
        seeds.put(
            "status_scanner",
            &format!("{}-bytewise", name(v)),
            &one_byte,
        );
    }
    for v in items(&status, "messages") {
        if let Some(b) = v["bytes"].as_str() {
            let mut input = vec![1u8, 5, 7];
            input.extend(hex(b));
            input.extend(hex(b));
            seeds.put("status_scanner", name(v), &input);
        }
    }
    let mut back_to_back = vec![0u8, 11];
    for seq in 1..5 {
        let m = StatusMessage {
            cpu: seq as u8 * 20,
            seq,
            bytes_received: 0x0700_0007,
        };
        back_to_back.extend(m.encode());
        back_to_back.extend([0x07, 0x80, 0]);
    }
    seeds.put("status_scanner", "back_to_back", &back_to_back);

    // udp_loss: the loss-counting sequences, wild and tame, in one interval and per datagram.
    let udp = load(vectors, "udp.json");
    for v in items(&udp, "loss_counting") {
        let seqs: Vec<u32> = items(v, "seqs")
            .filter_map(|s| s.as_u64().map(|s| s as u32))
            .collect();
        for (mode, period, tag) in [(0u8, 0u8, "wild"), (0x80, 1, "tame"), (5, 2, "expire")] {
            let mut input = vec![mode, period];
            seqs.iter().for_each(|s| input.extend(s.to_be_bytes()));
            seeds.put("udp_loss", &format!("{}-{tag}", name(v)), &input);
        }
    }
    let mut jump = vec![0u8, 3];
    for s in [
        0u32,
        1,
        2,
        20_000,
        19_999,
        20_001,
        5,
        3_000_000_000,
        20_002,
        40_000,
    ] {
        jump.extend(s.to_be_bytes());
    }
    seeds.put("udp_loss", "jumps", &jump);

    // md5_check: the vectors' responses, and genuine responses for the fixed user.
    let md5v = load(vectors, "md5.json");
    for v in items(&md5v, "vectors").chain(items(&md5v, "captures_password_unknown")) {
        let (Some(c), Some(r)) = (v["challenge"].as_str(), v["response"].as_str()) else {
            continue;
        };
        let mut input = vec![0u8];
        input.extend(hex(c));
        input.extend(hex(r));
        seeds.put("md5_check", name(v), &input);
        if let (Some(u), Some(p)) = (v["username"].as_str(), v["password"].as_str()) {
            let mut input = vec![2u8];
            input.extend(hex(c));
            input.extend(hex(r));
            input.extend(format!("{u}:{p}").as_bytes());
            seeds.put("md5_check", &format!("{}-own-user", name(v)), &input);
        }
    }
    let challenge: [u8; 16] = std::array::from_fn(|i| i as u8 * 17);
    let genuine = md5::client_response(MD5_USER.as_bytes(), MD5_PASSWORD.as_bytes(), &challenge);
    let mut input = vec![0u8];
    input.extend(challenge);
    input.extend(genuine);
    seeds.put("md5_check", "genuine_admin", &input);
    let mut input = vec![1u8];
    input.extend(challenge);
    input.extend([0u8; 48]);
    seeds.put("md5_check", "genuine_admin_mask", &input);

    // ecsrp5_parsers: every message payload of every handshake and capture.
    let srp = load(vectors, "ecsrp5.json");
    for v in items(&srp, "handshakes") {
        for m in ["msg1", "msg2", "msg3", "msg4"] {
            if let Some(b) = v["messages"][m].as_str() {
                seeds.put("ecsrp5_parsers", &format!("{}-{m}", name(v)), &hex(b)[1..]);
            }
        }
    }
    for v in items(&srp, "captures") {
        for m in ["msg1", "msg2"] {
            if let Some(b) = v[m].as_str() {
                seeds.put("ecsrp5_parsers", &format!("{}-{m}", name(v)), &hex(b)[1..]);
            }
        }
    }

    // server_handshake: recorded client transcripts for each authenticator, plain and chunked.
    let md5_creds = Credentials::new(MD5_USER, MD5_PASSWORD);
    let srp_creds = Credentials::new(SRP_USER, SRP_PASSWORD);
    let cases = [
        (
            0u8,
            command(Protocol::Tcp, Direction::ServerTx, 0),
            None,
            "none-tcp",
        ),
        (
            0,
            command(Protocol::Udp, Direction::Both, 0),
            None,
            "none-udp",
        ),
        (
            1,
            command(Protocol::Tcp, Direction::ServerRx, 4),
            Some(md5_creds.clone()),
            "md5-multi",
        ),
        (
            1,
            command(Protocol::Tcp, Direction::ServerTx, 0),
            Some(srp_creds.clone()),
            "md5-wrong",
        ),
        (
            2,
            command(Protocol::Tcp, Direction::ServerTx, 0),
            Some(srp_creds.clone()),
            "srp-random",
        ),
        (
            3,
            command(Protocol::Udp, Direction::ServerTx, 0),
            Some(srp_creds.clone()),
            "srp-fixed",
        ),
        (
            3,
            command(Protocol::Tcp, Direction::ServerTx, 0),
            Some(md5_creds),
            "srp-wrong",
        ),
    ];
    for (selector, cmd, creds, tag) in cases {
        let transcript = record_client(selector, cmd, creds);
        // Replayed through the fuzz target's stream, a transcript must reach the same end.
        let mut replay = FuzzStream::new(&transcript, StreamOptions::plain());
        let outcome = serve(&mut replay, authenticator(selector));
        let should_pass = matches!(tag, "none-tcp" | "none-udp" | "md5-multi" | "srp-fixed");
        // (The random-salt user passes here only because this process drew its salt once.)
        if tag != "srp-random" {
            assert_eq!(
                outcome.is_ok(),
                should_pass,
                "{tag}: replay gave {outcome:?}"
            );
        }
        for opts in [0u8, 0x03, 0x17] {
            let mut input = vec![selector, opts];
            input.extend(&transcript);
            seeds.put("server_handshake", &format!("{tag}-{opts:02x}"), &input);
        }
    }
    let mut join = vec![0u8, 0];
    join.extend(encode_join(0xbc04));
    seeds.put("server_handshake", "join", &join);
    for v in items(&srp, "handshakes") {
        let mut input = vec![3u8, 0];
        input.extend(command(Protocol::Tcp, Direction::ServerTx, 0).encode());
        for m in ["msg1", "msg3"] {
            input.extend(hex(v["messages"][m].as_str().unwrap_or_default()));
        }
        seeds.put("server_handshake", &format!("vector-{}", name(v)), &input);
    }

    // ecsrp5_client: recorded server transcripts, whole handshake and bare EC-SRP5.
    for (mode, selector, cmd, tag) in [
        (
            0u8,
            3u8,
            command(Protocol::Tcp, Direction::ServerTx, 0),
            "srp-tcp",
        ),
        (
            2,
            3,
            command(Protocol::Udp, Direction::ServerTx, 0),
            "srp-udp",
        ),
        (
            1,
            1,
            command(Protocol::Tcp, Direction::ServerRx, 4),
            "md5-multi",
        ),
        (0, 0, command(Protocol::Tcp, Direction::ServerTx, 0), "none"),
    ] {
        let creds = Some(Credentials::new(SRP_USER, SRP_PASSWORD));
        let transcript = record_server(selector, cmd, creds.clone());
        let mut replay = FuzzStream::new(&transcript, StreamOptions::plain());
        let mut random = counter_random();
        let outcome = handshake(&mut replay, &cmd, creds.as_ref(), &mut random);
        assert_eq!(
            outcome.is_ok(),
            tag != "md5-multi",
            "{tag}: replay gave {outcome:?}"
        );
        for opts in [0u8, 0x05] {
            let mut input = vec![mode, opts];
            input.extend(&transcript);
            seeds.put("ecsrp5_client", &format!("{tag}-{opts:02x}"), &input);
        }
    }
    let mut input = vec![0x80u8, 0];
    input.extend(record_srp_server());
    let result = srp_client(&mut FuzzStream::new(&input[2..], StreamOptions::plain()));
    assert!(result.is_ok(), "bare EC-SRP5 replay gave {result:?}");
    seeds.put("ecsrp5_client", "bare-srp", &input);
    for v in items(&srp, "handshakes") {
        let mut input = vec![0x80u8, 0];
        for m in ["msg2", "msg4"] {
            input.extend(hex(v["messages"][m].as_str().unwrap_or_default()));
        }
        seeds.put("ecsrp5_client", &format!("vector-{}", name(v)), &input);
    }

    println!("wrote {} seeds under {}", seeds.count, seeds.dir.display());
}
