//! First factors: the directory password checked before the second factor, so one RADIUS
//! request (or one challenge dialogue) carries both, as VIP Enterprise Gateway's "User ID – LDAP
//! Password – Security Code" mode and Duo's `ad_client` / `radius_client` do.
//!
//! Two kinds, each the only place its wire format lives:
//! - [`ldap`]: LDAP / Active Directory over LDAPS or StartTLS (search-then-bind or a DN
//!   template), with optional (nested) group membership;
//! - [`radius`]: an upstream RADIUS server (NPS, FreeRADIUS, RSA) asked with PAP; its reply
//!   attributes pass through into our Access-Accept, its Access-Challenge is relayed.
//!
//! Both answer with the same classes as the VIP client: a verdict (passed, refused, a
//! question), or an error that is an outage, a misconfiguration or overload here. A first
//! factor never fails open: every error rejects.

pub mod ldap;
pub mod radius;

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use serde::Deserialize;

use crate::secret::Secret;

pub type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// `[directories.NAME]`: one directory (LDAP) or upstream RADIUS server set.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DirectoryConfig {
    Ldap(ldap::LdapConfig),
    Radius(radius::UpstreamRadiusConfig),
}

impl DirectoryConfig {
    /// `ldap` or `radius`: what a policy's `first_factor` names.
    pub fn kind(&self) -> &'static str {
        match self {
            DirectoryConfig::Ldap(_) => "ldap",
            DirectoryConfig::Radius(_) => "radius",
        }
    }

    /// Checks what serde cannot and reads the files it names (CA, password / secret files,
    /// relative to `base`); `Err` says what is wrong, naming the key (without the
    /// `directories.NAME.` prefix, which the caller adds).
    pub fn build(&self, base: &Path) -> Result<Arc<dyn FirstFactor>, String> {
        match self {
            DirectoryConfig::Ldap(c) => Ok(Arc::new(ldap::Ldap::new(c, base)?)),
            DirectoryConfig::Radius(c) => Ok(Arc::new(radius::UpstreamRadius::new(c, base)?)),
        }
    }
}

/// The directory a policy uses: `named` (which must be of `kind`), or the only one of `kind`.
pub fn pick<'a>(
    directories: impl IntoIterator<Item = (&'a str, &'static str)>,
    kind: &str,
    named: Option<&'a str>,
) -> Result<&'a str, String> {
    let all: Vec<(&str, &str)> = directories.into_iter().collect();
    match named {
        Some(name) => match all.iter().find(|(n, _)| *n == name) {
            Some((n, k)) if *k == kind => Ok(n),
            Some((_, k)) => Err(format!(
                "directory = {name:?} is of kind {k:?}, this needs kind {kind:?}"
            )),
            None => Err(format!(
                "directory = {name:?}: no [directories.{name}] is configured"
            )),
        },
        None => {
            let of_kind: Vec<&str> = all
                .iter()
                .filter(|(_, k)| *k == kind)
                .map(|(n, _)| *n)
                .collect();
            match of_kind.as_slice() {
                [one] => Ok(one),
                [] => Err(format!(
                    "needs a [directories.NAME] section with kind = {kind:?}; none is configured"
                )),
                many => Err(format!(
                    "several directories of kind {kind:?} ({}): name one with directory = \"NAME\"",
                    many.join(", ")
                )),
            }
        }
    }
}

/// Whether `user` is a member of `group` (a DN as written in the configuration), comparing DNs
/// the way the directory's answers were normalised (case, spaces around separators).
pub fn is_member(user: &DirectoryUser, group: &str) -> bool {
    let group = ldap::text::normalize_dn(group);
    user.groups.contains(&group)
}

/// One RADIUS attribute as it travels on the wire: its type and value octets (a
/// Vendor-Specific attribute keeps its vendor id and sub-attributes in `value`).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RawAttribute {
    pub kind: u8,
    pub value: Vec<u8>,
}

impl std::fmt::Debug for RawAttribute {
    // Values may be anything the upstream sends (Class carries session data): length only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RawAttribute({}, <{} bytes>)",
            self.kind,
            self.value.len()
        )
    }
}

