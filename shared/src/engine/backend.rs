//! The narrow interface between the engine and an MFA service. VIP implements it in
//! `vip::backend`; a second service (TrustBuilder MFA) can implement it beside VIP. The engine
//! speaks only this vocabulary: no VIP status codes, no XML.

use std::future::Future;
use std::pin::Pin;

use crate::secret::Secret;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A code to verify.
#[derive(Debug, Clone)]
pub struct CodeCheck {
    pub user: String,
    pub code: Secret,
    /// The next code, answering an out-of-sync challenge.
    pub next_code: Option<Secret>,
    pub pin: Option<Secret>,
    /// Use the full authentication call (levels, temporary codes) rather than a bare code check.
    pub full_authentication: bool,
    pub auth_level: Option<u8>,
}

/// A push to send.
#[derive(Debug, Clone)]
pub struct PushStart {
    pub user: String,
    pub title: String,
    pub text: String,
    /// Where the login comes from, shown on the phone.
    pub profile: Option<String>,
    /// How long the phone may take to answer.
    pub timeout: std::time::Duration,
    pub number_challenge: bool,
    pub auth_level: Option<u8>,
}

/// The service accepted the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    pub credential_id: Option<String>,
    pub credential_type: Option<String>,
    pub authn_id: Option<String>,
}

/// A push that was sent.
#[derive(Debug, Clone)]
pub struct PushTicket {
    pub transaction_id: String,
    /// The number the user must enter on the phone (number challenge).
    pub number: Option<String>,
}

/// Where a push stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushState {
    Pending,
    Approved(Verified),
    Denied,
    Expired,
    NumberChallengeFailed,
    /// Gone or refused for another reason (the service's words).
    Failed(String),
}

impl PushState {
    pub fn is_final(&self) -> bool {
        !matches!(self, PushState::Pending)
    }
}

/// What the engine needs to know about a user to offer factors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFactors {
    pub push: bool,
    /// A code credential (hardware or software token) is bound and enabled.
    pub code: bool,
    pub sms_numbers: Vec<String>,
    pub voice_numbers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Sms,
    Voice,
}

/// Why the service said no, in the engine's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadCode,
    BadPin,
    UnknownUser,
    UserLocked,
    CredentialLocked,
    NoCredential,
    /// The code was right but the token's clock is off: ask for the next code.
    OutOfSync,
    /// Our account, certificate or request is wrong.
    Misconfigured,
    /// The service failed internally or answered a code we do not know.
    ServiceError,
}

/// A failed call. `status` is the service's own code, for logs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The service answered and refused.
    #[error("refused ({status}): {message}")]
    Refused {
        refusal: Refusal,
        status: String,
        message: String,
    },
    /// The service could not be reached in time, or answered something that is not its
    /// protocol (HTTP 500, garbage): nothing was decided.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Our side cannot make the call (bad input, bad local configuration).
    #[error("cannot call the service: {0}")]
    Local(String),
}

/// One call's result, with the service's request id for the audit trail.
pub type Answer<T> = (Option<String>, Result<T, BackendError>);

/// The operations the engine needs from an MFA service.
pub trait Backend: Send + Sync + 'static {
    fn verify_code<'a>(&'a self, check: &'a CodeCheck) -> BoxFuture<'a, Answer<Verified>>;
    fn start_push<'a>(&'a self, push: &'a PushStart) -> BoxFuture<'a, Answer<PushTicket>>;
    /// Polls up to [`Backend::MAX_POLL_BATCH`] pushes in one call; answers in any order.
    fn poll_pushes<'a>(
        &'a self,
        transaction_ids: &'a [String],
    ) -> BoxFuture<'a, Answer<Vec<(String, PushState)>>>;
    fn user_factors<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Answer<UserFactors>>;
    fn send_code<'a>(
        &'a self,
        user: &'a str,
        channel: Channel,
        number: &'a str,
    ) -> BoxFuture<'a, Answer<()>>;
}

/// VIP polls at most 20 transactions per call.
pub const MAX_POLL_BATCH: usize = 20;
