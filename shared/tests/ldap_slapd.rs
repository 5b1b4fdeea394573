//! The LDAP first factor against a real OpenLDAP slapd on loopback, started by
//! `tests/directory/slapd.py serve DIR` (certificates from a throwaway CA, a seeded directory:
//! see that file for the users and groups). Under `CI=true` a machine without slapd fails
//! these tests; elsewhere they are skipped with the reason printed.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use vip_core::first_factor::ldap::{Ldap, LdapConfig, NestedGroups};
use vip_core::first_factor::{DirectoryUser, FirstFactor, FirstFactorError, Lookup, Verdict};
use vip_core::secret::Secret;

const BASE: &str = "dc=example,dc=org";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// One running slapd; stopped (standard input closed, then killed if need be) on drop.
struct Slapd {
    child: Child,
    stdin: Option<ChildStdin>,
    info: serde_json::Value,
    _dir: tempfile::TempDir,
}

impl Slapd {
    fn start(name: &str) -> Option<Slapd> {
        let script = repo_root().join("tests/directory/slapd.py");
        let check = Command::new("python3").arg(&script).arg("check").output();
        let why = match &check {
            Err(e) => Some(format!("python3 cannot run: {e}")),
            Ok(o) if !o.status.success() => {
                Some(String::from_utf8_lossy(&o.stdout).trim().to_owned())
            }
            Ok(_) => None,
        };
        if let Some(why) = why {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("slapd is required under CI=true: {why}");
            }
            eprintln!("SKIPPED: slapd cannot run here: {why}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("serve")
            .arg(dir.path())
            .arg("--name")
            .arg(name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let info: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = child.kill();
                panic!("slapd.py did not start slapd ({e}): {line:?}");
            }
        };
        let stdin = child.stdin.take();
        Some(Slapd {
            child,
            stdin,
            info,
            _dir: dir,
        })
    }

    fn s(&self, key: &str) -> String {
        self.info[key].as_str().unwrap().to_owned()
    }
    fn ldaps(&self) -> String {
        self.s("ldaps_url")
    }
    fn ldap(&self) -> String {
        self.s("ldap_url")
    }
    fn password(&self, user: &str) -> Secret {
        Secret::new(self.info["users"][user].as_str().unwrap())
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.s("log_file")).unwrap_or_default()
    }

    fn stop(&mut self) {
        drop(self.stdin.take()); // slapd.py stops slapd and exits when its stdin closes
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The slapd most tests share (stopped when the test process exits and slapd.py's standard
/// input closes).
fn shared() -> Option<&'static Slapd> {
    static SLAPD: OnceLock<Option<Slapd>> = OnceLock::new();
    SLAPD.get_or_init(|| Slapd::start("shared")).as_ref()
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn config(d: &Slapd, urls: Vec<String>) -> LdapConfig {
    let mut c = LdapConfig::new(urls, BASE);
    c.ca_file = Some(d.s("ca_file").into());
    c.bind_dn = Some(d.s("bind_dn"));
    c.bind_password = Some(Secret::new(d.s("bind_password")));
    c.timeout = Duration::from_secs(3);
    c
}

fn build(c: &LdapConfig) -> Ldap {
    Ldap::new(c, Path::new("/")).unwrap()
}

fn who(login: &str) -> Lookup<'_> {
    Lookup {
        login,
        attribute: None,
        groups: false,
    }
}

fn full(login: &str) -> Lookup<'_> {
    Lookup {
        login,
        attribute: Some("mail"),
        groups: true,
    }
}

async fn passed(l: &Ldap, w: Lookup<'_>, pw: &Secret) -> DirectoryUser {
    match l.verify(w, pw, None).await {
        Ok(Verdict::Passed(u)) => u,
        other => panic!("{}: expected Passed, got {other:?}", w.login),
    }
}

async fn refused(l: &Ldap, w: Lookup<'_>, pw: &Secret) -> String {
    match l.verify(w, pw, None).await {
        Ok(Verdict::Refused { why }) => {
            if pw.len() >= 8 {
                assert!(!why.contains(pw.expose()), "the password is in {why:?}");
            }
            why
        }
        other => panic!("{}: expected Refused, got {other:?}", w.login),
    }
}

