//! Wire-level tests of the simulator: hand-written SOAP over mutual TLS with reqwest.

mod common;

use std::time::{Duration, Instant};

use common::*;
use vip_sim::Faults;

fn is_hex(s: &str, len: usize, upper: bool) -> bool {
    s.len() == len
        && s.bytes().all(|b| {
            b.is_ascii_digit()
                || if upper {
                    (b'A'..=b'F').contains(&b)
                } else {
                    (b'a'..=b'f').contains(&b)
                }
        })
}

#[test]
fn totp_matches_rfc6238_vectors() {
    // RFC 6238 appendix B, SHA1, secret "12345678901234567890".
    let s = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(vip_sim::totp::code(s, 59, 8), "94287082");
    assert_eq!(vip_sim::totp::code(s, 1111111109, 8), "07081804");
    assert_eq!(vip_sim::totp::code(s, 1111111111, 8), "14050471");
    assert_eq!(vip_sim::totp::code(s, 1234567890, 8), "89005924");
    assert_eq!(vip_sim::totp::code(s, 2000000000, 8), "69279037");
    assert_eq!(vip_sim::totp::code(s, 20000000000, 8), "65353130");
}

#[tokio::test]
async fn check_otp_success_shape() {
    let h = start().await;
    let (status, body) = {
        let r = h
            .client
            .post(h.url(AUTH))
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(envelope(&check_otp("alice", &code(ALICE_SECRET, 0))))
            .send()
            .await
            .expect("send");
        let ct = r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .to_string();
        assert!(ct.starts_with("text/xml"), "{ct}");
        (r.status().as_u16(), r.text().await.expect("text"))
    };
    assert_eq!(status, 200);
    assert!(
        body.starts_with(
            "<?xml version='1.0' encoding='UTF-8'?><S:Envelope xmlns:S=\"http://schemas.xmlsoap.org/soap/envelope/\"><S:Body><CheckOtpResponse xmlns=\"https://schemas.symantec.com/vip/2011/04/vipuserservices\"><requestId>REQ_check_1</requestId><status>0000</status><statusMessage>Success</statusMessage>"
        ),
        "{body}"
    );
    assert_order(
        &body,
        &[
            "<credentialId>VSMT10000001</credentialId>",
            "<credentialType>STANDARD_OTP</credentialType>",
            "<authnId>",
        ],
    );
    assert!(
        is_hex(&tag(&body, "authnId").expect("authnId"), 16, true),
        "{body}"
    );
    assert!(body.ends_with("</CheckOtpResponse></S:Body></S:Envelope>"));
    // The simulator's own parser reads it with namespaces.
    let root = vip_sim::xml::parse(body.as_bytes()).expect("well-formed");
    let op = vip_sim::xml::soap_body_op(&root).expect("body");
    assert!(op.is(NS, "CheckOtpResponse"));
}

#[tokio::test]
async fn otp_status_codes() {
    let h = start().await;
    // Previous-step code is inside the window.
    assert_eq!(
        status(&h.check_otp("alice", &code(ALICE_SECRET, -1)).await),
        "0000"
    );
    // Replay of the same code.
    let b = h.check_otp("alice", &code(ALICE_SECRET, -1)).await;
    assert_eq!(status(&b), "6009");
    // Wrong code: 6009 with detail 49B5.
    let wrong = if code(ALICE_SECRET, 0) == "000000" {
        "000001"
    } else {
        "000000"
    };
    let b = h.check_otp("alice", wrong).await;
    assert_eq!(status(&b), "6009");
    assert_order(
        &b,
        &[
            "<statusMessage>Authentication failed.</statusMessage>",
            "<detail>49B5</detail>",
            "<detailMessage>Failed with an invalid OTP</detailMessage>",
        ],
    );
    // Bad format: 6009, not 600B.
    for bad in ["12345", "12345678901", "12-456"] {
        assert_eq!(status(&h.check_otp("mona", bad).await), "6009", "{bad}");
    }
    assert_eq!(status(&h.check_otp("nobody", "123456").await), "6003");
    let b = h.check_otp("nobody", "123456").await;
    assert_eq!(
        tag(&b, "statusMessage").as_deref(),
        Some("User does not exist.")
    );
    assert_eq!(
        status(&h.check_otp("frank", &code(ALICE_SECRET, 0)).await),
        "601B"
    );
    assert_eq!(
        status(&h.check_otp("gina", &code(ALICE_SECRET, 0)).await),
        "601B"
    );
    assert_eq!(status(&h.check_otp("hank", "123456").await), "6008");
    assert_eq!(
        status(&h.check_otp("ivy", &code(ALICE_SECRET, 0)).await),
        "600D"
    );
    // User ids are case-insensitive and XML-unescaped.
    assert_eq!(
        status(&h.check_otp("BOB", &code(ALICE_SECRET, 0)).await),
        "0000"
    );
    assert_eq!(
        status(
            &h.check_otp("j&#246;rg&amp;co", &code(ALICE_SECRET, 0))
                .await
        ),
        "0000"
    );
}

