//! Queueing held messages for a peer again, outside the normal flow:
//! reconciliation, Plumtree grafts, requests for a shorter copy
//! (`service::gossip`) and later copies of routed messages
//! (`service::named_again`).
//!
//! Invariants: a message goes again only to a peer the forwarding policy
//! lets it go to (`domain::admission::entitled`, with its signed hop
//! limit), only if created within the window asked and not expired, and
//! only if this node still holds its payload (a relay's ciphertext is
//! emptied `storage.relay_keep_secs` after its peers have it); when this
//! node never forwarded it, its own hop record is appended, its decision
//! saying why ([`Why`]). Queueing is lazy (`Storage::requeue`).
use crate::domain::admission::{Peer, entitled};
use crate::domain::custody::sign_hop;
use crate::domain::envelope::{checked_ts_to_ms, ms_to_ts};
use crate::domain::hop_limit::stopped_for_graft;
use crate::proto::v1::{EnvelopeHeader, HopChain, HopRecord, Tlp};
use crate::service::node::Node;
use crate::service::now_ms;
use crate::storage::{Requeue, StoreError};
use prost::Message;

/// Why a held message is queued for a peer again (the hop record says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Reconciliation found the peer lacks it.
    Reconciled,
    /// The peer asked for it (a Plumtree graft, `service::gossip`).
    Grafted,
    /// The peer asked for a copy over fewer links than its own, which the
    /// hop limit stopped (`domain::hop_limit`).
    Shorter,
    /// A later copy of a message routed from here named recipients whose
    /// way goes through the peer (`service::named_again`).
    Toward,
    /// A later copy of a message routed from here left its sender after the
    /// origin's hold: a recipient had not confirmed it (`service::named_again`).
    Flooded,
}

/// The peers the forwarding policy lets message `h`, held over `path` (its
/// origin first), go to from here within `hop_limit` links (`u32::MAX`:
/// whatever its signed limit).
pub fn entitled_peers(
    node: &Node,
    h: &EnvelopeHeader,
    path: &[String],
    hop_limit: u32,
) -> Vec<Peer> {
    let tlp = Tlp::try_from(h.tlp).unwrap_or(Tlp::Unspecified);
    node.peers
        .policies()
        .into_iter()
        .filter(|p| {
            entitled(
                &node.id,
                p,
                &h.origin,
                tlp,
                &h.recipients,
                path,
                hop_limit,
                h.encrypted,
            )
            .is_ok()
        })
        .collect()
}

/// Queues for `peer` those of the held messages `ids` that it is entitled
/// to (`domain::admission::entitled`: the forwarding policy), created at or
/// after `since` and not expired; returns (queued, refused). Ids not held
/// are skipped. The caller wakes the link.
async fn queue_entitled(
    node: &Node,
    peer: &str,
    since: i64,
    ids: &[String],
    why: Why,
) -> Result<(u64, u64), StoreError> {
    let e = entitled_requeues(node, peer, since, ids, why).await?;
    if e.requeue.is_empty() {
        return Ok((0, e.refused));
    }
    Ok((
        node.store.requeue(peer, e.requeue, now_ms()).await?,
        e.refused,
    ))
}

/// [`queue_entitled`] within the reconciliation window (at least a day:
/// older history is reconciliation's), then wakes `peer`'s link if anything
/// was queued. Returns (queued, refused); a store failure is counted and
/// queues nothing.
pub async fn queue_and_wake(
    node: &Node,
    peer: &str,
    ids: &[String],
    why: Why,
    now: i64,
) -> (u64, u64) {
    match queue_entitled(node, peer, window_start(node, now), ids, why).await {
        Ok((queued, refused)) => {
            if queued > 0 {
                node.reconcile.requeued(peer).notify_one();
                node.peers.wake(peer);
            }
            (queued, refused)
        }
        Err(e) => {
            node.metrics.storage_error(&e);
            (0, 0)
        }
    }
}

