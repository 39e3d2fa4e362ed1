//! The conformance suite every storage backend must pass: the invariants listed
//! in `storage/mod.rs`, checked through the [`Storage`] trait only. A backend's
//! tests call [`run_all`] with a function that opens that backend in a folder.
use super::*;
use crate::proto::v1::{DeliveryState, MessageKind, Tlp};
use std::path::Path;

pub(crate) fn msg(id: &str, origin: &str, kind: MessageKind, targets: &[&str]) -> NewMessage {
    NewMessage {
        message_id: id.into(),
        origin: origin.into(),
        kind: kind as i32,
        tlp: Tlp::Green as i32,
        severity: 3,
        sectors_mask: 1 << 2,
        exercise: false,
        created_ms: 1_000,
        expires_ms: None,
        received_ms: 2_000,
        from_peer: None,
        path: vec![Hop {
            node: origin.into(),
            at_ms: 1_000,
        }],
        header: format!("header-{id}").into_bytes(),
        payload: format!("payload-{id}").into_bytes(),
        signature: vec![7; 64],
        targets: targets.iter().map(|t| t.to_string()).collect(),
        parked: Vec::new(),
        park_until_ms: 0,
        supersedes: None,
        readable: true,
        plain: None,
        request_id: None,
        receipt: None,
        sync: None,
        hops: Vec::new(),
        incident_id: None,
        keys: Vec::new(),
    }
}

/// A time after every timestamp the checks write.
const NOW: i64 = 1_000_000;

fn id(n: u32) -> String {
    format!("00000000-0000-7000-8000-{n:012}")
}

/// Runs every check, each on a fresh store opened by `open` in its own folder.
pub async fn run_all(open: impl Fn(&Path) -> Store) {
    type Check = fn(Store) -> futures::future::BoxFuture<'static, ()>;
    let checks: [(&str, Check); 28] = [
        ("one_write_of_many", |s| Box::pin(one_write_of_many(s))),
        ("parked", |s| Box::pin(parked_copies_wait_for_their_time(s))),
        ("held", |s| Box::pin(held_ids_are_found_by_index(s))),
        ("get_messages", |s| Box::pin(messages_read_in_one_batch(s))),
        ("sync_index", |s| {
            Box::pin(sync_sums_follow_insert_and_purge(s))
        }),
        ("requeue", |s| Box::pin(requeue_makes_entries_due_now(s))),
        ("refused_by", |s| {
            Box::pin(refusals_are_found_until_they_age(s))
        }),
        ("incidents", |s| Box::pin(incidents_and_keys(s))),
        ("dedup", |s| Box::pin(dedup_by_message_id(s))),
        ("outbox", |s| Box::pin(outbox_follows_the_message(s))),
        ("cursors", |s| Box::pin(cursors_increase(s))),
        ("listing", |s| Box::pin(listing_filters(s))),
        ("listing_by_origin", |s| Box::pin(listing_by_origin(s))),
        ("threads", |s| Box::pin(threads_and_kinds(s))),
        ("receipts", |s| Box::pin(receipts_and_supersede(s))),
        ("relay_purge", |s| {
            Box::pin(relayed_ciphertext_is_dropped(s))
        }),
        ("acknowledge", |s| Box::pin(acknowledge_keeps_first(s))),
        ("request_ids", |s| Box::pin(request_ids_claimed_once(s))),
        ("request_ids_concurrent", |s| {
            Box::pin(concurrent_claims_of_one_id(s))
        }),
        ("purge", |s| {
            Box::pin(purge_takes_old_rows_and_keeps_threads(s))
        }),
        ("purge_batches", |s| {
            Box::pin(purge_works_in_bounded_batches(s))
        }),
        ("queued_order", |s| {
            Box::pin(queued_inserts_keep_their_order(s))
        }),
        ("supersede_order", |s| {
            Box::pin(supersede_does_not_depend_on_arrival_order(s))
        }),
        ("supersede_exercise", |s| {
            Box::pin(exercise_and_real_never_supersede_each_other(s))
        }),
        ("deferral", |s| {
            Box::pin(deferred_entries_wait_their_turn(s))
        }),
        ("rosters", |s| {
            Box::pin(roster_chain_keeps_one_per_version(s))
        }),
        ("drop_outbox", |s| {
            Box::pin(outbox_of_a_departed_member_is_dropped(s))
        }),
        ("received_by", |s| {
            Box::pin(receipt_times_are_found_by_bisection(s))
        }),
    ];
    for (name, check) in checks {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path());
        eprintln!("storage conformance: {name}");
        check(store.clone()).await;
        store.close().await;
    }
    durable_writes_survive_reopen(&open).await;
    request_ids_survive_reopen(&open).await;
    rosters_survive_reopen(&open).await;
    closed_store_refuses(&open).await;
}

fn roster(version: u64, tag: u8) -> RosterRow {
    RosterRow {
        version,
        bytes: vec![tag; 40],
        accepted_ms: 1_000 + version as i64,
    }
}

async fn roster_chain_keeps_one_per_version(s: Store) {
    assert!(s.rosters(10).await.unwrap().is_empty());
    for v in 1..=3 {
        s.save_roster(roster(v, v as u8)).await.unwrap();
    }
    let got = s.rosters(10).await.unwrap();
    assert_eq!(got, vec![roster(3, 3), roster(2, 2), roster(1, 1)]);
    assert_eq!(s.rosters(1).await.unwrap(), vec![roster(3, 3)]);
    // The same again is a no-op; another roster under a kept version is refused.
    s.save_roster(roster(2, 2)).await.unwrap();
    let r = s.save_roster(roster(2, 9)).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    assert_eq!(s.rosters(10).await.unwrap()[1], roster(2, 2), "kept");
}

async fn outbox_of_a_departed_member_is_dropped(s: Store) {
    let m = msg(&id(3), "node-a", MessageKind::Alert, &["node-b", "node-c"]);
    s.insert(vec![m], Durability::Durable).await.unwrap();
    assert_eq!(
        s.drop_outbox("node-b", "node-b is not in roster v4", 7_000)
            .await
            .unwrap(),
        1
    );
    assert!(s.outbox("node-b", 0, NOW, 10).await.unwrap().is_empty());
    assert_eq!(
        s.outbox("node-c", 0, NOW, 10).await.unwrap().len(),
        1,
        "others kept"
    );
    let d = s.delivery(&id(3)).await.unwrap();
    let b = d.iter().find(|r| r.peer == "node-b").unwrap();
    assert_eq!(
        (b.state, b.reason.as_str(), b.updated_ms),
        (
            DeliveryState::Rejected as i32,
            "node-b is not in roster v4",
            7_000
        )
    );
    let c = d.iter().find(|r| r.peer == "node-c").unwrap();
    assert_eq!(c.state, DeliveryState::Queued as i32);
    assert_eq!(s.drop_outbox("node-b", "again", 8_000).await.unwrap(), 0);
}

async fn rosters_survive_reopen(open: &impl Fn(&Path) -> Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    s.save_roster(roster(7, 7)).await.unwrap();
    s.close().await;
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.rosters(5).await.unwrap(), vec![roster(7, 7)]);
    s.close().await;
}

fn record(n: u32, fingerprint: u8, created_ms: i64) -> RequestRecord {
    RequestRecord {
        request_id: id(n),
        fingerprint: vec![fingerprint; 32],
        message_id: id(n + 1000),
        response: None,
        created_ms,
    }
}

