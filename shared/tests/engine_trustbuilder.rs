//! The engine on the TrustBuilder backend (`backend = "trustbuilder"`, built by
//! `CoreConfig::build_engine`) against the TrustBuilder simulator (`vip_sim::TbSim`) over mutual
//! TLS: the engine's rules hold for the second backend as they do for VIP. Codes (right, wrong,
//! replayed, with a PIN), pushes (approved, refused, ignored, polling pace), push coalescing by
//! login session, users without a push-capable app or any active tool, unknown users, fail
//! modes (only a confirmed outage opens), throttles, and every status of the reference's table
//! (`shared/reference/trustbuilder-mfa.md`) forced through `TbFaults`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{auth_with, expect_accept, expect_challenge, expect_reject, in_session, request};
use vip_core::config::{BackendKind, CoreConfig};
use vip_core::engine::{
    Authenticate, EmptyPassword, Engine, EngineConfig, Factor, FailMode, LoginPolicy, Outcome,
    PasswordMode, PushMode, RejectReason,
};
use vip_core::throttle::{RateLimit, ThrottleConfig};
use vip_core::trustbuilder::TrustBuilderConfig;
use vip_sim::certs::CertPaths;
use vip_sim::config::TlsConfig;
use vip_sim::{TbFaults, TbPush, TbSim, TbSimConfig, TbToolConfig, TbUserConfig};

const SERVICE: u64 = 4242;
/// Every tool's TOTP seed (hex of the ASCII `12345678901234567890`).
const SEED: &str = "3132333435363738393031323334353637383930";
const KEY: &[u8] = b"12345678901234567890";
/// The policy push timeout: the shortest `LoginPolicy::validate` allows.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);

// ---- set-up ---------------------------------------------------------------------------------

