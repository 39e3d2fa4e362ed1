//! Retention and message age on real nodes: the purge deletes messages older
//! than `storage.retention_days` with their outbox, delivery and receipt rows
//! and keeps open assistance requests whole; a large purge never holds up a
//! peer's pushes; an envelope older than `limits.max_message_age_days` (a
//! hostile peer's 1970 message, or a replay of a purged one) is refused for
//! good, saying why.

use crate::common::*;
use certfed::app::bench::alert_draft;
use certfed::domain::envelope::seal;
use certfed::domain::keys::Signer;
use certfed::proto::v1::*;
use certfed::service::now_ms;
use certfed::service::retention::{purge_once, sweep_attachments};
use certfed::storage::{Durability, Hop, NewMessage};
use prost::Message;
use std::time::Duration;

const DAY_MS: i64 = 86_400_000;

fn signer_of(pki: &Pki, id: &str) -> Signer {
    let pem = std::fs::read_to_string(pki.path(&format!("{id}.sign.key"))).unwrap();
    Signer::from_pkcs8_pem(id, &pem).unwrap()
}

/// A GREEN alert signed by `signer`, created at `created_ms`, no expiry.
fn alert_envelope(signer: &Signer, title: &str, created_ms: i64) -> SignedEnvelope {
    seal(signer, alert_draft(&green_alert(title), created_ms))
}

/// The row ingest would have stored for `env` from `peer` when it was fresh.
fn row(env: &SignedEnvelope, peer: &str, targets: &[&str]) -> NewMessage {
    let h = EnvelopeHeader::decode(env.header.as_slice()).unwrap();
    let created = certfed::domain::envelope::ts_to_ms(h.created.as_ref().unwrap());
    NewMessage {
        sync: None,
        message_id: h.message_id.clone(),
        origin: h.origin.clone(),
        kind: h.kind,
        tlp: h.tlp,
        severity: Severity::High as i32,
        sectors_mask: 0,
        exercise: false,
        created_ms: created,
        expires_ms: None,
        received_ms: created + 1_000,
        from_peer: Some(peer.into()),
        path: vec![Hop {
            node: h.origin,
            at_ms: created,
        }],
        header: env.header.clone(),
        payload: env.payload.clone(),
        signature: env.signature.clone(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        parked: Vec::new(),
        park_until_ms: 0,
        supersedes: None,
        readable: true,
        plain: None,
        request_id: None,
        receipt: None,
        hops: Vec::new(),
        incident_id: None,
        keys: Vec::new(),
    }
}

/// Pushes `envs` as `from` to node `to` over one stream; the acks in order.
async fn push(fed: &Fed, from: &str, to: usize, envs: Vec<SignedEnvelope>) -> Vec<PushAck> {
    let n = envs.len();
    let mut fc = federation_client(&fed.pki, &fed.addr(to), from, Some(&fed.specs[to].id)).await;
    let frames: Vec<PushFrame> = envs
        .into_iter()
        .enumerate()
        .map(|(i, e)| PushFrame {
            bundled: Vec::new(),
            gossip: None,
            resent: false,
            returning: false,
            seq: i as u64 + 1,
            envelope: Some(e),
            ..Default::default()
        })
        .collect();
    let mut acks = fc
        .push(tokio_stream::iter(frames))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(60), acks.message()).await {
            Ok(Ok(Some(a))) => out.push(a),
            other => panic!("ack stream ended after {} of {n}: {other:?}", out.len()),
        }
    }
    out
}

fn request(title: &str) -> AssistanceRequest {
    AssistanceRequest {
        title: title.into(),
        description: "Ransomware at a water utility".into(),
        tlp: Tlp::Green as i32,
        services: vec![AssistanceService::IncidentResponse as i32],
        sector: Nis2Sector::DrinkingWater as i32,
        entity_category: EntityCategory::Essential as i32,
        rsit_class: RsitClass::MaliciousCode as i32,
        severity: Severity::High as i32,
        needs: Some(EstimatedNeeds {
            skills: vec!["incident response".into()],
            person_days: 5,
            on_site: false,
        }),
        ..Default::default()
    }
}

