//! tb-sim's TOML configuration (see the "TrustBuilder simulator" section of
//! `vip-sim/README.md`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ServerConfig, TlsConfig};
use crate::SimError;

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TbSimConfig {
    /// Listeners and limits (as vip-sim's `[server]`).
    #[serde(default)]
    pub server: ServerConfig,
    /// Server certificate, key and the CA that signs accepted client certificates.
    pub tls: TlsConfig,
    /// The TrustBuilder service the simulator is.
    pub service: TbServiceConfig,
    /// Global faults, applied to every request.
    #[serde(default)]
    pub faults: TbFaults,
    /// The service's logins with their tools.
    #[serde(default)]
    pub users: Vec<TbUserConfig>,
}

/// `[service]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TbServiceConfig {
    /// The serviceId every call must name.
    pub id: u64,
    /// loginCreate answers `NOK:full` once the service has this many logins.
    #[serde(default = "default_max_users")]
    pub max_users: usize,
    /// An unanswered push ends `NOK:TIMEOUT` this long after pushAuthenticate ("60s").
    #[serde(default = "default_push_timeout", with = "humantime_serde")]
    pub push_timeout: Duration,
}

fn default_max_users() -> usize {
    1000
}

fn default_push_timeout() -> Duration {
    Duration::from_secs(60)
}

/// `[[users]]`: a login of the service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TbUserConfig {
    /// Login name (1-255 bytes, no control characters; matched exactly). loginCreate is
    /// stricter (see [`valid_login`]); a configured login stands for one made in the console.
    pub login: String,
    /// The numeric loginid (provisioning); absent: assigned in order from 1001.
    #[serde(default)]
    pub id: Option<u64>,
    /// 0 active, 1 blocked (authentication refused).
    #[serde(default)]
    pub status: u8,
    #[serde(default)]
    pub firstname: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mail: String,
    #[serde(default)]
    pub phone: String,
    /// 0 user, 1 manager, 2 administrator.
    #[serde(default)]
    pub role: u8,
    /// Faults for requests about this login.
    #[serde(default)]
    pub faults: TbFaults,
    /// The login's authentication tools.
    #[serde(default)]
    pub tools: Vec<TbToolConfig>,
}

impl TbUserConfig {
    /// A login with no tools and default attributes.
    pub fn new(login: impl Into<String>) -> Self {
        TbUserConfig {
            login: login.into(),
            id: None,
            status: 0,
            firstname: String::new(),
            name: String::new(),
            mail: String::new(),
            phone: String::new(),
            role: 0,
            faults: TbFaults::default(),
            tools: Vec::new(),
        }
    }
}

/// `[[users.tools]]`: a mobile app (`ma`), desktop app / Helium (`ca`), mAccess (`mac`) or
/// Virtual Authenticator (`va`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TbToolConfig {
    /// `ma`, `ca`, `mac` or `va`.
    pub kind: String,
    /// Tool id (maid / caid / macid / vaid), unique per kind in the service.
    pub id: u64,
    #[serde(default)]
    pub name: String,
    /// The alias authenticateExtended answers (unique in the service).
    pub alias: String,
    /// Hex TOTP secret (RFC 6238, SHA1, 6 digits, 30 s); absent: the tool makes no OTP.
    #[serde(default)]
    pub seed: Option<String>,
    /// 0 active, 1 locked, 2 PIN-locked, 3 both. Only active tools authenticate.
    #[serde(default)]
    pub state: u8,
    /// Registered for push notifications (`ma` and `mac` only).
    #[serde(default)]
    pub push_enabled: bool,
    /// How the device answers a push.
    #[serde(default)]
    pub push: TbPush,
    /// The app version the answers carry (absent: null).
    #[serde(default)]
    pub version: Option<String>,
    /// The platform the answers carry, e.g. `iphone` (absent: null).
    #[serde(default)]
    pub platform: Option<String>,
}

impl TbToolConfig {
    /// An active tool with no seed and no push.
    pub fn new(kind: &str, id: u64, alias: impl Into<String>) -> Self {
        TbToolConfig {
            kind: kind.to_string(),
            id,
            name: String::new(),
            alias: alias.into(),
            seed: None,
            state: 0,
            push_enabled: false,
            push: TbPush::default(),
            version: None,
            platform: None,
        }
    }
}

