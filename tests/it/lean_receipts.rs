//! Lean receipts: a relay passes the receipts it holds for one origin as one
//! bundled Push frame, each receipt still its recipient's signed envelope
//! (the origin verifies each one: its delivery status names every
//! recipient). A bundle is taken frame by frame: a forged receipt in it is
//! refused alone, and a bundle nested in a bundle is malformed.

use crate::common::*;
use crate::fedtools::{push_as, sample, scrape};
use certfed::domain::envelope::{Draft, seal};
use certfed::proto::v1::*;
use prost::Message;
use std::time::Duration;

const RECEIPT_FRAMES: &str = "certfed_frames_sent_total{kind=\"receipts\"}";
const DEPTH_A: &str = "certfed_outbox_depth{peer=\"node-a\"}";

/// b relays a's alerts to c and d; c's and d's receipts wait in b's outbox
/// while a is down, and go to a as one frame when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_bundles_receipts_toward_one_origin_into_one_frame() {
    let mut fed = Fed::new(
        &["node-a", "node-b", "node-c", "node-d"],
        &[(0, 1), (1, 2), (1, 3)],
    );
    let metrics = format!("127.0.0.1:{}", free_port());
    fed.specs[1].extra = format!("\n[metrics]\nlisten = \"{metrics}\"\n");
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(publish_on(&fed, 0, green_alert(&format!("lean {i}")), &[]).await);
    }
    for id in &ids {
        assert!(
            arrives(&fed, 1, id, Duration::from_secs(30)).await,
            "b holds {id}"
        );
    }
    a.shutdown().await.unwrap();
    let c = fed.start(2).await;
    let d = fed.start(3).await;
    for id in &ids {
        assert!(arrives(&fed, 2, id, Duration::from_secs(30)).await);
        assert!(arrives(&fed, 3, id, Duration::from_secs(30)).await);
    }
    // c's and d's receipts reach b and wait for a: c and d have handed
    // everything to b, and b's queue for a holds still for a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = -1.0;
    loop {
        let mut handed = true;
        for n in [&c, &d] {
            let depths = n.node.store.outbox_depths().await.unwrap();
            handed &= depths.iter().all(|(_, k)| *k == 0);
        }
        let now = sample(&scrape(&metrics).await, DEPTH_A);
        if handed && now >= 2.0 && now == last {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "c's and d's receipts wait in b's outbox for a (depth {now}, handed {handed})"
        );
        last = now;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let before = sample(&scrape(&metrics).await, RECEIPT_FRAMES);

    let a = fed.start(0).await;
    let op_a = fed.operator(0).await;
    for id in &ids {
        let delivered = eventually(Duration::from_secs(30), || {
            let mut op = op_a.clone();
            let id = id.clone();
            async move {
                let d = op
                    .get_delivery_status(GetDeliveryStatusRequest { message_id: id })
                    .await
                    .unwrap()
                    .into_inner();
                ["node-c", "node-d"].iter().all(|n| {
                    d.recipients
                        .iter()
                        .any(|r| r.node_id == *n && r.state == DeliveryState::Delivered as i32)
                })
            }
        })
        .await;
        assert!(delivered, "a verified c's and d's receipts for {id}");
    }
    let after = sample(&scrape(&metrics).await, RECEIPT_FRAMES);
    // Without bundles: one frame per receipt envelope (`last`, at least two
    // here); with them one frame, or two if the link broke and resent.
    assert!(
        after - before < last,
        "{} receipt frames for {last} queued receipts: they went to a bundled",
        after - before
    );
    for n in [a, b, c, d] {
        n.shutdown().await.unwrap();
    }
}

fn draft(title: &str) -> Draft {
    Draft {
        message_id: uuid::Uuid::now_v7().to_string(),
        kind: MessageKind::Alert,
        tlp: Tlp::Green,
        recipients: vec![],
        created_ms: certfed::service::now_ms(),
        expires_ms: None,
        hop_limit: 8,
        exercise: false,
        encrypted: false,
        payload: green_alert(title).encode_to_vec(),
    }
}

