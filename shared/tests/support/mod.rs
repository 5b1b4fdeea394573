//! Shared set-up for the engine tests: a real simulator over mutual TLS and a real engine.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod directory;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vip_core::config::CoreConfig;
use vip_core::engine::{
    AuthRequest, ClientInfo, Engine, EngineConfig, FrontDoor, LoginPolicy, Outcome,
};
use vip_core::secret::Secret;
use vip_core::vip::VipConfig;

pub const ALICE_SECRET: &str = "JBSWY3DPEHPK3PXP";
pub const BOB_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

pub struct Env {
    pub sim: vip_sim::Sim,
    pub engine: Arc<Engine>,
    pub core: CoreConfig,
    pub dir: tempfile::TempDir,
}

/// The users every test can rely on; tests append their own TOML.
pub const USERS: &str = r#"
[[users]]
id = "alice"
sms_phones = ["15551234567"]
voice_phones = ["15557654321"]
[[users.credentials]]
id = "VSMT10000001"
type = "STANDARD_OTP"
totp_secret = "JBSWY3DPEHPK3PXP"
push = true

[[users]]
id = "bob"
[users.push]
action = "deny"
[[users.credentials]]
id = "VSMT10000002"
totp_secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
push = true

[[users]]
id = "carol"
[users.push]
action = "never"
[[users.credentials]]
id = "VSMT10000003"
totp_secret = "JBSWY3DPEHPK3PXP"
push = true

[[users]]
id = "dave"
[users.push]
delay_ms = 1200
[[users.credentials]]
id = "VSMT10000004"
totp_secret = "JBSWY3DPEHPK3PXP"
push = true

[[users]]
id = "erin"
[users.push]
number = 42
delay_ms = 300
[[users.credentials]]
id = "VSMT10000005"
totp_secret = "JBSWY3DPEHPK3PXP"
push = true

[[users]]
id = "frank"
[users.push]
number = 17
wrong_number = true
[[users.credentials]]
id = "VSMT10000006"
totp_secret = "JBSWY3DPEHPK3PXP"
push = true

[[users]]
id = "locked"
status = "LOCKED"
[[users.credentials]]
id = "VSMT10000007"
totp_secret = "JBSWY3DPEHPK3PXP"

[[users]]
id = "tokenoff"
[[users.credentials]]
id = "VSMT10000008"
totp_secret = "JBSWY3DPEHPK3PXP"
status = "DISABLED"

[[users]]
id = "drifty"
[[users.credentials]]
id = "VSMT10000009"
totp_secret = "JBSWY3DPEHPK3PXP"
drift_steps = 6

[[users]]
id = "pinny"
pin = "4321"
[[users.credentials]]
id = "VSMT10000011"
totp_secret = "JBSWY3DPEHPK3PXP"

[[users]]
id = "nophone"
[[users.credentials]]
id = "VSMT10000010"
totp_secret = "JBSWY3DPEHPK3PXP"
"#;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The current code of a base32 TOTP secret, `steps` 30-second steps from now.
pub fn code(secret: &str, steps: i64) -> String {
    vip_sim::totp::code(secret, (now() as i64 + steps * 30) as u64, 6)
}

pub fn vip_config(sim: &vip_sim::Sim, certs: &vip_sim::certs::CertPaths) -> VipConfig {
    let base = sim.base_url();
    VipConfig {
        auth_url: format!("{base}/vipuserservices/AuthenticationService_1_10"),
        query_url: format!("{base}/vipuserservices/QueryService_1_10"),
        management_url: format!("{base}/vipuserservices/ManagementService_1_10"),
        cert_file: Some(certs.client_cert.clone()),
        key_file: Some(certs.client_key.clone()),
        ca_file: Some(certs.ca_cert.clone()),
        timeout: Duration::from_secs(3),
        ..VipConfig::default()
    }
}

pub fn fast_engine_config() -> EngineConfig {
    EngineConfig {
        poll_interval: Duration::from_millis(100),
        ..EngineConfig::default()
    }
}

