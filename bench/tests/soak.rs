//! The soak driver against an in-process fake RADIUS server that answers like vip-bridge's
//! policies would: a current TOTP code is accepted, anything else rejected, "push" accepted,
//! requests from the challenge source get an Access-Challenge with a State, and a request with
//! that State is checked as a code.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vip_bench::radius::{self, Secret};
use vip_bench::soak::{self, Kind, Mix, Progress, SoakConfig};

const KEY: &[u8] = b"12345678901234567890";
const SECRET: &[u8] = b"testing123";

struct Fake {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `drop_every`: drop the first transmission of every request whose Identifier is a multiple
/// of it (0: none), so the generator has to retransmit. `silent`: never answer.
fn fake(drop_every: u8, silent: bool) -> Fake {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let secret = Secret::new(SECRET);
        let mut seen: HashSet<(SocketAddr, [u8; 16])> = HashSet::new();
        let mut buf = [0u8; 4096];
        while !flag.load(Ordering::Relaxed) {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if silent {
                continue;
            }
            let p = &buf[..n];
            let id = p[1];
            let auth: [u8; 16] = p[4..20].try_into().unwrap();
            if drop_every > 0 && id % drop_every == 0 && seen.insert((peer, auth)) {
                continue;
            }
            assert_eq!(
                radius::request_message_authenticator_ok(p, &secret),
                Some(true)
            );
            let user = radius::find_attr(p, radius::ATTR_USER_NAME)
                .unwrap()
                .to_vec();
            let hidden = radius::find_attr(p, radius::ATTR_USER_PASSWORD).unwrap();
            let password = radius::unhide_password(hidden, &secret, &auth);
            let state = radius::find_attr(p, radius::ATTR_STATE).map(<[u8]>::to_vec);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            // The step before counts too (a request sent just before a step boundary).
            let good = |pw: &[u8]| {
                [now, now.saturating_sub(30)]
                    .iter()
                    .any(|t| vip_bench::totp::code(KEY, *t, 6).as_bytes() == pw)
            };
            let mut want_state = b"st-".to_vec();
            want_state.extend_from_slice(&user);
            let (code, attrs): (u8, Vec<(u8, Vec<u8>)>) = if let Some(s) = state {
                if s == want_state && good(&password) {
                    (radius::ACCESS_ACCEPT, vec![])
                } else {
                    (radius::ACCESS_REJECT, vec![])
                }
            } else if peer.ip() == IpAddr::from([127, 0, 0, 2]) {
                (
                    radius::ACCESS_CHALLENGE,
                    vec![
                        (radius::ATTR_REPLY_MESSAGE, b"Enter your code:".to_vec()),
                        (radius::ATTR_STATE, want_state),
                    ],
                )
            } else if password == b"push" || good(&password) {
                (radius::ACCESS_ACCEPT, vec![])
            } else {
                (radius::ACCESS_REJECT, vec![])
            };
            let attrs: Vec<(u8, &[u8])> = attrs.iter().map(|(t, v)| (*t, &v[..])).collect();
            // Deterministic: a repeat gets the same bytes, as from a response cache.
            let reply = radius::build_reply(code, id, &auth, &secret, &attrs, None).unwrap();
            let _ = sock.send_to(&reply, peer);
        }
    });
    Fake { addr, stop }
}

fn cfg(server: SocketAddr, logins: u64) -> SoakConfig {
    SoakConfig {
        server,
        secret: Secret::new(SECRET),
        challenge_source: IpAddr::from([127, 0, 0, 2]),
        sockets: 3,
        challenge_sockets: 1,
        rate: 4000.0,
        logins,
        mix: Mix::default(),
        seed: 3,
        user_pattern: "user{n}".into(),
        user_start: 0,
        user_count: 100_000,
        totp_key: KEY.to_vec(),
        digits: 6,
        push_password: b"push".to_vec(),
        menu_password: b"menu".to_vec(),
        nas_identifier: b"t".to_vec(),
        timeout: Duration::from_millis(300),
        push_timeout: Duration::from_millis(300),
        retries: 2,
        repeats: 1,
        socket_buffer: 1 << 20,
    }
}

fn run(c: SoakConfig) -> (soak::SoakResult, Arc<Progress>) {
    let progress = Arc::new(Progress::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt
        .block_on(soak::run(Arc::new(c), progress.clone()))
        .unwrap();
    (r, progress)
}

#[test]
fn every_kind_gets_its_expected_answer() {
    let f = fake(0, false);
    let (r, progress) = run(cfg(f.addr, 4000));
    let c = &r.counters;
    let t = &c.requests.tally;
    assert_eq!(progress.done.load(Ordering::Relaxed), 4000);
    assert_eq!(t.lost, 0);
    assert_eq!(t.bad_authenticator, 0);
    assert_eq!(t.missing_message_authenticator, 0);
    assert!(
        c.unexpected_samples.is_empty(),
        "{:?}",
        c.unexpected_samples
    );
    let mut started = 0;
    for k in Kind::ALL {
        let kc = &c.kinds[k as usize];
        assert!(kc.started > 0, "{}", k.name());
        assert_eq!(kc.expected, kc.started, "{}", k.name());
        assert_eq!(kc.finished, kc.started, "{}", k.name());
        started += kc.started;
    }
    assert_eq!(started, 4000);
    let ch = c.kinds[Kind::Challenge as usize].started;
    let re = c.kinds[Kind::Retransmit as usize].started;
    assert_eq!(t.challenge, ch);
    // One request per login, one more per challenge (second round) and per retransmit login.
    assert_eq!(t.sent, 4000 + ch + re);
    assert_eq!(t.repeat_identical, re);
    assert_eq!(t.repeat_different, 0);
}

#[test]
fn dropped_datagrams_are_retransmitted_not_lost() {
    let f = fake(7, false);
    let (r, _) = run(cfg(f.addr, 1500));
    let t = &r.counters.requests.tally;
    assert!(t.retransmits > 0);
    assert_eq!(t.lost, 0);
    assert!(
        r.counters.unexpected_samples.is_empty(),
        "{:?}",
        r.counters.unexpected_samples
    );
}

#[test]
fn a_silent_server_loses_every_login_and_the_run_still_ends() {
    let f = fake(0, true);
    let mut c = cfg(f.addr, 50);
    c.timeout = Duration::from_millis(50);
    c.push_timeout = Duration::from_millis(50);
    c.retries = 1;
    let (r, progress) = run(c);
    assert_eq!(progress.done.load(Ordering::Relaxed), 50);
    assert_eq!(progress.lost.load(Ordering::Relaxed), 50);
    assert_eq!(r.counters.requests.tally.lost, 50);
    assert_eq!(r.counters.requests.tally.retransmits, 50);
}
