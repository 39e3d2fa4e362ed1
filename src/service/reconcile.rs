//! Set reconciliation with each peer: the runtime around the pure
//! `domain::reconcile` machine. [`run_loop`] runs one reconciliation with a
//! peer when its link comes up and every `reconcile.interval_secs`;
//! [`reconcile_now`] runs one on an operator's request; [`respond`] answers
//! a peer's round (the Federation `Reconcile` RPC).
//!
//! Invariants:
//! - The set of a link is the broadcasts, the relayable directed messages
//!   (CLEAR/GREEN, not end-to-end encrypted: relay copies included, so a
//!   relay gives back what a non-adjacent member addressed to its peer) and
//!   the other directed messages both nodes are parties to (see
//!   `domain::reconcile::audiences`), created within `reconcile.window_days`
//!   (the initiator's `since_ms`), read from the store's per-bucket sums and,
//!   for the buckets at range edges only, its items: memory is bounded by
//!   `reconcile.max_round_items` per round, never the whole set. A bucket holding
//!   more than that is never loaded: the machine compares the set around it
//!   (`BucketView::set_opaque`), logged at warn and counted
//!   (`not_compared`) once per peer and bucket.
//! - What a peer lacks is queued in batches of `QUEUE_BATCH` (one read and
//!   one write each; the next batch is read and its custody records signed
//!   while the one before commits, and batches commit in key order) and the
//!   link is woken after each batch: a large difference is delivered while
//!   the rest of it is being queued.
//! - Nothing is sent by this module: what a peer lacks is queued in this
//!   node's outbox for it (`Storage::requeue`), and only if
//!   `domain::admission::entitled` allows it (the forwarding policy: TLP,
//!   max_tlp, relay, recipients, hop limit), it is within this node's window
//!   and not expired. A peer that asks for more gets nothing beyond that;
//!   the refusals are counted. A lacked message that only its signed hop
//!   limit keeps from the peer, held here at that limit, is asked for over
//!   fewer links as for a graft (`service::gossip::lacked_at_limit`): a
//!   shorter copy goes on to the peer. A message the peer refused for good
//!   (delivery REJECTED) within [`REFUSAL_MEMORY_MS`] is not offered again
//!   (counted as `refused_before`, shown in ListPeers), unless its refusals
//!   were forgotten since (`Reconciler::forget_refusals`: a certificate the
//!   peer did not present before, a reload changing its section, or an
//!   operator's `retry_refused`): its cause may have been fixed.
//! - A peer's frames are untrusted: malformed frames (INVALID_ARGUMENT),
//!   `since_ms` beyond this node's window (OUT_OF_RANGE), more than
//!   `reconcile.max_rounds_per_minute` rounds a minute or a second round while
//!   one runs, or a round needing more than `reconcile.max_round_items`
//!   (RESOURCE_EXHAUSTED) each end that exchange with a status, counted in
//!   `certfed_reconcile_failures_total{reason}` and logged once; the Push
//!   stream is untouched (reconciliation uses its own connection).
//! - An exchange this node starts ends within `reconcile.timeout_secs` and
//!   [`MAX_ROUNDS`] rounds, whatever the peer does; one at a time per peer.
//! - ListPeers shows the last exchange with each peer ([`ReconcileView`]).
use crate::domain::envelope::ms_to_ts;
use crate::domain::reconcile::{
    self, Acc, BROADCAST, BucketView, Error as MachineError, Item, Key, Limits, MIN_RANGES,
    RELAYED, Step,
};
use crate::proto::v1::federation_client::FederationClient;
use crate::proto::v1::{LinkState, ReconcileRequest, ReconcileResponse, ReconcileView};
use crate::service::node::Node;
use crate::service::peers::expect_node;
use crate::service::reconciler::PeerState;
use crate::service::resend::{Why, entitled_requeues};
use crate::service::{ErrorKind, ServiceError, now_ms};
use crate::storage::{Requeue, SYNC_BUCKET_MS, StoreError, SyncPos};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most rounds of one exchange this node starts.
pub const MAX_ROUNDS: u32 = 64;
/// Items read per store query when paging through a range.
const PAGE: usize = 1024;
/// Messages looked up and queued per store write.
const QUEUE_BATCH: usize = 512;
/// How long a peer's refusal of a message (delivery REJECTED) keeps
/// reconciliation from offering it again: a refusal for good (signature,
/// policy, payload) would otherwise be re-offered, and refused, at every
/// round; after this a cause fixed on the peer heals.
pub const REFUSAL_MEMORY_MS: i64 = 24 * 3_600_000;
/// Slack on a peer's `since_ms` beyond this node's own window.
const WINDOW_SLACK_MS: i64 = 86_400_000;
/// Most frame bytes accepted from a peer in an answer (16,384 ranges of at
/// most ~300 bytes, with room).
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// Room left in a message for what surrounds the frame.
const FRAME_SLACK: usize = 1024;
/// The request limit assumed for a peer that did not announce its
/// `max_message_bytes` (the default's).
const ASSUMED_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Why a reconciliation round or exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("malformed reconciliation frame from {peer}: {why}")]
    Malformed { peer: String, why: String },
    #[error(
        "since_ms is {days} days ago, beyond this node's reconcile window of {window} days (plus one); ask for less history"
    )]
    Window { days: i64, window: u32 },
    #[error(
        "{peer} asked for more than {limit} reconciliation rounds within a minute; wait a minute (reconcile.max_rounds_per_minute on this node)"
    )]
    RateLimited { peer: String, limit: u32 },
    #[error("a reconciliation round from {0} is already running here; wait for its answer")]
    Busy(String),
    #[error(
        "this round would read more than {0} items of the reconciled set at once (reconcile.max_round_items here); send smaller ranges"
    )]
    TooMuchWork(usize),
    #[error("{0} is not a configured peer")]
    NotPeer(String),
    #[error("the link to {0} is not up; reconcile once it is (certfed peers shows its state)")]
    LinkDown(String),
    #[error("reconciliation is off on this node (reconcile.window_days = 0)")]
    Disabled,
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

