//! The simulator's TOML configuration (see `vip-sim/README.md` for a full example).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::certs::CertPaths;
use crate::SimError;

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Listeners and limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// Server certificate, key and the CA that signs accepted client certificates.
    pub tls: TlsConfig,
    /// Account-wide behaviour (VIP Manager settings).
    #[serde(default)]
    pub policy: Policy,
    /// Global faults, applied to every request.
    #[serde(default)]
    pub faults: Faults,
    /// Users with their credentials.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Unbound tokens (the account's credential inventory) that addCredential may bind.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

/// `[[tokens]]`: a STANDARD_OTP token that exists but is bound to no user yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Credential id, e.g. `VSMT00000001` (4-100 of `[0-9A-Za-z,#.*]`).
    pub id: String,
    /// Base32 TOTP secret (RFC 6238, SHA1, 30 s).
    pub secret: String,
    /// The token's clock drift in 30 s steps.
    #[serde(default)]
    pub drift_steps: i64,
    /// Code length.
    #[serde(default = "default_digits")]
    pub digits: u32,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// HTTPS (mutual TLS) listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Optional plain-HTTP admin API; must be a loopback address.
    pub admin_listen: Option<SocketAddr>,
    /// Maximum concurrent connections (further accepts wait).
    pub max_connections: usize,
    /// Maximum request body in bytes (larger: HTTP 413).
    pub max_body_bytes: usize,
    /// Time allowed for the TLS handshake, the request head and the body, in milliseconds.
    pub io_timeout_ms: u64,
    /// Close a keep-alive connection once it has been idle (no request in progress) this long,
    /// in milliseconds; 0 = no extra limit (hyper's default keep-alive).
    pub idle_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: None,
            max_connections: 1024,
            max_body_bytes: 1024 * 1024,
            io_timeout_ms: 10_000,
            idle_timeout_ms: 0,
        }
    }
}

