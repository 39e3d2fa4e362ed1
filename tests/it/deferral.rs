//! Temporary and permanent refusals on a link, and links that must not wait
//! silently:
//! - a peer that refuses for a cause that can pass (a creation time ahead of
//!   its clock, a signing key it has not pinned yet) defers the message: the
//!   sender keeps it, shows "deferred: reason; next try at ...", lets the rest
//!   of the queue through, and delivers it once the cause has passed;
//! - peers with different `limits.max_message_bytes`: the sender learns the
//!   peer's limit, marks a larger message REJECTED with that reason and moves on;
//! - a peer that never acknowledges: the link gives up after the ack timeout
//!   and reconnects, with the reason shown;
//! - backoff is reset only when the peer accepts something.

use crate::common::*;
use crate::fedtools::*;
use certfed::proto::v1::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_ahead_of_the_peers_clock_is_deferred_then_delivered() {
    // a - b - c; the test plays node-a. c allows 1 s of clock skew, b 300 s:
    // b takes a message created 12 s ahead, c defers it until it is valid.
    let mut fed = Fed::line();
    fed.specs[2].extra = "max_clock_skew_secs = 1".into();
    let b = fed.start(1).await;
    let c = fed.start(2).await;
    let a_key = signer_from(&fed.pki, "node-a");
    let mut fc = federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b")).await;
    let ahead = signed_alert(
        &a_key,
        "from a clock 12 s ahead",
        certfed::service::now_ms() + 12_000,
    );
    let ahead_id = id_of(&ahead);
    let mut s = fc
        .push(tokio_stream::iter(vec![frame(1, ahead)]))
        .await
        .unwrap()
        .into_inner();
    let ack = s.message().await.unwrap().unwrap();
    assert_eq!(ack.outcome, PushOutcome::Accepted as i32, "{ack:?}");

    let deferred = eventually(WAIT, || async {
        delivery_to(&fed, 1, &ahead_id, "node-c")
            .await
            .is_some_and(|d| {
                d.state == DeliveryState::Deferred as i32
                    && d.reason.contains("clock skew")
                    && d.reason.contains("next try at")
                    && d.next_attempt.is_some()
            })
    })
    .await;
    let d = delivery_to(&fed, 1, &ahead_id, "node-c").await;
    assert!(deferred, "b shows the delivery to c as deferred: {d:?}");

    // The deferred message does not hold back the rest of the queue.
    let now_msg = signed_alert(&a_key, "on time", certfed::service::now_ms());
    let now_id = id_of(&now_msg);
    let mut s = fc
        .push(tokio_stream::iter(vec![frame(2, now_msg)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        s.message().await.unwrap().unwrap().outcome,
        PushOutcome::Accepted as i32
    );
    assert!(arrives(&fed, 2, &now_id, WAIT).await);

    // Once its creation time is within c's allowed skew, it is delivered.
    assert!(
        arrives(&fed, 2, &ahead_id, WAIT).await,
        "delivered once the skew has passed"
    );
    let done = eventually(WAIT, || async {
        delivery_to(&fed, 1, &ahead_id, "node-c")
            .await
            .is_some_and(|d| d.state == DeliveryState::Delivered as i32)
    })
    .await;
    assert!(done);
    b.shutdown().await.unwrap();
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_signed_with_a_key_pinned_later_is_delivered_after_the_reload() {
    // The documented rotation: node-a signs with a new key before node-b has
    // pinned it; b defers, a keeps the message, b reloads, a delivers.
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let new_key = certfed::pki::new_signing_key().unwrap();
    certfed::pki::write_private(
        &fed.pki.path("node-a.new.sign.key"),
        &new_key.private_pem,
        false,
    )
    .unwrap();
    certfed::pki::write_public(
        &fed.pki.path("node-a.new.sign.pub"),
        &new_key.public_pem,
        false,
    )
    .unwrap();
    let a_cfg = edited(
        &fed.config_path(0),
        "node-a-rotated.toml",
        "signing_key = \"node-a.sign.key\"",
        "signing_key = \"node-a.new.sign.key\"",
    );
    let both = "signing_keys = [\"node-a.sign.pub\", \"node-a.new.sign.pub\"]";
    let a_cfg = edited(
        &a_cfg,
        "node-a-rotated.toml",
        "signing_keys = [\"node-a.sign.pub\"]",
        both,
    );
    let b = fed.start(1).await;
    let a = start_from(&a_cfg).await;
    let id = publish_on(&fed, 0, green_alert("signed with the new key"), &[]).await;

    let deferred = eventually(WAIT, || async {
        delivery_to(&fed, 0, &id, "node-b").await.is_some_and(|d| {
            d.state == DeliveryState::Deferred as i32 && d.reason.contains("unknown signer")
        })
    })
    .await;
    let d = delivery_to(&fed, 0, &id, "node-b").await;
    assert!(deferred, "a shows the delivery as deferred: {d:?}");
    assert!(!holds(&fed, 1, &id).await);
    let p = peer_view(&fed, 0, "node-b").await.unwrap();
    assert_eq!(p.outbox_depth, 1, "the message stays queued");
    assert!(
        p.last_error.contains("unknown signer"),
        "ListPeers shows why: {p:?}"
    );

    // b pins the new key and reloads.
    let b_cfg = edited(
        &fed.config_path(1),
        "node-b.toml",
        "signing_keys = [\"node-a.sign.pub\"]",
        both,
    );
    b.reload(&b_cfg).unwrap();
    assert!(
        arrives(&fed, 1, &id, WAIT).await,
        "delivered on a later try once b has pinned the key"
    );
    let done = eventually(WAIT, || async {
        delivery_to(&fed, 0, &id, "node-b")
            .await
            .is_some_and(|d| d.state == DeliveryState::Delivered as i32)
    })
    .await;
    assert!(done);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_peers_size_limit_is_refused_visibly_and_the_link_moves_on() {
    // a allows 2 MiB, b the default 256 KiB.
    let mut fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    fed.specs[0].extra = "max_message_bytes = 2097152".into();
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    let mut big = green_alert("500 KB");
    big.description = "z".repeat(500 * 1024);
    let big_id = publish_on(&fed, 0, big, &[]).await;
    let small_id = publish_on(&fed, 0, green_alert("small, behind the big one"), &[]).await;
    assert!(
        arrives(&fed, 1, &small_id, WAIT).await,
        "the link does not sit behind the big message"
    );
    let refused = eventually(WAIT, || async {
        delivery_to(&fed, 0, &big_id, "node-b")
            .await
            .is_some_and(|d| {
                d.state == DeliveryState::Rejected as i32
                    && d.reason.contains("262144")
                    && d.reason.contains("max_message_bytes")
            })
    })
    .await;
    let d = delivery_to(&fed, 0, &big_id, "node-b").await;
    assert!(refused, "GetDeliveryStatus says why: {d:?}");
    let p = peer_view(&fed, 0, "node-b").await.unwrap();
    assert_eq!(p.state, LinkState::Up as i32);
    assert_eq!(p.outbox_depth, 0, "nothing left waiting");
    assert!(
        p.last_error.contains("262144"),
        "ListPeers shows the refusal: {p:?}"
    );
    assert!(!holds(&fed, 1, &big_id).await);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_acknowledges_is_reconnected_with_the_reason_shown() {
    let mut fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    fed.specs[0].extra = "ack_timeout_secs = 2".into();
    let fake = FakePeer::start(&fed, 1, FakePush::Silent).await;
    let a = fed.start(0).await;
    let id = publish_on(&fed, 0, green_alert("into the void"), &[]).await;
    let shown = eventually(WAIT, || async {
        peer_view(&fed, 0, "node-b")
            .await
            .is_some_and(|p| p.last_error.contains("no acknowledgement from node-b"))
    })
    .await;
    let p = peer_view(&fed, 0, "node-b").await;
    assert!(shown, "the link says why it reconnects: {p:?}");
    let again = eventually(WAIT, || async { fake.pushes.load(Ordering::SeqCst) >= 2 }).await;
    assert!(again, "the link reconnected and offered the message again");
    let d = delivery_to(&fed, 0, &id, "node-b").await.unwrap();
    assert_eq!(d.state, DeliveryState::Queued as i32, "kept, not dropped");
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_is_reset_only_when_the_peer_accepts_something() {
    // The peer accepts connections and streams but fails every stream at
    // once: the link must back off, not reconnect every 200 ms.
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let fake = FakePeer::start(&fed, 1, FakePush::FailAfterOpen).await;
    let a = fed.start(0).await;
    publish_on(&fed, 0, green_alert("never accepted"), &[]).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let n = fake.pushes.load(Ordering::SeqCst);
    assert!(n >= 2, "the link keeps trying ({n})");
    // 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s (halved at worst by jitter) fit in 8 s
    // about 8 times; a reset on every connect makes it about 40.
    assert!(n <= 12, "{n} streams opened in 8 s: the backoff was reset");
    a.shutdown().await.unwrap();
}
