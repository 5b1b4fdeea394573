//! The simulator is as strict as VIP (schema order and cardinality, Content-Type, untrimmed
//! text, PIN rules, number challenge) and has the fault knobs other tests rely on. Each test
//! covers one refusal or one knob, over real mutual TLS.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vip_sim::Faults;

/// Asserts a 600B answer that echoes `rid`.
fn assert_600b(b: &str, rid: &str) {
    assert_eq!(status(b), "600B", "{b}");
    assert_eq!(
        tag(b, "statusMessage").as_deref(),
        Some("Schema validation failed."),
        "{b}"
    );
    assert_eq!(tag(b, "requestId").as_deref(), Some(rid), "{b}");
}

fn get_server_time() -> &'static str {
    "<vip:GetServerTimeRequest><vip:requestId>REQ_time</vip:requestId></vip:GetServerTimeRequest>"
}

#[tokio::test]
async fn out_of_order_elements_are_600b() {
    let h = start().await;
    let c = code(ALICE_SECRET, 0);
    // userId before requestId.
    let b = h
        .ok(AUTH, &format!("<vip:CheckOtpRequest><vip:userId>bob</vip:userId><vip:requestId>REQ_order</vip:requestId><vip:otpAuthData><vip:otp>{c}</vip:otp></vip:otpAuthData></vip:CheckOtpRequest>"))
        .await;
    assert_600b(&b, "REQ_order");
    // pin after otpAuthData.
    let b = h
        .ok(AUTH, &format!("<vip:AuthenticateUserRequest><vip:requestId>REQ_order</vip:requestId><vip:userId>pia</vip:userId><vip:otpAuthData><vip:otp>{c}</vip:otp></vip:otpAuthData><vip:pin>1234</vip:pin></vip:AuthenticateUserRequest>"))
        .await;
    assert_600b(&b, "REQ_order");
    // Value before Key.
    let b = h.push("alice", &[]).await;
    assert_eq!(status(&b), "6040", "the well-ordered push is accepted: {b}");
    let swapped = push_req("alice", &[]).replace(
        "<vip:Key>display.message.title</vip:Key><vip:Value>Sign in</vip:Value>",
        "<vip:Value>Sign in</vip:Value><vip:Key>display.message.title</vip:Key>",
    );
    assert_600b(&h.ok(AUTH, &swapped).await, "REQ_push_1");
    // The same code in the right order is still good: nothing was consumed.
    assert_eq!(status(&h.check_otp("bob", &c).await), "0000");
}

#[tokio::test]
async fn missing_required_element_is_600b() {
    let h = start().await;
    let c = code(ALICE_SECRET, 0);
    let no_user = check_otp("bob", &c).replace("<vip:userId>bob</vip:userId>", "");
    assert_600b(&h.ok(AUTH, &no_user).await, "REQ_check_1");
    let no_otp = check_otp("bob", &c).replace(&format!("<vip:otp>{c}</vip:otp>"), "");
    assert_600b(&h.ok(AUTH, &no_otp).await, "REQ_check_1");
    let no_push_data = "<vip:AuthenticateUserWithPushRequest><vip:requestId>REQ_push_1</vip:requestId><vip:userId>alice</vip:userId></vip:AuthenticateUserWithPushRequest>";
    assert_600b(&h.ok(AUTH, no_push_data).await, "REQ_push_1");
    assert_600b(&h.poll(&[]).await, "REQ_poll_1");
    let no_rid = "<vip:GetServerTimeRequest></vip:GetServerTimeRequest>";
    assert_600b(&h.ok(QUERY, no_rid).await, "");
}

