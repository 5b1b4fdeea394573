//! LDAP / Active Directory first factor: the user's directory password, checked by a bind
//! over LDAPS or StartTLS, found by a service-account search (`user_filter`, the default) or
//! put together from `user_dn_template` (direct bind); optionally the user's groups, nested
//! ones included (AD's in-chain rule, a bounded breadth-first walk, or direct only) and one
//! attribute of their entry.
//!
//! Several `urls` are tried in order; one that failed to answer is tried last for
//! `retry_after`. A password is never logged and an empty one is never sent (a simple bind
//! with a DN and no password is an unauthenticated bind that many servers let succeed,
//! RFC 4513 §5.1.2). Every failure is a refusal or an error; none lets a login through.

mod config;
mod conn;
pub mod text;

pub use self::config::{LdapConfig, NestedGroups, DEFAULT_GROUP_FILTER, DEFAULT_USER_FILTER};

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use ldap3::Scope;

use self::config::{service_account, tls_config};
use self::conn::{BindOutcome, Fail, Found, Pooled, SearchReq, Server, ServiceAccount};
use self::text::Security;
use super::{
    BoxFuture, DirectoryUser, FirstFactor, FirstFactorError, Lookup, ProbeReport, Verdict,
};
use crate::log_limit::OncePerSecondPerKey;
use crate::secret::Secret;

/// Nested groups are followed this deep at most (`recursive`).
pub const MAX_GROUP_DEPTH: usize = 10;
/// At most this many groups are returned (and asked of the server in one search).
pub const MAX_GROUPS: usize = 1000;
/// Member DNs asked about in one search of the `recursive` walk.
const MEMBERS_PER_SEARCH: usize = 32;

/// How the user's entry is found.
enum Mode {
    Search { filter: String },
    Template { template: String },
}

pub struct Ldap {
    servers: Vec<Server>,
    mode: Mode,
    service: Option<ServiceAccount>,
    base_dn: String,
    group_base_dn: String,
    group_filter: String,
    member_attribute: String,
    nested: NestedGroups,
    retry_after: Duration,
    /// Server failures, per server: a stranger's logins can trigger them.
    warn_limit: OncePerSecondPerKey,
    /// Ambiguous user filters (per filter: one key).
    ambiguous_limit: OncePerSecondPerKey,
}

