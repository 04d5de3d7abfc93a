//! Checks the wire code against the test vectors (`tests/vectors/*.json`) byte for byte.
//!
//! The vectors were produced and cross-checked by other implementations; passing them is what
//! "wire-compatible" means here, so every key of every file is exercised.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use btest_rs::auth::md5;
use btest_rs::proto::rate::{adapted_rate_bps, send_interval_ns};
use btest_rs::proto::udp::{self, LossCounts, SeqTracker};
use btest_rs::proto::{
    self, Command, Direction, Payload, Protocol, Reply, Request, STATUS_LEN, StatusMessage,
    StatusScanner, decode_request, encode_join,
};
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/");

fn load(file: &str) -> Value {
    let path = format!("{VECTORS}{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read test vectors at {path}: {e}. They are part of the repository \
             (tests/vectors/); see tests/vectors/README.md."
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid JSON: {e}"))
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd-length hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex_of(v: &Value, key: &str) -> Vec<u8> {
    hex(v[key]
        .as_str()
        .unwrap_or_else(|| panic!("missing hex {key}")))
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("missing number {key} in {v}"))
}

fn name(v: &Value) -> &str {
    v["name"].as_str().unwrap()
}

fn list<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("missing list {key}"))
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    b.try_into()
        .unwrap_or_else(|_| panic!("expected {N} bytes, got {}", b.len()))
}

// ---------------------------------------------------------------------------------------------
// command.json

fn command_from_fields(f: &Value) -> Command {
    Command {
        protocol: match u64_of(f, "protocol") {
            0 => Protocol::Udp,
            1 => Protocol::Tcp,
            p => panic!("protocol {p}"),
        },
        direction: match u64_of(f, "direction") {
            1 => Direction::ServerRx,
            2 => Direction::ServerTx,
            3 => Direction::Both,
            d => panic!("direction {d}"),
        },
        payload: match u64_of(f, "random_data") {
            0 => Payload::Random,
            1 => Payload::Zeros,
            r => panic!("random_data {r}"),
        },
        tcp_conn_count: u8::try_from(u64_of(f, "tcp_conn_count")).unwrap(),
        tx_size: u16::try_from(u64_of(f, "tx_size")).unwrap(),
        client_buf_size: u16::try_from(u64_of(f, "client_buf_size")).unwrap(),
        remote_tx_speed: u32::try_from(u64_of(f, "remote_tx_speed")).unwrap(),
        local_tx_speed: u32::try_from(u64_of(f, "local_tx_speed")).unwrap(),
    }
}

#[test]
fn command_vectors_both_ways() {
    let doc = load("command.json");
    let vectors = list(&doc, "vectors");
    assert!(vectors.len() >= 15, "expected the full command list");
    for v in vectors {
        let n = name(v);
        let bytes = hex_of(v, "bytes");
        assert_eq!(bytes.len(), 16, "{n}");
        let want = command_from_fields(&v["fields"]);
        assert_eq!(want.encode().as_slice(), bytes.as_slice(), "{n}: encode");
        let got = Command::decode(&bytes).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(got, want, "{n}: decode");
        assert_eq!(
            decode_request(&bytes),
            Ok(Request::Command(want)),
            "{n}: a command is not a join"
        );
        let d = &v["derived"];
        let flag = |k: &str| d[k].as_bool().unwrap();
        assert_eq!(got.direction.server_tx(), flag("server_tx"), "{n}");
        assert_eq!(got.direction.server_rx(), flag("server_rx"), "{n}");
        assert_eq!(got.direction.client_tx(), flag("client_tx"), "{n}");
        assert_eq!(got.direction.client_rx(), flag("client_rx"), "{n}");
    }
}

#[test]
fn commands_as_other_tools_sent_them_decode() {
    let doc = load("command.json");
    let sent: Vec<&Value> = list(&doc, "vectors")
        .iter()
        .filter(|v| name(v).starts_with("btest_rs_cli_") && name(v).ends_with("_as_sent"))
        .collect();
    assert_eq!(sent.len(), 2);
    for v in sent {
        let cmd = Command::decode(&hex_of(v, "bytes")).unwrap();
        // btest-rs asks for random data and fills local_tx_speed: decode what is there.
        assert_eq!(cmd.payload, Payload::Random, "{}", name(v));
        assert_eq!(cmd.local_tx_speed, 100_000_000, "{}", name(v));
        assert_eq!(cmd, command_from_fields(&v["fields"]));
    }
}

