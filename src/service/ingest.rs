//! The one path every message takes into the store, for envelopes pushed by
//! peers and for messages this node signs: verify signatures (off the async
//! workers), look up what admission needs from the store, let the pure
//! `domain::admission::admit` decide, then store each admitted row with its
//! outbox rows in one commit, queue the receipts owed, wake the links and tell
//! Watch. Refusals are logged, counted and recorded for audit.
//!
//! The work is split in three steps so that a stream of batches can overlap
//! verification while keeping its order: [`prepare`] (verify and admit; may
//! run for several batches at once), [`submit`] (queue the commit; call it in
//! stream order: batches are stored, and given cursors, in the order they
//! were submitted) and [`Committing::finish`] (await the commit, then the
//! effects). [`ingest`] does all three for one batch.
//!
//! A refusal for a cause that can pass (a creation time ahead of this node's
//! clock, a signing key not pinned yet, this node's storage full or
//! unavailable) is [`Ingested::Deferred`] for a peer's envelope: nothing is
//! stored or recorded, and the peer keeps the envelope and retries it.
//!
//! A message whose first copy came over a path at its signed hop limit is
//! forwarded to nobody (the next hop would pass the limit); it is announced
//! (a broadcast, or a message to named recipients) to the peers the limit
//! keeps it from, and a peer's graft for it
//! asks this node's peers for a shorter copy (`service::gossip`). A later
//! copy over a shorter path of a message remembered so ([`HopLimited`](crate::domain::hop_limit::HopLimited):
//! stopped here, or asked for by a peer) is not dropped as a duplicate: it is
//! verified and admitted like a new one, its chain and path replace the
//! stored ones, and it is queued for the peers that path reaches (all of
//! them where it was stopped, the askers elsewhere; the sender is answered
//! DUPLICATE, no receipt is owed twice). Without this, the nodes behind such
//! a relay never got the message, and reconciliation (which applies the same
//! limit to the stored path) never healed it.
//!
//! A duplicate of a message to named recipients that this node routed (found
//! before verification, or the copy that lost a race to the store) goes to
//! `service::named_again`, which may send the stored message on: its hint
//! can name recipients no copy from here went toward, or it can come after
//! the origin's hold. Such a duplicate costs a read of the stored message.
use crate::domain::admission::{
    self, Decision, Input, ReceiptOwed, ReceiptRoute, View, deferrable,
};
use crate::domain::envelope::{Draft, Rejection, Verified, verify_batch_decoded, verify_own};
use crate::domain::hop_limit::Onward;
use crate::domain::plumtree::split;
use crate::domain::routes::Plan;
use crate::proto::v1::{DeliveryState, LinkState};
use crate::proto::v1::{EnvelopeHeader, MessageKind, Receipt, SignedEnvelope, SignedHop, Tlp};
use crate::service::arrivals::{Arrival, CommitTicket};
use crate::service::node::Node;
use crate::service::{ErrorKind, ServiceError, now_ms};
use crate::storage::{
    Durability, Hop, NewMessage, Outcome, Pending, ReceiptRows, RejectionRow, Requeue, StoreError,
    Stored, SyncEntry,
};
use prost::Message;
use std::collections::{BTreeSet, HashMap};

/// Outcome of ingesting one envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    New(u64),
    Duplicate,
    Rejected(Rejection),
    /// Not taken now for a cause that can pass; retry, not before
    /// `retry_after_ms` from now when that is not 0.
    Deferred {
        reason: String,
        retry_after_ms: u64,
    },
}

/// The storage row for an admitted message.
fn to_row(a: admission::Admitted) -> NewMessage {
    let sync = sync_entry(&a.message_id, &a.sync_audiences);
    NewMessage {
        message_id: a.message_id,
        origin: a.origin,
        kind: a.kind,
        tlp: a.tlp as i32,
        severity: a.severity,
        sectors_mask: a.sectors_mask,
        exercise: a.exercise,
        created_ms: a.created_ms,
        expires_ms: a.expires_ms,
        received_ms: a.received_ms,
        from_peer: a.from_peer,
        path: a
            .path
            .into_iter()
            .map(|(node, at_ms)| Hop { node, at_ms })
            .collect(),
        header: a.header,
        payload: a.payload,
        signature: a.signature,
        targets: a.forward_to,
        parked: Vec::new(),
        park_until_ms: 0,
        supersedes: a.supersedes,
        readable: a.readable,
        plain: a.plain,
        request_id: a.request_id,
        receipt: a.receipt_facts.map(|r| ReceiptRows {
            me: r.me,
            from: r.from,
            ids: r.ids,
            state: r.state,
            reason: r.reason,
            at_ms: r.at_ms,
        }),
        sync,
        hops: a.hops,
        incident_id: a.incident.incident_id,
        keys: a.incident.keys,
    }
}

/// The reconciliation entry of a message: none when this node is not a party
/// to it, or its id is not a UUID in canonical form (it could not be found
/// again from the key's 16 bytes).
pub fn sync_entry(message_id: &str, audiences: &[String]) -> Option<SyncEntry> {
    if audiences.is_empty() {
        return None;
    }
    let id = crate::domain::reconcile::id_bytes(message_id)?;
    Some(SyncEntry {
        audiences: audiences.to_vec(),
        id,
        hash: crate::domain::reconcile::item_hash(&id),
    })
}

/// The chain of custody a peer sent with one envelope.
#[derive(Debug, Clone, Default)]
pub struct Custody {
    pub hops: Vec<SignedHop>,
    /// The peer sends it back to this node, which held it before (see
    /// `admission::Input::returning`).
    pub returning: bool,
    /// The peer is not sure this node lacks it (`PushFrame.resent`): a
    /// duplicate of it does not prune the link.
    pub resent: bool,
    /// Set by ingest: this node holds the message, forwarded to nobody
    /// because its first copy came at the hop limit, and this copy's path
    /// is shorter ([`HopLimited`](crate::domain::hop_limit::HopLimited)).
    pub shorter: bool,
    /// The recipients the peer sends it toward over this link
    /// (`PushFrame.toward`; empty: every recipient).
    pub toward: Vec<String>,
}

/// Verifies, admits and stores a batch of envelopes from `from_peer` (or from
/// this node when `None`), in one commit. `chains[i]` is the chain of custody
/// the peer reported for `envs[i]` (ignored for this node's own messages).
/// Results are in input order.
pub async fn ingest(
    node: &Node,
    from_peer: Option<&str>,
    envs: Vec<SignedEnvelope>,
    chains: Vec<Custody>,
) -> Result<Vec<Ingested>, StoreError> {
    let prepared = prepare(node, from_peer, envs, chains).await;
    submit(node, prepared).await.finish(node).await
}