impl ServiceError for ReconcileError {
    fn kind(&self) -> ErrorKind {
        match self {
            ReconcileError::Malformed { .. } => ErrorKind::InvalidArgument,
            ReconcileError::Window { .. } => ErrorKind::OutOfRange,
            ReconcileError::RateLimited { .. }
            | ReconcileError::Busy(_)
            | ReconcileError::TooMuchWork(_) => ErrorKind::ResourceExhausted,
            ReconcileError::NotPeer(_) => ErrorKind::NotFound,
            ReconcileError::LinkDown(_) | ReconcileError::Disabled => ErrorKind::FailedPrecondition,
            ReconcileError::Store(e) => e.kind(),
        }
    }
}

impl ReconcileError {
    /// Label for `certfed_reconcile_failures_total{reason}`.
    fn label(&self) -> &'static str {
        match self {
            ReconcileError::Malformed { .. } => "malformed",
            ReconcileError::Window { .. } => "window",
            ReconcileError::RateLimited { .. } => "rate_limited",
            ReconcileError::Busy(_) => "busy",
            ReconcileError::TooMuchWork(_) => "too_much_work",
            ReconcileError::NotPeer(_) => "not_peer",
            ReconcileError::LinkDown(_) | ReconcileError::Disabled => "not_run",
            ReconcileError::Store(_) => "storage",
        }
    }
}

/// Runs a reconciliation with `peer` when its link comes up and every
/// `reconcile.interval_secs` while it is up, until shutdown or `stop`.
pub async fn run_loop(node: Arc<Node>, peer: String) {
    let st = node.reconcile.state(&peer);
    let interval = node.cfg.reconcile.interval();
    loop {
        tokio::select! {
            _ = st.link_up.notified() => {}
            _ = tokio::time::sleep(interval) => {}
            _ = node.shutdown.cancelled() => return,
        }
        if node.cfg.reconcile.window_days == 0 || node.peers.status(&peer).state != LinkState::Up {
            continue;
        }
        // Errors are recorded and logged by reconcile_now.
        let _ = reconcile_now(&node, &peer, false).await;
    }
}

