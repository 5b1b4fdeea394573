//! Shared helpers for vip-sim integration tests: a raw reqwest client posting hand-written SOAP.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use vip_sim::certs::CertPaths;
use vip_sim::{Sim, SimConfig};

pub const NS: &str = "https://schemas.symantec.com/vip/2011/04/vipuserservices";
pub const AUTH: &str = "AuthenticationService_1_8";
pub const QUERY: &str = "QueryService_1_8";
pub const MGMT: &str = "ManagementService_1_10";
pub const AUTH10: &str = "AuthenticationService_1_10";
pub const QUERY10: &str = "QueryService_1_10";

pub const ALICE_SECRET: &str = "JBSWY3DPEHPK3PXP";
pub const JUDY_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
pub const KIM_SECRET: &str = "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U";

/// Users covering every behaviour; tests pick the ones they need.
pub const USERS: &str = r#"
[server]
admin_listen = "127.0.0.1:0"
io_timeout_ms = 3000

[policy]
lockout_after = 3

[[users]]
id = "alice"
temporary_code = "7654321"
sms_phones = ["15550000001"]
voice_phones = ["15550000002"]
[[users.credentials]]
id = "VSMT10000001"
type = "STANDARD_OTP"
totp_secret = "JBSWY3DPEHPK3PXP"
push = true
friendly_name = "Alice phone"

[[users]]
id = "bob"
[users.push]
action = "deny"
[[users.credentials]]
id = "VSMT10000002"
totp_secret = "JBSWY3DPEHPK3PXP"
push = true

[[users]]
id = "carol"
[users.push]
action = "never"
[[users.credentials]]
id = "VSMT10000003"
push = true

[[users]]
id = "dave"
[users.push]
action = "approve"
delay_ms = 400
number = 42
[[users.credentials]]
id = "VSMT10000004"
push = true

[[users]]
id = "erin"
[users.push]
number = 17
wrong_number = true
[[users.credentials]]
id = "VSMT10000005"
push = true

[[users]]
id = "frank"
status = "DISABLED"
[[users.credentials]]
id = "VSMT10000006"
totp_secret = "JBSWY3DPEHPK3PXP"
push = true

[[users]]
id = "gina"
status = "LOCKED"
[[users.credentials]]
id = "VSMT10000007"
totp_secret = "JBSWY3DPEHPK3PXP"

[[users]]
id = "hank"

[[users]]
id = "ivy"
[[users.credentials]]
id = "VSMT10000008"
totp_secret = "JBSWY3DPEHPK3PXP"
status = "DISABLED"
push = true

[[users]]
id = "judy"
[[users.credentials]]
id = "VSMT10000009"
totp_secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
drift_steps = 5

[[users]]
id = "kim"
[[users.credentials]]
id = "VSMT10000010"
totp_secret = "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"

[[users]]
id = "leo"
[users.faults]
http_500 = true
[[users.credentials]]
id = "VSMT10000011"
totp_secret = "JBSWY3DPEHPK3PXP"

[[users]]
id = "Jörg&Co"
[[users.credentials]]
id = "VSMT10000012"
totp_secret = "JBSWY3DPEHPK3PXP"

[[users]]
id = "pia"
pin = "1234"
[[users.credentials]]
id = "VSMT10000014"
totp_secret = "JBSWY3DPEHPK3PXP"
push = true

[[users]]
id = "pete"
pin = "4321"
pin_expired = true
[[users.credentials]]
id = "VSMT10000015"
totp_secret = "JBSWY3DPEHPK3PXP"
push = true

[[users]]
id = "nico"
[[users.credentials]]
id = "VSMT10000016"
push = true
number_challenge_capable = false

[[users]]
id = "uma"
[users.push]
device_unreachable = true
[[users.credentials]]
id = "VSMT10000017"
push = true
[[users.credentials]]
id = "VSMT10000018"
push = true

[[users]]
id = "mona"
[[users.credentials]]
id = "VSMT10000013"
totp_secret = "JBSWY3DPEHPK3PXP"
push = false
"#;

pub struct H {
    pub sim: Sim,
    pub client: reqwest::Client,
    pub certs: CertPaths,
    pub dir: tempfile::TempDir,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The code of `secret` `steps` steps from now.
pub fn code(secret: &str, steps: i64) -> String {
    let t = now() as i64 + steps * 30;
    vip_sim::totp::code(secret, t as u64, 6)
}

pub fn config(certs: &CertPaths, extra: &str) -> SimConfig {
    let doc = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n{extra}",
        certs.server_cert, certs.server_key, certs.ca_cert
    );
    SimConfig::from_toml_str(&doc).expect("config")
}

pub fn client_for(certs: &CertPaths, with_identity: bool) -> reqwest::Client {
    let ca = std::fs::read(&certs.ca_cert).expect("ca");
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca pem"))
        .timeout(std::time::Duration::from_secs(5));
    if with_identity {
        let mut pem = std::fs::read(&certs.client_key).expect("key");
        pem.extend(std::fs::read(&certs.client_cert).expect("cert"));
        b = b.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    b.build().expect("client")
}

pub async fn start_with(extra: &str) -> H {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = vip_sim::certs::generate(dir.path()).expect("certs");
    let sim = Sim::start(config(&certs, extra)).await.expect("start");
    let client = client_for(&certs, true);
    H {
        sim,
        client,
        certs,
        dir,
    }
}

pub async fn start() -> H {
    start_with(USERS).await
}

/// `USERS` with more `[policy]` settings (a second `[policy]` table would be a TOML error).
pub fn users_with_policy(policy: &str) -> String {
    USERS.replace("[policy]\n", &format!("[policy]\n{policy}\n"))
}

pub fn envelope(inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
         xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:vip=\"{NS}\">\
         <soapenv:Header/><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"
    )
}

