//! The client side against a server whose bytes are the fuzz input.
//!
//! Input: byte 0: bit 7 set runs only the EC-SRP5 client exchange, clear runs the whole client
//! handshake (bits 0-1 pick a TCP, multi-connection TCP, UDP or UDP-bidirectional command;
//! bit 2 drops the credentials); byte 1 picks how the bytes are delivered (`StreamOptions`);
//! the rest is what the server sends. Must never panic.
#![no_main]

use btest_rs::handshake::client::{Credentials, handshake};
use btest_rs::proto::{Command, Direction, Payload, Protocol};
use btest_rs_fuzz::{
    FuzzStream, SRP_PASSWORD, SRP_USER, StreamOptions, counter_random, srp_client,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, opts, peer @ ..] = data else {
        return;
    };
    let mut stream = FuzzStream::new(peer, StreamOptions::from_byte(*opts));
    if mode & 0x80 != 0 {
        let _ = srp_client(&mut stream);
        return;
    }
    let (protocol, direction, conns) = match mode & 3 {
        0 => (Protocol::Tcp, Direction::ServerTx, 0),
        1 => (Protocol::Tcp, Direction::ServerRx, 4),
        2 => (Protocol::Udp, Direction::ServerTx, 0),
        _ => (Protocol::Udp, Direction::Both, 0),
    };
    let cmd = Command {
        protocol,
        direction,
        payload: Payload::Zeros,
        tcp_conn_count: conns,
        tx_size: 1500,
        client_buf_size: 0,
        remote_tx_speed: 0,
        local_tx_speed: 0,
    };
    let creds = Credentials::new(SRP_USER, SRP_PASSWORD);
    let creds = (mode & 4 == 0).then_some(&creds);
    let mut random = counter_random();
    if let Ok(est) = handshake(&mut stream, &cmd, creds, &mut random) {
        assert_eq!(est.udp_port.is_some(), protocol == Protocol::Udp);
        if !cmd.is_multi_connection() {
            assert_eq!(est.token, 0);
        }
    }
});
