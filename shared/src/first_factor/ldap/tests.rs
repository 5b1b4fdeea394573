//! Configuration checks and what needs no server (the slapd tests are in
//! shared/tests/ldap_slapd.rs).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("empty-pw"), "\n").unwrap();
        std::fs::write(dir.path().join("not-pem"), "hello").unwrap();
        Dir { dir }
    }

    fn parse(&self, toml_text: &str) -> Result<LdapConfig, String> {
        toml::from_str::<LdapConfig>(toml_text).map_err(|e| e.to_string())
    }

    fn build(&self, toml_text: &str) -> Result<Ldap, String> {
        Ldap::new(&self.parse(toml_text)?, self.dir.path())
    }
}

const GOOD: &str = r#"
urls = ["ldaps://dc1.example.org", "ldap://dc2.example.org:3890"]
ca_file = "ca.pem"
bind_dn = "cn=bridge,dc=example,dc=org"
bind_password_file = "pw"
base_dn = "dc=example,dc=org"
"#;

fn err(d: &Dir, extra: &str) -> String {
    match d.build(&format!("{GOOD}{extra}")) {
        Ok(_) => panic!("accepted: {extra}"),
        Err(e) => e,
    }
}

fn err_of(d: &Dir, text: &str) -> String {
    match d.build(text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e,
    }
}

#[test]
fn defaults() {
    let d = Dir::new();
    let c = d.parse(GOOD).unwrap();
    assert!(c.start_tls && !c.allow_plaintext);
    assert_eq!(c.user_filter, DEFAULT_USER_FILTER);
    assert_eq!(c.group_filter, DEFAULT_GROUP_FILTER);
    assert_eq!(c.member_attribute, "member");
    assert_eq!(c.nested_groups, NestedGroups::Recursive);
    assert_eq!(c.timeout, Duration::from_secs(5));
    assert_eq!(c.retry_after, Duration::from_secs(30));
    assert_eq!(c.pool_size, 4);
    let l = d.build(GOOD).unwrap();
    assert_eq!(l.servers.len(), 2);
    assert_eq!(l.servers[0].security, Security::Ldaps);
    assert_eq!(l.servers[1].security, Security::StartTls);
    // The password file's one trailing newline is not part of the password.
    assert_eq!(l.service.as_ref().unwrap().password.expose(), "s3cret");
    assert_eq!(l.group_base_dn, "dc=example,dc=org");
    let c = d
        .parse(&format!(
            "{GOOD}timeout = \"750ms\"\nretry_after = \"2m\"\nnested_groups = \"in_chain\"\n"
        ))
        .unwrap();
    assert_eq!(c.timeout, Duration::from_millis(750));
    assert_eq!(c.retry_after, Duration::from_secs(120));
    assert_eq!(c.nested_groups, NestedGroups::InChain);
}

#[test]
fn unknown_keys_and_values_are_refused() {
    let d = Dir::new();
    assert!(d
        .parse(&format!("{GOOD}bind_pasword = \"x\"\n"))
        .unwrap_err()
        .contains("bind_pasword"));
    assert!(d
        .parse(&format!("{GOOD}nested_groups = \"deep\"\n"))
        .is_err());
}

#[test]
fn plaintext_is_refused_unless_allowed() {
    let d = Dir::new();
    let e = err(&d, "start_tls = false\n");
    assert!(
        e.starts_with("urls:") && e.contains("clear text") && e.contains("allow_plaintext"),
        "{e}"
    );
    let l = d
        .build(&format!(
            "{GOOD}start_tls = false\nallow_plaintext = true\n"
        ))
        .unwrap();
    assert_eq!(l.servers[1].security, Security::Plain);
    // ldaps:// stays TLS whatever start_tls says.
    assert_eq!(l.servers[0].security, Security::Ldaps);
}

