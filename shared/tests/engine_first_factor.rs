//! The engine's first factor (directory password before the second factor) against the real
//! simulator over mutual TLS. The directory here (`support::directory`) is an in-test
//! implementation of the `FirstFactor` trait that counts its calls, so each test can prove
//! what was (not) asked;
//! the real LDAP and RADIUS clients are tested against slapd and FreeRADIUS in their own
//! suites, and end to end in tests/test_first_factor.py.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use support::directory::*;
use support::*;
use vip_core::engine::{
    EmptyPassword, Factor, FailMode, FirstFactorKind, GroupPolicy, LoginPolicy, PasswordFormat,
    PasswordMode, PushMode, RejectReason,
};
use vip_core::first_factor::RawAttribute;

#[tokio::test]
async fn password_comma_code_checks_the_password_then_the_code() {
    let ff = ff_env("ldap", BTreeMap::new()).await;
    let p = ldap_policy(|_| {});
    // The password itself contains the delimiter: the split is on the last one.
    let typed = format!("Corp,pass 1,{}", code(ALICE_SECRET, 0));
    let o = ff.auth("alice", &typed, None, &p).await;
    let a = expect_accept(&o);
    assert_eq!(a.factor, Factor::Code);
    assert_eq!(ff.dir.verifies(), 1);
    assert_eq!(ff.env.calls("authenticateUser"), 1);
}

#[tokio::test]
async fn a_wrong_password_never_reaches_vip() {
    let ff = ff_env("ldap", BTreeMap::new()).await;
    let p = ldap_policy(|_| {});
    for typed in [
        format!("wrong,{}", code(ALICE_SECRET, 0)),
        "wrong,push".to_owned(),
        "wrong".to_owned(),
    ] {
        let o = ff.auth("alice", &typed, None, &p).await;
        expect_reject(&o, RejectReason::BadPassword);
    }
    assert_eq!(ff.vip_calls(), 0, "no code check, no push, no user look-up");
    // An unknown user reads the same as a wrong password.
    let o = ff.auth("mallory", "x,push", None, &p).await;
    expect_reject(&o, RejectReason::BadPassword);
    assert_eq!(ff.vip_calls(), 0);
}

#[tokio::test]
async fn password_comma_push_sends_one_push() {
    let ff = ff_env("ldap", BTreeMap::new()).await;
    let p = ldap_policy(|_| {});
    let o = ff.auth("alice", "Corp,pass 1,push", None, &p).await;
    assert_eq!(expect_accept(&o).factor, Factor::Push);
    assert_eq!(ff.env.calls("authenticateUserWithPush"), 1);
}

#[tokio::test]
async fn the_password_alone_gets_a_challenge_for_the_second_factor() {
    let ff = ff_env("ldap", BTreeMap::new()).await;
    let p = ldap_policy(|_| {});
    let o = ff.auth("alice", "Corp,pass 1", None, &p).await;
    let c = expect_challenge(&o);
    assert!(c.prompt.contains("Or type a security code"), "{}", c.prompt);
    let o = ff
        .auth("alice", &code(ALICE_SECRET, 0), Some(c.state.clone()), &p)
        .await;
    assert_eq!(expect_accept(&o).factor, Factor::Code);
    assert_eq!(ff.dir.verifies(), 1, "the password is checked once");
    // The answer cannot be replayed, and a State of a login whose password was not checked
    // here (another instance, a restart) is refused: the session is in memory.
    let o = ff
        .auth("alice", &code(ALICE_SECRET, 1), Some(c.state.clone()), &p)
        .await;
    expect_reject(&o, RejectReason::BadState);
}

#[tokio::test]
async fn a_state_without_a_session_cannot_skip_the_password() {
    let ff = ff_env("ldap", BTreeMap::new()).await;
    let p = ldap_policy(|_| {});
    // A menu State issued for the same user and client under a policy without a first factor
    // (same State key: one engine) carries no session: it cannot skip the password.
    let plain = policy(|p| p.mode = PasswordMode::Challenge);
    let o = ff.auth("alice", "", None, &plain).await;
    let c = expect_challenge(&o).clone();
    let o = ff
        .auth("alice", &code(ALICE_SECRET, 0), Some(c.state), &p)
        .await;
    expect_reject(&o, RejectReason::BadState);
    assert_eq!(ff.dir.verifies(), 0);
    assert_eq!(ff.env.calls("authenticateUser"), 0);
}