async fn request_ids_claimed_once(s: Store) {
    let r = record(1, 1, 1_000);
    assert_eq!(s.claim_request(r.clone(), 0).await.unwrap(), Claim::Claimed);
    // A second claim (even with another body) sees the first, untouched.
    let other = record(1, 2, 1_500);
    assert_eq!(
        s.claim_request(other.clone(), 0).await.unwrap(),
        Claim::Held(r.clone())
    );
    // Releasing an unanswered claim frees the id.
    s.release_request(&r.request_id).await.unwrap();
    assert_eq!(
        s.claim_request(other.clone(), 0).await.unwrap(),
        Claim::Claimed
    );
    // An answered one is kept, with its answer.
    s.complete_request(&r.request_id, b"answer".to_vec())
        .await
        .unwrap();
    s.release_request(&r.request_id).await.unwrap();
    let held = Claim::Held(RequestRecord {
        response: Some(b"answer".to_vec()),
        ..other.clone()
    });
    assert_eq!(s.claim_request(r.clone(), 0).await.unwrap(), held);
    // Records older than the window are purged: the id is new again.
    assert_eq!(
        s.claim_request(record(1, 3, 9_000), 1_501).await.unwrap(),
        Claim::Claimed
    );
    // Others are independent.
    assert_eq!(
        s.claim_request(record(2, 1, 9_000), 1_501).await.unwrap(),
        Claim::Claimed
    );
}

async fn concurrent_claims_of_one_id(s: Store) {
    let claims = (0..16u8).map(|i| {
        let s = s.clone();
        async move { s.claim_request(record(7, i, 1_000), 0).await.unwrap() }
    });
    let results = futures::future::join_all(claims).await;
    let claimed = results.iter().filter(|c| **c == Claim::Claimed).count();
    assert_eq!(claimed, 1, "{results:?}");
}

async fn request_ids_survive_reopen(open: &impl Fn(&Path) -> Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let r = record(5, 5, 1_000);
    assert_eq!(s.claim_request(r.clone(), 0).await.unwrap(), Claim::Claimed);
    s.complete_request(&r.request_id, vec![1, 2]).await.unwrap();
    s.close().await;
    drop(s);
    let s = open(dir.path());
    let held = s.claim_request(record(5, 9, 2_000), 0).await.unwrap();
    assert_eq!(
        held,
        Claim::Held(RequestRecord {
            response: Some(vec![1, 2]),
            ..r
        })
    );
    s.close().await;
}

async fn held_ids_are_found_by_index(s: Store) {
    assert!(s.held(vec![]).await.unwrap().is_empty());
    let a = msg(&id(1), "node-a", MessageKind::Alert, &["node-b"]);
    let r = msg(&id(2), "node-b", MessageKind::Receipt, &[]);
    s.insert(vec![a, r], Durability::Durable).await.unwrap();
    let asked = vec![id(1), id(2), id(3), "not-a-uuid".to_string(), id(1)];
    let held = s.held(asked).await.unwrap();
    let want: std::collections::HashSet<String> = [id(1), id(2)].into_iter().collect();
    assert_eq!(held, want, "held ids, receipts included, nothing else");
    // One id alone; and each read sees what was stored before it (a read
    // leaves no snapshot behind on its pooled connection).
    let one: std::collections::HashSet<String> = [id(2)].into_iter().collect();
    assert_eq!(s.held(vec![id(2)]).await.unwrap(), one);
    for n in 3..6 {
        let m = msg(&id(n), "node-a", MessageKind::Alert, &[]);
        s.insert(vec![m], Durability::Durable).await.unwrap();
        let got = s.held(vec![id(n), id(n + 1)]).await.unwrap();
        assert_eq!(got, [id(n)].into_iter().collect(), "stored just before");
        assert_eq!(s.held(vec![id(n)]).await.unwrap().len(), 1);
    }
}

async fn messages_read_in_one_batch(s: Store) {
    assert!(s.get_messages(vec![]).await.unwrap().is_empty());
    let a = msg(&id(1), "node-a", MessageKind::Alert, &["node-b"]);
    let b = msg(&id(2), "node-c", MessageKind::Alert, &[]);
    let r = msg(&id(3), "node-b", MessageKind::Receipt, &[]);
    s.insert(vec![a, b, r], Durability::Durable).await.unwrap();
    let asked = vec![id(2), id(9), "not-a-uuid".to_string(), id(1), id(2)];
    let mut got = s.get_messages(asked).await.unwrap();
    got.sort_by(|x, y| x.message_id.cmp(&y.message_id));
    let ids: Vec<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids, [id(1), id(2)], "held ones, once each, nothing else");
    let one = s.get_message(&id(1)).await.unwrap().unwrap();
    assert_eq!(got[0].origin, one.origin);
    assert_eq!(got[0].header, one.header, "the same rows get_message reads");
    assert_eq!(got[0].payload, one.payload);
}

async fn dedup_by_message_id(s: Store) {
    let a = msg(&id(1), "node-a", MessageKind::Alert, &["node-b"]);
    let first = s
        .insert(vec![a.clone(), a.clone()], Durability::Durable)
        .await
        .unwrap();
    assert!(matches!(first[0], Stored::New(_)), "{first:?}");
    assert_eq!(first[1], Stored::Duplicate, "same id twice in one batch");
    let again = s.insert(vec![a], Durability::Lazy).await.unwrap();
    assert_eq!(again, vec![Stored::Duplicate]);
    assert_eq!(s.message_count().await.unwrap(), 1);
    let depth = s.outbox_depths().await.unwrap();
    assert_eq!(
        depth,
        vec![("node-b".to_string(), 1)],
        "a duplicate queues nothing"
    );
}

async fn outbox_follows_the_message(s: Store) {
    let m = msg(&id(2), "node-a", MessageKind::Alert, &["node-b", "node-c"]);
    let Stored::New(cursor) = s.insert(vec![m], Durability::Durable).await.unwrap()[0] else {
        panic!("new");
    };
    let out = s.outbox("node-b", 0, NOW, 10).await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].cursor, cursor);
    assert_eq!(out[0].payload, format!("payload-{}", id(2)).into_bytes());
    let d = s.delivery(&id(2)).await.unwrap();
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|r| r.state == DeliveryState::Queued as i32));
    s.complete_outbox(
        "node-b",
        vec![Outcome {
            cursor,
            state: DeliveryState::Delivered,
            reason: String::new(),
        }],
        5_000,
    )
    .await
    .unwrap();
    assert!(s.outbox("node-b", 0, NOW, 10).await.unwrap().is_empty());
    assert_eq!(s.outbox("node-c", 0, NOW, 10).await.unwrap().len(), 1);
    let d = s.delivery(&id(2)).await.unwrap();
    let b = d.iter().find(|r| r.peer == "node-b").unwrap();
    assert_eq!(
        (b.state, b.attempts, b.updated_ms),
        (DeliveryState::Delivered as i32, 1, 5_000)
    );
    assert_eq!(
        s.outbox("node-c", cursor, NOW, 10).await.unwrap().len(),
        0,
        "after is exclusive"
    );
}

async fn cursors_increase(s: Store) {
    let mut last = 0;
    for n in 10..20 {
        let r = s
            .insert(
                vec![msg(&id(n), "node-a", MessageKind::Alert, &[])],
                Durability::Durable,
            )
            .await
            .unwrap();
        let Stored::New(c) = r[0] else { panic!("new") };
        assert!(c > last, "cursor {c} after {last}");
        last = c;
    }
    assert_eq!(s.last_cursor().await.unwrap(), last);
    let after = s.messages_after(0, 4).await.unwrap();
    assert_eq!(after.len(), 4);
    assert!(after.windows(2).all(|w| w[0].cursor < w[1].cursor));
    let rest = s.messages_after(after[3].cursor, 100).await.unwrap();
    assert_eq!(rest.len(), 6);
}

