//! tb-sim: a TrustBuilder MFA (formerly inWebo) simulator on vip-sim's mutual-TLS server.
//!
//! REST authentication (`GET /FS?action=...`: authenticateExtended, pushAuthenticate,
//! checkPushResult) and the provisioning SOAP API (`POST /v2/services/ConsoleAdmin`, seed 003).
//! Logins, tools (TOTP seeds, push behaviour), faults and limits come from a TOML file
//! ([`TbSimConfig`]); see the "TrustBuilder simulator" section of `vip-sim/README.md`.

mod config;
mod provisioning;
mod rest;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

pub use config::{
    valid_login, TbFaults, TbPush, TbServiceConfig, TbSimConfig, TbToolConfig, TbUserConfig,
};

use crate::server::{self, respond, AdminApi, Limits, ResetConnection, Resp};
use crate::{Counters, SimError};
pub use provisioning::CONSOLE_NS;
use state::TbState;

/// The REST actions (counter names).
pub const REST_ACTIONS: [&str; 3] = [
    "authenticateExtended",
    "pushAuthenticate",
    "checkPushResult",
];

/// Every counter / `faults.err` name: the REST actions and the provisioning operations.
pub const ALL_NAMES: &[&str] = &[
    "authenticateExtended",
    "pushAuthenticate",
    "checkPushResult",
    "loginSearch",
    "loginQuery",
    "loginsQuery",
    "loginCreate",
    "loginUpdate",
    "loginDelete",
    "loginRestore",
    "loginActivateCode",
    "loginSendByMail",
    "loginResetPwd",
    "loginResetPwdExtended",
    "loginResetPINErrorCounter",
    "loginAddDevice",
    "loginUpdateTool",
    "loginDeleteTool",
];

/// Applies latency, then connection drop or an HTTP status (first set wins).
pub(crate) async fn transport_faults(f: &TbFaults) -> Result<Option<Resp>, ResetConnection> {
    if f.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
    }
    if f.connection_drop {
        return Err(ResetConnection);
    }
    Ok(f.http_status
        .filter(|s| (300..=599).contains(s))
        .and_then(server::http_status_page))
}

async fn handle(
    req: Request<Incoming>,
    st: Arc<TbState>,
    limits: Limits,
) -> Result<Resp, ResetConnection> {
    st.counters.request();
    match req.uri().path() {
        "/FS" => rest::handle(req, &st).await,
        provisioning::PATH => provisioning::handle(req, &st, limits).await,
        _ => Ok(respond(StatusCode::NOT_FOUND, "text/plain", "not found\n")),
    }
}

impl AdminApi for TbState {
    type Faults = TbFaults;

    fn counters(&self) -> Counters {
        TbState::counters(self)
    }

    fn reset_counters(&self) {
        self.counters.reset()
    }

    fn global_faults(&self) -> TbFaults {
        TbState::global_faults(self)
    }

    fn validate_faults(f: &TbFaults) -> Result<(), String> {
        f.validate().map_err(|e| e.to_string())
    }

    fn set_global_faults(&self, f: TbFaults) {
        TbState::set_global_faults(self, f)
    }

    fn set_user_faults(&self, user: &str, f: TbFaults) -> bool {
        TbState::set_user_faults(self, user, f)
    }

    fn code_route(&self, segs: &[&str]) -> Option<String> {
        match segs {
            ["users", login, "code"] => self.current_code(login),
            ["tools", alias, "code"] => self.tool_code(alias),
            _ => None,
        }
    }
}

/// A running TrustBuilder simulator. Dropping it stops it too (without waiting).
pub struct TbSim {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    state: Arc<TbState>,
    running: server::Running,
}

impl std::fmt::Debug for TbSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TbSim")
            .field("addr", &self.addr)
            .field("admin_addr", &self.admin_addr)
            .finish()
    }
}

impl TbSim {
    /// Loads the TLS files, binds `cfg.server.listen` (and `admin_listen` if set) and serves.
    pub async fn start(cfg: TbSimConfig) -> Result<TbSim, SimError> {
        cfg.validate()?;
        let bound = server::bind(&cfg.server, &cfg.tls).await?;
        let (addr, admin_addr) = (bound.addr, bound.admin_addr);
        let state = Arc::new(TbState::new(&cfg));
        let (hs, st) = (state.clone(), state.clone());
        let running = bound.spawn(
            state.clone(),
            move || hs.counters.handshake(),
            move |limits| move |req| handle(req, st.clone(), limits),
        );
        Ok(TbSim {
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

    /// A snapshot of the counters (`calls("authenticateExtended")`, `calls("loginSearch")`,
    /// ...; `auth_levels` stays empty).
    pub fn counters(&self) -> Counters {
        self.state.counters()
    }

    /// Zeroes all counters.
    pub fn reset_counters(&self) {
        self.state.counters.reset()
    }

    /// The OTP the login's first active tool with a seed shows now.
    pub fn current_code(&self, login: &str) -> Option<String> {
        self.state.current_code(login)
    }

    /// The OTP the tool with this alias shows now (whatever its state).
    pub fn tool_code(&self, alias: &str) -> Option<String> {
        self.state.tool_code(alias)
    }

    /// Replaces the global faults (restarting the `err_times` counts). Invalid values are
    /// logged and those entries ignored.
    pub fn set_global_faults(&self, f: TbFaults) {
        if let Err(e) = f.validate() {
            tracing::warn!("global faults: {e}");
        }
        self.state.set_global_faults(f)
    }

    /// The current global faults.
    pub fn global_faults(&self) -> TbFaults {
        self.state.global_faults()
    }

    /// Replaces one login's faults (restarting its `err_times` counts); false if there is no
    /// such login.
    pub fn set_user_faults(&self, login: &str, f: TbFaults) -> bool {
        if let Err(e) = f.validate() {
            tracing::warn!("faults of {login:?}: {e}");
        }
        self.state.set_user_faults(login, f)
    }

    /// True when the login exists (configured or created by loginCreate; exact match).
    pub fn login_exists(&self, login: &str) -> bool {
        self.state.login_exists(login)
    }

    /// Stops accepting, closes every connection and waits for the listeners to end.
    pub async fn shutdown(self) {
        self.running.stop().await
    }
}
