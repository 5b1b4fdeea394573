//! `[directories.NAME]` with `kind = "ldap"`: the keys, their defaults, and reading the files
//! they name (CA bundle, service password).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::conn::ServiceAccount;
use crate::secret::Secret;

pub const DEFAULT_USER_FILTER: &str =
    "(|(sAMAccountName={user})(userPrincipalName={user})(uid={user}))";
pub const DEFAULT_GROUP_FILTER: &str =
    "(|(objectClass=group)(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))";

/// `[directories.NAME]` with `kind = "ldap"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host[:port]` or `ldap://host[:port]`, tried in order.
    pub urls: Vec<String>,
    /// StartTLS on `ldap://` URLs before anything else.
    #[serde(default = "yes")]
    pub start_tls: bool,
    /// Allows `ldap://` without StartTLS (passwords in clear): test directories only.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// PEM CA bundle the servers' certificates must chain to (default: the system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The service account that searches for users (and groups).
    #[serde(default)]
    pub bind_dn: Option<String>,
    #[serde(default)]
    pub bind_password: Option<Secret>,
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Where users (and, by default, groups) are searched.
    pub base_dn: String,
    /// Finds the user; `{user}` is the login name, RFC 4515-escaped.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Direct bind instead of the search: `{user}` is the login name, RFC 4514-escaped.
    #[serde(default)]
    pub user_dn_template: Option<String>,
    /// Connect, TLS, and each operation.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Connections per server (service-account ones; as many again for user binds).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// A server that failed to answer is tried last for this long.
    #[serde(default = "default_retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
    #[serde(default)]
    pub group_base_dn: Option<String>,
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    #[serde(default = "default_member_attribute")]
    pub member_attribute: String,
    #[serde(default)]
    pub nested_groups: NestedGroups,
}

/// How group memberships are found.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NestedGroups {
    /// AD only: one search with LDAP_MATCHING_RULE_IN_CHAIN.
    InChain,
    /// Breadth-first `(member=<dn>)` searches, cycle-safe, bounded.
    #[default]
    Recursive,
    /// Direct memberships only.
    None,
}

fn yes() -> bool {
    true
}
fn default_user_filter() -> String {
    DEFAULT_USER_FILTER.to_owned()
}
fn default_group_filter() -> String {
    DEFAULT_GROUP_FILTER.to_owned()
}
fn default_member_attribute() -> String {
    "member".to_owned()
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_pool_size() -> usize {
    4
}
fn default_retry_after() -> Duration {
    Duration::from_secs(30)
}

impl LdapConfig {
    /// A configuration with every default, for `urls` and `base_dn`.
    pub fn new(urls: Vec<String>, base_dn: impl Into<String>) -> LdapConfig {
        LdapConfig {
            urls,
            start_tls: true,
            allow_plaintext: false,
            ca_file: None,
            bind_dn: None,
            bind_password: None,
            bind_password_file: None,
            base_dn: base_dn.into(),
            user_filter: default_user_filter(),
            user_dn_template: None,
            timeout: default_timeout(),
            pool_size: default_pool_size(),
            retry_after: default_retry_after(),
            group_base_dn: None,
            group_filter: default_group_filter(),
            member_attribute: default_member_attribute(),
            nested_groups: NestedGroups::default(),
        }
    }
}

/// Secret files are short.
const MAX_SECRET_FILE_BYTES: usize = 64 * 1024;
const MAX_CA_FILE_BYTES: usize = 1 << 20;

fn read_file(
    base: &Path,
    p: &Path,
    key: &str,
    max: usize,
) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    let path = base.join(p);
    crate::files::read_at_most(&path, max).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            std::io::ErrorKind::PermissionDenied => {
                "permission denied: the user the bridge runs as \
                 (vip-bridge when packaged) must be able to read it, e.g. owner root, group \
                 vip-bridge, mode 0640"
                    .to_owned()
            }
            _ => e.to_string(),
        };
        format!("{key}: cannot read {}: {why}", path.display())
    })
}

pub(super) fn tls_config(
    cfg: &LdapConfig,
    base: &Path,
) -> Result<(Arc<rustls::ClientConfig>, Option<PathBuf>), String> {
    let mut roots = rustls::RootCertStore::empty();
    let ca_path = cfg.ca_file.as_ref().map(|p| base.join(p));
    match &cfg.ca_file {
        Some(p) => {
            let pem = read_file(base, p, "ca_file", MAX_CA_FILE_BYTES)?;
            let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(&pem[..]))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("ca_file ({}) is not valid PEM: {e}", p.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "ca_file ({}) holds no PEM certificate (-----BEGIN CERTIFICATE-----); \
                     export the CA as Base-64 (PEM), not DER",
                    p.display()
                ));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    format!(
                        "ca_file ({}) holds an unusable certificate: {e}",
                        p.display()
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "ca_file is not set and no system CA certificates were found: set \
                            ca_file to the CA that issued the directory's certificate"
                        .to_owned(),
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((Arc::new(config), ca_path))
}

pub(super) fn service_account(
    cfg: &LdapConfig,
    base: &Path,
) -> Result<Option<ServiceAccount>, String> {
    let password = match (&cfg.bind_password, &cfg.bind_password_file) {
        (Some(_), Some(_)) => {
            return Err("set either bind_password or bind_password_file, not both".into())
        }
        (Some(p), None) => Some(p.clone()),
        (None, Some(f)) => {
            let raw = read_file(base, f, "bind_password_file", MAX_SECRET_FILE_BYTES)?;
            let text = std::str::from_utf8(&raw)
                .map_err(|_| format!("bind_password_file ({}) is not UTF-8", f.display()))?;
            let text = text.strip_suffix('\n').unwrap_or(text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            Some(Secret::new(text))
        }
        (None, None) => None,
    };
    match (&cfg.bind_dn, password) {
        (None, None) => Ok(None),
        (Some(dn), Some(pw)) => {
            if dn.trim().is_empty() {
                return Err("bind_dn is empty".into());
            }
            if pw.is_empty() {
                return Err("the service account's password (bind_password / \
                            bind_password_file) is empty: an LDAP bind without a password is \
                            anonymous (RFC 4513 5.1.2), never the service account"
                    .into());
            }
            Ok(Some(ServiceAccount {
                dn: dn.clone(),
                password: pw,
            }))
        }
        (Some(_), None) => {
            Err("bind_dn is set without bind_password_file (or bind_password)".into())
        }
        (None, Some(_)) => {
            Err("bind_password_file (or bind_password) is set without bind_dn".into())
        }
    }
}