#[tokio::test]
async fn duplicated_element_is_600b() {
    let h = start().await;
    let c = code(ALICE_SECRET, 0);
    let two_users = check_otp("bob", &c).replace(
        "<vip:userId>bob</vip:userId>",
        "<vip:userId>bob</vip:userId><vip:userId>bob</vip:userId>",
    );
    assert_600b(&h.ok(AUTH, &two_users).await, "REQ_check_1");
    let two_otps = check_otp("bob", &c).replace(
        &format!("<vip:otp>{c}</vip:otp>"),
        &format!("<vip:otp>{c}</vip:otp><vip:otp>{c}</vip:otp>"),
    );
    assert_600b(&h.ok(AUTH, &two_otps).await, "REQ_check_1");
    let two_keys = push_req("alice", &[]).replace(
        "<vip:Key>display.message.title</vip:Key>",
        "<vip:Key>display.message.title</vip:Key><vip:Key>display.message.text</vip:Key>",
    );
    assert_600b(&h.ok(AUTH, &two_keys).await, "REQ_push_1");
    let ids = ["abcd"; 21];
    assert_600b(&h.poll(&ids).await, "REQ_poll_1");
    // Repeatable elements may repeat.
    assert_eq!(status(&h.poll(&["abcd"; 20]).await), "0000");
}

#[tokio::test]
async fn unknown_element_is_600b() {
    let h = start().await;
    let c = code(ALICE_SECRET, 0);
    let unknown = check_otp("bob", &c).replace(
        "</vip:CheckOtpRequest>",
        "<vip:extraField>1</vip:extraField></vip:CheckOtpRequest>",
    );
    assert_600b(&h.ok(AUTH, &unknown).await, "REQ_check_1");
    // An element of another namespace inside the operation element.
    let foreign = check_otp("bob", &c).replace(
        "</vip:userId>",
        "</vip:userId><x:note xmlns:x=\"urn:example\">hi</x:note>",
    );
    assert_600b(&h.ok(AUTH, &foreign).await, "REQ_check_1");
    // Unqualified (no namespace) child.
    let unqualified =
        check_otp("bob", &c).replace("<vip:userId>bob</vip:userId>", "<userId>bob</userId>");
    assert_600b(&h.ok(AUTH, &unqualified).await, "REQ_check_1");
    // Text mixed between children.
    let mixed = check_otp("bob", &c).replace("<vip:userId>", "stray<vip:userId>");
    assert_600b(&h.ok(AUTH, &mixed).await, "REQ_check_1");
    // Indentation between children is fine.
    let indented = check_otp("bob", &c)
        .replace("<vip:userId>", "\n    <vip:userId>")
        .replace("<vip:otpAuthData>", "\r\n\t<vip:otpAuthData>");
    assert_eq!(status(&h.ok(AUTH, &indented).await), "0000");
}

#[tokio::test]
async fn pin_on_check_otp_is_600b() {
    let h = start().await;
    let c = code(ALICE_SECRET, 0);
    let with_pin =
        check_otp("pia", &c).replace("</vip:userId>", "</vip:userId><vip:pin>1234</vip:pin>");
    assert_600b(&h.ok(AUTH, &with_pin).await, "REQ_check_1");
    // Without it checkOtp does not ask the user's PIN.
    assert_eq!(status(&h.check_otp("pia", &c).await), "0000");
}

#[tokio::test]
async fn wrong_content_type_is_415_and_not_counted() {
    let h = start().await;
    let body = envelope(get_server_time());
    for ct in [
        Some("application/soap+xml; charset=utf-8"),
        Some("text/plain"),
        Some("application/xml"),
        None,
    ] {
        let mut req = h.client.post(h.url(QUERY)).body(body.clone());
        if let Some(ct) = ct {
            req = req.header("Content-Type", ct);
        }
        let r = req.send().await.expect("send");
        assert_eq!(r.status().as_u16(), 415, "{ct:?}");
        let text = r.text().await.expect("body");
        assert!(!text.contains("Envelope"), "{text}");
    }
    assert_eq!(h.sim.counters().calls("getServerTime"), 0);
    assert_eq!(h.sim.counters().http_requests, 4);
    // Case and parameters do not matter.
    for ct in [
        "TEXT/XML; Charset=UTF-8",
        "text/xml",
        " text/xml ;charset=utf-8",
    ] {
        let r = h
            .client
            .post(h.url(QUERY))
            .header("Content-Type", ct)
            .body(body.clone())
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 200, "{ct}");
    }
    assert_eq!(h.sim.counters().calls("getServerTime"), 3);
}

