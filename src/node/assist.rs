//! Assistance workflow on a node: the state of a request is replayed from the
//! signed steps this node holds (domain `assistance::replay`), and every action
//! is checked against that state before this node signs it. Actions are
//! serialised per node, so this node never signs two steps that conflict.
use super::NodeCtx;
use super::ingest::{OriginateError, Outgoing, originate};
use crate::domain::assistance::{
    Assistance, AssistanceError, SignedStep, Step, check, next_created_ms, replay,
};
use crate::proto::v1::{
    AssistanceRequest, DecisionMessage, EnvelopeHeader, MessageKind, OfferMessage, StatusMessage,
    Tlp,
};
use crate::storage::StoreError;
use crate::storage::messages::StoredMessage;
use prost::Message;

/// Why an assistance action failed.
#[derive(Debug, thiserror::Error)]
pub enum AssistError {
    #[error("{0}")]
    Domain(#[from] AssistanceError),
    #[error("{0}")]
    Originate(#[from] OriginateError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Decodes a stored message of an assistance thread into a signed step.
pub fn to_step(m: &StoredMessage) -> Option<SignedStep> {
    let body = m.body();
    let step = match MessageKind::try_from(m.kind).ok()? {
        MessageKind::AssistanceRequest => Step::Request(AssistanceRequest::decode(body).ok()?),
        MessageKind::Offer => Step::Offer(OfferMessage::decode(body).ok()?),
        MessageKind::Decision => Step::Decision(DecisionMessage::decode(body).ok()?),
        MessageKind::Status => Step::Status(StatusMessage::decode(body).ok()?),
        _ => return None,
    };
    Some(SignedStep {
        message_id: m.message_id.clone(),
        actor: m.origin.clone(),
        created_ms: m.created_ms,
        step,
    })
}

/// The replayed state of a request and the stored request message, if this node holds it.
pub async fn load(
    ctx: &NodeCtx,
    request_id: &str,
) -> Result<Option<(Assistance, StoredMessage)>, StoreError> {
    let thread = ctx.store.thread(request_id.to_string()).await?;
    let Some(req) = thread.iter().find(|m| m.message_id == request_id).cloned() else {
        return Ok(None);
    };
    let steps: Vec<SignedStep> = thread.iter().filter_map(to_step).collect();
    Ok(replay(request_id, &steps).map(|a| (a, req)))
}

/// Who the steps of a request go to: its requester and recipients (all but this
/// node), or the whole federation when the request was a broadcast.
fn audience(ctx: &NodeCtx, req: &StoredMessage, requester: &str) -> Vec<String> {
    let header = EnvelopeHeader::decode(req.header.as_slice()).unwrap_or_default();
    if header.recipients.is_empty() {
        return Vec::new();
    }
    let mut to: Vec<String> = header.recipients;
    to.push(requester.to_string());
    to.retain(|r| r != &ctx.id);
    to.sort();
    to.dedup();
    to
}

/// Checks `step` on request `request_id` as this node and, if allowed, signs it
/// and sends it to the request's audience under the request's TLP. Returns the
/// new message id and the state after the step.
pub async fn act(
    ctx: &NodeCtx,
    request_id: &str,
    step: Step,
) -> Result<(String, Assistance), AssistError> {
    let _serial = ctx.assist_lock.lock().await;
    let (a, req) = load(ctx, request_id).await?.ok_or_else(|| {
        AssistanceError::NotFound(format!(
            "no assistance request {request_id} on this node (it may not have reached this node yet)"
        ))
    })?;
    let created = next_created_ms(&a, super::now_ms());
    check(&a, &ctx.id, &step, created)?;
    let (kind, payload) = match &step {
        Step::Request(_) => {
            return Err(AssistanceError::FailedPrecondition(
                "a request is opened with RequestAssistance".into(),
            )
            .into());
        }
        Step::Offer(m) => (MessageKind::Offer, m.encode_to_vec()),
        Step::Decision(m) => (MessageKind::Decision, m.encode_to_vec()),
        Step::Status(m) => (MessageKind::Status, m.encode_to_vec()),
    };
    let outgoing = Outgoing {
        kind,
        tlp: Tlp::try_from(req.tlp).unwrap_or(Tlp::Red),
        recipients: audience(ctx, &req, &a.requester),
        expires_ms: None,
        exercise: false,
        created_ms: Some(created),
        payload,
    };
    let (id, _) = originate(ctx, outgoing).await?;
    let (after, _) = load(ctx, request_id)
        .await?
        .ok_or_else(|| StoreError::Invalid(format!("request {request_id} vanished")))?;
    Ok((id, after))
}

/// The request an offer belongs to, if this node holds the offer.
pub async fn request_of_offer(ctx: &NodeCtx, offer_id: &str) -> Result<Option<String>, StoreError> {
    Ok(ctx
        .store
        .get_message(offer_id.to_string())
        .await?
        .filter(|m| m.readable && m.kind == MessageKind::Offer as i32)
        .and_then(|m| m.request_id))
}
