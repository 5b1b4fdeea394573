//! Test PKI: a CA, a server certificate (localhost, 127.0.0.1, ::1) and a client certificate
//! (PEM and PKCS#12), like the certificate a VIP account downloads from VIP Manager.

use std::path::{Path, PathBuf};

use p12_keystore::{Certificate as P12Cert, KeyStore, KeyStoreEntry, PrivateKeyChain};
use rand::distributions::Alphanumeric;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use sha1::{Digest, Sha1};

use crate::SimError;

/// Where [`generate`] wrote its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// `ca.pem`: signs both the server and the client certificate.
    pub ca_cert: PathBuf,
    /// `server.pem`
    pub server_cert: PathBuf,
    /// `server.key` (PKCS#8 PEM)
    pub server_key: PathBuf,
    /// `client.pem`
    pub client_cert: PathBuf,
    /// `client.key` (PKCS#8 PEM, unencrypted)
    pub client_key: PathBuf,
    /// `client.p12` (client key + certificate + CA; PBES2/AES-256, HMAC-SHA256)
    pub client_p12: PathBuf,
    /// The PKCS#12 password (also written to `client.p12.password`).
    pub p12_password: String,
    /// `client.p12.password`
    pub p12_password_file: PathBuf,
    /// SHA-256 fingerprint of the CA certificate, as `openssl x509 -fingerprint -sha256`
    /// writes it (`AB:CD:...`).
    pub ca_sha256: String,
    /// First and last day (UTC, `YYYY-MM-DD`) every certificate is valid.
    pub valid_from: String,
    pub valid_until: String,
}

impl CertPaths {
    /// What [`generate`] wrote, one file a line: its name, what it is, and the config key that
    /// takes it (the bridge's `vip.*`, the simulator's `tls.*`), then the CA's fingerprint and
    /// the validity. Never the PKCS#12 password itself.
    pub fn summary(&self) -> String {
        let files: [(&Path, &str, &str); 7] = [
            (
                &self.ca_cert,
                "test CA certificate (signs the server and client certificates)",
                "vip-bridge: vip.ca_file   vip-sim: tls.client_ca",
            ),
            (
                &self.server_cert,
                "simulator's server certificate (localhost, 127.0.0.1, ::1)",
                "vip-sim: tls.cert",
            ),
            (
                &self.server_key,
                "its private key (mode 0600)",
                "vip-sim: tls.key",
            ),
            (
                &self.client_cert,
                "the bridge's client certificate (as VIP Manager issues one)",
                "vip-bridge: vip.cert_file",
            ),
            (
                &self.client_key,
                "its private key, unencrypted PEM (mode 0600)",
                "vip-bridge: vip.key_file",
            ),
            (
                &self.client_p12,
                "client certificate + key + CA as PKCS#12 (mode 0600)",
                "vip-bridge: vip.pkcs12_file (instead of cert_file + key_file)",
            ),
            (
                &self.p12_password_file,
                "passphrase of client.p12 (mode 0600)",
                "vip-bridge: vip.pkcs12_password_file",
            ),
        ];
        let dir = self
            .ca_cert
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let mut out = format!("wrote a test PKI to {dir}:\n");
        for (path, what, key) in files {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push_str(&format!("  {name:<20} {what}\n  {:<20}   -> {key}\n", ""));
        }
        out.push_str(&format!(
            "CA SHA-256 fingerprint: {}\nvalid from {} to {} (UTC)\n",
            self.ca_sha256, self.valid_from, self.valid_until
        ));
        out
    }
}

fn cert_err(e: impl std::fmt::Display) -> SimError {
    SimError::Cert(e.to_string())
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "vip-sim");
    d.push(DnType::CommonName, cn);
    d
}

/// Yesterday to ten years from now, for every certificate.
fn validity_window() -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    (
        now - time::Duration::days(1),
        now + time::Duration::days(3650),
    )
}

