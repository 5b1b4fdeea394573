//! One directory server: opening connections (TCP, TLS or StartTLS, each step bounded by
//! `timeout`), two bounded pools (service-account connections for searches, and connections
//! used only for users' binds, so a pooled search connection never changes identity), and
//! every failure classed as this server being down, our configuration being wrong, or no
//! free slot here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::text::{self, Security, ServerUrl};
use crate::secret::Secret;

/// How an attempt on one server failed.
#[derive(Debug)]
pub enum Fail {
    /// This server is unreachable, busy or unavailable: try the next one.
    Down(String),
    /// Our side (configuration) or the server's behaviour is wrong: retrying elsewhere would
    /// not help, and nothing must pass.
    Wrong(String),
    /// No free connection slot within `timeout`.
    Busy(String),
}

/// A search to run.
pub struct SearchReq<'a> {
    pub base: &'a str,
    pub scope: Scope,
    pub filter: &'a str,
    pub attrs: Vec<String>,
    /// Size limit asked of the server (and enforced here).
    pub limit: usize,
    /// What the base is, for messages (`base_dn`, `group_base_dn`, "the user's entry").
    pub base_key: &'a str,
    /// noSuchObject (32) for the base means "nothing found", not a misconfiguration.
    pub missing_ok: bool,
}

/// What a search found.
pub struct Found {
    pub entries: Vec<SearchEntry>,
    /// The server stopped at the size limit: more entries matched.
    pub truncated: bool,
}

/// A user bind's answer.
pub enum BindOutcome {
    Bound,
    /// The server refused these credentials: (result code, diagnostic text).
    Refused(u32, String),
}

/// The service account.
pub struct ServiceAccount {
    pub dn: String,
    pub password: Secret,
}

struct Pool {
    slots: Semaphore,
    idle: Mutex<Vec<ldap3::Ldap>>,
    size: usize,
    what: &'static str,
}

impl Pool {
    fn new(size: usize, what: &'static str) -> Pool {
        Pool {
            slots: Semaphore::new(size),
            idle: Mutex::new(Vec::with_capacity(size)),
            size,
            what,
        }
    }

    fn pop_idle(&self) -> Option<ldap3::Ldap> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut l) = idle.pop() {
            if !l.is_closed() {
                return Some(l);
            }
        }
        None
    }
}

/// A connection out of a pool; back into it on drop only when [`Pooled::keep`] was called
/// (after an operation that went well), otherwise closed.
pub struct Pooled<'a> {
    pub ldap: ldap3::Ldap,
    /// Taken from the pool (it may have gone stale since), not opened for this call.
    pub reused: bool,
    keep: bool,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
}

impl Pooled<'_> {
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if self.keep {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.pool.size {
                idle.push(self.ldap.clone());
            }
        }
    }
}

pub struct Server {
    /// As configured, for messages.
    pub name: String,
    url: ServerUrl,
    pub security: Security,
    tls: Arc<rustls::ClientConfig>,
    ca_file: Option<std::path::PathBuf>,
    timeout: Duration,
    service_pool: Pool,
    bind_pool: Pool,
    /// Until when this server is tried last (it failed to answer).
    down_until: Mutex<Option<Instant>>,
}

impl Server {
    pub fn new(
        name: String,
        url: ServerUrl,
        security: Security,
        tls: Arc<rustls::ClientConfig>,
        ca_file: Option<std::path::PathBuf>,
        timeout: Duration,
        pool_size: usize,
    ) -> Server {
        Server {
            name,
            url,
            security,
            tls,
            ca_file,
            timeout,
            service_pool: Pool::new(pool_size, "service-account"),
            // Binds are short; a pool as large keeps one user's slow bind from queueing others.
            bind_pool: Pool::new(pool_size, "user-bind"),
            down_until: Mutex::new(None),
        }
    }

    pub fn is_down(&self, now: Instant) -> bool {
        let d = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        d.is_some_and(|until| now < until)
    }

