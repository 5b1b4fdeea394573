//! HTTPS to VIP: HTTP/1.1 over rustls (TLS 1.2+, client certificate) on kept-alive
//! connections ([`super::connections`]), per-call deadline, bounded in-flight calls.

use std::io::BufReader;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::Semaphore;
use url::Url;
use zeroize::Zeroizing;

use super::config::VipConfig;
use super::connections::{Conn, ConnectError, Pool};
use super::error::VipError;
use super::soap;
use crate::metrics::Metrics;

/// Larger answers are not VIP answers (a getUserInfo with many credentials is a few KiB).
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// The client certificate chain and key, however they were supplied.
pub(crate) struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

pub(crate) struct Transport {
    pool: Pool,
    /// The same TLS setup as `pool`'s, for the trust probe (see [`Transport::probe_trust`]).
    tls: Arc<rustls::ClientConfig>,
    permits: Semaphore,
    /// One slot for the health probe, outside `permits`.
    reserved: Semaphore,
    max_in_flight: usize,
    timeout: Duration,
    metrics: OnceLock<Arc<Metrics>>,
    /// What a TLS failure is explained against (is a client certificate configured, which CA
    /// bundle trusts VIP).
    tls_setup: TlsSetup,
}

/// The parts of `[vip]` a TLS failure's explanation names.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsSetup {
    /// A client certificate (PEM or PKCS#12) is configured.
    pub(crate) has_identity: bool,
    /// `vip.ca_file`, or `None` for the system roots.
    pub(crate) ca_file: Option<std::path::PathBuf>,
}

/// How long the trust probe waits for VIP's alert after its handshake. A server that accepted
/// our certificate says nothing and waits for a request; one that refused it sends its alert
/// within a round trip.
const PROBE_ALERT_WAIT: Duration = Duration::from_millis(1500);

impl Transport {
    pub(crate) fn new(cfg: &VipConfig) -> Result<Transport, VipError> {
        if cfg.max_in_flight == 0 {
            return Err(VipError::config(
                "vip.max_in_flight must be at least 1",
                None,
            ));
        }
        if cfg.timeout.is_zero() {
            return Err(VipError::config("vip.timeout must be more than zero", None));
        }
        let tls = Arc::new(tls_config(cfg)?);
        Ok(Transport {
            // VIP speaks HTTP/1.1; keep-alive connections are pooled and reused.
            pool: Pool::new(tls.clone(), cfg.max_in_flight),
            tls,
            permits: Semaphore::new(cfg.max_in_flight),
            reserved: Semaphore::new(1),
            max_in_flight: cfg.max_in_flight,
            timeout: cfg.timeout,
            metrics: OnceLock::new(),
            tls_setup: TlsSetup {
                has_identity: cfg.pkcs12_file.is_some() || cfg.cert_file.is_some(),
                ca_file: cfg.ca_file.clone(),
            },
        })
    }

