//! Contract tests: every `VipClient` operation against the simulator (`vip-sim`) over real
//! mutual TLS, every status the simulator can produce, PEM and PKCS#12 identities,
//! connection reuse, and refused client certificates.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vip_core::secret::Secret;
use vip_core::vip::*;
mod support;

use vip_sim::certs::CertPaths;
use vip_sim::{Faults, Sim, SimConfig};

const ALICE_SECRET: &str = "JBSWY3DPEHPK3PXP";
const DAVE_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn users_toml() -> String {
    format!(
        r#"
[[users]]
id = "pia"
pin = "1234"
[[users.credentials]]
id = "VSMT00000012"
totp_secret = "{ALICE_SECRET}"
push = true

[[users]]
id = "alice"
sms_phones = ["15551234567"]
voice_phones = ["15557654321"]
[[users.credentials]]
id = "VSMT00000001"
totp_secret = "{ALICE_SECRET}"
push = true
friendly_name = "Alice's phone"

[[users]]
id = "Zoë <&>\"' 山田"
[[users.credentials]]
id = "VSMT00000009"
totp_secret = "{ALICE_SECRET}"

[[users]]
id = "bob"
status = "LOCKED"
[[users.credentials]]
id = "VSMT00000002"
totp_secret = "{ALICE_SECRET}"

[[users]]
id = "carol"
[[users.credentials]]
id = "VSMT00000003"
totp_secret = "{ALICE_SECRET}"
status = "DISABLED"

[[users]]
id = "dave"
[[users.credentials]]
id = "VSMT00000004"
totp_secret = "{DAVE_SECRET}"
drift_steps = 5

[[users]]
id = "erin"
push = {{ action = "deny" }}
[[users.credentials]]
id = "VSMT00000005"
push = true

[[users]]
id = "frank"
push = {{ action = "never" }}
[[users.credentials]]
id = "VSMT00000006"
push = true

[[users]]
id = "gina"
push = {{ action = "approve", number = 42, wrong_number = true }}
[[users.credentials]]
id = "VSMT00000007"
push = true

[[users]]
id = "ivan"
push = {{ action = "approve", delay_ms = 600000 }}
[[users.credentials]]
id = "VSMT00000008"
push = true

[[users]]
id = "henry"

[[users]]
id = "mallory"
[[users.credentials]]
id = "VSMT00000010"
totp_secret = "{ALICE_SECRET}"

[[users]]
id = "faulty"
[[users.credentials]]
id = "VSMT00000011"
totp_secret = "{ALICE_SECRET}"
"#
    )
}

struct Env {
    dir: tempfile::TempDir,
    certs: CertPaths,
    sim: Sim,
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let rest = format!("[policy]\nnumber_challenge = true\n{}", users_toml());
    let (sim, certs) = support::sim_over_tls(&dir.path().join("pki"), &rest).await;
    Env { dir, certs, sim }
}

impl Env {
    /// A config pointing at the simulator (1.10 services), trusting its CA, with no identity.
    fn base_cfg(&self) -> VipConfig {
        self.versioned_cfg("1_10")
    }

    fn versioned_cfg(&self, version: &str) -> VipConfig {
        let base = self.sim.base_url();
        VipConfig {
            auth_url: format!("{base}/vipuserservices/AuthenticationService_{version}"),
            query_url: format!("{base}/vipuserservices/QueryService_{version}"),
            management_url: format!("{base}/vipuserservices/ManagementService_{version}"),
            ca_file: Some(self.certs.ca_cert.clone()),
            timeout: Duration::from_secs(5),
            request_id_prefix: "ct".into(),
            ..VipConfig::default()
        }
    }

    fn pem_cfg(&self) -> VipConfig {
        VipConfig {
            cert_file: Some(self.certs.client_cert.clone()),
            key_file: Some(self.certs.client_key.clone()),
            ..self.base_cfg()
        }
    }

    fn p12_cfg(&self) -> VipConfig {
        VipConfig {
            pkcs12_file: Some(self.certs.client_p12.clone()),
            pkcs12_password: Some(Secret::new(self.certs.p12_password.clone())),
            ..self.base_cfg()
        }
    }

