//! TLS to the database, on a REAL PostgreSQL started with `ssl = on` and a
//! certificate from a CA the test makes (and `hostssl` only in pg_hba.conf,
//! so a session that is not encrypted is refused by the server itself):
//! - `sslmode=verify-full` with the right CA and the host name in the
//!   server's certificate: a node starts, stores and answers;
//! - the wrong CA, the wrong host name, a URL without TLS: each refused at
//!   start, the error naming what to fix, never the password.
//!
//! Needs `CERTFED_TEST_PG_URL` (skipped loudly without it, fails in CI).
use crate::common::*;
use crate::pair::Cluster;
use certfed::proto::v1::*;
use certfed::storage::postgres::{self, PgTarget};
use certfed::storage::{IntegrityCheck, OpenOptions};
use std::path::Path;
use std::process::Command;

/// A CA (PEM) and its issuer.
fn ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let pem = p.self_signed(&key).unwrap().pem();
    (pem, rcgen::Issuer::new(p, key))
}

/// Gives the cluster a server certificate for `localhost` only (not for
/// 127.0.0.1) from `issuer`, turns TLS on and accepts TCP sessions only
/// over TLS; reloads the configuration.
fn tls_on(cluster: &Cluster, issuer: &rcgen::Issuer<'static, rcgen::KeyPair>) {
    use std::os::unix::fs::PermissionsExt;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, issuer)
        .unwrap();
    let data = cluster.data_dir();
    let crt = data.join("server.crt");
    let k = data.join("server.key");
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    conf.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    std::fs::write(data.join("postgresql.conf"), conf).unwrap();
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n",
    )
    .unwrap();
    for f in [
        &crt,
        &k,
        &data.join("postgresql.conf"),
        &data.join("pg_hba.conf"),
    ] {
        let ok = Command::new("chown")
            .arg("postgres")
            .arg(f)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown {}", f.display());
    }
    cluster.pg_ctl("reload");
}

/// `url` with `host` instead of 127.0.0.1 and `query` added.
fn with(url: &str, host: &str, query: &str) -> String {
    let u = url.replacen("@127.0.0.1:", &format!("@{host}:"), 1);
    format!("{u}?{query}")
}

fn tls_query(ca: &Path) -> String {
    format!("sslmode=verify-full&sslrootcert={}", ca.display())
}

/// Opens a store at `url` (the way `certfed serve` does), returning the
/// refusal's text.
async fn refusal(url: &str) -> String {
    let r = postgres::open(
        &PgTarget {
            url: url.to_string(),
            password: None,
            idle_in_transaction_secs: 5,
        },
        &OpenOptions {
            node_id: "node-a".into(),
            integrity: IntegrityCheck::Off,
        },
        None,
    )
    .await;
    match r {
        Ok(_) => panic!("{} was accepted", postgres::redact(url)),
        Err(e) => {
            eprintln!("refused: {e}");
            e.to_string()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_tls_is_verified_and_a_wrong_ca_or_host_is_refused_naming_the_fix() {
    if pg_server().is_none() {
        return;
    }
    let cluster = Cluster::start();
    let (good_pem, issuer) = ca("database test CA");
    let (other_pem, _) = ca("some other CA");
    tls_on(&cluster, &issuer);
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("db-ca.crt");
    let other = dir.path().join("other-ca.crt");
    std::fs::write(&good, good_pem).unwrap();
    std::fs::write(&other, other_pem).unwrap();
    let password = cluster
        .url
        .split_once("certfed:")
        .and_then(|(_, r)| r.split_once('@'))
        .map(|(p, _)| p.to_string())
        .unwrap();

    // verify-full, the right CA, the certificate's host name: a node runs
    // on it (its database made over TLS too) and stores what it publishes.
    let admin = with(&cluster.url, "localhost", &tls_query(&good));
    let fed = Fed::new(&["node-a"], &[]).postgres(&admin);
    let a = fed
        .try_start(0)
        .await
        .expect("a node on a verified TLS database");
    let id = publish_on(&fed, 0, green_alert("over database TLS"), &[]).await;
    assert!(holds(&fed, 0, &id).await);
    let info = fed
        .operator(0)
        .await
        .get_node_info(GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.storage_backend, "postgres", "{info:?}");
    a.shutdown().await.unwrap();
    let db = fed.db_url(0);

    // The wrong CA: refused, naming sslrootcert and its file.
    let e = refusal(&db.replace(&good.display().to_string(), &other.display().to_string())).await;
    assert!(
        e.contains("sslrootcert")
            && e.contains(&other.display().to_string())
            && e.contains("not signed by"),
        "{e}"
    );
    assert!(!e.contains(&password), "{e}");

    // The wrong host name (the certificate names localhost only).
    let e = refusal(&db.replacen("@localhost:", "@127.0.0.1:", 1)).await;
    assert!(
        e.contains("127.0.0.1") && e.contains("localhost") && e.contains("host name"),
        "{e}"
    );
    assert!(!e.contains(&password), "{e}");

    // No TLS asked for: the server accepts this user only over TLS.
    let plain = db.split_once('?').unwrap().0.to_string();
    let e = refusal(&plain).await;
    assert!(e.contains("sslmode=verify-full"), "{e}");
    assert!(!e.contains(&password), "{e}");
    drop(fed);
}
