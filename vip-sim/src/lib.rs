//! vip-sim: a faithful Symantec VIP User Services simulator.
//!
//! It speaks the real SOAP wire format over HTTPS that requires a client certificate, on the
//! real URL paths (`/vipuserservices/{Authentication,Query,Management}Service_1_N`). Users,
//! credentials (with TOTP secrets), push behaviour, lockout and injected faults come from a TOML
//! file ([`SimConfig`]); see `vip-sim/README.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vip_sim::SimError> {
//! let dir = std::path::Path::new("/tmp/vip-sim-certs");
//! let certs = vip_sim::certs::generate(dir)?;
//! let cfg = vip_sim::SimConfig::new(vip_sim::TlsConfig::from_cert_paths(&certs));
//! let sim = vip_sim::Sim::start(cfg).await?;
//! println!("{}", sim.base_url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

pub mod certs;
#[doc(hidden)]
pub mod cli;
pub mod config;
mod ops;
mod schema;
mod server;
pub mod totp;
pub mod trustbuilder;
pub mod xml;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use config::{
    CredentialConfig, CredentialStatus, CredentialType, Faults, Policy, PushAction, PushConfig,
    PushSuccessStatus, ServerConfig, SimConfig, TlsConfig, TokenConfig, UserConfig, UserStatus,
};
pub use trustbuilder::{TbFaults, TbPush, TbSim, TbSimConfig, TbToolConfig, TbUserConfig};

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Invalid configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// Certificate generation or loading.
    #[error("certificates: {0}")]
    Cert(String),
    /// TLS setup.
    #[error("TLS: {0}")]
    Tls(String),
    /// File or socket I/O.
    #[error("I/O: {0}")]
    Io(String),
}

/// Call and connection counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Calls by operation name (`checkOtp`, `authenticateUser`, `authenticateUserWithPush`,
    /// `pollPushStatus`, `getUserInfo`, `sendOtp`, `getServerTime`).
    pub calls: BTreeMap<String, u64>,
    /// Requests that carried an authentication level, by `operation:level`
    /// (`authenticateUser:3`): proof that `authContext` reached "VIP".
    #[serde(default)]
    pub auth_levels: BTreeMap<String, u64>,
    /// Completed TLS handshakes (accepted connections).
    pub tls_handshakes: u64,
    /// HTTP requests received on the TLS listener (any path).
    pub http_requests: u64,
}

impl Counters {
    /// Calls of one operation (0 if none).
    pub fn calls(&self, op: &str) -> u64 {
        self.calls.get(op).copied().unwrap_or(0)
    }

    /// Calls of `op` that carried `authLevel.level` = `level`.
    pub fn auth_level(&self, op: &str, level: u8) -> u64 {
        self.auth_levels
            .get(&format!("{op}:{level}"))
            .copied()
            .unwrap_or(0)
    }

    /// Calls of all operations.
    pub fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }
}

