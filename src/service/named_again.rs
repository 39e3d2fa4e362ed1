//! Later copies of a message to named recipients that this node routed
//! (`domain::routes`): a duplicate for the store, but it can show that the
//! message is needed further from here.
//!
//! - **Toward more recipients** ([`Again::Toward`]): each copy names the
//!   recipients its sender routed through this node (`PushFrame.toward`).
//!   Two nodes upstream can route different recipients through the same
//!   relay; the copy that comes second is a duplicate here, and its
//!   recipients would otherwise wait for the origin's hold (and, at a tight
//!   hop limit, never come). They are routed toward now, from the stored
//!   message.
//! - **Old** ([`Again::Flood`]): a copy that reaches a node which routed
//!   the message more than `ROUTE_FRESH_MS` after its creation left its
//!   sender after the origin's hold (or waited in an outbox): a recipient
//!   had not confirmed it, so a way failed somewhere. The origin's held-back
//!   copies flood only through nodes that lack the message; a node that
//!   routed it sends it on to its other targets too, once.
//!
//! Invariants: only the stored (signed) message is sent, only to peers the
//! forwarding policy lets it go to (`resend::queue_and_wake`, which also
//! applies its hop limit), only recipients its signed header names are
//! routed toward, and each recipient and the flood at most once per message
//! per node (`Routes::again`). The copy's own header and hint are not
//! trusted: a forged envelope reusing a held id can at most make this node
//! send the stored message on sooner, within policy.
use crate::domain::routes::{Again, Plan};
use crate::proto::v1::{EnvelopeHeader, LinkState};
use crate::service::node::Node;
use crate::service::resend::{Why, entitled_peers, queue_and_wake};
use prost::Message;

/// A later copy of held message `id`, from `sender`, with its hint.
#[derive(Debug, Clone)]
pub struct Later {
    pub id: String,
    pub sender: String,
    pub hint: Vec<String>,
}

/// Sends the messages of `later` on where their later copies showed they
/// are needed (see the module). `fresh_ms`: how long after its creation a
/// message is still routed (older copies flood).
pub async fn sent_again(node: &Node, later: Vec<Later>, fresh_ms: i64, now: i64) {
    if later.is_empty() {
        return;
    }
    let ids: Vec<String> = later.iter().map(|l| l.id.clone()).collect();
    let held = match node.store.get_messages(ids).await {
        Ok(h) => h,
        Err(e) => {
            node.metrics.storage_error(&e);
            return;
        }
    };
    for l in later {
        let Some(m) = held.iter().find(|m| m.message_id == l.id) else {
            continue;
        };
        let Ok(h) = EnvelopeHeader::decode(m.header.as_slice()) else {
            continue;
        };
        // Only the message's signed recipients.
        let hint: Vec<String> = l
            .hint
            .iter()
            .filter(|r| h.recipients.contains(r))
            .cloned()
            .collect();
        let old = now - m.created_ms >= fresh_ms;
        let path: Vec<String> = m.path.iter().map(|p| p.node.clone()).collect();
        // Where policy (and the hop limit) lets it go from here, never back
        // along its path (its origin included).
        let targets: Vec<String> = entitled_peers(node, &h, &path, h.hop_limit)
            .into_iter()
            .map(|p| p.id)
            .filter(|p| !path.contains(p))
            .collect();
        let again = node
            .routes
            .lock()
            .expect("routes lock")
            .again(&node.id, &l.id, &hint, old);
        let (peers, why) = match again {
            Again::Nothing => continue,
            Again::Flood(sent) => (
                targets
                    .into_iter()
                    .filter(|t| *t != l.sender && !sent.contains(t))
                    .collect::<Vec<_>>(),
                Why::Flooded,
            ),
            Again::Toward(recipients) => {
                let live: Vec<String> = targets
                    .iter()
                    .filter(|p| node.peers.status(p).state == LinkState::Up)
                    .cloned()
                    .collect();
                let way = if m.origin == node.id { 0 } else { path.len() };
                let mut routes = node.routes.lock().expect("routes lock");
                let sent = routes.sent_to(&l.id);
                let plan = routes.plan(
                    &node.id,
                    &recipients,
                    &targets,
                    &live,
                    &path,
                    h.hop_limit
                        .saturating_sub(u32::try_from(way).unwrap_or(u32::MAX)),
                );
                match plan {
                    // A way peer that had it from here already gets it
                    // again: its copy's hint now names these recipients
                    // too, and it routes toward them (as here).
                    Plan::Route { ways, .. } => {
                        routes.assign(&l.id, &ways);
                        routes.sent(&l.id, &ways);
                        let peers = crate::domain::routes::peers(&ways);
                        drop(routes);
                        (
                            peers.into_iter().filter(|p| *p != l.sender).collect(),
                            Why::Toward,
                        )
                    }
                    // No usable way to one of them: as the routing rule
                    // does, it floods from here.
                    Plan::Flood => {
                        routes.flooded(&l.id);
                        drop(routes);
                        (
                            targets
                                .into_iter()
                                .filter(|t| *t != l.sender && !sent.contains(t))
                                .collect(),
                            Why::Flooded,
                        )
                    }
                }
            }
        };
        let mut queued = Vec::new();
        for p in peers {
            let (n, _) = queue_and_wake(node, &p, std::slice::from_ref(&l.id), why, now).await;
            if n > 0 {
                node.metrics.named_sent_again.inc_by(n);
                queued.push(p);
            }
        }
        if !queued.is_empty() {
            tracing::info!(message_id = %l.id, peers = ?queued, flood = matches!(why, Why::Flooded), "a later copy of a message routed from here showed it is needed further: sent on");
        }
    }
}