    pub(crate) fn set_metrics(&self, metrics: Arc<Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// POSTs one SOAP body; returns the body of a 200 answer.
    ///
    /// Two bounds, each `vip.timeout`: the wait for a free in-flight slot, whose expiry is
    /// [`VipError::Overloaded`] (nothing was sent: our capacity, not VIP's), and then the
    /// exchange itself, whose expiry is an outage. Time spent queued here is never read as VIP
    /// being slow. `reserved` calls (the health probe) use a slot of their own, so a flood of
    /// logins cannot make VIP look down.
    pub(crate) async fn post(
        &self,
        url: &Url,
        body: String,
        reserved: bool,
    ) -> Result<Vec<u8>, VipError> {
        let started = tokio::time::Instant::now();
        let slots = if reserved {
            &self.reserved
        } else {
            &self.permits
        };
        let Ok(permit) = tokio::time::timeout(self.timeout, slots.acquire()).await else {
            return Err(VipError::Overloaded {
                url: url.to_string(),
                waited_ms: started.elapsed().as_millis() as u64,
                limit: self.max_in_flight,
            });
        };
        let _permit = permit.map_err(|_| VipError::Unreachable {
            request_id: String::new(),
            url: url.to_string(),
            cause: "the VIP client is shutting down".into(),
        })?;
        let _in_flight = self.metrics.get().map(|m| m.vip_call_in_flight());
        let deadline = tokio::time::Instant::now() + self.timeout;
        let result = match tokio::time::timeout_at(deadline, self.exchange(url, body)).await {
            Ok(r) => r,
            Err(_) => {
                return Err(VipError::Unreachable {
                    request_id: String::new(),
                    url: url.to_string(),
                    cause: format!(
                        "no answer within {}",
                        humantime::format_duration(self.timeout)
                    ),
                })
            }
        };
        match result {
            Err(Exchange::Broken(cause)) => {
                // A connection that broke may be VIP refusing our certificate: with TLS 1.3
                // the client finishes its handshake before the server checks the certificate,
                // and the server's alert can be lost when our request crosses it. Ask once
                // more, without sending anything, so a refusal is never taken for an outage.
                let probe = tokio::time::timeout_at(deadline, self.probe_trust(url)).await;
                match probe {
                    Ok(Some(refused)) => Err(VipError::TlsRefused {
                        request_id: String::new(),
                        url: url.to_string(),
                        cause: refused,
                    }),
                    _ => Err(VipError::Unreachable {
                        request_id: String::new(),
                        url: url.to_string(),
                        cause,
                    }),
                }
            }
            Err(Exchange::Failed(e)) => Err(e),
            Ok(body) => Ok(body),
        }
    }

    async fn exchange(&self, url: &Url, body: String) -> Result<Vec<u8>, Exchange> {
        let body = Bytes::from(body);
        let mut conn = self
            .pool
            .get(url)
            .await
            .map_err(|e| self.connect_failed(url, e))?;
        let resp = match conn
            .sender
            .try_send_request(request(url, body.clone())?)
            .await
        {
            Ok(resp) => resp,
            // Not sent at all on a connection that served before: the server closed it while
            // it was idle. Once more on a new one (a request that was sent is never repeated:
            // VIP would see the code twice).
            Err(e) if conn.reused && e.message().is_some() => {
                let sender = self
                    .pool
                    .connect(&conn.key)
                    .await
                    .map_err(|e| self.connect_failed(url, e))?;
                conn = Conn {
                    sender,
                    key: conn.key,
                    reused: false,
                };
                conn.sender
                    .send_request(request(url, body)?)
                    .await
                    .map_err(|e| self.broken(url, &e, ""))?
            }
            Err(e) => return Err(self.broken(url, e.error(), "")),
        };
        let (head, mut incoming) = resp.into_parts();
        let status = head.status;
        let mut buf = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| self.broken(url, &e, "reading the answer: "))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(Exchange::Failed(VipError::Protocol {
                    request_id: String::new(),
                    url: url.to_string(),
                    cause: format!("answer larger than {MAX_RESPONSE_BYTES} bytes"),
                }));
            }
            buf.extend_from_slice(&chunk);
        }
        // Read in full: the connection can serve the next call.
        self.pool.put(conn);
        if status == hyper::StatusCode::OK {
            return Ok(buf);
        }
        let fault = soap::fault_of(&buf);
        let what = fault
            .as_ref()
            .map(|f| f.to_string())
            .unwrap_or_else(|| format!("{} bytes of body", buf.len()));
        let cause = format!("HTTP {status}: {what}");
        let outage =
            matches!(status.as_u16(), 502..=504) || fault.as_ref().is_some_and(|f| f.is_server());
        Err(Exchange::Failed(if outage {
            VipError::Unreachable {
                request_id: String::new(),
                url: url.to_string(),
                cause,
            }
        } else {
            VipError::Protocol {
                request_id: String::new(),
                url: url.to_string(),
                cause: format!("{cause}; check the URL (vip.auth_url / query_url / management_url) and the account"),
            }
        }))
    }

    /// A connection that could not be opened: a TLS refusal, our own exhaustion (file
    /// descriptors, memory), or broken (checked for a hidden TLS refusal by the caller).
    fn connect_failed(&self, url: &Url, e: ConnectError) -> Exchange {
        match e {
            ConnectError::Io(e) => {
                if let Some(tls) = find_rustls(&e) {
                    Exchange::Failed(VipError::TlsRefused {
                        request_id: String::new(),
                        url: url.to_string(),
                        cause: explain_tls(tls, url, &self.tls_setup),
                    })
                } else if is_local_exhaustion(&e) {
                    Exchange::Failed(VipError::Exhausted {
                        request_id: String::new(),
                        url: url.to_string(),
                        cause: chain(&e),
                    })
                } else {
                    Exchange::Broken(format!("connecting: {}", chain(&e)))
                }
            }
            ConnectError::Http(e) => Exchange::Broken(format!("connecting: {}", chain(&e))),
            ConnectError::NoHost => Exchange::Failed(VipError::config(
                format!("{url} has no host name that TLS can check"),
                None,
            )),
        }
    }

    /// An exchange that broke after the connection was open: a TLS alert, or broken.
    fn broken(&self, url: &Url, e: &(dyn std::error::Error + 'static), doing: &str) -> Exchange {
        match find_rustls(e) {
            Some(tls) => Exchange::Failed(VipError::TlsRefused {
                request_id: String::new(),
                url: url.to_string(),
                cause: explain_tls(tls, url, &self.tls_setup),
            }),
            None => Exchange::Broken(format!("{doing}{}", chain(e))),
        }
    }

    /// Opens a fresh TLS connection with our client certificate, sends nothing, and listens
    /// briefly: `Some(why)` (explained, see [`explain_tls`]) when VIP (or whatever answers
    /// there) refuses the handshake or alerts right after it, `None` when it cannot be reached
    /// or says nothing.
    async fn probe_trust(&self, url: &Url) -> Option<String> {
        use tokio::io::AsyncReadExt;
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = url.port_or_known_default()?;
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).ok()?;
        let tcp = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let mut tls = match connector.connect(name, tcp).await {
            Ok(t) => t,
            Err(e) => return find_rustls(&e).map(|t| explain_tls(t, url, &self.tls_setup)),
        };
        let mut byte = [0u8; 1];
        match tokio::time::timeout(PROBE_ALERT_WAIT, tls.read(&mut byte)).await {
            Ok(Err(e)) => find_rustls(&e).map(|t| explain_tls(t, url, &self.tls_setup)),
            _ => None,
        }
    }
}

/// How one exchange failed: `Broken` connections are checked for a hidden TLS refusal first.
enum Exchange {
    Broken(String),
    Failed(VipError),
}

/// The POST of one SOAP body to `url`, in origin form with its Host header.
fn request(url: &Url, body: Bytes) -> Result<hyper::Request<Full<Bytes>>, Exchange> {
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let host = &url[url::Position::BeforeHost..url::Position::AfterPort];
    let bad = |what: String| {
        Exchange::Failed(VipError::config(
            format!("{url} cannot be sent as an HTTP request: {what}"),
            None,
        ))
    };
    hyper::Request::post(target)
        .header(
            HOST,
            HeaderValue::from_str(host).map_err(|e| bad(e.to_string()))?,
        )
        .header(
            CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        )
        .header("SOAPAction", HeaderValue::from_static("\"\""))
        .body(Full::new(body))
        .map_err(|e| bad(e.to_string()))
}

/// The rustls error anywhere in the chain, if any: the handshake reached TLS and failed on
/// certificates or alerts, which no retry or fail-open fixes. (`io::Error::source` skips the
/// error it wraps, so each io::Error is opened with `get_ref`.)
fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        if let Some(tls) = find_rustls(inner) {
            return Some(tls);
        }
    }
    e.source().and_then(find_rustls)
}

