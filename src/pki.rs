//! Federation PKI: the CA, node and operator TLS certificates, CRLs and the separate
//! Ed25519 message-signing keys, plus careful key-file handling.
//!
//! Identities are encoded only as URI SANs ([`Identity::to_uri`]): node certificates
//! carry `urn:certfed:node:<id>` (EKU serverAuth + clientAuth), operator certificates
//! `urn:certfed:operator:<name>` (EKU clientAuth only). TLS keys are ECDSA P-256, which
//! every TLS client we care about (rustls, Go's grpcurl, OpenSSL) accepts.
//!
//! Serial numbers are random (126 bits of entropy, always 16 bytes, positive); their
//! canonical text form ("serial hex") is lowercase hex of the minimal big-endian
//! magnitude, with no separators, as produced by [`cert_serial_hex`] and [`read_crl`].
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::domain::identity::{Identity, validate_name};

/// File name of the CA certificate inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key inside a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// File name of the CA's CRL inside a CA directory.
pub const CA_CRL_FILE: &str = "ca.crl";
/// Suffix of a TLS certificate file (`<id>.crt`).
pub const CERT_SUFFIX: &str = ".crt";
/// Suffix of a TLS private key file (`<id>.key`).
pub const KEY_SUFFIX: &str = ".key";
/// Suffix of a message-signing private key file (`<id>.sign.key`).
pub const SIGN_KEY_SUFFIX: &str = ".sign.key";
/// Suffix of a message-signing public key file (`<id>.sign.pub`).
pub const SIGN_PUB_SUFFIX: &str = ".sign.pub";

/// Mode of private key files.
pub const PRIVATE_MODE: u32 = 0o600;
/// Mode of public files (certificates, CRLs, public keys).
pub const PUBLIC_MODE: u32 = 0o644;

/// Validity period of a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From one hour ago (tolerates clock skew between nodes) to `days` days from now.
    pub fn days(days: u32) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(i64::from(days)),
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.not_after <= self.not_before {
            bail!(
                "invalid validity: not_after ({}) is not after not_before ({}); use at least 1 day",
                self.not_after,
                self.not_before
            );
        }
        Ok(())
    }
}

/// A freshly issued certificate with its private key.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial_hex: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("serial_hex", &self.serial_hex)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// One entry of a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Canonical serial hex of the revoked certificate.
    pub serial_hex: String,
    /// When the CA processed the revocation.
    pub revoked_at: OffsetDateTime,
}