async fn listing_filters(s: Store) {
    let mut red = msg(&id(30), "node-a", MessageKind::Alert, &[]);
    red.tlp = Tlp::Red as i32;
    red.severity = 4;
    let mut ex = msg(&id(31), "node-b", MessageKind::Alert, &[]);
    ex.exercise = true;
    let mut hidden = msg(&id(32), "node-c", MessageKind::Alert, &[]);
    hidden.readable = false;
    let receipt = msg(&id(33), "node-c", MessageKind::Receipt, &[]);
    let plain = msg(&id(34), "node-b", MessageKind::Alert, &[]);
    s.insert(vec![red, ex, hidden, receipt, plain], Durability::Durable)
        .await
        .unwrap();
    let all = s.list_alerts(AlertQuery::default(), 0, 100).await.unwrap();
    let ids: Vec<_> = all.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(
        ids,
        vec![id(34), id(30)],
        "newest first; no exercise, unreadable or receipts"
    );
    let q = AlertQuery {
        include_exercise: true,
        ..Default::default()
    };
    assert_eq!(s.list_alerts(q, 0, 100).await.unwrap().len(), 3);
    let q = AlertQuery {
        tlps: vec![Tlp::Red as i32],
        ..Default::default()
    };
    assert_eq!(
        s.list_alerts(q, 0, 100).await.unwrap()[0].message_id,
        id(30)
    );
    let q = AlertQuery {
        min_severity: 4,
        ..Default::default()
    };
    assert_eq!(s.list_alerts(q, 0, 100).await.unwrap().len(), 1);
    let q = AlertQuery {
        origins: vec!["node-b".into()],
        ..Default::default()
    };
    assert_eq!(
        s.list_alerts(q, 0, 100).await.unwrap()[0].message_id,
        id(34)
    );
    let q = AlertQuery {
        sectors_mask: 1 << 5,
        ..Default::default()
    };
    assert!(s.list_alerts(q, 0, 100).await.unwrap().is_empty());
    let page = s.list_alerts(AlertQuery::default(), 0, 1).await.unwrap();
    let next = s
        .list_alerts(AlertQuery::default(), page[0].cursor, 1)
        .await
        .unwrap();
    assert_eq!(next[0].message_id, id(30), "paging by cursor");
    assert_eq!(
        s.message_count().await.unwrap(),
        4,
        "receipts are not counted"
    );
}

/// Listings filtered by origin (one query per origin, merged) give exactly
/// what filtering the whole listing gives: newest first, paged by cursor,
/// with the other filters, for one origin, several (repeated), and more
/// than are read one by one.
async fn listing_by_origin(s: Store) {
    let origins = ["node-a", "node-b", "node-c", "node-d"];
    let mut batch = Vec::new();
    let mut drills = std::collections::HashSet::new();
    for n in 0..120u32 {
        // node-d sent one alert; the others are interleaved.
        let origin = if n == 7 {
            "node-d"
        } else {
            origins[(n % 3) as usize]
        };
        let mut m = msg(&id(1_000 + n), origin, MessageKind::Alert, &[]);
        m.tlp = if n % 4 == 0 { Tlp::Clear } else { Tlp::Green } as i32;
        m.exercise = n % 9 == 0;
        if m.exercise {
            drills.insert(m.message_id.clone());
        }
        m.readable = n % 11 != 0;
        batch.push(m);
        if n % 10 == 0 {
            batch.push(msg(&id(5_000 + n), origin, MessageKind::Receipt, &[]));
        }
    }
    s.insert(batch, Durability::Durable).await.unwrap();
    let everything = AlertQuery {
        include_exercise: true,
        ..Default::default()
    };
    let all = s.list_alerts(everything, 0, 1_000).await.unwrap();
    let many: Vec<String> = (0..BY_ORIGIN + 1)
        .map(|i| format!("node-x{i}"))
        .chain(["node-b".to_string()])
        .collect();
    let named: [Vec<String>; 5] = [
        vec!["node-d".into()],
        vec!["node-a".into()],
        vec!["node-c".into(), "node-a".into(), "node-c".into()],
        vec!["node-b".into(), "node-d".into(), "node-z".into()],
        many,
    ];
    for origins in named {
        for (tlps, exercise) in [(vec![], false), (vec![Tlp::Clear as i32], true)] {
            let q = AlertQuery {
                origins: origins.clone(),
                tlps: tlps.clone(),
                include_exercise: exercise,
                ..Default::default()
            };
            let expected: Vec<&StoredMessage> = all
                .iter()
                .filter(|m| origins.contains(&m.origin))
                .filter(|m| tlps.is_empty() || tlps.contains(&m.tlp))
                .filter(|m| exercise || !drills.contains(&m.message_id))
                .collect();
            for (before, limit) in [
                (0, 1_000),
                (0, 5),
                (expected.get(3).map_or(0, |m| m.cursor), 4),
            ] {
                let got = s.list_alerts(q.clone(), before, limit).await.unwrap();
                let want: Vec<String> = expected
                    .iter()
                    .filter(|m| before == 0 || m.cursor < before)
                    .take(limit)
                    .map(|m| m.message_id.clone())
                    .collect();
                let got: Vec<String> = got.into_iter().map(|m| m.message_id).collect();
                assert_eq!(
                    got, want,
                    "origins {origins:?}, tlps {tlps:?}, before {before}, limit {limit}"
                );
            }
        }
    }
}

async fn threads_and_kinds(s: Store) {
    let mut req = msg(&id(40), "node-a", MessageKind::AssistanceRequest, &[]);
    req.request_id = Some(id(40));
    let mut offer = msg(&id(41), "node-b", MessageKind::Offer, &[]);
    offer.request_id = Some(id(40));
    let mut other = msg(&id(42), "node-b", MessageKind::Offer, &[]);
    other.request_id = Some(id(99));
    s.insert(vec![req, offer, other], Durability::Durable)
        .await
        .unwrap();
    let t = s.thread(&id(40)).await.unwrap();
    let ids: Vec<_> = t.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(ids, vec![id(40), id(41)]);
    let reqs = s
        .by_kind(MessageKind::AssistanceRequest as i32, 0, 10)
        .await
        .unwrap();
    assert_eq!(reqs.len(), 1);
    assert!(s.get_message(&id(41)).await.unwrap().is_some());
    assert!(s.get_message(&id(77)).await.unwrap().is_none());
}

async fn receipts_and_supersede(s: Store) {
    let mine = msg(&id(50), "node-a", MessageKind::Alert, &[]);
    let theirs = msg(&id(51), "node-b", MessageKind::Alert, &[]);
    s.insert(vec![mine, theirs], Durability::Durable)
        .await
        .unwrap();
    let receipt = |n: u32, state: i32, ids: Vec<String>| {
        let mut r = msg(&id(n), "node-c", MessageKind::Receipt, &[]);
        r.receipt = Some(ReceiptRows {
            me: "node-a".into(),
            from: "node-c".into(),
            ids,
            state,
            reason: String::new(),
            at_ms: 3_000 + i64::from(n),
        });
        r
    };
    // Acknowledged (2) is never downgraded by a later delivery receipt (1);
    // receipts about messages this node did not originate are not recorded.
    s.insert(vec![receipt(52, 2, vec![id(50), id(51)])], Durability::Lazy)
        .await
        .unwrap();
    s.insert(vec![receipt(53, 1, vec![id(50)])], Durability::Lazy)
        .await
        .unwrap();
    let r = s.receipts(&id(50)).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].node.as_str(), r[0].state), ("node-c", 2));
    assert!(s.receipts(&id(51)).await.unwrap().is_empty());

    let mut update = msg(&id(54), "node-a", MessageKind::Alert, &[]);
    update.supersedes = Some(id(50));
    let mut forged = msg(&id(55), "node-b", MessageKind::Alert, &[]);
    forged.supersedes = Some(id(50));
    s.insert(vec![forged, update], Durability::Durable)
        .await
        .unwrap();
    let old = s.get_message(&id(50)).await.unwrap().unwrap();
    assert_eq!(
        old.superseded_by,
        Some(id(54)),
        "only the origin's own update supersedes"
    );
}

