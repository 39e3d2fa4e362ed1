//! The assistance workflow on a node: the state of a request is replayed from
//! the signed steps this node holds (`domain::assistance::replay`), and every
//! action is checked against that state (`domain::assistance::check`) before
//! this node signs it. Actions are serialised per node, so this node never
//! signs two steps that conflict. Steps go to the request's audience under the
//! request's TLP.
//!
//! Every action may carry a client's request id (`service::requests`): a retry
//! returns the first answer and signs nothing more. Ids the caller names are
//! checked to be UUIDs, enum values to be known, notes to be clean text
//! (`domain::text`), before anything is read; listings stop by count and by
//! encoded size, and a view too large for one answer is trimmed
//! (`domain::assistance::fit_view`).
use crate::domain::assistance::{
    Assistance, AssistanceError, SignedStep, Step, check, fit_view, next_created_ms, replay,
    state_label, validate_request,
};
use crate::domain::policy::check_distribution;
use crate::domain::text::{self, Kind};
use crate::proto::v1::{
    AssistanceRequest, AssistanceState, AssistanceView, DecideOfferRequest, DecisionMessage,
    EnvelopeHeader, MessageKind, Offer, OfferAssistanceRequest, OfferAssistanceResponse,
    OfferMessage, RequestAssistanceRequest, RequestAssistanceResponse, StatusMessage,
    StepUploadResponse, Tlp, UpdateAssistanceRequest,
};
use crate::service::ingest::{Attach, OriginateError, Outgoing};
use crate::service::limits::{PAGE_BYTES, PageBuilder, PageLimit};
use crate::service::node::Node;
use crate::service::requests::{self, RequestIdError, RequestKey};
use crate::service::{ErrorKind, InvalidArgument, ServiceError, check_id, now_ms};
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
    #[error("{0}")]
    RequestId(#[from] RequestIdError),
    /// Uploaded attachments could not be put in place (a fault of this node).
    #[error("attachments: {0}")]
    Attachments(String),
}

impl From<text::TextError> for AssistError {
    fn from(e: text::TextError) -> Self {
        AssistError::Domain(e.into())
    }
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
            AssistError::RequestId(e) => e.kind(),
            AssistError::Attachments(_) => ErrorKind::Internal,
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
        exercise: m.is_exercise(),
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

/// Opens a request for assistance as this node; returns its id. With a
/// `client_key` (the call's `request_id`, a UUID) a retry returns the first
/// id and opens nothing.
pub async fn request(
    node: &Node,
    request: Option<AssistanceRequest>,
    recipients: Vec<String>,
    client_key: String,
    exercise: bool,
) -> Result<String, AssistError> {
    request_with(node, request, recipients, client_key, exercise, None).await
}

/// [`request`] with evidence attachments already uploaded and verified
/// (`service::attachments::upload_step`).
pub async fn request_with(
    node: &Node,
    request: Option<AssistanceRequest>,
    recipients: Vec<String>,
    client_key: String,
    exercise: bool,
    attached: Option<Box<dyn Attach>>,
) -> Result<String, AssistError> {
    let body = RequestAssistanceRequest {
        request,
        recipients,
        request_id: String::new(),
        exercise,
    };
    let key = RequestKey::parse(
        "request_id",
        &client_key,
        "RequestAssistance",
        &body.encode_to_vec(),
    )?;
    let RequestAssistanceRequest {
        request,
        recipients,
        ..
    } = body;
    let request = request.ok_or_else(|| {
        InvalidArgument::new(
            "request",
            "required: the assistance request (title, description, tlp, services …)",
        )
    })?;
    let answer = requests::once(
        &node.store,
        &node.requests,
        key,
        |id| async move {
            request_as(node, request, recipients, id, exercise, attached)
                .await
                .map(|request_id| RequestAssistanceResponse { request_id })
        },
        |request_id| async move { Ok(RequestAssistanceResponse { request_id }) },
    )
    .await?;
    Ok(answer.request_id)
}

async fn request_as(
    node: &Node,
    request: AssistanceRequest,
    recipients: Vec<String>,
    message_id: String,
    exercise: bool,
    attached: Option<Box<dyn Attach>>,
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
        exercise,
        created_ms: Some(now),
        payload: request.encode_to_vec(),
    };
    let (request_id, _) = sign_with(node, outgoing, message_id, attached).await?;
    tracing::info!(%request_id, tlp = crate::domain::policy::tlp_label(tlp), "assistance requested");
    Ok(request_id)
}

