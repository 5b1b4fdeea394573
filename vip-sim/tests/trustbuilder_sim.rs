//! tb-sim over real HTTPS with the client certificate from `certs::generate`: the REST
//! authentication actions, the provisioning SOAP API, faults, counters and the admin API.

use std::time::Duration;

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

fn client_for(certs: &CertPaths, with_identity: bool) -> reqwest::Client {
    let ca = std::fs::read(&certs.ca_cert).expect("ca");
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca pem"))
        .timeout(Duration::from_secs(5));
    if with_identity {
        let mut pem = std::fs::read(&certs.client_key).expect("key");
        pem.extend(std::fs::read(&certs.client_cert).expect("cert"));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    b.build().expect("client")
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