/// `push = { action = "approve" | "refuse" | "ignore", after = "2s" }`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TbPush {
    /// What the person does with the push.
    #[serde(default = "default_action")]
    pub action: String,
    /// ... this long after it was sent (checkPushResult answers `NOK:WAITING` before).
    #[serde(default, with = "humantime_serde")]
    pub after: Option<Duration>,
}

fn default_action() -> String {
    "approve".into()
}

impl Default for TbPush {
    fn default() -> Self {
        TbPush {
            action: default_action(),
            after: None,
        }
    }
}

/// The push actions.
pub const PUSH_ACTIONS: [&str; 3] = ["approve", "refuse", "ignore"];

/// The tool kinds, in loginQuery order.
pub const TOOL_KINDS: [&str; 4] = ["ca", "ma", "mac", "va"];

/// Injected faults. All off by default. Order: latency, connection drop, HTTP status, then a
/// forced `err`, then the variants that change what a normal answer says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TbFaults {
    /// Added latency before answering, in milliseconds.
    pub latency_ms: u64,
    /// Answer this HTTP status (300-599, e.g. 500 or 503) with a short text/html body.
    pub http_status: Option<u16>,
    /// Close the connection without answering.
    pub connection_drop: bool,
    /// Action or operation name (`authenticateExtended`, `loginSearch`, ...) -> the `err`
    /// string answered instead of running it (REST: the whole answer is that err, other
    /// fields null; provisioning: the result's err / return string).
    pub err: BTreeMap<String, String>,
    /// With `err`: inject this many times per name, then behave normally (0 = always).
    pub err_times: u32,
    /// Upper-case variants: `NOK:NOPUSH`, `NOK:NOMA` instead of `NOK:NoPush`, `NOK:NoMA`.
    pub upper_case: bool,
    /// `NOK:account unknown ` (trailing space) instead of `NOK:account unknown`.
    pub account_unknown_trailing_space: bool,
    /// A wrong serviceId answers `NOK:access forbidden` instead of `NOK:srv unknown`.
    pub access_forbidden: bool,
}

impl TbFaults {
    /// Combines two fault sets (`other` is the user's): latencies add, flags OR, `http_status`
    /// and `err` entries of `other` win, `err_times` of `other` wins when it has entries.
    pub fn merge(&self, other: &TbFaults) -> TbFaults {
        let mut err = self.err.clone();
        err.extend(other.err.iter().map(|(k, v)| (k.clone(), v.clone())));
        TbFaults {
            latency_ms: self.latency_ms.saturating_add(other.latency_ms),
            http_status: other.http_status.or(self.http_status),
            connection_drop: self.connection_drop || other.connection_drop,
            err,
            err_times: if other.err.is_empty() {
                self.err_times
            } else {
                other.err_times
            },
            upper_case: self.upper_case || other.upper_case,
            account_unknown_trailing_space: self.account_unknown_trailing_space
                || other.account_unknown_trailing_space,
            access_forbidden: self.access_forbidden || other.access_forbidden,
        }
    }

    /// Checks what serde cannot: the HTTP status and the names in `err`.
    pub fn validate(&self) -> Result<(), SimError> {
        if let Some(s) = self.http_status {
            if !(300..=599).contains(&s) {
                return Err(SimError::Config(format!(
                    "faults.http_status {s} must be 300-599"
                )));
            }
        }
        for (name, v) in &self.err {
            if !super::ALL_NAMES.contains(&name.as_str()) {
                return Err(SimError::Config(format!(
                    "faults.err: unknown action or operation {name:?} (one of {})",
                    super::ALL_NAMES.join(", ")
                )));
            }
            if v.is_empty() {
                return Err(SimError::Config(format!("faults.err.{name} is empty")));
            }
        }
        Ok(())
    }
}

/// loginCreate's login charset: `a-z A-Z 0-9 @ \ . _ -` and space, 1-255 characters.
pub fn valid_login(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@\\._- ".contains(&b))
}

/// Decodes a hex TOTP seed (non-empty, even length).
pub fn decode_seed(s: &str) -> Option<Vec<u8>> {
    hex::decode(s.trim()).ok().filter(|k| !k.is_empty())
}