/// [`ingest`] for one envelope this node has just sealed with the signer
/// whose public key is `sealed_with`: its signature is not checked again
/// (`envelope::verify_own`), everything else is as for any envelope.
async fn ingest_own(
    node: &Node,
    env: SignedEnvelope,
    sealed_with: ed25519_dalek::VerifyingKey,
) -> Result<Vec<Ingested>, StoreError> {
    let prepared = prepare_with(node, None, Some(sealed_with), vec![env], vec![]).await;
    submit(node, prepared).await.finish(node).await
}

/// A batch verified and admitted, ready to be committed.
pub struct Prepared {
    from_peer: Option<String>,
    now: i64,
    results: Vec<Option<Ingested>>,
    rows: Vec<NewMessage>,
    slots: Vec<usize>,
    owed: Vec<Option<ReceiptOwed>>,
    rejections: Vec<RejectionRow>,
    /// Per row: its id and origin if it takes part in the Plumtree trees
    /// (one per origin), the lazy targets that get an announcement (and a
    /// parked copy) instead of a full copy now, and whether a duplicate of
    /// it may prune the link (not when the peer sent it back or again on
    /// purpose).
    tree: Vec<TreeRow>,
    /// Per row: whether it is at its hop limit, or a shorter path for a
    /// held message that was ([`HopLimited`](crate::domain::hop_limit::HopLimited)).
    reach: Vec<Reach>,
    /// Per row: its part in routing messages to named recipients.
    named: Vec<Named>,
    /// Per row: the ways it was routed along, and a peer's hint.
    routing: Vec<Routing>,
    /// Per row: its signed header lists attachments (for `service::arrivals`).
    attachments: Vec<bool>,
    /// Why the batch could not be prepared (shown by `finish`).
    failed: Option<StoreError>,
}

impl Prepared {
    /// A batch of `n` envelopes that could not be prepared (e.g. its
    /// verification task died): `finish` reports `why` as an internal error.
    pub fn lost(from_peer: Option<&str>, n: usize, why: String) -> Prepared {
        Prepared::failed(from_peer, n, StoreError::Invalid(why))
    }

    fn failed(from_peer: Option<&str>, n: usize, e: StoreError) -> Prepared {
        Prepared {
            from_peer: from_peer.map(str::to_string),
            now: now_ms(),
            results: vec![None; n],
            rows: Vec::new(),
            slots: Vec::new(),
            owed: Vec::new(),
            rejections: Vec::new(),
            tree: Vec::new(),
            reach: Vec::new(),
            named: Vec::new(),
            routing: Vec::new(),
            attachments: Vec::new(),
            failed: Some(e),
        }
    }

    /// Number of envelopes in the batch.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }
}

/// A batch whose commit is queued.
pub struct Committing {
    batch: Prepared,
    targets: Vec<Vec<String>>,
    /// Per row, for metrics: whether it is a receipt (counted apart), and the
    /// assistance thread it belongs to (replayed at the next scrape).
    facts: Vec<(bool, Option<String>, bool)>,
    /// Per row: the SignedRoster a roster message carries, applied once stored.
    rosters: Vec<Option<Vec<u8>>>,
    /// Per row: what the tasks following arrivals need (its cursor set once
    /// stored).
    arrivals: Vec<Arrival>,
    pending: Option<Pending<Vec<Stored>>>,
    queued: std::time::Instant,
    /// Open while the commit's arrivals are not handed over
    /// (`service::arrivals`: followers wait for a gap it may fill).
    ticket: Option<CommitTicket>,
}

/// Verifies and admits a batch (step 1; batches may be prepared concurrently).
/// A failure (a store lookup for receipts) shows in [`Committing::finish`].
pub async fn prepare(
    node: &Node,
    from_peer: Option<&str>,
    envs: Vec<SignedEnvelope>,
    chains: Vec<Custody>,
) -> Prepared {
    prepare_with(node, from_peer, None, envs, chains).await
}

/// [`prepare`], for this node's own envelopes when `sealed_with` is given
/// (see [`try_prepare`]).
async fn prepare_with(
    node: &Node,
    from_peer: Option<&str>,
    sealed_with: Option<ed25519_dalek::VerifyingKey>,
    envs: Vec<SignedEnvelope>,
    chains: Vec<Custody>,
) -> Prepared {
    let n = envs.len();
    match try_prepare(node, from_peer, sealed_with, envs, chains).await {
        Ok(p) => p,
        Err(e) => Prepared::failed(from_peer, n, e),
    }
}

/// A row's part in the Plumtree trees (see `Prepared::tree`): its (id,
/// origin, links it crossed to get here) if tree-routed, the lazy targets announced to, and whether a
/// duplicate of it may prune the link. A peer's message outside the trees
/// (to named recipients) has an empty origin: remembered only so that it is
/// no longer waited for and can be announced at its hop limit.
type TreeRow = (Option<(String, String, u32)>, Vec<String>, bool);

/// A row's place at the hop limit (see [`HopLimited`](crate::domain::hop_limit::HopLimited)).
#[derive(Debug, Default)]
enum Reach {
    #[default]
    Free,
    /// This message, if new here, came over a path of this many nodes, at
    /// the hop limit; it is announced (no copy) to these peers, the ones
    /// policy would send it to but for the limit.
    AtLimit(String, usize, Vec<String>),
    /// A held message at its limit, over a shorter path: after the commit
    /// (a duplicate), it is queued with this chain for these peers.
    Shorter {
        id: String,
        hops: Vec<u8>,
        /// The shorter path (the nodes before this one).
        path: Vec<Hop>,
        forward_to: Vec<String>,
    },
}

/// How long the copies of a message to named recipients held back for the
/// peers off its route wait for the recipients' receipts before they go
/// after all (`domain::routes`). Receipts come back within a few seconds
/// (250 ms at the recipient, at most a second per link); a way that failed
/// costs this much delay before the message floods around it.
const ROUTE_HOLD_MS: i64 = 30_000;
/// Only a message this young is routed: a copy that went after a hold (or
/// after waiting in an outbox) floods from every node it reaches, so a
/// failed way costs one hold, not one per hop.
const ROUTE_FRESH_MS: i64 = ROUTE_HOLD_MS / 2;

/// A row's routing facts (messages to named recipients, `domain::routes`),
/// used once the store says whether it is new.
#[derive(Debug, Default)]
struct Routing {
    /// The message's id (set when one of the others is).
    id: String,
    /// The ways this copy was routed along from here: counted as sent only
    /// if it is stored as new — a copy that loses the race with another one
    /// of the same message is a duplicate, its plan a hint only.
    ways: Option<Vec<(String, Vec<String>)>>,
    /// A peer's copy of a message to named recipients (not sent back or
    /// again on purpose): the recipients its sender routed through here,
    /// for `service::named_again` should it be a duplicate.
    hint: Option<Vec<String>>,
}

/// A row's part in routing messages to named recipients (`domain::routes`).
#[derive(Debug, Default)]
enum Named {
    #[default]
    Nothing,
    /// Routed (from its origin) toward these recipients; copies parked for
    /// these peers (never none).
    Routed {
        id: String,
        toward: Vec<String>,
        parked: Vec<String>,
    },
    /// A receipt from `recipient` for these message ids.
    Receipt { recipient: String, ids: Vec<String> },
}