pub async fn start_sim(dir: &Path, extra_users: &str) -> (vip_sim::Sim, vip_sim::certs::CertPaths) {
    sim_over_tls(dir, &format!("{USERS}\n{extra_users}")).await
}

/// A simulator on a loopback port over mutual TLS, with a fresh test PKI under `dir`; `rest`
/// is the rest of its TOML (`[policy]`, users, tokens).
pub async fn sim_over_tls(dir: &Path, rest: &str) -> (vip_sim::Sim, vip_sim::certs::CertPaths) {
    let certs = vip_sim::certs::generate(dir).expect("certs");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n{rest}",
        certs.server_cert, certs.server_key, certs.ca_cert
    );
    let cfg = vip_sim::SimConfig::from_toml_str(&toml).expect("sim config");
    (vip_sim::Sim::start(cfg).await.expect("sim start"), certs)
}

pub async fn env_with(extra_users: &str, engine: EngineConfig) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (sim, certs) = start_sim(dir.path(), extra_users).await;
    let core = CoreConfig {
        vip: vip_config(&sim, &certs),
        engine,
        ..CoreConfig::default()
    };
    let engine = core.build_engine().expect("engine");
    Env {
        sim,
        engine,
        core,
        dir,
    }
}

pub async fn env() -> Env {
    env_with("", fast_engine_config()).await
}

pub fn request(
    user: &str,
    typed: Option<&str>,
    state: Option<Vec<u8>>,
    policy: &Arc<LoginPolicy>,
) -> AuthRequest {
    AuthRequest {
        user: user.to_owned(),
        secret: typed.map(Secret::from),
        state,
        client: ClientInfo {
            front_door: FrontDoor::Radius,
            name: "vpn".into(),
            peer: None,
            nas_identifier: None,
            remote: Some("203.0.113.7".into()),
            tty: None,
            // One NAS session unless a test says otherwise (see `in_session`).
            session: Some("nas-port-1".into()),
        },
        policy: policy.clone(),
        stack_password_checked: false,
    }
}

/// `request`, from another login session at the same client (another NAS port / tty).
pub fn in_session(mut req: AuthRequest, session: Option<&str>) -> AuthRequest {
    req.client.session = session.map(str::to_owned);
    req
}

pub fn policy(edit: impl FnOnce(&mut LoginPolicy)) -> Arc<LoginPolicy> {
    let mut p = LoginPolicy::default();
    edit(&mut p);
    Arc::new(p)
}

/// Authenticates through any engine (e.g. a second instance).
pub async fn auth_with(engine: &Engine, req: AuthRequest) -> Outcome {
    use vip_core::engine::Authenticate;
    engine.authenticate(req).await
}

impl Env {
    pub async fn auth(
        &self,
        user: &str,
        typed: Option<&str>,
        state: Option<Vec<u8>>,
        policy: &Arc<LoginPolicy>,
    ) -> Outcome {
        use vip_core::engine::Authenticate;
        self.engine
            .authenticate(request(user, typed, state, policy))
            .await
    }

    pub fn calls(&self, op: &str) -> u64 {
        self.sim.counters().calls(op)
    }
}

#[track_caller]
pub fn expect_accept(o: &Outcome) -> &vip_core::engine::Accept {
    match o {
        Outcome::Accept(a) => a,
        other => panic!("expected Accept, got {other:?}"),
    }
}

#[track_caller]
pub fn expect_reject(o: &Outcome, reason: vip_core::engine::RejectReason) {
    match o {
        Outcome::Reject(r) => assert_eq!(r.reason, reason, "message: {}", r.message),
        other => panic!("expected Reject({reason:?}), got {other:?}"),
    }
}

#[track_caller]
pub fn expect_challenge(o: &Outcome) -> &vip_core::engine::Challenge {
    match o {
        Outcome::Challenge(c) => c,
        other => panic!("expected Challenge, got {other:?}"),
    }
}
