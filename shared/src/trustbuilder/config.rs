//! Configuration of the TrustBuilder MFA client (`[trustbuilder]` in the config file).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::error::TbError;

/// TrustBuilder's API host; REST at `{api_url}/FS`, provisioning at
/// `{api_url}/v2/services/ConsoleAdmin`.
pub const DEFAULT_API_URL: &str = "https://api.myinwebo.com";

/// The longest `push_context` accepted (it is shown in the app).
const MAX_PUSH_CONTEXT: usize = 200;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustBuilderConfig {
    /// The service's number from the administration console (required).
    pub service_id: u64,
    /// The API's base URL (https).
    pub api_url: String,
    /// The "Web services API access" certificate and key as one PKCS#12 file ...
    pub pkcs12_file: Option<PathBuf>,
    /// ... and its passphrase, read from this file (trailing newline ignored).
    pub pkcs12_password_file: Option<PathBuf>,
    /// Alternatively the certificate as PEM, with `key_file` (unencrypted PEM key).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// A PEM CA bundle that replaces the system roots (for the simulator or a private chain).
    pub ca_file: Option<PathBuf>,
    /// Deadline of one call, connect to last byte.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// At most this many calls in flight; further calls wait up to `timeout` for a slot.
    pub max_in_flight: usize,
    /// How often the health monitor probes the service. Fail-open acts only while this check
    /// (re-run at once after a failed login call) agrees the service is down.
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// Text shown in the app with a push (`context`), if any.
    pub push_context: Option<String>,
    /// How long a login name's numeric id (provisioning look-up) is remembered.
    #[serde(with = "humantime_serde")]
    pub user_cache_ttl: Duration,
}

impl Default for TrustBuilderConfig {
    fn default() -> Self {
        TrustBuilderConfig {
            service_id: 0,
            api_url: DEFAULT_API_URL.into(),
            pkcs12_file: None,
            pkcs12_password_file: None,
            cert_file: None,
            key_file: None,
            ca_file: None,
            timeout: Duration::from_secs(10),
            max_in_flight: 64,
            health_check_interval: Duration::from_secs(30),
            push_context: None,
            user_cache_ttl: Duration::from_secs(60),
        }
    }
}

impl TrustBuilderConfig {
    /// Checks what serde cannot: every error names its key (`trustbuilder.service_id: ...`).
    /// The files and URL are checked when the client is built ([`super::TrustBuilderClient::new`]).
    pub fn validate(&self) -> Result<(), TbError> {
        if self.service_id == 0 {
            return Err(TbError::config(
                "trustbuilder.service_id: required: the service's number from the \
                 TrustBuilder administration console",
            ));
        }
        if self.pkcs12_file.is_none() && self.cert_file.is_none() {
            return Err(TbError::config(
                "trustbuilder.pkcs12_file: required (or trustbuilder.cert_file + \
                 trustbuilder.key_file): TrustBuilder's API requires the \"Web services API \
                 access\" client certificate",
            ));
        }
        if self.pkcs12_password_file.is_some() && self.pkcs12_file.is_none() {
            return Err(TbError::config(
                "trustbuilder.pkcs12_password_file: set without trustbuilder.pkcs12_file",
            ));
        }
        if self.timeout.is_zero() {
            return Err(TbError::config(
                "trustbuilder.timeout: must be more than zero",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(TbError::config(
                "trustbuilder.max_in_flight: must be at least 1",
            ));
        }
        if self.health_check_interval < Duration::from_secs(1) {
            return Err(TbError::config(
                "trustbuilder.health_check_interval: must be at least 1s",
            ));
        }
        if let Some(c) = &self.push_context {
            if c.chars().count() > MAX_PUSH_CONTEXT || c.chars().any(char::is_control) {
                return Err(TbError::config(format!(
                    "trustbuilder.push_context: at most {MAX_PUSH_CONTEXT} characters, no \
                     control characters"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_keys() {
        let c: TrustBuilderConfig =
            toml::from_str("service_id = 1234\npkcs12_file = \"/etc/tb.p12\"\n").unwrap();
        assert_eq!(c.api_url, DEFAULT_API_URL);
        c.validate().unwrap();
        let e = toml::from_str::<TrustBuilderConfig>("service_id = 1\nbogus = 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = TrustBuilderConfig::default().validate().unwrap_err();
        assert!(
            e.to_string().starts_with("trustbuilder.service_id: "),
            "{e}"
        );
        let c = TrustBuilderConfig {
            service_id: 1,
            cert_file: Some("/x.pem".into()),
            push_context: Some("a\nb".into()),
            ..TrustBuilderConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("trustbuilder.push_context: "), "{e}");
    }
}
