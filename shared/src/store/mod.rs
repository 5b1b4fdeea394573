//! What several instances share (`[cluster]`): spent State nonces, the per-user throttles,
//! pending pushes of a login session and the RADIUS response cache, so a State is single-use
//! across every instance, a user's limits do not multiply by the number of instances, and a
//! NAS failing over mid-login gets one push and one answer. `store = "memory"` (the default) shares nothing: each instance keeps its own
//! memory, as a single instance needs. `store = "redis"` keeps them in Redis (standalone, or
//! the master Sentinel names), every key with a TTL and every update one atomic command.
//!
//! The engine always decides locally first (its own memory); the store is asked only when the
//! local answer is "yes", so it can only make a decision stricter. When the store cannot answer
//! within `redis.timeout`, `when_unavailable` decides: `memory` (the default) keeps the local
//! answer (logins go on; limits are per instance meanwhile), `reject` refuses the login. Never
//! a reason to let anyone in without their second factor.

mod redis;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tracing::warn;

use crate::log_limit::OncePerSecond;
use crate::metrics::Metrics;
use crate::throttle::RateLimit;

pub use self::redis::RedisStore;

/// Where shared state lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this process only (one instance).
    #[default]
    Memory,
    /// In Redis, shared by every instance configured with the same Redis and State key.
    Redis,
}

/// What a login gets while the store cannot answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnavailable {
    /// This instance's own memory decides (single use and limits per instance meanwhile).
    #[default]
    Memory,
    /// The login is refused (reason `unavailable`).
    Reject,
}

/// `[cluster]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    pub store: StoreKind,
    pub when_unavailable: WhenUnavailable,
    pub redis: RedisConfig,
}

/// `[cluster.redis]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://...` (TLS) of the server; with `sentinel_master`,
    /// the Sentinels' addresses (`redis://host:26379`), any number.
    pub urls: Vec<String>,
    /// The master's name as the Sentinels know it (`sentinel monitor NAME ...`).
    pub sentinel_master: Option<String>,
    /// `urls` are nodes of a Redis Cluster (any of them; the others are discovered). Every
    /// key is used alone, so each operation stays one atomic command on one node.
    pub redis_cluster: bool,
    /// A file holding the Redis password (`requirepass`/ACL), first line.
    pub password_file: Option<PathBuf>,
    /// `rediss://`: the CA that signed the server's certificate (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// `rediss://`: a client certificate and key (PEM), when the server asks for one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Longest wait for one store call before `when_unavailable` applies.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Prefix of every key (several deployments may share one Redis).
    pub key_prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            urls: Vec::new(),
            sentinel_master: None,
            redis_cluster: false,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            timeout: Duration::from_millis(250),
            key_prefix: "vip-bridge:".into(),
        }
    }
}

/// A store call that got no answer in time (or an error from Redis).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// The login must be refused: the store cannot answer and `when_unavailable = "reject"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// Who sends the push of a login session, across instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushClaim {
    /// This instance: send it, then say [`SharedStore::push_sent`].
    Mine,
    /// Another instance is sending it right now (no transaction id yet): ask again shortly.
    Starting,
    /// Another instance sent it: join by polling this transaction until `deadline`.
    Sent {
        transaction_id: String,
        deadline: SystemTime,
    },
}

/// The shared store the engine asks after its own memory said yes.
pub struct SharedStore {
    redis: Arc<RedisStore>,
    when_unavailable: WhenUnavailable,
    timeout: Duration,
    unavailable_log: OncePerSecond,
    metrics: OnceLock<Arc<Metrics>>,
}

impl SharedStore {
    /// The store `cfg` describes (`None` for `memory`), connecting in the background: call
    /// inside a Tokio runtime. Files are read now; errors name the key.
    pub fn start(cfg: &ClusterConfig, base_dir: &Path) -> Result<Option<Arc<Self>>, String> {
        if cfg.store == StoreKind::Memory {
            return Ok(None);
        }
        let redis = RedisStore::start(&cfg.redis, base_dir)?;
        Ok(Some(Arc::new(SharedStore {
            redis,
            when_unavailable: cfg.when_unavailable,
            timeout: cfg.redis.timeout,
            unavailable_log: OncePerSecond::new(),
            metrics: OnceLock::new(),
        })))
    }

    /// Everything [`start`](Self::start) would refuse, checked without connecting.
    pub fn check(cfg: &ClusterConfig, base_dir: &Path) -> Result<(), String> {
        if cfg.store == StoreKind::Memory {
            return Ok(());
        }
        RedisStore::targets(&cfg.redis, base_dir).map(|_| ())
    }

