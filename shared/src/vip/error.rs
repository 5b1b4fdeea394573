//! The VIP client's error type.

use std::path::PathBuf;

use thiserror::Error;

use super::status::Status;

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
    /// No answer: connect, TLS, timeout, reset, or waiting for a free in-flight slot too long.
    #[error("VIP unreachable at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    /// The TLS handshake failed on trust: VIP refused our client certificate (revoked, expired,
    /// from the wrong account) or its certificate is not trusted by our roots / `ca_file`.
    /// A configuration problem, not an outage: fail-open never applies to it.
    #[error("VIP TLS handshake with {url} refused: {cause}; check vip.cert_file / vip.pkcs12_file (revoked or expired?) and vip.ca_file")]
    TlsRefused { url: String, cause: String },
    /// An answer that is not a valid VIP response.
    #[error("VIP protocol error from {url}: {cause}")]
    Protocol { url: String, cause: String },
    /// The client could not be set up (certificates, keys, URLs).
    #[error("VIP client configuration: {what}{}",
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

    pub fn is_unreachable(&self) -> bool {
        matches!(self, VipError::Unreachable { .. })
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            VipError::Rejected { request_id, .. } | VipError::BadRequest { request_id, .. }
                if !request_id.is_empty() =>
            {
                Some(request_id)
            }
            _ => None,
        }
    }

    pub(crate) fn protocol(cause: impl Into<String>) -> VipError {
        VipError::Protocol {
            url: String::new(),
            cause: cause.into(),
        }
    }

    /// Fills in the URL of a `Protocol` error raised by the (I/O-free) parser.
    pub(crate) fn at_url(self, at: &str) -> VipError {
        match self {
            VipError::Protocol { url, cause } if url.is_empty() => VipError::Protocol {
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
