//! Mutual TLS and roles on a real node: who is refused at the handshake, who is
//! refused by role, and a silent TCP client never blocks others.

use crate::common::*;
use certfed::pki::{Ca, Validity, write_private, write_public};
use certfed::proto::v1::*;
use certfed::transport::client;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

fn operator_with_tls(
    addr: &str,
    tls: Arc<rustls::ClientConfig>,
) -> operator_client::OperatorClient<tonic::transport::Channel> {
    let ch = client::channel(addr, tls, None, Duration::from_secs(5)).unwrap();
    operator_client::OperatorClient::new(ch)
}

async fn node_info(
    c: &mut operator_client::OperatorClient<tonic::transport::Channel>,
) -> Result<NodeInfo, tonic::Status> {
    tokio::time::timeout(
        Duration::from_secs(10),
        c.get_node_info(GetNodeInfoRequest {}),
    )
    .await
    .expect("call must finish, not hang")
    .map(|r| r.into_inner())
}

/// A client config that trusts the federation CA but presents no certificate.
fn no_client_cert(pki: &Pki) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certfed::transport::tls::load_certs(&pki.ca_path()).unwrap() {
        roots.add(c).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(certfed::transport::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_is_served_and_strangers_are_refused() {
    let fed = Fed::new(&["node-a"], &[]);
    let a = fed.start(0).await;
    let addr = fed.addr(0);

    // The operator gets an answer.
    let mut op = fed.operator(0).await;
    let info = node_info(&mut op).await.unwrap();
    assert_eq!(info.node_id, "node-a");

    // No client certificate: refused.
    let mut c = operator_with_tls(&addr, no_client_cert(&fed.pki));
    assert!(
        node_info(&mut c).await.is_err(),
        "no certificate must be refused"
    );

    // A certificate from a foreign CA: refused.
    let foreign = Ca::create("foreign CA", Validity::days(5)).unwrap();
    let issued = foreign
        .issue_operator("mallory", Validity::days(5))
        .unwrap();
    write_public(&fed.pki.path("mallory.crt"), &issued.cert_pem, false).unwrap();
    write_private(&fed.pki.path("mallory.key"), &issued.key_pem, false).unwrap();
    let mut c = operator_with_tls(&addr, fed.pki.client_tls("mallory"));
    assert!(
        node_info(&mut c).await.is_err(),
        "foreign CA must be refused"
    );

    // An expired certificate from the right CA: refused.
    let now = time::OffsetDateTime::now_utc();
    let expired = fed
        .pki
        .ca
        .issue_operator(
            "old",
            Validity {
                not_before: now - time::Duration::days(10),
                not_after: now - time::Duration::days(1),
            },
        )
        .unwrap();
    write_public(&fed.pki.path("old.crt"), &expired.cert_pem, false).unwrap();
    write_private(&fed.pki.path("old.key"), &expired.key_pem, false).unwrap();
    let mut c = operator_with_tls(&addr, fed.pki.client_tls("old"));
    assert!(
        node_info(&mut c).await.is_err(),
        "expired certificate must be refused"
    );

    // The operator still works after all those refusals.
    assert!(node_info(&mut op).await.is_ok());
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_certificate_is_refused_and_expired_crl_fails_closed() {
    let pki_fed = Fed::new(&["node-a"], &[]);
    let revoked = pki_fed.pki.operator("revoked-op");
    let next = time::OffsetDateTime::now_utc() + time::Duration::days(7);
    let crl = pki_fed
        .pki
        .ca
        .crl(std::slice::from_ref(&revoked.serial_hex), 1, next)
        .unwrap();
    write_public(&pki_fed.pki.path("ca.crl"), &crl, true).unwrap();
    let a = pki_fed.start(0).await;
    let addr = pki_fed.addr(0);
    let mut good = pki_fed.operator(0).await;
    assert!(
        node_info(&mut good).await.is_ok(),
        "unrevoked operator is served"
    );
    let mut bad = operator_client(&pki_fed.pki, &addr, "revoked-op").await;
    assert!(
        node_info(&mut bad).await.is_err(),
        "revoked operator must be refused"
    );
    a.shutdown().await.unwrap();

    // A CRL past its next update: revocation status unknown, so everyone is refused.
    let past = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let stale = pki_fed.pki.ca.crl(&[], 2, past).unwrap();
    write_public(&pki_fed.pki.path("ca.crl"), &stale, true).unwrap();
    let a = pki_fed.start(0).await;
    let mut good = pki_fed.operator(0).await;
    assert!(
        node_info(&mut good).await.is_err(),
        "with an expired CRL the node must fail closed"
    );
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_enforced_per_service() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let a = fed.start(0).await;
    let addr = fed.addr(0);

    // A node certificate on the Operator service.
    let mut as_node = operator_with_tls(&addr, fed.pki.client_tls("node-b"));
    let err = node_info(&mut as_node).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        err.message().contains("operator certificates only"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("node"), "{}", err.message());

    // An operator certificate on the Federation service.
    let mut fc = federation_client(&fed.pki, &addr, "operator", Some("node-a")).await;
    let err = fc
        .hello(HelloRequest {
            node_id: "operator".into(),
            roster_version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        err.message().contains("node certificates only"),
        "{}",
        err.message()
    );

    // Health is open to both roles.
    for name in ["operator", "node-b"] {
        let ch = client::channel(
            &addr,
            fed.pki.client_tls(name),
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: "certfed.v1.Operator".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }

    // A node certificate may Hello on Federation.
    let mut fc = federation_client(&fed.pki, &addr, "node-b", Some("node-a")).await;
    let r = fc
        .hello(HelloRequest {
            node_id: "node-b".into(),
            roster_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.node_id, "node-a");
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_connections_do_not_block_real_clients() {
    let mut fed = Fed::new(&["node-a"], &[]);
    fed.specs[0].handshake_timeout_secs = 60;
    let a = fed.start(0).await;
    let addr = fed.addr(0);
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // With 50 silent clients mid-handshake, a real client is still served at once
    // (if handshakes ran in the accept loop this would wait for 60 s timeouts).
    let mut op = fed.operator(0).await;
    let info = tokio::time::timeout(
        Duration::from_secs(10),
        op.get_node_info(GetNodeInfoRequest {}),
    )
    .await
    .expect("served while idle connections are open")
    .unwrap();
    assert_eq!(info.into_inner().node_id, "node-a");
    // The idle connections are all still open (their handshake timeout is 60 s).
    let mut buf = [0u8; 1];
    let still_open = tokio::time::timeout(Duration::from_millis(100), idle[0].read(&mut buf)).await;
    assert!(
        still_open.is_err(),
        "idle connection should still be waiting"
    );
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_dropped_after_handshake_timeout() {
    let fed = Fed::new(&["node-a"], &[]); // handshake timeout 2 s
    let a = fed.start(0).await;
    let mut s = tokio::net::TcpStream::connect(fed.addr(0)).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf))
        .await
        .expect("server must close a silent connection");
    assert!(matches!(r, Ok(0) | Err(_)), "connection closed, got {r:?}");
    a.shutdown().await.unwrap();
}
