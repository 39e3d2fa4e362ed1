//! A hostile peer: a test client holding a valid node certificate pushes forged,
//! altered, replayed, oversized, malformed and unknown-signer envelopes. Each is
//! refused with a reason and nothing bad is stored.

use crate::common::*;
use crate::fedtools::frame;
use certfed::domain::envelope::{Draft, seal};
use certfed::domain::keys::Signer;
use certfed::proto::v1::*;
use ed25519_dalek::SigningKey;
use prost::Message;
use std::time::Duration;

fn signer_from(pki: &Pki, id: &str) -> Signer {
    let pem = std::fs::read_to_string(pki.path(&format!("{id}.sign.key"))).unwrap();
    Signer::from_pkcs8_pem(id, &pem).unwrap()
}

fn draft(payload: Vec<u8>) -> Draft {
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
        payload,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_envelopes_are_refused_with_reasons() {
    // b listens; the test plays node-a (a configured peer of b) but never starts a.
    let fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1)]);
    let b = fed.start(1).await;
    let a_key = signer_from(&fed.pki, "node-a");
    let c_key = signer_from(&fed.pki, "node-c");
    let stranger = Signer::new("node-a", SigningKey::from_bytes(&[42; 32]));
    let payload = green_alert("hostile test").encode_to_vec();

    let good = seal(&a_key, draft(payload.clone()));
    let mut altered_payload = seal(&a_key, draft(payload.clone()));
    altered_payload.payload[3] ^= 0x20;
    let mut altered_sig = seal(&a_key, draft(payload.clone()));
    altered_sig.signature[0] ^= 1;
    let mut altered_header = seal(&a_key, draft(payload.clone()));
    let n = altered_header.header.len();
    altered_header.header[n - 1] ^= 1;
    let unknown = seal(&stranger, draft(payload.clone()));
    // c's own key signs a header that claims node-a as origin.
    let false_origin = {
        use ed25519_dalek::Signer as _;
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let env = seal(&c_key, draft(payload.clone()));
        let mut h = EnvelopeHeader::decode(env.header.as_slice()).unwrap();
        h.origin = "node-a".into();
        let header = h.encode_to_vec();
        let mut signed = certfed::domain::envelope::SIGNING_CONTEXT.to_vec();
        signed.extend_from_slice(&header);
        let pem = std::fs::read_to_string(fed.pki.path("node-c.sign.key")).unwrap();
        let sig = SigningKey::from_pkcs8_pem(&pem).unwrap().sign(&signed);
        SignedEnvelope {
            header,
            payload: env.payload,
            signature: sig.to_bytes().to_vec(),
        }
    };
    let mut future = draft(payload.clone());
    future.created_ms += 3_600_000;
    let future = seal(&a_key, future);
    let mut big = green_alert("big");
    big.description = "x".repeat(300 * 1024);
    let oversized = seal(&a_key, draft(big.encode_to_vec()));
    let malformed = SignedEnvelope {
        header: vec![0xff, 0xff, 0xff],
        payload: payload.clone(),
        signature: vec![0; 64],
    };
    let mut invalid = green_alert("");
    invalid.title.clear();
    let invalid_payload = seal(&a_key, draft(invalid.encode_to_vec()));
    let mut red = draft(payload.clone());
    red.tlp = Tlp::Red;
    red.recipients = vec!["node-c".into()];
    let not_for_b = seal(&a_key, red);
    // Encrypted for b, but the sealed copy is garbage.
    let mut garbled = draft(
        EncryptedPayload {
            copies: vec![SealedCopy {
                recipient: "node-b".into(),
                key_id: "0000000000000000".into(),
                encapsulated_key: vec![1; 32],
                ciphertext: vec![2; 64],
            }],
        }
        .encode_to_vec(),
    );
    garbled.tlp = Tlp::Amber;
    garbled.recipients = vec!["node-b".into()];
    garbled.encrypted = true;
    let undecryptable = seal(&a_key, garbled);

    let cases: Vec<(&str, Option<SignedEnvelope>, PushOutcome, &str)> = vec![
        ("good", Some(good.clone()), PushOutcome::Accepted, ""),
        ("replayed", Some(good.clone()), PushOutcome::Duplicate, ""),
        (
            "altered payload",
            Some(altered_payload),
            PushOutcome::Rejected,
            "payload altered",
        ),
        (
            "altered signature",
            Some(altered_sig),
            PushOutcome::Rejected,
            "bad signature",
        ),
        (
            "altered header",
            Some(altered_header),
            PushOutcome::Rejected,
            "",
        ),
        // A key not pinned yet and a creation time ahead of the clock can
        // pass (key rotation, clock fixed): deferred, not rejected.
        (
            "unknown signer",
            Some(unknown),
            PushOutcome::Deferred,
            "unknown signer",
        ),
        (
            "false origin",
            Some(false_origin),
            PushOutcome::Rejected,
            "false origin",
        ),
        ("future", Some(future), PushOutcome::Deferred, "clock skew"),
        (
            "malformed",
            Some(malformed),
            PushOutcome::Rejected,
            "malformed",
        ),
        (
            "invalid payload",
            Some(invalid_payload),
            PushOutcome::Rejected,
            "alert.title",
        ),
        (
            "red in clear",
            Some(not_for_b),
            PushOutcome::Rejected,
            "must be end-to-end encrypted",
        ),
        (
            "undecryptable",
            Some(undecryptable),
            PushOutcome::Rejected,
            "cannot decrypt",
        ),
        ("no envelope", None, PushOutcome::Rejected, "no envelope"),
    ];

    let mut fc = federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b"))
        .await
        .max_encoding_message_size(1 << 20)
        .max_decoding_message_size(1 << 20);
    let frames: Vec<PushFrame> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, env, _, _))| PushFrame {
            toward: Vec::new(),
            bundled: Vec::new(),
            gossip: None,
            resent: false,
            returning: false,
            hops: vec![],
            seq: i as u64 + 1,
            envelope: env.clone(),
        })
        .collect();
    // Send one at a time so the replay is processed after the original commit.
    let mut acks = Vec::new();
    for f in frames {
        let mut s = fc
            .push(tokio_stream::iter(vec![f]))
            .await
            .unwrap()
            .into_inner();
        acks.push(s.message().await.unwrap().expect("one ack per frame"));
    }
    for ((name, _, want, needle), ack) in cases.iter().zip(&acks) {
        assert_eq!(ack.outcome, *want as i32, "{name}: {ack:?}");
        assert!(
            ack.reason.contains(needle),
            "{name}: reason {:?} lacks {needle:?}",
            ack.reason
        );
    }

    // The oversized envelope is refused by the transport before decoding, with a clear status.
    let err = fc
        .push(tokio_stream::iter(vec![PushFrame {
            toward: Vec::new(),
            bundled: Vec::new(),
            gossip: None,
            resent: false,
            returning: false,
            hops: vec![],
            seq: 99,
            envelope: Some(oversized),
        }]))
        .await;
    let refused = match err {
        Err(s) => s.code() == tonic::Code::ResourceExhausted || s.code() == tonic::Code::OutOfRange,
        Ok(resp) => {
            let mut s = resp.into_inner();
            match s.message().await {
                Ok(Some(ack)) => {
                    ack.outcome == PushOutcome::Rejected as i32 && ack.reason.contains("bytes")
                }
                Err(st) => matches!(
                    st.code(),
                    tonic::Code::ResourceExhausted
                        | tonic::Code::OutOfRange
                        | tonic::Code::Internal
                ),
                Ok(None) => false,
            }
        }
    };
    assert!(refused, "oversized envelope must be refused");

    let mut op = fed.operator(1).await;
    let info = op
        .get_node_info(GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.stored_messages, 1, "only the good envelope is stored");
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_not_a_peer_may_not_push() {
    let fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1)]);
    let b = fed.start(1).await;
    let mut fc = federation_client(&fed.pki, &fed.addr(1), "node-c", Some("node-b")).await;
    let err = fc
        .push(tokio_stream::iter(Vec::<PushFrame>::new()))
        .await
        .expect_err("node-c is not b's peer");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        err.message().contains("not a configured peer"),
        "{}",
        err.message()
    );
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_certificate_names_another_node_is_refused() {
    // a believes node-b lives at c's address: the link must refuse c's certificate.
    let mut fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1)]);
    let c_port = fed.specs[2].port;
    fed.specs[0].peers = vec![("node-b".into(), c_port)];
    fed.specs[2].peers = vec![("node-a".into(), fed.specs[0].port)];
    let c = fed.start(2).await;
    let a = fed.start(0).await;
    let mut op = fed.operator(0).await;
    op.publish_alert(PublishAlertRequest {
        alert: Some(green_alert("must not reach the impostor")),
        recipients: vec![],
        ..Default::default()
    })
    .await
    .unwrap();
    let ok = eventually(Duration::from_secs(10), || {
        let mut op = op.clone();
        async move {
            let p = op
                .list_peers(ListPeersRequest::default())
                .await
                .unwrap()
                .into_inner();
            p.peers[0].last_error.contains("node-c")
        }
    })
    .await;
    assert!(ok, "the link error must name the certificate it saw");
    let p = op
        .list_peers(ListPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        p.peers[0].outbox_depth, 1,
        "nothing delivered to the impostor"
    );
    let mut op_c = fed.operator(2).await;
    let info = op_c
        .get_node_info(GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.stored_messages, 0);
    a.shutdown().await.unwrap();
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_chains_of_custody_are_refused() {
    use certfed::domain::custody::sign_hop;
    let fed = Fed::new(&["node-a", "node-b", "node-c", "node-d"], &[(0, 1)]);
    let b = fed.start(1).await;
    let a_key = signer_from(&fed.pki, "node-a");
    let c_key = signer_from(&fed.pki, "node-c");
    let d_key = signer_from(&fed.pki, "node-d");
    let payload = green_alert("custody test").encode_to_vec();
    let hop = |by: &Signer, env: &SignedEnvelope, from: &str| {
        let h = EnvelopeHeader::decode(env.header.as_slice()).unwrap();
        sign_hop(
            by,
            HopRecord {
                message_id: h.message_id,
                received_from: from.into(),
                decision: "relayed".into(),
                ..Default::default()
            },
        )
    };
    // c's alert relayed by d then a: a legitimate chain [d, a].
    let ok = seal(&c_key, draft(payload.clone()));
    let ok_chain = vec![hop(&d_key, &ok, "node-c"), hop(&a_key, &ok, "node-d")];
    let tampered = seal(&c_key, draft(payload.clone()));
    let mut tampered_chain = vec![
        hop(&d_key, &tampered, "node-c"),
        hop(&a_key, &tampered, "node-d"),
    ];
    {
        let mut r = HopRecord::decode(tampered_chain[0].record.as_slice()).unwrap();
        r.decision = "nothing to see here".into();
        tampered_chain[0].record = r.encode_to_vec();
    }
    let gap = seal(&c_key, draft(payload.clone()));
    let gap_chain = vec![hop(&a_key, &gap, "node-d")];
    let missing = seal(&c_key, draft(payload.clone()));
    let looped = seal(&c_key, draft(payload.clone()));
    let b_key = signer_from(&fed.pki, "node-b");
    let looped_chain = vec![
        hop(&b_key, &looped, "node-c"),
        hop(&a_key, &looped, "node-b"),
    ];
    let mut limited = draft(payload.clone());
    limited.hop_limit = 1;
    let limited = seal(&c_key, limited);
    let limited_chain = vec![hop(&a_key, &limited, "node-c")];
    let cases: Vec<(&str, SignedEnvelope, Vec<SignedHop>, PushOutcome, &str)> = vec![
        ("relayed", ok, ok_chain, PushOutcome::Accepted, ""),
        (
            "tampered",
            tampered,
            tampered_chain,
            PushOutcome::Rejected,
            "hop 1 (node-d): signature does not verify",
        ),
        (
            "gap",
            gap,
            gap_chain,
            PushOutcome::Rejected,
            "received from node-d",
        ),
        (
            "no chain from a relay",
            missing,
            vec![],
            PushOutcome::Rejected,
            "came from node-a",
        ),
        ("loop", looped, looped_chain, PushOutcome::Rejected, "loop"),
        (
            "hop limit",
            limited,
            limited_chain,
            PushOutcome::Rejected,
            "hop limit",
        ),
    ];
    let mut fc = federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b")).await;
    for (i, (name, env, hops, want, needle)) in cases.into_iter().enumerate() {
        let mut s = fc
            .push(tokio_stream::iter(vec![PushFrame {
                toward: Vec::new(),
                bundled: Vec::new(),
                gossip: None,
                resent: false,
                returning: false,
                seq: i as u64,
                envelope: Some(env),
                hops,
            }]))
            .await
            .unwrap()
            .into_inner();
        let ack = s.message().await.unwrap().unwrap();
        assert_eq!(ack.outcome, want as i32, "{name}: {ack:?}");
        assert!(
            ack.reason.contains(needle),
            "{name}: {:?} lacks {needle:?}",
            ack.reason
        );
    }
    let mut op = fed.operator(1).await;
    let info = op
        .get_node_info(GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.stored_messages, 1);
    let list = op
        .list_alerts(ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let m = op
        .get_message(GetMessageRequest {
            message_id: list.alerts[0].message_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let path: Vec<_> = m.path.iter().map(|h| h.node_id.as_str()).collect();
    assert_eq!(
        path,
        ["node-c", "node-d", "node-a"],
        "the verified chain is the path"
    );
    let relays: Vec<_> = m.custody.iter().map(|r| r.relay.as_str()).collect();
    assert_eq!(relays, ["node-d", "node-a"]);
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_limit_stops_forwarding() {
    let mut fed = Fed::line();
    fed.specs[0].extra = "hop_limit = 1".into();
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    let c = fed.start(2).await;
    let mut op_a = fed.operator(0).await;
    let id = op_a
        .publish_alert(PublishAlertRequest {
            alert: Some(green_alert("one hop only")),
            recipients: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let op_b = fed.operator(1).await;
    let ok = arrives(&fed, 1, &id, Duration::from_secs(10)).await;
    assert!(ok, "b is one hop away and must receive it");
    // A second alert with the default limit crosses b; once it is at c, the
    // first one would have been too if b had forwarded it.
    let mut op_c = fed.operator(2).await;
    let id2 = op_b
        .clone()
        .publish_alert(PublishAlertRequest {
            alert: Some(green_alert("from b")),
            recipients: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let ok = arrives(&fed, 2, &id2, Duration::from_secs(10)).await;
    assert!(ok);
    let err = op_c
        .get_message(GetMessageRequest { message_id: id })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::NotFound,
        "hop limit 1 must stop at b"
    );
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

/// A message held at its hop limit is taken again only over a verified
/// shorter chain: a peer's forged short chain is refused (nothing queued
/// for b's other peer), a real one carries the message on to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_shorter_chain_for_a_message_at_its_hop_limit_is_refused() {
    use certfed::domain::custody::sign_hop;
    let fed = Fed::new(
        &["node-a", "node-b", "node-c", "node-d", "node-y"],
        &[(0, 1), (1, 4)],
    );
    let b = fed.start(1).await;
    let y = fed.start(4).await;
    let a_key = signer_from(&fed.pki, "node-a");
    let c_key = signer_from(&fed.pki, "node-c");
    let d_key = signer_from(&fed.pki, "node-d");
    let mut d = draft(green_alert("at the limit").encode_to_vec());
    d.hop_limit = 3;
    let env = seal(&c_key, d);
    let id = EnvelopeHeader::decode(env.header.as_slice())
        .unwrap()
        .message_id;
    let hop = |by: &Signer, from: &str| {
        sign_hop(
            by,
            HopRecord {
                message_id: id.clone(),
                received_from: from.into(),
                decision: "relayed".into(),
                ..Default::default()
            },
        )
    };
    let fc = federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b")).await;
    let push = |seq: u64, hops: Vec<SignedHop>| {
        let env = env.clone();
        let mut fc = fc.clone();
        async move {
            let mut s = fc
                .push(tokio_stream::iter(vec![PushFrame {
                    hops,
                    ..frame(seq, env)
                }]))
                .await
                .unwrap()
                .into_inner();
            s.message().await.unwrap().unwrap()
        }
    };
    // c → d → a → b: path [c, d, a], at the limit of 3: b forwards to nobody.
    let ack = push(1, vec![hop(&d_key, "node-c"), hop(&a_key, "node-d")]).await;
    assert_eq!(ack.outcome, PushOutcome::Accepted as i32, "{ack:?}");
    // Shorter chains that do not verify: one that does not end at the
    // sender (d's record, pushed by a), and a's record signed with d's key.
    let ack = push(2, vec![hop(&d_key, "node-c")]).await;
    assert_eq!(ack.outcome, PushOutcome::Rejected as i32, "{ack:?}");
    let forged = {
        let mut h = hop(&a_key, "node-c");
        h.signature = hop(&d_key, "node-c").signature;
        h
    };
    let ack2 = push(3, vec![forged]).await;
    assert_eq!(ack2.outcome, PushOutcome::Rejected as i32, "{ack2:?}");
    assert!(ack2.reason.contains("signature"), "{ack2:?}");
    let mut op_y = fed.operator(4).await;
    let err = op_y
        .get_message(GetMessageRequest {
            message_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        tonic::Code::NotFound,
        "forged chains queue nothing"
    );
    // The real shorter chain c → a → b: answered DUPLICATE, forwarded to y.
    let ack = push(4, vec![hop(&a_key, "node-c")]).await;
    assert_eq!(ack.outcome, PushOutcome::Duplicate as i32, "{ack:?}");
    assert!(
        arrives(&fed, 4, &id, Duration::from_secs(20)).await,
        "y gets it over the verified shorter path"
    );
    let m = op_y
        .get_message(GetMessageRequest { message_id: id })
        .await
        .unwrap()
        .into_inner();
    let path: Vec<_> = m.path.iter().map(|h| h.node_id.as_str()).collect();
    assert_eq!(path, ["node-c", "node-a", "node-b"]);
    b.shutdown().await.unwrap();
    y.shutdown().await.unwrap();
}
