//! Is VIP down? The health monitor that fail-open waits on.
//!
//! One failed call proves little: a single timeout, a 6005 for one user, a dropped
//! connection. Like Enterprise Gateway's business continuity, the bridge fails open only while
//! VIP is *known* to be down: a getServerTime probe (every `vip.health_check_interval`, and at
//! once when a login's call failed as an outage) also fails as an outage, and no call has
//! succeeded since. A probe that VIP answers (even with an error status) or refuses (TLS,
//! protocol) says "not an outage".

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::error::FailureClass;
use super::VipClient;

/// What the last probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// No probe has finished yet.
    Unknown,
    /// VIP answered.
    Up,
    /// VIP could not be reached or said it is down.
    Down(String),
    /// VIP answered with something that is not an outage (a refusal, a protocol error).
    Refusing(String),
}

struct State {
    health: Health,
    /// When the last probe started and finished.
    probe_started: Option<Instant>,
    probed: Option<Instant>,
    /// A real call succeeded after the last probe: VIP is answering whatever the probe said.
    answered_since: bool,
}

/// Shared by the backend and its background task.
pub struct HealthMonitor {
    client: VipClient,
    interval: Duration,
    state: Mutex<State>,
    /// Held while a probe runs, so concurrent logins share one probe.
    probing: tokio::sync::Mutex<()>,
}

impl HealthMonitor {
    /// Builds the monitor; when a Tokio runtime is running, starts the periodic probe (it ends
    /// when the monitor is dropped).
    pub fn start(client: VipClient, interval: Duration) -> Arc<HealthMonitor> {
        let monitor = Arc::new(HealthMonitor {
            client,
            interval,
            state: Mutex::new(State {
                health: Health::Unknown,
                probe_started: None,
                probed: None,
                answered_since: false,
            }),
            probing: tokio::sync::Mutex::new(()),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(periodic(Arc::downgrade(&monitor), interval));
        }
        monitor
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the last probe found.
    pub fn health(&self) -> Health {
        self.lock().health.clone()
    }

    /// A real call got an answer from VIP: it is not down, whatever the last probe said.
    pub fn answered(&self) {
        let mut st = self.lock();
        st.answered_since = true;
    }

    /// Whether VIP is known to be down now. Called after a call failed as an outage: unless
    /// a probe within the last interval already said "down" (and no call was answered since),
    /// a probe runs now, or the one that started after this question is reused; a probe that
    /// started before the failure proves nothing about it.
    pub async fn outage_confirmed(&self) -> bool {
        let asked = Instant::now();
        {
            let st = self.lock();
            let recent_down = matches!(st.health, Health::Down(_))
                && st.probed.is_some_and(|t| t.elapsed() < self.interval);
            if recent_down {
                return !st.answered_since;
            }
        }
        let _probe = self.probing.lock().await;
        let answered_by_a_later_probe = self.lock().probe_started.is_some_and(|t| t >= asked);
        if !answered_by_a_later_probe {
            self.probe().await;
        }
        let st = self.lock();
        matches!(st.health, Health::Down(_)) && !st.answered_since
    }

    /// One getServerTime, classed like every call.
    async fn probe(&self) {
        let started = Instant::now();
        let found = match self.client.probe_server_time().await {
            Ok(_) => Health::Up,
            Err(e) => match e.class() {
                // The transport already re-checked a broken connection for a TLS refusal.
                FailureClass::Outage => Health::Down(e.to_string()),
                FailureClass::Answered => Health::Up,
                FailureClass::Misconfigured | FailureClass::Overload => {
                    Health::Refusing(e.to_string())
                }
            },
        };
        let before = {
            let mut st = self.lock();
            let before = std::mem::replace(&mut st.health, found.clone());
            st.probe_started = Some(started);
            st.probed = Some(Instant::now());
            st.answered_since = false;
            before
        };
        match (&before, &found) {
            (Health::Down(_), Health::Down(_)) => {}
            (_, Health::Down(why)) => {
                warn!(problem = %why, "VIP health check: VIP is DOWN (policies with fail_mode = \"open\" now let logins through without a second factor)")
            }
            (Health::Down(_), Health::Up) => info!("VIP health check: VIP is answering again"),
            (Health::Refusing(_), Health::Refusing(_)) => {}
            (_, Health::Refusing(why)) => {
                tracing::error!(problem = %why, "VIP health check: VIP refuses us (not an outage: check vip.* URLs, certificate and account)")
            }
            _ => {}
        }
    }
}

async fn periodic(monitor: Weak<HealthMonitor>, interval: Duration) {
    loop {
        // The first probe waits an interval too: a login that fails as an outage probes at
        // once anyway, and a bridge that just started need not call VIP for nothing.
        tokio::time::sleep(interval).await;
        {
            let Some(m) = monitor.upgrade() else { return };
            let _probe = m.probing.lock().await;
            m.probe().await;
        }
    }
}
