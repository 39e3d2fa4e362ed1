//! Incident alerts on a node: publishing (validated, distribution checked,
//! only the origin may supersede or retract its own alert, idempotent with a
//! client's request id), reading one message, listing, watching what the node
//! stores, and acknowledging (which owes the origin an ACKNOWLEDGED receipt).
//!
//! Every input is checked before anything is read or written: ids are UUIDs,
//! filter enums are known values, cursors lie within the store. Listings stop
//! by count and by encoded size (`service::limits`).
use crate::domain::admission::{ReceiptOwed, sectors_mask};
use crate::domain::alert::{Limits, validate_alert};
use crate::domain::envelope::{ms_to_ts, ts_to_ms};
use crate::domain::exercise::crossing;
use crate::domain::policy::check_distribution;
use crate::domain::policy::tlp_label;
use crate::proto::v1::{
    Alert, AlertFilter, AlertSummary, EnvelopeHeader, HopChain, HopRecord, IncidentLink,
    IncidentMerge, IncidentStatusChange, MessageKind, MessageView, Nis2Sector, PathHop,
    PublishAlertRequest, PublishAlertResponse, ReceiptState, Severity, Sighting, SignedEnvelope,
    Tlp, WatchEvent,
};
use crate::service::ingest::{OriginateError, Outgoing};
use crate::service::limits::{MAX_ANSWER_BYTES, PageBuilder, PageLimit, framed_len};
use crate::service::node::Node;
use crate::service::requests::{self, RequestIdError, RequestKey};
use crate::service::{ErrorKind, InvalidArgument, ServiceError, check_id, now_ms};
use crate::storage::{AlertQuery, StoreError, StoredMessage};
use prost::Message;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Why an alert operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("{0}")]
    Invalid(#[from] InvalidArgument),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Originate(#[from] OriginateError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    RequestId(#[from] RequestIdError),
    #[error("{0}")]
    Incident(crate::service::incidents::IncidentError),
    /// The uploaded attachments could not be put in place (a fault of this
    /// node's disk).
    #[error("attachments: {0}")]
    Attachments(String),
}

impl ServiceError for AlertError {
    fn kind(&self) -> ErrorKind {
        match self {
            AlertError::Invalid(_) => ErrorKind::InvalidArgument,
            AlertError::NotFound(_) => ErrorKind::NotFound,
            AlertError::OutOfRange(_) => ErrorKind::OutOfRange,
            AlertError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            AlertError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            AlertError::Unavailable(_) => ErrorKind::Unavailable,
            AlertError::Originate(e) => e.kind(),
            AlertError::Store(e) => e.kind(),
            AlertError::RequestId(e) => e.kind(),
            AlertError::Incident(e) => e.kind(),
            AlertError::Attachments(_) => ErrorKind::Internal,
        }
    }
}

/// The operator-facing view of a stored message, within [`MAX_ANSWER_BYTES`]
/// (the raw envelope is left out only for a message stored under a larger
/// limit than any configuration allows now).
pub fn message_view(m: &StoredMessage) -> MessageView {
    let mut v = full_view(m);
    if framed_len(v.encoded_len()) + 64 > MAX_ANSWER_BYTES {
        v.envelope = None;
    }
    v
}

fn full_view(m: &StoredMessage) -> MessageView {
    let header = EnvelopeHeader::decode(m.header.as_slice()).unwrap_or_default();
    let alert = (m.kind == MessageKind::Alert as i32)
        .then(|| Alert::decode(m.body()).ok())
        .flatten();
    let readable_as = |k: MessageKind| m.readable && m.kind == k as i32;
    MessageView {
        message_id: m.message_id.clone(),
        origin: m.origin.clone(),
        kind: m.kind,
        tlp: m.tlp,
        recipients: header.recipients,
        created: Some(ms_to_ts(m.created_ms)),
        received: Some(ms_to_ts(m.received_ms)),
        alert,
        path: m
            .path
            .iter()
            .map(|h| PathHop {
                node_id: h.node.clone(),
                at: Some(ms_to_ts(h.at_ms)),
            })
            .collect(),
        envelope: Some(SignedEnvelope {
            header: m.header.clone(),
            payload: m.payload.clone(),
            signature: m.signature.clone(),
        }),
        cursor: m.cursor,
        acknowledged: m.acknowledged_ms.map(ms_to_ts),
        superseded_by: m.superseded_by.clone().unwrap_or_default(),
        request_id: m.request_id.clone().unwrap_or_default(),
        custody: m
            .hops
            .as_deref()
            .and_then(|b| HopChain::decode(b).ok())
            .map(|c| {
                c.hops
                    .iter()
                    .filter_map(|h| HopRecord::decode(h.record.as_slice()).ok())
                    .collect()
            })
            .unwrap_or_default(),
        incident_id: header.incident_id,
        exercise: header.exercise,
        sighting: readable_as(MessageKind::Sighting)
            .then(|| Sighting::decode(m.body()).ok())
            .flatten(),
        incident_status: readable_as(MessageKind::IncidentStatus)
            .then(|| IncidentStatusChange::decode(m.body()).ok())
            .flatten(),
        incident_link: readable_as(MessageKind::IncidentLink)
            .then(|| IncidentLink::decode(m.body()).ok())
            .flatten(),
        incident_merge: readable_as(MessageKind::IncidentMerge)
            .then(|| IncidentMerge::decode(m.body()).ok())
            .flatten(),
    }
}

