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

fn validity(p: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(3650);
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
        &dir.join("client.p12.password"),
        format!("{}\n", paths.p12_password).as_bytes(),
        true,
    )?;
    Ok(paths)
}
