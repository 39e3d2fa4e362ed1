//! The one path every message takes into the store: verify, validate, apply
//! distribution policy, pick the peers to queue it for, and store it with its
//! outbox rows in one transaction. Used for messages this node signs and for
//! envelopes pushed by peers.
use super::receipts::ReceiptJob;
use super::{NodeCtx, now_ms};
use crate::domain::alert::{Limits, validate_alert};
use crate::domain::custody::{path_of, sign_hop, verify_chain};
use crate::domain::envelope::{Rejection, Verified, ts_to_ms, verify_batch};
use crate::domain::policy::{Outbound, PeerPolicy, Route, route_to_peer};
use crate::proto::v1::ReceiptState;
use crate::proto::v1::{Alert, MessageKind, SignedEnvelope, Tlp};
use crate::proto::v1::{HopChain, HopRecord, SignedHop};
use crate::storage::StoreError;
use crate::storage::messages::{Hop, NewMessage, ReceiptRows, Stored};
use prost::Message;

/// Outcome of ingesting one envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    New(u64),
    Duplicate,
    Rejected(Rejection),
}

/// Sector bitmask for listing filters.
pub fn sectors_mask(sectors: &[i32]) -> i64 {
    sectors
        .iter()
        .filter(|s| (1..63).contains(*s))
        .fold(0i64, |m, s| m | (1i64 << s))
}

fn alert_limits(ctx: &NodeCtx) -> Limits {
    Limits {
        max_message_bytes: ctx.cfg.limits.max_message_bytes,
        ..Limits::default()
    }
}

/// The peers a message goes to from this node. Nothing is forwarded once the
/// next hop would exceed the signed hop limit.
pub fn targets(
    ctx: &NodeCtx,
    origin: &str,
    tlp: Tlp,
    recipients: &[String],
    path: &[Hop],
    hop_limit: u32,
    end_to_end: bool,
) -> Vec<String> {
    // The path the next node will see ends with this node.
    let next_len = if origin == ctx.id {
        path.len()
    } else {
        path.len() + 1
    };
    if next_len as u64 > u64::from(hop_limit) {
        return Vec::new();
    }
    let path_ids: Vec<String> = path.iter().map(|h| h.node.clone()).collect();
    let msg = Outbound {
        tlp,
        origin,
        recipients,
        path: &path_ids,
        end_to_end,
    };
    ctx.links
        .peers()
        .iter()
        .filter_map(|p| {
            let policy = PeerPolicy {
                max_tlp: crate::domain::alert::parse_tlp(&p.max_tlp).unwrap_or(Tlp::Clear),
                relay: p.relay,
            };
            match route_to_peer(&msg, &ctx.id, &p.id, &policy) {
                Route::Send => Some(p.id.clone()),
                Route::Skip(reason) => {
                    tracing::debug!(peer = %p.id, %reason, "not routed to peer");
                    None
                }
            }
        })
        .collect()
}

/// Checks the chain of custody a peer sends with a message (see
/// `domain::custody::verify_chain`), that this node is not already on it (a
/// loop) and that it is within the signed hop limit; returns the path it proves.
fn check_chain(
    ctx: &NodeCtx,
    h: &crate::proto::v1::EnvelopeHeader,
    created: i64,
    from_peer: &str,
    hops: &[SignedHop],
) -> Result<Vec<Hop>, Rejection> {
    let records = verify_chain(&ctx.keys(), &h.origin, &h.message_id, from_peer, hops)
        .map_err(|e| Rejection::Malformed(format!("chain of custody: {e}")))?;
    let path: Vec<Hop> = path_of(&h.origin, created, &records)
        .into_iter()
        .map(|(node, at_ms)| Hop { node, at_ms })
        .collect();
    if path.iter().any(|p| p.node == ctx.id) {
        return Err(Rejection::Policy(format!(
            "loop: {} is already on the path",
            ctx.id
        )));
    }
    if path.len() as u64 > u64::from(h.hop_limit) {
        return Err(Rejection::Policy(format!(
            "hop limit exceeded: {} hops taken, the origin allowed {}",
            path.len(),
            h.hop_limit
        )));
    }
    Ok(path)
}

/// What this node learns from a payload it can read.
#[derive(Default)]
struct Parsed {
    severity: i32,
    sectors: i64,
    supersedes: Option<String>,
    request_id: Option<String>,
    receipt: Option<crate::proto::v1::Receipt>,
}

/// Most message ids one receipt may cover.
pub const MAX_RECEIPT_IDS: usize = 4096;