fn summary(m: &StoredMessage) -> AlertSummary {
    AlertSummary {
        message_id: m.message_id.clone(),
        origin: m.origin.clone(),
        alert: Alert::decode(m.body()).ok(),
        created: Some(ms_to_ts(m.created_ms)),
        received: Some(ms_to_ts(m.received_ms)),
        cursor: m.cursor,
        superseded_by: m.superseded_by.clone().unwrap_or_default(),
    }
}

/// A filter timestamp in unix ms, refused (naming `field`) when its nanos are
/// out of range or it lies outside what a message time can be.
fn filter_time(
    ts: Option<&prost_types::Timestamp>,
    field: &str,
) -> Result<Option<i64>, InvalidArgument> {
    let Some(ts) = ts else { return Ok(None) };
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(InvalidArgument::new(
            field,
            format!(
                "invalid timestamp: nanos {} is outside 0..999999999",
                ts.nanos
            ),
        ));
    }
    // Years 0001..9999, as RFC 3339 (and the protobuf JSON mapping) allow.
    if !(-62_135_596_800..=253_402_300_799).contains(&ts.seconds) {
        return Err(InvalidArgument::new(
            field,
            format!("timestamp {} s is outside years 0001 to 9999", ts.seconds),
        ));
    }
    Ok(Some(ts_to_ms(ts)))
}

/// Translates the proto filter into a store query, validating every field:
/// enum values known (and not UNSPECIFIED inside a list), origins that can be
/// member ids, timestamps valid and in order.
pub fn alert_query(f: Option<AlertFilter>) -> Result<AlertQuery, InvalidArgument> {
    let f = f.unwrap_or_default();
    for (i, t) in f.tlp.iter().enumerate() {
        if !matches!(Tlp::try_from(*t), Ok(x) if x != Tlp::Unspecified) {
            return Err(InvalidArgument::new(
                format!("filter.tlp[{i}]"),
                format!(
                    "unknown TLP value {t}; use TLP_CLEAR, TLP_GREEN, TLP_AMBER, TLP_AMBER_STRICT or TLP_RED"
                ),
            ));
        }
    }
    for (i, s) in f.sectors.iter().enumerate() {
        if !matches!(Nis2Sector::try_from(*s), Ok(x) if x != Nis2Sector::Unspecified) {
            return Err(InvalidArgument::new(
                format!("filter.sectors[{i}]"),
                format!("unknown sector value {s}; use one of the NIS2_SECTOR_* values"),
            ));
        }
    }
    if Severity::try_from(f.min_severity).is_err() {
        return Err(InvalidArgument::new(
            "filter.min_severity",
            format!(
                "unknown severity value {}; use SEVERITY_LOW, SEVERITY_MEDIUM, SEVERITY_HIGH or SEVERITY_CRITICAL (or leave it unset)",
                f.min_severity
            ),
        ));
    }
    for (i, o) in f.origins.iter().enumerate() {
        crate::domain::identity::validate_name(o).map_err(|_| {
            InvalidArgument::new(
                format!("filter.origins[{i}]"),
                format!(
                    "{} cannot be a member id (1-63 characters of a-z, 0-9, '-', '.', '_')",
                    crate::domain::text::quote(o)
                ),
            )
        })?;
    }
    let created_after_ms = filter_time(f.created_after.as_ref(), "filter.created_after")?;
    let created_before_ms = filter_time(f.created_before.as_ref(), "filter.created_before")?;
    if let (Some(a), Some(b)) = (created_after_ms, created_before_ms)
        && a >= b
    {
        return Err(InvalidArgument::new(
            "filter.created_before",
            "must be later than filter.created_after (the window would be empty)",
        ));
    }
    Ok(AlertQuery {
        min_severity: f.min_severity,
        tlps: f.tlp,
        sectors_mask: sectors_mask(&f.sectors),
        origins: f.origins,
        created_after_ms,
        created_before_ms,
        include_exercise: f.include_exercise,
    })
}