impl Ldap {
    pub fn new(cfg: &LdapConfig, base: &Path) -> Result<Ldap, String> {
        if cfg.urls.is_empty() {
            return Err("urls is empty: name at least one server (ldaps://dc1.example.org)".into());
        }
        if cfg.timeout < Duration::from_millis(100) || cfg.timeout > Duration::from_secs(300) {
            return Err(format!(
                "timeout {}: must be between 100ms and 5m",
                humantime::format_duration(cfg.timeout)
            ));
        }
        if cfg.retry_after > Duration::from_secs(3600) {
            return Err(format!(
                "retry_after {}: must be at most 1h",
                humantime::format_duration(cfg.retry_after)
            ));
        }
        if !(1..=64).contains(&cfg.pool_size) {
            return Err(format!(
                "pool_size {}: must be between 1 and 64",
                cfg.pool_size
            ));
        }
        let mut urls = Vec::new();
        for u in &cfg.urls {
            let parsed = text::parse_url(u)?;
            let security = match (parsed.ldaps, cfg.start_tls, cfg.allow_plaintext) {
                (true, _, _) => Security::Ldaps,
                (false, true, _) => Security::StartTls,
                (false, false, true) => Security::Plain,
                (false, false, false) => {
                    return Err(format!(
                        "urls: {u:?} with start_tls = false would send every password in \
                         clear text: use ldaps://, or keep start_tls = true (the default); set \
                         allow_plaintext = true only for a test directory on a trusted network"
                    ))
                }
            };
            urls.push((u.clone(), parsed, security));
        }
        if cfg.base_dn.trim().is_empty() {
            return Err(
                "base_dn is empty: set it to the subtree holding the users (dc=example,dc=org)"
                    .into(),
            );
        }
        let service = service_account(cfg, base)?;
        let mode = match &cfg.user_dn_template {
            Some(t) => {
                if !t.contains("{user}") {
                    return Err(format!(
                        "user_dn_template {t:?} has no {{user}}: e.g. \
                         uid={{user}},ou=people,dc=example,dc=org"
                    ));
                }
                if !t.contains('=') {
                    return Err(format!(
                        "user_dn_template {t:?} is not a DN (attr=value,...)"
                    ));
                }
                Mode::Template {
                    template: t.clone(),
                }
            }
            None => {
                if service.is_none() {
                    return Err(
                        "bind_dn and bind_password_file are required to search for users \
                                (or set user_dn_template for a direct bind without a service \
                                account)"
                            .into(),
                    );
                }
                if !cfg.user_filter.contains("{user}") {
                    return Err(format!(
                        "user_filter {:?} has no {{user}}: it would match the same entries for \
                         everyone",
                        cfg.user_filter
                    ));
                }
                text::check_filter("user_filter", &cfg.user_filter)?;
                Mode::Search {
                    filter: cfg.user_filter.clone(),
                }
            }
        };
        text::check_filter("group_filter", &cfg.group_filter)?;
        if !text::is_attribute_name(&cfg.member_attribute) {
            return Err(format!(
                "member_attribute {:?} is not an attribute name (member, uniqueMember)",
                cfg.member_attribute
            ));
        }
        let (tls, ca_path) = tls_config(cfg, base)?;
        let servers: Vec<Server> = urls
            .into_iter()
            .map(|(name, parsed, security)| {
                Server::new(
                    name,
                    parsed,
                    security,
                    tls.clone(),
                    ca_path.clone(),
                    cfg.timeout,
                    cfg.pool_size,
                )
            })
            .collect();
        if servers.iter().any(|s| s.security == Security::Plain) {
            tracing::warn!("LDAP allow_plaintext: passwords cross the network in clear text");
        }
        Ok(Ldap {
            warn_limit: OncePerSecondPerKey::new(servers.len()),
            ambiguous_limit: OncePerSecondPerKey::new(1),
            servers,
            mode,
            service,
            base_dn: cfg.base_dn.clone(),
            group_base_dn: cfg
                .group_base_dn
                .clone()
                .unwrap_or_else(|| cfg.base_dn.clone()),
            group_filter: cfg.group_filter.clone(),
            member_attribute: cfg.member_attribute.clone(),
            nested: cfg.nested_groups,
            retry_after: cfg.retry_after,
        })
    }

    /// Server indexes in the order to try: those that answered lately first, in
    /// configuration order, then those that failed within `retry_after`.
    fn order(&self) -> Vec<usize> {
        let now = Instant::now();
        let (down, up): (Vec<usize>, Vec<usize>) =
            (0..self.servers.len()).partition(|&i| self.servers[i].is_down(now));
        up.into_iter().chain(down).collect()
    }

    fn server_failed(&self, i: usize, why: &str) {
        let s = &self.servers[i];
        s.mark_down(self.retry_after);
        if let Some(held) = self.warn_limit.pass(i) {
            tracing::warn!(
                server = %s.name,
                "LDAP server failed, trying the next one: {why}{}",
                if held > 0 { format!(" ({held} more suppressed)") } else { String::new() }
            );
        }
    }

