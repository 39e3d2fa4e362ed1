//! Order and arrival-order independence on the federation stream:
//! - envelopes a peer sends on one stream are stored (cursor order, hence
//!   ListAlerts and Watch order) in the order the stream carried them, and
//!   relayed onwards in that order, hop by hop;
//! - an update that arrives before the alert it supersedes leaves the same
//!   result as the other order: the original shows superseded.

use crate::common::*;
use crate::fedtools::*;
use certfed::domain::envelope::seal;
use certfed::proto::v1::*;
use futures::StreamExt;
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_stored_and_relayed_in_the_order_it_was_carried() {
    // a - b - c; the test plays node-a and pushes to b, which relays to c.
    let fed = Fed::line();
    let b = fed.start(1).await;
    let c = fed.start(2).await;
    let a_key = signer_from(&fed.pki, "node-a");
    let now = certfed::service::now_ms();
    const N: usize = 1500;
    // Envelopes of very different sizes, so that batches take different
    // times to verify (a race between batches would show).
    let envs: Vec<SignedEnvelope> = (0..N)
        .map(|i| {
            let mut a = green_alert(&format!("ordered {i}"));
            if i % 9 == 0 {
                a.description = "y".repeat(120 * 1024);
            }
            let mut d = draft(a.encode_to_vec());
            d.created_ms = now;
            seal(&a_key, d)
        })
        .collect();
    let sent: Vec<String> = envs.iter().map(id_of).collect();

    // Watch on b from now on, to compare the live order too.
    let mut op_b = fed.operator(1).await;
    let mut watch = op_b
        .watch(WatchRequest::default())
        .await
        .unwrap()
        .into_inner();

    let mut fc = federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b"))
        .await
        .max_encoding_message_size(1 << 20);
    let frames: Vec<PushFrame> = envs
        .into_iter()
        .enumerate()
        .map(|(i, e)| frame(i as u64 + 1, e))
        .collect();
    let mut acks = fc
        .push(tokio_stream::iter(frames))
        .await
        .unwrap()
        .into_inner();
    let mut n = 0u64;
    while let Some(a) = acks.message().await.unwrap() {
        n += 1;
        assert_eq!(a.seq, n, "acks come in order");
        assert_eq!(a.outcome, PushOutcome::Accepted as i32, "{a:?}");
        if n == N as u64 {
            break;
        }
    }
    assert_eq!(n, N as u64);

    let stored = alert_ids_oldest_first(&fed, 1).await;
    assert_eq!(stored, sent, "b stores in stream order");

    let mut watched = Vec::new();
    while watched.len() < N {
        let ev = tokio::time::timeout(WAIT, watch.next())
            .await
            .expect("Watch delivers every stored alert")
            .expect("Watch stays open")
            .unwrap();
        if let Some(m) = ev.message {
            watched.push(m.message_id);
        }
    }
    assert_eq!(watched, sent, "Watch shows the stream order");

    let all_at_c = eventually(WAIT, || async {
        let mut op = fed.operator(2).await;
        op.get_node_info(GetNodeInfoRequest {})
            .await
            .is_ok_and(|r| r.into_inner().stored_messages >= N as u64)
    })
    .await;
    assert!(all_at_c, "c receives everything b relays");
    let at_c = alert_ids_oldest_first(&fed, 2).await;
    assert_eq!(at_c, sent, "the origin order is kept on the next hop");
    b.shutdown().await.unwrap();
    c.shutdown().await.unwrap();
}

/// An update of `original` by its origin.
fn update_of(
    signer: &certfed::domain::keys::Signer,
    original: &str,
    title: &str,
) -> SignedEnvelope {
    let mut a = green_alert(title);
    a.supersedes = original.to_string();
    a.revision = Revision::Update as i32;
    let d = draft(a.encode_to_vec());
    seal(signer, d)
}

async fn superseded_by(fed: &Fed, i: usize, id: &str) -> String {
    let mut op = fed.operator(i).await;
    let m = op
        .get_message(GetMessageRequest {
            message_id: id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    m.superseded_by
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_arriving_before_its_original_supersedes_it_all_the_same() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let b = fed.start(1).await;
    let a_key = signer_from(&fed.pki, "node-a");
    let fc = federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b")).await;
    let push_one = |env: SignedEnvelope| {
        let mut fc = fc.clone();
        async move {
            let mut s = fc
                .push(tokio_stream::iter(vec![frame(1, env)]))
                .await
                .unwrap()
                .into_inner();
            s.message().await.unwrap().expect("an ack")
        }
    };

    // In order: original, then update.
    let orig1 = signed_alert(&a_key, "first original", certfed::service::now_ms());
    let upd1 = update_of(&a_key, &id_of(&orig1), "first update");
    // Reversed: update, then original (e.g. they took different paths).
    let orig2 = signed_alert(&a_key, "second original", certfed::service::now_ms());
    let upd2 = update_of(&a_key, &id_of(&orig2), "second update");
    for env in [orig1.clone(), upd1.clone(), upd2.clone(), orig2.clone()] {
        let ack = push_one(env).await;
        assert_eq!(ack.outcome, PushOutcome::Accepted as i32, "{ack:?}");
    }
    assert_eq!(superseded_by(&fed, 1, &id_of(&orig1)).await, id_of(&upd1));
    assert_eq!(
        superseded_by(&fed, 1, &id_of(&orig2)).await,
        id_of(&upd2),
        "the original that arrived after its update shows superseded"
    );
    assert_eq!(superseded_by(&fed, 1, &id_of(&upd2)).await, "");

    b.shutdown().await.unwrap();
}
