//! The auth engine: one front-door-agnostic decision from what the user typed to an
//! [`Outcome`].
//!
//! A round starts either fresh (no State) or from a sealed State of a previous round. Fresh
//! rounds read the password per the client's [`LoginPolicy`]: a code, PIN + code, a factor
//! keyword, nothing, or (in `challenge` mode) anything, which opens a menu. Continuing rounds
//! carry on from the sealed [`Step`]. Every round is one tracing span (`login`) with its id; the
//! VIP client's spans nest inside it with their requestIds, and one `login finished` event sums
//! it up. No password, code, PIN or State value is ever logged.

pub mod backend;
mod cache;
mod config;
mod enrollment;
mod model;
pub mod policy;
mod push;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

pub use config::EngineConfig;
pub use model::{
    Accept, AuthRequest, Challenge, ClientInfo, Factor, FrontDoor, Outcome, Reject, RejectReason,
};
pub use policy::{
    EmptyPassword, EnrollKind, Enrollment, FailMode, FirstFactorKind, GroupPolicy, LoginPolicy,
    OtpOperation, PasswordFormat, PasswordMode, PushMode, UserNameMapping,
};

use crate::challenge::{SessionHandle, StateSealer, Step};
use crate::first_factor::{
    self, DirectoryUser, FirstFactor, FirstFactorError, Lookup, RawAttribute, Verdict,
};
use crate::log_text::{escaped, Escaped};
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::{PushClaim, Refused, SharedStore};
use crate::throttle::{Limit, PasswordGuard, Throttles};
use backend::{
    transaction_key, Backend, BackendError, Channel, CodeCheck, CodeKind, PushStart, PushState,
    Refusal, UserFactors, Verified,
};
use cache::UserFactorsCache;
use push::{Join, Phase, PushBoard};

/// What a front door calls. Implemented by [`Engine`]; front doors hold an
/// `Arc<dyn Authenticate>` so their own unit tests can drive them without VIP.
pub trait Authenticate: Send + Sync + 'static {
    /// Decide one round of a login. Never fails: every problem becomes a `Reject` (or an
    /// `Accept { failed_open: true }` when the policy fails open).
    fn authenticate(&self, req: AuthRequest) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>>;

    /// Whether `state` opens as a live State this engine issued (without consuming it). Front
    /// doors use it to serve continuing logins first under load.
    fn state_is_live(&self, state: &[u8]) -> bool;

    /// Before a front door asks for a code itself (PAM's first prompt): the enrollment this
    /// login is offered, if any (`None`: ask for the code as usual). Only a fresh round whose
    /// first factor passed can be offered one.
    fn enrollment_offer(
        &self,
        req: AuthRequest,
    ) -> Pin<Box<dyn Future<Output = Option<Outcome>> + Send + '_>> {
        let _ = req;
        Box::pin(async { None })
    }

    /// What several instances share (`[cluster]`), for the front doors' own shared state
    /// (the RADIUS response cache).
    fn shared_store(&self) -> Option<Arc<SharedStore>> {
        None
    }
}

/// Errors building the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    StateKey(#[from] crate::challenge::KeyError),
    #[error("{0}")]
    Config(String),
}

/// Counters the engine keeps (exported as metrics by the daemon).
#[derive(Debug, Default)]
pub struct EngineStats {
    pub fail_opens: AtomicU64,
    pub throttled: AtomicU64,
    pub pushes_started: AtomicU64,
    pub pushes_joined: AtomicU64,
    pub bad_states: AtomicU64,
}

/// The engine. Build it inside a Tokio runtime (it starts the push poller); share it in an `Arc`.
pub struct Engine {
    backend: Arc<dyn Backend>,
    sealer: StateSealer,
    throttles: Throttles,
    factors: UserFactorsCache,
    pushes: Arc<PushBoard>,
    cfg: EngineConfig,
    stats: EngineStats,
    login_seq: AtomicU64,
    login_prefix: u32,
    metrics: OnceLock<Arc<Metrics>>,
    /// What other instances share (`[cluster]`); unset: this process's memory only.
    store: OnceLock<Arc<SharedStore>>,
    /// Failure lines a flood could repeat per login: at most one a second each (the
    /// `login round finished` event and the metrics still record every login).
    overload_log: crate::log_limit::OncePerSecond,
    outage_log: crate::log_limit::OncePerSecond,
    misconfigured_log: crate::log_limit::OncePerSecond,
    bad_state_log: crate::log_limit::OncePerSecond,
    throttled_log: crate::log_limit::OncePerSecond,
    /// VIP's refusals worth a warning (no push device, invalid phone, expired PIN, failed push).
    refusal_log: crate::log_limit::OncePerSecond,
    /// First factors (`[directories]`), by name.
    directories: HashMap<String, Arc<dyn FirstFactor>>,
    /// For each kind with exactly one directory, its name (a policy may leave `directory` out).
    sole_directory: HashMap<&'static str, String>,
    /// Every named policy, for `group_policies`.
    policies: HashMap<String, Arc<LoginPolicy>>,
    /// Logins whose password was checked in an earlier round (or that wait on the upstream's
    /// question), by the handle their State carries. Kept while States may still name them.
    sessions: moka::sync::Cache<SessionHandle, Arc<FirstFactorSession>>,
    /// The AD-lockout guard.
    password_guard: PasswordGuard,
    /// Refused passwords and directory look-ups (a stranger can repeat them).
    first_factor_log: crate::log_limit::OncePerSecond,
}

/// What a later round of a login with a first factor needs from the round that checked the
/// password. Held in memory only (a State has no room for reply attributes): a login that
/// fails over to another instance mid-dialogue starts again.
struct FirstFactorSession {
    /// The directory login name (for an upstream question's answer).
    login_name: String,
    vip_user: String,
    /// The policy in force after group selection.
    policy: Arc<LoginPolicy>,
    reply_attributes: Arc<Vec<RawAttribute>>,
    /// Set while the upstream RADIUS server's Access-Challenge waits for its answer (the
    /// password has not passed yet).
    upstream_state: Option<Vec<u8>>,
}

/// How long a claim on a login session's push holds while the push is being sent (VIP's
/// answer to authenticateUserWithPush); an instance that dies meanwhile frees it by then.
const PUSH_CLAIM_HOLD: Duration = Duration::from_secs(15);
/// How long a request waits for another instance to finish sending the same session's push.
const PUSH_CLAIM_WAIT: Duration = Duration::from_secs(5);

/// Publishes a push this instance sends for a shared login session once it is sent, and
/// forgets it once it finished (a task per shared push, ending with it).
fn publish_push(
    store: Arc<SharedStore>,
    key: String,
    mut rx: watch::Receiver<Phase>,
    deadline: SystemTime,
) {
    tokio::spawn(async move {
        let sent = rx
            .wait_for(|p| !matches!(p, Phase::Starting))
            .await
            .map(|p| p.clone());
        match sent {
            Ok(Phase::Sent { transaction_id, .. }) => {
                store.push_sent(&key, &transaction_id, deadline).await;
                let done = rx
                    .wait_for(|p| matches!(p, Phase::Done(_)))
                    .await
                    .map(|p| p.clone());
                if let Ok(Phase::Done(state)) = done {
                    if let Some(outcome) = push_outcome_word(&state) {
                        store.push_finished(&key, &transaction_id, outcome).await;
                    }
                }
            }
            _ => store.push_unclaim(&key).await,
        }
    });
}

/// How a push ended, as instances tell each other (`None`: no final answer from VIP).
fn push_outcome_word(state: &PushState) -> Option<&'static str> {
    match state {
        PushState::Approved(_) => Some("approved"),
        PushState::Denied => Some("denied"),
        PushState::Expired => Some("expired"),
        PushState::NumberChallengeFailed => Some("number_failed"),
        PushState::Pending
        | PushState::RefusedAsAsked
        | PushState::Failed(_)
        | PushState::Misconfigured(_) => None,
    }
}

fn push_state_of(word: &str) -> Option<PushState> {
    Some(match word {
        "approved" => PushState::Approved(Verified::default()),
        "denied" => PushState::Denied,
        "expired" => PushState::Expired,
        "number_failed" => PushState::NumberChallengeFailed,
        _ => return None,
    })
}

/// How long a request that joined another instance's push waits for that instance to say
/// how it ended, when VIP told the other instance (VIP tells a final state to one poll only).
const PUSH_OUTCOME_WAIT: Duration = Duration::from_secs(2);

/// Longest wait inside a continuing round for a push that is still pending.
const MAX_ROUND_WAIT: Duration = Duration::from_secs(10);

impl Engine {
    /// Records logins, rejects, fail-opens, throttles and pending pushes into `metrics` from
    /// now on (the first call wins). VIP calls are recorded by the VIP client
    /// (`VipClient::set_metrics`).
    pub fn set_metrics(self: &Arc<Self>, metrics: Arc<Metrics>) {
        let engine = Arc::downgrade(self);
        metrics.set_pending_pushes_source(move || {
            engine
                .upgrade()
                .map(|e| e.pending_pushes() as i64)
                .unwrap_or(0)
        });
        let _ = self.metrics.set(metrics);
    }

    /// Everything building the engine from `cfg` would refuse (the State key, the poll
    /// interval, the throttles), checked without starting anything. The VIP client and the
    /// directories are checked by `CoreConfig::check_engine`, which composes this.
    pub fn check(cfg: &EngineConfig) -> Result<(), EngineError> {
        Self::parts(cfg).map(|_| ())
    }

