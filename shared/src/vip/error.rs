//! The VIP client's error type.

use std::path::PathBuf;

use thiserror::Error;

use super::status::Status;

/// The kinds of failure (shared by every MFA service client).
pub use crate::https::FailureClass;

/// Why a VIP call did not succeed.
///
/// The classes matter to the engine: `Rejected` is VIP's answer about the user (never a reason
/// to fail open), `Unreachable` is the only class that fail-open may act on, `Protocol` and
/// `BadRequest` are bugs or misconfiguration somewhere and must be logged loudly.
#[derive(Debug, Error)]
pub enum VipError {
    /// VIP answered and said no.
    #[error("VIP {operation} rejected with status {status}: {message}{} [requestId {request_id}]",
        detail.as_deref().map(|d| format!(" (detail {d})")).unwrap_or_default())]
    Rejected {
        operation: &'static str,
        status: Status,
        message: String,
        detail: Option<String>,
        request_id: String,
    },
    /// We sent something VIP could not accept (600B, `request_id` set), or our own checks
    /// refused to send it (`request_id` empty: nothing went on the wire).
    #[error("VIP {operation}: bad request: {message} [requestId {request_id}]")]
    BadRequest {
        operation: &'static str,
        request_id: String,
        message: String,
    },
    /// An outage: no answer (connect refused, timeout, reset) or the service said it is down
    /// (HTTP 502/503/504, a SOAP `Server` fault). The only class fail-open may act on.
    #[error("VIP unreachable at {url}: {cause}")]
    Unreachable {
        url: String,
        cause: String,
        /// The requestId of the call, when it was sent (empty before that).
        request_id: String,
    },
    /// Overload here: every in-flight slot (`vip.max_in_flight`) stayed busy until the deadline,
    /// so nothing was sent. Never an outage: a login flood must not open the door.
    #[error("no free VIP connection slot within {waited_ms} ms (vip.max_in_flight = {limit}); nothing was sent to {url}")]
    Overloaded {
        url: String,
        waited_ms: u64,
        limit: usize,
    },
    /// Overload here: this process ran out of file descriptors or memory making the call
    /// (EMFILE, ENFILE, ENOMEM, ENOBUFS). Never an outage: a local flood must not open the door.
    #[error("cannot call VIP at {url}: out of local resources ({cause}); raise LimitNOFILE / check memory")]
    Exhausted {
        url: String,
        cause: String,
        request_id: String,
    },
    /// The TLS handshake failed on trust: VIP refused our client certificate (its alert:
    /// revoked, expired, unknown CA, none sent), or we refused VIP's certificate (not trusted
    /// by our roots / `ca_file`, wrong host name, expired). `cause` says which, and which key
    /// to check. A configuration problem, not an outage: fail-open never applies to it.
    #[error("VIP TLS handshake with {url} failed: {cause}")]
    TlsRefused {
        url: String,
        cause: String,
        request_id: String,
    },
    /// An answer that is not a valid VIP response: HTTP 4xx (a wrong URL path), other non-200
    /// answers without a `Server` fault, a `Client` fault, garbage, a wrong namespace, a
    /// requestId or transaction that does not match. Misconfiguration or a format change, never
    /// an outage.
    #[error("VIP protocol error from {url}: {cause}")]
    Protocol {
        url: String,
        cause: String,
        request_id: String,
    },
    /// The client could not be set up (certificates, keys, URLs). `what` names the `vip.*`
    /// key; callers add their own context ("cannot start the auth engine: VIP client: ..."),
    /// so this adds no prefix of its own.
    #[error("{what}{}",
        path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default())]
    Config { what: String, path: Option<PathBuf> },
}

impl VipError {
    /// VIP's status code where VIP answered with one (`Rejected`, and 600B for `BadRequest`
    /// when it came from VIP).
    pub fn status(&self) -> Option<Status> {
        match self {
            VipError::Rejected { status, .. } => Some(*status),
            VipError::BadRequest { request_id, .. } if !request_id.is_empty() => {
                Some(Status::SchemaValidationFailed)
            }
            _ => None,
        }
    }

    /// VIP answered that what the call named does not exist: no such user (6003), no such
    /// credential (6004) or no binding between them (6007). Everything else, including an
    /// outage or our own refusal to send, is not "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(self, VipError::Rejected { status, .. } if status.is_not_found())
    }

    pub fn is_unreachable(&self) -> bool {
        matches!(self, VipError::Unreachable { .. })
    }

    /// Which of the three failure classes (or VIP's own answer) this is.
    pub fn class(&self) -> FailureClass {
        match self {
            VipError::Rejected { .. } => FailureClass::Answered,
            VipError::Unreachable { .. } => FailureClass::Outage,
            VipError::Overloaded { .. } | VipError::Exhausted { .. } => FailureClass::Overload,
            VipError::BadRequest { .. }
            | VipError::TlsRefused { .. }
            | VipError::Protocol { .. }
            | VipError::Config { .. } => FailureClass::Misconfigured,
        }
    }

    /// The requestId of the call this error came from, when it was sent: VIP may have
    /// received it even if no answer came back, so logs name it.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            VipError::Rejected { request_id, .. }
            | VipError::BadRequest { request_id, .. }
            | VipError::Unreachable { request_id, .. }
            | VipError::Exhausted { request_id, .. }
            | VipError::TlsRefused { request_id, .. }
            | VipError::Protocol { request_id, .. }
                if !request_id.is_empty() =>
            {
                Some(request_id)
            }
            _ => None,
        }
    }

    /// Names the requestId a transport error happened under (the client knows it, the
    /// transport does not).
    pub(crate) fn sent_as(mut self, rid: &str) -> VipError {
        if let VipError::Unreachable { request_id, .. }
        | VipError::Exhausted { request_id, .. }
        | VipError::TlsRefused { request_id, .. }
        | VipError::Protocol { request_id, .. } = &mut self
        {
            if request_id.is_empty() {
                rid.clone_into(request_id);
            }
        }
        self
    }

    pub(crate) fn protocol(cause: impl Into<String>) -> VipError {
        VipError::Protocol {
            request_id: String::new(),
            url: String::new(),
            cause: cause.into(),
        }
    }

    /// Fills in the URL of a `Protocol` error raised by the (I/O-free) parser.
    pub(crate) fn at_url(self, at: &str) -> VipError {
        match self {
            VipError::Protocol {
                url,
                cause,
                request_id,
            } if url.is_empty() => VipError::Protocol {
                request_id,
                url: at.to_owned(),
                cause,
            },
            other => other,
        }
    }

    pub(crate) fn config(what: impl Into<String>, path: Option<&std::path::Path>) -> VipError {
        VipError::Config {
            what: what.into(),
            path: path.map(PathBuf::from),
        }
    }
}
