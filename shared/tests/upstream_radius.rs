//! The upstream RADIUS first factor against a real FreeRADIUS 3.2 (started through
//! tests/directory/freeradius.py, whose users file these tests rely on), plus a dead port, a
//! black hole and a fake server signing with another secret.
//!
//! Without `freeradius` installed the tests print why and pass, except under `CI=true`, where
//! they fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vip_core::first_factor::{
    DirectoryConfig, FirstFactor, FirstFactorError, Lookup, RawAttribute, Verdict,
};
use vip_core::secret::Secret;

const SECRET: &str = "upstream-secret";
/// tests/directory/freeradius.py: CHALLENGE_STATE, LONG_PASSWORD, NON_ASCII_PASSWORD.
const CHALLENGE_STATE: &[u8] = b"state-round-2";
const NON_ASCII_PASSWORD: &str = "pässwörd-日本";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn have_freeradius() -> bool {
    ["/usr/sbin/freeradius", "/usr/bin/freeradius"]
        .iter()
        .any(|p| Path::new(p).exists())
}

/// A FreeRADIUS for one test: stopped (stdin closed, then killed) on drop.
struct Upstream {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Upstream {
    /// `None` (after printing why) when freeradius is missing outside CI.
    fn start() -> Option<Upstream> {
        Upstream::start_with(&[])
    }

    fn start_with(args: &[&str]) -> Option<Upstream> {
        if !have_freeradius() {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !ci,
                "freeradius is not installed (apt-get install freeradius) and CI=true"
            );
            eprintln!("SKIPPED: freeradius is not installed (apt-get install freeradius)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/directory/freeradius.py"))
            .arg("serve")
            .arg(dir.path())
            .arg("--secret")
            .arg(SECRET)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 tests/directory/freeradius.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the launcher's line");
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("launcher printed {line:?}: {e}"));
        let addr = v["addr"]
            .as_str()
            .unwrap_or_else(|| panic!("launcher failed: {line}"))
            .to_string();
        Some(Upstream {
            child,
            addr,
            _dir: dir,
        })
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Closing stdin makes the launcher stop FreeRADIUS; kill it if it takes too long.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port with nothing on it (ICMP port unreachable).
fn dead_port() -> String {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").to_string()
}

/// A loopback socket that reads and never answers (kept open by the returned guard).
fn black_hole() -> (std::net::UdpSocket, String) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = s.local_addr().expect("addr").to_string();
    (s, addr)
}

fn build(servers: &[&str], extra: &str) -> Arc<dyn FirstFactor> {
    let servers: Vec<String> = servers.iter().map(|s| format!("{s:?}")).collect();
    let text = format!(
        "kind = \"radius\"\nservers = [{}]\nsecret = \"{SECRET}\"\n{extra}",
        servers.join(", ")
    );
    let cfg: DirectoryConfig = toml::from_str(&text).expect("config parses");
    assert_eq!(cfg.kind(), "radius");
    cfg.build(Path::new("/")).expect("builds")
}

fn who(login: &str) -> Lookup<'_> {
    Lookup {
        login,
        attribute: None,
        groups: false,
    }
}

async fn verify(
    ff: &dyn FirstFactor,
    login: &str,
    password: &str,
    state: Option<&[u8]>,
) -> Result<Verdict, FirstFactorError> {
    ff.verify(who(login), &Secret::new(password), state).await
}

fn passed(r: Result<Verdict, FirstFactorError>) -> Vec<RawAttribute> {
    match r {
        Ok(Verdict::Passed(u)) => {
            assert_eq!(u.dn, None);
            u.reply_attributes
        }
        other => panic!("expected Passed, got {other:?}"),
    }
}

fn attr(kind: u8, value: &[u8]) -> RawAttribute {
    RawAttribute {
        kind,
        value: value.to_vec(),
    }
}

/// Cisco-AVPair "shell:priv-lvl=15" as a Vendor-Specific: vendor 9, sub-attribute 1.
fn cisco_avpair() -> RawAttribute {
    let mut v = vec![0, 0, 0, 9, 1, 2 + 17];
    v.extend_from_slice(b"shell:priv-lvl=15");
    attr(26, &v)
}