/// Most envelopes of one batch whose signatures are checked on the async
/// worker itself (a larger batch goes to the blocking pool).
const INLINE_VERIFY: usize = 2;

/// `sealed_with`: the envelopes are this node's own, just sealed with this
/// key (`ingest_own`).
async fn try_prepare(
    node: &Node,
    from_peer: Option<&str>,
    sealed_with: Option<ed25519_dalek::VerifyingKey>,
    envs: Vec<SignedEnvelope>,
    chains: Vec<Custody>,
) -> Result<Prepared, StoreError> {
    let now = now_ms();
    let keys = node.keys();
    let limits = node.verify_limits();
    let n = envs.len();
    let mut results: Vec<Option<Ingested>> = vec![None; n];
    // Each header as it claims to be, decoded once (unverified: counts, the
    // duplicate check and log hints; then handed to verification, which
    // checks it and gives it back, verified, in the admitted row).
    let mut headers: Vec<Option<EnvelopeHeader>> = envs
        .iter()
        .map(|e| EnvelopeHeader::decode(e.header.as_slice()).ok())
        .collect();
    let claimed: Vec<bool> = headers
        .iter()
        .map(|h| h.as_ref().is_some_and(|h| h.exercise))
        .collect();
    if from_peer.is_some() {
        let exercise = claimed.iter().filter(|x| **x).count();
        node.metrics.count_received(n as u64, exercise as u64);
    }
    // A peer's envelope whose id is already held is a duplicate, whatever
    // else it says: answered before any signature, custody or payload work.
    let mut later = Vec::new();
    let (slots_todo, envs, chains) = drop_held(
        node,
        from_peer,
        envs,
        chains,
        &headers,
        &mut results,
        &mut later,
    )
    .await;
    // Duplicates of messages routed from here that show they are needed
    // further (`service::named_again`).
    crate::service::named_again::sent_again(node, later, ROUTE_FRESH_MS, now).await;
    // Signature checks are CPU work: a large batch goes off the async
    // workers; a few envelopes (the usual frame on a federation link, about
    // as much work as the custody check admission does inline) are checked
    // here, which saves two thread hand-offs per frame.
    // Off the workers, the chains' signatures are checked in the same pass,
    // as one batch (admission checks the rest of each chain, and the
    // signatures of a chain the batch could not vouch for, or of a small
    // frame's, in one batch per chain).
    // The headers decoded above go into verification (not decoded again):
    // an envelope's moves into its verdict when it passes and stays here
    // (for log hints) when it is refused.
    let mut todo_headers: Vec<Option<EnvelopeHeader>> =
        slots_todo.iter().map(|&i| headers[i].take()).collect();
    let (envs, verdicts, chains, checked, mut todo_headers) = if let Some(own) = sealed_with {
        let v = envs
            .iter()
            .map(|e| verify_own(&keys, e, &own, now, &limits))
            .collect();
        (envs, v, chains, Vec::new(), todo_headers)
    } else if envs.len() <= INLINE_VERIFY {
        let refs: Vec<&SignedEnvelope> = envs.iter().collect();
        let v = verify_batch_decoded(&keys, &refs, &mut todo_headers, now, &limits);
        (envs, v, chains, Vec::new(), todo_headers)
    } else {
        let verify_keys = keys.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&SignedEnvelope> = envs.iter().collect();
            let v = verify_batch_decoded(&verify_keys, &refs, &mut todo_headers, now, &limits);
            let hops: Vec<&[SignedHop]> = chains.iter().map(|c| c.hops.as_slice()).collect();
            let checked = crate::domain::custody::verify_signatures(&verify_keys, &hops);
            (envs, v, chains, checked, todo_headers)
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("verification task failed: {e}")))?
    };
    let mut checked = checked.into_iter();

    let mut routes = receipt_routes(node, &envs, &verdicts).await?;
    let peers = node.peers.policies();
    let roster = node.roster();
    let signer = node.signer();
    let view = View {
        me: &node.id,
        signer: &signer,
        keys: &keys,
        peers: &peers,
        max_message_bytes: node.cfg.limits.max_message_bytes,
        roster: roster.as_deref(),
        accept_exercise: node.cfg.exercise.accept,
    };
    let mut rows = Vec::with_capacity(n);
    let mut slots = Vec::with_capacity(n);
    let mut owed = Vec::with_capacity(n);
    let mut rejections = Vec::new();
    let mut tree = Vec::with_capacity(n);
    let mut reach = Vec::with_capacity(n);
    let mut named = Vec::with_capacity(n);
    let mut routing = Vec::with_capacity(n);
    let mut attachments = Vec::with_capacity(n);
    // Plumtree: targets on links lazy for the message's origin get an
    // announcement now and a parked copy (sent in full unless they answer
    // that they hold it).
    let mut chains = chains.into_iter();
    for (k, (i, (envelope, verdict))) in slots_todo
        .into_iter()
        .zip(envs.into_iter().zip(verdicts))
        .enumerate()
    {
        // For log lines of a refusal: the verified id, or what the refused
        // envelope's header claims.
        let verified_id = verdict.as_ref().ok().map(|v| v.header.message_id.clone());
        let refused_header = todo_headers.get_mut(k).and_then(Option::take);
        let id_hint = || match &verified_id {
            Some(id) => header_id_hint_of(id),
            None => header_id_hint(refused_header.as_ref()),
        };
        let receipt_route = verdict
            .as_ref()
            .ok()
            .and_then(|v| routes.remove(&v.header.message_id));
        let mut custody = chains.next().unwrap_or_default();
        let hint = std::mem::take(&mut custody.toward);
        let chain_checked = checked.next().flatten();
        // A receipt's recipient and the ids it confirms (a receipt is never
        // sealed): it may let this node drop copies it held back.
        let receipt_of = verdict.as_ref().ok().and_then(|v| {
            (v.header.kind == MessageKind::Receipt as i32 && !v.header.encrypted)
                .then(|| Receipt::decode(envelope.payload.as_slice()).ok())
                .flatten()
                .map(|r| (v.header.origin.clone(), r.message_ids))
        });
        let prunable = !(custody.returning || custody.resent || custody.shorter);
        let shorter = custody.shorter;
        let custody_len = u32::try_from(custody.hops.len()).unwrap_or(u32::MAX);
        // Only a verified header's flag moves a refusal out of the real series.
        let exercise = verdict.as_ref().is_ok_and(|v| v.header.exercise);
        let verified = verdict.is_ok();
        let input = Input {
            envelope,
            verdict,
            from_peer,
            chain: custody.hops,
            chain_checked,
            receipt_route,
            returning: custody.returning,
        };
        match admission::admit(&view, input, now) {
            Decision::Admit(mut row) => {
                let signed = std::mem::take(&mut row.signed_header);
                let header = Some(&signed);
                // The next hop's path would pass the signed limit: forwarded
                // to nobody (receipts go back their own way).
                let at_limit = (from_peer.is_some()
                    && header.as_ref().is_some_and(|h| {
                        h.kind != MessageKind::Receipt as i32
                            && (row.path.len() + 1) as u64 > u64::from(h.hop_limit)
                    }))
                .then_some(row.path.len());
                if shorter {
                    // Held already: no receipt owed again, no tree change;
                    // the store answers DUPLICATE and `finish` queues it.
                    owed.push(None);
                    reach.push(Reach::Shorter {
                        id: row.message_id.clone(),
                        hops: row.hops.clone(),
                        path: row
                            .path
                            .iter()
                            .map(|(node, at_ms)| Hop {
                                node: node.clone(),
                                at_ms: *at_ms,
                            })
                            .collect(),
                        forward_to: std::mem::take(&mut row.forward_to),
                    });
                    tree.push((None, Vec::new(), false));
                    named.push(Named::Nothing);
                    routing.push(Routing::default());
                    attachments.push(row.attachments);
                    rows.push(to_row(*row));
                    slots.push(i);
                    continue;
                }
                owed.push(row.receipt_owed.take());
                let routed = node.gossip.enabled()
                    && header
                        .as_ref()
                        .is_some_and(|h| crate::service::tree::tree_routed(h));
                reach.push(match (at_limit, &header) {
                    (Some(l), Some(h)) => {
                        // Announced to the peers the limit keeps it from:
                        // one that lacks it grafts, which asks for a
                        // shorter way (`domain::hop_limit`). So is a
                        // message to named recipients, flooded or routed.
                        let blocked = if node.gossip.enabled() {
                            let path: Vec<String> =
                                row.path.iter().map(|(n, _)| n.clone()).collect();
                            admission::targets(
                                &view,
                                &h.origin,
                                Tlp::try_from(h.tlp).unwrap_or(Tlp::Unspecified),
                                &h.recipients,
                                &path,
                                u32::MAX,
                                h.encrypted,
                            )
                        } else {
                            Vec::new()
                        };
                        Reach::AtLimit(row.message_id.clone(), l, blocked)
                    }
                    _ => Reach::Free,
                });
                let mut announce = Vec::new();
                let lazy = if routed {
                    node.gossip.lazy(&row.origin)
                } else {
                    Default::default()
                };
                if !lazy.is_empty() {
                    let (full, lazy_targets) = split(&row.forward_to, &lazy);
                    row.forward_to = full;
                    announce = lazy_targets;
                }
                // Links it crossed to get here (0: originated here).
                let way = if from_peer.is_some() {
                    custody_len.saturating_add(1)
                } else {
                    0
                };
                // (A peer's message outside the trees, to named recipients:
                // remembered with no origin.)
                let id = if routed {
                    Some((row.message_id.clone(), row.origin.clone(), way))
                } else {
                    (node.gossip.enabled()
                        && from_peer.is_some()
                        && header
                            .as_ref()
                            .is_some_and(|h| h.kind != MessageKind::Receipt as i32))
                    .then(|| (row.message_id.clone(), String::new(), way))
                };
                // Its first copy shows a way back to its origin.
                if let Some(p) = from_peer.filter(|_| !custody.returning) {
                    node.routes
                        .lock()
                        .expect("routes lock")
                        .learn(&row.origin, p, way, now);
                }
                // A message to named recipients goes toward them only when
                // a way to each is known. At its origin the other targets
                // get a copy parked until every recipient's receipt is back
                // (receipts go to the origin, whichever way the message
                // took): a way that fails anywhere costs the hold, then
                // the message floods.
                let mut named_row = match receipt_of {
                    Some((recipient, ids)) => Named::Receipt { recipient, ids },
                    None => Named::Nothing,
                };
                let mut routing_row = Routing {
                    id: String::new(),
                    ways: None,
                    hint: (from_peer.is_some()
                        && node.gossip.enabled()
                        && !(custody.resent || custody.returning)
                        && header.as_ref().is_some_and(|h| {
                            !h.recipients.is_empty() && h.kind != MessageKind::Receipt as i32
                        }))
                    .then(|| hint.clone()),
                };
                if let Some(h) = header.as_ref().filter(|h| {
                    node.gossip.enabled()
                        && !h.recipients.is_empty()
                        && h.kind != MessageKind::Receipt as i32
                        && !(custody.resent || custody.returning)
                        && now - row.created_ms < ROUTE_FRESH_MS
                        && at_limit.is_none()
                        && announce.is_empty()
                }) && let Plan::Route { ways, toward } = {
                    let live: Vec<String> = row
                        .forward_to
                        .iter()
                        .filter(|p| node.peers.status(p).state == LinkState::Up)
                        .cloned()
                        .collect();
                    let mut routes = node.routes.lock().expect("routes lock");
                    let plan = routes.plan(
                        &node.id,
                        &crate::domain::routes::along(&h.recipients, &hint),
                        &row.forward_to,
                        &live,
                        &row.path.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
                        h.hop_limit.saturating_sub(way),
                    );
                    if let Plan::Route { ways, .. } = &plan {
                        // Each copy tells the next node which recipients
                        // it is the way to (`PushFrame.toward`); two copies
                        // planned at once merge their ways.
                        routes.assign(&row.message_id, ways);
                    }
                    plan
                } {
                    // Counted as sent once stored (`service::named_again`).
                    routing_row.ways = Some(ways.clone());
                    let peers = crate::domain::routes::peers(&ways);
                    // (Nobody beyond this node needs it when it is the only
                    // recipient left.)
                    let parked: Vec<String> = row
                        .forward_to
                        .iter()
                        .filter(|t| from_peer.is_none() && !toward.is_empty() && !peers.contains(t))
                        .cloned()
                        .collect();
                    row.forward_to = peers;
                    if !parked.is_empty() {
                        named_row = Named::Routed {
                            id: row.message_id.clone(),
                            toward,
                            parked,
                        };
                    }
                }
                attachments.push(row.attachments);
                let mut r = to_row(*row);
                if !announce.is_empty() {
                    r.parked = announce.clone();
                    r.park_until_ms = now + node.gossip.hold_ms();
                }
                if let Named::Routed { parked, .. } = &named_row {
                    r.parked = parked.clone();
                    r.park_until_ms = now + ROUTE_HOLD_MS;
                }
                named.push(named_row);
                if routing_row.ways.is_some() || routing_row.hint.is_some() {
                    routing_row.id.clone_from(&r.message_id);
                }
                routing.push(routing_row);
                tree.push((id, announce, prunable));
                rows.push(r);
                slots.push(i);
            }
            Decision::Refuse { reason, receipt } => {
                let from = from_peer.unwrap_or("self");
                // Plumtree: a refused message is not asked for again (a
                // graft loop for a message this node will never take).
                // Only a refusal of the message itself: not of an envelope
                // whose signature does not verify (its id may be any, e.g.
                // one announced here and still missing), nor of the chain
                // the peer sent with it (another copy may be admitted).
                if from_peer.is_some()
                    && verified
                    && deferrable(&reason).is_none()
                    && !admission::refuses_the_chain(&reason)
                {
                    node.gossip.refused(&id_hint());
                }
                // A roster message refused (as one a peer floods, or one
                // relayed by a hostile member) is counted and logged like a
                // roster an operator publishes: a fork is an alarm.
                if let Some(r) = crate::domain::roster::refusal_of(&reason) {
                    crate::service::roster::refused(node, &r, from);
                }
                if let (Some(_), Some(retry_after_ms)) = (from_peer, deferrable(&reason)) {
                    node.metrics.defer(reason.label());
                    tracing::info!(from, message_id = %id_hint(), reason = %reason, retry_after_ms, "envelope deferred; the peer keeps it and retries");
                    results[i] = Some(Ingested::Deferred {
                        reason: format!("{} cannot take it yet: {reason}", node.id),
                        retry_after_ms,
                    });
                    continue;
                }
                // A shorter copy of a message held here owes no receipt again.
                if let Some(r) = receipt.filter(|_| !shorter) {
                    node.receipts.push(r);
                }
                node.metrics.reject(reason.label(), exercise);
                if reason == Rejection::BadSignature {
                    node.metrics.signature_failures.inc();
                }
                tracing::warn!(from, message_id = %id_hint(), reason = %reason, "envelope rejected");
                rejections.push(RejectionRow {
                    from_peer: from.to_string(),
                    message_id: id_hint(),
                    reason: reason.to_string(),
                });
                results[i] = Some(Ingested::Rejected(reason));
            }
        }
    }
    Ok(Prepared {
        from_peer: from_peer.map(str::to_string),
        now,
        results,
        rows,
        slots,
        owed,
        rejections,
        tree,
        reach,
        named,
        routing,
        attachments,
        failed: None,
    })
}