impl ServerConfig {
    /// Checks the values a TOML parser cannot.
    pub fn validate(&self) -> Result<(), SimError> {
        if let Some(a) = self.admin_listen {
            if !a.ip().is_loopback() {
                return Err(SimError::Config(format!(
                    "server.admin_listen {a} must be a loopback address"
                )));
            }
        }
        if self.max_connections == 0 {
            return Err(SimError::Config(
                "server.max_connections must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// `[tls]`: PEM files. Relative paths are resolved against the config file's directory by
/// [`SimConfig::load`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM, PKCS#8 / SEC1 / PKCS#1).
    pub key: PathBuf,
    /// CA certificate(s) (PEM) that client certificates must chain to.
    pub client_ca: PathBuf,
}

impl TlsConfig {
    /// Resolves relative paths against the directory of `config_file`.
    pub fn resolve_against(&mut self, config_file: &Path) {
        if let Some(dir) = config_file.parent() {
            for p in [&mut self.cert, &mut self.key, &mut self.client_ca] {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
    }

    /// The TLS section for files made by [`crate::certs::generate`].
    pub fn from_cert_paths(p: &CertPaths) -> Self {
        TlsConfig {
            cert: p.server_cert.clone(),
            key: p.server_key.clone(),
            client_ca: p.ca_cert.clone(),
        }
    }
}

/// `[policy]`: account settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Consecutive bad codes after which the user's OTP credentials become LOCKED (0 = never).
    pub lockout_after: u32,
    /// Accepted clock window in 30 s steps either side (after the learned drift).
    pub totp_window_steps: u32,
    /// Codes matching within this many steps (but outside the window) get 604A.
    pub resync_window_steps: u32,
    /// Push timeout when the request has no `request.timeout`, in seconds.
    pub push_timeout_secs: u64,
    /// "Require Number Challenge" enabled for the account: pushes must ask for a number
    /// challenge (`supportNumberChallenge=true` on a 1.10 endpoint) or they end 7008.
    pub number_challenge: bool,
    /// How long an SMS/voice code stays valid, in seconds.
    pub sent_code_ttl_secs: u64,
    /// PIN support for the account; a `pin` sent while false gets 6021.
    pub pin_enabled: bool,
    /// The status a successful authenticateUserWithPush answers.
    pub push_success_status: PushSuccessStatus,
    /// "Remembered device deletion: Admin only" in VIP Manager: removeCredential answers 6010
    /// (seed 000, removeCredential note).
    pub credential_removal_admin_only: bool,
}

/// The success status of authenticateUserWithPush (`"6040"` or `"0000"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PushSuccessStatus {
    /// 6040 "Mobile push request sent" (what VIP answers).
    #[default]
    #[serde(rename = "6040")]
    Sent,
    /// 0000 "Success".
    #[serde(rename = "0000")]
    Success,
}

impl PushSuccessStatus {
    /// The wire status code.
    pub fn code(self) -> &'static str {
        match self {
            PushSuccessStatus::Sent => "6040",
            PushSuccessStatus::Success => "0000",
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            lockout_after: 10,
            totp_window_steps: 1,
            resync_window_steps: 20,
            push_timeout_secs: 120,
            number_challenge: false,
            sent_code_ttl_secs: 300,
            pin_enabled: true,
            push_success_status: PushSuccessStatus::Sent,
            credential_removal_admin_only: false,
        }
    }
}

/// Injected faults. All off by default. When several transport faults are set, the order is:
/// latency, then connection reset, HTTP status, HTTP 500, Client Fault, Server Fault, malformed
/// XML, wrong namespace (first that is set wins); then an in-band `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Added latency before answering, in milliseconds.
    pub latency_ms: u64,
    /// Answer HTTP 500 with an HTML body.
    pub http_500: bool,
    /// Answer HTTP 200 with a truncated, not well-formed XML body.
    pub malformed_xml: bool,
    /// Answer HTTP 500 with a SOAP Fault (`S:Server`).
    pub soap_fault: bool,
    /// Close the connection without answering.
    pub connection_reset: bool,
    /// Answer HTTP 500 with a SOAP Fault (`S:Client`, "Cannot find dispatch method ...").
    pub client_fault: bool,
    /// Answer this HTTP status (300-599) with a short text/html body.
    pub http_status: Option<u16>,
    /// Answer HTTP 200 with a response element in the documentation's wrong namespace.
    pub wrong_namespace: bool,
    /// Operation name (counter name) -> 4-hex status answered in-band instead of running it.
    pub status: BTreeMap<String, String>,
    /// With `status`: inject this many times per operation, then behave normally (0 = always).
    pub status_times: u32,
    /// Every poll of this user's transactions answers this status (7001 / 7006 keep it pending).
    pub transaction_status: Option<String>,
    /// ... with this detail code.
    pub transaction_detail: Option<String>,
}

/// The documentation's wrong namespace (some doc samples use it; the service does not).
pub const WRONG_NS: &str = "https://schemas.vip.symantec.com/vip/2011/04/vipuserservices";

/// True for a VIP status code: 4 hex digits.
pub fn is_status_code(s: &str) -> bool {
    s.len() == 4 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Faults {
    /// True when no fault is set.
    pub fn is_none(&self) -> bool {
        *self == Faults::default()
    }

    /// Combines two fault sets (`other` is the more specific one, the user's): latencies add,
    /// flags OR, Options and `status` entries of `other` win, `status_times` of `other` wins
    /// when `other` has `status` entries.
    pub fn merge(&self, other: &Faults) -> Faults {
        let mut status = self.status.clone();
        status.extend(other.status.iter().map(|(k, v)| (k.clone(), v.clone())));
        Faults {
            latency_ms: self.latency_ms.saturating_add(other.latency_ms),
            http_500: self.http_500 || other.http_500,
            malformed_xml: self.malformed_xml || other.malformed_xml,
            soap_fault: self.soap_fault || other.soap_fault,
            connection_reset: self.connection_reset || other.connection_reset,
            client_fault: self.client_fault || other.client_fault,
            http_status: other.http_status.or(self.http_status),
            wrong_namespace: self.wrong_namespace || other.wrong_namespace,
            status,
            status_times: if other.status.is_empty() {
                self.status_times
            } else {
                other.status_times
            },
            transaction_status: other
                .transaction_status
                .clone()
                .or_else(|| self.transaction_status.clone()),
            transaction_detail: other
                .transaction_detail
                .clone()
                .or_else(|| self.transaction_detail.clone()),
        }
    }

    /// Checks the values serde cannot: status codes, operation names, the HTTP status.
    pub fn validate(&self) -> Result<(), SimError> {
        let err = |m: String| Err(SimError::Config(m));
        if let Some(s) = self.http_status {
            // 1xx/2xx are not failures (and hyper would not send a body with some of them).
            if !(300..=599).contains(&s) {
                return err(format!("faults.http_status {s} must be 300-599"));
            }
        }
        for (op, code) in &self.status {
            if crate::ops::Op::from_name(op).is_none() {
                let names: Vec<&str> = crate::ops::Op::ALL.iter().map(|o| o.name()).collect();
                return err(format!(
                    "faults.status: unknown operation {op:?} (one of {})",
                    names.join(", ")
                ));
            }
            if !is_status_code(code) {
                return err(format!(
                    "faults.status.{op} = {code:?} is not a 4-hex-digit status"
                ));
            }
        }
        for (name, v) in [
            ("transaction_status", &self.transaction_status),
            ("transaction_detail", &self.transaction_detail),
        ] {
            if let Some(c) = v {
                if !is_status_code(c) {
                    return err(format!("faults.{name} {c:?} is not a 4-hex-digit code"));
                }
            }
        }
        Ok(())
    }
}

/// User status as VIP reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserStatus {
    #[default]
    Active,
    Disabled,
    Locked,
}

impl UserStatus {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "ACTIVE",
            UserStatus::Disabled => "DISABLED",
            UserStatus::Locked => "LOCKED",
        }
    }
}

