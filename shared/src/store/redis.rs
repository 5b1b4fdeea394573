//! The shared store's Redis wire: one multiplexed connection to the master (standalone, or the
//! one the Sentinels name), kept by a connector task, and the two atomic operations the store
//! needs: `SET key 1 NX PX ttl` for a spent nonce and a GCRA script for a throttle.
//!
//! No call waits for a connection: while there is none (not yet connected, or the last call
//! found it broken), calls fail at once and the connector reconnects in the background, asking
//! the Sentinels for the current master each time. A master that became a replica (a Sentinel
//! fail-over) answers `READONLY`: that too drops the connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::{RedisConfig, StoreError};
use crate::throttle::RateLimit;

/// GCRA over Redis's own clock (so instances' clocks do not matter): a burst of `count`, one
/// more every `interval` microseconds. KEYS[1] = the bucket; ARGV = interval_us, count.
/// Returns 1 (allowed: the bucket's theoretical arrival time moves on) or 0 (refused: nothing
/// changes). The key lives as long as the bucket is not full again.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > (count - 1) * interval then return 0 end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.ceil((new - now) / 1000))
return 1
";

/// Claims a login session's push: KEYS[1] = the session's key; ARGV[1] = how long the claim
/// holds (ms) while the push is being sent. Returns the value already there (another instance
/// claimed it: `s` while sending, `t <deadline_ms> <transaction id>` once sent), or false
/// (claimed now; also over `f <transaction id> <outcome>`, a finished push).
const PUSH_CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) ~= 'f' then return v end
redis.call('SET', KEYS[1], 's', 'PX', tonumber(ARGV[1]))
return false
";

/// Forgets a session's push, only if it still names this transaction: KEYS[1]; ARGV[1] = the
/// value to match.
const PUSH_RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Where the connector finds the master.
pub(super) enum Target {
    Server(Client),
    Sentinel(SentinelClient),
    Cluster(redis::cluster::ClusterClient),
}

