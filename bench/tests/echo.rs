//! The generator against the in-process echo server, open and closed loop, with and without
//! verification, with repeats.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use vip_bench::echo::EchoServer;
use vip_bench::load::{self, LoadConfig, Mode};
use vip_bench::radius::Secret;
use vip_bench::template::{PasswordSource, Template};

fn cfg(server: std::net::SocketAddr, mode: Mode, verify: bool) -> LoadConfig {
    LoadConfig {
        server,
        secret: Secret::new(b"testing123"),
        sockets: 4,
        mode,
        duration: Duration::from_millis(400),
        max_requests: None,
        timeout: Duration::from_millis(500),
        retries: 1,
        drain: Duration::from_millis(1500),
        template: Template {
            user_pattern: "user{n}".into(),
            user_start: 0,
            user_count: 1000,
            password: PasswordSource::Totp {
                key: b"12345678901234567890".to_vec(),
                digits: 6,
            },
            state: Some(vec![1, 2, 3]),
            nas_identifier: Some(b"t".to_vec()),
        },
        repeat: 0,
        message_authenticator: true,
        verify,
        ids_per_socket: 256,
        socket_buffer: 1 << 20,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn closed_loop_against_signed_echo_verifies_everything() {
    let echo = EchoServer::start(
        "127.0.0.1:0".parse().unwrap(),
        1,
        Some(Secret::new(b"testing123")),
    )
    .unwrap();
    let mut c = cfg(echo.addr(), Mode::Closed { concurrency: 32 }, true);
    c.max_requests = Some(2000);
    c.duration = Duration::from_secs(10);
    let r = rt().block_on(load::run(Arc::new(c))).unwrap();
    let k = &r.counters;
    assert_eq!(k.tally.sent, 2000);
    assert_eq!(k.tally.answered, 2000, "{k:?}");
    assert_eq!(k.tally.accept, 2000);
    assert_eq!(k.tally.bad_authenticator, 0);
    assert_eq!(k.tally.missing_message_authenticator, 0);
    assert_eq!(k.tally.lost, 0);
    assert_eq!(k.latency.len(), 2000);
    echo.stop();
}

#[test]
fn open_loop_against_bare_echo_without_verification() {
    let echo = EchoServer::start("127.0.0.1:0".parse().unwrap(), 1, None).unwrap();
    let r = rt()
        .block_on(load::run(Arc::new(cfg(
            echo.addr(),
            Mode::Open { rate: 2000.0 },
            false,
        ))))
        .unwrap();
    let k = &r.counters;
    // 400 ms at 2000/s: about 800 requests, all answered.
    assert!((600..=1000).contains(&k.tally.sent), "{k:?}");
    assert_eq!(k.tally.answered, k.tally.sent);
    assert_eq!(k.tally.lost, 0);
    echo.stop();
}

#[test]
fn bare_echo_fails_verification() {
    // The bare echo's replies are not signed: with verification on every one is bad and every
    // exchange ends up lost after its retransmit.
    let echo = EchoServer::start("127.0.0.1:0".parse().unwrap(), 1, None).unwrap();
    let mut c = cfg(echo.addr(), Mode::Closed { concurrency: 4 }, true);
    c.max_requests = Some(8);
    c.timeout = Duration::from_millis(100);
    c.drain = Duration::from_millis(500);
    let r = rt().block_on(load::run(Arc::new(c))).unwrap();
    let k = &r.counters;
    assert_eq!(k.tally.answered, 0);
    assert_eq!(k.tally.lost, 8, "{k:?}");
    assert_eq!(k.tally.retransmits, 8);
    assert_eq!(k.tally.bad_authenticator, 16);
    echo.stop();
}

#[test]
fn repeats_are_sent_after_each_answer_and_compared() {
    let echo = EchoServer::start(
        "127.0.0.1:0".parse().unwrap(),
        1,
        Some(Secret::new(b"testing123")),
    )
    .unwrap();
    let mut c = cfg(echo.addr(), Mode::Closed { concurrency: 8 }, true);
    c.max_requests = Some(100);
    c.repeat = 3;
    c.duration = Duration::from_secs(10);
    let r = rt().block_on(load::run(Arc::new(c))).unwrap();
    let k = &r.counters;
    assert_eq!(k.tally.sent, 400);
    assert_eq!(k.tally.answered, 400);
    assert_eq!(k.repeat_latency.len(), 300);
    // The echo signs each reply afresh but deterministically: identical bytes.
    assert_eq!(k.tally.repeat_identical, 300, "{k:?}");
    echo.stop();
}

#[test]
fn nothing_listening_counts_losses() {
    // A bound socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut c = cfg(
        silent.local_addr().unwrap(),
        Mode::Closed { concurrency: 2 },
        true,
    );
    c.max_requests = Some(2);
    c.timeout = Duration::from_millis(50);
    c.retries = 2;
    c.drain = Duration::from_millis(400);
    let r = rt().block_on(load::run(Arc::new(c))).unwrap();
    assert_eq!(r.counters.tally.lost, 2);
    assert_eq!(r.counters.tally.retransmits, 4);
    assert_eq!(r.counters.tally.answered, 0);
}