/// Credential status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CredentialStatus {
    #[default]
    Enabled,
    Disabled,
    Locked,
}

impl CredentialStatus {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialStatus::Enabled => "ENABLED",
            CredentialStatus::Disabled => "DISABLED",
            CredentialStatus::Locked => "LOCKED",
        }
    }
}

/// Credential type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CredentialType {
    #[default]
    StandardOtp,
    SmsOtp,
    VoiceOtp,
    ServiceOtp,
    EmailOtp,
    Certificate,
    Ia,
}

impl CredentialType {
    /// Every type, for parsing the wire value.
    pub const ALL: [CredentialType; 7] = [
        CredentialType::StandardOtp,
        CredentialType::SmsOtp,
        CredentialType::VoiceOtp,
        CredentialType::ServiceOtp,
        CredentialType::EmailOtp,
        CredentialType::Certificate,
        CredentialType::Ia,
    ];

    /// From the wire value (`CredentialTypeEnum`; exact spelling).
    pub fn from_wire(s: &str) -> Option<CredentialType> {
        CredentialType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialType::StandardOtp => "STANDARD_OTP",
            CredentialType::SmsOtp => "SMS_OTP",
            CredentialType::VoiceOtp => "VOICE_OTP",
            CredentialType::ServiceOtp => "SERVICE_OTP",
            CredentialType::EmailOtp => "EMAIL_OTP",
            CredentialType::Certificate => "CERTIFICATE",
            CredentialType::Ia => "IA",
        }
    }
}

/// `[[users]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User id (1–128 characters; looked up case-insensitively).
    pub id: String,
    #[serde(default)]
    pub status: UserStatus,
    /// VIP PIN: authenticateUser / authenticateUserWithPush must send it (601F otherwise).
    #[serde(default)]
    pub pin: Option<String>,
    /// The PIN has expired: responses to a right PIN carry isPinExpired=true.
    #[serde(default)]
    pub pin_expired: bool,
    /// A help-desk temporary security code, accepted by authenticateUser (not checkOtp).
    #[serde(default)]
    pub temporary_code: Option<String>,
    /// Phone numbers registered for SMS codes (credential type SMS_OTP).
    #[serde(default)]
    pub sms_phones: Vec<String>,
    /// Phone numbers registered for voice codes (credential type VOICE_OTP).
    #[serde(default)]
    pub voice_phones: Vec<String>,
    /// userCreationTime / lastBindTime reported by getUserInfo.
    #[serde(default = "default_created")]
    pub created: String,
    /// How this user's phone answers pushes.
    #[serde(default)]
    pub push: PushConfig,
    /// Faults applied to requests for this user.
    #[serde(default)]
    pub faults: Faults,
    /// Bound credentials.
    #[serde(default)]
    pub credentials: Vec<CredentialConfig>,
}

fn default_created() -> String {
    "2024-01-02T03:04:05.000Z".to_string()
}

/// `[[users.credentials]]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// Credential id, e.g. `VSMT12345678`.
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: CredentialType,
    /// Base32 TOTP secret (RFC 6238, SHA1, 30 s); absent for push-only credentials.
    #[serde(default)]
    pub totp_secret: Option<String>,
    #[serde(default)]
    pub status: CredentialStatus,
    /// Push-capable (VIP Access on a phone).
    #[serde(default)]
    pub push: bool,
    /// The token's clock drift in 30 s steps (its codes are those of now + drift_steps).
    #[serde(default)]
    pub drift_steps: i64,
    /// Code length.
    #[serde(default = "default_digits")]
    pub digits: u32,
    /// friendlyName in getUserInfo.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// The device can do number challenge (false: number-challenge pushes end 7008).
    #[serde(default = "default_true")]
    pub number_challenge_capable: bool,
}