/// A federation certificate authority able to issue certificates and CRLs.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a self-signed CA (ECDSA P-256, path length 0: it signs only end entities).
    pub fn create(name: &str, validity: Validity) -> anyhow::Result<Ca> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            bail!("invalid CA name {name:?}: use 1-64 characters");
        }
        validity.check()?;
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params
            .self_signed(&key)
            .context("self-signing the CA certificate")?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads an existing CA (certificate and its private key) to issue more.
    pub fn load(cert_pem: &str, key_pem: &str) -> anyhow::Result<Ca> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| anyhow!("cannot parse the CA private key: {e}"))?;
        let der = pem_der(cert_pem, "CERTIFICATE").context("reading the CA certificate")?;
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| anyhow!("cannot parse the CA certificate: {e}"))?;
        if !x509.is_ca() {
            bail!("the CA certificate is not a CA (basicConstraints cA is not set)");
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            bail!("the CA private key does not belong to the CA certificate");
        }
        let issuer = Issuer::from_ca_cert_der(&der.clone().into(), key)
            .map_err(|e| anyhow!("cannot use the CA certificate as an issuer: {e}"))?;
        Ok(Ca {
            issuer,
            cert_pem: cert_pem.to_string(),
        })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key (PKCS#8 PEM).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Node TLS certificate: URI SAN `urn:certfed:node:<id>` plus the given DNS and IP
    /// SANs; EKU serverAuth + clientAuth; CN=<id>.
    pub fn issue_node(
        &self,
        node_id: &str,
        dns: &[String],
        ips: &[IpAddr],
        validity: Validity,
    ) -> anyhow::Result<Issued> {
        validate_name(node_id).map_err(|e| anyhow!("node id: {e}"))?;
        let mut sans = vec![SanType::URI(
            Identity::Node(node_id.to_string())
                .to_uri()
                .try_into()
                .context("encoding the node URI SAN")?,
        )];
        for d in dns {
            let d = d.trim();
            if d.is_empty() {
                bail!("empty DNS name given for node {node_id}");
            }
            sans.push(SanType::DnsName(d.to_string().try_into().map_err(|e| {
                anyhow!("invalid DNS name {d:?} for node {node_id}: {e}")
            })?));
        }
        sans.extend(ips.iter().copied().map(SanType::IpAddress));
        self.issue_leaf(
            node_id,
            sans,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            validity,
        )
    }

    /// Operator client certificate: URI SAN `urn:certfed:operator:<name>`; EKU
    /// clientAuth only; CN=<name>.
    pub fn issue_operator(&self, name: &str, validity: Validity) -> anyhow::Result<Issued> {
        validate_name(name).map_err(|e| anyhow!("operator name: {e}"))?;
        let sans = vec![SanType::URI(
            Identity::Operator(name.to_string())
                .to_uri()
                .try_into()
                .context("encoding the operator URI SAN")?,
        )];
        self.issue_leaf(
            name,
            sans,
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            validity,
        )
    }

    fn issue_leaf(
        &self,
        cn: &str,
        sans: Vec<SanType>,
        ekus: Vec<ExtendedKeyUsagePurpose>,
        validity: Validity,
    ) -> anyhow::Result<Issued> {
        validity.check()?;
        let key = KeyPair::generate().context("generating the key")?;
        let serial = random_serial();
        let serial_hex = serial_to_hex(&serial.to_bytes());
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(serial);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = ekus;
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("signing the certificate for {cn}"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial_hex,
        })
    }

    /// A CRL signed by this CA listing the given serials (hex, as in
    /// [`Issued::serial_hex`]; `0x` prefixes and `:` separators are accepted), all
    /// revoked now. See [`Ca::crl_with_entries`].
    pub fn crl(
        &self,
        revoked_serials_hex: &[String],
        crl_number: u64,
        next_update: OffsetDateTime,
    ) -> anyhow::Result<String> {
        let now = OffsetDateTime::now_utc();
        let entries = revoked_serials_hex
            .iter()
            .map(|s| {
                Ok(RevokedEntry {
                    serial_hex: normalize_serial_hex(s)?,
                    revoked_at: now,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.crl_with_entries(&entries, crl_number, next_update)
    }

    /// A CRL signed by this CA with the given entries (keeping their revocation times).
    /// `this_update` is now; if `next_update` is not in the future (a deliberately stale
    /// CRL, for tests), `this_update` is set one day before it.
    pub fn crl_with_entries(
        &self,
        entries: &[RevokedEntry],
        crl_number: u64,
        next_update: OffsetDateTime,
    ) -> anyhow::Result<String> {
        let now = OffsetDateTime::now_utc();
        let this_update = if next_update > now {
            now
        } else {
            next_update - Duration::days(1)
        };
        let revoked_certs = entries
            .iter()
            .map(|e| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&hex_to_bytes(&e.serial_hex)?),
                    revocation_time: e.revoked_at.min(this_update),
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).context("signing the CRL")?;
        crl.pem().context("encoding the CRL as PEM")
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// 16 random bytes, top bit cleared (positive) and bit 6 set (no leading zero byte, so
/// every serial is exactly 16 bytes / 32 hex digits).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// Canonical serial hex: lowercase, minimal (no leading zero bytes), at least "00".
fn serial_to_hex(bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    let bytes = if bytes.is_empty() {
        &[0u8][..]
    } else {
        &bytes[start..]
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Normalises a user-given serial (`0x` prefix, `:` separators, any case) to the
/// canonical form.
pub fn normalize_serial_hex(s: &str) -> anyhow::Result<String> {
    Ok(serial_to_hex(&hex_to_bytes(s)?))
}

fn hex_to_bytes(s: &str) -> anyhow::Result<Vec<u8>> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let digits: String = t.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 40 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!(
            "invalid serial {s:?}: expected up to 20 bytes of hex, e.g. as printed by `certfed pki node`"
        );
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).map_err(|e| anyhow!("{e}")))
        .collect()
}

/// Decodes the first PEM block with the given label.
fn pem_der(pem: &str, label: &str) -> anyhow::Result<Vec<u8>> {
    for item in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let item = item.map_err(|e| anyhow!("invalid PEM: {e}"))?;
        if item.label == label {
            return Ok(item.contents);
        }
    }
    bail!("no PEM block labelled {label:?} found")
}

/// Reads the serial (canonical hex) of a PEM certificate.
pub fn cert_serial_hex(cert_pem: &str) -> anyhow::Result<String> {
    let der = pem_der(cert_pem, "CERTIFICATE")?;
    let (_, x509) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow!("cannot parse the certificate: {e}"))?;
    Ok(serial_to_hex(x509.raw_serial()))
}

/// Unix time (seconds) at which a DER certificate stops being valid.
pub fn cert_not_after(der: &[u8]) -> anyhow::Result<i64> {
    let (_, x509) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow!("cannot parse the certificate: {e}"))?;
    Ok(x509.validity().not_after.timestamp())
}

