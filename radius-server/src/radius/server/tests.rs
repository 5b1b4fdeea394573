//! The server loop over real UDP sockets on loopback, with a deterministic fake engine.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use radius::core::avp::AVP;
use vip_core::engine::{Accept, Challenge, Factor, LoginPolicy};

use super::*;
use crate::radius::clients::parse_address;
use crate::radius::packet::{mac_key, sign_request};

const SECRET: &str = "s3cret";
const LEGACY_SECRET: &str = "legacy";

/// alice/123456 → Accept; alice/push → Accept after 400 ms; alice/chal → Challenge with
/// State "S1"; State "S1" + 654321 → Accept; 0123456789abcdef or 128 × z → Accept;
/// alice/bigstate → Challenge with a 253-octet
/// State; alice/long → Reject with a 1000-character message; anything else → Reject
/// "Wrong code".
/// What the fake saw of each request: user, NAS-Identifier, Calling-Station-Id, peer.
type SeenReq = (String, Option<String>, Option<String>, Option<IpAddr>);

#[derive(Default)]
struct Fake {
    calls: AtomicUsize,
    seen: Mutex<Vec<SeenReq>>,
}

impl Authenticate for Fake {
    fn authenticate(&self, req: AuthRequest) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut seen) = self.seen.lock() {
                seen.push((
                    req.user.clone(),
                    req.client.nas_identifier.clone(),
                    req.client.remote.clone(),
                    req.client.peer,
                ));
            }
            let pw = req
                .secret
                .as_ref()
                .map(|s| s.expose().to_owned())
                .unwrap_or_default();
            let accept = Outcome::Accept(Accept {
                factor: Factor::Code,
                credential_id: None,
                credential_type: None,
                authn_id: None,
                failed_open: false,
                reply_attributes: Vec::new(),
            });
            match (req.state.as_deref(), pw.as_str()) {
                (Some(b"S1"), "654321") => accept,
                (None, "123456") => accept,
                // Full User-Password blocks: 16 and 128 octets.
                (None, p) if p == "0123456789abcdef" || p == "z".repeat(128) => accept,
                (None, "push") => {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    accept
                }
                (None, "chal") => Outcome::Challenge(Challenge {
                    prompt: format!("{}\nEnter the code:", "x".repeat(300)),
                    echo: false,
                    state: b"S1".to_vec(),
                }),
                (None, "bigstate") => Outcome::Challenge(Challenge {
                    prompt: "Enter the code:".into(),
                    echo: false,
                    state: vec![b'S'; 253],
                }),
                (None, "long") => Outcome::Reject(Reject {
                    reason: RejectReason::BadCode,
                    message: "y".repeat(1000),
                }),
                _ => Outcome::Reject(Reject {
                    reason: RejectReason::BadCode,
                    message: "Wrong code".into(),
                }),
            }
        })
    }

    fn state_is_live(&self, state: &[u8]) -> bool {
        state == b"S1"
    }
}

struct Harness {
    addr: SocketAddr,
    /// The accounting listener.
    acct: SocketAddr,
    accounting: Arc<Accounting>,
    fake: Arc<Fake>,
    stats: Arc<Stats>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(max_in_flight: usize) -> Harness {
    let policy = Arc::new(LoginPolicy::default());
    let clients = ClientTable::new(vec![
        Client::new(
            "nas".into(),
            parse_address("127.0.0.1").unwrap(),
            Secret::new(SECRET),
            "default".into(),
            policy.clone(),
            true,
        ),
        Client::new(
            "legacy".into(),
            parse_address("127.0.0.3").unwrap(),
            Secret::new(LEGACY_SECRET),
            "default".into(),
            policy,
            false,
        ),
    ]);
    let settings = RadiusSettings {
        listen: vec!["0.0.0.0:0".parse().unwrap()],
        response_cache_ttl: Duration::from_secs(15),
        response_cache_size: 1000,
        max_in_flight,
        receive_buffer: 1 << 20,
        accounting_listen: vec!["0.0.0.0:0".parse().unwrap()],
        clients,
    };
    let fake = Arc::new(Fake::default());
    let stats = Arc::new(Stats::default());
    let server = RadiusServer::bind(settings, fake.clone(), stats.clone())
        .await
        .unwrap();
    let port = server.local_addrs()[0].port();
    let acct_port = server.accounting_addrs()[0].port();
    let accounting = server.accounting();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(server.run(rx, Duration::from_secs(5)));
    Harness {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        acct: SocketAddr::from(([127, 0, 0, 1], acct_port)),
        accounting,
        fake,
        stats,
        shutdown: tx,
        task,
    }
}

struct Req<'a> {
    code: u8,
    id: u8,
    auth: [u8; 16],
    secret: &'a str,
    user: Option<&'a str>,
    password: Option<&'a str>,
    state: Option<&'a [u8]>,
    proxy: Vec<&'a [u8]>,
    ma: bool,
    extra: Vec<(u8, Vec<u8>)>,
}

impl<'a> Req<'a> {
    fn access(id: u8, user: &'a str, password: &'a str) -> Req<'a> {
        Req {
            code: pkt::CODE_ACCESS_REQUEST,
            id,
            auth: rand::random(),
            secret: SECRET,
            user: Some(user),
            password: Some(password),
            state: None,
            proxy: vec![],
            ma: true,
            extra: vec![],
        }
    }

    fn encode(&self) -> Vec<u8> {
        let pw = self.password.map(|p| {
            AVP::from_user_password(2, p.as_bytes(), self.secret.as_bytes(), &self.auth)
                .unwrap()
                .encode_bytes()
        });
        let mut attrs: Vec<(u8, &[u8])> = Vec::new();
        if self.ma {
            attrs.push((80, &[0u8; 16]));
        }
        if let Some(u) = self.user {
            attrs.push((1, u.as_bytes()));
        }
        if let Some(p) = &pw {
            attrs.push((2, p));
        }
        if let Some(s) = self.state {
            attrs.push((24, s));
        }
        for p in &self.proxy {
            attrs.push((33, p));
        }
        for (t, v) in &self.extra {
            attrs.push((*t, v));
        }
        sign_request(
            self.code,
            self.id,
            &self.auth,
            &attrs,
            &mac_key(self.secret.as_bytes()),
        )
    }
}