    /// The State sealer and throttles `cfg` describes, or why they cannot be built.
    fn parts(cfg: &EngineConfig) -> Result<(StateSealer, Throttles), EngineError> {
        let max_ttl = Self::max_state_ttl(cfg);
        let sealer = match &cfg.state_key_file {
            Some(path) => StateSealer::from_key_file(path, max_ttl)?,
            None => StateSealer::random(max_ttl),
        };
        if cfg.poll_interval < Duration::from_millis(100) {
            return Err(EngineError::Config(format!(
                "engine.poll_interval = {}: must be at least 100ms",
                humantime::format_duration(cfg.poll_interval)
            )));
        }
        let throttles = Throttles::new(&cfg.throttle).map_err(EngineError::Config)?;
        PasswordGuard::new(cfg.throttle.password_failures_per_user).map_err(EngineError::Config)?;
        Ok((sealer, throttles))
    }

    /// Push States live as long as a push may; code States as long as `state_ttl`.
    fn max_state_ttl(cfg: &EngineConfig) -> Duration {
        cfg.state_ttl.max(Duration::from_secs(660))
    }

    /// Builds the engine over any [`Backend`], without directories.
    pub fn with_backend(
        cfg: &EngineConfig,
        backend: Arc<dyn Backend>,
    ) -> Result<Arc<Engine>, EngineError> {
        Self::with_parts(cfg, backend, HashMap::new(), &BTreeMap::new())
    }