/// Runs one reconciliation with `peer` now (waiting for one already
/// running), records and returns its result.
/// With `retry_refused`, the peer's refusals are forgotten first (what it
/// refused for good within [`REFUSAL_MEMORY_MS`] is offered again).
pub async fn reconcile_now(
    node: &Arc<Node>,
    peer: &str,
    retry_refused: bool,
) -> Result<ReconcileView, ReconcileError> {
    if !node.peers.is_peer(peer) {
        return Err(ReconcileError::NotPeer(peer.to_string()));
    }
    if node.cfg.reconcile.window_days == 0 {
        return Err(ReconcileError::Disabled);
    }
    if node.peers.status(peer).state != LinkState::Up {
        return Err(ReconcileError::LinkDown(peer.to_string()));
    }
    let st = node.reconcile.state(peer);
    let _one = st.running.lock().await;
    if retry_refused {
        node.reconcile.forget_refusals(peer, now_ms());
        tracing::info!(%peer, "reconciliation: the peer's earlier refusals are forgotten (retry_refused)");
    }
    let started = Instant::now();
    let mut view = ReconcileView {
        started_by: "this node".into(),
        ..Default::default()
    };
    let deadline = started + node.cfg.reconcile.timeout();
    let result = tokio::time::timeout_at(deadline, exchange(node, peer, &mut view)).await;
    let outcome = match result {
        Ok(Ok(())) => "completed",
        Ok(Err(e)) => {
            view.error = e;
            "failed"
        }
        Err(_) => {
            view.error = format!(
                "{peer} did not finish within {} s (reconcile.timeout_secs); abandoned after {} round(s)",
                node.cfg.reconcile.timeout_secs, view.rounds
            );
            node.metrics.reconcile_failure("timeout");
            "failed"
        }
    };
    view.at = Some(ms_to_ts(now_ms()));
    node.metrics.reconcile_exchange(outcome);
    if view.error.is_empty() {
        tracing::info!(%peer, rounds = view.rounds, bytes = view.bytes, difference = view.difference, sent = view.sent, received = view.received, ms = started.elapsed().as_millis() as u64, "reconciliation with peer completed");
    } else {
        tracing::warn!(%peer, rounds = view.rounds, error = %view.error, "reconciliation with peer failed");
    }
    node.reconcile.record(peer, view.clone());
    Ok(view)
}

/// The rounds of one exchange this node started; fills `view` as it goes
/// and returns the reason it ended early, if it did.
async fn exchange(node: &Arc<Node>, peer: &str, view: &mut ReconcileView) -> Result<(), String> {
    let Some(p) = node.peers.list().iter().find(|p| p.id == peer).cloned() else {
        return Err(format!("{peer} is no longer a configured peer"));
    };
    let channel = crate::transport::client::channel_observed(
        &p.endpoint.to_string(),
        node.tls_client(),
        Some(expect_node(peer)),
        Duration::from_secs(5),
        None,
    )
    .map_err(|e| format!("invalid endpoint: {e}"))?;
    let mut client = FederationClient::new(channel)
        .max_decoding_message_size(MAX_FRAME_BYTES)
        .max_encoding_message_size(MAX_FRAME_BYTES);
    // Frames to the peer: as many ranges as it announced (1,024 if it did
    // not), within its request limit; answers: up to MAX_RANGES (said in
    // each request).
    let status = node.peers.status(peer);
    let limits = Limits {
        max_ranges: status
            .peer_reconcile_ranges
            .map_or(reconcile::LEGACY_RANGES, |r| r as usize)
            .clamp(MIN_RANGES, reconcile::MAX_RANGES),
        accept_ranges: reconcile::MAX_RANGES,
        max_load: round_budget(node),
        ..Limits::default()
    };
    let request_budget = request_budget(status.peer_max_message_bytes);
    let window_ms = i64::try_from(node.cfg.reconcile.window().as_millis()).unwrap_or(i64::MAX);
    let since = now_ms().saturating_sub(window_ms);
    let mut frame = {
        let mut v = load_view(node, peer, since)
            .await
            .map_err(|e| e.to_string())?;
        with_loads(node, peer, &mut v, |v| reconcile::initiate(since, v))
            .await
            .map_err(|e| e.to_string())?
    };
    for round in 1..=MAX_ROUNDS {
        let req = ReconcileRequest {
            since_ms: since,
            frame: Some(reconcile::to_proto(since, &frame)),
            round,
            max_ranges: reconcile::MAX_RANGES as u32,
        };
        let sent_bytes = req.encoded_len() as u64;
        node.metrics.reconcile_bytes("sent", sent_bytes);
        node.metrics.reconcile_round("initiated");
        view.bytes += sent_bytes;
        view.rounds = round;
        let resp = match client.reconcile(req).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                node.metrics.reconcile_failure("unsupported");
                return Err(format!(
                    "{peer} does not support reconciliation (an older certfed); nothing was compared"
                ));
            }
            Err(s) => {
                node.metrics.reconcile_failure("peer_refused");
                return Err(format!(
                    "{peer} refused round {round}: {:?}: {}",
                    s.code(),
                    crate::service::limits::bounded(s.message())
                ));
            }
        };
        let got = resp.encoded_len() as u64;
        node.metrics.reconcile_bytes("received", got);
        view.bytes += got;
        view.received += u64::from(resp.queued);
        // What the peer found this node lacks (and may have): it queued it.
        view.difference += u64::from(resp.queued);
        let incoming = resp.frame.unwrap_or_default();
        let theirs = match reconcile::from_proto(since, &incoming, &limits) {
            Ok(f) => f,
            Err(e) => {
                node.metrics.reconcile_failure("malformed");
                return Err(format!("{peer} answered round {round} with {e}"));
            }
        };
        let step = {
            let mut v = load_view(node, peer, since)
                .await
                .map_err(|e| e.to_string())?;
            match fitted_step(node, peer, &mut v, since, &theirs, limits, request_budget).await {
                Ok(s) => s,
                Err(e) => {
                    node.metrics.reconcile_failure(e.label());
                    return Err(format!("round {round}: {e}"));
                }
            }
        };
        let queued = apply(node, peer, since, &step)
            .await
            .map_err(|e| e.to_string())?;
        view.sent += queued.queued;
        view.refused_before += queued.refused_before;
        // What this node found the peer lacks; what this node lacks and asked
        // for (`want`) is counted when the peer queues it, above.
        view.difference += step.they_lack();
        if step.reply.is_done() {
            return Ok(());
        }
        frame = step.reply;
    }
    node.metrics.reconcile_failure("too_many_rounds");
    Err(format!(
        "not finished after {MAX_ROUNDS} rounds; the rest waits for the next reconciliation"
    ))
}

