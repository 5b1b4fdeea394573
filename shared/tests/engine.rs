//! The engine against the real simulator, over mutual TLS: every path from what the user typed
//! to Accept, Reject or Challenge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use vip_core::engine::{
    Authenticate, EmptyPassword, EngineConfig, Factor, FailMode, OtpOperation, Outcome,
    PasswordMode, PushMode, RejectReason,
};
use vip_core::throttle::{RateLimit, ThrottleConfig};

fn code_policy() -> Arc<vip_core::engine::LoginPolicy> {
    policy(|_| {})
}

// ---- security codes -------------------------------------------------------------------------

#[tokio::test]
async fn a_current_code_is_accepted_with_credential_and_authn_id() {
    let env = env().await;
    let o = env
        .auth("alice", Some(&code(ALICE_SECRET, 0)), None, &code_policy())
        .await;
    let a = expect_accept(&o);
    assert_eq!(a.factor, Factor::Code);
    assert_eq!(a.credential_id.as_deref(), Some("VSMT10000001"));
    assert!(
        a.authn_id.as_deref().is_some_and(|id| id.len() == 16),
        "{a:?}"
    );
    assert!(!a.failed_open);
    // Logins use authenticateUser (locks, temporary codes, levels), never the bare checkOtp.
    assert_eq!(
        (env.calls("authenticateUser"), env.calls("checkOtp")),
        (1, 0)
    );
}

#[tokio::test]
async fn check_otp_operation_is_used_only_when_configured() {
    let env = env().await;
    let p = policy(|p| p.otp_operation = OtpOperation::CheckOtp);
    let o = env
        .auth("Alice", Some(&code(ALICE_SECRET, 0)), None, &p)
        .await;
    expect_accept(&o);
    assert_eq!(
        (env.calls("authenticateUser"), env.calls("checkOtp")),
        (0, 1)
    );
    assert!(
        p.warnings().iter().any(|w| w.contains("locked")),
        "{:?}",
        p.warnings()
    );
    assert!(vip_core::engine::LoginPolicy::default()
        .warnings()
        .is_empty());
}

#[tokio::test]
async fn vip_locks_are_honoured_and_temporary_codes_log_in() {
    // VIP's own lockout after repeated bad codes, an administrator's lock on the credential
    // and on the user: authenticateUser refuses a right code; checkOtp would not.
    let env = env_with(
        r#"
[[users]]
id = "tempy"
temporary_code = "73914286"
[[users.credentials]]
id = "VSMT20000001"
totp_secret = "JBSWY3DPEHPK3PXP"

[[users]]
id = "adminlocked"
[[users.credentials]]
id = "VSMT20000002"
totp_secret = "JBSWY3DPEHPK3PXP"
status = "LOCKED"
"#,
        fast_engine_config(),
    )
    .await;
    let p = code_policy();
    let c = code(ALICE_SECRET, 0);
    expect_reject(
        &env.auth("adminlocked", Some(&c), None, &p).await,
        RejectReason::CredentialLocked,
    );
    expect_reject(
        &env.auth("locked", Some(&c), None, &p).await,
        RejectReason::UserLocked,
    );
    let bare = policy(|p| p.otp_operation = OtpOperation::CheckOtp);
    expect_accept(&env.auth("adminlocked", Some(&c), None, &bare).await);
    // A help-desk temporary security code logs in; the bare check does not know it.
    let o = env.auth("tempy", Some("73914286"), None, &p).await;
    expect_accept(&o);
    expect_reject(
        &env.auth("tempy", Some("73914286"), None, &bare).await,
        RejectReason::BadCode,
    );
}

#[tokio::test]
async fn vip_lockout_after_bad_codes_holds_through_the_bridge() {
    let env = env_with("[policy]\nlockout_after = 3\n", fast_engine_config()).await;
    let p = code_policy();
    let good = code(BOB_SECRET, 0);
    let bad = if good == "000000" { "111111" } else { "000000" };
    for _ in 0..3 {
        expect_reject(
            &env.auth("bob", Some(bad), None, &p).await,
            RejectReason::BadCode,
        );
    }
    expect_reject(
        &env.auth("bob", Some(&good), None, &p).await,
        RejectReason::CredentialLocked,
    );
}

#[tokio::test]
async fn auth_level_reaches_vip_on_every_code_check() {
    let env = env().await;
    let p = policy(|p| p.auth_level = Some(3));
    expect_accept(
        &env.auth("alice", Some(&code(ALICE_SECRET, 0)), None, &p)
            .await,
    );
    assert_eq!(env.sim.counters().auth_level("authenticateUser", 3), 1);
    // The code of an SMS goes through checkOtp, which carries the level too.
    let c = expect_challenge(&env.auth("alice", Some("sms"), None, &p).await).clone();
    let sent = env.sim.last_sent_code("alice").unwrap();
    expect_accept(&env.auth("alice", Some(&sent), Some(c.state), &p).await);
    assert_eq!(env.sim.counters().auth_level("checkOtp", 3), 1);
}

