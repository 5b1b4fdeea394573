//! The Management service (and the Query calls that read what it manages), posted as raw
//! SOAP over mutual TLS: every operation's success and refusals, schema violations (600B),
//! wrong service paths, and the behaviour that follows for authentication.

mod common;

use std::time::Duration;

use common::*;
use vip_sim::CredentialType;

const TOKEN1: &str = "VSMT00000001";
const TOKEN1_SECRET: &str = "GEZDGNBVGY3TQOJQ";
const TOKEN2: &str = "VSMT00000002";
const TOKEN2_SECRET: &str = "MFRGGZDFMZTWQ2LK";

/// `USERS` plus an inventory of unbound tokens (TOKEN2 drifts 5 steps: out of sync).
fn with_tokens(policy: &str) -> String {
    format!(
        "{}\n[[tokens]]\nid = \"{TOKEN1}\"\nsecret = \"{TOKEN1_SECRET}\"\n\n[[tokens]]\nid = \"{TOKEN2}\"\nsecret = \"{TOKEN2_SECRET}\"\ndrift_steps = 5\n",
        users_with_policy(policy)
    )
}

async fn start_mgmt() -> H {
    start_with(&with_tokens("")).await
}

fn assert_600b(b: &str) {
    assert_eq!(status(b), "600B", "{b}");
    assert_eq!(
        tag(b, "statusMessage").as_deref(),
        Some("Schema validation failed."),
        "{b}"
    );
}

fn el(name: &str, value: &str) -> String {
    format!("<vip:{name}>{value}</vip:{name}>")
}

/// `<vip:{op}Request><vip:requestId>REQ_{op}</vip:requestId>{body}</vip:{op}Request>`
fn req(op: &str, body: &str) -> String {
    format!("<vip:{op}Request><vip:requestId>REQ_{op}</vip:requestId>{body}</vip:{op}Request>")
}

fn create_user(user: &str, extra: &str) -> String {
    req("CreateUser", &format!("{}{extra}", el("userId", user)))
}

fn user_only(op: &str, user: &str) -> String {
    req(op, &el("userId", user))
}

fn add_credential(user: &str, id: &str, kind: &str, name: Option<&str>, otps: &[&str]) -> String {
    let name = name.map(|n| el("friendlyName", n)).unwrap_or_default();
    let otp = match otps {
        [] => String::new(),
        [a] => format!("<vip:otpAuthData>{}</vip:otpAuthData>", el("otp", a)),
        [a, b, ..] => format!(
            "<vip:otpAuthData>{}{}</vip:otpAuthData>",
            el("otp", a),
            el("otp2", b)
        ),
    };
    req(
        "AddCredential",
        &format!(
            "{}<vip:credentialDetail>{}{}{name}</vip:credentialDetail>{otp}",
            el("userId", user),
            el("credentialId", id),
            el("credentialType", kind)
        ),
    )
}

fn cred_op(op: &str, user: &str, id: &str, kind: &str, extra: &str) -> String {
    req(
        op,
        &format!(
            "{}{}{}{extra}",
            el("userId", user),
            el("credentialId", id),
            el("credentialType", kind)
        ),
    )
}

fn credential_info(id: &str, kind: &str) -> String {
    req(
        "GetCredentialInfo",
        &format!("{}{}", el("credentialId", id), el("credentialType", kind)),
    )
}

fn register_sms(phone: &str) -> String {
    req(
        "Register",
        &format!(
            "<vip:smsDeliveryInfo>{}</vip:smsDeliveryInfo>",
            el("phoneNumber", phone)
        ),
    )
}

fn register_voice(phone: &str) -> String {
    req(
        "Register",
        &format!(
            "<vip:voiceDeliveryInfo>{}</vip:voiceDeliveryInfo>",
            el("phoneNumber", phone)
        ),
    )
}

fn set_temp(
    user: &str,
    code: Option<&str>,
    expires: Option<&str>,
    one_time: Option<bool>,
) -> String {
    let code = code.map(|c| el("temporaryPassword", c)).unwrap_or_default();
    let attrs = if expires.is_some() || one_time.is_some() {
        format!(
            "<vip:temporaryPasswordAttributes>{}{}</vip:temporaryPasswordAttributes>",
            expires.map(|e| el("expirationTime", e)).unwrap_or_default(),
            one_time
                .map(|o| el("oneTimeUseOnly", if o { "true" } else { "false" }))
                .unwrap_or_default()
        )
    } else {
        String::new()
    };
    req(
        "SetTemporaryPassword",
        &format!("{}{code}{attrs}", el("userId", user)),
    )
}