/// Whether a stored message passes a Watch filter.
fn watch_matches(q: &AlertQuery, m: &StoredMessage) -> bool {
    if !m.readable || m.kind == MessageKind::Receipt as i32 {
        return false;
    }
    if !q.include_exercise && m.is_exercise() {
        return false;
    }
    if m.kind != MessageKind::Alert as i32 {
        return true;
    }
    let Ok(a) = Alert::decode(m.body()) else {
        return false;
    };
    (q.include_exercise || !a.exercise)
        && a.severity >= q.min_severity
        && (q.tlps.is_empty() || q.tlps.contains(&m.tlp))
        && (q.sectors_mask == 0 || sectors_mask(&a.sectors) & q.sectors_mask != 0)
        && (q.origins.is_empty() || q.origins.contains(&m.origin))
        && q.created_after_ms.is_none_or(|t| m.created_ms >= t)
        && q.created_before_ms.is_none_or(|t| m.created_ms < t)
}

/// Publishes an alert as this node to `recipients` (empty: the whole
/// federation, CLEAR and GREEN only); returns its message id. With a
/// `request_id` (a UUID) a retry returns the first message id and publishes
/// nothing (`service::requests`).
pub async fn publish(
    node: &Node,
    alert: Option<Alert>,
    recipients: Vec<String>,
    request_id: String,
) -> Result<String, AlertError> {
    publish_in(
        node,
        PublishAlertRequest {
            alert,
            recipients,
            request_id,
            ..Default::default()
        },
    )
    .await
}

/// [`publish`] with the incident choices of the request: open an incident
/// with the alert, or contribute it to one (`service::incidents`).
pub async fn publish_in(node: &Node, req: PublishAlertRequest) -> Result<String, AlertError> {
    publish_with(node, req, None).await
}

pub use crate::service::ingest::Attach;

/// [`publish_in`] with attachments already uploaded and verified
/// (`service::attachments`): their manifests join the signed payload, their
/// stored forms the signed header, and their files are put in place under the
/// message id before the message is signed.
pub async fn publish_with(
    node: &Node,
    req: PublishAlertRequest,
    attached: Option<Box<dyn Attach>>,
) -> Result<String, AlertError> {
    let request_id = req.request_id.clone();
    let body = PublishAlertRequest {
        request_id: String::new(),
        validate_only: false,
        ..req
    };
    let key = RequestKey::parse(
        "request_id",
        &request_id,
        "PublishAlert",
        &body.encode_to_vec(),
    )?;
    let PublishAlertRequest {
        alert,
        recipients,
        open_incident,
        incident_id,
        ..
    } = body;
    let alert = alert.ok_or_else(|| {
        InvalidArgument::new(
            "alert",
            "required: the alert to publish (title, tlp, severity …)",
        )
    })?;
    let answer = requests::once(
        &node.store,
        &node.requests,
        key,
        |message_id| async move {
            publish_as(
                node,
                alert,
                recipients,
                message_id,
                open_incident,
                incident_id,
                attached,
            )
            .await
            .map(|message_id| PublishAlertResponse { message_id })
        },
        |message_id| async move { Ok(PublishAlertResponse { message_id }) },
    )
    .await?;
    Ok(answer.message_id)
}

/// Checks everything [`publish`] checks — the alert, its distribution, the
/// recipients and the alert it supersedes — and signs nothing (the
/// `validate_only` form of PublishAlert, AIP-163). The request id is not
/// claimed, so a later real publish with it is unaffected.
pub async fn validate_publish(node: &Node, req: PublishAlertRequest) -> Result<(), AlertError> {
    let PublishAlertRequest {
        alert,
        recipients,
        open_incident,
        incident_id,
        ..
    } = req;
    let alert = alert.ok_or_else(|| {
        InvalidArgument::new(
            "alert",
            "required: the alert to publish (title, tlp, severity …)",
        )
    })?;
    // A fresh id stands for the one a real publish would sign with (it only
    // becomes the incident id when the alert opens one).
    let message_id = uuid::Uuid::now_v7().to_string();
    let choice = IncidentChoice {
        open: open_incident,
        incident_id: &incident_id,
        message_id: &message_id,
    };
    check_publish(node, &alert, &recipients, now_ms(), choice).await?;
    Ok(())
}