/// Checks `step` on request `request_id` as this node and, if allowed, signs it
/// with id `message_id` and sends it to the request's audience under the
/// request's TLP. Returns the state after the step.
pub async fn act(
    node: &Node,
    request_id: &str,
    step: Step,
    message_id: String,
    attached: Option<Box<dyn Attach>>,
) -> Result<Assistance, AssistError> {
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
        // Every step inherits the request's flag (`domain::exercise`).
        exercise: a.exercise,
        created_ms: Some(created),
        payload,
    };
    sign_with(node, outgoing, message_id, attached).await?;
    state_of(node, request_id).await
}

/// Signs and stores `outgoing`; with attachments, first puts their files in
/// place under the message id and adds their manifests to the payload and
/// their stored forms to the signed header (the files are removed again if
/// the message is not stored).
async fn sign_with(
    node: &Node,
    outgoing: Outgoing,
    message_id: String,
    attached: Option<Box<dyn Attach>>,
) -> Result<(String, u64), AssistError> {
    use crate::service::ingest::{AttachedError, originate_attached};
    originate_attached(node, outgoing, message_id, String::new(), attached)
        .await
        .map_err(|e| match e {
            AttachedError::WrongTlp => InvalidArgument::new(
                "start.attachments",
                "the attachments were uploaded for another TLP than the request's; upload them again",
            )
            .into(),
            AttachedError::Place(why) => AssistError::Attachments(why),
            AttachedError::Originate(e) => e.into(),
        })
}

/// The replayed state of a request this node holds.
async fn state_of(node: &Node, request_id: &str) -> Result<Assistance, AssistError> {
    let (after, _) = load(node, request_id)
        .await?
        .ok_or_else(|| StoreError::Invalid(format!("request {request_id} vanished")))?;
    Ok(after)
}

/// Offers assistance on a request; returns the offer id. With a
/// `client_request_id` (a UUID) a retry returns the first offer id.
pub async fn offer(
    node: &Node,
    request_id: String,
    offer: Option<Offer>,
    client_request_id: String,
) -> Result<String, AssistError> {
    offer_with(node, request_id, offer, client_request_id, None).await
}

/// [`offer`] with evidence attachments already uploaded and verified.
pub async fn offer_with(
    node: &Node,
    request_id: String,
    offer: Option<Offer>,
    client_request_id: String,
    attached: Option<Box<dyn Attach>>,
) -> Result<String, AssistError> {
    check_id("request_id", &request_id, "assistance request id")?;
    let body = OfferAssistanceRequest {
        request_id,
        offer,
        client_request_id: String::new(),
    };
    let key = RequestKey::parse(
        "client_request_id",
        &client_request_id,
        "OfferAssistance",
        &body.encode_to_vec(),
    )?;
    let OfferAssistanceRequest {
        request_id, offer, ..
    } = body;
    if offer.is_none() {
        return Err(InvalidArgument::new(
            "offer",
            "required: the offer (summary, capabilities, capacity …)",
        )
        .into());
    }
    let step = Step::Offer(OfferMessage {
        request_id: request_id.clone(),
        offer,
    });
    let rid = &request_id;
    let answer = requests::once(
        &node.store,
        &node.requests,
        key,
        |id| async move {
            act(node, rid, step, id.clone(), attached).await?;
            Ok::<_, AssistError>(OfferAssistanceResponse { offer_id: id })
        },
        |offer_id| async move { Ok(OfferAssistanceResponse { offer_id }) },
    )
    .await?;
    tracing::info!(%request_id, offer_id = %answer.offer_id, "assistance offered");
    Ok(answer.offer_id)
}

