//! tb-sim over real HTTPS with the client certificate from `certs::generate`: the REST
//! authentication actions, the provisioning SOAP API, faults, counters and the admin API.

use std::time::Duration;

mod common;

use common::client_for;
use vip_sim::certs::CertPaths;
use vip_sim::{TbFaults, TbSim, TbSimConfig};

const SERVICE: u64 = 4242;
const SEED_A: &str = "3132333435363738393031323334353637383930";
const SEED_B: &str = "00112233445566778899aabbccddeeff00112233";

const USERS: &str = r#"
[server]
admin_listen = "127.0.0.1:0"
io_timeout_ms = 3000

[service]
id = 4242
max_users = 14
push_timeout = "800ms"

[[users]]
login = "alice"
id = 11
firstname = "Alice"
name = "Liddell"
mail = "alice@example.com"
phone = "33600000001"
[[users.tools]]
kind = "ma"
id = 501
name = "iPhone 6s"
alias = "f958aa01"
seed = "3132333435363738393031323334353637383930"
push_enabled = true
version = "4.0.14"
platform = "iphone"
[[users.tools]]
kind = "ca"
id = 601
name = "Helium Firefox"
alias = "ca601"
seed = "00112233445566778899aabbccddeeff00112233"

[[users]]
login = "user+tag@example.com"
[[users.tools]]
kind = "ma"
id = 502
alias = "tag502"
seed = "00112233445566778899aabbccddeeff00112233"
push_enabled = true

[[users]]
login = "bob"
[[users.tools]]
kind = "ma"
id = 503
alias = "bob503"
push_enabled = true
push = { action = "refuse" }

[[users]]
login = "carol"
[[users.tools]]
kind = "mac"
id = 701
alias = "carol701"
push_enabled = true
push = { action = "ignore" }

[[users]]
login = "dave"
[[users.tools]]
kind = "ma"
id = 504
alias = "dave504"
push_enabled = true
push = { action = "approve", after = "300ms" }

[[users]]
login = "erin"
[[users.tools]]
kind = "ma"
id = 505
alias = "erin505"
seed = "3132333435363738393031323334353637383930"
push_enabled = false

[[users]]
login = "frank"
[[users.tools]]
kind = "ca"
id = 602
alias = "frank602"
seed = "3132333435363738393031323334353637383930"

[[users]]
login = "gina"
status = 1
[[users.tools]]
kind = "ma"
id = 506
alias = "gina506"
seed = "3132333435363738393031323334353637383930"
push_enabled = true

[[users]]
login = "hank"

[[users]]
login = "ivy"
[[users.tools]]
kind = "ma"
id = 507
alias = "ivy507"
seed = "3132333435363738393031323334353637383930"
state = 1
push_enabled = true

[[users]]
login = "upper"
faults = { upper_case = true }
[[users.tools]]
kind = "ma"
id = 508
alias = "upper508"
"#;

struct H {
    sim: TbSim,
    client: reqwest::Client,
    certs: CertPaths,
    _dir: tempfile::TempDir,
}

fn config(certs: &CertPaths, extra: &str) -> TbSimConfig {
    let doc = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n{extra}",
        certs.server_cert, certs.server_key, certs.ca_cert
    );
    TbSimConfig::from_toml_str(&doc).expect("config")
}

async fn start_with(extra: &str) -> H {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = vip_sim::certs::generate(dir.path()).expect("certs");
    let sim = TbSim::start(config(&certs, extra)).await.expect("start");
    let client = client_for(&certs, true);
    H {
        sim,
        client,
        certs,
        _dir: dir,
    }
}

async fn start() -> H {
    start_with(USERS).await
}

/// A form-encoded query value (what a careful client sends).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl H {
    /// GET /FS with a raw query string; (HTTP status, body).
    async fn raw(&self, query: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}/FS?{query}", self.sim.base_url()))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// A REST call in JSON: action, userId and extra parameters, the right serviceId.
    async fn json(&self, action: &str, user: &str, extra: &[(&str, &str)]) -> serde_json::Value {
        let mut q = format!(
            "action={action}&serviceId={SERVICE}&userId={}&format=json",
            enc(user)
        );
        for (k, v) in extra {
            q.push_str(&format!("&{k}={}", enc(v)));
        }
        let (status, body) = self.raw(&q).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    async fn err(&self, action: &str, user: &str, extra: &[(&str, &str)]) -> String {
        let v = self.json(action, user, extra).await;
        v["err"].as_str().expect("err").to_string()
    }

    fn admin(&self) -> String {
        format!("http://{}", self.sim.admin_addr().expect("admin"))
    }
}

fn xml_fields(body: &str) -> (String, Vec<(String, String)>) {
    let root = vip_sim::xml::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{e}: {body}"));
    let fields = root
        .children
        .iter()
        .map(|c| (c.name.clone(), c.text.clone()))
        .collect();
    (root.name, fields)
}