// `..Default::default()` on requests that have every field today: fields
// added later (e.g. an idempotency `request_id`) keep their defaults.
#[allow(clippy::needless_update)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_old_messages_and_their_rows_and_keeps_open_requests() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let (a, b) = (fed.start(0).await, fed.start(1).await);
    let (mut op_a, mut op_b) = (fed.operator(0).await, fed.operator(1).await);

    // An open request with a step from b, and a request a withdrew (closed).
    let open = op_a
        .request_assistance(RequestAssistanceRequest {
            request: Some(request("open: still needs help")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request_id;
    assert!(arrives(&fed, 1, &open, Duration::from_secs(20)).await);
    let offer = op_b
        .offer_assistance(OfferAssistanceRequest {
            request_id: open.clone(),
            offer: Some(Offer {
                summary: "two responders".into(),
                capabilities: vec![AssistanceService::IncidentResponse as i32],
                capacity_person_days: 5,
                funding: FundingChannel::CybersecurityReserve as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .offer_id;
    assert!(arrives(&fed, 0, &offer, Duration::from_secs(20)).await);
    let closed = op_a
        .request_assistance(RequestAssistanceRequest {
            request: Some(request("closed: withdrawn")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request_id;
    op_a.update_assistance(UpdateAssistanceRequest {
        request_id: closed.clone(),
        state: AssistanceState::Withdrawn as i32,
        note: "solved locally".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    // Alerts: one delivered to b (b's receipt recorded), then b goes down
    // and one stays queued.
    let delivered = publish_on(&fed, 0, green_alert("delivered"), &[]).await;
    assert!(arrives(&fed, 1, &delivered, Duration::from_secs(20)).await);
    let store = a.node.store.clone();
    assert!(
        eventually(Duration::from_secs(20), || async {
            !store.receipts(&delivered).await.unwrap().is_empty()
        })
        .await,
        "b's receipt reaches a"
    );
    b.shutdown().await.unwrap();
    let queued = publish_on(&fed, 0, green_alert("queued for b"), &[]).await;
    assert!(
        eventually(Duration::from_secs(20), || async {
            store
                .outbox_depths()
                .await
                .unwrap()
                .iter()
                .any(|(p, n)| p == "node-b" && *n > 0)
        })
        .await
    );
    assert!(!store.delivery(&queued).await.unwrap().is_empty());
    let held = store.message_count().await.unwrap();

    // Nothing is old yet: a pass now deletes nothing.
    let r = purge_once(&a.node, now_ms()).await.unwrap();
    assert_eq!((r.messages, r.rejections), (0, 0), "{r:?}");

    // A pass as if 400 days had gone by (retention: the default 365 days).
    let later = now_ms() + 400 * DAY_MS;
    let r = purge_once(&a.node, later).await.unwrap();
    assert_eq!(r.threads_kept, 1, "{r:?}");
    let kept = store.message_count().await.unwrap();
    assert_eq!(
        kept, 2,
        "the open request and its offer; held before: {held}"
    );
    // Receipts are messages too (not counted by message_count).
    assert!(r.messages >= held - 2, "{r:?}");
    for gone in [&delivered, &queued, &closed] {
        assert!(!holds(&fed, 0, gone).await, "{gone} was purged");
        assert!(store.delivery(gone).await.unwrap().is_empty(), "{gone}");
    }
    assert!(
        store.receipts(&delivered).await.unwrap().is_empty(),
        "receipt rows go"
    );
    assert!(
        store
            .outbox_depths()
            .await
            .unwrap()
            .iter()
            .all(|(_, n)| *n == 0),
        "the purged alert's outbox row went with it"
    );
    let open_view = op_a
        .get_assistance_request(GetAssistanceRequestRequest {
            request_id: open.clone(),
        })
        .await
        .expect("the open request is kept")
        .into_inner();
    assert_eq!(open_view.state, AssistanceState::Offered as i32);
    assert_eq!(open_view.offers.len(), 1, "with its steps");
    let listed = op_a
        .list_assistance_requests(ListAssistanceRequestsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listed
        .requests
        .iter()
        .map(|r| r.request_id.clone())
        .collect();
    assert_eq!(ids, vec![open.clone()]);

    // Once closed, the old thread goes as a whole with the next pass.
    op_a.update_assistance(UpdateAssistanceRequest {
        request_id: open.clone(),
        state: AssistanceState::Withdrawn as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    let r = purge_once(&a.node, now_ms() + 400 * DAY_MS).await.unwrap();
    assert_eq!(r.threads_kept, 0, "{r:?}");
    assert!(r.messages >= 3, "request, offer, withdrawal: {r:?}");
    assert_eq!(store.message_count().await.unwrap(), 0);
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_and_replayed_purged_envelopes_are_refused_for_good() {
    // b listens; the test plays node-a, a configured peer of b.
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let b = fed.start(1).await;
    let a_key = signer_of(&fed.pki, "node-a");
    let now = now_ms();

    // A message b accepted 400 days ago, purged since (retention 365 days).
    let old = alert_envelope(&a_key, "accepted long ago", now - 400 * DAY_MS);
    b.node
        .store
        .insert(vec![row(&old, "node-a", &[])], Durability::Durable)
        .await
        .unwrap();
    let old_id = EnvelopeHeader::decode(old.header.as_slice())
        .unwrap()
        .message_id;
    assert!(holds(&fed, 1, &old_id).await);
    let r = purge_once(&b.node, now_ms()).await.unwrap();
    assert_eq!(r.messages, 1, "{r:?}");
    assert!(!holds(&fed, 1, &old_id).await);

    // The replay, a hostile 1970 message with no expiry, one just past the
    // limit (90 days), and a fresh one.
    let epoch = alert_envelope(&a_key, "from 1970", 0);
    let past_limit = alert_envelope(&a_key, "91 days old", now - 91 * DAY_MS);
    let fresh = alert_envelope(&a_key, "fresh", now);
    let acks = push(&fed, "node-a", 1, vec![old, epoch, past_limit, fresh]).await;
    for (name, ack) in ["replay of a purged message", "1970", "91 days"]
        .iter()
        .zip(&acks)
    {
        assert_eq!(ack.outcome, PushOutcome::Rejected as i32, "{name}: {ack:?}");
        assert!(ack.reason.contains("too old"), "{name}: {}", ack.reason);
        assert!(
            ack.reason.contains("limits.max_message_age_days") && ack.reason.contains("permanent"),
            "{name}: {}",
            ack.reason
        );
    }
    assert!(
        acks[1].reason.contains("limit of 90 days"),
        "{}",
        acks[1].reason
    );
    assert_eq!(
        acks[3].outcome,
        PushOutcome::Accepted as i32,
        "{:?}",
        acks[3]
    );
    assert!(!holds(&fed, 1, &old_id).await, "the replay was not stored");
    assert_eq!(b.node.store.message_count().await.unwrap(), 1);
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_keeps_accepting_during_a_large_purge() {
    const OLD: usize = 200_000;
    const FRESH: usize = 2_000;
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let b = fed.start(1).await;
    let a_key = signer_of(&fed.pki, "node-a");

    // 200,000 messages created 400 days ago, each queued for a peer (node-z)
    // that never took them.
    let template = alert_envelope(&a_key, "old", now_ms() - 400 * DAY_MS);
    let mut next = 0usize;
    while next < OLD {
        let rows: Vec<NewMessage> = (next..(next + 5_000).min(OLD))
            .map(|i| {
                let mut r = row(&template, "node-a", &["node-z"]);
                r.message_id = format!("00000000-0000-7000-8000-{i:012}");
                r.payload = vec![b'x'; 256];
                r
            })
            .collect();
        next += rows.len();
        b.node.store.insert(rows, Durability::Lazy).await.unwrap();
    }
    assert_eq!(b.node.store.message_count().await.unwrap(), OLD as u64);

    // Purge in the background while node-a pushes fresh alerts.
    let t0 = tokio::time::Instant::now();
    let node = b.node.clone();
    let purge = tokio::spawn(async move {
        let r = purge_once(&node, now_ms()).await;
        (r, tokio::time::Instant::now())
    });
    let fresh: Vec<SignedEnvelope> = (0..FRESH)
        .map(|i| alert_envelope(&a_key, &format!("fresh {i}"), now_ms()))
        .collect();
    let mut fc = federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b")).await;
    let frames: Vec<PushFrame> = fresh
        .into_iter()
        .enumerate()
        .map(|(i, e)| PushFrame {
            bundled: Vec::new(),
            gossip: None,
            resent: false,
            returning: false,
            seq: i as u64 + 1,
            envelope: Some(e),
            ..Default::default()
        })
        .collect();
    let mut acks = fc
        .push(tokio_stream::iter(frames))
        .await
        .unwrap()
        .into_inner();
    let mut first_ack = None;
    let mut accepted = 0;
    for n in 0..FRESH {
        let ack = tokio::time::timeout(Duration::from_secs(120), acks.message())
            .await
            .unwrap_or_else(|_| panic!("no ack {n} within 120 s"))
            .unwrap()
            .unwrap_or_else(|| panic!("ack stream ended after {n}"));
        first_ack.get_or_insert_with(tokio::time::Instant::now);
        if ack.outcome == PushOutcome::Accepted as i32 {
            accepted += 1;
        }
    }
    let last_ack = tokio::time::Instant::now();
    assert_eq!(accepted, FRESH, "every fresh alert is accepted");
    let (report, purge_done) = purge.await.unwrap();
    let report = report.unwrap();
    eprintln!(
        "purge {report:?} done after {:?}; first ack after {:?}, all {FRESH} acks after {:?}",
        purge_done - t0,
        first_ack.unwrap() - t0,
        last_ack - t0
    );
    // The node's own background pass (a minute after start) may have taken
    // part of the old messages when writing the 200,000 rows took that long
    // on a loaded machine: together the passes purge every one (checked by
    // the count below), each in small units of work.
    assert!(
        report.messages > 0 && report.messages <= OLD as u64,
        "{report:?}"
    );
    if report.messages == OLD as u64 {
        assert!(report.batches > 100, "small units of work: {report:?}");
    } else {
        eprintln!(
            "the background pass took {} of the old messages",
            OLD as u64 - report.messages
        );
    }
    assert!(
        first_ack.unwrap() < purge_done,
        "pushes were acknowledged while the purge ran, not after it"
    );
    assert_eq!(b.node.store.message_count().await.unwrap(), FRESH as u64);
    let depths = b.node.store.outbox_depths().await.unwrap();
    assert!(
        depths.iter().all(|(p, n)| p != "node-z" || *n == 0),
        "the purged messages' outbox rows went with them: {depths:?}"
    );
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attachments_of_purged_messages_go_with_them() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let b = fed.start(1).await;
    let a_key = signer_of(&fed.pki, "node-a");
    let now = now_ms();
    let kept = alert_envelope(&a_key, "still held", now);
    let gone = alert_envelope(&a_key, "purged long ago", now - 400 * DAY_MS);
    b.node
        .store
        .insert(
            vec![row(&kept, "node-a", &[]), row(&gone, "node-a", &[])],
            Durability::Durable,
        )
        .await
        .unwrap();
    let id = |e: &SignedEnvelope| {
        EnvelopeHeader::decode(e.header.as_slice())
            .unwrap()
            .message_id
    };
    let root = b.node.cfg.storage.dir.join("attachments");
    let folder = |name: &str| {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("0.blob"), b"evidence").unwrap();
        d
    };
    let held = folder(&id(&kept));
    let purged = folder(&id(&gone));
    let upload = folder(".upload-0195a3c4");
    // Folders changed within the grace period are never swept.
    assert_eq!(
        sweep_attachments(&b.node, Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    // The purge pass takes the old message, then the sweep its folder; here
    // without the grace period (the folders were just written).
    let r = purge_once(&b.node, now_ms()).await.unwrap();
    assert_eq!(r.messages, 1, "{r:?}");
    assert!(purged.exists(), "within the grace period: {r:?}");
    assert_eq!(sweep_attachments(&b.node, Duration::ZERO).await.unwrap(), 1);
    assert!(
        !purged.exists(),
        "the purged message's attachments are gone"
    );
    assert!(
        held.join("0.blob").exists(),
        "a held message keeps its files"
    );
    assert!(upload.exists(), "an unfinished upload is left alone");
}

/// The keys `node`'s store indexes under `keys` (every message).
async fn keyed(node: &certfed::app::RunningNode, keys: &[String]) -> Vec<(String, String)> {
    node.node.store.keyed(keys.to_vec(), 1_000).await.unwrap()
}

/// Every kind of message that carries correlation keys, on both its origin
/// and a recipient: a loose alert's indicators, an incident's opener and
/// sighting (with their member keys), an alert sealed for node-b (node-b
/// keys its decrypted payload), an assistance request naming an alert, a
/// link and a merge proposal. Each key row goes with its message when the
/// purge takes it (the store has no index of keys by message: the purge
/// finds them from each message's row), and none is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_takes_every_correlation_key_with_its_message() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let nodes = [fed.start(0).await, fed.start(1).await];
    let mut a = fed.operator(0).await;
    let ind = |t: IndicatorType, v: &str| Indicator {
        r#type: t as i32,
        value: v.into(),
        comment: String::new(),
    };
    let mut sent = Vec::new();
    let publish =
        |alert: Alert, recipients: Vec<String>, open_incident: bool| PublishAlertRequest {
            alert: Some(alert),
            recipients,
            open_incident,
            ..Default::default()
        };
    let mut loose = green_alert("loose");
    loose
        .indicators
        .push(ind(IndicatorType::Domain, "Loose.Example"));
    let loose = a
        .publish_alert(publish(loose, vec![], false))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let mut opener = green_alert("opens an incident");
    opener.indicators = vec![ind(IndicatorType::Domain, "Campaign.Example")];
    let one = a
        .publish_alert(publish(opener.clone(), vec![], true))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    opener.title = "opens another".into();
    let two = a
        .publish_alert(publish(opener, vec![], true))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let mut sealed = green_alert("for node-b only");
    sealed.tlp = Tlp::Amber as i32;
    sealed.indicators = vec![ind(IndicatorType::Sha256, &"AB".repeat(32))];
    let sealed = a
        .publish_alert(publish(sealed, vec!["node-b".into()], false))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    sent.extend([loose.clone(), one.clone(), two.clone(), sealed.clone()]);
    for id in &sent {
        assert!(arrives(&fed, 1, id, Duration::from_secs(20)).await, "{id}");
    }
    let sighting = a
        .report_sighting(ReportSightingRequest {
            sighting: Some(Sighting {
                incident_id: one.clone(),
                indicators: vec![ind(IndicatorType::Ip, "198.51.100.9")],
                country: "EE".into(),
                sector: Nis2Sector::Energy as i32,
                count: 2,
                severity: Severity::Medium as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .message_id;
    let mut asking = request("names the loose alert");
    asking.linked_alerts = vec![loose.clone()];
    let asked = a
        .request_assistance(RequestAssistanceRequest {
            request: Some(asking),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request_id;
    a.link_to_incident(LinkToIncidentRequest {
        incident_id: one.clone(),
        message_id: loose.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    a.merge_incidents(MergeIncidentsRequest {
        incident_id: one.clone(),
        other_incident_id: two.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    // A closed thread ages like any message.
    a.update_assistance(UpdateAssistanceRequest {
        request_id: asked.clone(),
        state: AssistanceState::Withdrawn as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(arrives(&fed, 1, &sighting, Duration::from_secs(20)).await);

    let keys: Vec<String> = [
        "i:1:192.0.2.7".to_string(),
        "i:3:loose.example".into(),
        "i:3:campaign.example".into(),
        "m:i:3:campaign.example".into(),
        "i:1:198.51.100.9".into(),
        "m:i:1:198.51.100.9".into(),
        format!("i:6:{}", "ab".repeat(32)),
        format!("a:{loose}"),
        format!("n:{loose}"),
        format!("n:{two}"),
    ]
    .into();
    for (i, node) in nodes.iter().enumerate() {
        let held = eventually(Duration::from_secs(20), || async {
            let found = keyed(node, &keys).await;
            keys.iter().all(|k| found.iter().any(|(f, _)| f == k))
        })
        .await;
        assert!(
            held,
            "node {i} indexes every key: {:?}",
            keyed(node, &keys).await
        );
    }
    let later = now_ms() + 400 * DAY_MS;
    for (i, node) in nodes.iter().enumerate() {
        let r = purge_once(&node.node, later).await.unwrap();
        assert_eq!(r.threads_kept, 0, "{r:?}");
        assert_eq!(
            node.node.store.message_count().await.unwrap(),
            0,
            "node {i}"
        );
        assert_eq!(
            keyed(node, &keys).await,
            vec![],
            "node {i}: every key went with its message"
        );
    }
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}
