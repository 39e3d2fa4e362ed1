//! Retention: messages are kept `storage.retention_days` after their creation
//! time (per TLP where `storage.retention_days_by_tlp` says so), then purged
//! with their outbox, delivery and receipt rows, and so are rejection audit
//! rows older than `storage.retention_days`.
//!
//! Invariants:
//! - An assistance thread is kept whole while its request is open (replayed
//!   with `domain::assistance::replay`, not terminal per `is_terminal`), and
//!   while any of its messages is younger than the cutoff; a closed, old
//!   thread goes as a whole.
//! - The purge never holds the store's writer for long: it deletes at most
//!   [`BATCH`] messages per unit of work, each queued behind whatever the
//!   writer already has (ingest keeps flowing), with a pause between units.
//! - A purged message cannot come back: `limits.max_message_age_days` is at
//!   most every retention (checked by the configuration), and ingest refuses
//!   anything older (`Rejection::TooOld`).
//!
//! Nothing here starts a task: the application runs [`run`].
use crate::domain::assistance::{SignedStep, is_terminal, replay};
use crate::proto::v1::Tlp;
use crate::service::assistance::to_step;
use crate::service::node::Node;
use crate::service::now_ms;
use crate::storage::{PurgePlan, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// Most messages deleted by one unit of work on the writer.
pub const BATCH: usize = 500;
/// Pause between two units of work of one pass.
pub const PAUSE: Duration = Duration::from_millis(10);
/// Time between passes.
pub const EVERY: Duration = Duration::from_secs(3600);
/// Time from start to the first pass (the node settles first).
pub const FIRST_AFTER: Duration = Duration::from_secs(60);

/// Every TLP a stored message can carry.
const TLPS: [Tlp; 6] = [
    Tlp::Unspecified,
    Tlp::Clear,
    Tlp::Green,
    Tlp::Amber,
    Tlp::AmberStrict,
    Tlp::Red,
];

/// What one pass deleted and kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Messages deleted, with their outbox, delivery and receipt rows.
    pub messages: u64,
    /// Rejection audit rows deleted.
    pub rejections: u64,
    /// Assistance threads past the cutoff kept (open, or with a recent step).
    pub threads_kept: u64,
    /// Units of work run on the writer.
    pub batches: u64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The plan of a pass at `now`: cutoffs per TLP, the threads to keep.
pub async fn plan(node: &Node, now: i64) -> Result<(PurgePlan, u64), StoreError> {
    let st = &node.cfg.storage;
    let cutoffs: Vec<(i32, i64)> = TLPS
        .iter()
        .map(|t| (*t as i32, now.saturating_sub(ms(st.retention_for(*t)))))
        .collect();
    let mut plan = PurgePlan {
        cutoffs,
        keep_requests: Vec::new(),
        rejections_before_ms: now
            .saturating_sub(i64::from(st.retention_days).saturating_mul(86_400_000)),
        limit: BATCH,
    };
    let candidates = node
        .store
        .requests_created_before(plan.latest_cutoff())
        .await?;
    for request_id in candidates {
        let thread = node.store.thread(&request_id).await?;
        let steps: Vec<SignedStep> = thread.iter().filter_map(to_step).collect();
        // A thread without its request has no state: it ages like any message.
        let open = replay(&request_id, &steps).is_some_and(|a| !is_terminal(a.state));
        let recent = thread.iter().any(|m| {
            plan.cutoff(m.tlp)
                .is_none_or(|cutoff| m.created_ms >= cutoff)
        });
        if open || recent {
            plan.keep_requests.push(request_id);
        }
    }
    let kept = plan.keep_requests.len() as u64;
    Ok((plan, kept))
}

/// Runs one retention pass at `now`: small units of work until nothing old is
/// left (or the node stops).
pub async fn purge_once(node: &Node, now: i64) -> Result<PassReport, StoreError> {
    let (plan, threads_kept) = plan(node, now).await?;
    let mut report = PassReport {
        threads_kept,
        ..PassReport::default()
    };
    loop {
        let done = node.store.purge(plan.clone()).await?;
        report.batches += 1;
        report.messages += done.messages;
        report.rejections += done.rejections;
        let more = done.messages as usize >= plan.limit || done.rejections as usize >= plan.limit;
        if !more || node.shutdown.is_cancelled() {
            return Ok(report);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// The background purge: a pass [`FIRST_AFTER`] the start, then every
/// [`EVERY`], until the node stops. Failures are logged and retried at the
/// next pass.
pub async fn run(node: Arc<Node>) {
    let mut wait = FIRST_AFTER;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = node.shutdown.cancelled() => return,
        }
        wait = EVERY;
        let started = std::time::Instant::now();
        match purge_once(&node, now_ms()).await {
            Ok(r) if r.messages > 0 || r.rejections > 0 => tracing::info!(
                messages = r.messages,
                rejections = r.rejections,
                threads_kept = r.threads_kept,
                seconds = started.elapsed().as_secs_f64(),
                "retention: purged messages older than storage.retention_days"
            ),
            Ok(_) => tracing::debug!("retention: nothing to purge"),
            Err(e) => {
                tracing::error!(error = %e, "retention: purge failed; retrying at the next pass")
            }
        }
    }
}
