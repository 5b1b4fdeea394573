//! Packet building and verification against vectors produced by pyrad 2.6 (see the comments),
//! identifier allocation and TOTP.
#![allow(clippy::unwrap_used)]

use vip_bench::idalloc::IdAllocator;
use vip_bench::radius::{self, RequestSpec, Secret, VerifyError};

// Produced with pyrad 2.6 (bench/tests/vectors.py):
//   AuthPacket(id=42, secret=b"s3cret", authenticator=bytes(range(16))),
//   add_message_authenticator(), User-Name "alice", User-Password PwCrypt("123456"),
//   NAS-IP-Address 127.0.0.1, NAS-Identifier "vip-load", State 0xdeadbeef; RequestPacket().
const PYRAD_REQUEST: &str = "012a0055000102030405060708090a0b0c0d0e0f50128be2ab5368bcb42ca768a414f2b5122e0107616c6963650212f280576b48f682e7dc50f8397719815004067f000001200a7669702d6c6f61641806deadbeef";
// Its reply: CreateReply(), code Access-Accept, add_message_authenticator(),
// Reply-Message "welcome"; ReplyPacket().
const PYRAD_REPLY: &str = "022a002ffdd2c56bf115a3bb90e57223a7f8e32750125673c776bd908f466d8ec6b6badf8ac6120977656c636f6d65";

fn auth() -> [u8; 16] {
    let mut a = [0u8; 16];
    for (i, b) in a.iter_mut().enumerate() {
        *b = i as u8;
    }
    a
}

fn spec() -> RequestSpec<'static> {
    RequestSpec {
        user: b"alice",
        password: b"123456",
        state: Some(&[0xde, 0xad, 0xbe, 0xef]),
        nas_identifier: Some(b"vip-load"),
        nas_ip: Some([127, 0, 0, 1]),
        message_authenticator: true,
    }
}

#[test]
fn access_request_matches_pyrad_byte_for_byte() {
    let secret = Secret::new(b"s3cret");
    let mut buf = Vec::new();
    radius::build_access_request(&mut buf, 42, &auth(), &secret, &spec()).unwrap();
    assert_eq!(hex::encode(&buf), PYRAD_REQUEST);
    // The Message-Authenticator pyrad computed, and our own check of it.
    assert_eq!(
        hex::encode(&buf[22..38]),
        "8be2ab5368bcb42ca768a414f2b5122e"
    );
    assert_eq!(
        radius::request_message_authenticator_ok(&buf, &secret),
        Some(true)
    );
    let hidden = radius::find_attr(&buf, radius::ATTR_USER_PASSWORD).unwrap();
    assert_eq!(
        radius::unhide_password(hidden, &secret, &auth()),
        b"123456".to_vec()
    );
}

#[test]
fn without_message_authenticator() {
    let secret = Secret::new(b"s3cret");
    let mut s = spec();
    s.message_authenticator = false;
    let mut buf = Vec::new();
    radius::build_access_request(&mut buf, 42, &auth(), &secret, &s).unwrap();
    assert_eq!(buf.len(), 0x55 - 18);
    assert!(radius::find_attr(&buf, radius::ATTR_MESSAGE_AUTHENTICATOR).is_none());
    assert_eq!(
        radius::request_message_authenticator_ok(&buf, &secret),
        None
    );
}

#[test]
fn password_hiding_pads_and_chains() {
    let secret = Secret::new(b"xyzzy");
    for len in [0usize, 1, 15, 16, 17, 32, 100, 128] {
        let pw = vec![b'a' + (len % 26) as u8; len];
        let hidden = radius::hide_password(&pw, &secret, &auth()).unwrap();
        assert_eq!(hidden.len(), len.div_ceil(16).max(1) * 16);
        assert_eq!(radius::unhide_password(&hidden, &secret, &auth()), pw);
    }
    assert!(radius::hide_password(&[b'a'; 129], &secret, &auth()).is_err());
}

#[test]
fn pyrad_reply_verifies_and_tampering_is_caught() {
    let secret = Secret::new(b"s3cret");
    let reply = hex::decode(PYRAD_REPLY).unwrap();
    let info = radius::verify_reply(&reply, 42, &auth(), &secret).unwrap();
    assert_eq!(info.code, radius::ACCESS_ACCEPT);
    assert!(info.has_message_authenticator);
    assert!(info.message_authenticator_first);

    assert_eq!(
        radius::verify_reply(&reply, 43, &auth(), &secret),
        Err(VerifyError::WrongIdentifier)
    );
    assert_eq!(
        radius::verify_reply(&reply, 42, &auth(), &Secret::new(b"other")),
        Err(VerifyError::BadResponseAuthenticator)
    );
    let mut other_auth = auth();
    other_auth[0] ^= 1;
    assert_eq!(
        radius::verify_reply(&reply, 42, &other_auth, &secret),
        Err(VerifyError::BadResponseAuthenticator)
    );
    // A flipped attribute byte breaks the Response Authenticator.
    let mut t = reply.clone();
    let last = t.len() - 1;
    t[last] ^= 1;
    assert_eq!(
        radius::verify_reply(&t, 42, &auth(), &secret),
        Err(VerifyError::BadResponseAuthenticator)
    );
    assert_eq!(
        radius::verify_reply(&reply[..19], 42, &auth(), &secret),
        Err(VerifyError::Malformed)
    );
}