#[tokio::test]
async fn an_expired_pin_is_refused_with_a_message_that_says_so() {
    let env = env_with(
        r#"
[[users]]
id = "oldpin"
pin = "8642"
pin_expired = true
[[users.credentials]]
id = "VSMT20000003"
totp_secret = "JBSWY3DPEHPK3PXP"
"#,
        fast_engine_config(),
    )
    .await;
    let p = policy(|p| p.mode = PasswordMode::PinOtp);
    let o = env
        .auth(
            "oldpin",
            Some(&format!("8642{}", code(ALICE_SECRET, 0))),
            None,
            &p,
        )
        .await;
    match &o {
        Outcome::Reject(r) => {
            assert_eq!(r.reason, RejectReason::PinExpired);
            assert!(r.message.contains("PIN has expired"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_wrong_code_is_rejected() {
    let env = env().await;
    let good = code(ALICE_SECRET, 0);
    let bad = if good == "000000" { "111111" } else { "000000" };
    let o = env.auth("alice", Some(bad), None, &code_policy()).await;
    expect_reject(&o, RejectReason::BadCode);
}

#[tokio::test]
async fn malformed_codes_and_empty_passwords_never_reach_vip() {
    let env = env().await;
    let p = code_policy();
    for typed in [
        "12345",
        "abc!def",
        "\u{8}\n\r\u{7f}INCORRECT",
        "12345678901",
    ] {
        expect_reject(
            &env.auth("alice", Some(typed), None, &p).await,
            RejectReason::BadInput,
        );
    }
    expect_reject(
        &env.auth("alice", Some(""), None, &p).await,
        RejectReason::BadInput,
    );
    expect_reject(
        &env.auth("alice", None, None, &p).await,
        RejectReason::BadInput,
    );
    expect_reject(
        &env.auth("bad\nuser", Some("123456"), None, &p).await,
        RejectReason::BadInput,
    );
    assert_eq!(
        env.sim.counters().calls.values().sum::<u64>(),
        0,
        "no VIP call"
    );
}

#[tokio::test]
async fn locked_unknown_and_disabled_credential() {
    let env = env().await;
    let p = code_policy();
    let c = code(ALICE_SECRET, 0);
    expect_reject(
        &env.auth("locked", Some(&c), None, &p).await,
        RejectReason::UserLocked,
    );
    expect_reject(
        &env.auth("nobody", Some(&c), None, &p).await,
        RejectReason::UnknownUser,
    );
    expect_reject(
        &env.auth("tokenoff", Some(&c), None, &p).await,
        RejectReason::CredentialLocked,
    );
}

#[tokio::test]
async fn pin_followed_by_code() {
    let env = env().await;
    let p = policy(|p| p.mode = PasswordMode::PinOtp);
    let o = env
        .auth(
            "pinny",
            Some(&format!("4321{}", code(ALICE_SECRET, 0))),
            None,
            &p,
        )
        .await;
    assert_eq!(expect_accept(&o).factor, Factor::PinCode);
    assert_eq!(
        env.calls("authenticateUser"),
        1,
        "a PIN needs authenticateUser"
    );
    let o = env
        .auth(
            "pinny",
            Some(&format!("9999{}", code(ALICE_SECRET, 1))),
            None,
            &p,
        )
        .await;
    expect_reject(&o, RejectReason::BadCode);
    expect_reject(
        &env.auth("pinny", Some("123456"), None, &p).await,
        RejectReason::BadInput,
    );
    // A user with a PIN who types only a code (code mode) is refused by VIP.
    expect_reject(
        &env.auth("pinny", Some(&code(ALICE_SECRET, 2)), None, &code_policy())
            .await,
        RejectReason::BadCode,
    );
}

#[tokio::test]
async fn out_of_sync_token_is_asked_for_the_next_code() {
    let env = env().await;
    let p = code_policy();
    let o = env
        .auth("drifty", Some(&code(ALICE_SECRET, 6)), None, &p)
        .await;
    let c = expect_challenge(&o);
    assert!(c.prompt.contains("next security code"), "{}", c.prompt);
    assert!(!c.echo);
    let o = env
        .auth(
            "drifty",
            Some(&code(ALICE_SECRET, 7)),
            Some(c.state.clone()),
            &p,
        )
        .await;
    assert_eq!(expect_accept(&o).factor, Factor::Code);
    assert_eq!(env.calls("authenticateUser"), 2);
}

// ---- no account oracle ----------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_user_looks_like_a_wrong_code_and_no_digits_are_shown() {
    let env = env().await;
    let good = code(ALICE_SECRET, 0);
    let bad = if good == "000000" { "111111" } else { "000000" };
    let p = code_policy();
    let (unknown, wrong) = (
        env.auth("nobody", Some(bad), None, &p).await,
        env.auth("alice", Some(bad), None, &p).await,
    );
    match (&unknown, &wrong) {
        (Outcome::Reject(u), Outcome::Reject(w)) => {
            assert_eq!(u.message, w.message, "the same words for both");
            // The log and metrics still tell the admin which it was.
            assert_eq!(u.reason, RejectReason::UnknownUser);
            assert_eq!(w.reason, RejectReason::BadCode);
        }
        other => panic!("{other:?}"),
    }
    // The menu: the same for an unknown user as for anyone, and no phone digits before any
    // secret was checked.
    let menu = policy(|p| p.mode = PasswordMode::Challenge);
    let known = expect_challenge(&env.auth("alice", Some("x"), None, &menu).await).clone();
    let stranger = expect_challenge(&env.auth("nobody", Some("x"), None, &menu).await).clone();
    assert_eq!(known.prompt, stranger.prompt);
    assert!(!known.prompt.contains("4567"), "{}", known.prompt);
    // Choosing sms: "sent" either way, and the stranger's answer fails like a wrong code.
    let sent = expect_challenge(&env.auth("alice", Some("sms"), None, &p).await).clone();
    assert!(!sent.prompt.contains("4567"), "{}", sent.prompt);
    let fake = expect_challenge(&env.auth("nobody", Some("sms"), None, &p).await).clone();
    assert_eq!(sent.prompt, fake.prompt);
    let o = env
        .auth("nobody", Some("123456"), Some(fake.state), &p)
        .await;
    match &o {
        Outcome::Reject(r) => assert_eq!(r.message, w_message(&wrong)),
        other => panic!("{other:?}"),
    }
    assert_eq!(env.calls("sendOtp"), 1, "nothing was sent for the stranger");
    // Sites that prefer helpful messages get them.
    let helpful = policy(|p| p.helpful_messages = true);
    match &env.auth("nobody", Some(bad), None, &helpful).await {
        Outcome::Reject(r) => assert!(r.message.contains("not set up"), "{}", r.message),
        other => panic!("{other:?}"),
    }
}

fn w_message(o: &Outcome) -> String {
    match o {
        Outcome::Reject(r) => r.message.clone(),
        other => panic!("{other:?}"),
    }
}

// ---- SMS and voice --------------------------------------------------------------------------

async fn sent_code_round(voice: bool) {
    let env = env().await;
    // Sites that want helpful messages show the last digits of the number.
    let p = policy(|p| p.helpful_messages = true);
    let keyword = if voice { "VOICE" } else { "sms" };
    let o = env.auth("alice", Some(keyword), None, &p).await;
    let c = expect_challenge(&o);
    let shown = if voice { "*******4321" } else { "*******4567" };
    assert!(c.prompt.contains(shown), "masked number in {:?}", c.prompt);
    assert!(!c.prompt.contains("1555"), "the full number is never shown");
    assert_eq!(env.calls("sendOtp"), 1);
    let sent = env.sim.last_sent_code("alice").expect("a code was sent");
    let o = env
        .auth("alice", Some(&sent), Some(c.state.clone()), &p)
        .await;
    let a = expect_accept(&o);
    assert_eq!(a.factor, if voice { Factor::Voice } else { Factor::Sms });
    // The delivered code is what checkOtp is for.
    assert_eq!(
        (env.calls("checkOtp"), env.calls("authenticateUser")),
        (1, 0)
    );
}

#[tokio::test]
async fn sms_round() {
    sent_code_round(false).await;
}

#[tokio::test]
async fn voice_round() {
    sent_code_round(true).await;
}

#[tokio::test]
async fn sms_without_a_number_is_refused_without_sending() {
    let env = env().await;
    let o = env.auth("nophone", Some("sms"), None, &code_policy()).await;
    expect_reject(&o, RejectReason::NoCredential);
    assert_eq!(env.calls("sendOtp"), 0);
}

// ---- push, blocking --------------------------------------------------------------------------

fn push_policy(mode: PushMode) -> Arc<vip_core::engine::LoginPolicy> {
    policy(|p| {
        p.push_mode = mode;
        p.push_timeout = Duration::from_secs(3);
        p.empty_password = EmptyPassword::Push;
    })
}

#[tokio::test]
async fn blocking_push_approved_denied_and_never_answered() {
    let env = env().await;
    let p = push_policy(PushMode::Blocking);
    let o = env.auth("alice", Some("push"), None, &p).await;
    assert_eq!(expect_accept(&o).factor, Factor::Push);
    expect_reject(
        &env.auth("bob", None, None, &p).await,
        RejectReason::PushDenied,
    );
    let t = Instant::now();
    expect_reject(
        &env.auth("carol", Some("push"), None, &p).await,
        RejectReason::PushTimeout,
    );
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    assert_eq!(env.calls("authenticateUserWithPush"), 3);
    // Control characters are refused before anything else, never trimmed away.
    expect_reject(
        &env.auth("\tbob", Some("push"), None, &p).await,
        RejectReason::BadInput,
    );
    assert_eq!(env.calls("authenticateUserWithPush"), 3);
}

#[tokio::test]
async fn blocking_push_approved_after_a_delay_polls_until_then() {
    let env = env().await;
    let p = push_policy(PushMode::Blocking);
    let t = Instant::now();
    let o = env.auth("dave", Some("push"), None, &p).await;
    expect_accept(&o);
    assert!(t.elapsed() >= Duration::from_millis(1200));
    let polls = env.calls("pollPushStatus");
    // 100 ms interval over ~1.2 s: more than a few polls, bounded by the interval.
    assert!((5..=20).contains(&polls), "polls = {polls}");
}

#[tokio::test]
async fn requests_of_one_login_session_share_one_push_and_are_bounded() {
    let env = env().await;
    let p = push_policy(PushMode::Blocking);
    let mut tasks = Vec::new();
    // Ten requests of the same NAS session (a NAS retrying with new identifiers): one push;
    // at most four wait on it besides the first, the rest are refused, not queued.
    for _ in 0..10 {
        let engine = env.engine.clone();
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            engine
                .authenticate(request("dave", Some("push"), None, &p))
                .await
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Outcome::Accept(_) => accepted += 1,
            Outcome::Reject(r) => assert_eq!(r.reason, RejectReason::Throttled),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(accepted, 1 + 4);
    assert_eq!(
        env.calls("authenticateUserWithPush"),
        1,
        "coalesced into one push"
    );
    assert_eq!(
        env.engine
            .stats()
            .pushes_joined
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );
}

#[tokio::test]
async fn another_login_never_rides_on_a_users_push() {
    // The attack: while the user's own push is pending, someone with their first factor
    // starts a login too, from another session (another Calling-Station-Id / NAS port, another
    // tty); the user's approval must not let it in. It is its own push, counted by the throttle.
    let env = env().await;
    let p = push_policy(PushMode::Blocking);
    let users_own = auth_with(&env.engine, request("dave", Some("push"), None, &p));
    let attacker = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        auth_with(
            &env.engine,
            in_session(request("dave", Some("push"), None, &p), Some("nas-port-2")),
        )
        .await
    };
    let unknown_session = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        auth_with(
            &env.engine,
            in_session(request("dave", Some("push"), None, &p), None),
        )
        .await
    };
    let (a, b, c) = tokio::join!(users_own, attacker, unknown_session);
    expect_accept(&a);
    // dave's phone approves every push in this simulator, so each login had to get its own.
    expect_accept(&b);
    expect_accept(&c);
    assert_eq!(
        env.calls("authenticateUserWithPush"),
        3,
        "three pushes, none joined"
    );
    // The fourth push is over the per-user push limit (3 per 5 minutes by default).
    let o = env.auth("dave", Some("push"), None, &p).await;
    expect_reject(&o, RejectReason::Throttled);
}

#[tokio::test]
async fn a_padded_or_recased_name_is_the_same_user_for_every_limit() {
    // VIP reads " bob" and "BOB " as bob; so must the throttles.
    let env = env().await;
    let p = push_policy(PushMode::Blocking);
    for (i, name) in ["bob", " bob", "BOB ", "  Bob  "].iter().enumerate() {
        let o = auth_with(
            &env.engine,
            in_session(
                request(name, Some("push"), None, &p),
                Some(&format!("s{i}")),
            ),
        )
        .await;
        if i < 3 {
            expect_reject(&o, RejectReason::PushDenied);
        } else {
            expect_reject(&o, RejectReason::Throttled);
        }
    }
    assert_eq!(env.calls("authenticateUserWithPush"), 3);
}

#[tokio::test]
async fn many_pending_pushes_are_polled_in_batches() {
    let env = env().await;
    let p = push_policy(PushMode::Blocking);
    // 25 different users' pushes pending at once: polls go out 20 ids at a time.
    let mut users = String::new();
    for i in 0..25 {
        users.push_str(&format!(
            "[[users]]\nid = \"batch{i}\"\n[users.push]\ndelay_ms = 800\n[[users.credentials]]\nid = \"VSMT2000{i:04}\"\ntotp_secret = \"{ALICE_SECRET}\"\npush = true\n"
        ));
    }
    drop(env);
    let env = env_with(&users, fast_engine_config()).await;
    let mut tasks = Vec::new();
    for i in 0..25 {
        let engine = env.engine.clone();
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            engine
                .authenticate(request(&format!("batch{i}"), Some("push"), None, &p))
                .await
        }));
    }
    for t in tasks {
        expect_accept(&t.await.unwrap());
    }
    let polls = env.calls("pollPushStatus");
    // ~8 rounds of polling for 25 pushes: without batching this would be ~200 calls.
    assert!(polls <= 40, "polls = {polls}");
}

