//! LDAP / Active Directory first factor (being built).

use std::path::Path;

use serde::Deserialize;

use super::{BoxFuture, DirectoryUser, FirstFactor, FirstFactorError, Lookup, ProbeReport, Verdict};
use crate::secret::Secret;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    pub urls: Vec<String>,
}

pub struct Ldap;

impl Ldap {
    pub fn new(_cfg: &LdapConfig, _base: &Path) -> Result<Ldap, String> {
        Err("not built yet".into())
    }
}

impl FirstFactor for Ldap {
    fn kind(&self) -> &'static str {
        "ldap"
    }
    fn verify<'a>(
        &'a self,
        _who: Lookup<'a>,
        _password: &'a Secret,
        _upstream_state: Option<&'a [u8]>,
    ) -> BoxFuture<'a, Result<Verdict, FirstFactorError>> {
        Box::pin(async { Err(FirstFactorError::Misconfigured("not built".into())) })
    }
    fn lookup<'a>(
        &'a self,
        _who: Lookup<'a>,
    ) -> BoxFuture<'a, Result<Option<DirectoryUser>, FirstFactorError>> {
        Box::pin(async { Err(FirstFactorError::Misconfigured("not built".into())) })
    }
    fn probe(&self) -> BoxFuture<'_, Vec<ProbeReport>> {
        Box::pin(async { Vec::new() })
    }
}