fn framed(seq: u64, env: Option<SignedEnvelope>, bundled: Vec<PushFrame>) -> PushFrame {
    PushFrame {
        toward: Vec::new(),
        seq,
        envelope: env,
        hops: vec![],
        returning: false,
        bundled,
        gossip: None,
        resent: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_is_taken_frame_by_frame() {
    // b listens; the test plays node-a and never starts it.
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let b = fed.start(1).await;
    let key = crate::fedtools::signer_from(&fed.pki, "node-a");
    let good = seal(&key, draft("bundled good"));
    let mut forged = seal(&key, draft("bundled forged"));
    forged.signature[0] ^= 1;
    let nested = framed(
        3,
        Some(seal(&key, draft("nested"))),
        vec![framed(4, Some(seal(&key, draft("deeper"))), vec![])],
    );
    let carrier = framed(
        0,
        None,
        vec![
            framed(1, Some(good.clone()), vec![]),
            framed(2, Some(forged), vec![]),
            nested,
        ],
    );
    let mut acks = push_as(&fed, 1, "node-b", "node-a", vec![carrier]).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            acks.message()
                .await
                .unwrap()
                .expect("an ack per bundled frame"),
        );
    }
    got.sort_by_key(|a| a.seq);
    assert_eq!(
        got.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "{got:?}"
    );
    assert_eq!(got[0].outcome, PushOutcome::Accepted as i32, "{:?}", got[0]);
    assert_eq!(got[1].outcome, PushOutcome::Rejected as i32, "{:?}", got[1]);
    assert!(got[1].reason.contains("bad signature"), "{:?}", got[1]);
    assert_eq!(got[2].outcome, PushOutcome::Rejected as i32, "{:?}", got[2]);
    assert!(got[2].reason.contains("carries no frames"), "{:?}", got[2]);
    let good_id = EnvelopeHeader::decode(good.header.as_slice())
        .unwrap()
        .message_id;
    assert!(
        holds(&fed, 1, &good_id).await,
        "the good frame of the bundle is stored"
    );
    b.shutdown().await.unwrap();
}

/// A carrier frame is answered frame by frame, so one bringing a hundred
/// thousand empty frames (three bytes each, within the transport limit)
/// would make a hundred thousand acknowledgements in one batch: the stream
/// is closed instead, saying why, after the frames before it are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_bringing_too_many_frames_closes_the_stream() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let b = fed.start(1).await;
    let key = crate::fedtools::signer_from(&fed.pki, "node-a");
    let before = framed(1, Some(seal(&key, draft("before the carrier"))), vec![]);
    let carrier = framed(0, None, vec![PushFrame::default(); 100_000]);
    let mut acks = push_as(&fed, 1, "node-b", "node-a", vec![before, carrier]).await;
    let first = acks.message().await.unwrap().expect("the frame before");
    assert_eq!(first.seq, 1);
    assert_eq!(first.outcome, PushOutcome::Accepted as i32, "{first:?}");
    let s = acks
        .message()
        .await
        .expect_err("the stream is closed, not 100,000 acknowledgements");
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    assert!(
        s.message().contains("100000 bundled frames") && s.message().contains("at most 1024"),
        "{s:?}"
    );
    b.shutdown().await.unwrap();
}

/// Carriers whose frames fill more than one batch (512 frames): the batch is
/// cut where they fill it, and every frame is still answered, in stream
/// order, and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carriers_filling_several_batches_are_answered_in_order() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let b = fed.start(1).await;
    let key = crate::fedtools::signer_from(&fed.pki, "node-a");
    let mut seq = 0;
    let mut ids = Vec::new();
    let mut carriers = Vec::new();
    for _ in 0..2 {
        let mut inner = Vec::new();
        for _ in 0..600 {
            seq += 1;
            let env = seal(&key, draft(&format!("carried {seq}")));
            ids.push(
                EnvelopeHeader::decode(env.header.as_slice())
                    .unwrap()
                    .message_id,
            );
            inner.push(framed(seq, Some(env), vec![]));
        }
        carriers.push(framed(0, None, inner));
    }
    let mut acks = push_as(&fed, 1, "node-b", "node-a", carriers).await;
    let mut got = Vec::new();
    while let Some(a) = acks.message().await.unwrap() {
        assert_eq!(a.outcome, PushOutcome::Accepted as i32, "{a:?}");
        got.push(a.seq);
    }
    assert_eq!(
        got,
        (1..=1200).collect::<Vec<u64>>(),
        "every frame, in order"
    );
    assert!(holds(&fed, 1, &ids[0]).await && holds(&fed, 1, &ids[1199]).await);
    b.shutdown().await.unwrap();
}