    /// Records store calls and fallbacks into `metrics` (the first call wins).
    pub fn set_metrics(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Marks a State's nonce spent for every instance: `Ok(true)` when this is its first use.
    pub async fn spend_nonce(&self, nonce: &[u8], ttl: Duration) -> Result<bool, Refused> {
        let started = Instant::now();
        let r = self.redis.spend_nonce(nonce, ttl, self.timeout).await;
        self.settle("spend_nonce", started, r, true)
    }

    /// Takes one token of `limit` for `key` from the bucket every instance shares.
    pub async fn allow(
        &self,
        limit: &'static str,
        key: &str,
        quota: RateLimit,
    ) -> Result<bool, Refused> {
        let started = Instant::now();
        let r = self.redis.allow(limit, key, quota, self.timeout).await;
        self.settle(limit, started, r, true)
    }

    /// Claims the push of a login session (`session`: the engine's coalescing key, hashed
    /// here) for `hold` while it is being sent. Without an answer: `Mine` under
    /// `when_unavailable = "memory"` (this instance decides alone), else refused.
    pub async fn push_claim(&self, session: &str, hold: Duration) -> Result<PushClaim, Refused> {
        let started = Instant::now();
        let r = self
            .redis
            .push_claim(&hashed(session), hold, self.timeout)
            .await;
        let claim = match r {
            Ok(None) => Ok(PushClaim::Mine),
            Ok(Some(v)) => Ok(parse_push(&v).unwrap_or(PushClaim::Starting)),
            Err(e) => Err(e),
        };
        match claim {
            Ok(c) => {
                self.note("push_claim", started, None);
                Ok(c)
            }
            Err(e) => self
                .settle("push_claim", started, Err(e), true)
                .map(|_| PushClaim::Mine),
        }
    }

    /// Publishes the transaction of a push this instance sent for `session`, so a request of
    /// the same session on another instance joins it. Best effort: a failure is logged.
    pub async fn push_sent(&self, session: &str, transaction_id: &str, deadline: SystemTime) {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let started = Instant::now();
        let r = self
            .redis
            .push_set(
                &hashed(session),
                &push_value(transaction_id, deadline),
                left + PUSH_SLACK,
                self.timeout,
            )
            .await;
        self.best_effort("push_sent", started, r);
    }

    /// Records how the push of `session` ended (`outcome`: `approved`, `denied`, `expired`,
    /// `number_failed`) for [`FINISHED_KEPT`]: VIP tells a transaction's final state to one
    /// poll only, so the instance that heard it tells the other; a later login of the session
    /// claims anew over it. Best effort.
    pub async fn push_finished(&self, session: &str, transaction_id: &str, outcome: &str) {
        let started = Instant::now();
        let r = self
            .redis
            .push_set(
                &hashed(session),
                &format!("f {transaction_id} {outcome}"),
                FINISHED_KEPT,
                self.timeout,
            )
            .await;
        self.best_effort("push_finished", started, r);
    }

    /// How another instance heard the push `transaction_id` of `session` end, if it did.
    pub async fn push_outcome(&self, session: &str, transaction_id: &str) -> Option<String> {
        let started = Instant::now();
        match self.redis.push_get(&hashed(session), self.timeout).await {
            Ok(v) => {
                self.note("push_outcome", started, None);
                let v = v?;
                let mut parts = v.splitn(3, ' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("f"), Some(t), Some(outcome)) if t == transaction_id => {
                        Some(outcome.to_owned())
                    }
                    _ => None,
                }
            }
            Err(e) => {
                self.best_effort("push_outcome", started, Err(e));
                None
            }
        }
    }

    /// Gives up a claim this instance could not turn into a push (throttled, or the send
    /// failed), so the session's next request may claim it at once. Best effort.
    pub async fn push_unclaim(&self, session: &str) {
        let started = Instant::now();
        let r = self
            .redis
            .push_release(&hashed(session), "s", self.timeout)
            .await;
        self.best_effort("push_unclaim", started, r);
    }

    /// The reply another instance sent to this very request (the RFC 5080 response cache,
    /// shared): `request` names it (client, Identifier, Request Authenticator). Without an
    /// answer, `None` (the request is processed here).
    pub async fn reply(&self, request: &[u8]) -> Option<Vec<u8>> {
        let started = Instant::now();
        match self
            .redis
            .reply_get(&hashed_bytes(request), self.timeout)
            .await
        {
            Ok(v) => {
                self.note("reply", started, None);
                v
            }
            Err(e) => {
                self.best_effort("reply", started, Err(e));
                None
            }
        }
    }