#[tokio::test]
async fn otp_ok_in_json_and_xml_then_single_use() {
    let h = start().await;
    let code = h.sim.current_code("alice").expect("code");
    assert_eq!(code.len(), 6);
    assert_eq!(h.sim.tool_code("f958aa01").as_deref(), Some(code.as_str()));
    let v = h
        .json("authenticateExtended", "alice", &[("token", &code)])
        .await;
    assert_eq!(v["err"], "OK", "{v}");
    assert_eq!(v["name"], "iPhone 6s");
    assert_eq!(v["alias"], "f958aa01");
    assert_eq!(v["type"], "ma");
    assert_eq!(v["version"], "4.0.14");
    assert_eq!(v["platform"], "iphone");
    let ts = v["timestamp"].as_str().expect("timestamp");
    assert_eq!(ts.len(), 19, "{ts}");
    assert_eq!(&ts[4..5], "-");
    assert_eq!(&ts[10..11], " ");
    assert_eq!(&ts[13..14], ":");
    assert!(v.get("sessionId").is_none(), "{v}");
    // The same code again: refused (single use).
    assert_eq!(
        h.err("authenticateExtended", "alice", &[("token", &code)])
            .await,
        "NOK:no device found"
    );
    // The desktop app's code works (XML this time); absent values are left out.
    let ca = h.sim.tool_code("ca601").expect("ca code");
    let (status, body) = h
        .raw(&format!(
            "action=authenticateExtended&serviceId={SERVICE}&userId=alice&token={ca}"
        ))
        .await;
    assert_eq!(status, 200);
    let (root, fields) = xml_fields(&body);
    assert_eq!(root, "authenticateExtended");
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("err"), Some("OK"));
    assert_eq!(get("alias"), Some("ca601"));
    assert_eq!(get("type"), Some("ca"));
    assert_eq!(get("version"), None, "{body}");
    assert_eq!(get("platform"), None, "{body}");
    assert!(get("timestamp").is_some());
    assert_eq!(h.sim.counters().calls("authenticateExtended"), 3);
}

#[tokio::test]
async fn otp_failures_and_json_nulls() {
    let h = start().await;
    let v = h
        .json("authenticateExtended", "alice", &[("token", "000000")])
        .await;
    let wrong = if h.sim.current_code("alice").as_deref() == Some("000000") {
        "111111"
    } else {
        "000000"
    };
    let v = if v["err"] == "OK" {
        h.json("authenticateExtended", "alice", &[("token", wrong)])
            .await
    } else {
        v
    };
    assert_eq!(v["err"], "NOK:no device found");
    for k in ["name", "alias", "version", "platform", "type", "timestamp"] {
        assert!(v[k].is_null(), "{k} must be null: {v}");
        assert!(v.get(k).is_some(), "{k} must be present: {v}");
    }
    // Unknown login, blocked login, a locked tool, a tool without the code.
    assert_eq!(
        h.err("authenticateExtended", "nobody", &[("token", "123456")])
            .await,
        "NOK:account unknown"
    );
    let gina = h.sim.tool_code("gina506").expect("code");
    assert_eq!(
        h.err("authenticateExtended", "gina", &[("token", &gina)])
            .await,
        "NOK:account locked"
    );
    let ivy = h.sim.tool_code("ivy507").expect("code");
    assert_eq!(
        h.sim.current_code("ivy"),
        None,
        "a locked tool shows no code"
    );
    assert_eq!(
        h.err("authenticateExtended", "ivy", &[("token", &ivy)])
            .await,
        "NOK:no device found"
    );
    // The fault variant with a trailing space.
    h.sim.set_global_faults(TbFaults {
        account_unknown_trailing_space: true,
        ..TbFaults::default()
    });
    assert_eq!(
        h.err("authenticateExtended", "nobody", &[("token", "123456")])
            .await,
        "NOK:account unknown "
    );
}

#[tokio::test]
async fn url_encoded_login_and_literal_plus() {
    let h = start().await;
    let code = h.sim.current_code("user+tag@example.com").expect("code");
    let (_, body) = h
        .raw(&format!(
            "action=authenticateExtended&serviceId={SERVICE}&userId=user%2Btag%40example.com&token={code}&format=json"
        ))
        .await;
    assert!(body.contains("\"err\":\"OK\""), "{body}");
    // A literal '+' decodes to a space: another (unknown) login.
    let code = h.sim.current_code("user+tag@example.com").expect("code");
    let (_, body) = h
        .raw(&format!(
            "action=authenticateExtended&serviceId={SERVICE}&userId=user+tag@example.com&token={code}&format=json"
        ))
        .await;
    assert!(body.contains("NOK:account unknown"), "{body}");
}

#[tokio::test]
async fn syntax_and_service_errors() {
    let h = start().await;
    for q in [
        format!("action=nosuch&serviceId={SERVICE}&userId=alice&format=json"),
        format!("serviceId={SERVICE}&userId=alice&format=json"),
        "action=authenticateExtended&userId=alice&token=123456&format=json".to_string(),
        "action=authenticateExtended&serviceId=abc&userId=alice&token=123456&format=json"
            .to_string(),
        format!("action=authenticateExtended&serviceId={SERVICE}&token=123456&format=json"),
        format!("action=authenticateExtended&serviceId={SERVICE}&userId=alice&format=json"),
        format!("action=checkPushResult&serviceId={SERVICE}&userId=alice&format=json"),
        format!(
            "action=pushAuthenticate&serviceId={SERVICE}&userId=alice&withoutpin=2&format=json"
        ),
        format!(
            "action=authenticateExtended&serviceId={SERVICE}&userId=alice&userId=bob&token=1&format=json"
        ),
    ] {
        let (status, body) = h.raw(&q).await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["err"], "NOK:SN", "{q}: {body}");
    }
    // XML form of NOK:SN.
    let (_, body) = h.raw("action=nosuch").await;
    assert!(body.contains("<err>NOK:SN</err>"), "{body}");
    // Wrong serviceId.
    let (_, body) = h
        .raw("action=pushAuthenticate&serviceId=1&userId=alice&format=json")
        .await;
    assert!(body.contains("\"err\":\"NOK:srv unknown\""), "{body}");
    h.sim.set_global_faults(TbFaults {
        access_forbidden: true,
        ..TbFaults::default()
    });
    let (_, body) = h
        .raw("action=pushAuthenticate&serviceId=1&userId=alice&format=json")
        .await;
    assert!(body.contains("\"err\":\"NOK:access forbidden\""), "{body}");
    // Only GET, only /FS.
    let r = h
        .client
        .post(format!("{}/FS?action=pushAuthenticate", h.sim.base_url()))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 405);
    let r = h
        .client
        .get(format!("{}/other", h.sim.base_url()))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 404);
}