#[tokio::test]
async fn schema_validation_600b() {
    let h = start().await;
    let c = code(ALICE_SECRET, 0);
    let long_user = "u".repeat(129);
    let cases = vec![
        check_otp("alice", &c).replace("REQ_check_1", "abc"),
        check_otp("alice", &c).replace("REQ_check_1", "bad-id!"),
        check_otp("alice", &c).replace("REQ_check_1", &"a".repeat(41)),
        check_otp("alice", &c).replace("<vip:userId>alice</vip:userId>", ""),
        check_otp(&long_user, &c),
        "<vip:CheckOtpRequest><vip:requestId>REQ_1234</vip:requestId><vip:userId>alice</vip:userId></vip:CheckOtpRequest>".to_string(),
        auth_user("alice", Some("123"), &c, None),
        poll_req(&["abcd"; 21]),
        poll_req(&[]),
        poll_req(&["bad-id"]),
    ];
    for req in cases {
        let b = h
            .ok(if req.contains("Poll") { QUERY } else { AUTH }, &req)
            .await;
        assert_eq!(status(&b), "600B", "{req}\n{b}");
        assert_eq!(
            tag(&b, "statusMessage").as_deref(),
            Some("Schema validation failed.")
        );
    }
    // 600B echoes the requestId it was given.
    let b = h
        .ok(AUTH, &check_otp("alice", &c).replace("REQ_check_1", "abc"))
        .await;
    assert_eq!(tag(&b, "requestId").as_deref(), Some("abc"));
}

#[tokio::test]
async fn authenticate_user_pin_and_temporary_code() {
    let h = start().await;
    let b = h
        .auth_user("pia", Some("1234"), &code(ALICE_SECRET, -1))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(b.contains("<AuthenticateUserResponse xmlns="));
    assert_eq!(tag(&b, "credentialId").as_deref(), Some("VSMT10000014"));
    let b = h
        .auth_user("pia", Some("9999"), &code(ALICE_SECRET, 0))
        .await;
    assert_eq!(status(&b), "601F");
    assert_eq!(
        tag(&b, "statusMessage").as_deref(),
        Some("Invalid user PIN.")
    );
    // A user with a PIN must send it.
    assert_eq!(
        status(&h.auth_user("pia", None, &code(ALICE_SECRET, 0)).await),
        "601F"
    );
    // Temporary code: authenticateUser yes, checkOtp no.
    assert_eq!(status(&h.auth_user("alice", None, "7654321").await), "0000");
    assert_eq!(status(&h.check_otp("alice", "7654321").await), "6009");
    assert_eq!(status(&h.auth_user("frank", None, "123456").await), "601B");
}

#[tokio::test]
async fn lockout_after_consecutive_bad_codes() {
    let h = start().await; // lockout_after = 3
    let good_prev = code(KIM_SECRET, -1);
    let wrong = if good_prev == "111111" || code(KIM_SECRET, 0) == "111111" {
        "222222"
    } else {
        "111111"
    };
    for _ in 0..3 {
        assert_eq!(status(&h.check_otp("kim", wrong).await), "6009");
    }
    // Credential is now LOCKED: authenticateUser refuses even a good code...
    let b = h.auth_user("kim", None, &code(KIM_SECRET, 0)).await;
    assert_eq!(status(&b), "600D", "{b}");
    // ...while checkOtp still validates a locked credential.
    assert_eq!(status(&h.check_otp("kim", &good_prev).await), "0000");
    let info = h
        .ok(QUERY, "<vip:GetUserInfoRequest><vip:requestId>REQ_info</vip:requestId><vip:userId>kim</vip:userId></vip:GetUserInfoRequest>")
        .await;
    assert_eq!(tag(&info, "credentialStatus").as_deref(), Some("LOCKED"));
}