#[tokio::test]
async fn accept_passes_exactly_the_configured_attributes() {
    let Some(up) = Upstream::start() else { return };
    // Defaults: Class, Filter-Id, Framed-IP-Address, ..., Session-Timeout, Vendor-Specific;
    // never Reply-Message or Message-Authenticator.
    let ff = build(&[&up.addr], "");
    let got = passed(verify(&*ff, "rich", "rich-pw", None).await);
    assert_eq!(
        got,
        vec![
            attr(25, b"class-of-rich"),
            attr(11, b"vpn-admins"),
            attr(8, &[10, 8, 0, 7]),
            cisco_avpair(),
            attr(27, &3600u32.to_be_bytes()),
        ]
    );
    // A narrower list, by name and number.
    let ff = build(&[&up.addr], "pass_through = [\"Filter-Id\", 26]");
    let got = passed(verify(&*ff, "rich", "rich-pw", None).await);
    assert_eq!(got, vec![attr(11, b"vpn-admins"), cisco_avpair()]);
    // Nothing.
    let ff = build(&[&up.addr], "pass_through = []");
    assert_eq!(passed(verify(&*ff, "rich", "rich-pw", None).await), vec![]);
    // A plain user: no attributes at all (its Message-Authenticator never passes).
    let ff = build(&[&up.addr], "pass_through = [\"all\"]");
    assert_eq!(
        passed(verify(&*ff, "plain", "plain-pw", None).await),
        vec![]
    );
}

#[tokio::test]
async fn all_passes_more_but_never_what_vip_bridge_owns() {
    let Some(up) = Upstream::start() else { return };
    let ff = build(&[&up.addr], "pass_through = [\"all\"]");
    let got = passed(verify(&*ff, "rich", "rich-pw", None).await);
    let kinds: Vec<u8> = got.iter().map(|a| a.kind).collect();
    // Reply-Message (18) was in the reply but is ours; Message-Authenticator (80) too.
    assert_eq!(kinds, vec![25, 11, 8, 26, 27], "{got:?}");
    // The challenge round's Access-Accept: Class only, no State.
    let got = passed(verify(&*ff, "chal", "4321", Some(CHALLENGE_STATE)).await);
    assert_eq!(got, vec![attr(25, b"chal-done")]);
}