fn default_true() -> bool {
    true
}

fn default_digits() -> u32 {
    6
}

/// How the phone answers a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushAction {
    #[default]
    Approve,
    Deny,
    /// Never answers: polls stay 7001 until the request's timeout, then 7004.
    Never,
}

/// `[users.push]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    pub action: PushAction,
    /// The phone answers this many milliseconds after the push was sent (polls before: 7001).
    pub delay_ms: u64,
    /// Fixed number-challenge value (10–99); absent = random two-digit number.
    pub number: Option<u8>,
    /// The person types the wrong number on the phone (7008 / detail 7141).
    pub wrong_number: bool,
    /// No device can be reached: pushSent=false, polls 7001 until the timeout, then 7004.
    pub device_unreachable: bool,
}

fn is_phone(s: &str) -> bool {
    let (main, ext) = match s.split_once('x') {
        Some((m, e)) => (m, Some(e)),
        None => (s, None),
    };
    let main_ok = (5..=20).contains(&main.len()) && main.bytes().all(|b| b.is_ascii_digit());
    let ext_ok = match ext {
        None => true,
        Some(e) => {
            (1..=20).contains(&e.len())
                && e.bytes()
                    .all(|b| b.is_ascii_digit() || b",#.*".contains(&b))
        }
    };
    main_ok && ext_ok
}

/// True when `s` matches VIP's phoneNumber pattern `[0-9]{5,20}(x[0-9,#.*]{1,20})?`.
pub fn valid_phone(s: &str) -> bool {
    is_phone(s)
}

impl SimConfig {
    /// A configuration with default settings, the given TLS files and no users.
    pub fn new(tls: TlsConfig) -> Self {
        SimConfig {
            server: ServerConfig::default(),
            tls,
            policy: Policy::default(),
            faults: Faults::default(),
            users: Vec::new(),
            tokens: Vec::new(),
        }
    }

    /// Parses and validates a TOML document. Relative TLS paths stay relative to the
    /// current directory.
    pub fn from_toml_str(s: &str) -> Result<Self, SimError> {
        parse_toml(s, Self::validate)
    }

    /// Reads, parses and validates a TOML file; relative TLS paths are resolved against its
    /// directory.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SimError> {
        load_toml(path.as_ref(), Self::from_toml_str, |c| &mut c.tls)
    }

    /// Checks the values a TOML parser cannot.
    pub fn validate(&self) -> Result<(), SimError> {
        let err = |m: String| Err(SimError::Config(m));
        self.server.validate()?;
        self.faults.validate()?;
        let mut seen = std::collections::HashSet::new();
        for u in &self.users {
            let n = u.id.chars().count();
            if n == 0 || n > 128 {
                return err(format!("user id {:?}: must be 1-128 characters", u.id));
            }
            if !seen.insert(u.id.to_lowercase()) {
                return err(format!(
                    "user id {:?} appears twice (ids are case-insensitive)",
                    u.id
                ));
            }
            if let Some(pin) = &u.pin {
                let n = pin.chars().count();
                if !(4..=128).contains(&n) {
                    return err(format!("user {:?}: pin must be 4-128 characters", u.id));
                }
            }
            for p in u.sms_phones.iter().chain(&u.voice_phones) {
                if !is_phone(p) {
                    return err(format!(
                        "user {:?}: phone number {p:?} does not match [0-9]{{5,20}}(x[0-9,#.*]{{1,20}})?",
                        u.id
                    ));
                }
            }
            u.faults
                .validate()
                .map_err(|e| SimError::Config(format!("user {:?}: {e}", u.id)))?;
            if let Some(n) = u.push.number {
                if !(10..=99).contains(&n) {
                    return err(format!("user {:?}: push.number must be 10-99", u.id));
                }
            }
            for c in &u.credentials {
                let idlen = c.id.len();
                if !(4..=100).contains(&idlen)
                    || !c
                        .id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b",#.*".contains(&b))
                {
                    return err(format!(
                        "user {:?}: credential id {:?} must be 4-100 of [0-9A-Za-z,#.*]",
                        u.id, c.id
                    ));
                }
                if !(6..=10).contains(&c.digits) {
                    return err(format!("credential {}: digits must be 6-10", c.id));
                }
                if let Some(s) = &c.totp_secret {
                    match crate::totp::decode_base32(s) {
                        Some(k) if !k.is_empty() => {}
                        _ => {
                            return err(format!(
                                "credential {}: totp_secret is not valid base32",
                                c.id
                            ))
                        }
                    }
                }
            }
        }
        let mut ids = std::collections::HashSet::new();
        for t in &self.tokens {
            if !valid_credential_id(&t.id) {
                return err(format!(
                    "token id {:?} must be 4-100 of [0-9A-Za-z,#.*]",
                    t.id
                ));
            }
            if !ids.insert(t.id.clone()) {
                return err(format!("token id {:?} appears twice", t.id));
            }
            if !(6..=10).contains(&t.digits) {
                return err(format!("token {}: digits must be 6-10", t.id));
            }
            match crate::totp::decode_base32(&t.secret) {
                Some(k) if !k.is_empty() => {}
                _ => return err(format!("token {}: secret is not valid base32", t.id)),
            }
        }
        Ok(())
    }
}

