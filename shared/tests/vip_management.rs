//! Contract tests for the Management service (and the Query calls beside it): every
//! `VipClient` management operation against the simulator (`vip-sim`) over real mutual TLS,
//! each on its own service URL (the simulator refuses an operation on another service), with
//! the statuses the simulator answers and what it recorded.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vip_core::vip::*;
mod support;

use vip_sim::certs::CertPaths;
use vip_sim::Sim;

const SECRET: &str = "JBSWY3DPEHPK3PXP";
const SECRET2: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const NASTY: &str = "Zoë <&>\"' 山田";

fn users_toml() -> String {
    format!(
        r#"
[[users]]
id = "alice"
pin = "1234"
sms_phones = ["15551234567"]
voice_phones = ["15557654321"]
[[users.credentials]]
id = "VSMT00000001"
totp_secret = "{SECRET}"
friendly_name = "Alice's phone"

[[users]]
id = "bob"

[[tokens]]
id = "VSMT90000001"
secret = "{SECRET}"

[[tokens]]
id = "VSMT90000002"
secret = "{SECRET2}"
"#
    )
}

struct Env {
    _dir: tempfile::TempDir,
    certs: CertPaths,
    sim: Sim,
}

async fn start_with(policy: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let rest = format!("[policy]\n{policy}\n{}", users_toml());
    let (sim, certs) = support::sim_over_tls(&dir.path().join("pki"), &rest).await;
    Env {
        _dir: dir,
        certs,
        sim,
    }
}

async fn start() -> Env {
    start_with("").await
}

