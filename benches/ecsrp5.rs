//! CPU time of one side's EC-SRP5 handshake math (no I/O), median of 100 runs.
//!
//! Prints `bench=ecsrp5_server_us value=<µs> unit=us` and the same for the client.
//! `ECSRP5_BENCH_DETAIL=1` adds a breakdown of the server's steps on stderr.
#![allow(unsafe_code)] // FFI for test tooling (signals, namespaces, sockets bound to a source address)

use std::hint::black_box;
use std::time::Duration;

use btest_rs::auth::ecsrp5::Verifier;
use btest_rs::auth::ecsrp5::srp;

const RUNS: usize = 100;

/// CPU time consumed by this thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median_us(mut f: impl FnMut()) -> f64 {
    f(); // warm up (builds the generator table on first use)
    let mut samples: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = thread_cpu();
            f();
            thread_cpu() - start
        })
        .collect();
    samples.sort();
    samples[RUNS / 2].as_secs_f64() * 1e6
}

fn key(n: u32, tag: u8) -> [u8; 32] {
    let mut k = [tag; 32];
    k[..4].copy_from_slice(&n.to_be_bytes());
    k
}

fn main() {
    let (user, password) = (b"testuser".as_slice(), b"testpass".as_slice());
    let verifier = Verifier::derive(user, password, [0x5a; 16]);

    // Messages for the server to consume, prepared outside the timed region.
    let mut n = 0u32;
    let mut next = || {
        n += 1;
        n
    };
    let client_key = srp::client_key(key(1, 0xa1)).unwrap();
    let msg1 = srp::client_msg1(user, client_key.public()).unwrap();

    // Server: parse MSG1, draw W_b, build MSG2, compute Z, check MSG3, build MSG4. MSG3 comes
    // from a client that saw this run's W_b, so it is computed per run outside the timing.
    let mut server_samples = Vec::with_capacity(RUNS);
    for _ in 0..=RUNS {
        let s_b = key(next(), 0xb2);
        let server_key = srp::server_key(&verifier, s_b).unwrap();
        let msg2 = srp::server_msg2(server_key.public(), &verifier.salt);
        let (w_b, salt) = srp::parse_msg2(&msg2).unwrap();
        let msg3 = srp::client_proof(user, password, &client_key, &w_b, &salt)
            .unwrap()
            .client_cc;
        let start = thread_cpu();
        let (u, w_a) = srp::parse_msg1(black_box(&msg1)).unwrap();
        let key = srp::server_key(&verifier, black_box(s_b)).unwrap();
        let msg2 = srp::server_msg2(key.public(), &verifier.salt);
        let session = srp::server_session(&verifier, &key, &w_a).unwrap();
        let msg4 = srp::server_verify_and_msg4(&session, u, black_box(&msg3)).unwrap();
        black_box((msg2, msg4));
        server_samples.push(thread_cpu() - start);
    }
    server_samples.remove(0); // warm-up
    server_samples.sort();
    let server_us = server_samples[RUNS / 2].as_secs_f64() * 1e6;

    // Client: draw W_a, build MSG1, parse MSG2, derive i and compute Z, check MSG4.
    let server_key = srp::server_key(&verifier, key(7, 0xb2)).unwrap();
    let msg2 = srp::server_msg2(server_key.public(), &verifier.salt);
    let client_us = median_us(|| {
        let s_a = key(next(), 0xa1);
        let k = srp::client_key(black_box(s_a)).unwrap();
        let msg1 = srp::client_msg1(user, k.public()).unwrap();
        let (w_b, salt) = srp::parse_msg2(black_box(&msg2)).unwrap();
        let session = srp::client_proof(user, password, &k, &w_b, &salt).unwrap();
        // MSG4 check against our own value (the verification cost is the same).
        srp::client_verify_msg4(&session, black_box(&session.server_cc)).unwrap();
        black_box(msg1);
    });

    if std::env::var_os("ECSRP5_BENCH_DETAIL").is_some() {
        let (_, w_a) = srp::parse_msg1(&msg1).unwrap();
        let key = srp::server_key(&verifier, key(9, 0xb2)).unwrap();
        eprintln!(
            "  parse_msg1 (lift + small-order check): {:8.1} us",
            median_us(|| {
                black_box(srp::parse_msg1(black_box(&msg1)).unwrap());
            })
        );
        eprintln!(
            "  server_key (s_b*G table + redp1):      {:8.1} us",
            median_us(|| {
                black_box(srp::server_key(&verifier, black_box([3; 32])).unwrap());
            })
        );
        eprintln!(
            "  redp1 alone:                           {:8.1} us",
            median_us(|| {
                black_box(srp::redp1(black_box(&verifier.x_gamma), false));
            })
        );
        eprintln!(
            "  server_session (2 var. mults + lift):  {:8.1} us",
            median_us(|| {
                black_box(srp::server_session(&verifier, &key, &w_a).unwrap());
            })
        );
        eprintln!(
            "  Verifier::derive (i*G table):          {:8.1} us",
            median_us(|| {
                black_box(Verifier::derive(user, black_box(password), [1; 16]));
            })
        );
    }

    println!("bench=ecsrp5_server_us value={server_us:.1} unit=us");
    println!("bench=ecsrp5_client_us value={client_us:.1} unit=us");
}