fn invalid(what: &str, e: impl std::fmt::Display) -> Rejection {
    Rejection::InvalidPayload(format!("{what} does not decode: {e}"))
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// Decodes and validates a readable payload according to its kind.
fn parse_body(
    ctx: &NodeCtx,
    h: &crate::proto::v1::EnvelopeHeader,
    body: &[u8],
    created: i64,
) -> Result<Parsed, Rejection> {
    use crate::proto::v1::{AssistanceRequest, DecisionMessage, OfferMessage, StatusMessage};
    let request_ref = |id: &str| {
        if is_uuid(id) {
            Ok(Some(id.to_string()))
        } else {
            Err(Rejection::InvalidPayload(format!(
                "request_id {id:?} is not a message id"
            )))
        }
    };
    match MessageKind::try_from(h.kind) {
        Ok(MessageKind::Alert) => {
            let alert = Alert::decode(body).map_err(|e| invalid("alert", e))?;
            validate_alert(&alert, created, body.len(), &alert_limits(ctx))
                .map_err(|e| Rejection::InvalidPayload(e.to_string()))?;
            if alert.tlp != h.tlp {
                return Err(Rejection::InvalidPayload(
                    "alert.tlp differs from the signed envelope's TLP".into(),
                ));
            }
            if alert.exercise != h.exercise {
                return Err(Rejection::InvalidPayload(
                    "alert.exercise differs from the signed envelope's exercise flag".into(),
                ));
            }
            Ok(Parsed {
                severity: alert.severity,
                sectors: sectors_mask(&alert.sectors),
                supersedes: (!alert.supersedes.is_empty()).then(|| alert.supersedes.clone()),
                ..Parsed::default()
            })
        }
        Ok(MessageKind::AssistanceRequest) => {
            let r =
                AssistanceRequest::decode(body).map_err(|e| invalid("assistance request", e))?;
            crate::domain::assistance::validate_request(&r, created)
                .map_err(|e| Rejection::InvalidPayload(e.to_string()))?;
            if r.tlp != h.tlp {
                return Err(Rejection::InvalidPayload(
                    "request.tlp differs from the signed envelope's TLP".into(),
                ));
            }
            Ok(Parsed {
                severity: r.severity,
                sectors: sectors_mask(&[r.sector]),
                request_id: Some(h.message_id.clone()),
                ..Parsed::default()
            })
        }
        Ok(MessageKind::Offer) => {
            let o = OfferMessage::decode(body).map_err(|e| invalid("offer", e))?;
            if let Some(offer) = &o.offer {
                crate::domain::assistance::validate_offer(offer)
                    .map_err(|e| Rejection::InvalidPayload(e.to_string()))?;
            } else {
                return Err(Rejection::InvalidPayload("offer: required".into()));
            }
            Ok(Parsed {
                request_id: request_ref(&o.request_id)?,
                ..Parsed::default()
            })
        }
        Ok(MessageKind::Decision) => {
            let d = DecisionMessage::decode(body).map_err(|e| invalid("decision", e))?;
            Ok(Parsed {
                request_id: request_ref(&d.request_id)?,
                ..Parsed::default()
            })
        }
        Ok(MessageKind::Status) => {
            let st = StatusMessage::decode(body).map_err(|e| invalid("status", e))?;
            Ok(Parsed {
                request_id: request_ref(&st.request_id)?,
                ..Parsed::default()
            })
        }
        Ok(MessageKind::Receipt) => {
            let r = crate::proto::v1::Receipt::decode(body).map_err(|e| invalid("receipt", e))?;
            if h.recipients.len() != 1 {
                return Err(Rejection::InvalidPayload(
                    "a receipt is addressed to exactly one node, the origin".into(),
                ));
            }
            if r.message_ids.is_empty() || r.message_ids.len() > MAX_RECEIPT_IDS {
                return Err(Rejection::InvalidPayload(format!(
                    "receipt.message_ids: 1 to {MAX_RECEIPT_IDS} ids"
                )));
            }
            if let Some(bad) = r.message_ids.iter().find(|id| !is_uuid(id)) {
                return Err(Rejection::InvalidPayload(format!(
                    "receipt.message_ids: {bad:?} is not a message id"
                )));
            }
            match crate::proto::v1::ReceiptState::try_from(r.state) {
                Ok(crate::proto::v1::ReceiptState::Unspecified) | Err(_) => {
                    return Err(Rejection::InvalidPayload("receipt.state: unknown".into()));
                }
                Ok(_) => {}
            }
            Ok(Parsed {
                receipt: Some(r),
                ..Parsed::default()
            })
        }
        _ => Err(Rejection::Policy(format!(
            "message kind {} is not accepted by this node version",
            h.kind
        ))),
    }
}

/// Checks a verified envelope against this node's right to hold it and, where
/// this node can read it, its payload; builds the row to store.
fn admit(
    ctx: &NodeCtx,
    env: SignedEnvelope,
    v: Verified,
    from_peer: Option<&str>,
    mut hops: Vec<SignedHop>,
    reverse: Option<&ReceiptRoute>,
    now: i64,
) -> Result<NewMessage, Rejection> {
    let h = v.header;
    let tlp = Tlp::try_from(h.tlp).map_err(|_| Rejection::Malformed("unknown TLP".into()))?;
    let label = crate::domain::alert::tlp_label(tlp);
    let restricted = matches!(tlp, Tlp::Amber | Tlp::AmberStrict | Tlp::Red);
    if restricted && h.recipients.is_empty() {
        return Err(Rejection::Policy(format!(
            "{label} may not be broadcast; it needs named recipients"
        )));
    }
    if restricted && !h.encrypted {
        return Err(Rejection::Policy(format!(
            "{label} payloads must be end-to-end encrypted for their recipients"
        )));
    }
    let is_recipient = h.origin == ctx.id || h.recipients.iter().any(|r| r == &ctx.id);
    let plain = if h.encrypted && is_recipient {
        Some(
            crate::domain::e2e::open(&env.payload, &h.message_id, &ctx.signer)
                .map_err(|e| Rejection::InvalidPayload(format!("cannot decrypt: {e}")))?,
        )
    } else {
        None
    };
    let readable = !h.encrypted || plain.is_some();
    let created = h.created.as_ref().map(ts_to_ms).unwrap_or(now);
    let parsed = if readable {
        let body = plain.as_deref().unwrap_or(&env.payload);
        parse_body(ctx, &h, body, created)?
    } else {
        // A relay for a message it cannot read: route on the signed header only.
        Parsed::default()
    };
    let path = match from_peer {
        Some(peer) => check_chain(ctx, &h, created, peer, &hops)?,
        None => vec![Hop {
            node: h.origin.clone(),
            at_ms: created,
        }],
    };
    let targets = match reverse {
        // Receipts go back the way the messages came, not by flooding.
        Some(ReceiptRoute::Destination) => Vec::new(),
        Some(ReceiptRoute::Next(peer)) if !path.iter().any(|p| &p.node == peer) => {
            vec![peer.clone()]
        }
        _ => targets(
            ctx,
            &h.origin,
            tlp,
            &h.recipients,
            &path,
            h.hop_limit,
            h.encrypted,
        ),
    };
    if let Some(peer) = from_peer
        && !targets.is_empty()
    {
        let decision = if h.encrypted && !is_recipient {
            format!(
                "relayed {label} ciphertext toward its recipients (not a recipient; cannot read)"
            )
        } else if h.recipients.is_empty() {
            format!("relayed {label} broadcast")
        } else {
            format!("relayed {label} toward its recipients")
        };
        hops.push(sign_hop(
            &ctx.signer,
            HopRecord {
                message_id: h.message_id.clone(),
                received_from: peer.to_string(),
                received_at: Some(crate::domain::envelope::ms_to_ts(now)),
                forwarded_to: targets.clone(),
                decision,
                ..Default::default()
            },
        ));
    }
    let receipt = parsed
        .receipt
        .filter(|_| h.recipients.iter().any(|r| r == &ctx.id))
        .map(|r| ReceiptRows {
            me: ctx.id.clone(),
            from: h.origin.clone(),
            ids: r.message_ids,
            state: r.state,
            reason: r.reason,
            at_ms: created,
        });
    Ok(NewMessage {
        message_id: h.message_id,
        origin: h.origin,
        kind: h.kind,
        tlp: h.tlp,
        severity: parsed.severity,
        sectors_mask: parsed.sectors,
        exercise: h.exercise,
        created_ms: created,
        expires_ms: h.expires.as_ref().map(ts_to_ms),
        received_ms: now,
        from_peer: from_peer.map(str::to_string),
        path,
        header: env.header,
        payload: env.payload,
        signature: env.signature,
        targets,
        supersedes: parsed.supersedes,
        readable,
        plain,
        request_id: parsed.request_id,
        receipt,
        hops: HopChain { hops }.encode_to_vec(),
    })
}

/// Verifies, admits and stores a batch of envelopes from `from_peer` (or from
/// this node when `None`), in one commit. `chains[i]` is the chain of custody the peer
/// reported for `envs[i]` (ignored for this node's own messages). Results are in
/// input order.
pub async fn ingest(
    ctx: &NodeCtx,
    from_peer: Option<&str>,
    envs: Vec<SignedEnvelope>,
    chains: Vec<Vec<SignedHop>>,
) -> Result<Vec<Ingested>, StoreError> {
    let now = now_ms();
    let keys = ctx.keys();
    let limits = ctx.verify_limits();
    let n = envs.len();
    if from_peer.is_some() {
        ctx.metrics.received.inc_by(n as u64);
    }
    // Signature checks are CPU work: keep them off the async workers.
    let (envs, verdicts) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&SignedEnvelope> = envs.iter().collect();
        let v = verify_batch(&keys, &refs, now, &limits);
        (envs, v)
    })
    .await
    .map_err(|e| StoreError::Io(format!("verification task failed: {e}")))?;

    let receipt_routes = receipt_routes(ctx, &envs, &verdicts).await?;
    let mut results: Vec<Option<Ingested>> = vec![None; n];
    let mut rows = Vec::with_capacity(n);
    let mut slots = Vec::with_capacity(n);
    let mut rejections = Vec::new();
    let mut chains = chains.into_iter();
    // Per stored row: the receipt owed to its origin, if any.
    let mut owed: Vec<Option<(String, String)>> = Vec::with_capacity(n);
    for (i, (env, verdict)) in envs.into_iter().zip(verdicts).enumerate() {
        let id_hint = header_id_hint(&env);
        let chain = chains.next().unwrap_or_default();
        let receipt_to = match (&verdict, from_peer) {
            (Ok(v), Some(_)) if owes_receipt(ctx, &v.header) => {
                Some((v.header.origin.clone(), v.header.message_id.clone()))
            }
            _ => None,
        };
        let reverse = verdict
            .as_ref()
            .ok()
            .and_then(|v| receipt_routes.get(&v.header.message_id));
        match verdict.and_then(|v| admit(ctx, env, v, from_peer, chain, reverse, now)) {
            Ok(row) => {
                owed.push(receipt_to.filter(|_| row.readable));
                rows.push(row);
                slots.push(i);
            }
            Err(r) => {
                if let (Some((origin, id)), Rejection::Policy(_) | Rejection::InvalidPayload(_)) =
                    (receipt_to, &r)
                {
                    ctx.receipts.push(ReceiptJob {
                        origin,
                        message_id: id,
                        state: ReceiptState::Rejected,
                        reason: r.to_string(),
                    });
                }
                ctx.metrics.reject(r.label());
                if r == Rejection::BadSignature {
                    ctx.metrics.signature_failures.inc();
                }
                tracing::warn!(from = from_peer.unwrap_or("self"), message_id = %id_hint, reason = %r, "envelope rejected");
                rejections.push((
                    from_peer.unwrap_or("self").to_string(),
                    id_hint,
                    r.to_string(),
                ));
                results[i] = Some(Ingested::Rejected(r));
            }
        }
    }
    let targets: Vec<Vec<String>> = rows.iter().map(|r| r.targets.clone()).collect();
    let started = std::time::Instant::now();
    let only_receipts = rows.iter().all(|r| r.kind == MessageKind::Receipt as i32);
    let stored = if rows.is_empty() {
        Vec::new()
    } else if only_receipts {
        ctx.store.insert_lazy(rows).await?
    } else {
        ctx.store.insert(rows).await?
    };
    ctx.metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    // The audit trail of refusals must not hold back what was accepted.
    if !rejections.is_empty()
        && let Err(e) = ctx.store.record_rejections(rejections, now).await
    {
        tracing::error!(error = %e, "cannot record rejected envelopes in the audit table");
    }
    let mut wake = std::collections::BTreeSet::new();
    for (((slot, s), t), owed) in slots.into_iter().zip(stored).zip(targets).zip(owed) {
        results[slot] = Some(match s {
            Stored::New(c) => {
                if from_peer.is_some() {
                    ctx.metrics.accepted.inc();
                }
                if let Some((origin, message_id)) = owed {
                    ctx.receipts.push(ReceiptJob {
                        origin,
                        message_id,
                        state: ReceiptState::Delivered,
                        reason: String::new(),
                    });
                }
                let _ = ctx.stored.send(c);
                if from_peer.is_some() && !t.is_empty() {
                    ctx.metrics.relayed.inc();
                }
                wake.extend(t);
                Ingested::New(c)
            }
            Stored::Duplicate => {
                ctx.metrics.duplicates.inc();
                Ingested::Duplicate
            }
        });
    }
    for peer in wake {
        ctx.links.wake(&peer);
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every slot filled"))
        .collect())
}