    /// Runs `attempt` on each server in turn until one gives an answer.
    async fn on_servers<'s, T, F, Fut>(&'s self, mut attempt: F) -> Result<T, FirstFactorError>
    where
        F: FnMut(&'s Server) -> Fut,
        Fut: std::future::Future<Output = Result<T, Fail>>,
    {
        let mut failures = Vec::new();
        for i in self.order() {
            let s = &self.servers[i];
            match attempt(s).await {
                Ok(v) => {
                    s.mark_up();
                    return Ok(v);
                }
                Err(Fail::Down(why)) => {
                    self.server_failed(i, &why);
                    failures.push(format!("{}: {why}", s.name));
                }
                Err(Fail::Wrong(why)) => {
                    return Err(FirstFactorError::Misconfigured(format!(
                        "{}: {why}",
                        s.name
                    )))
                }
                Err(Fail::Busy(why)) => return Err(FirstFactorError::Overloaded(why)),
            }
        }
        Err(FirstFactorError::Outage(failures.join("; ")))
    }

    fn attrs(attribute: Option<&str>) -> Result<Vec<String>, FirstFactorError> {
        match attribute {
            None => Ok(vec!["1.1".to_owned()]),
            Some(a) if text::is_attribute_name(a) => Ok(vec![a.to_owned()]),
            Some(a) => Err(FirstFactorError::Misconfigured(format!(
                "the attribute {a:?} to return is not an attribute name"
            ))),
        }
    }

    /// The user's entry by `user_filter`, with the service account: `Ok(Err(why))` when not
    /// exactly one entry matches.
    async fn find_user(
        &self,
        s: &Server,
        sa: &ServiceAccount,
        filter: &str,
        who: &Lookup<'_>,
        attrs: Vec<String>,
    ) -> Result<Result<ldap3::SearchEntry, String>, Fail> {
        let f = text::user_filter(filter, who.login);
        let req = SearchReq {
            base: &self.base_dn,
            scope: Scope::Subtree,
            filter: &f,
            attrs,
            limit: 2,
            base_key: "base_dn",
            missing_ok: false,
        };
        let mut found = s.service_search(sa, &req).await?;
        match found.entries.len() {
            0 => Ok(Err(format!("no such user {:?} under base_dn", who.login))),
            1 if !found.truncated => Ok(Ok(found.entries.remove(0))),
            _ => {
                if let Some(held) = self.ambiguous_limit.pass(0) {
                    tracing::warn!(
                        login = who.login,
                        "LDAP user_filter matches more than one entry for this login name \
                         ({}, ...): refused; make user_filter match one attribute that is unique{}",
                        found.entries[0].dn,
                        if held > 0 {
                            format!(" ({held} more suppressed)")
                        } else {
                            String::new()
                        }
                    );
                }
                Ok(Err(format!(
                    "ambiguous: user_filter matches more than one entry for {:?}",
                    who.login
                )))
            }
        }
    }

    async fn verify_on(
        &self,
        s: &Server,
        who: &Lookup<'_>,
        password: &Secret,
    ) -> Result<Verdict, Fail> {
        let attrs = Self::attrs(who.attribute).map_err(|e| Fail::Wrong(e.to_string()))?;
        match &self.mode {
            Mode::Search { filter } => {
                let Some(sa) = &self.service else {
                    return Err(Fail::Wrong(
                        "no service account (bind_dn) to search with".into(),
                    ));
                };
                let entry = match self.find_user(s, sa, filter, who, attrs).await? {
                    Ok(e) => e,
                    Err(why) => return Ok(Verdict::Refused { why }),
                };
                let (outcome, conn) = s.user_bind(&entry.dn, password).await?;
                if let BindOutcome::Refused(rc, diag) = outcome {
                    return Ok(Verdict::Refused {
                        why: refused_why(&entry.dn, rc, &diag),
                    });
                }
                let mut conn = conn;
                conn.keep();
                drop(conn);
                let groups = if who.groups {
                    self.groups(&mut Via::Service(s, sa), &entry.dn).await?
                } else {
                    Vec::new()
                };
                Ok(Verdict::Passed(DirectoryUser {
                    attribute: who.attribute.and_then(|a| conn::first_value(&entry, a)),
                    dn: Some(entry.dn),
                    groups,
                    reply_attributes: Vec::new(),
                }))
            }
            Mode::Template { template } => {
                let dn = text::user_dn(template, who.login);
                let (outcome, mut conn) = s.user_bind(&dn, password).await?;
                if let BindOutcome::Refused(rc, diag) = outcome {
                    return Ok(Verdict::Refused {
                        why: refused_why(&dn, rc, &diag),
                    });
                }
                // Read the user's own entry and groups with their own bind.
                let req = SearchReq {
                    base: &dn,
                    scope: Scope::Base,
                    filter: "(objectClass=*)",
                    attrs,
                    limit: 1,
                    base_key: "the user's entry (user_dn_template)",
                    missing_ok: true,
                };
                let attribute = if who.attribute.is_some() {
                    let found = s.search_on(&mut conn.ldap, &req).await?;
                    found
                        .entries
                        .first()
                        .and_then(|e| who.attribute.and_then(|a| conn::first_value(e, a)))
                } else {
                    None
                };
                let groups = if who.groups {
                    self.groups(&mut Via::Conn(s, &mut conn), &dn).await?
                } else {
                    Vec::new()
                };
                conn.keep();
                Ok(Verdict::Passed(DirectoryUser {
                    dn: Some(dn),
                    attribute,
                    groups,
                    reply_attributes: Vec::new(),
                }))
            }
        }
    }

    async fn lookup_on(
        &self,
        s: &Server,
        sa: &ServiceAccount,
        who: &Lookup<'_>,
    ) -> Result<Option<DirectoryUser>, Fail> {
        let attrs = Self::attrs(who.attribute).map_err(|e| Fail::Wrong(e.to_string()))?;
        let entry = match &self.mode {
            Mode::Search { filter } => match self.find_user(s, sa, filter, who, attrs).await? {
                Ok(e) => e,
                Err(_) => return Ok(None),
            },
            Mode::Template { template } => {
                let dn = text::user_dn(template, who.login);
                let req = SearchReq {
                    base: &dn,
                    scope: Scope::Base,
                    filter: "(objectClass=*)",
                    attrs,
                    limit: 1,
                    base_key: "the user's entry (user_dn_template)",
                    missing_ok: true,
                };
                let mut found = s.service_search(sa, &req).await?;
                if found.entries.is_empty() {
                    return Ok(None);
                }
                found.entries.remove(0)
            }
        };
        let groups = if who.groups {
            self.groups(&mut Via::Service(s, sa), &entry.dn).await?
        } else {
            Vec::new()
        };
        Ok(Some(DirectoryUser {
            attribute: who.attribute.and_then(|a| conn::first_value(&entry, a)),
            dn: Some(entry.dn),
            groups,
            reply_attributes: Vec::new(),
        }))
    }

    /// The groups `user_dn` is in, as `nested_groups` says, normalised (lower-case).
    async fn groups(&self, via: &mut Via<'_, '_>, user_dn: &str) -> Result<Vec<String>, Fail> {
        let search = |filter: String| (filter, self.group_base_dn.as_str());
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        match self.nested {
            NestedGroups::InChain | NestedGroups::None => {
                let filter = if self.nested == NestedGroups::InChain {
                    text::in_chain_filter(&self.group_filter, &self.member_attribute, user_dn)
                } else {
                    text::member_filter(
                        &self.group_filter,
                        &self.member_attribute,
                        &[user_dn.to_owned()],
                    )
                };
                let (f, base) = search(filter);
                let found = via.search(&group_req(base, &f)).await?;
                self.note_truncated(&found, user_dn);
                for e in found.entries {
                    let n = text::normalize_dn(&e.dn);
                    if seen.insert(n.clone()) {
                        out.push(n);
                    }
                }
            }
            NestedGroups::Recursive => {
                seen.insert(text::normalize_dn(user_dn));
                let mut frontier = vec![user_dn.to_owned()];
                'walk: for _depth in 0..MAX_GROUP_DEPTH {
                    if frontier.is_empty() {
                        break;
                    }
                    let mut next = Vec::new();
                    for chunk in frontier.chunks(MEMBERS_PER_SEARCH) {
                        let (f, base) = search(text::member_filter(
                            &self.group_filter,
                            &self.member_attribute,
                            chunk,
                        ));
                        let found = via.search(&group_req(base, &f)).await?;
                        self.note_truncated(&found, user_dn);
                        for e in found.entries {
                            let n = text::normalize_dn(&e.dn);
                            if seen.insert(n.clone()) {
                                out.push(n);
                                next.push(e.dn);
                                if out.len() >= MAX_GROUPS {
                                    tracing::warn!(
                                        user = user_dn,
                                        "LDAP group walk stopped at {MAX_GROUPS} groups"
                                    );
                                    break 'walk;
                                }
                            }
                        }
                    }
                    frontier = next;
                }
                if !frontier.is_empty() && out.len() < MAX_GROUPS {
                    tracing::debug!(
                        user = user_dn,
                        "LDAP group walk stopped at depth {MAX_GROUP_DEPTH}"
                    );
                }
            }
        }
        Ok(out)
    }

    fn note_truncated(&self, found: &Found, user_dn: &str) {
        if found.truncated {
            tracing::warn!(
                user = user_dn,
                "LDAP group search hit the size limit ({MAX_GROUPS}): group list incomplete"
            );
        }
    }

    async fn probe_one(&self, s: &Server) -> Result<String, String> {
        let started = Instant::now();
        let explain = |f: Fail| match f {
            Fail::Down(why) => format!(
                "{why}: is the server running and reachable from here (urls: host and port; \
                 firewall)?"
            ),
            Fail::Wrong(why) | Fail::Busy(why) => why,
        };
        let mut ldap = s.open().await.map_err(explain)?;
        let mut done = format!("connected over {}", s.security.describe());
        if let Some(sa) = &self.service {
            s.bind_service(&mut ldap, sa).await.map_err(explain)?;
            let req = SearchReq {
                base: &self.base_dn,
                scope: Scope::Base,
                filter: "(objectClass=*)",
                attrs: vec!["1.1".to_owned()],
                limit: 1,
                base_key: "base_dn",
                missing_ok: false,
            };
            let found = s.search_on(&mut ldap, &req).await.map_err(explain)?;
            if found.entries.is_empty() {
                return Err(format!(
                    "base_dn {:?} is not readable by the service account: grant it read access",
                    self.base_dn
                ));
            }
            done.push_str(", service account bound, base_dn readable");
        } else {
            done.push_str(", no service account (user_dn_template): user binds not tried");
        }
        let _ = ldap.unbind().await;
        Ok(format!("{done}, {} ms", started.elapsed().as_millis()))
    }
}

