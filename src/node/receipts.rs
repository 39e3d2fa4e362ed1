//! Receipts: a recipient tells the origin what became of its messages
//! (delivered, acknowledged by an operator, rejected by policy). Jobs are queued
//! by ingest and by AcknowledgeMessage, aggregated (one receipt covers up to
//! `MAX_RECEIPT_IDS` messages of one origin), signed and sent like any other
//! message, addressed to the origin only, over a 50 ms aggregation window.
//! Receipts are best-effort and committed without their own fsync: a receipt
//! lost to a crash or power failure leaves the origin showing the message as
//! relayed rather than delivered.
use super::NodeCtx;
use super::ingest::{MAX_RECEIPT_IDS, Outgoing, originate};
use crate::proto::v1::{MessageKind, Receipt, ReceiptState, Tlp};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// How long the receipt task gathers jobs before signing receipts.
const AGGREGATION_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

/// One fact to report to an origin.
#[derive(Debug, Clone)]
pub struct ReceiptJob {
    pub origin: String,
    pub message_id: String,
    pub state: ReceiptState,
    pub reason: String,
}

/// Queue of receipt jobs (bounded: under overload receipts are dropped, and
/// counted in the log, before messages ever are).
#[derive(Clone)]
pub struct ReceiptQueue(mpsc::Sender<ReceiptJob>);

impl ReceiptQueue {
    pub fn new() -> (ReceiptQueue, mpsc::Receiver<ReceiptJob>) {
        let (tx, rx) = mpsc::channel(65_536);
        (ReceiptQueue(tx), rx)
    }
    pub fn push(&self, job: ReceiptJob) {
        if self.0.try_send(job).is_err() {
            tracing::warn!("receipt queue full or closed; a receipt was dropped");
        }
    }
}

/// Signs and sends queued receipts until the queue closes or the node stops.
pub async fn run(ctx: Arc<NodeCtx>, mut rx: mpsc::Receiver<ReceiptJob>) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let first = tokio::select! {
            j = rx.recv() => j,
            _ = super::stopped(&mut shutdown) => None,
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
        for ((origin, state, reason), ids) in groups {
            for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                let receipt = Receipt {
                    message_ids: chunk.to_vec(),
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
                if let Err(e) = originate(&ctx, out).await {
                    tracing::warn!(%origin, error = %e, "cannot send a receipt");
                }
            }
        }
    }
}
