//! Mutual TLS: rustls configurations (TLS 1.3 only, one crypto provider, ALPN h2,
//! CRLs with expiry enforced), reading certificates, keys and CRLs, and the
//! permission rule for private key files. What a certificate *means* (its
//! certfed identity) is decided above this layer; here certificates are bytes
//! that verify against the trust anchors.
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A TLS setup problem, naming the file and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The crypto provider every configuration is built with (ring). Building each
/// config with an explicit provider avoids depending on process-wide defaults.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs the provider as the process default (once; later calls are no-ops).
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Paths of the TLS material of a node or an operator client.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub crls: Vec<PathBuf>,
}

/// Loaded TLS material.
#[derive(Clone)]
pub struct TlsMaterial {
    pub roots: Arc<RootCertStore>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("chain_len", &self.chain.len())
            .field("crls", &self.crls.len())
            .finish_non_exhaustive()
    }
}

/// Reads the PEM certificates of `path`; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError(format!("{}: cannot read certificates: {e}", path.display())))?
        .collect();
    let certs =
        certs.map_err(|e| TlsError(format!("{}: invalid PEM certificate: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) found",
            path.display()
        )));
    }
    Ok(certs)
}

/// SHA-256 digests of the demo private keys published in `certs-example/`
/// (computed by `build.rs` from the files themselves).
const DEMO_KEY_SHA256: &[[u8; 32]] = include!(concat!(env!("OUT_DIR"), "/demo_keys.rs"));

/// Whether `contents` is one of the private keys published in `certs-example/`.
pub fn is_published_demo_key(contents: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let digest: [u8; 32] = Sha256::digest(contents).into();
    DEMO_KEY_SHA256.contains(&digest)
}

/// Refuses a private key file that group or others can access. The one
/// exception is a key published in `certs-example/` (anyone can read it in
/// the repository, so its file mode protects nothing, and git cannot record
/// 0600): it is accepted with a warning that it must never be used outside a
/// demonstration.
pub fn check_private_permissions(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| TlsError(format!("{}: cannot read private key: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        if std::fs::read(path).is_ok_and(|c| is_published_demo_key(&c)) {
            tracing::warn!(
                key = %path.display(),
                "this is a DEMO private key published in certs-example/; anyone can impersonate its holder: never use it outside a demonstration"
            );
            return Ok(());
        }
        return Err(TlsError(format!(
            "{}: private key is accessible by group or others (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// Reads a PEM private key (PKCS#8, SEC1 or PKCS#1), checking its permissions first.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    check_private_permissions(path)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        TlsError(format!(
            "{}: cannot read PEM private key: {e}",
            path.display()
        ))
    })
}

/// Reads PEM CRLs.
pub fn load_crls(
    paths: &[PathBuf],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut out = Vec::new();
    for p in paths {
        let crls: Result<Vec<_>, _> = CertificateRevocationListDer::pem_file_iter(p)
            .map_err(|e| TlsError(format!("{}: cannot read CRL: {e}", p.display())))?
            .collect();
        let crls = crls.map_err(|e| TlsError(format!("{}: invalid PEM CRL: {e}", p.display())))?;
        if crls.is_empty() {
            return Err(TlsError(format!(
                "{}: no PEM CRL (-----BEGIN X509 CRL-----) found",
                p.display()
            )));
        }
        out.extend(crls);
    }
    Ok(out)
}

/// Reads and cross-checks all TLS material: the key matches the certificate.
pub fn load_material(files: &TlsFiles) -> Result<TlsMaterial, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(&files.ca)? {
        roots.add(c).map_err(|e| {
            TlsError(format!(
                "{}: not a usable CA certificate: {e}",
                files.ca.display()
            ))
        })?;
    }
    let chain = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let crls = load_crls(&files.crls)?;
    // Check that the key belongs to the certificate.
    let signing_key = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| {
            TlsError(format!(
                "{}: unsupported private key: {e}",
                files.key.display()
            ))
        })?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing_key);
    certified.keys_match().map_err(|e| {
        TlsError(format!(
            "{} does not belong to {}: {e}",
            files.key.display(),
            files.cert.display()
        ))
    })?;
    Ok(TlsMaterial {
        roots: Arc::new(roots),
        chain,
        key: Arc::new(key),
        crls,
    })
}

/// Server side: TLS 1.3 only, client certificates required and verified against
/// the trust anchors and CRLs (expired CRLs refused), ALPN h2.
pub fn server_config(m: &TlsMaterial) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(m.roots.clone(), provider.clone())
        .with_crls(m.crls.clone())
        .only_check_end_entity_revocation()
        .enforce_revocation_expiration()
        .build()
        .map_err(|e| TlsError(format!("client verifier: {e}")))?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(format!("TLS 1.3: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.chain.clone(), m.key.clone_key())
        .map_err(|e| TlsError(format!("server certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Client side (peer links and the operator CLI): TLS 1.3, our certificate,
/// server verified against the trust anchors and CRLs, ALPN h2.
pub fn client_config(m: &TlsMaterial) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(m.roots.clone(), provider.clone())
        .with_crls(m.crls.clone())
        .only_check_end_entity_revocation()
        .enforce_revocation_expiration()
        .build()
        .map_err(|e| TlsError(format!("server verifier: {e}")))?;
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError(format!("TLS 1.3: {e}")))?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(m.chain.clone(), m.key.clone_key())
        .map_err(|e| TlsError(format!("client certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serial number of a certificate, lower-case hex (as CRLs list it).
pub fn cert_serial(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::*;
    X509Certificate::from_der(cert.as_ref())
        .ok()
        .map(|(_, c)| c.serial.to_str_radix(16))
}

/// Serials revoked by the CRLs, lower-case hex.
pub fn revoked_serials(
    crls: &[CertificateRevocationListDer<'_>],
) -> std::collections::HashSet<String> {
    use x509_parser::prelude::*;
    let mut out = std::collections::HashSet::new();
    for crl in crls {
        if let Ok((_, parsed)) = CertificateRevocationList::from_der(crl.as_ref()) {
            for r in parsed.iter_revoked_certificates() {
                out.insert(r.user_certificate.to_str_radix(16));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn open_private_keys_are_refused_except_the_published_demo_keys() {
        let dir = tempfile::tempdir().unwrap();
        let demo = dir.path().join("node-a.key");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-example/node-a.key"),
            &demo,
        )
        .unwrap();
        std::fs::set_permissions(&demo, std::fs::Permissions::from_mode(0o644)).unwrap();
        check_private_permissions(&demo).expect("a published demo key is accepted at 0644");

        let mine = dir.path().join("mine.key");
        let mut other = std::fs::read(&demo).unwrap();
        other.insert(0, b'\n');
        std::fs::write(&mine, other).unwrap();
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_private_permissions(&mine).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_private_permissions(&mine).unwrap();
    }
}