/// Queues the commit of a prepared batch (step 2). Batches are stored in the
/// order they are submitted: submit them one after the other, in order. A
/// failure to queue shows in [`Committing::finish`].
pub async fn submit(node: &Node, mut batch: Prepared) -> Committing {
    let rows = std::mem::take(&mut batch.rows);
    let arrivals: Vec<Arrival> = rows
        .iter()
        .zip(std::mem::take(&mut batch.attachments))
        .map(|(r, attachments)| Arrival::of_new(r, 0, attachments))
        .collect();
    let targets: Vec<Vec<String>> = rows.iter().map(|r| r.targets.clone()).collect();
    let facts: Vec<(bool, Option<String>, bool)> = rows
        .iter()
        .map(|r| {
            (
                r.kind == MessageKind::Receipt as i32,
                r.request_id.clone(),
                r.exercise,
            )
        })
        .collect();
    let rosters: Vec<Option<Vec<u8>>> = rows
        .iter()
        .map(|r| (r.kind == MessageKind::Roster as i32).then(|| r.payload.clone()))
        .collect();
    // Receipts are best-effort: losing one in a power failure only leaves the
    // origin showing "relayed" instead of "delivered".
    let only_receipts = rows.iter().all(|r| r.kind == MessageKind::Receipt as i32);
    let durability = if only_receipts {
        Durability::Lazy
    } else {
        Durability::Durable
    };
    let queued = std::time::Instant::now();
    // Opened before the commit is queued (see `Arrivals::open_commit`).
    let ticket = (!rows.is_empty()).then(|| node.arrivals.open_commit());
    let pending = if rows.is_empty() {
        None
    } else {
        Some(match node.store.insert_queued(rows, durability).await {
            Ok(p) => p,
            Err(e) => Box::pin(std::future::ready(Err(e))) as Pending<Vec<Stored>>,
        })
    };
    Committing {
        batch,
        targets,
        facts,
        rosters,
        arrivals,
        pending,
        queued,
        ticket,
    }
}