/// What [`entitled_requeues`] found for a peer.
#[derive(Debug, Default)]
pub(crate) struct Entitled {
    /// The outbox entries of what may go to the peer (in cursor order).
    pub requeue: Vec<Requeue>,
    /// Held messages the peer is not entitled to (counted).
    pub refused: u64,
    /// Of those, the ones only their signed hop limit keeps from the peer,
    /// held here at the limit (`domain::hop_limit::stopped_for_graft`),
    /// each with the links it crossed to reach this node: a copy over a
    /// shorter way would go on to the peer.
    pub at_limit: Vec<(String, usize)>,
}

/// The outbox entries for `peer` of the messages of `ids` this node holds
/// and `peer` is entitled to (in cursor order), with how many it is not
/// entitled to and which of those only the hop limit keeps from it.
pub(crate) async fn entitled_requeues(
    node: &Node,
    peer: &str,
    since: i64,
    ids: &[String],
    why: Why,
) -> Result<Entitled, StoreError> {
    let Some(policy) = node.peers.policies().into_iter().find(|p| p.id == peer) else {
        return Ok(Entitled {
            refused: ids.len() as u64,
            ..Entitled::default()
        });
    };
    let now = now_ms();
    let mut out = Entitled {
        requeue: Vec::with_capacity(ids.len()),
        ..Entitled::default()
    };
    // One read for the batch (not one per message).
    let mut held = node.store.get_messages(ids.to_vec()).await?;
    held.sort_by_key(|m| m.cursor);
    for m in held {
        match allowed(node, &policy, &m, since, now, None) {
            Ok(h) => match own_record(node, &policy, &m, &h, why) {
                Ok(hops) => out.requeue.push(Requeue {
                    message_id: m.message_id,
                    hops,
                    replaces_stored: None,
                }),
                Err(why) => {
                    out.refused += 1;
                    tracing::debug!(%peer, message_id = %m.message_id, %why, "not sent to the peer");
                }
            },
            Err(why) => {
                out.refused += 1;
                tracing::debug!(%peer, message_id = %m.message_id, %why, "not sent to the peer");
                if let Some(len) = only_the_limit(node, &policy, &m, since, now) {
                    out.at_limit.push((m.message_id, len));
                }
            }
        }
    }
    Ok(out)
}

/// Of the held messages `ids`, those only their signed hop limit keeps from
/// `peer` (see [`Entitled::at_limit`]), created within the reconciliation
/// window (at least a day) and not expired, each with the links it crossed to
/// reach this node.
pub(crate) async fn held_at_limit_for(
    node: &Node,
    peer: &str,
    ids: Vec<String>,
) -> Result<Vec<(String, usize)>, StoreError> {
    let Some(policy) = node.peers.policies().into_iter().find(|p| p.id == peer) else {
        return Ok(Vec::new());
    };
    let now = now_ms();
    let since = window_start(node, now);
    let held = node.store.get_messages(ids).await?;
    Ok(held
        .into_iter()
        .filter(|m| allowed(node, &policy, m, since, now, None).is_err())
        .filter_map(|m| {
            Some((
                m.message_id.clone(),
                only_the_limit(node, &policy, &m, since, now)?,
            ))
        })
        .collect())
}

/// For message `m`, which may not go to `peer`: the links it crossed to reach
/// this node if it would but for its signed hop limit and is held here at
/// that limit (`domain::hop_limit::stopped_for_graft`: not a receipt, the
/// peer not on its path).
fn only_the_limit(
    node: &Node,
    peer: &Peer,
    m: &crate::storage::StoredMessage,
    since: i64,
    now: i64,
) -> Option<usize> {
    let h = allowed(node, peer, m, since, now, Some(u32::MAX)).ok()?;
    at_limit_for(node, m, &h, &peer.id)
}