/// Answers one reconciliation round from `peer` (the Federation
/// `Reconcile` RPC).
pub async fn respond(
    node: &Node,
    peer: &str,
    req: ReconcileRequest,
) -> Result<ReconcileResponse, ReconcileError> {
    node.metrics.reconcile_round("answered");
    node.metrics
        .reconcile_bytes("received", req.encoded_len() as u64);
    let r = respond_checked(node, peer, req).await;
    match &r {
        Ok(resp) => node
            .metrics
            .reconcile_bytes("sent", resp.encoded_len() as u64),
        Err(e) => {
            node.metrics.reconcile_failure(e.label());
            tracing::warn!(%peer, error = %e, "reconciliation round from peer refused");
            let mut v = node.reconcile.last(peer).unwrap_or_default();
            if v.started_by != "peer" {
                v = ReconcileView {
                    started_by: "peer".into(),
                    ..Default::default()
                };
            }
            v.error = crate::service::limits::bounded(&e.to_string());
            v.at = Some(ms_to_ts(now_ms()));
            node.reconcile.record(peer, v);
        }
    }
    r
}

async fn respond_checked(
    node: &Node,
    peer: &str,
    req: ReconcileRequest,
) -> Result<ReconcileResponse, ReconcileError> {
    let st = node.reconcile.state(peer);
    let limit = node.cfg.reconcile.max_rounds_per_minute;
    {
        let mut l = st.limit.lock().expect("reconcile lock");
        let now = Instant::now();
        if l.0
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
        {
            *l = (Some(now), 0, l.2);
        }
        if l.1 >= limit {
            return Err(ReconcileError::RateLimited {
                peer: peer.to_string(),
                limit,
            });
        }
        if l.2 {
            return Err(ReconcileError::Busy(peer.to_string()));
        }
        l.1 += 1;
        l.2 = true;
    }
    struct Running<'a>(&'a PeerState);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0.limit.lock().expect("reconcile lock").2 = false;
        }
    }
    let _running = Running(&st);
    let now = now_ms();
    let own_days = match node.cfg.reconcile.window_days {
        0 => node.cfg.limits.max_message_age_days,
        d => d,
    };
    let own_ms = i64::from(own_days) * 86_400_000;
    if req.since_ms < now.saturating_sub(own_ms + WINDOW_SLACK_MS) {
        return Err(ReconcileError::Window {
            days: (now.saturating_sub(req.since_ms)) / 86_400_000,
            window: own_days,
        });
    }
    let since = req.since_ms;
    // Frames from the peer: up to MAX_RANGES (announced in Hello); answers:
    // as many as the caller accepts (1,024 if it did not say), within the
    // encoding limit of this node's Federation service.
    let limits = Limits {
        max_ranges: match req.max_ranges {
            0 => reconcile::LEGACY_RANGES,
            n => (n as usize).clamp(MIN_RANGES, reconcile::MAX_RANGES),
        },
        accept_ranges: reconcile::MAX_RANGES,
        max_load: round_budget(node),
        ..Limits::default()
    };
    let malformed = |e: MachineError| ReconcileError::Malformed {
        peer: peer.to_string(),
        why: match e {
            MachineError::Malformed(m) => m,
            other => other.to_string(),
        },
    };
    let frame =
        reconcile::from_proto(since, &req.frame.unwrap_or_default(), &limits).map_err(malformed)?;
    reconcile::validate(since, &frame, &limits).map_err(malformed)?;
    let mut v = load_view(node, peer, since).await?;
    let step = fitted_step(
        node,
        peer,
        &mut v,
        since,
        &frame,
        limits,
        answer_budget(node.cfg.limits.max_message_bytes),
    )
    .await
    .map_err(|e| match ReconcileError::from(e) {
        ReconcileError::Malformed { why, .. } => ReconcileError::Malformed {
            peer: peer.to_string(),
            why,
        },
        other => other,
    })?;
    let Queued {
        queued,
        refused_before,
    } = apply(node, peer, since, &step).await?;
    let mut last = node.reconcile.last(peer).unwrap_or_default();
    if req.round <= 1 || last.started_by != "peer" {
        last = ReconcileView {
            started_by: "peer".into(),
            ..Default::default()
        };
    }
    last.rounds = req.round;
    last.difference += step.difference();
    last.sent += queued;
    last.refused_before += refused_before;
    last.error.clear();
    last.at = Some(ms_to_ts(now_ms()));
    node.reconcile.record(peer, last);
    Ok(ReconcileResponse {
        frame: Some(reconcile::to_proto(since, &step.reply)),
        queued: u32::try_from(queued).unwrap_or(u32::MAX),
    })
}

