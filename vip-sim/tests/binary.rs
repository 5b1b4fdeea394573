//! The `vip-sim` binary: gen-certs, serving from a TOML file, the JSON ready line, SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_vip-sim");

#[test]
fn help_works() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--config") && text.contains("gen-certs"),
        "{text}"
    );
    let out = std::process::Command::new(BIN).output().expect("run");
    assert!(!out.status.success(), "no --config must fail");
}

#[tokio::test]
async fn gen_certs_then_serve_then_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let out = std::process::Command::new(BIN)
        .arg("gen-certs")
        .arg(dir.path())
        .output()
        .expect("gen-certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stored = std::fs::read_to_string(dir.path().join("client.p12.password")).expect("pw");
    assert_eq!(printed, stored.trim());

    // Relative TLS paths resolve against the config file's directory.
    let cfg = dir.path().join("sim.toml");
    std::fs::write(
        &cfg,
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[tls]
cert = "server.pem"
key = "server.key"
client_ca = "ca.pem"

[[users]]
id = "alice"
[[users.credentials]]
id = "VSMT12345678"
totp_secret = "JBSWY3DPEHPK3PXP"
"#,
    )
    .expect("write config");
    let mut child = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("ready line in time")
        .expect("read")
        .expect("a line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
    let listen = v["listen"].as_str().expect("listen").to_string();
    let admin = v["admin"].as_str().expect("admin").to_string();
    assert!(
        listen.starts_with("127.0.0.1:") && !listen.ends_with(":0"),
        "{line}"
    );

    let ca = std::fs::read(dir.path().join("ca.pem")).expect("ca");
    let mut pem = std::fs::read(dir.path().join("client.key")).expect("key");
    pem.extend(std::fs::read(dir.path().join("client.pem")).expect("cert"));
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca"))
        .identity(reqwest::Identity::from_pem(&pem).expect("id"))
        .build()
        .expect("client");
    let body = "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><GetServerTimeRequest xmlns=\"https://schemas.symantec.com/vip/2011/04/vipuserservices\"><requestId>bin_test_1</requestId></GetServerTimeRequest></s:Body></s:Envelope>";
    // Through "localhost" so the DNS SAN is exercised too.
    let port = listen.rsplit(':').next().expect("port");
    let r = client
        .post(format!(
            "https://localhost:{port}/vipuserservices/QueryService_1_8"
        ))
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.expect("text");
    assert!(text.contains("<status>0000</status>"), "{text}");
    let v: serde_json::Value = reqwest::get(format!("http://{admin}/users/alice/code"))
        .await
        .expect("admin")
        .text()
        .await
        .map(|t| serde_json::from_str(&t).expect("json"))
        .expect("text");
    assert_eq!(v["code"].as_str().map(str::len), Some(6));

    let pid = child.id().expect("pid");
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}