impl Env {
    fn client(&self) -> VipClient {
        let base = self.sim.base_url();
        VipClient::new(&VipConfig {
            auth_url: format!("{base}/vipuserservices/AuthenticationService_1_10"),
            query_url: format!("{base}/vipuserservices/QueryService_1_10"),
            management_url: format!("{base}/vipuserservices/ManagementService_1_10"),
            ca_file: Some(self.certs.ca_cert.clone()),
            cert_file: Some(self.certs.client_cert.clone()),
            key_file: Some(self.certs.client_key.clone()),
            timeout: Duration::from_secs(5),
            request_id_prefix: "mg".into(),
            ..VipConfig::default()
        })
        .unwrap()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// VIP's answer: `Rejected`, counted as an answer (never an outage), with its status.
fn refused(e: &VipError, op: &str, status: Status) {
    match e {
        VipError::Rejected {
            operation,
            status: s,
            request_id,
            ..
        } => {
            assert_eq!(*operation, op, "{e}");
            assert_eq!(*s, status, "{e}");
            assert!(request_id.starts_with("mg_"), "{e}");
        }
        other => panic!("expected {op} refused with {status}, got {other}"),
    }
    assert_eq!(e.class(), FailureClass::Answered, "{e}");
    assert!(!e.is_unreachable());
}

fn not_sent(e: &VipError) {
    assert!(
        matches!(e, VipError::BadRequest { request_id, .. } if request_id.is_empty()),
        "expected a refusal before sending, got {e}"
    );
    assert!(!e.is_not_found());
}

// ------------------------------------------------------------------ users

#[tokio::test]
async fn user_lifecycle() {
    let env = start().await;
    let c = env.client();

    let r = c
        .create_user(&CreateUser {
            user_id: "newbie",
            pin: Some("4321"),
            force_pin_change: Some(false),
        })
        .await
        .unwrap();
    assert!(r.request_id.starts_with("mg_"));
    assert!(env.sim.user_exists("newbie"));
    let e = c
        .create_user(&CreateUser {
            user_id: "NEWBIE",
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(&e, "createUser", Status::UserExists);
    assert!(!e.is_not_found());

    // An international id with every XML special, escaped on the wire and stored as sent.
    c.create_user(&CreateUser {
        user_id: NASTY,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(env.sim.user_exists(NASTY));

    // Status, PIN change with the old PIN, a wrong old PIN, then a new id.
    c.update_user(&UpdateUser {
        user_id: "newbie",
        new_status: Some(NewUserStatus::Disabled),
        ..Default::default()
    })
    .await
    .unwrap();
    let e = c
        .check_otp("newbie", "123456", None, None)
        .await
        .unwrap_err();
    assert!(e.status().is_some(), "{e}");
    c.update_user(&UpdateUser {
        user_id: "newbie",
        new_status: Some(NewUserStatus::Active),
        old_pin: Some("4321"),
        new_pin: Some("87654321"),
        force_pin_change: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    let e = c
        .update_user(&UpdateUser {
            user_id: "newbie",
            old_pin: Some("4321"),
            new_pin: Some("11112222"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(&e, "updateUser", Status::InvalidPin);
    c.update_user(&UpdateUser {
        user_id: "newbie",
        new_user_id: Some("renamed"),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(env.sim.user_exists("renamed"));
    assert!(!env.sim.user_exists("newbie"));
    let e = c
        .update_user(&UpdateUser {
            user_id: "renamed",
            new_user_id: Some("alice"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(&e, "updateUser", Status::UserExists);

    c.clear_user_pin("renamed").await.unwrap();
    c.delete_user("renamed").await.unwrap();
    assert!(!env.sim.user_exists("renamed"));

    // Unknown users: "not found", for every call that names a user.
    for e in [
        c.delete_user("renamed").await.unwrap_err(),
        c.clear_user_pin("nobody").await.unwrap_err(),
        c.update_user(&UpdateUser {
            user_id: "nobody",
            new_status: Some(NewUserStatus::Active),
            ..Default::default()
        })
        .await
        .unwrap_err(),
        c.clear_temporary_password("nobody").await.unwrap_err(),
        c.get_temporary_password_attributes("nobody")
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.status(), Some(Status::UserNotFound), "{e}");
        assert!(e.is_not_found(), "{e}");
        assert_eq!(e.class(), FailureClass::Answered);
    }
    let counters = env.sim.counters();
    assert_eq!(counters.calls("createUser"), 3);
    assert_eq!(counters.calls("updateUser"), 6);
    assert_eq!(counters.calls("deleteUser"), 2);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn pins_refused_when_the_account_has_no_pin_policy() {
    let env = start_with("pin_enabled = false").await;
    let c = env.client();
    let e = c
        .create_user(&CreateUser {
            user_id: "newbie",
            pin: Some("4321"),
            force_pin_change: None,
        })
        .await
        .unwrap_err();
    refused(&e, "createUser", Status::PinNotEnabled);
    let e = c.clear_user_pin("alice").await.unwrap_err();
    refused(&e, "clearUserPin", Status::PinNotEnabled);
    env.sim.shutdown().await;
}

// ------------------------------------------------------------------ credentials

/// addCredential of the inventory token VSMT90000001 to bob.
fn add(otp: Option<&str>) -> AddCredential<'_> {
    AddCredential {
        user_id: "bob",
        credential_id: "VSMT90000001",
        credential_type: CredentialType::StandardOtp,
        friendly_name: Some("Bob's <token> & co"),
        trusted_device: Some(false),
        otp,
        otp2: None,
    }
}

#[tokio::test]
async fn standard_credential_lifecycle() {
    let env = start().await;
    let c = env.client();
    // A wrong code, no code, an unknown token.
    let e = c.add_credential(&add(Some("000000"))).await.unwrap_err();
    refused(&e, "addCredential", Status::AuthenticationFailed);
    let e = c.add_credential(&add(None)).await.unwrap_err();
    refused(&e, "addCredential", Status::AuthenticationFailed);
    let e = c
        .add_credential(&AddCredential {
            credential_id: "VSMT99999999",
            ..add(Some("123456"))
        })
        .await
        .unwrap_err();
    refused(&e, "addCredential", Status::InvalidCredentialId);
    assert!(e.is_not_found());

    let code = env.sim.token_code("VSMT90000001").unwrap();
    c.add_credential(&add(Some(&code))).await.unwrap();
    assert!(env
        .sim
        .credentials_of("bob")
        .iter()
        .any(|(id, _)| id == "VSMT90000001"));
    let e = c.add_credential(&add(Some(&code))).await.unwrap_err();
    refused(&e, "addCredential", Status::CredentialAlreadyBound);

    // The binding as getUserInfo and getCredentialInfo see it.
    let info = c.get_user_info("bob", false).await.unwrap();
    let bound = info
        .credentials
        .iter()
        .find(|b| b.credential_id == "VSMT90000001")
        .unwrap();
    assert_eq!(bound.friendly_name.as_deref(), Some("Bob's <token> & co"));
    c.update_credential(
        "bob",
        "VSMT90000001",
        &CredentialType::StandardOtp,
        "desk token",
    )
    .await
    .unwrap();
    let ci = c
        .get_credential_info("VSMT90000001", &CredentialType::StandardOtp, false)
        .await
        .unwrap();
    assert_eq!(ci.credential_id.as_deref(), Some("VSMT90000001"));
    assert_eq!(ci.credential_type, Some(CredentialType::StandardOtp));
    assert_eq!(ci.num_bindings, Some(1));
    assert_eq!(ci.users.len(), 1);
    assert_eq!(ci.users[0].user_id, "bob");
    assert_eq!(ci.users[0].user_status, Some(UserStatus::Active));
    assert_eq!(ci.users[0].friendly_name.as_deref(), Some("desk token"));
    assert!(ci.users[0].last_bind_time.is_some());

    // Not bound to this user / no such credential.
    let e = c
        .update_credential("alice", "VSMT90000001", &CredentialType::StandardOtp, "x")
        .await
        .unwrap_err();
    refused(&e, "updateCredential", Status::NoBinding);
    assert!(e.is_not_found());
    let e = c
        .get_credential_info("VSMT99999999", &CredentialType::StandardOtp, false)
        .await
        .unwrap_err();
    refused(&e, "getCredentialInfo", Status::InvalidCredentialId);
    assert!(e.is_not_found());

    c.remove_credential("bob", "VSMT90000001", &CredentialType::StandardOtp)
        .await
        .unwrap();
    assert!(env.sim.credentials_of("bob").is_empty());
    let e = c
        .remove_credential("bob", "VSMT90000001", &CredentialType::StandardOtp)
        .await
        .unwrap_err();
    refused(&e, "removeCredential", Status::NoBinding);
    assert!(e.is_not_found());
    // Released back to the inventory: it can be looked up, unbound.
    let ci = c
        .get_credential_info("VSMT90000001", &CredentialType::StandardOtp, false)
        .await
        .unwrap();
    assert_eq!(ci.num_bindings, Some(0));
    assert!(ci.users.is_empty());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn removal_left_to_vip_manager_is_6010() {
    let env = start_with("credential_removal_admin_only = true").await;
    let c = env.client();
    let e = c
        .remove_credential("alice", "VSMT00000001", &CredentialType::StandardOtp)
        .await
        .unwrap_err();
    refused(&e, "removeCredential", Status::OperationNotAllowed);
    assert!(!e.is_not_found());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn register_a_phone_then_bind_it() {
    let env = start().await;
    let c = env.client();
    let phone = "15550001111";
    let sms = OtpDelivery::Sms {
        phone_number: phone.into(),
    };
    let r = c.register(&sms).await.unwrap();
    assert!(r.request_id.starts_with("mg_"));
    let e = c.register(&sms).await.unwrap_err();
    refused(&e, "register", Status::AlreadyRegistered);
    assert!(!e.is_not_found());
    // A configured user's phone is registered too.
    let e = c
        .register(&OtpDelivery::Voice {
            phone_number: "15557654321".into(),
        })
        .await
        .unwrap_err();
    refused(&e, "register", Status::AlreadyRegistered);

    let code = env.sim.last_sent_code_to(phone).unwrap();
    c.add_credential(&AddCredential {
        user_id: "bob",
        credential_id: phone,
        credential_type: CredentialType::SmsOtp,
        friendly_name: Some("mobile"),
        trusted_device: None,
        otp: Some(&code),
        otp2: None,
    })
    .await
    .unwrap();
    assert!(env
        .sim
        .credentials_of("bob")
        .iter()
        .any(|(id, _)| id == phone));
    let ci = c
        .get_credential_info(phone, &CredentialType::SmsOtp, false)
        .await
        .unwrap();
    assert_eq!(ci.users.len(), 1);
    assert_eq!(ci.users[0].friendly_name.as_deref(), Some("mobile"));
    // An unregistered phone cannot be bound.
    let e = c
        .add_credential(&AddCredential {
            user_id: "bob",
            credential_id: "15550002222",
            credential_type: CredentialType::VoiceOtp,
            friendly_name: None,
            trusted_device: None,
            otp: Some("123456"),
            otp2: None,
        })
        .await
        .unwrap_err();
    refused(&e, "addCredential", Status::InvalidCredentialId);
    assert_eq!(env.sim.counters().calls("register"), 3);
    env.sim.shutdown().await;
}

// ------------------------------------------------------------------ temporary codes

#[tokio::test]
async fn temporary_security_codes() {
    let env = start().await;
    let c = env.client();

    // Nothing set yet: no attributes; changing them is refused.
    let info = c.get_temporary_password_attributes("alice").await.unwrap();
    assert!(!info.present);
    let e = c
        .set_temporary_password_attributes(
            "alice",
            &TempPasswordAttributes {
                expires_in: None,
                one_time_use_only: Some(true),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.class(), FailureClass::Answered, "{e}");

    // A given code, one hour, one-time.
    let r = c
        .set_temporary_password(&SetTemporaryPassword {
            user_id: "alice",
            code: Some("135790"),
            attributes: TempPasswordAttributes {
                expires_in: Some(Duration::from_secs(3600)),
                one_time_use_only: Some(true),
            },
            delivery: None,
        })
        .await
        .unwrap();
    assert_eq!(r.code.as_ref().map(|s| s.expose()), Some("135790"));
    assert!(!format!("{r:?}").contains("135790"));
    assert_eq!(env.sim.temporary_code("alice").as_deref(), Some("135790"));
    let info = c.get_temporary_password_attributes("alice").await.unwrap();
    assert!(info.present);
    assert_eq!(info.one_time_use_only, Some(true));
    let at = info.expires_at.unwrap();
    assert!((at - (now() + 3600)).abs() <= 120, "{info:?}");

    // New attributes: two days, reusable.
    c.set_temporary_password_attributes(
        "alice",
        &TempPasswordAttributes {
            expires_in: Some(Duration::from_secs(2 * 86_400)),
            one_time_use_only: Some(false),
        },
    )
    .await
    .unwrap();
    let info = c.get_temporary_password_attributes("alice").await.unwrap();
    assert_eq!(info.one_time_use_only, Some(false));
    assert!((info.expires_at.unwrap() - (now() + 2 * 86_400)).abs() <= 120);

    // The temporary code logs in (alice has a PIN).
    c.authenticate_user(&AuthenticateUser {
        user_id: "alice",
        otp: "135790",
        pin: Some("1234"),
        ..Default::default()
    })
    .await
    .unwrap();

    c.clear_temporary_password("alice").await.unwrap();
    assert_eq!(env.sim.temporary_code("alice"), None);
    assert!(
        !c.get_temporary_password_attributes("alice")
            .await
            .unwrap()
            .present
    );

    // Generated by VIP and sent by SMS to the user's phone.
    let r = c
        .set_temporary_password(&SetTemporaryPassword {
            user_id: "alice",
            code: None,
            attributes: TempPasswordAttributes::default(),
            delivery: Some(OtpDelivery::Sms {
                phone_number: "15551234567".into(),
            }),
        })
        .await
        .unwrap();
    let code = r.code.unwrap();
    assert_eq!(code.len(), 6);
    assert_eq!(
        env.sim.temporary_code("alice").as_deref(),
        Some(code.expose())
    );
    assert_eq!(
        env.sim.last_sent_code_to("15551234567").as_deref(),
        Some(code.expose())
    );

    let e = c
        .set_temporary_password(&SetTemporaryPassword {
            user_id: "nobody",
            ..Default::default()
        })
        .await
        .unwrap_err();
    refused(&e, "setTemporaryPassword", Status::UserNotFound);
    assert!(e.is_not_found());
    env.sim.shutdown().await;
}

// ------------------------------------------------------------------ refused before sending

#[tokio::test]
async fn bad_input_never_reaches_vip() {
    let env = start().await;
    let c = env.client();
    not_sent(
        &c.set_temporary_password(&SetTemporaryPassword {
            user_id: "alice",
            attributes: TempPasswordAttributes {
                expires_in: Some(Duration::from_secs(31 * 86_400)),
                one_time_use_only: None,
            },
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    not_sent(
        &c.set_temporary_password(&SetTemporaryPassword {
            user_id: "alice",
            code: Some("12345"),
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    not_sent(
        &c.register(&OtpDelivery::Sms {
            phone_number: "+1 555 123".into(),
        })
        .await
        .unwrap_err(),
    );
    not_sent(
        &c.add_credential(&AddCredential {
            user_id: "bob",
            credential_id: "VSMT-0001",
            credential_type: CredentialType::StandardOtp,
            friendly_name: None,
            trusted_device: None,
            otp: Some("123456"),
            otp2: None,
        })
        .await
        .unwrap_err(),
    );
    not_sent(
        &c.create_user(&CreateUser {
            user_id: "carl",
            pin: Some("123"),
            force_pin_change: None,
        })
        .await
        .unwrap_err(),
    );
    not_sent(
        &c.update_user(&UpdateUser {
            user_id: "alice",
            old_pin: Some("1234"),
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    not_sent(
        &c.get_credential_info("x", &CredentialType::StandardOtp, false)
            .await
            .unwrap_err(),
    );
    assert_eq!(env.sim.counters().total_calls(), 0);
    env.sim.shutdown().await;
}