/// A connection to the master, or to a Redis Cluster (which routes each key to its node).
#[derive(Clone)]
enum Conn {
    Server(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The Redis side of the shared store.
pub struct RedisStore {
    conn: Mutex<Option<Conn>>,
    /// Woken when a call found the connection broken (and when the store is dropped).
    broken: Arc<Notify>,
    prefix: String,
    gcra: redis::Script,
    push_claim: redis::Script,
    push_release: redis::Script,
}

impl RedisStore {
    /// Validates `cfg` and starts the connector task.
    pub fn start(cfg: &RedisConfig, base_dir: &Path) -> Result<Arc<Self>, String> {
        let target = Self::targets(cfg, base_dir)?;
        let store = Arc::new(RedisStore {
            conn: Mutex::new(None),
            broken: Arc::new(Notify::new()),
            prefix: cfg.key_prefix.clone(),
            gcra: redis::Script::new(GCRA),
            push_claim: redis::Script::new(PUSH_CLAIM),
            push_release: redis::Script::new(PUSH_RELEASE),
        });
        let weak = Arc::downgrade(&store);
        let timeout = cfg.timeout.max(Duration::from_secs(2));
        tokio::spawn(connector(weak, target, timeout));
        Ok(store)
    }

    /// The connection target `cfg` describes (files read, nothing contacted).
    pub(super) fn targets(cfg: &RedisConfig, base_dir: &Path) -> Result<Target, String> {
        if cfg.urls.is_empty() {
            return Err("cluster.redis.urls: empty; list the Redis server (redis://host:6379) or, with sentinel_master, the Sentinels".into());
        }
        if cfg.timeout < Duration::from_millis(10) || cfg.timeout > Duration::from_secs(10) {
            return Err(format!(
                "cluster.redis.timeout = {}: must be between 10ms and 10s",
                humantime::format_duration(cfg.timeout)
            ));
        }
        let path = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base_dir.join(p)
            }
        };
        let password = match &cfg.password_file {
            None => None,
            Some(p) => {
                let p = path(p);
                let bytes = crate::files::read_at_most(&p, 4096)
                    .map_err(|e| format!("cluster.redis.password_file = {}: {e}", p.display()))?;
                let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                    format!("cluster.redis.password_file = {}: not UTF-8", p.display())
                })?;
                let line = text.lines().next().unwrap_or("").trim().to_owned();
                if line.is_empty() {
                    return Err(format!(
                        "cluster.redis.password_file = {}: empty",
                        p.display()
                    ));
                }
                Some(line)
            }
        };
        let infos = cfg
            .urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let info: ConnectionInfo = url.as_str().into_connection_info().map_err(|e| {
                    format!("cluster.redis.urls[{i}] = {url:?}: not a Redis URL: {e}")
                })?;
                Ok(match &password {
                    // Sentinels usually have no password: it is the master's.
                    Some(pw) if cfg.sentinel_master.is_none() => {
                        let settings = info.redis_settings().clone().set_password(pw);
                        info.set_redis_settings(settings)
                    }
                    _ => info,
                })
            })
            .collect::<Result<Vec<ConnectionInfo>, String>>()?;
        let tls_files = [&cfg.ca_file, &cfg.cert_file, &cfg.key_file];
        let read = |key: &str, p: &Option<PathBuf>| -> Result<Option<Vec<u8>>, String> {
            match p {
                None => Ok(None),
                Some(p) => {
                    let p = path(p);
                    crate::files::read_at_most(&p, 1 << 20)
                        .map(|b| Some(b.to_vec()))
                        .map_err(|e| format!("cluster.redis.{key} = {}: {e}", p.display()))
                }
            }
        };
        // The CA and client certificate of rediss:// (files read now).
        let certificates = || -> Result<redis::TlsCertificates, String> {
            if cfg.cert_file.is_some() != cfg.key_file.is_some() {
                return Err("cluster.redis: cert_file and key_file go together".into());
            }
            let client_tls = match (
                read("cert_file", &cfg.cert_file)?,
                read("key_file", &cfg.key_file)?,
            ) {
                (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
                _ => None,
            };
            Ok(redis::TlsCertificates {
                client_tls,
                root_cert: read("ca_file", &cfg.ca_file)?,
            })
        };
        if cfg.redis_cluster {
            if cfg.sentinel_master.is_some() {
                return Err("cluster.redis: redis_cluster and sentinel_master exclude each other (a Redis Cluster fails over by itself)".into());
            }
            let tls = cfg.urls.iter().any(|u| u.starts_with("rediss://"));
            if !tls && tls_files.iter().any(|f| f.is_some()) {
                return Err(
                    "cluster.redis: ca_file / cert_file / key_file need rediss:// URLs".into(),
                );
            }
            let mut builder = ClusterClientBuilder::new(infos);
            if let Some(pw) = &password {
                builder = builder.password(pw);
            }
            if tls && tls_files.iter().any(|f| f.is_some()) {
                builder = builder.certs(certificates()?);
            }
            return builder
                .connection_timeout(cfg.timeout.max(Duration::from_secs(1)))
                .response_timeout(cfg.timeout.max(Duration::from_millis(100)))
                .build()
                .map(Target::Cluster)
                .map_err(|e| format!("cluster.redis: the cluster's nodes: {e}"));
        }
        match &cfg.sentinel_master {
            Some(master) => {
                if tls_files.iter().any(|f| f.is_some()) {
                    return Err("cluster.redis: ca_file / cert_file / key_file are not supported with sentinel_master yet; use a standalone rediss:// URL, or plain Sentinel on a trusted network".into());
                }
                let mut node = SentinelNodeConnectionInfo::default();
                if let Some(pw) = &password {
                    node = node
                        .set_redis_connection_info(RedisConnectionInfo::default().set_password(pw));
                }
                SentinelClient::build(infos, master, Some(node), SentinelServerType::Master)
                    .map(Target::Sentinel)
                    .map_err(|e| format!("cluster.redis: the Sentinels: {e}"))
            }
            None => {
                if infos.len() > 1 {
                    return Err("cluster.redis.urls: several URLs need sentinel_master (the Sentinels' addresses); a standalone Redis is one URL".into());
                }
                let Some(info) = infos.into_iter().next() else {
                    return Err("cluster.redis.urls: empty".into());
                };
                let tls = cfg.urls[0].starts_with("rediss://");
                if !tls && tls_files.iter().any(|f| f.is_some()) {
                    return Err(
                        "cluster.redis: ca_file / cert_file / key_file need a rediss:// URL".into(),
                    );
                }
                let client = if tls && tls_files.iter().any(|f| f.is_some()) {
                    Client::build_with_tls(info, certificates()?)
                } else {
                    Client::open(info)
                };
                client
                    .map(Target::Server)
                    .map_err(|e| format!("cluster.redis.urls[0]: {e}"))
            }
        }
    }

    fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}{kind}:{rest}", self.prefix)
    }

    /// The connection, if there is one (cloned: the lock is never held across an await).
    fn connection(&self) -> Result<Conn, StoreError> {
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| StoreError("not connected to Redis (reconnecting)".into()))
    }

    /// Runs `call` on the connection within `timeout`; a failed or late call drops the
    /// connection and wakes the connector.
    async fn call<T, F, Fut>(&self, timeout: Duration, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection()?;
        let err = match tokio::time::timeout(timeout, call(conn)).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => StoreError(format!("Redis: {e}")),
            Err(_) => StoreError(format!(
                "Redis did not answer within {}",
                humantime::format_duration(timeout)
            )),
        };
        self.conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.broken.notify_one();
        Err(err)
    }

    pub async fn spend_nonce(
        &self,
        nonce: &[u8],
        ttl: Duration,
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        let key = self.key("state", &hex::encode(nonce));
        let ms = (ttl.as_millis() as u64).max(1);
        self.call(timeout, |mut c| async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query_async(&mut c)
                .await?;
            Ok(set.is_some())
        })
        .await
    }

    pub async fn allow(
        &self,
        limit: &str,
        key: &str,
        quota: RateLimit,
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        let bucket = self.key(&format!("limit:{limit}"), key);
        let interval = (quota.per.as_micros() / u128::from(quota.count.max(1))).max(1) as u64;
        let count = quota.count;
        let mut invocation = self.gcra.key(bucket);
        invocation.arg(interval).arg(count);
        self.call(timeout, |mut c| async move {
            let allowed: i64 = invocation.invoke_async(&mut c).await?;
            Ok(allowed == 1)
        })
        .await
    }

    /// Claims `session`'s push for `hold`: `None` when claimed now, else what another instance
    /// wrote there.
    pub async fn push_claim(
        &self,
        session: &str,
        hold: Duration,
        timeout: Duration,
    ) -> Result<Option<String>, StoreError> {
        let mut invocation = self.push_claim.key(self.key("push", session));
        invocation.arg((hold.as_millis() as u64).max(1));
        self.call(timeout, |mut c| async move {
            invocation.invoke_async(&mut c).await
        })
        .await
    }

    /// Sets `session`'s push to `value` for `ttl`.
    pub async fn push_set(
        &self,
        session: &str,
        value: &str,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        self.set_px(
            self.key("push", session),
            value.as_bytes().to_vec(),
            ttl,
            timeout,
        )
        .await
    }

    /// What `session`'s push key holds now.
    pub async fn push_get(
        &self,
        session: &str,
        timeout: Duration,
    ) -> Result<Option<String>, StoreError> {
        self.get(self.key("push", session), timeout).await
    }

    /// Deletes `session`'s push key if it still holds `value`.
    pub async fn push_release(
        &self,
        session: &str,
        value: &str,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let mut invocation = self.push_release.key(self.key("push", session));
        invocation.arg(value);
        self.call(timeout, |mut c| async move {
            invocation.invoke_async::<i64>(&mut c).await.map(|_| ())
        })
        .await
    }

    /// A RADIUS reply another instance sent for the request `id`, if any.
    pub async fn reply_get(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(self.key("reply", id), timeout).await
    }

    /// Keeps the RADIUS reply to the request `id` for `ttl`.
    pub async fn reply_set(
        &self,
        id: &str,
        reply: &[u8],
        ttl: Duration,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        self.set_px(self.key("reply", id), reply.to_vec(), ttl, timeout)
            .await
    }

    /// `GET key`.
    async fn get<T: redis::FromRedisValue>(
        &self,
        key: String,
        timeout: Duration,
    ) -> Result<Option<T>, StoreError> {
        self.call(timeout, |mut c| async move {
            redis::cmd("GET").arg(&key).query_async(&mut c).await
        })
        .await
    }

    /// `SET key value PX ttl`.
    async fn set_px(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let ms = (ttl.as_millis() as u64).max(1);
        self.call(timeout, |mut c| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(value)
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// `ROLE`'s first element: `master`, `slave` or `sentinel`; for a Redis Cluster,
    /// `cluster` and its state (`CLUSTER INFO`).
    pub async fn role(&self, timeout: Duration) -> Result<String, StoreError> {
        self.call(timeout, |mut c| async move {
            if let Conn::Cluster(_) = &c {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut c)
                    .await?;
                let state = info
                    .lines()
                    .find_map(|l| l.strip_prefix("cluster_state:"))
                    .unwrap_or("unknown")
                    .trim()
                    .to_owned();
                return Ok(format!("cluster (state {state})"));
            }
            let role: redis::Value = redis::cmd("ROLE").query_async(&mut c).await?;
            Ok(match role {
                redis::Value::Array(items) => match items.into_iter().next() {
                    Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                    Some(redis::Value::SimpleString(s)) => s,
                    other => format!("{other:?}"),
                },
                other => format!("{other:?}"),
            })
        })
        .await
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        // Ends the connector task.
        self.broken.notify_one();
    }
}