fn dn(user: &str) -> String {
    format!("uid={user},ou=people,{BASE}")
}

fn group(name: &str) -> String {
    format!("cn={name},ou=groups,{BASE}")
}

macro_rules! slapd_or_skip {
    () => {
        match shared() {
            Some(d) => d,
            None => return,
        }
    };
}

#[tokio::test]
async fn ldaps_search_then_bind() {
    let d = slapd_or_skip!();
    let l = build(&config(d, vec![d.ldaps()]));
    let u = passed(&l, who("alice"), &d.password("alice")).await;
    assert_eq!(u.dn.as_deref(), Some(dn("alice").as_str()));
    assert!(
        u.groups.is_empty() && u.attribute.is_none(),
        "not asked: {u:?}"
    );
    let why = refused(&l, who("alice"), &Secret::new("alice-pw-X")).await;
    assert!(
        why.contains("wrong password") && why.contains("uid=alice"),
        "{why}"
    );
    // Another user's password is not alice's.
    refused(&l, who("alice"), &d.password("bob")).await;
    // A uid that looks like an e-mail address, and a non-ASCII password.
    let u = passed(&l, who("dave@example.org"), &d.password("dave@example.org")).await;
    assert_eq!(u.dn.unwrap(), dn("dave@example.org"));
    passed(&l, who("zoe"), &d.password("zoe")).await;
    refused(&l, who("zoe"), &Secret::new("Zoe-passwort-EUR")).await;
    let why = refused(&l, who("nobody"), &Secret::new("x")).await;
    assert!(why.contains("no such user"), "{why}");
    // Whitespace is a password like any other (and wrong here).
    refused(&l, who("alice"), &Secret::new(" ")).await;
}

#[tokio::test]
async fn starttls_on_an_ldap_url() {
    let d = slapd_or_skip!();
    let l = build(&config(d, vec![d.ldap()]));
    passed(&l, who("bob"), &d.password("bob")).await;
    refused(&l, who("bob"), &Secret::new("nope")).await;
    let report = l.probe().await;
    let ok = report[0].result.as_ref().unwrap();
    assert!(
        ok.contains("StartTLS") && ok.contains("service account bound"),
        "{ok}"
    );
}

#[tokio::test]
async fn plaintext_needs_allow_plaintext() {
    let d = slapd_or_skip!();
    let mut c = config(d, vec![d.ldap()]);
    c.start_tls = false;
    let e = Ldap::new(&c, Path::new("/")).err().unwrap();
    assert!(
        e.contains("clear text") && e.contains("allow_plaintext"),
        "{e}"
    );
    c.allow_plaintext = true;
    let l = build(&c);
    passed(&l, who("carol"), &d.password("carol")).await;
}

#[tokio::test]
async fn direct_bind_with_a_dn_template() {
    let d = slapd_or_skip!();
    let mut c = config(d, vec![d.ldaps()]);
    c.bind_dn = None;
    c.bind_password = None;
    c.user_dn_template = Some(format!("uid={{user}},ou=people,{BASE}"));
    let l = build(&c);
    let u = passed(&l, full("alice"), &d.password("alice")).await;
    assert_eq!(u.dn.unwrap(), dn("alice"));
    assert_eq!(u.attribute.as_deref(), Some("alice@example.org"));
    assert!(u.groups.contains(&group("vpn-users")), "{:?}", u.groups);
    let why = refused(&l, who("alice"), &Secret::new("wrong")).await;
    assert!(why.contains("wrong password"), "{why}");
    // A DN-special login stays one RDN value: no such entry, refused.
    refused(&l, who("alice,ou=people"), &d.password("alice")).await;
    passed(&l, who("dave@example.org"), &d.password("dave@example.org")).await;
    // Without a service account nothing can be looked up.
    assert!(matches!(
        l.lookup(who("alice")).await,
        Err(FirstFactorError::Misconfigured(_))
    ));
    let ok = l.probe().await.remove(0).result.unwrap();
    assert!(
        ok.contains("LDAPS") && ok.contains("no service account"),
        "{ok}"
    );
}

