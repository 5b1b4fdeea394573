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
pub mod config;
mod ops;
mod schema;
mod server;
pub mod totp;
pub mod xml;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    CredentialConfig, CredentialStatus, CredentialType, Faults, Policy, PushAction, PushConfig,
    PushSuccessStatus, ServerConfig, SimConfig, TlsConfig, TokenConfig, UserConfig, UserStatus,
};

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

/// A running simulator. Dropping it stops it too (without waiting).
pub struct Sim {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    state: Arc<ops::State>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("addr", &self.addr)
            .field("admin_addr", &self.admin_addr)
            .finish()
    }
}

fn load_tls(tls: &TlsConfig) -> Result<rustls::ServerConfig, SimError> {
    use rustls::pki_types::CertificateDer;
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| SimError::Io(format!("{}: {e}", p.display())));
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut read(&tls.cert)?.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| SimError::Tls(format!("{}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(SimError::Tls(format!(
            "{}: no certificate found",
            tls.cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut read(&tls.key)?.as_slice())
        .map_err(|e| SimError::Tls(format!("{}: {e}", tls.key.display())))?
        .ok_or_else(|| SimError::Tls(format!("{}: no private key found", tls.key.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut read(&tls.client_ca)?.as_slice()) {
        let c = c.map_err(|e| SimError::Tls(format!("{}: {e}", tls.client_ca.display())))?;
        roots
            .add(c)
            .map_err(|e| SimError::Tls(format!("{}: {e}", tls.client_ca.display())))?;
    }
    if roots.is_empty() {
        return Err(SimError::Tls(format!(
            "{}: no CA certificate found",
            tls.client_ca.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| SimError::Tls(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SimError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| SimError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

impl Sim {
    /// Loads the TLS files, binds `cfg.server.listen` (and `admin_listen` if set) and serves.
    pub async fn start(cfg: SimConfig) -> Result<Sim, SimError> {
        cfg.validate()?;
        let tls = load_tls(&cfg.tls)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind(cfg.server.listen)
            .await
            .map_err(|e| SimError::Io(format!("bind {}: {e}", cfg.server.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| SimError::Io(e.to_string()))?;
        let admin = match cfg.server.admin_listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| SimError::Io(format!("bind {a}: {e}")))?,
            ),
            None => None,
        };
        let admin_addr = match &admin {
            Some(l) => Some(l.local_addr().map_err(|e| SimError::Io(e.to_string()))?),
            None => None,
        };
        let state = Arc::new(ops::State::new(
            cfg.policy.clone(),
            cfg.faults.clone(),
            &cfg.users,
            &cfg.tokens,
        ));
        let limits = server::Limits {
            max_body: cfg.server.max_body_bytes,
            io_timeout: Duration::from_millis(cfg.server.io_timeout_ms.max(1)),
            max_connections: cfg.server.max_connections,
            idle_timeout: (cfg.server.idle_timeout_ms > 0)
                .then(|| Duration::from_millis(cfg.server.idle_timeout_ms)),
        };
        let (tx, rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(server::serve_tls(
            listener,
            acceptor,
            state.clone(),
            limits,
            rx.clone(),
        ))];
        if let Some(l) = admin {
            tasks.push(tokio::spawn(server::serve_admin(
                l,
                state.clone(),
                limits,
                rx,
            )));
        }
        Ok(Sim {
            addr,
            admin_addr,
            state,
            shutdown: tx,
            tasks,
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
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