#[tokio::test]
async fn text_is_not_trimmed() {
    let h = start().await;
    let c = code(ALICE_SECRET, 0);
    // A leading space makes a bad-format code: 6009 (and it is not consumed).
    let b = h.check_otp("bob", &format!(" {c}")).await;
    assert_eq!(status(&b), "6009", "{b}");
    let b = h.check_otp("bob", &format!("{c}\n")).await;
    assert_eq!(status(&b), "6009", "{b}");
    // A requestId with spaces fails its pattern.
    let b = h
        .ok(
            AUTH,
            &check_otp("bob", &c).replace("REQ_check_1", " REQ_check_1"),
        )
        .await;
    assert_600b(&b, " REQ_check_1");
    // A userId with a space is another user.
    assert_eq!(status(&h.check_otp(" bob", &c).await), "6003");
    assert_eq!(status(&h.check_otp("bob", &c).await), "0000");
}

#[tokio::test]
async fn pin_rules() {
    let h = start().await;
    let c = code(ALICE_SECRET, 0);
    // Wrong, missing, and sent for a user without a PIN: 601F.
    for (user, pin) in [("pia", Some("9999")), ("pia", None), ("bob", Some("1234"))] {
        let b = h.auth_user(user, pin, &c).await;
        assert_eq!(status(&b), "601F", "{user} {pin:?}: {b}");
        assert!(!b.contains("isPinExpired"), "{b}");
        let push = match pin {
            Some(p) => push_req(user, &[]).replace(
                "<vip:pushAuthData>",
                &format!("<vip:pin>{p}</vip:pin><vip:pushAuthData>"),
            ),
            None => push_req(user, &[]),
        };
        assert_eq!(status(&h.ok(AUTH, &push).await), "601F", "push {user}");
    }
    // Untrimmed: " 1234" is not "1234".
    assert_eq!(status(&h.auth_user("pia", Some(" 1234"), &c).await), "601F");
    // Right PIN: success, with isPinExpired=false and a future expiry after authnId.
    let b = h.auth_user("pia", Some("1234"), &c).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_order(
        &b,
        &[
            "<authnId>",
            "<isPinExpired>false</isPinExpired>",
            "<pinExpirationTime>",
        ],
    );
    let exp = tag(&b, "pinExpirationTime").expect("expiry");
    assert!(exp.as_str() > vip_now().as_str(), "{exp} is in the future");

    // An account without PIN support: any pin is 6021, none is fine.
    let h = start_with(&users_with_policy("pin_enabled = false")).await;
    let b = h.auth_user("pia", Some("1234"), &c).await;
    assert_eq!(status(&b), "6021", "{b}");
    let push = push_req("pia", &[]).replace(
        "<vip:pushAuthData>",
        "<vip:pin>1234</vip:pin><vip:pushAuthData>",
    );
    assert_eq!(status(&h.ok(AUTH, &push).await), "6021");
    let b = h.auth_user("pia", None, &c).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(!b.contains("isPinExpired"), "{b}");
}