#[test]
fn a_wrong_message_authenticator_with_a_right_response_authenticator_is_caught() {
    use md5::{Digest, Md5};
    let secret = Secret::new(b"s3cret");
    let mut reply = hex::decode(PYRAD_REPLY).unwrap();
    reply[22] ^= 0xff;
    // Recompute the Response Authenticator so that only the Message-Authenticator is wrong.
    let mut h = Md5::new();
    h.update(&reply[..4]);
    h.update(auth());
    h.update(&reply[20..]);
    h.update(b"s3cret");
    let ra: [u8; 16] = h.finalize().into();
    reply[4..20].copy_from_slice(&ra);
    assert_eq!(
        radius::verify_reply(&reply, 42, &auth(), &secret),
        Err(VerifyError::BadMessageAuthenticator)
    );
}

#[test]
fn own_replies_verify_and_keep_the_size() {
    let secret = Secret::new(b"s3cret");
    for pad in [None, Some(60), Some(85), Some(400), Some(4096)] {
        let r = radius::build_reply(
            radius::ACCESS_REJECT,
            7,
            &auth(),
            &secret,
            &[(radius::ATTR_REPLY_MESSAGE, b"no")],
            pad,
        )
        .unwrap();
        if let Some(p) = pad {
            assert!(r.len() <= p && r.len() + 2 >= p, "{} vs {p}", r.len());
        }
        let info = radius::verify_reply(&r, 7, &auth(), &secret).unwrap();
        assert_eq!(info.code, radius::ACCESS_REJECT);
        assert!(info.message_authenticator_first);
    }
}

#[test]
fn identifier_allocator_holds_256_and_never_reuses_outstanding() {
    let mut ids = IdAllocator::new(256);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..256 {
        assert!(seen.insert(ids.alloc().unwrap()));
    }
    assert_eq!(ids.in_use(), 256);
    assert_eq!(ids.alloc(), None);
    assert!(ids.free(17));
    assert!(!ids.free(17), "double free refused");
    assert_eq!(ids.alloc(), Some(17));
    assert_eq!(ids.alloc(), None);
    // Freed ids come back oldest-freed first; outstanding ones never.
    for id in [3u8, 200, 9] {
        assert!(ids.free(id));
    }
    assert_eq!(ids.alloc(), Some(3));
    assert_eq!(ids.alloc(), Some(200));
    assert!(ids.is_outstanding(200));
    assert_eq!(ids.alloc(), Some(9));
    assert_eq!(ids.alloc(), None);
    // Random churn: an id is never handed out twice while outstanding.
    let mut out: Vec<u8> = (0..=255).collect();
    let mut x: u32 = 12345;
    for _ in 0..10_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let i = (x >> 8) as usize % out.len();
        let id = out.swap_remove(i);
        assert!(ids.free(id));
        let got = ids.alloc().unwrap();
        assert!(!out.contains(&got));
        out.push(got);
    }
    let small = IdAllocator::new(4);
    assert_eq!(small.available(), 4);
}

#[test]
fn totp_rfc6238_vectors() {
    use vip_bench::totp;
    let key = b"12345678901234567890";
    assert_eq!(
        totp::decode_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap(),
        key.to_vec()
    );
    for (t, want) in [
        (59u64, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ] {
        assert_eq!(totp::code(key, t, 8), want, "t={t}");
    }
    assert_eq!(totp::code(key, 59, 6), "287082");
    assert!(totp::decode_base32("not base32!").is_none());
}

#[test]
fn user_pattern() {
    use vip_bench::template::{PasswordSource, Template};
    let t = Template {
        user_pattern: "user{n}".into(),
        user_start: 10,
        user_count: 3,
        password: PasswordSource::Fixed(b"x".to_vec()),
        state: None,
        nas_identifier: None,
    };
    let names: Vec<String> = (0..4).map(|n| t.user(n)).collect();
    assert_eq!(names, ["user10", "user11", "user12", "user10"]);
    let fixed = Template {
        user_pattern: "alice".into(),
        ..t
    };
    assert_eq!(fixed.user(99), "alice");
    assert!(!fixed.distinct_users());
}

#[test]
fn pam_outcomes_classify() {
    use serde_json::json;
    use vip_bench::pam::{classify, PamOutcome};
    assert_eq!(
        classify(&json!({"type":"outcome","outcome":{"Accept":{"message":null}}})),
        PamOutcome::Accept
    );
    assert_eq!(
        classify(&json!({"type":"outcome","outcome":{"Challenge":{}}})),
        PamOutcome::Challenge
    );
    assert_eq!(
        classify(&json!({"type":"outcome","outcome":"Reject"})),
        PamOutcome::Reject
    );
    assert_eq!(
        classify(&json!({"type":"error","kind":"busy","message":"x"})),
        PamOutcome::Other
    );
}