/// Keeps a connection to the master: connects at start and whenever a call found the
/// connection broken, with a growing pause between failed attempts. Ends with the store.
async fn connector(store: std::sync::Weak<RedisStore>, mut target: Target, timeout: Duration) {
    let mut pause = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        let Some(s) = store.upgrade() else { return };
        let connected = tokio::time::timeout(timeout, connect(&mut target)).await;
        match connected {
            Ok(Ok((conn, addr))) => {
                *s.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn);
                info!(redis = %addr, after_failures = failures, "connected to the shared store (Redis)");
                failures = 0;
                pause = Duration::from_millis(100);
                let broken = s.broken.clone();
                drop(s);
                broken.notified().await;
                continue;
            }
            Ok(Err(e)) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    warn!(problem = %e, failures, "cannot connect to the shared store (Redis); retrying");
                }
            }
            Err(_) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    warn!(
                        failures,
                        "connecting to the shared store (Redis) timed out; retrying"
                    );
                }
            }
        }
        drop(s);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// One connection to the master (or the cluster), and its address for the log.
async fn connect(target: &mut Target) -> redis::RedisResult<(Conn, String)> {
    let client = match target {
        Target::Server(c) => c.clone(),
        Target::Sentinel(s) => s.async_get_client().await?,
        Target::Cluster(c) => {
            let conn = c.get_async_connection().await?;
            return Ok((Conn::Cluster(conn), "a Redis Cluster".to_owned()));
        }
    };
    let addr = client.get_connection_info().addr().to_string();
    let mut conn = client.get_multiplexed_async_connection().await?;
    // A replica (a former master) cannot take writes: not the one we want.
    let role: redis::Value = redis::cmd("ROLE").query_async(&mut conn).await?;
    if let redis::Value::Array(items) = &role {
        if let Some(redis::Value::BulkString(b)) = items.first() {
            if b.as_slice() != b"master" {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "not a master",
                    format!("{addr} is a {}", String::from_utf8_lossy(b)),
                )));
            }
        }
    }
    Ok((Conn::Server(conn), addr))
}