fn group_req<'a>(base: &'a str, filter: &'a str) -> SearchReq<'a> {
    SearchReq {
        base,
        scope: Scope::Subtree,
        filter,
        attrs: vec!["1.1".to_owned()],
        limit: MAX_GROUPS,
        base_key: "group_base_dn",
        missing_ok: false,
    }
}

/// Why a user's bind was refused, in words (AD's sub-code when present); never the password.
fn refused_why(dn: &str, rc: u32, diagnostic: &str) -> String {
    match (rc, text::ad_bind_reason(diagnostic)) {
        (_, Some(reason)) => format!("bind as {dn} refused: {reason}"),
        (49, None) => format!("bind as {dn} refused: wrong password (invalidCredentials)"),
        (rc, None) => format!("bind as {dn} refused: {}", text::rc_text(rc, diagnostic)),
    }
}

/// What group searches run on: a pooled service-account connection each, or the user's own
/// bound connection (direct bind).
enum Via<'s, 'c> {
    Service(&'s Server, &'s ServiceAccount),
    Conn(&'s Server, &'c mut Pooled<'s>),
}

impl Via<'_, '_> {
    async fn search(&mut self, req: &SearchReq<'_>) -> Result<Found, Fail> {
        match self {
            Via::Service(s, sa) => s.service_search(sa, req).await,
            Via::Conn(s, c) => s.search_on(&mut c.ldap, req).await,
        }
    }
}

impl FirstFactor for Ldap {
    fn kind(&self) -> &'static str {
        "ldap"
    }