async fn poll_until_final(h: &H, user: &str, sid: &str) -> (String, u32, serde_json::Value) {
    let mut waits = 0;
    loop {
        let v = h.json("checkPushResult", user, &[("sessionId", sid)]).await;
        let err = v["err"].as_str().expect("err").to_string();
        if err != "NOK:WAITING" {
            return (err, waits, v);
        }
        waits += 1;
        assert!(waits < 100, "never final");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn push_approve_refuse_timeout_and_sessions() {
    let h = start().await;
    // Approve at once.
    let v = h
        .json("pushAuthenticate", "alice", &[("context", "VPN login")])
        .await;
    assert_eq!(v["err"], "OK", "{v}");
    assert_eq!(v["alias"], "f958aa01");
    assert_eq!(v["type"], "ma");
    let sid = v["sessionId"].as_str().expect("sessionId").to_string();
    assert!(sid.len() >= 16);
    // Another user's sessionId: bare NOK (and the session is not consumed).
    assert_eq!(
        h.err("checkPushResult", "bob", &[("sessionId", &sid)])
            .await,
        "NOK"
    );
    let (err, _, v) = poll_until_final(&h, "alice", &sid).await;
    assert_eq!(err, "OK");
    assert_eq!(v["alias"], "f958aa01");
    assert!(v["timestamp"].is_string());
    // The session is over now; unknown sessionIds are bare NOK too.
    assert_eq!(
        h.err("checkPushResult", "alice", &[("sessionId", &sid)])
            .await,
        "NOK"
    );
    assert_eq!(
        h.err("checkPushResult", "alice", &[("sessionId", "deadbeef")])
            .await,
        "NOK"
    );
    // Approve after 300 ms: WAITING first.
    let v = h
        .json("pushAuthenticate", "dave", &[("withoutpin", "1")])
        .await;
    let sid = v["sessionId"].as_str().expect("sid").to_string();
    let (err, waits, _) = poll_until_final(&h, "dave", &sid).await;
    assert_eq!(err, "OK");
    assert!(waits >= 2, "{waits}");
    // Refuse.
    let v = h.json("pushAuthenticate", "bob", &[]).await;
    let sid = v["sessionId"].as_str().expect("sid").to_string();
    assert_eq!(poll_until_final(&h, "bob", &sid).await.0, "NOK:REFUSED");
    // Ignore: WAITING until push_timeout (800 ms), then TIMEOUT.
    let t0 = std::time::Instant::now();
    let v = h.json("pushAuthenticate", "carol", &[]).await;
    assert_eq!(v["type"], "mac");
    let sid = v["sessionId"].as_str().expect("sid").to_string();
    let (err, waits, v) = poll_until_final(&h, "carol", &sid).await;
    assert_eq!(err, "NOK:TIMEOUT");
    assert!(waits >= 5, "{waits}");
    assert!(t0.elapsed() >= Duration::from_millis(800));
    assert!(v["alias"].is_null());
    let c = h.sim.counters();
    assert_eq!(c.calls("pushAuthenticate"), 4);
    assert!(c.calls("checkPushResult") >= 12);
}

#[tokio::test]
async fn push_errors_and_case_variants() {
    let h = start().await;
    let v = h.json("pushAuthenticate", "nobody", &[]).await;
    assert_eq!(v["err"], "NOK:NOLOGIN");
    assert!(
        v["sessionId"].is_null() && v.get("sessionId").is_some(),
        "{v}"
    );
    assert_eq!(h.err("pushAuthenticate", "erin", &[]).await, "NOK:NoPush");
    assert_eq!(h.err("pushAuthenticate", "frank", &[]).await, "NOK:NoMA");
    assert_eq!(h.err("pushAuthenticate", "hank", &[]).await, "NOK:NoMA");
    assert_eq!(h.err("pushAuthenticate", "ivy", &[]).await, "NOK:NoMA");
    assert_eq!(
        h.err("pushAuthenticate", "gina", &[]).await,
        "NOK:account locked"
    );
    // Per-user upper case (config), then globally (faults).
    assert_eq!(h.err("pushAuthenticate", "upper", &[]).await, "NOK:NOPUSH");
    h.sim.set_global_faults(TbFaults {
        upper_case: true,
        ..TbFaults::default()
    });
    assert_eq!(h.err("pushAuthenticate", "erin", &[]).await, "NOK:NOPUSH");
    assert_eq!(h.err("pushAuthenticate", "frank", &[]).await, "NOK:NOMA");
    h.sim.set_global_faults(TbFaults::default());
    assert!(h.sim.set_user_faults(
        "erin",
        TbFaults {
            upper_case: true,
            ..TbFaults::default()
        }
    ));
    assert_eq!(h.err("pushAuthenticate", "erin", &[]).await, "NOK:NOPUSH");
    assert_eq!(h.err("pushAuthenticate", "frank", &[]).await, "NOK:NoMA");
    assert!(!h.sim.set_user_faults("nobody", TbFaults::default()));
}

#[tokio::test]
async fn forced_errs_reach_every_reference_status() {
    let h = start().await;
    for e in [
        "NOK:WAITING",
        "NOK:REFUSED",
        "NOK:TIMEOUT",
        "NOK:no device found",
        "NOK:account unknown ",
        "NOK:NOLOGIN",
        "NOK:NoPush",
        "NOK:NOPUSH",
        "NOK:NoMA",
        "NOK:NOMA",
        "NOK:SN",
        "NOK:srv unknown",
        "NOK:access forbidden",
        "NOK",
        "NOK:account locked",
    ] {
        h.sim.set_global_faults(TbFaults {
            err: [("checkPushResult".to_string(), e.to_string())].into(),
            err_times: 1,
            ..TbFaults::default()
        });
        assert_eq!(
            h.err("checkPushResult", "alice", &[("sessionId", "x")])
                .await,
            e
        );
        // err_times = 1: the next call runs normally.
        assert_eq!(
            h.err("checkPushResult", "alice", &[("sessionId", "x")])
                .await,
            "NOK"
        );
    }
    // A user's forced err wins, for that user only.
    assert!(h.sim.set_user_faults(
        "bob",
        TbFaults {
            err: [("pushAuthenticate".to_string(), "NOK:forced".to_string())].into(),
            ..TbFaults::default()
        }
    ));
    assert_eq!(h.err("pushAuthenticate", "bob", &[]).await, "NOK:forced");
    assert_eq!(h.err("pushAuthenticate", "bob", &[]).await, "NOK:forced");
    assert_eq!(h.err("pushAuthenticate", "alice", &[]).await, "OK");
}

#[tokio::test]
async fn transport_faults() {
    let h = start().await;
    h.sim.set_global_faults(TbFaults {
        http_status: Some(503),
        ..TbFaults::default()
    });
    let (status, _) = h.raw("action=pushAuthenticate&userId=alice").await;
    assert_eq!(status, 503);
    h.sim.set_global_faults(TbFaults {
        connection_drop: true,
        ..TbFaults::default()
    });
    let r = h
        .client
        .get(format!(
            "{}/FS?action=pushAuthenticate&userId=alice",
            h.sim.base_url()
        ))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
    h.sim.set_global_faults(TbFaults {
        latency_ms: 200,
        ..TbFaults::default()
    });
    let t0 = std::time::Instant::now();
    assert_eq!(h.err("pushAuthenticate", "alice", &[]).await, "OK");
    assert!(t0.elapsed() >= Duration::from_millis(200));
    h.sim.set_global_faults(TbFaults::default());
    assert!(h.sim.set_user_faults(
        "alice",
        TbFaults {
            http_status: Some(500),
            ..TbFaults::default()
        }
    ));
    let (status, _) = h
        .raw(&format!(
            "action=pushAuthenticate&serviceId={SERVICE}&userId=alice"
        ))
        .await;
    assert_eq!(status, 500);
    assert_eq!(h.err("pushAuthenticate", "bob", &[]).await, "OK");
}

#[tokio::test]
async fn client_certificate_required() {
    let h = start().await;
    let anon = client_for(&h.certs, false);
    let r = anon
        .get(format!("{}/FS?action=pushAuthenticate", h.sim.base_url()))
        .send()
        .await;
    assert!(r.is_err(), "no client certificate must be refused: {r:?}");
    let other = tempfile::tempdir().expect("dir");
    let mut other_certs = vip_sim::certs::generate(other.path()).expect("certs");
    other_certs.ca_cert = h.certs.ca_cert.clone();
    let r = client_for(&other_certs, true)
        .get(format!("{}/FS?action=pushAuthenticate", h.sim.base_url()))
        .send()
        .await;
    assert!(r.is_err(), "a foreign client certificate must be refused");
    assert_eq!(h.sim.counters().tls_handshakes, 0);
}

#[tokio::test]
async fn admin_api() {
    let h = start().await;
    let admin = h.admin();
    let http = reqwest::Client::new();
    let code: serde_json::Value = http
        .get(format!("{admin}/users/user%2Btag%40example.com/code"))
        .send()
        .await
        .expect("admin")
        .text()
        .await
        .map(|t| serde_json::from_str(&t).expect("json"))
        .expect("body");
    assert_eq!(
        code["code"].as_str(),
        h.sim.current_code("user+tag@example.com").as_deref()
    );
    let code: serde_json::Value = http
        .get(format!("{admin}/tools/ca601/code"))
        .send()
        .await
        .expect("admin")
        .text()
        .await
        .map(|t| serde_json::from_str(&t).expect("json"))
        .expect("body");
    assert_eq!(code["code"].as_str(), h.sim.tool_code("ca601").as_deref());
    let r = http
        .get(format!("{admin}/users/hank/code"))
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status().as_u16(), 404);
    // Faults through the admin API.
    let r = http
        .post(format!("{admin}/faults"))
        .body(r#"{"upper_case": true}"#)
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(h.err("pushAuthenticate", "erin", &[]).await, "NOK:NOPUSH");
    let f: serde_json::Value = http
        .get(format!("{admin}/faults"))
        .send()
        .await
        .expect("admin")
        .text()
        .await
        .map(|t| serde_json::from_str(&t).expect("json"))
        .expect("body");
    assert_eq!(f["upper_case"], true);
    for bad in [r#"{"nope": 1}"#, r#"{"err": {"login": "NOK"}}"#] {
        let r = http
            .post(format!("{admin}/faults"))
            .body(bad)
            .send()
            .await
            .expect("admin");
        assert_eq!(r.status().as_u16(), 400, "{bad}");
    }
    let r = http
        .post(format!("{admin}/users/bob/faults"))
        .body(r#"{"err": {"pushAuthenticate": "NOK:x"}, "err_times": 1}"#)
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(h.err("pushAuthenticate", "bob", &[]).await, "NOK:x");
    let r = http
        .post(format!("{admin}/users/nobody/faults"))
        .body("")
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status().as_u16(), 404);
    // Counters and their reset.
    let c: serde_json::Value = http
        .get(format!("{admin}/counters"))
        .send()
        .await
        .expect("admin")
        .text()
        .await
        .map(|t| serde_json::from_str(&t).expect("json"))
        .expect("body");
    assert_eq!(c["calls"]["pushAuthenticate"], 2);
    assert!(c["tls_handshakes"].as_u64() >= Some(1));
    http.post(format!("{admin}/counters/reset"))
        .send()
        .await
        .expect("admin");
    assert_eq!(h.sim.counters().total_calls(), 0);
}

#[test]
fn config_validation_names_the_key() {
    let base = "[tls]\ncert='a'\nkey='b'\nclient_ca='c'\n[service]\nid = 1\n";
    let ok = TbSimConfig::from_toml_str(base).expect("minimal");
    assert_eq!(ok.service.push_timeout, Duration::from_secs(60));
    assert_eq!(ok.service.max_users, 1000);
    for (bad, key) in [
        ("[[users]]\nlogin = 'a'\nnope = 1\n", "nope"),
        ("[[users]]\nlogin = \"a\\u0007\"\n", "login"),
        ("[[users]]\nlogin = 'a'\nstatus = 2\n", "status"),
        ("[[users]]\nlogin = 'a'\nrole = 3\n", "role"),
        ("[[users]]\nlogin = 'a'\n[[users]]\nlogin = 'a'\n", "twice"),
        (
            "[[users]]\nlogin = 'a'\n[[users.tools]]\nkind = 'xx'\nid = 1\nalias = 'x'\n",
            "kind",
        ),
        (
            "[[users]]\nlogin = 'a'\n[[users.tools]]\nkind = 'ma'\nid = 1\nalias = 'x'\nseed = 'zz'\n",
            "seed",
        ),
        (
            "[[users]]\nlogin = 'a'\n[[users.tools]]\nkind = 'ma'\nid = 1\nalias = 'x'\nstate = 4\n",
            "state",
        ),
        (
            "[[users]]\nlogin = 'a'\n[[users.tools]]\nkind = 'ca'\nid = 1\nalias = 'x'\npush_enabled = true\n",
            "push_enabled",
        ),
        (
            "[[users]]\nlogin = 'a'\n[[users.tools]]\nkind = 'ma'\nid = 1\nalias = 'x'\npush = { action = 'maybe' }\n",
            "push.action",
        ),
        (
            "[[users]]\nlogin = 'a'\n[[users.tools]]\nkind = 'ma'\nid = 1\nalias = 'x'\npush = { after = 'soon' }\n",
            "after",
        ),
        ("[faults]\nerr = { login = 'NOK' }\n", "faults.err"),
        ("[faults]\nhttp_status = 200\n", "http_status"),
    ] {
        let e = TbSimConfig::from_toml_str(&format!("{base}{bad}"))
            .expect_err(bad)
            .to_string();
        assert!(e.contains(key), "{bad}: {e}");
    }
    let e = TbSimConfig::from_toml_str(&format!(
        "{}[service]\nid = 1\nmax_users = 1\n[[users]]\nlogin='a'\n[[users]]\nlogin='b'\n",
        "[tls]\ncert='a'\nkey='b'\nclient_ca='c'\n"
    ))
    .expect_err("max_users")
    .to_string();
    assert!(e.contains("max_users"), "{e}");
    // The unused seed constants are the same as the config's.
    assert!(USERS.contains(SEED_A) && USERS.contains(SEED_B));
}

// ---- provisioning SOAP (seed 003) ----

/// One provisioning call; `args` are the operation's children (in the console namespace).
async fn soap(h: &H, op: &str, args: &str) -> (u16, String) {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
         xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:con=\"http://console.inwebo.com\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>\
         <con:{op}>{args}</con:{op}></soapenv:Body></soapenv:Envelope>"
    );
    raw_soap(h, body).await
}

async fn raw_soap(h: &H, body: String) -> (u16, String) {
    let r = h
        .client
        .post(format!("{}/v2/services/ConsoleAdmin", h.sim.base_url()))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

/// `<con:name>value</con:name>` for each pair.
fn a(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("<con:{k}>{v}</con:{k}>"))
        .collect()
}

/// The children of `<opReturn>` (a record) as (name, text), or its text (a string result).
struct Ret {
    fields: Vec<(String, String)>,
    text: String,
}

impl Ret {
    fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, name: &str) -> &str {
        let v = self.all(name);
        assert_eq!(v.len(), 1, "{name}: {:?}", self.fields);
        v[0]
    }
}

