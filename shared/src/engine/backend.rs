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
    /// What the code is: a login's code (VIP's full authentication, which honours locks,
    /// temporary codes and levels) or one the service just delivered by SMS/voice.
    pub kind: CodeKind,
    pub auth_level: Option<u8>,
}

/// Which check a code gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// A code the user typed to log in: full authentication.
    Login,
    /// A code the service sent by SMS or voice moments ago.
    Delivered,
    /// A login code checked with the bare code check (`otp_operation = "check_otp"`):
    /// ignores locks and temporary codes. Kept for sites that insist; warned about at start.
    LoginBareCheck,
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
    /// The PIN was right but has expired: the user must change it before logging in.
    pub pin_expired: bool,
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
    /// The service could not run the push as asked (VIP 7008 without a detail): on an account
    /// that requires number challenge, a push that did not offer one.
    RefusedAsAsked,
    /// Gone or refused for another reason (the service's words).
    Failed(String),
    /// The poll was refused as our mistake (our service id, certificate or request): no later
    /// poll can succeed, so the login is refused as misconfigured at once, never failed open.
    Misconfigured(String),
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

impl UserFactors {
    /// Whether the user has any usable credential at all.
    pub fn any(&self) -> bool {
        self.push || self.code || !self.sms_numbers.is_empty() || !self.voice_numbers.is_empty()
    }
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
    /// A push was accepted but no device of the user's could be reached.
    NoPushDevice,
    /// The phone number to send a code to is not valid.
    InvalidPhone,
    /// The code was right but the token's clock is off: ask for the next code.
    OutOfSync,
    /// What is being added is already bound or registered (VIP 6011, 6026).
    AlreadyInUse,
    /// Our account, certificate or request is wrong, or the service answered a status we
    /// do not know: never a reason to fail open.
    Misconfigured,
}

/// A failed call, in one of the failure classes. `status` is the service's own code, for logs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The service answered and refused.
    #[error("refused ({status}): {message}")]
    Refused {
        refusal: Refusal,
        status: String,
        message: String,
    },
    /// An outage: the service could not be reached in time or says it is down (connect,
    /// timeout, 502/503/504, Server fault, repeated internal errors). Nothing was decided. The
    /// only class that may fail open, and only while the service is confirmed down.
    #[error("outage: {0}")]
    Outage(String),
    /// Our configuration, certificate or request is wrong, or the answer is not the service's
    /// protocol (4xx, Client fault, garbage, wrong namespace, mismatched ids, TLS refusal).
    #[error("misconfiguration or protocol error: {0}")]
    Misconfigured(String),
    /// No local capacity to make the call in time (nothing was sent).
    #[error("overloaded here: {0}")]
    Overloaded(String),
}

/// A credential to bind to a user during in-band enrollment, with the code that proves the
/// user holds it.
#[derive(Debug, Clone)]
pub enum NewCredential {
    /// A VIP Access app or hardware token; `next_code` answers an out-of-sync refusal.
    Token {
        credential_id: String,
        code: Secret,
        next_code: Option<Secret>,
    },
    /// A phone already registered with [`Backend::register_phone`]; `code` is the one sent.
    Phone {
        channel: Channel,
        number: String,
        code: Secret,
    },
}

/// One call's result, with the service's request id for the audit trail.
pub type Answer<T> = (Option<String>, Result<T, BackendError>);

/// The operations the engine needs from an MFA service.
/// What the engine may say about the service behind [`Backend`] without knowing it: names for
/// its log lines, and which factors it can offer at all.
#[derive(Debug)]
pub struct BackendInfo {
    /// `VIP`, `TrustBuilder`: how log lines name the service.
    pub name: &'static str,
    /// Its configuration section (`vip`, `trustbuilder`), for "raise vip.max_in_flight".
    pub section: &'static str,
    /// What to check when it refuses our account, certificate or request.
    pub check: &'static str,
    /// Whether it can deliver codes by SMS or voice call at all. When it cannot, nobody is
    /// offered them and typing `sms` gets the same answer for every user, known or not.
    pub phone_codes: bool,
}

pub trait Backend: Send + Sync + 'static {
    /// Names and abilities of the service, for messages and the factor menu.
    fn info(&self) -> &'static BackendInfo;
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
    /// Creates `user` at the service (enrollment of a user it does not know yet): `true` when
    /// this call created it, `false` when it existed already (not an error).
    fn create_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Answer<bool>> {
        let _ = user;
        unsupported("creating users")
    }
    /// Deletes `user`: undoes a [`create_user`](Self::create_user) whose first credential was
    /// then refused, so a failed enrollment leaves no empty user behind.
    fn delete_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Answer<()>> {
        let _ = user;
        unsupported("deleting users")
    }
    /// Sends a code to `number` so the user can prove they hold it (no user is named yet).
    fn register_phone<'a>(
        &'a self,
        channel: Channel,
        number: &'a str,
    ) -> BoxFuture<'a, Answer<()>> {
        let _ = (channel, number);
        unsupported("registering phones")
    }
    /// Binds `credential` to `user`, checking its code.
    fn add_credential<'a>(
        &'a self,
        user: &'a str,
        credential: &'a NewCredential,
    ) -> BoxFuture<'a, Answer<()>> {
        let _ = (user, credential);
        unsupported("adding credentials")
    }
    /// Sets `user`'s PIN (an expired one, replaced after a login proved the old one).
    fn change_pin<'a>(&'a self, user: &'a str, new_pin: &'a Secret) -> BoxFuture<'a, Answer<()>> {
        let _ = (user, new_pin);
        unsupported("changing PINs")
    }
    /// Whether the service is known to be down right now (its health check agrees with the
    /// outage a call just saw). Fail-open asks this before letting anyone in.
    fn outage_confirmed(&self) -> BoxFuture<'_, bool>;
}

/// What a backend without enrollment answers: a configuration problem (the policy asks for
/// something this service cannot do), never an outage.
fn unsupported<'a, T: Send + 'a>(what: &str) -> BoxFuture<'a, Answer<T>> {
    let err = BackendError::Misconfigured(format!("this MFA service does not support {what}"));
    Box::pin(async move { (None, Err(err)) })
}

/// Transaction ids are compared without regard to ASCII case everywhere (VIP's are lower-case
/// hex, but nothing promises it): this is the one form they are stored and looked up in.
pub fn transaction_key(id: &str) -> String {
    id.to_ascii_lowercase()
}

/// VIP polls at most 20 transactions per call.
pub const MAX_POLL_BATCH: usize = 20;
