//! In-band enrollment, token reset and the expired-PIN change (seed 002's states) against the
//! real simulator over mutual TLS, with the counting in-test directory as the first factor.
//! End to end over radclient and pamtester: tests/test_enrollment.py.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use support::directory::*;
use support::*;
use vip_core::engine::{
    Authenticate, EnrollKind, Enrollment, Factor, FrontDoor, LoginPolicy, Outcome, PasswordMode,
    RejectReason,
};
use vip_sim::CredentialType;

/// A token in the simulator's inventory, in sync, and one whose clock is 5 steps ahead.
const TOKEN: &str = "VSST10000001";
const TOKEN_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
const DRIFTED: &str = "VSST10000002";
const DRIFTED_SECRET: &str = "JBSWY3DPEHPK3PXP";

/// newbie exists at VIP without a credential; walker and pamela are unknown to VIP; pinold's
/// PIN has expired.
fn extra() -> String {
    format!(
        r#"
[[users]]
id = "newbie"

[[users]]
id = "pinold"
pin = "4321"
pin_expired = true
[[users.credentials]]
id = "VSMT10000020"
totp_secret = "JBSWY3DPEHPK3PXP"

[[tokens]]
id = "{TOKEN}"
secret = "{TOKEN_SECRET}"

[[tokens]]
id = "{DRIFTED}"
secret = "{DRIFTED_SECRET}"
drift_steps = 5
"#
    )
}

async fn enroll_env() -> Ff {
    ff_env_with("ldap", BTreeMap::new(), &extra(), fast_engine_config()).await
}

fn enrolling(edit: impl FnOnce(&mut LoginPolicy)) -> Arc<LoginPolicy> {
    ldap_policy(|p| {
        p.enrollment = Enrollment::AfterFirstFactor;
        edit(p);
    })
}

fn state(o: &Outcome) -> Option<Vec<u8>> {
    Some(expect_challenge(o).state.clone())
}

#[track_caller]
fn prompt_has(o: &Outcome, words: &str) {
    let c = expect_challenge(o);
    assert!(
        c.prompt.contains(words),
        "prompt {:?} lacks {words:?}",
        c.prompt
    );
}

#[tokio::test]
async fn a_user_vip_does_not_know_enrolls_a_token_after_the_password() {
    let ff = enroll_env().await;
    let p = enrolling(|_| {});
    // VIP_ENROLLMENT: the menu of what may be added, answered in the clear.
    let o = ff.auth("walker", "walkpw", None, &p).await;
    prompt_has(&o, "You have no second factor yet");
    for word in ["token", "sms", "voice"] {
        prompt_has(&o, word);
    }
    assert!(expect_challenge(&o).echo, "the menu is not secret");
    assert_eq!(
        ff.env.calls("createUser"),
        0,
        "nothing is created before a credential is proven"
    );
    // An unknown word asks again.
    let o = ff.auth("walker", "fax", state(&o), &p).await;
    prompt_has(&o, "Type one of the words listed");
    // VIP_CREDENTIAL_REQUIRED: the credential ID, as people type it.
    let o = ff.auth("walker", "Token", state(&o), &p).await;
    prompt_has(&o, "credential ID");
    let o = ff.auth("walker", "vsst 1000-0001", state(&o), &p).await;
    prompt_has(&o, TOKEN);
    assert!(!expect_challenge(&o).echo, "codes are not echoed");
    // A wrong code: refused, and the user created to check it is deleted again.
    let o = ff.auth("walker", "000000", state(&o), &p).await;
    prompt_has(&o, "That code was not right");
    assert!(
        !ff.env.sim.user_exists("walker"),
        "a refused credential leaves no user"
    );
    assert_eq!(ff.env.calls("deleteUser"), 1);
    // submitVIPCredential: its code binds it; the user is created at VIP on the way.
    let o = ff
        .auth("walker", &code(TOKEN_SECRET, 0), state(&o), &p)
        .await;
    let a = expect_accept(&o);
    assert_eq!(a.factor, Factor::Code);
    assert_eq!(a.credential_id.as_deref(), Some(TOKEN));
    assert!(ff.env.sim.user_exists("walker"));
    assert_eq!(
        ff.env.sim.credentials_of("walker"),
        vec![(TOKEN.to_owned(), CredentialType::StandardOtp)]
    );
    assert_eq!(ff.env.calls("createUser"), 2);
    assert_eq!(ff.env.calls("deleteUser"), 1, "only after the refused code");
    // The next login has a credential: no enrollment, the ordinary second factor.
    let o = ff.auth("walker", "walkpw", None, &p).await;
    prompt_has(&o, "Enter your security code");
    let o = ff
        .auth("walker", &code(TOKEN_SECRET, 1), state(&o), &p)
        .await;
    expect_accept(&o);
}

