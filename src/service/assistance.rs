//! The assistance workflow on a node: the state of a request is replayed from
//! the signed steps this node holds (`domain::assistance::replay`), and every
//! action is checked against that state (`domain::assistance::check`) before
//! this node signs it. Actions are serialised per node, so this node never
//! signs two steps that conflict. Steps go to the request's audience under the
//! request's TLP.
use crate::domain::assistance::{
    Assistance, AssistanceError, SignedStep, Step, check, next_created_ms, replay, state_label,
    validate_request,
};
use crate::domain::policy::check_distribution;
use crate::proto::v1::{
    AssistanceRequest, AssistanceState, AssistanceView, DecisionMessage, EnvelopeHeader,
    MessageKind, OfferMessage, StatusMessage, Tlp,
};
use crate::service::ingest::{OriginateError, Outgoing, originate};
use crate::service::node::Node;
use crate::service::{ErrorKind, InvalidArgument, ServiceError, now_ms};
use crate::storage::{StoreError, StoredMessage};
use prost::Message;

/// Why an assistance action failed.
#[derive(Debug, thiserror::Error)]
pub enum AssistError {
    #[error("{0}")]
    Domain(#[from] AssistanceError),
    #[error("{0}")]
    Invalid(#[from] InvalidArgument),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Originate(#[from] OriginateError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl ServiceError for AssistError {
    fn kind(&self) -> ErrorKind {
        match self {
            AssistError::Domain(AssistanceError::PermissionDenied(_)) => {
                ErrorKind::PermissionDenied
            }
            AssistError::Domain(AssistanceError::FailedPrecondition(_)) => {
                ErrorKind::FailedPrecondition
            }
            AssistError::Domain(AssistanceError::NotFound(_)) | AssistError::NotFound(_) => {
                ErrorKind::NotFound
            }
            AssistError::Domain(AssistanceError::Invalid { .. }) | AssistError::Invalid(_) => {
                ErrorKind::InvalidArgument
            }
            AssistError::Originate(e) => e.kind(),
            AssistError::Store(e) => e.kind(),
        }
    }
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
    node: &Node,
    request_id: &str,
) -> Result<Option<(Assistance, StoredMessage)>, StoreError> {
    let thread = node.store.thread(request_id).await?;
    let Some(req) = thread.iter().find(|m| m.message_id == request_id).cloned() else {
        return Ok(None);
    };
    let steps: Vec<SignedStep> = thread.iter().filter_map(to_step).collect();
    Ok(replay(request_id, &steps).map(|a| (a, req)))
}

/// Who the steps of a request go to: its requester and recipients (all but this
/// node), or the whole federation when the request was a broadcast.
fn audience(node: &Node, req: &StoredMessage, requester: &str) -> Vec<String> {
    let header = EnvelopeHeader::decode(req.header.as_slice()).unwrap_or_default();
    if header.recipients.is_empty() {
        return Vec::new();
    }
    let mut to: Vec<String> = header.recipients;
    to.push(requester.to_string());
    to.retain(|r| r != &node.id);
    to.sort();
    to.dedup();
    to
}

/// Opens a request for assistance as this node; returns its id.
pub async fn request(
    node: &Node,
    request: AssistanceRequest,
    recipients: Vec<String>,
) -> Result<String, AssistError> {
    let now = now_ms();
    validate_request(&request, now)?;
    let tlp = Tlp::try_from(request.tlp).unwrap_or(Tlp::Unspecified);
    check_distribution(tlp, &recipients).map_err(|e| InvalidArgument::new("recipients", e))?;
    node.check_members(&recipients)?;
    let outgoing = Outgoing {
        kind: MessageKind::AssistanceRequest,
        tlp,
        recipients,
        expires_ms: None,
        exercise: false,
        created_ms: Some(now),
        payload: request.encode_to_vec(),
    };
    let (request_id, _) = originate(node, outgoing).await?;
    tracing::info!(%request_id, tlp = crate::domain::policy::tlp_label(tlp), "assistance requested");
    Ok(request_id)
}

/// Checks `step` on request `request_id` as this node and, if allowed, signs it
/// and sends it to the request's audience under the request's TLP. Returns the
/// new message id and the state after the step.
pub async fn act(
    node: &Node,
    request_id: &str,
    step: Step,
) -> Result<(String, Assistance), AssistError> {
    let _serial = node.assist_lock.lock().await;
    let (a, req) = load(node, request_id).await?.ok_or_else(|| {
        AssistanceError::NotFound(format!(
            "no assistance request {request_id} on this node (it may not have reached this node yet)"
        ))
    })?;
    let created = next_created_ms(&a, now_ms());
    check(&a, &node.id, &step, created)?;
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
    let tlp = Tlp::try_from(req.tlp).map_err(|_| {
        StoreError::Invalid(format!(
            "request {request_id} is stored with an unknown TLP {}",
            req.tlp
        ))
    })?;
    let outgoing = Outgoing {
        kind,
        tlp,
        recipients: audience(node, &req, &a.requester),
        expires_ms: None,
        exercise: false,
        created_ms: Some(created),
        payload,
    };
    let (id, _) = originate(node, outgoing).await?;
    let (after, _) = load(node, request_id)
        .await?
        .ok_or_else(|| StoreError::Invalid(format!("request {request_id} vanished")))?;
    Ok((id, after))
}

/// Offers assistance on a request; returns the offer id.
pub async fn offer(
    node: &Node,
    request_id: String,
    offer: Option<crate::proto::v1::Offer>,
) -> Result<String, AssistError> {
    if request_id.is_empty() {
        return Err(InvalidArgument::new("request_id", "required").into());
    }
    if offer.is_none() {
        return Err(InvalidArgument::new("offer", "required").into());
    }
    let step = Step::Offer(OfferMessage {
        request_id: request_id.clone(),
        offer,
    });
    let (offer_id, _) = act(node, &request_id, step).await?;
    tracing::info!(%request_id, %offer_id, "assistance offered");
    Ok(offer_id)
}

/// Accepts or declines an offer (the requester); returns the request's state after.
pub async fn decide(
    node: &Node,
    offer_id: String,
    accept: bool,
    note: String,
) -> Result<AssistanceState, AssistError> {
    if offer_id.is_empty() {
        return Err(InvalidArgument::new("offer_id", "required").into());
    }
    let request_id = node
        .store
        .get_message(&offer_id)
        .await?
        .filter(|m| m.readable && m.kind == MessageKind::Offer as i32)
        .and_then(|m| m.request_id)
        .ok_or_else(|| AssistError::NotFound(format!("no offer {offer_id} on this node")))?;
    let step = Step::Decision(DecisionMessage {
        request_id: request_id.clone(),
        offer_id,
        accept,
        note,
    });
    let (_, a) = act(node, &request_id, step).await?;
    Ok(a.state)
}

/// Moves a request to a new state (requester) or withdraws an offer (donor).
pub async fn update(
    node: &Node,
    request_id: String,
    state: i32,
    note: String,
    withdraw_offer_id: String,
) -> Result<AssistanceState, AssistError> {
    if request_id.is_empty() {
        return Err(InvalidArgument::new("request_id", "required").into());
    }
    if withdraw_offer_id.is_empty() == (state == AssistanceState::Unspecified as i32) {
        return Err(InvalidArgument::new(
            "state",
            "give either a target state (requester) or withdraw_offer_id (donor), not both",
        )
        .into());
    }
    let step = Step::Status(StatusMessage {
        request_id: request_id.clone(),
        state,
        note,
        withdraw_offer_id,
        summary_report: String::new(),
    });
    let (_, a) = act(node, &request_id, step).await?;
    Ok(a.state)
}

/// One request as operators see it.
pub async fn get(node: &Node, request_id: &str) -> Result<AssistanceView, AssistError> {
    if request_id.is_empty() {
        return Err(InvalidArgument::new("request_id", "required").into());
    }
    match load(node, request_id).await? {
        Some((a, _)) => Ok(a.to_view(now_ms())),
        None => Err(AssistError::NotFound(format!(
            "no assistance request {request_id} on this node"
        ))),
    }
}

/// A page of requests, newest first, whose state is in `states` (all when
/// empty), starting below cursor `before` (0: the newest). Returns the page
/// and the cursor to continue from (0 when there is no more).
pub async fn list(
    node: &Node,
    states: &[i32],
    before: u64,
    size: usize,
) -> Result<(Vec<AssistanceView>, u64), AssistError> {
    let now = now_ms();
    let mut before = before;
    let mut out = Vec::new();
    // Filtering by state happens after replay, so read until the page is full.
    loop {
        let rows = node
            .store
            .by_kind(MessageKind::AssistanceRequest as i32, before, size)
            .await?;
        let last = rows.len() < size;
        for m in rows {
            before = m.cursor;
            if let Some((a, _)) = load(node, &m.message_id).await?
                && (states.is_empty() || states.contains(&(a.state as i32)))
            {
                out.push(a.to_view(now));
                if out.len() == size {
                    return Ok((out, m.cursor));
                }
            }
        }
        if last {
            return Ok((out, 0));
        }
    }
}

/// Requests this node holds, counted by state label (every state present, at 0 if none).
pub async fn count_by_state(node: &Node) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let mut counts: Vec<(&'static str, i64)> = [
        AssistanceState::Requested,
        AssistanceState::Offered,
        AssistanceState::Accepted,
        AssistanceState::Deployed,
        AssistanceState::Completed,
        AssistanceState::Closed,
        AssistanceState::Withdrawn,
    ]
    .into_iter()
    .map(|s| (state_label(s), 0))
    .collect();
    let requests = node
        .store
        .by_kind(MessageKind::AssistanceRequest as i32, 0, 100_000)
        .await?;
    for r in requests {
        if let Some((a, _)) = load(node, &r.message_id).await? {
            let label = state_label(a.state);
            if let Some(c) = counts.iter_mut().find(|(l, _)| *l == label) {
                c.1 += 1;
            }
        }
    }
    Ok(counts)
}