#[test]
fn control_replies() {
    let doc = load("command.json");
    let replies = list(&doc, "control_replies");
    let mut seen = Vec::new();
    for r in replies {
        let n = name(r);
        let bytes = hex_of(r, "bytes");
        seen.push(n.to_owned());
        match n {
            "hello" => assert_eq!(bytes, proto::HELLO, "{n}"),
            "ok_no_auth" => {
                assert_eq!(Reply::Ok { token: 0 }.encode().as_slice(), bytes, "{n}");
                assert_eq!(Reply::decode(arr(&bytes)), Reply::Ok { token: 0 });
            }
            "ok_with_session_token" | "ok_with_session_token_1234" => {
                let token = u16::try_from(u64_of(r, "session_token")).unwrap();
                assert_eq!(Reply::Ok { token }.encode().as_slice(), bytes, "{n}");
                assert_eq!(Reply::decode(arr(&bytes)), Reply::Ok { token }, "{n}");
            }
            "md5_auth_required" => {
                // 4-byte reply, then the 16-byte challenge in the same segment.
                assert_eq!(bytes.len(), 4 + md5::CHALLENGE_LEN);
                assert_eq!(Reply::Md5.encode().as_slice(), &bytes[..4]);
                assert_eq!(Reply::decode(arr(&bytes[..4])), Reply::Md5);
                assert_eq!(
                    &bytes[4..],
                    hex("ad32d6f94d28161625f2f390bb895637").as_slice()
                );
            }
            "ecsrp5_auth_required" => {
                assert_eq!(Reply::EcSrp5.encode().as_slice(), bytes, "{n}");
                assert_eq!(Reply::decode(arr(&bytes)), Reply::EcSrp5);
            }
            "auth_failed" => {
                assert_eq!(Reply::Failed.encode().as_slice(), bytes, "{n}");
                assert_eq!(Reply::decode(arr(&bytes)), Reply::Failed);
            }
            "udp_port_after_ok" => {
                let port = u16::try_from(u64_of(r, "server_udp_port")).unwrap();
                assert_eq!(bytes.len(), 6);
                assert_eq!(Reply::decode(arr(&bytes[..4])), Reply::Ok { token: 0 });
                assert_eq!(udp::encode_port(port).as_slice(), &bytes[4..]);
                assert_eq!(udp::decode_port(arr(&bytes[4..])), port);
                assert_eq!(port.to_be_bytes().as_slice(), &bytes[4..]);
            }
            join if join.starts_with("secondary_join_") => {
                let token = u16::try_from(u64_of(r, "session_token")).unwrap();
                assert_eq!(encode_join(token).as_slice(), bytes, "{n}");
                assert_eq!(decode_request(&bytes), Ok(Request::Join { token }), "{n}");
            }
            other => panic!("control reply {other} is not covered by this test"),
        }
    }
    for required in [
        "hello",
        "ok_no_auth",
        "ok_with_session_token",
        "md5_auth_required",
        "ecsrp5_auth_required",
        "auth_failed",
        "udp_port_after_ok",
        "secondary_join_routeros_1234",
    ] {
        assert!(seen.iter().any(|s| s == required), "{required} missing");
    }
}

// ---------------------------------------------------------------------------------------------
// status.json

fn status_from(v: &Value) -> StatusMessage {
    StatusMessage {
        cpu: u8::try_from(u64_of(v, "cpu")).unwrap(),
        seq: u32::try_from(u64_of(v, "seq")).unwrap(),
        bytes_received: u32::try_from(u64_of(v, "bytes_received")).unwrap(),
    }
}

#[test]
fn status_messages() {
    let doc = load("status.json");
    let mut encoded = 0;
    for v in list(&doc, "messages") {
        let n = name(v);
        let bytes: [u8; STATUS_LEN] = arr(&hex_of(v, "bytes"));
        let want = status_from(&v["fields"]);
        let got = StatusMessage::decode(&bytes).unwrap_or_else(|| panic!("{n}: not decoded"));
        assert_eq!(got, want, "{n}: decode");
        assert_eq!(got.cpu, bytes[1] & 0x7f, "{n}: cpu is the low 7 bits");
        if bytes[1] & 0x80 != 0 {
            assert_eq!(want.encode(), bytes, "{n}: encode");
            encoded += 1;
        } else {
            // RouterOS-server form: we encode with the top bit set, otherwise the same.
            let mut ours = bytes;
            ours[1] |= 0x80;
            assert_eq!(want.encode(), ours, "{n}: encode (top bit set)");
        }
    }
    assert!(encoded >= 5);
}

/// Feeds `reads` to one scanner; returns each message with the index of the read that
/// completed it.
fn scan_reads(reads: &[Vec<u8>]) -> Vec<(usize, StatusMessage)> {
    let mut scanner = StatusScanner::new();
    let mut out = Vec::new();
    for (i, r) in reads.iter().enumerate() {
        scanner.feed(r, |m| out.push((i, m)));
    }
    out
}

