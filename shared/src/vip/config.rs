//! Configuration of the VIP client (`[vip]` in the config file).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_AUTH_URL: &str =
    "https://userservices-auth.vip.symantec.com/vipuserservices/AuthenticationService_1_10";
pub const DEFAULT_QUERY_URL: &str =
    "https://userservices-auth.vip.symantec.com/vipuserservices/QueryService_1_10";
pub const DEFAULT_MANAGEMENT_URL: &str =
    "https://userservices-auth.vip.symantec.com/vipuserservices/ManagementService_1_10";

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VipConfig {
    /// AuthenticationService URL (authenticateUser, checkOtp, authenticateUserWithPush).
    pub auth_url: String,
    /// QueryService URL (pollPushStatus, getUserInfo, getServerTime, and for `vip-bridge admin`
    /// getTemporaryPasswordAttributes, getCredentialInfo).
    pub query_url: String,
    /// ManagementService URL (sendOtp, and `vip-bridge admin`'s user, credential, phone,
    /// PIN and temporary-code calls).
    pub management_url: String,
    /// The VIP client certificate as PEM (certificate chain), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The unencrypted PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Alternatively, the VIP client certificate and key as one PKCS#12 (.p12/.pfx) file.
    pub pkcs12_file: Option<PathBuf>,
    /// Passphrase of `pkcs12_file`, inline ...
    pub pkcs12_password: Option<crate::secret::Secret>,
    /// ... or read from a file (trailing newline ignored).
    pub pkcs12_password_file: Option<PathBuf>,
    /// A PEM CA bundle that replaces the system roots (for the simulator or a private chain).
    pub ca_file: Option<PathBuf>,
    /// Deadline of one VIP call, connect to last byte.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// At most this many VIP calls in flight; further calls wait up to `timeout` for a slot
    /// (then: overloaded here) before their own `timeout` for VIP starts.
    pub max_in_flight: usize,
    /// Prefix of generated VIP requestIds (letters, digits, `_`; at most 12).
    pub request_id_prefix: String,
    /// How often the health monitor asks VIP for its time (getServerTime). Fail-open acts only
    /// while this check (re-run at once after a failed login call) agrees VIP is down.
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
}

impl Default for VipConfig {
    fn default() -> Self {
        VipConfig {
            auth_url: DEFAULT_AUTH_URL.into(),
            query_url: DEFAULT_QUERY_URL.into(),
            management_url: DEFAULT_MANAGEMENT_URL.into(),
            cert_file: None,
            key_file: None,
            pkcs12_file: None,
            pkcs12_password: None,
            pkcs12_password_file: None,
            ca_file: None,
            timeout: Duration::from_secs(10),
            max_in_flight: 64,
            request_id_prefix: "vb".into(),
            health_check_interval: Duration::from_secs(30),
        }
    }
}