async fn client_sock(ip: &str) -> UdpSocket {
    UdpSocket::bind(format!("{ip}:0")).await.unwrap()
}

async fn recv(sock: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

async fn exchange(sock: &UdpSocket, to: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    sock.send_to(bytes, to).await.unwrap();
    recv(sock, Duration::from_secs(2)).await
}

/// Checks the reply's Response Authenticator and Message-Authenticator (first attribute).
fn check_reply(reply: &[u8], request: &[u8], secret: &str) -> Vec<(u8, Vec<u8>)> {
    assert!(Packet::is_authentic_response(
        reply,
        request,
        secret.as_bytes()
    ));
    assert_eq!(reply[1], request[1], "identifier");
    assert_eq!(
        reply[20],
        pkt::ATTR_MESSAGE_AUTHENTICATOR,
        "Message-Authenticator first"
    );
    let mut copy = reply.to_vec();
    copy[4..20].copy_from_slice(&request[4..20]);
    assert!(pkt::verify_message_authenticator(
        &mac_key(secret.as_bytes()),
        &copy,
        20
    ));
    pkt::attributes(reply)
        .unwrap()
        .into_iter()
        .map(|(_, t, v)| (t, v.to_vec()))
        .collect()
}

fn values(attrs: &[(u8, Vec<u8>)], typ: u8) -> Vec<Vec<u8>> {
    attrs
        .iter()
        .filter(|(t, _)| *t == typ)
        .map(|(_, v)| v.clone())
        .collect()
}

#[tokio::test]
async fn accept_reject_challenge_are_signed_with_ma_first() {
    let h = start(8).await;
    let sock = client_sock("127.0.0.1").await;

    let mut r = Req::access(1, "alice", "123456");
    r.extra.push((32, b"vpn-1".to_vec()));
    r.extra.push((31, b"203.0.113.9".to_vec()));
    r.extra.push((4, vec![192, 0, 2, 7]));
    let req = r.encode();
    let reply = exchange(&sock, h.addr, &req).await.expect("accept");
    assert_eq!(reply[0], pkt::CODE_ACCESS_ACCEPT);
    check_reply(&reply, &req, SECRET);
    {
        let seen = h.fake.seen.lock().unwrap();
        let (user, nas_id, remote, peer) = &seen[0];
        assert_eq!(user, "alice");
        assert_eq!(nas_id.as_deref(), Some("vpn-1"));
        assert_eq!(remote.as_deref(), Some("203.0.113.9"));
        assert_eq!(*peer, Some("192.0.2.7".parse().unwrap()));
    }

    let req = Req::access(2, "alice", "000000").encode();
    let reply = exchange(&sock, h.addr, &req).await.expect("reject");
    assert_eq!(reply[0], pkt::CODE_ACCESS_REJECT);
    let attrs = check_reply(&reply, &req, SECRET);
    assert_eq!(values(&attrs, 18), vec![b"Wrong code".to_vec()]);

    let req = Req::access(3, "alice", "chal").encode();
    let reply = exchange(&sock, h.addr, &req).await.expect("challenge");
    assert_eq!(reply[0], pkt::CODE_ACCESS_CHALLENGE);
    let attrs = check_reply(&reply, &req, SECRET);
    let msgs = values(&attrs, 18);
    assert_eq!(msgs.len(), 2, "a 316-octet prompt is split in two");
    assert_eq!(msgs[0].len(), 253);
    assert!(String::from_utf8(msgs.concat())
        .unwrap()
        .ends_with("Enter the code:"));
    assert_eq!(values(&attrs, 24), vec![b"S1".to_vec()]);
    assert_eq!(values(&attrs, 76), vec![vec![0, 0, 0, 0]]);

    let mut r = Req::access(4, "alice", "654321");
    r.state = Some(b"S1");
    let req = r.encode();
    let reply = exchange(&sock, h.addr, &req)
        .await
        .expect("accept after challenge");
    assert_eq!(reply[0], pkt::CODE_ACCESS_ACCEPT);

    assert_eq!(Stats::get(&h.stats.access_accept), 2);
    assert_eq!(Stats::get(&h.stats.access_reject), 1);
    assert_eq!(Stats::get(&h.stats.access_challenge), 1);
    h.shutdown.send_replace(true);
    h.task.await.unwrap();
}

#[tokio::test]
async fn proxy_state_is_copied_in_order() {
    let h = start(8).await;
    let sock = client_sock("127.0.0.1").await;
    let mut r = Req::access(9, "alice", "000000");
    r.proxy = vec![b"first", b"second", b"third"];
    let req = r.encode();
    let reply = exchange(&sock, h.addr, &req).await.expect("reply");
    let attrs = check_reply(&reply, &req, SECRET);
    assert_eq!(
        values(&attrs, 33),
        vec![b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
    );
    // Status-Server too.
    let mut r = Req::access(10, "alice", "x");
    r.code = pkt::CODE_STATUS_SERVER;
    r.user = None;
    r.password = None;
    r.proxy = vec![b"p"];
    let req = r.encode();
    let reply = exchange(&sock, h.addr, &req).await.expect("status reply");
    let attrs = check_reply(&reply, &req, SECRET);
    assert_eq!(values(&attrs, 33), vec![b"p".to_vec()]);
}

#[tokio::test]
async fn retransmits_join_the_pending_login_and_get_the_cached_reply() {
    let h = start(8).await;
    let sock = client_sock("127.0.0.1").await;
    let req = Req::access(5, "alice", "push").encode();
    sock.send_to(&req, h.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    sock.send_to(&req, h.addr).await.unwrap(); // while the push is pending
    let first = recv(&sock, Duration::from_secs(2)).await.expect("answer");
    assert!(
        recv(&sock, Duration::from_millis(300)).await.is_none(),
        "exactly one answer"
    );
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 1);
    assert_eq!(Stats::get(&h.stats.dropped_duplicate_in_progress), 1);

    let again = exchange(&sock, h.addr, &req).await.expect("cached answer");
    assert_eq!(again, first, "byte-identical");
    assert_eq!(
        h.fake.calls.load(Ordering::SeqCst),
        1,
        "not processed again"
    );
    assert_eq!(Stats::get(&h.stats.duplicates_answered_from_cache), 1);

    // Same Identifier, new authenticator: a new request.
    let req2 = Req::access(5, "alice", "123456").encode();
    let reply = exchange(&sock, h.addr, &req2).await.expect("new request");
    check_reply(&reply, &req2, SECRET);
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn status_server_is_answered_at_once_even_while_logins_wait() {
    let h = start(8).await;
    let sock = client_sock("127.0.0.1").await;
    let push = Req::access(1, "alice", "push").encode();
    sock.send_to(&push, h.addr).await.unwrap();
    let mut r = Req::access(2, "alice", "x");
    r.code = pkt::CODE_STATUS_SERVER;
    r.password = None;
    let status = r.encode();
    sock.send_to(&status, h.addr).await.unwrap();
    let first = recv(&sock, Duration::from_millis(300))
        .await
        .expect("status answer first");
    assert_eq!(first[1], 2);
    assert_eq!(first[0], pkt::CODE_ACCESS_ACCEPT);
    check_reply(&first, &status, SECRET);
    assert_eq!(
        h.fake.calls.load(Ordering::SeqCst),
        1,
        "Status-Server never reaches the engine"
    );
    // Without Message-Authenticator: dropped.
    r.ma = false;
    r.id = 3;
    let bare = r.encode();
    sock.send_to(&bare, h.addr).await.unwrap();
    let next = recv(&sock, Duration::from_secs(2))
        .await
        .expect("push answer");
    assert_eq!(next[1], 1, "only the push answer arrives");
    assert!(recv(&sock, Duration::from_millis(200)).await.is_none());
    assert_eq!(Stats::get(&h.stats.status_server), 1);
}

#[tokio::test]
async fn bad_packets_are_dropped_and_the_server_keeps_answering() {
    let h = start(8).await;
    let sock = client_sock("127.0.0.1").await;
    let quiet = Duration::from_millis(250);

    // Wrong secret: the Message-Authenticator does not verify.
    let mut r = Req::access(1, "alice", "123456");
    r.secret = "wrong";
    assert!(exchange_quiet(&sock, h.addr, &r.encode(), quiet).await);
    // Tampered Message-Authenticator.
    let mut bad = Req::access(2, "alice", "123456").encode();
    bad[25] ^= 0xff;
    assert!(exchange_quiet(&sock, h.addr, &bad, quiet).await);
    // Missing Message-Authenticator (required for this client).
    let mut r = Req::access(3, "alice", "123456");
    r.ma = false;
    assert!(exchange_quiet(&sock, h.addr, &r.encode(), quiet).await);
    // Truncated: Length says more than was sent.
    let good = Req::access(4, "alice", "123456").encode();
    assert!(exchange_quiet(&sock, h.addr, &good[..good.len() - 3], quiet).await);
    // Oversized: Length above 4096, sent whole.
    let mut big = Req::access(5, "alice", "123456").encode();
    big.resize(5000, 0);
    big[2..4].copy_from_slice(&5000u16.to_be_bytes());
    assert!(exchange_quiet(&sock, h.addr, &big, quiet).await);
    // An attribute running past the end.
    let mut broken = Req::access(6, "alice", "123456").encode();
    assert_eq!(broken[38], 1, "User-Name follows Message-Authenticator");
    broken[39] = 200;
    assert!(exchange_quiet(&sock, h.addr, &broken, quiet).await);
    // Accounting-Request on the auth port.
    let mut acct = Req::access(7, "alice", "123456");
    acct.code = 4;
    assert!(exchange_quiet(&sock, h.addr, &acct.encode(), quiet).await);
    // Unknown client (another loopback source).
    let stranger = client_sock("127.0.0.2").await;
    let req = Req::access(8, "alice", "123456").encode();
    assert!(exchange_quiet(&stranger, h.addr, &req, quiet).await);

    let req = Req::access(9, "alice", "123456").encode();
    let reply = exchange(&sock, h.addr, &req)
        .await
        .expect("still answering");
    check_reply(&reply, &req, SECRET);

    let s = &h.stats;
    assert_eq!(Stats::get(&s.dropped_bad_message_authenticator), 2);
    assert_eq!(Stats::get(&s.dropped_missing_message_authenticator), 1);
    assert_eq!(Stats::get(&s.dropped_malformed), 3);
    assert_eq!(Stats::get(&s.dropped_unsupported_code), 1);
    assert_eq!(Stats::get(&s.dropped_unknown_client), 1);
    assert_eq!(
        h.fake.calls.load(Ordering::SeqCst),
        1,
        "no dropped packet reached the engine"
    );

    // A bad Message-Authenticator never touches the cache: the good packet with the same
    // Identifier and authenticator is processed afterwards.
    let r = Req::access(20, "alice", "123456");
    let good = r.encode();
    let mut forged = good.clone();
    forged[25] ^= 1;
    assert!(exchange_quiet(&sock, h.addr, &forged, quiet).await);
    assert!(exchange(&sock, h.addr, &good).await.is_some());
}

async fn exchange_quiet(sock: &UdpSocket, to: SocketAddr, bytes: &[u8], wait: Duration) -> bool {
    sock.send_to(bytes, to).await.unwrap();
    recv(sock, wait).await.is_none()
}

#[tokio::test]
async fn legacy_client_without_message_authenticator() {
    let h = start(8).await;
    let sock = client_sock("127.0.0.3").await;
    let mut r = Req::access(1, "alice", "123456");
    r.secret = LEGACY_SECRET;
    r.ma = false;
    let req = r.encode();
    let reply = exchange(&sock, h.addr, &req)
        .await
        .expect("legacy accepted");
    assert_eq!(reply[0], pkt::CODE_ACCESS_ACCEPT);
    check_reply(&reply, &req, LEGACY_SECRET);
    // With Proxy-State but no Message-Authenticator: dropped.
    r.id = 2;
    r.auth = rand::random();
    r.proxy = vec![b"x"];
    assert!(exchange_quiet(&sock, h.addr, &r.encode(), Duration::from_millis(250)).await);
    assert_eq!(
        Stats::get(&h.stats.dropped_proxy_state_without_message_authenticator),
        1
    );
    // A Message-Authenticator, when sent, is still verified.
    let mut r = Req::access(3, "alice", "123456");
    r.secret = LEGACY_SECRET;
    let mut bad = r.encode();
    bad[25] ^= 1;
    assert!(exchange_quiet(&sock, h.addr, &bad, Duration::from_millis(250)).await);
}

#[tokio::test]
async fn overload_drops_new_logins_but_serves_continuing_ones() {
    let h = start(1).await; // one general permit, one reserved
    let sock = client_sock("127.0.0.1").await;
    let push = Req::access(1, "alice", "push").encode();
    sock.send_to(&push, h.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A second first-round login: no capacity, dropped.
    let other = Req::access(2, "alice", "123456").encode();
    sock.send_to(&other, h.addr).await.unwrap();
    // A continuing login (live State): admitted through the reserved share.
    let mut cont = Req::access(3, "alice", "654321");
    cont.state = Some(b"S1");
    let cont = cont.encode();
    sock.send_to(&cont, h.addr).await.unwrap();
    let a = recv(&sock, Duration::from_secs(2))
        .await
        .expect("continuing login answered");
    assert_eq!(a[1], 3);
    let b = recv(&sock, Duration::from_secs(2))
        .await
        .expect("push answered");
    assert_eq!(b[1], 1);
    assert!(recv(&sock, Duration::from_millis(200)).await.is_none());
    assert_eq!(Stats::get(&h.stats.dropped_overload), 1);
    assert_eq!(Stats::get(&h.stats.admitted_reserved), 1);
    // The dropped request was forgotten: its retransmit is processed now.
    let reply = exchange(&sock, h.addr, &other)
        .await
        .expect("retransmit processed");
    assert_eq!(reply[0], pkt::CODE_ACCESS_ACCEPT);
}

#[tokio::test]
async fn shutdown_lets_in_flight_logins_finish() {
    let h = start(8).await;
    let sock = client_sock("127.0.0.1").await;
    let push = Req::access(1, "alice", "push").encode();
    sock.send_to(&push, h.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.shutdown.send_replace(true);
    let reply = recv(&sock, Duration::from_secs(2))
        .await
        .expect("answered during shutdown");
    assert_eq!(reply[0], pkt::CODE_ACCESS_ACCEPT);
    tokio::time::timeout(Duration::from_secs(2), h.task)
        .await
        .expect("run() returns once drained")
        .unwrap();
    // No longer receiving.
    let late = Req::access(2, "alice", "123456").encode();
    assert!(exchange_quiet(&sock, h.addr, &late, Duration::from_millis(200)).await);
}

#[tokio::test]
async fn missing_user_name_and_chap_are_rejected_with_a_message() {
    let h = start(8).await;
    let sock = client_sock("127.0.0.1").await;
    let mut r = Req::access(1, "alice", "123456");
    r.user = None;
    let req = r.encode();
    let reply = exchange(&sock, h.addr, &req).await.expect("reply");
    assert_eq!(reply[0], pkt::CODE_ACCESS_REJECT);
    let attrs = check_reply(&reply, &req, SECRET);
    assert!(!values(&attrs, 18).is_empty());
    let mut r = Req::access(2, "alice", "x");
    r.password = None;
    r.extra.push((3, vec![1; 17]));
    let req = r.encode();
    let reply = exchange(&sock, h.addr, &req).await.expect("reply");
    assert_eq!(reply[0], pkt::CODE_ACCESS_REJECT);
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 0);
}

/// Proxy-State values (253 octets each, the last one shorter, all different) that fill a
/// request of `base` octets up to the RFC 2865 maximum of 4096.
fn filling_proxy_states(base: usize) -> Vec<Vec<u8>> {
    let mut room = pkt::MAX_PACKET_LEN - base;
    let mut out = Vec::new();
    while room >= 3 {
        let n = (room - 2).min(pkt::MAX_ATTR_VALUE);
        let tag = out.len() as u8;
        out.push(
            (0..n)
                .map(|k| tag.wrapping_mul(31).wrapping_add(k as u8))
                .collect(),
        );
        room -= n + 2;
    }
    out
}

/// Sends `password` with as many large Proxy-States as the request can carry; returns the
/// request, its Proxy-States and the reply (checked: authentic, Message-Authenticator first,
/// every Proxy-State there in order, at most 4096 octets).
async fn full_of_proxy_states(
    h: &Harness,
    sock: &UdpSocket,
    id: u8,
    password: &str,
) -> (Vec<u8>, Vec<(u8, Vec<u8>)>) {
    let base = Req::access(id, "alice", password).encode().len();
    let proxies = filling_proxy_states(base);
    let mut r = Req::access(id, "alice", password);
    r.proxy = proxies.iter().map(Vec::as_slice).collect();
    let req = r.encode();
    assert!(
        req.len() > pkt::MAX_PACKET_LEN - 3 && req.len() <= pkt::MAX_PACKET_LEN,
        "{}",
        req.len()
    );
    let reply = exchange(sock, h.addr, &req)
        .await
        .expect("a reply, even with the request full of Proxy-States");
    assert!(reply.len() <= pkt::MAX_PACKET_LEN);
    let attrs = check_reply(&reply, &req, SECRET);
    assert_eq!(
        values(&attrs, pkt::ATTR_PROXY_STATE),
        proxies,
        "every Proxy-State, in order"
    );
    // A retransmit is answered from the response cache, byte for byte, without the engine.
    let calls = h.fake.calls.load(Ordering::SeqCst);
    let cached = Stats::get(&h.stats.duplicates_answered_from_cache);
    let again = exchange(sock, h.addr, &req)
        .await
        .expect("the cached reply");
    assert_eq!(again, reply, "byte-identical");
    assert_eq!(
        h.fake.calls.load(Ordering::SeqCst),
        calls,
        "no second login"
    );
    assert_eq!(
        Stats::get(&h.stats.duplicates_answered_from_cache),
        cached + 1
    );
    (reply, attrs)
}

#[tokio::test]
async fn a_reply_too_large_for_its_proxy_states_is_shortened_sent_and_cached() {
    let h = start(8).await;
    let sock = client_sock("127.0.0.1").await;

    // A Challenge: State and Prompt are kept, the Reply-Message text is cut to what fits.
    let (reply, attrs) = full_of_proxy_states(&h, &sock, 1, "chal").await;
    assert_eq!(reply[0], pkt::CODE_ACCESS_CHALLENGE);
    assert_eq!(values(&attrs, pkt::ATTR_STATE), vec![b"S1".to_vec()]);
    assert_eq!(values(&attrs, pkt::ATTR_PROMPT), vec![vec![0, 0, 0, 0]]);
    let text = values(&attrs, pkt::ATTR_REPLY_MESSAGE).concat();
    assert!(
        !text.is_empty() && text.len() < 300,
        "{} octets",
        text.len()
    );
    assert!(text.iter().all(|b| *b == b'x'), "a prefix of the prompt");
    assert!(reply.len() > pkt::MAX_PACKET_LEN - 3, "the room is used");

    // A Reject with a long message: shortened likewise.
    let (reply, attrs) = full_of_proxy_states(&h, &sock, 2, "long").await;
    assert_eq!(reply[0], pkt::CODE_ACCESS_REJECT);
    let text = values(&attrs, pkt::ATTR_REPLY_MESSAGE).concat();
    assert!(
        !text.is_empty() && text.len() < 1000,
        "{} octets",
        text.len()
    );
    assert!(text.iter().all(|b| *b == b'y'));

    // An Accept fits as it is.
    let (reply, attrs) = full_of_proxy_states(&h, &sock, 3, "123456").await;
    assert_eq!(reply[0], pkt::CODE_ACCESS_ACCEPT);
    assert!(values(&attrs, pkt::ATTR_REPLY_MESSAGE).is_empty());
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_challenge_whose_state_cannot_fit_is_a_cached_bare_reject() {
    let h = start(8).await;
    let sock = client_sock("127.0.0.1").await;
    let (reply, attrs) = full_of_proxy_states(&h, &sock, 1, "bigstate").await;
    assert_eq!(reply[0], pkt::CODE_ACCESS_REJECT);
    assert!(values(&attrs, pkt::ATTR_REPLY_MESSAGE).is_empty());
    assert!(values(&attrs, pkt::ATTR_STATE).is_empty());
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 1);

    // Without the Proxy-States the same Challenge fits as it is.
    let req = Req::access(2, "alice", "bigstate").encode();
    let reply = exchange(&sock, h.addr, &req).await.expect("challenge");
    assert_eq!(reply[0], pkt::CODE_ACCESS_CHALLENGE);
    let attrs = check_reply(&reply, &req, SECRET);
    assert_eq!(values(&attrs, pkt::ATTR_STATE), vec![vec![b'S'; 253]]);
}

#[tokio::test]
async fn user_passwords_decode_locally_and_bad_text_is_rejected() {
    let h = start(8).await;
    let sock = client_sock("127.0.0.1").await;
    // 16 and 128 octets exactly (no padding) reach the engine intact.
    let max = "z".repeat(128);
    for (id, password) in [(1u8, "0123456789abcdef"), (2, max.as_str())] {
        let req = Req::access(id, "alice", password).encode();
        let reply = exchange(&sock, h.addr, &req).await.expect("reply");
        assert_eq!(
            reply[0],
            pkt::CODE_ACCESS_ACCEPT,
            "{} octets",
            password.len()
        );
    }
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 2);

    // A password that is not UTF-8: a Reject with a message, without the engine.
    let mut r = Req::access(3, "alice", "x");
    r.password = None;
    let hidden = AVP::from_user_password(2, &[0xff, 0xfe, b'1'], SECRET.as_bytes(), &r.auth)
        .unwrap()
        .encode_bytes();
    r.extra.push((pkt::ATTR_USER_PASSWORD, hidden));
    let req = r.encode();
    let reply = exchange(&sock, h.addr, &req).await.expect("reply");
    assert_eq!(reply[0], pkt::CODE_ACCESS_REJECT);
    let attrs = check_reply(&reply, &req, SECRET);
    assert_eq!(
        values(&attrs, pkt::ATTR_REPLY_MESSAGE),
        vec![b"The password is not valid text.".to_vec()]
    );
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 2);
}

/// Captures the log lines of one test (current-thread runtime: the server's tasks log on the
/// test's thread, so a thread-local subscriber sees them).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// While alive, the test's thread logs into a [`Captured`].
struct Capturing {
    _default: tracing::subscriber::DefaultGuard,
    /// A second live dispatcher: with only one, tracing asks the *registering* thread's
    /// subscriber whether a callsite is wanted, so a concurrent test without one (on another
    /// thread) could turn off a warning for good before this test emits it.
    _second: tracing::Dispatch,
}

impl Captured {
    /// Logs at `info`, the daemon's default level, into `self` until the guard is dropped.
    fn install(&self) -> Capturing {
        let second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        // Callsites first hit by concurrent tests (no subscriber) must be re-asked.
        tracing::callsite::rebuild_interest_cache();
        Capturing {
            _default: guard,
            _second: second,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The WARN lines containing `needle`.
    fn warnings(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(" WARN ") && l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

/// The `suppressed=N` field of a warning line.
fn suppressed(line: &str) -> u64 {
    let (_, rest) = line
        .rsplit_once("suppressed=")
        .unwrap_or_else(|| panic!("no suppressed= in {line}"));
    rest.trim().parse().unwrap()
}

const BAD_MA: &str = "client nas (127.0.0.1): Message-Authenticator does not verify: wrong \
     shared secret? Set the same secret at the NAS and in this client's [[radius.clients]] entry";
const MISSING_MA: &str = "client nas (127.0.0.1): request without Message-Authenticator \
     dropped: turn Message-Authenticator on at the NAS; a NAS or proxy that cannot send it \
     (radsecproxy 1.9 forwarding a NAS that sends none, ocserv/radcli, OpenVPN radiusplugin) \
     needs require_message_authenticator = false for this client";

fn unix_second() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sleeps into the next wall-clock second: the log limiter's window.
async fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1050 - u64::from(now.subsec_millis()))).await;
}

#[test]
fn drop_causes_fit_their_table() {
    // Each cause is a slot of its client's row: a variant past COUNT would take the next
    // client's slot.
    assert_eq!(
        DropCause::BadAccountingAuthenticator as usize + 1,
        DropCause::COUNT
    );
}

#[tokio::test]
async fn every_drop_is_a_warning_that_names_the_fix() {
    let log = Captured::default();
    let _guard = log.install();
    let h = start(8).await;
    let sock = client_sock("127.0.0.1").await;
    let quiet = Duration::from_millis(250);
    let wrong_secret = "n0t-the-secret";
    let marker = "mallory-marker";

    let mut r = Req::access(1, marker, "123456");
    r.secret = wrong_secret;
    assert!(exchange_quiet(&sock, h.addr, &r.encode(), quiet).await);
    let mut r = Req::access(2, marker, "123456");
    r.ma = false;
    assert!(exchange_quiet(&sock, h.addr, &r.encode(), quiet).await);
    let mut status = Req::access(3, marker, "123456");
    status.code = pkt::CODE_STATUS_SERVER;
    status.ma = false;
    assert!(exchange_quiet(&sock, h.addr, &status.encode(), quiet).await);
    let good = Req::access(4, marker, "123456").encode();
    assert!(exchange_quiet(&sock, h.addr, &good[..good.len() - 3], quiet).await);
    let mut acct = Req::access(5, marker, "123456");
    acct.code = 4;
    assert!(exchange_quiet(&sock, h.addr, &acct.encode(), quiet).await);
    let stranger = client_sock("127.0.0.2").await;
    let req = Req::access(6, marker, "123456").encode();
    assert!(exchange_quiet(&stranger, h.addr, &req, quiet).await);
    let legacy = client_sock("127.0.0.3").await;
    let mut proxied = Req::access(7, marker, "123456");
    proxied.secret = LEGACY_SECRET;
    proxied.ma = false;
    proxied.proxy = vec![b"p"];
    assert!(exchange_quiet(&legacy, h.addr, &proxied.encode(), quiet).await);

    assert_eq!(log.warnings(BAD_MA).len(), 1, "{}", log.text());
    assert_eq!(log.warnings(MISSING_MA).len(), 1, "{}", log.text());
    for needle in [
        "client nas (127.0.0.1): Status-Server without Message-Authenticator dropped: RFC 5997 \
         requires it",
        "client nas (127.0.0.1): malformed request dropped: shorter than its Length field says",
        "client nas (127.0.0.1): request with code 4 dropped: Accounting: this is the \
         authentication port",
        "unknown client 127.0.0.2: add it to [[radius.clients]] (address = \"127.0.0.2\")",
        "client legacy (127.0.0.3): request with Proxy-State but without Message-Authenticator \
         dropped",
    ] {
        let lines = log.warnings(needle);
        assert_eq!(lines.len(), 1, "{needle}\n{}", log.text());
        assert_eq!(suppressed(&lines[0]), 0, "{}", lines[0]);
    }
    let s = &h.stats;
    assert_eq!(Stats::get(&s.dropped_bad_message_authenticator), 1);
    assert_eq!(Stats::get(&s.dropped_missing_message_authenticator), 2);
    assert_eq!(Stats::get(&s.dropped_malformed), 1);
    assert_eq!(Stats::get(&s.dropped_unsupported_code), 1);
    assert_eq!(Stats::get(&s.dropped_unknown_client), 1);
    assert_eq!(
        Stats::get(&s.dropped_proxy_state_without_message_authenticator),
        1
    );

    // Answered requests add no warning: a legacy client omitting Message-Authenticator as
    // allowed, and a password that is not text (no guess at a wrong secret from that).
    let before = log.warnings("").len();
    let mut r = Req::access(8, "alice", "123456");
    r.secret = LEGACY_SECRET;
    r.ma = false;
    let reply = exchange(&legacy, h.addr, &r.encode()).await.expect("reply");
    assert_eq!(reply[0], pkt::CODE_ACCESS_ACCEPT);
    let mut r = Req::access(9, "alice", "x");
    r.password = None;
    let hidden = AVP::from_user_password(2, &[0xff, 0xfe, b'1'], SECRET.as_bytes(), &r.auth)
        .unwrap()
        .encode_bytes();
    r.extra.push((pkt::ATTR_USER_PASSWORD, hidden));
    let reply = exchange(&sock, h.addr, &r.encode()).await.expect("reply");
    assert_eq!(reply[0], pkt::CODE_ACCESS_REJECT);
    assert_eq!(log.warnings("").len(), before, "{}", log.text());

    // Nothing the stranger sent, and no secret, is in the log (LEGACY_SECRET is also a
    // client name, so it is not looked for).
    let text = log.text();
    for absent in [marker, wrong_secret, SECRET, "123456"] {
        assert!(!text.contains(absent), "{absent} logged:\n{text}");
    }
}

#[tokio::test]
async fn a_flood_is_one_line_a_second_per_client_and_cause_with_the_count_held_back() {
    let log = Captured::default();
    let _guard = log.install();
    let h = start(8).await;
    let sock = client_sock("127.0.0.1").await;
    let mut sent = 0u64;
    next_second().await;
    let first_second = unix_second();
    for i in 0..200u32 {
        let mut r = Req::access(i as u8, "alice", "123456");
        r.secret = "wrong";
        sock.send_to(&r.encode(), h.addr).await.unwrap();
        sent += 1;
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // The same client's other cause, in the same second, still gets its own line.
    let mut r = Req::access(200, "alice", "123456");
    r.ma = false;
    assert!(exchange_quiet(&sock, h.addr, &r.encode(), Duration::from_millis(300)).await);
    let seconds = unix_second() - first_second + 1;
    assert_eq!(log.warnings(MISSING_MA).len(), 1, "{}", log.text());
    // One line per second the flood lasted (one, unless this machine is very slow).
    let flood = log.warnings(BAD_MA);
    assert!(
        !flood.is_empty() && flood.len() as u64 <= seconds,
        "{seconds} s\n{}",
        log.text()
    );
    assert_eq!(suppressed(&flood[0]), 0, "{}", flood[0]);

    // In a later second the next line carries what was held back.
    next_second().await;
    let mut r = Req::access(201, "alice", "123456");
    r.secret = "wrong";
    assert!(exchange_quiet(&sock, h.addr, &r.encode(), Duration::from_millis(300)).await);
    sent += 1;
    let lines = log.warnings(BAD_MA);
    assert_eq!(lines.len(), flood.len() + 1, "{}", log.text());
    assert!(suppressed(lines.last().unwrap()) > 0, "{}", log.text());
    // Every drop is a line or counted in a later line's suppressed=, and counted in Stats.
    let held: u64 = lines.iter().map(|l| suppressed(l)).sum();
    assert_eq!(lines.len() as u64 + held, sent, "{}", log.text());
    assert_eq!(Stats::get(&h.stats.dropped_bad_message_authenticator), sent);
}

#[tokio::test]
async fn strangers_share_one_limiter_whatever_their_addresses() {
    let log = Captured::default();
    let _guard = log.install();
    let h = start(8).await;
    let req = Req::access(1, "alice", "123456").encode();
    let mut strangers = Vec::new();
    next_second().await;
    let first_second = unix_second();
    for host in 10..50 {
        let s = client_sock(&format!("127.0.0.{host}")).await;
        s.send_to(&req, h.addr).await.unwrap();
        strangers.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seconds = unix_second() - first_second + 1;
    // Forty addresses: one line a second (one, unless this machine is very slow), not one
    // per address.
    let burst = log.warnings("unknown client 127.0.0.");
    assert!(
        !burst.is_empty() && burst.len() as u64 <= seconds,
        "{seconds} s\n{}",
        log.text()
    );
    assert!(
        burst[0].contains(
            "unknown client 127.0.0.10: add it to [[radius.clients]] (address = \"127.0.0.10\")"
        ),
        "{}",
        burst[0]
    );
    next_second().await;
    let late = client_sock("127.0.0.77").await;
    assert!(exchange_quiet(&late, h.addr, &req, Duration::from_millis(300)).await);
    let lines = log.warnings("unknown client 127.0.0.");
    let last = lines.last().unwrap();
    assert!(
        last.contains(
            "unknown client 127.0.0.77: add it to [[radius.clients]] (address = \"127.0.0.77\")"
        ),
        "{last}"
    );
    let held: u64 = lines.iter().map(|l| suppressed(l)).sum();
    assert_eq!(lines.len() as u64 + held, 41, "{}", log.text());
    assert_eq!(Stats::get(&h.stats.dropped_unknown_client), 41);
}

/// radcli (ocserv) sends "the user just pressed Enter" as a User-Password attribute with no
/// value (length 2). It is the empty password, not a malformed packet; but it proves nothing
/// about the shared secret, so from a client without Message-Authenticator it only continues a
/// login (with a State), never starts one.
#[tokio::test]
async fn an_empty_user_password_attribute_is_the_empty_answer() {
    let h = start(8).await;
    let empty = || {
        let mut r = Req::access(1, "alice", "");
        r.password = None;
        r.extra = vec![(pkt::ATTR_USER_PASSWORD, vec![])];
        r
    };
    // Signed (Message-Authenticator): answered by the engine with the empty answer.
    let sock = client_sock("127.0.0.1").await;
    let reply = exchange(&sock, h.addr, &empty().encode())
        .await
        .expect("an empty User-Password is answered, not dropped");
    assert_eq!(reply[0], pkt::CODE_ACCESS_REJECT);
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 1);
    assert_eq!(Stats::get(&h.stats.dropped_malformed), 0);

    // A client without Message-Authenticator: no State, nothing proves the sender: refused
    // here, the engine never sees it.
    let legacy = client_sock("127.0.0.3").await;
    let mut r = empty();
    r.id = 2;
    r.secret = LEGACY_SECRET;
    r.ma = false;
    let reply = exchange(&legacy, h.addr, &r.encode())
        .await
        .expect("refused with a reply");
    assert_eq!(reply[0], pkt::CODE_ACCESS_REJECT);
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 1, "the engine saw it");
    assert_eq!(Stats::get(&h.stats.unverifiable), 1);

    // The same with a State: it continues a login, so the engine gets the empty answer.
    let mut r = empty();
    r.id = 3;
    r.secret = LEGACY_SECRET;
    r.ma = false;
    r.state = Some(b"S1");
    let reply = exchange(&legacy, h.addr, &r.encode())
        .await
        .expect("answered");
    assert_eq!(reply[0], pkt::CODE_ACCESS_REJECT);
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 2);
    assert_eq!(Stats::get(&h.stats.unverifiable), 1);
    let seen = h.fake.seen.lock().unwrap().len();
    assert_eq!(seen, 2);
}

// ---------------------------------------------------------------------------------------------
// Accounting (RFC 2866)

/// An Accounting-Request with a Request Authenticator computed with `secret` (RFC 2866 §3).
fn acct_request(id: u8, secret: &str, attrs: &[(u8, &[u8])]) -> Vec<u8> {
    use md5::{Digest, Md5};
    let mut p = sign_request(4, id, &[0; 16], attrs, &mac_key(b"unused"));
    let mut md5 = Md5::new();
    md5.update(&p);
    md5.update(secret.as_bytes());
    let auth = md5.finalize();
    p[4..20].copy_from_slice(&auth);
    p
}

fn sessions(h: &Harness, client: &str) -> u64 {
    h.accounting
        .sessions()
        .into_iter()
        .find(|(c, _)| *c == client)
        .unwrap()
        .1
}

#[tokio::test]
async fn accounting_start_stop_retransmit_and_wrong_secret() {
    let log = Captured::default();
    let _capture = log.install();
    let h = start(8).await;
    let sock = client_sock("127.0.0.1").await;
    let start_req = acct_request(
        1,
        SECRET,
        &[
            (1, b"alice"),
            (40, &1u32.to_be_bytes()),
            (44, b"sess-1"),
            (8, &[10, 8, 0, 6]),
            (33, b"first"),
            (33, b"second"),
        ],
    );
    let reply = exchange(&sock, h.acct, &start_req)
        .await
        .expect("an answer");
    assert_eq!(reply[0], 5, "Accounting-Response");
    assert_eq!(reply[1], 1);
    assert!(Packet::is_authentic_response(
        &reply,
        &start_req,
        SECRET.as_bytes()
    ));
    assert_eq!(
        pkt::proxy_states(&reply),
        vec![&b"first"[..], &b"second"[..]]
    );
    assert_eq!(sessions(&h, "nas"), 1);
    // A retransmit: the same bytes again, recorded once.
    let again = exchange(&sock, h.acct, &start_req).await.expect("cached");
    assert_eq!(again, reply);
    assert_eq!(Stats::get(&h.stats.duplicates_answered_from_cache), 1);
    let starts: u64 = h
        .accounting
        .requests()
        .into_iter()
        .filter(|(c, s, _)| *c == "nas" && *s == "Start")
        .map(|r| r.2)
        .sum();
    assert_eq!(starts, 1);
    // The wrong secret: no answer, a warning, nothing recorded.
    let forged = acct_request(
        2,
        "not-the-secret",
        &[(40, &2u32.to_be_bytes()), (44, b"sess-1")],
    );
    assert!(exchange_quiet(&sock, h.acct, &forged, Duration::from_millis(300)).await);
    assert_eq!(sessions(&h, "nas"), 1);
    assert_eq!(Stats::get(&h.stats.dropped_bad_accounting_authenticator), 1);
    let lines = log.warnings(
        "client nas (127.0.0.1): Accounting-Request authenticator does not verify: wrong shared \
         secret?",
    );
    assert_eq!(lines.len(), 1, "{}", log.text());
    assert!(!log.text().contains("not-the-secret") && !log.text().contains(SECRET));
    // Stop.
    let stop = acct_request(
        3,
        SECRET,
        &[
            (1, b"alice"),
            (40, &2u32.to_be_bytes()),
            (44, b"sess-1"),
            (46, &42u32.to_be_bytes()),
            (49, &1u32.to_be_bytes()),
        ],
    );
    let reply = exchange(&sock, h.acct, &stop).await.expect("an answer");
    assert!(Packet::is_authentic_response(
        &reply,
        &stop,
        SECRET.as_bytes()
    ));
    assert_eq!(sessions(&h, "nas"), 0);
    let text = log.text();
    assert!(
        text.lines().any(|l| l.contains(" INFO ")
            && l.contains(
                "accounting client=nas status=Start user=alice session_id=sess-1 \
                           framed_ip=10.8.0.6"
            )),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("status=Stop")
            && l.contains("session_time=42 terminate_cause=\"User-Request\"")),
        "{text}"
    );
    h.shutdown.send_replace(true);
    h.task.await.unwrap();
}

#[tokio::test]
async fn accounting_port_drops_strangers_other_codes_and_bad_message_authenticators() {
    let log = Captured::default();
    let _capture = log.install();
    let h = start(8).await;
    // An unknown source, with the right secret: dropped, the auth port's warning.
    let stranger = client_sock("127.0.0.2").await;
    let req = acct_request(1, SECRET, &[(40, &1u32.to_be_bytes()), (44, b"x")]);
    assert!(exchange_quiet(&stranger, h.acct, &req, Duration::from_millis(300)).await);
    assert_eq!(Stats::get(&h.stats.dropped_unknown_client), 1);
    assert_eq!(
        log.warnings("unknown client 127.0.0.2: add it to [[radius.clients]]")
            .len(),
        1,
        "{}",
        log.text()
    );
    // An Access-Request on the accounting port.
    let sock = client_sock("127.0.0.1").await;
    let access = Req::access(2, "alice", "123456").encode();
    assert!(exchange_quiet(&sock, h.acct, &access, Duration::from_millis(300)).await);
    assert_eq!(Stats::get(&h.stats.dropped_unsupported_code), 1);
    assert_eq!(h.fake.calls.load(Ordering::SeqCst), 0);
    // A Message-Authenticator signed with another secret, the Request Authenticator right.
    let mut p = sign_request(
        4,
        3,
        &[0; 16],
        &[(80, &[0; 16]), (40, &1u32.to_be_bytes()), (44, b"y")],
        &mac_key(b"other"),
    );
    {
        use md5::{Digest, Md5};
        let mut md5 = Md5::new();
        md5.update(&p);
        md5.update(SECRET.as_bytes());
        let auth = md5.finalize();
        p[4..20].copy_from_slice(&auth);
    }
    assert!(exchange_quiet(&sock, h.acct, &p, Duration::from_millis(300)).await);
    assert_eq!(Stats::get(&h.stats.dropped_bad_message_authenticator), 1);
    assert_eq!(sessions(&h, "nas"), 0);
    // The auth port still refuses accounting.
    let acct = acct_request(4, SECRET, &[(40, &1u32.to_be_bytes()), (44, b"z")]);
    assert!(exchange_quiet(&sock, h.addr, &acct, Duration::from_millis(300)).await);
    assert_eq!(sessions(&h, "nas"), 0);
    h.shutdown.send_replace(true);
    h.task.await.unwrap();
}