/// Where a receipt goes next from this node.
pub enum ReceiptRoute {
    /// This node originated the messages: the receipt has arrived.
    Destination,
    /// Back to the peer this node received the messages from.
    Next(String),
}

/// For each verified receipt in the batch, its reverse-path route, found from
/// the first message it reports on that this node holds. Receipts about
/// messages this node does not hold are routed like other messages.
async fn receipt_routes(
    ctx: &NodeCtx,
    envs: &[SignedEnvelope],
    verdicts: &[Result<crate::domain::envelope::Verified, Rejection>],
) -> Result<std::collections::HashMap<String, ReceiptRoute>, StoreError> {
    let mut routes = std::collections::HashMap::new();
    for (env, v) in envs.iter().zip(verdicts) {
        let Ok(v) = v else { continue };
        if v.header.kind != MessageKind::Receipt as i32 || v.header.encrypted {
            continue;
        }
        let Ok(r) = crate::proto::v1::Receipt::decode(env.payload.as_slice()) else {
            continue;
        };
        let Some(first) = r.message_ids.first() else {
            continue;
        };
        if let Some(m) = ctx.store.get_message(first.clone()).await? {
            let route = match m.from_peer {
                None => ReceiptRoute::Destination,
                Some(p) => ReceiptRoute::Next(p),
            };
            routes.insert(v.header.message_id.clone(), route);
        }
    }
    Ok(routes)
}