    /// Builds the engine over any [`Backend`] and first factors; `policies` are the named
    /// policies `group_policies` may pick.
    pub fn with_parts(
        cfg: &EngineConfig,
        backend: Arc<dyn Backend>,
        directories: HashMap<String, Arc<dyn FirstFactor>>,
        policies: &BTreeMap<String, LoginPolicy>,
    ) -> Result<Arc<Engine>, EngineError> {
        let max_ttl = Self::max_state_ttl(cfg);
        let (sealer, throttles) = Self::parts(cfg)?;
        if cfg.state_key_file.is_none() {
            warn!("engine.state_key_file is not set: using a random State key; logins cannot continue on another instance or after a restart");
        }
        Ok(Arc::new(Engine {
            pushes: PushBoard::new(backend.clone(), cfg.poll_interval, max_ttl),
            backend,
            sealer,
            throttles,
            factors: UserFactorsCache::new(cfg.user_info_ttl),
            cfg: cfg.clone(),
            stats: EngineStats::default(),
            login_seq: AtomicU64::new(0),
            login_prefix: rand::random(),
            metrics: OnceLock::new(),
            store: OnceLock::new(),
            overload_log: crate::log_limit::OncePerSecond::new(),
            outage_log: crate::log_limit::OncePerSecond::new(),
            misconfigured_log: crate::log_limit::OncePerSecond::new(),
            bad_state_log: crate::log_limit::OncePerSecond::new(),
            throttled_log: crate::log_limit::OncePerSecond::new(),
            refusal_log: crate::log_limit::OncePerSecond::new(),
            sole_directory: ["ldap", "radius"]
                .into_iter()
                .filter_map(|kind| {
                    first_factor::pick(
                        directories.iter().map(|(n, d)| (n.as_str(), d.kind())),
                        kind,
                        None,
                    )
                    .ok()
                    .map(|name| (kind, name.to_owned()))
                })
                .collect(),
            directories,
            policies: policies
                .iter()
                .map(|(n, p)| (n.clone(), Arc::new(p.clone())))
                .collect(),
            sessions: moka::sync::Cache::builder()
                .time_to_idle(max_ttl)
                .max_capacity(1_000_000)
                .build(),
            password_guard: PasswordGuard::new(cfg.throttle.password_failures_per_user)
                .map_err(EngineError::Config)?,
            first_factor_log: crate::log_limit::OncePerSecond::new(),
        }))
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Pushes currently being sent or polled.
    pub fn pending_pushes(&self) -> usize {
        self.pushes.pending()
    }

    async fn run(&self, req: AuthRequest) -> Outcome {
        match self.run_round(req, false).await {
            Some(outcome) => outcome,
            // Only an offer-only round ends without an outcome.
            None => reject(RejectReason::Misconfigured, MSG_MISCONFIGURED),
        }
    }

    /// One round in its `login` span, with its log line and metrics. `offer_only`: only decide
    /// whether enrollment is offered (`None`, and no log line, when it is not).
    async fn run_round(&self, mut req: AuthRequest, offer_only: bool) -> Option<Outcome> {
        let started = Instant::now();
        let login_id = format!(
            "{:08x}{:06x}",
            self.login_prefix,
            self.login_seq.fetch_add(1, Ordering::Relaxed) & 0xff_ffff
        );
        // VIP reads " bob" as "bob": so do we, for VIP and for every key (throttles, push
        // coalescing, caches, State), or a padded name would be a fresh set of limits.
        // A name with control characters is refused (in `decide`) before anything else, so it
        // is never trimmed into an acceptable one.
        if check_user_name(&req.user).is_ok() && req.user.trim().len() != req.user.len() {
            req.user = req.user.trim().to_owned();
        }
        // Every attacker-controlled field is escaped in the log, whatever the checks say later.
        let span = tracing::info_span!(
            "login",
            id = %login_id,
            user = %Escaped(&req.user),
            front_door = req.client.front_door.as_str(),
            client = %Escaped(&req.client.name),
        );
        async move {
            let mut login = Login::new(&req, &login_id);
            let outcome = if offer_only {
                self.offer_only(&mut login).await?
            } else {
                self.decide(&mut login).await
            };
            let (reason, failed_open) = match &outcome {
                Outcome::Reject(r) => (r.reason.as_str(), false),
                Outcome::Accept(a) => ("", a.failed_open),
                Outcome::Challenge(_) => ("", false),
            };
            if let Some(m) = self.metrics.get() {
                m.login(
                    req.client.front_door.as_str(),
                    login.factor.as_str(),
                    outcome.kind(),
                );
                if let Outcome::Reject(r) = &outcome {
                    m.reject(r.reason.as_str());
                }
            }
            info!(
                target: "vip_bridge::login",
                outcome = outcome.kind(),
                factor = login.factor.as_str(),
                reason,
                vip_status = login.status.as_deref().unwrap_or(""),
                first_factor = login.first_factor,
                first_factor_result = login.first_factor_result,
                vip_user = %Escaped(&login.vip_user),
                request_ids = %login.request_ids.join(","),
                remote = %escaped(req.client.remote.as_deref()),
                duration_ms = started.elapsed().as_millis() as u64,
                failed_open,
                "login round finished"
            );
            Some(outcome)
        }
        .instrument(span)
        .await
    }

    /// [`Authenticate::enrollment_offer`]: the checks a fresh round makes before its second
    /// factor, then the enrollment offer alone.
    async fn offer_only(&self, login: &mut Login<'_>) -> Option<Outcome> {
        let req = login.req;
        if req.state.is_some()
            || req.policy.first_factor != FirstFactorKind::None
            || !login.may_enroll()
        {
            return None;
        }
        if let Err(refused) = self.admit(Limit::Client, &login.client_key).await {
            return Some(refused);
        }
        if let Err(why) = check_user_name(&req.user) {
            return Some(reject(RejectReason::BadInput, why));
        }
        if let Err(refused) = self.map_user(login).await {
            return Some(refused);
        }
        self.offer_enrollment(login).await
    }

    async fn decide(&self, login: &mut Login<'_>) -> Outcome {
        let req = login.req;
        if let Err(refused) = self.admit(Limit::Client, &login.client_key).await {
            return refused;
        }
        if let Err(why) = check_user_name(&req.user) {
            return reject(RejectReason::BadInput, why);
        }
        let first_factor = req.policy.first_factor != FirstFactorKind::None;
        if let Some(token) = &req.state {
            let (opened, spent) =
                match self
                    .sealer
                    .open_spending(token, &req.user, &login.client_key)
                {
                    Ok(opened) => opened,
                    Err(e) => return self.bad_state(&e),
                };
            // Single use across instances: the first to mark it spent in the store wins.
            if let Some(store) = self.store.get() {
                match store.spend_nonce(&spent.nonce, spent.keep_for).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return self.bad_state(&"State was already used (on another instance)")
                    }
                    Err(Refused) => return self.store_refused(),
                }
            }
            if first_factor {
                // The password was checked in an earlier round: that round's session says
                // who the user is at VIP and what the directory answered.
                let session = opened
                    .session
                    .and_then(|h| self.sessions.get(&h).map(|s| (h, s)));
                let Some((handle, session)) = session else {
                    return self.bad_state(&"its first-factor session is gone (expired, the daemon restarted, or another instance issued it)");
                };
                login.adopt(handle, &session);
                if opened.step == Step::Upstream {
                    return self.answer_upstream(login, &session).await;
                }
            } else if let Err(refused) = self.map_user(login).await {
                return refused;
            }
            return self.continue_step(login, opened.step, opened.expires).await;
        }
        if first_factor {
            return self.first_factor(login).await;
        }
        if let Err(refused) = self.map_user(login).await {
            return refused;
        }
        // Under PAM, pam_unix before pam_vip.so may have checked the password.
        if let Some(offered) = self.offer_enrollment(login).await {
            return offered;
        }
        self.second_factor(login, req.secret.clone()).await
    }

    /// The first round's second factor, from what was typed for it.
    async fn second_factor(&self, login: &mut Login<'_>, secret: Option<Secret>) -> Outcome {
        let policy = login.policy.clone();
        if policy.mode == PasswordMode::Challenge {
            // The first round only opens the menu; whatever was typed is not a second factor.
            return self.menu(login, true).await;
        }
        match classify(&policy, secret.as_ref()) {
            Typed::Nothing => match policy.empty_password {
                EmptyPassword::Reject => reject(RejectReason::BadInput, MSG_EMPTY),
                EmptyPassword::Push => self.push(login, true).await,
                EmptyPassword::Menu => self.menu(login, true).await,
            },
            Typed::Push => self.push(login, true).await,
            Typed::Sms => self.send_code(login, Channel::Sms, true).await,
            Typed::Voice => self.send_code(login, Channel::Voice, true).await,
            Typed::Reset => self.reset_start(login),
            Typed::Code(code) if policy.mode == PasswordMode::PinOtp => {
                match split_pin(&code, policy.code_length) {
                    Some((pin, code)) => {
                        login.factor = Factor::PinCode;
                        self.check_code(login, code, None, Some(pin), true).await
                    }
                    None => reject(RejectReason::BadInput, MSG_PIN_FORMAT),
                }
            }
            Typed::Code(code) => {
                if !is_code(&code) {
                    return reject(RejectReason::BadInput, MSG_CODE_FORMAT);
                }
                login.factor = Factor::Code;
                self.check_code(login, code, None, None, true).await
            }
        }
    }

    fn bad_state(&self, problem: &dyn std::fmt::Display) -> Outcome {
        self.stats.bad_states.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.bad_state_log.pass() {
            warn!(problem = %problem, suppressed, "refused a State");
        }
        reject(RejectReason::BadState, MSG_BAD_STATE)
    }

    /// The directory this policy asks, by name or as the only one of its kind. (Checked
    /// when the configuration was loaded; an error here means a policy built elsewhere.)
    fn directory_for(
        &self,
        policy: &LoginPolicy,
        kind: FirstFactorKind,
    ) -> Result<(&str, &Arc<dyn FirstFactor>), String> {
        let found = match policy.directory.as_deref() {
            Some(name) => self.directories.get_key_value(name),
            None => self
                .sole_directory
                .get(kind.as_str())
                .and_then(|name| self.directories.get_key_value(name)),
        };
        match found {
            Some((name, d)) if d.kind() == kind.as_str() => Ok((name.as_str(), d)),
            _ => Err(first_factor::pick(
                self.directories.iter().map(|(n, d)| (n.as_str(), d.kind())),
                kind.as_str(),
                policy.directory.as_deref(),
            )
            .err()
            .unwrap_or_else(|| "no such directory".to_owned())),
        }
    }

    /// Login-name mapping where no first factor runs here (PAM's stack or the NAS checked
    /// the password): the template, or the directory attribute looked up with the service
    /// account.
    async fn map_user(&self, login: &mut Login<'_>) -> Result<(), Outcome> {
        let policy = login.policy.clone();
        if !policy.maps_user_names() {
            return Ok(());
        }
        let name = policy.user_name.login_name(&login.req.user);
        let vip_user = match &policy.user_name.vip_user_attribute {
            None => policy.user_name.vip_user(&name),
            Some(attribute) => {
                let (directory_name, directory) = self
                    .directory_for(&policy, FirstFactorKind::Ldap)
                    .map_err(|why| self.misconfigured_directory(&why))?;
                let who = Lookup {
                    login: &name,
                    attribute: Some(attribute),
                    groups: false,
                };
                let started = Instant::now();
                let found = directory.lookup(who).await;
                if let Some(m) = self.metrics.get() {
                    let result = match &found {
                        Ok(Some(_)) => "found",
                        Ok(None) => "not_found",
                        Err(e) => e.class(),
                    };
                    m.directory_call(directory_name, "lookup", result, started.elapsed());
                }
                match found {
                    Ok(Some(DirectoryUser {
                        attribute: Some(v), ..
                    })) => v,
                    Ok(_) => {
                        if let Some(suppressed) = self.first_factor_log.pass() {
                            warn!(login = %Escaped(&name), attribute = %attribute, suppressed, "no directory entry with the VIP user attribute for this login name: refusing");
                        }
                        return Err(self.unknown_user(login));
                    }
                    Err(e) => return Err(self.directory_failed(e)),
                }
            }
        };
        login
            .set_vip_user(vip_user)
            .map_err(|why| reject(RejectReason::BadInput, why))
    }

    fn unknown_user(&self, login: &Login<'_>) -> Outcome {
        if login.policy.helpful_messages {
            reject(RejectReason::UnknownUser, MSG_NOT_ENROLLED)
        } else {
            reject(RejectReason::UnknownUser, MSG_BAD_CODE)
        }
    }

    /// The first round of a policy with a first factor: split what was typed into the
    /// password and the second factor, check the password, then the second factor.
    async fn first_factor(&self, login: &mut Login<'_>) -> Outcome {
        let req = login.req;
        let policy = req.policy.clone();
        let typed = req.secret.clone().unwrap_or_default();
        let (password, second) = match split_password(&policy, &typed) {
            Ok(split) => split,
            Err(message) => return reject(RejectReason::BadInput, message),
        };
        let name = policy.user_name.login_name(&req.user);
        self.check_password(login, &name, &password, None, second)
            .await
    }

    /// A round answering the upstream RADIUS server's Access-Challenge.
    async fn answer_upstream(
        &self,
        login: &mut Login<'_>,
        session: &FirstFactorSession,
    ) -> Outcome {
        let Some(state) = session.upstream_state.as_deref() else {
            return self.bad_state(&"an upstream step without the upstream's State");
        };
        let answer = login.req.secret.clone().unwrap_or_default();
        let name = session.login_name.clone();
        self.check_password(login, &name, &answer, Some(state), None)
            .await
    }

    /// Checks the directory password under the AD-lockout guard, then goes on to the second
    /// factor (`second`, typed with the password, or asked for). Never fails open.
    async fn check_password(
        &self,
        login: &mut Login<'_>,
        name: &str,
        password: &Secret,
        upstream_state: Option<&[u8]>,
        second: Option<Secret>,
    ) -> Outcome {
        let policy = login.req.policy.clone();
        let (directory_name, directory) = match self.directory_for(&policy, policy.first_factor) {
            Ok(d) => d,
            Err(why) => return self.misconfigured_directory(&why),
        };
        login.first_factor = directory.kind();
        if password.is_empty() {
            return reject(RejectReason::BadInput, MSG_PASSWORD_EMPTY);
        }
        // Keyed on the name as any directory reads it (no domain, no realm, any case): the
        // spellings of one account share one allowance.
        let Some(attempt) = self.password_guard.begin(&guard_key(name)) else {
            return self.throttled(Limit::Password);
        };
        let who = Lookup {
            login: name,
            attribute: policy.user_name.vip_user_attribute.as_deref(),
            groups: !policy.required_groups.is_empty() || !policy.group_policies.is_empty(),
        };
        let started = Instant::now();
        let verdict = directory.verify(who, password, upstream_state).await;
        if let Some(m) = self.metrics.get() {
            let result = match &verdict {
                Ok(Verdict::Passed(_)) => "passed",
                Ok(Verdict::Refused { .. }) => "refused",
                Ok(Verdict::Challenge { .. }) => "challenge",
                Err(e) => e.class(),
            };
            m.directory_call(directory_name, "verify", result, started.elapsed());
        }
        let user = match verdict {
            Ok(Verdict::Passed(user)) => {
                attempt.passed();
                user
            }
            Ok(Verdict::Refused { why }) => {
                attempt.failed();
                login.first_factor_result = "refused";
                if let Some(suppressed) = self.first_factor_log.pass() {
                    warn!(directory = directory_name, login = %Escaped(name), problem = %Escaped(&why), suppressed, "the directory refused the password");
                }
                return reject(RejectReason::BadPassword, MSG_BAD_PASSWORD);
            }
            Ok(Verdict::Challenge { prompt, state }) => {
                drop(attempt);
                login.first_factor_result = "challenge";
                let session = FirstFactorSession {
                    login_name: name.to_owned(),
                    vip_user: String::new(),
                    policy: policy.clone(),
                    reply_attributes: Arc::new(Vec::new()),
                    upstream_state: Some(state),
                };
                login.session = Some(self.new_session(session));
                return self.challenge(login, &Step::Upstream, self.cfg.state_ttl, &prompt, false);
            }
            Err(e) => {
                drop(attempt);
                login.first_factor_result = "error";
                return self.directory_failed(e);
            }
        };
        login.first_factor_result = "passed";
        // Group membership: who may log in here, and which second factor they get.
        if !policy.required_groups.is_empty()
            && !policy
                .required_groups
                .iter()
                .any(|g| first_factor::is_member(&user, g))
        {
            if let Some(suppressed) = self.first_factor_log.pass() {
                warn!(directory = directory_name, login = %Escaped(name), suppressed, "the password was right but the user is in none of required_groups: refusing");
            }
            return reject(RejectReason::NotPermitted, MSG_NOT_PERMITTED);
        }
        let effective = policy
            .group_policies
            .iter()
            .find(|gp| first_factor::is_member(&user, &gp.group))
            .and_then(|gp| self.policies.get(&gp.policy).cloned())
            .unwrap_or_else(|| policy.clone());
        let vip_user = match (&policy.user_name.vip_user_attribute, user.attribute) {
            (None, _) => policy.user_name.vip_user(name),
            (Some(_), Some(v)) => v,
            (Some(attribute), None) => {
                if let Some(suppressed) = self.first_factor_log.pass() {
                    warn!(directory = directory_name, login = %Escaped(name), attribute = %attribute, suppressed, "the user's directory entry has no VIP user attribute: refusing");
                }
                return self.unknown_user(login);
            }
        };
        if let Err(why) = login.set_vip_user(vip_user) {
            return reject(RejectReason::BadInput, why);
        }
        login.policy = effective;
        login.reply_attributes = Arc::new(user.reply_attributes);
        login.password_checked = true;
        login.session = None;
        if let Some(offered) = self.offer_enrollment(login).await {
            return offered;
        }
        let effective = login.policy.clone();
        match second {
            Some(second) => self.second_factor(login, Some(second)).await,
            None if effective.mode != PasswordMode::Challenge
                && effective.empty_password == EmptyPassword::Push =>
            {
                self.push(login, true).await
            }
            None => self.menu(login, true).await,
        }
    }

    fn new_session(&self, session: FirstFactorSession) -> SessionHandle {
        let handle: SessionHandle = rand::random();
        self.sessions.insert(handle, Arc::new(session));
        handle
    }

    fn misconfigured_directory(&self, why: &str) -> Outcome {
        if self.misconfigured_log.allow() {
            tracing::error!(problem = %why, "no directory for this policy's first factor or user-name mapping: check [directories] and the policy's directory key");
        }
        reject(RejectReason::Misconfigured, MSG_MISCONFIGURED)
    }

    /// A directory that gave no verdict. A first factor never fails open.
    fn directory_failed(&self, e: FirstFactorError) -> Outcome {
        match e {
            FirstFactorError::Outage(why) => {
                if self.outage_log.allow() {
                    warn!(problem = %why, "the directory is unavailable: rejecting (a first factor never fails open)");
                }
                reject(RejectReason::Unavailable, MSG_UNAVAILABLE)
            }
            FirstFactorError::Misconfigured(why) => {
                if self.misconfigured_log.allow() {
                    tracing::error!(problem = %why, "directory misconfiguration or protocol error: check [directories] (rejecting)");
                }
                reject(RejectReason::Misconfigured, MSG_MISCONFIGURED)
            }
            FirstFactorError::Overloaded(why) => {
                if self.overload_log.allow() {
                    warn!(problem = %why, "overloaded: no free directory connection in time (rejecting; at most one such line per second)");
                }
                reject(RejectReason::Overloaded, MSG_OVERLOADED)
            }
        }
    }

    async fn continue_step(
        &self,
        login: &mut Login<'_>,
        step: Step,
        expires: SystemTime,
    ) -> Outcome {
        let typed = classify(&login.policy, login.req.secret.as_ref());
        match step {
            Step::Menu => match typed {
                Typed::Nothing | Typed::Push => self.push(login, false).await,
                Typed::Sms => self.send_code(login, Channel::Sms, false).await,
                Typed::Voice => self.send_code(login, Channel::Voice, false).await,
                Typed::Reset => self.reset_start(login),
                Typed::Code(code) => self.typed_code(login, code, Factor::Code, false).await,
            },
            Step::NextCode { first_code, pin } => {
                login.factor = if pin.is_some() {
                    Factor::PinCode
                } else {
                    Factor::Code
                };
                match typed {
                    Typed::Code(next) if is_code(&next) => {
                        self.check_code(login, first_code, Some(next), pin, false)
                            .await
                    }
                    _ => reject(RejectReason::BadInput, MSG_CODE_FORMAT),
                }
            }
            Step::SentCode { voice } => {
                let factor = if voice { Factor::Voice } else { Factor::Sms };
                match typed {
                    Typed::Code(code) => self.typed_code(login, code, factor, true).await,
                    _ => reject(RejectReason::BadInput, MSG_CODE_FORMAT),
                }
            }
            Step::Push {
                transaction_id,
                number,
            } => match typed {
                // "Approve on your phone, or type a code": a code here is checked instead.
                Typed::Code(code) => self.typed_code(login, code, Factor::Code, false).await,
                _ => {
                    self.continue_push(login, transaction_id, number, expires)
                        .await
                }
            },
            // Answered in `decide` for policies with a first factor; here the client's policy
            // changed mid-login.
            Step::Upstream => {
                self.bad_state(&"an upstream step for a policy without a first factor")
            }
            Step::Enroll(step) => self.continue_enrollment(login, step).await,
            Step::ResetCode => self.continue_reset(login),
            Step::NewPin => self.continue_pin_change(login, None).await,
            Step::ConfirmPin { digest } => self.continue_pin_change(login, Some(digest)).await,
        }
    }

    /// A code typed in a later round; `delivered` when it answers an SMS/voice code we sent.
    async fn typed_code(
        &self,
        login: &mut Login<'_>,
        code: Secret,
        factor: Factor,
        delivered: bool,
    ) -> Outcome {
        if !is_code(&code) {
            return reject(RejectReason::BadInput, MSG_CODE_FORMAT);
        }
        login.factor = factor;
        login.delivered_code = delivered;
        self.check_code(login, code, None, None, false).await
    }

    /// Verifies a code; 604A turns into a Challenge for the next code.
    async fn check_code(
        &self,
        login: &mut Login<'_>,
        code: Secret,
        next_code: Option<Secret>,
        pin: Option<Secret>,
        first_round: bool,
    ) -> Outcome {
        if let Err(refused) = self.admit(Limit::Code, &login.user_key).await {
            return refused;
        }
        let kind = if login.delivered_code {
            CodeKind::Delivered
        } else if login.policy.otp_operation == OtpOperation::CheckOtp {
            CodeKind::LoginBareCheck
        } else {
            CodeKind::Login
        };
        let check = CodeCheck {
            user: login.vip_user.clone(),
            code,
            next_code,
            kind,
            pin,
            auth_level: login.policy.auth_level,
        };
        let (request_id, result) = self.backend.verify_code(&check).await;
        login.note(request_id);
        match result {
            Ok(v) if v.pin_expired && login.policy.change_expired_pin => {
                self.pin_change_start(login)
            }
            Ok(v) => {
                if check.next_code.is_some() {
                    // Two consecutive codes resynchronised the token (a reset, or VIP's
                    // out-of-sync answer).
                    let shown = v.credential_id.clone().unwrap_or_default();
                    self.credential_changed(login, "credential_reset", "token", &shown);
                }
                login.accept(v)
            }
            Err(BackendError::Refused {
                refusal: Refusal::OutOfSync,
                status,
                ..
            }) if check.next_code.is_none() => {
                login.status = Some(status);
                let step = Step::NextCode {
                    first_code: check.code,
                    pin: check.pin,
                };
                self.challenge(login, &step, self.cfg.state_ttl, MSG_NEXT_CODE, false)
            }
            Err(e) => self.failed(login, e, first_round).await,
        }
    }

    /// Sends a push, or joins the one already pending for this user at this client.
    async fn push(&self, login: &mut Login<'_>, first_round: bool) -> Outcome {
        let req = login.req;
        let policy = login.policy.clone();
        login.factor = Factor::Push;
        let challenge_mode = policy.push_mode == PushMode::Challenge;
        let start = PushStart {
            user: login.vip_user.clone(),
            title: policy.push_title.clone(),
            text: policy.push_text.clone(),
            profile: req
                .client
                .remote
                .clone()
                .or_else(|| Some(req.client.name.clone())),
            timeout: policy.push_timeout,
            // The number can only be shown when the answer comes back as a Challenge.
            number_challenge: login.push_offers_number(),
            auth_level: policy.auth_level,
        };
        // Only the same login session joins a pending push (a NAS retrying, a second round of
        // one PAM conversation); any other login of the user is its own push, throttled.
        let key = match &req.client.session {
            Some(session) => format!(
                "{}\u{0}{}\u{0}{}",
                login.user_key, login.client_key, session
            ),
            None => format!(
                "{}\u{0}{}\u{0}#{}",
                login.user_key, login.client_key, login.id
            ),
        };
        // With a shared store: a blocking push of a known login session is claimed there, so
        // the same session's request on another instance (a NAS failing over) joins it
        // instead of sending a second push; a new push is counted there first (the board's
        // own check is synchronous); a request that joins counts for nothing.
        let shared = match (self.store.get(), &req.client.session) {
            (Some(store), Some(_)) if !challenge_mode => Some(store.clone()),
            _ => None,
        };
        let mut counted = false;
        let mut adopted = None;
        if let Some(store) = &shared {
            if !self.pushes.is_pending(&key) {
                match self.claim_push(store, &key, login).await {
                    Ok(Some(join)) => adopted = Some(join),
                    Ok(None) => counted = true,
                    Err(refused) => return refused,
                }
            }
        } else if self.store.get().is_some() && !self.pushes.is_pending(&key) {
            if let Err(refused) = self.admit(Limit::Push, &login.user_key).await {
                return refused;
            }
            counted = true;
        }
        let join = match adopted {
            Some(join) => join,
            None => self.pushes.join_or_start(&key, start, !challenge_mode, || {
                counted || self.throttles.allow(Limit::Push, &login.user_key)
            }),
        };
        let joined = match join {
            Join::Joined(j) => j,
            Join::Refused => return self.throttled(Limit::Push),
            Join::Crowded => {
                if self.overload_log.allow() {
                    warn!("too many requests of one login session waiting on its push; refusing the newest (at most one such line per second)");
                }
                return reject(RejectReason::Throttled, MSG_THROTTLED);
            }
        };
        if let Some(store) = &shared {
            if joined.started {
                publish_push(
                    store.clone(),
                    key.clone(),
                    joined.rx.clone(),
                    SystemTime::now() + policy.push_timeout,
                );
            } else if counted {
                // Claimed, but a push of this session started here meanwhile: it is joined.
                store.push_unclaim(&key).await;
            }
        }
        let counter = if joined.started {
            &self.stats.pushes_started
        } else {
            &self.stats.pushes_joined
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + policy.push_timeout;
        let wait_for_final = !challenge_mode;
        let phase = wait_phase(joined.rx.clone(), deadline, wait_for_final).await;
        login.note(joined.request_id());
        match phase {
            Some(Phase::Done(state)) => {
                let state = match (&shared, joined.transaction_id()) {
                    (Some(store), Some(txn)) if !joined.started => {
                        self.shared_push_end(store, &key, &txn, state).await
                    }
                    _ => state,
                };
                self.push_result(login, state)
            }
            Some(Phase::StartFailed(request_id, e)) => {
                login.note(request_id);
                self.failed(login, e, first_round).await
            }
            Some(Phase::Sent {
                transaction_id,
                number,
            }) => {
                let prompt = push_prompt(number.as_deref(), false);
                let step = Step::Push {
                    transaction_id,
                    number,
                };
                // The State outlives the push by a little, so a late Enter still gets an answer.
                let ttl = policy.push_timeout + Duration::from_secs(30);
                self.challenge(login, &step, ttl, &prompt, false)
            }
            Some(Phase::Starting) | None => reject(RejectReason::PushTimeout, MSG_PUSH_TIMEOUT),
        }
    }

    /// Claims a blocking push of `key`'s login session in the shared store: `Ok(None)` when
    /// this instance sends it (counted against the shared push limit), `Ok(Some)` when it
    /// joins the push another instance sent, `Err` the Outcome of a refusal.
    async fn claim_push(
        &self,
        store: &Arc<SharedStore>,
        key: &str,
        login: &mut Login<'_>,
    ) -> Result<Option<Join>, Outcome> {
        let give_up = Instant::now() + PUSH_CLAIM_WAIT;
        loop {
            match store.push_claim(key, PUSH_CLAIM_HOLD).await {
                Err(Refused) => return Err(self.store_refused()),
                Ok(PushClaim::Mine) => {
                    if let Err(refused) = self.admit(Limit::Push, &login.user_key).await {
                        store.push_unclaim(key).await;
                        return Err(refused);
                    }
                    return Ok(None);
                }
                Ok(PushClaim::Sent {
                    transaction_id,
                    deadline,
                }) => {
                    let left = deadline
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    info!(
                        transaction = %transaction_id,
                        "joining the push another instance sent for this login session"
                    );
                    return Ok(Some(self.pushes.adopt(
                        key,
                        &transaction_id,
                        Instant::now() + left,
                    )));
                }
                // Another instance is sending it: its transaction id comes in a moment.
                Ok(PushClaim::Starting) if Instant::now() < give_up => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(PushClaim::Starting) => {
                    return Err(reject(RejectReason::PushTimeout, MSG_PUSH_TIMEOUT))
                }
            }
        }
    }

    /// The end of a push another instance sent, as this instance heard it: a final state is
    /// told to the others; "not found" (VIP told the other instance) is replaced by what the
    /// other instance heard, if it says so within [`PUSH_OUTCOME_WAIT`].
    async fn shared_push_end(
        &self,
        store: &Arc<SharedStore>,
        key: &str,
        transaction_id: &str,
        state: PushState,
    ) -> PushState {
        if let Some(word) = push_outcome_word(&state) {
            store.push_finished(key, transaction_id, word).await;
            return state;
        }
        let give_up = Instant::now() + PUSH_OUTCOME_WAIT;
        loop {
            if let Some(told) = store
                .push_outcome(key, transaction_id)
                .await
                .and_then(|w| push_state_of(&w))
            {
                info!(transaction = %transaction_id, "the other instance heard how the push ended");
                return told;
            }
            if Instant::now() >= give_up {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The next round of a challenge-mode push: ask VIP (whichever instance serves the round),
    /// waiting a little for the phone when it has not answered yet.
    async fn continue_push(
        &self,
        login: &mut Login<'_>,
        transaction_id: String,
        number: Option<String>,
        expires: SystemTime,
    ) -> Outcome {
        login.factor = Factor::Push;
        let remaining = expires
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let wait_until = Instant::now()
            + (self.cfg.poll_interval * 2)
                .min(MAX_ROUND_WAIT)
                .min(remaining);
        let state = loop {
            if let Some(done) = self.pushes.finished(&transaction_id) {
                break done;
            }
            let ids = [transaction_id.clone()];
            let (request_id, result) = self.backend.poll_pushes(&ids).await;
            login.note(request_id);
            let state = match result {
                Ok(states) => states
                    .into_iter()
                    .find(|(t, _)| transaction_key(t) == transaction_key(&transaction_id))
                    .map(|(_, s)| s)
                    .unwrap_or_else(|| PushState::Failed("not in the poll answer".into())),
                // Never fail open in the middle of a push.
                Err(e) => return self.failed(login, e, false).await,
            };
            if state.is_final() {
                self.pushes.remember(&transaction_id, state.clone());
                break state;
            }
            if Instant::now() + self.cfg.poll_interval > wait_until {
                break state;
            }
            tokio::time::sleep(self.cfg.poll_interval).await;
        };
        if state == PushState::Pending {
            if remaining.is_zero() {
                return reject(RejectReason::PushTimeout, MSG_PUSH_TIMEOUT);
            }
            let prompt = push_prompt(number.as_deref(), true);
            let step = Step::Push {
                transaction_id,
                number,
            };
            return self.challenge(login, &step, remaining, &prompt, false);
        }
        self.push_result(login, state)
    }

    /// Sends a code by SMS or voice to the user's registered number, then asks for it.
    async fn send_code(
        &self,
        login: &mut Login<'_>,
        channel: Channel,
        first_round: bool,
    ) -> Outcome {
        login.factor = if channel == Channel::Sms {
            Factor::Sms
        } else {
            Factor::Voice
        };
        let how = if channel == Channel::Sms {
            "by text message"
        } else {
            "by phone call"
        };
        let step = Step::SentCode {
            voice: channel == Channel::Voice,
        };
        if !self.backend.info().phone_codes {
            // The service sends no codes: the same answer for everyone, known or not.
            return reject(RejectReason::NoCredential, MSG_NO_PHONE);
        }
        let factors = match self.user_factors(login).await {
            Ok(f) => f,
            // As in the menu: an unknown user is told what anyone would be, and fails on the
            // code with the words of a wrong code.
            Err(BackendError::Refused {
                refusal: Refusal::UnknownUser,
                status,
                ..
            }) if !login.policy.helpful_messages => {
                login.status = Some(status);
                let prompt = format!(
                    "A security code was sent {how} to {}.\nEnter it:",
                    login.phone("")
                );
                return self.challenge(login, &step, self.cfg.state_ttl, &prompt, false);
            }
            Err(e) => return self.failed(login, e, first_round).await,
        };
        let numbers = if channel == Channel::Sms {
            &factors.sms_numbers
        } else {
            &factors.voice_numbers
        };
        let Some(number) = numbers.first() else {
            return reject(RejectReason::NoCredential, MSG_NO_PHONE);
        };
        // Sends cost money and annoy: they share the per-user limit with pushes.
        if let Err(refused) = self.admit(Limit::Push, &login.user_key).await {
            return refused;
        }
        let (request_id, result) = self
            .backend
            .send_code(&login.vip_user, channel, number)
            .await;
        login.note(request_id);
        if let Err(e) = result {
            return self.failed(login, e, first_round).await;
        }
        let prompt = format!(
            "A security code was sent {how} to {}.\nEnter it:",
            login.phone(number)
        );
        self.challenge(login, &step, self.cfg.state_ttl, &prompt, false)
    }

    /// Offers the factors the user has.
    async fn menu(&self, login: &mut Login<'_>, first_round: bool) -> Outcome {
        let factors = match self.user_factors(login).await {
            Ok(f) => f,
            // An unknown user gets the menu anyone would (no secret was checked yet), and fails
            // later with the words of a wrong code: the menu is no account oracle.
            Err(BackendError::Refused {
                refusal: Refusal::UnknownUser,
                status,
                ..
            }) if !login.policy.helpful_messages => {
                login.status = Some(status);
                // What a user of this service could have (no SMS or voice where it sends none).
                let phones = || {
                    if self.backend.info().phone_codes {
                        vec![String::new()]
                    } else {
                        Vec::new()
                    }
                };
                UserFactors {
                    push: true,
                    code: true,
                    sms_numbers: phones(),
                    voice_numbers: phones(),
                }
            }
            Err(e) => return self.failed(login, e, first_round).await,
        };
        let mut lines = Vec::new();
        if factors.push {
            lines
                .push("  push  - approve a request on your phone (or just press Enter)".to_owned());
        }
        if let Some(n) = factors.sms_numbers.first() {
            lines.push(format!(
                "  sms   - get a code by text message to {}",
                login.phone(n)
            ));
        }
        if let Some(n) = factors.voice_numbers.first() {
            lines.push(format!(
                "  voice - get a code by phone call to {}",
                login.phone(n)
            ));
        }
        let prompt = match (lines.is_empty(), factors.code) {
            (true, false) => return reject(RejectReason::NoCredential, MSG_NO_FACTOR),
            (true, true) => "Enter your security code:".to_owned(),
            (false, _) => format!(
                "Choose a second factor:\n{}\nOr type a security code:",
                lines.join("\n")
            ),
        };
        self.challenge(login, &Step::Menu, self.cfg.state_ttl, &prompt, false)
    }

    async fn user_factors(&self, login: &mut Login<'_>) -> Result<UserFactors, BackendError> {
        let (request_id, result) = self.factors.get(&self.backend, &login.vip_user).await;
        login.note(request_id);
        result
    }

    fn challenge(
        &self,
        login: &mut Login<'_>,
        step: &Step,
        ttl: Duration,
        prompt: &str,
        echo: bool,
    ) -> Outcome {
        if login.password_checked && login.session.is_none() {
            // A later round must know the password passed, and who the user is at VIP.
            let session = FirstFactorSession {
                login_name: String::new(),
                vip_user: login.vip_user.clone(),
                policy: login.policy.clone(),
                reply_attributes: login.reply_attributes.clone(),
                upstream_state: None,
            };
            login.session = Some(self.new_session(session));
        }
        match self.sealer.seal_with_session(
            &login.req.user,
            &login.client_key,
            step,
            ttl,
            login.session.as_ref(),
        ) {
            Ok(state) => Outcome::Challenge(Challenge {
                prompt: prompt.to_owned(),
                echo,
                state,
            }),
            Err(e) => {
                warn!(problem = %e, "cannot seal a State");
                reject(RejectReason::Misconfigured, MSG_MISCONFIGURED)
            }
        }
    }

    /// Maps a failed call to an Outcome. Only an outage, on the first round, under a policy
    /// that fails open, while the backend confirms the service is down, lets anyone in.
    async fn failed(&self, login: &mut Login<'_>, e: BackendError, first_round: bool) -> Outcome {
        match e {
            BackendError::Refused {
                refusal,
                status,
                message,
            } => {
                login.status = Some(status.clone());
                let (reason, msg) = match refusal {
                    Refusal::BadCode | Refusal::BadPin | Refusal::OutOfSync => {
                        (RejectReason::BadCode, MSG_BAD_CODE)
                    }
                    // The same words as a wrong code unless the site wants helpful messages:
                    // a stranger must not learn who has an account (the log says which).
                    Refusal::UnknownUser if login.policy.helpful_messages => {
                        (RejectReason::UnknownUser, MSG_NOT_ENROLLED)
                    }
                    Refusal::UnknownUser => (RejectReason::UnknownUser, MSG_BAD_CODE),
                    Refusal::UserLocked => (RejectReason::UserLocked, MSG_USER_LOCKED),
                    Refusal::CredentialLocked => {
                        (RejectReason::CredentialLocked, MSG_CREDENTIAL_LOCKED)
                    }
                    Refusal::NoCredential if login.factor == Factor::Push => {
                        (RejectReason::NoCredential, MSG_NO_PUSH)
                    }
                    Refusal::NoCredential => (RejectReason::NoCredential, MSG_NO_FACTOR),
                    Refusal::NoPushDevice => {
                        if let Some(suppressed) = self.refusal_log.pass() {
                            warn!(vip_status = %status, problem = %message, suppressed, "no device of the user's could receive the push");
                        }
                        (RejectReason::NoCredential, MSG_NO_PUSH_DEVICE)
                    }
                    Refusal::InvalidPhone => {
                        if let Some(suppressed) = self.refusal_log.pass() {
                            warn!(vip_status = %status, vip_message = %message, suppressed, "VIP says the user's phone number is invalid (6015): fix it in VIP Manager");
                        }
                        (RejectReason::NoCredential, MSG_BAD_PHONE)
                    }
                    Refusal::AlreadyInUse | Refusal::Misconfigured => {
                        if self.misconfigured_log.allow() {
                            let service = self.backend.info();
                            tracing::error!(vip_status = %status, vip_message = %message, "{} refused our account, certificate or request, or answered a status we do not know: check {} (never failing open for this)", service.name, service.check);
                        }
                        (RejectReason::Misconfigured, MSG_MISCONFIGURED)
                    }
                };
                reject(reason, msg)
            }
            BackendError::Outage(why) => {
                if first_round && login.policy.fail_mode == FailMode::Open {
                    if self.backend.outage_confirmed().await {
                        self.stats.fail_opens.fetch_add(1, Ordering::Relaxed);
                        if let Some(m) = self.metrics.get() {
                            m.fail_open();
                        }
                        warn!(
                            problem = %why,
                            "FAIL-OPEN: {} is down (health check agrees) and this policy fails open; letting the login through WITHOUT a second factor",
                            self.backend.info().name
                        );
                        return Outcome::Accept(Accept {
                            factor: Factor::None,
                            credential_id: None,
                            credential_type: None,
                            authn_id: None,
                            failed_open: true,
                            reply_attributes: login.reply_attributes.to_vec(),
                        });
                    }
                    if self.outage_log.allow() {
                        let name = self.backend.info().name;
                        warn!(problem = %why, "{name} call failed as an outage but the health check says {name} is up: failing closed for this login");
                    }
                } else if self.outage_log.allow() {
                    warn!(problem = %why, "{} is unavailable; failing closed", self.backend.info().name);
                }
                reject(RejectReason::Unavailable, MSG_UNAVAILABLE)
            }
            BackendError::Misconfigured(why) => {
                if self.misconfigured_log.allow() {
                    let service = self.backend.info();
                    tracing::error!(problem = %why, "{} misconfiguration or protocol error: check {} (never failing open for this)", service.name, service.check);
                }
                reject(RejectReason::Misconfigured, MSG_MISCONFIGURED)
            }
            BackendError::Overloaded(why) => {
                if self.overload_log.allow() {
                    let service = self.backend.info();
                    warn!(problem = %why, "overloaded: no free {name} connection slot in time; raise {section}.max_in_flight or check {name}'s latency (never failing open for this; at most one such line per second)", name = service.name, section = service.section);
                }
                reject(RejectReason::Overloaded, MSG_OVERLOADED)
            }
        }
    }

    /// Takes one token of `limit` for `key`: here first, then (with `[cluster]`) in the shared
    /// store. `Err` is the Outcome of a refusal.
    async fn admit(&self, limit: Limit, key: &str) -> Result<(), Outcome> {
        if !self.throttles.allow(limit, key) {
            return Err(self.throttled(limit));
        }
        // requests_per_client guards each instance's own capacity against a flooding NAS: it
        // stays per instance (sharing it would cost a Redis round trip on every request,
        // throttled ones included, and protect nothing a user could abuse). The per-user
        // limits are what an attacker spreads over instances: those are shared.
        let (Some(store), Some(quota), false) = (
            self.store.get(),
            self.cfg.throttle.quota(limit),
            limit == Limit::Client,
        ) else {
            return Ok(());
        };
        match store
            .allow(limit.as_str(), &key.to_lowercase(), quota)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.throttled(limit)),
            Err(Refused) => Err(self.store_refused()),
        }
    }

    /// A push's final state as the login's outcome; a poll refused as our mistake is logged
    /// here, at most once a second.
    fn push_result(&self, login: &Login<'_>, state: PushState) -> Outcome {
        if let PushState::Misconfigured(why) = &state {
            if self.misconfigured_log.allow() {
                let service = self.backend.info();
                tracing::error!(problem = %why, "{} misconfiguration or protocol error while polling a push: check {} (never failing open for this)", service.name, service.check);
            }
        }
        login.push_result(state)
    }

    /// The shared store could not answer and `cluster.when_unavailable = "reject"` (the store
    /// logged why).
    fn store_refused(&self) -> Outcome {
        reject(RejectReason::Unavailable, MSG_UNAVAILABLE)
    }

    /// Shares spent States and throttles with other instances through `store` from now on
    /// (the first call wins).
    pub fn set_store(&self, store: Arc<SharedStore>) {
        let _ = self.store.set(store);
    }

    /// The shared store, when `[cluster]` configures one.
    pub fn store(&self) -> Option<&Arc<SharedStore>> {
        self.store.get()
    }

    fn throttled(&self, limit: Limit) -> Outcome {
        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = self.metrics.get() {
            m.throttle(limit.as_str());
        }
        if let Some(suppressed) = self.throttled_log.pass() {
            warn!(limit = limit.as_str(), suppressed, "throttled");
        }
        reject(RejectReason::Throttled, MSG_THROTTLED)
    }
}

impl Authenticate for Engine {
    fn authenticate(&self, req: AuthRequest) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        Box::pin(self.run(req))
    }

    fn state_is_live(&self, state: &[u8]) -> bool {
        self.sealer.is_live(state)
    }

    fn enrollment_offer(
        &self,
        req: AuthRequest,
    ) -> Pin<Box<dyn Future<Output = Option<Outcome>> + Send + '_>> {
        Box::pin(self.run_round(req, true))
    }

    fn shared_store(&self) -> Option<Arc<SharedStore>> {
        self.store.get().cloned()
    }
}

