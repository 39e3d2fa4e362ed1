//! Per-peer reconciliation state kept by the node (`Node::reconcile`): the
//! lock that lets one exchange this node starts run per peer, the
//! responder's per-minute round count and in-flight flag, the link-up and
//! requeue signals, the time before which the peer's refusals are forgotten,
//! and the last exchange's result for ListPeers. The
//! protocol itself runs in `service::reconcile`; this file holds only state,
//! so that the node and its links can own it without importing the protocol.
//!
//! Invariants: an entry per peer is created on first use and never removed
//! (one small entry per configured peer, ever); every lock is held only for
//! a copy or an update, never across an await (except `running`, a tokio
//! mutex held for one exchange).
use crate::proto::v1::ReconcileView;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Per-peer state: the exchange lock, the responder's rate limit and
/// in-flight flag, the link-up signal, the requeue signal and the last result.
#[derive(Default)]
pub struct Reconciler {
    peers: Mutex<HashMap<String, Arc<PeerState>>>,
}

#[derive(Default)]
pub struct PeerState {
    /// One exchange started by this node at a time.
    pub(crate) running: tokio::sync::Mutex<()>,
    /// The responder's window: (minute start, rounds in it, a round running).
    pub(crate) limit: Mutex<(Option<Instant>, u32, bool)>,
    /// The link came up: reconcile now.
    pub(crate) link_up: Notify,
    /// Entries were queued again: the link sweeps its due entries.
    pub(crate) requeued: Arc<Notify>,
    pub(crate) last: Mutex<Option<ReconcileView>>,
    /// Buckets found too large to compare with the peer (logged and
    /// counted once each; at most one per bucket of the window).
    pub(crate) too_large: Mutex<std::collections::BTreeSet<i64>>,
    /// Refusals by the peer recorded before this time (unix ms) are
    /// forgotten: what it refused is offered again.
    refusals_forgotten_ms: AtomicI64,
}

impl Reconciler {
    pub(crate) fn state(&self, peer: &str) -> Arc<PeerState> {
        self.peers
            .lock()
            .expect("reconcile lock")
            .entry(peer.to_string())
            .or_default()
            .clone()
    }

    /// The link to `peer` is up.
    pub fn link_up(&self, peer: &str) {
        self.state(peer).link_up.notify_one();
    }

    /// The signal that entries were queued again for `peer`.
    pub fn requeued(&self, peer: &str) -> Arc<Notify> {
        self.state(peer).requeued.clone()
    }

    /// Forgets `peer`'s refusals recorded before `now_ms`: the next exchange
    /// offers again what it refused (its cause may have been fixed).
    pub fn forget_refusals(&self, peer: &str, now_ms: i64) {
        self.state(peer)
            .refusals_forgotten_ms
            .fetch_max(now_ms, Ordering::Relaxed);
    }

    /// The earliest refusal by `peer` still remembered at `now_ms`, for a
    /// memory of `memory_ms`: the later of `now_ms - memory_ms` and the
    /// last [`Reconciler::forget_refusals`].
    pub fn refusals_since(&self, peer: &str, now_ms: i64, memory_ms: i64) -> i64 {
        now_ms.saturating_sub(memory_ms).max(
            self.state(peer)
                .refusals_forgotten_ms
                .load(Ordering::Relaxed),
        )
    }

    /// The last exchange with `peer`, if any.
    pub fn last(&self, peer: &str) -> Option<ReconcileView> {
        self.state(peer)
            .last
            .lock()
            .expect("reconcile lock")
            .clone()
    }

    pub(crate) fn record(&self, peer: &str, v: ReconcileView) {
        *self.state(peer).last.lock().expect("reconcile lock") = Some(v);
    }
}
