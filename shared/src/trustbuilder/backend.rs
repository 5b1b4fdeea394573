//! TrustBuilder as the engine's [`Backend`]: the only place where a TrustBuilder status turns
//! into a decision.
//!
//! Transaction ids: checkPushResult needs the login as well as the sessionId, and the engine
//! polls by transaction id alone (possibly on another instance of a cluster, possibly
//! lower-cased: see [`transaction_key`]). So a push's transaction id is
//! `{sessionId}.{login as lower-case hex}`: it survives case folding and needs no local table.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::backend::{
    transaction_key, Answer, Backend, BackendError, BackendInfo, BoxFuture, Channel, CodeCheck,
    PushStart, PushState, PushTicket, Refusal, UserFactors, Verified,
};
use crate::https::health::{HealthMonitor, Probe, ProbeResult};
use crate::https::{FailureClass, Service};
use crate::metrics::Metrics;

use super::client::{TrustBuilderClient, TRUSTBUILDER};
use super::error::TbError;
use super::provisioning::LoginEntry;
use super::rest::RestAnswer;
use super::status::Meaning;

/// Sessions polled at once by one `poll_pushes` (one checkPushResult each).
const POLL_CONCURRENCY: usize = 8;

/// The engine's view of a [`TrustBuilderClient`], with the health monitor that fail-open
/// consults and the login-name → login-id cache of the provisioning look-up.
#[derive(Clone)]
pub struct TrustBuilderBackend {
    client: TrustBuilderClient,
    health: Arc<HealthMonitor>,
    login_ids: moka::future::Cache<String, i64>,
}

impl Probe for TrustBuilderClient {
    fn service(&self) -> &'static Service {
        &TRUSTBUILDER
    }

    fn probe(&self) -> Pin<Box<dyn Future<Output = ProbeResult> + Send + '_>> {
        Box::pin(async move {
            TrustBuilderClient::probe(self)
                .await
                .map_err(|e| (e.class(), e.to_string()))
        })
    }
}

impl TrustBuilderBackend {
    /// Wraps the client and starts its health monitor (every `health_check_interval`).
    pub fn new(client: TrustBuilderClient, health_check_interval: Duration) -> Self {
        let health = HealthMonitor::start(client.clone(), health_check_interval);
        let login_ids = moka::future::Cache::builder()
            .time_to_live(client.user_cache_ttl())
            .max_capacity(100_000)
            .build();
        TrustBuilderBackend {
            client,
            health,
            login_ids,
        }
    }

    pub fn client(&self) -> &TrustBuilderClient {
        &self.client
    }

    pub fn health(&self) -> &HealthMonitor {
        &self.health
    }

    /// Records the client's calls into `metrics` (see [`TrustBuilderClient::set_metrics`]).
    pub fn set_metrics(&self, metrics: Arc<Metrics>) {
        self.client.set_metrics(metrics);
    }

    /// Notes an answer for the health monitor and classes a failure.
    fn seen<T>(&self, r: Result<T, TbError>) -> Result<T, BackendError> {
        match r {
            Ok(v) => {
                self.health.answered();
                Ok(v)
            }
            Err(e) => {
                // Any status (even NOK:srv unknown) is an answer: the service is up.
                if e.status().is_some() {
                    self.health.answered();
                }
                Err(classify(e))
            }
        }
    }

    /// The login's numeric id (loginSearch, exact match), cached for `user_cache_ttl`.
    async fn login_id(&self, user: &str) -> Result<i64, BackendError> {
        let key = user.to_lowercase();
        if let Some(id) = self.login_ids.get(&key).await {
            return Ok(id);
        }
        let found = self.seen(self.client.login_search(user).await)?;
        let entry = pick(&found.logins, user).ok_or_else(|| BackendError::Refused {
            refusal: Refusal::UnknownUser,
            status: "loginSearch: none".into(),
            message: "no such login in this TrustBuilder service".into(),
        })?;
        if entry.attributes.is_blocked() {
            return Err(locked());
        }
        self.login_ids.insert(key, entry.id).await;
        Ok(entry.id)
    }
}