/// One round's bookkeeping for the final log event.
struct Login<'a> {
    req: &'a AuthRequest,
    id: &'a str,
    /// The canonical user: trimmed (by `run`) and lower-cased. Every per-user key uses it.
    user_key: String,
    client_key: String,
    factor: Factor,
    status: Option<String>,
    request_ids: Vec<String>,
    /// The code being checked answers an SMS/voice code the service sent.
    delivered_code: bool,
    /// The user at VIP: the name as typed unless the policy maps it (template, directory
    /// attribute). Every VIP call and per-user key uses it.
    vip_user: String,
    /// The policy in force: the request's, or the one a directory group chose.
    policy: Arc<LoginPolicy>,
    /// The directory password was checked (in this round or an earlier one).
    password_checked: bool,
    /// This login's first-factor session, once a State must carry it.
    session: Option<SessionHandle>,
    /// The upstream RADIUS server's reply attributes, for the Access-Accept.
    reply_attributes: Arc<Vec<RawAttribute>>,
    /// For the log line: `ldap` / `radius` when a first factor ran, and how it ended.
    first_factor: &'static str,
    first_factor_result: &'static str,
}

impl<'a> Login<'a> {
    fn new(req: &'a AuthRequest, id: &'a str) -> Self {
        Login {
            req,
            id,
            user_key: req.user.to_lowercase(),
            client_key: format!("{}/{}", req.client.front_door.as_str(), req.client.name),
            factor: Factor::None,
            status: None,
            request_ids: Vec::new(),
            delivered_code: false,
            vip_user: req.user.clone(),
            policy: req.policy.clone(),
            password_checked: false,
            session: None,
            reply_attributes: Arc::new(Vec::new()),
            first_factor: "",
            first_factor_result: "",
        }
    }