/// Now as the simulator writes xsd:dateTime (comparable as text).
fn vip_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[tokio::test]
async fn pin_expired_is_reported_in_xsd_position() {
    let h = start().await;
    let c = code(ALICE_SECRET, 0);
    let b = h.auth_user("pete", Some("4321"), &c).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_order(
        &b,
        &[
            "<credentialId>VSMT10000015</credentialId>",
            "<authnId>",
            "</authnId><isPinExpired>true</isPinExpired><pinExpirationTime>",
        ],
    );
    let exp = tag(&b, "pinExpirationTime").expect("expiry");
    assert!(exp.as_str() < vip_now().as_str(), "{exp} is in the past");
    // Push: right after transactionId, before the pushDetails.
    let push = push_req("pete", &[]).replace(
        "<vip:pushAuthData>",
        "<vip:pin>4321</vip:pin><vip:pushAuthData>",
    );
    let b = h.ok(AUTH, &push).await;
    assert_eq!(status(&b), "6040", "{b}");
    assert_order(
        &b,
        &[
            "</transactionId><isPinExpired>true</isPinExpired><pinExpirationTime>",
            "</pinExpirationTime><pushDetail>",
        ],
    );
    // Push with a PIN that has not expired.
    let push = push_req("pia", &[]).replace(
        "<vip:pushAuthData>",
        "<vip:pin>1234</vip:pin><vip:pushAuthData>",
    );
    let b = h.ok(AUTH, &push).await;
    assert_order(
        &b,
        &[
            "</transactionId><isPinExpired>false</isPinExpired><pinExpirationTime>",
            "<pushDetail>",
        ],
    );
    // No PIN, no PIN fields.
    let b = h.push("alice", &[]).await;
    assert!(!b.contains("isPinExpired") && !b.contains("pinExpirationTime"));
}

#[tokio::test]
async fn include_push_attributes_defaults_to_true() {
    let h = start().await;
    let attrs = "<pushAttributes><Key>PUSH_PLATFORM</Key><Value>IOS</Value></pushAttributes>";
    let b = h.user_info_at(QUERY, "alice", "").await;
    assert!(b.contains(attrs), "absent means true: {b}");
    let b = h
        .user_info_at(
            QUERY,
            "alice",
            "<vip:includePushAttributes>false</vip:includePushAttributes>",
        )
        .await;
    assert!(!b.contains("pushAttributes"), "{b}");
    let b = h
        .user_info_at(
            QUERY,
            "alice",
            "<vip:includePushAttributes>true</vip:includePushAttributes>",
        )
        .await;
    assert!(b.contains(attrs), "{b}");
    // Out of order with includeTokenInfo: 600B.
    let b = h
        .user_info_at(
            QUERY,
            "alice",
            "<vip:includeTokenInfo>true</vip:includeTokenInfo><vip:includePushAttributes>true</vip:includePushAttributes>",
        )
        .await;
    assert_600b(&b, "REQ_info");
}

fn nc_policy() -> String {
    users_with_policy("number_challenge = true")
}

/// A poll's single transactionStatus.
async fn poll_one(h: &H, service: &str, txn: &str) -> String {
    let p = h.poll_at(service, &[txn]).await;
    assert_eq!(status(&p), "0000", "{p}");
    tags(&p, "transactionStatus")
        .into_iter()
        .next()
        .expect("one transactionStatus")
}

#[tokio::test]
async fn number_challenge_required_without_flag_is_7008_without_detail() {
    let h = start_with(&nc_policy()).await;
    let b = h.push_at(AUTH10, "alice", &[]).await;
    assert_eq!(status(&b), "6040", "still sent: {b}");
    assert!(b.contains("<pushSent>true</pushSent>"), "{b}");
    assert!(!b.contains("numbersChallengeValue"), "{b}");
    let txn = tag(&b, "transactionId").expect("txn");
    let st = poll_one(&h, QUERY10, &txn).await;
    assert!(st.contains("<status>7008</status>"), "{st}");
    assert!(
        st.contains(
            "<statusMessage>Could not authenticate with the requested parameters</statusMessage>"
        ),
        "{st}"
    );
    assert!(!st.contains("<detail>"), "{st}");
    // Final: reported once.
    assert!(poll_one(&h, QUERY10, &txn)
        .await
        .contains("<status>7005</status>"));
    // supportNumberChallenge=false is the same as absent.
    let b = h
        .push_at(AUTH10, "alice", &[("supportNumberChallenge", "false")])
        .await;
    let st = poll_one(&h, QUERY10, &tag(&b, "transactionId").expect("txn")).await;
    assert!(
        st.contains("<status>7008</status>") && !st.contains("<detail>"),
        "{st}"
    );
}