impl Committing {
    /// Awaits the commit, then queues the receipts owed, wakes the links and
    /// tells Watch (step 3). For a peer's batch, a temporary storage failure
    /// defers every envelope that was to be stored (the refusals stand); for
    /// this node's own messages, and for a failure retrying cannot fix, it is
    /// returned as the error (counted and logged here).
    pub async fn finish(self, node: &Node) -> Result<Vec<Ingested>, StoreError> {
        let Committing {
            batch,
            targets,
            facts,
            rosters,
            arrivals,
            pending,
            queued,
            ticket,
        } = self;
        let Prepared {
            from_peer,
            now,
            mut results,
            slots,
            owed,
            rejections,
            tree,
            reach,
            named,
            routing,
            failed,
            ..
        } = batch;
        let stored = match (failed, pending) {
            (Some(e), _) => Err(e),
            (None, None) => Ok(Vec::new()),
            (None, Some(p)) => p.await,
        };
        node.metrics
            .commit_seconds
            .observe(queued.elapsed().as_secs_f64());
        // The audit trail of refusals must not hold back what was accepted.
        if !rejections.is_empty()
            && let Err(e) = node.store.record_rejections(rejections, now).await
        {
            node.metrics.storage_error(&e);
            tracing::error!(error = %e, "cannot record rejected envelopes in the audit table");
        }
        let stored = match stored {
            Ok(s) => s,
            Err(e) => {
                // Nothing to hand over: a follower waiting for this commit
                // reads the store instead.
                if ticket.is_some() {
                    drop(ticket);
                    node.stored.send_modify(|_| ());
                }
                node.metrics.storage_error(&e);
                let Some(peer) = from_peer.as_deref().filter(|_| e.is_temporary()) else {
                    tracing::error!(from = from_peer.as_deref().unwrap_or("self"), error = %e, "cannot take envelopes");
                    return Err(e);
                };
                tracing::error!(from = peer, envelopes = results.iter().filter(|r| r.is_none()).count(), error = %e, "cannot store envelopes from a peer; they are deferred (the peer keeps them and retries)");
                let reason = format!("{} cannot store messages now: {e}", node.id);
                return Ok(results
                    .into_iter()
                    .map(|r| {
                        r.unwrap_or_else(|| Ingested::Deferred {
                            reason: reason.clone(),
                            retry_after_ms: 0,
                        })
                    })
                    .collect());
            }
        };
        let source = from_peer.as_deref().unwrap_or("self").to_string();
        let sender = from_peer.clone();
        let from_peer = from_peer.is_some();
        let mut tree = tree.into_iter();
        let mut reach = reach.into_iter();
        let mut named = named.into_iter();
        let mut routing = routing.into_iter();
        let mut later = Vec::new();
        let mut not_needed: HashMap<String, Vec<u64>> = HashMap::new();
        let mut reroutes = Vec::new();
        let mut stopped = Vec::new();
        let mut wake = BTreeSet::new();
        let mut new_rosters = Vec::new();
        let mut last_new = 0u64;
        for ((((((slot, s), t), owed), (is_receipt, thread, exercise)), roster), mut arrival) in
            slots
                .into_iter()
                .zip(stored)
                .zip(targets)
                .zip(owed)
                .zip(facts)
                .zip(rosters)
                .zip(arrivals)
        {
            if let Stored::New(c) = &s {
                arrival.cursor = *c;
                node.arrivals.put(arrival);
            }
            let (id, announce, prunable) = tree.next().unwrap_or_default();
            let Routing {
                id: routed_id,
                ways,
                hint,
            } = routing.next().unwrap_or_default();
            match (&s, ways, hint, &sender) {
                (Stored::New(_), Some(ways), _, _) => {
                    node.metrics.named_routed.inc();
                    node.routes
                        .lock()
                        .expect("routes lock")
                        .sent(&routed_id, &ways);
                }
                // The copy that lost the race with another one: it may be
                // needed further (`service::named_again`).
                (Stored::Duplicate, _, Some(hint), Some(p))
                    if node
                        .routes
                        .lock()
                        .expect("routes lock")
                        .routed_here(&routed_id) =>
                {
                    later.push(crate::service::named_again::Later {
                        id: routed_id,
                        sender: p.clone(),
                        hint,
                    });
                }
                _ => {}
            }
            match (named.next().unwrap_or_default(), &s) {
                (Named::Routed { id, toward, parked }, Stored::New(c)) => {
                    let until = now + ROUTE_HOLD_MS;
                    let cursors = parked.iter().map(|p| (p.clone(), *c)).collect();
                    node.routed
                        .lock()
                        .expect("routed lock")
                        .routed(&id, &toward, cursors, until, now);
                    node.gossip.park_due(&parked, until);
                    wake.extend(parked);
                }
                (Named::Receipt { recipient, ids }, Stored::New(_)) => {
                    let done = node
                        .routed
                        .lock()
                        .expect("routed lock")
                        .receipted(&recipient, &ids, now);
                    for (peer, cursor) in done {
                        not_needed.entry(peer).or_default().push(cursor);
                    }
                }
                _ => {}
            }
            match (reach.next().unwrap_or_default(), &s) {
                (Reach::AtLimit(id, len, blocked), Stored::New(_)) => {
                    node.hop_limited
                        .lock()
                        .expect("hop_limited lock")
                        .stopped(&id, len);
                    if !blocked.is_empty() {
                        stopped.push((id, blocked));
                    }
                }
                (
                    Reach::Shorter {
                        id,
                        hops,
                        path,
                        forward_to,
                    },
                    _,
                ) => reroutes.push((id, hops, path, forward_to)),
                _ => {}
            }
            if let Some(r) = roster {
                // Whoever sent a roster message admitted it: it holds that version.
                if from_peer && let Ok(d) = crate::domain::roster::parse(&r) {
                    node.peers.note_roster(&source, d.version());
                }
                if let Stored::New(_) = &s {
                    new_rosters.push(r);
                }
            }
            results[slot] = Some(match s {
                Stored::New(c) => {
                    if from_peer {
                        if is_receipt {
                            node.metrics.receipts_received.inc();
                        } else {
                            node.metrics.count_accepted(exercise);
                        }
                    }
                    if let Some(thread) = thread {
                        node.metrics.assistance_touched(&thread);
                    }
                    if let Some(r) = owed {
                        node.receipts.push(r);
                    }
                    last_new = last_new.max(c);
                    if from_peer && !(t.is_empty() && announce.is_empty()) {
                        node.metrics.count_relayed(exercise);
                    }
                    if let Some((id, origin, way)) = &id
                        && origin.is_empty()
                    {
                        node.gossip
                            .untracked(&node.metrics, sender.as_deref(), id, *way);
                    } else if let Some((id, origin, way)) = &id {
                        node.gossip.stored(
                            &node.metrics,
                            sender.as_deref(),
                            id,
                            origin,
                            *way,
                            &announce,
                            c,
                        );
                    }
                    wake.extend(t);
                    // A lazy peer's link learns when its parked copy is due.
                    wake.extend(announce);
                    Ingested::New(c)
                }
                Stored::Duplicate => {
                    node.metrics.count_duplicate(exercise);
                    if prunable
                        && let (Some(p), Some((id, origin, way))) = (&sender, &id)
                        && !origin.is_empty()
                    {
                        node.gossip.duplicate(&node.metrics, p, id, *way);
                    }
                    Ingested::Duplicate
                }
            });
        }
        // A roster admitted (it follows the held one) is applied once stored;
        // a refusal here (a race with another version) is counted and logged.
        for bytes in new_rosters {
            let _ = crate::service::roster::apply(node, &bytes, &source, now).await;
        }
        // Followers are told of every hand-over, also one below the latest
        // cursor (a commit that finished after a later one's) or of nothing
        // new: one may be waiting for exactly this commit, whose ticket is
        // closed first (`service::arrivals`).
        let handed = ticket.is_some();
        drop(ticket);
        if handed || last_new > 0 {
            node.stored.send_modify(|c| *c = (*c).max(last_new));
        }
        // Copies held back off a route that every recipient confirmed.
        for (peer, cursors) in not_needed {
            let reason = "not sent: every recipient it was routed toward confirmed receipt";
            let state = DeliveryState::NotNeeded;
            let done = drop_parked(node, &peer, cursors, state, reason, now).await;
            node.metrics.named_not_needed.inc_by(done);
        }
        for (id, hops, path, forward_to) in reroutes {
            reach_further(node, &id, hops, path, &forward_to, now).await;
        }
        crate::service::named_again::sent_again(node, later, ROUTE_FRESH_MS, now).await;
        // (After `stored` above: the machine announces the links it came over.)
        for (id, peers) in stopped {
            node.gossip.announce_only(&node.metrics, &id, &peers);
        }
        for peer in wake {
            node.peers.wake(&peer);
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every slot filled"))
            .collect())
    }
}

