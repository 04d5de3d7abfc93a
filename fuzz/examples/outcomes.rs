//! Replays a corpus of `server_handshake` or `ecsrp5_client` inputs outside the fuzzer and
//! prints how many ended in each outcome, with the smallest input of each: a quick view of how
//! deep the fuzzer got, and where to pick regression inputs from.
//!
//! `cargo run --example outcomes -- server_handshake|ecsrp5_client CORPUS_DIR`

use std::collections::BTreeMap;
use std::fs;

use btest_rs::handshake::client::{Credentials, handshake};
use btest_rs::proto::{Command, Direction, Payload, Protocol};
use btest_rs_fuzz::{
    FuzzStream, SRP_PASSWORD, SRP_USER, StreamOptions, authenticator, counter_random, serve,
    srp_client,
};

/// The variant name of a `Debug` rendering, with its first field when that is a variant too
/// (`EcSrp5(Truncated { msg: Msg3, ..})` becomes `EcSrp5(Truncated Msg3)`).
fn kind(debug: &str) -> String {
    let cut: String = debug
        .chars()
        .take_while(|c| !matches!(c, ',' | '}'))
        .collect();
    cut.replace(" {", "")
        .replace("msg: ", "")
        .replace("stage: ", "")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, target, dir] = &args[..] else {
        eprintln!("usage: outcomes server_handshake|ecsrp5_client CORPUS_DIR");
        std::process::exit(2);
    };
    let mut seen: BTreeMap<String, (usize, Vec<u8>)> = BTreeMap::new();
    for entry in fs::read_dir(dir).expect("corpus folder") {
        let data = fs::read(entry.expect("entry").path()).expect("read input");
        let [a, opts, peer @ ..] = &data[..] else {
            continue;
        };
        let mut stream = FuzzStream::new(peer, StreamOptions::from_byte(*opts));
        let outcome = match target.as_str() {
            "server_handshake" => kind(&format!(
                "auth{} {:?}",
                a % 4,
                serve(&mut stream, authenticator(*a))
            )),
            "ecsrp5_client" if a & 0x80 != 0 => {
                kind(&format!("bare {:?}", srp_client(&mut stream)))
            }
            "ecsrp5_client" => {
                let cmd = Command {
                    protocol: if a & 2 == 0 {
                        Protocol::Tcp
                    } else {
                        Protocol::Udp
                    },
                    direction: if a & 3 == 1 {
                        Direction::ServerRx
                    } else {
                        Direction::ServerTx
                    },
                    payload: Payload::Zeros,
                    tcp_conn_count: if a & 3 == 1 { 4 } else { 0 },
                    tx_size: 1500,
                    client_buf_size: 0,
                    remote_tx_speed: 0,
                    local_tx_speed: 0,
                };
                let creds = Credentials::new(SRP_USER, SRP_PASSWORD);
                let creds = (a & 4 == 0).then_some(&creds);
                let r = handshake(&mut stream, &cmd, creds, &mut counter_random());
                kind(&format!("whole {r:?}"))
            }
            _ => panic!("unknown target {target}"),
        };
        let slot = seen.entry(outcome).or_insert((0, data.clone()));
        slot.0 += 1;
        if data.len() < slot.1.len() {
            slot.1 = data;
        }
    }
    for (outcome, (n, smallest)) in seen {
        let hex: String = smallest.iter().map(|b| format!("{b:02x}")).collect();
        println!("{n:6}  {outcome}\n        smallest: {hex}");
    }
}