#[tokio::test]
async fn out_of_sync_604a_then_resync() {
    let h = start().await; // judy's token runs 5 steps ahead
    assert_eq!(h.sim.current_code("judy"), Some(code(JUDY_SECRET, 5)));
    let b = h.auth_user("judy", None, &code(JUDY_SECRET, 5)).await;
    assert_eq!(status(&b), "604A", "{b}");
    assert_eq!(tag(&b, "statusMessage").as_deref(), Some("OTP out of sync"));
    // Wrong pair: refused.
    let b = h
        .ok(
            AUTH,
            &auth_user(
                "judy",
                None,
                &code(JUDY_SECRET, 5),
                Some(&code(JUDY_SECRET, 8)),
            ),
        )
        .await;
    assert_eq!(status(&b), "6009");
    // Two consecutive codes of the drifted clock: accepted and the drift is learned.
    let b = h
        .ok(
            AUTH,
            &auth_user(
                "judy",
                None,
                &code(JUDY_SECRET, 5),
                Some(&code(JUDY_SECRET, 6)),
            ),
        )
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    let b = h.check_otp("judy", &code(JUDY_SECRET, 7)).await;
    assert_eq!(status(&b), "0000", "{b}");
}

#[tokio::test]
async fn push_approve_then_consumed() {
    let h = start().await;
    let b = h.push("alice", &[]).await;
    assert_eq!(status(&b), "6040", "{b}");
    assert_eq!(
        tag(&b, "statusMessage").as_deref(),
        Some("Mobile push request sent")
    );
    let txn = tag(&b, "transactionId").expect("transactionId");
    assert!(is_hex(&txn, 16, false), "{txn}");
    assert_order(
        &b,
        &["<transactionId>", "<pushDetail><pushCredentialId>VSMT10000001</pushCredentialId><pushSent>true</pushSent></pushDetail>"],
    );
    assert!(!b.contains("numbersChallengeValue"));
    let p = h.poll(&[&txn, "0123456789abcdef"]).await;
    assert!(p.contains("<PollPushStatusResponse xmlns="));
    assert_eq!(status(&p), "0000");
    let st = tags(&p, "transactionStatus");
    assert_eq!(st.len(), 2, "{p}");
    assert_order(
        &st[0],
        &[
            &format!("<transactionId>{txn}</transactionId>"),
            "<status>7000</status>",
            "<statusMessage>",
            "<authnTime>1970-01-01T00:00:00.000Z</authnTime>",
            "<credentialId>VSMT10000001</credentialId>",
            "<credentialType>STANDARD_OTP</credentialType>",
        ],
    );
    assert!(st[1].contains("<status>7005</status>"));
    let p = h.poll(&[&txn]).await;
    assert_eq!(tag(&p, "status").as_deref(), Some("0000"));
    assert!(p.contains("<status>7005</status>"), "{p}");
}