/// The live counters behind [`Counters`] snapshots.
#[derive(Debug, Default)]
pub(crate) struct CounterSet {
    calls: Mutex<BTreeMap<String, u64>>,
    auth_levels: Mutex<BTreeMap<String, u64>>,
    tls_handshakes: AtomicU64,
    http_requests: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CounterSet {
    /// One call of `name`.
    pub(crate) fn call(&self, name: &str) {
        *lock(&self.calls).entry(name.to_string()).or_insert(0) += 1;
    }

    /// One call of `op` carrying authentication level `level`.
    pub(crate) fn auth_level(&self, op: &str, level: &str) {
        *lock(&self.auth_levels)
            .entry(format!("{op}:{level}"))
            .or_insert(0) += 1;
    }

    /// One completed TLS handshake.
    pub(crate) fn handshake(&self) {
        self.tls_handshakes.fetch_add(1, Ordering::Relaxed);
    }

    /// One HTTP request on the TLS listener.
    pub(crate) fn request(&self) {
        self.http_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Counters {
        Counters {
            calls: lock(&self.calls).clone(),
            auth_levels: lock(&self.auth_levels).clone(),
            tls_handshakes: self.tls_handshakes.load(Ordering::Relaxed),
            http_requests: self.http_requests.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn reset(&self) {
        lock(&self.calls).clear();
        lock(&self.auth_levels).clear();
        self.tls_handshakes.store(0, Ordering::Relaxed);
        self.http_requests.store(0, Ordering::Relaxed);
    }
}

/// A running simulator. Dropping it stops it too (without waiting).
pub struct Sim {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    state: Arc<ops::State>,
    running: server::Running,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("addr", &self.addr)
            .field("admin_addr", &self.admin_addr)
            .finish()
    }
}

impl Sim {
    /// Loads the TLS files, binds `cfg.server.listen` (and `admin_listen` if set) and serves.
    pub async fn start(cfg: SimConfig) -> Result<Sim, SimError> {
        cfg.validate()?;
        let bound = server::bind(&cfg.server, &cfg.tls).await?;
        let (addr, admin_addr) = (bound.addr, bound.admin_addr);
        let state = Arc::new(ops::State::new(
            cfg.policy.clone(),
            cfg.faults.clone(),
            &cfg.users,
            &cfg.tokens,
        ));
        let (hs, st) = (state.clone(), state.clone());
        let running = bound.spawn(
            state.clone(),
            move || {
                hs.counters.handshake();
            },
            move |limits| move |req| server::handle_soap(req, st.clone(), limits),
        );
        Ok(Sim {
            addr,
            admin_addr,
            state,
            running,
        })
    }

    /// The HTTPS listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT` (IPv6: `https://[::1]:PORT`).
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The admin listener's address, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.state.counters()
    }

    /// Zeroes all counters.
    pub fn reset_counters(&self) {
        self.state.reset_counters()
    }

    /// The last code "sent" to the user by sendOtp (SMS or voice), even if already used.
    pub fn last_sent_code(&self, user: &str) -> Option<String> {
        self.state.last_sent_code(user)
    }

    /// Replaces the global faults (restarting the `status_times` counts). Invalid values
    /// (see [`Faults::validate`]) are logged and those entries are ignored.
    pub fn set_global_faults(&self, f: Faults) {
        if let Err(e) = f.validate() {
            tracing::warn!("global faults: {e}");
        }
        self.state.set_global_faults(f)
    }

    /// The current global faults.
    pub fn global_faults(&self) -> Faults {
        self.state.global_faults()
    }

    /// Replaces one user's faults (restarting their `status_times` counts); false if there
    /// is no such user. Invalid values are logged and those entries are ignored.
    pub fn set_user_faults(&self, user: &str, f: Faults) -> bool {
        if let Err(e) = f.validate() {
            tracing::warn!("faults of {user:?}: {e}");
        }
        self.state.set_user_faults(user, f)
    }

    /// The code the user's first STANDARD_OTP token shows now (its drift included).
    pub fn current_code(&self, user: &str) -> Option<String> {
        self.state.current_code(user)
    }

    /// True when the user exists (configured or created at run time; case-insensitive).
    pub fn user_exists(&self, user: &str) -> bool {
        self.state.user_exists(user)
    }

    /// The user's bindings (tokens and registered phones) as `(credentialId, type)`, in
    /// getUserInfo order; empty for an unknown user.
    pub fn credentials_of(&self, user: &str) -> Vec<(String, CredentialType)> {
        self.state.credentials_of(user)
    }

    /// The last code "sent" to a phone number by register (or by sendOtp /
    /// setTemporaryPassword delivery to it), even if already used.
    pub fn last_sent_code_to(&self, phone: &str) -> Option<String> {
        self.state.last_sent_code_to(phone)
    }

    /// The code a token shows now (its drift included): an unbound `[[tokens]]` token or
    /// any bound STANDARD_OTP credential with a secret.
    pub fn token_code(&self, credential_id: &str) -> Option<String> {
        self.state.token_code(credential_id)
    }

    /// The user's current (unexpired) temporary security code.
    pub fn temporary_code(&self, user: &str) -> Option<String> {
        self.state.temporary_code(user)
    }

    /// Stops accepting, closes every connection and waits for the listeners to end.
    pub async fn shutdown(self) {
        self.running.stop().await
    }
}
