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
//! - A purged message's attachment files go with it: after a pass that
//!   purged messages, the folders under `storage.dir/attachments/` of
//!   messages no longer held are removed ([`sweep_attachments`]), except
//!   unfinished uploads (`.upload-*`) and folders changed within
//!   [`ATTACHMENT_GRACE`] (an upload's folder takes its message id just
//!   before the message is stored).
//! - Relayed ciphertext (a message this node cannot read, passed on for
//!   other members) is emptied, its signed header kept, once no outbox
//!   holds it and it is `storage.relay_keep_secs` old ([`empty_relayed`],
//!   every half of that, between a second and a minute): until then the
//!   relay can answer a request for a copy over fewer links
//!   (`domain::hop_limit`).
//! - A purged message cannot come back: `limits.max_message_age_days` is at
//!   most every retention (checked by the configuration), and ingest refuses
//!   anything older (`Rejection::TooOld`).
//!
//! Nothing here starts a task: the application runs [`run`] and
//! [`empty_relayed`].
use crate::domain::assistance::{SignedStep, is_terminal, replay};
use crate::domain::incident::stored_keys;
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

/// Attachment folders changed more recently than this are never swept.
pub const ATTACHMENT_GRACE: Duration = Duration::from_secs(600);

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
    /// Attachment folders removed with their purged messages.
    pub attachment_folders: u64,
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
        relayed_before_ms: relayed_before(node, now),
        limit: BATCH,
        keys_of: Some(stored_keys),
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
        let more = done.messages as usize >= plan.limit
            || done.rejections as usize >= plan.limit
            || done.ciphertexts as usize >= plan.limit;
        if !more || node.shutdown.is_cancelled() {
            if report.messages > 0 {
                report.attachment_folders = sweep_attachments(node, ATTACHMENT_GRACE).await?;
            }
            return Ok(report);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Removes the attachment folders (`storage.dir/attachments/<message id>`)
/// of messages this node no longer holds, leaving unfinished uploads
/// (names starting with a dot) and folders changed within `grace`. Returns
/// how many it removed; a folder that cannot be removed is logged and left.
pub async fn sweep_attachments(node: &Node, grace: Duration) -> Result<u64, StoreError> {
    let dir = &node.cfg.storage.dir;
    if dir.as_os_str().is_empty() {
        return Ok(0);
    }
    let root = dir.join("attachments");
    let candidates = tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::MetadataExt;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut out = Vec::new();
        for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            // ctime moves on a rename: a folder just named after its message
            // counts as changed now.
            let changed = meta.mtime().max(meta.ctime());
            if name.starts_with('.')
                || !meta.is_dir()
                || now.saturating_sub(changed) < grace.as_secs() as i64
            {
                continue;
            }
            out.push((name, e.path()));
        }
        out
    })
    .await
    .unwrap_or_default();
    if candidates.is_empty() {
        return Ok(0);
    }
    let mut removed = 0;
    for chunk in candidates.chunks(256) {
        let held = node
            .store
            .held(chunk.iter().map(|(n, _)| n.clone()).collect())
            .await?;
        for (name, path) in chunk {
            if held.contains(name) {
                continue;
            }
            let p = path.clone();
            match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(p)).await {
                Ok(Ok(())) => removed += 1,
                Ok(Err(e)) => {
                    tracing::warn!(folder = %path.display(), error = %e, "retention: cannot remove the attachments of a purged message; remove the folder by hand")
                }
                Err(_) => {}
            }
        }
    }
    Ok(removed)
}

/// Relayed ciphertext received before this time, and queued for no peer any
/// more, is emptied (`storage.relay_keep_secs`).
fn relayed_before(node: &Node, now: i64) -> i64 {
    let keep =
        i64::try_from(node.cfg.storage.relay_keep_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    now.saturating_sub(keep)
}

/// Empties the relayed ciphertext nobody needs any more
/// (`storage.relay_keep_secs` after it was received), in small units of
/// work; returns how many.
pub async fn empty_relayed_once(node: &Node, now: i64) -> Result<u64, StoreError> {
    let plan = PurgePlan {
        relayed_before_ms: relayed_before(node, now),
        limit: BATCH,
        ..PurgePlan::default()
    };
    let mut emptied = 0;
    loop {
        let done = node.store.purge(plan.clone()).await?;
        emptied += done.ciphertexts;
        if (done.ciphertexts as usize) < plan.limit || node.shutdown.is_cancelled() {
            return Ok(emptied);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Empties relayed ciphertext (see [`empty_relayed_once`]) every half of
/// `storage.relay_keep_secs`, between one second and a minute, until the
/// node stops. A relay thus holds a forwarded ciphertext until it is that
/// old (plus the interval), or, when its last peer takes it later, the
/// interval after that.
pub async fn empty_relayed(node: Arc<Node>) {
    let every = Duration::from_secs(node.cfg.storage.relay_keep_secs / 2)
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = node.shutdown.cancelled() => return,
        }
        match empty_relayed_once(&node, now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(messages = n, "relayed ciphertext every peer has emptied"),
            Err(e) => tracing::warn!(error = %e, "cannot empty relayed ciphertext now; retrying"),
        }
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
                attachment_folders = r.attachment_folders,
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
