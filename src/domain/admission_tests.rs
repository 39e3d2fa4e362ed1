//! Tests of admission without I/O: examples of each rule, and a property test
//! over random envelopes, paths, peers and policies.
use super::*;
use crate::domain::custody::sign_hop;
use crate::domain::envelope::{Draft, VerifyLimits, seal, verify};
use crate::proto::v1::{Alert, HopRecord, Nis2Sector, RsitClass, Severity};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

const NOW: i64 = 1_800_000_000_000;
const MEMBERS: [&str; 6] = ["node-a", "node-b", "node-c", "node-d", "node-e", "node-f"];

fn signer(i: usize) -> Signer {
    Signer::new(MEMBERS[i], SigningKey::from_bytes(&[i as u8 + 1; 32]))
}

fn registry() -> KeyRegistry {
    let mut reg = KeyRegistry::default();
    for (i, m) in MEMBERS.iter().enumerate() {
        reg.add(m, signer(i).verifying_key()).unwrap();
    }
    reg
}

fn alert(tlp: Tlp) -> Alert {
    Alert {
        title: "Wiper on jump hosts".into(),
        description: "seen at two operators".into(),
        tlp: tlp as i32,
        severity: Severity::High as i32,
        rsit_class: RsitClass::MaliciousCode as i32,
        sectors: vec![Nis2Sector::Energy as i32],
        ..Default::default()
    }
}

/// An alert signed by member `origin`, sealed for `recipients` when restricted.
fn envelope(
    origin: usize,
    tlp: Tlp,
    recipients: &[String],
    hop_limit: u32,
    encrypt: bool,
) -> SignedEnvelope {
    let message_id = uuid::Uuid::now_v7().to_string();
    let body = alert(tlp).encode_to_vec();
    let payload = if encrypt {
        let mut to = recipients.to_vec();
        to.push(MEMBERS[origin].to_string());
        crate::domain::e2e::seal(&body, &message_id, &to, &registry()).unwrap()
    } else {
        body
    };
    seal(
        &signer(origin),
        Draft {
            message_id,
            kind: MessageKind::Alert,
            tlp,
            recipients: recipients.to_vec(),
            created_ms: NOW - 1_000,
            expires_ms: None,
            hop_limit,
            exercise: false,
            encrypted: encrypt,
            payload,
        },
    )
}

/// The chain the relays `relays` (member indexes, in order) sign for `env`.
fn chain(env: &SignedEnvelope, origin: usize, relays: &[usize]) -> Vec<SignedHop> {
    let h = EnvelopeHeader::decode(env.header.as_slice()).unwrap();
    let mut previous = MEMBERS[origin].to_string();
    let mut hops = Vec::new();
    for &r in relays {
        hops.push(sign_hop(
            &signer(r),
            HopRecord {
                message_id: h.message_id.clone(),
                received_from: previous.clone(),
                received_at: Some(ms_to_ts(NOW - 500)),
                forwarded_to: vec!["somebody".into()],
                decision: "relayed".into(),
                ..Default::default()
            },
        ));
        previous = MEMBERS[r].to_string();
    }
    hops
}

fn limits() -> VerifyLimits {
    VerifyLimits {
        max_message_bytes: 256 * 1024,
        max_clock_skew_ms: 300_000,
        max_message_age_ms: 90 * 86_400_000,
    }
}

fn decide_one(
    me: usize,
    peers: &[Peer],
    env: SignedEnvelope,
    from_peer: Option<&str>,
    hops: Vec<SignedHop>,
) -> Decision {
    let reg = registry();
    let me_signer = signer(me);
    let view = View {
        me: MEMBERS[me],
        signer: &me_signer,
        keys: &reg,
        peers,
        max_message_bytes: 256 * 1024,
        roster: None,
        accept_exercise: true,
    };
    let verdict = verify(&reg, &env, NOW, &limits());
    admit(
        &view,
        Input {
            envelope: env,
            verdict,
            from_peer,
            chain: hops,
            chain_checked: None,
            receipt_route: None,
            returning: false,
        },
        NOW,
    )
}