#[tokio::test]
async fn a_wrong_ca_is_a_misconfiguration() {
    let d = slapd_or_skip!();
    let mut c = config(d, vec![d.ldaps(), d.ldap()]);
    c.ca_file = Some(d.s("wrong_ca_file").into());
    let l = build(&c);
    match l.verify(who("alice"), &d.password("alice"), None).await {
        Err(FirstFactorError::Misconfigured(why)) => {
            assert!(
                why.contains("not signed by ca_file") && why.contains(&d.ldaps()),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    let report = l.probe().await;
    for r in &report {
        let e = r.result.as_ref().unwrap_err();
        assert!(e.contains("ca_file"), "{}: {e}", r.server);
    }
}

#[tokio::test]
async fn a_wrong_service_password_is_a_misconfiguration() {
    let d = slapd_or_skip!();
    let mut c = config(d, vec![d.ldaps()]);
    c.bind_password = Some(Secret::new("not-the-service-pw"));
    let l = build(&c);
    match l.verify(who("alice"), &d.password("alice"), None).await {
        Err(FirstFactorError::Misconfigured(why)) => {
            assert!(
                why.contains("service account") && why.contains("bind_password_file"),
                "{why}"
            );
            assert!(!why.contains("not-the-service-pw"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        l.lookup(who("alice")).await,
        Err(FirstFactorError::Misconfigured(_))
    ));
    let e = l.probe().await.remove(0).result.unwrap_err();
    assert!(e.contains("service account"), "{e}");
}

#[tokio::test]
async fn fail_over_to_the_next_url_and_outage_when_all_fail() {
    let d = slapd_or_skip!();
    let dead = format!("ldaps://127.0.0.1:{}", dead_port());
    let mut c = config(d, vec![dead.clone(), d.ldaps()]);
    c.retry_after = Duration::from_secs(60);
    let l = build(&c);
    for _ in 0..3 {
        passed(&l, who("alice"), &d.password("alice")).await;
    }
    let report = l.probe().await;
    let e = report[0].result.as_ref().unwrap_err();
    assert!(
        e.contains("connection refused") && e.contains("urls"),
        "{e}"
    );
    assert!(report[1]
        .result
        .as_ref()
        .unwrap()
        .contains("base_dn readable"));

    let dead2 = format!("ldap://127.0.0.1:{}", dead_port());
    let l = build(&config(d, vec![dead.clone(), dead2.clone()]));
    match l.verify(who("alice"), &d.password("alice"), None).await {
        Err(FirstFactorError::Outage(why)) => {
            assert!(why.contains(&dead) && why.contains(&dead2), "{why}");
            assert!(why.contains("connection refused"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        l.lookup(who("alice")).await,
        Err(FirstFactorError::Outage(_))
    ));
}

#[tokio::test]
async fn a_server_that_stops_is_failed_over() {
    let d = slapd_or_skip!();
    let Some(mut second) = Slapd::start("second") else {
        return;
    };
    // The second server first; its CA differs, so trust both.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("both.pem");
    let pem = std::fs::read_to_string(d.s("ca_file")).unwrap()
        + &std::fs::read_to_string(second.s("ca_file")).unwrap();
    std::fs::write(&bundle, pem).unwrap();
    let mut c = config(d, vec![second.ldaps(), d.ldaps()]);
    c.ca_file = Some(bundle);
    let l = build(&c);
    passed(&l, who("alice"), &d.password("alice")).await; // pooled connections to `second`
    let before = second.log().matches("BIND dn=\"uid=alice").count();
    assert!(before >= 1, "the second server answered first");
    second.stop();
    passed(&l, who("alice"), &d.password("alice")).await;
    refused(&l, who("alice"), &Secret::new("bad")).await;
    let report = l.probe().await;
    assert!(
        report[0].result.is_err() && report[1].result.is_ok(),
        "{report:?}"
    );
}

#[tokio::test]
async fn groups_nested_cycles_and_modes() {
    let d = slapd_or_skip!();
    let mut c = config(d, vec![d.ldaps()]);
    let l = build(&c);
    let u = passed(&l, full("alice"), &d.password("alice")).await;
    let mut g = u.groups.clone();
    g.sort();
    assert_eq!(g, vec![group("engineers"), group("vpn-users")]);
    let u = passed(&l, full("bob"), &d.password("bob")).await;
    assert_eq!(u.groups, vec![group("admins")]);
    // dave is in loop-a, which is in loop-b, which is in loop-a: the walk ends.
    let u = passed(
        &l,
        full("dave@example.org"),
        &d.password("dave@example.org"),
    )
    .await;
    let mut g = u.groups.clone();
    g.sort();
    assert_eq!(g, vec![group("loop-a"), group("loop-b")]);
    let u = passed(&l, full("zoe"), &d.password("zoe")).await;
    assert!(u.groups.is_empty());

    c.nested_groups = NestedGroups::None;
    let l = build(&c);
    let u = passed(&l, full("alice"), &d.password("alice")).await;
    assert_eq!(u.groups, vec![group("engineers")]);

    // OpenLDAP does not implement AD's in-chain matching rule: the filter matches nothing
    // there (the filter itself is checked in the unit tests).
    c.nested_groups = NestedGroups::InChain;
    let l = build(&c);
    let u = passed(&l, full("alice"), &d.password("alice")).await;
    assert!(u.groups.is_empty(), "{:?}", u.groups);
}

#[tokio::test]
async fn attribute_returned_and_lookup() {
    let d = slapd_or_skip!();
    let l = build(&config(d, vec![d.ldaps()]));
    let w = Lookup {
        login: "carol",
        attribute: Some("mail"),
        groups: false,
    };
    let u = passed(&l, w, &d.password("carol")).await;
    assert_eq!(u.attribute.as_deref(), Some("carol@example.org"));
    let w = Lookup {
        login: "carol",
        attribute: Some("CN"),
        groups: false,
    };
    assert_eq!(
        passed(&l, w, &d.password("carol"))
            .await
            .attribute
            .as_deref(),
        Some("Carol")
    );
    let w = Lookup {
        login: "carol",
        attribute: Some("telephoneNumber"),
        groups: false,
    };
    assert_eq!(passed(&l, w, &d.password("carol")).await.attribute, None);

    let u = l.lookup(full("alice")).await.unwrap().unwrap();
    assert_eq!(u.dn.unwrap(), dn("alice"));
    assert_eq!(u.attribute.as_deref(), Some("alice@example.org"));
    assert!(u.groups.contains(&group("vpn-users")));
    assert_eq!(l.lookup(who("nobody")).await.unwrap(), None);
    assert_eq!(l.lookup(who("*")).await.unwrap(), None);
    let w = Lookup {
        login: "alice",
        attribute: Some("mail)(uid=*"),
        groups: false,
    };
    assert!(matches!(
        l.lookup(w).await,
        Err(FirstFactorError::Misconfigured(_))
    ));
}

#[tokio::test]
async fn empty_password_is_refused_without_a_bind() {
    let d = slapd_or_skip!();
    let l = build(&config(d, vec![d.ldaps()]));
    let erin = dn("erin");
    let binds = |log: &str| log.matches(&format!("BIND dn=\"{erin}\"")).count();
    let why = refused(&l, who("erin"), &Secret::new("")).await;
    assert!(why.contains("empty password"), "{why}");
    // This slapd lets a DN with an empty password bind (unauthenticated bind): the danger is
    // real here, and our refusal sent nothing.
    let url = d.ldap();
    let (conn, mut raw) = ldap3::LdapConnAsync::new(&url).await.unwrap();
    ldap3::drive!(conn);
    let res = raw.simple_bind(&erin, "").await.unwrap();
    assert_eq!(res.rc, 0, "slapd.py sets allow bind_anon_dn: {res:?}");
    let _ = raw.unbind().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while binds(&d.log()) < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(binds(&d.log()), 1, "only the raw bind reached slapd");
    // And with the real password erin passes (the entry is usable).
    passed(&l, who("erin"), &d.password("erin")).await;
}

#[tokio::test]
async fn filter_injection_is_escaped() {
    let d = slapd_or_skip!();
    let l = build(&config(d, vec![d.ldaps()]));
    for login in [
        "*",
        "al*",
        "*)(uid=*",
        "alice)(|(uid=*",
        "alice\\",
        "\0",
        "(uid=alice)",
    ] {
        let why = refused(&l, who(login), &d.password("alice")).await;
        assert!(why.contains("no such user"), "{login:?}: {why}");
    }
    // Two entries share this mail: ambiguous, refused, even with a right password.
    let mut c = config(d, vec![d.ldaps()]);
    c.user_filter = "(mail={user})".into();
    let l = build(&c);
    let why = refused(&l, who("shared@example.org"), &d.password("bob")).await;
    assert!(why.contains("ambiguous"), "{why}");
    passed(&l, who("bob@example.org"), &d.password("bob")).await;
}

#[tokio::test]
async fn probe_live_and_dead() {
    let d = slapd_or_skip!();
    let dead = format!("ldaps://127.0.0.1:{}", dead_port());
    let l = build(&config(d, vec![d.ldaps(), dead.clone()]));
    let r = l.probe().await;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].server, d.ldaps());
    let ok = r[0].result.as_ref().unwrap();
    assert!(
        ok.starts_with("connected over LDAPS, service account bound, base_dn readable"),
        "{ok}"
    );
    assert!(ok.ends_with(" ms"), "{ok}");
    assert_eq!(r[1].server, dead);
    assert!(r[1]
        .result
        .as_ref()
        .unwrap_err()
        .contains("connection refused"));

    let mut c = config(d, vec![d.ldaps()]);
    c.base_dn = "dc=nowhere,dc=org".into();
    let e = build(&c).probe().await.remove(0).result.unwrap_err();
    assert!(e.contains("base_dn") && e.contains("dc=nowhere"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_verifies_share_a_small_pool() {
    let d = slapd_or_skip!();
    let mut c = config(d, vec![d.ldaps()]);
    c.pool_size = 2;
    let l = Arc::new(build(&c));
    let users = ["alice", "bob", "carol", "dave@example.org", "zoe"];
    let mut tasks = Vec::new();
    for i in 0..32 {
        let l = l.clone();
        let user = users[i % users.len()];
        let good = i % 3 != 0;
        let pw = if good {
            d.password(user)
        } else {
            Secret::new(format!("wrong-{i}"))
        };
        tasks.push(tokio::spawn(async move {
            let w = Lookup {
                login: user,
                attribute: Some("uid"),
                groups: i % 2 == 0,
            };
            let v = l.verify(w, &pw, None).await;
            (user, good, v)
        }));
    }
    for t in tasks {
        let (user, good, v) = t.await.unwrap();
        match (good, v) {
            (true, Ok(Verdict::Passed(u))) => {
                assert_eq!(u.dn.unwrap(), dn(user));
                assert_eq!(u.attribute.as_deref(), Some(user));
            }
            (false, Ok(Verdict::Refused { .. })) => {}
            (good, other) => panic!("{user} (good password: {good}): {other:?}"),
        }
    }
}

#[tokio::test]
async fn swapped_ports_say_what_is_wrong() {
    let d = slapd_or_skip!();
    // ldaps:// to the plain LDAP port: slapd drops the ClientHello.
    let u = d.ldap().replace("ldap://", "ldaps://");
    let mut c = config(d, vec![u.clone()]);
    c.timeout = Duration::from_secs(1);
    match build(&c)
        .verify(who("alice"), &d.password("alice"), None)
        .await
    {
        Err(FirstFactorError::Outage(why)) => {
            assert!(
                why.contains(&u) && why.contains("is port") && why.contains("LDAPS port"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    // StartTLS to the LDAPS port: slapd waits for a ClientHello that never comes.
    let u = d.ldaps().replace("ldaps://", "ldap://");
    let mut c = config(d, vec![u.clone()]);
    c.timeout = Duration::from_secs(1);
    match build(&c)
        .verify(who("alice"), &d.password("alice"), None)
        .await
    {
        Err(FirstFactorError::Outage(why)) => {
            assert!(
                why.contains("no answer within 1s") && why.contains("use an ldaps:// URL"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
}
