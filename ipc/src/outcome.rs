//! What the daemon answers a round with, as it crosses the socket: accept, reject (with the
//! reason the module maps to a PAM result), or a challenge (the next prompt and the State).
//! The engine's own vocabulary re-exports [`Factor`], [`Reject`], [`Challenge`] and
//! [`RejectReason`] from here; its `Outcome` carries more (RADIUS reply attributes) and is
//! converted to this one by the daemon.

use std::fmt;

/// The factor a login succeeded (or failed) with; for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    Code,
    PinCode,
    Push,
    Sms,
    Voice,
    /// Nothing was verified (fail-open, throttled before any factor, a bad State).
    None,
}

impl Factor {
    pub fn as_str(self) -> &'static str {
        match self {
            Factor::Code => "code",
            Factor::PinCode => "pin_code",
            Factor::Push => "push",
            Factor::Sms => "sms",
            Factor::Voice => "voice",
            Factor::None => "none",
        }
    }
}

/// The single answer to one round.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    Accept(Accept),
    Reject(Reject),
    Challenge(Challenge),
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Accept {
    pub factor: Factor,
    pub credential_id: Option<String>,
    pub credential_type: Option<String>,
    /// VIP's authnId for this authentication, for audit trails.
    pub authn_id: Option<String>,
    /// True when the login was let through without a second factor because VIP could not be
    /// reached and the policy fails open.
    pub failed_open: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reject {
    pub reason: RejectReason,
    /// A sentence fit to show the user (RADIUS Reply-Message, PAM error message).
    pub message: String,
}

#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Challenge {
    /// The text to show; the last line is the question.
    pub prompt: String,
    /// Whether the answer may be echoed (a menu choice) or must be hidden (a code).
    pub echo: bool,
    /// The sealed State the client must send back with its answer.
    pub state: Vec<u8>,
}

impl fmt::Debug for Challenge {
    // The State value never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenge")
            .field("prompt", &self.prompt)
            .field("echo", &self.echo)
            .field("state", &format_args!("<{} bytes>", self.state.len()))
            .finish()
    }
}

/// Why a login was refused. Stable names: they appear in logs and metrics labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The code (or PIN) was wrong.
    BadCode,
    /// VIP does not know the user.
    UnknownUser,
    /// The user is locked or disabled in VIP.
    UserLocked,
    /// The credential is locked, disabled or not bound.
    CredentialLocked,
    /// The user has no credential for the requested factor (no push-capable phone, no phone number).
    NoCredential,
    PushDenied,
    PushTimeout,
    /// Number challenge answered wrongly on the phone.
    NumberChallengeFailed,
    /// Over a rate limit; VIP was not called.
    Throttled,
    /// A State that is forged, expired, replayed or for another user or client.
    BadState,
    /// The input cannot be a valid answer (empty where not allowed, malformed, too long).
    BadInput,
    /// An outage (VIP could not be reached or says it is down) while failing closed, or on a
    /// VIP the health check says is up.
    Unavailable,
    /// Our configuration or VIP account is wrong (invalid account, revoked certificate, 600B,
    /// a wrong URL, a TLS refusal), or VIP's answer is not its protocol. Never fails open.
    Misconfigured,
    /// No local capacity to call VIP in time (`vip.max_in_flight`). Never fails open.
    Overloaded,
    /// The VIP PIN was right but has expired.
    PinExpired,
    /// The directory password (first factor) was wrong, or the directory does not know the user.
    BadPassword,
    /// The password was right, but the user is in none of the policy's `required_groups`.
    NotPermitted,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadCode => "bad_code",
            RejectReason::UnknownUser => "unknown_user",
            RejectReason::UserLocked => "user_locked",
            RejectReason::CredentialLocked => "credential_locked",
            RejectReason::NoCredential => "no_credential",
            RejectReason::PushDenied => "push_denied",
            RejectReason::PushTimeout => "push_timeout",
            RejectReason::NumberChallengeFailed => "number_challenge_failed",
            RejectReason::Throttled => "throttled",
            RejectReason::BadState => "bad_state",
            RejectReason::BadInput => "bad_input",
            RejectReason::Unavailable => "unavailable",
            RejectReason::Misconfigured => "misconfigured",
            RejectReason::Overloaded => "overloaded",
            RejectReason::PinExpired => "pin_expired",
            RejectReason::BadPassword => "bad_password",
            RejectReason::NotPermitted => "not_permitted",
        }
    }
}

impl Outcome {
    /// `accept`, `reject` or `challenge`: for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Accept(_) => "accept",
            Outcome::Reject(_) => "reject",
            Outcome::Challenge(_) => "challenge",
        }
    }
}
