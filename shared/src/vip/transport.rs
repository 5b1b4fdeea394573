//! HTTPS to VIP: the service-neutral transport ([`crate::https`]: mutual TLS, kept-alive
//! connections, per-call deadline, bounded in-flight calls) under VIP's names, and VIP's
//! reading of answers that are not 200 (SOAP faults).

use std::sync::Arc;

use url::Url;

use super::config::VipConfig;
use super::error::VipError;
use super::soap;
use crate::https::tls::TlsFiles;
use crate::https::transport::{Limits, Outgoing};
use crate::https::{self, Service};
use crate::metrics::Metrics;

/// VIP, as the neutral transport's messages name it.
pub(crate) static VIP: Service = Service {
    name: "VIP",
    section: "vip",
    console: "VIP Manager",
    url_keys: "vip.auth_url / vip.query_url / vip.management_url",
};

pub(crate) struct Transport(https::transport::Transport);

/// The `[vip]` keys that set up TLS.
fn tls_files(cfg: &VipConfig) -> TlsFiles<'_> {
    TlsFiles {
        cert_file: cfg.cert_file.as_deref(),
        key_file: cfg.key_file.as_deref(),
        pkcs12_file: cfg.pkcs12_file.as_deref(),
        pkcs12_password: cfg.pkcs12_password.as_ref(),
        pkcs12_password_file: cfg.pkcs12_password_file.as_deref(),
        ca_file: cfg.ca_file.as_deref(),
    }
}

impl Transport {
    pub(crate) fn new(cfg: &VipConfig) -> Result<Transport, VipError> {
        let limits = Limits {
            timeout: cfg.timeout,
            max_in_flight: cfg.max_in_flight,
        };
        Ok(Transport(https::transport::Transport::new(
            &VIP,
            &tls_files(cfg),
            limits,
        )?))
    }

    pub(crate) fn set_metrics(&self, metrics: Arc<Metrics>) {
        self.0.set_metrics(metrics);
    }

    /// POSTs one SOAP body; returns the body of a 200 answer. The bounds (in-flight slot,
    /// deadline) and the classes of a failed exchange are the neutral transport's
    /// ([`https::transport::Transport::send`]); an answer that is not 200 is an outage when it
    /// is 502/503/504 or a SOAP `Server` fault, a protocol error otherwise.
    pub(crate) async fn post(
        &self,
        url: &Url,
        body: String,
        reserved: bool,
    ) -> Result<Vec<u8>, VipError> {
        let reply = self.0.send(url, Outgoing::soap(body), reserved).await?;
        let (status, buf) = (reply.status, reply.body);
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
        Err(if outage {
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
        })
    }
}

impl From<https::Error> for VipError {
    fn from(e: https::Error) -> VipError {
        let request_id = String::new();
        match e {
            https::Error::Unreachable { url, cause } => VipError::Unreachable {
                url,
                cause,
                request_id,
            },
            https::Error::Overloaded {
                url,
                waited_ms,
                limit,
            } => VipError::Overloaded {
                url,
                waited_ms,
                limit,
            },
            https::Error::Exhausted { url, cause } => VipError::Exhausted {
                url,
                cause,
                request_id,
            },
            https::Error::TlsRefused { url, cause } => VipError::TlsRefused {
                url,
                cause,
                request_id,
            },
            https::Error::Protocol { url, cause } => VipError::Protocol {
                url,
                cause,
                request_id,
            },
            https::Error::Config { what, path } => VipError::Config { what, path },
        }
    }
}

/// Checks a configured URL (`vip.<key>`): absolute https with a host.
pub(crate) fn parse_url(key: &str, s: &str) -> Result<Url, VipError> {
    Ok(https::tls::parse_url(&VIP, key, s)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::https::tls::{presented_name, Identity, TlsSetup};
    use crate::https::transport::is_local_exhaustion;
    use crate::vip::VipClient;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    fn explain_tls(e: &rustls::Error, url: &Url, setup: &TlsSetup) -> String {
        crate::https::tls::explain_tls(&VIP, e, url, setup)
    }

    fn load_p12(path: &Path, password: &str) -> Result<Identity, VipError> {
        Ok(crate::https::tls::load_p12(&VIP, path, password)?)
    }
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
        while load(&accepted) < crate::https::connections::MAX_CONNECTING {
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
            crate::https::connections::MAX_CONNECTING,
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