/// Unix time (seconds) of a DER CRL's next update (`None` when it names none).
pub fn crl_next_update(der: &[u8]) -> anyhow::Result<Option<i64>> {
    let (_, crl) =
        x509_parser::parse_x509_crl(der).map_err(|e| anyhow!("cannot parse the CRL: {e}"))?;
    Ok(crl.next_update().map(|t| t.timestamp()))
}

/// Reads (revoked serials hex, crl_number) from an existing PEM CRL.
pub fn read_crl(crl_pem: &str) -> anyhow::Result<(Vec<String>, u64)> {
    let (entries, n) = read_crl_entries(crl_pem)?;
    Ok((entries.into_iter().map(|e| e.serial_hex).collect(), n))
}

/// Reads (entries with revocation times, crl_number) from an existing PEM CRL. A CRL
/// without a CRL number reads as number 0.
pub fn read_crl_entries(crl_pem: &str) -> anyhow::Result<(Vec<RevokedEntry>, u64)> {
    let der = pem_der(crl_pem, "X509 CRL")?;
    let (_, crl) =
        x509_parser::parse_x509_crl(&der).map_err(|e| anyhow!("cannot parse the CRL: {e}"))?;
    let number = match crl.crl_number() {
        None => 0,
        Some(n) => {
            u64::try_from(n).map_err(|_| anyhow!("CRL number {n} does not fit in 64 bits"))?
        }
    };
    let entries = crl
        .iter_revoked_certificates()
        .map(|r| {
            Ok(RevokedEntry {
                serial_hex: serial_to_hex(r.raw_serial()),
                revoked_at: OffsetDateTime::from_unix_timestamp(r.revocation_date.timestamp())
                    .map_err(|e| anyhow!("invalid revocation date in CRL: {e}"))?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((entries, number))
}

/// True if the certificate (PEM) was issued by the CA (PEM): its issuer is the CA's
/// subject and its authority key identifier (when present) is the CA's subject key
/// identifier. This tells apart two CAs with the same name; it is a bookkeeping check,
/// not a signature verification (rustls does that at handshake).
pub fn issued_by(cert_pem: &str, ca_cert_pem: &str) -> anyhow::Result<bool> {
    let der = pem_der(cert_pem, "CERTIFICATE")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow!("cannot parse the certificate: {e}"))?;
    matches_ca(cert.issuer().as_raw(), cert.extensions(), ca_cert_pem)
}

/// True if the CRL (PEM) was issued by the CA (PEM); same rule as [`issued_by`].
pub fn crl_issued_by(crl_pem: &str, ca_cert_pem: &str) -> anyhow::Result<bool> {
    let der = pem_der(crl_pem, "X509 CRL")?;
    let (_, crl) =
        x509_parser::parse_x509_crl(&der).map_err(|e| anyhow!("cannot parse the CRL: {e}"))?;
    matches_ca(crl.issuer().as_raw(), crl.extensions(), ca_cert_pem)
}

fn matches_ca(
    issuer_raw: &[u8],
    extensions: &[x509_parser::extensions::X509Extension<'_>],
    ca_cert_pem: &str,
) -> anyhow::Result<bool> {
    use x509_parser::extensions::ParsedExtension;
    let ca_der = pem_der(ca_cert_pem, "CERTIFICATE")?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
        .map_err(|e| anyhow!("cannot parse the CA certificate: {e}"))?;
    if issuer_raw != ca.subject().as_raw() {
        return Ok(false);
    }
    let aki = extensions.iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
        _ => None,
    });
    let ski = ca
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        });
    Ok(match (aki, ski) {
        (Some(a), Some(s)) => a == s,
        _ => true,
    })
}

/// An Ed25519 message-signing key pair (separate from TLS keys).
#[derive(Clone)]
pub struct SigningKeyFiles {
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_pem: String,
    /// SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_pem: String,
    /// First 16 hex chars of SHA-256 of the raw 32-byte public key.
    pub key_id: String,
}

impl std::fmt::Debug for SigningKeyFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyFiles")
            .field("key_id", &self.key_id)
            .field("private_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Generates a new Ed25519 message-signing key.
pub fn new_signing_key() -> anyhow::Result<SigningKeyFiles> {
    // ed25519-dalek 3 uses rand_core 0.10 and rand 0.9 uses 0.9, so seed from bytes
    // (ThreadRng is a CSPRNG seeded from the OS).
    let sk = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let vk = sk.verifying_key();
    let private_pem = sk
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow!("encoding the signing key: {e}"))?
        .to_string();
    let public_pem = vk
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| anyhow!("encoding the public key: {e}"))?;
    Ok(SigningKeyFiles {
        private_pem,
        public_pem,
        key_id: signing_key_id(&vk),
    })
}

