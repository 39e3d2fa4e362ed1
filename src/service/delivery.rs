//! Delivery and peers: per-recipient delivery state of a message (link-level
//! states merged with the receipts recipients sent back), the direct peers
//! with their link state, and what this node is. A delivery a peer deferred
//! shows DEFERRED with "deferred: reason; next try at ..." and `next_attempt`.
use crate::domain::envelope::ms_to_ts;
use crate::proto::v1::{
    DeliveryState, DeliveryStatus, EnvelopeHeader, NodeInfo, PairRole, PeerView, ReceiptState,
    RecipientDelivery,
};
use crate::service::limits::{PageBuilder, PageLimit};
use crate::service::node::Node;
use crate::service::pair::Role;
use crate::service::{ErrorKind, InvalidArgument, ServiceError, check_id};
use crate::storage::{DeliveryRow, ReceiptRow, StoreError};
use prost::Message;
use std::collections::HashMap;

/// Why a delivery or peer query failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Invalid(#[from] InvalidArgument),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl ServiceError for DeliveryError {
    fn kind(&self) -> ErrorKind {
        match self {
            DeliveryError::Invalid(_) => ErrorKind::InvalidArgument,
            DeliveryError::NotFound(_) => ErrorKind::NotFound,
            DeliveryError::Store(e) => e.kind(),
        }
    }
}

/// Per-node delivery state of a message: link-level states for direct peers,
/// overridden by receipts from recipients; a named recipient with neither is
/// RELAYED once some peer took the message, else QUEUED.
pub fn delivery_view(
    me: &str,
    recipients: &[String],
    links: Vec<DeliveryRow>,
    receipts: Vec<ReceiptRow>,
) -> Vec<RecipientDelivery> {
    use std::collections::BTreeMap;
    let mut out: BTreeMap<String, RecipientDelivery> = BTreeMap::new();
    let mut handed_on = false;
    for l in links {
        handed_on |= l.state == DeliveryState::Delivered as i32;
        out.insert(
            l.peer.clone(),
            RecipientDelivery {
                node_id: l.peer,
                state: l.state,
                reason: l.reason,
                updated: Some(ms_to_ts(l.updated_ms)),
                attempts: l.attempts,
                next_attempt: l
                    .next_attempt_ms
                    .filter(|_| l.state == DeliveryState::Deferred as i32)
                    .map(ms_to_ts),
            },
        );
    }
    for r in receipts {
        let state = match ReceiptState::try_from(r.state) {
            Ok(ReceiptState::Acknowledged) => DeliveryState::Acknowledged,
            Ok(ReceiptState::Rejected) => DeliveryState::Rejected,
            _ => DeliveryState::Delivered,
        };
        let attempts = out.get(&r.node).map(|d| d.attempts).unwrap_or(0);
        out.insert(
            r.node.clone(),
            RecipientDelivery {
                node_id: r.node,
                state: state as i32,
                reason: r.reason,
                updated: Some(ms_to_ts(r.at_ms)),
                attempts,
                next_attempt: None,
            },
        );
    }
    for rcpt in recipients.iter().filter(|r| r.as_str() != me) {
        out.entry(rcpt.clone())
            .or_insert_with(|| RecipientDelivery {
                node_id: rcpt.clone(),
                state: if handed_on {
                    DeliveryState::Relayed
                } else {
                    DeliveryState::Queued
                } as i32,
                reason: String::new(),
                updated: None,
                attempts: 0,
                next_attempt: None,
            });
    }
    out.into_values().collect()
}

/// Per-recipient delivery state of a message this node holds.
pub async fn status(node: &Node, message_id: &str) -> Result<DeliveryStatus, DeliveryError> {
    check_id("message_id", message_id, "message id")?;
    let store = &node.store;
    let Some(m) = store.get_message(message_id).await? else {
        return Err(DeliveryError::NotFound(format!(
            "no message {message_id} on this node"
        )));
    };
    let links = store.delivery(message_id).await?;
    let receipts = store.receipts(message_id).await?;
    let header = EnvelopeHeader::decode(m.header.as_slice()).unwrap_or_default();
    Ok(DeliveryStatus {
        message_id: message_id.to_string(),
        recipients: delivery_view(&node.id, &header.recipients, links, receipts),
    })
}