impl H {
    pub fn url(&self, service: &str) -> String {
        format!("{}/vipuserservices/{service}", self.sim.base_url())
    }

    /// Posts a raw body; returns (HTTP status, body).
    pub async fn post_raw(&self, service: &str, body: String) -> (u16, String) {
        let r = self
            .client
            .post(self.url(service))
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"\"")
            .body(body)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    /// Posts a request element inside an envelope.
    pub async fn call(&self, service: &str, inner: &str) -> (u16, String) {
        self.post_raw(service, envelope(inner)).await
    }

    /// Posts and expects HTTP 200; returns the body.
    pub async fn ok(&self, service: &str, inner: &str) -> String {
        let (s, b) = self.call(service, inner).await;
        assert_eq!(s, 200, "{b}");
        b
    }

    pub async fn check_otp(&self, user: &str, otp: &str) -> String {
        self.ok(AUTH, &check_otp(user, otp)).await
    }

    pub async fn auth_user(&self, user: &str, pin: Option<&str>, otp: &str) -> String {
        self.ok(AUTH, &auth_user(user, pin, otp, None)).await
    }

    pub async fn push(&self, user: &str, params: &[(&str, &str)]) -> String {
        self.ok(AUTH, &push_req(user, params)).await
    }

    pub async fn poll(&self, ids: &[&str]) -> String {
        self.ok(QUERY, &poll_req(ids)).await
    }

    /// A push on the given Authentication service path (`AUTH` or `AUTH10`).
    pub async fn push_at(&self, service: &str, user: &str, params: &[(&str, &str)]) -> String {
        self.ok(service, &push_req(user, params)).await
    }

    /// A poll on the given Query service path (`QUERY` or `QUERY10`).
    pub async fn poll_at(&self, service: &str, ids: &[&str]) -> String {
        self.ok(service, &poll_req(ids)).await
    }

    /// getUserInfo on the given Query service path, with the request's own optional fields.
    pub async fn user_info_at(&self, service: &str, user: &str, extra: &str) -> String {
        self.ok(
            service,
            &format!("<vip:GetUserInfoRequest><vip:requestId>REQ_info</vip:requestId><vip:userId>{user}</vip:userId>{extra}</vip:GetUserInfoRequest>"),
        )
        .await
    }
}

pub fn check_otp(user: &str, otp: &str) -> String {
    format!(
        "<vip:CheckOtpRequest><vip:requestId>REQ_check_1</vip:requestId><vip:userId>{user}</vip:userId>\
         <vip:otpAuthData><vip:otp>{otp}</vip:otp></vip:otpAuthData></vip:CheckOtpRequest>"
    )
}

pub fn auth_user(user: &str, pin: Option<&str>, otp: &str, otp2: Option<&str>) -> String {
    let pin = pin
        .map(|p| format!("<vip:pin>{p}</vip:pin>"))
        .unwrap_or_default();
    let otp2 = otp2
        .map(|p| format!("<vip:otp2>{p}</vip:otp2>"))
        .unwrap_or_default();
    format!(
        "<vip:AuthenticateUserRequest><vip:requestId>REQ_auth_1</vip:requestId><vip:userId>{user}</vip:userId>{pin}\
         <vip:otpAuthData><vip:otp>{otp}</vip:otp>{otp2}</vip:otpAuthData></vip:AuthenticateUserRequest>"
    )
}

pub fn push_req(user: &str, params: &[(&str, &str)]) -> String {
    let params: String = params
        .iter()
        .map(|(k, v)| {
            format!("<vip:requestParameters><vip:Key>{k}</vip:Key><vip:Value>{v}</vip:Value></vip:requestParameters>")
        })
        .collect();
    format!(
        "<vip:AuthenticateUserWithPushRequest><vip:requestId>REQ_push_1</vip:requestId><vip:userId>{user}</vip:userId>\
         <vip:pushAuthData><vip:displayParameters><vip:Key>display.message.title</vip:Key><vip:Value>Sign in</vip:Value></vip:displayParameters>\
         {params}</vip:pushAuthData></vip:AuthenticateUserWithPushRequest>"
    )
}

pub fn poll_req(ids: &[&str]) -> String {
    let ids: String = ids
        .iter()
        .map(|i| format!("<vip:transactionId>{i}</vip:transactionId>"))
        .collect();
    format!("<vip:PollPushStatusRequest><vip:requestId>REQ_poll_1</vip:requestId>{ids}</vip:PollPushStatusRequest>")
}

/// Text of every `<name>` element (no attributes, no nesting of the same name).
pub fn tags(doc: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_string());
        rest = &after[j + close.len()..];
    }
    out
}

pub fn tag(doc: &str, name: &str) -> Option<String> {
    tags(doc, name).into_iter().next()
}

pub fn status(doc: &str) -> String {
    tag(doc, "status").expect("status element")
}

/// Asserts the position order of the given substrings.
pub fn assert_order(doc: &str, parts: &[&str]) {
    let mut last = 0;
    for p in parts {
        let i = doc[last..]
            .find(p)
            .unwrap_or_else(|| panic!("{p} missing or out of order in {doc}"));
        last += i + p.len();
    }
}
