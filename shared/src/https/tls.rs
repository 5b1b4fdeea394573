//! The client side of mutual TLS with an MFA service: the client identity (PEM or PKCS#12),
//! the CA roots, the rustls configuration, and what a TLS failure means in the admin's terms.
//! Every message names the service and its configuration keys ([`Service`]).

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use url::Url;
use zeroize::Zeroizing;

use super::{Error, Service};
use crate::secret::Secret;

/// The client certificate chain and key, however they were supplied.
pub(crate) struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

/// The files of a service's section that set up TLS (`vip.cert_file`, ...).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TlsFiles<'a> {
    pub(crate) cert_file: Option<&'a Path>,
    pub(crate) key_file: Option<&'a Path>,
    pub(crate) pkcs12_file: Option<&'a Path>,
    pub(crate) pkcs12_password: Option<&'a Secret>,
    pub(crate) pkcs12_password_file: Option<&'a Path>,
    pub(crate) ca_file: Option<&'a Path>,
}

/// The parts of the service's section a TLS failure's explanation names.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsSetup {
    /// A client certificate (PEM or PKCS#12) is configured.
    pub(crate) has_identity: bool,
    /// `<section>.ca_file`, or `None` for the system roots.
    pub(crate) ca_file: Option<PathBuf>,
}

impl TlsSetup {
    pub(crate) fn of(files: &TlsFiles<'_>) -> TlsSetup {
        TlsSetup {
            has_identity: files.pkcs12_file.is_some() || files.cert_file.is_some(),
            ca_file: files.ca_file.map(Path::to_path_buf),
        }
    }
}

/// The rustls error anywhere in the chain, if any: the handshake reached TLS and failed on
/// certificates or alerts, which no retry or fail-open fixes. (`io::Error::source` skips the
/// error it wraps, so each io::Error is opened with `get_ref`.)
pub(crate) fn find_rustls<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
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