#[tokio::test]
async fn number_challenge_with_flag_on_1_10_shows_number_then_approves() {
    let h = start_with(&nc_policy()).await;
    let b = h
        .push_at(AUTH10, "dave", &[("supportNumberChallenge", "true")])
        .await;
    assert_eq!(status(&b), "6040", "{b}");
    assert_eq!(tag(&b, "numbersChallengeValue").as_deref(), Some("42"));
    let txn = tag(&b, "transactionId").expect("txn");
    let st = poll_one(&h, QUERY10, &txn).await;
    assert_order(
        &st,
        &[
            "<status>7001</status>",
            "<detail>7140</detail>",
            "<detailMessage>Numbers challenge pending</detailMessage>",
        ],
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    let st = poll_one(&h, QUERY10, &txn).await;
    assert!(st.contains("<status>7000</status>"), "{st}");
    assert!(!st.contains("<detail>"), "{st}");
}

#[tokio::test]
async fn number_challenge_on_1_8_sends_no_number_and_fails_7008() {
    let h = start_with(&nc_policy()).await;
    let b = h
        .push_at(AUTH, "dave", &[("supportNumberChallenge", "true")])
        .await;
    assert_eq!(status(&b), "6040", "{b}");
    assert!(!b.contains("numbersChallengeValue"), "{b}");
    let st = poll_one(&h, QUERY, &tag(&b, "transactionId").expect("txn")).await;
    assert!(st.contains("<status>7008</status>"), "{st}");
    assert!(!st.contains("<detail>"), "{st}");
}

#[tokio::test]
async fn number_challenge_on_an_incapable_device_fails_7008() {
    let h = start_with(&nc_policy()).await;
    let b = h
        .push_at(AUTH10, "nico", &[("supportNumberChallenge", "true")])
        .await;
    assert_eq!(status(&b), "6040", "{b}");
    let st = poll_one(&h, QUERY10, &tag(&b, "transactionId").expect("txn")).await;
    assert!(
        st.contains("<status>7008</status>") && !st.contains("<detail>"),
        "{st}"
    );
}

#[tokio::test]
async fn number_challenge_flag_is_ignored_when_the_account_does_not_require_it() {
    let h = start().await; // number_challenge defaults to false
    let b = h
        .push_at(AUTH10, "alice", &[("supportNumberChallenge", "true")])
        .await;
    assert!(!b.contains("numbersChallengeValue"), "{b}");
    let st = poll_one(&h, QUERY10, &tag(&b, "transactionId").expect("txn")).await;
    assert!(st.contains("<status>7000</status>"), "{st}");
}

#[tokio::test]
async fn device_unreachable_sends_nothing_and_expires() {
    let h = start().await;
    let b = h.push("uma", &[("request.timeout", "1")]).await;
    assert_eq!(status(&b), "6040", "{b}");
    assert_eq!(
        tags(&b, "pushSent"),
        vec!["false".to_string(), "false".to_string()],
        "{b}"
    );
    assert!(!b.contains("<pushSent>true"), "{b}");
    let txn = tag(&b, "transactionId").expect("txn");
    assert!(poll_one(&h, QUERY, &txn)
        .await
        .contains("<status>7001</status>"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(poll_one(&h, QUERY, &txn)
        .await
        .contains("<status>7004</status>"));
    // Others' devices are reachable.
    assert!(h
        .push("alice", &[])
        .await
        .contains("<pushSent>true</pushSent>"));
}

#[tokio::test]
async fn push_success_status_0000() {
    let h = start_with(&users_with_policy("push_success_status = \"0000\"")).await;
    let b = h.push("alice", &[]).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(tag(&b, "statusMessage").as_deref(), Some("Success"));
    let txn = tag(&b, "transactionId").expect("transactionId");
    assert!(poll_one(&h, QUERY, &txn)
        .await
        .contains("<status>7000</status>"));
    // The default is 6040.
    let h = start().await;
    assert_eq!(status(&h.push("alice", &[]).await), "6040");
}

#[tokio::test]
async fn injected_status_once_then_normal() {
    let h = start().await;
    let c = code(ALICE_SECRET, 0);
    h.sim.set_global_faults(Faults {
        status: [("authenticateUser".to_string(), "6005".to_string())].into(),
        status_times: 1,
        ..Faults::default()
    });
    let b = h.auth_user("bob", None, &c).await;
    assert_eq!(status(&b), "6005", "{b}");
    assert_eq!(tag(&b, "statusMessage").as_deref(), Some("Internal error."));
    assert_eq!(tag(&b, "requestId").as_deref(), Some("REQ_auth_1"));
    assert!(b.contains("<AuthenticateUserResponse xmlns="), "{b}");
    // The injected call did not consume the code: the retry succeeds with it.
    let b = h.auth_user("bob", None, &c).await;
    assert_eq!(status(&b), "0000", "{b}");
    // Other operations are untouched; both calls were counted.
    assert_eq!(status(&h.check_otp("alice", &c).await), "0000");
    assert_eq!(h.sim.counters().calls("authenticateUser"), 2);
}

#[tokio::test]
async fn injected_status_always_per_user_and_from_the_admin_api() {
    let h = start().await;
    let admin = format!("http://{}", h.sim.admin_addr().expect("admin"));
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{admin}/users/alice/faults"))
        .body(r#"{"status": {"sendOtp": "6015", "getUserInfo": "6003"}}"#)
        .send()
        .await
        .expect("faults");
    assert_eq!(r.status().as_u16(), 200);
    for _ in 0..3 {
        let b = h
            .ok(MGMT, "<vip:SendOtpRequest><vip:requestId>REQ_send</vip:requestId><vip:userId>alice</vip:userId></vip:SendOtpRequest>")
            .await;
        assert_eq!(status(&b), "6015", "{b}");
        assert_eq!(
            tag(&b, "statusMessage").as_deref(),
            Some("Invalid phone number")
        );
    }
    assert_eq!(h.sim.last_sent_code("alice"), None, "nothing was sent");
    assert_eq!(status(&h.user_info_at(QUERY, "alice", "").await), "6003");
    assert_eq!(status(&h.user_info_at(QUERY, "bob", "").await), "0000");
    // Bad values are refused.
    for bad in [
        r#"{"status": {"login": "6005"}}"#,
        r#"{"status": {"checkOtp": "60051"}}"#,
        r#"{"transaction_status": "70x1"}"#,
        r#"{"http_status": 200}"#,
    ] {
        let r = http
            .post(format!("{admin}/faults"))
            .body(bad)
            .send()
            .await
            .expect("faults");
        assert_eq!(r.status().as_u16(), 400, "{bad}");
    }
}

#[tokio::test]
async fn injected_status_from_toml() {
    let users = USERS.replace(
        "[users.faults]\nhttp_500 = true\n",
        "[users.faults]\nstatus = { checkOtp = \"6009\" }\n",
    );
    let h = start_with(&users).await;
    let b = h.check_otp("leo", &code(ALICE_SECRET, 0)).await;
    assert_eq!(status(&b), "6009", "{b}");
    assert_eq!(tag(&b, "detail").as_deref(), Some("49B5"));
    // An unknown operation name is a configuration error.
    let dir = tempfile::tempdir().expect("dir");
    let certs = vip_sim::certs::generate(dir.path()).expect("certs");
    let doc = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n[faults]\nstatus = {{ login = \"6005\" }}\n",
        certs.server_cert, certs.server_key, certs.ca_cert
    );
    assert!(vip_sim::SimConfig::from_toml_str(&doc).is_err());
}

#[tokio::test]
async fn transaction_status_and_detail() {
    let h = start().await;
    let txn = tag(&h.push("alice", &[]).await, "transactionId").expect("txn");
    // 7006 keeps the transaction pending.
    h.sim.set_user_faults(
        "alice",
        Faults {
            transaction_status: Some("7006".into()),
            ..Faults::default()
        },
    );
    for _ in 0..2 {
        let st = poll_one(&h, QUERY, &txn).await;
        assert!(st.contains("<status>7006</status>"), "{st}");
        assert!(!st.contains("<detail>"), "{st}");
    }
    // A final status with a detail ends it.
    h.sim.set_user_faults(
        "alice",
        Faults {
            transaction_status: Some("7002".into()),
            transaction_detail: Some("7121".into()),
            ..Faults::default()
        },
    );
    let st = poll_one(&h, QUERY, &txn).await;
    assert_order(
        &st,
        &[
            "<status>7002</status>",
            "<detail>7121</detail>",
            "<detailMessage>",
        ],
    );
    assert!(poll_one(&h, QUERY, &txn)
        .await
        .contains("<status>7005</status>"));
    // Other users' transactions are untouched.
    let txn = tag(&h.push("dave", &[]).await, "transactionId").expect("txn");
    assert!(poll_one(&h, QUERY, &txn)
        .await
        .contains("<status>7001</status>"));
}

#[tokio::test]
async fn client_fault() {
    let h = start().await;
    h.sim.set_global_faults(Faults {
        client_fault: true,
        ..Faults::default()
    });
    let (s, b) = h.call(QUERY, get_server_time()).await;
    assert_eq!(s, 500, "{b}");
    let fc = tag(&b, "faultcode").expect("faultcode");
    assert!(fc.contains("Client"), "{fc}");
    assert!(b.contains("<S:Fault"), "{b}");
    assert!(
        tag(&b, "faultstring")
            .expect("faultstring")
            .contains("Cannot find dispatch method"),
        "{b}"
    );
}

#[tokio::test]
async fn http_status_503_and_404() {
    let h = start().await;
    for code in [503u16, 404] {
        h.sim.set_global_faults(Faults {
            http_status: Some(code),
            ..Faults::default()
        });
        let r = h
            .client
            .post(h.url(QUERY))
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(envelope(get_server_time()))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), code);
        let ct = r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .to_string();
        assert!(ct.starts_with("text/html"), "{ct}");
        let text = r.text().await.expect("body");
        assert!(
            text.contains(&code.to_string()) && !text.contains("Envelope"),
            "{text}"
        );
    }
    h.sim.set_global_faults(Faults::default());
    assert_eq!(status(&h.ok(QUERY, get_server_time()).await), "0000");
}

#[tokio::test]
async fn wrong_namespace() {
    let h = start().await;
    h.sim.set_user_faults(
        "bob",
        Faults {
            wrong_namespace: true,
            ..Faults::default()
        },
    );
    let c = code(ALICE_SECRET, 0);
    let (s, b) = h.call(AUTH, &check_otp("bob", &c)).await;
    assert_eq!(s, 200, "{b}");
    let root = vip_sim::xml::parse(b.as_bytes()).expect("well-formed");
    let op = vip_sim::xml::soap_body_op(&root).expect("body element");
    assert_eq!(op.name, "CheckOtpResponse");
    assert_eq!(
        op.ns.as_deref(),
        Some("https://schemas.vip.symantec.com/vip/2011/04/vipuserservices")
    );
    assert!(!op.is(NS, "CheckOtpResponse"));
    // The code was not used: without the fault it is accepted.
    h.sim.set_user_faults("bob", Faults::default());
    assert_eq!(status(&h.check_otp("bob", &c).await), "0000");
}

/// A raw mutual-TLS connection to the simulator.
async fn raw_tls(h: &H) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::ServerName;
    let read = |p: &std::path::Path| std::fs::read(p).expect("read pem");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut read(&h.certs.ca_cert).as_slice()) {
        roots.add(c.expect("ca")).expect("add ca");
    }
    let chain = rustls_pemfile::certs(&mut read(&h.certs.client_cert).as_slice())
        .collect::<Result<Vec<_>, _>>()
        .expect("client cert");
    let key = rustls_pemfile::private_key(&mut read(&h.certs.client_key).as_slice())
        .expect("key")
        .expect("a key");
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("client auth");
    let tcp = tokio::net::TcpStream::connect(h.sim.addr())
        .await
        .expect("connect");
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

/// Writes one keep-alive request and reads its whole response (by Content-Length).
async fn round_trip<S: AsyncReadExt + AsyncWriteExt + Unpin>(s: &mut S) -> String {
    let body = envelope(get_server_time());
    let req = format!(
        "POST /vipuserservices/{QUERY} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed before the response was complete");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("content-length");
            if buf.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

/// Reads until EOF or `wait` passes; true if the server closed the connection.
async fn closed_within<S: AsyncReadExt + Unpin>(s: &mut S, wait: Duration) -> bool {
    let mut b = [0u8; 64];
    match tokio::time::timeout(wait, s.read(&mut b)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("unexpected {n} bytes on an idle connection"),
    }
}

#[tokio::test]
async fn idle_timeout_closes_keep_alive_connections() {
    let h = start_with(&USERS.replace(
        "io_timeout_ms = 3000",
        "io_timeout_ms = 3000\nidle_timeout_ms = 300",
    ))
    .await;
    let mut s = raw_tls(&h).await;
    let r = round_trip(&mut s).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // Reused within the idle time...
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(round_trip(&mut s).await.starts_with("HTTP/1.1 200"));
    // ...closed (EOF) once idle longer than it.
    assert!(
        closed_within(&mut s, Duration::from_millis(1500)).await,
        "the idle connection was not closed"
    );
    assert_eq!(h.sim.counters().tls_handshakes, 1);
    assert_eq!(h.sim.counters().calls("getServerTime"), 2);

    // A request slower than the idle time is not cut off.
    h.sim.set_global_faults(Faults {
        latency_ms: 600,
        ..Faults::default()
    });
    let mut s = raw_tls(&h).await;
    assert!(round_trip(&mut s).await.starts_with("HTTP/1.1 200"));

    // Without the knob the same wait leaves the connection open.
    let h = start().await;
    let mut s = raw_tls(&h).await;
    assert!(round_trip(&mut s).await.starts_with("HTTP/1.1 200"));
    assert!(!closed_within(&mut s, Duration::from_millis(1000)).await);
    assert!(round_trip(&mut s).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn last_authn_id_on_1_10_only() {
    let h = start().await;
    let b = h.user_info_at(QUERY10, "bob", "").await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(
        !b.contains("lastAuthn"),
        "nothing before the first login: {b}"
    );
    let a = h.auth_user("bob", None, &code(ALICE_SECRET, 0)).await;
    assert_eq!(status(&a), "0000", "{a}");
    let authn_id = tag(&a, "authnId").expect("authnId");
    let b = h.user_info_at(QUERY10, "bob", "").await;
    assert_order(
        &b,
        &[
            "<credentialId>VSMT10000002</credentialId>",
            "<lastBindTime>",
            "</lastBindTime><lastAuthnTime>",
            &format!("</lastAuthnTime><lastAuthnId>{authn_id}</lastAuthnId></bindingDetail>"),
        ],
    );
    let b = h.user_info_at(QUERY, "bob", "").await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(!b.contains("lastAuthn"), "not on 1.8: {b}");
}