#[tokio::test]
async fn push_deny_never_delay_and_errors() {
    let h = start().await;
    let deny = tag(&h.push("bob", &[]).await, "transactionId").expect("txn");
    let p = h.poll(&[&deny]).await;
    assert!(p.contains("<status>7002</status>"), "{p}");
    assert!(p.contains("<authnTime>1970-01-01T00:00:00.000Z</authnTime>"));

    let never = tag(
        &h.push("carol", &[("request.timeout", "1")]).await,
        "transactionId",
    )
    .expect("txn");
    let delayed = tag(&h.push("dave", &[]).await, "transactionId").expect("txn");
    let p = h.poll(&[&never, &delayed]).await;
    assert_eq!(p.matches("<status>7001</status>").count(), 2, "{p}");
    assert!(
        !p.contains("<detail>"),
        "no number challenge was asked: {p}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let p = h.poll(&[&never, &delayed]).await;
    let st = tags(&p, "transactionStatus");
    assert!(st[0].contains("<status>7004</status>"), "{p}");
    assert!(st[1].contains("<status>7000</status>"), "{p}");

    assert_eq!(status(&h.push("mona", &[]).await), "6008");
    assert_eq!(status(&h.push("ivy", &[]).await), "6008");
    assert_eq!(status(&h.push("nobody", &[]).await), "6003");
    assert_eq!(status(&h.push("frank", &[]).await), "601B");
    let with_pin = push_req("alice", &[]).replace(
        "<vip:pushAuthData>",
        "<vip:pin>0000</vip:pin><vip:pushAuthData>",
    );
    assert_eq!(status(&h.ok(AUTH, &with_pin).await), "601F");
    let no_push_data = "<vip:AuthenticateUserWithPushRequest><vip:requestId>REQ_1234</vip:requestId><vip:userId>alice</vip:userId></vip:AuthenticateUserWithPushRequest>";
    assert_eq!(status(&h.ok(AUTH, no_push_data).await), "600B");
}

#[tokio::test]
async fn push_number_challenge() {
    let h = start_with(&users_with_policy("number_challenge = true")).await;
    let b = h
        .push_at(AUTH10, "dave", &[("supportNumberChallenge", "true")])
        .await;
    assert_eq!(status(&b), "6040");
    assert_order(
        &b,
        &[
            "<pushDetail>",
            "</pushDetail>",
            "<numbersChallengeValue>42</numbersChallengeValue>",
        ],
    );
    let txn = tag(&b, "transactionId").expect("txn");
    let p = h.poll(&[&txn]).await;
    assert_order(
        &p,
        &[
            "<status>7001</status>",
            "<detail>7140</detail>",
            "<detailMessage>",
        ],
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(h.poll(&[&txn]).await.contains("<status>7000</status>"));

    let b = h
        .push_at(AUTH10, "erin", &[("supportNumberChallenge", "true")])
        .await;
    assert_eq!(tag(&b, "numbersChallengeValue").as_deref(), Some("17"));
    let p = h.poll(&[&tag(&b, "transactionId").expect("txn")]).await;
    assert_order(&p, &["<status>7008</status>", "<detail>7141</detail>"]);

    // Random number when none is configured.
    let b = h
        .push_at(AUTH10, "alice", &[("supportNumberChallenge", "true")])
        .await;
    let n: u32 = tag(&b, "numbersChallengeValue")
        .expect("number")
        .parse()
        .expect("digits");
    assert!((10..=99).contains(&n));
}

#[tokio::test]
async fn get_user_info_and_server_time() {
    let h = start().await;
    let b = h
        .ok(QUERY, "<vip:GetUserInfoRequest><vip:requestId>REQ_info</vip:requestId><vip:userId>ALICE</vip:userId><vip:includePushAttributes>true</vip:includePushAttributes></vip:GetUserInfoRequest>")
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_order(
        &b,
        &[
            "<userId>alice</userId>",
            "<userCreationTime>",
            "<userStatus>ACTIVE</userStatus>",
            "<numBindings>3</numBindings>",
            "<credentialBindingDetail><credentialId>VSMT10000001</credentialId><credentialType>STANDARD_OTP</credentialType><credentialStatus>ENABLED</credentialStatus><bindingDetail><bindStatus>ENABLED</bindStatus><friendlyName>Alice phone</friendlyName><lastBindTime>",
            "<pushAttributes><Key>PUSH_PLATFORM</Key><Value>IOS</Value></pushAttributes><pushAttributes><Key>PUSH_ENABLED</Key><Value>true</Value></pushAttributes></credentialBindingDetail>",
            "<credentialId>15550000001</credentialId><credentialType>SMS_OTP</credentialType>",
            "<credentialId>15550000002</credentialId><credentialType>VOICE_OTP</credentialType>",
        ],
    );
    let b = h
        .ok(QUERY, "<vip:GetUserInfoRequest><vip:requestId>REQ_info</vip:requestId><vip:userId>alice</vip:userId><vip:includePushAttributes>false</vip:includePushAttributes></vip:GetUserInfoRequest>")
        .await;
    assert!(!b.contains("pushAttributes"), "{b}");
    let b = h
        .ok(QUERY, "<vip:GetUserInfoRequest><vip:requestId>REQ_info</vip:requestId><vip:userId>frank</vip:userId></vip:GetUserInfoRequest>")
        .await;
    assert_eq!(tag(&b, "userStatus").as_deref(), Some("DISABLED"));
    let b = h
        .ok(QUERY, "<vip:GetUserInfoRequest><vip:requestId>REQ_info</vip:requestId><vip:userId>nobody</vip:userId></vip:GetUserInfoRequest>")
        .await;
    assert_eq!(status(&b), "6003");

    let b = h
        .ok(QUERY, "<vip:GetServerTimeRequest><vip:requestId>REQ_time</vip:requestId></vip:GetServerTimeRequest>")
        .await;
    assert_eq!(status(&b), "0000");
    assert!(b.contains("<GetServerTimeResponse xmlns="));
    let ts = tag(&b, "timestamp").expect("timestamp");
    assert_eq!(ts.len(), 24, "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
}

fn send_otp(user: &str, kind: &str, phone: &str) -> String {
    let info = if kind.is_empty() {
        String::new()
    } else {
        format!("<vip:{kind}><vip:phoneNumber>{phone}</vip:phoneNumber></vip:{kind}>")
    };
    format!("<vip:SendOtpRequest><vip:requestId>REQ_send</vip:requestId><vip:userId>{user}</vip:userId>{info}</vip:SendOtpRequest>")
}

#[tokio::test]
async fn send_otp_sms_and_voice() {
    let h = start().await;
    assert_eq!(h.sim.last_sent_code("alice"), None);
    let b = h
        .ok(MGMT, &send_otp("alice", "smsDeliveryInfo", "15550000001"))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(b.contains("<SendOtpResponse xmlns="));
    let sms = h.sim.last_sent_code("alice").expect("code sent");
    assert!(sms.len() == 6 && sms.bytes().all(|c| c.is_ascii_digit()));
    let b = h.check_otp("alice", &sms).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(tag(&b, "credentialId").as_deref(), Some("15550000001"));
    assert_eq!(tag(&b, "credentialType").as_deref(), Some("SMS_OTP"));
    // Used once only (unless it happens to equal a TOTP code in the window).
    let again = h.check_otp("alice", &sms).await;
    assert_ne!(tag(&again, "credentialType").as_deref(), Some("SMS_OTP"));

    h.ok(MGMT, &send_otp("alice", "voiceDeliveryInfo", "15550000002"))
        .await;
    let voice = h.sim.last_sent_code("alice").expect("voice code");
    let b = h.auth_user("alice", None, &voice).await;
    assert_eq!(
        tag(&b, "credentialType").as_deref(),
        Some("VOICE_OTP"),
        "{b}"
    );

    assert_eq!(
        status(
            &h.ok(MGMT, &send_otp("alice", "smsDeliveryInfo", "15559999999"))
                .await
        ),
        "6015"
    );
    assert_eq!(
        status(
            &h.ok(MGMT, &send_otp("alice", "smsDeliveryInfo", "+1555"))
                .await
        ),
        "600B"
    );
    assert_eq!(
        status(
            &h.ok(MGMT, &send_otp("bob", "smsDeliveryInfo", "15550000001"))
                .await
        ),
        "6008"
    );
    assert_eq!(
        status(&h.ok(MGMT, &send_otp("nobody", "", "")).await),
        "6003"
    );
    assert_eq!(
        status(&h.ok(MGMT, &send_otp("alice", "", "")).await),
        "0000"
    );
}

#[tokio::test]
async fn dispatch_paths_services_and_garbage() {
    let h = start().await;
    let c = code(ALICE_SECRET, 0);
    // Any version suffix works.
    assert_eq!(
        status(
            &h.ok("AuthenticationService_1_3", &check_otp("bob", &c))
                .await
        ),
        "0000"
    );
    // An operation posted to the wrong service: SOAP Fault, HTTP 500.
    let (s, b) = h.call(QUERY, &check_otp("alice", &c)).await;
    assert_eq!(s, 500);
    assert!(
        b.contains("<S:Fault") && b.contains("<faultcode>S:Client</faultcode>"),
        "{b}"
    );
    let (s, _) = h.call(AUTH, &poll_req(&["abcd"])).await;
    assert_eq!(s, 500);
    let (s, _) = h.call(AUTH, &send_otp("alice", "", "")).await;
    assert_eq!(s, 500);
    // Wrong namespace (a serde-style parser ignoring prefixes would accept it).
    let wrong_ns =
        envelope(&check_otp("alice", &c)).replace(NS, "https://schemas.vip.symantec.com");
    let (s, b) = h.post_raw(AUTH, wrong_ns).await;
    assert_eq!(s, 500);
    assert!(b.contains("Fault"));
    // Unknown operation in the right namespace.
    let (s, _) = h
        .call(
            AUTH,
            "<vip:FooRequest><vip:requestId>abcd</vip:requestId></vip:FooRequest>",
        )
        .await;
    assert_eq!(s, 500);
    // Garbage and non-SOAP bodies.
    for body in [
        "",
        "garbage",
        "<a>",
        "<Envelope/>",
        "<?xml version='1.0'?><x:y/>",
    ] {
        let (s, b) = h.post_raw(AUTH, body.to_string()).await;
        assert_eq!(s, 500, "{body}");
        assert!(b.contains("S:Fault"), "{b}");
    }
    let (s, _) = h
        .post_raw(
            AUTH,
            String::from_utf8_lossy(&[0xff, 0xfe, 0, 1]).into_owned(),
        )
        .await;
    assert_eq!(s, 500);
    // Other paths: 404; GET: 405.
    let r = h
        .client
        .post(format!(
            "{}/vipuserservices/OtherService_1_8",
            h.sim.base_url()
        ))
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 404);
    let r = h
        .client
        .post(format!("{}/", h.sim.base_url()))
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 404);
    let r = h.client.get(h.url(AUTH)).send().await.expect("send");
    assert_eq!(r.status().as_u16(), 405);
    // Bodies over 1 MiB: 413.
    let big = envelope(&"<!-- padding -->".repeat(70_000));
    let (s, _) = h.post_raw(AUTH, big).await;
    assert_eq!(s, 413);
    // Still serving.
    assert_eq!(status(&h.check_otp("alice", &c).await), "0000");
}

#[tokio::test]
async fn faults_each_kind() {
    let h = start().await;
    let c = code(ALICE_SECRET, 0);
    // Per-user fault (leo has http_500) does not touch others.
    let (s, b) = h.call(AUTH, &check_otp("leo", &c)).await;
    assert_eq!(s, 500);
    assert!(!b.contains("Envelope"));
    assert_eq!(status(&h.check_otp("bob", &c).await), "0000");

    h.sim.set_global_faults(Faults {
        soap_fault: true,
        ..Faults::default()
    });
    let (s, b) = h.call(AUTH, &check_otp("bob", &c)).await;
    assert_eq!(s, 500);
    assert!(
        b.contains("<S:Fault") && b.contains("<faultcode>S:Server</faultcode>"),
        "{b}"
    );

    h.sim.set_global_faults(Faults {
        malformed_xml: true,
        ..Faults::default()
    });
    let (s, b) = h.call(QUERY, "<vip:GetServerTimeRequest><vip:requestId>REQ_time</vip:requestId></vip:GetServerTimeRequest>").await;
    assert_eq!(s, 200);
    assert!(b.starts_with("<?xml"));
    assert!(vip_sim::xml::parse(b.as_bytes()).is_err(), "{b}");

    h.sim.set_global_faults(Faults {
        connection_reset: true,
        ..Faults::default()
    });
    let r = h
        .client
        .post(h.url(AUTH))
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(envelope(&check_otp("bob", &c)))
        .send()
        .await;
    assert!(r.is_err(), "expected a dropped connection, got {r:?}");

    h.sim.set_global_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let t = Instant::now();
    let b = h.ok(QUERY, "<vip:GetServerTimeRequest><vip:requestId>REQ_time</vip:requestId></vip:GetServerTimeRequest>").await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(status(&b), "0000");

    h.sim.set_global_faults(Faults {
        http_500: true,
        ..Faults::default()
    });
    let (s, _) = h.call(AUTH, &check_otp("bob", &c)).await;
    assert_eq!(s, 500);

    h.sim.set_global_faults(Faults::default());
    assert!(h.sim.set_user_faults("leo", Faults::default()));
    assert!(!h.sim.set_user_faults("nobody", Faults::default()));
    let b = h.check_otp("leo", &c).await;
    assert_eq!(status(&b), "0000");
    // Faults keyed by the transaction's user for polls.
    let txn = tag(&h.push("alice", &[]).await, "transactionId").expect("txn");
    h.sim.set_user_faults(
        "alice",
        Faults {
            soap_fault: true,
            ..Faults::default()
        },
    );
    let (s, _) = h.call(QUERY, &poll_req(&[&txn])).await;
    assert_eq!(s, 500);
}

#[tokio::test]
async fn faults_from_toml_config() {
    let h = start_with(&format!("[faults]\nhttp_500 = true\n{USERS}")).await;
    let (s, _) = h
        .call(AUTH, &check_otp("bob", &code(ALICE_SECRET, 0)))
        .await;
    assert_eq!(s, 500);
}

#[tokio::test]
async fn client_certificate_required() {
    let h = start().await;
    let anon = client_for(&h.certs, false);
    let r = anon
        .post(h.url(AUTH))
        .body(envelope(&check_otp("bob", "123456")))
        .send()
        .await;
    assert!(
        r.is_err(),
        "a client without a certificate must be refused: {r:?}"
    );
    // A certificate from another CA is refused too.
    let other = tempfile::tempdir().expect("dir");
    let mut other_certs = vip_sim::certs::generate(other.path()).expect("certs");
    other_certs.ca_cert = h.certs.ca_cert.clone(); // trust the sim's server, present a foreign client cert
    let foreign = client_for(&other_certs, true);
    let r = foreign
        .post(h.url(AUTH))
        .body(envelope(&check_otp("bob", "123456")))
        .send()
        .await;
    assert!(
        r.is_err(),
        "a foreign client certificate must be refused: {r:?}"
    );
    assert_eq!(h.sim.counters().tls_handshakes, 0);
    assert_eq!(h.sim.counters().http_requests, 0);
}

#[tokio::test]
async fn counters_count_calls_requests_and_handshakes() {
    let h = start().await;
    let c = code(ALICE_SECRET, 0);
    h.check_otp("bob", &c).await;
    h.check_otp("bob", "000000").await;
    h.auth_user("alice", None, &c).await;
    h.push("alice", &[]).await;
    h.poll(&["abcd"]).await;
    h.ok(QUERY, "<vip:GetServerTimeRequest><vip:requestId>REQ_time</vip:requestId></vip:GetServerTimeRequest>").await;
    h.ok(QUERY, "<vip:GetUserInfoRequest><vip:requestId>REQ_info</vip:requestId><vip:userId>alice</vip:userId></vip:GetUserInfoRequest>").await;
    h.ok(MGMT, &send_otp("alice", "", "")).await;
    let _ = h.call(QUERY, &check_otp("bob", &c)).await; // refused: not counted as checkOtp
    let n = h.sim.counters();
    assert_eq!(n.calls("checkOtp"), 2, "{n:?}");
    assert_eq!(n.calls("authenticateUser"), 1);
    assert_eq!(n.calls("authenticateUserWithPush"), 1);
    assert_eq!(n.calls("pollPushStatus"), 1);
    assert_eq!(n.calls("getServerTime"), 1);
    assert_eq!(n.calls("getUserInfo"), 1);
    assert_eq!(n.calls("sendOtp"), 1);
    assert_eq!(n.calls("nothing"), 0);
    assert_eq!(n.http_requests, 9);
    assert_eq!(n.tls_handshakes, 1, "keep-alive reuses one connection");
    // A second client: a second handshake.
    let other = client_for(&h.certs, true);
    other
        .post(h.url(AUTH))
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(envelope(&check_otp("bob", "123456")))
        .send()
        .await
        .expect("send");
    assert_eq!(h.sim.counters().tls_handshakes, 2);
    h.sim.reset_counters();
    assert_eq!(h.sim.counters(), vip_sim::Counters::default());
}

#[tokio::test]
async fn admin_api() {
    let h = start().await;
    let admin = format!("http://{}", h.sim.admin_addr().expect("admin"));
    let http = reqwest::Client::new();
    let get = |p: &str| http.get(format!("{admin}{p}")).send();
    let r = get("/healthz").await.expect("healthz");
    assert_eq!(r.status().as_u16(), 200);
    h.check_otp("bob", "000000").await;
    let v: serde_json::Value = get("/counters")
        .await
        .expect("c")
        .text()
        .await
        .map(|t| serde_json::from_str(&t).expect("json"))
        .expect("text");
    assert_eq!(v["calls"]["checkOtp"], 1);
    assert_eq!(v["http_requests"], 1);
    assert_eq!(v["tls_handshakes"], 1);
    let r = http
        .post(format!("{admin}/counters/reset"))
        .send()
        .await
        .expect("reset");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(h.sim.counters().total_calls(), 0);

    assert_eq!(
        get("/sent-codes/alice").await.expect("s").status().as_u16(),
        404
    );
    h.ok(MGMT, &send_otp("alice", "smsDeliveryInfo", "15550000001"))
        .await;
    let v: serde_json::Value = get("/sent-codes/alice")
        .await
        .expect("s")
        .text()
        .await
        .map(|t| serde_json::from_str(&t).expect("json"))
        .expect("text");
    assert_eq!(v["code"].as_str(), h.sim.last_sent_code("alice").as_deref());

    let v: serde_json::Value = get("/users/alice/code")
        .await
        .expect("c")
        .text()
        .await
        .map(|t| serde_json::from_str(&t).expect("json"))
        .expect("text");
    let shown = v["code"].as_str().expect("code").to_string();
    assert!(shown == code(ALICE_SECRET, 0) || shown == code(ALICE_SECRET, 1));
    let r = get("/users/J%C3%B6rg%26Co/code").await.expect("c");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        get("/users/nobody/code")
            .await
            .expect("c")
            .status()
            .as_u16(),
        404
    );

    let r = http
        .post(format!("{admin}/faults"))
        .body(r#"{"soap_fault": true}"#)
        .send()
        .await
        .expect("faults");
    assert_eq!(r.status().as_u16(), 200);
    assert!(h.sim.global_faults().soap_fault);
    let (s, _) = h.call(AUTH, &check_otp("bob", "123456")).await;
    assert_eq!(s, 500);
    let r = http
        .post(format!("{admin}/faults"))
        .body("{not json")
        .send()
        .await
        .expect("faults");
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .post(format!("{admin}/faults"))
        .body("{}")
        .send()
        .await
        .expect("faults");
    assert_eq!(r.status().as_u16(), 200);
    assert!(h.sim.global_faults().is_none());
    let r = http
        .post(format!("{admin}/users/bob/faults"))
        .body(r#"{"http_500":true}"#)
        .send()
        .await
        .expect("uf");
    assert_eq!(r.status().as_u16(), 200);
    let (s, _) = h.call(AUTH, &check_otp("bob", "123456")).await;
    assert_eq!(s, 500);
    assert_eq!(get("/nope").await.expect("n").status().as_u16(), 404);
}

#[tokio::test]
async fn gen_certs_output_is_loadable() {
    let dir = tempfile::tempdir().expect("dir");
    let p = vip_sim::certs::generate(dir.path()).expect("generate");
    for f in [
        "ca.pem",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
        "client.p12",
        "client.p12.password",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let pw = std::fs::read_to_string(dir.path().join("client.p12.password")).expect("pw");
    assert_eq!(pw.trim(), p.p12_password);
    let has_openssl = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok();
    if has_openssl {
        let out = std::process::Command::new("openssl")
            .args(["pkcs12", "-in"])
            .arg(&p.client_p12)
            .arg("-passin")
            .arg(format!("pass:{}", p.p12_password))
            .arg("-nokeys")
            .output()
            .expect("openssl pkcs12");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("BEGIN CERTIFICATE"));
        let out = std::process::Command::new("openssl")
            .args(["pkcs12", "-passin", "pass:wrong", "-nokeys", "-in"])
            .arg(&p.client_p12)
            .output()
            .expect("openssl pkcs12");
        assert!(!out.status.success(), "wrong password must fail");
        for (cert, purpose) in [(&p.server_cert, "sslserver"), (&p.client_cert, "sslclient")] {
            let out = std::process::Command::new("openssl")
                .args(["verify", "-purpose", purpose, "-CAfile"])
                .arg(&p.ca_cert)
                .arg(cert)
                .output()
                .expect("openssl verify");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(&p.server_cert)
            .output()
            .expect("openssl x509");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("DNS:localhost")
                && text.contains("127.0.0.1")
                && text.contains("0:0:0:0:0:0:0:1"),
            "{text}"
        );
    }
    // The server serves over ::1 too with this certificate (when IPv6 loopback exists).
    let mut cfg = config(&p, USERS);
    cfg.server.listen = "[::1]:0".parse().expect("addr");
    cfg.server.admin_listen = None;
    if let Ok(sim) = vip_sim::Sim::start(cfg).await {
        let client = client_for(&p, true);
        let r = client
            .post(format!("{}/vipuserservices/{AUTH}", sim.base_url()))
            .header("Content-Type", "text/xml")
            .body(envelope(&check_otp("bob", &code(ALICE_SECRET, 0))))
            .send()
            .await
            .expect("IPv6 request");
        assert_eq!(r.status().as_u16(), 200);
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn shutdown_releases_the_port() {
    let h = start().await;
    let addr = h.sim.addr();
    assert!(h.sim.base_url().starts_with("https://127.0.0.1:"));
    h.sim.shutdown().await;
    let r = h
        .client
        .post(format!("https://{addr}/vipuserservices/{AUTH}"))
        .body("x")
        .send()
        .await;
    assert!(r.is_err());
}

#[tokio::test]
async fn mutated_bodies_never_break_the_server() {
    use rand::Rng;
    let h = start().await;
    let base = envelope(&push_req("alice", &[("request.timeout", "5")]));
    let mut rng = rand::thread_rng();
    for i in 0..150 {
        let mut bytes = base.clone().into_bytes();
        for _ in 0..rng.gen_range(1..8) {
            if bytes.len() < 2 {
                break;
            }
            let at = rng.gen_range(0..bytes.len());
            match rng.gen_range(0..3) {
                0 => bytes[at] = rng.gen(),
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at.max(1)),
            }
        }
        let r = h
            .client
            .post(h.url(AUTH))
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(bytes)
            .send()
            .await
            .unwrap_or_else(|e| panic!("iteration {i}: {e}"));
        let s = r.status().as_u16();
        assert!(s == 200 || s == 500, "iteration {i}: HTTP {s}");
    }
    assert_eq!(
        status(&h.check_otp("alice", &code(ALICE_SECRET, 0)).await),
        "0000"
    );
}

#[tokio::test]
async fn silent_and_plaintext_clients_are_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = start_with(&USERS.replace("io_timeout_ms = 3000", "io_timeout_ms = 300")).await;
    // A client that never starts the TLS handshake is disconnected after io_timeout.
    let mut tcp = tokio::net::TcpStream::connect(h.sim.addr())
        .await
        .expect("connect");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // Plain HTTP on the TLS port: no answer that looks like HTTP.
    let mut tcp = tokio::net::TcpStream::connect(h.sim.addr())
        .await
        .expect("connect");
    tcp.write_all(b"POST /vipuserservices/QueryService_1_8 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut out)).await;
    assert!(!out.starts_with(b"HTTP/"));
    assert_eq!(h.sim.counters().tls_handshakes, 0);
    // Still serving.
    assert_eq!(
        status(&h.check_otp("alice", &code(ALICE_SECRET, 0)).await),
        "0000"
    );
}