/// Drops copies parked in `peer`'s outbox (at `cursors`) that will not be
/// sent, recording `state` and `reason` as their delivery; returns how many
/// (0 when the store failed: counted, and the copies go when due).
pub async fn drop_parked(
    node: &Node,
    peer: &str,
    cursors: Vec<u64>,
    state: DeliveryState,
    reason: &str,
    now: i64,
) -> u64 {
    let n = cursors.len() as u64;
    let outcomes = cursors
        .into_iter()
        .map(|cursor| Outcome {
            cursor,
            state,
            reason: reason.into(),
        })
        .collect();
    match node.store.complete_outbox(peer, outcomes, now).await {
        Ok(()) => n,
        Err(e) => {
            node.metrics.storage_error(&e);
            0
        }
    }
}

/// Held message `id`, remembered by [`HopLimited`](crate::domain::hop_limit::HopLimited)
/// (stopped at its hop limit here, or asked for by peers), came again over
/// the shorter `path`: queued with its chain, which replaces the stored
/// chain and path, for `forward_to` (the targets of that path) when it had
/// been stopped here, else for those of them that asked for it. Lazy like
/// reconciliation's queueing: lost only to a power failure within the
/// commit window.
async fn reach_further(
    node: &Node,
    id: &str,
    hops: Vec<u8>,
    path: Vec<Hop>,
    forward_to: &[String],
    now: i64,
) {
    let onward = node
        .hop_limited
        .lock()
        .expect("hop_limited lock")
        .improved(id, path.len());
    // Stopped here: every peer the new path reaches. Only asked for it: the
    // peers that asked (the others got it from here already).
    let mut peers: Vec<&String> = match &onward {
        Some(Onward::Only(askers)) => forward_to.iter().filter(|p| askers.contains(p)).collect(),
        Some(Onward::Every) | None => forward_to.iter().collect(),
    };
    // The shorter chain is stored with the first peer's entry: with no asker
    // among the targets (rare: the asker is on the new path, or still beyond
    // the limit) one target gets a copy anyway, so that what this node holds
    // (and answers requests with) is the shorter way.
    if peers.is_empty()
        && let Some(first) = forward_to.first()
    {
        peers.push(first);
    }
    let mut queued = Vec::new();
    for (k, peer) in peers.into_iter().enumerate() {
        // Every peer's entry carries the chain; the stored one is replaced once.
        let item = Requeue {
            message_id: id.to_string(),
            hops: Some(hops.clone()),
            replaces_stored: (k == 0).then(|| path.clone()),
        };
        match node.store.requeue(peer, vec![item], now).await {
            Ok(0) => {}
            Ok(_) => queued.push(peer.as_str()),
            Err(e) => {
                node.metrics.storage_error(&e);
                tracing::error!(message_id = %id, %peer, error = %e, "cannot queue a message that came over a shorter path; the peer gets it only if another path reaches it");
                break;
            }
        }
    }
    for peer in &queued {
        node.reconcile.requeued(peer).notify_one();
        node.peers.wake(peer);
    }
    if !queued.is_empty() {
        tracing::info!(message_id = %id, peers = ?queued, "a message stopped here at its hop limit, or asked for over fewer links, came again over a shorter path: sent on over it");
    }
}