fn day(t: time::OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// `AB:CD:...`: SHA-256 of `der` (with rustls' own SHA-256, no further dependency).
fn sha256_fingerprint(der: &[u8]) -> Result<String, SimError> {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let hash = suite
        .tls13()
        .ok_or_else(|| SimError::Cert("no SHA-256 in rustls' provider".into()))?
        .common
        .hash_provider
        .hash(der);
    Ok(hash
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

fn write(path: &Path, data: &[u8], secret: bool) -> Result<(), SimError> {
    std::fs::write(path, data).map_err(|e| SimError::Io(format!("{}: {e}", path.display())))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| SimError::Io(format!("{}: {e}", path.display())))?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

/// Generates a fresh CA, server and client certificate into `dir` (created if missing):
/// `ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key`, `client.p12`,
/// `client.p12.password`.
pub fn generate(dir: &Path) -> Result<CertPaths, SimError> {
    std::fs::create_dir_all(dir).map_err(|e| SimError::Io(format!("{}: {e}", dir.display())))?;
    let (not_before, not_after) = validity_window();
    let validity = |p: &mut CertificateParams| {
        p.not_before = not_before;
        p.not_after = not_after;
    };

    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca_params.distinguished_name = dn("vip-sim test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca_params);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(cert_err)?;

    let server_key = KeyPair::generate().map_err(cert_err)?;
    let mut sp = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(cert_err)?;
    sp.distinguished_name = dn("localhost");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    sp.use_authority_key_identifier_extension = true;
    validity(&mut sp);
    let server_cert = sp
        .signed_by(&server_key, &ca_cert, &ca_key)
        .map_err(cert_err)?;

    let client_key = KeyPair::generate().map_err(cert_err)?;
    let mut cp = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    cp.distinguished_name = dn("vip-bridge test client");
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    cp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    cp.use_authority_key_identifier_extension = true;
    validity(&mut cp);
    let client_cert = cp
        .signed_by(&client_key, &ca_cert, &ca_key)
        .map_err(cert_err)?;

    let paths = CertPaths {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        client_p12: dir.join("client.p12"),
        p12_password: rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(20)
            .map(char::from)
            .collect(),
        p12_password_file: dir.join("client.p12.password"),
        ca_sha256: sha256_fingerprint(ca_cert.der())?,
        valid_from: day(not_before),
        valid_until: day(not_after),
    };
    write(&paths.ca_cert, ca_cert.pem().as_bytes(), false)?;
    write(&paths.server_cert, server_cert.pem().as_bytes(), false)?;
    write(
        &paths.server_key,
        server_key.serialize_pem().as_bytes(),
        true,
    )?;
    write(&paths.client_cert, client_cert.pem().as_bytes(), false)?;
    write(
        &paths.client_key,
        client_key.serialize_pem().as_bytes(),
        true,
    )?;

    let leaf = P12Cert::from_der(client_cert.der()).map_err(cert_err)?;
    let ca = P12Cert::from_der(ca_cert.der()).map_err(cert_err)?;
    let local_key_id = Sha1::digest(client_cert.der().as_ref()).to_vec();
    let chain = PrivateKeyChain::new(client_key.serialize_der(), local_key_id, vec![leaf, ca]);
    let mut ks = KeyStore::new();
    ks.add_entry("vip-client", KeyStoreEntry::PrivateKeyChain(chain));
    let p12 = ks.writer(&paths.p12_password).write().map_err(cert_err)?;
    write(&paths.client_p12, &p12, true)?;
    write(
        &paths.p12_password_file,
        format!("{}\n", paths.p12_password).as_bytes(),
        true,
    )?;
    Ok(paths)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_as_openssl_writes_it() {
        assert_eq!(
            sha256_fingerprint(b"abc").unwrap(),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn summary_labels_every_file_with_its_config_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = generate(dir.path()).unwrap();
        let s = p.summary();
        for (file, key) in [
            ("ca.pem", "vip-bridge: vip.ca_file"),
            ("ca.pem", "vip-sim: tls.client_ca"),
            ("server.pem", "vip-sim: tls.cert"),
            ("server.key", "vip-sim: tls.key"),
            ("client.pem", "vip-bridge: vip.cert_file"),
            ("client.key", "vip-bridge: vip.key_file"),
            ("client.p12", "vip-bridge: vip.pkcs12_file"),
            (
                "client.p12.password",
                "vip-bridge: vip.pkcs12_password_file",
            ),
        ] {
            assert!(dir.path().join(file).is_file(), "{file}");
            // The key is on the line after the file's.
            let at = s
                .lines()
                .position(|l| l.trim_start().starts_with(&format!("{file} ")))
                .unwrap_or_else(|| panic!("{file} not listed: {s}"));
            let next = s.lines().nth(at + 1).unwrap();
            assert!(next.contains(key), "{file}: {next}");
        }
        let der = rustls_pemfile::certs(&mut std::io::BufReader::new(
            std::fs::read(&p.ca_cert).unwrap().as_slice(),
        ))
        .next()
        .unwrap()
        .unwrap();
        let fp = sha256_fingerprint(&der).unwrap();
        assert!(
            s.contains(&format!("CA SHA-256 fingerprint: {fp}\n")),
            "{s}"
        );
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(s.contains(&format!(
            "valid from {} to {} (UTC)",
            p.valid_from, p.valid_until
        )));
        assert!(p.valid_from < p.valid_until && p.valid_from.len() == 10);
        assert!(
            !s.contains(&p.p12_password),
            "the password is not in the listing"
        );
    }
}