/// The audiences of the link to `peer` (see `reconcile::audiences`):
/// broadcasts, relayable directed messages (relay copies included) and the
/// other directed messages both are parties to.
fn audiences(peer: &str) -> [String; 3] {
    [BROADCAST.to_string(), RELAYED.to_string(), peer.to_string()]
}

/// The bucket sums of the link's set from `since` on.
async fn load_view(node: &Node, peer: &str, since: i64) -> Result<BucketView, StoreError> {
    let sums = node.store.sync_buckets(&audiences(peer), since).await?;
    Ok(BucketView::new(
        SYNC_BUCKET_MS,
        sums.into_iter().map(|b| {
            (
                b.bucket,
                Acc {
                    count: b.count,
                    lanes: b.lanes,
                },
            )
        }),
    ))
}

impl MachineLoadError {
    fn label(&self) -> &'static str {
        match self {
            MachineLoadError::Machine(_) => "malformed",
            MachineLoadError::TooMuchWork(_) => "too_much_work",
            MachineLoadError::Store(_) => "storage",
        }
    }
}

/// Why a step could not run.
#[derive(Debug, thiserror::Error)]
enum MachineLoadError {
    #[error("{0}")]
    Machine(MachineError),
    #[error("more than {0} items would be loaded at once (reconcile.max_round_items)")]
    TooMuchWork(usize),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<MachineLoadError> for ReconcileError {
    fn from(e: MachineLoadError) -> Self {
        match e {
            MachineLoadError::Machine(MachineError::Malformed(m)) => ReconcileError::Malformed {
                peer: String::new(),
                why: m,
            },
            MachineLoadError::Machine(other) => ReconcileError::Malformed {
                peer: String::new(),
                why: other.to_string(),
            },
            MachineLoadError::TooMuchWork(n) => ReconcileError::TooMuchWork(n),
            MachineLoadError::Store(s) => ReconcileError::Store(s),
        }
    }
}

/// Most bytes of a frame sent to a peer whose request limit is its
/// announced `max_message_bytes` plus 64 KiB (the Federation service's), and
/// within this node's own encoding limit for the call.
pub fn request_budget(peer_max_message_bytes: Option<u64>) -> usize {
    let theirs = peer_max_message_bytes
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or(ASSUMED_MAX_MESSAGE_BYTES);
    theirs
        .saturating_add(64 * 1024)
        .min(MAX_FRAME_BYTES)
        .saturating_sub(FRAME_SLACK)
}

/// Most bytes of an answer's frame: this node's Federation service encodes
/// up to its `max_message_bytes` plus 64 KiB, or the attachment chunk frame
/// if larger (see `app::serve`), and callers decode up to [`MAX_FRAME_BYTES`].
pub fn answer_budget(max_message_bytes: usize) -> usize {
    // MAX_CHUNK_FRAME (4 MiB) is below MAX_FRAME_BYTES (8 MiB).
    max_message_bytes
        .saturating_add(64 * 1024)
        .clamp(crate::service::transfer::MAX_CHUNK_FRAME, MAX_FRAME_BYTES)
        .saturating_sub(FRAME_SLACK)
}

/// Runs a step whose reply fits `max_bytes` encoded
/// (`reconcile::process_within`), loading the buckets it asks for.
async fn fitted_step(
    node: &Node,
    peer: &str,
    view: &mut BucketView,
    since: i64,
    frame: &reconcile::Frame,
    limits: Limits,
    max_bytes: usize,
) -> Result<Step, MachineLoadError> {
    with_loads(node, peer, view, |v| {
        reconcile::process_within(since, frame, v, &limits, max_bytes)
    })
    .await
}

/// Runs a machine step, loading the buckets it asks for, until it completes.
async fn with_loads<T>(
    node: &Node,
    peer: &str,
    view: &mut BucketView,
    f: impl Fn(&BucketView) -> Result<T, MachineError>,
) -> Result<T, MachineLoadError> {
    // Each pass loads what the previous one found missing (edges, then the
    // edges of the splits, ...). Every pass loads at least one new bucket, so
    // the passes end; memory is bounded by reconcile.max_round_items.
    let max = node.cfg.reconcile.max_round_items;
    loop {
        match f(view) {
            Err(MachineError::Need(buckets)) => {
                let mut new: Vec<i64> = buckets
                    .into_iter()
                    .filter(|b| !view.is_loaded(*b) && !view.is_opaque(*b))
                    .collect();
                // A bucket larger than a round may read is never loaded: the
                // machine compares the set around it (its items are not
                // compared with this peer; they still travel by push).
                let before = new.len();
                new.retain(|b| {
                    let large = view.count_of(*b) > max as u64;
                    if large {
                        view.set_opaque(*b);
                        opaque_bucket(node, peer, view, *b);
                    }
                    !large
                });
                if new.len() < before {
                    continue;
                }
                if new.is_empty() {
                    return Err(MachineLoadError::Machine(MachineError::Malformed(
                        "the reconciliation step asked again for buckets it was given (a bug in this certfed); the exchange is abandoned".into(),
                    )));
                }
                load_buckets(node, peer, view, &new).await?;
                if view.loaded_items() > max {
                    return Err(MachineLoadError::TooMuchWork(max));
                }
            }
            Err(e) => return Err(MachineLoadError::Machine(e)),
            Ok(t) => return Ok(t),
        }
    }
}

/// Items the machine plans a round's loads with: two thirds of
/// `reconcile.max_round_items` (the first range a round answers may load
/// up to the whole of it).
fn round_budget(node: &Node) -> usize {
    node.cfg.reconcile.max_round_items / 3 * 2
}

/// Counts and logs a bucket of the reconciled set too large to read in one
/// round (`reconcile.max_round_items`): its items are not compared with `peer`.
fn opaque_bucket(node: &Node, peer: &str, view: &BucketView, bucket: i64) {
    let first = node
        .reconcile
        .state(peer)
        .too_large
        .lock()
        .expect("reconcile lock")
        .insert(bucket);
    if !first {
        return;
    }
    let items = view.count_of(bucket);
    node.metrics.reconcile_items("not_compared", items);
    let (from, to) = view.span(bucket);
    tracing::warn!(
        peer = %peer,
        items,
        from = %crate::domain::text::rfc3339_ms(from),
        to = %crate::domain::text::rfc3339_ms(to),
        max_round_items = node.cfg.reconcile.max_round_items,
        "the messages created in this span are more than one reconciliation round may read (reconcile.max_round_items); they are not compared with this peer (the rest of the set is). Messages still travel by push; a peer that lacks some of them gets them from the outbox, or from a node holding fewer of that span"
    );
}

/// Loads the items of `buckets`, runs of consecutive buckets in one query
/// per audience.
async fn load_buckets(
    node: &Node,
    peer: &str,
    view: &mut BucketView,
    buckets: &[i64],
) -> Result<(), MachineLoadError> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for b in buckets {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == *b => *end = *b,
            _ => runs.push((*b, *b)),
        }
    }
    for (first, last) in runs {
        let from = (view.span(first).0, [0u8; 16]);
        let to = (view.span(last).1, [0u8; 16]);
        // Sized from this node's sums (grown when items arrived since), never
        // past the round's budget: a round holds up to max_round_items, and
        // growth by doubling would leave up to as much again unused.
        let max = node.cfg.reconcile.max_round_items;
        let mut room = max.saturating_sub(view.loaded_items());
        let mut by: BTreeMap<i64, Vec<Item>> = (first..=last)
            .map(|b| {
                let n = usize::try_from(view.count_of(b)).map_or(room, |n| n.min(room));
                room -= n;
                (b, Vec::with_capacity(n))
            })
            .collect();
        for a in audiences(peer) {
            let mut pos = from;
            loop {
                let page = node.store.sync_items(&a, pos, to, PAGE).await?;
                let full = page.len() == PAGE;
                for it in &page {
                    by.entry(view.bucket_of(it.created_ms))
                        .or_default()
                        .push(Item {
                            key: Key {
                                created_ms: it.created_ms,
                                id: it.id,
                            },
                            hash: it.hash,
                        });
                }
                let loaded: usize = by.values().map(Vec::len).sum();
                if view.loaded_items() + loaded > max {
                    return Err(MachineLoadError::TooMuchWork(max));
                }
                match page.last() {
                    Some(l) if full => pos = successor((l.created_ms, l.id)),
                    _ => break,
                }
            }
        }
        for (b, items) in by {
            view.load(b, items);
        }
    }
    Ok(())
}

