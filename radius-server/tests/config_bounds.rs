//! The `vip-bridge` binary given a configuration with an absurd duration (one that would overflow
//! `Instant` arithmetic once running) exits with a configuration error naming the file and the
//! key, from `check-config --offline` and from `serve`, and never panics.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// About 3 × 10^16 seconds: parses, but `Instant::now() + d` panics.
const ABSURD: &str = "1000000000y";

/// (section, line with `{}` for the value, key as the error names it)
const KEYS: &[(&str, &str, &str)] = &[
    ("[vip]", "timeout = \"{}\"", "vip.timeout"),
    (
        "[vip]",
        "health_check_interval = \"{}\"",
        "vip.health_check_interval",
    ),
    ("[engine]", "state_ttl = \"{}\"", "engine.state_ttl"),
    ("[engine]", "poll_interval = \"{}\"", "engine.poll_interval"),
    ("[engine]", "user_info_ttl = \"{}\"", "engine.user_info_ttl"),
    (
        "[engine.throttle]",
        "push_per_user = { count = 3, per = \"{}\" }",
        "engine.throttle.push_per_user.per",
    ),
    (
        "[engine.throttle]",
        "codes_per_user = { count = 10, per = \"{}\" }",
        "engine.throttle.codes_per_user.per",
    ),
    (
        "[engine.throttle]",
        "requests_per_client = { count = 2000, per = \"{}\" }",
        "engine.throttle.requests_per_client.per",
    ),
    (
        "[radius]",
        "response_cache_ttl = \"{}\"",
        "radius.response_cache_ttl",
    ),
    (
        "[radius]",
        "shutdown_timeout = \"{}\"",
        "radius.shutdown_timeout",
    ),
    ("[pam]", "read_timeout = \"{}\"", "pam.read_timeout"),
    ("[pam]", "request_timeout = \"{}\"", "pam.request_timeout"),
    (
        "[pam]",
        "connection_timeout = \"{}\"",
        "pam.connection_timeout",
    ),
];

/// Runs the binary, killing it (and failing) if it does not exit within 30 s.
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vip-bridge"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vip-bridge");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait for vip-bridge").is_some() {
            return child.wait_with_output().expect("collect the output");
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect the output");
            panic!(
                "vip-bridge {args:?} still running after 30 s; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_config_error(out: &Output, file: &Path, key: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    let prefix = format!("vip-bridge: {}: {key}: ", file.display());
    let line = stderr.lines().next().unwrap_or_default();
    assert!(
        line.starts_with(&prefix),
        "{what}: expected {prefix:?}..., got {stderr}"
    );
    assert!(line.contains("must be between"), "{what}: {stderr}");
}

#[test]
fn absurd_durations_are_config_errors_not_panics() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (i, (section, line, key)) in KEYS.iter().enumerate() {
        let file = dir.path().join(format!("absurd-{i}.toml"));
        let text = format!("{section}\n{}\n", line.replace("{}", ABSURD));
        std::fs::write(&file, &text).expect("write the config");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the config");
        let path = file.to_str().expect("a UTF-8 temporary path");

        let out = run(&["check-config", "--offline", "--config", path]);
        assert_config_error(&out, &file, key, &format!("check-config: {text}"));
        let out = run(&["serve", "--config", path]);
        assert_config_error(&out, &file, key, &format!("serve: {text}"));
    }
}