/// key_id = first 16 hex chars of SHA-256 of the raw 32-byte public key.
pub fn signing_key_id(vk: &ed25519_dalek::VerifyingKey) -> String {
    crate::domain::keys::key_id(vk)
}

/// Parses a PKCS#8 PEM Ed25519 private key (as in [`SigningKeyFiles::private_pem`]).
pub fn parse_signing_key(private_pem: &str) -> anyhow::Result<ed25519_dalek::SigningKey> {
    ed25519_dalek::SigningKey::from_pkcs8_pem(private_pem)
        .map_err(|e| anyhow!("not an Ed25519 PKCS#8 PEM private key: {e}"))
}

/// Parses an SPKI PEM Ed25519 public key (as in [`SigningKeyFiles::public_pem`]).
pub fn parse_verifying_key(public_pem: &str) -> anyhow::Result<ed25519_dalek::VerifyingKey> {
    crate::domain::keys::public_from_pem(public_pem).map_err(|e| anyhow!(e))
}

/// Writes a private key file with mode 0600. The file is created with that mode (never
/// readable by others, even briefly); refuses to overwrite an existing file unless
/// `force`, in which case it is replaced atomically.
pub fn write_private(path: &Path, contents: &str, force: bool) -> anyhow::Result<()> {
    write_file(path, contents, force, PRIVATE_MODE)
}

/// Writes a public file (certificate, CRL, public key) with mode 0644; same overwrite
/// rule as [`write_private`].
pub fn write_public(path: &Path, contents: &str, force: bool) -> anyhow::Result<()> {
    write_file(path, contents, force, PUBLIC_MODE)
}

fn write_file(path: &Path, contents: &str, force: bool, mode: u32) -> anyhow::Result<()> {
    let exists = fs::symlink_metadata(path).is_ok();
    if exists && !force {
        bail!(
            "{} already exists; pass --force to overwrite",
            path.display()
        );
    }
    let write = |target: &Path, create_new: bool| -> anyhow::Result<()> {
        let mut opts = OpenOptions::new();
        opts.write(true).mode(mode);
        if create_new {
            opts.create_new(true);
        } else {
            opts.create(true).truncate(true);
        }
        let mut f = opts
            .open(target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        // The umask may have removed bits from a public file; set the exact mode.
        f.set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set mode {mode:o} on {}", target.display()))?;
        f.write_all(contents.as_bytes())
            .and_then(|_| f.sync_all())
            .with_context(|| format!("cannot write {}", target.display()))?;
        Ok(())
    };
    if !exists {
        // create_new is atomic: if someone created the file meanwhile, we fail.
        return write(path, true).map_err(|e| {
            if fs::symlink_metadata(path).is_ok() && !force {
                anyhow!(
                    "{} already exists; pass --force to overwrite",
                    path.display()
                )
            } else {
                e
            }
        });
    }
    // Overwrite: write a fresh file next to it (with the right mode from the start),
    // then rename it over the old one, so the old file's mode never carries over.
    let file_name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = path.with_file_name(format!(
        ".{file_name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = write(&tmp, true).and_then(|_| {
        fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Loads a private key file, refusing it if group or others have any access to it.
pub fn read_private(path: &Path) -> anyhow::Result<String> {
    let meta = fs::metadata(path)
        .with_context(|| format!("cannot read private key file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "private key file {} has mode {:04o}, so group/others can access it; \
             run `chmod 600 {}` (and consider the key exposed if others could read it)",
            path.display(),
            mode,
            path.display()
        );
    }
    fs::read_to_string(path)
        .with_context(|| format!("cannot read private key file {}", path.display()))
}

/// Loads a public file (certificate, CRL, public key) as text.
pub fn read_public(path: &Path) -> anyhow::Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_forms() {
        assert_eq!(serial_to_hex(&[0, 0, 1, 2]), "0102");
        assert_eq!(serial_to_hex(&[0]), "00");
        assert_eq!(normalize_serial_hex("0x0A:BC").unwrap(), "0abc");
        assert_eq!(normalize_serial_hex("abc").unwrap(), "0abc");
        assert!(normalize_serial_hex("xyz").is_err());
        assert!(normalize_serial_hex("").is_err());
    }

    #[test]
    fn random_serials_are_16_bytes_and_positive() {
        for _ in 0..100 {
            let s = random_serial().to_bytes();
            assert_eq!(s.len(), 16);
            assert!(s[0] & 0x80 == 0 && s[0] != 0);
        }
    }
}
