//! Contract tests: the TrustBuilder client and backend against the simulator
//! (`vip_sim::TbSim`) over real mutual TLS: codes (right, wrong, replayed, URL-encoded login
//! names), pushes (approve, refuse, time out, no push-capable app), unknown users, the
//! credential look-up (provisioning SOAP), and every failure class (wrong serviceId, refused
//! certificates, 503).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use vip_core::engine::backend::{
    Backend, BackendError, CodeCheck, CodeKind, PushStart, PushState, Refusal,
};
use vip_core::https::FailureClass;
use vip_core::secret::Secret;
use vip_core::trustbuilder::*;
use vip_sim::certs::CertPaths;
use vip_sim::config::TlsConfig;
use vip_sim::{TbFaults, TbPush, TbSim, TbSimConfig, TbToolConfig, TbUserConfig};

const SERVICE: u64 = 4242;
const SEED: &str = "3132333435363738393031323334353637383930";

fn app(id: u64, alias: &str, action: &str) -> TbToolConfig {
    TbToolConfig {
        seed: Some(SEED.into()),
        push_enabled: true,
        push: TbPush {
            action: action.into(),
            after: Some(Duration::from_millis(300)),
        },
        ..TbToolConfig::new("ma", id, alias)
    }
}

fn user(login: &str, tools: Vec<TbToolConfig>) -> TbUserConfig {
    TbUserConfig {
        tools,
        ..TbUserConfig::new(login)
    }
}

fn users() -> Vec<TbUserConfig> {
    let mut desktop = TbToolConfig::new("ca", 20, "carl-ca");
    desktop.seed = Some(SEED.into());
    let mut unregistered = app(21, "nora-ma", "approve");
    unregistered.push_enabled = false;
    let mut locked = app(22, "lee-ma", "approve");
    locked.state = 1;
    vec![
        user("alice", vec![app(10, "alice-ma", "approve")]),
        user("user+tag@example.com", vec![app(11, "tag-ma", "approve")]),
        user("rita", vec![app(12, "rita-ma", "refuse")]),
        user("ivan", vec![app(13, "ivan-ma", "ignore")]),
        user("carl", vec![desktop]),
        user("nora", vec![unregistered]),
        user("lee", vec![locked]),
        user("tess", vec![]),
    ]
}

struct Env {
    sim: TbSim,
    certs: CertPaths,
    _dir: tempfile::TempDir,
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let certs = vip_sim::certs::generate(dir.path()).unwrap();
    let mut cfg = TbSimConfig::new(
        TlsConfig {
            cert: certs.server_cert.clone(),
            key: certs.server_key.clone(),
            client_ca: certs.ca_cert.clone(),
        },
        SERVICE,
    );
    cfg.service.push_timeout = Duration::from_secs(2);
    cfg.users = users();
    let sim = TbSim::start(cfg).await.unwrap();
    Env {
        sim,
        certs,
        _dir: dir,
    }
}

impl Env {
    fn config(&self) -> TrustBuilderConfig {
        TrustBuilderConfig {
            service_id: SERVICE,
            api_url: self.sim.base_url(),
            pkcs12_file: Some(self.certs.client_p12.clone()),
            pkcs12_password_file: Some(self.certs.p12_password_file.clone()),
            ca_file: Some(self.certs.ca_cert.clone()),
            timeout: Duration::from_secs(3),
            // No periodic probe during a test: only the one an outage asks for.
            health_check_interval: Duration::from_secs(3600),
            ..TrustBuilderConfig::default()
        }
    }

    fn backend_with(&self, cfg: &TrustBuilderConfig) -> TrustBuilderBackend {
        let client = TrustBuilderClient::new(cfg).unwrap();
        TrustBuilderBackend::new(client, cfg.health_check_interval)
    }

    fn backend(&self) -> TrustBuilderBackend {
        self.backend_with(&self.config())
    }

    fn code(&self, login: &str) -> Secret {
        Secret::new(self.sim.current_code(login).unwrap())
    }
}

fn check(user: &str, code: Secret) -> CodeCheck {
    CodeCheck {
        user: user.into(),
        code,
        next_code: None,
        pin: None,
        kind: CodeKind::Login,
        auth_level: None,
    }
}

fn push(user: &str) -> PushStart {
    PushStart {
        user: user.into(),
        title: "Login".into(),
        text: "VPN".into(),
        profile: Some("vpn.example.com".into()),
        timeout: Duration::from_secs(30),
        number_challenge: false,
        auth_level: None,
    }
}