/// The entry for `user` among an exact search's results: the same name (ASCII case aside).
fn pick<'a>(logins: &'a [LoginEntry], user: &str) -> Option<&'a LoginEntry> {
    logins
        .iter()
        .find(|l| l.attributes.login == user)
        .or_else(|| {
            logins
                .iter()
                .find(|l| l.attributes.login.eq_ignore_ascii_case(user))
        })
}

fn locked() -> BackendError {
    BackendError::Refused {
        refusal: Refusal::UserLocked,
        status: "status 1".into(),
        message: "the login is blocked in TrustBuilder".into(),
    }
}

/// A TrustBuilder error in the engine's classes. Statuses that are not a refusal where one was
/// expected (a push status on a code check) are a refusal we cannot name: never a pass, never
/// an outage.
fn classify(e: TbError) -> BackendError {
    let message = e.to_string();
    match e {
        TbError::Rejected { status, .. } => match status.meaning() {
            Meaning::Misconfigured => BackendError::Misconfigured(message),
            Meaning::Refusal(refusal) => BackendError::Refused {
                refusal,
                status: status.to_string(),
                message,
            },
            Meaning::Success
            | Meaning::Pending
            | Meaning::Denied
            | Meaning::Expired
            | Meaning::SessionGone => BackendError::Refused {
                refusal: Refusal::Misconfigured,
                status: status.to_string(),
                message,
            },
        },
        e => match e.class() {
            FailureClass::Outage => BackendError::Outage(message),
            FailureClass::Overload => BackendError::Overloaded(message),
            FailureClass::Misconfigured | FailureClass::Answered => {
                BackendError::Misconfigured(message)
            }
        },
    }
}

fn verified(a: RestAnswer) -> Verified {
    Verified {
        credential_id: a.device.alias,
        credential_type: a.device.kind,
        authn_id: None,
        pin_expired: false,
    }
}

/// `{sessionId}.{hex(login)}`.
pub(crate) fn transaction_id(session_id: &str, user: &str) -> String {
    format!("{session_id}.{}", hex::encode(user.as_bytes()))
}

/// The sessionId and login of a transaction id made by [`transaction_id`].
pub(crate) fn parse_transaction_id(id: &str) -> Option<(&str, String)> {
    let (session, login) = id.rsplit_once('.')?;
    let login = String::from_utf8(hex::decode(login).ok()?).ok()?;
    (!session.is_empty() && !login.is_empty()).then_some((session, login))
}

/// A checkPushResult answer in the engine's words.
fn push_state(a: RestAnswer) -> PushState {
    match a.status.meaning() {
        Meaning::Success => PushState::Approved(verified(a)),
        Meaning::Pending => PushState::Pending,
        Meaning::Denied => PushState::Denied,
        Meaning::Expired => PushState::Expired,
        Meaning::SessionGone => PushState::Failed(
            "TrustBuilder knows no such push session (NOK): expired or unknown".into(),
        ),
        Meaning::Refusal(_) | Meaning::Misconfigured => {
            PushState::Failed(format!("TrustBuilder answered {}", a.status))
        }
    }
}

/// TrustBuilder, as the engine names it: no SMS or voice codes.
static TRUSTBUILDER_INFO: BackendInfo = BackendInfo {
    name: "TrustBuilder",
    section: "trustbuilder",
    check: "trustbuilder.service_id, trustbuilder.api_url, the \"Web services API access\" certificate and the service's settings in the administration console",
    phone_codes: false,
};