/// What a TLS failure with the service means, in the admin's terms: which side refused what,
/// and the key to look at. Our side refusing the service's certificate (not trusted, wrong
/// name, expired) is told apart from the service refusing ours (its alert), and a missing
/// client certificate from a refused one.
pub(crate) fn explain_tls(svc: &Service, e: &rustls::Error, url: &Url, setup: &TlsSetup) -> String {
    use rustls::{AlertDescription as A, CertificateError as C};
    let (n, s, console) = (svc.name, svc.section, svc.console);
    let host = url.host_str().unwrap_or("the host");
    let ca = match &setup.ca_file {
        Some(p) => format!("check {s}.ca_file ({}): it must hold the CA that issued {n}'s certificate", p.display()),
        None => format!("check {s}.ca_file: it is not set, so the system's CA roots are used, and they do not include {n}'s issuer"),
    };
    match e {
        rustls::Error::AlertReceived(alert) => {
            let name = alert_name(*alert);
            // Alerts about our certificate. DecryptError: our certificate's signature (or our
            // proof of its key) did not verify: one from another CA that has the same name as
            // the service's.
            let about_our_certificate = matches!(
                alert,
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
            );
            match alert {
                _ if about_our_certificate && !setup.has_identity => format!(
                    "{n} asked for a client certificate and none is configured ({name}): \
                     set {s}.cert_file + {s}.key_file, or {s}.pkcs12_file, to the \
                     certificate issued for this account in {console}"
                ),
                _ if about_our_certificate => format!(
                    "{n} refused our client certificate ({name}): revoked, expired, or not the \
                     one issued for this account in {console}? check {s}.cert_file / \
                     {s}.pkcs12_file"
                ),
                A::HandshakeFailure | A::ProtocolVersion | A::InsufficientSecurity => format!(
                    "{n} ended the TLS handshake ({name}): no TLS version or cipher suite in \
                     common, or it refused our client certificate (check {s}.cert_file / \
                     {s}.pkcs12_file)"
                ),
                _ => format!("{n} ended the TLS handshake with the alert {name}"),
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
                     the host in {}",
                    svc.url_keys
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
                 machine's clock (timedatectl); if it is right, {host} is not serving {n}'s \
                 certificate"
            ),
            (C::Revoked, cert) => format!(
                "the server's certificate is not trusted ({cert}): {host} is not serving {n}'s \
                 current certificate"
            ),
            (_, cert) => format!("the server's certificate is not trusted ({cert}): {ca}"),
        },
        rustls::Error::NoCertificatesPresented => {
            format!("the server presented no certificate: {host} is not {n}")
        }
        rustls::Error::PeerIncompatible(_) => format!(
            "the TLS handshake failed: the server and we have no TLS version or cipher suite in \
             common ({n} speaks TLS 1.2 and 1.3)"
        ),
        rustls::Error::PeerMisbehaved(_) | rustls::Error::InvalidMessage(_) => format!(
            "the TLS handshake failed: {host} does not speak TLS as {n} does (not {n}, or a \
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
pub(crate) fn presented_name(p: &str) -> &str {
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

/// Checks a configured URL of `<section>.<key>`: absolute https with a host.
pub(crate) fn parse_url(svc: &Service, key: &str, s: &str) -> Result<Url, Error> {
    let sec = svc.section;
    let url = Url::parse(s)
        .map_err(|e| Error::config(format!("{sec}.{key} {s:?} is not a URL: {e}"), None))?;
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(Error::config(
            format!(
                "{sec}.{key} {s:?} must be an https:// URL ({} requires mutual TLS)",
                svc.name
            ),
            None,
        ));
    }
    Ok(url)
}

/// TLS 1.2 and 1.3 with ring, the configured roots, and the client identity if any.
pub(crate) fn tls_config(
    svc: &Service,
    files: &TlsFiles<'_>,
) -> Result<rustls::ClientConfig, Error> {
    let (n, s) = (svc.name, svc.section);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = root_store(svc, files)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::config(format!("cannot set up TLS for {n}: {e}"), None))?
        .with_root_certificates(roots);
    let config = match load_identity(svc, files)? {
        Some((id, path)) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(|e| {
                let keys = if files.pkcs12_file.is_some() {
                    format!("the private key in {s}.pkcs12_file is not the key of its certificate")
                } else if files.key_file.is_some() {
                    format!("{s}.key_file is not the key of {s}.cert_file")
                } else {
                    format!("the private key in {s}.cert_file is not the key of its certificate")
                };
                let what = match e {
                    rustls::Error::InconsistentKeys(_) => format!(
                        "the client certificate and private key do not match: {keys}; use the \
                         key made with this certificate ({}'s download holds both)",
                        svc.console
                    ),
                    other => format!(
                        "the client certificate and private key are unusable together ({keys}?): {other}"
                    ),
                };
                Error::config(what, Some(&path))
            })?,
        None => {
            tracing::warn!(
                "no {n} client certificate configured: {n} will refuse the TLS handshake"
            );
            builder.with_no_client_auth()
        }
    };
    Ok(config)
}

fn root_store(svc: &Service, files: &TlsFiles<'_>) -> Result<rustls::RootCertStore, Error> {
    let s = svc.section;
    let mut roots = rustls::RootCertStore::empty();
    match files.ca_file {
        Some(path) => {
            let key = format!("{s}.ca_file");
            let pem = read(path, &key)?;
            let certs = pem_certs(&pem, path, &key)?;
            for c in certs {
                roots.add(c).map_err(|e| {
                    Error::config(
                        format!("{key} holds an unusable certificate: {e}"),
                        Some(path),
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::config(
                    format!(
                        "no system CA certificates found ({} errors) to check {}'s certificate with; set {s}.ca_file",
                        found.errors.len(),
                        svc.name
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
fn read(path: &Path, key: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
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
        Error::config(format!("cannot read {key}: {why}"), Some(path))
    })
}

fn pem_certs(pem: &[u8], path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut BufReader::new(pem))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::config(format!("{what} is not valid PEM: {e}"), Some(path)))?;
    if certs.is_empty() {
        return Err(Error::config(
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

fn pem_key(
    svc: &Service,
    pem: &[u8],
    path: &Path,
    key: &str,
) -> Result<Option<PrivateKeyDer<'static>>, Error> {
    if is_encrypted_pem(pem) {
        return Err(Error::config(
            format!(
                "{key}: the private key is encrypted, which is not supported; decrypt it once \
                 with `openssl pkcs8 -topk8 -nocrypt -in key.pem -out key-plain.pem` (and \
                 protect that file), or use the .p12 file with {}.pkcs12_file and its passphrase",
                svc.section
            ),
            Some(path),
        ));
    }
    rustls_pemfile::private_key(&mut BufReader::new(pem))
        .map_err(|e| Error::config(format!("{key} is not valid PEM: {e}"), Some(path)))
}

/// The configured client identity and the file to name in errors about it.
pub(crate) fn load_identity(
    svc: &Service,
    files: &TlsFiles<'_>,
) -> Result<Option<(Identity, PathBuf)>, Error> {
    let s = svc.section;
    match (files.pkcs12_file, files.cert_file, files.key_file) {
        (Some(p12), None, None) => {
            let password = p12_password(svc, files)?;
            Ok(Some((load_p12(svc, p12, &password)?, p12.to_path_buf())))
        }
        (Some(p12), _, _) => Err(Error::config(
            format!("set either {s}.pkcs12_file or {s}.cert_file + {s}.key_file, not both"),
            Some(p12),
        )),
        (None, Some(cert), key) => {
            let cert_key = format!("{s}.cert_file");
            let cert_pem = read(cert, &cert_key)?;
            let chain = pem_certs(&cert_pem, cert, &cert_key)?;
            let key = match key {
                Some(k) => {
                    let key_key = format!("{s}.key_file");
                    let key_pem = read(k, &key_key)?;
                    pem_key(svc, &key_pem, k, &key_key)?.ok_or_else(|| {
                        Error::config(
                            format!("{key_key} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"),
                            Some(k),
                        )
                    })?
                }
                // The key may sit in the certificate file itself.
                None => pem_key(svc, &cert_pem, cert, &cert_key)?.ok_or_else(|| {
                    Error::config(
                        format!("{s}.cert_file holds no private key and {s}.key_file is not set"),
                        Some(cert),
                    )
                })?,
            };
            Ok(Some((Identity { chain, key }, cert.to_path_buf())))
        }
        (None, None, Some(key)) => Err(Error::config(
            format!("{s}.key_file is set but {s}.cert_file is not"),
            Some(key),
        )),
        (None, None, None) => Ok(None),
    }
}

fn p12_password(svc: &Service, files: &TlsFiles<'_>) -> Result<Zeroizing<String>, Error> {
    let s = svc.section;
    match (files.pkcs12_password, files.pkcs12_password_file) {
        (Some(_), Some(f)) => Err(Error::config(
            format!("set either {s}.pkcs12_password or {s}.pkcs12_password_file, not both"),
            Some(f),
        )),
        (Some(p), None) => Ok(Zeroizing::new(p.expose().to_owned())),
        (None, Some(f)) => {
            let raw = read(f, &format!("{s}.pkcs12_password_file"))?;
            let text = std::str::from_utf8(&raw).map_err(|_| {
                Error::config(format!("{s}.pkcs12_password_file is not UTF-8"), Some(f))
            })?;
            let text = text.strip_suffix('\n').unwrap_or(text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            Ok(Zeroizing::new(text.to_owned()))
        }
        // An export without a passphrase is legal; p12s always carry one in practice.
        (None, None) => Ok(Zeroizing::new(String::new())),
    }
}

pub(crate) fn load_p12(svc: &Service, path: &Path, password: &str) -> Result<Identity, Error> {
    use p12_keystore::error::Error as P12Error;
    let s = svc.section;
    let der = read(path, &format!("{s}.pkcs12_file"))?;
    let store = p12_keystore::KeyStore::from_pkcs12(&der, password).map_err(|e| {
        let what = match e {
            P12Error::MacError(_) => format!(
                "wrong passphrase for {s}.pkcs12_file (integrity check failed): check \
                 {s}.pkcs12_password / {s}.pkcs12_password_file"
            ),
            P12Error::Pkcs5Error(_) | P12Error::UnpadError | P12Error::InvalidLength => format!(
                "cannot decrypt {s}.pkcs12_file: wrong passphrase? check {s}.pkcs12_password / \
                 {s}.pkcs12_password_file"
            ),
            P12Error::UnsupportedEncryptionScheme
            | P12Error::UnsupportedMacAlgorithm
            | P12Error::UnsupportedContentType => format!(
                "{s}.pkcs12_file: the PKCS#12 file uses an unsupported scheme ({e}); re-export \
                 it with `openssl pkcs12 -export` (AES-256/SHA-256) or use PEM {s}.cert_file + \
                 {s}.key_file"
            ),
            P12Error::DerError(_) | P12Error::InvalidVersion => {
                format!("{s}.pkcs12_file is not a PKCS#12 (DER) file: {e}")
            }
            other => format!("{s}.pkcs12_file: unreadable PKCS#12 file: {other}"),
        };
        Error::config(what, Some(path))
    })?;
    let (_alias, kc) = store.private_key_chain().ok_or_else(|| {
        Error::config(
            format!("{s}.pkcs12_file: the PKCS#12 file holds no private key with its certificate"),
            Some(path),
        )
    })?;
    let chain: Vec<CertificateDer<'static>> = kc
        .chain()
        .iter()
        .map(|c| CertificateDer::from(c.as_der().to_vec()))
        .collect();
    if chain.is_empty() {
        return Err(Error::config(
            format!("{s}.pkcs12_file: the PKCS#12 file holds no certificate"),
            Some(path),
        ));
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(kc.key().to_vec()));
    Ok(Identity { chain, key })
}