/// Whether this node owes the origin a receipt for a verified message: it is
/// addressed to this node (or to everyone), it is not this node's own, and it
/// is not itself a receipt.
fn owes_receipt(ctx: &NodeCtx, h: &crate::proto::v1::EnvelopeHeader) -> bool {
    h.origin != ctx.id
        && h.kind != MessageKind::Receipt as i32
        && (h.recipients.is_empty() || h.recipients.iter().any(|r| r == &ctx.id))
}

/// Best-effort message id of an envelope for logs (the header may be forged).
fn header_id_hint(env: &SignedEnvelope) -> String {
    crate::proto::v1::EnvelopeHeader::decode(env.header.as_slice())
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

/// Signs a message as this node and takes it through ingest (store + outbox
/// rows in one commit). TLP:AMBER and above are end-to-end encrypted for the
/// recipients (and this node, so it can read its own copy). Returns the id.
pub async fn originate(ctx: &NodeCtx, out: Outgoing) -> Result<(String, u64), OriginateError> {
    let message_id = uuid::Uuid::now_v7().to_string();
    let kind = out.kind;
    let encrypted = matches!(out.tlp, Tlp::Amber | Tlp::AmberStrict | Tlp::Red);
    let payload = if encrypted {
        let mut to = out.recipients.clone();
        if !to.contains(&ctx.id) {
            to.push(ctx.id.clone());
        }
        crate::domain::e2e::seal(&out.payload, &message_id, &to, &ctx.keys())
            .map_err(OriginateError::Seal)?
    } else {
        out.payload
    };
    let env = crate::domain::envelope::seal(
        &ctx.signer,
        crate::domain::envelope::Draft {
            message_id: message_id.clone(),
            kind: out.kind,
            tlp: out.tlp,
            recipients: out.recipients,
            created_ms: out.created_ms.unwrap_or_else(now_ms),
            expires_ms: out.expires_ms,
            hop_limit: ctx.cfg.limits.hop_limit,
            exercise: out.exercise,
            encrypted,
            payload,
        },
    );
    match ingest(ctx, None, vec![env], vec![]).await?.pop() {
        Some(Ingested::New(cursor)) => {
            if kind == MessageKind::Receipt {
                ctx.metrics.receipts_sent.inc();
            } else {
                ctx.metrics.published.inc();
            }
            Ok((message_id, cursor))
        }
        Some(Ingested::Rejected(r)) => Err(OriginateError::Rejected(r)),
        other => Err(OriginateError::Store(StoreError::Invalid(format!(
            "unexpected outcome for a new message: {other:?}"
        )))),
    }
}