    /// Uses `vip_user` for VIP and every per-user key from now on.
    fn set_vip_user(&mut self, vip_user: String) -> Result<(), &'static str> {
        let vip_user = vip_user.trim().to_owned();
        check_user_name(&vip_user)?;
        self.user_key = vip_user.to_lowercase();
        self.vip_user = vip_user;
        Ok(())
    }

    /// Whether this login may be offered enrollment (or a token reset): the policy allows it
    /// and the first factor passed in this login, here or in the PAM stack (pam_unix).
    fn may_enroll(&self) -> bool {
        self.policy.enrollment == Enrollment::AfterFirstFactor
            && (self.password_checked
                || (self.req.client.front_door == FrontDoor::Pam
                    && self.req.stack_password_checked))
    }

    /// What checked the first factor, for the audit line.
    fn first_factor_source(&self) -> &'static str {
        if self.password_checked {
            self.first_factor
        } else if self.req.client.front_door == FrontDoor::Pam && self.req.stack_password_checked {
            "pam_unix"
        } else {
            ""
        }
    }

    /// Continues the first-factor session `handle` of an earlier round.
    fn adopt(&mut self, handle: SessionHandle, session: &FirstFactorSession) {
        self.session = Some(handle);
        self.first_factor = match session.policy.first_factor {
            FirstFactorKind::Ldap => "ldap",
            FirstFactorKind::Radius => "radius",
            FirstFactorKind::None => "",
        };
        if session.upstream_state.is_none() {
            self.password_checked = true;
            self.first_factor_result = "passed";
            self.user_key = session.vip_user.to_lowercase();
            self.vip_user = session.vip_user.clone();
            self.policy = session.policy.clone();
            self.reply_attributes = session.reply_attributes.clone();
        }
    }

    /// How a phone number is shown before any secret was checked: its last digits only where
    /// the policy wants helpful messages.
    fn phone(&self, number: &str) -> String {
        if self.policy.helpful_messages && !number.is_empty() {
            mask(number)
        } else {
            "your registered phone".to_owned()
        }
    }

    /// Whether this login's pushes ask for a number challenge (only where the number can be
    /// shown: a challenge round).
    fn push_offers_number(&self) -> bool {
        self.policy.number_challenge && self.policy.push_mode == PushMode::Challenge
    }

    fn note(&mut self, request_id: Option<String>) {
        self.request_ids.extend(request_id);
    }

    fn accept(&self, v: Verified) -> Outcome {
        if v.pin_expired {
            warn!("VIP accepted the PIN but it has expired: the user must change it");
            return reject(RejectReason::PinExpired, MSG_PIN_EXPIRED);
        }
        Outcome::Accept(Accept {
            factor: self.factor,
            credential_id: v.credential_id,
            credential_type: v.credential_type,
            authn_id: v.authn_id,
            failed_open: false,
            reply_attributes: self.reply_attributes.to_vec(),
        })
    }

    fn push_result(&self, state: PushState) -> Outcome {
        match state {
            PushState::Approved(v) => self.accept(v),
            PushState::Denied => reject(RejectReason::PushDenied, MSG_PUSH_DENIED),
            PushState::Expired | PushState::Pending => {
                reject(RejectReason::PushTimeout, MSG_PUSH_TIMEOUT)
            }
            PushState::NumberChallengeFailed => {
                reject(RejectReason::NumberChallengeFailed, MSG_NUMBER_FAILED)
            }
            PushState::RefusedAsAsked if !self.push_offers_number() => {
                tracing::error!(
                    "VIP could not run the push as asked (7008): the VIP account most likely requires Number Challenge, which a push without a number cannot satisfy; set push_mode = \"challenge\" (and number_challenge = true) for this RADIUS client or PAM service so the number is shown in the Access-Challenge / PAM conversation"
                );
                reject(RejectReason::Misconfigured, MSG_MISCONFIGURED)
            }
            PushState::RefusedAsAsked => {
                warn!("VIP could not run the number-challenge push (7008): the phone's VIP Access may not support number challenge");
                reject(RejectReason::PushDenied, MSG_PUSH_FAILED)
            }
            PushState::Failed(why) => {
                warn!(problem = %why, "push failed");
                reject(RejectReason::PushDenied, MSG_PUSH_FAILED)
            }
            // Logged by the engine (rate-limited) before it gets here.
            PushState::Misconfigured(_) => reject(RejectReason::Misconfigured, MSG_MISCONFIGURED),
        }
    }
}