    /// Keeps the reply to `request` for `ttl`, for a retransmit that reaches another instance.
    /// Best effort.
    pub async fn remember_reply(&self, request: &[u8], reply: &[u8], ttl: Duration) {
        let started = Instant::now();
        let r = self
            .redis
            .reply_set(&hashed_bytes(request), reply, ttl, self.timeout)
            .await;
        self.best_effort("remember_reply", started, r);
    }

    /// The server's role (`master`, `slave`) and how long the round trip took.
    pub async fn ping(&self) -> Result<(String, Duration), StoreError> {
        let started = Instant::now();
        let role = self.redis.role(self.timeout).await?;
        Ok((role, started.elapsed()))
    }

    /// Records one decision's call; an unanswered one becomes `fallback` (this instance's
    /// own answer) or a refusal, as `when_unavailable` says.
    fn settle(
        &self,
        operation: &'static str,
        started: Instant,
        r: Result<bool, StoreError>,
        fallback: bool,
    ) -> Result<bool, Refused> {
        let e = match r {
            Ok(v) => {
                self.note(operation, started, None);
                return Ok(v);
            }
            Err(e) => e,
        };
        let (to, what) = match self.when_unavailable {
            WhenUnavailable::Memory => ("memory", "this instance's own memory decides (single use and limits per instance until it is back; cluster.when_unavailable = \"memory\")"),
            WhenUnavailable::Reject => ("reject", "refusing the login (cluster.when_unavailable = \"reject\")"),
        };
        if let Some(m) = self.metrics.get() {
            m.store_fallback(to);
        }
        self.note(operation, started, Some((&e, what)));
        match self.when_unavailable {
            WhenUnavailable::Memory => Ok(fallback),
            WhenUnavailable::Reject => Err(Refused),
        }
    }

    /// Records a best-effort call (publishing a push, keeping a reply): nothing waits on it,
    /// so a failure is only counted and logged.
    fn best_effort(&self, operation: &'static str, started: Instant, r: Result<(), StoreError>) {
        match r {
            Ok(()) => self.note(operation, started, None),
            Err(e) => self.note(
                operation,
                started,
                Some((&e, "skipped: other instances will not see it")),
            ),
        }
    }

    /// The metric of one call, and a warning (at most one a second) when it got no answer.
    fn note(&self, operation: &'static str, started: Instant, failed: Option<(&StoreError, &str)>) {
        if let Some(m) = self.metrics.get() {
            let result = if failed.is_some() {
                "unavailable"
            } else {
                "ok"
            };
            m.store_call(operation, result, started.elapsed());
        }
        if let Some((e, what)) = failed {
            if let Some(suppressed) = self.unavailable_log.pass() {
                warn!(operation, problem = %e, suppressed, "the shared store (Redis) did not answer: {what}");
            }
        }
    }
}

/// How long a finished push's outcome stays for the other instances.
pub const FINISHED_KEPT: Duration = Duration::from_secs(30);

/// A push key's value outlives the push by this much (a late retransmit still joins it).
const PUSH_SLACK: Duration = Duration::from_secs(5);

/// Session keys hold user names: Redis sees only their digest.
fn hashed(session: &str) -> String {
    hashed_bytes(session.as_bytes())
}

fn hashed_bytes(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(b)[..16])
}

/// `t <deadline unix ms> <transaction id>`.
fn push_value(transaction_id: &str, deadline: SystemTime) -> String {
    let ms = deadline
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("t {ms} {transaction_id}")
}

fn parse_push(v: &str) -> Option<PushClaim> {
    if v == "s" {
        return Some(PushClaim::Starting);
    }
    let mut parts = v.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("t"), Some(ms), Some(id)) if !id.is_empty() => Some(PushClaim::Sent {
            transaction_id: id.to_owned(),
            deadline: UNIX_EPOCH + Duration::from_millis(ms.parse().ok()?),
        }),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn push_values_round_trip() {
        let deadline = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        let v = push_value("0a1b2c", deadline);
        assert_eq!(
            parse_push(&v),
            Some(PushClaim::Sent {
                transaction_id: "0a1b2c".into(),
                deadline
            })
        );
        assert_eq!(parse_push("s"), Some(PushClaim::Starting));
        assert_eq!(parse_push("t x y"), None);
        assert_eq!(parse_push("t 1"), None);
        assert_ne!(
            hashed("alice\0radius/vpn\0port-1"),
            hashed("alice\0radius/vpn\0port-2")
        );
    }
}