// ---- push, challenge mode and number challenge ------------------------------------------------

#[tokio::test]
async fn challenge_push_answers_at_once_then_finishes_on_the_next_round() {
    let env = env().await;
    let p = push_policy(PushMode::Challenge);
    let t = Instant::now();
    let o = env.auth("dave", Some("push"), None, &p).await;
    let c = expect_challenge(&o);
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "answered before the phone did"
    );
    assert!(c.prompt.contains("press Enter"), "{}", c.prompt);
    // Pressing Enter too early: still pending, a fresh Challenge.
    let o = env.auth("dave", Some(""), Some(c.state.clone()), &p).await;
    let c2 = match o {
        Outcome::Challenge(c2) => c2,
        Outcome::Accept(_) => return, // the phone was quicker than the round wait: fine
        other => panic!("{other:?}"),
    };
    assert!(c2.prompt.starts_with("Not approved yet"), "{}", c2.prompt);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let o = env.auth("dave", Some(""), Some(c2.state.clone()), &p).await;
    assert_eq!(expect_accept(&o).factor, Factor::Push);
    assert_eq!(env.calls("authenticateUserWithPush"), 1);
}

/// The account requires Number Challenge ("Require Number Challenge" in VIP Manager).
async fn env_number_challenge() -> Env {
    env_with("[policy]\nnumber_challenge = true\n", fast_engine_config()).await
}