impl TbSimConfig {
    /// Default settings, the given TLS files and service id, no users.
    pub fn new(tls: TlsConfig, service_id: u64) -> Self {
        TbSimConfig {
            server: ServerConfig::default(),
            tls,
            service: TbServiceConfig {
                id: service_id,
                max_users: default_max_users(),
                push_timeout: default_push_timeout(),
            },
            faults: TbFaults::default(),
            users: Vec::new(),
        }
    }

    /// Parses and validates a TOML document (relative TLS paths stay relative to the current
    /// directory).
    pub fn from_toml_str(s: &str) -> Result<Self, SimError> {
        crate::config::parse_toml(s, Self::validate)
    }

    /// Reads, parses and validates a TOML file; relative TLS paths are resolved against its
    /// directory.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SimError> {
        crate::config::load_toml(path.as_ref(), Self::from_toml_str, |c| &mut c.tls)
    }

    /// Checks the values a TOML parser cannot; the message names the key.
    pub fn validate(&self) -> Result<(), SimError> {
        let err = |m: String| Err(SimError::Config(m));
        self.server.validate()?;
        if self.service.push_timeout.is_zero() {
            return err("service.push_timeout must be more than 0".into());
        }
        self.faults.validate()?;
        let mut logins = HashSet::new();
        let mut ids = HashSet::new();
        let mut aliases = HashSet::new();
        let mut tool_ids = HashSet::new();
        for u in &self.users {
            let who = format!("users login {:?}", u.login);
            // Console-made logins may hold more than loginCreate's charset (the reference's
            // `user+tag@example.com`): only control characters are refused here.
            if u.login.is_empty() || u.login.len() > 255 || u.login.chars().any(char::is_control) {
                return err(format!(
                    "{who}: login must be 1-255 bytes without control characters"
                ));
            }
            if !logins.insert(u.login.as_str()) {
                return err(format!("{who}: login appears twice"));
            }
            if let Some(id) = u.id {
                if id == 0 || !ids.insert(id) {
                    return err(format!("{who}: id {id} is 0 or appears twice"));
                }
            }
            if u.status > 1 {
                return err(format!("{who}: status must be 0 (active) or 1 (blocked)"));
            }
            if u.role > 2 {
                return err(format!(
                    "{who}: role must be 0 (user), 1 (manager) or 2 (administrator)"
                ));
            }
            u.faults
                .validate()
                .map_err(|e| SimError::Config(format!("{who}: {e}")))?;
            for t in &u.tools {
                let tw = format!("{who}: tools alias {:?}", t.alias);
                if !TOOL_KINDS.contains(&t.kind.as_str()) {
                    return err(format!(
                        "{tw}: kind {:?} must be one of ma, ca, mac, va",
                        t.kind
                    ));
                }
                if t.alias.is_empty() || !aliases.insert(t.alias.as_str()) {
                    return err(format!("{tw}: alias is empty or appears twice"));
                }
                if !tool_ids.insert((t.kind.as_str(), t.id)) {
                    return err(format!("{tw}: {} id {} appears twice", t.kind, t.id));
                }
                if t.state > 3 {
                    return err(format!(
                        "{tw}: state must be 0 (active), 1 (locked), 2 (PIN-locked) or 3"
                    ));
                }
                if let Some(seed) = &t.seed {
                    if decode_seed(seed).is_none() {
                        return err(format!("{tw}: seed is not a non-empty hex string"));
                    }
                }
                if t.push_enabled && !(t.kind == "ma" || t.kind == "mac") {
                    return err(format!(
                        "{tw}: push_enabled is only for kind ma or mac, not {}",
                        t.kind
                    ));
                }
                if !PUSH_ACTIONS.contains(&t.push.action.as_str()) {
                    return err(format!(
                        "{tw}: push.action {:?} must be approve, refuse or ignore",
                        t.push.action
                    ));
                }
            }
        }
        if self.users.len() > self.service.max_users {
            return err(format!(
                "service.max_users {} is less than the {} configured users",
                self.service.max_users,
                self.users.len()
            ));
        }
        Ok(())
    }
}