/// The position right after `p`.
fn successor(p: SyncPos) -> SyncPos {
    match u128::from_be_bytes(p.1).checked_add(1) {
        Some(n) => (p.0, n.to_be_bytes()),
        None => (p.0.saturating_add(1), [0; 16]),
    }
}

/// Queues for `peer` what a step found it lacks (within policy); returns how
/// many were queued. Batches are read and signed while the one before is
/// being committed (`pipelined`), and committed in key order.
async fn apply(node: &Node, peer: &str, since: i64, step: &Step) -> Result<Queued, StoreError> {
    let mut keys: Vec<Key> = step.send.iter().chain(&step.wanted).copied().collect();
    keys.sort();
    keys.dedup();
    let produce = |tx: mpsc::Sender<Prepared>| {
        let keys = &keys;
        async move {
            for chunk in keys.chunks(QUEUE_BATCH) {
                let p = prepare(node, peer, since, chunk).await?;
                if tx.send(p).await.is_err() {
                    break;
                }
            }
            for (lo, hi) in &step.send_ranges {
                for a in audiences(peer) {
                    let mut pos = (lo.created_ms, lo.id);
                    let to = (hi.created_ms, hi.id);
                    loop {
                        let page = node.store.sync_items(&a, pos, to, PAGE).await?;
                        let full = page.len() == PAGE;
                        let keys: Vec<Key> = page
                            .iter()
                            .map(|i| Key {
                                created_ms: i.created_ms,
                                id: i.id,
                            })
                            .collect();
                        for chunk in keys.chunks(QUEUE_BATCH) {
                            let p = prepare(node, peer, since, chunk).await?;
                            if tx.send(p).await.is_err() {
                                return Ok(());
                            }
                        }
                        match page.last() {
                            Some(l) if full => pos = successor((l.created_ms, l.id)),
                            _ => break,
                        }
                    }
                }
            }
            Ok(())
        }
    };
    let Queued {
        queued,
        refused_before: remembered,
    } = pipelined(node, peer, produce).await?;
    if queued > 0 {
        node.metrics.reconcile_items("queued", queued);
    }
    if step.want > 0 {
        node.metrics.reconcile_items("missing", step.want as u64);
    }
    if step.unknown_wanted > 0 {
        node.metrics
            .reconcile_items("unknown_wanted", step.unknown_wanted as u64);
    }
    if remembered > 0 {
        node.metrics.reconcile_items("refused_before", remembered);
    }
    Ok(Queued {
        queued,
        refused_before: remembered,
    })
}

