use super::*;
use crate::radius::packet::{mac_key, sign_request};

const SECRET: &[u8] = b"testing123";
/// Computed independently with Python's hashlib (RFC 2866 §3), id 7:
///   attrs = User-Name "alice", Acct-Status-Type 1 (Start), Acct-Session-Id "0001",
///           Proxy-State "px"
///   auth  = md5(hdr + b"\0"*16 + attrs + b"testing123")
const REQUEST: &str = "0407002b6416abb1a8c70df44867fb3c6eff1c870107616c6963652806000000012c06\
                       3030303121047078";
///   reply = hdr(5, 7, 24) + md5(hdr + auth + attrs + secret) + Proxy-State "px"
const RESPONSE: &str = "05070018c21bec1a79e26151ffa42de5443adb9b21047078";

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn request_authenticator_verifies_a_known_vector() {
    let req = unhex(REQUEST);
    assert!(verify_request_authenticator(&req, SECRET));
    assert!(!verify_request_authenticator(&req, b"testing124"));
    let mut tampered = req.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(!verify_request_authenticator(&tampered, SECRET));
    let mut bad_auth = req.clone();
    bad_auth[4] ^= 1;
    assert!(!verify_request_authenticator(&bad_auth, SECRET));
    assert!(!verify_request_authenticator(&req[..10], SECRET));
}

#[test]
fn response_matches_a_known_vector() {
    let req = unhex(REQUEST);
    let (info, packet) = pkt::check(&req).unwrap();
    let reply = build_response(
        info.identifier,
        &info.authenticator,
        &pkt::proxy_states(packet),
        false,
        &mac_key(SECRET),
        SECRET,
    )
    .unwrap();
    assert_eq!(hex::encode(&reply), RESPONSE);
    assert!(radius::core::packet::Packet::is_authentic_response(
        &reply, &req, SECRET
    ));
}

