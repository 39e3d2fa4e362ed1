//! Receipts: a recipient tells the origin what became of its messages
//! (delivered, acknowledged by an operator, rejected by policy). Ingest and
//! AcknowledgeMessage queue what is owed (`node::ReceiptQueue`); this task
//! aggregates it (one receipt covers up to `MAX_RECEIPT_IDS` messages of one
//! origin), signs and sends it like any other message, addressed to the origin
//! only, over a 250 ms aggregation window. Receipts are best-effort and
//! committed without their own fsync: a receipt lost to a crash or power
//! failure leaves the origin showing the message as relayed, not delivered.
use crate::domain::admission::{MAX_RECEIPT_IDS, ReceiptOwed};
use crate::proto::v1::{MessageKind, Receipt, Tlp};
use crate::service::ingest::{Outgoing, originate};
use crate::service::node::Node;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// How long the receipt task gathers jobs before signing receipts (one
/// receipt covers what arrived from one origin meanwhile).
const AGGREGATION_WINDOW: std::time::Duration = std::time::Duration::from_millis(250);

/// Signs and sends queued receipts until the queue closes or the node stops.
pub async fn run(node: Arc<Node>, mut rx: mpsc::Receiver<ReceiptOwed>) {
    loop {
        let first = tokio::select! {
            j = rx.recv() => j,
            _ = node.shutdown.cancelled() => None,
        };
        let Some(first) = first else { break };
        // Gather for a moment so that one receipt covers many messages.
        tokio::time::sleep(AGGREGATION_WINDOW).await;
        let mut jobs = vec![first];
        while jobs.len() < 16 * MAX_RECEIPT_IDS {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // (origin, state, reason) -> message ids
        let mut groups: BTreeMap<(String, i32, String), Vec<String>> = BTreeMap::new();
        for j in jobs {
            groups
                .entry((j.origin, j.state as i32, j.reason))
                .or_default()
                .push(j.message_id);
        }
        for ((origin, state, reason), mut ids) in groups {
            while !ids.is_empty() {
                // The ids move into their receipt (no copy of each).
                let rest = ids.split_off(ids.len().min(MAX_RECEIPT_IDS));
                let receipt = Receipt {
                    message_ids: std::mem::replace(&mut ids, rest),
                    state,
                    reason: reason.clone(),
                };
                let out = Outgoing {
                    kind: MessageKind::Receipt,
                    tlp: Tlp::Green,
                    recipients: vec![origin.clone()],
                    expires_ms: None,
                    exercise: false,
                    created_ms: None,
                    payload: receipt.encode_to_vec(),
                };
                if let Err(e) = originate(&node, out).await {
                    tracing::warn!(%origin, error = %e, "cannot send a receipt");
                }
            }
        }
    }
}