/// What a TLS failure with VIP means, in the admin's terms: which side refused what, and the
/// key to look at. Our side refusing VIP's certificate (not trusted, wrong name, expired) is
/// told apart from VIP refusing ours (its alert), and a missing client certificate from a
/// refused one.
pub(crate) fn explain_tls(e: &rustls::Error, url: &Url, setup: &TlsSetup) -> String {
    use rustls::{AlertDescription as A, CertificateError as C};
    let host = url.host_str().unwrap_or("the host");
    let ca = match &setup.ca_file {
        Some(p) => format!("check vip.ca_file ({}): it must hold the CA that issued VIP's certificate", p.display()),
        None => "check vip.ca_file: it is not set, so the system's CA roots are used, and they do not include VIP's issuer".to_owned(),
    };
    match e {
        rustls::Error::AlertReceived(alert) => {
            let name = alert_name(*alert);
            match alert {
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::CertificateRequired
                | A::NoCertificate
                | A::DecryptError
                    if !setup.has_identity =>
                {
                    format!(
                        "VIP asked for a client certificate and none is configured ({name}): \
                         set vip.cert_file + vip.key_file, or vip.pkcs12_file, to the \
                         certificate issued for this account in VIP Manager"
                    )
                }
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::CertificateRequired
                | A::NoCertificate
                // Our certificate's signature (or our proof of its key) did not verify: one
                // from another CA that has the same name as VIP's.
                | A::DecryptError => format!(
                    "VIP refused our client certificate ({name}): revoked, expired, or not the \
                     one issued for this account in VIP Manager? check vip.cert_file / \
                     vip.pkcs12_file"
                ),
                A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity => format!(
                    "VIP ended the TLS handshake ({name}): no TLS version or cipher suite in \
                     common, or it refused our client certificate (check vip.cert_file / \
                     vip.pkcs12_file)"
                ),
                _ => format!("VIP ended the TLS handshake with the alert {name}"),
            }
        }
        rustls::Error::InvalidCertificate(c) => match (c, cert_problem(c)) {
            (C::NotValidForName | C::NotValidForNameContext { .. }, _) => {
                let names = match c {
                    C::NotValidForNameContext { presented, .. } if !presented.is_empty() => {
                        let names: Vec<&str> =
                            presented.iter().map(|p| presented_name(p)).collect();
                        format!(" (it is for {})", names.join(", "))
                    }
                    _ => String::new(),
                };
                format!(
                    "the server's certificate is not valid for the name {host}{names}: check \
                     the host in vip.auth_url / vip.query_url / vip.management_url"
                )
            }
            (
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. },
                cert,
            ) => format!(
                "the server's certificate is expired or not yet valid ({cert}): check this \
                 machine's clock (timedatectl); if it is right, {host} is not serving VIP's \
                 certificate"
            ),
            (C::Revoked, cert) => format!(
                "the server's certificate is not trusted ({cert}): {host} is not serving VIP's \
                 current certificate"
            ),
            (_, cert) => format!("the server's certificate is not trusted ({cert}): {ca}"),
        },
        rustls::Error::NoCertificatesPresented => {
            format!("the server presented no certificate: {host} is not VIP")
        }
        rustls::Error::PeerIncompatible(_) => {
            "the TLS handshake failed: the server and we have no TLS version or cipher suite in \
             common (VIP speaks TLS 1.2 and 1.3)"
                .to_owned()
        }
        rustls::Error::PeerMisbehaved(_) | rustls::Error::InvalidMessage(_) => format!(
            "the TLS handshake failed: {host} does not speak TLS as VIP does (not VIP, or a \
             proxy in between?)"
        ),
        other => format!("TLS failure: {other}"),
    }
}

/// Why a certificate was refused, in words (rustls writes some of these as Rust identifiers).
#[allow(deprecated)] // UnsupportedSignatureAlgorithm: older rustls releases still send it
fn cert_problem(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as C;
    let text = match c {
        C::BadEncoding => "it is not a well-formed certificate",
        C::Expired => "it has expired",
        C::NotValidYet => "it is not valid yet",
        C::Revoked => "it is revoked",
        C::UnhandledCriticalExtension => "it has a critical extension we do not know",
        C::UnknownIssuer => "issued by a CA we do not trust",
        C::UnknownRevocationStatus => "its revocation status is unknown",
        C::ExpiredRevocationList => "the revocation list has expired",
        C::BadSignature => "its signature does not verify",
        C::UnsupportedSignatureAlgorithm
        | C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "signed with an algorithm we do not support"
        }
        C::NotValidForName => "it is not valid for this name",
        C::InvalidPurpose => "it is not a server certificate (extended key usage)",
        C::InvalidOcspResponse => "its OCSP response is invalid",
        C::ApplicationVerificationFailure => "refused by our verifier",
        // The `...Context` variants and `Other` write prose.
        other => return other.to_string(),
    };
    text.to_owned()
}

/// A name a certificate presents, as rustls lists it (`DnsName("vip.example")`,
/// `IpAddress(192.0.2.1)`): just the name.
fn presented_name(p: &str) -> &str {
    let inner = match p.split_once('(') {
        Some((kind, rest)) if kind.chars().all(|c| c.is_ascii_alphanumeric()) => {
            rest.strip_suffix(')').unwrap_or(rest)
        }
        _ => p,
    };
    inner.trim_matches('"')
}

/// The TLS name of an alert (RFC 8446 §6), as openssl and server logs write it.
fn alert_name(a: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    let name = match a {
        A::CloseNotify => "close_notify",
        A::UnexpectedMessage => "unexpected_message",
        A::BadRecordMac => "bad_record_mac",
        A::RecordOverflow => "record_overflow",
        A::HandshakeFailure => "handshake_failure",
        A::NoCertificate => "no_certificate",
        A::BadCertificate => "bad_certificate",
        A::UnsupportedCertificate => "unsupported_certificate",
        A::CertificateRevoked => "certificate_revoked",
        A::CertificateExpired => "certificate_expired",
        A::CertificateUnknown => "certificate_unknown",
        A::IllegalParameter => "illegal_parameter",
        A::UnknownCA => "unknown_ca",
        A::AccessDenied => "access_denied",
        A::DecodeError => "decode_error",
        A::DecryptError => "decrypt_error",
        A::ProtocolVersion => "protocol_version",
        A::InsufficientSecurity => "insufficient_security",
        A::InternalError => "internal_error",
        A::InappropriateFallback => "inappropriate_fallback",
        A::UserCanceled => "user_canceled",
        A::MissingExtension => "missing_extension",
        A::UnsupportedExtension => "unsupported_extension",
        A::UnrecognisedName => "unrecognized_name",
        A::BadCertificateStatusResponse => "bad_certificate_status_response",
        A::UnknownPSKIdentity => "unknown_psk_identity",
        A::CertificateRequired => "certificate_required",
        A::NoApplicationProtocol => "no_application_protocol",
        other => return format!("alert {}", u8::from(other)),
    };
    name.to_owned()
}