#[tokio::test]
async fn number_challenge_is_shown_in_the_prompt() {
    let env = env_number_challenge().await;
    let p = push_policy(PushMode::Challenge);
    let o = env.auth("erin", Some("push"), None, &p).await;
    let c = expect_challenge(&o);
    assert!(c.prompt.contains("42"), "the number is shown: {}", c.prompt);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let o = env.auth("erin", None, Some(c.state.clone()), &p).await;
    expect_accept(&o);
}

#[tokio::test]
async fn number_challenge_answered_wrongly_on_the_phone_is_rejected() {
    let env = env_number_challenge().await;
    let p = push_policy(PushMode::Challenge);
    let o = env.auth("frank", Some("push"), None, &p).await;
    let c = expect_challenge(&o);
    assert!(c.prompt.contains("17"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let o = env.auth("frank", None, Some(c.state.clone()), &p).await;
    expect_reject(&o, RejectReason::NumberChallengeFailed);
}

#[tokio::test]
async fn blocking_push_on_a_number_challenge_account_is_a_misconfiguration() {
    // A blocking push cannot show a number, so it does not offer one; an account that
    // requires number challenge refuses it (7008). That is the admin's to fix, not the user's.
    let nc = env_number_challenge().await;
    let p = push_policy(PushMode::Blocking);
    let t = Instant::now();
    let o = nc.auth("erin", Some("push"), None, &p).await;
    expect_reject(&o, RejectReason::Misconfigured);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // Without the account setting, the same blocking push works.
    let env = env().await;
    expect_accept(&env.auth("erin", Some("push"), None, &p).await);
}

#[tokio::test]
async fn a_push_that_reaches_no_device_is_refused_at_once() {
    let env = env_with(
        r#"
[[users]]
id = "offline"
[users.push]
device_unreachable = true
[[users.credentials]]
id = "VSMT20000004"
totp_secret = "JBSWY3DPEHPK3PXP"
push = true
"#,
        fast_engine_config(),
    )
    .await;
    let t = Instant::now();
    let o = env
        .auth(
            "offline",
            Some("push"),
            None,
            &push_policy(PushMode::Blocking),
        )
        .await;
    match &o {
        Outcome::Reject(r) => {
            assert_eq!(r.reason, RejectReason::NoCredential);
            assert!(r.message.contains("Type a security code"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(env.calls("pollPushStatus"), 0);
}

#[tokio::test]
async fn a_code_may_answer_a_push_challenge() {
    let env = env().await;
    let p = push_policy(PushMode::Challenge);
    let o = env.auth("carol", Some("push"), None, &p).await;
    let c = expect_challenge(&o);
    let o = env
        .auth(
            "carol",
            Some(&code(ALICE_SECRET, 0)),
            Some(c.state.clone()),
            &p,
        )
        .await;
    assert_eq!(expect_accept(&o).factor, Factor::Code);
}

// ---- challenge (menu) mode ------------------------------------------------------------------

#[tokio::test]
async fn menu_lists_the_users_factors_and_continues() {
    let env = env().await;
    let p = policy(|p| {
        p.mode = PasswordMode::Challenge;
        p.push_timeout = Duration::from_secs(3);
        p.helpful_messages = true;
    });
    let o = env
        .auth("alice", Some("ignored-first-password"), None, &p)
        .await;
    let c = expect_challenge(&o);
    for word in ["push", "sms", "voice", "*******4567", "security code"] {
        assert!(c.prompt.contains(word), "{word} in {}", c.prompt);
    }
    assert_eq!(
        env.calls("authenticateUser") + env.calls("checkOtp"),
        0,
        "the first password is not a code"
    );
    // Empty answer = push (blocking by default): alice approves.
    let o = env.auth("alice", Some(""), Some(c.state.clone()), &p).await;
    assert_eq!(expect_accept(&o).factor, Factor::Push);
    // Again, answering with a code this time. The menu is served from the user-info cache.
    let c = expect_challenge(&env.auth("alice", None, None, &p).await).clone();
    let o = env
        .auth("alice", Some(&code(ALICE_SECRET, 1)), Some(c.state), &p)
        .await;
    assert_eq!(expect_accept(&o).factor, Factor::Code);
    assert_eq!(env.calls("getUserInfo"), 1, "getUserInfo cached");
}

#[tokio::test]
async fn menu_for_a_code_only_user_asks_for_the_code() {
    let env = env().await;
    let p = policy(|p| p.mode = PasswordMode::Challenge);
    let c = expect_challenge(&env.auth("nophone", None, None, &p).await).clone();
    assert_eq!(c.prompt, "Enter your security code:");
}

// ---- State --------------------------------------------------------------------------------

#[tokio::test]
async fn forged_replayed_foreign_and_expired_states_are_rejected() {
    let env = env_with(
        "",
        EngineConfig {
            state_ttl: Duration::from_secs(1),
            ..fast_engine_config()
        },
    )
    .await;
    let p = code_policy();
    let c = expect_challenge(&env.auth("alice", Some("sms"), None, &p).await).clone();
    let sent = env.sim.last_sent_code("alice").unwrap();

    let mut forged = c.state.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    expect_reject(
        &env.auth("alice", Some(&sent), Some(forged), &p).await,
        RejectReason::BadState,
    );
    expect_reject(
        &env.auth("bob", Some(&sent), Some(c.state.clone()), &p)
            .await,
        RejectReason::BadState,
    );
    expect_accept(
        &env.auth("alice", Some(&sent), Some(c.state.clone()), &p)
            .await,
    );
    expect_reject(
        &env.auth("alice", Some(&sent), Some(c.state.clone()), &p)
            .await,
        RejectReason::BadState,
    );

    let c = expect_challenge(&env.auth("alice", Some("sms"), None, &p).await).clone();
    let sent = env.sim.last_sent_code("alice").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect_reject(
        &env.auth("alice", Some(&sent), Some(c.state), &p).await,
        RejectReason::BadState,
    );
    assert_eq!(
        env.calls("checkOtp"),
        1,
        "only the genuine answer reached VIP"
    );
}

#[tokio::test]
async fn state_from_another_client_is_rejected() {
    let env = env().await;
    let p = code_policy();
    let c = expect_challenge(&env.auth("alice", Some("sms"), None, &p).await).clone();
    let sent = env.sim.last_sent_code("alice").unwrap();
    let mut req = request("alice", Some(&sent), Some(c.state.clone()), &p);
    req.client.name = "other-nas".into();
    expect_reject(&env.engine.authenticate(req).await, RejectReason::BadState);
    assert!(
        env.engine.state_is_live(&c.state),
        "a refused attempt does not burn the State"
    );
}

#[tokio::test]
async fn state_is_live_until_used() {
    let env = env().await;
    let p = code_policy();
    let c = expect_challenge(&env.auth("alice", Some("sms"), None, &p).await).clone();
    assert!(env.engine.state_is_live(&c.state));
    assert!(!env.engine.state_is_live(b"not a state"));
    let sent = env.sim.last_sent_code("alice").unwrap();
    expect_accept(
        &env.auth("alice", Some(&sent), Some(c.state.clone()), &p)
            .await,
    );
    assert!(!env.engine.state_is_live(&c.state));
}

// ---- throttling ---------------------------------------------------------------------------

#[tokio::test]
async fn push_bombing_gets_at_most_the_allowed_pushes() {
    let env = env().await; // default: 3 pushes per user per 5 minutes
    let p = push_policy(PushMode::Challenge);
    let mut throttled = 0;
    for i in 0..8 {
        // A different client each time, so nothing is coalesced.
        let mut req = request("carol", Some("push"), None, &p);
        req.client.name = format!("nas{i}");
        match env.engine.authenticate(req).await {
            Outcome::Challenge(_) => {}
            o => {
                expect_reject(&o, RejectReason::Throttled);
                throttled += 1;
            }
        }
    }
    assert_eq!(env.calls("authenticateUserWithPush"), 3);
    assert_eq!(throttled, 5);
    // Code entry is a separate limit: carol can still log in with her token.
    expect_accept(
        &env.auth("carol", Some(&code(ALICE_SECRET, 0)), None, &p)
            .await,
    );
}

#[tokio::test]
async fn code_guessing_is_throttled_without_vip_calls_and_recovers() {
    let throttle = ThrottleConfig {
        codes_per_user: RateLimit {
            count: 5,
            per: Duration::from_secs(2),
        },
        ..ThrottleConfig::default()
    };
    let env = env_throttled(throttle).await;
    let p = code_policy();
    let good = code(BOB_SECRET, 0);
    let bad = if good == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        expect_reject(
            &env.auth("bob", Some(bad), None, &p).await,
            RejectReason::BadCode,
        );
    }
    expect_reject(
        &env.auth("bob", Some(&good), None, &p).await,
        RejectReason::Throttled,
    );
    assert_eq!(
        env.calls("authenticateUser"),
        5,
        "throttled attempts never reach VIP"
    );
    // Other users are unaffected; bob gets a token back after per/count.
    expect_accept(
        &env.auth("alice", Some(&code(ALICE_SECRET, 0)), None, &p)
            .await,
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    expect_accept(&env.auth("bob", Some(&good), None, &p).await);
}

#[tokio::test]
async fn requests_per_client_are_throttled() {
    let throttle = ThrottleConfig {
        requests_per_client: RateLimit {
            count: 2,
            per: Duration::from_secs(60),
        },
        ..ThrottleConfig::default()
    };
    let env = env_throttled(throttle).await;
    let p = code_policy();
    expect_reject(
        &env.auth("alice", Some("00000"), None, &p).await,
        RejectReason::BadInput,
    );
    expect_reject(
        &env.auth("alice", Some("00000"), None, &p).await,
        RejectReason::BadInput,
    );
    let o = env
        .auth("alice", Some(&code(ALICE_SECRET, 0)), None, &p)
        .await;
    expect_reject(&o, RejectReason::Throttled);
    assert_eq!(env.sim.counters().total_calls(), 0);
}

// ---- fail mode ----------------------------------------------------------------------------

fn fail_policy(mode: FailMode) -> Arc<vip_core::engine::LoginPolicy> {
    policy(|p| {
        p.fail_mode = mode;
        p.push_timeout = Duration::from_secs(3);
        p.push_mode = PushMode::Challenge;
    })
}

async fn with_faults(env: &Env, f: vip_sim::Faults) {
    env.sim.set_global_faults(f);
}

/// One login under each kind of failure, with both fail modes: only a proven outage opens.
#[tokio::test]
async fn only_a_confirmed_outage_fails_open() {
    // Two logins per fault: more than the default code throttle allows one user.
    let env = env_throttled(ThrottleConfig {
        codes_per_user: RateLimit {
            count: 100,
            per: Duration::from_secs(60),
        },
        ..ThrottleConfig::default()
    })
    .await;
    let c = code(ALICE_SECRET, 0);
    let f = |edit: fn(&mut vip_sim::Faults)| {
        let mut f = vip_sim::Faults::default();
        edit(&mut f);
        f
    };
    let outage = [
        f(|f| f.http_status = Some(503)),
        f(|f| f.http_status = Some(502)),
        f(|f| f.soap_fault = true),
        f(|f| f.connection_reset = true),
    ];
    let refused = [
        f(|f| f.http_500 = true),
        f(|f| f.http_status = Some(404)),
        f(|f| f.http_status = Some(403)),
        f(|f| f.client_fault = true),
        f(|f| f.malformed_xml = true),
        f(|f| f.wrong_namespace = true),
    ];
    for (faults, opens) in outage
        .iter()
        .map(|f| (f, true))
        .chain(refused.iter().map(|f| (f, false)))
    {
        with_faults(&env, faults.clone()).await;
        let o = env
            .auth("alice", Some(&c), None, &fail_policy(FailMode::Closed))
            .await;
        let want = if opens {
            RejectReason::Unavailable
        } else {
            RejectReason::Misconfigured
        };
        match &o {
            Outcome::Reject(r) => assert_eq!(r.reason, want, "{faults:?}"),
            other => panic!("{faults:?}: {other:?}"),
        }
        let o = env
            .auth("alice", Some(&c), None, &fail_policy(FailMode::Open))
            .await;
        match (&o, opens) {
            (Outcome::Accept(a), true) => {
                assert!(a.failed_open && a.factor == Factor::None, "{a:?}")
            }
            (Outcome::Reject(r), false) => assert_eq!(r.reason, want, "{faults:?}"),
            other => panic!("{faults:?}: {other:?}"),
        }
    }
    let opens = env
        .engine
        .stats()
        .fail_opens
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(opens, outage.len() as u64);
}

#[tokio::test]
async fn an_outage_for_one_user_on_a_healthy_vip_never_opens() {
    // 6005 for one user's authenticateUser: retried once, then "unavailable" even under
    // fail-open, because the health check (getServerTime) gets its answer.
    let env = env().await;
    let open = fail_policy(FailMode::Open);
    let c = code(ALICE_SECRET, 0);
    let mut status = std::collections::BTreeMap::new();
    status.insert("authenticateUser".to_owned(), "6005".to_owned());
    env.sim.set_user_faults(
        "alice",
        vip_sim::Faults {
            status: status.clone(),
            ..Default::default()
        },
    );
    expect_reject(
        &env.auth("alice", Some(&c), None, &open).await,
        RejectReason::Unavailable,
    );
    assert_eq!(env.calls("authenticateUser"), 2, "6005 is retried once");
    assert!(
        env.calls("getServerTime") >= 1,
        "the health check was asked"
    );
    // A single 6005: the retry succeeds.
    env.sim.set_user_faults(
        "alice",
        vip_sim::Faults {
            status,
            status_times: 1,
            ..Default::default()
        },
    );
    let a = expect_accept(&env.auth("alice", Some(&c), None, &open).await).clone();
    assert!(!a.failed_open);
    // A per-user timeout on a healthy VIP does not open either.
    env.sim.set_user_faults(
        "alice",
        vip_sim::Faults {
            latency_ms: 3500,
            ..Default::default()
        },
    );
    expect_reject(
        &env.auth("alice", Some(&code(ALICE_SECRET, 1)), None, &open)
            .await,
        RejectReason::Unavailable,
    );
}

#[tokio::test]
async fn no_free_vip_slot_is_overload_and_never_opens() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, certs) = start_sim(dir.path(), "").await;
    let mut vip = vip_config(&sim, &certs);
    vip.max_in_flight = 1;
    vip.timeout = Duration::from_millis(800);
    let core = vip_core::config::CoreConfig {
        vip,
        engine: fast_engine_config(),
        ..Default::default()
    };
    let engine = core.build_engine().unwrap();
    sim.set_user_faults(
        "bob",
        vip_sim::Faults {
            latency_ms: 2000,
            ..Default::default()
        },
    );
    let open = fail_policy(FailMode::Open);
    // bob's calls take longer than vip.timeout: the first holds the only slot 0-800 ms, the
    // second (sent at 300 ms) holds it 800-1600 ms; alice (sent at 400 ms) waits for a slot
    // until 1200 ms and gets none.
    let flood = auth_with(&engine, request("bob", Some("123456"), None, &open));
    let flood2 = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        auth_with(&engine, request("bob", Some("654321"), None, &open)).await
    };
    let target = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        auth_with(
            &engine,
            request("alice", Some(&code(ALICE_SECRET, 0)), None, &open),
        )
        .await
    };
    let (_, _, o) = tokio::join!(flood, flood2, target);
    expect_reject(&o, RejectReason::Overloaded);
    assert_eq!(
        engine
            .stats()
            .fail_opens
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn fail_open_when_vip_is_down_but_never_for_an_answered_no() {
    let env = env().await;
    let open = fail_policy(FailMode::Open);
    // VIP answering "wrong code" is never a reason to fail open.
    expect_reject(
        &env.auth("alice", Some("000001"), None, &open).await,
        RejectReason::BadCode,
    );
    let Env { sim, engine, .. } = env;
    sim.shutdown().await;
    let c = code(ALICE_SECRET, 0);
    let o = auth_with(&engine, request("alice", Some(&c), None, &open)).await;
    assert!(expect_accept(&o).failed_open);
    let closed = fail_policy(FailMode::Closed);
    let o = auth_with(&engine, request("alice", Some(&c), None, &closed)).await;
    expect_reject(&o, RejectReason::Unavailable);
}

#[tokio::test]
async fn another_instance_with_the_shared_key_continues_a_push_but_never_fails_open() {
    let mut env = env().await;
    let key = env.dir.path().join("state.key");
    std::fs::write(&key, "7f".repeat(32)).unwrap();
    env.core.engine.state_key_file = Some(key);
    let first = env.core.build_engine().unwrap();
    let second = env.core.build_engine().unwrap();
    let open = fail_policy(FailMode::Open);

    // dave approves after 1.2 s; the NAS fails over to the second instance for round two.
    let o = auth_with(&first, request("dave", Some("push"), None, &open)).await;
    let c = expect_challenge(&o).clone();
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let o = auth_with(&second, request("dave", None, Some(c.state.clone()), &open)).await;
    assert_eq!(expect_accept(&o).factor, Factor::Push);

    // Same again, but VIP breaks before round two: the policy fails open, yet mid-push it must not.
    let o = auth_with(&first, request("carol", Some("push"), None, &open)).await;
    let c = expect_challenge(&o).clone();
    with_faults(
        &env,
        vip_sim::Faults {
            http_status: Some(503),
            ..Default::default()
        },
    )
    .await;
    let o = auth_with(
        &second,
        request("carol", None, Some(c.state.clone()), &open),
    )
    .await;
    expect_reject(&o, RejectReason::Unavailable);
}

#[tokio::test]
async fn a_refused_client_certificate_never_fails_open() {
    let env = env().await;
    let other = vip_sim::certs::generate(&env.dir.path().join("other-ca")).unwrap();
    let mut core = env.core.clone();
    core.vip.cert_file = Some(other.client_cert.clone());
    core.vip.key_file = Some(other.client_key.clone());
    let engine = core.build_engine().unwrap();
    let open = fail_policy(FailMode::Open);
    let o = auth_with(
        &engine,
        request("alice", Some(&code(ALICE_SECRET, 0)), None, &open),
    )
    .await;
    expect_reject(&o, RejectReason::Misconfigured);
}

/// The standard simulator and engine, with these throttles.
async fn env_throttled(throttle: ThrottleConfig) -> Env {
    env_with(
        "",
        EngineConfig {
            throttle,
            ..fast_engine_config()
        },
    )
    .await
}