#[tokio::test]
async fn appended_and_challenge_formats() {
    let ff = ff_env("ldap", BTreeMap::new()).await;
    let appended = ldap_policy(|p| p.password_format = PasswordFormat::Appended);
    let o = ff
        .auth(
            "bob",
            &format!("bobpw{}", code(BOB_SECRET, 0)),
            None,
            &appended,
        )
        .await;
    assert_eq!(expect_accept(&o).factor, Factor::Code);
    let o = ff.auth("bob", "bobpw", None, &appended).await;
    expect_reject(&o, RejectReason::BadInput);
    // challenge mode: whatever is typed is the password, even with a delimiter and digits.
    let challenge = ldap_policy(|p| p.mode = PasswordMode::Challenge);
    let o = ff.auth("alice", "Corp,pass 1", None, &challenge).await;
    let c = expect_challenge(&o);
    let o = ff
        .auth("alice", "push", Some(c.state.clone()), &challenge)
        .await;
    assert_eq!(expect_accept(&o).factor, Factor::Push);
}

#[tokio::test]
async fn the_lockout_guard_stops_asking_the_directory() {
    let ff = ff_env("ldap", BTreeMap::new()).await;
    let p = ldap_policy(|_| {});
    // The default: 4 wrong passwords per 30 minutes.
    for _ in 0..4 {
        let o = ff.auth("alice", "guess,push", None, &p).await;
        expect_reject(&o, RejectReason::BadPassword);
    }
    let o = ff.auth("alice", "Corp,pass 1,push", None, &p).await;
    expect_reject(&o, RejectReason::Throttled);
    assert_eq!(
        ff.dir.verifies(),
        4,
        "the fifth attempt never reached the directory"
    );
    // Per login name: another user is not affected.
    let o = ff
        .auth("bob", &format!("bobpw,{}", code(BOB_SECRET, 0)), None, &p)
        .await;
    expect_accept(&o);
}

#[tokio::test]
async fn groups_admit_and_choose_the_second_factor() {
    let mut policies = BTreeMap::new();
    policies.insert(
        "admins".to_owned(),
        LoginPolicy {
            push_mode: PushMode::Challenge,
            ..LoginPolicy::default()
        },
    );
    let ff = ff_env("ldap", policies).await;
    let only_vpn_users = ldap_policy(|p| {
        p.required_groups = vec!["CN=VPN-Users,OU=Groups,DC=example,DC=org".into()];
    });
    let o = ff
        .auth(
            "bob",
            &format!("bobpw,{}", code(BOB_SECRET, 0)),
            None,
            &only_vpn_users,
        )
        .await;
    expect_reject(&o, RejectReason::NotPermitted);
    assert_eq!(ff.vip_calls(), 0);
    let o = ff
        .auth(
            "alice",
            &format!("Corp,pass 1,{}", code(ALICE_SECRET, 0)),
            None,
            &only_vpn_users,
        )
        .await;
    expect_accept(&o);
    // bob is in admins: his push runs in challenge mode (the admins policy), alice's blocks.
    let by_group = ldap_policy(|p| {
        p.group_policies = vec![GroupPolicy {
            group: "cn=admins,ou=groups,dc=example,dc=org".into(),
            policy: "admins".into(),
        }];
    });
    let o = ff.auth("bob", "bobpw,push", None, &by_group).await;
    expect_challenge(&o);
    let o = ff.auth("alice", "Corp,pass 1,push", None, &by_group).await;
    expect_accept(&o);
}

#[tokio::test]
async fn a_directory_outage_rejects_even_where_vip_may_fail_open() {
    let ff = ff_env("ldap", BTreeMap::new()).await;
    ff.dir.set(Mode::Outage);
    let p = ldap_policy(|p| p.fail_mode = FailMode::Open);
    let o = ff.auth("alice", "Corp,pass 1,push", None, &p).await;
    expect_reject(&o, RejectReason::Unavailable);
    assert_eq!(ff.vip_calls(), 0);
    // Outages are not wrong passwords: the lockout guard does not count them.
    for _ in 0..6 {
        let o = ff.auth("alice", "Corp,pass 1,push", None, &p).await;
        expect_reject(&o, RejectReason::Unavailable);
    }
    ff.dir.set(Mode::Normal);
    let o = ff
        .auth(
            "alice",
            &format!("Corp,pass 1,{}", code(ALICE_SECRET, 0)),
            None,
            &p,
        )
        .await;
    expect_accept(&o);
}