/// Waits until the push leaves `Starting` (or, with `until_final`, reaches a final phase), or
/// `deadline`. `None` when the deadline passed first.
async fn wait_phase(
    mut rx: watch::Receiver<Phase>,
    deadline: Instant,
    until_final: bool,
) -> Option<Phase> {
    let done = |p: &Phase| match p {
        Phase::Starting => false,
        Phase::Sent { .. } => !until_final,
        Phase::Done(_) | Phase::StartFailed(..) => true,
    };
    match tokio::time::timeout_at(deadline, rx.wait_for(done)).await {
        Ok(Ok(p)) => Some(p.clone()),
        // The sender went away without a final phase: treat as timed out.
        Ok(Err(_)) | Err(_) => None,
    }
}

/// What the user typed, read per policy.
enum Typed {
    Nothing,
    Push,
    Sms,
    Voice,
    /// A reset keyword (only where the policy has enrollment).
    Reset,
    Code(Secret),
}

fn classify(policy: &LoginPolicy, secret: Option<&Secret>) -> Typed {
    let Some(s) = secret else {
        return Typed::Nothing;
    };
    let t = s.expose().trim();
    if t.is_empty() {
        return Typed::Nothing;
    }
    let is = |words: &[String]| words.iter().any(|w| w.trim().eq_ignore_ascii_case(t));
    if is(&policy.push_keywords) {
        Typed::Push
    } else if is(&policy.sms_keywords) {
        Typed::Sms
    } else if is(&policy.voice_keywords) {
        Typed::Voice
    } else if policy.enrollment != Enrollment::Off && is(&policy.reset_keywords) {
        Typed::Reset
    } else if policy.mode == PasswordMode::PinOtp {
        // A PIN may contain spaces; only the ends are trimmed.
        Typed::Code(Secret::new(t))
    } else {
        // People type "123 456" as printed on their token.
        Typed::Code(Secret::new(
            t.chars().filter(|c| !c.is_whitespace()).collect::<String>(),
        ))
    }
}