    pub fn mark_down(&self, for_: Duration) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + for_);
    }

    pub fn mark_up(&self) {
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn within(&self) -> String {
        format!(
            "no answer within {}",
            humantime::format_duration(self.timeout)
        )
    }

    /// A new connection: TCP, then TLS (LDAPS) or StartTLS, each bounded by `timeout`.
    pub async fn open(&self) -> Result<ldap3::Ldap, Fail> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_config(self.tls.clone())
            .set_starttls(self.security == Security::StartTls);
        // The URL scheme decides: ldaps:// ignores starttls, ldap:// without it is plain.
        let opening = LdapConnAsync::with_settings(settings, &self.url.url);
        let (conn, ldap) = match tokio::time::timeout(self.timeout, opening).await {
            Err(_) => return Err(Fail::Down(self.connect_timed_out())),
            Ok(Err(e)) => return Err(self.classify_connect(e)),
            Ok(Ok(pair)) => pair,
        };
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(server = %name, "LDAP connection ended: {e}");
            }
        });
        Ok(ldap)
    }

    fn connect_timed_out(&self) -> String {
        let hint = if self.security == Security::StartTls {
            " (if this port speaks LDAPS, use an ldaps:// URL)"
        } else {
            ""
        };
        format!("connecting: {}{hint}", self.within())
    }

    fn classify_connect(&self, e: LdapError) -> Fail {
        if let Some(tls) = text::find_rustls(&e) {
            return Fail::Wrong(format!(
                "TLS: {}",
                text::explain_tls(tls, &self.url.host, self.ca_file.as_deref())
            ));
        }
        match e {
            LdapError::LdapResult { result } => {
                // Only the StartTLS operation returns a result while connecting.
                if result.rc == 51 {
                    Fail::Down(format!(
                        "StartTLS: {}",
                        text::rc_text(result.rc, &result.text)
                    ))
                } else {
                    Fail::Wrong(format!(
                        "the server refused StartTLS ({}): enable TLS on the server (a \
                         certificate for {}), or use an ldaps:// URL",
                        text::rc_text(result.rc, &result.text),
                        self.url.host
                    ))
                }
            }
            LdapError::DNSName { source } => Fail::Wrong(format!(
                "the host {} cannot be checked against a certificate ({source}): use a DNS \
                 name or an IP address in urls",
                self.url.host
            )),
            LdapError::Io { source } => {
                let what = match source.kind() {
                    std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                    std::io::ErrorKind::TimedOut => return Fail::Down(self.connect_timed_out()),
                    std::io::ErrorKind::UnexpectedEof if self.security == Security::Ldaps => {
                        format!(
                            "the server closed the connection during the TLS handshake ({source}): \
                             is port {} an LDAPS port? plain LDAP ports (389) take ldap:// URLs \
                             (with StartTLS)",
                            self.url.port
                        )
                    }
                    _ => source.to_string(),
                };
                Fail::Down(format!("connecting: {what}"))
            }
            LdapError::Timeout { .. } => Fail::Down(self.connect_timed_out()),
            other => classify_op(other, "connecting"),
        }
    }

    async fn checkout<'a>(&'a self, pool: &'a Pool, fresh: bool) -> Result<Pooled<'a>, Fail> {
        let started = Instant::now();
        let permit = match tokio::time::timeout(self.timeout, pool.slots.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(Fail::Busy("the directory client is shutting down".into())),
            Err(_) => {
                return Err(Fail::Busy(format!(
                    "all {} {} connections to {} stayed busy for {} ms (pool_size)",
                    pool.size,
                    pool.what,
                    self.name,
                    started.elapsed().as_millis()
                )))
            }
        };
        if !fresh {
            if let Some(ldap) = pool.pop_idle() {
                return Ok(Pooled {
                    ldap,
                    reused: true,
                    keep: false,
                    pool,
                    _permit: permit,
                });
            }
        }
        let ldap = self.open().await?;
        Ok(Pooled {
            ldap,
            reused: false,
            keep: false,
            pool,
            _permit: permit,
        })
    }

    /// Holds one service-account slot (tests: a pool that stays busy).
    #[cfg(test)]
    pub async fn hold_service_slot(&self) -> Result<Pooled<'_>, Fail> {
        self.checkout(&self.service_pool, false).await
    }

    /// Binds `ldap` as the service account.
    pub async fn bind_service(
        &self,
        ldap: &mut ldap3::Ldap,
        sa: &ServiceAccount,
    ) -> Result<(), Fail> {
        let bind = ldap.simple_bind(&sa.dn, sa.password.expose());
        let result = match tokio::time::timeout(self.timeout, bind).await {
            Err(_) => {
                return Err(Fail::Down(format!(
                    "service account bind: {}",
                    self.within()
                )))
            }
            Ok(r) => r.map_err(|e| classify_op(e, "service account bind"))?,
        };
        match result.rc {
            0 => Ok(()),
            49 => Err(Fail::Wrong(format!(
                "the service account bind_dn {:?} was refused ({}): check bind_dn / \
                 bind_password_file",
                sa.dn,
                text::ad_bind_reason(&result.text)
                    .map(str::to_owned)
                    .unwrap_or_else(|| text::rc_text(result.rc, &result.text))
            ))),
            rc => Err(classify_rc(rc, &result.text, "service account bind")),
        }
    }

    /// A search with the service account on a pooled connection; a stale pooled connection
    /// is replaced once by a new one.
    pub async fn service_search(
        &self,
        sa: &ServiceAccount,
        req: &SearchReq<'_>,
    ) -> Result<Found, Fail> {
        let mut fresh = false;
        loop {
            let mut c = self.checkout(&self.service_pool, fresh).await?;
            if !c.reused {
                self.bind_service(&mut c.ldap, sa).await?;
            }
            match self.search_on(&mut c.ldap, req).await {
                Ok(found) => {
                    c.keep();
                    return Ok(found);
                }
                Err(Fail::Down(_)) if c.reused && !fresh => fresh = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// Binds as a user on a connection of the bind pool (returned with it: in direct-bind
    /// mode the user's own entry and groups are read on it).
    pub async fn user_bind(
        &self,
        dn: &str,
        password: &Secret,
    ) -> Result<(BindOutcome, Pooled<'_>), Fail> {
        let mut fresh = false;
        loop {
            let mut c = self.checkout(&self.bind_pool, fresh).await?;
            let bind = c.ldap.simple_bind(dn, password.expose());
            let result = match tokio::time::timeout(self.timeout, bind).await {
                Err(_) => Err(Fail::Down(format!("user bind: {}", self.within()))),
                Ok(r) => r.map_err(|e| classify_op(e, "user bind")),
            };
            let result = match result {
                Ok(r) => r,
                Err(Fail::Down(_)) if c.reused && !fresh => {
                    fresh = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            return match result.rc {
                0 => Ok((BindOutcome::Bound, c)),
                // Refused credentials; the connection is anonymous again and reusable.
                49 | 50 | 53 | 19 | 48 => {
                    c.keep();
                    Ok((BindOutcome::Refused(result.rc, result.text), c))
                }
                rc => Err(classify_rc(rc, &result.text, "user bind")),
            };
        }
    }

    /// One search on `ldap`, bounded by `timeout` and `req.limit`.
    pub async fn search_on(
        &self,
        ldap: &mut ldap3::Ldap,
        req: &SearchReq<'_>,
    ) -> Result<Found, Fail> {
        let limit = i32::try_from(req.limit).unwrap_or(i32::MAX);
        let secs = i32::try_from(self.timeout.as_secs().max(1)).unwrap_or(i32::MAX);
        let search = ldap
            .with_search_options(SearchOptions::new().sizelimit(limit).timelimit(secs))
            .search(req.base, req.scope, req.filter, req.attrs.clone());
        let result = match tokio::time::timeout(self.timeout, search).await {
            Err(_) => return Err(Fail::Down(format!("search: {}", self.within()))),
            Ok(r) => r.map_err(|e| classify_op(e, "search"))?,
        };
        let ldap3::SearchResult(raw, res) = result;
        let mut entries: Vec<SearchEntry> = raw
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(SearchEntry::construct)
            .collect();
        let mut truncated = entries.len() > req.limit;
        entries.truncate(req.limit);
        match res.rc {
            0 => {}
            4 => truncated = true,
            32 if req.missing_ok => entries.clear(),
            32 => {
                return Err(Fail::Wrong(format!(
                    "{} {:?} does not exist on the server (noSuchObject): check {}",
                    req.base_key, req.base, req.base_key
                )))
            }
            10 => {
                return Err(Fail::Wrong(format!(
                    "the server answers a search under {} {:?} with a referral: it does not \
                     hold that subtree (for AD, use a domain controller of that domain, or the \
                     global catalog port 3269)",
                    req.base_key, req.base
                )))
            }
            50 => {
                return Err(Fail::Wrong(format!(
                    "search under {} {:?} refused (insufficientAccessRights): the account \
                     searching may not read it",
                    req.base_key, req.base
                )))
            }
            rc => return Err(classify_rc(rc, &res.text, "search")),
        }
        Ok(Found { entries, truncated })
    }
}

/// A result code of an operation other than StartTLS: busy and unavailable move on to the
/// next server; everything else is a misconfiguration.
pub fn classify_rc(rc: u32, diagnostic: &str, what: &str) -> Fail {
    let t = text::rc_text(rc, diagnostic);
    match rc {
        3 | 51 | 52 => Fail::Down(format!("{what}: {t}")),
        8 | 13 => Fail::Wrong(format!(
            "{what}: {t}: the server wants a protected connection; use ldaps:// or StartTLS"
        )),
        _ => Fail::Wrong(format!("{what}: {t}")),
    }
}

/// An ldap3 error during an operation.
pub fn classify_op(e: LdapError, what: &str) -> Fail {
    if let Some(tls) = text::find_rustls(&e) {
        return Fail::Wrong(format!("{what}: TLS failure: {tls}"));
    }
    match e {
        LdapError::Io { .. }
        | LdapError::OpSend { .. }
        | LdapError::ResultRecv { .. }
        | LdapError::IdScrubSend { .. }
        | LdapError::EndOfStream
        | LdapError::Timeout { .. } => Fail::Down(format!("{what}: the connection failed ({e})")),
        LdapError::LdapResult { result } => classify_rc(result.rc, &result.text, what),
        LdapError::FilterParsing => Fail::Wrong(format!(
            "{what}: the filter does not parse (check user_filter / group_filter)"
        )),
        other => Fail::Wrong(format!("{what}: {other}")),
    }
}

/// The first value of `attribute` in `entry` (attribute names compare case-insensitively).
pub fn first_value(entry: &SearchEntry, attribute: &str) -> Option<String> {
    find_ci(&entry.attrs, attribute)
        .and_then(|v| v.first().cloned())
        .or_else(|| {
            find_ci(&entry.bin_attrs, attribute)
                .and_then(|v| v.first())
                .and_then(|b| String::from_utf8(b.clone()).ok())
        })
}

fn find_ci<'a, V>(map: &'a HashMap<String, V>, key: &str) -> Option<&'a V> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}
