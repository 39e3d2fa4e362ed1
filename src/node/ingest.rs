//! The one path every message takes into the store: verify, validate, apply
//! distribution policy, pick the peers to queue it for, and store it with its
//! outbox rows in one transaction. Used for messages this node signs and for
//! envelopes pushed by peers.
use super::{NodeCtx, now_ms};
use crate::domain::alert::{Limits, validate_alert};
use crate::domain::envelope::{Rejection, Verified, ts_to_ms, verify_batch};
use crate::domain::policy::{PeerPolicy, Route, route_to_peer};
use crate::proto::v1::{Alert, MessageKind, SignedEnvelope, Tlp};
use crate::storage::StoreError;
use crate::storage::messages::{Hop, NewMessage, Stored};
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
    ctx.cfg
        .peers
        .iter()
        .filter_map(|p| {
            let policy = PeerPolicy {
                max_tlp: crate::domain::alert::parse_tlp(&p.max_tlp).unwrap_or(Tlp::Clear),
                relay: p.relay,
            };
            match route_to_peer(tlp, origin, recipients, &path_ids, &ctx.id, &p.id, &policy) {
                Route::Send => Some(p.id.clone()),
                Route::Skip(reason) => {
                    tracing::debug!(peer = %p.id, %reason, "not routed to peer");
                    None
                }
            }
        })
        .collect()
}

/// Checks the path a peer reports: it starts with the signed origin, ends with
/// the sending peer, names each node once, does not contain this node, and is
/// within the signed hop limit. An empty path means the sender is the origin.
fn check_path(
    ctx: &NodeCtx,
    h: &crate::proto::v1::EnvelopeHeader,
    created: i64,
    from_peer: &str,
    mut path: Vec<Hop>,
) -> Result<Vec<Hop>, Rejection> {
    if path.is_empty() {
        path.push(Hop {
            node: h.origin.clone(),
            at_ms: created,
        });
    }
    let bad = |why: String| Err(Rejection::Malformed(format!("path: {why}")));
    if path[0].node != h.origin {
        return bad(format!(
            "starts with {} but the signed origin is {}",
            path[0].node, h.origin
        ));
    }
    if path.last().map(|p| p.node.as_str()) != Some(from_peer) {
        return bad(format!("does not end with the sending peer {from_peer}"));
    }
    let mut seen = std::collections::HashSet::new();
    for hop in &path {
        if crate::domain::identity::validate_name(&hop.node).is_err()
            || !seen.insert(hop.node.as_str())
        {
            return bad(format!("invalid or repeated node {:?}", hop.node));
        }
    }
    if seen.contains(ctx.id.as_str()) {
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

/// Checks the payload of a verified envelope and this node's right to hold it,
/// and builds the row to store.
fn admit(
    ctx: &NodeCtx,
    env: SignedEnvelope,
    v: Verified,
    from_peer: Option<&str>,
    path: Vec<Hop>,
    now: i64,
) -> Result<(NewMessage, Option<Alert>), Rejection> {
    let h = v.header;
    let tlp = Tlp::try_from(h.tlp).map_err(|_| Rejection::Malformed("unknown TLP".into()))?;
    let restricted = matches!(tlp, Tlp::Amber | Tlp::AmberStrict | Tlp::Red);
    if restricted && h.recipients.is_empty() {
        return Err(Rejection::Policy(format!(
            "{} may not be broadcast; it needs named recipients",
            crate::domain::alert::tlp_label(tlp)
        )));
    }
    if restricted && !h.recipients.iter().any(|r| r == &ctx.id) {
        return Err(Rejection::Policy(format!(
            "{} message is not addressed to {}; only named recipients may hold it",
            crate::domain::alert::tlp_label(tlp),
            ctx.id
        )));
    }
    let created = h.created.as_ref().map(ts_to_ms).unwrap_or(now);
    let (severity, sectors, supersedes, alert) = match MessageKind::try_from(h.kind) {
        Ok(MessageKind::Alert) => {
            let alert = Alert::decode(env.payload.as_slice())
                .map_err(|e| Rejection::InvalidPayload(format!("alert does not decode: {e}")))?;
            validate_alert(&alert, created, env.payload.len(), &alert_limits(ctx))
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
            let sup = (!alert.supersedes.is_empty()).then(|| alert.supersedes.clone());
            (
                alert.severity,
                sectors_mask(&alert.sectors),
                sup,
                Some(alert),
            )
        }
        _ => {
            return Err(Rejection::Policy(format!(
                "message kind {} is not accepted by this node version",
                h.kind
            )));
        }
    };
    let path = match from_peer {
        Some(peer) => check_path(ctx, &h, created, peer, path)?,
        None => vec![Hop {
            node: h.origin.clone(),
            at_ms: created,
        }],
    };
    let targets = targets(ctx, &h.origin, tlp, &h.recipients, &path, h.hop_limit);
    Ok((
        NewMessage {
            message_id: h.message_id,
            origin: h.origin,
            kind: h.kind,
            tlp: h.tlp,
            severity,
            sectors_mask: sectors,
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
            supersedes,
        },
        alert,
    ))
}

/// Verifies, admits and stores a batch of envelopes from `from_peer` (or from
/// this node when `None`), in one commit. `paths[i]` is the path the peer
/// reported for `envs[i]` (ignored for this node's own messages). Results are in
/// input order.
pub async fn ingest(
    ctx: &NodeCtx,
    from_peer: Option<&str>,
    envs: Vec<SignedEnvelope>,
    paths: Vec<Vec<Hop>>,
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

    let mut results: Vec<Option<Ingested>> = vec![None; n];
    let mut rows = Vec::with_capacity(n);
    let mut slots = Vec::with_capacity(n);
    let mut rejections = Vec::new();
    let mut paths = paths.into_iter();
    for (i, (env, verdict)) in envs.into_iter().zip(verdicts).enumerate() {
        let id_hint = header_id_hint(&env);
        let path = paths.next().unwrap_or_default();
        match verdict.and_then(|v| admit(ctx, env, v, from_peer, path, now)) {
            Ok((row, _)) => {
                rows.push(row);
                slots.push(i);
            }
            Err(r) => {
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
    let stored = if rows.is_empty() {
        Vec::new()
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
    for ((slot, s), t) in slots.into_iter().zip(stored).zip(targets) {
        results[slot] = Some(match s {
            Stored::New(c) => {
                if from_peer.is_some() {
                    ctx.metrics.accepted.inc();
                }
                let _ = ctx.stored.send(c);
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

/// Best-effort message id of an envelope for logs (the header may be forged).
fn header_id_hint(env: &SignedEnvelope) -> String {
    crate::proto::v1::EnvelopeHeader::decode(env.header.as_slice())
        .map(|h| h.message_id.chars().take(64).collect())
        .unwrap_or_else(|_| "<undecodable>".into())
}