    fn client(&self) -> VipClient {
        VipClient::new(&self.pem_cfg()).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn status_of(e: &VipError) -> Status {
    e.status()
        .unwrap_or_else(|| panic!("expected a VIP status, got {e}"))
}

// ------------------------------------------------------------------ OTP operations

#[tokio::test]
async fn check_otp_success_and_failures() {
    let env = start().await;
    let c = env.client();
    let code = env.sim.current_code("alice").unwrap();
    let r = c.check_otp("alice", &code, None, None).await.unwrap();
    assert_eq!(r.credential_id.as_deref(), Some("VSMT00000001"));
    assert_eq!(r.credential_type.as_deref(), Some("STANDARD_OTP"));
    assert_eq!(r.authn_id.as_ref().map(String::len), Some(16));
    assert!(r.request_id.starts_with("ct_"));

    // Case-insensitive user lookup, international user id escaped on the wire.
    let code = env.sim.current_code("Zoë <&>\"' 山田").unwrap();
    c.check_otp("zoë <&>\"' 山田", &code, None, None)
        .await
        .unwrap();

    // 6009 with detail 49B5 (a wrong code; a replayed code).
    for (user, bad) in [("mallory", "000000"), ("Zoë <&>\"' 山田", code.as_str())] {
        let e = c.check_otp(user, bad, None, None).await.unwrap_err();
        match &e {
            VipError::Rejected {
                operation,
                status,
                detail,
                request_id,
                ..
            } => {
                assert_eq!(*operation, "checkOtp");
                assert_eq!(*status, Status::AuthenticationFailed);
                assert_eq!(detail.as_deref(), Some("49B5"));
                assert!(request_id.starts_with("ct_"));
            }
            other => panic!("{other}"),
        }
    }
    // 6003, 601B, 600D, 6008.
    let e = c
        .check_otp("nobody", "123456", None, None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::UserNotFound);
    let e = c.check_otp("bob", "123456", None, None).await.unwrap_err();
    assert_eq!(status_of(&e), Status::UserStatusNotAllowed);
    let e = c
        .check_otp("carol", "123456", None, None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::CredentialStateNotAllowed);
    let e = c
        .check_otp("henry", "123456", None, None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::NoEnabledCredential);
    assert_eq!(env.sim.counters().calls("checkOtp"), 8);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn out_of_sync_then_otp2() {
    let env = start().await;
    let c = env.client();
    let t = now();
    // dave's token runs 5 steps ahead: outside the window, inside the resync window.
    let otp = vip_sim::totp::code(DAVE_SECRET, t + 5 * 30, 6);
    let otp2 = vip_sim::totp::code(DAVE_SECRET, t + 6 * 30, 6);
    let e = c.check_otp("dave", &otp, None, None).await.unwrap_err();
    assert_eq!(status_of(&e), Status::OutOfSync);
    let r = c.check_otp("dave", &otp, Some(&otp2), None).await.unwrap();
    assert_eq!(r.credential_id.as_deref(), Some("VSMT00000004"));
    env.sim.shutdown().await;
}

#[tokio::test]
async fn authenticate_user_with_pin() {
    let env = start().await;
    let c = env.client();
    let code = env.sim.current_code("pia").unwrap();
    let e = c
        .authenticate_user(&AuthenticateUser {
            user_id: "pia",
            otp: &code,
            pin: Some("9999"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::InvalidPin);
    let r = c
        .authenticate_user(&AuthenticateUser {
            user_id: "pia",
            otp: &code,
            pin: Some("1234"),
            auth_level: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.credential_id.as_deref(), Some("VSMT00000012"));
    let e = c
        .authenticate_user(&AuthenticateUser {
            user_id: "bob",
            otp: "123456",
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::UserStatusNotAllowed);
    assert_eq!(env.sim.counters().calls("authenticateUser"), 3);
    env.sim.shutdown().await;
}

// ------------------------------------------------------------------ push

#[tokio::test]
async fn push_and_poll_every_outcome() {
    let env = start().await;
    let c = env.client();
    let push = |user: &'static str, number: bool, timeout: Option<Duration>| PushRequest {
        user_id: user,
        title: Some("Sign in"),
        text: Some("VPN <corp> & co"),
        number_challenge: number,
        timeout,
        ..Default::default()
    };

    // Approve (the account requires number challenge, so every push offers it):
    // 6040 → 7000 with the credential and epoch authnTime.
    let p = c
        .authenticate_user_with_push(&push("alice", true, None))
        .await
        .unwrap();
    assert_eq!(p.transaction_id.len(), 16);
    assert_eq!(
        p.push_details,
        vec![PushDetail {
            credential_id: "VSMT00000001".into(),
            sent: true
        }]
    );
    assert_eq!(p.numbers_challenge_value.as_ref().map(String::len), Some(2));
    // Approve with number challenge: the number comes back.
    let pn = c
        .authenticate_user_with_push(&push("alice", true, None))
        .await
        .unwrap();
    let n = pn
        .numbers_challenge_value
        .clone()
        .expect("numbersChallengeValue");
    assert_eq!(n.len(), 2);
    let deny = c
        .authenticate_user_with_push(&push("erin", true, None))
        .await
        .unwrap();
    let never = c
        .authenticate_user_with_push(&push("frank", true, Some(Duration::from_secs(1))))
        .await
        .unwrap();
    let wrong = c
        .authenticate_user_with_push(&push("gina", true, None))
        .await
        .unwrap();
    assert_eq!(wrong.numbers_challenge_value.as_deref(), Some("42"));
    let pending = c
        .authenticate_user_with_push(&push("ivan", true, None))
        .await
        .unwrap();

    let ids = [
        p.transaction_id.as_str(),
        deny.transaction_id.as_str(),
        wrong.transaction_id.as_str(),
        pending.transaction_id.as_str(),
        never.transaction_id.as_str(),
        "abcd1234abcd1234",
    ];
    let r = c.poll_push_status(&ids).await.unwrap();
    assert!(vip_core::request_id::is_valid_request_id(&r.request_id));
    let r = r.transactions;
    assert_eq!(r.len(), 6);
    let by_id = |id: &str| r.iter().find(|t| t.transaction_id == id).unwrap().clone();
    let a = by_id(ids[0]);
    assert_eq!(a.status, PollStatus::Approved);
    assert_eq!(a.authn_time.as_deref(), Some("1970-01-01T00:00:00.000Z"));
    assert_eq!(a.credential_id.as_deref(), Some("VSMT00000001"));
    assert_eq!(by_id(ids[1]).status, PollStatus::Denied);
    let w = by_id(ids[2]);
    assert_eq!(w.status, PollStatus::CouldNotAuthenticate);
    assert_eq!(w.detail, Some(DetailCode::NumbersChallengeFailed));
    let pe = by_id(ids[3]);
    assert_eq!(pe.status, PollStatus::InProgress);
    assert!(pe.status.is_pending());
    assert_eq!(pe.detail, Some(DetailCode::NumbersChallengePending));
    assert!(by_id(ids[4]).status.is_pending());
    assert_eq!(by_id(ids[5]).status, PollStatus::NotFound);

    // The never-answered push expires after its request.timeout.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = c
        .poll_push_status(&[never.transaction_id.as_str()])
        .await
        .unwrap()
        .transactions;
    assert_eq!(r[0].status, PollStatus::Expired);
    // Approved once: the id is used up.
    let r = c
        .poll_push_status(&[p.transaction_id.as_str()])
        .await
        .unwrap()
        .transactions;
    assert_eq!(r[0].status, PollStatus::NotFound);
    let r = c
        .poll_push_status(&[pn.transaction_id.as_str()])
        .await
        .unwrap()
        .transactions;
    assert_eq!(r[0].status, PollStatus::Approved);

    // Push failures: 6008 (no push credential), 6003, 601B, 601F.
    let e = c
        .authenticate_user_with_push(&push("henry", false, None))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::NoEnabledCredential);
    let e = c
        .authenticate_user_with_push(&push("nobody", false, None))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::UserNotFound);
    let e = c
        .authenticate_user_with_push(&push("bob", false, None))
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::UserStatusNotAllowed);
    let e = c
        .authenticate_user_with_push(&PushRequest {
            pin: Some("0000"),
            ..push("pia", false, None)
        })
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::InvalidPin);

    let counters = env.sim.counters();
    assert_eq!(counters.calls("authenticateUserWithPush"), 10);
    assert_eq!(counters.calls("pollPushStatus"), 4);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn number_challenge_needs_the_1_10_services_and_the_flag() {
    // The account requires number challenge (seed 004): a push without
    // supportNumberChallenge=true, or on the 1.8 services (which carry no number), fails with
    // 7008 and no detail, at once.
    let env = start().await;
    let push = |number: bool| PushRequest {
        user_id: "alice",
        number_challenge: number,
        ..Default::default()
    };
    let v10 = env.client();
    let v8 = VipClient::new(&VipConfig {
        cert_file: Some(env.certs.client_cert.clone()),
        key_file: Some(env.certs.client_key.clone()),
        ..env.versioned_cfg("1_8")
    })
    .unwrap();
    for (c, number) in [(&v10, false), (&v8, true), (&v8, false)] {
        let p = c.authenticate_user_with_push(&push(number)).await.unwrap();
        assert_eq!(p.numbers_challenge_value, None);
        let t = c
            .poll_push_status(&[p.transaction_id.as_str()])
            .await
            .unwrap()
            .transactions;
        assert_eq!(t[0].status, PollStatus::CouldNotAuthenticate, "{number}");
        assert_eq!(t[0].detail, None);
    }
    env.sim.shutdown().await;
}

#[tokio::test]
async fn push_success_0000_and_a_push_that_reached_no_device() {
    let dir = tempfile::tempdir().unwrap();
    let certs = vip_sim::certs::generate(&dir.path().join("pki")).unwrap();
    let toml = format!(
        "[tls]\ncert = '{}'\nkey = '{}'\nclient_ca = '{}'\n[policy]\npush_success_status = \"0000\"\n\
         [[users]]\nid = \"ann\"\n[[users.credentials]]\nid = \"VSMT00000021\"\npush = true\n\
         [[users]]\nid = \"off\"\npush = {{ device_unreachable = true }}\n[[users.credentials]]\nid = \"VSMT00000022\"\npush = true\n",
        certs.server_cert.display(),
        certs.server_key.display(),
        certs.ca_cert.display(),
    );
    let sim = Sim::start(SimConfig::from_toml_str(&toml).unwrap())
        .await
        .unwrap();
    let base = sim.base_url();
    let c = VipClient::new(&VipConfig {
        auth_url: format!("{base}/vipuserservices/AuthenticationService_1_10"),
        cert_file: Some(certs.client_cert.clone()),
        key_file: Some(certs.client_key.clone()),
        ca_file: Some(certs.ca_cert.clone()),
        ..VipConfig::default()
    })
    .unwrap();
    let req = |user| PushRequest {
        user_id: user,
        ..Default::default()
    };
    let p = c.authenticate_user_with_push(&req("ann")).await.unwrap();
    assert_eq!(p.transaction_id.len(), 16);
    assert!(p.reached_a_device());
    let p = c.authenticate_user_with_push(&req("off")).await.unwrap();
    assert!(!p.reached_a_device(), "{p:?}");
    sim.shutdown().await;
}

// ------------------------------------------------------------------ query and management

#[tokio::test]
async fn get_user_info() {
    let env = start().await;
    let c = env.client();
    let u = c.get_user_info("ALICE", true).await.unwrap();
    assert_eq!(u.user_id.as_deref(), Some("alice"));
    assert_eq!(u.user_status, Some(UserStatus::Active));
    assert_eq!(u.is_pin_set, Some(false));
    assert_eq!(
        c.get_user_info("pia", false).await.unwrap().is_pin_set,
        Some(true)
    );
    let cred = u
        .credentials
        .iter()
        .find(|c| c.credential_id == "VSMT00000001")
        .unwrap();
    assert_eq!(cred.friendly_name.as_deref(), Some("Alice's phone"));
    assert!(cred.is_enabled());
    assert!(cred.is_push_capable());
    assert!(u.credentials.iter().any(|c| c.credential_type == "SMS_OTP"));
    assert!(u
        .credentials
        .iter()
        .any(|c| c.credential_type == "VOICE_OTP"));
    // Without push attributes nothing claims push.
    let u = c.get_user_info("alice", false).await.unwrap();
    assert!(u.credentials.iter().all(|c| !c.is_push_capable()));
    let u = c.get_user_info("carol", true).await.unwrap();
    assert!(!u.credentials[0].is_enabled());
    let u = c.get_user_info("bob", false).await.unwrap();
    assert_eq!(u.user_status, Some(UserStatus::Locked));
    let e = c.get_user_info("nobody", false).await.unwrap_err();
    assert_eq!(status_of(&e), Status::UserNotFound);
    assert_eq!(env.sim.counters().calls("getUserInfo"), 6);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn send_otp_sms_and_voice_then_use_the_code() {
    let env = start().await;
    let c = env.client();
    c.send_otp(
        "alice",
        &OtpDelivery::Sms {
            phone_number: "15551234567".into(),
        },
    )
    .await
    .unwrap();
    let code = env.sim.last_sent_code("alice").unwrap();
    let r = c
        .authenticate_user(&AuthenticateUser {
            user_id: "alice",
            otp: &code,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.credential_type.as_deref(), Some("SMS_OTP"));
    c.send_otp(
        "alice",
        &OtpDelivery::Voice {
            phone_number: "15557654321".into(),
        },
    )
    .await
    .unwrap();
    let code = env.sim.last_sent_code("alice").unwrap();
    let r = c.check_otp("alice", &code, None, None).await.unwrap();
    assert_eq!(r.credential_type.as_deref(), Some("VOICE_OTP"));
    // 6004 (phone not registered), 6008 (no phones), 6003, 601B.
    let e = c
        .send_otp(
            "alice",
            &OtpDelivery::Sms {
                phone_number: "19999999999".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::InvalidPhoneNumber);
    let e = c
        .send_otp(
            "henry",
            &OtpDelivery::Sms {
                phone_number: "15551234567".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::NoEnabledCredential);
    let e = c
        .send_otp(
            "nobody",
            &OtpDelivery::Voice {
                phone_number: "15551234567".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::UserNotFound);
    let e = c
        .send_otp(
            "bob",
            &OtpDelivery::Voice {
                phone_number: "15551234567".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::UserStatusNotAllowed);
    assert_eq!(env.sim.counters().calls("sendOtp"), 6);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn get_server_time() {
    let env = start().await;
    let c = env.client();
    let t = c.get_server_time().await.unwrap();
    assert!(t.timestamp.ends_with('Z'), "{}", t.timestamp);
    let skew = t.skew.expect("parsable timestamp");
    assert!(skew.abs() <= 2, "same machine, skew {skew}");
    assert_eq!(env.sim.counters().calls("getServerTime"), 1);
    env.sim.shutdown().await;
}

// ------------------------------------------------------------------ identities and TLS

#[tokio::test]
async fn pkcs12_identity_works_like_pem() {
    let env = start().await;
    let c = VipClient::new(&env.p12_cfg()).unwrap();
    let code = env.sim.current_code("alice").unwrap();
    c.check_otp("alice", &code, None, None).await.unwrap();
    // The passphrase from a file, as deployments keep it.
    let pw = env.dir.path().join("p12.pass");
    std::fs::write(&pw, format!("{}\n", env.certs.p12_password)).unwrap();
    let c = VipClient::new(&VipConfig {
        pkcs12_password: None,
        pkcs12_password_file: Some(pw),
        ..env.p12_cfg()
    })
    .unwrap();
    c.get_server_time().await.unwrap();
    env.sim.shutdown().await;
}

#[tokio::test]
async fn thousand_sequential_calls_reuse_connections() {
    let env = start().await;
    let c = env.client();
    env.sim.reset_counters();
    for _ in 0..1000 {
        c.get_server_time().await.unwrap();
    }
    let counters = env.sim.counters();
    eprintln!("1000 calls, {} TLS handshakes", counters.tls_handshakes);
    assert_eq!(counters.calls("getServerTime"), 1000);
    assert!(
        counters.tls_handshakes <= 3,
        "1000 calls opened {} TLS connections",
        counters.tls_handshakes
    );
    env.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_logins_on_a_cold_client_then_reuses_its_connections() {
    let env = start().await;
    let c = env.client();
    env.sim.reset_counters();
    let mut opened = Vec::new();
    for round in 0..2 {
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let c = c.clone();
            calls.spawn(async move { c.get_server_time().await });
        }
        while let Some(r) = calls.join_next().await {
            r.unwrap().unwrap();
        }
        let counters = env.sim.counters();
        eprintln!("round {round}: {counters:?}");
        assert_eq!(counters.calls("getServerTime"), 64 * (round + 1));
        // Never more connections than calls in flight (max_in_flight), and the second burst
        // finds them open.
        assert!(counters.tls_handshakes <= 64, "{counters:?}");
        opened.push(counters.tls_handshakes);
    }
    // The second burst reuses what the first opened: fewer handshakes than calls. (How many
    // the first burst needs depends on the machine's speed: on a busy one, a few connections
    // serve all 64 one after the other, and the second burst may open some more.)
    assert!(
        opened[1] - opened[0] < 64,
        "the second burst opened a connection per call: {opened:?}"
    );
    let first = env.sim.counters().tls_handshakes;
    for _ in 0..64 {
        c.get_server_time().await.unwrap();
    }
    assert_eq!(
        env.sim.counters().tls_handshakes,
        first,
        "sequential calls reuse"
    );
    env.sim.shutdown().await;
}

fn assert_refused(e: &VipError) {
    eprintln!("refused as expected: {e}");
    assert!(
        matches!(e, VipError::TlsRefused { .. }),
        "expected TlsRefused, got {e}"
    );
    assert!(
        !e.is_unreachable(),
        "a refused certificate is not an outage"
    );
}

/// `e` is a TLS refusal whose message says `cause` (and the URL it was for).
fn assert_refused_because(e: &VipError, cause: &str) {
    assert_refused(e);
    let m = e.to_string();
    assert!(m.starts_with("VIP TLS handshake with https://"), "{m}");
    assert!(m.contains(cause), "expected {cause:?} in: {m}");
    assert!(!m.contains("Some(") && !m.contains("VIP: VIP"), "{m}");
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let env = start().await;
    let c = VipClient::new(&env.base_cfg()).unwrap();
    let e = c.get_server_time().await.unwrap_err();
    assert_refused_because(
        &e,
        "VIP asked for a client certificate and none is configured (certificate_required): \
         set vip.cert_file + vip.key_file, or vip.pkcs12_file",
    );
    assert_eq!(env.sim.counters().calls("getServerTime"), 0);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let env = start().await;
    let other = vip_sim::certs::generate(&env.dir.path().join("other")).unwrap();
    let c = VipClient::new(&VipConfig {
        cert_file: Some(other.client_cert.clone()),
        key_file: Some(other.client_key.clone()),
        ..env.base_cfg()
    })
    .unwrap();
    // Another CA of the same name as the simulator's: its signature does not verify.
    assert_refused_because(
        &c.get_server_time().await.unwrap_err(),
        "VIP refused our client certificate (decrypt_error): revoked, expired, or not the one \
         issued for this account in VIP Manager? check vip.cert_file / vip.pkcs12_file",
    );
    // A CA the simulator has never heard of.
    let [_, _, _, stranger, stranger_key] = own_pki(&env.dir.path().join("own"), &[], 2099);
    let c = VipClient::new(&VipConfig {
        cert_file: Some(stranger),
        key_file: Some(stranger_key),
        ..env.base_cfg()
    })
    .unwrap();
    assert_refused_because(
        &c.get_server_time().await.unwrap_err(),
        "VIP refused our client certificate (unknown_ca): revoked, expired, or not the one \
         issued for this account in VIP Manager? check vip.cert_file / vip.pkcs12_file",
    );
    // And a client that does not trust the server's CA refuses the server: our side, not VIP's.
    let c = VipClient::new(&VipConfig {
        ca_file: Some(other.ca_cert.clone()),
        ..env.pem_cfg()
    })
    .unwrap();
    let e = c.get_server_time().await.unwrap_err();
    assert_refused_because(&e, "the server's certificate is not trusted (");
    assert_refused_because(
        &e,
        &format!("check vip.ca_file ({})", other.ca_cert.display()),
    );
    assert!(!e.to_string().contains("client certificate"), "{e}");
    assert_eq!(env.sim.counters().calls("getServerTime"), 0);
    env.sim.shutdown().await;
}

/// A PKI of the test's own (the simulator's `gen-certs` keeps its CA key to itself): a CA, a
/// server certificate for `server_names`, and a client certificate valid until `client_until`
/// (year). Returns (ca.pem, server.pem, server.key, client.pem, client.key).
fn own_pki(
    dir: &std::path::Path,
    server_names: &[&str],
    client_until: i32,
) -> [std::path::PathBuf; 5] {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "contract test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = rcgen::date_time_ymd(2019, 1, 1);
    ca.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>, eku: ExtendedKeyUsagePurpose, until: i32| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.extended_key_usages = vec![eku];
        p.not_before = rcgen::date_time_ymd(2019, 1, 1);
        p.not_after = rcgen::date_time_ymd(until, 1, 1);
        (p.signed_by(&key, &ca_cert, &ca_key).unwrap(), key)
    };
    let names = server_names.iter().map(|n| n.to_string()).collect();
    let (server, server_key) = leaf(names, ExtendedKeyUsagePurpose::ServerAuth, 2099);
    let (client, client_key) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, client_until);
    let files = [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", server.pem()),
        ("server.key", server_key.serialize_pem()),
        ("client.pem", client.pem()),
        ("client.key", client_key.serialize_pem()),
    ];
    files.map(|(name, text)| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    })
}

async fn sim_with(ca: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> Sim {
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[tls]\ncert = '{}'\nkey = '{}'\nclient_ca = '{}'\n",
        cert.display(),
        key.display(),
        ca.display(),
    );
    Sim::start(SimConfig::from_toml_str(&toml).unwrap())
        .await
        .unwrap()
}

fn cfg_for(
    sim: &Sim,
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> VipConfig {
    VipConfig {
        query_url: format!("{}/vipuserservices/QueryService_1_10", sim.base_url()),
        cert_file: Some(cert.to_owned()),
        key_file: Some(key.to_owned()),
        ca_file: Some(ca.to_owned()),
        timeout: Duration::from_secs(5),
        ..VipConfig::default()
    }
}

#[tokio::test]
async fn an_expired_client_certificate_is_named_by_vips_alert() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, server, server_key, client, client_key] =
        own_pki(dir.path(), &["127.0.0.1", "localhost"], 2020);
    let sim = sim_with(&ca, &server, &server_key).await;
    let c = VipClient::new(&cfg_for(&sim, &ca, &client, &client_key)).unwrap();
    assert_refused_because(
        &c.get_server_time().await.unwrap_err(),
        "VIP refused our client certificate (certificate_expired): revoked, expired, or not \
         the one issued for this account in VIP Manager?",
    );
    assert_eq!(sim.counters().total_calls(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_a_hostname_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, server, server_key, client, client_key] =
        own_pki(dir.path(), &["vip.example.invalid"], 2099);
    let sim = sim_with(&ca, &server, &server_key).await;
    let c = VipClient::new(&cfg_for(&sim, &ca, &client, &client_key)).unwrap();
    let e = c.get_server_time().await.unwrap_err();
    assert_refused_because(
        &e,
        "the server's certificate is not valid for the name 127.0.0.1 (it is for \
         vip.example.invalid): ",
    );
    assert!(!e.to_string().contains("DnsName"), "{e}");
    assert_refused_because(
        &e,
        "check the host in vip.auth_url / vip.query_url / vip.management_url",
    );
    assert_eq!(sim.counters().total_calls(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn unusable_identity_files_are_named_when_the_client_is_built() {
    let env = start().await;
    let config_err = |cfg: VipConfig| match VipClient::new(&cfg) {
        Err(e @ VipError::Config { .. }) => e.to_string(),
        Err(e) => panic!("expected a Config error, got {e}"),
        Ok(_) => panic!("expected a Config error, got a client"),
    };
    let missing = env.dir.path().join("missing.pem");
    let e = config_err(VipConfig {
        cert_file: Some(missing.clone()),
        ..env.pem_cfg()
    });
    assert_eq!(
        e,
        format!(
            "cannot read vip.cert_file: no such file ({})",
            missing.display()
        )
    );
    let other = vip_sim::certs::generate(&env.dir.path().join("other")).unwrap();
    let e = config_err(VipConfig {
        key_file: Some(other.client_key.clone()),
        ..env.pem_cfg()
    });
    assert!(
        e.starts_with(
            "the client certificate and private key do not match: vip.key_file is not the key \
             of vip.cert_file"
        ),
        "{e}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let locked = env.dir.path().join("locked.key");
        std::fs::copy(&env.certs.client_key, &locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        // Root reads it anyway: only an unprivileged run can see the refusal.
        if std::fs::read(&locked).is_err() {
            let e = config_err(VipConfig {
                key_file: Some(locked.clone()),
                ..env.pem_cfg()
            });
            assert!(
                e.starts_with("cannot read vip.key_file: permission denied: "),
                "{e}"
            );
        }
    }
    env.sim.shutdown().await;
}

// ------------------------------------------------------------------ faults

/// Every transport fault the simulator can inject lands in its failure class: only real
/// outages are `Outage`.
#[tokio::test]
async fn injected_faults_map_to_error_classes() {
    let env = start().await;
    let c = VipClient::new(&VipConfig {
        timeout: Duration::from_millis(700),
        ..env.pem_cfg()
    })
    .unwrap();
    let set = |f: Faults| assert!(env.sim.set_user_faults("faulty", f));
    let f = |edit: fn(&mut Faults)| {
        let mut f = Faults::default();
        edit(&mut f);
        f
    };
    use FailureClass::{Misconfigured, Outage};
    let table = [
        (f(|f| f.http_status = Some(503)), Outage),
        (f(|f| f.http_status = Some(502)), Outage),
        (f(|f| f.http_status = Some(504)), Outage),
        (f(|f| f.soap_fault = true), Outage),
        (f(|f| f.connection_reset = true), Outage),
        (f(|f| f.latency_ms = 2000), Outage),
        (f(|f| f.http_500 = true), Misconfigured),
        (f(|f| f.http_status = Some(404)), Misconfigured),
        (f(|f| f.http_status = Some(403)), Misconfigured),
        (f(|f| f.client_fault = true), Misconfigured),
        (f(|f| f.malformed_xml = true), Misconfigured),
        (f(|f| f.wrong_namespace = true), Misconfigured),
    ];
    for (faults, class) in table {
        set(faults.clone());
        let start = std::time::Instant::now();
        let e = c
            .authenticate_user(&AuthenticateUser {
                user_id: "faulty",
                otp: "123456",
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.class(), class, "{faults:?}: {e}");
        // The call was sent: its requestId is named, so VIP's records can be searched for it.
        assert!(
            e.request_id().is_some_and(|r| r.starts_with("ct_")),
            "{faults:?}: {e:?}"
        );
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "deadline not applied: {faults:?}"
        );
    }

    // Healthy again: the pool recovers.
    set(Faults::default());
    let code = env.sim.current_code("faulty").unwrap();
    c.check_otp("faulty", &code, None, None).await.unwrap();
    env.sim.shutdown().await;
}

#[tokio::test]
async fn internal_error_6005_is_retried_once_where_safe() {
    let env = start().await;
    let c = env.client();
    let mut status = std::collections::BTreeMap::new();
    for op in ["authenticateUser", "authenticateUserWithPush", "sendOtp"] {
        status.insert(op.to_owned(), "6005".to_owned());
    }
    let once = Faults {
        status: status.clone(),
        status_times: 1,
        ..Faults::default()
    };
    assert!(env.sim.set_user_faults("alice", once));
    let code = env.sim.current_code("alice").unwrap();
    let ok = AuthenticateUser {
        user_id: "alice",
        otp: &code,
        ..Default::default()
    };
    c.authenticate_user(&ok).await.unwrap();
    assert_eq!(env.sim.counters().calls("authenticateUser"), 2);
    // Always 6005: one retry, then the error (an outage for the engine).
    assert!(env.sim.set_user_faults(
        "alice",
        Faults {
            status,
            ..Faults::default()
        }
    ));
    let e = c.authenticate_user(&ok).await.unwrap_err();
    assert_eq!(status_of(&e), Status::InternalError);
    assert_eq!(env.sim.counters().calls("authenticateUser"), 4);
    // A push and a text are never sent twice.
    let e = c
        .authenticate_user_with_push(&PushRequest {
            user_id: "alice",
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::InternalError);
    assert_eq!(env.sim.counters().calls("authenticateUserWithPush"), 1);
    let e = c
        .send_otp(
            "alice",
            &OtpDelivery::Sms {
                phone_number: "15551234567".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Status::InternalError);
    assert_eq!(env.sim.counters().calls("sendOtp"), 1);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn a_refused_client_certificate_is_recognised_every_time() {
    // TLS 1.3: the server checks our certificate after the client has finished its handshake,
    // so VIP's alert may cross our request. Every call must still say "refused".
    let env = start().await;
    let other = vip_sim::certs::generate(&env.dir.path().join("other")).unwrap();
    let c = VipClient::new(&VipConfig {
        cert_file: Some(other.client_cert.clone()),
        key_file: Some(other.client_key.clone()),
        ..env.base_cfg()
    })
    .unwrap();
    let calls = (0..40).map(|i| {
        let c = c.clone();
        async move {
            let e = if i % 2 == 0 {
                c.get_server_time().await.unwrap_err()
            } else {
                c.check_otp("alice", "123456", None, None)
                    .await
                    .unwrap_err()
            };
            assert!(matches!(e, VipError::TlsRefused { .. }), "call {i}: {e}");
        }
    });
    // In parallel, as under load, where the race showed.
    futures_join_all(calls).await;
    assert_eq!(env.sim.counters().total_calls(), 0);
    env.sim.shutdown().await;
}

async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    fs: impl Iterator<Item = F>,
) {
    let mut set = tokio::task::JoinSet::new();
    for f in fs {
        set.spawn(f);
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_not_an_error() {
    // VIP (or a load balancer) closes idle keep-alive connections; the next call must not fail
    // because the pooled connection died: the request was never sent, so it is retried.
    let dir = tempfile::tempdir().unwrap();
    let certs = vip_sim::certs::generate(&dir.path().join("pki")).unwrap();
    let toml = format!(
        "[server]\nidle_timeout_ms = 200\n[tls]\ncert = '{}'\nkey = '{}'\nclient_ca = '{}'\n",
        certs.server_cert.display(),
        certs.server_key.display(),
        certs.ca_cert.display(),
    );
    let sim = Sim::start(SimConfig::from_toml_str(&toml).unwrap())
        .await
        .unwrap();
    let base = sim.base_url();
    let c = VipClient::new(&VipConfig {
        query_url: format!("{base}/vipuserservices/QueryService_1_10"),
        cert_file: Some(certs.client_cert.clone()),
        key_file: Some(certs.client_key.clone()),
        ca_file: Some(certs.ca_cert.clone()),
        ..VipConfig::default()
    })
    .unwrap();
    for _ in 0..3 {
        c.get_server_time().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let counters = sim.counters();
    assert_eq!(counters.calls("getServerTime"), 3);
    assert!(counters.tls_handshakes >= 2, "{counters:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_service_url_is_a_protocol_error() {
    // pollPushStatus lives on the Query service; sent to Authentication it is a Fault.
    let env = start().await;
    let cfg = env.pem_cfg();
    let c = VipClient::new(&VipConfig {
        query_url: cfg.auth_url.clone(),
        ..cfg
    })
    .unwrap();
    let e = c.poll_push_status(&["abcd1234abcd1234"]).await.unwrap_err();
    assert!(matches!(e, VipError::Protocol { .. }), "{e}");
    env.sim.shutdown().await;
}
