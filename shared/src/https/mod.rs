//! HTTPS to an MFA service, shared by every service client (VIP, TrustBuilder): the parts that
//! do not know the service's wire format.
//!
//! - `tls`: the client identity (PEM or PKCS#12), the CA roots, the rustls configuration, and
//!   what a TLS failure means in the admin's terms;
//! - `connections`: kept-alive HTTP/1.1 connections, a bounded number opened at a time;
//! - `transport`: bounded in-flight calls, deadlines, GET and POST, and the failure classes of
//!   everything below the service's own answer;
//! - `health`: is the service down? (the check fail-open waits on);
//! - `xml`: the XML the services answer (SOAP envelopes, flat records), as a tree.
//!
//! Every message names the service and its configuration section through a [`Service`].

pub(crate) mod connections;
pub mod health;
pub(crate) mod tls;
pub(crate) mod transport;
pub(crate) mod xml;

use std::path::PathBuf;

/// The kinds of failure, each with its own rule: only an [`FailureClass::Outage`] may ever fail
/// open (and only while the health monitor agrees the service is down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// The service answered in-band with a status (its decision about the user, or an error it
    /// reports).
    Answered,
    /// The service could not be reached or says it is down.
    Outage,
    /// Our configuration, certificate or request is wrong, or the answer is not the service's
    /// protocol.
    Misconfigured,
    /// No local capacity to make the call.
    Overload,
}

/// Who is on the other end, for messages: the service's name, its configuration section, where
/// its client certificates are issued, and the keys that hold its URLs.
#[derive(Debug)]
pub struct Service {
    /// `VIP`, `TrustBuilder`.
    pub name: &'static str,
    /// The configuration section: `vip`, `trustbuilder`.
    pub section: &'static str,
    /// Where the account's client certificate is issued: `VIP Manager`.
    pub console: &'static str,
    /// The keys to check when the server's name is wrong.
    pub url_keys: &'static str,
}

/// Why an HTTPS exchange did not produce an answer (any HTTP status is an answer: the service
/// client classes it). Each service client turns these into its own error type.
#[derive(Debug)]
pub(crate) enum Error {
    /// An outage: no answer (connect refused, timeout, reset).
    Unreachable { url: String, cause: String },
    /// Overload here: no in-flight slot within the deadline; nothing was sent.
    Overloaded {
        url: String,
        waited_ms: u64,
        limit: usize,
    },
    /// Overload here: out of file descriptors or memory.
    Exhausted { url: String, cause: String },
    /// The TLS handshake failed on trust (explained, see [`tls::explain_tls`]).
    TlsRefused { url: String, cause: String },
    /// The answer is not one (too large).
    Protocol { url: String, cause: String },
    /// The client could not be set up, or a request cannot be made; `what` names the key.
    Config { what: String, path: Option<PathBuf> },
}

impl Error {
    pub(crate) fn config(what: impl Into<String>, path: Option<&std::path::Path>) -> Error {
        Error::Config {
            what: what.into(),
            path: path.map(PathBuf::from),
        }
    }
}