/// Who to check, and what to bring back besides the verdict.
#[derive(Clone, Copy, Debug)]
pub struct Lookup<'a> {
    /// The login name after normalisation (no `DOMAIN\`, no `@realm` where the policy strips
    /// them): what the directory's filter or DN template is filled with.
    pub login: &'a str,
    /// An attribute of the user's entry to return (login-name mapping, e.g. `mail`).
    pub attribute: Option<&'a str>,
    /// Whether to return the user's group memberships (nested ones included).
    pub groups: bool,
}

/// What a passed first factor (or a look-up) tells about the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The user's entry (LDAP DN), for logs; `None` for upstream RADIUS.
    pub dn: Option<String>,
    /// The value of [`Lookup::attribute`], when asked and present (the first value).
    pub attribute: Option<String>,
    /// Group DNs, lower-cased, direct and nested, when [`Lookup::groups`] asked for them.
    pub groups: Vec<String>,
    /// Reply attributes of the upstream's Access-Accept to pass through (upstream RADIUS).
    pub reply_attributes: Vec<RawAttribute>,
}

/// The first factor's answer.
#[derive(Debug)]
pub enum Verdict {
    Passed(DirectoryUser),
    /// Wrong password, unknown or disabled user: `why` is for the log (never the password).
    Refused {
        why: String,
    },
    /// The upstream asks a question (RADIUS Access-Challenge, e.g. its own new-PIN mode):
    /// show `prompt`, send the answer back with `state`.
    Challenge {
        prompt: String,
        state: Vec<u8>,
    },
}

/// Why a first factor could not give a verdict. Classed where it happens, as the VIP
/// client's errors are; none of them lets a login through.
#[derive(Debug, thiserror::Error)]
pub enum FirstFactorError {
    /// No server could be reached or answered in time.
    #[error("directory unreachable: {0}")]
    Outage(String),
    /// Our side is wrong: the service account's bind refused, TLS verification failed, a reply
    /// that does not verify with the shared secret, a protocol error.
    #[error("directory misconfigured or misbehaving: {0}")]
    Misconfigured(String),
    /// No free connection slot in time.
    #[error("directory overloaded here: {0}")]
    Overloaded(String),
}

impl FirstFactorError {
    /// `outage`, `misconfigured` or `overloaded`: for metrics labels.
    pub fn class(&self) -> &'static str {
        match self {
            FirstFactorError::Outage(_) => "outage",
            FirstFactorError::Misconfigured(_) => "misconfigured",
            FirstFactorError::Overloaded(_) => "overloaded",
        }
    }
}

/// One server's state as `check-config` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// The server (URL or address).
    pub server: String,
    /// `Ok`: what worked ("service account bound, test search found 0 entries in 3 ms");
    /// `Err`: what failed, and what to do.
    pub result: Result<String, String>,
}

/// A first-factor service.
pub trait FirstFactor: Send + Sync + 'static {
    /// `ldap` or `radius`.
    fn kind(&self) -> &'static str;

    /// Checks `password` for `who`. `upstream_state` is the State of the upstream's previous
    /// Access-Challenge when `password` answers it (upstream RADIUS only).
    fn verify<'a>(
        &'a self,
        who: Lookup<'a>,
        password: &'a Secret,
        upstream_state: Option<&'a [u8]>,
    ) -> BoxFuture<'a, Result<Verdict, FirstFactorError>>;

    /// Finds `who` without a password (login-name mapping by attribute where another
    /// first factor, such as PAM's stack, checked the password). `Ok(None)`: no such user.
    /// Upstream RADIUS cannot look anyone up and answers `Misconfigured`.
    fn lookup<'a>(
        &'a self,
        who: Lookup<'a>,
    ) -> BoxFuture<'a, Result<Option<DirectoryUser>, FirstFactorError>>;

    /// Tries every configured server once (`check-config`).
    fn probe(&self) -> BoxFuture<'_, Vec<ProbeReport>>;
}