/// What a publish says about incidents: open one with the alert's own id, or
/// join `incident_id` (neither: stay in the incident of a superseded alert).
#[derive(Clone, Copy)]
struct IncidentChoice<'a> {
    open: bool,
    incident_id: &'a str,
    message_id: &'a str,
}

/// The checks of a publish at time `now`; returns the TLP, the payload to sign
/// and the incident the alert belongs to (empty: none).
async fn check_publish(
    node: &Node,
    alert: &Alert,
    recipients: &[String],
    now: i64,
    choice: IncidentChoice<'_>,
) -> Result<(Tlp, Vec<u8>, String), AlertError> {
    let tlp = Tlp::try_from(alert.tlp).unwrap_or(Tlp::Unspecified);
    let limits = Limits {
        max_message_bytes: node.cfg.limits.max_message_bytes,
        ..Limits::default()
    };
    let payload = alert.encode_to_vec();
    validate_alert(alert, now, payload.len(), &limits)
        .map_err(|e| InvalidArgument::new(e.field, e.rule))?;
    check_distribution(tlp, recipients).map_err(|e| InvalidArgument::new("recipients", e))?;
    node.check_members(recipients)?;
    if !alert.supersedes.is_empty() {
        match node.store.get_message(&alert.supersedes).await? {
            Some(old) if old.origin == node.id && old.kind == MessageKind::Alert as i32 => {
                let what = if alert.revision == crate::proto::v1::Revision::Retraction as i32 {
                    "retraction"
                } else {
                    "update"
                };
                if let Some(reason) = crossing(
                    what,
                    alert.exercise,
                    "supersede",
                    &old.message_id,
                    old.is_exercise(),
                ) {
                    return Err(AlertError::FailedPrecondition(format!(
                        "alert.supersedes: {reason}"
                    )));
                }
            }
            Some(old) => {
                return Err(AlertError::PermissionDenied(format!(
                    "alert.supersedes: {} was issued by {}; only its origin may update or retract it",
                    old.message_id, old.origin
                )));
            }
            None => {
                return Err(AlertError::FailedPrecondition(format!(
                    "alert.supersedes: no alert {} on this node",
                    alert.supersedes
                )));
            }
        }
    }
    if !choice.incident_id.is_empty() {
        check_id("incident_id", choice.incident_id, "incident id")?;
    }
    let incident = crate::service::incidents::alert_incident(
        node,
        choice.message_id,
        choice.open,
        choice.incident_id,
        &alert.supersedes,
        tlp,
        recipients,
        alert.exercise,
    )
    .await
    .map_err(AlertError::Incident)?;
    Ok((tlp, payload, incident))
}

/// Validates and signs `alert` with message id `message_id`.
async fn publish_as(
    node: &Node,
    alert: Alert,
    recipients: Vec<String>,
    message_id: String,
    open_incident: bool,
    incident_id: String,
    attached: Option<Box<dyn Attach>>,
) -> Result<String, AlertError> {
    let now = now_ms();
    let choice = IncidentChoice {
        open: open_incident,
        incident_id: &incident_id,
        message_id: &message_id,
    };
    let (tlp, payload, incident) = check_publish(node, &alert, &recipients, now, choice).await?;
    let outgoing = Outgoing {
        kind: MessageKind::Alert,
        tlp,
        recipients,
        expires_ms: alert.expires.as_ref().map(ts_to_ms),
        exercise: alert.exercise,
        created_ms: Some(now),
        payload,
    };
    use crate::service::ingest::AttachedError;
    let (message_id, _) =
        crate::service::ingest::originate_attached(node, outgoing, message_id, incident, attached)
            .await
            .map_err(|e| match e {
                AttachedError::WrongTlp => AlertError::Invalid(InvalidArgument::new(
                    "request.alert.tlp",
                    "the attachments were uploaded for another TLP; upload them again",
                )),
                AttachedError::Place(why) => AlertError::Attachments(why),
                AttachedError::Originate(e) => e.into(),
            })?;
    tracing::info!(%message_id, tlp = tlp_label(tlp), "alert published");
    Ok(message_id)
}

/// One message this node holds and can read.
pub async fn get(node: &Node, message_id: &str) -> Result<MessageView, AlertError> {
    check_id("message_id", message_id, "message id")?;
    match node.store.get_message(message_id).await? {
        Some(m) if !m.readable => Err(AlertError::PermissionDenied(format!(
            "{message_id} is end-to-end encrypted for other nodes; this node only relays it"
        ))),
        Some(m) => Ok(message_view(&m)),
        None => Err(AlertError::NotFound(format!(
            "no message {message_id} on this node"
        ))),
    }
}