/// Runs `produce` (reading and signing batches, handing each over in
/// order) and the commits of what it hands over, at once in this task: the
/// next batch's store read and signatures overlap the commit of the one
/// before (one batch handed over ahead at most). The first error of either
/// ends both.
async fn pipelined<F, Fut>(node: &Node, peer: &str, produce: F) -> Result<Queued, StoreError>
where
    F: FnOnce(mpsc::Sender<Prepared>) -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let (tx, mut rx) = mpsc::channel::<Prepared>(1);
    let consume = async {
        let mut total = Queued::default();
        while let Some(p) = rx.recv().await {
            let q = commit(node, peer, p).await?;
            total.queued += q.queued;
            total.refused_before += q.refused_before;
        }
        Ok::<_, StoreError>(total)
    };
    let ((), total) = tokio::try_join!(produce(tx), consume)?;
    Ok(total)
}

/// What [`apply`] or [`commit`] did.
#[derive(Debug, Clone, Copy, Default)]
struct Queued {
    /// Messages queued for the peer.
    queued: u64,
    /// Messages the peer lacks that it refused for good within
    /// [`REFUSAL_MEMORY_MS`]: not offered again.
    refused_before: u64,
}

/// A batch of what a peer lacks, read and checked against policy (custody
/// records signed), ready to be committed to its outbox.
struct Prepared {
    requeue: Vec<Requeue>,
    /// Lacked but refused by the peer for good lately: not offered again.
    refused_before: u64,
    /// Lacked but not for the peer by policy (counted).
    not_entitled: u64,
    /// Of those, the ones held here at their hop limit that only the limit
    /// keeps from the peer: copies over fewer links are asked for.
    at_limit: Vec<(String, usize)>,
}