/// Parses a TOML document and validates it.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    s: &str,
    validate: impl FnOnce(&T) -> Result<(), SimError>,
) -> Result<T, SimError> {
    let cfg: T = toml::from_str(s).map_err(|e| SimError::Config(e.to_string()))?;
    validate(&cfg)?;
    Ok(cfg)
}

/// Reads a TOML file, parses it with `parse` (errors prefixed with the path) and resolves its
/// relative TLS paths against the file's directory.
pub(crate) fn load_toml<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, SimError>,
    tls: impl FnOnce(&mut T) -> &mut TlsConfig,
) -> Result<T, SimError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SimError::Config(format!("{}: {e}", path.display())))?;
    let mut cfg = parse(&text).map_err(|e| SimError::Config(format!("{}: {e}", path.display())))?;
    tls(&mut cfg).resolve_against(path);
    Ok(cfg)
}

/// VIP's credentialId facet: 4-100 of `[0-9A-Za-z,#.*]`.
pub fn valid_credential_id(s: &str) -> bool {
    (4..=100).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b",#.*".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_pattern() {
        assert!(is_phone("15551234567"));
        assert!(is_phone("15551x12#"));
        assert!(!is_phone("1234"));
        assert!(!is_phone("+15551234567"));
        assert!(!is_phone("15551x"));
    }

    #[test]
    fn parse_minimal_and_reject_bad() {
        let base = "[tls]\ncert='a'\nkey='b'\nclient_ca='c'\n";
        let cfg = SimConfig::from_toml_str(base).expect("minimal");
        assert_eq!(cfg.policy.lockout_after, 10);
        let dup = format!("{base}[[users]]\nid='Al'\n[[users]]\nid='al'\n");
        assert!(SimConfig::from_toml_str(&dup).is_err());
        let badsecret = format!(
            "{base}[[users]]\nid='al'\n[[users.credentials]]\nid='VSMT12345678'\ntotp_secret='!!'\n"
        );
        assert!(SimConfig::from_toml_str(&badsecret).is_err());
        let admin = format!("{base}[server]\nadmin_listen='0.0.0.0:1'\n");
        assert!(SimConfig::from_toml_str(&admin).is_err());
    }

    #[test]
    fn readme_example_parses() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\n").expect("toml block") + 8;
        let end = start + readme[start..].find("```").expect("end of block");
        let cfg = SimConfig::from_toml_str(&readme[start..end]).expect("README example");
        assert_eq!(cfg.users.len(), 2);
        assert_eq!(cfg.users[1].push.action, PushAction::Deny);
        assert_eq!(cfg.users[1].push.number, Some(42));
        assert_eq!(
            cfg.users[0].credentials[0].kind,
            CredentialType::StandardOtp
        );
        assert_eq!(cfg.server.admin_listen.map(|a| a.port()), Some(0));
        assert_eq!(cfg.server.idle_timeout_ms, 0);
        assert!(cfg.policy.pin_enabled && !cfg.policy.number_challenge);
        assert_eq!(cfg.policy.push_success_status, PushSuccessStatus::Sent);
        assert_eq!(
            cfg.users[0]
                .faults
                .status
                .get("sendOtp")
                .map(String::as_str),
            Some("6015")
        );
        assert!(cfg.users[0].credentials[0].number_challenge_capable);
    }

    #[test]
    fn example_config_and_tokens_parse() {
        let cfg = SimConfig::from_toml_str(include_str!("../examples/sim.toml"))
            .expect("examples/sim.toml");
        assert_eq!(cfg.tokens.len(), 1);
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\n").expect("toml block") + 8;
        let end = start + readme[start..].find("```").expect("end of block");
        let cfg = SimConfig::from_toml_str(&readme[start..end]).expect("README example");
        assert_eq!(cfg.tokens[0].id, "VSMT00000001");
        assert!(!cfg.policy.credential_removal_admin_only);
        let base = "[tls]\ncert='a'\nkey='b'\nclient_ca='c'\n";
        for bad in [
            "[[tokens]]\nid='VS'\nsecret='GEZDGNBVGY3TQOJQ'\n",
            "[[tokens]]\nid='VSMT00000001'\nsecret='!!'\n",
            "[[tokens]]\nid='VSMT00000001'\nsecret='GEZDGNBVGY3TQOJQ'\ndigits=5\n",
            "[[tokens]]\nid='VSMT00000001'\nsecret='GEZDGNBVGY3TQOJQ'\n[[tokens]]\nid='VSMT00000001'\nsecret='GEZDGNBVGY3TQOJQ'\n",
            "[[tokens]]\nid='VSMT00000001'\nsecret='GEZDGNBVGY3TQOJQ'\nkind='x'\n",
        ] {
            assert!(
                SimConfig::from_toml_str(&format!("{base}{bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn new_knobs_and_their_validation() {
        let base = "[tls]\ncert='a'\nkey='b'\nclient_ca='c'\n";
        let cfg = SimConfig::from_toml_str(base).expect("minimal");
        assert!(!cfg.policy.number_challenge, "the default became false");
        let cfg = SimConfig::from_toml_str(&format!(
            "{base}[server]\nidle_timeout_ms = 250\n[policy]\npush_success_status = \"0000\"\npin_enabled = false\n\
             [faults]\nhttp_status = 503\nstatus = {{ checkOtp = \"600b\" }}\nstatus_times = 2\n\
             transaction_status = \"7006\"\ntransaction_detail = \"7120\"\nclient_fault = true\nwrong_namespace = true\n\
             [[users]]\nid = 'u'\npin_expired = true\npush = {{ device_unreachable = true }}\n"
        ))
        .expect("all knobs");
        assert_eq!(cfg.server.idle_timeout_ms, 250);
        assert_eq!(cfg.policy.push_success_status.code(), "0000");
        assert_eq!(cfg.faults.http_status, Some(503));
        assert!(cfg.users[0].pin_expired && cfg.users[0].push.device_unreachable);
        for bad in [
            "[policy]\npush_success_status = \"6041\"\n",
            "[faults]\nhttp_status = 200\n",
            "[faults]\nstatus = { login = \"6005\" }\n",
            "[faults]\nstatus = { checkOtp = \"6005 \" }\n",
            "[faults]\ntransaction_detail = \"71\"\n",
            "[[users]]\nid = 'u'\nfaults = { transaction_status = \"x000\" }\n",
        ] {
            assert!(
                SimConfig::from_toml_str(&format!("{base}{bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn merge_prefers_the_users_values() {
        let global = Faults {
            latency_ms: 5,
            http_status: Some(503),
            status: [
                ("checkOtp".to_string(), "6005".to_string()),
                ("sendOtp".to_string(), "6015".to_string()),
            ]
            .into(),
            status_times: 1,
            transaction_status: Some("7003".into()),
            ..Faults::default()
        };
        let user = Faults {
            latency_ms: 7,
            client_fault: true,
            http_status: Some(404),
            status: [("checkOtp".to_string(), "6009".to_string())].into(),
            ..Faults::default()
        };
        let m = global.merge(&user);
        assert_eq!(m.latency_ms, 12);
        assert!(m.client_fault);
        assert_eq!(m.http_status, Some(404));
        assert_eq!(m.status.get("checkOtp").map(String::as_str), Some("6009"));
        assert_eq!(m.status.get("sendOtp").map(String::as_str), Some("6015"));
        assert_eq!(m.status_times, 0);
        assert_eq!(m.transaction_status.as_deref(), Some("7003"));
        assert_eq!(global.merge(&Faults::default()).status_times, 1);
    }
}