async fn call(h: &H, op: &str, args: &str) -> Ret {
    let (status, body) = soap(h, op, args).await;
    assert_eq!(status, 200, "{body}");
    let root = vip_sim::xml::parse(body.as_bytes()).expect("xml");
    let resp = root.children[0].children[0].clone();
    assert_eq!(resp.name, format!("{op}Response"));
    assert_eq!(resp.ns.as_deref(), Some(vip_sim::trustbuilder::CONSOLE_NS));
    let ret = &resp.children[0];
    assert_eq!(ret.name, format!("{op}Return"));
    Ret {
        fields: ret
            .children
            .iter()
            .map(|c| (c.name.clone(), c.text.clone()))
            .collect(),
        text: ret.text.clone(),
    }
}

fn search(login: &str, exact: u8, offset: u32, nmax: u32, sort: u8) -> String {
    a(&[
        ("userid", "0"),
        ("serviceid", "4242"),
        ("loginname", login),
        ("exactmatch", &exact.to_string()),
        ("offset", &offset.to_string()),
        ("nmax", &nmax.to_string()),
        ("sort", &sort.to_string()),
    ])
}

#[tokio::test]
async fn provisioning_lookup_parallel_arrays() {
    let h = start().await;
    let r = call(&h, "loginSearch", &search("alice", 1, 0, 10, 0)).await;
    assert_eq!(r.one("err"), "OK");
    assert_eq!(r.one("n"), "1");
    assert_eq!(r.one("id"), "11");
    assert_eq!(r.one("login"), "alice");
    assert_eq!(r.one("code"), "ok");
    assert_eq!(r.one("status"), "0");
    assert_eq!(r.one("activation_status"), "3", "ma + ca active");
    assert!(r.all("count").is_empty(), "loginSearch has no count");
    // Substring search, sorted by login: parallel arrays, n entries each.
    let r = call(&h, "loginSearch", &search("a", 0, 0, 100, 1)).await;
    let logins = r.all("login");
    assert_eq!(
        logins,
        [
            "alice",
            "carol",
            "dave",
            "frank",
            "gina",
            "hank",
            "user+tag@example.com"
        ]
    );
    assert_eq!(r.one("n"), "7");
    for col in [
        "id",
        "code",
        "status",
        "role",
        "firstname",
        "name",
        "mail",
        "phone",
    ] {
        assert_eq!(r.all(col).len(), 7, "{col}");
    }
    assert_eq!(
        r.all("activation_status"),
        ["3", "0", "1", "2", "1", "0", "1"],
        "mAccess is not in the mask"
    );
    // Nil strings: carol has no mail.
    let (_, body) = soap(&h, "loginSearch", &search("carol", 1, 0, 10, 0)).await;
    assert!(body.contains("<mail xsi:nil=\"true\"/>"), "{body}");
    // loginQuery: tools as ca*/ma*/mac*/va* parallel arrays.
    let r = call(&h, "loginQuery", &a(&[("userid", "0"), ("loginid", "11")])).await;
    assert_eq!(r.one("err"), "OK");
    assert_eq!(r.one("login"), "alice");
    assert_eq!(r.one("nma"), "1");
    assert_eq!(r.one("maid"), "501");
    assert_eq!(r.one("maname"), "iPhone 6s");
    assert_eq!(r.one("maalias"), "f958aa01");
    assert_eq!(r.one("mastate"), "0");
    assert_eq!(r.one("mapushenabled"), "1");
    assert_eq!(r.one("nca"), "1");
    assert_eq!(r.one("caid"), "601");
    assert_eq!(r.one("nmac"), "0");
    assert_eq!(r.one("nva"), "0");
    assert!(r.all("macid").is_empty() && r.all("phone").is_empty());
    let ivy_id = {
        let r = call(&h, "loginSearch", &search("ivy", 1, 0, 10, 0)).await;
        r.one("id").to_string()
    };
    let r = call(
        &h,
        "loginQuery",
        &a(&[("userid", "0"), ("loginid", &ivy_id)]),
    )
    .await;
    assert_eq!(r.one("mastate"), "1");
    let r = call(
        &h,
        "loginQuery",
        &a(&[("userid", "0"), ("loginid", "99999")]),
    )
    .await;
    assert!(r.one("err").starts_with("NOK"));
    assert_eq!(h.sim.counters().calls("loginSearch"), 4);
    assert_eq!(h.sim.counters().calls("loginQuery"), 3);
}

