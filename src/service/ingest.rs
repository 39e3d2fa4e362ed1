//! The one path every message takes into the store, for envelopes pushed by
//! peers and for messages this node signs: verify signatures (off the async
//! workers), look up what admission needs from the store, let the pure
//! `domain::admission::admit` decide, then store each admitted row with its
//! outbox rows in one commit, queue the receipts owed, wake the links and tell
//! Watch. Refusals are logged, counted and recorded for audit.
use crate::domain::admission::{self, Decision, Input, ReceiptRoute, View};
use crate::domain::envelope::{Draft, Rejection, Verified, seal_in_incident, verify_batch};
use crate::proto::v1::{EnvelopeHeader, MessageKind, Receipt, SignedEnvelope, SignedHop, Tlp};
use crate::service::node::Node;
use crate::service::{ErrorKind, ServiceError, now_ms};
use crate::storage::{Durability, Hop, NewMessage, ReceiptRows, RejectionRow, StoreError, Stored};
use prost::Message;
use std::collections::{BTreeSet, HashMap};

/// Outcome of ingesting one envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    New(u64),
    Duplicate,
    Rejected(Rejection),
}

/// The storage row for an admitted message.
fn to_row(a: admission::Admitted) -> NewMessage {
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
        hops: a.hops,
        incident_id: a.incident.incident_id,
        keys: a.incident.keys,
    }
}

/// Verifies, admits and stores a batch of envelopes from `from_peer` (or from
/// this node when `None`), in one commit. `chains[i]` is the chain of custody
/// the peer reported for `envs[i]` (ignored for this node's own messages).
/// Results are in input order.
pub async fn ingest(
    node: &Node,
    from_peer: Option<&str>,
    envs: Vec<SignedEnvelope>,
    chains: Vec<Vec<SignedHop>>,
) -> Result<Vec<Ingested>, StoreError> {
    let now = now_ms();
    let keys = node.keys();
    let limits = node.verify_limits();
    let n = envs.len();
    if from_peer.is_some() {
        node.metrics.received.inc_by(n as u64);
    }
    // Signature checks are CPU work: keep them off the async workers.
    let verify_keys = keys.clone();
    let (envs, verdicts) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&SignedEnvelope> = envs.iter().collect();
        let v = verify_batch(&verify_keys, &refs, now, &limits);
        (envs, v)
    })
    .await
    .map_err(|e| StoreError::Invalid(format!("verification task failed: {e}")))?;

    let mut routes = receipt_routes(node, &envs, &verdicts).await?;
    let peers = node.peers.policies();
    let view = View {
        me: &node.id,
        signer: &node.signer,
        keys: &keys,
        peers: &peers,
        max_message_bytes: node.cfg.limits.max_message_bytes,
    };
    let mut results: Vec<Option<Ingested>> = vec![None; n];
    let mut rows = Vec::with_capacity(n);
    let mut slots = Vec::with_capacity(n);
    let mut owed = Vec::with_capacity(n);
    let mut rejections = Vec::new();
    let mut chains = chains.into_iter();
    for (i, (envelope, verdict)) in envs.into_iter().zip(verdicts).enumerate() {
        let id_hint = header_id_hint(&envelope);
        let receipt_route = verdict
            .as_ref()
            .ok()
            .and_then(|v| routes.remove(&v.header.message_id));
        let input = Input {
            envelope,
            verdict,
            from_peer,
            chain: chains.next().unwrap_or_default(),
            receipt_route,
        };
        match admission::admit(&view, input, now) {
            Decision::Admit(mut row) => {
                owed.push(row.receipt_owed.take());
                rows.push(to_row(*row));
                slots.push(i);
            }
            Decision::Refuse { reason, receipt } => {
                if let Some(r) = receipt {
                    node.receipts.push(r);
                }
                node.metrics.reject(reason.label());
                if reason == Rejection::BadSignature {
                    node.metrics.signature_failures.inc();
                }
                let from = from_peer.unwrap_or("self");
                tracing::warn!(from, message_id = %id_hint, reason = %reason, "envelope rejected");
                rejections.push(RejectionRow {
                    from_peer: from.to_string(),
                    message_id: id_hint,
                    reason: reason.to_string(),
                });
                results[i] = Some(Ingested::Rejected(reason));
            }
        }
    }
    let targets: Vec<Vec<String>> = rows.iter().map(|r| r.targets.clone()).collect();
    // For metrics: receipts are counted apart, and assistance threads that got
    // a step are replayed at the next scrape (materialised counts).
    let facts: Vec<(bool, Option<String>)> = rows
        .iter()
        .map(|r| (r.kind == MessageKind::Receipt as i32, r.request_id.clone()))
        .collect();
    let started = std::time::Instant::now();
    // Receipts are best-effort: losing one in a power failure only leaves the
    // origin showing "relayed" instead of "delivered".
    let only_receipts = rows.iter().all(|r| r.kind == MessageKind::Receipt as i32);
    let durability = if only_receipts {
        Durability::Lazy
    } else {
        Durability::Durable
    };
    let stored = if rows.is_empty() {
        Vec::new()
    } else {
        node.store
            .insert(rows, durability)
            .await
            .inspect_err(|e| node.metrics.storage_error(e))?
    };
    node.metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    // The audit trail of refusals must not hold back what was accepted.
    if !rejections.is_empty()
        && let Err(e) = node.store.record_rejections(rejections, now).await
    {
        tracing::error!(error = %e, "cannot record rejected envelopes in the audit table");
    }
    let mut wake = BTreeSet::new();
    for ((((slot, s), t), owed), (is_receipt, thread)) in slots
        .into_iter()
        .zip(stored)
        .zip(targets)
        .zip(owed)
        .zip(facts)
    {
        results[slot] = Some(match s {
            Stored::New(c) => {
                if from_peer.is_some() {
                    if is_receipt {
                        node.metrics.receipts_received.inc();
                    } else {
                        node.metrics.accepted.inc();
                    }
                }
                if let Some(thread) = thread {
                    node.metrics.assistance_touched(&thread);
                }
                if let Some(r) = owed {
                    node.receipts.push(r);
                }
                let _ = node.stored.send(c);
                if from_peer.is_some() && !t.is_empty() {
                    node.metrics.relayed.inc();
                }
                wake.extend(t);
                Ingested::New(c)
            }
            Stored::Duplicate => {
                node.metrics.duplicates.inc();
                Ingested::Duplicate
            }
        });
    }
    for peer in wake {
        node.peers.wake(&peer);
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every slot filled"))
        .collect())
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

/// Best-effort message id of an envelope for logs (the header may be forged).
fn header_id_hint(env: &SignedEnvelope) -> String {
    EnvelopeHeader::decode(env.header.as_slice())
        .map(|h| h.message_id.chars().take(64).collect())
        .unwrap_or_else(|_| "<undecodable>".into())
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
    let kind = out.kind;
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
    let env = seal_in_incident(
        &node.signer,
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
    );
    match ingest(node, None, vec![env], vec![]).await?.pop() {
        Some(Ingested::New(cursor)) => {
            if kind == MessageKind::Receipt {
                node.metrics.receipts_sent.inc();
            } else {
                node.metrics.published.inc();
            }
            Ok((message_id, cursor))
        }
        Some(Ingested::Rejected(r)) => Err(OriginateError::Rejected(r)),
        other => Err(OriginateError::Store(StoreError::Invalid(format!(
            "unexpected outcome for a new message: {other:?}"
        )))),
    }
}