#[tokio::test]
async fn login_names_map_to_the_vip_user() {
    let ff = ff_env("ldap", BTreeMap::new()).await;
    // DOMAIN\user and user@realm, any case, reach the directory as the bare lower-case name.
    let p = ldap_policy(|p| {
        p.user_name.strip_domain = true;
        p.user_name.strip_realm = true;
        p.user_name.lowercase = true;
    });
    // (Pushes: the simulator refuses a code it accepted before.)
    for name in ["CORP\\Alice", "alice@corp.example", "ALICE"] {
        let o = ff.auth(name, "Corp,pass 1,push", None, &p).await;
        expect_accept(&o);
    }
    assert_eq!(*ff.dir.asked.lock().unwrap(), ["alice", "alice", "alice"]);
    // The VIP user id from a directory attribute: a.smith is alice at VIP.
    let by_attr = ldap_policy(|p| p.user_name.vip_user_attribute = Some("mail".into()));
    let o = ff
        .auth(
            "a.smith",
            &format!("smithpw,{}", code(ALICE_SECRET, 0)),
            None,
            &by_attr,
        )
        .await;
    expect_accept(&o);
    // ... and through a later round too (the session carries the VIP user).
    let o = ff.auth("a.smith", "smithpw", None, &by_attr).await;
    let c = expect_challenge(&o);
    let o = ff
        .auth(
            "a.smith",
            &code(ALICE_SECRET, 1),
            Some(c.state.clone()),
            &by_attr,
        )
        .await;
    expect_accept(&o);
}

#[tokio::test]
async fn mapping_applies_without_a_first_factor_too() {
    let ff = ff_env("ldap", BTreeMap::new()).await;
    // PAM: the stack checked the password; the name still maps (template / attribute).
    let template = policy(|p| {
        p.user_name.strip_realm = true;
        p.user_name.vip_user = "{user}".into();
    });
    let o = ff
        .auth(
            "alice@corp.example",
            &code(ALICE_SECRET, 0),
            None,
            &template,
        )
        .await;
    expect_accept(&o);
    let by_attr = policy(|p| p.user_name.vip_user_attribute = Some("mail".into()));
    let o = ff
        .auth("a.smith", &code(ALICE_SECRET, 1), None, &by_attr)
        .await;
    expect_accept(&o);
    assert_eq!(ff.dir.lookups.load(Ordering::SeqCst), 1);
    assert_eq!(
        ff.dir.verifies(),
        0,
        "no password is checked without a first factor"
    );
    // No entry: refused before VIP is asked.
    let before = ff.vip_calls();
    let o = ff
        .auth("nobody", &code(ALICE_SECRET, 0), None, &by_attr)
        .await;
    expect_reject(&o, RejectReason::UnknownUser);
    assert_eq!(ff.vip_calls(), before);
}

#[tokio::test]
async fn an_upstream_question_is_relayed_and_its_attributes_pass_through() {
    let ff = ff_env("radius", BTreeMap::new()).await;
    ff.dir.set(Mode::Challenge);
    let p = policy(|p| {
        p.first_factor = FirstFactorKind::Radius;
        p.empty_password = EmptyPassword::Push;
    });
    let o = ff.auth("alice", "Corp,pass 1", None, &p).await;
    let c = expect_challenge(&o);
    assert_eq!(c.prompt, "Enter your new PIN:");
    // A wrong answer to the upstream's question is a wrong password.
    let o = ff.auth("alice", "0000", Some(c.state.clone()), &p).await;
    expect_reject(&o, RejectReason::BadPassword);
    let o = ff.auth("alice", "Corp,pass 1", None, &p).await;
    let c = expect_challenge(&o);
    // The right answer passes the first factor; then the second factor (push, by this
    // policy's empty_password) runs, and the upstream's attributes reach the Accept.
    let o = ff.auth("alice", "4321", Some(c.state.clone()), &p).await;
    let a = expect_accept(&o);
    assert_eq!(a.factor, Factor::Push);
    assert_eq!(
        a.reply_attributes,
        vec![
            RawAttribute {
                kind: 25,
                value: b"vpn-class".to_vec()
            },
            RawAttribute {
                kind: 11,
                value: b"staff".to_vec()
            }
        ]
    );
    // Attributes also survive a second-factor challenge round.
    ff.dir.set(Mode::Normal);
    let o = ff
        .auth(
            "alice",
            "Corp,pass 1",
            None,
            &policy(|p| p.first_factor = FirstFactorKind::Radius),
        )
        .await;
    let c = expect_challenge(&o);
    let o = ff
        .auth(
            "alice",
            &code(ALICE_SECRET, 1),
            Some(c.state.clone()),
            &policy(|p| p.first_factor = FirstFactorKind::Radius),
        )
        .await;
    assert_eq!(expect_accept(&o).reply_attributes.len(), 2);
}