/// The configured peers from position `start`, within `limit` (count and
/// size), with their link state and outbox depth; and the total number of peers.
pub async fn peers(
    node: &Node,
    start: usize,
    limit: PageLimit,
) -> Result<(Vec<PeerView>, usize), DeliveryError> {
    let depths: HashMap<String, u64> = node.store.outbox_depths().await?.into_iter().collect();
    let all = node.peers.list();
    let mine = node.roster_version();
    let mut page = PageBuilder::new(limit);
    let views = all.iter().skip(start).map(|p| {
        let st = node.peers.status(&p.id);
        PeerView {
            peer_id: p.id.clone(),
            endpoint: p
                .endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            state: st.state as i32,
            last_contact: st.last_contact_ms.map(ms_to_ts),
            outbox_depth: depths.get(&p.id).copied().unwrap_or(0),
            last_error: st.last_error.clone(),
            max_tlp: p.max_tlp as i32,
            roster_version: st.peer_roster_version.unwrap_or(0),
            roster_behind: mine > 0 && st.peer_roster_version.is_some_and(|v| v < mine),
            attachment_fetches_abandoned: node
                .metrics
                .attachment_fetches_abandoned
                .get_or_create(&crate::service::metrics::PeerLabel { peer: p.id.clone() })
                .get(),
            last_reconcile: node.reconcile.last(&p.id),
        }
    });
    for v in views {
        if !page.push(v) {
            break;
        }
    }
    Ok((page.into_items(), all.len()))
}

/// What this node is: identity, version, peers, members, size.
pub async fn node_info(node: &Node) -> Result<NodeInfo, DeliveryError> {
    let stored = node.store.message_count().await?;
    let role = node.pair.role();
    Ok(NodeInfo {
        node_id: node.id.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        listen: node.listen.to_string(),
        signing_key_id: node.signer().key_id.clone(),
        next_signing_key_id: node.next_signing_key_id().unwrap_or_default(),
        peers: node.peers.ids(),
        members: node.keys().members().to_vec(),
        started: Some(ms_to_ts(node.started_ms)),
        stored_messages: stored,
        storage_backend: node.pair.backend.to_string(),
        role: match role {
            Role::Single => PairRole::Single,
            Role::Active { .. } => PairRole::Active,
            Role::Standby { .. } | Role::Lost(_) => PairRole::Standby,
        } as i32,
        lease_epoch: role.epoch(),
        member: node.pair.member.clone(),
        other_member: node.pair.other().unwrap_or_default(),
        active_member: match &role {
            Role::Single | Role::Lost(_) => String::new(),
            Role::Active { .. } => node.pair.member.clone(),
            Role::Standby { active, .. } => active.clone().unwrap_or_default(),
        },
        roster_version: node.roster_version(),
        roster_expires: node
            .roster()
            .and_then(|a| a.current().and_then(|c| c.doc.roster.expires)),
        reconcile_window_days: node.cfg.reconcile.window_days,
        reconcile_interval_secs: node.cfg.reconcile.interval_secs,
        max_attachment_bytes: node.cfg.limits.max_attachment_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(peer: &str, state: DeliveryState) -> DeliveryRow {
        DeliveryRow {
            peer: peer.into(),
            state: state as i32,
            reason: String::new(),
            attempts: 2,
            updated_ms: 10,
            next_attempt_ms: None,
        }
    }

    #[test]
    fn receipts_override_links_and_unseen_recipients_show_relayed_or_queued() {
        let to = vec![
            "node-b".to_string(),
            "node-c".to_string(),
            "node-d".to_string(),
        ];
        let receipts = vec![ReceiptRow {
            node: "node-b".into(),
            state: ReceiptState::Acknowledged as i32,
            reason: String::new(),
            at_ms: 20,
        }];
        let v = delivery_view(
            "node-a",
            &to,
            vec![link("node-b", DeliveryState::Delivered)],
            receipts,
        );
        let state = |n: &str| {
            let d = v.iter().find(|d| d.node_id == n).unwrap();
            (DeliveryState::try_from(d.state).unwrap(), d.attempts)
        };
        assert_eq!(state("node-b"), (DeliveryState::Acknowledged, 2));
        assert_eq!(state("node-c").0, DeliveryState::Relayed);
        assert_eq!(state("node-d").0, DeliveryState::Relayed);
        let v = delivery_view(
            "node-a",
            &to,
            vec![link("node-b", DeliveryState::Queued)],
            vec![],
        );
        assert!(
            v.iter()
                .filter(|d| d.node_id != "node-b")
                .all(|d| d.state == DeliveryState::Queued as i32),
            "nothing handed on yet"
        );
        assert!(
            v.iter().all(|d| d.node_id != "node-a"),
            "the origin is not a recipient of itself"
        );
    }
}