fn app(id: u64, alias: &str, action: &str, after_ms: u64) -> TbToolConfig {
    TbToolConfig {
        seed: Some(SEED.into()),
        push_enabled: true,
        push: TbPush {
            action: action.into(),
            after: Some(Duration::from_millis(after_ms)),
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

/// The logins every test can rely on.
fn users() -> Vec<TbUserConfig> {
    // A desktop app only: codes, no push (pushAuthenticate: NOK:NoMA).
    let mut desktop = TbToolConfig::new("ca", 20, "carl-ca");
    desktop.seed = Some(SEED.into());
    // A mobile app not registered for push (NOK:NoPush).
    let mut unregistered = app(21, "nora-ma", "approve", 0);
    unregistered.push_enabled = false;
    // A locked app: no active tool at all.
    let mut locked_tool = app(22, "lee-ma", "approve", 0);
    locked_tool.state = 1;
    let mut blocked = user("blocked", vec![app(23, "blocked-ma", "approve", 0)]);
    blocked.status = 1;
    vec![
        user("alice", vec![app(10, "alice-ma", "approve", 300)]),
        user("rita", vec![app(11, "rita-ma", "refuse", 300)]),
        user("ivan", vec![app(12, "ivan-ma", "ignore", 0)]),
        user("dave", vec![app(13, "dave-ma", "approve", 1200)]),
        user("bob", vec![app(14, "bob-ma", "approve", 300)]),
        user("carl", vec![desktop]),
        user("nora", vec![unregistered]),
        user("lee", vec![locked_tool]),
        user("tess", vec![]),
        blocked,
    ]
}

struct TbEnv {
    sim: TbSim,
    engine: Arc<Engine>,
    core: CoreConfig,
    dir: tempfile::TempDir,
}

/// The engine's settings for these tests: polls every 100 ms (the lowest allowed).
fn fast() -> EngineConfig {
    EngineConfig {
        poll_interval: Duration::from_millis(100),
        ..EngineConfig::default()
    }
}

/// `fast()` with per-user limits no test reaches (for tests that log one user in many times).
fn roomy() -> EngineConfig {
    let lots = RateLimit {
        count: 1000,
        per: Duration::from_secs(60),
    };
    EngineConfig {
        throttle: ThrottleConfig {
            codes_per_user: lots,
            push_per_user: lots,
            ..ThrottleConfig::default()
        },
        ..fast()
    }
}

fn tb_config(sim: &TbSim, certs: &CertPaths) -> TrustBuilderConfig {
    TrustBuilderConfig {
        service_id: SERVICE,
        api_url: sim.base_url(),
        pkcs12_file: Some(certs.client_p12.clone()),
        pkcs12_password_file: Some(certs.p12_password_file.clone()),
        ca_file: Some(certs.ca_cert.clone()),
        timeout: Duration::from_secs(3),
        // No periodic probe during a test: only the one a failed login asks for.
        health_check_interval: Duration::from_secs(3600),
        ..TrustBuilderConfig::default()
    }
}

async fn start_with(engine: EngineConfig, extra: Vec<TbUserConfig>) -> TbEnv {
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
    cfg.users = users();
    cfg.users.extend(extra);
    let sim = TbSim::start(cfg).await.unwrap();
    let core = CoreConfig {
        backend: BackendKind::Trustbuilder,
        trustbuilder: Some(tb_config(&sim, &certs)),
        engine,
        ..CoreConfig::default()
    };
    // What the daemon would accept: the durations are within their bounds.
    core.validate(Path::new("engine_trustbuilder.toml"))
        .expect("a valid configuration");
    let engine = core.build_engine().expect("engine");
    TbEnv {
        sim,
        engine,
        core,
        dir,
    }
}

async fn start() -> TbEnv {
    start_with(fast(), Vec::new()).await
}

impl TbEnv {
    async fn auth(
        &self,
        user: &str,
        typed: Option<&str>,
        state: Option<Vec<u8>>,
        policy: &Arc<LoginPolicy>,
    ) -> Outcome {
        self.engine
            .authenticate(request(user, typed, state, policy))
            .await
    }

    fn calls(&self, op: &str) -> u64 {
        self.sim.counters().calls(op)
    }

    /// The login's current code (its first active tool with a seed).
    fn code(&self, login: &str) -> String {
        self.sim.current_code(login).expect("a code")
    }

    /// Another engine on the same simulator, its `[trustbuilder]` edited.
    fn engine_with(&self, edit: impl FnOnce(&mut TrustBuilderConfig)) -> Arc<Engine> {
        let mut core = self.core.clone();
        edit(core.trustbuilder.as_mut().unwrap());
        core.build_engine().expect("engine")
    }

    fn fail_opens(&self) -> u64 {
        self.engine.stats().fail_opens.load(Ordering::Relaxed)
    }
}

fn policy(edit: impl FnOnce(&mut LoginPolicy)) -> Arc<LoginPolicy> {
    let mut p = LoginPolicy::default();
    edit(&mut p);
    p.validate().expect("a valid policy");
    Arc::new(p)
}

fn code_policy() -> Arc<LoginPolicy> {
    policy(|_| {})
}

fn push_policy(mode: PushMode) -> Arc<LoginPolicy> {
    policy(|p| {
        p.push_mode = mode;
        p.push_timeout = PUSH_TIMEOUT;
        p.empty_password = EmptyPassword::Push;
    })
}

fn menu_policy() -> Arc<LoginPolicy> {
    policy(|p| {
        p.mode = PasswordMode::Challenge;
        p.push_timeout = PUSH_TIMEOUT;
    })
}

fn fail_policy(mode: FailMode) -> Arc<LoginPolicy> {
    policy(|p| {
        p.fail_mode = mode;
        p.push_timeout = PUSH_TIMEOUT;
    })
}

/// The code of the shared seed `steps` 30-second steps from now.
fn code_at(steps: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    vip_sim::totp::code_at_step(KEY, now / 30 + steps, 6)
}

/// A 6-digit code no tool accepts now (none of the codes of the steps around now).
fn wrong_code() -> String {
    let near: Vec<String> = (-2..=2).map(code_at).collect();
    ["000000", "111111", "222222", "333333", "444444", "555555"]
        .into_iter()
        .find(|c| !near.iter().any(|n| n == c))
        .unwrap()
        .to_owned()
}

#[track_caller]
fn reject_of(o: &Outcome) -> &vip_core::engine::Reject {
    match o {
        Outcome::Reject(r) => r,
        other => panic!("expected a Reject, got {other:?}"),
    }
}

/// The engine refused as a misconfiguration: never an outage, never a pass.
#[track_caller]
fn expect_misconfigured(o: &Outcome) {
    let r = reject_of(o);
    assert_eq!(r.reason, RejectReason::Misconfigured, "{}", r.message);
    assert!(r.message.contains("not set up correctly"), "{}", r.message);
}

fn forced(action: &str, err: &str, times: u32) -> TbFaults {
    TbFaults {
        err: BTreeMap::from([(action.to_owned(), err.to_owned())]),
        err_times: times,
        ..TbFaults::default()
    }
}

// ---- codes ----------------------------------------------------------------------------------

#[tokio::test]
async fn a_good_code_is_accepted_once_then_refused_as_replayed_and_a_wrong_one_refused() {
    let env = start().await;
    let p = code_policy();
    let good = env.code("alice");
    let o = env.auth("alice", Some(&good), None, &p).await;
    let a = expect_accept(&o);
    assert_eq!(a.factor, Factor::Code);
    assert_eq!(a.credential_id.as_deref(), Some("alice-ma"));
    assert_eq!(a.credential_type.as_deref(), Some("ma"));
    assert!(!a.failed_open);
    assert_eq!(env.calls("authenticateExtended"), 1, "one call for a code");
    assert_eq!(
        env.calls("loginSearch") + env.calls("loginQuery"),
        0,
        "a code needs no provisioning look-up"
    );
    // The same code again: TrustBuilder takes each code once.
    let o = env.auth("alice", Some(&good), None, &p).await;
    expect_reject(&o, RejectReason::BadCode);
    let bad_words = reject_of(&o).message.clone();
    assert!(bad_words.contains("Wrong security code"), "{bad_words}");
    expect_reject(
        &env.auth("alice", Some(&wrong_code()), None, &p).await,
        RejectReason::BadCode,
    );
    // "123 456" as printed on a token: the spaces go, the code is checked.
    let next = code_at(1);
    let spaced = format!("{} {}", &next[..3], &next[3..]);
    expect_accept(&env.auth("alice", Some(&spaced), None, &p).await);
    // A desktop app's code logs in too.
    let o = env.auth("carl", Some(&env.code("carl")), None, &p).await;
    assert_eq!(expect_accept(&o).credential_type.as_deref(), Some("ca"));
    assert_eq!(env.calls("authenticateExtended"), 5);
    // Malformed input never reaches TrustBuilder.
    for typed in ["12345", "abc!def", "12345678901"] {
        expect_reject(
            &env.auth("alice", Some(typed), None, &p).await,
            RejectReason::BadInput,
        );
    }
    assert_eq!(env.calls("authenticateExtended"), 5);
}

#[tokio::test]
async fn pin_and_code_is_refused_as_a_misconfiguration_without_calling_trustbuilder() {
    // TrustBuilder's login has no PIN (it is entered in the app): the backend refuses a PIN
    // before sending anything. The engine says "not set up correctly", not "unavailable", and
    // a fail-open policy does not open for it.
    let env = start().await;
    for mode in [FailMode::Closed, FailMode::Open] {
        let p = policy(|p| {
            p.mode = PasswordMode::PinOtp;
            p.fail_mode = mode;
        });
        let o = env
            .auth(
                "alice",
                Some(&format!("4321{}", env.code("alice"))),
                None,
                &p,
            )
            .await;
        expect_misconfigured(&o);
        // Not PIN + code at all: the usual format message, nothing sent.
        expect_reject(
            &env.auth("alice", Some("123456"), None, &p).await,
            RejectReason::BadInput,
        );
    }
    assert_eq!(env.calls("authenticateExtended"), 0);
    assert_eq!(env.fail_opens(), 0);
    // In code mode, a PIN typed in front of the code is just a wrong code.
    let o = env
        .auth(
            "alice",
            Some(&format!("4321{}", env.code("alice"))),
            None,
            &code_policy(),
        )
        .await;
    expect_reject(&o, RejectReason::BadCode);
    assert_eq!(env.calls("authenticateExtended"), 1);
}

// ---- push -----------------------------------------------------------------------------------

#[tokio::test]
async fn blocking_push_approved_refused_and_ignored() {
    let env = start().await;
    let p = push_policy(PushMode::Blocking);
    let o = env.auth("alice", Some("push"), None, &p).await;
    let a = expect_accept(&o);
    assert_eq!(a.factor, Factor::Push);
    assert_eq!(a.credential_id.as_deref(), Some("alice-ma"));
    assert!(!a.failed_open);
    // An empty password means push under this policy.
    expect_reject(
        &env.auth("rita", None, None, &p).await,
        RejectReason::PushDenied,
    );
    let polls_before = env.calls("checkPushResult");
    let t = Instant::now();
    expect_reject(
        &env.auth("ivan", Some("push"), None, &p).await,
        RejectReason::PushTimeout,
    );
    let waited = t.elapsed();
    assert!(
        waited >= PUSH_TIMEOUT - Duration::from_millis(100)
            && waited < PUSH_TIMEOUT + Duration::from_secs(2),
        "answered after {waited:?}, the policy's push_timeout is {PUSH_TIMEOUT:?}"
    );
    // Polled every 100 ms for 5 s: about 50 polls, never a tight loop.
    let polls = env.calls("checkPushResult") - polls_before;
    assert!((15..=60).contains(&polls), "polls = {polls}");
    assert_eq!(env.calls("pushAuthenticate"), 3);
}

#[tokio::test]
async fn push_polling_is_paced_by_the_engines_poll_interval() {
    for (interval_ms, bounds) in [(100u64, 6..=18), (400, 2..=5)] {
        let env = start_with(
            EngineConfig {
                poll_interval: Duration::from_millis(interval_ms),
                ..EngineConfig::default()
            },
            Vec::new(),
        )
        .await;
        let t = Instant::now();
        // dave's phone approves after 1.2 s.
        let o = env
            .auth("dave", Some("push"), None, &push_policy(PushMode::Blocking))
            .await;
        assert_eq!(expect_accept(&o).factor, Factor::Push);
        assert!(
            t.elapsed() >= Duration::from_millis(1200),
            "{:?}",
            t.elapsed()
        );
        let polls = env.calls("checkPushResult");
        assert!(
            bounds.contains(&polls),
            "poll_interval {interval_ms} ms: {polls} checkPushResult calls, expected {bounds:?}"
        );
        assert_eq!(env.calls("pushAuthenticate"), 1);
    }
}

#[tokio::test]
async fn challenge_push_answers_at_once_then_finishes_on_the_next_round() {
    let env = start().await;
    let p = push_policy(PushMode::Challenge);
    let t = Instant::now();
    let c = expect_challenge(&env.auth("dave", Some("push"), None, &p).await).clone();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(c.prompt.contains("press Enter"), "{}", c.prompt);
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let o = env.auth("dave", Some(""), Some(c.state), &p).await;
    assert_eq!(expect_accept(&o).factor, Factor::Push);
    // A code may answer the push's Challenge instead (ivan never answers the push).
    let c = expect_challenge(&env.auth("ivan", Some("push"), None, &p).await).clone();
    let o = env
        .auth("ivan", Some(&env.code("ivan")), Some(c.state), &p)
        .await;
    assert_eq!(expect_accept(&o).factor, Factor::Code);
    assert_eq!(env.calls("pushAuthenticate"), 2);
}

// ---- push coalescing --------------------------------------------------------------------------

#[tokio::test]
async fn two_requests_of_one_login_session_share_one_push() {
    let env = start().await;
    let p = push_policy(PushMode::Blocking);
    // Both requests carry the same ClientInfo.session ("nas-port-1", see `request`).
    let first = auth_with(&env.engine, request("dave", Some("push"), None, &p));
    let retry = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        auth_with(&env.engine, request("dave", Some("push"), None, &p)).await
    };
    let (a, b) = tokio::join!(first, retry);
    assert_eq!(expect_accept(&a).factor, Factor::Push);
    assert_eq!(expect_accept(&b).factor, Factor::Push);
    assert_eq!(env.calls("pushAuthenticate"), 1, "coalesced into one push");
    let stats = env.engine.stats();
    assert_eq!(
        (
            stats.pushes_started.load(Ordering::Relaxed),
            stats.pushes_joined.load(Ordering::Relaxed)
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn logins_from_different_sessions_never_share_a_push() {
    let env = start().await;
    let p = push_policy(PushMode::Blocking);
    let users_own = auth_with(&env.engine, request("dave", Some("push"), None, &p));
    let other_session = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        auth_with(
            &env.engine,
            in_session(request("dave", Some("push"), None, &p), Some("nas-port-2")),
        )
        .await
    };
    let no_session = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        auth_with(
            &env.engine,
            in_session(request("dave", Some("push"), None, &p), None),
        )
        .await
    };
    let (a, b, c) = tokio::join!(users_own, other_session, no_session);
    // dave's phone approves every push, so each login had to get its own.
    for o in [&a, &b, &c] {
        assert_eq!(expect_accept(o).factor, Factor::Push);
    }
    assert_eq!(
        env.calls("pushAuthenticate"),
        3,
        "three pushes, none joined"
    );
    assert_eq!(env.engine.stats().pushes_joined.load(Ordering::Relaxed), 0);
    // The fourth is over the per-user push limit (3 per 5 minutes by default), whatever the
    // spelling of the name.
    let o = auth_with(
        &env.engine,
        in_session(request(" DAVE", Some("push"), None, &p), Some("nas-port-3")),
    )
    .await;
    expect_reject(&o, RejectReason::Throttled);
    assert_eq!(env.calls("pushAuthenticate"), 3);
}

// ---- users without push, without tools, unknown ----------------------------------------------

#[tokio::test]
async fn push_for_a_user_without_a_push_capable_app_is_refused_with_a_code_offer() {
    let env = start().await;
    for mode in [FailMode::Closed, FailMode::Open] {
        let p = policy(|p| {
            p.fail_mode = mode;
            p.push_timeout = PUSH_TIMEOUT;
        });
        // carl: a desktop app only (NOK:NoMA); nora: an app not registered for push (NOK:NoPush).
        for login in ["carl", "nora"] {
            let t = Instant::now();
            let o = env.auth(login, Some("push"), None, &p).await;
            let r = reject_of(&o);
            assert_eq!(
                r.reason,
                RejectReason::NoCredential,
                "{login}: {}",
                r.message
            );
            assert!(
                r.message.contains("Type a security code"),
                "{login}: {}",
                r.message
            );
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        }
    }
    // The upper-case spellings some tenants answer mean the same.
    env.sim.set_global_faults(TbFaults {
        upper_case: true,
        ..TbFaults::default()
    });
    for login in ["carl", "nora"] {
        expect_reject(
            &env.auth(login, Some("push"), None, &code_policy()).await,
            RejectReason::NoCredential,
        );
    }
    assert_eq!(env.calls("pushAuthenticate"), 6);
    assert_eq!(env.calls("checkPushResult"), 0, "nothing to poll");
    assert_eq!(env.fail_opens(), 0);
    // The code they were offered works.
    let o = env
        .auth("nora", Some(&env.code("nora")), None, &code_policy())
        .await;
    assert_eq!(expect_accept(&o).factor, Factor::Code);
}

#[tokio::test]
async fn the_menu_offers_push_only_to_users_who_can_take_one() {
    let env = start().await;
    let p = menu_policy();
    // alice has a push-capable app: push is offered, and Enter sends it.
    let c = expect_challenge(&env.auth("alice", Some("first"), None, &p).await).clone();
    assert!(c.prompt.contains("push"), "{}", c.prompt);
    assert!(c.prompt.contains("security code"), "{}", c.prompt);
    assert_eq!(
        env.calls("authenticateExtended"),
        0,
        "the first password is not a code"
    );
    let o = env.auth("alice", Some(""), Some(c.state), &p).await;
    assert_eq!(expect_accept(&o).factor, Factor::Push);
    // carl (desktop app) and nora (app without push) make codes only: no push in the menu.
    for login in ["carl", "nora"] {
        let c = expect_challenge(&env.auth(login, None, None, &p).await).clone();
        assert_eq!(c.prompt, "Enter your security code:", "{login}");
        assert!(!c.prompt.to_lowercase().contains("push"), "{login}");
        let o = env
            .auth(login, Some(&env.code(login)), Some(c.state), &p)
            .await;
        assert_eq!(expect_accept(&o).factor, Factor::Code, "{login}");
    }
    // tess has no tool, lee only a locked one: refused plainly, nothing offered.
    for login in ["tess", "lee"] {
        let o = env.auth(login, None, None, &p).await;
        let r = reject_of(&o);
        assert_eq!(
            r.reason,
            RejectReason::NoCredential,
            "{login}: {}",
            r.message
        );
        assert!(r.message.contains("No device"), "{login}: {}", r.message);
    }
    // A blocked login (status 1) is told its account is locked.
    expect_reject(
        &env.auth("blocked", None, None, &p).await,
        RejectReason::UserLocked,
    );
    assert_eq!(env.calls("pushAuthenticate"), 1);
    assert_eq!(env.fail_opens(), 0);
}

#[tokio::test]
async fn a_user_without_an_active_tool_is_refused_clearly() {
    let env = start().await;
    let p = push_policy(PushMode::Blocking);
    for login in ["tess", "lee"] {
        // A code: no device of theirs makes it.
        expect_reject(
            &env.auth(login, Some(&code_at(0)), None, &p).await,
            RejectReason::BadCode,
        );
        // A push: no app to send it to.
        let o = env.auth(login, Some("push"), None, &p).await;
        let r = reject_of(&o);
        assert_eq!(
            r.reason,
            RejectReason::NoCredential,
            "{login}: {}",
            r.message
        );
    }
    assert_eq!(env.calls("checkPushResult"), 0);
}

#[tokio::test]
async fn an_unknown_user_is_rejected() {
    let env = start().await;
    let p = code_policy();
    let bad = wrong_code();
    // A code: refused in the same words as a wrong code (the reason tells the log).
    let (unknown, wrong) = (
        env.auth("nobody", Some(&bad), None, &p).await,
        env.auth("alice", Some(&bad), None, &p).await,
    );
    let (u, w) = (reject_of(&unknown), reject_of(&wrong));
    assert_eq!(u.reason, RejectReason::UnknownUser);
    assert_eq!(w.reason, RejectReason::BadCode);
    assert_eq!(u.message, w.message, "the same words for both");
    // Sites that prefer helpful messages get them.
    let helpful = policy(|p| p.helpful_messages = true);
    let o = env.auth("nobody", Some(&bad), None, &helpful).await;
    assert!(reject_of(&o).message.contains("not set up"), "{o:?}");
    // A push: TrustBuilder answers NOK:NOLOGIN, a refusal (no credential), never a push.
    let o = env
        .auth(
            "nobody",
            Some("push"),
            None,
            &push_policy(PushMode::Blocking),
        )
        .await;
    expect_reject(&o, RejectReason::NoCredential);
    // The menu: a Challenge like anyone's (no secret was checked yet), and the code typed
    // into it fails like a wrong code.
    let menu = menu_policy();
    let c = expect_challenge(&env.auth("nobody", None, None, &menu).await).clone();
    let o = env.auth("nobody", Some(&bad), Some(c.state), &menu).await;
    let r = reject_of(&o);
    assert_eq!(r.reason, RejectReason::UnknownUser);
    assert_eq!(r.message, w.message);
    assert_eq!(env.calls("checkPushResult"), 0);
    assert_eq!(env.fail_opens(), 0);
}

#[tokio::test]
async fn the_menu_is_no_account_oracle() {
    // The engine's rule (engine/mod.rs, `menu`): "An unknown user gets the menu anyone would
    // ... the menu is no account oracle." With VIP the made-up menu matches a real user's; with
    // TrustBuilder it must match what a real TrustBuilder login is shown.
    let env = start().await;
    let menu = menu_policy();
    let known = expect_challenge(&env.auth("alice", None, None, &menu).await).clone();
    let stranger = expect_challenge(&env.auth("nobody", None, None, &menu).await).clone();
    assert_eq!(known.prompt, stranger.prompt);
    // Typing sms: the same answer for a real login and a stranger.
    let p = code_policy();
    let real = env.auth("alice", Some("sms"), None, &p).await;
    let fake = env.auth("nobody", Some("sms"), None, &p).await;
    assert_eq!(
        std::mem::discriminant(&real),
        std::mem::discriminant(&fake),
        "{real:?} / {fake:?}"
    );
}

// ---- fail modes ---------------------------------------------------------------------------------

#[tokio::test]
async fn misconfiguration_never_fails_open() {
    let env = start_with(roomy(), Vec::new()).await;
    let open = fail_policy(FailMode::Open);
    let push_open = policy(|p| {
        p.fail_mode = FailMode::Open;
        p.push_timeout = PUSH_TIMEOUT;
    });
    // A client certificate the service does not trust (another PKI), and a CA that does not
    // trust the service's certificate.
    let other = vip_sim::certs::generate(&env.dir.path().join("other-pki")).unwrap();
    let engines: Vec<(&str, Arc<Engine>)> = vec![
        // A wrong serviceId: NOK:srv unknown, or NOK:access forbidden where the service says so.
        (
            "wrong serviceId",
            env.engine_with(|tb| tb.service_id = SERVICE + 1),
        ),
        (
            "untrusted client certificate",
            env.engine_with(|tb| {
                tb.pkcs12_file = Some(other.client_p12.clone());
                tb.pkcs12_password_file = Some(other.p12_password_file.clone());
            }),
        ),
        (
            "wrong CA",
            env.engine_with(|tb| tb.ca_file = Some(other.ca_cert.clone())),
        ),
    ];
    for access_forbidden in [false, true] {
        env.sim.set_global_faults(TbFaults {
            access_forbidden,
            ..TbFaults::default()
        });
        for (what, engine) in &engines {
            for (typed, p) in [(env.code("alice"), &open), ("push".to_owned(), &push_open)] {
                let o = auth_with(engine, request("alice", Some(&typed), None, p)).await;
                match &o {
                    Outcome::Reject(r) => {
                        assert_eq!(r.reason, RejectReason::Misconfigured, "{what}: {r:?}")
                    }
                    other => panic!("{what} ({typed:?}): {other:?}"),
                }
            }
            assert_eq!(
                engine.stats().fail_opens.load(Ordering::Relaxed),
                0,
                "{what}"
            );
        }
    }
    // A syntax error in our parameters (NOK:SN), forced for every call of the service.
    env.sim.set_global_faults(TbFaults {
        err: BTreeMap::from([
            ("authenticateExtended".to_owned(), "NOK:SN".to_owned()),
            ("pushAuthenticate".to_owned(), "NOK:SN".to_owned()),
            ("checkPushResult".to_owned(), "NOK:SN".to_owned()),
        ]),
        ..TbFaults::default()
    });
    expect_misconfigured(
        &env.auth("alice", Some(&env.code("alice")), None, &open)
            .await,
    );
    expect_misconfigured(&env.auth("alice", Some("push"), None, &push_open).await);
    // Under fail_mode = "closed": the same refusals.
    let closed = fail_policy(FailMode::Closed);
    expect_misconfigured(
        &env.auth("alice", Some(&env.code("alice")), None, &closed)
            .await,
    );
    assert_eq!(env.fail_opens(), 0);
}

#[tokio::test]
async fn only_a_confirmed_outage_fails_open() {
    let env = start_with(roomy(), Vec::new()).await;
    let f = |edit: fn(&mut TbFaults)| {
        let mut f = TbFaults::default();
        edit(&mut f);
        f
    };
    // 5xx and a dropped connection: TrustBuilder is down. 4xx: something is wrong with us.
    let outage = [
        f(|f| f.http_status = Some(503)),
        f(|f| f.http_status = Some(502)),
        f(|f| f.http_status = Some(500)),
        f(|f| f.connection_drop = true),
    ];
    let refused = [
        f(|f| f.http_status = Some(404)),
        f(|f| f.http_status = Some(403)),
        f(|f| f.http_status = Some(400)),
    ];
    let open = fail_policy(FailMode::Open);
    let closed = fail_policy(FailMode::Closed);
    for (faults, opens) in outage
        .iter()
        .map(|f| (f, true))
        .chain(refused.iter().map(|f| (f, false)))
    {
        env.sim.set_global_faults(faults.clone());
        let want = if opens {
            RejectReason::Unavailable
        } else {
            RejectReason::Misconfigured
        };
        let o = env.auth("alice", Some(&code_at(0)), None, &closed).await;
        assert_eq!(reject_of(&o).reason, want, "{faults:?}");
        for typed in [code_at(0), "push".to_owned()] {
            let o = env.auth("alice", Some(&typed), None, &open).await;
            match (&o, opens) {
                (Outcome::Accept(a), true) => {
                    assert!(
                        a.failed_open && a.factor == Factor::None,
                        "{faults:?}: {a:?}"
                    )
                }
                (Outcome::Reject(r), false) => assert_eq!(r.reason, want, "{faults:?}"),
                other => panic!("{faults:?} ({typed:?}): {other:?}"),
            }
        }
    }
    assert_eq!(env.fail_opens(), 2 * outage.len() as u64);
    // Back up: a login is a login again.
    env.sim.set_global_faults(TbFaults::default());
    let a = expect_accept(
        &env.auth("alice", Some(&env.code("alice")), None, &open)
            .await,
    )
    .clone();
    assert!(!a.failed_open && a.factor == Factor::Code, "{a:?}");
}

#[tokio::test]
async fn an_outage_for_one_user_on_a_healthy_service_never_opens() {
    // 503 for alice's calls only: the health check (checkPushResult of a session nobody has)
    // gets its answer, so even a fail-open policy fails closed.
    let env = start_with(roomy(), Vec::new()).await;
    let open = fail_policy(FailMode::Open);
    env.sim.set_user_faults(
        "alice",
        TbFaults {
            http_status: Some(503),
            ..TbFaults::default()
        },
    );
    let probes_before = env.calls("checkPushResult");
    expect_reject(
        &env.auth("alice", Some(&code_at(0)), None, &open).await,
        RejectReason::Unavailable,
    );
    assert!(
        env.calls("checkPushResult") > probes_before,
        "the health check was asked"
    );
    expect_reject(
        &env.auth("alice", Some("push"), None, &open).await,
        RejectReason::Unavailable,
    );
    // A per-user timeout (slower than trustbuilder.timeout) on a healthy service: no either.
    env.sim.set_user_faults(
        "alice",
        TbFaults {
            latency_ms: 3500,
            ..TbFaults::default()
        },
    );
    expect_reject(
        &env.auth("alice", Some(&code_at(0)), None, &open).await,
        RejectReason::Unavailable,
    );
    assert_eq!(env.fail_opens(), 0);
}

#[tokio::test]
async fn fail_open_when_trustbuilder_is_down_but_never_for_an_answered_no() {
    let env = start().await;
    let open = fail_policy(FailMode::Open);
    // TrustBuilder answering "wrong code" is never a reason to fail open.
    expect_reject(
        &env.auth("alice", Some(&wrong_code()), None, &open).await,
        RejectReason::BadCode,
    );
    let TbEnv { sim, engine, .. } = env;
    sim.shutdown().await;
    let o = auth_with(&engine, request("alice", Some(&code_at(0)), None, &open)).await;
    let a = expect_accept(&o);
    assert!(a.failed_open && a.factor == Factor::None, "{a:?}");
    let o = auth_with(&engine, request("alice", Some("push"), None, &open)).await;
    assert!(expect_accept(&o).failed_open);
    let closed = fail_policy(FailMode::Closed);
    let o = auth_with(&engine, request("alice", Some(&code_at(0)), None, &closed)).await;
    expect_reject(&o, RejectReason::Unavailable);
    assert_eq!(engine.stats().fail_opens.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_push_already_sent_never_fails_open() {
    // The policy fails open, but once the push went out the login is in the middle of a second
    // factor: TrustBuilder failing before round two rejects.
    let env = start().await;
    let open = policy(|p| {
        p.fail_mode = FailMode::Open;
        p.push_mode = PushMode::Challenge;
        p.push_timeout = PUSH_TIMEOUT;
    });
    let c = expect_challenge(&env.auth("ivan", Some("push"), None, &open).await).clone();
    env.sim.set_global_faults(TbFaults {
        http_status: Some(503),
        ..TbFaults::default()
    });
    expect_reject(
        &env.auth("ivan", None, Some(c.state), &open).await,
        RejectReason::Unavailable,
    );
    assert_eq!(env.fail_opens(), 0);
}

// ---- throttles ----------------------------------------------------------------------------------

#[tokio::test]
async fn bad_codes_are_throttled_per_user_without_calls_beyond_the_limit() {
    let env = start_with(
        EngineConfig {
            throttle: ThrottleConfig {
                codes_per_user: RateLimit {
                    count: 3,
                    per: Duration::from_secs(60),
                },
                ..ThrottleConfig::default()
            },
            ..fast()
        },
        Vec::new(),
    )
    .await;
    let p = code_policy();
    let bad = wrong_code();
    for _ in 0..3 {
        expect_reject(
            &env.auth("bob", Some(&bad), None, &p).await,
            RejectReason::BadCode,
        );
    }
    // Over the limit: refused here, even the right code, even spelled differently.
    for name in ["bob", "BOB", " Bob "] {
        expect_reject(
            &env.auth(name, Some(&env.code("bob")), None, &p).await,
            RejectReason::Throttled,
        );
    }
    assert_eq!(
        env.calls("authenticateExtended"),
        3,
        "throttled attempts never reach TrustBuilder"
    );
    // Another user is not affected.
    expect_accept(&env.auth("alice", Some(&env.code("alice")), None, &p).await);
    assert_eq!(env.calls("authenticateExtended"), 4);
}

// ---- every status of the reference's table --------------------------------------------------

/// What a forced status must end in.
#[derive(Debug, Clone, Copy)]
enum Want {
    Accept(Factor),
    Reject(RejectReason),
    /// A refusal, one of these reasons: never a pass, never an outage.
    OneOf(&'static [RejectReason]),
}

struct Row {
    action: &'static str,
    err: &'static str,
    /// `err_times`: 0 = every call.
    times: u32,
    want: Want,
}

const fn row(action: &'static str, err: &'static str, want: Want) -> Row {
    Row {
        action,
        err,
        times: 0,
        want,
    }
}

const CODE: &str = "authenticateExtended";
const PUSH: &str = "pushAuthenticate";
const POLL: &str = "checkPushResult";

/// Every `err` of the reference's table (and its spellings) on the call it comes from, forced
/// through `TbFaults`, with the outcome the table requires. All under `fail_mode = "open"`: no
/// status is an outage.
fn table() -> Vec<Row> {
    use RejectReason as R;
    const LOCKED: &[RejectReason] = &[R::UserLocked];
    vec![
        // authenticateExtended
        row(CODE, "OK", Want::Accept(Factor::Code)),
        row(CODE, "NOK:no device found", Want::Reject(R::BadCode)),
        row(CODE, "NOK:NO DEVICE FOUND", Want::Reject(R::BadCode)),
        row(CODE, "NOK:account unknown", Want::Reject(R::UnknownUser)),
        row(CODE, "NOK:account unknown ", Want::Reject(R::UnknownUser)),
        row(CODE, "NOK:SN", Want::Reject(R::Misconfigured)),
        row(CODE, "NOK:srv unknown", Want::Reject(R::Misconfigured)),
        row(CODE, "NOK:access forbidden", Want::Reject(R::Misconfigured)),
        row(CODE, "NOK:account locked", Want::OneOf(LOCKED)),
        // A push status on a code check: never a pass.
        row(CODE, "NOK:WAITING", Want::Reject(R::Misconfigured)),
        row(CODE, "NOK", Want::Reject(R::Misconfigured)),
        // pushAuthenticate
        row(PUSH, "NOK:NOLOGIN", Want::Reject(R::NoCredential)),
        row(PUSH, "NOK:NoPush", Want::Reject(R::NoCredential)),
        row(PUSH, "NOK:NOPUSH", Want::Reject(R::NoCredential)),
        row(PUSH, "NOK:NoMA", Want::Reject(R::NoCredential)),
        row(PUSH, "NOK:NOMA", Want::Reject(R::NoCredential)),
        row(PUSH, "NOK:account unknown", Want::Reject(R::UnknownUser)),
        row(PUSH, "NOK:SN", Want::Reject(R::Misconfigured)),
        row(PUSH, "NOK:srv unknown", Want::Reject(R::Misconfigured)),
        row(PUSH, "NOK:access forbidden", Want::Reject(R::Misconfigured)),
        row(PUSH, "NOK:account locked", Want::OneOf(LOCKED)),
        // OK without a sessionId is no push at all.
        row(PUSH, "OK", Want::Reject(R::Misconfigured)),
        // checkPushResult
        row(POLL, "OK", Want::Accept(Factor::Push)),
        Row {
            times: 3,
            ..row(POLL, "NOK:WAITING", Want::Accept(Factor::Push))
        },
        row(POLL, "NOK:REFUSED", Want::Reject(R::PushDenied)),
        row(POLL, "nok:refused", Want::Reject(R::PushDenied)),
        row(POLL, "NOK:TIMEOUT", Want::Reject(R::PushTimeout)),
        row(POLL, "NOK", Want::Reject(R::PushDenied)),
        // Answered to a poll, our mistakes end the push at once as misconfigured, and a
        // refusal about the user ends it as failed: never a wait until push_timeout.
        row(POLL, "NOK:SN", Want::Reject(R::Misconfigured)),
        row(POLL, "NOK:srv unknown", Want::Reject(R::Misconfigured)),
        row(POLL, "NOK:access forbidden", Want::Reject(R::Misconfigured)),
        row(POLL, "NOK:account locked", Want::Reject(R::PushDenied)),
    ]
}

#[tokio::test]
async fn every_status_of_the_reference_table_has_its_outcome() {
    let rows = table();
    // One login per row (t0, t1, ...), its own faults: rows run at once and the health probe
    // (another login) is never affected.
    let logins: Vec<TbUserConfig> = (0..rows.len())
        .map(|i| {
            let login = format!("t{i}");
            let alias = format!("{login}-ma");
            user(&login, vec![app(100 + i as u64, &alias, "approve", 300)])
        })
        .collect();
    let env = Arc::new(start_with(roomy(), logins).await);
    let open_code = fail_policy(FailMode::Open);
    let open_push = policy(|p| {
        p.fail_mode = FailMode::Open;
        p.push_timeout = PUSH_TIMEOUT;
    });
    let mut tasks = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let login = format!("t{i}");
        assert!(env
            .sim
            .set_user_faults(&login, forced(r.action, r.err, r.times)));
        let (typed, p) = if r.action == CODE {
            (env.code(&login), open_code.clone())
        } else {
            ("push".to_owned(), open_push.clone())
        };
        let engine = env.engine.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let o = auth_with(&engine, request(&login, Some(&typed), None, &p)).await;
            (o, t.elapsed())
        }));
    }
    let mut failures = Vec::new();
    for (r, task) in rows.iter().zip(tasks) {
        let (o, took) = task.await.unwrap();
        let what = format!("{} answering {:?}", r.action, r.err);
        let ok = match (&o, r.want) {
            (Outcome::Accept(a), Want::Accept(factor)) => a.factor == factor && !a.failed_open,
            (Outcome::Reject(rej), Want::Reject(reason)) => rej.reason == reason,
            (Outcome::Reject(rej), Want::OneOf(reasons)) => reasons.contains(&rej.reason),
            _ => false,
        };
        if !ok {
            failures.push(format!("{what}: want {:?}, got {o:?}", r.want));
            continue;
        }
        if let Outcome::Reject(rej) = &o {
            // NoPush / NoMA: "reject, offer a code".
            if r.action == PUSH && r.err.to_ascii_lowercase().starts_with("nok:no") {
                let offers = rej.message.contains("security code");
                if r.err != "NOK:NOLOGIN" && !offers {
                    failures.push(format!("{what}: no code offered: {}", rej.message));
                }
            }
            // The service's own TIMEOUT ends the push at once, not at our deadline.
            if r.err == "NOK:TIMEOUT" && took >= Duration::from_secs(2) {
                failures.push(format!("{what}: answered after {took:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(env.fail_opens(), 0, "no status is an outage");
    // Every push row sent a push, every code row a code, every poll row a poll.
    let (codes, pushes) = rows.iter().fold((0, 0), |(c, p), r| {
        if r.action == CODE {
            (c + 1, p)
        } else {
            (c, p + 1)
        }
    });
    assert_eq!(env.calls(CODE), codes);
    assert_eq!(env.calls(PUSH), pushes);
}

#[tokio::test]
async fn a_misconfiguration_answered_to_a_poll_is_refused_as_such_at_once() {
    let env = start().await;
    let p = push_policy(PushMode::Blocking);
    for (login, err) in [
        ("alice", "NOK:SN"),
        ("bob", "NOK:srv unknown"),
        ("dave", "NOK:access forbidden"),
    ] {
        env.sim.set_user_faults(login, forced(POLL, err, 0));
        let t = Instant::now();
        let o = env.auth(login, Some("push"), None, &p).await;
        expect_misconfigured(&o);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{err}: answered after {:?}",
            t.elapsed()
        );
    }
}

/// A writer the test reads back.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_status_without_a_meaning_of_its_own_is_refused_with_its_cause_in_the_log() {
    // "any other NOK:* (e.g. a locked account): reject, with the cause in the log". A blocked
    // login's code is answered NOK:account locked.
    use tracing::instrument::WithSubscriber;
    let env = start_with(roomy(), Vec::new()).await;
    let open = fail_policy(FailMode::Open);
    // Tracing caches each call site's interest process-wide: a call site another test hits
    // first while this test's subscriber is being registered can stay disabled. A fresh
    // subscriber rebuilds that cache, so a round whose line went missing is tried again.
    let mut found = None;
    for _ in 0..5 {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        let o = env
            .auth("blocked", Some(&env.code("blocked")), None, &open)
            .with_subscriber(subscriber)
            .await;
        let r = reject_of(&o);
        assert_eq!(r.reason, RejectReason::UserLocked, "{r:?}");
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        if let Some(line) = log.lines().find(|l| l.contains("login round finished")) {
            found = Some(line.to_owned());
            break;
        }
    }
    let line = found.expect("a `login round finished` line");
    assert!(line.contains("NOK:account locked"), "{line}");
    assert_eq!(env.fail_opens(), 0);
}