fn peer(i: usize, max_tlp: Tlp, relay: bool) -> Peer {
    Peer {
        id: MEMBERS[i].into(),
        policy: PeerPolicy { max_tlp, relay },
    }
}

#[test]
fn green_broadcast_is_relayed_to_every_other_peer_with_a_hop_record() {
    // node-c receives node-a's broadcast via node-b; its peers are b and d.
    let env = envelope(0, Tlp::Green, &[], 8, false);
    let hops = chain(&env, 0, &[1]);
    let peers = [peer(1, Tlp::Red, true), peer(3, Tlp::Red, true)];
    let Decision::Admit(row) = decide_one(2, &peers, env, Some("node-b"), hops) else {
        panic!("admitted")
    };
    assert_eq!(row.forward_to, vec!["node-d".to_string()]);
    let path: Vec<_> = row.path.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(path, ["node-a", "node-b"]);
    let chain = HopChain::decode(row.hops.as_slice()).unwrap();
    assert_eq!(
        chain.hops.len(),
        2,
        "the received record plus this node's own"
    );
    let own = HopRecord::decode(chain.hops[1].record.as_slice()).unwrap();
    assert_eq!(
        (own.relay.as_str(), own.received_from.as_str()),
        ("node-c", "node-b")
    );
    assert_eq!(own.forwarded_to, vec!["node-d".to_string()]);
    let owed = row.receipt_owed.expect("a broadcast member owes a receipt");
    assert_eq!(
        (owed.origin.as_str(), owed.state),
        ("node-a", ReceiptState::Delivered)
    );
}