#[tokio::test]
async fn wrong_password_and_rejected_user_are_refused_with_the_reply_message() {
    let Some(up) = Upstream::start() else { return };
    let ff = build(&[&up.addr], "");
    match verify(&*ff, "refused", "whatever", None).await {
        Ok(Verdict::Refused { why }) => {
            assert!(why.contains("account disabled"), "{why}");
            assert!(!why.contains("whatever"), "{why}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    match verify(&*ff, "plain", "wrong-pw", None).await {
        Ok(Verdict::Refused { why }) => assert!(why.contains(&up.addr), "{why}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    match verify(&*ff, "nobody", "x", None).await {
        Ok(Verdict::Refused { .. }) => {}
        other => panic!("expected Refused, got {other:?}"),
    }
    // Not sent at all: empty and over 128 octets.
    for pw in [String::new(), "p".repeat(129)] {
        match verify(&*ff, "plain", &pw, None).await {
            Ok(Verdict::Refused { why }) => assert!(why.contains("not sent"), "{why}"),
            other => panic!("expected Refused, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn challenge_is_relayed_over_two_rounds() {
    let Some(up) = Upstream::start() else { return };
    let ff = build(&[&up.addr], "");
    let (prompt, state) = match verify(&*ff, "chal", "chal-pw", None).await {
        Ok(Verdict::Challenge { prompt, state }) => (prompt, state),
        other => panic!("expected Challenge, got {other:?}"),
    };
    assert_eq!(prompt, "Enter your token code:");
    assert_eq!(state, CHALLENGE_STATE);
    let got = passed(verify(&*ff, "chal", "4321", Some(&state)).await);
    assert_eq!(got, vec![attr(25, b"chal-done")]);
    // The answer without the State is not accepted (FreeRADIUS's first-round entry answers
    // it with the challenge again: Response-Packet-Type overrides its reject).
    let again = verify(&*ff, "chal", "4321", None).await;
    assert!(
        matches!(
            again,
            Ok(Verdict::Challenge { .. } | Verdict::Refused { .. })
        ),
        "{again:?}"
    );
}

#[tokio::test]
async fn long_and_non_ascii_passwords() {
    let Some(up) = Upstream::start() else { return };
    let ff = build(&[&up.addr], "");
    let long = format!("{}0123456789", "L".repeat(90));
    assert_eq!(long.len(), 100);
    passed(verify(&*ff, "long", &long, None).await);
    passed(verify(&*ff, "unicode", NON_ASCII_PASSWORD, None).await);
    assert!(matches!(
        verify(&*ff, "long", &long[..99], None).await,
        Ok(Verdict::Refused { .. })
    ));
}

#[tokio::test]
async fn replies_without_message_authenticator_are_refused_unless_allowed() {
    // FreeRADIUS 3.2.1 as shipped sends no Message-Authenticator in PAP replies.
    let Some(up) = Upstream::start_with(&["--no-reply-message-authenticator"]) else {
        return;
    };
    let ff = build(&[&up.addr], "timeout = \"300ms\"\nretries = 0");
    let started = Instant::now();
    match verify(&*ff, "plain", "plain-pw", None).await {
        Err(FirstFactorError::Misconfigured(m)) => {
            assert!(
                m.contains(&up.addr) && m.contains("carry no Message-Authenticator"),
                "{m}"
            )
        }
        other => panic!("expected Misconfigured, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    let ff = build(&[&up.addr], "require_message_authenticator = false");
    passed(verify(&*ff, "plain", "plain-pw", None).await);
    assert!(matches!(
        verify(&*ff, "plain", "wrong", None).await,
        Ok(Verdict::Refused { .. })
    ));
}

#[tokio::test]
async fn wrong_shared_secret_is_never_an_answer() {
    let Some(up) = Upstream::start() else { return };
    // FreeRADIUS (require_message_authenticator = yes) drops a request whose
    // Message-Authenticator does not verify: silence, so an outage that says to check the secret.
    let text = format!(
        "kind = \"radius\"\nservers = [\"{}\"]\nsecret = \"not-the-secret\"\ntimeout = \"400ms\"\nretries = 1",
        up.addr
    );
    let cfg: DirectoryConfig = toml::from_str(&text).expect("parses");
    let ff = cfg.build(Path::new("/")).expect("builds");
    let started = Instant::now();
    match verify(&*ff, "plain", "plain-pw", None).await {
        Err(FirstFactorError::Outage(m)) => {
            assert!(m.contains(&up.addr) && m.contains("shared secret"), "{m}");
        }
        other => panic!("expected Outage, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(800));
}

/// A server that answers every request at once with an Access-Accept it cannot sign (another
/// secret): each reply is dropped, the try runs its whole timeout, and the error names the
/// secret.
#[tokio::test]
async fn replies_that_do_not_verify_are_dropped_and_reported_as_misconfigured() {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = sock.local_addr().expect("addr").to_string();
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = answered.clone();
    let fake = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if n < 20 {
                continue;
            }
            // Access-Accept, same Identifier, an authenticator no secret explains.
            let mut reply = vec![2, buf[1], 0, 20];
            reply.extend_from_slice(&[0x5a; 16]);
            let _ = sock.send_to(&reply, from).await;
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let ff = build(&[&addr], "timeout = \"300ms\"\nretries = 1");
    let started = Instant::now();
    match verify(&*ff, "plain", "plain-pw", None).await {
        Err(FirstFactorError::Misconfigured(m)) => {
            assert!(
                m.contains(&format!(
                    "replies from {addr} do not verify with the shared secret: check secret / secret_file"
                )),
                "{m}"
            );
        }
        other => panic!("expected Misconfigured, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "a forged reply ended the wait early: {:?}",
        started.elapsed()
    );
    assert_eq!(answered.load(std::sync::atomic::Ordering::Relaxed), 2);
    fake.abort();
}

#[tokio::test]
async fn fail_over_to_the_second_server_and_outage_when_all_are_dead() {
    let Some(up) = Upstream::start() else { return };
    // A dead port (port unreachable) first: fails over at once.
    let dead = dead_port();
    let ff = build(&[&dead, &up.addr], "timeout = \"500ms\"");
    let started = Instant::now();
    passed(verify(&*ff, "plain", "plain-pw", None).await);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // A black hole first: both tries time out, then the real server; the next request goes to
    // the real server first (retry_after).
    let (_hole, hole) = black_hole();
    let ff = build(&[&hole, &up.addr], "timeout = \"300ms\"\nretries = 1");
    let started = Instant::now();
    passed(verify(&*ff, "plain", "plain-pw", None).await);
    assert!(started.elapsed() >= Duration::from_millis(600));
    let started = Instant::now();
    passed(verify(&*ff, "plain", "plain-pw", None).await);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    // All dead: an outage naming each.
    let (_hole2, hole2) = black_hole();
    let dead2 = dead_port();
    let ff = build(&[&dead2, &hole2], "timeout = \"200ms\"\nretries = 0");
    match verify(&*ff, "plain", "plain-pw", None).await {
        Err(FirstFactorError::Outage(m)) => {
            assert!(m.contains(&dead2) && m.contains(&hole2), "{m}");
            assert!(
                m.contains("port unreachable") && m.contains("no answer"),
                "{m}"
            );
        }
        other => panic!("expected Outage, got {other:?}"),
    }
}

#[tokio::test]
async fn probe_status_server() {
    let Some(up) = Upstream::start() else { return };
    let (_hole, hole) = black_hole();
    let ff = build(&[&up.addr, &hole], "timeout = \"300ms\"");
    let reports = ff.probe().await;
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].server, up.addr);
    let ok = reports[0].result.as_ref().expect("FreeRADIUS answers");
    assert!(ok.starts_with("answered Status-Server in "), "{ok}");
    assert_eq!(reports[1].server, hole);
    let err = reports[1].result.as_ref().expect_err("nothing answers");
    assert!(err.contains("status_server = yes"), "{err}");
    // And look-ups are not something RADIUS can do.
    match ff.lookup(who("plain")).await {
        Err(FirstFactorError::Misconfigured(m)) => {
            assert!(m.contains("cannot look users up"), "{m}")
        }
        other => panic!("expected Misconfigured, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_verifies() {
    let Some(up) = Upstream::start() else { return };
    let ff = build(&[&up.addr], "");
    let mut tasks = Vec::new();
    for i in 0..64 {
        let ff = ff.clone();
        tasks.push(tokio::spawn(async move {
            let (user, pw, ok) = match i % 3 {
                0 => ("plain", "plain-pw", true),
                1 => ("rich", "rich-pw", true),
                _ => ("plain", "nope", false),
            };
            let r = verify(&*ff, user, pw, None).await;
            (i, ok, r)
        }));
    }
    for t in tasks {
        let (i, ok, r) = t.await.expect("task");
        match (ok, r) {
            (true, Ok(Verdict::Passed(_))) | (false, Ok(Verdict::Refused { .. })) => {}
            (_, other) => panic!("request {i}: {other:?}"),
        }
    }
}

#[test]
fn config_errors_name_the_key() {
    let err = |extra: &str, servers: &str| {
        let text = format!("kind = \"radius\"\nservers = {servers}\n{extra}");
        match toml::from_str::<DirectoryConfig>(&text) {
            Err(e) => e.to_string(),
            Ok(c) => c.build(Path::new("/")).err().expect("refused"),
        }
    };
    assert!(err("secret = \"s\"", "[\"127.0.0.1:x\"]").contains("servers[0]"));
    assert!(err("", "[\"127.0.0.1\"]").contains("secret"));
    assert!(err(
        "secret = \"s\"\npass_through = [\"Nope\"]",
        "[\"127.0.0.1\"]"
    )
    .contains("unknown attribute \"Nope\""));
    assert!(err("secret = \"s\"\nbogus = 1", "[\"127.0.0.1\"]").contains("bogus"));
    let e = err("secret = \"s\"\ntimeout = \"soon\"", "[\"127.0.0.1\"]");
    assert!(e.contains("soon"), "{e}");
}

#[tokio::test]
async fn waiting_longer_than_timeout_for_a_slot_is_overloaded() {
    let (_hole, hole) = black_hole();
    let ff = build(
        &[&hole],
        "timeout = \"300ms\"\nretries = 1\nmax_in_flight = 1",
    );
    let first = {
        let ff = ff.clone();
        tokio::spawn(async move { verify(&*ff, "plain", "plain-pw", None).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    match verify(&*ff, "plain", "plain-pw", None).await {
        Err(FirstFactorError::Overloaded(m)) => assert!(m.contains("max_in_flight"), "{m}"),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    assert!(matches!(
        first.await.expect("task"),
        Err(FirstFactorError::Outage(_))
    ));
}