#[test]
fn service_account_checks() {
    let d = Dir::new();
    let base = "urls = [\"ldaps://dc1\"]\nca_file = \"ca.pem\"\nbase_dn = \"dc=x\"\n";
    let e = err_of(&d, base);
    assert!(
        e.contains("bind_dn and bind_password_file are required"),
        "{e}"
    );
    let e = err_of(&d, &format!("{base}bind_dn = \"cn=a\"\n"));
    assert!(e.contains("without bind_password_file"), "{e}");
    let e = err_of(&d, &format!("{base}bind_password = \"x\"\n"));
    assert!(e.contains("without bind_dn"), "{e}");
    let e = err(&d, "bind_password = \"x\"\n");
    assert!(e.contains("not both"), "{e}");
    let e = err_of(
        &d,
        &format!("{base}bind_dn = \"cn=a\"\nbind_password_file = \"empty-pw\"\n"),
    );
    assert!(e.contains("empty") && e.contains("anonymous"), "{e}");
    let e = err_of(
        &d,
        &format!("{base}bind_dn = \"cn=a\"\nbind_password_file = \"nope\"\n"),
    );
    assert!(
        e.starts_with("bind_password_file: cannot read") && e.contains("no such file"),
        "{e}"
    );
    // Direct bind needs no service account.
    let l = d
        .build(&format!(
            "{base}user_dn_template = \"uid={{user}},ou=people,dc=x\"\n"
        ))
        .unwrap();
    assert!(l.service.is_none());
    let e = err_of(
        &d,
        &format!("{base}user_dn_template = \"uid=alice,ou=people,dc=x\"\n"),
    );
    assert!(
        e.contains("user_dn_template") && e.contains("no {user}"),
        "{e}"
    );
}