/// One write of many messages (a Push chunk): each is stored, queued and
/// keyed as if written alone, cursors follow the input order (not the ids'
/// order), and a second copy of an id in the same write is a duplicate.
async fn one_write_of_many(s: Store) {
    let mut batch: Vec<NewMessage> = (0..8u32)
        .map(|i| {
            let mut m = msg(&id(2099 - i), "node-a", MessageKind::Alert, &["node-b"]);
            m.keys = vec![format!("ip:192.0.2.{i}"), "sha256:same".into()];
            m
        })
        .collect();
    batch.insert(3, batch[1].clone());
    let r = s.insert(batch, Durability::Durable).await.unwrap();
    assert_eq!(r[3], Stored::Duplicate, "second copy in one write: {r:?}");
    let cursors: Vec<u64> = r
        .iter()
        .filter_map(|x| match x {
            Stored::New(c) => Some(*c),
            Stored::Duplicate => None,
        })
        .collect();
    assert_eq!(cursors.len(), 8, "{r:?}");
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    assert_eq!(s.message_count().await.unwrap(), 8);
    let out = s.outbox("node-b", 0, NOW, 100).await.unwrap();
    assert_eq!(
        out.iter().map(|o| o.cursor).collect::<Vec<_>>(),
        cursors,
        "one outbox row per message, in cursor order"
    );
    for i in 0..8u32 {
        let d = s.delivery(&id(2099 - i)).await.unwrap();
        assert_eq!(d.len(), 1, "delivery of message {i}");
        let keyed = s.keyed(vec![format!("ip:192.0.2.{i}")], 10).await.unwrap();
        assert_eq!(keyed, vec![(format!("ip:192.0.2.{i}"), id(2099 - i))]);
    }
    let shared = s.keyed(vec!["sha256:same".into()], 100).await.unwrap();
    assert_eq!(shared.len(), 8, "a key shared by every message: {shared:?}");
}

async fn queued_inserts_keep_their_order(s: Store) {
    // Queue several batches before awaiting any: they are stored in queue order.
    let mut pending = Vec::new();
    for b in 0..6u32 {
        let batch = (0..50)
            .map(|i| msg(&id(1000 + b * 50 + i), "node-a", MessageKind::Alert, &[]))
            .collect();
        pending.push(s.insert_queued(batch, Durability::Durable).await.unwrap());
    }
    let mut last = 0;
    for p in pending {
        for r in p.await.unwrap() {
            let Stored::New(c) = r else { panic!("new") };
            assert!(c > last, "cursor {c} after {last}");
            last = c;
        }
    }
    let stored: Vec<String> = s
        .messages_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message_id)
        .collect();
    let want: Vec<String> = (0..300).map(|i| id(1000 + i)).collect();
    assert_eq!(stored, want);
}

async fn supersede_does_not_depend_on_arrival_order(s: Store) {
    let original = |n: u32| msg(&id(n), "node-a", MessageKind::Alert, &[]);
    let update = |n: u32, of: u32, created_ms: i64, origin: &str| {
        let mut u = msg(&id(n), origin, MessageKind::Alert, &[]);
        u.supersedes = Some(id(of));
        u.created_ms = created_ms;
        u
    };
    // Same three messages in every order: the original ends superseded by
    // the latest update of its own origin; a forged "update" from another
    // origin marks nothing.
    let orders: [[usize; 4]; 4] = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1]];
    for (k, order) in orders.iter().enumerate() {
        let base = 2000 + 10 * k as u32;
        let msgs = [
            original(base),
            update(base + 1, base, 2_000, "node-a"),
            update(base + 2, base, 3_000, "node-a"),
            update(base + 3, base, 9_000, "node-b"),
        ];
        for &i in order {
            s.insert(vec![msgs[i].clone()], Durability::Durable)
                .await
                .unwrap();
        }
        let old = s.get_message(&id(base)).await.unwrap().unwrap();
        assert_eq!(
            old.superseded_by,
            Some(id(base + 2)),
            "arrival order {order:?}: the latest update of the origin wins"
        );
        for n in 1..4 {
            let u = s.get_message(&id(base + n)).await.unwrap().unwrap();
            assert_eq!(u.superseded_by, None);
        }
    }
    // Inserted together in one batch, update first, the result is the same.
    let (o, u) = (original(2100), update(2101, 2100, 2_000, "node-a"));
    s.insert(vec![u, o], Durability::Durable).await.unwrap();
    let old = s.get_message(&id(2100)).await.unwrap().unwrap();
    assert_eq!(old.superseded_by, Some(id(2101)));
}

async fn exercise_and_real_never_supersede_each_other(s: Store) {
    let make = |n: u32, exercise: bool, of: Option<u32>, created_ms: i64| {
        let mut m = msg(&id(n), "node-a", MessageKind::Alert, &[]);
        m.exercise = exercise;
        m.supersedes = of.map(id);
        m.created_ms = created_ms;
        m
    };
    // (original's flag, update's flag, superseded?) in both arrival orders.
    let cases = [
        (false, true, false),
        (true, false, false),
        (true, true, true),
        (false, false, true),
    ];
    for (k, (orig_ex, upd_ex, marks)) in cases.into_iter().enumerate() {
        for update_first in [false, true] {
            let base = 3000 + 10 * k as u32 + if update_first { 5 } else { 0 };
            let o = make(base, orig_ex, None, 1_000);
            let u = make(base + 1, upd_ex, Some(base), 2_000);
            let order = if update_first { [u, o] } else { [o, u] };
            for m in order {
                s.insert(vec![m], Durability::Durable).await.unwrap();
            }
            let old = s.get_message(&id(base)).await.unwrap().unwrap();
            assert_eq!(
                old.superseded_by.is_some(),
                marks,
                "original exercise={orig_ex}, update exercise={upd_ex}, update first={update_first}"
            );
        }
    }
}

