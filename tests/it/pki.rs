//! The federation PKI on real files: `certfed pki` commands (through `pki_cli::run_with_output`
//! with real argument parsing), the library, and rustls accepting the material.
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use certfed::cli::pki::{PkiCommand, run_with_output};
use certfed::pki::{self, Ca, Validity};
use clap::Parser;
use ed25519_dalek::{Signer, Verifier};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

#[derive(Parser)]
#[command(name = "certfed-pki")]
struct Cli {
    #[command(subcommand)]
    cmd: PkiCommand,
}

/// Runs `certfed pki <args>`, returning its output.
fn pki(args: &[&str]) -> anyhow::Result<String> {
    let cli = Cli::try_parse_from(std::iter::once("certfed-pki").chain(args.iter().copied()))?;
    let mut out = Vec::new();
    run_with_output(cli.cmd, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

struct Parsed {
    uris: Vec<String>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    server_auth: bool,
    client_auth: bool,
    cn: String,
    is_ca: bool,
}

fn parse(pem: &str) -> Parsed {
    let der = der(pem);
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    let mut parsed = Parsed {
        uris: vec![],
        dns: vec![],
        ips: vec![],
        server_auth: false,
        client_auth: false,
        cn: c
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string(),
        is_ca: c.is_ca(),
    };
    if let Some(san) = c.subject_alternative_name().unwrap() {
        for n in &san.value.general_names {
            match n {
                GeneralName::URI(u) => parsed.uris.push(u.to_string()),
                GeneralName::DNSName(d) => parsed.dns.push(d.to_string()),
                GeneralName::IPAddress(b) => parsed.ips.push(match b.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                    16 => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
                    _ => panic!("bad IP SAN"),
                }),
                other => panic!("unexpected SAN {other:?}"),
            }
        }
    }
    if let Some(eku) = c.extended_key_usage().unwrap() {
        parsed.server_auth = eku.value.server_auth;
        parsed.client_auth = eku.value.client_auth;
    }
    parsed
}

/// A CA dir with a node-a and an operator, made with the CLI.
fn setup(dir: &Path) {
    let out = pki(&["ca", "--out-dir", p(dir), "--name", "Test CA"]).unwrap();
    assert!(out.contains("ca.crt") && out.contains("ca.key"), "{out}");
    let out = pki(&[
        "node",
        "--ca-dir",
        p(dir),
        "--id",
        "node-a",
        "--dns",
        "localhost",
        "--dns",
        "node-a.example",
        "--ip",
        "127.0.0.1,::1",
        "--out-dir",
        p(dir),
    ])
    .unwrap();
    assert!(
        out.contains("node-a.crt") && out.contains("urn:certfed:node:node-a"),
        "{out}"
    );
    let out = pki(&[
        "operator",
        "--ca-dir",
        p(dir),
        "--name",
        "operator",
        "--out-dir",
        p(dir),
    ])
    .unwrap();
    assert!(out.contains("operator.crt"), "{out}");
}

#[test]
fn ca_node_operator_files_and_contents() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    setup(d);

    let ca = parse(&read(&d.join("ca.crt")));
    assert!(ca.is_ca);
    assert_eq!(ca.cn, "Test CA");

    let node = parse(&read(&d.join("node-a.crt")));
    assert!(!node.is_ca);
    assert_eq!(node.cn, "node-a");
    assert_eq!(node.uris, vec!["urn:certfed:node:node-a"]);
    assert_eq!(node.dns, vec!["localhost", "node-a.example"]);
    assert_eq!(
        node.ips,
        vec![
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    assert!(node.server_auth && node.client_auth);

    let op = parse(&read(&d.join("operator.crt")));
    assert_eq!(op.cn, "operator");
    assert_eq!(op.uris, vec!["urn:certfed:operator:operator"]);
    assert!(op.dns.is_empty() && op.ips.is_empty());
    assert!(op.client_auth && !op.server_auth);

    for k in ["ca.key", "node-a.key", "operator.key"] {
        assert_eq!(mode(&d.join(k)), 0o600, "{k}");
        // And read_private accepts them.
        pki::read_private(&d.join(k)).unwrap();
    }
    for c in ["ca.crt", "node-a.crt", "operator.crt"] {
        assert_eq!(mode(&d.join(c)), 0o644, "{c}");
    }
}

#[test]
fn serials_are_random_and_readable() {
    let ca = Ca::create("x", Validity::days(1)).unwrap();
    let a = ca.issue_operator("a", Validity::days(1)).unwrap();
    let b = ca.issue_operator("a", Validity::days(1)).unwrap();
    assert_ne!(a.serial_hex, b.serial_hex);
    assert_eq!(a.serial_hex.len(), 32);
    assert_eq!(pki::cert_serial_hex(&a.cert_pem).unwrap(), a.serial_hex);
}

#[test]
fn ca_reload_issues_certs_that_chain() {
    let ca = Ca::create("reload CA", Validity::days(10)).unwrap();
    let again = Ca::load(ca.cert_pem(), &ca.key_pem()).unwrap();
    let issued = again
        .issue_node("node-z", &[], &[], Validity::days(1))
        .unwrap();
    assert!(pki::issued_by(&issued.cert_pem, ca.cert_pem()).unwrap());
    // A node issued by the reloaded CA verifies against the original root.
    let verifier = client_verifier(ca.cert_pem(), None);
    verify(&verifier, &issued.cert_pem).unwrap();
    // A key from another CA is refused.
    let other = Ca::create("other", Validity::days(1)).unwrap();
    let err = Ca::load(ca.cert_pem(), &other.key_pem()).unwrap_err();
    assert!(format!("{err:#}").contains("does not belong"), "{err:#}");
}

#[test]
fn refuses_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    setup(d);
    let before = read(&d.join("ca.key"));
    let err = pki(&["ca", "--out-dir", p(d)]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("already exists") && msg.contains("--force"),
        "{msg}"
    );
    assert!(msg.contains("ca.crt") || msg.contains("ca.key"), "{msg}");
    assert_eq!(read(&d.join("ca.key")), before);

    let node_before = read(&d.join("node-a.crt"));
    let err = pki(&[
        "node",
        "--ca-dir",
        p(d),
        "--id",
        "node-a",
        "--out-dir",
        p(d),
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("node-a"), "{err:#}");
    assert_eq!(read(&d.join("node-a.crt")), node_before);

    // With --force it works, and the key file ends up 0600 even if it was 0644 before.
    std::fs::set_permissions(d.join("node-a.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    pki(&[
        "node",
        "--ca-dir",
        p(d),
        "--id",
        "node-a",
        "--out-dir",
        p(d),
        "--force",
    ])
    .unwrap();
    assert_ne!(read(&d.join("node-a.crt")), node_before);
    assert_eq!(mode(&d.join("node-a.key")), 0o600);
    assert_eq!(mode(&d.join("node-a.crt")), 0o644);
    pki(&["ca", "--out-dir", p(d), "--force"]).unwrap();
    assert_ne!(read(&d.join("ca.key")), before);
    assert_eq!(mode(&d.join("ca.key")), 0o600);
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn library_write_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("k.key");
    pki::write_private(&f, "secret", false).unwrap();
    assert_eq!(mode(&f), 0o600);
    let err = pki::write_private(&f, "other", false).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("k.key") && msg.contains("--force"), "{msg}");
    pki::write_private(&f, "other", true).unwrap();
    assert_eq!(read(&f), "other");
    let pubf = tmp.path().join("x.crt");
    pki::write_public(&pubf, "pub", false).unwrap();
    assert_eq!(mode(&pubf), 0o644);
    assert!(pki::write_public(&pubf, "pub2", false).is_err());
    pki::write_public(&pubf, "pub2", true).unwrap();
    assert_eq!(read(&pubf), "pub2");
}

#[test]
fn read_private_refuses_readable_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    setup(d);
    let key = d.join("node-a.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = pki::read_private(&key).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("chmod 600"), "{msg}");
    assert!(msg.contains("node-a.key") && msg.contains("0644"), "{msg}");
    // The CLI refuses a readable CA key too.
    std::fs::set_permissions(d.join("ca.key"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = pki(&[
        "operator",
        "--ca-dir",
        p(d),
        "--name",
        "bob",
        "--out-dir",
        p(d),
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
    assert!(!d.join("bob.key").exists());
}

#[test]
fn revoke_accumulates_and_bumps_crl_number() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    setup(d);
    let crl_path = d.join("ca.crl");

    pki(&["crl", "--ca-dir", p(d)]).unwrap();
    let (serials, n) = pki::read_crl(&read(&crl_path)).unwrap();
    assert!(serials.is_empty());
    assert_eq!(n, 1);
    assert_eq!(mode(&crl_path), 0o644);

    let node_serial = pki::cert_serial_hex(&read(&d.join("node-a.crt"))).unwrap();
    let out = pki(&[
        "revoke",
        "--ca-dir",
        p(d),
        "--serial",
        &node_serial.to_uppercase(),
    ])
    .unwrap();
    assert!(out.contains(&node_serial), "{out}");
    let (serials, n) = pki::read_crl(&read(&crl_path)).unwrap();
    assert_eq!(serials, vec![node_serial.clone()]);
    assert_eq!(n, 2);

    let op_cert = d.join("operator.crt");
    let op_serial = pki::cert_serial_hex(&read(&op_cert)).unwrap();
    pki(&["revoke", "--ca-dir", p(d), "--cert", p(&op_cert)]).unwrap();
    let (serials, n) = pki::read_crl(&read(&crl_path)).unwrap();
    assert_eq!(serials, vec![node_serial.clone(), op_serial.clone()]);
    assert_eq!(n, 3);

    // Revoking again does not duplicate; refreshing keeps the entries.
    let out = pki(&["revoke", "--ca-dir", p(d), "--cert", p(&op_cert)]).unwrap();
    assert!(out.contains("already revoked"), "{out}");
    pki(&["crl", "--ca-dir", p(d), "--days", "7"]).unwrap();
    let (serials, n) = pki::read_crl(&read(&crl_path)).unwrap();
    assert_eq!(serials, vec![node_serial, op_serial]);
    assert_eq!(n, 5);

    // Needs something to revoke; bad serials are refused.
    assert!(pki(&["revoke", "--ca-dir", p(d)]).is_err());
    let err = pki(&["revoke", "--ca-dir", p(d), "--serial", "zz"]).unwrap_err();
    assert!(format!("{err:#}").contains("zz"), "{err:#}");

    // A certificate from another CA is refused.
    let other = tempfile::tempdir().unwrap();
    setup(other.path());
    let err = pki(&[
        "revoke",
        "--ca-dir",
        p(d),
        "--cert",
        p(&other.path().join("node-a.crt")),
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("not issued by"), "{err:#}");

    // A CRL from another CA is not silently replaced...
    pki(&["crl", "--ca-dir", p(other.path())]).unwrap();
    let foreign = d.join("foreign.crl");
    std::fs::copy(other.path().join("ca.crl"), &foreign).unwrap();
    let err = pki(&["crl", "--ca-dir", p(d), "--crl", p(&foreign)]).unwrap_err();
    assert!(format!("{err:#}").contains("--force"), "{err:#}");
    // ...unless --force.
    pki(&["crl", "--ca-dir", p(d), "--crl", p(&foreign), "--force"]).unwrap();
    let (serials, n) = pki::read_crl(&read(&foreign)).unwrap();
    assert!(serials.is_empty());
    assert_eq!(n, 1);
}

#[test]
fn signing_key_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = pki(&["signing-key", "--id", "node-a", "--out-dir", p(d)]).unwrap();
    let priv_path = d.join("node-a.sign.key");
    let pub_path = d.join("node-a.sign.pub");
    assert_eq!(mode(&priv_path), 0o600);
    assert_eq!(mode(&pub_path), 0o644);

    let sk = pki::parse_signing_key(&pki::read_private(&priv_path).unwrap()).unwrap();
    let vk = pki::parse_verifying_key(&read(&pub_path)).unwrap();
    assert_eq!(sk.verifying_key(), vk);
    let key_id = pki::signing_key_id(&vk);
    assert_eq!(key_id.len(), 16);
    assert!(out.contains(&key_id), "{out}");
    assert_eq!(pki::signing_key_id(&sk.verifying_key()), key_id);

    let msg = b"certfed test message";
    let sig = sk.sign(msg);
    vk.verify(msg, &sig).unwrap();
    vk.verify_strict(msg, &sig).unwrap();
    assert!(vk.verify(b"tampered", &sig).is_err());

    // Library form, with the PEM labels the format promises.
    let k = pki::new_signing_key().unwrap();
    assert!(k.private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(k.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let vk2 = pki::parse_verifying_key(&k.public_pem).unwrap();
    assert_eq!(pki::signing_key_id(&vk2), k.key_id);
    assert_ne!(k.key_id, key_id);

    assert!(pki(&["signing-key", "--id", "node-a", "--out-dir", p(d)]).is_err());
}

#[test]
fn invalid_names_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    setup(d);
    let err = pki(&[
        "node",
        "--ca-dir",
        p(d),
        "--id",
        "Node A!",
        "--out-dir",
        p(d),
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("Node A!"), "{err:#}");
    let ca = Ca::create("x", Validity::days(1)).unwrap();
    let err = ca
        .issue_node("bad/id", &[], &[], Validity::days(1))
        .unwrap_err();
    assert!(format!("{err:#}").contains("bad/id"), "{err:#}");
    let err = ca.issue_operator("", Validity::days(1)).unwrap_err();
    assert!(format!("{err:#}").contains("invalid name"), "{err:#}");
    assert!(pki(&["signing-key", "--id", "../x", "--out-dir", p(d)]).is_err());
    assert!(
        pki(&[
            "operator",
            "--ca-dir",
            p(d),
            "--name",
            "UPPER",
            "--out-dir",
            p(d)
        ])
        .is_err()
    );
}

#[test]
fn missing_ca_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let err = pki(&[
        "node",
        "--ca-dir",
        p(tmp.path()),
        "--id",
        "n",
        "--out-dir",
        p(tmp.path()),
    ])
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("certfed pki ca"), "{msg}");
}

fn client_verifier(
    ca_pem: &str,
    crl_pem: Option<&str>,
) -> Arc<dyn rustls::server::danger::ClientCertVerifier> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut b = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    );
    if let Some(crl) = crl_pem {
        b = b
            .with_crls(vec![
                CertificateRevocationListDer::from_pem_slice(crl.as_bytes()).unwrap(),
            ])
            .enforce_revocation_expiration();
    }
    b.build().unwrap()
}

fn verify(
    v: &Arc<dyn rustls::server::danger::ClientCertVerifier>,
    cert_pem: &str,
) -> Result<(), rustls::Error> {
    let c = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    v.verify_client_cert(&c, &[], UnixTime::now()).map(|_| ())
}

#[test]
fn rustls_accepts_ca_certs_and_crl() {
    let ca = Ca::create("rustls CA", Validity::days(30)).unwrap();
    let node = ca
        .issue_node(
            "node-a",
            &["localhost".into()],
            &["127.0.0.1".parse().unwrap()],
            Validity::days(30),
        )
        .unwrap();
    let op = ca.issue_operator("operator", Validity::days(30)).unwrap();
    let revoked = ca
        .issue_node("node-b", &[], &[], Validity::days(30))
        .unwrap();
    let next = ::time::OffsetDateTime::now_utc() + ::time::Duration::days(30);

    // An empty CRL parses and every cert passes.
    let empty = ca.crl(&[], 1, next).unwrap();
    let v = client_verifier(ca.cert_pem(), Some(&empty));
    verify(&v, &node.cert_pem).unwrap();
    verify(&v, &op.cert_pem).unwrap();
    verify(&v, &revoked.cert_pem).unwrap();

    // A CRL listing node-b: node-b is rejected as revoked, the others pass.
    let crl = ca
        .crl(std::slice::from_ref(&revoked.serial_hex), 2, next)
        .unwrap();
    let v = client_verifier(ca.cert_pem(), Some(&crl));
    verify(&v, &node.cert_pem).unwrap();
    verify(&v, &op.cert_pem).unwrap();
    let err = verify(&v, &revoked.cert_pem).unwrap_err();
    assert!(format!("{err:?}").contains("Revoked"), "{err:?}");

    // A stale CRL (next_update in the past) can be produced and is refused when
    // expiration is enforced.
    let stale = ca
        .crl(
            &[],
            3,
            ::time::OffsetDateTime::now_utc() - ::time::Duration::hours(1),
        )
        .unwrap();
    assert_eq!(pki::read_crl(&stale).unwrap().1, 3);
    let v = client_verifier(ca.cert_pem(), Some(&stale));
    let err = verify(&v, &node.cert_pem).unwrap_err();
    assert!(format!("{err:?}").contains("Expired"), "{err:?}");

    // A certificate from another CA is refused.
    let other = Ca::create("other", Validity::days(1)).unwrap();
    let foreign = other
        .issue_node("node-a", &[], &[], Validity::days(1))
        .unwrap();
    let v = client_verifier(ca.cert_pem(), Some(&empty));
    assert!(verify(&v, &foreign.cert_pem).is_err());
}

#[test]
fn rustls_server_accepts_node_cert_for_localhost() {
    // The node cert serves TLS for "localhost" and 127.0.0.1 (webpki server verifier).
    let ca = Ca::create("server CA", Validity::days(30)).unwrap();
    let node = ca
        .issue_node(
            "node-a",
            &["localhost".into()],
            &["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            Validity::days(30),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(der(ca.cert_pem()))).unwrap();
    let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let cert = CertificateDer::from(der(&node.cert_pem));
    for name in ["localhost", "127.0.0.1", "::1"] {
        let sn = rustls::pki_types::ServerName::try_from(name).unwrap();
        v.verify_server_cert(&cert, &[], &sn, &[], UnixTime::now())
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    let sn = rustls::pki_types::ServerName::try_from("example.org").unwrap();
    assert!(
        v.verify_server_cert(&cert, &[], &sn, &[], UnixTime::now())
            .is_err()
    );
    // And the private key loads as a rustls signing key.
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(node.key_pem.as_bytes()).unwrap();
    rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
}