/// Accepts or declines an offer (the requester); returns the request's state
/// after. With a `client_key` (the call's `request_id`, a UUID) a retry
/// returns the first answer and decides nothing again.
pub async fn decide(
    node: &Node,
    offer_id: String,
    accept: bool,
    note: String,
    client_key: String,
) -> Result<AssistanceState, AssistError> {
    Ok(decide_with(node, offer_id, accept, note, client_key, None)
        .await?
        .1)
}

/// [`decide`] with evidence attachments already uploaded and verified;
/// returns the decision's message id too.
pub async fn decide_with(
    node: &Node,
    offer_id: String,
    accept: bool,
    note: String,
    client_key: String,
    attached: Option<Box<dyn Attach>>,
) -> Result<(String, AssistanceState), AssistError> {
    check_id("offer_id", &offer_id, "offer id")?;
    text::check("note", &note, Kind::MultiLine)?;
    let body = DecideOfferRequest {
        offer_id,
        accept,
        note,
        request_id: String::new(),
    };
    let key = RequestKey::parse(
        "request_id",
        &client_key,
        "DecideOffer",
        &body.encode_to_vec(),
    )?;
    let DecideOfferRequest {
        offer_id,
        accept,
        note,
        ..
    } = body;
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
    let rid = &request_id;
    let answer = requests::once(
        &node.store,
        &node.requests,
        key,
        |id| async move {
            let a = act(node, rid, step, id.clone(), attached).await?;
            Ok::<_, AssistError>(StepUploadResponse {
                message_id: id,
                state: a.state as i32,
            })
        },
        |id| async move {
            let a = state_of(node, rid).await?;
            Ok(StepUploadResponse {
                message_id: id,
                state: a.state as i32,
            })
        },
    )
    .await?;
    Ok((
        answer.message_id,
        AssistanceState::try_from(answer.state).unwrap_or(AssistanceState::Unspecified),
    ))
}

/// Moves a request to a new state (requester) or withdraws an offer (donor).
/// With a `client_request_id` (a UUID) a retry returns the first answer.
pub async fn update(
    node: &Node,
    request_id: String,
    state: i32,
    note: String,
    withdraw_offer_id: String,
    client_request_id: String,
) -> Result<AssistanceState, AssistError> {
    Ok(update_with(
        node,
        request_id,
        state,
        note,
        withdraw_offer_id,
        client_request_id,
        None,
    )
    .await?
    .1)
}

/// [`update`] with evidence attachments already uploaded and verified;
/// returns the status message's id too.
pub async fn update_with(
    node: &Node,
    request_id: String,
    state: i32,
    note: String,
    withdraw_offer_id: String,
    client_request_id: String,
    attached: Option<Box<dyn Attach>>,
) -> Result<(String, AssistanceState), AssistError> {
    check_id("request_id", &request_id, "assistance request id")?;
    match AssistanceState::try_from(state) {
        Err(_) => {
            return Err(InvalidArgument::new(
                "state",
                format!(
                    "unknown state value {state}; use ASSISTANCE_STATE_DEPLOYED, ASSISTANCE_STATE_COMPLETED, ASSISTANCE_STATE_CLOSED or ASSISTANCE_STATE_WITHDRAWN"
                ),
            )
            .into());
        }
        Ok(s) if withdraw_offer_id.is_empty() == (s == AssistanceState::Unspecified) => {
            return Err(InvalidArgument::new(
                "state",
                "give either a target state (requester) or withdraw_offer_id (donor), exactly one of them",
            )
            .into());
        }
        Ok(_) => {}
    }
    if !withdraw_offer_id.is_empty() {
        check_id("withdraw_offer_id", &withdraw_offer_id, "offer id")?;
    }
    text::check("note", &note, Kind::MultiLine)?;
    let body = UpdateAssistanceRequest {
        request_id,
        state,
        note,
        withdraw_offer_id,
        client_request_id: String::new(),
    };
    let key = RequestKey::parse(
        "client_request_id",
        &client_request_id,
        "UpdateAssistance",
        &body.encode_to_vec(),
    )?;
    let UpdateAssistanceRequest {
        request_id,
        state,
        note,
        withdraw_offer_id,
        ..
    } = body;
    let step = Step::Status(StatusMessage {
        request_id: request_id.clone(),
        state,
        note,
        withdraw_offer_id,
        summary_report: String::new(),
    });
    let rid = &request_id;
    let answer = requests::once(
        &node.store,
        &node.requests,
        key,
        |id| async move {
            let a = act(node, rid, step, id.clone(), attached).await?;
            Ok::<_, AssistError>(StepUploadResponse {
                message_id: id,
                state: a.state as i32,
            })
        },
        |id| async move {
            let a = state_of(node, rid).await?;
            Ok(StepUploadResponse {
                message_id: id,
                state: a.state as i32,
            })
        },
    )
    .await?;
    Ok((
        answer.message_id,
        AssistanceState::try_from(answer.state).unwrap_or(AssistanceState::Unspecified),
    ))
}