/// Plumtree's lazy links: a copy parked for a peer is queued in the same
/// commit as the message, skipped until `park_until_ms`, then due; the
/// other targets get theirs at once.
async fn parked_copies_wait_for_their_time(s: Store) {
    let mut m = msg(&id(3100), "node-a", MessageKind::Alert, &["node-b"]);
    m.parked = vec!["node-c".into(), "node-d".into()];
    m.park_until_ms = 50_000;
    let Stored::New(cursor) = s.insert(vec![m], Durability::Durable).await.unwrap()[0] else {
        panic!("new");
    };
    assert_eq!(s.outbox("node-b", 0, 20_000, 10).await.unwrap().len(), 1);
    for p in ["node-c", "node-d"] {
        assert!(
            s.outbox(p, 0, 20_000, 10).await.unwrap().is_empty(),
            "{p} waits"
        );
        assert!(s.outbox_due(p, 0, 20_000, 10).await.unwrap().is_empty());
        assert_eq!(s.outbox_next_due(p, 20_000).await.unwrap(), Some(50_000));
        let due = s.outbox_due(p, 0, 50_000, 10).await.unwrap();
        assert_eq!(
            due.iter().map(|i| i.cursor).collect::<Vec<_>>(),
            vec![cursor]
        );
    }
    let mut d = s.delivery(&id(3100)).await.unwrap();
    d.sort_by(|a, b| a.peer.cmp(&b.peer));
    let states: Vec<(&str, i32, bool)> = d
        .iter()
        .map(|r| {
            (
                r.peer.as_str(),
                r.state,
                r.reason == crate::storage::PARKED_REASON,
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("node-b", DeliveryState::Queued as i32, false),
            ("node-c", DeliveryState::Queued as i32, true),
            ("node-d", DeliveryState::Queued as i32, true),
        ]
    );
    // The peer answered that it holds it: the parked copy is completed.
    s.complete_outbox(
        "node-c",
        vec![Outcome {
            cursor,
            state: DeliveryState::Delivered,
            reason: "held".into(),
        }],
        30_000,
    )
    .await
    .unwrap();
    assert!(
        s.outbox_due("node-c", 0, 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let depths = s.outbox_depths().await.unwrap();
    assert_eq!(
        depths,
        vec![("node-b".to_string(), 1), ("node-d".to_string(), 1)]
    );
    // A duplicate insert parks nothing again.
    let mut again = msg(&id(3100), "node-a", MessageKind::Alert, &[]);
    again.parked = vec!["node-c".into()];
    again.park_until_ms = 1;
    assert_eq!(
        s.insert(vec![again], Durability::Durable).await.unwrap(),
        vec![Stored::Duplicate]
    );
    assert!(s.outbox("node-c", 0, 60_000, 10).await.unwrap().is_empty());
}

async fn deferred_entries_wait_their_turn(s: Store) {
    let cursors: Vec<u64> = s
        .insert(
            (0..3)
                .map(|i| msg(&id(3000 + i), "node-a", MessageKind::Alert, &["node-b"]))
                .collect(),
            Durability::Durable,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| match r {
            Stored::New(c) => c,
            Stored::Duplicate => panic!("new"),
        })
        .collect();
    s.defer_outbox(
        "node-b",
        vec![Deferral {
            cursor: cursors[1],
            reason: "clock skew".into(),
            next_attempt_ms: 50_000,
        }],
        10_000,
    )
    .await
    .unwrap();
    let before: Vec<u64> = s
        .outbox("node-b", 0, 20_000, 10)
        .await
        .unwrap()
        .iter()
        .map(|i| i.cursor)
        .collect();
    assert_eq!(before, vec![cursors[0], cursors[2]], "skipped until due");
    assert!(
        s.outbox_due("node-b", 0, 20_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.outbox_next_due("node-b", 20_000).await.unwrap(),
        Some(50_000)
    );
    let d = s.delivery(&id(3001)).await.unwrap();
    assert_eq!(
        (d[0].state, d[0].reason.as_str(), d[0].next_attempt_ms),
        (DeliveryState::Deferred as i32, "clock skew", Some(50_000))
    );
    let due = s.outbox_due("node-b", 0, 60_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].cursor, due[0].deferrals), (cursors[1], 1));
    assert_eq!(s.outbox("node-b", 0, 60_000, 10).await.unwrap().len(), 3);
    assert_eq!(s.outbox_next_due("node-b", 60_000).await.unwrap(), None);
    assert_eq!(
        s.outbox_depths().await.unwrap(),
        vec![("node-b".to_string(), 3)],
        "a deferred entry is still queued"
    );
    s.complete_outbox(
        "node-b",
        vec![Outcome {
            cursor: cursors[1],
            state: DeliveryState::Delivered,
            reason: String::new(),
        }],
        70_000,
    )
    .await
    .unwrap();
    let d = s.delivery(&id(3001)).await.unwrap();
    assert_eq!(
        (d[0].state, d[0].next_attempt_ms, d[0].attempts),
        (DeliveryState::Delivered as i32, None, 2)
    );
}

async fn relayed_ciphertext_is_dropped(s: Store) {
    let mut m = msg(&id(60), "node-a", MessageKind::Alert, &["node-b", "node-c"]);
    m.readable = false;
    // Also relayed, but still queued for node-d; and one this node reads.
    let mut queued = msg(&id(61), "node-a", MessageKind::Alert, &["node-d"]);
    queued.readable = false;
    let readable = msg(&id(62), "node-a", MessageKind::Alert, &[]);
    let stored = s
        .insert(vec![m, queued, readable], Durability::Durable)
        .await
        .unwrap();
    let Stored::New(cursor) = stored[0] else {
        panic!("new");
    };
    assert_eq!(
        s.relayed_kept(10).await.unwrap(),
        [id(61), id(60)],
        "the relayed ciphertext kept, latest first; not what this node reads"
    );
    assert_eq!(
        s.relayed_kept(1).await.unwrap(),
        [id(61)],
        "at most the limit"
    );
    let done = |peer: &'static str| {
        let s = s.clone();
        async move {
            s.complete_outbox(
                peer,
                vec![Outcome {
                    cursor,
                    state: DeliveryState::Delivered,
                    reason: String::new(),
                }],
                1,
            )
            .await
            .unwrap()
        }
    };
    let payload = |n: u32| {
        let s = s.clone();
        async move { s.get_message(&id(n)).await.unwrap().unwrap().payload }
    };
    let empty = |before: i64| {
        let s = s.clone();
        async move {
            s.purge(PurgePlan {
                relayed_before_ms: before,
                limit: 10,
                ..PurgePlan::default()
            })
            .await
            .unwrap()
        }
    };
    done("node-b").await;
    assert_eq!(empty(10_000).await.ciphertexts, 0, "node-c still needs it");
    assert!(!payload(60).await.is_empty());
    done("node-c").await;
    assert!(
        !payload(60).await.is_empty(),
        "kept a while after every peer has it (a request for a shorter copy)"
    );
    assert_eq!(
        empty(2_000).await,
        Purged::default(),
        "received at 2,000: not before it"
    );
    assert_eq!(
        empty(2_001).await,
        Purged {
            ciphertexts: 1,
            ..Purged::default()
        }
    );
    let held = s.get_message(&id(60)).await.unwrap().unwrap();
    assert!(held.payload.is_empty(), "no ciphertext kept after that");
    assert!(!held.header.is_empty(), "the signed header stays");
    assert!(!payload(61).await.is_empty(), "still queued for a peer");
    assert!(!payload(62).await.is_empty(), "readable here");
    assert_eq!(
        s.relayed_kept(10).await.unwrap(),
        [id(61)],
        "an emptied one is no longer listed"
    );
    assert_eq!(empty(i64::MAX).await.ciphertexts, 0, "emptied once");
}

async fn acknowledge_keeps_first(s: Store) {
    let mut hidden = msg(&id(71), "node-b", MessageKind::Alert, &[]);
    hidden.readable = false;
    s.insert(
        vec![msg(&id(70), "node-b", MessageKind::Alert, &[]), hidden],
        Durability::Durable,
    )
    .await
    .unwrap();
    assert_eq!(s.acknowledge(&id(70), 10).await.unwrap(), Some(10));
    assert_eq!(s.acknowledge(&id(70), 20).await.unwrap(), Some(10));
    assert_eq!(
        s.acknowledge(&id(71), 10).await.unwrap(),
        None,
        "unreadable"
    );
    assert_eq!(s.acknowledge(&id(72), 10).await.unwrap(), None, "absent");
    s.record_rejections(
        vec![RejectionRow {
            from_peer: "node-c".into(),
            message_id: id(73),
            reason: "bad signature".into(),
        }],
        30,
    )
    .await
    .unwrap();
}

fn aged(n: u32, kind: MessageKind, tlp: Tlp, created_ms: i64, targets: &[&str]) -> NewMessage {
    let mut m = msg(&id(n), "node-a", kind, targets);
    m.tlp = tlp as i32;
    m.created_ms = created_ms;
    m
}

fn plan(cutoffs: &[(Tlp, i64)], keep: &[String], limit: usize) -> PurgePlan {
    PurgePlan {
        cutoffs: cutoffs.iter().map(|(t, c)| (*t as i32, *c)).collect(),
        keep_requests: keep.to_vec(),
        rejections_before_ms: 500,
        limit,
        keys_of: Some(keys_in_body),
        ..PurgePlan::default()
    }
}

/// The keys of a message of these tests: the lines of its readable body
/// (the tests that give a message keys write them there too).
pub(crate) fn keys_in_body(_kind: i32, _header: &[u8], body: Option<&[u8]>) -> Vec<String> {
    body.map(|b| {
        String::from_utf8_lossy(b)
            .lines()
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

/// `m` with `keys`, written in its body as [`keys_in_body`] reads them.
fn with_keys(mut m: NewMessage, keys: &[&str]) -> NewMessage {
    m.keys = keys.iter().map(|k| k.to_string()).collect();
    m.payload = keys.join("\n").into_bytes();
    m
}

async fn purge_takes_old_rows_and_keeps_threads(s: Store) {
    // Old (created 100) and recent (created 10_000) GREEN alerts, an old RED
    // one under a shorter cutoff, old threads kept and not kept, and an old
    // alert with queued outbox rows, delivery states and receipts.
    let mut old_queued = aged(
        100,
        MessageKind::Alert,
        Tlp::Green,
        100,
        &["node-b", "node-c"],
    );
    old_queued.origin = "node-a".into();
    let recent = aged(101, MessageKind::Alert, Tlp::Green, 10_000, &["node-b"]);
    let red = aged(102, MessageKind::Alert, Tlp::Red, 5_000, &[]);
    let mut open_req = aged(103, MessageKind::AssistanceRequest, Tlp::Green, 100, &[]);
    open_req.request_id = Some(id(103));
    let mut open_step = aged(104, MessageKind::Offer, Tlp::Green, 150, &["node-b"]);
    open_step.request_id = Some(id(103));
    let mut closed_req = aged(105, MessageKind::AssistanceRequest, Tlp::Green, 100, &[]);
    closed_req.request_id = Some(id(105));
    let mut closed_step = aged(106, MessageKind::Status, Tlp::Green, 200, &[]);
    closed_step.request_id = Some(id(105));
    let unknown_tlp = {
        let mut m = aged(107, MessageKind::Alert, Tlp::Green, 100, &[]);
        m.tlp = 42;
        m
    };
    s.insert(
        vec![
            old_queued,
            recent,
            red,
            open_req,
            open_step,
            closed_req,
            closed_step,
            unknown_tlp,
        ],
        Durability::Durable,
    )
    .await
    .unwrap();
    let mut receipt = msg(&id(108), "node-c", MessageKind::Receipt, &[]);
    receipt.created_ms = 9_000;
    receipt.receipt = Some(ReceiptRows {
        me: "node-a".into(),
        from: "node-c".into(),
        ids: vec![id(100)],
        state: 1,
        reason: String::new(),
        at_ms: 9_000,
    });
    s.insert(vec![receipt], Durability::Durable).await.unwrap();
    assert_eq!(s.receipts(&id(100)).await.unwrap().len(), 1);
    s.record_rejections(
        vec![RejectionRow {
            from_peer: "node-c".into(),
            message_id: id(109),
            reason: "old".into(),
        }],
        100,
    )
    .await
    .unwrap();
    s.record_rejections(
        vec![RejectionRow {
            from_peer: "node-c".into(),
            message_id: id(110),
            reason: "new".into(),
        }],
        10_000,
    )
    .await
    .unwrap();

    let mut threads = s.requests_created_before(1_000).await.unwrap();
    threads.sort();
    assert_eq!(threads, vec![id(103), id(105)]);
    assert!(s.requests_created_before(100).await.unwrap().is_empty());

    assert_eq!(
        s.message_count().await.unwrap(),
        8,
        "eight messages held, the receipt not counted"
    );
    let cutoffs = [(Tlp::Green, 1_000), (Tlp::Red, 6_000), (Tlp::Clear, 1_000)];
    let done = s.purge(plan(&cutoffs, &[id(103)], 100)).await.unwrap();
    assert_eq!(
        s.message_count().await.unwrap(),
        4,
        "the count follows the purge"
    );
    assert_eq!(
        done,
        Purged {
            messages: 4,
            rejections: 1,
            ciphertexts: 0
        },
        "old alert, old RED alert, the closed thread's two messages; one audit row"
    );
    for gone in [100, 102, 105, 106] {
        assert!(s.get_message(&id(gone)).await.unwrap().is_none(), "{gone}");
    }
    for kept in [101, 103, 104, 107, 108] {
        assert!(s.get_message(&id(kept)).await.unwrap().is_some(), "{kept}");
    }
    assert!(
        s.delivery(&id(100)).await.unwrap().is_empty(),
        "delivery rows go"
    );
    assert!(
        s.receipts(&id(100)).await.unwrap().is_empty(),
        "receipt rows go"
    );
    let depths = s.outbox_depths().await.unwrap();
    let depth = |p: &str| depths.iter().find(|(q, _)| q == p).map_or(0, |(_, n)| *n);
    assert_eq!(
        depth("node-b"),
        2,
        "the recent alert and the open thread's step"
    );
    assert_eq!(depth("node-c"), 0, "the old alert's outbox rows go");
    assert_eq!(s.delivery(&id(104)).await.unwrap().len(), 1);
    assert_eq!(
        s.thread(&id(103)).await.unwrap().len(),
        2,
        "open thread whole"
    );
    let again = s.purge(plan(&cutoffs, &[id(103)], 100)).await.unwrap();
    assert_eq!(again, Purged::default(), "nothing left to purge");
}

async fn purge_works_in_bounded_batches(s: Store) {
    let rows: Vec<NewMessage> = (0..25)
        .map(|n| {
            aged(
                200 + n,
                MessageKind::Alert,
                Tlp::Green,
                100 + i64::from(n),
                &["node-b"],
            )
        })
        .collect();
    s.insert(rows, Durability::Durable).await.unwrap();
    let p = plan(&[(Tlp::Green, 1_000)], &[], 10);
    let mut sizes = Vec::new();
    loop {
        let done = s.purge(p.clone()).await.unwrap();
        sizes.push(done.messages);
        if (done.messages as usize) < p.limit {
            break;
        }
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(s.message_count().await.unwrap(), 0);
    let space = s.space().await.unwrap();
    assert!(space.file_bytes > 0, "{space:?}");
    assert!(space.free_bytes <= space.file_bytes, "{space:?}");
    assert!(s.outbox("node-b", 0, NOW, 100).await.unwrap().is_empty());
}

async fn durable_writes_survive_reopen(open: &impl Fn(&Path) -> Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    s.insert(
        vec![msg(&id(80), "node-a", MessageKind::Alert, &["node-b"])],
        Durability::Durable,
    )
    .await
    .unwrap();
    s.insert(
        vec![msg(&id(81), "node-a", MessageKind::Receipt, &[])],
        Durability::Lazy,
    )
    .await
    .unwrap();
    s.close().await;
    drop(s);
    let s = open(dir.path());
    assert!(s.get_message(&id(80)).await.unwrap().is_some());
    assert!(
        s.get_message(&id(81)).await.unwrap().is_some(),
        "lazy survives a clean close"
    );
    assert_eq!(s.outbox("node-b", 0, NOW, 10).await.unwrap().len(), 1);
    s.close().await;
}

async fn closed_store_refuses(open: &impl Fn(&Path) -> Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    s.close().await;
    let r = s
        .insert(
            vec![msg(&id(90), "node-a", MessageKind::Alert, &[])],
            Durability::Durable,
        )
        .await;
    assert!(matches!(r, Err(StoreError::Closed)), "{r:?}");
}

/// `cursor_received_by` finds the last message received by a time, over
/// gaps the purge leaves and runs of equal receipt times, as a scan would.
async fn receipt_times_are_found_by_bisection(s: Store) {
    assert_eq!(
        crate::storage::cursor_received_by(s.as_ref(), NOW)
            .await
            .unwrap(),
        0
    );
    assert!(s.received_from(0).await.unwrap().is_none());
    // Received at 1000, 1000, 1010, 1020, ... (two of each tenth time), and
    // TLP:RED ones purged to leave gaps.
    let rows: Vec<NewMessage> = (0..60u32)
        .map(|n| {
            let mut m = aged(300 + n, MessageKind::Alert, Tlp::Green, 100, &[]);
            m.received_ms = 1_000 + i64::from(n / 2) * 10;
            if n % 7 == 3 {
                m.tlp = Tlp::Red as i32;
            }
            m
        })
        .collect();
    s.insert(rows, Durability::Durable).await.unwrap();
    s.purge(plan(&[(Tlp::Red, NOW)], &[], 100)).await.unwrap();
    let mut held = Vec::new();
    let mut at = 0;
    while let Some((c, r)) = s.received_from(at).await.unwrap() {
        held.push((c, r));
        at = c + 1;
    }
    assert_eq!(held.len(), 60 - 9, "the purge left gaps");
    for ms in [0, 999, 1_000, 1_005, 1_010, 1_150, 1_289, 1_290, 1_291, NOW] {
        let scan = held
            .iter()
            .filter(|(_, r)| *r <= ms)
            .map(|(c, _)| *c)
            .max()
            .unwrap_or(0);
        assert_eq!(
            crate::storage::cursor_received_by(s.as_ref(), ms)
                .await
                .unwrap(),
            scan,
            "received by {ms}"
        );
    }
}

/// A reconciliation entry for message `n` under `audiences`.
fn synced(n: u32, created_ms: i64, audiences: &[&str]) -> NewMessage {
    let mut m = aged(n, MessageKind::Alert, Tlp::Green, created_ms, &[]);
    let mut idb = [0u8; 16];
    idb[12..].copy_from_slice(&n.to_be_bytes());
    let mut hash = [0u8; 32];
    hash[..4].copy_from_slice(&n.to_le_bytes());
    hash[31] = 0xff;
    m.sync = Some(SyncEntry {
        audiences: audiences.iter().map(|a| a.to_string()).collect(),
        id: idb,
        hash,
    });
    m
}

/// The sums of "*" and "node-b" agree with the items listed and have these
/// (bucket, count).
async fn sums_are(s: &Store, want: &[(i64, u64)]) {
    let sums = s
        .sync_buckets(&["*".to_string(), "node-b".to_string()], 0)
        .await
        .unwrap();
    assert_eq!(sums, sums_by_listing(s, &["*", "node-b"]).await);
    assert_eq!(
        sums.iter().map(|b| (b.bucket, b.count)).collect::<Vec<_>>(),
        want
    );
}

/// The sums of the items `sync_items` lists, per bucket.
async fn sums_by_listing(s: &Store, audiences: &[&str]) -> Vec<SyncBucket> {
    let mut by: std::collections::BTreeMap<i64, SyncBucket> = Default::default();
    for a in audiences {
        for it in s
            .sync_items(a, (i64::MIN, [0; 16]), (i64::MAX, [0xff; 16]), 1_000_000)
            .await
            .unwrap()
        {
            let b = it.created_ms.div_euclid(SYNC_BUCKET_MS);
            by.entry(b)
                .or_insert(SyncBucket {
                    bucket: b,
                    ..SyncBucket::default()
                })
                .add(&it.hash, 1);
        }
    }
    by.into_values().collect()
}

/// Invariant: the per-bucket sums equal the sums of the listed items, after
/// inserts (duplicates change nothing) and purges; listing is ordered and
/// bounded by position.
async fn sync_sums_follow_insert_and_purge(s: Store) {
    let w = SYNC_BUCKET_MS;
    let rows = vec![
        synced(1, 10, &["*"]),
        synced(2, w + 5, &["node-b", "node-c"]),
        synced(3, w + 6, &["*"]),
        synced(4, 3 * w, &["node-b"]),
        synced(5, 5 * w, &["*"]),
        // Not reconciled.
        aged(6, MessageKind::Alert, Tlp::Green, 20, &[]),
    ];
    s.insert(rows.clone(), Durability::Durable).await.unwrap();
    // Duplicates add nothing.
    s.insert(rows, Durability::Durable).await.unwrap();
    sums_are(&s, &[(0, 1), (1, 2), (3, 1), (5, 1)]).await;
    // From a later bucket on; an audience listed twice counts once.
    let later = s
        .sync_buckets(&["node-b".into(), "node-b".into()], 2 * w)
        .await
        .unwrap();
    assert_eq!(later.iter().map(|b| b.count).sum::<u64>(), 1);
    // Listing in order, from and to positions.
    let mut idb = [0u8; 16];
    idb[12..].copy_from_slice(&3u32.to_be_bytes());
    let items = s
        .sync_items("*", (w + 6, idb), (i64::MAX, [0xff; 16]), 10)
        .await
        .unwrap();
    assert_eq!(
        items.iter().map(|i| i.created_ms).collect::<Vec<_>>(),
        vec![w + 6, 5 * w]
    );
    let items = s
        .sync_items("*", (0, [0; 16]), (w + 6, idb), 10)
        .await
        .unwrap();
    assert_eq!(items.len(), 1, "the upper position is excluded");
    assert_eq!(
        s.sync_items("*", (0, [0; 16]), (i64::MAX, [0; 16]), 1)
            .await
            .unwrap()
            .len(),
        1,
        "limit"
    );
    // A later write adds to buckets already summed (sums are gathered per
    // write and added once per touched bucket).
    s.insert(
        vec![synced(7, w + 7, &["*"]), synced(8, w + 8, &["node-b"])],
        Durability::Durable,
    )
    .await
    .unwrap();
    sums_are(&s, &[(0, 1), (1, 4), (3, 1), (5, 1)]).await;
    // A purge takes the items and their sums.
    s.purge(plan(&[(Tlp::Green, 2 * w)], &[], 100))
        .await
        .unwrap();
    sums_are(&s, &[(3, 1), (5, 1)]).await;
    assert!(
        s.sync_buckets(&["node-c".into()], 0)
            .await
            .unwrap()
            .is_empty(),
        "an emptied bucket is gone"
    );
    // Two messages' items under one audience in the same millisecond: the
    // purge takes only its own message's (the other stays listed and summed).
    let mut amber = synced(9, 5 * w, &["*", "node-b"]);
    amber.tlp = Tlp::Amber as i32;
    s.insert(vec![amber], Durability::Durable).await.unwrap();
    sums_are(&s, &[(3, 1), (5, 3)]).await;
    s.purge(plan(&[(Tlp::Amber, 6 * w)], &[], 100))
        .await
        .unwrap();
    sums_are(&s, &[(3, 1), (5, 1)]).await;
    let left = s
        .sync_items("*", (0, [0; 16]), (i64::MAX, [0xff; 16]), 10)
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "message 5's item stays");
    assert_eq!(left[0].id[12..], 5u32.to_be_bytes());
}

/// Invariant: `requeue` queues held messages for a peer, due now, also when
/// an entry exists (deferred) or the link is past their cursor; messages
/// not held, or whose relayed ciphertext was dropped, are skipped; a new
/// chain of custody is kept with the peer's entry (the message row is not
/// rewritten).
async fn refusals_are_found_until_they_age(s: Store) {
    s.insert(
        vec![
            msg(&id(1), "node-a", MessageKind::Alert, &["node-b", "node-c"]),
            msg(&id(2), "node-a", MessageKind::Alert, &["node-b"]),
        ],
        Durability::Durable,
    )
    .await
    .unwrap();
    // Both refused by node-b at 7,000 (a refusal is a REJECTED delivery).
    s.drop_outbox("node-b", "refused", 7_000).await.unwrap();
    let asked = vec![id(1), id(2), id(99)];
    let mut r = s.refused_by("node-b", asked.clone(), 7_000).await.unwrap();
    r.sort();
    assert_eq!(r, vec![id(1), id(2)]);
    assert!(
        s.refused_by("node-b", asked.clone(), 7_001)
            .await
            .unwrap()
            .is_empty(),
        "refusals older than since_ms are not found"
    );
    assert!(
        s.refused_by("node-c", asked.clone(), 0)
            .await
            .unwrap()
            .is_empty(),
        "node-c refused nothing (queued)"
    );
    // Queued again: no longer refused.
    s.requeue(
        "node-b",
        vec![Requeue {
            message_id: id(2),
            hops: None,
            replaces_stored: None,
        }],
        8_000,
    )
    .await
    .unwrap();
    assert_eq!(s.refused_by("node-b", asked, 0).await.unwrap(), vec![id(1)]);
}

async fn requeue_makes_entries_due_now(s: Store) {
    s.insert(
        vec![
            msg(&id(1), "node-a", MessageKind::Alert, &[]),
            msg(&id(2), "node-a", MessageKind::Alert, &["node-b"]),
        ],
        Durability::Durable,
    )
    .await
    .unwrap();
    // Entry 2 deferred far ahead.
    s.defer_outbox(
        "node-b",
        vec![Deferral {
            cursor: 2,
            reason: "later".into(),
            next_attempt_ms: NOW * 10,
        }],
        NOW,
    )
    .await
    .unwrap();
    assert!(s.outbox_due("node-b", 0, NOW, 10).await.unwrap().is_empty());
    let n = s
        .requeue(
            "node-b",
            vec![
                Requeue {
                    message_id: id(1),
                    hops: Some(vec![1, 2, 3]),
                    replaces_stored: None,
                },
                Requeue {
                    message_id: id(2),
                    hops: None,
                    replaces_stored: None,
                },
                Requeue {
                    message_id: id(99),
                    hops: None,
                    replaces_stored: None,
                },
            ],
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(n, 2, "a message not held is skipped");
    let due = s.outbox_due("node-b", 0, NOW, 10).await.unwrap();
    assert_eq!(due.iter().map(|i| i.cursor).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(due[0].hops, vec![1, 2, 3], "the new chain is stored");
    // With the peer's entry only: the stored message keeps the chain it came
    // with, and an entry queued again without a new chain keeps the one it has.
    let held = s.get_message(&id(1)).await.unwrap().unwrap();
    assert_ne!(
        held.hops,
        Some(vec![1, 2, 3]),
        "the message row is not rewritten"
    );
    s.requeue(
        "node-b",
        vec![Requeue {
            message_id: id(1),
            hops: None,
            replaces_stored: None,
        }],
        NOW,
    )
    .await
    .unwrap();
    let due = s.outbox_due("node-b", 0, NOW, 10).await.unwrap();
    assert_eq!(due[0].hops, vec![1, 2, 3], "requeued without a chain: kept");
    // A chain that replaces the stored one (a shorter path) does both.
    s.requeue(
        "node-b",
        vec![Requeue {
            message_id: id(1),
            hops: Some(vec![4, 5]),
            replaces_stored: Some(vec![Hop {
                node: "node-x".into(),
                at_ms: 7,
            }]),
        }],
        NOW,
    )
    .await
    .unwrap();
    let held = s.get_message(&id(1)).await.unwrap().unwrap();
    assert_eq!(held.hops, Some(vec![4, 5]), "the stored chain is replaced");
    assert_eq!(
        held.path,
        [Hop {
            node: "node-x".into(),
            at_ms: 7
        }],
        "and its path"
    );
    let due = s.outbox_due("node-b", 0, NOW, 10).await.unwrap();
    assert_eq!(due[0].hops, vec![4, 5]);
    let d = s.delivery(&id(1)).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].state, DeliveryState::Queued as i32);
    // Relayed ciphertext that was dropped cannot be queued again.
    let mut relay = msg(&id(3), "node-c", MessageKind::Alert, &["node-b"]);
    relay.readable = false;
    s.insert(vec![relay], Durability::Durable).await.unwrap();
    s.complete_outbox(
        "node-b",
        vec![Outcome {
            cursor: 3,
            state: DeliveryState::Delivered,
            reason: String::new(),
        }],
        NOW,
    )
    .await
    .unwrap();
    s.purge(PurgePlan {
        relayed_before_ms: i64::MAX,
        limit: 10,
        ..PurgePlan::default()
    })
    .await
    .unwrap();
    let n = s
        .requeue(
            "node-b",
            vec![Requeue {
                message_id: id(3),
                hops: None,
                replaces_stored: None,
            }],
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(n, 0);
}

/// Messages are found by incident (members and the opener, readable or not)
/// and by key; keys go with a purged message.
async fn incidents_and_keys(s: Store) {
    let mut opener = with_keys(
        msg(&id(200), "node-a", MessageKind::Alert, &[]),
        &["i:3:evil.example", "m:i:3:evil.example"],
    );
    opener.incident_id = Some(id(200));
    let mut member = msg(&id(201), "node-b", MessageKind::Sighting, &[]);
    member.incident_id = Some(id(200));
    member.readable = false;
    let other = with_keys(
        msg(&id(202), "node-c", MessageKind::Alert, &[]),
        &["i:3:evil.example", "i:1:192.0.2.1"],
    );
    let unrelated = msg(&id(203), "node-c", MessageKind::Alert, &[]);
    // A second member of the same incident, and a member of another one,
    // under the same key: each incident is answered once.
    let mut second = with_keys(
        msg(&id(204), "node-c", MessageKind::Sighting, &[]),
        &["m:i:3:evil.example"],
    );
    second.incident_id = Some(id(200));
    let mut elsewhere = with_keys(
        msg(&id(205), "node-c", MessageKind::Alert, &[]),
        &["m:i:3:evil.example"],
    );
    elsewhere.incident_id = Some(id(205));
    // Under the same keys, kept by the purge below (another TLP): its rows stay.
    let mut kept = with_keys(
        msg(&id(206), "node-c", MessageKind::Alert, &[]),
        &["i:3:evil.example", "m:i:3:evil.example"],
    );
    kept.tlp = Tlp::Amber as i32;
    s.insert(
        vec![opener, member, other, unrelated, second, elsewhere],
        Durability::Durable,
    )
    .await
    .unwrap();
    let got: Vec<String> = s
        .incident_messages(vec![id(200)], 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message_id)
        .collect();
    assert_eq!(
        got,
        vec![id(200), id(201), id(204)],
        "the opener and its members, in cursor order"
    );
    let openers: Vec<String> = s
        .incident_openers(0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.message_id)
        .collect();
    assert_eq!(openers, vec![id(205), id(200)]);
    assert_eq!(
        s.keyed_incidents(vec!["m:i:3:evil.example".into(), "m:i:9:none".into()], 10)
            .await
            .unwrap(),
        vec![
            ("m:i:3:evil.example".to_string(), id(200)),
            ("m:i:3:evil.example".to_string(), id(205)),
        ],
        "each incident once per key"
    );
    assert_eq!(
        s.keyed_incidents(vec!["m:i:3:evil.example".into()], 1)
            .await
            .unwrap()
            .len(),
        1,
        "bounded"
    );
    let keyed = s
        .keyed(vec!["i:3:evil.example".into(), "i:9:none".into()], 10)
        .await
        .unwrap();
    assert_eq!(
        keyed,
        vec![
            ("i:3:evil.example".to_string(), id(200)),
            ("i:3:evil.example".to_string(), id(202)),
        ]
    );
    s.insert(vec![kept], Durability::Durable).await.unwrap();
    // Without a way to find the keys, nothing is purged.
    let err = s
        .purge(PurgePlan {
            keys_of: None,
            ..plan(&[(Tlp::Green, i64::MAX)], &[], 100)
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("keys_of"), "{err}");
    assert_eq!(
        s.keyed(vec!["i:3:evil.example".into()], 10)
            .await
            .unwrap()
            .len(),
        3
    );
    s.purge(plan(&[(Tlp::Green, i64::MAX)], &[], 100))
        .await
        .unwrap();
    assert_eq!(
        s.keyed(
            vec![
                "i:3:evil.example".into(),
                "m:i:3:evil.example".into(),
                "i:1:192.0.2.1".into()
            ],
            10
        )
        .await
        .unwrap(),
        vec![
            ("i:3:evil.example".to_string(), id(206)),
            ("m:i:3:evil.example".to_string(), id(206)),
        ],
        "keys are purged with their messages, and only theirs"
    );
}