fn refusal(r: Result<impl std::fmt::Debug, BackendError>) -> Refusal {
    match r {
        Err(BackendError::Refused { refusal, .. }) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Polls until the push is final (or 10 s).
async fn outcome(b: &TrustBuilderBackend, txn: &str) -> PushState {
    let ids = vec![txn.to_owned()];
    for _ in 0..100 {
        let (_, r) = b.poll_pushes(&ids).await;
        let states = r.unwrap();
        assert_eq!(states.len(), 1);
        if states[0].1.is_final() {
            return states[0].1.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("push {txn} still pending");
}

#[tokio::test]
async fn codes_right_wrong_and_replayed() {
    let env = start().await;
    let b = env.backend();
    let code = env.code("alice");
    let (_, r) = b.verify_code(&check("alice", code.clone())).await;
    let v = r.unwrap();
    assert_eq!(v.credential_id.as_deref(), Some("alice-ma"));
    assert_eq!(v.credential_type.as_deref(), Some("ma"));
    // The same code again: TrustBuilder takes each code once.
    let (_, r) = b.verify_code(&check("alice", code)).await;
    assert_eq!(refusal(r), Refusal::BadCode);
    let (_, r) = b.verify_code(&check("alice", Secret::new("000000"))).await;
    assert_eq!(refusal(r), Refusal::BadCode);
    // A login name with + and @ reaches the service as it is.
    let (_, r) = b
        .verify_code(&check(
            "user+tag@example.com",
            env.code("user+tag@example.com"),
        ))
        .await;
    assert_eq!(r.unwrap().credential_id.as_deref(), Some("tag-ma"));
    // A desktop app's code.
    let (_, r) = b.verify_code(&check("carl", env.code("carl"))).await;
    assert_eq!(r.unwrap().credential_type.as_deref(), Some("ca"));
    let (_, r) = b.verify_code(&check("nobody", Secret::new("123456"))).await;
    assert_eq!(refusal(r), Refusal::UnknownUser);
    assert_eq!(env.sim.counters().calls("authenticateExtended"), 6);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn account_unknown_with_trailing_space_and_upper_case_variants() {
    let env = start().await;
    let b = env.backend();
    env.sim.set_global_faults(TbFaults {
        account_unknown_trailing_space: true,
        upper_case: true,
        ..TbFaults::default()
    });
    let (_, r) = b.verify_code(&check("nobody", Secret::new("123456"))).await;
    assert_eq!(refusal(r), Refusal::UnknownUser);
    let (_, r) = b.start_push(&push("carl")).await;
    assert_eq!(refusal(r), Refusal::NoPushDevice);
    let (_, r) = b.start_push(&push("nora")).await;
    assert_eq!(refusal(r), Refusal::NoPushDevice);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn pushes_approved_refused_and_timed_out() {
    let env = start().await;
    let b = env.backend();
    let (session, r) = b.start_push(&push("alice")).await;
    let ticket = r.unwrap();
    assert!(session.is_some());
    assert!(ticket
        .transaction_id
        .starts_with(session.as_deref().unwrap()));
    match outcome(&b, &ticket.transaction_id).await {
        PushState::Approved(v) => assert_eq!(v.credential_id.as_deref(), Some("alice-ma")),
        other => panic!("{other:?}"),
    }
    // The session is over: the service no longer knows it.
    let (_, r) = b
        .poll_pushes(std::slice::from_ref(&ticket.transaction_id))
        .await;
    assert!(matches!(r.unwrap()[0].1, PushState::Failed(_)));

    let (_, r) = b.start_push(&push("rita")).await;
    let rita = r.unwrap();
    let (_, r) = b.start_push(&push("ivan")).await;
    let ivan = r.unwrap();
    // Both polled in one call, under the engine's (lower-case) transaction keys.
    let ids = vec![
        rita.transaction_id.to_lowercase(),
        ivan.transaction_id.to_lowercase(),
    ];
    let (_, r) = b.poll_pushes(&ids).await;
    assert_eq!(r.unwrap().len(), 2);
    assert_eq!(outcome(&b, &rita.transaction_id).await, PushState::Denied);
    assert_eq!(outcome(&b, &ivan.transaction_id).await, PushState::Expired);
    assert_eq!(env.sim.counters().calls("pushAuthenticate"), 3);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn no_push_capable_app_and_unknown_users() {
    let env = start().await;
    let b = env.backend();
    // A desktop app only (NoMA), an app not registered for push (NoPush), a locked app.
    for login in ["carl", "nora", "lee"] {
        let (_, r) = b.start_push(&push(login)).await;
        assert_eq!(refusal(r), Refusal::NoPushDevice, "{login}");
    }
    let (_, r) = b.start_push(&push("nobody")).await;
    assert_eq!(refusal(r), Refusal::NoCredential);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn user_factors_with_and_without_active_tools() {
    let env = start().await;
    let b = env.backend();
    let (_, r) = b.user_factors("alice").await;
    let f = r.unwrap();
    assert!(f.push && f.code, "{f:?}");
    let (_, r) = b.user_factors("carl").await;
    let f = r.unwrap();
    assert!(!f.push && f.code, "{f:?}");
    let (_, r) = b.user_factors("nora").await;
    let f = r.unwrap();
    assert!(!f.push && f.code, "{f:?}");
    for login in ["tess", "lee"] {
        let (_, r) = b.user_factors(login).await;
        let f = r.unwrap();
        assert!(!f.any(), "{login}: {f:?}");
    }
    let (_, r) = b.user_factors("nobody").await;
    assert_eq!(refusal(r), Refusal::UnknownUser);
    // The login id is remembered: a second look-up costs one loginQuery, no loginSearch.
    let searches = env.sim.counters().calls("loginSearch");
    let (_, r) = b.user_factors("alice").await;
    r.unwrap();
    assert_eq!(env.sim.counters().calls("loginSearch"), searches);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn wrong_service_id_is_misconfigured_never_an_outage() {
    let env = start().await;
    for access_forbidden in [false, true] {
        env.sim.set_global_faults(TbFaults {
            access_forbidden,
            ..TbFaults::default()
        });
        let b = env.backend_with(&TrustBuilderConfig {
            service_id: SERVICE + 1,
            ..env.config()
        });
        let (_, r) = b.verify_code(&check("alice", env.code("alice"))).await;
        assert!(matches!(r, Err(BackendError::Misconfigured(_))), "{r:?}");
        let (_, r) = b.start_push(&push("alice")).await;
        assert!(matches!(r, Err(BackendError::Misconfigured(_))), "{r:?}");
        assert!(!b.outage_confirmed().await);
        let e = b
            .client()
            .authenticate_extended("alice", "123456")
            .await
            .unwrap_err();
        assert_eq!(e.class(), FailureClass::Misconfigured, "{e}");
        let want = if access_forbidden {
            TbStatus::AccessForbidden
        } else {
            TbStatus::ServiceUnknown
        };
        assert_eq!(e.status(), Some(&want));
    }
    env.sim.shutdown().await;
}

#[tokio::test]
async fn refused_certificates_are_misconfigured_never_an_outage() {
    let env = start().await;
    // Another PKI: its client certificate is not one the service trusts, and its CA does not
    // trust the service's certificate.
    let other_dir = tempfile::tempdir().unwrap();
    let other = vip_sim::certs::generate(other_dir.path()).unwrap();
    let untrusted_client = TrustBuilderConfig {
        pkcs12_file: Some(other.client_p12.clone()),
        pkcs12_password_file: Some(other.p12_password_file.clone()),
        ..env.config()
    };
    let wrong_ca = TrustBuilderConfig {
        ca_file: Some(other.ca_cert.clone()),
        ..env.config()
    };
    let pem_identity = TrustBuilderConfig {
        pkcs12_file: None,
        pkcs12_password_file: None,
        cert_file: Some(env.certs.client_cert.clone()),
        key_file: Some(env.certs.client_key.clone()),
        ..env.config()
    };
    for (what, cfg) in [
        ("untrusted client", &untrusted_client),
        ("wrong CA", &wrong_ca),
    ] {
        let b = env.backend_with(cfg);
        let e = b
            .client()
            .authenticate_extended("alice", "123456")
            .await
            .unwrap_err();
        assert_eq!(e.class(), FailureClass::Misconfigured, "{what}: {e}");
        assert!(matches!(e, TbError::TlsRefused { .. }), "{what}: {e}");
        assert!(e.to_string().contains("trustbuilder."), "{what}: {e}");
        assert!(!e.to_string().contains("123456"), "{what}: {e}");
        let (_, r) = b.verify_code(&check("alice", Secret::new("123456"))).await;
        assert!(
            matches!(r, Err(BackendError::Misconfigured(_))),
            "{what}: {r:?}"
        );
        assert!(!b.outage_confirmed().await, "{what}");
    }
    // A PEM certificate and key work as well as the PKCS#12 file.
    let b = env.backend_with(&pem_identity);
    let (_, r) = b.verify_code(&check("alice", env.code("alice"))).await;
    r.unwrap();
    env.sim.shutdown().await;
}

#[tokio::test]
async fn http_503_is_an_outage_confirmed_by_the_health_check() {
    let env = start().await;
    let b = env.backend();
    env.sim.set_global_faults(TbFaults {
        http_status: Some(503),
        ..TbFaults::default()
    });
    let (_, r) = b.verify_code(&check("alice", Secret::new("123456"))).await;
    assert!(matches!(r, Err(BackendError::Outage(_))), "{r:?}");
    let (_, r) = b.start_push(&push("alice")).await;
    assert!(matches!(r, Err(BackendError::Outage(_))), "{r:?}");
    assert!(b.outage_confirmed().await);
    env.sim.set_global_faults(TbFaults::default());
    let (_, r) = b.verify_code(&check("alice", env.code("alice"))).await;
    r.unwrap();
    assert!(!b.outage_confirmed().await);
    // Nobody listening: an outage too.
    let down_cfg = TrustBuilderConfig {
        api_url: format!("https://127.0.0.1:{}", env.sim.addr().port()),
        ..env.config()
    };
    let down = env.backend_with(&down_cfg);
    env.sim.shutdown().await;
    let (_, r) = down
        .verify_code(&check("alice", Secret::new("123456")))
        .await;
    assert!(matches!(r, Err(BackendError::Outage(_))), "{r:?}");
}

#[tokio::test]
async fn sms_and_voice_are_unsupported() {
    let env = start().await;
    let b = env.backend();
    let (_, r) = b
        .send_code(
            "alice",
            vip_core::engine::backend::Channel::Sms,
            "+15551234567",
        )
        .await;
    assert!(matches!(r, Err(BackendError::Misconfigured(_))), "{r:?}");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn provisioning_administration_round_trip() {
    let env = start().await;
    let c = TrustBuilderClient::new(&env.config()).unwrap();
    let fields = LoginFields {
        login: "new.user@example.com",
        firstname: Some("New"),
        name: Some("User"),
        mail: Some("new.user@example.com"),
        ..LoginFields::default()
    };
    let created = c
        .login_create(&fields, false, CodeType::Immediate, Some("en"))
        .await
        .unwrap();
    assert!(created.id > 0);
    assert!(created.code.is_some());
    // The same login again: the service's refusal, an answer (not a misconfiguration).
    let e = c
        .login_create(&fields, false, CodeType::Immediate, None)
        .await
        .unwrap_err();
    assert_eq!(e.class(), FailureClass::Answered, "{e}");
    let found = c.login_search("new.user@example.com").await.unwrap();
    assert_eq!(found.logins.len(), 1);
    assert_eq!(found.logins[0].id, created.id);
    let d = c.login_query(created.id).await.unwrap();
    assert_eq!(d.attributes.login, "new.user@example.com");
    assert_eq!(d.attributes.firstname.as_deref(), Some("New"));
    assert!(d.tools.is_empty());
    c.login_update(
        created.id,
        &LoginFields {
            name: Some("Renamed"),
            ..fields.clone()
        },
    )
    .await
    .unwrap();
    let d = c.login_query(created.id).await.unwrap();
    assert_eq!(d.attributes.name.as_deref(), Some("Renamed"));
    let code = c
        .login_new_code(OP_LOGIN_ADD_DEVICE, created.id, CodeType::Immediate)
        .await
        .unwrap();
    assert!(!code.is_empty());
    // A page of every login: the configured ones and the new one.
    let page = c.logins_query(0, 100, 1).await.unwrap();
    assert_eq!(page.count, Some(users().len() as i64 + 1));
    assert_eq!(page.logins.len(), users().len() + 1);
    // Tools: alice's app renamed, then deleted.
    let alice = c.login_search("alice").await.unwrap().logins[0].id;
    let d = c.login_query(alice).await.unwrap();
    let app = d
        .tools
        .iter()
        .find(|t| t.kind == ToolKind::MobileApp)
        .unwrap();
    assert!(app.can_push());
    c.login_update_tool(ToolKind::MobileApp, app.id, "work phone")
        .await
        .unwrap();
    let d = c.login_query(alice).await.unwrap();
    assert_eq!(d.tools[0].name.as_deref(), Some("work phone"));
    c.login_delete_tool(ToolKind::MobileApp, app.id)
        .await
        .unwrap();
    assert!(c.login_query(alice).await.unwrap().tools.is_empty());
    c.login_op(OP_LOGIN_DELETE, created.id).await.unwrap();
    assert!(c
        .login_search("new.user@example.com")
        .await
        .unwrap()
        .logins
        .is_empty());
    assert_eq!(env.sim.counters().calls("loginCreate"), 2);
    env.sim.shutdown().await;
}
