//! Golden tests of the VIP wire format: our request bodies byte for byte, and parsing of
//! recorded/constructed responses (success, every failure class, namespace checks, garbage).
//!
//! Regenerate request goldens after an intended change with `UPDATE_GOLDEN=1`, then review
//! the diff.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::PathBuf;
use std::time::Duration;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use vip_core::vip::wire::*;
use vip_core::vip::*;

const RID: &str = "REQ_0001";
const SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// International and XML-special: must be escaped, never mangled.
const HARD_USER: &str = "Zoë <&>\"' 山田@example.com";

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(golden_path(name)).unwrap_or_else(|e| panic!("golden file {name}: {e}"))
}

/// Compares a rendered body with its golden file (one trailing newline in the file ignored).
fn check_golden(name: &str, body: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, format!("{body}\n")).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        body,
        want.strip_suffix('\n').unwrap_or(&want),
        "{name} differs from the golden file"
    );
    assert_wellformed_and_qualified(body);
}

/// Every element inside the SOAP Body is in VIP's namespace; the envelope is SOAP 1.1.
/// Returns (namespace, local name, text) of leaves in document order.
fn assert_wellformed_and_qualified(body: &str) -> Vec<(String, String)> {
    let mut r = NsReader::from_str(body);
    let mut depth_in_body: Option<usize> = None;
    let mut depth = 0usize;
    let mut leaves = Vec::new();
    let mut current = String::new();
    loop {
        let (ns, ev) = r.read_resolved_event().expect("well-formed XML");
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let ns = match ns {
                    ResolveResult::Bound(n) => String::from_utf8(n.into_inner().to_vec()).unwrap(),
                    other => panic!("unqualified element {:?}: {other:?}", e.local_name()),
                };
                let local = String::from_utf8(e.local_name().into_inner().to_vec()).unwrap();
                if depth_in_body.is_some() {
                    assert_eq!(ns, VIP_NS, "element {local} in the wrong namespace");
                } else {
                    assert_eq!(ns, SOAP, "envelope element {local}");
                }
                if local == "Body" && ns == SOAP {
                    depth_in_body = Some(depth);
                }
                current = local;
                if matches!(ev, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => {
                depth -= 1;
                if depth_in_body == Some(depth) {
                    depth_in_body = None;
                }
            }
            Event::Text(t) => {
                let t = t.unescape().unwrap().to_string();
                if !t.trim().is_empty() {
                    leaves.push((current.clone(), t));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0);
    leaves
}

// ------------------------------------------------------------------ requests

#[test]
fn request_authenticate_user_full() {
    let body = render_authenticate_user(
        RID,
        &AuthenticateUser {
            user_id: HARD_USER,
            otp: "123456",
            otp2: Some("654321"),
            pin: Some("p<i>n&'\"é"),
            auth_level: Some(3),
        },
    )
    .unwrap();
    check_golden("req_authenticate_user_full.xml", &body);
    // XSD order: requestId, userId, pin, otpAuthData{otp, otp2}, authContext.
    let leaves = assert_wellformed_and_qualified(&body);
    let names: Vec<&str> = leaves.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["requestId", "userId", "pin", "otp", "otp2", "Key", "Value"]
    );
    assert_eq!(
        leaves[1].1, HARD_USER,
        "userId must round-trip through escaping"
    );
    assert_eq!(leaves[2].1, "p<i>n&'\"é");
}

#[test]
fn request_authenticate_user_minimal() {
    let body = render_authenticate_user(
        RID,
        &AuthenticateUser {
            user_id: "alice",
            otp: "AbC123",
            ..Default::default()
        },
    )
    .unwrap();
    check_golden("req_authenticate_user_min.xml", &body);
    assert!(!body.contains("pin") && !body.contains("otp2") && !body.contains("authContext"));
}

#[test]
fn request_check_otp() {
    check_golden(
        "req_check_otp.xml",
        &render_check_otp(RID, HARD_USER, "123456", None, None).unwrap(),
    );
    check_golden(
        "req_check_otp_otp2.xml",
        &render_check_otp(RID, "alice", "123456", Some("7890ab"), None).unwrap(),
    );
    // auth_level is not dropped on checkOtp: authContext after otpAuthData (XSD order).
    check_golden(
        "req_check_otp_level.xml",
        &render_check_otp(RID, "alice", "123456", None, Some(3)).unwrap(),
    );
}

#[test]
fn request_push_full() {
    let body = render_authenticate_user_with_push(
        RID,
        &PushRequest {
            user_id: HARD_USER,
            pin: Some("1234"),
            title: Some("Sign in to VPN"),
            text: Some("From 10.0.0.1 <corp> & \"friends\""),
            profile: Some("https://vpn.example.com/"),
            timeout: Some(Duration::from_secs(60)),
            number_challenge: true,
            extra_request_params: vec![("enforceLocalAuth".into(), "true".into())],
            auth_level: Some(2),
        },
    )
    .unwrap();
    check_golden("req_push_full.xml", &body);
    let leaves = assert_wellformed_and_qualified(&body);
    let pairs: Vec<&str> = leaves.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(
        pairs,
        [
            RID,
            HARD_USER,
            "1234",
            "display.message.title",
            "Sign in to VPN",
            "display.message.text",
            "From 10.0.0.1 <corp> & \"friends\"",
            "display.message.profile",
            "https://vpn.example.com/",
            "request.timeout",
            "60",
            "supportNumberChallenge",
            "true",
            "enforceLocalAuth",
            "true",
            "authLevel.level",
            "2",
        ]
    );
}

#[test]
fn request_push_minimal() {
    let body = render_authenticate_user_with_push(
        RID,
        &PushRequest {
            user_id: "alice",
            ..Default::default()
        },
    )
    .unwrap();
    check_golden("req_push_min.xml", &body);
    assert!(!body.contains("supportNumberChallenge"));
}

#[test]
fn request_poll() {
    check_golden(
        "req_poll.xml",
        &render_poll_push_status(RID, &["aaaa000000000001", "aaaa000000000002"]).unwrap(),
    );
}

#[test]
fn request_user_info() {
    check_golden(
        "req_user_info_push.xml",
        &render_get_user_info(RID, HARD_USER, true).unwrap(),
    );
    check_golden(
        "req_user_info.xml",
        &render_get_user_info(RID, "alice", false).unwrap(),
    );
}

#[test]
fn request_send_otp() {
    check_golden(
        "req_send_otp_sms.xml",
        &render_send_otp(
            RID,
            "alice",
            &OtpDelivery::Sms {
                phone_number: "15551234567".into(),
            },
        )
        .unwrap(),
    );
    check_golden(
        "req_send_otp_voice.xml",
        &render_send_otp(
            RID,
            "alice",
            &OtpDelivery::Voice {
                phone_number: "488555444x,1112".into(),
            },
        )
        .unwrap(),
    );
}

#[test]
fn request_server_time() {
    check_golden("req_server_time.xml", &render_get_server_time(RID).unwrap());
}

#[test]
fn requests_refuse_bad_input_without_sending() {
    let bad = |r: Result<String, VipError>| {
        let e = r.expect_err("should be refused");
        assert!(matches!(e, VipError::BadRequest { .. }), "{e}");
        assert_eq!(e.status(), None, "pre-send refusals carry no VIP status");
    };
    bad(render_check_otp(RID, "alice", "12345", None, None));
    bad(render_check_otp(RID, "alice", "１２３４５６", None, None)); // full-width digits
    bad(render_check_otp(RID, "", "123456", None, None));
    bad(render_check_otp(
        RID,
        &"x".repeat(129),
        "123456",
        None,
        None,
    ));
    bad(render_authenticate_user(
        RID,
        &AuthenticateUser {
            user_id: "a",
            otp: "123456",
            auth_level: Some(11),
            ..Default::default()
        },
    ));
    bad(render_authenticate_user_with_push(
        RID,
        &PushRequest {
            user_id: "a",
            pin: Some("12"),
            ..Default::default()
        },
    ));
    bad(render_authenticate_user_with_push(
        RID,
        &PushRequest {
            user_id: "a",
            title: Some(&"t".repeat(251)),
            ..Default::default()
        },
    ));
    bad(render_authenticate_user_with_push(
        RID,
        &PushRequest {
            user_id: "a",
            timeout: Some(Duration::from_millis(10)),
            ..Default::default()
        },
    ));
    let ids = ["abcd"; 21];
    bad(render_poll_push_status(RID, &ids));
    bad(render_poll_push_status(RID, &[]));
    bad(render_send_otp(
        RID,
        "a",
        &OtpDelivery::Sms {
            phone_number: "+1 555".into(),
        },
    ));
    bad(render_get_server_time("x"));
}

// ------------------------------------------------------------------ responses: success

#[test]
fn parse_authenticate_user_success() {
    let r = parse_authenticate_user(&golden("resp_authenticate_user_ok.xml"), RID).unwrap();
    assert_eq!(
        r,
        OtpAuthResponse {
            request_id: RID.into(),
            credential_id: Some("VSMT16826218".into()),
            credential_type: Some("STANDARD_OTP".into()),
            authn_id: Some("6D8B3A1F0C2E4B57".into()),
            pin_expired: Some(false),
            pin_expiration_time: None,
        }
    );
}

#[test]
fn parse_authenticate_user_pin_expired() {
    let r =
        parse_authenticate_user(&golden("resp_authenticate_user_pin_expired.xml"), RID).unwrap();
    assert_eq!(r.pin_expired, Some(true));
    assert_eq!(
        r.pin_expiration_time.as_deref(),
        Some("2024-01-01T00:00:00.000Z")
    );
}

#[test]
fn parse_check_otp_success() {
    let r = parse_check_otp(&golden("resp_check_otp_ok.xml"), RID).unwrap();
    assert_eq!(r.credential_id.as_deref(), Some("VSMT16826218"));
    assert_eq!(r.authn_id.as_deref(), Some("0F1E2D3C4B5A6978"));
}

#[test]
fn parse_push_sent_without_number() {
    let r = parse_authenticate_user_with_push(&golden("resp_push_6040.xml"), RID).unwrap();
    assert_eq!(r.transaction_id, "8d9e1e4f2a3b4c5d");
    assert_eq!(r.numbers_challenge_value, None);
    assert_eq!(
        r.push_details,
        vec![
            PushDetail {
                credential_id: "VSMT16826218".into(),
                sent: true
            },
            PushDetail {
                credential_id: "SYMC21519954".into(),
                sent: false
            },
        ]
    );
}

#[test]
fn parse_push_sent_with_number() {
    let r = parse_authenticate_user_with_push(&golden("resp_push_6040_number.xml"), RID).unwrap();
    assert_eq!(r.transaction_id, "8d9e1e4f2a3b4c5d");
    assert_eq!(r.numbers_challenge_value.as_deref(), Some("47"));
}

#[test]
fn parse_push_success_is_6040_or_0000() {
    // Some answers to a push say 0000 with a transactionId: that is a push sent too.
    let body = String::from_utf8(golden("resp_push_6040.xml"))
        .unwrap()
        .replace(">6040<", ">0000<");
    let r = parse_authenticate_user_with_push(body.as_bytes(), RID).unwrap();
    assert_eq!(r.transaction_id, "8d9e1e4f2a3b4c5d");
    assert!(r.reached_a_device());
    // ...but a "success" without a usable transactionId is not.
    let body = body.replace("<transactionId>8d9e1e4f2a3b4c5d</transactionId>", "");
    let e = parse_authenticate_user_with_push(body.as_bytes(), RID).unwrap_err();
    assert!(matches!(e, VipError::Protocol { .. }), "{e}");
    let bad = String::from_utf8(golden("resp_push_6040.xml"))
        .unwrap()
        .replace("8d9e1e4f2a3b4c5d", "8d9e-<nope>");
    assert!(parse_authenticate_user_with_push(bad.as_bytes(), RID).is_err());
    // 6040 to an OTP operation is not success.
    let body = String::from_utf8(golden("resp_check_otp_ok.xml"))
        .unwrap()
        .replace(">0000<", ">6040<");
    let e = parse_check_otp(body.as_bytes(), RID).unwrap_err();
    assert_eq!(e.status(), Some(Status::PushSent));
}

#[test]
fn parse_push_that_reached_no_device() {
    let body = String::from_utf8(golden("resp_push_6040.xml"))
        .unwrap()
        .replace("<pushSent>true</pushSent>", "<pushSent>false</pushSent>");
    let r = parse_authenticate_user_with_push(body.as_bytes(), RID).unwrap();
    assert_eq!(r.push_details.len(), 2);
    assert!(!r.reached_a_device());
    // The golden answer reached one of its two devices.
    let r = parse_authenticate_user_with_push(&golden("resp_push_6040.xml"), RID).unwrap();
    assert!(r.reached_a_device());
}

#[test]
fn parse_push_rejected_6008() {
    let e = parse_authenticate_user_with_push(&golden("resp_push_6008.xml"), RID).unwrap_err();
    assert_eq!(e.status(), Some(Status::NoEnabledCredential));
}

#[test]
fn parse_poll_several_transactions() {
    let ids = [
        "aaaa000000000001",
        "aaaa000000000002",
        "aaaa000000000003",
        "aaaa000000000004",
    ];
    let r = parse_poll_push_status(&golden("resp_poll_multi.xml"), RID, &ids).unwrap();
    assert_eq!(r.len(), 4);
    assert_eq!(r[0].transaction_id, ids[0]);
    assert_eq!(r[0].status, PollStatus::Approved);
    assert!(!r[0].status.is_pending());
    assert_eq!(r[0].authn_time.as_deref(), Some("1970-01-01T00:00:00.000Z"));
    assert_eq!(r[0].credential_id.as_deref(), Some("VSMT16826218"));
    assert_eq!(r[0].credential_type.as_deref(), Some("STANDARD_OTP"));
    assert_eq!(r[0].detail, None);
    assert_eq!(r[1].status, PollStatus::InProgress);
    assert!(r[1].status.is_pending());
    assert_eq!(r[1].detail, Some(DetailCode::NumbersChallengePending));
    assert_eq!(
        r[1].detail_message.as_deref(),
        Some("Numbers challenge pending")
    );
    assert_eq!(r[2].status, PollStatus::Denied);
    assert_eq!(r[3].status, PollStatus::NotFound);
    assert_eq!(r[3].status_message, "Push transaction not found");
}

#[test]
fn parse_poll_refuses_unasked_transactions_and_bad_codes() {
    let e = parse_poll_push_status(&golden("resp_poll_multi.xml"), RID, &["aaaa000000000001"])
        .unwrap_err();
    assert!(matches!(e, VipError::Protocol { .. }), "{e}");
    let e = parse_poll_push_status(
        &golden("resp_poll_bad_status.xml"),
        RID,
        &["aaaa000000000001"],
    )
    .unwrap_err();
    assert!(matches!(e, VipError::Protocol { .. }), "{e}");
}

#[test]
fn parse_user_info() {
    let r = parse_get_user_info(&golden("resp_user_info_ok.xml"), RID).unwrap();
    assert_eq!(r.user_id.as_deref(), Some("zoë@example.com"));
    assert_eq!(r.user_status, Some(UserStatus::Active));
    assert_eq!(r.is_pin_set, Some(false));
    assert_eq!(r.credentials.len(), 2);
    let c = &r.credentials[0];
    assert_eq!(c.credential_id, "VSMT16826218");
    assert_eq!(c.credential_type, "STANDARD_OTP");
    assert_eq!(c.credential_status.as_deref(), Some("ENABLED"));
    assert_eq!(c.bind_status.as_deref(), Some("ENABLED"));
    assert_eq!(c.friendly_name.as_deref(), Some("Zoë's phone & tablet"));
    assert_eq!(
        c.push_attributes,
        vec![
            ("PUSH_PLATFORM".into(), "IOS".into()),
            ("PUSH_ENABLED".into(), "true".into())
        ]
    );
    assert!(c.is_enabled() && c.is_push_capable());
    let d = &r.credentials[1];
    assert!(!d.is_enabled() && !d.is_push_capable());
    assert_eq!(c.last_authn_id, None, "1.8 answers have no lastAuthnId");
}

#[test]
fn parse_user_info_1_10_last_authentication() {
    // 1.10 adds lastAuthnTime / lastAuthnId to bindingDetail, after lastBindTime.
    let body = String::from_utf8(golden("resp_user_info_ok.xml")).unwrap().replacen(
        "<lastBindTime>2019-03-04T10:11:12.000Z</lastBindTime>",
        "<lastBindTime>2019-03-04T10:11:12.000Z</lastBindTime><lastAuthnTime>2024-05-01T10:00:00.000Z</lastAuthnTime><lastAuthnId>6D8B3A1F0C2E4B57</lastAuthnId>",
        1,
    );
    let r = parse_get_user_info(body.as_bytes(), RID).unwrap();
    let c = &r.credentials[0];
    assert_eq!(c.last_authn_id.as_deref(), Some("6D8B3A1F0C2E4B57"));
    assert_eq!(
        c.last_authn_time.as_deref(),
        Some("2024-05-01T10:00:00.000Z")
    );
    assert_eq!(r.credentials[1].last_authn_id, None);
}

#[test]
fn parse_send_otp_and_server_time() {
    assert_eq!(
        parse_send_otp(&golden("resp_send_otp_ok.xml"), RID).unwrap(),
        SendOtpResponse {
            request_id: RID.into()
        }
    );
    // 2024-02-29T12:00:00Z = 1709208000; VIP is 5 s ahead.
    let t = parse_get_server_time(&golden("resp_server_time_ok.xml"), RID, 1_709_208_000).unwrap();
    assert_eq!(t.timestamp, "2024-02-29T12:00:05.000Z");
    assert_eq!(t.skew, Some(5));
}

// ------------------------------------------------------------------ responses: rejections

fn rejected(file: &str) -> VipError {
    let body = golden(file);
    if file.starts_with("resp_authenticate_user") {
        parse_authenticate_user(&body, RID).unwrap_err()
    } else {
        parse_check_otp(&body, RID).unwrap_err()
    }
}

#[test]
fn rejected_6009_with_detail_49b5() {
    let e = rejected("resp_check_otp_6009_49b5.xml");
    match &e {
        VipError::Rejected {
            operation,
            status,
            message,
            detail,
            request_id,
        } => {
            assert_eq!(*operation, "checkOtp");
            assert_eq!(*status, Status::AuthenticationFailed);
            assert!(message.contains("Authentication failed."), "{message}");
            assert!(message.contains("Failed with an invalid OTP"), "{message}");
            assert_eq!(detail.as_deref(), Some("49B5"));
            assert_eq!(request_id, RID);
        }
        other => panic!("{other}"),
    }
    assert_eq!(e.request_id(), Some(RID));
    assert!(!e.is_unreachable());
    assert_eq!(DetailCode::parse("49B5"), DetailCode::InvalidOtp);
}

#[test]
fn rejected_each_class() {
    for (file, want) in [
        ("resp_check_otp_6003.xml", Status::UserNotFound),
        ("resp_check_otp_604a.xml", Status::OutOfSync),
        (
            "resp_authenticate_user_601b.xml",
            Status::UserStatusNotAllowed,
        ),
        ("resp_check_otp_600d.xml", Status::CredentialStateNotAllowed),
        ("resp_check_otp_6abc.xml", Status::Other(0x6ABC)),
    ] {
        let e = rejected(file);
        assert!(matches!(e, VipError::Rejected { .. }), "{file}: {e}");
        assert_eq!(e.status(), Some(want), "{file}");
        assert_eq!(e.request_id(), Some(RID), "{file}");
    }
    assert_eq!(
        rejected("resp_check_otp_6abc.xml")
            .status()
            .map(|s| s.code()),
        Some(0x6ABC)
    );
}

#[test]
fn schema_validation_failure_is_bad_request() {
    let e = rejected("resp_check_otp_600b.xml");
    match &e {
        VipError::BadRequest {
            operation,
            request_id,
            message,
        } => {
            assert_eq!(*operation, "checkOtp");
            assert_eq!(request_id, RID);
            assert!(message.contains("600B"), "{message}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(e.status(), Some(Status::SchemaValidationFailed));
}

// ------------------------------------------------------------------ responses: tolerance

#[test]
fn reordered_and_unknown_elements_are_tolerated() {
    let r = parse_check_otp(&golden("resp_check_otp_reordered_extra.xml"), RID).unwrap();
    // The credentialId in a foreign namespace must not be taken.
    assert_eq!(r.credential_id.as_deref(), Some("VSMT16826218"));
    assert_eq!(r.credential_type.as_deref(), Some("STANDARD_OTP"));
    assert_eq!(r.authn_id.as_deref(), Some("0F1E2D3C4B5A6978"));
}

#[test]
fn namespace_on_envelope_and_other_prefixes_are_accepted() {
    let r = parse_check_otp(&golden("resp_check_otp_ns_on_envelope.xml"), RID).unwrap();
    assert_eq!(r.credential_id.as_deref(), Some("VSMT16826218"));
    let r = parse_check_otp(&golden("resp_check_otp_no_decl.xml"), RID).unwrap();
    assert_eq!(r.credential_id, None);
}

#[test]
fn single_quoted_declaration_is_accepted() {
    let body = golden("resp_check_otp_ok.xml");
    assert!(body.starts_with(b"<?xml version='1.0' encoding='UTF-8'?>"));
    assert!(parse_check_otp(&body, RID).is_ok());
}

// ------------------------------------------------------------------ responses: protocol errors

fn protocol(body: &[u8]) -> String {
    match parse_check_otp(body, RID) {
        Err(VipError::Protocol { cause, .. }) => cause,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn wrong_namespace_is_rejected() {
    for file in [
        "resp_check_otp_wrong_ns_vip_symantec.xml",
        "resp_check_otp_wrong_ns_auth.xml",
        "resp_check_otp_unqualified.xml",
    ] {
        let cause = protocol(&golden(file));
        assert!(
            cause.contains("namespace") || cause.contains("expected"),
            "{file}: {cause}"
        );
    }
    let cause = protocol(&golden("resp_check_otp_wrong_ns_vip_symantec.xml"));
    assert!(cause.contains("wrong namespace"), "{cause}");
    // Right response element, unqualified children: nothing of VIP's is there.
    let cause = protocol(&golden("resp_check_otp_children_wrong_ns.xml"));
    assert!(cause.contains("requestId"), "{cause}");
    // SOAP 1.2 envelope is not what VIP speaks.
    protocol(&golden("resp_check_otp_soap12.xml"));
}

#[test]
fn soap_fault_is_protocol_error() {
    let cause = protocol(&golden("resp_fault.xml"));
    assert!(cause.contains("SOAP Fault"), "{cause}");
    assert!(
        cause.contains("Internal server error processing request"),
        "{cause}"
    );
}

#[test]
fn truncated_xml_is_protocol_error() {
    protocol(&golden("resp_check_otp_truncated.xml"));
    // Every prefix of a valid answer must fail cleanly (no panic, no partial success).
    let full = golden("resp_check_otp_ok.xml");
    let end = full.iter().rposition(|b| *b == b'>').unwrap();
    for cut in 0..end {
        assert!(
            parse_check_otp(&full[..cut], RID).is_err(),
            "prefix of {cut} bytes parsed"
        );
    }
}

#[test]
fn html_error_page_is_protocol_error() {
    protocol(&golden("resp_html_error.html"));
    protocol(b"<html><body><h1>Service Unavailable</h1></body></html>");
    protocol(b"Service Unavailable");
}

#[test]
fn request_id_mismatch_is_protocol_error() {
    let cause = match parse_check_otp(&golden("resp_check_otp_ok.xml"), "REQ_0002") {
        Err(VipError::Protocol { cause, .. }) => cause,
        other => panic!("{other:?}"),
    };
    assert!(cause.contains("mismatch"), "{cause}");
    // Also for a rejection: an answer to someone else's request says nothing about ours.
    assert!(matches!(
        parse_check_otp(&golden("resp_check_otp_6003.xml"), "REQ_0002"),
        Err(VipError::Protocol { .. })
    ));
}

#[test]
fn empty_body_is_protocol_error() {
    assert!(protocol(b"").contains("empty"));
    protocol(b"   \n");
}

#[test]
fn wrong_response_element_is_protocol_error() {
    let cause = protocol(&golden("resp_send_otp_ok.xml"));
    assert!(cause.contains("CheckOtpResponse"), "{cause}");
}

#[test]
fn garbage_never_panics() {
    // Cheap fuzz: byte flips over every golden response.
    for entry in std::fs::read_dir(golden_path("")).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("resp_")
        {
            continue;
        }
        let body = std::fs::read(&path).unwrap();
        for i in (0..body.len()).step_by(3) {
            let mut b = body.clone();
            b[i] ^= 0x5a;
            let _ = parse_check_otp(&b, RID);
            let _ = parse_get_user_info(&b, RID);
            let _ = parse_poll_push_status(&b, RID, &["aaaa000000000001"]);
            let _ = parse_authenticate_user_with_push(&b, RID);
            let _ = parse_get_server_time(&b, RID, 0);
        }
    }
}
