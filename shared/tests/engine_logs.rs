//! No log line, at any level, contains a code, PIN, password or State value.
//! Its own test binary, so the global subscriber captures everything, including VIP client spans.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use support::*;
use vip_core::engine::{Outcome, PasswordMode, PushMode};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_any_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        // Timestamps and span timings are digit runs that can contain a 4-digit PIN by chance.
        .without_time()
        .init();

    let env = env_with(
        "[[tokens]]\nid = \"VSST30000001\"\nsecret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\n",
        fast_engine_config(),
    )
    .await;
    let mut secrets: Vec<String> = Vec::new();
    let mut states: Vec<Vec<u8>> = Vec::new();

    // A good code, a bad code, a PIN + code, a 604A round, an SMS round, a challenge push.
    let good = code(ALICE_SECRET, 0);
    expect_accept(&env.auth("alice", Some(&good), None, &policy(|_| {})).await);
    let bad = if good == "918273" { "192837" } else { "918273" }.to_owned();
    env.auth("alice", Some(&bad), None, &policy(|_| {})).await;
    let pin_code = format!("4321{}", code(ALICE_SECRET, 1));
    let p = policy(|p| p.mode = PasswordMode::PinOtp);
    expect_accept(&env.auth("pinny", Some(&pin_code), None, &p).await);
    let first = code(ALICE_SECRET, 6);
    let c = expect_challenge(
        &env.auth("drifty", Some(&first), None, &policy(|_| {}))
            .await,
    )
    .clone();
    states.push(c.state.clone());
    let next = code(ALICE_SECRET, 7);
    expect_accept(
        &env.auth("drifty", Some(&next), Some(c.state), &policy(|_| {}))
            .await,
    );
    let c = expect_challenge(&env.auth("alice", Some("sms"), None, &policy(|_| {})).await).clone();
    states.push(c.state.clone());
    let sent = env.sim.last_sent_code("alice").unwrap();
    expect_accept(
        &env.auth("alice", Some(&sent), Some(c.state), &policy(|_| {}))
            .await,
    );
    let pp = policy(|p| {
        p.push_mode = PushMode::Challenge;
        p.push_timeout = Duration::from_secs(3);
    });
    let c = expect_challenge(&env.auth("erin", Some("push"), None, &pp).await).clone();
    states.push(c.state.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let o = env.auth("erin", None, Some(c.state), &pp).await;
    assert!(matches!(o, Outcome::Accept(_) | Outcome::Challenge(_)));

    // An enrollment under PAM (pam_unix passed): the token's code binds it.
    let enrolling = policy(|p| {
        p.enrollment = vip_core::engine::Enrollment::AfterFirstFactor;
        p.enrollment_credentials = vec![vip_core::engine::EnrollKind::Token];
    });
    let pam = |typed: Option<&str>, state: Option<Vec<u8>>| {
        let mut req = request("newcomer", typed, state, &enrolling);
        req.client.front_door = vip_core::engine::FrontDoor::Pam;
        req.stack_password_checked = true;
        auth_with(&env.engine, req)
    };
    let c = expect_challenge(&pam(None, None).await).clone();
    states.push(c.state.clone());
    let c = expect_challenge(&pam(Some("VSST30000001"), Some(c.state)).await).clone();
    states.push(c.state.clone());
    let enrolled = code("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 0);
    expect_accept(&pam(Some(&enrolled), Some(c.state)).await);

    secrets.extend([
        good,
        bad,
        pin_code,
        "4321".to_owned(),
        first,
        next,
        sent,
        enrolled,
    ]);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("login round finished"), "the capture works");
    assert!(log.contains("request_id"), "VIP requestIds are logged");
    // The enrollment is an audit line naming the credential, the user and VIP's requestIds.
    let audit = log
        .lines()
        .find(|l| l.contains("vip_bridge::audit") && l.contains("credential_added"))
        .expect("an audit line for the credential added");
    for part in ["VSST30000001", "newcomer", "pam_unix", "request_ids="] {
        assert!(audit.contains(part), "{part} missing: {audit}");
    }
    // Every login round that reached VIP names its requestIds, pushes included.
    for line in log.lines().filter(|l| l.contains("login round finished")) {
        if line.contains("factor=\"push\"") || line.contains("factor=push") {
            assert!(
                !line.contains("request_ids= "),
                "push round without requestId: {line}"
            );
        }
    }
    for (i, s) in secrets.iter().enumerate() {
        if let Some(at) = find_digits(&log, s) {
            let line = log[..at].rsplit('\n').next().unwrap_or("");
            panic!("secret #{i} reached the log, in the line starting {line:?}");
        }
    }
    for st in &states {
        let b64 = base64::engine::general_purpose::STANDARD.encode(st);
        assert!(
            !log.contains(&hex::encode(st)) && !log.contains(&b64),
            "a State reached the log"
        );
        assert!(
            !log.contains(&format!("{:?}", &st[..8])),
            "State bytes reached the log"
        );
    }

    // A stranger's flood of forged States and throttled guesses: a line a second per cause,
    // each saying how many it held back, not a line per request.
    let before = captured.0.lock().unwrap().len();
    let p = policy(|_| {});
    for i in 0..60u8 {
        let o = env
            .auth("flooder", Some("123456"), Some(vec![i; 40]), &p)
            .await;
        assert!(matches!(o, Outcome::Reject(_)));
    }
    let flood = String::from_utf8(captured.0.lock().unwrap()[before..].to_vec()).unwrap();
    let refused = flood.matches("refused a State").count();
    assert!(
        (1..=3).contains(&refused),
        "{refused} lines for 60 forged States"
    );
    assert!(flood.contains("suppressed"), "{flood}");
}

/// Where `needle` occurs in `haystack` as a whole number: not inside a longer digit run, so a
/// span timing such as `time.busy=143210ns` is not mistaken for the PIN `4321`, while
/// `password=4321` or `"4321"` is found.
fn find_digits(haystack: &str, needle: &str) -> Option<usize> {
    let bytes = haystack.as_bytes();
    haystack
        .match_indices(needle)
        .map(|(at, _)| at)
        .find(|&at| {
            let before = at.checked_sub(1).map(|i| bytes[i]);
            let after = bytes.get(at + needle.len()).copied();
            !before.is_some_and(|b| b.is_ascii_digit())
                && !after.is_some_and(|b| b.is_ascii_digit())
        })
}

#[test]
fn find_digits_finds_whole_numbers_only() {
    assert_eq!(find_digits("password=4321 x", "4321"), Some(9));
    assert_eq!(find_digits("\"4321\"", "4321"), Some(1));
    assert_eq!(find_digits("time.busy=143210ns", "4321"), None);
    assert_eq!(find_digits("143210 and 4321", "4321"), Some(11));
}
