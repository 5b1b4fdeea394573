//! Is the MFA service down? The health monitor that fail-open waits on.
//!
//! One failed call proves little: a single timeout, an internal error for one user, a dropped
//! connection. Like Enterprise Gateway's business continuity, the bridge fails open only while
//! the service is *known* to be down: a probe (VIP: getServerTime; every
//! `<section>.health_check_interval`, and at once when a login's call failed as an outage) also
//! fails as an outage, and no call has succeeded since. A probe that the service answers (even
//! with an error status) or refuses (TLS, protocol) says "not an outage".

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::{FailureClass, Service};

/// What a probe found: `Err` carries the failure's class and its words.
pub type ProbeResult = Result<(), (FailureClass, String)>;

/// The one call a health monitor makes: cheap, harmless to repeat, on a slot of its own (a
/// flood of logins holding every in-flight slot must not make the service look down), not
/// retried. `Err` carries the failure's class and its words.
pub trait Probe: Send + Sync + 'static {
    /// Who is probed, for the log lines.
    fn service(&self) -> &'static Service;
    fn probe(&self) -> Pin<Box<dyn Future<Output = ProbeResult> + Send + '_>>;
}

/// What the last probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// No probe has finished yet.
    Unknown,
    /// The service answered.
    Up,
    /// The service could not be reached or said it is down.
    Down(String),
    /// The service answered with something that is not an outage (a refusal, a protocol error).
    Refusing(String),
}

struct State {
    health: Health,
    /// When the last probe started and finished.
    probe_started: Option<Instant>,
    probed: Option<Instant>,
    /// A real call succeeded after the last probe: the service is answering whatever the probe
    /// said.
    answered_since: bool,
}

/// Shared by the backend and its background task.
pub struct HealthMonitor {
    probe: Box<dyn Probe>,
    interval: Duration,
    state: Mutex<State>,
    /// Held while a probe runs, so concurrent logins share one probe.
    probing: tokio::sync::Mutex<()>,
}

impl HealthMonitor {
    /// Builds the monitor; when a Tokio runtime is running, starts the periodic probe (it ends
    /// when the monitor is dropped).
    pub fn start(probe: impl Probe, interval: Duration) -> Arc<HealthMonitor> {
        let monitor = Arc::new(HealthMonitor {
            probe: Box::new(probe),
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

    /// A real call got an answer from the service: it is not down, whatever the last probe said.
    pub fn answered(&self) {
        let mut st = self.lock();
        st.answered_since = true;
    }

    /// Whether the service is known to be down now. Called after a call failed as an outage: unless
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

    /// One probe, classed like every call.
    async fn probe(&self) {
        let started = Instant::now();
        let found = match self.probe.probe().await {
            Ok(()) => Health::Up,
            Err((class, e)) => match class {
                // The transport already re-checked a broken connection for a TLS refusal.
                FailureClass::Outage => Health::Down(e),
                FailureClass::Answered => Health::Up,
                FailureClass::Misconfigured | FailureClass::Overload => Health::Refusing(e),
            },
        };
        let Service {
            name: n,
            section: s,
            ..
        } = self.probe.service();
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
                warn!(problem = %why, "{n} health check: {n} is DOWN (policies with fail_mode = \"open\" now let logins through without a second factor)")
            }
            (Health::Down(_), Health::Up) => info!("{n} health check: {n} is answering again"),
            (Health::Refusing(_), Health::Refusing(_)) => {}
            (_, Health::Refusing(why)) => {
                tracing::error!(problem = %why, "{n} health check: {n} refuses us (not an outage: check {s}.* URLs, certificate and account)")
            }
            _ => {}
        }
    }
}

async fn periodic(monitor: Weak<HealthMonitor>, interval: Duration) {
    loop {
        // The first probe waits an interval too: a login that fails as an outage probes at
        // once anyway, and a bridge that just started need not call the service for nothing.
        tokio::time::sleep(interval).await;
        {
            let Some(m) = monitor.upgrade() else { return };
            let _probe = m.probing.lock().await;
            m.probe().await;
        }
    }
}