/// An Accounting-Request signed like FreeRADIUS does: Message-Authenticator over the packet
/// with a zero authenticator, then the Request Authenticator over the result.
fn signed_with_ma(secret: &[u8], attrs: &[ReplyAttr<'_>]) -> Vec<u8> {
    let mut all: Vec<ReplyAttr<'_>> = vec![(pkt::ATTR_MESSAGE_AUTHENTICATOR, &[0u8; 16])];
    all.extend_from_slice(attrs);
    let mut p = sign_request(4, 9, &[0; 16], &all, &mac_key(secret));
    let mut md5 = Md5::new();
    md5.update(&p);
    md5.update(secret);
    let auth = md5.finalize();
    p[4..20].copy_from_slice(&auth);
    p
}

#[test]
fn message_authenticator_is_checked_with_a_zero_authenticator() {
    let req = signed_with_ma(SECRET, &[(ATTR_ACCT_SESSION_ID, b"s")]);
    let (info, packet) = pkt::check(&req).unwrap();
    let off = info.message_authenticator.unwrap();
    assert!(verify_request_authenticator(packet, SECRET));
    assert!(verify_message_authenticator(&mac_key(SECRET), packet, off));
    assert!(!verify_message_authenticator(
        &mac_key(b"other"),
        packet,
        off
    ));
    // The reply carries one too, and is authentic.
    let reply = build_response(
        info.identifier,
        &info.authenticator,
        &[b"p1", b"p2"],
        true,
        &mac_key(SECRET),
        SECRET,
    )
    .unwrap();
    assert_eq!(reply[0], CODE_ACCOUNTING_RESPONSE);
    assert!(radius::core::packet::Packet::is_authentic_response(
        &reply, &req, SECRET
    ));
    let types: Vec<u8> = pkt::attributes(&reply)
        .unwrap()
        .iter()
        .map(|a| a.1)
        .collect();
    assert_eq!(types, vec![80, 33, 33]);
    // Its Message-Authenticator is over the reply with a zero authenticator field.
    assert!(verify_message_authenticator(
        &mac_key(SECRET),
        &reply,
        pkt::HEADER_LEN
    ));
    let mut check_copy = reply.clone();
    check_copy[4..20].copy_from_slice(&info.authenticator);
    assert!(!pkt::verify_message_authenticator(
        &mac_key(SECRET),
        &check_copy,
        pkt::HEADER_LEN
    ));
}

#[test]
fn event_reads_the_attributes() {
    let req = sign_request(
        4,
        1,
        &[0; 16],
        &[
            (1, b"bob\n"),
            (40, &2u32.to_be_bytes()),
            (44, b"abc"),
            (8, &[10, 8, 0, 6]),
            (46, &3600u32.to_be_bytes()),
            (49, &1u32.to_be_bytes()),
        ],
        &mac_key(b"x"),
    );
    let e = Event::parse(&req);
    assert_eq!(e.status(), Status::Stop);
    assert_eq!(e.user.as_deref(), Some("bob\n"));
    assert_eq!(e.session_id.as_deref(), Some("abc"));
    assert_eq!(e.framed_ip, Some([10, 8, 0, 6].into()));
    assert_eq!(e.session_time, Some(3600));
    assert_eq!(e.terminate_cause, Some(1));
    // A status of the wrong size is no status.
    let odd = sign_request(4, 1, &[0; 16], &[(40, &[1, 2])], &mac_key(b"x"));
    assert_eq!(Event::parse(&odd).status(), Status::Other);
    assert_eq!(terminate_cause(1), "User-Request");
    assert_eq!(terminate_cause(18), "Host-Request");
    assert_eq!(terminate_cause(0), "0");
    assert_eq!(terminate_cause(99), "99");
}

fn ev(status: u32, session: &str) -> Event {
    Event {
        status_value: Some(status),
        session_id: Some(session.into()),
        user: Some("alice".into()),
        ..Event::default()
    }
}

fn gauge(a: &Accounting, client: &str) -> u64 {
    a.sessions()
        .into_iter()
        .find(|(c, _)| *c == client)
        .unwrap()
        .1
}

fn count(a: &Accounting, client: &str, status: &str) -> u64 {
    a.requests()
        .into_iter()
        .find(|(c, s, _)| *c == client && *s == status)
        .unwrap()
        .2
}

#[test]
fn start_and_stop_move_the_gauge() {
    let a = Accounting::new(vec!["vpn".into(), "wifi".into()]);
    a.record(0, &ev(1, "s1"));
    a.record(0, &ev(1, "s2"));
    a.record(1, &ev(1, "s1"));
    assert_eq!(gauge(&a, "vpn"), 2);
    assert_eq!(gauge(&a, "wifi"), 1);
    // A repeated Start, an Interim of a known session: still two.
    a.record(0, &ev(1, "s1"));
    a.record(0, &ev(3, "s2"));
    assert_eq!(gauge(&a, "vpn"), 2);
    a.record(0, &ev(2, "s1"));
    assert_eq!(gauge(&a, "vpn"), 1);
    // A Stop of an unknown session changes nothing.
    a.record(0, &ev(2, "nope"));
    assert_eq!(gauge(&a, "vpn"), 1);
    assert_eq!(gauge(&a, "wifi"), 1);
    assert_eq!(count(&a, "vpn", "Start"), 3);
    assert_eq!(count(&a, "vpn", "Stop"), 2);
    assert_eq!(count(&a, "vpn", "Interim-Update"), 1);
    assert_eq!(count(&a, "wifi", "Start"), 1);
}

#[test]
fn accounting_on_and_off_clear_only_that_client() {
    let a = Accounting::new(vec!["vpn".into(), "wifi".into()]);
    for s in ["a", "b", "c"] {
        a.record(0, &ev(1, s));
        a.record(1, &ev(1, s));
    }
    a.record(0, &ev(7, ""));
    assert_eq!(gauge(&a, "vpn"), 0);
    assert_eq!(gauge(&a, "wifi"), 3);
    a.record(1, &ev(8, ""));
    assert_eq!(gauge(&a, "wifi"), 0);
    assert_eq!(count(&a, "vpn", "Accounting-On"), 1);
    assert_eq!(count(&a, "wifi", "Accounting-Off"), 1);
    // The total followed: the whole cap is free again.
    assert_eq!(a.table.lock().unwrap().total, 0);
}

#[test]
fn the_table_is_capped_and_counts_what_it_does_not_store() {
    let a = Accounting::with_limits(vec!["vpn".into(), "wifi".into()], 3, SESSION_MAX_AGE);
    for s in ["a", "b", "c", "d", "e"] {
        a.record(0, &ev(1, s));
    }
    a.record(1, &ev(1, "x"));
    assert_eq!(gauge(&a, "vpn"), 3);
    assert_eq!(gauge(&a, "wifi"), 0);
    assert_eq!(Stats::get(&a.not_stored), 3);
    // Every request still counted.
    assert_eq!(count(&a, "vpn", "Start"), 5);
    // A Stop frees a place.
    a.record(0, &ev(2, "a"));
    a.record(1, &ev(1, "x"));
    assert_eq!(gauge(&a, "wifi"), 1);
    assert_eq!(Stats::get(&a.not_stored), 3);
}

#[test]
fn sessions_without_a_stop_are_forgotten() {
    let max_age = Duration::from_secs(3600);
    let a = Accounting::with_limits(vec!["vpn".into()], 10, max_age);
    let t0 = Instant::now();
    a.record_at(0, &ev(1, "old"), t0);
    a.record_at(0, &ev(1, "kept"), t0);
    // An Interim-Update keeps a session alive.
    a.record_at(0, &ev(3, "kept"), t0 + max_age / 2);
    let later = t0 + max_age + SWEEP_EVERY;
    a.record_at(0, &ev(1, "new"), later);
    let t = a.table.lock().unwrap();
    let mut left: Vec<&String> = t.by_client[0].keys().collect();
    left.sort();
    assert_eq!(left, vec!["kept", "new"]);
    assert_eq!(t.total, 2);
}

#[test]
fn out_of_range_clients_are_ignored() {
    let a = Accounting::new(vec!["vpn".into()]);
    a.record(5, &ev(1, "s"));
    assert_eq!(gauge(&a, "vpn"), 0);
    assert_eq!(count(&a, "vpn", "Start"), 0);
}