/// Reads the messages of `keys` that `peer` is entitled to and has not
/// refused lately, with their new custody records (see [`entitled_requeues`]).
async fn prepare(
    node: &Node,
    peer: &str,
    since: i64,
    keys: &[Key],
) -> Result<Prepared, StoreError> {
    let mut ids: Vec<String> = keys
        .iter()
        .map(|k| uuid::Uuid::from_bytes(k.id).to_string())
        .collect();
    // What the peer refused for good lately is not offered again (it would
    // be refused again, at every round).
    // Forgotten earlier when the peer's certificate or section changed, or
    // on an operator's request (`Reconciler::forget_refusals`).
    let refused_before = node
        .store
        .refused_by(
            peer,
            ids.clone(),
            node.reconcile
                .refusals_since(peer, now_ms(), REFUSAL_MEMORY_MS),
        )
        .await?;
    if !refused_before.is_empty() {
        let skip: std::collections::HashSet<&String> = refused_before.iter().collect();
        ids.retain(|i| !skip.contains(i));
    }
    let e = entitled_requeues(node, peer, since, &ids, Why::Reconciled).await?;
    Ok(Prepared {
        requeue: e.requeue,
        refused_before: refused_before.len() as u64,
        not_entitled: e.refused,
        at_limit: e.at_limit,
    })
}

/// Queues a prepared batch in `peer`'s outbox and wakes the link at once: a
/// large difference is delivered while the rest of it is still being
/// queued, not after.
async fn commit(node: &Node, peer: &str, p: Prepared) -> Result<Queued, StoreError> {
    if p.not_entitled > 0 {
        node.metrics.reconcile_items("not_entitled", p.not_entitled);
    }
    let queued = if p.requeue.is_empty() {
        0
    } else {
        node.store.requeue(peer, p.requeue, now_ms()).await?
    };
    if queued > 0 {
        node.reconcile.requeued(peer).notify_one();
        node.peers.wake(peer);
    }
    // As for a graft of a message stopped here: a copy over a shorter way
    // would go on to the peer, so one is asked for.
    let asked = crate::service::gossip::lacked_at_limit(node, peer, p.at_limit, now_ms()).await;
    if asked > 0 {
        node.metrics.reconcile_items("asked_shorter", asked);
    }
    Ok(Queued {
        queued,
        refused_before: p.refused_before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_fit_the_receivers_limits() {
        // A request fits the peer's max_message_bytes + 64 KiB (the
        // default's when it did not say), an answer this node's encoding
        // limit and the caller's MAX_FRAME_BYTES.
        assert_eq!(request_budget(Some(1024)), 64 * 1024);
        assert_eq!(request_budget(None), 320 * 1024 - 1024);
        assert_eq!(request_budget(Some(u64::MAX)), MAX_FRAME_BYTES - 1024);
        assert_eq!(answer_budget(1024), 4 * 1024 * 1024 - 1024);
        assert_eq!(answer_budget(64 * 1024 * 1024), MAX_FRAME_BYTES - 1024);
    }

    #[test]
    fn successor_steps_over_the_id_then_the_time() {
        assert_eq!(successor((5, [0; 16])).1[15], 1);
        let mut id = [0u8; 16];
        id[15] = 0xff;
        let s = successor((5, id));
        assert_eq!((s.1[14], s.1[15]), (1, 0));
        assert_eq!(successor((5, [0xff; 16])), (6, [0; 16]));
    }

    #[test]
    fn store_sums_and_machine_sums_agree() {
        // The store sums hashes (storage::SyncBucket) as the machine does
        // (reconcile::Acc): both must give the same fingerprint.
        let mut b = crate::storage::SyncBucket::default();
        let mut a = Acc::default();
        for n in 0u8..50 {
            let h = reconcile::item_hash(&[n; 16]);
            b.add(&h, 1);
            a.add_item(&h);
        }
        let h = reconcile::item_hash(&[3; 16]);
        b.add(&h, -1);
        let mut a2 = Acc::default();
        for n in (0u8..50).filter(|n| *n != 3) {
            a2.add_item(&reconcile::item_hash(&[n; 16]));
        }
        assert_eq!((b.count, b.lanes), (a2.count, a2.lanes));
        assert_ne!(a.fingerprint(), a2.fingerprint());
    }
}