/// Rows read from the store at a time while filling a page.
const CHUNK: usize = 32;

/// A page of alerts matching `filter`, newest first, below cursor `before`
/// (0: the newest), within `limit` (count and encoded size). Returns the page
/// and the cursor to continue from (0: no more).
pub async fn list(
    node: &Node,
    filter: Option<AlertFilter>,
    before: u64,
    limit: PageLimit,
) -> Result<(Vec<AlertSummary>, u64), AlertError> {
    let q = alert_query(filter)?;
    let mut page = PageBuilder::new(limit);
    let mut cursor = before;
    loop {
        let want = (limit.items - page.len() + 1).min(CHUNK);
        let rows = node.store.list_alerts(q.clone(), cursor, want).await?;
        let exhausted = rows.len() < want;
        for m in rows {
            if !page.push(summary(&m)) {
                // Full, by count or size, and this row is still to come.
                return Ok((page.into_items(), cursor));
            }
            cursor = m.cursor;
        }
        if exhausted {
            return Ok((page.into_items(), 0));
        }
    }
}

/// Where a Watch stream starts.
pub enum WatchFrom {
    /// The first stored message.
    Start,
    /// After this cursor.
    After(u64),
    /// Only messages stored from now on.
    Now,
}

/// Streams the messages this node stores (matching `filter`) from `from`, in
/// store order, until the receiver is dropped or the node stops.
pub async fn watch(
    node: Arc<Node>,
    filter: Option<AlertFilter>,
    from: WatchFrom,
) -> Result<mpsc::Receiver<Result<WatchEvent, AlertError>>, AlertError> {
    let q = alert_query(filter)?;
    // Subscribe before reading the backlog so nothing falls in between.
    let mut notes = node.stored.subscribe();
    let mut cursor = match from {
        WatchFrom::Start => 0,
        WatchFrom::After(c) => {
            if c > i64::MAX as u64 {
                return Err(InvalidArgument::new(
                    "after_cursor",
                    format!(
                        "{c} is not a cursor (cursors are below 2^63); pass the cursor of the last event received, or from_start"
                    ),
                )
                .into());
            }
            let last = node.store.last_cursor().await?;
            if c > last {
                return Err(AlertError::OutOfRange(format!(
                    "after_cursor: {c} is beyond the last message this node stored (cursor {last}); was the store restored from an older backup? Resume with after_cursor {last}, or from_start"
                )));
            }
            c
        }
        WatchFrom::Now => node.store.last_cursor().await?,
    };
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let batch = match node.store.messages_after(cursor, 256).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            let full = batch.len() == 256;
            if let Some(last) = batch.last() {
                cursor = last.cursor;
            }
            let shown: Vec<StoredMessage> =
                batch.into_iter().filter(|m| watch_matches(&q, m)).collect();
            // Correlation is a hint: a failed lookup leaves it out. One read
            // of the member index per batch.
            let found = crate::service::incidents::batch_matches(&node, &shown)
                .await
                .unwrap_or_else(|_| vec![Vec::new(); shown.len()]);
            for (m, incident_matches) in shown.into_iter().zip(found) {
                let ev = WatchEvent {
                    cursor: m.cursor,
                    message: Some(message_view(&m)),
                    incident_matches,
                };
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                n = notes.changed() => {
                    // The node is gone.
                    if n.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
                _ = node.shutdown.cancelled() => {
                    let _ = tx
                        .send(Err(AlertError::Unavailable(
                            "node is shutting down; resume with after_cursor".into(),
                        )))
                        .await;
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// Marks a message as seen by an operator of this node and owes its origin an
/// ACKNOWLEDGED receipt. Returns when it was first acknowledged.
pub async fn acknowledge(node: &Node, message_id: &str) -> Result<i64, AlertError> {
    check_id("message_id", message_id, "message id")?;
    let Some(at) = node.store.acknowledge(message_id, now_ms()).await? else {
        return Err(AlertError::NotFound(format!(
            "no message {message_id} on this node"
        )));
    };
    if let Some(m) = node.store.get_message(message_id).await?
        && m.origin != node.id
        && m.kind != MessageKind::Receipt as i32
    {
        node.receipts.push(ReceiptOwed {
            origin: m.origin,
            message_id: message_id.to_string(),
            state: ReceiptState::Acknowledged,
            reason: String::new(),
        });
    }
    Ok(at)
}
