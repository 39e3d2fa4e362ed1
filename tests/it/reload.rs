//! Hot reload of peers: a peer added at runtime connects and receives; a peer
//! removed, or whose certificate a reloaded CRL revokes, is disconnected.

use crate::common::*;
use certfed::proto::v1::*;
use std::time::Duration;

async fn link_state(fed: &Fed, i: usize, peer: &str) -> Option<PeerView> {
    let mut op = fed.operator(i).await;
    let peers = op
        .list_peers(ListPeersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .peers;
    peers.into_iter().find(|p| p.peer_id == peer)
}

async fn up(fed: &Fed, i: usize, peer: &str) -> bool {
    eventually(Duration::from_secs(15), || async {
        link_state(fed, i, peer)
            .await
            .is_some_and(|p| p.state == LinkState::Up as i32)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_added_by_reload_connects_and_receives() {
    let mut fed = Fed::new(&["node-a", "node-b"], &[]);
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    assert!(link_state(&fed, 0, "node-b").await.is_none());
    // Peer them in the files, then SIGHUP-equivalent reloads.
    let (pa, pb) = (fed.specs[0].port, fed.specs[1].port);
    fed.specs[0].peers.push(("node-b".into(), pb));
    fed.specs[1].peers.push(("node-a".into(), pa));
    a.reload(&fed.config_path(0)).unwrap();
    b.reload(&fed.config_path(1)).unwrap();
    assert!(up(&fed, 0, "node-b").await, "a's new link to b comes up");
    let id = publish_on(&fed, 0, green_alert("after reload"), &[]).await;
    assert!(arrives(&fed, 1, &id, Duration::from_secs(10)).await);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_revoked_by_a_reloaded_crl_is_disconnected() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    assert!(up(&fed, 0, "node-b").await && up(&fed, 1, "node-a").await);
    let first = publish_on(&fed, 0, green_alert("before revocation"), &[]).await;
    assert!(arrives(&fed, 1, &first, Duration::from_secs(10)).await);

    // Revoke b's certificate in a CRL that only a loads, and reload a.
    let b_pem = std::fs::read_to_string(fed.pki.path("node-b.crt")).unwrap();
    let serial = certfed::pki::cert_serial_hex(&b_pem).unwrap();
    let next = time::OffsetDateTime::now_utc() + time::Duration::days(7);
    let crl = fed.pki.ca.crl(&[serial], 1, next).unwrap();
    certfed::pki::write_public(&fed.pki.path("ca.crl"), &crl, true).unwrap();
    a.reload(&fed.config_path(0)).unwrap();

    // Both directions of the link go down and stay down.
    let down = eventually(Duration::from_secs(15), || async {
        let from_a = link_state(&fed, 0, "node-b").await.unwrap();
        let from_b = link_state(&fed, 1, "node-a").await.unwrap();
        from_a.state != LinkState::Up as i32 && from_b.state != LinkState::Up as i32
    })
    .await;
    assert!(down, "the revoked peer must be cut off");
    let second = publish_on(&fed, 0, green_alert("after revocation"), &[]).await;
    assert!(
        !arrives(&fed, 1, &second, Duration::from_secs(3)).await,
        "nothing reaches a revoked peer"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_removed_by_reload_is_disconnected_and_others_stay_up() {
    let mut fed = Fed::line();
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    let c = fed.start(2).await;
    assert!(up(&fed, 1, "node-a").await && up(&fed, 1, "node-c").await);
    // b drops a; its link to c is untouched.
    fed.specs[1].peers.retain(|(id, _)| id != "node-a");
    b.reload(&fed.config_path(1)).unwrap();
    assert!(link_state(&fed, 1, "node-a").await.is_none());
    let refused = eventually(Duration::from_secs(15), || async {
        link_state(&fed, 0, "node-b").await.is_some_and(|p| {
            p.state != LinkState::Up as i32 && p.last_error.contains("not a configured peer")
        })
    })
    .await;
    assert!(refused, "a's pushes to b are refused once b removed it");
    assert_eq!(
        link_state(&fed, 1, "node-c").await.unwrap().state,
        LinkState::Up as i32,
        "the unchanged link stays up"
    );
    let id = publish_on(&fed, 1, green_alert("b still talks to c"), &[]).await;
    assert!(arrives(&fed, 2, &id, Duration::from_secs(10)).await);
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}