#[tokio::test]
async fn a_token_out_of_sync_is_added_with_two_consecutive_codes() {
    let ff = enroll_env().await;
    let p = enrolling(|p| p.enrollment_credentials = vec![EnrollKind::Token]);
    // One kind allowed: straight to its question.
    let o = ff.auth("newbie", "newpw", None, &p).await;
    prompt_has(&o, "credential ID");
    let o = ff.auth("newbie", DRIFTED, state(&o), &p).await;
    let o = ff
        .auth("newbie", &code(DRIFTED_SECRET, 5), state(&o), &p)
        .await;
    prompt_has(&o, "second code");
    let o = ff
        .auth("newbie", &code(DRIFTED_SECRET, 6), state(&o), &p)
        .await;
    expect_accept(&o);
    assert_eq!(ff.env.calls("createUser"), 0, "newbie existed at VIP");
    assert_eq!(ff.env.calls("addCredential"), 2);
    assert_eq!(ff.env.sim.credentials_of("newbie").len(), 1);
}

#[tokio::test]
async fn sms_enrollment_registers_the_phone_and_binds_it_with_the_code_sent() {
    let ff = enroll_env().await;
    let p = enrolling(|p| p.enrollment_credentials = vec![EnrollKind::Sms]);
    let o = ff.auth("newbie", "newpw", None, &p).await;
    prompt_has(&o, "mobile number");
    assert!(expect_challenge(&o).echo);
    let o = ff.auth("newbie", "call me maybe", state(&o), &p).await;
    prompt_has(&o, "That is not a phone number");
    let o = ff.auth("newbie", "+1 (555) 000-1111", state(&o), &p).await;
    prompt_has(&o, "sent by text message to 15550001111");
    assert_eq!(ff.env.calls("register"), 1);
    // A typo asks again; the code sent stays valid.
    let o = ff.auth("newbie", "000000", state(&o), &p).await;
    prompt_has(&o, "That code was not right");
    let sent = ff.env.sim.last_sent_code_to("15550001111").unwrap();
    let o = ff.auth("newbie", &sent, state(&o), &p).await;
    let a = expect_accept(&o);
    assert_eq!(a.factor, Factor::Sms);
    assert_eq!(
        ff.env.sim.credentials_of("newbie"),
        vec![("15550001111".to_owned(), CredentialType::SmsOtp)]
    );
    // The phone is now the user's factor: the next login offers it, not enrollment.
    let o = ff.auth("newbie", "newpw", None, &p).await;
    prompt_has(&o, "sms");
    assert!(!expect_challenge(&o).prompt.contains("no second factor"));
}

#[tokio::test]
async fn never_offered_to_a_user_who_has_a_credential() {
    let ff = enroll_env().await;
    let p = enrolling(|_| {});
    let o = ff.auth("alice", "Corp,pass 1", None, &p).await;
    prompt_has(&o, "Choose a second factor");
    // The enrollment menu's words mean nothing here.
    let o = ff.auth("alice", "token", state(&o), &p).await;
    expect_reject(&o, RejectReason::BadInput);
    for op in ["createUser", "addCredential", "register"] {
        assert_eq!(ff.env.calls(op), 0, "{op}");
    }
}

#[tokio::test]
async fn never_offered_before_the_first_factor_passed() {
    let ff = enroll_env().await;
    let p = enrolling(|_| {});
    // A wrong password: refused before VIP is asked anything.
    let o = ff.auth("walker", "guess", None, &p).await;
    expect_reject(&o, RejectReason::BadPassword);
    assert_eq!(ff.vip_calls(), 0);
    // No first factor in this policy (the NAS checked the password, or nobody did): the
    // engine never offers enrollment, whatever the policy says.
    let no_ff = policy(|p| {
        p.enrollment = Enrollment::AfterFirstFactor;
        p.mode = PasswordMode::Challenge;
    });
    let o = ff.env.auth("walker", None, None, &no_ff).await;
    assert!(
        !matches!(&o, Outcome::Challenge(c) if c.prompt.contains("no second factor")),
        "{o:?}"
    );
    // PAM: only when pam_unix accepted the password earlier in the transaction.
    let mut req = request("pamela", None, None, &no_ff);
    req.client.front_door = FrontDoor::Pam;
    let o = ff.engine.authenticate(req).await;
    assert!(
        !matches!(&o, Outcome::Challenge(c) if c.prompt.contains("no second factor")),
        "{o:?}"
    );
    let mut req = request("pamela", None, None, &no_ff);
    req.client.front_door = FrontDoor::Pam;
    req.stack_password_checked = true;
    let o = ff.engine.authenticate(req).await;
    prompt_has(&o, "no second factor");
    for op in ["createUser", "addCredential", "register"] {
        assert_eq!(ff.env.calls(op), 0, "{op}");
    }
}