/// Whether this process ran out of descriptors or memory somewhere in the chain: overload
/// here, whatever else the error says.
fn is_local_exhaustion(e: &(dyn std::error::Error + 'static)) -> bool {
    // EMFILE, ENFILE, ENOMEM, ENOBUFS (Linux numbering; std exposes no named kinds for them).
    const EXHAUSTED: [i32; 4] = [24, 23, 12, 105];
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if io.raw_os_error().is_some_and(|c| EXHAUSTED.contains(&c))
            || io.kind() == std::io::ErrorKind::OutOfMemory
        {
            return true;
        }
        if io.get_ref().is_some_and(|inner| is_local_exhaustion(inner)) {
            return true;
        }
    }
    e.source().is_some_and(is_local_exhaustion)
}

/// An error and its sources, joined: the outer message hides the useful part
/// ("connection refused", "certificate unknown").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        src = s.source();
    }
    out
}

/// Checks a configured URL: absolute https with a host.
pub(crate) fn parse_url(key: &str, s: &str) -> Result<Url, VipError> {
    let url = Url::parse(s)
        .map_err(|e| VipError::config(format!("vip.{key} {s:?} is not a URL: {e}"), None))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(VipError::config(
            format!("vip.{key} {s:?} must be an https:// URL (VIP requires mutual TLS)"),
            None,
        ));
    }
    Ok(url)
}

fn tls_config(cfg: &VipConfig) -> Result<rustls::ClientConfig, VipError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = root_store(cfg)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| VipError::config(format!("cannot set up TLS for VIP: {e}"), None))?
        .with_root_certificates(roots);
    let config = match load_identity(cfg)? {
        Some((id, path)) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(|e| {
                let keys = if cfg.pkcs12_file.is_some() {
                    "the private key in vip.pkcs12_file is not the key of its certificate"
                } else if cfg.key_file.is_some() {
                    "vip.key_file is not the key of vip.cert_file"
                } else {
                    "the private key in vip.cert_file is not the key of its certificate"
                };
                let what = match e {
                    rustls::Error::InconsistentKeys(_) => format!(
                        "the client certificate and private key do not match: {keys}; use the \
                         key made with this certificate (VIP Manager's download holds both)"
                    ),
                    other => format!(
                        "the client certificate and private key are unusable together ({keys}?): {other}"
                    ),
                };
                VipError::config(what, Some(&path))
            })?,
        None => {
            tracing::warn!(
                "no VIP client certificate configured: VIP will refuse the TLS handshake"
            );
            builder.with_no_client_auth()
        }
    };
    Ok(config)
}

fn root_store(cfg: &VipConfig) -> Result<rustls::RootCertStore, VipError> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let pem = read(path, "vip.ca_file")?;
            let certs = pem_certs(&pem, path, "vip.ca_file")?;
            for c in certs {
                roots.add(c).map_err(|e| {
                    VipError::config(
                        format!("vip.ca_file holds an unusable certificate: {e}"),
                        Some(path),
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(VipError::config(
                    format!(
                        "no system CA certificates found ({} errors) to check VIP's certificate with; set vip.ca_file",
                        found.errors.len()
                    ),
                    None,
                ));
            }
        }
    }
    Ok(roots)
}

/// Certificates, keys and CA bundles are a few KiB; a bundle of every CA is under 1 MiB.
const MAX_PKI_FILE_BYTES: usize = 1 << 20;

/// Reads the file of config key `key` (`vip.cert_file`...): errors name the key and the path.
fn read(path: &Path, key: &str) -> Result<Zeroizing<Vec<u8>>, VipError> {
    crate::files::read_at_most(path, MAX_PKI_FILE_BYTES).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            std::io::ErrorKind::PermissionDenied => {
                "permission denied: the user the bridge runs as (vip-bridge when packaged) \
                 must be able to read it, e.g. owner root, group vip-bridge, mode 0640"
                    .to_owned()
            }
            _ => e.to_string(),
        };
        VipError::config(format!("cannot read {key}: {why}"), Some(path))
    })
}

fn pem_certs(
    pem: &[u8],
    path: &Path,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, VipError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut BufReader::new(pem))
        .collect::<Result<_, _>>()
        .map_err(|e| VipError::config(format!("{what} is not valid PEM: {e}"), Some(path)))?;
    if certs.is_empty() {
        return Err(VipError::config(
            format!("{what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
            Some(path),
        ));
    }
    Ok(certs)
}

fn is_encrypted_pem(pem: &[u8]) -> bool {
    let text = String::from_utf8_lossy(pem);
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}

const DECRYPT_HINT: &str = "the private key is encrypted, which is not supported; decrypt it once \
     with `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-plain.pem` (and protect that file), \
     or use the .p12 file with vip.pkcs12_file and its passphrase";

fn pem_key(pem: &[u8], path: &Path, key: &str) -> Result<Option<PrivateKeyDer<'static>>, VipError> {
    if is_encrypted_pem(pem) {
        return Err(VipError::config(
            format!("{key}: {DECRYPT_HINT}"),
            Some(path),
        ));
    }
    rustls_pemfile::private_key(&mut BufReader::new(pem))
        .map_err(|e| VipError::config(format!("{key} is not valid PEM: {e}"), Some(path)))
}

/// The configured client identity and the file to name in errors about it.
pub(crate) fn load_identity(
    cfg: &VipConfig,
) -> Result<Option<(Identity, std::path::PathBuf)>, VipError> {
    match (&cfg.pkcs12_file, &cfg.cert_file, &cfg.key_file) {
        (Some(p12), None, None) => {
            let password = p12_password(cfg)?;
            Ok(Some((load_p12(p12, &password)?, p12.clone())))
        }
        (Some(p12), _, _) => Err(VipError::config(
            "set either vip.pkcs12_file or vip.cert_file + vip.key_file, not both",
            Some(p12),
        )),
        (None, Some(cert), key) => {
            let cert_pem = read(cert, "vip.cert_file")?;
            let chain = pem_certs(&cert_pem, cert, "vip.cert_file")?;
            let key = match key {
                Some(k) => {
                    let key_pem = read(k, "vip.key_file")?;
                    pem_key(&key_pem, k, "vip.key_file")?.ok_or_else(|| {
                        VipError::config(
                            "vip.key_file holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                            Some(k),
                        )
                    })?
                }
                // The key may sit in the certificate file itself.
                None => pem_key(&cert_pem, cert, "vip.cert_file")?.ok_or_else(|| {
                    VipError::config(
                        "vip.cert_file holds no private key and vip.key_file is not set",
                        Some(cert),
                    )
                })?,
            };
            Ok(Some((Identity { chain, key }, cert.clone())))
        }
        (None, None, Some(key)) => Err(VipError::config(
            "vip.key_file is set but vip.cert_file is not",
            Some(key),
        )),
        (None, None, None) => Ok(None),
    }
}