/// An xsd:dateTime `secs` seconds from now (UTC).
fn xsd_in(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl H {
    async fn mgmt(&self, inner: &str) -> String {
        self.ok(MGMT, inner).await
    }

    async fn query(&self, inner: &str) -> String {
        self.ok(QUERY, inner).await
    }
}

fn ids(creds: &[(String, CredentialType)]) -> Vec<&str> {
    creds.iter().map(|(i, _)| i.as_str()).collect()
}

#[tokio::test]
async fn create_update_and_delete_users() {
    let h = start_mgmt().await;
    let b = h.mgmt(&create_user("Nina", "")).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(b.contains("<CreateUserResponse xmlns="), "{b}");
    assert_eq!(tag(&b, "requestId").as_deref(), Some("REQ_CreateUser"));
    assert!(h.sim.user_exists("nina"));
    let info = h.user_info_at(QUERY, "nina", "").await;
    assert_eq!(status(&info), "0000", "{info}");
    assert_eq!(tag(&info, "userId").as_deref(), Some("Nina"));
    assert_eq!(tag(&info, "userStatus").as_deref(), Some("ACTIVE"));
    assert_eq!(tag(&info, "numBindings").as_deref(), Some("0"));
    assert_eq!(tag(&info, "isPinSet").as_deref(), Some("false"));
    // User ids are case-insensitive: the same user again is 6002.
    let b = h.mgmt(&create_user("NINA", "")).await;
    assert_eq!(status(&b), "6002", "{b}");
    assert_eq!(
        tag(&b, "statusMessage").as_deref(),
        Some("User already exists.")
    );
    // A user without any credential: authenticateUser is 6008.
    assert_eq!(status(&h.auth_user("nina", None, "123456").await), "6008");

    // With a PIN (and forcePinChange): the PIN is then required, and answered as expired.
    let b = h
        .mgmt(&create_user(
            "omar",
            &(el("pin", "2468") + &el("forcePinChange", "true")),
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    let info = h.user_info_at(QUERY, "omar", "").await;
    assert_eq!(tag(&info, "isPinSet").as_deref(), Some("true"));
    let b = h.mgmt(&set_temp("omar", Some("135790"), None, None)).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(status(&h.auth_user("omar", None, "135790").await), "601F");
    let b = h.auth_user("omar", Some("2468"), "135790").await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(tag(&b, "isPinExpired").as_deref(), Some("true"));

    // updateUser: unknown user 6003.
    let b = h
        .mgmt(&req(
            "UpdateUser",
            &(el("userId", "nobody") + &el("newUserStatus", "DISABLED")),
        ))
        .await;
    assert_eq!(status(&b), "6003", "{b}");
    // Disable, then enable again.
    let upd = |u: &str, body: &str| req("UpdateUser", &(el("userId", u) + body));
    let b = h.mgmt(&upd("omar", &el("newUserStatus", "DISABLED"))).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(
        status(&h.auth_user("omar", Some("2468"), "135790").await),
        "601B"
    );
    let b = h.mgmt(&upd("omar", &el("newUserStatus", "ACTIVE"))).await;
    assert_eq!(status(&b), "0000", "{b}");
    // PIN rules: wrong oldPin, oldPin without newPin: 601F; right oldPin + newPin: changed.
    let b = h
        .mgmt(&upd(
            "omar",
            &(el("oldPin", "9999") + &el("newPin", "1357")),
        ))
        .await;
    assert_eq!(status(&b), "601F", "{b}");
    let b = h.mgmt(&upd("omar", &el("oldPin", "2468"))).await;
    assert_eq!(status(&b), "601F", "{b}");
    let b = h
        .mgmt(&upd(
            "omar",
            &(el("oldPin", "2468") + &el("newPin", "1357")),
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    let b = h.auth_user("omar", Some("1357"), "135790").await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(tag(&b, "isPinExpired").as_deref(), Some("false"));
    // clearUserPin: no PIN needed any more.
    let b = h.mgmt(&user_only("ClearUserPin", "omar")).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(status(&h.auth_user("omar", None, "135790").await), "0000");
    assert_eq!(
        status(&h.mgmt(&user_only("ClearUserPin", "nobody")).await),
        "6003"
    );
    // Rename: to an existing id 6002; to a new one moves the user.
    let b = h.mgmt(&upd("omar", &el("newUserId", "alice"))).await;
    assert_eq!(status(&b), "6002", "{b}");
    let b = h.mgmt(&upd("omar", &el("newUserId", "Omar2"))).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(!h.sim.user_exists("omar") && h.sim.user_exists("omar2"));
    assert_eq!(status(&h.user_info_at(QUERY, "omar", "").await), "6003");
    let info = h.user_info_at(QUERY, "omar2", "").await;
    assert_eq!(tag(&info, "userId").as_deref(), Some("Omar2"));

    // deleteUser.
    let b = h.mgmt(&user_only("DeleteUser", "nina")).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(!h.sim.user_exists("nina"));
    assert_eq!(status(&h.user_info_at(QUERY, "nina", "").await), "6003");
    assert_eq!(
        status(&h.mgmt(&user_only("DeleteUser", "nina")).await),
        "6003"
    );
    let c = h.sim.counters();
    assert_eq!(c.calls("createUser"), 3);
    assert_eq!(c.calls("updateUser"), 8);
    assert_eq!(c.calls("deleteUser"), 2);
    assert_eq!(c.calls("clearUserPin"), 2);
}

#[tokio::test]
async fn pin_disabled_account_refuses_pins() {
    let h = start_with(&with_tokens("pin_enabled = false")).await;
    let b = h.mgmt(&create_user("nina", &el("pin", "2468"))).await;
    assert_eq!(status(&b), "6021", "{b}");
    assert!(!h.sim.user_exists("nina"));
    assert_eq!(
        status(&h.mgmt(&user_only("ClearUserPin", "alice")).await),
        "6021"
    );
}

#[tokio::test]
async fn add_a_token_and_authenticate_with_its_next_code() {
    let h = start_mgmt().await;
    assert_eq!(status(&h.mgmt(&create_user("nina", "")).await), "0000");
    // The simulator tells the token's code, as a person reads it off the token.
    assert_eq!(
        h.sim.token_code(TOKEN1).as_deref(),
        Some(code(TOKEN1_SECRET, 0).as_str())
    );
    // Refusals first: unknown user, unknown token, unsupported type, wrong or missing code.
    let c0 = code(TOKEN1_SECRET, 0);
    let b = h
        .mgmt(&add_credential(
            "nobody",
            TOKEN1,
            "STANDARD_OTP",
            None,
            &[&c0],
        ))
        .await;
    assert_eq!(status(&b), "6003", "{b}");
    let b = h
        .mgmt(&add_credential(
            "nina",
            "VSMT99999999",
            "STANDARD_OTP",
            None,
            &[&c0],
        ))
        .await;
    assert_eq!(status(&b), "6004", "{b}");
    assert_eq!(
        tag(&b, "statusMessage").as_deref(),
        Some("Credential ID is not valid.")
    );
    let b = h
        .mgmt(&add_credential("nina", TOKEN1, "CERTIFICATE", None, &[&c0]))
        .await;
    assert_eq!(status(&b), "600A", "{b}");
    let bad = if c0 == "000000" { "111111" } else { "000000" };
    let b = h
        .mgmt(&add_credential(
            "nina",
            TOKEN1,
            "STANDARD_OTP",
            None,
            &[bad],
        ))
        .await;
    assert_eq!(status(&b), "6009", "{b}");
    let b = h
        .mgmt(&add_credential("nina", TOKEN1, "STANDARD_OTP", None, &[]))
        .await;
    assert_eq!(status(&b), "6009", "{b}");
    assert!(h.sim.credentials_of("nina").is_empty());

    // Bound with its current code.
    let b = h
        .mgmt(&add_credential(
            "nina",
            TOKEN1,
            "STANDARD_OTP",
            Some("Nina token"),
            &[&c0],
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(b.contains("<AddCredentialResponse xmlns="), "{b}");
    assert_eq!(
        h.sim.credentials_of("nina"),
        vec![(TOKEN1.to_string(), CredentialType::StandardOtp)]
    );
    // Already bound to this user.
    let b = h
        .mgmt(&add_credential(
            "nina",
            TOKEN1,
            "STANDARD_OTP",
            None,
            &[&code(TOKEN1_SECRET, 1)],
        ))
        .await;
    assert_eq!(status(&b), "6011", "{b}");
    // The code used to bind it is spent; the next one authenticates.
    assert_eq!(status(&h.auth_user("nina", None, &c0).await), "6009");
    let b = h.auth_user("nina", None, &code(TOKEN1_SECRET, 1)).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(tag(&b, "credentialId").as_deref(), Some(TOKEN1));
    assert_eq!(tag(&b, "credentialType").as_deref(), Some("STANDARD_OTP"));
    // Every existing operation sees it: getUserInfo, checkOtp.
    let info = h.user_info_at(QUERY, "nina", "").await;
    assert_eq!(tag(&info, "numBindings").as_deref(), Some("1"));
    assert_eq!(tag(&info, "credentialId").as_deref(), Some(TOKEN1));
    assert_eq!(tag(&info, "friendlyName").as_deref(), Some("Nina token"));
    let b = h.check_otp("nina", &code(TOKEN1_SECRET, 1)).await;
    assert_eq!(status(&b), "6009", "replayed: {b}");
    // getCredentialInfo (Query).
    let b = h.query(&credential_info(TOKEN1, "STANDARD_OTP")).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_order(
        &b,
        &[
            "<credentialId>VSMT00000001</credentialId>",
            "<credentialType>STANDARD_OTP</credentialType>",
            "<credentialStatus>ENABLED</credentialStatus>",
            "<numBindings>1</numBindings>",
            "<userBindingDetail><userId>nina</userId><userStatus>ACTIVE</userStatus><bindingDetail><bindStatus>ENABLED</bindStatus><friendlyName>Nina token</friendlyName><lastBindTime>",
        ],
    );
    let b = h
        .query(&credential_info("VSMT99999999", "STANDARD_OTP"))
        .await;
    assert_eq!(status(&b), "6004", "{b}");
    // An unbound inventory token is known (no bindings).
    let b = h.query(&credential_info(TOKEN2, "STANDARD_OTP")).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(tag(&b, "numBindings").as_deref(), Some("0"));
    // A credential other users hold can be shared (alice's token, with its code).
    let b = h
        .mgmt(&add_credential(
            "nina",
            "VSMT10000001",
            "STANDARD_OTP",
            None,
            &[&code(ALICE_SECRET, 0)],
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    let b = h
        .query(&credential_info("VSMT10000001", "STANDARD_OTP"))
        .await;
    assert_eq!(tag(&b, "numBindings").as_deref(), Some("2"), "{b}");
    assert_eq!(h.sim.counters().calls("addCredential"), 8);
    assert_eq!(h.sim.counters().calls("getCredentialInfo"), 4);
}

#[tokio::test]
async fn an_out_of_sync_token_needs_two_consecutive_codes() {
    let h = start_mgmt().await;
    assert_eq!(status(&h.mgmt(&create_user("nina", "")).await), "0000");
    // TOKEN2 runs 5 steps ahead: one code is 604A, as authentication answers.
    let shown = h.sim.token_code(TOKEN2).expect("token code");
    assert_eq!(shown, code(TOKEN2_SECRET, 5));
    let b = h
        .mgmt(&add_credential(
            "nina",
            TOKEN2,
            "STANDARD_OTP",
            None,
            &[&shown],
        ))
        .await;
    assert_eq!(status(&b), "604A", "{b}");
    assert!(h.sim.credentials_of("nina").is_empty());
    let b = h
        .mgmt(&add_credential(
            "nina",
            TOKEN2,
            "STANDARD_OTP",
            None,
            &[&code(TOKEN2_SECRET, 5), &code(TOKEN2_SECRET, 6)],
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    // The drift was learned: the token's next code authenticates.
    let b = h.auth_user("nina", None, &code(TOKEN2_SECRET, 7)).await;
    assert_eq!(status(&b), "0000", "{b}");
}

#[tokio::test]
async fn register_a_phone_and_bind_it_with_the_code_sent() {
    let h = start_mgmt().await;
    assert_eq!(status(&h.mgmt(&create_user("nina", "")).await), "0000");
    let phone = "15559990001";
    // Not registered yet: 6004.
    let b = h
        .mgmt(&add_credential("nina", phone, "SMS_OTP", None, &["123456"]))
        .await;
    assert_eq!(status(&b), "6004", "{b}");
    let b = h.mgmt(&register_sms(phone)).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(b.contains("<RegisterResponse xmlns="), "{b}");
    assert_eq!(tag(&b, "otp"), None, "the code goes to the phone only");
    let sent = h.sim.last_sent_code_to(phone).expect("code sent");
    assert_eq!(sent.len(), 6);
    // Registered twice: 6026.
    let b = h.mgmt(&register_sms(phone)).await;
    assert_eq!(status(&b), "6026", "{b}");
    // A configured user's phone counts as registered.
    assert_eq!(status(&h.mgmt(&register_sms("15550000001")).await), "6026");
    // Wrong code, wrong type.
    let bad = if sent == "000000" { "111111" } else { "000000" };
    let b = h
        .mgmt(&add_credential("nina", phone, "SMS_OTP", None, &[bad]))
        .await;
    assert_eq!(status(&b), "6009", "{b}");
    let b = h
        .mgmt(&add_credential("nina", phone, "VOICE_OTP", None, &[&sent]))
        .await;
    assert_eq!(status(&b), "6004", "{b}");
    let b = h
        .mgmt(&add_credential(
            "nina",
            phone,
            "SMS_OTP",
            Some("Nina SMS"),
            &[&sent],
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(
        h.sim.credentials_of("nina"),
        vec![(phone.to_string(), CredentialType::SmsOtp)]
    );
    // The registration code is spent.
    let b = h
        .mgmt(&add_credential("nina", phone, "SMS_OTP", None, &[&sent]))
        .await;
    assert_eq!(status(&b), "6011", "{b}");
    let info = h.user_info_at(QUERY, "nina", "").await;
    assert_eq!(tag(&info, "credentialType").as_deref(), Some("SMS_OTP"));
    assert_eq!(tag(&info, "friendlyName").as_deref(), Some("Nina SMS"));
    // sendOtp now reaches it, and its code authenticates.
    let b = h
        .mgmt(&req("SendOtp", &(el("userId", "nina") + "<vip:smsDeliveryInfo><vip:phoneNumber>15559990001</vip:phoneNumber></vip:smsDeliveryInfo>")))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    let otp = h.sim.last_sent_code("nina").expect("sent");
    assert_eq!(
        h.sim.last_sent_code_to(phone).as_deref(),
        Some(otp.as_str())
    );
    let b = h.auth_user("nina", None, &otp).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(tag(&b, "credentialType").as_deref(), Some("SMS_OTP"));
    // Voice the same way.
    let vphone = "15559990002";
    assert_eq!(status(&h.mgmt(&register_voice(vphone)).await), "0000");
    let vcode = h.sim.last_sent_code_to(vphone).expect("voice code");
    let b = h
        .mgmt(&add_credential(
            "nina",
            vphone,
            "VOICE_OTP",
            None,
            &[&vcode],
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    let b = h.query(&credential_info(vphone, "VOICE_OTP")).await;
    assert_eq!(tag(&b, "numBindings").as_deref(), Some("1"), "{b}");
    // The choice: exactly one delivery info.
    let both = req(
        "Register",
        "<vip:smsDeliveryInfo><vip:phoneNumber>15559990003</vip:phoneNumber></vip:smsDeliveryInfo><vip:voiceDeliveryInfo><vip:phoneNumber>15559990003</vip:phoneNumber></vip:voiceDeliveryInfo>",
    );
    assert_600b(&h.mgmt(&both).await);
    assert_600b(&h.mgmt(&req("Register", "")).await);
    assert_600b(&h.mgmt(&register_sms("+15559990003")).await);
    assert_eq!(h.sim.counters().calls("register"), 7);
}

#[tokio::test]
async fn temporary_codes_one_time_expiry_and_clearing() {
    let h = start_mgmt().await;
    // hank has no credential: only the temporary code can authenticate him.
    let b = h
        .mgmt(&set_temp("hank", Some("123456"), None, Some(true)))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(tag(&b, "temporaryPassword").as_deref(), Some("123456"));
    let b = h
        .query(&user_only("GetTemporaryPasswordAttributes", "hank"))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(b.contains("<tempPwdAttributes><expirationTime>"), "{b}");
    assert_eq!(tag(&b, "oneTimeUseOnly").as_deref(), Some("true"));
    let info = h.user_info_at(QUERY, "hank", "").await;
    assert_eq!(tag(&info, "isTempPasswordSet").as_deref(), Some("true"));
    assert_eq!(status(&h.auth_user("hank", None, "123456").await), "0000");
    // One use only.
    assert_eq!(status(&h.auth_user("hank", None, "123456").await), "6008");
    assert_eq!(h.sim.temporary_code("hank"), None);
    let b = h
        .query(&user_only("GetTemporaryPasswordAttributes", "hank"))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(!b.contains("tempPwdAttributes"), "{b}");

    // Generated (none given), reusable; checkOtp does not take it.
    let b = h.mgmt(&set_temp("hank", None, None, None)).await;
    assert_eq!(status(&b), "0000", "{b}");
    let tmp = tag(&b, "temporaryPassword").expect("generated code");
    assert!(
        tmp.len() == 6 && tmp.bytes().all(|c| c.is_ascii_digit()),
        "{tmp}"
    );
    assert_eq!(h.sim.temporary_code("hank").as_deref(), Some(tmp.as_str()));
    assert_eq!(status(&h.auth_user("hank", None, &tmp).await), "0000");
    assert_eq!(status(&h.auth_user("hank", None, &tmp).await), "0000");
    assert_ne!(status(&h.check_otp("hank", &tmp).await), "0000");
    // setTemporaryPasswordAttributes: one-time from now on.
    let attrs = |u: &str, inner: &str| {
        req(
            "SetTemporaryPasswordAttributes",
            &format!(
                "{}<vip:temporaryPasswordAttributes>{inner}</vip:temporaryPasswordAttributes>",
                el("userId", u)
            ),
        )
    };
    let b = h.mgmt(&attrs("hank", &el("oneTimeUseOnly", "true"))).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(status(&h.auth_user("hank", None, &tmp).await), "0000");
    assert_eq!(status(&h.auth_user("hank", None, &tmp).await), "6008");
    // No code set: 600D; unknown user 6003.
    let b = h.mgmt(&attrs("hank", &el("oneTimeUseOnly", "true"))).await;
    assert_eq!(status(&b), "600D", "{b}");
    let b = h.mgmt(&attrs("nobody", "")).await;
    assert_eq!(status(&b), "6003", "{b}");
    assert_eq!(
        status(&h.mgmt(&set_temp("nobody", None, None, None)).await),
        "6003"
    );
    assert_eq!(
        status(
            &h.query(&user_only("GetTemporaryPasswordAttributes", "nobody"))
                .await
        ),
        "6003"
    );

    // clearTemporaryPassword.
    let b = h.mgmt(&set_temp("hank", Some("222333"), None, None)).await;
    assert_eq!(status(&b), "0000", "{b}");
    let b = h.mgmt(&user_only("ClearTemporaryPassword", "hank")).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(status(&h.auth_user("hank", None, "222333").await), "6008");
    assert_eq!(
        status(&h.mgmt(&user_only("ClearTemporaryPassword", "nobody")).await),
        "6003"
    );

    // Expiry: at most 30 days ahead, not in the past; an expired code no longer works.
    assert_600b(
        &h.mgmt(&set_temp("hank", Some("444555"), Some(&xsd_in(-60)), None))
            .await,
    );
    assert_600b(
        &h.mgmt(&set_temp(
            "hank",
            Some("444555"),
            Some(&xsd_in(31 * 86400)),
            None,
        ))
        .await,
    );
    let b = h
        .mgmt(&set_temp(
            "hank",
            Some("444555"),
            Some(&xsd_in(29 * 86400)),
            None,
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    let b = h
        .mgmt(&set_temp("hank", Some("444555"), Some(&xsd_in(2)), None))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(status(&h.auth_user("hank", None, "444555").await), "6008");
    let info = h.user_info_at(QUERY, "hank", "").await;
    assert_eq!(tag(&info, "isTempPasswordSet").as_deref(), Some("false"));

    // A code from a real credential clears the temporary one (alice's configured code).
    assert_eq!(h.sim.temporary_code("alice").as_deref(), Some("7654321"));
    let b = h.auth_user("alice", None, &code(ALICE_SECRET, 0)).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(h.sim.temporary_code("alice"), None);
    assert_eq!(status(&h.auth_user("alice", None, "7654321").await), "6009");
    // Delivered by SMS: the code is "sent" too.
    let b = h
        .mgmt(&req(
            "SetTemporaryPassword",
            &(el("userId", "alice")
                + &el("temporaryPassword", "909090")
                + "<vip:smsDeliveryInfo><vip:phoneNumber>15550000001</vip:phoneNumber></vip:smsDeliveryInfo>"),
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(h.sim.last_sent_code("alice").as_deref(), Some("909090"));
    assert_eq!(
        h.sim.last_sent_code_to("15550000001").as_deref(),
        Some("909090")
    );
    assert_eq!(status(&h.auth_user("alice", None, "909090").await), "0000");
    // A temporaryPassword that is not 6 digits is a schema error.
    assert_600b(&h.mgmt(&set_temp("hank", Some("12345"), None, None)).await);
    assert_600b(&h.mgmt(&set_temp("hank", Some("12345a"), None, None)).await);
}

#[tokio::test]
async fn update_and_remove_credentials() {
    let h = start_mgmt().await;
    let b = h
        .mgmt(&cred_op(
            "UpdateCredential",
            "alice",
            "VSMT10000001",
            "STANDARD_OTP",
            &el("friendlyName", "Work phone"),
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    let info = h.user_info_at(QUERY, "alice", "").await;
    assert_eq!(tag(&info, "friendlyName").as_deref(), Some("Work phone"));
    // An SMS binding's name too.
    let b = h
        .mgmt(&cred_op(
            "UpdateCredential",
            "alice",
            "15550000001",
            "SMS_OTP",
            &el("friendlyName", "Mobile"),
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(h
        .user_info_at(QUERY, "alice", "")
        .await
        .contains("<friendlyName>Mobile</friendlyName>"));
    let b = h
        .mgmt(&cred_op(
            "UpdateCredential",
            "alice",
            "VSMT10000002",
            "STANDARD_OTP",
            &el("friendlyName", "x"),
        ))
        .await;
    assert_eq!(status(&b), "6007", "{b}");
    let b = h
        .mgmt(&cred_op(
            "UpdateCredential",
            "nobody",
            "VSMT10000002",
            "STANDARD_OTP",
            &el("friendlyName", "x"),
        ))
        .await;
    assert_eq!(status(&b), "6003", "{b}");
    // removeCredential: not bound (or bound under another type) 6007.
    let b = h
        .mgmt(&cred_op(
            "RemoveCredential",
            "alice",
            "VSMT10000002",
            "STANDARD_OTP",
            "",
        ))
        .await;
    assert_eq!(status(&b), "6007", "{b}");
    assert_eq!(
        tag(&b, "statusMessage").as_deref(),
        Some("No binding exists between user and credential.")
    );
    let b = h
        .mgmt(&cred_op(
            "RemoveCredential",
            "alice",
            "VSMT10000001",
            "SMS_OTP",
            "",
        ))
        .await;
    assert_eq!(status(&b), "6007", "{b}");
    let b = h
        .mgmt(&cred_op(
            "RemoveCredential",
            "nobody",
            "VSMT10000001",
            "STANDARD_OTP",
            "",
        ))
        .await;
    assert_eq!(status(&b), "6003", "{b}");
    let b = h
        .mgmt(&cred_op(
            "RemoveCredential",
            "alice",
            "VSMT10000001",
            "STANDARD_OTP",
            &el("trustedDevice", "false"),
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(
        ids(&h.sim.credentials_of("alice")),
        vec!["15550000001", "15550000002"]
    );
    assert_eq!(
        status(&h.auth_user("alice", None, &code(ALICE_SECRET, 0)).await),
        "6009"
    );
    let b = h
        .mgmt(&cred_op(
            "RemoveCredential",
            "alice",
            "15550000001",
            "SMS_OTP",
            "",
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(ids(&h.sim.credentials_of("alice")), vec!["15550000002"]);
    // Pushes see the removal too: bob still has his.
    assert_eq!(status(&h.push("alice", &[]).await), "6008");
    assert_eq!(h.sim.counters().calls("removeCredential"), 5);
    assert_eq!(h.sim.counters().calls("updateCredential"), 4);
}

#[tokio::test]
async fn admin_only_removal_is_6010() {
    let h = start_with(&with_tokens("credential_removal_admin_only = true")).await;
    let b = h
        .mgmt(&cred_op(
            "RemoveCredential",
            "alice",
            "VSMT10000001",
            "STANDARD_OTP",
            "",
        ))
        .await;
    assert_eq!(status(&b), "6010", "{b}");
    assert_eq!(h.sim.credentials_of("alice").len(), 3);
    // No binding is still 6007.
    let b = h
        .mgmt(&cred_op(
            "RemoveCredential",
            "alice",
            "VSMT10000002",
            "STANDARD_OTP",
            "",
        ))
        .await;
    assert_eq!(status(&b), "6007", "{b}");
}

#[tokio::test]
async fn delete_user_cascades_to_its_bindings() {
    let h = start_mgmt().await;
    assert_eq!(status(&h.mgmt(&create_user("nina", "")).await), "0000");
    let b = h
        .mgmt(&add_credential(
            "nina",
            TOKEN1,
            "STANDARD_OTP",
            None,
            &[&code(TOKEN1_SECRET, 0)],
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    let phone = "15559990009";
    assert_eq!(status(&h.mgmt(&register_sms(phone)).await), "0000");
    let sent = h.sim.last_sent_code_to(phone).expect("sent");
    let b = h
        .mgmt(&add_credential("nina", phone, "SMS_OTP", None, &[&sent]))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
    assert_eq!(h.sim.credentials_of("nina").len(), 2);
    let b = h.mgmt(&user_only("DeleteUser", "nina")).await;
    assert_eq!(status(&b), "0000", "{b}");
    assert!(h.sim.credentials_of("nina").is_empty());
    // Nobody holds them any more.
    let b = h.query(&credential_info(TOKEN1, "STANDARD_OTP")).await;
    assert_eq!(tag(&b, "numBindings").as_deref(), Some("0"), "{b}");
    let b = h.query(&credential_info(phone, "SMS_OTP")).await;
    assert_eq!(tag(&b, "numBindings").as_deref(), Some("0"), "{b}");
    // A user created again under the same id starts empty; the token can be bound again.
    assert_eq!(status(&h.mgmt(&create_user("nina", "")).await), "0000");
    let info = h.user_info_at(QUERY, "nina", "").await;
    assert_eq!(tag(&info, "numBindings").as_deref(), Some("0"));
    let b = h
        .mgmt(&add_credential(
            "nina",
            TOKEN1,
            "STANDARD_OTP",
            None,
            &[&code(TOKEN1_SECRET, 1)],
        ))
        .await;
    assert_eq!(status(&b), "0000", "{b}");
}

#[tokio::test]
async fn schema_violations_are_600b() {
    let h = start_mgmt().await;
    for bad in [
        // missing userId
        req("CreateUser", ""),
        // out of order
        req("CreateUser", &(el("pin", "1234") + &el("userId", "zed"))),
        // facets: short PIN, bad boolean
        create_user("zed", &el("pin", "12")),
        create_user("zed", &el("forcePinChange", "yes")),
        // unknown element
        create_user("zed", &el("userStatus", "ACTIVE")),
        // updateUser: LOCKED is not a status one may set; order of the PINs
        req("UpdateUser", &(el("userId", "alice") + &el("newUserStatus", "LOCKED"))),
        req("UpdateUser", &(el("userId", "alice") + &el("newPin", "1234") + &el("oldPin", "4321"))),
        // addCredential: no credentialDetail, detail out of order, unknown type, bad id
        req("AddCredential", &el("userId", "alice")),
        req(
            "AddCredential",
            &(el("userId", "alice")
                + "<vip:credentialDetail><vip:credentialType>STANDARD_OTP</vip:credentialType><vip:credentialId>VSMT00000001</vip:credentialId></vip:credentialDetail>"),
        ),
        add_credential("alice", TOKEN1, "HARDWARE", None, &["123456"]),
        add_credential("alice", "VS", "STANDARD_OTP", None, &["123456"]),
        add_credential("alice", TOKEN1, "STANDARD_OTP", None, &["123456"]).replace(
            "</vip:credentialDetail>",
            "</vip:credentialDetail><vip:pin>1234</vip:pin>",
        ),
        // removeCredential: missing type, extra element
        req("RemoveCredential", &(el("userId", "alice") + &el("credentialId", TOKEN1))),
        cred_op("RemoveCredential", "alice", TOKEN1, "STANDARD_OTP", &el("friendlyName", "x")),
        // updateCredential: friendlyName is required
        cred_op("UpdateCredential", "alice", TOKEN1, "STANDARD_OTP", ""),
        // setTemporaryPasswordAttributes: the attributes are required; bad dateTime
        user_only("SetTemporaryPasswordAttributes", "alice"),
        set_temp("alice", None, Some("tomorrow"), None),
        // setTemporaryPassword: two deliveries
        req(
            "SetTemporaryPassword",
            &(el("userId", "alice")
                + "<vip:smsDeliveryInfo><vip:phoneNumber>15550000001</vip:phoneNumber></vip:smsDeliveryInfo><vip:voiceDeliveryInfo><vip:phoneNumber>15550000002</vip:phoneNumber></vip:voiceDeliveryInfo>"),
        ),
        // deleteUser with two userIds
        req("DeleteUser", &(el("userId", "alice") + &el("userId", "bob"))),
    ] {
        let b = h.mgmt(&bad).await;
        assert_600b(&b);
    }
    for bad in [
        req("GetCredentialInfo", &el("credentialId", TOKEN1)),
        credential_info(TOKEN1, "STANDARD_OTP").replace(
            "</vip:GetCredentialInfoRequest>",
            "<vip:includePushAttributes>maybe</vip:includePushAttributes></vip:GetCredentialInfoRequest>",
        ),
    ] {
        assert_600b(&h.query(&bad).await);
    }
    assert_600b(&h.query(&req("GetTemporaryPasswordAttributes", "")).await);
    // Nothing changed.
    assert!(!h.sim.user_exists("zed"));
    assert_eq!(h.sim.credentials_of("alice").len(), 3);
    assert_eq!(h.sim.temporary_code("alice").as_deref(), Some("7654321"));
}

#[tokio::test]
async fn every_operation_only_on_its_own_service() {
    let h = start_mgmt().await;
    let mgmt_ops = [
        create_user("zed", ""),
        req("UpdateUser", &el("userId", "alice")),
        user_only("DeleteUser", "alice"),
        add_credential("alice", TOKEN1, "STANDARD_OTP", None, &["123456"]),
        cred_op("RemoveCredential", "alice", TOKEN1, "STANDARD_OTP", ""),
        cred_op(
            "UpdateCredential",
            "alice",
            TOKEN1,
            "STANDARD_OTP",
            &el("friendlyName", "x"),
        ),
        register_sms("15559990001"),
        set_temp("alice", None, None, None),
        user_only("ClearTemporaryPassword", "alice"),
        req(
            "SetTemporaryPasswordAttributes",
            &(el("userId", "alice") + "<vip:temporaryPasswordAttributes/>"),
        ),
        user_only("ClearUserPin", "alice"),
    ];
    for body in &mgmt_ops {
        for service in [AUTH, QUERY] {
            let (s, b) = h.call(service, body).await;
            assert_eq!(s, 500, "{service}: {b}");
            assert!(
                b.contains("<faultcode>S:Client</faultcode>")
                    && b.contains("Cannot find dispatch method"),
                "{b}"
            );
        }
    }
    let query_ops = [
        user_only("GetTemporaryPasswordAttributes", "alice"),
        credential_info(TOKEN1, "STANDARD_OTP"),
    ];
    for body in &query_ops {
        for service in [AUTH, MGMT] {
            let (s, b) = h.call(service, body).await;
            assert_eq!(s, 500, "{service}: {b}");
        }
    }
    // Refused calls are not counted; nothing happened.
    assert_eq!(h.sim.counters().total_calls(), 0);
    assert!(h.sim.user_exists("alice"));
    // And on their own services they answer.
    for body in &query_ops {
        assert_eq!(status(&h.query(body).await), "0000");
    }
    let b = h.ok(QUERY10, &query_ops[1]).await;
    assert_eq!(status(&b), "0000", "{b}");
}

#[tokio::test]
async fn injected_status_and_faults_apply_to_management_calls() {
    let h = start_mgmt().await;
    h.sim.set_global_faults(vip_sim::Faults {
        status: [("createUser".to_string(), "6005".to_string())].into(),
        status_times: 1,
        ..vip_sim::Faults::default()
    });
    let b = h.mgmt(&create_user("zed", "")).await;
    assert_eq!(status(&b), "6005", "{b}");
    assert!(!h.sim.user_exists("zed"));
    assert_eq!(status(&h.mgmt(&create_user("zed", "")).await), "0000");
    assert!(h.sim.user_exists("zed"));
}

#[tokio::test]
async fn admin_api_reads_token_and_phone_codes() {
    let h = start_mgmt().await;
    let admin = format!("http://{}", h.sim.admin_addr().expect("admin"));
    let http = reqwest::Client::new();
    let get = |p: String| {
        let http = http.clone();
        async move {
            let r = http.get(p).send().await.expect("get");
            let s = r.status().as_u16();
            let v: serde_json::Value =
                serde_json::from_str(&r.text().await.expect("text")).expect("json");
            (s, v)
        }
    };
    let (s, v) = get(format!("{admin}/tokens/{TOKEN1}/code")).await;
    assert_eq!(s, 200);
    let shown = h.sim.token_code(TOKEN1).expect("code");
    assert_eq!(v["code"], serde_json::Value::String(shown));
    assert_eq!(
        get(format!("{admin}/tokens/VSMT99999999/code")).await.0,
        404
    );
    assert_eq!(get(format!("{admin}/phones/15559990001/code")).await.0, 404);
    assert_eq!(status(&h.mgmt(&register_sms("15559990001")).await), "0000");
    let (s, v) = get(format!("{admin}/phones/15559990001/code")).await;
    assert_eq!(s, 200);
    let sent = h.sim.last_sent_code_to("15559990001").expect("sent");
    assert_eq!(v["code"], serde_json::Value::String(sent));
}