#[tokio::test]
async fn wrong_codes_during_enrollment_are_throttled() {
    let mut engine = fast_engine_config();
    engine.throttle.enrollment_per_user.count = 3;
    let ff = ff_env_with("ldap", BTreeMap::new(), &extra(), engine).await;
    let p = enrolling(|p| p.enrollment_credentials = vec![EnrollKind::Token]);
    let ask = |typed: &str, st: Option<Vec<u8>>| {
        ff.engine
            .authenticate(request("newbie", Some(typed), st, &p))
    };
    let o = ask("newpw", None).await;
    let mut o = ask(TOKEN, state(&o)).await;
    for _ in 0..3 {
        o = ask("000000", state(&o)).await;
        prompt_has(&o, "That code was not right");
    }
    let o = ask(&code(TOKEN_SECRET, 0), state(&o)).await;
    expect_reject(&o, RejectReason::Throttled);
    assert_eq!(
        ff.env.calls("addCredential"),
        3,
        "the 4th never reached VIP"
    );
    assert!(ff.env.sim.credentials_of("newbie").is_empty());
}

#[tokio::test]
async fn reset_takes_two_consecutive_codes() {
    let ff = enroll_env().await;
    let p = enrolling(|_| {});
    let o = ff.auth("alice", "Corp,pass 1,reset", None, &p).await;
    prompt_has(&o, "To reset your token");
    let o = ff
        .auth("alice", &code(ALICE_SECRET, 0), state(&o), &p)
        .await;
    prompt_has(&o, "next code");
    assert_eq!(ff.env.calls("authenticateUser"), 0, "one call with both");
    let o = ff
        .auth("alice", &code(ALICE_SECRET, 1), state(&o), &p)
        .await;
    expect_accept(&o);
    assert_eq!(ff.env.calls("authenticateUser"), 1);
    // Without enrollment the word is no code.
    let off = ldap_policy(|_| {});
    let o = ff.auth("alice", "Corp,pass 1", None, &off).await;
    let o = ff.auth("alice", "reset", state(&o), &off).await;
    expect_reject(&o, RejectReason::BadInput);
}

#[tokio::test]
async fn an_expired_pin_is_changed_in_the_login_when_the_policy_says_so() {
    let ff = enroll_env().await;
    let p = policy(|p| {
        p.mode = PasswordMode::PinOtp;
        p.change_expired_pin = true;
    });
    let typed = format!("4321{}", code(ALICE_SECRET, 0));
    let o = ff.env.auth("pinold", Some(&typed), None, &p).await;
    prompt_has(&o, "Your VIP PIN has expired");
    assert!(!expect_challenge(&o).echo);
    let o = ff.env.auth("pinold", Some("12"), state(&o), &p).await;
    prompt_has(&o, "4 to 128 characters");
    let o = ff.env.auth("pinold", Some("5678"), state(&o), &p).await;
    prompt_has(&o, "again");
    let o = ff.env.auth("pinold", Some("5679"), state(&o), &p).await;
    prompt_has(&o, "differ");
    let o = ff.env.auth("pinold", Some("5678"), state(&o), &p).await;
    let o = ff.env.auth("pinold", Some("5678"), state(&o), &p).await;
    expect_accept(&o);
    assert_eq!(ff.env.calls("updateUser"), 1);
    // The new PIN works and has not expired.
    let typed = format!("5678{}", code(ALICE_SECRET, 1));
    expect_accept(&ff.env.auth("pinold", Some(&typed), None, &p).await);
}

#[tokio::test]
async fn the_pam_door_asks_for_the_offer_before_its_own_code_prompt() {
    let ff = enroll_env().await;
    let p = policy(|p| p.enrollment = Enrollment::AfterFirstFactor);
    let pam = |user: &str, checked: bool| {
        let mut req = request(user, None, None, &p);
        req.client.front_door = FrontDoor::Pam;
        req.stack_password_checked = checked;
        req
    };
    // A user without a credential, pam_unix passed: the enrollment menu.
    let offer = ff.engine.enrollment_offer(pam("pamela", true)).await;
    prompt_has(offer.as_ref().expect("offered"), "no second factor");
    // A user with one, or pam_unix did not pass: nothing, the door asks for the code.
    assert!(ff
        .engine
        .enrollment_offer(pam("alice", true))
        .await
        .is_none());
    assert!(ff
        .engine
        .enrollment_offer(pam("pamela", false))
        .await
        .is_none());
    // Never over RADIUS.
    let radius = request("pamela", None, None, &p);
    assert!(ff.engine.enrollment_offer(radius).await.is_none());
}