#[tokio::test]
async fn provisioning_paging_and_checks() {
    let h = start().await;
    let q = |offset: &str, nmax: &str, sort: &str| {
        a(&[
            ("userid", "0"),
            ("serviceid", "4242"),
            ("offset", offset),
            ("nmax", nmax),
            ("sort", sort),
        ])
    };
    let r = call(&h, "loginsQuery", &q("2", "3", "1")).await;
    assert_eq!(r.one("err"), "OK");
    assert_eq!(r.one("n"), "3");
    assert_eq!(r.one("count"), "11");
    assert_eq!(r.all("login"), ["carol", "dave", "erin"]);
    assert_eq!(r.all("createdby").len(), 3);
    let r = call(&h, "loginsQuery", &q("9", "5", "2")).await;
    assert_eq!(r.one("n"), "2");
    assert_eq!(r.all("login"), ["bob", "alice"], "sort 2: descending");
    let r = call(&h, "loginsQuery", &q("0", "0", "0")).await;
    assert_eq!(r.one("n"), "11", "nmax 0: the default page");
    let r = call(&h, "loginsQuery", &q("0", "10", "9")).await;
    assert!(r.one("err").starts_with("NOK"));
    // userid must be 0; the serviceid is checked.
    let bad = a(&[
        ("userid", "7"),
        ("serviceid", "4242"),
        ("offset", "0"),
        ("nmax", "10"),
        ("sort", "0"),
    ]);
    let r = call(&h, "loginsQuery", &bad).await;
    assert!(r.one("err").starts_with("NOK"), "{:?}", r.fields);
    assert_eq!(r.one("n"), "0");
    assert!(r.all("login").is_empty());
    let r = call(
        &h,
        "loginSearch",
        &search("alice", 1, 0, 10, 0).replace(">4242<", ">1<"),
    )
    .await;
    assert_eq!(r.one("err"), "NOK:srv unknown");
    let r = call(
        &h,
        "loginDelete",
        &a(&[("userid", "1"), ("serviceid", "4242"), ("loginid", "11")]),
    )
    .await;
    assert!(r.text.starts_with("NOK"), "{}", r.text);
    assert!(h.sim.login_exists("alice"));
    // SOAP Faults (HTTP 500), as Axis: malformed envelope, unknown operation, wrong
    // namespace, a non-numeric long, a missing mandatory parameter, an unknown element.
    let (status, body) = raw_soap(&h, "<soapenv:Envelope".into()).await;
    assert_eq!(status, 500);
    assert!(body.contains("<soapenv:Fault>"), "{body}");
    for (op, args) in [
        ("loginFrobnicate", a(&[("userid", "0")])),
        (
            "loginSearch",
            search("alice", 1, 0, 10, 0).replace("<con:offset>0", "<con:offset>x"),
        ),
        ("loginQuery", a(&[("userid", "0")])),
        (
            "loginQuery",
            a(&[("userid", "0"), ("loginid", "11"), ("bogus", "1")]),
        ),
    ] {
        let (status, body) = soap(&h, op, &args).await;
        assert_eq!(status, 500, "{op}: {body}");
        assert!(body.contains("<faultcode>"), "{body}");
    }
    let (status, _) = raw_soap(
        &h,
        "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><loginQuery xmlns=\"http://other\"><userid>0</userid><loginid>11</loginid></loginQuery></s:Body></s:Envelope>".into(),
    )
    .await;
    assert_eq!(status, 500);
    // Unqualified children are accepted (Axis is lenient there) and nil optional strings too.
    let (status, body) = raw_soap(
        &h,
        "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><s:Body><loginQuery xmlns=\"http://console.inwebo.com\"><userid xmlns=\"\">0</userid><loginid>11</loginid></loginQuery></s:Body></s:Envelope>".into(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<err>OK</err>"), "{body}");
}

fn create(login: &str, codetype: u8) -> String {
    a(&[
        ("userid", "0"),
        ("serviceid", "4242"),
        ("login", login),
        ("firstname", "New"),
        ("name", "User"),
        ("mail", "new@example.com"),
        ("phone", "336"),
        ("status", "0"),
        ("role", "0"),
        ("access", "1"),
        ("codetype", &codetype.to_string()),
        ("lang", "en"),
    ]) + "<con:extrafields xsi:nil=\"true\"/>"
}

#[tokio::test]
async fn provisioning_administration() {
    let h = start().await;
    // loginCreate codetype 0: a 9-digit code, valid now.
    let r = call(&h, "loginCreate", &create("new.user", 0)).await;
    assert_eq!(r.one("err"), "OK");
    let code = r.one("code").to_string();
    assert_eq!(code.len(), 9);
    let id = r.one("id").to_string();
    assert!(h.sim.login_exists("new.user"));
    let s = call(&h, "loginSearch", &search("new.user", 1, 0, 10, 0)).await;
    assert_eq!(s.one("code"), code);
    assert_eq!(s.one("id"), id);
    let r = call(&h, "loginCreate", &create("new.user", 0)).await;
    assert_eq!(r.one("err"), "NOK:loginexists");
    let r = call(&h, "loginCreate", &create("bad/login", 0)).await;
    assert!(r.one("err").starts_with("NOK"), "{:?}", r.fields);
    let r = call(&h, "loginCreate", &create("x", 3)).await;
    assert!(r.one("err").starts_with("NOK"));
    // codetype 1: inactive until loginActivateCode.
    let r = call(&h, "loginCreate", &create("later", 1)).await;
    let later_id = r.one("id").to_string();
    let code1 = r.one("code").to_string();
    let s = call(&h, "loginSearch", &search("later", 1, 0, 10, 0)).await;
    assert_eq!(s.one("code"), format!("in:{code1}"));
    let lid = a(&[
        ("userid", "0"),
        ("serviceid", "4242"),
        ("loginid", &later_id),
    ]);
    assert_eq!(call(&h, "loginActivateCode", &lid).await.text, code1);
    assert_eq!(call(&h, "loginActivateCode", &lid).await.text, "NOK");
    // codetype 2: a link; loginQuery carries the long code.
    let r = call(&h, "loginCreate", &create("linked", 2)).await;
    let linked_id = r.one("id").to_string();
    let s = call(&h, "loginSearch", &search("linked", 1, 0, 10, 0)).await;
    assert_eq!(s.one("code"), "link");
    let q = call(
        &h,
        "loginQuery",
        &a(&[("userid", "0"), ("loginid", &linked_id)]),
    )
    .await;
    assert_eq!(q.one("longcode"), r.one("code"));
    assert_eq!(q.one("createdby"), "1");
    // max_users = 14: 11 configured + 3 created; the next is NOK:full.
    let r = call(&h, "loginCreate", &create("one.more", 0)).await;
    assert_eq!(r.one("err"), "NOK:full");
    // loginUpdate: renaming onto another login is refused.
    let upd = |login: &str| {
        a(&[
            ("userid", "0"),
            ("serviceid", "4242"),
            ("loginid", &later_id),
            ("login", login),
            ("status", "1"),
            ("role", "1"),
        ])
    };
    assert_eq!(
        call(&h, "loginUpdate", &upd("alice")).await.text,
        "NOK:login already used"
    );
    assert_eq!(call(&h, "loginUpdate", &upd("later2")).await.text, "OK");
    assert!(h.sim.login_exists("later2") && !h.sim.login_exists("later"));
    let s = call(&h, "loginSearch", &search("later2", 1, 0, 10, 0)).await;
    assert_eq!((s.one("status"), s.one("role")), ("1", "1"));
    // String results.
    // loginUpdate replaces every field: the omitted mail is gone now.
    assert_eq!(call(&h, "loginSendByMail", &lid).await.text, "NOK");
    let linked = a(&[
        ("userid", "0"),
        ("serviceid", "4242"),
        ("loginid", &linked_id),
    ]);
    assert_eq!(call(&h, "loginSendByMail", &linked).await.text, "OK");
    let bob = call(&h, "loginSearch", &search("bob", 1, 0, 10, 0))
        .await
        .one("id")
        .to_string();
    let bid = a(&[("userid", "0"), ("serviceid", "4242"), ("loginid", &bob)]);
    assert_eq!(
        call(&h, "loginSendByMail", &bid).await.text,
        "NOK",
        "bob has no mail"
    );
    let restore = call(&h, "loginRestore", &bid).await.text;
    assert!(restore.len() == 9 && restore.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(call(&h, "loginResetPwd", &bid).await.text, "OK");
    let with_ct = |ct: &str| bid.clone() + &a(&[("codetype", ct)]);
    for op in ["loginResetPwdExtended", "loginAddDevice"] {
        let c = call(&h, op, &with_ct("0")).await.text;
        assert!(
            c.bytes().all(|b| b.is_ascii_digit()) && !c.is_empty(),
            "{op}: {c}"
        );
        assert!(call(&h, op, &with_ct("1")).await.text.starts_with("NOK"));
    }
    assert_eq!(call(&h, "loginResetPINErrorCounter", &bid).await.text, "OK");
    assert!(call(&h, "loginResetPINErrorCounter", &bid)
        .await
        .text
        .starts_with("NOK"));
    // Tools: rename, then delete alice's mobile app; push then has no app.
    let tool = |name: Option<&str>, kind: &str| {
        let mut s = a(&[
            ("userid", "0"),
            ("serviceid", "4242"),
            ("toolid", "501"),
            ("tooltype", kind),
        ]);
        if let Some(n) = name {
            s += &a(&[("name", n)]);
        }
        s
    };
    assert_eq!(
        call(&h, "loginUpdateTool", &tool(Some("Pixel"), "ma"))
            .await
            .text,
        "OK"
    );
    assert!(call(&h, "loginUpdateTool", &tool(Some("Pixel"), "va"))
        .await
        .text
        .starts_with("NOK"));
    let q = call(&h, "loginQuery", &a(&[("userid", "0"), ("loginid", "11")])).await;
    assert_eq!(q.one("maname"), "Pixel");
    assert_eq!(
        call(&h, "loginDeleteTool", &tool(None, "ma")).await.text,
        "OK"
    );
    assert!(call(&h, "loginDeleteTool", &tool(None, "ma"))
        .await
        .text
        .starts_with("NOK"));
    assert_eq!(h.err("pushAuthenticate", "alice", &[]).await, "NOK:NoMA");
    // loginDelete.
    let did = a(&[("userid", "0"), ("serviceid", "4242"), ("loginid", &id)]);
    assert_eq!(call(&h, "loginDelete", &did).await.text, "OK");
    assert_eq!(call(&h, "loginDelete", &did).await.text, "NOK");
    assert!(!h.sim.login_exists("new.user"));
    // A forced err on a provisioning operation.
    h.sim.set_global_faults(TbFaults {
        err: [("loginSearch".to_string(), "NOK:forced".to_string())].into(),
        err_times: 1,
        ..TbFaults::default()
    });
    let r = call(&h, "loginSearch", &search("bob", 1, 0, 10, 0)).await;
    assert_eq!((r.one("err"), r.one("n")), ("NOK:forced", "0"));
    let r = call(&h, "loginSearch", &search("bob", 1, 0, 10, 0)).await;
    assert_eq!(r.one("err"), "OK");
}

#[tokio::test]
async fn tb_sim_binary_serves_until_sigterm() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    const BIN: &str = env!("CARGO_BIN_EXE_tb-sim");
    let dir = tempfile::tempdir().expect("dir");
    let out = std::process::Command::new(BIN)
        .arg("gen-certs")
        .arg(dir.path())
        .output()
        .expect("gen-certs");
    assert!(out.status.success());
    let cfg = dir.path().join("tb.toml");
    std::fs::write(
        &cfg,
        "[tls]\ncert = \"server.pem\"\nkey = \"server.key\"\nclient_ca = \"ca.pem\"\n\
         [service]\nid = 4242\n[[users]]\nlogin = \"alice\"\n",
    )
    .expect("write");
    let bad = std::process::Command::new(BIN)
        .args(["--config", "/nonexistent.toml"])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.starts_with("tb-sim: ") && err.trim().lines().count() == 1,
        "{err}"
    );
    let mut child = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["--admin-listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("ready line")
    .expect("read")
    .expect("line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    let listen = v["listen"].as_str().expect("listen");
    assert!(v["admin"].is_string(), "{line}");
    let certs = CertPaths {
        ca_cert: dir.path().join("ca.pem"),
        client_cert: dir.path().join("client.pem"),
        client_key: dir.path().join("client.key"),
        ..vip_sim::certs::generate(tempfile::tempdir().expect("d").path()).expect("certs")
    };
    let body = client_for(&certs, true)
        .get(format!(
            "https://{listen}/FS?action=pushAuthenticate&serviceId=4242&userId=alice&format=json"
        ))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(body.contains("NOK:NoMA"), "{body}");
    let pid = child.id().expect("pid");
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill")
        .success());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert!(status.success());
}
