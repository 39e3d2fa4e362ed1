//! Cheap duplicates: a peer's envelope whose message id the node already
//! holds is answered DUPLICATE before any signature, custody or payload
//! work, so a forgery that reuses a held id (altered payload, garbage
//! signature, another member's signature, the origin's own key over another
//! body) changes nothing: the held message stays as it was. A new id still
//! goes through full verification.

use crate::common::*;
use certfed::domain::envelope::{Draft, seal};
use certfed::domain::keys::Signer;
use certfed::proto::v1::*;
use prost::Message;

fn signer_from(pki: &Pki, id: &str) -> Signer {
    let pem = std::fs::read_to_string(pki.path(&format!("{id}.sign.key"))).unwrap();
    Signer::from_pkcs8_pem(id, &pem).unwrap()
}

fn draft(id: &str, title: &str) -> Draft {
    Draft {
        message_id: id.to_string(),
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

/// Pushes one frame as node-a to node-b and returns its acknowledgement.
async fn push_one(fed: &Fed, env: SignedEnvelope, seq: u64) -> PushAck {
    let mut fc = federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b")).await;
    let frame = PushFrame {
        toward: Vec::new(),
        bundled: Vec::new(),
        gossip: None,
        resent: false,
        returning: false,
        hops: vec![],
        seq,
        envelope: Some(env),
    };
    let mut s = fc
        .push(tokio_stream::iter(vec![frame]))
        .await
        .unwrap()
        .into_inner();
    s.message().await.unwrap().expect("one ack per frame")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_envelope_reusing_a_held_id_changes_nothing() {
    // b listens; the test plays node-a (b's peer) and never starts a.
    let fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1)]);
    let b = fed.start(1).await;
    let a_key = signer_from(&fed.pki, "node-a");
    let c_key = signer_from(&fed.pki, "node-c");
    let id = uuid::Uuid::now_v7().to_string();

    let good = seal(&a_key, draft(&id, "original"));
    let ack = push_one(&fed, good.clone(), 1).await;
    assert_eq!(ack.outcome, PushOutcome::Accepted as i32, "{ack:?}");

    let mut altered_payload = good.clone();
    altered_payload.payload = green_alert("tampered").encode_to_vec();
    let mut garbage_signature = good.clone();
    garbage_signature.signature = vec![7; 64];
    let other_member = seal(&c_key, draft(&id, "from node-c"));
    let origin_again = seal(&a_key, draft(&id, "same id, other body"));
    let forged = [
        ("altered payload", altered_payload),
        ("garbage signature", garbage_signature),
        ("another member's signature", other_member),
        ("the origin's key over another body", origin_again),
        ("replay", good),
    ];
    for (seq, (name, env)) in forged.into_iter().enumerate() {
        let ack = push_one(&fed, env, seq as u64 + 2).await;
        // Without the early check, the altered payload and the garbage
        // signature come back REJECTED (they were verified).
        assert_eq!(
            ack.outcome,
            PushOutcome::Duplicate as i32,
            "{name}: {ack:?}"
        );
    }

    let mut op = fed.operator(1).await;
    let held = op
        .get_message(GetMessageRequest {
            message_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.origin, "node-a");
    assert_eq!(held.alert.unwrap().title, "original");
    let listed = op
        .list_alerts(ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(listed.len(), 1, "one alert held: {listed:?}");

    // A new id is still verified in full.
    let mut fresh = seal(&a_key, draft(&uuid::Uuid::now_v7().to_string(), "fresh"));
    fresh.payload[3] ^= 0x20;
    let ack = push_one(&fed, fresh, 10).await;
    assert_eq!(ack.outcome, PushOutcome::Rejected as i32, "{ack:?}");
    assert!(ack.reason.contains("payload altered"), "{ack:?}");
    b.shutdown().await.unwrap();
}
