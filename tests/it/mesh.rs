//! Relay on a 6-node mesh with cycles: a ring n0..n5 with chords n0–n3 and
//! n1–n4. Floods reach everyone exactly once and never loop, restricted
//! messages reach only their recipient, retractions reach every holder, and a
//! relay that is down holds nothing back. A message whose first copy reached a
//! relay at its hop limit goes on when a copy over a shorter path arrives.

use crate::common::*;
use certfed::app::RunningNode;
use certfed::proto::v1::*;
use std::time::Duration;

const IDS: [&str; 6] = ["n0", "n1", "n2", "n3", "n4", "n5"];
const EDGES: [(usize, usize); 8] = [
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 4),
    (4, 5),
    (5, 0),
    (0, 3),
    (1, 4),
];

fn mesh() -> Fed {
    Fed::new(&IDS, &EDGES)
}

async fn all_have(fed: &Fed, nodes: &[usize], ids: &[String]) -> bool {
    eventually(Duration::from_secs(30), || async {
        for &i in nodes {
            for id in ids {
                if !holds(fed, i, id).await {
                    return false;
                }
            }
        }
        true
    })
    .await
}

/// Envelopes sent over all links (acknowledged pushes), from the nodes' metrics.
fn frames_sent(nodes: &[RunningNode]) -> u64 {
    let mut total = 0;
    for n in nodes {
        for p in &n.node.cfg.peers {
            total += n
                .node
                .metrics
                .sent
                .get_or_create(&n.node.metrics.peer(&p.id))
                .get();
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn green_floods_the_mesh_exactly_once_without_loops() {
    let fed = mesh();
    let mut nodes = Vec::new();
    for i in 0..6 {
        nodes.push(fed.start(i).await);
    }
    let n = 20;
    let mut ids = Vec::new();
    for k in 0..n {
        ids.push(publish_on(&fed, 0, green_alert(&format!("mesh {k}")), &[]).await);
    }
    assert!(
        all_have(&fed, &[1, 2, 3, 4, 5], &ids).await,
        "every node gets every alert"
    );
    // Let receipts and any stray copies settle, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, name) in IDS.iter().enumerate() {
        let mut op = fed.operator(i).await;
        let info = op
            .get_node_info(GetNodeInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            info.stored_messages, n as u64,
            "{name}: each alert stored once"
        );
    }
    // Loop-free and bounded: an alert crosses each link at most once per
    // direction (at most 2 × 8 transfers for 5 deliveries), and each of the 5
    // receipts per alert goes back along the path it came (at most 2 hops here:
    // the mesh's diameter).
    let sent = frames_sent(&nodes);
    let deliveries = (n * 5) as u64;
    let duplicates: u64 = nodes.iter().map(|x| x.node.metrics.duplicates.get()).sum();
    eprintln!(
        "mesh overhead: {sent} envelopes sent (alerts and receipts) for {deliveries} alert deliveries = {:.2} per delivery; {duplicates} arrived as duplicates",
        sent as f64 / deliveries as f64
    );
    assert!(sent >= deliveries, "at least one transfer per delivery");
    assert!(
        sent <= (n as u64) * (2 * EDGES.len() as u64 + 5 * 2),
        "transfers bounded by two per link per alert plus reverse-path receipts: {sent}"
    );
    for x in nodes {
        x.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_reaches_only_its_recipient_and_retractions_reach_every_holder() {
    let fed = mesh();
    let mut nodes = Vec::new();
    for i in 0..6 {
        nodes.push(fed.start(i).await);
    }
    // n2 is not adjacent to n0.
    let mut red = green_alert("mesh red");
    red.tlp = Tlp::Red as i32;
    let red_id = publish_on(&fed, 0, red, &["n2"]).await;
    assert!(all_have(&fed, &[2], std::slice::from_ref(&red_id)).await);
    for i in [1, 3, 4, 5] {
        let mut op = fed.operator(i).await;
        let err = op
            .get_message(GetMessageRequest {
                message_id: red_id.clone(),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.code(),
                tonic::Code::PermissionDenied | tonic::Code::NotFound
            ),
            "{} must not read the RED alert: {err:?}",
            IDS[i]
        );
    }

    // A retraction of a GREEN alert reaches every node that holds it.
    let original = publish_on(&fed, 0, green_alert("to be retracted"), &[]).await;
    assert!(all_have(&fed, &[1, 2, 3, 4, 5], std::slice::from_ref(&original)).await);
    let mut retraction = green_alert("retracted: false positive");
    retraction.revision = Revision::Retraction as i32;
    retraction.supersedes = original.clone();
    let retraction_id = publish_on(&fed, 0, retraction, &[]).await;
    let ok = eventually(Duration::from_secs(30), || async {
        for i in 0..6 {
            let mut op = fed.operator(i).await;
            let m = op
                .get_message(GetMessageRequest {
                    message_id: original.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            if m.superseded_by != retraction_id {
                return false;
            }
        }
        true
    })
    .await;
    assert!(ok, "every holder marks the original as retracted");
    for x in nodes {
        x.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_is_down_holds_nothing_back() {
    let fed = mesh();
    let mut nodes: Vec<Option<RunningNode>> = Vec::new();
    for i in 0..6 {
        nodes.push(if i == 1 {
            None
        } else {
            Some(fed.start(i).await)
        });
    }
    // n1 (adjacent to n0, n2, n4) is down: the others get the alert by other routes.
    let id = publish_on(&fed, 0, green_alert("while n1 is down"), &[]).await;
    assert!(all_have(&fed, &[2, 3, 4, 5], std::slice::from_ref(&id)).await);
    // n1 returns and receives it from the outboxes that held it, once.
    nodes[1] = Some(fed.start(1).await);
    assert!(all_have(&fed, &[1], std::slice::from_ref(&id)).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut op = fed.operator(1).await;
    let info = op
        .get_node_info(GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.stored_messages, 1);
    for x in nodes.into_iter().flatten() {
        x.shutdown().await.unwrap();
    }
}

/// The relays on the chain of custody of `id` as node `i` holds it.
pub async fn relays_at(fed: &Fed, i: usize, id: &str) -> Vec<String> {
    let m = fed
        .operator(i)
        .await
        .get_message(GetMessageRequest {
            message_id: id.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    m.custody.into_iter().map(|r| r.relay).collect()
}

/// Under load a flood's first copy can reach a node over a long detour, at
/// the signed hop limit, so that node forwards it to nobody; the copy over
/// the short path then arrives as a duplicate. Line a–b–c–x–y with hop limit
/// 3, and a link a–x that x does not accept yet: x holds a's alert over a,
/// b, c (at the limit) and y lacks it; once x takes a as a peer (reload),
/// a's queued copy reaches x over [a]: x must forward it to y over the
/// shorter path — before, x answered DUPLICATE and y never got it
/// (reconciliation refuses it too: the stored path is at the limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_path_carries_a_message_past_a_relay_at_its_hop_limit() {
    let mut fed = Fed::new(
        &["node-a", "node-b", "node-c", "node-x", "node-y"],
        &[(0, 1), (1, 2), (2, 3), (3, 4)],
    );
    fed.specs[0].extra = "hop_limit = 3".into();
    // a lists x (its copy for x waits in a's outbox); x does not list a yet.
    let (pa, px) = (fed.specs[0].port, fed.specs[3].port);
    fed.specs[0].peers.push(("node-x".into(), px));
    let nodes: Vec<RunningNode> = {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(fed.start(i).await);
        }
        v
    };
    let id = publish_on(&fed, 0, green_alert("a long way first"), &[]).await;
    assert!(
        arrives(&fed, 3, &id, Duration::from_secs(20)).await,
        "x is three nodes from a and within the limit"
    );
    assert_eq!(
        relays_at(&fed, 3, &id).await,
        ["node-b", "node-c"],
        "x got it the long way"
    );
    // At the limit, x forwarded it to nobody (deterministic: the limit, not
    // timing): y does not hold it.
    let mut op_y = fed.operator(4).await;
    let err = op_y
        .get_message(GetMessageRequest {
            message_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    // x takes a as a peer: the short path appears.
    fed.specs[3].peers.push(("node-a".into(), pa));
    nodes[3].reload(&fed.config_path(3)).unwrap();
    assert!(
        arrives(&fed, 4, &id, Duration::from_secs(30)).await,
        "y must get the alert once a shorter path reaches x"
    );
    assert_eq!(
        relays_at(&fed, 4, &id).await,
        ["node-x"],
        "y got it over the short path a, x"
    );
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}