/// Answers, as [`Ingested::Duplicate`] in `results`, every envelope of a
/// peer whose message id (read from the header, nothing verified, the payload
/// untouched) is already in the store: one index lookup per envelope, done
/// before any verification. Nothing about such an envelope is used, so a
/// forgery that reuses a held id changes nothing. Roster messages always go
/// the whole way (whoever sends one shows which version it holds). Returns
/// the others with their slots and chains. Without a peer, or when the
/// lookup fails, nothing is dropped (the store still deduplicates on insert).
/// A duplicate of a message to named recipients routed from here goes to
/// `later` (`service::named_again`).
async fn drop_held(
    node: &Node,
    sender: Option<&str>,
    envs: Vec<SignedEnvelope>,
    chains: Vec<Custody>,
    headers: &[Option<EnvelopeHeader>],
    results: &mut [Option<Ingested>],
    later: &mut Vec<crate::service::named_again::Later>,
) -> (Vec<usize>, Vec<SignedEnvelope>, Vec<Custody>) {
    let from_peer = sender.is_some();
    let n = envs.len();
    let mut chains = chains;
    chains.resize_with(n, Custody::default);
    let ids: Vec<Option<(&String, bool)>> = headers
        .iter()
        .map(|h| {
            let h = h.as_ref()?;
            let routed = crate::service::tree::tree_routed(h);
            (from_peer && h.kind != MessageKind::Roster as i32 && !h.message_id.is_empty())
                .then_some((&h.message_id, routed))
        })
        .collect();
    let asked: Vec<String> = ids.iter().flatten().map(|(i, _)| (*i).clone()).collect();
    let held = if asked.is_empty() {
        Default::default()
    } else {
        match node.store.held(asked).await {
            Ok(h) => h,
            Err(e) => {
                node.metrics.storage_error(&e);
                Default::default()
            }
        }
    };
    let mut keep = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (i, ((env, mut chain), id)) in envs.into_iter().zip(chains).zip(ids).enumerate() {
        if let Some((id, routed)) = id
            && held.contains(id)
        {
            // Held, but at its hop limit: a copy over a shorter path (its
            // length read from the unverified chain; admission verifies it)
            // goes the whole way to forward the message further.
            if !chain.returning
                && node
                    .hop_limited
                    .lock()
                    .expect("hop_limited lock")
                    .shorter(id, chain.hops.len() + 1)
            {
                chain.shorter = true;
                keep.0.push(i);
                keep.1.push(env);
                keep.2.push(chain);
                continue;
            }
            node.metrics.count_duplicate(
                headers
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(|h| h.exercise),
            );
            // Routed from here (to named recipients): it may be needed
            // further (not for a copy sent back or again on purpose).
            if let (false, false, false, Some(p)) = (routed, chain.returning, chain.resent, sender)
                && node.gossip.enabled()
                && node.routes.lock().expect("routes lock").routed_here(id)
            {
                later.push(crate::service::named_again::Later {
                    id: id.clone(),
                    sender: p.to_string(),
                    hint: std::mem::take(&mut chain.toward),
                });
            }
            // Plumtree: that link was not needed for it (unless the peer
            // sends it back on purpose, after reconciliation).
            if let (true, false, Some(p)) = (routed, chain.returning || chain.resent, sender) {
                let way = u32::try_from(chain.hops.len() + 1).unwrap_or(u32::MAX);
                node.gossip.duplicate(&node.metrics, p, id, way);
            }
            results[i] = Some(Ingested::Duplicate);
            continue;
        }
        keep.0.push(i);
        keep.1.push(env);
        keep.2.push(chain);
    }
    keep
}

/// For each verified receipt in the batch, its reverse-path route, found from
/// the first message it reports on that this node holds. Receipts about
/// messages this node does not hold are routed like other messages.
async fn receipt_routes(
    node: &Node,
    envs: &[SignedEnvelope],
    verdicts: &[Result<Verified, Rejection>],
) -> Result<HashMap<String, ReceiptRoute>, StoreError> {
    let mut routes = HashMap::new();
    for (env, v) in envs.iter().zip(verdicts) {
        let Ok(v) = v else { continue };
        if v.header.kind != MessageKind::Receipt as i32 || v.header.encrypted {
            continue;
        }
        let Ok(r) = Receipt::decode(env.payload.as_slice()) else {
            continue;
        };
        let Some(first) = r.message_ids.first() else {
            continue;
        };
        if let Some(m) = node.store.get_message(first).await? {
            let route = match m.from_peer {
                None => ReceiptRoute::Destination,
                Some(p) => ReceiptRoute::Next(p),
            };
            routes.insert(v.header.message_id.clone(), route);
        }
    }
    Ok(routes)
}