    fn verify<'a>(
        &'a self,
        who: Lookup<'a>,
        password: &'a Secret,
        _upstream_state: Option<&'a [u8]>,
    ) -> BoxFuture<'a, Result<Verdict, FirstFactorError>> {
        Box::pin(async move {
            if password.is_empty() {
                // Never sent: with a DN and no password, a simple bind is an unauthenticated
                // bind, which servers may answer with success (RFC 4513 5.1.2).
                return Ok(Verdict::Refused {
                    why:
                        "empty password (not sent: an LDAP bind without a password proves nothing)"
                            .into(),
                });
            }
            if who.login.is_empty() {
                return Ok(Verdict::Refused {
                    why: "empty login name".into(),
                });
            }
            self.on_servers(|s| self.verify_on(s, &who, password)).await
        })
    }

    fn lookup<'a>(
        &'a self,
        who: Lookup<'a>,
    ) -> BoxFuture<'a, Result<Option<DirectoryUser>, FirstFactorError>> {
        Box::pin(async move {
            let Some(sa) = &self.service else {
                return Err(FirstFactorError::Misconfigured(
                    "looking a user up needs a service account: set bind_dn and \
                     bind_password_file (user_dn_template alone can only check passwords)"
                        .into(),
                ));
            };
            if who.login.is_empty() {
                return Ok(None);
            }
            self.on_servers(|s| self.lookup_on(s, sa, &who)).await
        })
    }

    fn probe(&self) -> BoxFuture<'_, Vec<ProbeReport>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for s in &self.servers {
                out.push(ProbeReport {
                    server: s.name.clone(),
                    result: self.probe_one(s).await,
                });
            }
            out
        })
    }
}

#[cfg(test)]
mod tests;