/// Feeds the stream one byte at a time: a message is reported when its last byte arrives, so
/// its offset is the fed length minus 12.
fn scan_with_offsets(stream: &[u8]) -> Vec<(usize, StatusMessage)> {
    let mut scanner = StatusScanner::new();
    let mut out = Vec::new();
    for (i, b) in stream.iter().enumerate() {
        scanner.feed(std::slice::from_ref(b), |m| {
            out.push((i + 1 - STATUS_LEN, m))
        });
    }
    out
}

#[test]
fn status_streams() {
    let doc = load("status.json");
    let streams = list(&doc, "streams");
    assert!(streams.len() >= 13);
    for s in streams {
        let n = name(s);
        let reads: Vec<Vec<u8>> = list(s, "reads")
            .iter()
            .map(|r| hex(r.as_str().unwrap()))
            .collect();
        let stream: Vec<u8> = reads.concat();
        let expected: Vec<(usize, StatusMessage)> = list(s, "expected_messages")
            .iter()
            .map(|m| {
                (
                    usize::try_from(u64_of(m, "stream_offset")).unwrap(),
                    status_from(m),
                )
            })
            .collect();

        // Exact offsets, from a byte-at-a-time feed.
        assert_eq!(scan_with_offsets(&stream), expected, "{n}: offsets");

        // The reads as given: same messages, each reported by the read holding its last byte.
        let found = scan_reads(&reads);
        let msgs: Vec<StatusMessage> = found.iter().map(|&(_, m)| m).collect();
        let want: Vec<StatusMessage> = expected.iter().map(|&(_, m)| m).collect();
        assert_eq!(msgs, want, "{n}: reads as given");
        let mut ends = Vec::new();
        let mut total = 0;
        for r in &reads {
            total += r.len();
            ends.push(total);
        }
        for (&(read, _), &(offset, _)) in found.iter().zip(&expected) {
            let last = offset + STATUS_LEN - 1;
            let start_of_read = if read == 0 { 0 } else { ends[read - 1] };
            assert!(
                (start_of_read..ends[read]).contains(&last),
                "{n}: message at {offset} reported by read {read}"
            );
        }

        // One read with everything.
        let whole: Vec<StatusMessage> = scan_reads(std::slice::from_ref(&stream))
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        assert_eq!(whole, want, "{n}: single read");
    }
}

#[test]
fn speed_adaptation() {
    let doc = load("status.json");
    for v in list(&doc, "speed_adaptation") {
        let n = name(v);
        let bytes = u32::try_from(u64_of(v, "bytes_received")).unwrap();
        let want = v["new_tx_speed_bps"].as_u64();
        assert_eq!(adapted_rate_bps(bytes), want, "{n}");
        if let Some(wrapped) = v["btestrs_u32_result"].as_u64() {
            // The value btest-rs gets by truncating is what we must not produce.
            assert_ne!(adapted_rate_bps(bytes), Some(wrapped), "{n}");
            assert_eq!(want.map(|w| w as u32 as u64), Some(wrapped), "{n}");
        }
    }
}