/// With a first factor: the password and what was typed for the second factor (`None`: ask
/// for it). `Err` is the message for input that fits no format.
fn split_password(
    policy: &LoginPolicy,
    typed: &Secret,
) -> Result<(Secret, Option<Secret>), &'static str> {
    let t = typed.expose();
    if policy.mode == PasswordMode::Challenge {
        return Ok((typed.clone(), None));
    }
    match policy.password_format {
        PasswordFormat::Delimited => {
            // Split on the last delimiter, and only when what follows reads as a second
            // factor: a password may contain the delimiter itself.
            if let Some((password, second)) = t.rsplit_once(policy.delimiter.as_str()) {
                let second = Secret::new(second);
                let reads = match classify(policy, Some(&second)) {
                    Typed::Code(c) => is_code(&c),
                    Typed::Push | Typed::Sms | Typed::Voice | Typed::Reset => true,
                    Typed::Nothing => false,
                };
                if reads && !password.is_empty() {
                    return Ok((Secret::new(password), Some(second)));
                }
            }
            Ok((typed.clone(), None))
        }
        PasswordFormat::Appended => {
            let split = t.len().checked_sub(policy.code_length).filter(|&n| n > 0);
            match split.filter(|&n| t.is_char_boundary(n)) {
                Some(n) => {
                    let (password, code) = t.split_at(n);
                    let code = Secret::new(code);
                    if is_code(&code) {
                        Ok((Secret::new(password), Some(code)))
                    } else {
                        Err(MSG_APPENDED_FORMAT)
                    }
                }
                None => Err(MSG_APPENDED_FORMAT),
            }
        }
    }
}

