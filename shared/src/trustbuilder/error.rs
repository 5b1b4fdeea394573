//! The TrustBuilder client's error type.

use std::path::PathBuf;

use thiserror::Error;

use super::status::TbStatus;
use crate::https::{self, FailureClass};

/// Why a TrustBuilder call did not succeed. [`TbError::class`] tells the failure classes apart:
/// only [`FailureClass::Outage`] may ever fail open.
#[derive(Debug, Error)]
pub enum TbError {
    /// TrustBuilder answered `NOK*`. A refusal about the user, except `NOK:SN`,
    /// `NOK:srv unknown` and `NOK:access forbidden` (our serviceId, certificate or request:
    /// misconfigured, never an outage).
    #[error("TrustBuilder {action} answered {status}{}",
        session_id.as_deref().map(|s| format!(" [sessionId {s}]")).unwrap_or_default())]
    Rejected {
        action: &'static str,
        status: TbStatus,
        session_id: Option<String>,
    },
    /// Our own checks refused to send the call (nothing went on the wire).
    #[error("TrustBuilder {action}: bad request: {message}")]
    BadRequest {
        action: &'static str,
        message: String,
    },
    /// An outage: no answer (connect refused, timeout, reset) or an HTTP 5xx.
    #[error("TrustBuilder unreachable at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    /// Overload here: no in-flight slot (`trustbuilder.max_in_flight`) within the deadline.
    #[error("no free TrustBuilder connection slot within {waited_ms} ms (trustbuilder.max_in_flight = {limit}); nothing was sent to {url}")]
    Overloaded {
        url: String,
        waited_ms: u64,
        limit: usize,
    },
    /// Overload here: out of file descriptors or memory.
    #[error("cannot call TrustBuilder at {url}: out of local resources ({cause}); raise LimitNOFILE / check memory")]
    Exhausted { url: String, cause: String },
    /// The TLS handshake failed on trust (either side refused the other's certificate).
    #[error("TrustBuilder TLS handshake with {url} failed: {cause}")]
    TlsRefused { url: String, cause: String },
    /// An answer that is not TrustBuilder's: HTTP 4xx or another non-200 that is not 5xx,
    /// garbage, a SOAP fault, missing fields, parallel arrays of different lengths.
    #[error("TrustBuilder protocol error from {url}: {cause}")]
    Protocol { url: String, cause: String },
    /// The client could not be set up; `what` names the `trustbuilder.*` key.
    #[error("{what}{}", path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default())]
    Config { what: String, path: Option<PathBuf> },
}

impl TbError {
    /// Which failure class (or TrustBuilder's own answer) this is.
    pub fn class(&self) -> FailureClass {
        match self {
            TbError::Rejected { status, .. } if status.is_misconfiguration() => {
                FailureClass::Misconfigured
            }
            TbError::Rejected { .. } => FailureClass::Answered,
            TbError::Unreachable { .. } => FailureClass::Outage,
            TbError::Overloaded { .. } | TbError::Exhausted { .. } => FailureClass::Overload,
            TbError::BadRequest { .. }
            | TbError::TlsRefused { .. }
            | TbError::Protocol { .. }
            | TbError::Config { .. } => FailureClass::Misconfigured,
        }
    }

    /// TrustBuilder's status, where it answered with one.
    pub fn status(&self) -> Option<&TbStatus> {
        match self {
            TbError::Rejected { status, .. } => Some(status),
            _ => None,
        }
    }

    /// A metrics label for the call's result.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            TbError::Rejected { status, .. } => status.label(),
            TbError::BadRequest { .. } => "bad_request",
            TbError::Unreachable { .. } => "unreachable",
            TbError::Overloaded { .. } | TbError::Exhausted { .. } => "overloaded",
            TbError::TlsRefused { .. } => "tls_refused",
            TbError::Protocol { .. } => "protocol",
            TbError::Config { .. } => "config",
        }
    }

    pub(crate) fn config(what: impl Into<String>) -> TbError {
        TbError::Config {
            what: what.into(),
            path: None,
        }
    }

    pub(crate) fn protocol(cause: impl Into<String>) -> TbError {
        TbError::Protocol {
            url: String::new(),
            cause: cause.into(),
        }
    }

    /// Fills in the URL of a `Protocol` error raised by the (I/O-free) parsers.
    pub(crate) fn at_url(self, at: &str) -> TbError {
        match self {
            TbError::Protocol { url, cause } if url.is_empty() => TbError::Protocol {
                url: at.to_owned(),
                cause,
            },
            other => other,
        }
    }

    /// A transport failure, with `shown` (the URL without its query: it may hold a code) in
    /// place of the URL that was called.
    pub(crate) fn from_https(e: https::Error, called: &str, shown: &str) -> TbError {
        let hide = |s: String| {
            if called.is_empty() {
                s
            } else {
                s.replace(called, shown)
            }
        };
        let url = shown.to_owned();
        match e {
            https::Error::Unreachable { cause, .. } => TbError::Unreachable {
                url,
                cause: hide(cause),
            },
            https::Error::Overloaded {
                waited_ms, limit, ..
            } => TbError::Overloaded {
                url,
                waited_ms,
                limit,
            },
            https::Error::Exhausted { cause, .. } => TbError::Exhausted {
                url,
                cause: hide(cause),
            },
            https::Error::TlsRefused { cause, .. } => TbError::TlsRefused {
                url,
                cause: hide(cause),
            },
            https::Error::Protocol { cause, .. } => TbError::Protocol {
                url,
                cause: hide(cause),
            },
            https::Error::Config { what, path } => TbError::Config {
                what: hide(what),
                path,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let rejected = |s: &str| TbError::Rejected {
            action: "authenticateExtended",
            status: TbStatus::parse(s).unwrap_or(TbStatus::Ok),
            session_id: None,
        };
        assert_eq!(
            rejected("NOK:srv unknown").class(),
            FailureClass::Misconfigured
        );
        assert_eq!(
            rejected("NOK:access forbidden").class(),
            FailureClass::Misconfigured
        );
        assert_eq!(rejected("NOK:SN").class(), FailureClass::Misconfigured);
        assert_eq!(
            rejected("NOK:no device found").class(),
            FailureClass::Answered
        );
        let e = TbError::from_https(
            https::Error::Unreachable {
                url: "https://h/FS?token=123456".into(),
                cause: "no answer from https://h/FS?token=123456".into(),
            },
            "https://h/FS?token=123456",
            "https://h/FS",
        );
        assert_eq!(e.class(), FailureClass::Outage);
        assert!(!e.to_string().contains("123456"), "{e}");
    }
}