#[test]
fn send_interval() {
    let doc = load("status.json");
    for v in list(&doc, "send_interval") {
        let n = name(v);
        let speed = u64_of(v, "tx_speed_bps");
        let size = u32::try_from(u64_of(v, "tx_size")).unwrap();
        assert_eq!(
            send_interval_ns(speed, size),
            v["interval_ns"].as_u64(),
            "{n}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// md5.json

fn md5_digest(parts: &[&[u8]]) -> [u8; 16] {
    use ::md5::Digest;
    let mut h = ::md5::Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

#[test]
fn md5_vectors() {
    let doc = load("md5.json");
    let vectors = list(&doc, "vectors");
    assert_eq!(vectors.len(), 4);
    for v in vectors {
        let n = name(v);
        let user = v["username"].as_str().unwrap().as_bytes();
        let password = v["password"].as_str().unwrap().as_bytes();
        let challenge: [u8; md5::CHALLENGE_LEN] = arr(&hex_of(v, "challenge"));
        let hash1 = md5_digest(&[password, &challenge]);
        assert_eq!(hash1.as_slice(), hex_of(v, "hash1"), "{n}: hash1");
        assert_eq!(
            md5_digest(&[password, &hash1]).as_slice(),
            hex_of(v, "hash"),
            "{n}: hash from hash1"
        );
        assert_eq!(
            md5::hash(password, &challenge).as_slice(),
            hex_of(v, "hash"),
            "{n}: hash"
        );
        let response: [u8; md5::RESPONSE_LEN] = arr(&hex_of(v, "response"));
        assert_eq!(
            md5::client_response(user, password, &challenge),
            response,
            "{n}: response"
        );
        assert!(md5::verify(user, password, &challenge, &response), "{n}");
        let mut wrong = password.to_vec();
        wrong.push(b'x');
        assert!(!md5::verify(user, &wrong, &challenge, &response), "{n}");
        let truncated = &user[..user.len().min(md5::USER_FIELD_LEN)];
        assert_eq!(md5::response_user(&response), truncated, "{n}: user field");
    }
}

#[test]
fn md5_captures_parse() {
    let doc = load("md5.json");
    let captures = list(&doc, "captures_password_unknown");
    assert_eq!(captures.len(), 3);
    for c in captures {
        let n = name(c);
        assert_eq!(hex_of(c, "challenge").len(), md5::CHALLENGE_LEN, "{n}");
        let response: [u8; md5::RESPONSE_LEN] = arr(&hex_of(c, "response"));
        assert_eq!(md5::response_user(&response), b"test", "{n}");
        assert!(response[20..].iter().all(|&b| b == 0), "{n}: NUL padding");
    }
}

// ---------------------------------------------------------------------------------------------
// udp.json

#[test]
fn udp_headers() {
    let doc = load("udp.json");
    for p in list(&doc, "packets") {
        let n = name(p);
        let seq = u32::try_from(u64_of(p, "seq")).unwrap();
        let header = hex_of(p, "header");
        let mut datagram = [0u8; 16];
        assert!(udp::write_seq(&mut datagram, seq), "{n}");
        assert_eq!(&datagram[..udp::UDP_HEADER_LEN], header.as_slice(), "{n}");
        assert!(datagram[udp::UDP_HEADER_LEN..].iter().all(|&b| b == 0));
        assert_eq!(udp::read_seq(&header), Some(seq), "{n}");
    }
}

#[test]
fn udp_datagram_sizes() {
    let doc = load("udp.json");
    for e in list(&doc["datagram_size"], "examples") {
        let tx_size = u16::try_from(u64_of(e, "tx_size")).unwrap();
        // Our reading is btest.c's: tx_size is the IPv4 packet size.
        let payload = udp::payload_len(tx_size, false).unwrap();
        assert_eq!(payload as u64, u64_of(e, "btest_c_payload"));
        assert_eq!(udp::wire_bytes(payload, false), u64::from(tx_size));
        assert_eq!(u64::from(tx_size), u64_of(e, "btest_rs_payload"));
    }
}

#[test]
fn udp_ports() {
    let doc = load("udp.json");
    for p in list(&doc, "port_messages") {
        let n = name(p);
        let server = u16::try_from(u64_of(p, "server_udp_port")).unwrap();
        let bytes = hex_of(p, "bytes");
        assert_eq!(udp::encode_port(server).as_slice(), bytes, "{n}");
        assert_eq!(udp::decode_port(arr(&bytes)), server, "{n}");
        assert_eq!(
            server + proto::CLIENT_UDP_PORT_OFFSET,
            u16::try_from(u64_of(p, "client_udp_port")).unwrap(),
            "{n}"
        );
    }
}

#[test]
fn udp_nat_probe_is_ignored() {
    let doc = load("udp.json");
    let probe = hex_of(&doc["nat_probe"], "bytes");
    assert!(probe.is_empty());
    assert_eq!(udp::read_seq(&probe), None, "receivers ignore it");
}

#[test]
fn udp_loss_counting() {
    let doc = load("udp.json");
    let mut covered = 0;
    for c in list(&doc, "loss_counting") {
        let n = name(c);
        let seqs: Vec<u32> = list(c, "seqs")
            .iter()
            .map(|s| u32::try_from(s.as_u64().unwrap()).unwrap())
            .collect();
        let mut t = SeqTracker::new();
        for &s in &seqs {
            t.record(s);
        }
        let _ = t.finish();
        let totals = t.totals();
        assert_eq!(totals.received, seqs.len() as u64, "{n}");
        // Lost = never arrived, counted over the range the stream covered.
        let lo = *seqs.iter().min().unwrap();
        let hi = *seqs.iter().max().unwrap();
        let never = (lo..=hi).filter(|s| !seqs.contains(s)).count() as u64;
        assert_eq!(totals.lost, never, "{n}");
        match n {
            "in_order" => assert_eq!(totals, counts(4, 0, 0)),
            "gap" => {
                assert_eq!(totals.lost, 4);
                assert_eq!(totals.lost, u64_of(c, "lost_btestrs"));
            }
            "reorder" => {
                // btest-rs would say 2; nothing was lost, one datagram came late.
                assert_eq!(totals, counts(4, 0, 1));
                assert_eq!(totals.lost, u64_of(c, "lost_c"));
            }
            other => panic!("loss case {other} is not covered"),
        }
        covered += 1;
    }
    assert_eq!(covered, 3);
}

fn counts(received: u64, lost: u64, reordered: u64) -> LossCounts {
    LossCounts {
        received,
        lost,
        reordered,
        duplicates: 0,
    }
}