fn p12_password(cfg: &VipConfig) -> Result<Zeroizing<String>, VipError> {
    match (&cfg.pkcs12_password, &cfg.pkcs12_password_file) {
        (Some(_), Some(f)) => Err(VipError::config(
            "set either vip.pkcs12_password or vip.pkcs12_password_file, not both",
            Some(f),
        )),
        (Some(p), None) => Ok(Zeroizing::new(p.expose().to_owned())),
        (None, Some(f)) => {
            let raw = read(f, "vip.pkcs12_password_file")?;
            let text = std::str::from_utf8(&raw)
                .map_err(|_| VipError::config("vip.pkcs12_password_file is not UTF-8", Some(f)))?;
            let text = text.strip_suffix('\n').unwrap_or(text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            Ok(Zeroizing::new(text.to_owned()))
        }
        // An export without a passphrase is legal; p12s always carry one in practice.
        (None, None) => Ok(Zeroizing::new(String::new())),
    }
}

pub(crate) fn load_p12(path: &Path, password: &str) -> Result<Identity, VipError> {
    use p12_keystore::error::Error as P12Error;
    let der = read(path, "vip.pkcs12_file")?;
    let store = p12_keystore::KeyStore::from_pkcs12(&der, password).map_err(|e| {
        let what = match e {
            P12Error::MacError(_) => "wrong passphrase for vip.pkcs12_file (integrity check \
                 failed): check vip.pkcs12_password / vip.pkcs12_password_file"
                .to_string(),
            P12Error::Pkcs5Error(_) | P12Error::UnpadError | P12Error::InvalidLength => {
                "cannot decrypt vip.pkcs12_file: wrong passphrase? check vip.pkcs12_password / \
                 vip.pkcs12_password_file"
                    .to_string()
            }
            P12Error::UnsupportedEncryptionScheme
            | P12Error::UnsupportedMacAlgorithm
            | P12Error::UnsupportedContentType => format!(
                "vip.pkcs12_file: the PKCS#12 file uses an unsupported scheme ({e}); re-export \
                 it with `openssl pkcs12 -export` (AES-256/SHA-256) or use PEM vip.cert_file + \
                 vip.key_file"
            ),
            P12Error::DerError(_) | P12Error::InvalidVersion => {
                format!("vip.pkcs12_file is not a PKCS#12 (DER) file: {e}")
            }
            other => format!("vip.pkcs12_file: unreadable PKCS#12 file: {other}"),
        };
        VipError::config(what, Some(path))
    })?;
    let (_alias, kc) = store.private_key_chain().ok_or_else(|| {
        VipError::config(
            "vip.pkcs12_file: the PKCS#12 file holds no private key with its certificate",
            Some(path),
        )
    })?;
    let chain: Vec<CertificateDer<'static>> = kc
        .chain()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    if chain.is_empty() {
        return Err(VipError::config(
            "vip.pkcs12_file: the PKCS#12 file holds no certificate",
            Some(path),
        ));
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(kc.key().to_vec()));
    Ok(Identity { chain, key })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::vip::VipClient;
    use std::path::PathBuf;
    use std::process::Command;

    struct Pki {
        dir: tempfile::TempDir,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    }

    /// A self-signed "CA" and a client certificate + PKCS#8 key, made at test time.
    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client.test".into()]).unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("ca.pem"), ca.cert.pem()).unwrap();
        std::fs::write(p("client.pem"), client.cert.pem()).unwrap();
        std::fs::write(p("client.key"), client.key_pair.serialize_pem()).unwrap();
        Pki {
            ca: p("ca.pem"),
            cert: p("client.pem"),
            key: p("client.key"),
            dir,
        }
    }

    fn cfg(p: &Pki) -> VipConfig {
        VipConfig {
            ca_file: Some(p.ca.clone()),
            cert_file: Some(p.cert.clone()),
            key_file: Some(p.key.clone()),
            ..VipConfig::default()
        }
    }

    fn config_err(cfg: &VipConfig) -> (String, Option<PathBuf>) {
        match VipClient::new(cfg) {
            Err(VipError::Config { what, path }) => (what, path),
            Err(other) => panic!("expected a Config error, got {other}"),
            Ok(_) => panic!("expected a Config error, got a client"),
        }
    }

    fn openssl(args: &[&str]) -> bool {
        Command::new("openssl")
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    fn s(p: &Path) -> &str {
        p.to_str().unwrap()
    }

    #[test]
    fn running_out_of_descriptors_or_memory_is_overload_not_outage() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("connect failed")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        for code in [24, 23, 12, 105] {
            let e = Wrapper(std::io::Error::from_raw_os_error(code));
            assert!(is_local_exhaustion(&e), "errno {code}");
            let nested = std::io::Error::other(Wrapper(std::io::Error::from_raw_os_error(code)));
            assert!(
                is_local_exhaustion(&nested),
                "errno {code} inside io::Error"
            );
        }
        for code in [111, 110, 104] {
            // Connection refused, timed out, reset: the network's doing, not ours.
            let e = Wrapper(std::io::Error::from_raw_os_error(code));
            assert!(!is_local_exhaustion(&e), "errno {code}");
        }
        let e = VipError::Exhausted {
            request_id: String::new(),
            url: "https://x/".into(),
            cause: "Too many open files".into(),
        };
        assert_eq!(e.class(), crate::vip::FailureClass::Overload);
    }

    #[test]
    fn tls_failures_name_their_cause_and_the_key_to_check() {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        let url = Url::parse("https://vip.example.test/x").unwrap();
        let with_cert = TlsSetup {
            has_identity: true,
            ca_file: Some(PathBuf::from("/etc/vip-bridge/vip-ca.pem")),
        };
        let explain = |e: E, s: &TlsSetup| explain_tls(&e, &url, s);
        // VIP refused our certificate: its alert, by its TLS name.
        for (alert, name) in [
            (A::BadCertificate, "bad_certificate"),
            (A::CertificateRevoked, "certificate_revoked"),
            (A::CertificateExpired, "certificate_expired"),
            (A::UnknownCA, "unknown_ca"),
            (A::CertificateRequired, "certificate_required"),
            (A::CertificateUnknown, "certificate_unknown"),
        ] {
            let m = explain(E::AlertReceived(alert), &with_cert);
            assert_eq!(
                m,
                format!(
                    "VIP refused our client certificate ({name}): revoked, expired, or not the \
                     one issued for this account in VIP Manager? check vip.cert_file / \
                     vip.pkcs12_file"
                )
            );
        }
        // ... or asked for one and none is configured.
        let m = explain(
            E::AlertReceived(A::CertificateRequired),
            &TlsSetup::default(),
        );
        assert!(
            m.contains("none is configured (certificate_required)"),
            "{m}"
        );
        assert!(
            m.contains("set vip.cert_file + vip.key_file, or vip.pkcs12_file"),
            "{m}"
        );
        // We refused VIP's certificate: not trusted, wrong name, expired.
        let m = explain(E::InvalidCertificate(C::UnknownIssuer), &with_cert);
        assert!(
            m.starts_with("the server's certificate is not trusted ("),
            "{m}"
        );
        assert!(
            m.contains("check vip.ca_file (/etc/vip-bridge/vip-ca.pem)"),
            "{m}"
        );
        let m = explain(E::InvalidCertificate(C::BadSignature), &TlsSetup::default());
        assert!(
            m.contains("check vip.ca_file: it is not set, so the system's CA roots"),
            "{m}"
        );
        let m = explain(E::InvalidCertificate(C::NotValidForName), &with_cert);
        assert!(
            m.starts_with("the server's certificate is not valid for the name vip.example.test"),
            "{m}"
        );
        assert!(m.contains("vip.auth_url"), "{m}");
        let m = explain(E::InvalidCertificate(C::Expired), &with_cert);
        assert!(m.contains("expired or not yet valid"), "{m}");
        assert!(m.contains("clock"), "{m}");
        // Never a Rust identifier where words belong.
        for e in [
            E::AlertReceived(A::CertificateRevoked),
            E::AlertReceived(A::Unknown(201)),
            E::InvalidCertificate(C::UnknownIssuer),
            E::InvalidCertificate(C::Revoked),
            E::InvalidCertificate(C::BadEncoding),
        ] {
            let m = explain(e, &with_cert);
            for ident in [
                "UnknownIssuer",
                "CertificateRevoked",
                "Revoked",
                "BadEncoding",
                "Unknown(",
            ] {
                assert!(!m.contains(ident), "{m}");
            }
        }
        assert!(explain(E::AlertReceived(A::Unknown(201)), &with_cert).contains("alert 201"));
    }

    #[test]
    fn presented_names_lose_their_rust_wrapping() {
        assert_eq!(presented_name("DnsName(\"vip.example\")"), "vip.example");
        assert_eq!(presented_name("IpAddress(192.0.2.1)"), "192.0.2.1");
        assert_eq!(presented_name("vip.example"), "vip.example");
        assert_eq!(presented_name("a (b)"), "a (b)");
    }

    #[test]
    fn config_errors_have_no_prefix_of_their_own() {
        // The engine says "VIP client: "; the message names the key and the file.
        let p = pki();
        let missing = p.dir.path().join("nope.pem");
        let e = VipClient::new(&VipConfig {
            cert_file: Some(missing.clone()),
            ..cfg(&p)
        })
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            format!(
                "cannot read vip.cert_file: no such file ({})",
                missing.display()
            )
        );
        let e = VipClient::new(&VipConfig {
            request_id_prefix: "bad-prefix".into(),
            ..cfg(&p)
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("vip.request_id_prefix: "), "{e}");
        assert!(!e.contains("VIP: VIP") && !e.contains("Some("), "{e}");
    }

    #[test]
    fn pem_identity_loads() {
        let p = pki();
        VipClient::new(&cfg(&p)).unwrap();
        // Certificate and key in one file, key_file unset.
        let both = p.dir.path().join("both.pem");
        let mut text = std::fs::read_to_string(&p.cert).unwrap();
        text.push_str(&std::fs::read_to_string(&p.key).unwrap());
        std::fs::write(&both, text).unwrap();
        VipClient::new(&VipConfig {
            cert_file: Some(both),
            key_file: None,
            ..cfg(&p)
        })
        .unwrap();
    }

    #[test]
    fn missing_files_are_named() {
        let p = pki();
        let missing = p.dir.path().join("nope.pem");
        for (key, c) in [
            (
                "vip.cert_file",
                VipConfig {
                    cert_file: Some(missing.clone()),
                    ..cfg(&p)
                },
            ),
            (
                "vip.key_file",
                VipConfig {
                    key_file: Some(missing.clone()),
                    ..cfg(&p)
                },
            ),
            (
                "vip.ca_file",
                VipConfig {
                    ca_file: Some(missing.clone()),
                    ..cfg(&p)
                },
            ),
            (
                "vip.pkcs12_file",
                VipConfig {
                    cert_file: None,
                    key_file: None,
                    pkcs12_file: Some(missing.clone()),
                    ..cfg(&p)
                },
            ),
        ] {
            let (what, path) = config_err(&c);
            assert_eq!(path.as_deref(), Some(missing.as_path()), "{what}");
            assert_eq!(what, format!("cannot read {key}: no such file"));
        }
    }

    #[test]
    fn garbage_pem_is_refused() {
        let p = pki();
        let junk = p.dir.path().join("junk.pem");
        std::fs::write(&junk, "this is not a certificate\n").unwrap();
        let (what, path) = config_err(&VipConfig {
            cert_file: Some(junk.clone()),
            ..cfg(&p)
        });
        assert_eq!(path.as_deref(), Some(junk.as_path()));
        assert!(what.contains("no PEM certificate"), "{what}");
        let (what, path) = config_err(&VipConfig {
            key_file: Some(junk.clone()),
            ..cfg(&p)
        });
        assert_eq!(path.as_deref(), Some(junk.as_path()));
        assert!(what.contains("no PEM private key"), "{what}");
        let (_, path) = config_err(&VipConfig {
            ca_file: Some(junk.clone()),
            ..cfg(&p)
        });
        assert_eq!(path.as_deref(), Some(junk.as_path()));
        // Broken base64 inside a PEM frame.
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let (_, path) = config_err(&VipConfig {
            cert_file: Some(junk.clone()),
            ..cfg(&p)
        });
        assert_eq!(path.as_deref(), Some(junk.as_path()));
    }

    #[test]
    fn mismatched_key_is_refused() {
        let p = pki();
        let other = rcgen::KeyPair::generate().unwrap();
        let k = p.dir.path().join("other.key");
        std::fs::write(&k, other.serialize_pem()).unwrap();
        let (what, _) = config_err(&VipConfig {
            key_file: Some(k),
            ..cfg(&p)
        });
        assert!(what.contains("do not match"), "{what}");
        assert!(
            what.contains("vip.key_file is not the key of vip.cert_file"),
            "{what}"
        );
    }

    #[test]
    fn encrypted_pem_key_says_how_to_convert() {
        let p = pki();
        let enc = p.dir.path().join("enc.key");
        // A real PKCS#8 encrypted key where openssl can make one; a PEM frame otherwise.
        if !openssl(&[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:secret",
            "-in",
            s(&p.key),
            "-out",
            s(&enc),
        ]) {
            std::fs::write(
                &enc,
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
            )
            .unwrap();
        }
        let legacy = p.dir.path().join("legacy.key");
        std::fs::write(
            &legacy,
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        for k in [enc, legacy] {
            let (what, path) = config_err(&VipConfig {
                key_file: Some(k.clone()),
                ..cfg(&p)
            });
            assert_eq!(path.as_deref(), Some(k.as_path()));
            assert!(what.contains("encrypted"), "{what}");
            assert!(
                what.contains("openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-plain.pem"),
                "{what}"
            );
            assert!(what.contains("pkcs12_file"), "{what}");
        }
    }

    /// `openssl pkcs12 -export` with extra options; None if this openssl cannot.
    fn make_p12(p: &Pki, name: &str, pass: &str, extra: &[&str]) -> Option<PathBuf> {
        let out = p.dir.path().join(name);
        let passout = format!("pass:{pass}");
        let mut args = vec![
            "pkcs12",
            "-export",
            "-in",
            s(&p.cert),
            "-inkey",
            s(&p.key),
            "-out",
            s(&out),
            "-passout",
            &passout,
            "-name",
            "vip",
        ];
        args.extend_from_slice(extra);
        openssl(&args).then_some(out)
    }

    fn p12_cfg(p: &Pki, file: PathBuf, pass: &str) -> VipConfig {
        VipConfig {
            cert_file: None,
            key_file: None,
            pkcs12_file: Some(file),
            pkcs12_password: Some(crate::secret::Secret::new(pass)),
            ..cfg(&p_clone_ca(p))
        }
    }

    fn p_clone_ca(p: &Pki) -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: p.ca.clone(),
            cert: p.cert.clone(),
            key: p.key.clone(),
        }
    }

    #[test]
    fn openssl_default_p12_loads() {
        let p = pki();
        // OpenSSL 3 default: PBES2 / PBKDF2 / AES-256-CBC, HMAC-SHA256 MAC.
        let f = make_p12(&p, "default.p12", "pä55 word", &[]).expect("openssl pkcs12 -export");
        let id = load_p12(&f, "pä55 word").unwrap();
        assert_eq!(id.chain.len(), 1);
        VipClient::new(&p12_cfg(&p, f, "pä55 word")).unwrap();
    }

    #[test]
    fn legacy_3des_p12_loads() {
        let p = pki();
        // The pre-OpenSSL-3 default for the key: PBE-SHA1-3DES, SHA-1 MAC.
        let f = make_p12(
            &p,
            "3des.p12",
            "secret",
            &[
                "-keypbe",
                "PBE-SHA1-3DES",
                "-certpbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
            ],
        )
        .expect("openssl pkcs12 -export with 3DES");
        load_p12(&f, "secret").unwrap();
        // `-legacy` (RC2-40 certificates) needs OpenSSL's legacy provider; test it where present.
        if let Some(f) = make_p12(&p, "legacy.p12", "secret", &["-legacy"]) {
            load_p12(&f, "secret").unwrap();
        }
    }

    #[test]
    fn openssl_rsa_p12_and_pem_load() {
        // VIP Manager issues RSA certificates; rcgen's default is ECDSA.
        let p = pki();
        let (key, cert) = (p.dir.path().join("rsa.key"), p.dir.path().join("rsa.pem"));
        assert!(openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            s(&key),
            "-out",
            s(&cert),
            "-subj",
            "/CN=vip-rsa",
            "-days",
            "2",
        ]));
        let rsa = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: p.ca.clone(),
            cert,
            key,
        };
        VipClient::new(&cfg(&rsa)).unwrap();
        let f = make_p12(&rsa, "rsa.p12", "secret", &[]).unwrap();
        VipClient::new(&p12_cfg(&rsa, f, "secret")).unwrap();
    }

    #[test]
    fn unencrypted_key_bag_p12_is_a_clear_error() {
        // `-keypbe NONE` stores a plain keyBag, which p12-keystore 0.1 does not read: the
        // user gets a Config error naming the file, not a half-configured client.
        let p = pki();
        let f = make_p12(
            &p,
            "nokeypbe.p12",
            "secret",
            &["-keypbe", "NONE", "-certpbe", "NONE"],
        )
        .unwrap();
        match VipClient::new(&p12_cfg(&p, f.clone(), "secret")) {
            Ok(_) => panic!("a plain keyBag p12 loaded: p12-keystore learned it, update this test"),
            Err(VipError::Config { what, path }) => {
                assert_eq!(path.as_deref(), Some(f.as_path()));
                assert!(what.contains("no private key"), "{what}");
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn p12_password_from_file_trims_newline() {
        let p = pki();
        let f = make_p12(&p, "pf.p12", "filepass", &[]).unwrap();
        let pw = p.dir.path().join("pw");
        std::fs::write(&pw, "filepass\n").unwrap();
        VipClient::new(&VipConfig {
            pkcs12_password: None,
            pkcs12_password_file: Some(pw),
            ..p12_cfg(&p, f, "")
        })
        .unwrap();
    }

    #[test]
    fn wrong_p12_passphrase_is_named() {
        let p = pki();
        let f = make_p12(&p, "w.p12", "right", &[]).unwrap();
        let (what, path) = config_err(&p12_cfg(&p, f.clone(), "wrong"));
        assert_eq!(path.as_deref(), Some(f.as_path()));
        assert!(what.contains("passphrase"), "{what}");
        let f3 = make_p12(
            &p,
            "w3.p12",
            "right",
            &[
                "-keypbe",
                "PBE-SHA1-3DES",
                "-certpbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
            ],
        )
        .unwrap();
        let (what, _) = config_err(&p12_cfg(&p, f3, "wrong"));
        assert!(what.contains("passphrase"), "{what}");
    }

    #[test]
    fn garbage_p12_is_named() {
        let p = pki();
        let f = p.dir.path().join("junk.p12");
        std::fs::write(&f, b"\x30\x03\x02\x01\x03garbage").unwrap();
        let (what, path) = config_err(&p12_cfg(&p, f.clone(), "x"));
        assert_eq!(path.as_deref(), Some(f.as_path()));
        assert!(what.contains("PKCS#12"), "{what}");
        // A PEM file given as p12.
        let (what, path) = config_err(&p12_cfg(&p, p.cert.clone(), "x"));
        assert_eq!(path.as_deref(), Some(p.cert.as_path()));
        assert!(what.contains("PKCS#12"), "{what}");
    }

    #[test]
    fn conflicting_or_incomplete_identity_is_refused() {
        let p = pki();
        let f = make_p12(&p, "c.p12", "x", &[]).unwrap();
        config_err(&VipConfig {
            pkcs12_file: Some(f),
            ..cfg(&p)
        });
        config_err(&VipConfig {
            cert_file: None,
            ..cfg(&p)
        });
        // The key is not in cert_file and key_file is unset.
        config_err(&VipConfig {
            key_file: None,
            ..cfg(&p)
        });
    }

    #[test]
    fn urls_must_be_https() {
        let p = pki();
        for (field, bad) in [
            ("auth_url", "http://userservices-auth.vip.symantec.com/x"),
            ("query_url", "not a url"),
            ("management_url", "ftp://x/"),
        ] {
            let mut c = cfg(&p);
            match field {
                "auth_url" => c.auth_url = bad.into(),
                "query_url" => c.query_url = bad.into(),
                _ => c.management_url = bad.into(),
            }
            let (what, _) = config_err(&c);
            assert!(what.contains(field), "{what}");
        }
        let (what, _) = config_err(&VipConfig {
            max_in_flight: 0,
            ..cfg(&p)
        });
        assert!(what.contains("max_in_flight"));
        let (what, _) = config_err(&VipConfig {
            request_id_prefix: "bad-prefix".into(),
            ..cfg(&p)
        });
        assert!(what.contains("prefix"));
    }

    #[tokio::test]
    async fn unreachable_and_invalid_input_do_not_hang() {
        let p = pki();
        // A port nobody listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let base = format!("https://127.0.0.1:{port}/vipuserservices/");
        let c = VipClient::new(&VipConfig {
            auth_url: format!("{base}AuthenticationService_1_8"),
            query_url: format!("{base}QueryService_1_8"),
            management_url: format!("{base}ManagementService_1_8"),
            timeout: Duration::from_secs(2),
            ..cfg(&p)
        })
        .unwrap();
        let e = c
            .check_otp("alice", "123456", None, None)
            .await
            .unwrap_err();
        assert!(e.is_unreachable(), "{e}");
        // Refused before any I/O.
        let e = c.check_otp("alice", "12", None, None).await.unwrap_err();
        assert!(matches!(e, VipError::BadRequest { .. }), "{e}");
        let e = c.poll_push_status(&[]).await.unwrap_err();
        assert!(matches!(e, VipError::BadRequest { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_burst_opens_a_bounded_number_of_connections_at_a_time() {
        let p = pki();
        // Accepts TCP and never speaks TLS: every connection stays "being opened".
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = accepted.clone();
        let hold = tokio::spawn(async move {
            let mut socks = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                socks.push(s);
            }
        });
        // A deadline far beyond the test: no attempt gives its slot up while we count.
        let c = VipClient::new(&VipConfig {
            auth_url: format!("https://{addr}/vipuserservices/AuthenticationService_1_8"),
            timeout: Duration::from_secs(30),
            max_in_flight: 32,
            ..cfg(&p)
        })
        .unwrap();
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..32 {
            let c = c.clone();
            calls
                .spawn(async move { c.check_otp(&format!("user{i}"), "123456", None, None).await });
        }
        let load = |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while load(&accepted) < crate::vip::connections::MAX_CONNECTING {
            assert!(
                std::time::Instant::now() < deadline,
                "{} connected",
                load(&accepted)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // 32 logins at once on a cold client: not 32 handshakes at once.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            load(&accepted),
            crate::vip::connections::MAX_CONNECTING,
            "connections opened at once"
        );
        calls.abort_all();
        hold.abort();
    }

    #[tokio::test]
    async fn deadline_covers_a_silent_server_and_the_in_flight_wait() {
        let p = pki();
        // Accepts TCP, never speaks TLS.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut socks = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                socks.push(s);
            }
        });
        let url = format!("https://{addr}/vipuserservices/AuthenticationService_1_8");
        let c = VipClient::new(&VipConfig {
            auth_url: url,
            timeout: Duration::from_millis(300),
            max_in_flight: 1,
            ..cfg(&p)
        })
        .unwrap();
        let start = std::time::Instant::now();
        let (a, b, c3) = tokio::join!(
            c.check_otp("alice", "123456", None, None),
            c.check_otp("bob", "123456", None, None),
            c.check_otp("carol", "123456", None, None)
        );
        let elapsed = start.elapsed();
        // The first call holds the only slot until its deadline: an outage (the server is
        // silent). The third cannot get the slot within its own bound: overload here, never
        // taken for an outage. The second is one or the other, by a hair.
        let classes: Vec<_> = [a, b, c3]
            .into_iter()
            .map(|r| r.unwrap_err().class())
            .collect();
        use crate::vip::FailureClass::{Outage, Overload};
        assert!(
            classes.iter().all(|c| matches!(c, Outage | Overload)),
            "{classes:?}"
        );
        assert!(classes.contains(&Outage), "{classes:?}");
        assert!(classes.contains(&Overload), "{classes:?}");
        // Each bound is one deadline: nobody waits for ever.
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
        hold.abort();
    }
}