impl Backend for TrustBuilderBackend {
    fn info(&self) -> &'static BackendInfo {
        &TRUSTBUILDER_INFO
    }

    fn verify_code<'a>(&'a self, check: &'a CodeCheck) -> BoxFuture<'a, Answer<Verified>> {
        Box::pin(async move {
            if check.pin.is_some() {
                return (
                    None,
                    Err(BackendError::Misconfigured(
                        "TrustBuilder takes no PIN with a code (the PIN is entered in the app): \
                         do not use pin_otp with TrustBuilder"
                            .into(),
                    )),
                );
            }
            let r = self
                .client
                .authenticate_extended(&check.user, check.code.expose())
                .await;
            (None, self.seen(r).map(verified))
        })
    }

    fn start_push<'a>(&'a self, push: &'a PushStart) -> BoxFuture<'a, Answer<PushTicket>> {
        Box::pin(async move {
            let context = self.client.push_context().or(push.profile.as_deref());
            let r = self
                .client
                .push_authenticate(&push.user, context, false)
                .await;
            match self.seen(r) {
                Ok(a) => {
                    let session = a.session_id.unwrap_or_default();
                    let id = transaction_id(&session, &push.user);
                    (
                        Some(session),
                        Ok(PushTicket {
                            transaction_id: id,
                            number: None,
                        }),
                    )
                }
                Err(e) => (None, Err(e)),
            }
        })
    }

    fn poll_pushes<'a>(
        &'a self,
        transaction_ids: &'a [String],
    ) -> BoxFuture<'a, Answer<Vec<(String, PushState)>>> {
        Box::pin(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(POLL_CONCURRENCY));
            let mut calls = tokio::task::JoinSet::new();
            let mut states = Vec::with_capacity(transaction_ids.len());
            for id in transaction_ids {
                let key = transaction_key(id);
                let Some((session, login)) = parse_transaction_id(id) else {
                    states.push((
                        key,
                        PushState::Failed("not a TrustBuilder push transaction id".into()),
                    ));
                    continue;
                };
                let (client, slots, session) =
                    (self.client.clone(), slots.clone(), session.to_owned());
                calls.spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    let r = client.check_push_result(&login, &session).await;
                    (key, session, r)
                });
            }
            let mut first_error = None;
            while let Some(joined) = calls.join_next().await {
                let Ok((key, session, r)) = joined else {
                    continue;
                };
                match self.seen(r) {
                    Ok(a) => states.push((key, push_state(a))),
                    // Our mistake (service id, certificate, request): no later poll can
                    // succeed, so the push ends now, as misconfigured.
                    Err(BackendError::Misconfigured(why)) => {
                        states.push((key, PushState::Misconfigured(why)));
                    }
                    // A refusal about the user (a locked account): the push is over.
                    Err(BackendError::Refused { message, .. }) => {
                        states.push((key, PushState::Failed(message)));
                    }
                    // Left out: the push stays pending until its deadline; logged here.
                    Err(e) => {
                        tracing::warn!(session_id = %session, error = %e, "TrustBuilder checkPushResult failed");
                        first_error.get_or_insert(e);
                    }
                }
            }
            match first_error {
                Some(e) if states.is_empty() => (None, Err(e)),
                _ => (None, Ok(states)),
            }
        })
    }

    fn user_factors<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Answer<UserFactors>> {
        Box::pin(async move {
            let id = match self.login_id(user).await {
                Ok(id) => id,
                Err(e) => return (None, Err(e)),
            };
            let details = match self.seen(self.client.login_query(id).await) {
                Ok(d) => d,
                Err(e) => {
                    // The login may have been deleted (and re-created) since it was looked up.
                    self.login_ids.invalidate(&user.to_lowercase()).await;
                    return (None, Err(e));
                }
            };
            if details.attributes.is_blocked() {
                return (None, Err(locked()));
            }
            // Every active tool makes codes; mobile apps and mAccess registered for push
            // take pushes. No active tool at all: `UserFactors::any()` is false.
            let factors = UserFactors {
                push: details.tools.iter().any(|t| t.can_push()),
                code: details.tools.iter().any(|t| t.is_active()),
                sms_numbers: Vec::new(),
                voice_numbers: Vec::new(),
            };
            (None, Ok(factors))
        })
    }

    fn send_code<'a>(
        &'a self,
        user: &'a str,
        channel: Channel,
        number: &'a str,
    ) -> BoxFuture<'a, Answer<()>> {
        let _ = (user, channel, number);
        let err = BackendError::Misconfigured(
            "this MFA service does not support sending codes by SMS or voice (TrustBuilder)".into(),
        );
        Box::pin(async move { (None, Err(err)) })
    }

    fn outage_confirmed(&self) -> BoxFuture<'_, bool> {
        Box::pin(self.health.outage_confirmed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::https;
    use crate::trustbuilder::TbStatus;

    fn rejected(err: &str) -> TbError {
        TbError::Rejected {
            action: "authenticateExtended",
            status: TbStatus::parse(err).unwrap_or(TbStatus::Other(err.into())),
            session_id: None,
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Refused(Refusal),
        Outage,
        Misconfigured,
        Overloaded,
    }

    fn seen(e: TbError) -> Seen {
        match classify(e) {
            BackendError::Refused { refusal, .. } => Seen::Refused(refusal),
            BackendError::Outage(_) => Seen::Outage,
            BackendError::Misconfigured(_) => Seen::Misconfigured,
            BackendError::Overloaded(_) => Seen::Overloaded,
        }
    }

    #[test]
    fn every_status_has_its_outcome() {
        use Refusal::*;
        let table = [
            ("NOK:no device found", Seen::Refused(BadCode)),
            ("NOK:account unknown ", Seen::Refused(UnknownUser)),
            ("NOK:NOLOGIN", Seen::Refused(NoCredential)),
            ("NOK:NoPush", Seen::Refused(NoPushDevice)),
            ("NOK:NOMA", Seen::Refused(NoPushDevice)),
            ("NOK:SN", Seen::Misconfigured),
            ("NOK:srv unknown", Seen::Misconfigured),
            ("NOK:access forbidden", Seen::Misconfigured),
            ("NOK:account locked", Seen::Refused(UserLocked)),
            ("NOK:Tool Locked", Seen::Refused(UserLocked)),
            // Another cause we cannot name: refused, never a pass, never an outage.
            ("NOK:quota exceeded", Seen::Refused(Misconfigured)),
            // A push status on a code check: never a pass.
            ("NOK:WAITING", Seen::Refused(Misconfigured)),
            ("NOK", Seen::Refused(Misconfigured)),
        ];
        for (err, want) in table {
            assert_eq!(seen(rejected(err)), want, "{err}");
        }
    }

    #[test]
    fn every_failure_class_has_its_outcome() {
        let from = |e| TbError::from_https(e, "", "");
        let u = || "https://h/FS".to_owned();
        let table = [
            (
                from(https::Error::Unreachable {
                    url: u(),
                    cause: "refused".into(),
                }),
                Seen::Outage,
            ),
            (
                from(https::Error::Overloaded {
                    url: u(),
                    waited_ms: 1,
                    limit: 1,
                }),
                Seen::Overloaded,
            ),
            (
                from(https::Error::Exhausted {
                    url: u(),
                    cause: "EMFILE".into(),
                }),
                Seen::Overloaded,
            ),
            (
                from(https::Error::TlsRefused {
                    url: u(),
                    cause: "unknown_ca".into(),
                }),
                Seen::Misconfigured,
            ),
            (TbError::protocol("garbage"), Seen::Misconfigured),
            (TbError::config("x"), Seen::Misconfigured),
        ];
        for (e, want) in table {
            let shown = e.to_string();
            assert_eq!(seen(e), want, "{shown}");
        }
    }

    #[test]
    fn push_statuses_have_their_state() {
        let answer = |err: &str| RestAnswer {
            status: TbStatus::parse(err).unwrap_or(TbStatus::Other(err.into())),
            device: Default::default(),
            session_id: None,
        };
        assert!(matches!(push_state(answer("OK")), PushState::Approved(_)));
        assert_eq!(push_state(answer("NOK:WAITING")), PushState::Pending);
        assert_eq!(push_state(answer("nok:refused")), PushState::Denied);
        assert_eq!(push_state(answer("NOK:TIMEOUT")), PushState::Expired);
        assert!(matches!(push_state(answer("NOK")), PushState::Failed(_)));
    }

    #[test]
    fn transaction_ids_survive_case_folding() {
        for user in ["alice", "User+Tag@Example.com", "bob smith", "é.x"] {
            let id = transaction_id("bda0db4c", user);
            let folded = transaction_key(&id);
            let (session, login) = parse_transaction_id(&folded).unwrap_or(("", String::new()));
            assert_eq!((session, login.as_str()), ("bda0db4c", user));
        }
        assert_eq!(parse_transaction_id("no-dot"), None);
        assert_eq!(parse_transaction_id("s.zz"), None);
        assert_eq!(parse_transaction_id(".616c"), None);
    }
}