/// The lockout guard's key for a login name: `CORP\\alice`, `alice@corp.example` and `Alice`
/// are one account to Active Directory (and to an NPS in front of it).
fn guard_key(name: &str) -> String {
    let name = name.rsplit_once('\\').map_or(name, |(_, n)| n);
    let name = name.rsplit_once('@').map_or(name, |(n, _)| n);
    name.to_lowercase()
}

/// VIP security codes: 6–10 of `[0-9A-Za-z]`.
fn is_code(code: &Secret) -> bool {
    let c = code.expose();
    (6..=10).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `PIN || code` → (PIN, code); the PIN must be 4–128 characters.
fn split_pin(typed: &Secret, code_length: usize) -> Option<(Secret, Secret)> {
    let t = typed.expose();
    let split = t.len().checked_sub(code_length)?;
    if !t.is_char_boundary(split) {
        return None;
    }
    let (pin, code) = t.split_at(split);
    let code = Secret::new(code);
    let pin_chars = pin.chars().count();
    ((4..=128).contains(&pin_chars) && is_code(&code)).then(|| (Secret::new(pin), code))
}

fn check_user_name(user: &str) -> Result<(), &'static str> {
    let n = user.chars().count();
    if n == 0 || n > 128 || user.chars().any(char::is_control) {
        return Err("The user name is not valid.");
    }
    Ok(())
}

/// `+15551234567` → `*******4567`.
fn mask(number: &str) -> String {
    let n = number.chars().count();
    number
        .chars()
        .enumerate()
        .map(|(i, c)| if i + 4 < n { '*' } else { c })
        .collect()
}

fn push_prompt(number: Option<&str>, again: bool) -> String {
    let lead = if again { "Not approved yet. " } else { "" };
    match number {
        Some(n) => format!(
            "{lead}A sign-in request was sent to your phone: enter the number {n} in VIP Access to approve it.\nThen press Enter here:"
        ),
        None => format!(
            "{lead}A sign-in request was sent to your phone. Approve it, then press Enter here (or type a security code):"
        ),
    }
}

fn reject(reason: RejectReason, message: &str) -> Outcome {
    Outcome::Reject(Reject {
        reason,
        message: message.to_owned(),
    })
}

const MSG_BAD_CODE: &str = "Wrong security code. Wait for a new code and try again.";
const MSG_NOT_ENROLLED: &str = "You are not set up for two-factor sign-in. Contact your help desk.";
const MSG_USER_LOCKED: &str =
    "Your two-factor account is locked or disabled. Contact your help desk.";
const MSG_CREDENTIAL_LOCKED: &str =
    "Your security token is locked or disabled. Contact your help desk.";
const MSG_NO_FACTOR: &str = "No device is set up for this kind of sign-in. Contact your help desk.";
const MSG_NO_PUSH: &str =
    "No phone is set up for push sign-in. Type a security code instead, or contact your help desk.";
const MSG_NO_PUSH_DEVICE: &str =
    "No device of yours can receive a push right now. Type a security code instead.";
const MSG_BAD_PHONE: &str =
    "The phone number registered for this is not valid. Type a security code, or contact your help desk.";
const MSG_OVERLOADED: &str = "The sign-in service is busy. Try again in a moment.";
const MSG_PIN_EXPIRED: &str =
    "Your VIP PIN has expired. Change it, or ask your help desk to reset it, then sign in again.";
const MSG_NO_PHONE: &str = "No phone number is registered for that. Type a security code instead.";
const MSG_PUSH_DENIED: &str = "The sign-in request was denied on your phone.";
const MSG_PUSH_TIMEOUT: &str = "The sign-in request was not approved in time. Try again.";
const MSG_PUSH_FAILED: &str =
    "The sign-in request could not be completed. Try again or type a code.";
const MSG_NUMBER_FAILED: &str = "The number entered on your phone did not match. Try again.";
const MSG_THROTTLED: &str = "Too many attempts. Wait a few minutes and try again.";
const MSG_BAD_STATE: &str = "This sign-in has expired or was already used. Start again.";
const MSG_EMPTY: &str = "Enter the security code from your token (or type push).";
const MSG_CODE_FORMAT: &str =
    "That is not a security code: enter the 6-digit code from your token.";
const MSG_PIN_FORMAT: &str = "Enter your PIN followed by the security code from your token.";
const MSG_NEXT_CODE: &str =
    "Your token is out of sync. Wait for the next security code and enter it:";
const MSG_BAD_PASSWORD: &str = "Wrong user name or password.";
const MSG_PASSWORD_EMPTY: &str = "Enter your password.";
const MSG_APPENDED_FORMAT: &str =
    "Enter your password followed by the security code from your token.";
const MSG_NOT_PERMITTED: &str = "You are not allowed to sign in here. Contact your help desk.";
const MSG_UNAVAILABLE: &str = "The two-factor service is unavailable. Try again later.";
const MSG_MISCONFIGURED: &str =
    "Two-factor sign-in is not set up correctly. Contact your help desk.";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy(mode: PasswordMode) -> LoginPolicy {
        LoginPolicy {
            mode,
            ..LoginPolicy::default()
        }
    }

    #[test]
    fn keywords_are_case_insensitive_and_codes_lose_spaces() {
        let p = policy(PasswordMode::Code);
        assert!(matches!(classify(&p, Some(&"PUSH".into())), Typed::Push));
        assert!(matches!(classify(&p, Some(&" Sms ".into())), Typed::Sms));
        assert!(matches!(classify(&p, Some(&"phone".into())), Typed::Voice));
        assert!(matches!(classify(&p, Some(&"".into())), Typed::Nothing));
        assert!(matches!(classify(&p, None), Typed::Nothing));
        match classify(&p, Some(&"123 456".into())) {
            Typed::Code(c) => assert_eq!(c.expose(), "123456"),
            _ => panic!("not a code"),
        }
    }

    #[test]
    fn code_format() {
        for ok in ["123456", "1234567890", "abcDEF"] {
            assert!(is_code(&ok.into()), "{ok}");
        }
        for bad in [
            "12345",
            "12345678901",
            "12345!",
            "\u{8}\n\r\u{7f}INCORRECT",
            "１２３４５６",
        ] {
            assert!(!is_code(&bad.into()), "{bad:?}");
        }
    }

    #[test]
    fn pin_split() {
        let (pin, code) = split_pin(&"1234567890".into(), 6).unwrap();
        assert_eq!((pin.expose(), code.expose()), ("1234", "567890"));
        let (pin, code) = split_pin(&"pässwörd123456".into(), 6).unwrap();
        assert_eq!((pin.expose(), code.expose()), ("pässwörd", "123456"));
        assert!(
            split_pin(&"123123456".into(), 6).is_none(),
            "PIN shorter than 4"
        );
        assert!(split_pin(&"12345".into(), 6).is_none());
        assert!(
            split_pin(&"1234ab!456".into(), 6).is_none(),
            "code part not alphanumeric"
        );
    }

    #[test]
    fn one_account_is_one_guard_key() {
        for spelling in [
            "alice",
            "ALICE",
            "CORP\\alice",
            "alice@corp.example",
            "corp\\Alice@x",
        ] {
            assert_eq!(guard_key(spelling), "alice", "{spelling}");
        }
        assert_ne!(guard_key("alice"), guard_key("alice2"));
    }

    #[test]
    fn passwords_split_on_the_last_delimiter_only_before_a_factor() {
        let p = LoginPolicy::default();
        let split = |typed: &str| {
            let (pw, second) = split_password(&p, &typed.into()).unwrap();
            (
                pw.expose().to_owned(),
                second.map(|s| s.expose().to_owned()),
            )
        };
        assert_eq!(split("pw,123456"), ("pw".into(), Some("123456".into())));
        assert_eq!(split("a,b,push"), ("a,b".into(), Some("push".into())));
        // What follows the last comma is no factor: all of it is the password.
        assert_eq!(split("pa,ss"), ("pa,ss".into(), None));
        assert_eq!(split("pw,"), ("pw,".into(), None));
        assert_eq!(split(",123456"), (",123456".into(), None));
        let appended = LoginPolicy {
            password_format: PasswordFormat::Appended,
            ..LoginPolicy::default()
        };
        let (pw, code) = split_password(&appended, &"pässwörd123456".into()).unwrap();
        assert_eq!(
            (pw.expose(), code.unwrap().expose()),
            ("pässwörd", "123456")
        );
        assert!(
            split_password(&appended, &"123456".into()).is_err(),
            "no password"
        );
        assert!(split_password(&appended, &"pw12345!".into()).is_err());
    }

    #[test]
    fn masks_all_but_the_last_four() {
        assert_eq!(mask("15551234567"), "*******4567");
        assert_eq!(mask("123"), "123");
    }

    #[test]
    fn user_names() {
        assert!(check_user_name("alice").is_ok());
        assert!(check_user_name("Zoë@example.com").is_ok());
        assert!(check_user_name("").is_err());
        assert!(check_user_name("a\nb").is_err());
        assert!(check_user_name(&"x".repeat(129)).is_err());
    }
}
