//! Links under a silent partition and after a revocation:
//! - a partition that drops everything without closing anything (a TCP proxy
//!   the test black-holes) shows the links DOWN within about ten seconds
//!   (HTTP/2 keepalive), and they catch up once the partition heals;
//! - after a CRL cuts a peer off, both sides keep showing the revocation as
//!   the reason, not a later generic "transport error" or "Cancelled".

use crate::common::*;
use crate::fedtools::*;
use certfed::proto::v1::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_partition_shows_down_quickly_and_heals() {
    let mut fed = Fed::new(&["node-a", "node-b"], &[]);
    // Both directions go through proxies: a -> p_ab -> b, b -> p_ba -> a.
    let p_ab = Proxy::start(fed.specs[1].port).await;
    let p_ba = Proxy::start(fed.specs[0].port).await;
    fed.specs[0].peers = vec![("node-b".into(), p_ab.port)];
    fed.specs[1].peers = vec![("node-a".into(), p_ba.port)];
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    let up = |i: usize, peer: &'static str| {
        let fed = &fed;
        async move {
            peer_view(fed, i, peer)
                .await
                .is_some_and(|p| p.state == LinkState::Up as i32)
        }
    };
    assert!(eventually(WAIT, || up(0, "node-b")).await);
    assert!(eventually(WAIT, || up(1, "node-a")).await);
    let before = publish_on(&fed, 0, green_alert("before the partition"), &[]).await;
    assert!(arrives(&fed, 1, &before, WAIT).await);

    p_ab.set_blackhole(true);
    p_ba.set_blackhole(true);
    // Keepalive: a ping every 3 s, 5 s to answer. Allow for a loaded machine,
    // but far less than the 30 s + 20 s it took without a keepalive timeout.
    let down = eventually(Duration::from_secs(20), || async {
        let ab = peer_view(&fed, 0, "node-b").await.unwrap();
        let ba = peer_view(&fed, 1, "node-a").await.unwrap();
        ab.state != LinkState::Up as i32 && ba.state != LinkState::Up as i32
    })
    .await;
    let ab = peer_view(&fed, 0, "node-b").await.unwrap();
    assert!(down, "both links must go down: {ab:?}");
    assert!(
        ab.last_error.contains("connection to node-b was lost")
            || ab.last_error.contains("stopped answering")
            || ab.last_error.contains("timed out"),
        "the reason says the peer stopped answering: {ab:?}"
    );
    let during = publish_on(&fed, 0, green_alert("during the partition"), &[]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!holds(&fed, 1, &during).await);

    p_ab.set_blackhole(false);
    p_ba.set_blackhole(false);
    assert!(
        arrives(&fed, 1, &during, WAIT).await,
        "caught up after the partition healed"
    );
    assert!(eventually(WAIT, || up(0, "node-b")).await);
    assert!(eventually(WAIT, || up(1, "node-a")).await);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revocation_stays_the_reason_shown_on_both_sides() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    let up = |i: usize, peer: &'static str| {
        let fed = &fed;
        async move {
            peer_view(fed, i, peer)
                .await
                .is_some_and(|p| p.state == LinkState::Up as i32)
        }
    };
    assert!(eventually(WAIT, || up(0, "node-b")).await);
    assert!(eventually(WAIT, || up(1, "node-a")).await);

    // Revoke b's certificate in a CRL that only a loads.
    let b_pem = std::fs::read_to_string(fed.pki.path("node-b.crt")).unwrap();
    let serial = certfed::pki::cert_serial_hex(&b_pem).unwrap();
    let next = time::OffsetDateTime::now_utc() + time::Duration::days(7);
    let crl = fed.pki.ca.crl(&[serial], 1, next).unwrap();
    certfed::pki::write_public(&fed.pki.path("ca.crl"), &crl, true).unwrap();
    a.reload(&fed.config_path(0)).unwrap();

    let revoked = |p: &PeerView| {
        p.state != LinkState::Up as i32 && p.last_error.to_lowercase().contains("revoked")
    };
    let shown = eventually(WAIT, || async {
        revoked(&peer_view(&fed, 0, "node-b").await.unwrap())
            && revoked(&peer_view(&fed, 1, "node-a").await.unwrap())
    })
    .await;
    assert!(shown, "both sides name the revocation");
    // Several reconnect attempts later, the reason is still there.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let ab = peer_view(&fed, 0, "node-b").await.unwrap();
    let ba = peer_view(&fed, 1, "node-a").await.unwrap();
    assert!(revoked(&ab), "a's view of b: {ab:?}");
    assert!(revoked(&ba), "b's view of a: {ba:?}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