/// Best-effort message id of an envelope for logs, from its header as
/// decoded (unverified: it may be forged).
fn header_id_hint(header: Option<&EnvelopeHeader>) -> String {
    header.map_or_else(
        || "<undecodable>".into(),
        |h| header_id_hint_of(&h.message_id),
    )
}

/// A message id for a log line: its first 64 characters.
fn header_id_hint_of(id: &str) -> String {
    id.chars().take(64).collect()
}

/// A message this node is about to sign and send.
pub struct Outgoing {
    pub kind: MessageKind,
    pub tlp: Tlp,
    pub recipients: Vec<String>,
    pub expires_ms: Option<i64>,
    pub exercise: bool,
    /// Creation time to sign with (default: now).
    pub created_ms: Option<i64>,
    /// The serialized payload, in clear.
    pub payload: Vec<u8>,
}

/// Why this node could not originate a message.
#[derive(Debug, thiserror::Error)]
pub enum OriginateError {
    #[error("{0}")]
    Rejected(Rejection),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot encrypt for the recipients: {0}")]
    Seal(String),
}

impl ServiceError for OriginateError {
    fn kind(&self) -> ErrorKind {
        match self {
            OriginateError::Rejected(_) => ErrorKind::InvalidArgument,
            OriginateError::Seal(_) => ErrorKind::FailedPrecondition,
            OriginateError::Store(s) => s.kind(),
        }
    }
}

/// Signs a message as this node and takes it through ingest (store + outbox
/// rows in one commit). TLP:AMBER and above are end-to-end encrypted for the
/// recipients (and this node, so it can read its own copy). Returns the id.
pub async fn originate(node: &Node, out: Outgoing) -> Result<(String, u64), OriginateError> {
    originate_as(node, out, uuid::Uuid::now_v7().to_string()).await
}

/// [`originate`] with a message id chosen beforehand (a UUIDv7), so that an
/// idempotent action can record the id before it signs (`service::requests`).
pub async fn originate_as(
    node: &Node,
    out: Outgoing,
    message_id: String,
) -> Result<(String, u64), OriginateError> {
    originate_in_incident(node, out, message_id, String::new()).await
}

/// [`originate_as`] for a message that belongs to incident `incident_id`
/// (empty: none), named in the signed header (`service::incidents`).
pub async fn originate_in_incident(
    node: &Node,
    out: Outgoing,
    message_id: String,
    incident_id: String,
) -> Result<(String, u64), OriginateError> {
    originate_with_attachments(node, out, message_id, incident_id, Vec::new()).await
}

/// Attachments uploaded and verified, ready to join a message
/// (`service::attachments::Uploaded`).
#[async_trait::async_trait]
pub trait Attach: Send {
    /// Whether they were encrypted (for a TLP:AMBER+ message).
    fn encrypted(&self) -> bool;
    /// Puts the files in place under `message_id`; returns the manifests for
    /// the payload, the blobs for the signed header and the folder (removed
    /// again if the message is not stored after all).
    async fn place(
        self: Box<Self>,
        node: &Node,
        message_id: &str,
    ) -> Result<
        (
            crate::proto::v1::AttachmentList,
            Vec<crate::proto::v1::AttachmentBlob>,
            std::path::PathBuf,
        ),
        String,
    >;
}

/// Why [`originate_attached`] refused or failed.
#[derive(Debug)]
pub enum AttachedError {
    /// The attachments were encrypted (or not) for another TLP than the
    /// message's: the caller names its field.
    WrongTlp,
    /// They could not be put in place under the message id.
    Place(String),
    Originate(OriginateError),
}

/// [`originate_with_attachments`] for attachments uploaded and verified
/// (`None`: a message without): checks they were encrypted for the message's
/// TLP, puts them in place under `message_id`, adds their manifests to the
/// payload and their stored forms to the signed header, and signs; the files
/// are removed again if the message is not stored. Alerts, assistance steps
/// and sightings all publish through here.
pub async fn originate_attached(
    node: &Node,
    mut out: Outgoing,
    message_id: String,
    incident_id: String,
    attached: Option<Box<dyn Attach>>,
) -> Result<(String, u64), AttachedError> {
    let Some(up) = attached else {
        return originate_with_attachments(node, out, message_id, incident_id, Vec::new())
            .await
            .map_err(AttachedError::Originate);
    };
    if up.encrypted() != crate::domain::policy::requires_e2e(out.tlp) {
        return Err(AttachedError::WrongTlp);
    }
    let (list, blobs, dir) = up
        .place(node, &message_id)
        .await
        .map_err(AttachedError::Place)?;
    out.payload.extend_from_slice(&list.encode_to_vec());
    match originate_with_attachments(node, out, message_id, incident_id, blobs).await {
        Ok(x) => Ok(x),
        Err(e) => {
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
            Err(AttachedError::Originate(e))
        }
    }
}

/// [`originate_in_incident`] for a message with attachments: `attachments`
/// are their stored forms (`domain::attachment`), signed into the header; the
/// payload already lists their manifests and the files are in place.
pub async fn originate_with_attachments(
    node: &Node,
    out: Outgoing,
    message_id: String,
    incident_id: String,
    attachments: Vec<crate::proto::v1::AttachmentBlob>,
) -> Result<(String, u64), OriginateError> {
    let kind = out.kind;
    let exercise = out.exercise;
    let encrypted = crate::domain::policy::requires_e2e(out.tlp);
    let payload = if encrypted {
        let mut to = out.recipients.clone();
        if !to.contains(&node.id) {
            to.push(node.id.clone());
        }
        crate::domain::e2e::seal(&out.payload, &message_id, &to, &node.keys())
            .map_err(OriginateError::Seal)?
    } else {
        out.payload
    };
    let signer = node.signer();
    let env = crate::domain::envelope::seal_with_attachments(
        &signer,
        Draft {
            message_id: message_id.clone(),
            kind: out.kind,
            tlp: out.tlp,
            recipients: out.recipients,
            created_ms: out.created_ms.unwrap_or_else(now_ms),
            expires_ms: out.expires_ms,
            hop_limit: node.cfg.limits.hop_limit,
            exercise: out.exercise,
            encrypted,
            payload,
        },
        incident_id,
        attachments,
    );
    match ingest_own(node, env, signer.verifying_key()).await?.pop() {
        Some(Ingested::New(cursor)) => {
            if kind == MessageKind::Receipt {
                node.metrics.receipts_sent.inc();
            } else {
                node.metrics.count_published(exercise);
            }
            Ok((message_id, cursor))
        }
        Some(Ingested::Rejected(r)) => Err(OriginateError::Rejected(r)),
        other => Err(OriginateError::Store(StoreError::Invalid(format!(
            "unexpected outcome for a new message: {other:?}"
        )))),
    }
}