#[test]
fn other_checks_name_their_key() {
    let d = Dir::new();
    for (extra, key, says) in [
        (
            "user_filter = \"(uid=alice)\"\n",
            "user_filter",
            "no {user}",
        ),
        (
            "user_filter = \"uid={user}\"\n",
            "user_filter",
            "parentheses",
        ),
        (
            "group_filter = \"(&(objectClass=group)\"\n",
            "group_filter",
            "not an LDAP filter",
        ),
        (
            "member_attribute = \"member)(x=*\"\n",
            "member_attribute",
            "not an attribute",
        ),
        ("pool_size = 0\n", "pool_size", "between 1 and 64"),
        ("timeout = \"10ms\"\n", "timeout", "between"),
        ("retry_after = \"2h\"\n", "retry_after", "at most"),
    ] {
        let e = err(&d, extra);
        assert!(e.starts_with(key) && e.contains(says), "{extra}: {e}");
    }
    let e = err_of(
        &d,
        &GOOD.replace("ldaps://dc1.example.org", "https://dc1.example.org"),
    );
    assert!(e.starts_with("urls:") && e.contains("https"), "{e}");
    let e = err_of(&d, &GOOD.replace("ca.pem", "not-pem"));
    assert!(
        e.starts_with("ca_file") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = err_of(&d, &GOOD.replace("ca.pem", "missing.pem"));
    assert!(e.starts_with("ca_file: cannot read"), "{e}");
    let e = err_of(&d, &GOOD.replace("\"dc=example,dc=org\"\n", "\" \"\n"));
    assert!(e.starts_with("base_dn"), "{e}");
    let e = err_of(
        &d,
        &GOOD.replace(
            r#"["ldaps://dc1.example.org", "ldap://dc2.example.org:3890"]"#,
            "[]",
        ),
    );
    assert!(e.starts_with("urls is empty"), "{e}");
}

#[test]
fn debug_never_shows_the_service_password() {
    let d = Dir::new();
    let c = d
        .parse(&format!(
            "{}bind_password = \"hunter2-secret\"\n",
            GOOD.replace("bind_password_file = \"pw\"\n", "")
        ))
        .unwrap();
    assert!(!format!("{c:?}").contains("hunter2-secret"));
}

#[test]
fn servers_that_failed_are_tried_last() {
    let d = Dir::new();
    let l = d
        .build(&GOOD.replace(
            r#"["ldaps://dc1.example.org", "ldap://dc2.example.org:3890"]"#,
            r#"["ldaps://a", "ldaps://b", "ldaps://c"]"#,
        ))
        .unwrap();
    assert_eq!(l.order(), vec![0, 1, 2]);
    l.servers[0].mark_down(Duration::from_secs(30));
    assert_eq!(l.order(), vec![1, 2, 0]);
    l.servers[0].mark_up();
    assert_eq!(l.order(), vec![0, 1, 2]);
}

#[tokio::test]
async fn empty_password_and_login_are_refused_without_a_server() {
    // The servers do not exist: an answer without an error proves nothing was sent.
    let d = Dir::new();
    let l = d
        .build(
            &GOOD
                .replace("dc1.example.org", "127.0.0.1:1")
                .replace("dc2.example.org:3890", "127.0.0.1:1"),
        )
        .unwrap();
    let who = Lookup {
        login: "alice",
        attribute: None,
        groups: false,
    };
    match l.verify(who, &Secret::new(""), None).await {
        Ok(Verdict::Refused { why }) => assert!(why.contains("empty password")),
        other => panic!("{other:?}"),
    }
    let who = Lookup {
        login: "",
        attribute: None,
        groups: false,
    };
    assert!(matches!(
        l.verify(who, &Secret::new("x"), None).await,
        Ok(Verdict::Refused { .. })
    ));
    // Whitespace is a real password: it is sent (and here the servers are down).
    let who = Lookup {
        login: "alice",
        attribute: None,
        groups: false,
    };
    match l.verify(who, &Secret::new(" "), None).await {
        Err(FirstFactorError::Outage(why)) => assert!(why.contains("127.0.0.1:1"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn lookup_without_a_service_account_is_misconfigured() {
    let d = Dir::new();
    let l = d
        .build("urls = [\"ldaps://127.0.0.1:1\"]\nca_file = \"ca.pem\"\nbase_dn = \"dc=x\"\nuser_dn_template = \"uid={user},dc=x\"\n")
        .unwrap();
    let who = Lookup {
        login: "alice",
        attribute: None,
        groups: false,
    };
    match l.lookup(who).await {
        Err(FirstFactorError::Misconfigured(why)) => {
            assert!(why.contains("service account"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn parses_as_a_directory_of_kind_ldap() {
    let d = Dir::new();
    let c: crate::first_factor::DirectoryConfig =
        toml::from_str(&format!("kind = \"ldap\"\n{GOOD}")).unwrap();
    assert_eq!(c.kind(), "ldap");
    let f = c.build(d.dir.path()).unwrap();
    assert_eq!(f.kind(), "ldap");
    let e = toml::from_str::<crate::first_factor::DirectoryConfig>(&format!(
        "kind = \"ldap\"\n{GOOD}usr_filter = \"(uid={{user}})\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("usr_filter"), "{e}");
}

#[tokio::test]
async fn a_full_pool_is_overload_and_a_silent_server_an_outage() {
    // A server that accepts connections and never answers (plaintext: no handshake).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            conns.push(c);
        }
    });
    let d = Dir::new();
    let text = GOOD.replace(
        r#"["ldaps://dc1.example.org", "ldap://dc2.example.org:3890"]"#,
        &format!("[\"ldap://127.0.0.1:{port}\"]"),
    );
    let l = d
        .build(&format!(
            "{text}start_tls = false\nallow_plaintext = true\npool_size = 1\ntimeout = \"300ms\"\n"
        ))
        .unwrap();
    let who = Lookup {
        login: "alice",
        attribute: None,
        groups: false,
    };
    let slot = l.servers[0].hold_service_slot().await.ok().unwrap();
    let started = Instant::now();
    match l.verify(who, &Secret::new("pw"), None).await {
        Err(FirstFactorError::Overloaded(why)) => {
            assert!(
                why.contains("pool_size") && why.contains("127.0.0.1"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(290));
    drop(slot);
    match l.verify(who, &Secret::new("pw"), None).await {
        Err(FirstFactorError::Outage(why)) => {
            assert!(why.contains("no answer within 300ms"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    held.abort();
}