#[test]
fn amber_without_recipients_or_encryption_is_refused_with_a_receipt() {
    let peers = [peer(1, Tlp::Red, true)];
    let to = vec!["node-c".to_string()];
    let clear = envelope(1, Tlp::Amber, &to, 8, false);
    match decide_one(2, &peers, clear, Some("node-b"), vec![]) {
        Decision::Refuse { reason, receipt } => {
            assert!(
                reason.to_string().contains("end-to-end encrypted"),
                "{reason}"
            );
            assert_eq!(receipt.unwrap().state, ReceiptState::Rejected);
        }
        d => panic!("{d:?}"),
    }
    let broadcast = envelope(1, Tlp::Red, &[], 8, false);
    match decide_one(2, &peers, broadcast, Some("node-b"), vec![]) {
        Decision::Refuse { reason, receipt } => {
            assert!(
                reason.to_string().contains("may not be broadcast"),
                "{reason}"
            );
            assert!(receipt.is_some());
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn a_relay_routes_ciphertext_it_cannot_read() {
    // node-b relays node-a's AMBER alert for node-c without reading it.
    let to = vec!["node-c".to_string()];
    let env = envelope(0, Tlp::Amber, &to, 8, true);
    let peers = [peer(0, Tlp::Red, true), peer(2, Tlp::Red, true)];
    let Decision::Admit(row) = decide_one(1, &peers, env, Some("node-a"), vec![]) else {
        panic!("admitted")
    };
    assert!(!row.readable && row.plain.is_none());
    assert_eq!(row.forward_to, vec!["node-c".to_string()]);
    assert!(row.receipt_owed.is_none(), "not a recipient: owes nothing");
    // The recipient reads it.
    let env = envelope(0, Tlp::Amber, &to, 8, true);
    let Decision::Admit(row) =
        decide_one(2, &[peer(0, Tlp::Red, true)], env, Some("node-a"), vec![])
    else {
        panic!("admitted")
    };
    assert!(row.readable && row.plain.is_some());
    assert_eq!(row.severity, Severity::High as i32);
}

#[test]
fn loops_forged_chains_and_hop_limits_are_refused() {
    let env = envelope(0, Tlp::Green, &[], 8, false);
    let hops = chain(&env, 0, &[2, 1]);
    // node-c is already on the path.
    match decide_one(2, &[], env, Some("node-b"), hops) {
        Decision::Refuse { reason, .. } => {
            assert!(reason.to_string().contains("loop"), "{reason}");
            assert!(refuses_the_chain(&reason), "another copy may come");
        }
        d => panic!("{d:?}"),
    }
    // The chain does not end with the sender.
    let env = envelope(0, Tlp::Green, &[], 8, false);
    let hops = chain(&env, 0, &[3]);
    match decide_one(2, &[], env, Some("node-b"), hops) {
        Decision::Refuse { reason, .. } => {
            assert!(reason.to_string().contains("chain of custody"), "{reason}");
            assert!(refuses_the_chain(&reason), "another copy may come");
        }
        d => panic!("{d:?}"),
    }
    // Hop limit 2: a-b-c is the last allowed hop; c forwards nothing.
    let env = envelope(0, Tlp::Green, &[], 2, false);
    let hops = chain(&env, 0, &[1]);
    let Decision::Admit(row) = decide_one(2, &[peer(3, Tlp::Red, true)], env, Some("node-b"), hops)
    else {
        panic!("admitted")
    };
    assert!(row.forward_to.is_empty());
    // Hop limit 1: a-b-c is one hop too many for c.
    let env = envelope(0, Tlp::Green, &[], 1, false);
    let hops = chain(&env, 0, &[1]);
    match decide_one(2, &[], env, Some("node-b"), hops) {
        Decision::Refuse { reason, .. } => {
            assert!(reason.to_string().contains("hop limit"), "{reason}");
            assert!(refuses_the_chain(&reason), "a shorter copy may come");
        }
        d => panic!("{d:?}"),
    }
    // Refusals of the message itself are not about the chain.
    for own in [
        Rejection::BadSignature,
        Rejection::InvalidPayload("x".into()),
        Rejection::Policy("TLP:RED is never relayed".into()),
        Rejection::Malformed("header: x".into()),
    ] {
        assert!(!refuses_the_chain(&own), "{own}");
    }
}

#[test]
fn a_bad_signature_is_refused_without_a_receipt() {
    let mut env = envelope(0, Tlp::Green, &[], 8, false);
    env.signature[5] ^= 1;
    match decide_one(1, &[], env, Some("node-a"), vec![]) {
        Decision::Refuse { reason, receipt } => {
            assert_eq!(reason, Rejection::BadSignature);
            assert!(receipt.is_none(), "nobody is owed a receipt for a forgery");
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn only_refusals_that_can_pass_are_deferrable() {
    // 40 s ahead with 30 s allowed: retry in 10 s (plus a margin).
    let skew = Rejection::ClockSkew {
        ahead_ms: 40_000,
        limit_ms: 30_000,
    };
    assert_eq!(deferrable(&skew), Some(11_000));
    assert_eq!(
        deferrable(&Rejection::UnknownSigner("0123456789abcdef".into())),
        Some(0)
    );
    for permanent in [
        Rejection::BadSignature,
        Rejection::PayloadMismatch,
        Rejection::Malformed("x".into()),
        Rejection::Policy("x".into()),
        Rejection::InvalidPayload("x".into()),
        Rejection::Expired { expires_ms: 1 },
        Rejection::Oversized { size: 2, limit: 1 },
        Rejection::OriginMismatch {
            claimed: "a".into(),
            owner: "b".into(),
            key_id: "k".into(),
        },
    ] {
        assert_eq!(deferrable(&permanent), None, "{permanent}");
    }
    // A message signed ahead of the receiver's clock is refused as skew, which
    // is deferrable; the same envelope is admitted once time has caught up.
    let d = Draft {
        message_id: uuid::Uuid::now_v7().to_string(),
        kind: MessageKind::Alert,
        tlp: Tlp::Green,
        recipients: vec![],
        created_ms: NOW + limits().max_clock_skew_ms + 5_000,
        expires_ms: None,
        hop_limit: 8,
        exercise: false,
        encrypted: false,
        payload: alert(Tlp::Green).encode_to_vec(),
    };
    let env = seal(&signer(0), d);
    let reg = registry();
    let early = verify(&reg, &env, NOW, &limits());
    let reason = early.expect_err("ahead of the clock");
    assert_eq!(deferrable(&reason), Some(6_000));
    assert!(verify(&reg, &env, NOW + 6_000, &limits()).is_ok());
}

#[test]
fn receipts_follow_their_reverse_route() {
    let reg = registry();
    let me = signer(1);
    let peers = [peer(0, Tlp::Red, true), peer(2, Tlp::Red, true)];
    let view = View {
        me: MEMBERS[1],
        signer: &me,
        keys: &reg,
        peers: &peers,
        max_message_bytes: 256 * 1024,
        roster: None,
        accept_exercise: true,
    };
    let receipt = Receipt {
        message_ids: vec![uuid::Uuid::now_v7().to_string()],
        state: ReceiptState::Delivered as i32,
        reason: String::new(),
    };
    let env = seal(
        &signer(2),
        Draft {
            message_id: uuid::Uuid::now_v7().to_string(),
            kind: MessageKind::Receipt,
            tlp: Tlp::Green,
            recipients: vec!["node-a".into()],
            created_ms: NOW,
            expires_ms: None,
            hop_limit: 8,
            exercise: false,
            encrypted: false,
            payload: receipt.encode_to_vec(),
        },
    );
    let verdict = verify(&reg, &env, NOW, &limits());
    let d = admit(
        &view,
        Input {
            envelope: env,
            verdict,
            from_peer: Some("node-c"),
            chain: vec![],
            chain_checked: None,
            receipt_route: Some(ReceiptRoute::Next("node-a".into())),
            returning: false,
        },
        NOW,
    );
    let Decision::Admit(row) = d else {
        panic!("{d:?}")
    };
    assert_eq!(row.forward_to, vec!["node-a".to_string()]);
    assert!(row.receipt_owed.is_none(), "no receipt for a receipt");
    assert!(
        row.receipt_facts.is_none(),
        "addressed to node-a, not to this relay"
    );
}

fn tlp_strategy() -> impl Strategy<Value = Tlp> {
    prop_oneof![
        Just(Tlp::Clear),
        Just(Tlp::Green),
        Just(Tlp::Amber),
        Just(Tlp::AmberStrict),
        Just(Tlp::Red),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the envelope, path, peers and policies: never AMBER+ in clear
    /// to a non-recipient, never AMBER+ to a non-relay peer that is not a
    /// recipient, never above a peer's cap, never back along the path or to
    /// the origin, never beyond the hop limit.
    #[test]
    fn forwarding_never_breaks_policy(
        me in 0usize..6,
        origin in 0usize..6,
        tlp in tlp_strategy(),
        recipients in proptest::sample::subsequence(MEMBERS.to_vec(), 0..4),
        encrypt in any::<bool>(),
        hop_limit in 1u32..6,
        relays in proptest::sample::subsequence(vec![0usize, 1, 2, 3, 4, 5], 0..4),
        policies in proptest::collection::vec((tlp_strategy(), any::<bool>(), any::<bool>()), 6),
    ) {
        prop_assume!(me != origin);
        let relays: Vec<usize> = relays.into_iter().filter(|r| *r != origin && *r != me).collect();
        let recipients: Vec<String> = recipients.into_iter().map(String::from).filter(|r| r != MEMBERS[origin]).collect();
        let env = envelope(origin, tlp, &recipients, hop_limit, encrypt && !recipients.is_empty());
        let hops = chain(&env, origin, &relays);
        let sender = relays.last().copied().unwrap_or(origin);
        let peers: Vec<Peer> = (0..6)
            .filter(|i| *i != me && policies[*i].2)
            .map(|i| peer(i, policies[i].0, policies[i].1))
            .collect();
        let path: Vec<&str> = std::iter::once(origin).chain(relays.iter().copied()).map(|i| MEMBERS[i]).collect();
        match decide_one(me, &peers, env, Some(MEMBERS[sender]), hops) {
            Decision::Admit(row) => {
                prop_assert!(!(requires_e2e(tlp) && recipients.is_empty()));
                prop_assert!(path.len() <= hop_limit as usize, "admitted beyond the hop limit");
                if path.len() + 1 > hop_limit as usize {
                    prop_assert!(row.forward_to.is_empty(), "forwarded beyond the hop limit");
                }
                for to in &row.forward_to {
                    let p = peers.iter().find(|p| &p.id == to).expect("only to peers");
                    prop_assert!(tlp <= p.policy.max_tlp, "above the cap of {}", to);
                    prop_assert!(!path.contains(&to.as_str()), "back along the path to {}", to);
                    prop_assert!(to != MEMBERS[me]);
                    let is_recipient = recipients.contains(to);
                    if requires_e2e(tlp) {
                        prop_assert!(is_recipient || p.policy.relay,
                            "AMBER+ to {} which is neither a recipient nor a relay link", to);
                        prop_assert!(encrypt, "AMBER+ forwarded without end-to-end encryption");
                    }
                    if !requires_e2e(tlp) && !recipients.is_empty() && !is_recipient {
                        prop_assert!(p.policy.relay);
                    }
                }
                if requires_e2e(tlp) && !recipients.iter().any(|r| r == MEMBERS[me]) {
                    prop_assert!(!row.readable && row.plain.is_none(), "a non-recipient can read AMBER+");
                }
            }
            Decision::Refuse { .. } => {}
        }
    }
}

#[test]
fn an_exercise_only_member_sends_exercise_traffic_only() {
    use crate::domain::roster::{Accepted, Anchor, Document};
    use crate::proto::v1::{Roster, RosterMember, SignedRoster};
    let roster = Roster {
        version: 5,
        members: vec![RosterMember {
            id: "node-a".into(),
            exercise_only: true,
            ..Default::default()
        }],
        ..Default::default()
    };
    let anchor = Anchor::Current(Box::new(Accepted {
        doc: Document {
            roster,
            signed: SignedRoster::default(),
        },
        signed_by: vec![],
        admitted_by: None,
        accepted_ms: NOW,
    }));
    let reg = registry();
    let me = signer(1);
    let peers = [Peer {
        id: "node-c".into(),
        policy: PeerPolicy::default(),
    }];
    let view = View {
        me: MEMBERS[1],
        signer: &me,
        keys: &reg,
        peers: &peers,
        max_message_bytes: 256 * 1024,
        roster: Some(&anchor),
        accept_exercise: true,
    };
    let decide_kind = |exercise: bool, receipt: bool| {
        let env = seal(
            &signer(0),
            Draft {
                message_id: uuid::Uuid::now_v7().to_string(),
                kind: if receipt {
                    MessageKind::Receipt
                } else {
                    MessageKind::Alert
                },
                tlp: Tlp::Green,
                recipients: if receipt {
                    vec![MEMBERS[1].to_string()]
                } else {
                    vec![]
                },
                created_ms: NOW - 1_000,
                expires_ms: None,
                hop_limit: 4,
                exercise,
                encrypted: false,
                payload: if receipt {
                    crate::proto::v1::Receipt {
                        message_ids: vec![uuid::Uuid::now_v7().to_string()],
                        state: crate::proto::v1::DeliveryState::Delivered as i32,
                        reason: String::new(),
                    }
                    .encode_to_vec()
                } else {
                    Alert {
                        exercise,
                        ..alert(Tlp::Green)
                    }
                    .encode_to_vec()
                },
            },
        );
        let verdict = verify(&reg, &env, NOW, &limits());
        let input = Input {
            envelope: env,
            verdict,
            from_peer: Some("node-a"),
            chain: vec![],
            chain_checked: None,
            receipt_route: None,
            returning: false,
        };
        admit(&view, input, NOW)
    };
    let decide = |exercise: bool| decide_kind(exercise, false);
    // Its receipts (never flagged) are not refused for being real traffic.
    match decide_kind(false, true) {
        Decision::Admit(_) => {}
        Decision::Refuse { reason, .. } => {
            panic!("a receipt of an exercise-only member is refused: {reason}")
        }
    }
    match decide(false) {
        Decision::Refuse { reason, .. } => assert!(
            reason
                .to_string()
                .contains("exercise-only member in roster v5"),
            "{reason}"
        ),
        Decision::Admit(_) => panic!("real traffic from an exercise-only member is refused"),
    }
    match decide(true) {
        Decision::Admit(_) => {}
        Decision::Refuse { reason, .. } => panic!("exercise traffic passes: {reason}"),
    }
}

#[test]
fn reconciliation_entitlement_follows_forwarding_rules_but_may_return_a_message() {
    let b = Peer {
        id: "node-b".into(),
        policy: PeerPolicy {
            max_tlp: Tlp::Amber,
            relay: false,
        },
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // Its own message comes back whatever the TLP.
    assert!(
        entitled(
            "node-a",
            &b,
            "node-b",
            Tlp::Red,
            &s(&["node-a"]),
            &s(&["node-b"]),
            1,
            true
        )
        .is_ok()
    );
    // A broadcast this node originated.
    assert!(
        entitled(
            "node-a",
            &b,
            "node-a",
            Tlp::Green,
            &[],
            &s(&["node-a"]),
            8,
            false
        )
        .is_ok()
    );
    // A broadcast from another: not over a link that is not a relay link.
    let e = entitled(
        "node-a",
        &b,
        "node-c",
        Tlp::Green,
        &[],
        &s(&["node-c", "node-a"]),
        8,
        false,
    )
    .unwrap_err();
    assert!(e.contains("relay"), "{e}");
    // Above the peer's max_tlp.
    let e = entitled(
        "node-a",
        &b,
        "node-a",
        Tlp::Red,
        &s(&["node-b"]),
        &s(&["node-a"]),
        8,
        true,
    )
    .unwrap_err();
    assert!(e.contains("max_tlp"), "{e}");
    // AMBER for someone else: never in clear, and no relay link here.
    assert!(
        entitled(
            "node-a",
            &b,
            "node-a",
            Tlp::Amber,
            &s(&["node-c"]),
            &s(&["node-a"]),
            8,
            true
        )
        .is_err()
    );
    // AMBER for the peer: yes.
    assert!(
        entitled(
            "node-a",
            &b,
            "node-a",
            Tlp::Amber,
            &s(&["node-b"]),
            &s(&["node-a"]),
            8,
            true
        )
        .is_ok()
    );
    // Hop limit: a message from c that reached a in 1 hop with limit 1.
    let relay = Peer {
        policy: PeerPolicy {
            max_tlp: Tlp::Red,
            relay: true,
        },
        ..b.clone()
    };
    let e = entitled(
        "node-a",
        &relay,
        "node-c",
        Tlp::Green,
        &[],
        &s(&["node-c", "node-a"]),
        1,
        false,
    )
    .unwrap_err();
    assert!(e.contains("hop limit"), "{e}");
    // ... unless the peer carried it before (it is sent back, no further).
    assert!(
        entitled(
            "node-a",
            &relay,
            "node-c",
            Tlp::Green,
            &[],
            &s(&["node-c", "node-b", "node-a"]),
            2,
            false
        )
        .is_ok()
    );
}

/// A sighting from member `origin` naming `incident` in its header and `body_incident`
/// in its payload, with `count`.
fn sighting_env(origin: usize, incident: &str, body_incident: &str, count: u64) -> SignedEnvelope {
    let s = crate::proto::v1::Sighting {
        incident_id: body_incident.into(),
        country: "EE".into(),
        observed: Some(ms_to_ts(NOW - 60_000)),
        count,
        tlp: Tlp::Green as i32,
        ..Default::default()
    };
    crate::domain::envelope::seal_in_incident(
        &signer(origin),
        Draft {
            message_id: uuid::Uuid::now_v7().to_string(),
            kind: MessageKind::Sighting,
            tlp: Tlp::Green,
            recipients: vec![],
            created_ms: NOW - 1_000,
            expires_ms: None,
            hop_limit: 8,
            exercise: false,
            encrypted: false,
            payload: s.encode_to_vec(),
        },
        incident.into(),
    )
}

#[test]
fn incident_messages_are_admitted_with_their_incident_and_checked() {
    let inc = "00000000-0000-7000-8000-000000000001";
    let other = "00000000-0000-7000-8000-000000000002";
    let peers = [Peer {
        id: "node-b".into(),
        policy: PeerPolicy::default(),
    }];
    match decide_one(
        1,
        &peers,
        sighting_env(0, inc, inc, 3),
        Some("node-a"),
        vec![],
    ) {
        Decision::Admit(a) => assert_eq!(a.incident.incident_id.as_deref(), Some(inc)),
        d => panic!("{d:?}"),
    }
    for (env, want) in [
        (sighting_env(0, inc, inc, 0), "sighting.count"),
        (sighting_env(0, inc, inc, u64::MAX), "sighting.count"),
        (sighting_env(0, other, inc, 3), "signed header names"),
        (sighting_env(0, "not-a-uuid", "", 3), "not an incident id"),
    ] {
        match decide_one(1, &peers, env, Some("node-a"), vec![]) {
            Decision::Refuse {
                reason: Rejection::InvalidPayload(r),
                receipt,
            } => {
                assert!(r.contains(want), "{r}");
                assert!(receipt.is_some(), "the origin is told");
            }
            d => panic!("{d:?}"),
        }
    }
}

#[test]
fn a_node_that_opts_out_of_exercises_neither_stores_nor_relays_them() {
    let reg = registry();
    let me = signer(1);
    let peers = [Peer {
        id: "node-c".into(),
        policy: PeerPolicy::default(),
    }];
    let view = View {
        me: MEMBERS[1],
        signer: &me,
        keys: &reg,
        peers: &peers,
        max_message_bytes: 256 * 1024,
        roster: None,
        accept_exercise: false,
    };
    let decide = |exercise: bool, from_peer: Option<&str>, origin: usize| {
        let env = seal(
            &signer(origin),
            Draft {
                message_id: uuid::Uuid::now_v7().to_string(),
                kind: MessageKind::Alert,
                tlp: Tlp::Green,
                recipients: vec![],
                created_ms: NOW - 1_000,
                expires_ms: None,
                hop_limit: 4,
                exercise,
                encrypted: false,
                payload: Alert {
                    exercise,
                    ..alert(Tlp::Green)
                }
                .encode_to_vec(),
            },
        );
        let verdict = verify(&reg, &env, NOW, &limits());
        let input = Input {
            envelope: env,
            verdict,
            from_peer,
            chain: vec![],
            chain_checked: None,
            receipt_route: None,
            returning: false,
        };
        admit(&view, input, NOW)
    };
    // From a peer and published locally alike: refused, finally, with the reason.
    for (from, origin) in [(Some("node-a"), 0), (None, 1)] {
        match decide(true, from, origin) {
            Decision::Refuse { reason, .. } => {
                assert!(
                    reason.to_string().contains("exercise.accept = false"),
                    "{reason}"
                );
                assert_eq!(deferrable(&reason), None, "a final refusal");
            }
            Decision::Admit(a) => panic!(
                "exercise traffic stored ({:?}) and forwarded to {:?}",
                from, a.forward_to
            ),
        }
    }
    match decide(false, Some("node-a"), 0) {
        Decision::Admit(a) => assert_eq!(a.forward_to, ["node-c"], "real traffic still flows"),
        Decision::Refuse { reason, .. } => panic!("real traffic refused: {reason}"),
    }
}

/// Indicators the tests below pick from (valid, some alike but for case).
fn some_indicators() -> Vec<crate::proto::v1::Indicator> {
    use crate::proto::v1::{Indicator, IndicatorType as T};
    [
        (T::Ip, "192.0.2.7"),
        (T::Ip, "2001:DB8::1"),
        (T::Domain, "evil.example"),
        (T::Domain, "Evil.Example"),
        (T::Url, "https://evil.example/Payload"),
        (T::Sha256, "AB".repeat(32).as_str()),
        (T::Cve, "cve-2024-3400"),
        (T::Asn, "AS64500"),
        (T::Text, "a wiper called Blue"),
    ]
    .into_iter()
    .map(|(t, v)| Indicator {
        r#type: t as i32,
        value: v.to_string(),
        comment: String::new(),
    })
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]

    /// The keys admission records for a message are the keys its stored row
    /// gives again (`incident::stored_keys` over the kind, the signed header
    /// and the readable body): the retention purge deletes exactly the rows
    /// inserted, with no index of keys by message. Alerts and sightings, in an
    /// incident or not, in clear or sealed for this node or for others.
    #[test]
    fn stored_rows_give_the_keys_admission_recorded(
        sighting in any::<bool>(),
        in_incident in any::<bool>(),
        sealed in any::<bool>(),
        me_recipient in any::<bool>(),
        picked in proptest::sample::subsequence(some_indicators(), 1..6),
    ) {
        let incident = if in_incident || sighting { "00000000-0000-7000-8000-00000000000a" } else { "" };
        let tlp = if sealed { Tlp::Amber } else { Tlp::Green };
        let recipients: Vec<String> = if sealed {
            vec![if me_recipient { MEMBERS[1] } else { MEMBERS[2] }.to_string()]
        } else {
            vec![]
        };
        let message_id = uuid::Uuid::now_v7().to_string();
        let (kind, body) = if sighting {
            let s = crate::proto::v1::Sighting {
                incident_id: incident.into(),
                indicators: picked.clone(),
                country: "EE".into(),
                observed: Some(ms_to_ts(NOW - 60_000)),
                count: 2,
                tlp: tlp as i32,
                ..Default::default()
            };
            (MessageKind::Sighting, s.encode_to_vec())
        } else {
            let a = Alert { indicators: picked.clone(), ..alert(tlp) };
            (MessageKind::Alert, a.encode_to_vec())
        };
        let payload = if sealed {
            let to = [recipients[0].clone(), MEMBERS[0].to_string()];
            crate::domain::e2e::seal(&body, &message_id, &to, &registry()).unwrap()
        } else {
            body
        };
        let env = crate::domain::envelope::seal_in_incident(
            &signer(0),
            Draft {
                message_id,
                kind,
                tlp,
                recipients,
                created_ms: NOW - 1_000,
                expires_ms: None,
                hop_limit: 8,
                exercise: false,
                encrypted: sealed,
                payload,
            },
            incident.into(),
        );
        let peers = [peer(0, Tlp::Red, true), peer(2, Tlp::Red, true)];
        let a = match decide_one(1, &peers, env, Some("node-a"), vec![]) {
            Decision::Admit(a) => a,
            d => panic!("{d:?}"),
        };
        let readable = !sealed || me_recipient;
        prop_assert_eq!(a.readable, readable);
        // What the store keeps: the header, and the body this node can read.
        let body = a.readable.then(|| a.plain.as_deref().unwrap_or(&a.payload));
        let again = crate::domain::incident::stored_keys(a.kind, &a.header, body);
        prop_assert_eq!(&again, &a.incident.keys);
        if readable {
            prop_assert!(!again.is_empty(), "a readable message with indicators has keys");
            prop_assert_eq!(
                again.iter().any(|k| k.starts_with("m:")),
                !incident.is_empty(),
                "member keys exactly for a member of an incident"
            );
        } else {
            prop_assert!(again.is_empty());
        }
    }
}