/// The links held message `m` (header `h`) crossed to reach this node, if it
/// is held here at its signed hop limit for `peer`
/// (`domain::hop_limit::stopped_for_graft`: not a receipt, the peer not on
/// its path).
pub(crate) fn at_limit_for(
    node: &Node,
    m: &crate::storage::StoredMessage,
    h: &EnvelopeHeader,
    peer: &str,
) -> Option<usize> {
    let len = held_over(node, m);
    let receipt = h.kind == crate::proto::v1::MessageKind::Receipt as i32;
    let carried = m.path.iter().any(|p| p.node == peer);
    stopped_for_graft(len, h.hop_limit, receipt, carried).map(|_| len)
}

/// The oldest creation time sent again on request at `now`: the
/// reconciliation window, at least a day (older history is reconciliation's).
fn window_start(node: &Node, now: i64) -> i64 {
    now - i64::from(node.cfg.reconcile.window_days.max(1)) * 86_400_000
}

/// Links held message `m` crossed to reach this node (0: its origin).
pub(crate) fn held_over(node: &Node, m: &crate::storage::StoredMessage) -> usize {
    if m.origin == node.id { 0 } else { m.path.len() }
}

/// Whether message `m` may go to `peer` now (under `hop_limit` instead of
/// its signed one if given); its header if so.
fn allowed(
    node: &Node,
    peer: &Peer,
    m: &crate::storage::StoredMessage,
    since: i64,
    now: i64,
    hop_limit: Option<u32>,
) -> Result<EnvelopeHeader, String> {
    if m.created_ms < since {
        return Err("created before the reconcile window".into());
    }
    if m.payload.is_empty() {
        return Err("relayed ciphertext already dropped".into());
    }
    let h = EnvelopeHeader::decode(m.header.as_slice()).map_err(|e| e.to_string())?;
    if h.expires
        .as_ref()
        .and_then(checked_ts_to_ms)
        .is_some_and(|e| e <= now)
    {
        return Err("expired".into());
    }
    let tlp = Tlp::try_from(h.tlp).unwrap_or(Tlp::Unspecified);
    let path: Vec<String> = m.path.iter().map(|p| p.node.clone()).collect();
    entitled(
        &node.id,
        peer,
        &h.origin,
        tlp,
        &h.recipients,
        &path,
        hop_limit.unwrap_or(h.hop_limit),
        h.encrypted,
    )?;
    Ok(h)
}

/// The new chain of custody of message `m` (header `h`) to store first for
/// `peer` when this node never forwarded it (its own record appended).
fn own_record(
    node: &Node,
    peer: &Peer,
    m: &crate::storage::StoredMessage,
    h: &EnvelopeHeader,
    why: Why,
) -> Result<Option<Vec<u8>>, String> {
    if h.origin == node.id {
        return Ok(None);
    }
    // The chain must end with this node: append its record if it never
    // forwarded the message (and so never signed one).
    let mut chain = HopChain::decode(m.hops.as_deref().unwrap_or_default())
        .map_err(|e| format!("stored chain of custody does not decode: {e}"))?;
    let last = chain
        .hops
        .last()
        .and_then(|h| HopRecord::decode(h.record.as_slice()).ok());
    if last.as_ref().is_some_and(|r| r.relay == node.id) {
        return Ok(None);
    }
    let received_from = last.map_or_else(|| h.origin.clone(), |r| r.relay);
    chain.hops.push(sign_hop(
        &node.signer(),
        HopRecord {
            message_id: h.message_id.clone(),
            received_from,
            received_at: Some(ms_to_ts(m.received_ms)),
            forwarded_to: vec![peer.id.clone()],
            decision: match why {
                Why::Reconciled => format!("sent again by reconciliation: {} lacked it", peer.id),
                Why::Grafted => format!("sent on request: {} asked for it (graft)", peer.id),
                Why::Shorter => format!(
                    "sent on request: {} asked for a copy over fewer links (hop limit)",
                    peer.id
                ),
                Why::Toward => format!(
                    "sent on toward named recipients: a later copy routed them through {}",
                    peer.id
                ),
                Why::Flooded => format!(
                    "sent on to {}: a later copy showed a recipient had not confirmed it after the origin's hold",
                    peer.id
                ),
            },
            ..Default::default()
        },
    ));
    Ok(Some(chain.encode_to_vec()))
}