/// Largest assistance view returned whole; larger ones are trimmed.
fn view_budget(node: &Node) -> usize {
    PAGE_BYTES.max(node.cfg.limits.max_message_bytes.saturating_mul(2))
}

/// The operator's view of a replayed request, trimmed to fit one answer.
fn view(node: &Node, a: &Assistance, now: i64) -> AssistanceView {
    let mut v = a.to_view(now);
    fit_view(&mut v, view_budget(node));
    v
}

/// One request as operators see it.
pub async fn get(node: &Node, request_id: &str) -> Result<AssistanceView, AssistError> {
    check_id("request_id", request_id, "assistance request id")?;
    match load(node, request_id).await? {
        Some((a, _)) => Ok(view(node, &a, now_ms())),
        None => Err(AssistError::NotFound(format!(
            "no assistance request {request_id} on this node"
        ))),
    }
}

/// The request states a listing filters on: known values, not UNSPECIFIED.
fn check_states(states: &[i32]) -> Result<(), InvalidArgument> {
    for (i, &v) in states.iter().enumerate() {
        if !matches!(AssistanceState::try_from(v), Ok(s) if s != AssistanceState::Unspecified) {
            return Err(InvalidArgument::new(
                format!("states[{i}]"),
                format!(
                    "unknown request state value {v}; use ASSISTANCE_STATE_REQUESTED, _OFFERED, _ACCEPTED, _DEPLOYED, _COMPLETED, _CLOSED or _WITHDRAWN"
                ),
            ));
        }
    }
    Ok(())
}

/// A page of requests, newest first, whose state is in `states` (all when
/// empty), starting below cursor `before` (0: the newest), within `limit`
/// (count and encoded size). Returns the page and the cursor to continue
/// from (0 when there is no more).
pub async fn list(
    node: &Node,
    states: &[i32],
    include_exercise: bool,
    before: u64,
    limit: PageLimit,
) -> Result<(Vec<AssistanceView>, u64), AssistError> {
    check_states(states)?;
    const CHUNK: usize = 32;
    let now = now_ms();
    let mut cursor = before;
    let mut page = PageBuilder::new(limit);
    // Filtering by state happens after replay, so read until the page is full.
    loop {
        let rows = node
            .store
            .by_kind(MessageKind::AssistanceRequest as i32, cursor, CHUNK)
            .await?;
        let exhausted = rows.len() < CHUNK;
        for m in rows {
            if !include_exercise && m.is_exercise() {
                cursor = m.cursor;
                continue;
            }
            if let Some((a, _)) = load(node, &m.message_id).await?
                && (states.is_empty() || states.contains(&(a.state as i32)))
                && !page.push(view(node, &a, now))
            {
                // Full, by count or size: this request starts the next page.
                return Ok((page.into_items(), cursor));
            }
            cursor = m.cursor;
        }
        if exhausted {
            return Ok((page.into_items(), 0));
        }
    }
}

/// Real (not exercise) requests this node holds, counted by state label (every
/// state present, at 0 if none).
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
        // A metric of real work: exercise requests are not counted.
        if r.is_exercise() {
            continue;
        }
        if let Some((a, _)) = load(node, &r.message_id).await? {
            let label = state_label(a.state);
            if let Some(c) = counts.iter_mut().find(|(l, _)| *l == label) {
                c.1 += 1;
            }
        }
    }
    Ok(counts)
}
