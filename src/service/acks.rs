//! Recording a peer's acknowledgements off the link's hot path: the link task
//! hands each batch of outcomes (delivered, rejected, deferred) to a recorder
//! task of its session and goes on sending at once, instead of waiting for
//! the store to commit them (a commit waits for the fsync of whatever durable
//! write shares it); a message stored meanwhile waited for that commit
//! before the link read and sent it.
//!
//! Invariants:
//! - Batches are recorded in the order the link handed them over; merging
//!   consecutive batches never moves a deferral before an outcome handed
//!   over earlier, nor an outcome before a deferral handed over earlier (a
//!   message deferred, offered again and accepted ends delivered).
//! - Nothing is lost by not waiting: outcomes were already lazy (they become
//!   durable with the next durable commit; one lost to a crash is sent again
//!   and answered DUPLICATE). When the session ends, what was handed over is
//!   still recorded; a storage failure is reported once to the link, which
//!   ends the session as before.
//! - The queue is bounded ([`QUEUE`] batches): a store that falls behind
//!   slows the link down instead of growing memory.
use crate::service::node::Node;
use crate::storage::{Deferral, Outcome, StoreError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Batches of acknowledgements waiting to be recorded, per session.
pub const QUEUE: usize = 64;

/// One batch of acknowledgements to record (`now_ms`: when they arrived).
#[derive(Debug, Clone)]
pub struct Acked {
    pub outcomes: Vec<Outcome>,
    pub deferrals: Vec<Deferral>,
    pub now_ms: i64,
}

/// The recorder of one session: [`Recorder::send`] hands a batch over;
/// [`Recorder::failed`] resolves with the first storage failure.
pub struct Recorder {
    tx: mpsc::Sender<Acked>,
    failed: oneshot::Receiver<StoreError>,
}

impl Recorder {
    /// Starts the recorder task for the session with `peer`; it ends once
    /// the recorder is dropped and everything handed over is recorded.
    pub fn start(node: Arc<Node>, peer: String) -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (fail_tx, failed) = oneshot::channel();
        tokio::spawn(run(node, peer, rx, fail_tx));
        Recorder { tx, failed }
    }

    /// Hands a batch over (waits only when [`QUEUE`] batches are pending).
    pub async fn send(&self, acked: Acked) -> Result<(), StoreError> {
        if acked.outcomes.is_empty() && acked.deferrals.is_empty() {
            return Ok(());
        }
        self.tx.send(acked).await.map_err(|_| StoreError::Closed)
    }

    /// Resolves with the first failure to record (pending forever if none).
    pub async fn failed(&mut self) -> StoreError {
        match (&mut self.failed).await {
            Ok(e) => e,
            Err(_) => std::future::pending().await,
        }
    }
}

async fn run(
    node: Arc<Node>,
    peer: String,
    mut rx: mpsc::Receiver<Acked>,
    failed: oneshot::Sender<StoreError>,
) {
    while let Some(first) = rx.recv().await {
        let mut pending = vec![first];
        while pending.len() < QUEUE {
            match rx.try_recv() {
                Ok(a) => pending.push(a),
                Err(_) => break,
            }
        }
        for a in merge(pending) {
            if let Err(e) = record(&node, &peer, a).await {
                let _ = failed.send(e);
                return;
            }
        }
    }
}

async fn record(node: &Node, peer: &str, a: Acked) -> Result<(), StoreError> {
    if !a.outcomes.is_empty() {
        node.store
            .complete_outbox(peer, a.outcomes, a.now_ms)
            .await?;
    }
    if !a.deferrals.is_empty() {
        node.store.defer_outbox(peer, a.deferrals, a.now_ms).await?;
    }
    Ok(())
}

/// Folds consecutive batches into as few writes as keep their order: the
/// outcomes of batches up to and including one with deferrals go together,
/// then those deferrals (each merged batch is recorded outcomes first, as a
/// single batch is).
pub fn merge(batches: Vec<Acked>) -> Vec<Acked> {
    let mut out: Vec<Acked> = Vec::new();
    let mut open = false;
    for b in batches {
        match out.last_mut() {
            Some(last) if open => {
                last.outcomes.extend(b.outcomes);
                last.deferrals = b.deferrals;
                last.now_ms = last.now_ms.max(b.now_ms);
            }
            _ => out.push(b),
        }
        open = out.last().is_some_and(|l| l.deferrals.is_empty());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::DeliveryState;

    fn done(c: u64) -> Outcome {
        Outcome {
            cursor: c,
            state: DeliveryState::Delivered,
            reason: String::new(),
        }
    }

    fn later(c: u64) -> Deferral {
        Deferral {
            cursor: c,
            reason: "deferred".into(),
            next_attempt_ms: 1,
        }
    }

    fn acked(o: &[u64], d: &[u64], now_ms: i64) -> Acked {
        Acked {
            outcomes: o.iter().copied().map(done).collect(),
            deferrals: d.iter().copied().map(later).collect(),
            now_ms,
        }
    }

    /// (cursors of outcomes, cursors of deferrals, now) per write.
    type Shape = Vec<(Vec<u64>, Vec<u64>, i64)>;

    fn shape(m: Vec<Acked>) -> Shape {
        m.into_iter()
            .map(|a| {
                (
                    a.outcomes.iter().map(|o| o.cursor).collect(),
                    a.deferrals.iter().map(|d| d.cursor).collect(),
                    a.now_ms,
                )
            })
            .collect()
    }

    #[test]
    fn outcomes_fold_into_one_write() {
        let m = merge(vec![acked(&[1, 2], &[], 5), acked(&[3], &[], 7)]);
        assert_eq!(shape(m), vec![(vec![1, 2, 3], vec![], 7)]);
    }

    #[test]
    fn a_deferral_is_never_recorded_before_what_came_before_it_nor_after_what_came_later() {
        // 4 deferred, then offered again and accepted: it must end delivered,
        // so the deferral of 4 is written before its outcome.
        let m = merge(vec![
            acked(&[1], &[], 1),
            acked(&[2], &[4], 2),
            acked(&[4], &[], 3),
            acked(&[5], &[6], 4),
        ]);
        assert_eq!(
            shape(m),
            vec![(vec![1, 2], vec![4], 2), (vec![4, 5], vec![6], 4)]
        );
    }

    #[test]
    fn nothing_to_merge() {
        assert!(merge(Vec::new()).is_empty());
    }
}
