//! Incidents on a node: the picture of an incident (`domain::incident::picture`
//! over every contribution this node holds), listings, correlation, and the
//! actions that contribute (sightings, status changes, links, merges).
//!
//! Invariants:
//! - The picture is computed from the store each time, never cached: what is
//!   shown is exactly the pure function of what is held. Loading is bounded
//!   ([`MAX_INCIDENTS`] incidents, [`MAX_MESSAGES`] messages per picture).
//! - Before this node signs a contribution, the same rules the picture applies
//!   are checked (`domain::incident::refusal`, and the picture itself with the
//!   new message added, for cycles and merges): what this node signs is never
//!   refused by the others' pictures for a rule it could see.
//! - Correlation reads the store's key index (`Storage::keyed`), never a scan
//!   of the history; answers are bounded ([`MAX_MATCHES`], [`MAX_WATCH_MATCHES`]).
//!   It never crosses the exercise flag: a real message is never shown as a
//!   match of an exercise incident, nor the reverse.
//! - A sighting takes its incident's exercise flag; a request that asks for
//!   the other one (`ReportSightingRequest.exercise`) is refused with the
//!   reason `domain::exercise::crossing` gives. A sighting of no incident is
//!   exercise traffic only when asked.
//! - [`run`] follows what the node stores and counts (metrics) and logs each
//!   arriving contribution the picture refuses and each correlation match.
use crate::domain::envelope::ms_to_ts;
use crate::domain::incident::{
    Audience, Body, Contribution, assistance_key, indicator_key, member_key, naming_key, picture,
    refusal, related_ids, validate_link, validate_merge, validate_sighting, validate_status,
};
use crate::domain::policy::{check_distribution, tlp_label};
use crate::proto::v1::{
    Alert, AssistanceRequest, AssistanceState, EnvelopeHeader, IncidentLink, IncidentMatch,
    IncidentMerge, IncidentStatus, IncidentStatusChange, IncidentSummary, LinkToIncidentRequest,
    MergeIncidentsRequest, MergeIncidentsResponse, MessageKind, ReportSightingRequest,
    SetIncidentStatusRequest, Sighting, Situation, Tlp,
};
use crate::service::arrivals::{Arrival, Follower};
use crate::service::ingest::{OriginateError, Outgoing};
use crate::service::limits::{PageBuilder, PageLimit};
use crate::service::node::Node;
use crate::service::requests::{self, RequestIdError, RequestKey};
use crate::service::{ErrorKind, InvalidArgument, ServiceError, check_id, now_ms};
use crate::storage::{StoreError, StoredMessage};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Most incidents (merged and linked parts) loaded for one picture.
pub const MAX_INCIDENTS: usize = 64;
/// Most messages loaded for one picture.
pub const MAX_MESSAGES: usize = 20_000;
/// Most correlation matches in a picture.
pub const MAX_MATCHES: usize = 100;
/// Most correlation matches on one Watch event.
pub const MAX_WATCH_MATCHES: usize = 20;
/// Most key rows read for one correlation question.
const MAX_KEY_ROWS: usize = 1000;
/// Most `(indicator, incident)` pairs read for the correlation of one arriving
/// message (Watch and the counting task).
const MAX_WATCH_KEY_ROWS: usize = 200;

/// Why an incident operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("{0}")]
    Invalid(#[from] InvalidArgument),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Originate(#[from] OriginateError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    RequestId(#[from] RequestIdError),
}

impl ServiceError for IncidentError {
    fn kind(&self) -> ErrorKind {
        match self {
            IncidentError::Invalid(_) => ErrorKind::InvalidArgument,
            IncidentError::NotFound(_) => ErrorKind::NotFound,
            IncidentError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            IncidentError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            IncidentError::Originate(e) => e.kind(),
            IncidentError::Store(e) => e.kind(),
            IncidentError::RequestId(e) => e.kind(),
        }
    }
}

impl From<crate::domain::incident::IncidentError> for IncidentError {
    fn from(e: crate::domain::incident::IncidentError) -> Self {
        IncidentError::Invalid(InvalidArgument::new(e.field, e.rule))
    }
}

/// The header of a stored message (its signed metadata).
fn header(m: &StoredMessage) -> EnvelopeHeader {
    EnvelopeHeader::decode(m.header.as_slice()).unwrap_or_default()
}

/// What the picture needs of a stored message; `state` is the replayed state
/// of an assistance request. `None` for kinds the picture does not use.
pub fn contribution(m: &StoredMessage, state: Option<AssistanceState>) -> Option<Contribution> {
    let h = header(m);
    let kind = MessageKind::try_from(m.kind).ok()?;
    let b = m.body();
    let body = if !m.readable {
        None
    } else {
        Some(match kind {
            MessageKind::Alert => Body::Alert(Alert::decode(b).ok()?),
            MessageKind::Sighting => Body::Sighting(Sighting::decode(b).ok()?),
            MessageKind::IncidentStatus => Body::Status(IncidentStatusChange::decode(b).ok()?),
            MessageKind::IncidentLink => Body::Link(IncidentLink::decode(b).ok()?),
            MessageKind::IncidentMerge => Body::Merge(IncidentMerge::decode(b).ok()?),
            MessageKind::AssistanceRequest => Body::Assistance {
                request: AssistanceRequest::decode(b).ok()?,
                state: state.unwrap_or(AssistanceState::Requested),
            },
            _ => return None,
        })
    };
    Some(Contribution {
        message_id: m.message_id.clone(),
        origin: m.origin.clone(),
        kind,
        tlp: Tlp::try_from(m.tlp).unwrap_or(Tlp::Unspecified),
        recipients: h.recipients,
        created_ms: m.created_ms,
        incident_id: h.incident_id,
        body,
        exercise: h.exercise,
    })
}

/// The contribution of a stored message, with an assistance request's state
/// replayed from its thread.
async fn load_one(node: &Node, m: &StoredMessage) -> Result<Option<Contribution>, StoreError> {
    let state = if m.kind == MessageKind::AssistanceRequest as i32 && m.readable {
        crate::service::assistance::load(node, &m.message_id)
            .await?
            .map(|(a, _)| a.state)
    } else {
        None
    };
    Ok(contribution(m, state))
}

/// Every contribution this node holds that the picture of `root` may need:
/// the incident's messages, the incidents merges and links name (and theirs),
/// linked messages, and the assistance requests that name its alerts.
pub async fn load(node: &Node, root: &str) -> Result<Vec<Contribution>, StoreError> {
    let mut out: BTreeMap<String, Contribution> = BTreeMap::new();
    let mut incidents: BTreeSet<String> = BTreeSet::from([root.to_string()]);
    let mut fetched: BTreeSet<String> = BTreeSet::new();
    loop {
        let want: Vec<String> = incidents
            .difference(&fetched)
            .take(MAX_INCIDENTS.saturating_sub(fetched.len()))
            .cloned()
            .collect();
        if want.is_empty() || out.len() >= MAX_MESSAGES {
            break;
        }
        fetched.extend(want.iter().cloned());
        // Links and merges that name these incidents from the other side.
        let naming: Vec<String> = want.iter().map(|id| naming_key(id)).collect();
        let mut related = Vec::new();
        for (_, id) in node.store.keyed(naming, MAX_KEY_ROWS).await? {
            if !out.contains_key(&id)
                && let Some(m) = node.store.get_message(&id).await?
                && let Some(c) = load_one(node, &m).await?
            {
                if !c.incident_id.is_empty() {
                    incidents.insert(c.incident_id.clone());
                }
                out.insert(id, c);
            }
        }
        let msgs = node
            .store
            .incident_messages(want, MAX_MESSAGES - out.len())
            .await?;
        for m in &msgs {
            if let Some(c) = load_one(node, m).await? {
                related.extend(related_ids(&c));
                out.insert(c.message_id.clone(), c);
            }
        }
        for id in related {
            if out.contains_key(&id) {
                if out[&id].incident_id == id {
                    incidents.insert(id);
                }
                continue;
            }
            let Some(m) = node.store.get_message(&id).await? else {
                // A merge may name an incident this node does not hold yet.
                incidents.insert(id);
                continue;
            };
            if let Some(c) = load_one(node, &m).await? {
                if c.incident_id == c.message_id {
                    incidents.insert(id.clone());
                }
                out.insert(id, c);
            }
        }
    }
    let keys: Vec<String> = out
        .values()
        .filter(|c| c.kind == MessageKind::Alert)
        .map(|c| assistance_key(&c.message_id))
        .collect();
    if !keys.is_empty() {
        for (_, request_id) in node.store.keyed(keys, MAX_KEY_ROWS).await? {
            if out.contains_key(&request_id) {
                continue;
            }
            if let Some(m) = node.store.get_message(&request_id).await?
                && let Some(c) = load_one(node, &m).await?
            {
                out.insert(request_id, c);
            }
        }
    }
    Ok(out.into_values().collect())
}

/// The picture of incident `incident_id` as this node sees it, with the
/// correlation matches of its indicators.
pub async fn situation(node: &Node, incident_id: &str) -> Result<Situation, IncidentError> {
    check_id("incident_id", incident_id, "incident id")?;
    let held = load(node, incident_id).await?;
    let Some(mut s) = picture(incident_id, &held) else {
        return Err(IncidentError::NotFound(format!(
            "no incident {incident_id} on this node (no alert that opened it is held here)"
        )));
    };
    let members: BTreeSet<&str> = held.iter().map(|c| c.message_id.as_str()).collect();
    s.matches = matches(node, &s, &members).await?;
    fit(&mut s);
    Ok(s)
}

/// Trims a picture to one answer (`service::limits::MAX_ANSWER_BYTES`): the
/// oldest timeline points and the least-seen indicators go first.
pub fn fit(s: &mut Situation) {
    let limit = crate::service::limits::MAX_ANSWER_BYTES - 64 * 1024;
    while s.encoded_len() > limit && (s.timeline.len() > 1 || s.indicators.len() > 1) {
        s.truncated = true;
        let t = s.timeline.len();
        s.timeline.drain(..t / 2);
        let i = s.indicators.len();
        s.indicators.truncate(i.div_ceil(2));
        s.refused.truncate(s.refused.len().div_ceil(2));
    }
}

/// Messages this node holds that share an indicator with the picture but are
/// not part of it.
async fn matches(
    node: &Node,
    s: &Situation,
    members: &BTreeSet<&str>,
) -> Result<Vec<IncidentMatch>, StoreError> {
    let by_key: BTreeMap<String, &crate::proto::v1::Indicator> = s
        .indicators
        .iter()
        .filter_map(|i| i.indicator.as_ref())
        .map(|i| (indicator_key(i), i))
        .collect();
    if by_key.is_empty() {
        return Ok(Vec::new());
    }
    let rows = node
        .store
        .keyed(by_key.keys().cloned().collect(), MAX_KEY_ROWS)
        .await?;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (key, message_id) in rows {
        if out.len() >= MAX_MATCHES {
            break;
        }
        if members.contains(message_id.as_str()) || !seen.insert(message_id.clone()) {
            continue;
        }
        let Some(m) = node.store.get_message(&message_id).await? else {
            continue;
        };
        // Correlation never crosses between exercise and real traffic.
        if m.is_exercise() != s.exercise {
            continue;
        }
        out.push(IncidentMatch {
            incident_id: s.incident_id.clone(),
            message_id,
            origin: m.origin,
            kind: m.kind,
            indicator: by_key.get(&key).map(|i| (*i).clone()),
        });
    }
    out.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    Ok(out)
}

/// For a message just stored: the incidents this node holds that share one of
/// its indicators while it is not part of them (correlation, for Watch).
pub async fn watch_matches(
    node: &Node,
    m: &StoredMessage,
) -> Result<Vec<IncidentMatch>, StoreError> {
    Ok(batch_matches(node, std::slice::from_ref(m))
        .await?
        .pop()
        .unwrap_or_default())
}

/// The indicators of a readable alert or sighting, by member key.
fn member_indicators(m: &StoredMessage) -> BTreeMap<String, crate::proto::v1::Indicator> {
    if !m.readable
        || !(m.kind == MessageKind::Alert as i32 || m.kind == MessageKind::Sighting as i32)
    {
        return BTreeMap::new();
    }
    let inds = if m.kind == MessageKind::Alert as i32 {
        Alert::decode(m.body())
            .map(|a| a.indicators)
            .unwrap_or_default()
    } else {
        Sighting::decode(m.body())
            .map(|s| s.indicators)
            .unwrap_or_default()
    };
    inds.into_iter()
        .map(|i| (member_key(&indicator_key(&i)), i))
        .collect()
}

/// One message to correlate: the incident its header names (its own, never
/// a match), its exercise flag, and the member keys of its indicators
/// (`domain::incident::member_key`), each once, in order.
struct Keyed<'a> {
    own: &'a str,
    exercise: bool,
    keys: Vec<String>,
}

/// The incidents each message matches, as (member key, incident) pairs, at
/// most [`MAX_WATCH_MATCHES`] per message, each incident once, with ONE read
/// of the member index for the whole batch (Watch and the counting task
/// follow the store in batches; a read per arrival would cost more than the
/// arrival). Answers one list per message, in order.
async fn keyed_matches(
    node: &Node,
    batch: &[Keyed<'_>],
) -> Result<Vec<Vec<(String, String)>>, StoreError> {
    let keys: BTreeSet<&String> = batch.iter().flat_map(|k| &k.keys).collect();
    if keys.is_empty() {
        return Ok(vec![Vec::new(); batch.len()]);
    }
    // Only members of incidents are read, each incident once per key: the
    // answer does not depend on how many loose messages share an indicator.
    let rows = node
        .store
        .keyed_incidents(
            keys.into_iter().cloned().collect(),
            MAX_WATCH_KEY_ROWS * batch.len().min(16),
        )
        .await?;
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, incident) in &rows {
        by_key.entry(key).or_default().push(incident);
    }
    // Each matched incident's flag (its opening alert's): correlation never
    // points a real message at an exercise incident, nor the reverse. One
    // read per distinct incident matched (matches are rare); an incident
    // whose opener is not held here is not shown (no picture to open).
    let mut flags: BTreeMap<&str, bool> = BTreeMap::new();
    for (_, incident) in &rows {
        if flags.contains_key(incident.as_str()) {
            continue;
        }
        if let Some(o) = node.store.get_message(incident).await? {
            flags.insert(incident, o.is_exercise());
        }
    }
    Ok(batch
        .iter()
        .map(|m| {
            let mut out: Vec<(String, String)> = Vec::new();
            let mut done: BTreeSet<&str> = BTreeSet::new();
            for key in &m.keys {
                for &incident in by_key.get(key.as_str()).into_iter().flatten() {
                    if out.len() >= MAX_WATCH_MATCHES {
                        return out;
                    }
                    if incident == m.own
                        || flags.get(incident) != Some(&m.exercise)
                        || !done.insert(incident)
                    {
                        continue;
                    }
                    out.push((key.clone(), incident.to_string()));
                }
            }
            out
        })
        .collect())
}

/// [`watch_matches`] for a batch of messages just stored (one read of the
/// member index for the batch).
pub async fn batch_matches(
    node: &Node,
    batch: &[StoredMessage],
) -> Result<Vec<Vec<IncidentMatch>>, StoreError> {
    let per: Vec<BTreeMap<String, crate::proto::v1::Indicator>> =
        batch.iter().map(member_indicators).collect();
    let owns: Vec<String> = batch.iter().map(|m| header(m).incident_id).collect();
    let keyed: Vec<Keyed<'_>> = batch
        .iter()
        .zip(&per)
        .zip(&owns)
        .map(|((m, inds), own)| Keyed {
            own,
            exercise: m.is_exercise(),
            keys: inds.keys().cloned().collect(),
        })
        .collect();
    let found = keyed_matches(node, &keyed).await?;
    Ok(batch
        .iter()
        .zip(&per)
        .zip(found)
        .map(|((m, inds), pairs)| {
            pairs
                .into_iter()
                .map(|(key, incident_id)| IncidentMatch {
                    incident_id,
                    message_id: m.message_id.clone(),
                    origin: m.origin.clone(),
                    kind: m.kind,
                    indicator: inds.get(&key).cloned(),
                })
                .collect()
        })
        .collect())
}

/// Rows read from the store at a time while filling a listing.
const CHUNK: usize = 16;

/// A page of incidents, newest first, below cursor `before` (0: the newest);
/// returns the page and the cursor to continue from (0: no more).
pub async fn list(
    node: &Node,
    include_resolved: bool,
    include_exercise: bool,
    before: u64,
    limit: PageLimit,
) -> Result<(Vec<IncidentSummary>, u64), IncidentError> {
    let mut page = PageBuilder::new(limit);
    let mut cursor = before;
    loop {
        let rows = node.store.incident_openers(cursor, CHUNK).await?;
        let exhausted = rows.len() < CHUNK;
        for m in rows {
            if !include_exercise && m.is_exercise() {
                cursor = m.cursor;
                continue;
            }
            let held = load(node, &m.message_id).await?;
            if let Some(mut s) = picture(&m.message_id, &held)
                && s.incident_id == m.message_id
                && (include_resolved || s.status != IncidentStatus::Resolved as i32)
            {
                let members: BTreeSet<&str> = held.iter().map(|c| c.message_id.as_str()).collect();
                s.matches = matches(node, &s, &members).await?;
                if !page.push(summary(&s)) {
                    return Ok((page.into_items(), cursor));
                }
            }
            cursor = m.cursor;
        }
        if exhausted {
            return Ok((page.into_items(), 0));
        }
    }
}

/// The listing line of a picture.
pub fn summary(s: &Situation) -> IncidentSummary {
    IncidentSummary {
        incident_id: s.incident_id.clone(),
        opener: s.opener.clone(),
        title: s.title.clone(),
        tlp: s.tlp,
        status: s.status,
        severity: s.severity,
        opened: s.opened,
        updated: s.updated,
        partners_affected: s.partners_affected.len() as u32,
        contributions: s.contributions,
        restricted: s.restricted.iter().map(|r| r.count).sum(),
        matches: s.matches.len() as u32,
        exercise: s.exercise,
    }
}

/// The incident's opening alert as this node holds it, and who may read it.
struct Held {
    opener: String,
    tlp: Tlp,
    recipients: Vec<String>,
    /// An exercise incident: this node's contributions to it are exercise too.
    exercise: bool,
}

impl Held {
    fn audience(&self) -> Audience<'_> {
        Audience {
            opener: &self.opener,
            tlp: self.tlp,
            recipients: &self.recipients,
            exercise: self.exercise,
        }
    }

    /// The incident's audience but this node: where its contributions go
    /// (empty: the whole federation).
    fn recipients_but(&self, me: &str) -> Vec<String> {
        if self.recipients.is_empty() {
            return Vec::new();
        }
        let mut to: Vec<String> = self.recipients.clone();
        to.push(self.opener.clone());
        to.retain(|r| r != me);
        to.sort();
        to.dedup();
        to
    }
}

/// Looks up incident `incident_id` for a contribution by this node: it must
/// be held and this node must be able to read it.
async fn held(node: &Node, field: &str, incident_id: &str) -> Result<Held, IncidentError> {
    check_id(field, incident_id, "incident id")?;
    let Some(m) = node.store.get_message(incident_id).await? else {
        return Err(IncidentError::NotFound(format!(
            "{field}: no incident {incident_id} on this node; contribute once its opening alert has arrived"
        )));
    };
    let h = header(&m);
    if m.kind != MessageKind::Alert as i32 || h.incident_id != m.message_id {
        return Err(IncidentError::FailedPrecondition(format!(
            "{field}: {incident_id} is a message, not an incident (no alert opened an incident with that id)"
        )));
    }
    if !m.readable {
        return Err(IncidentError::PermissionDenied(format!(
            "{field}: incident {incident_id} is {} for other nodes; this node cannot read it and may not contribute",
            tlp_label(Tlp::try_from(m.tlp).unwrap_or(Tlp::Unspecified))
        )));
    }
    Ok(Held {
        opener: m.origin,
        tlp: Tlp::try_from(m.tlp).unwrap_or(Tlp::Unspecified),
        recipients: h.recipients,
        exercise: h.exercise,
    })
}

/// Checks that this node may contribute a message of `kind` to incident
/// `incident_id` under `tlp` to `recipients` (marked `exercise`): the
/// exercise, marking and role rules.
pub async fn check_contribution(
    node: &Node,
    incident_id: &str,
    kind: MessageKind,
    tlp: Tlp,
    recipients: &[String],
    exercise: bool,
) -> Result<(), IncidentError> {
    let inc = held(node, "incident_id", incident_id).await?;
    if let Some(reason) = refusal(
        incident_id,
        &inc.audience(),
        &node.id,
        kind,
        tlp,
        recipients,
        exercise,
    ) {
        return Err(IncidentError::FailedPrecondition(reason));
    }
    Ok(())
}

/// The incident an alert published with these choices belongs to (for the
/// signed header): a new incident (its own id), the one named, or the one its
/// superseded alert belongs to.
#[allow(clippy::too_many_arguments)]
pub async fn alert_incident(
    node: &Node,
    message_id: &str,
    open_incident: bool,
    incident_id: &str,
    supersedes: &str,
    tlp: Tlp,
    recipients: &[String],
    exercise: bool,
) -> Result<String, IncidentError> {
    let inherited = if supersedes.is_empty() {
        String::new()
    } else {
        node.store
            .get_message(supersedes)
            .await?
            .map(|m| header(&m).incident_id)
            .unwrap_or_default()
    };
    if open_incident {
        if !incident_id.is_empty() {
            return Err(InvalidArgument::new(
                "open_incident",
                "not together with incident_id: an alert opens a new incident or joins one",
            )
            .into());
        }
        if !supersedes.is_empty() {
            return Err(InvalidArgument::new(
                "open_incident",
                "an update or retraction stays in the incident of the alert it supersedes; open an incident with a new alert",
            )
            .into());
        }
        return Ok(message_id.to_string());
    }
    if incident_id.is_empty() {
        return Ok(inherited);
    }
    if !inherited.is_empty() && inherited != incident_id {
        return Err(InvalidArgument::new(
            "incident_id",
            format!("the superseded alert belongs to incident {inherited}; an update stays in it"),
        )
        .into());
    }
    check_contribution(
        node,
        incident_id,
        MessageKind::Alert,
        tlp,
        recipients,
        exercise,
    )
    .await?;
    Ok(incident_id.to_string())
}

/// Signs `payload` as a contribution of `kind` to incident `incident_id`
/// (empty: a sighting of indicators alone) and sends it.
#[allow(clippy::too_many_arguments)]
async fn contribute(
    node: &Node,
    kind: MessageKind,
    incident_id: &str,
    tlp: Tlp,
    recipients: Vec<String>,
    payload: Vec<u8>,
    message_id: String,
    created_ms: i64,
    exercise: bool,
    attached: Option<Box<dyn crate::service::ingest::Attach>>,
) -> Result<String, IncidentError> {
    let out = Outgoing {
        kind,
        tlp,
        recipients,
        expires_ms: None,
        exercise,
        created_ms: Some(created_ms),
        payload,
    };
    use crate::service::ingest::{AttachedError, originate_attached};
    let (id, _) = originate_attached(node, out, message_id, incident_id.to_string(), attached)
        .await
        .map_err(|e| match e {
            AttachedError::WrongTlp => InvalidArgument::new(
                "start.attachments",
                "the attachments were uploaded for another TLP than the sighting's; upload them again",
            )
            .into(),
            AttachedError::Place(why) => {
                IncidentError::FailedPrecondition(format!("attachments: {why}"))
            }
            AttachedError::Originate(e) => e.into(),
        })?;
    tracing::info!(message_id = %id, incident_id, kind = kind.as_str_name(), tlp = tlp_label(tlp), "incident contribution signed");
    Ok(id)
}

/// Refuses a contribution the picture would leave out (a link that closes a
/// cycle, …): the picture with `c` added, as this node would show it.
async fn check_in_picture(node: &Node, c: Contribution) -> Result<Situation, IncidentError> {
    let mut held = load(node, &c.incident_id).await?;
    for id in related_ids(&c) {
        if !held.iter().any(|h| h.message_id == id) {
            held.extend(load(node, &id).await?);
        }
    }
    let id = c.message_id.clone();
    let root = c.incident_id.clone();
    held.push(c);
    let s = picture(&root, &held)
        .ok_or_else(|| IncidentError::NotFound(format!("no incident {root} on this node")))?;
    if let Some(r) = s.refused.iter().find(|r| r.message_id == id) {
        return Err(IncidentError::FailedPrecondition(r.reason.clone()));
    }
    Ok(s)
}

#[allow(clippy::too_many_arguments)]
fn draft(
    node: &Node,
    id: &str,
    kind: MessageKind,
    incident: &str,
    tlp: Tlp,
    to: &[String],
    at: i64,
    body: Body,
    exercise: bool,
) -> Contribution {
    Contribution {
        exercise,
        message_id: id.to_string(),
        origin: node.id.clone(),
        kind,
        tlp,
        recipients: to.to_vec(),
        created_ms: at,
        incident_id: incident.to_string(),
        body: Some(body),
    }
}

/// What an incident action records under its request id: the message it
/// sent (the wire form shared by `ReportSightingResponse`,
/// `LinkToIncidentResponse` and `SetIncidentStatusResponse`).
#[derive(Clone, PartialEq, prost::Message)]
struct Sent {
    #[prost(string, tag = "1")]
    message_id: String,
}

/// Runs `act` once per client request id (AIP-155, [`requests::once`]): a
/// retry with the same id and `body` (the encoded request without its id) returns the
/// first message id and sends nothing new.
async fn once<F, Fut>(
    node: &Node,
    operation: &'static str,
    client: &str,
    body: &[u8],
    act: F,
) -> Result<String, IncidentError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<String, IncidentError>>,
{
    let key = RequestKey::parse("request_id", client, operation, body)?;
    let answer = requests::once(
        &node.store,
        &node.requests,
        key,
        |message_id| async move { act(message_id).await.map(|message_id| Sent { message_id }) },
        |message_id| async move { Ok(Sent { message_id }) },
    )
    .await?;
    Ok(answer.message_id)
}

/// Reports a sighting as this node; returns its message id.
pub async fn sight(node: &Node, req: ReportSightingRequest) -> Result<String, IncidentError> {
    sight_with(node, req, None).await
}

/// [`sight`] with evidence attachments already uploaded and verified
/// (`service::attachments::upload_sighting`): they are put in place under the
/// message id, their manifests join the signed payload and their stored forms
/// the signed header; the files are removed again if the sighting is refused.
pub async fn sight_with(
    node: &Node,
    req: ReportSightingRequest,
    attached: Option<Box<dyn crate::service::ingest::Attach>>,
) -> Result<String, IncidentError> {
    let client = req.request_id.clone();
    let body = ReportSightingRequest {
        request_id: String::new(),
        ..req
    };
    once(
        node,
        "ReportSighting",
        &client,
        &body.encode_to_vec(),
        |message_id| sight_as(node, body, message_id, attached),
    )
    .await
}

async fn sight_as(
    node: &Node,
    req: ReportSightingRequest,
    message_id: String,
    attached: Option<Box<dyn crate::service::ingest::Attach>>,
) -> Result<String, IncidentError> {
    let Some(mut s) = req.sighting else {
        return Err(InvalidArgument::new(
            "sighting",
            "required: what was observed (incident or indicators, country, time, count)",
        )
        .into());
    };
    let now = now_ms();
    if s.count == 0 {
        s.count = 1;
    }
    if s.observed.is_none() {
        s.observed = Some(ms_to_ts(now));
    }
    let held = if s.incident_id.is_empty() {
        None
    } else {
        Some(held(node, "sighting.incident_id", &s.incident_id).await?)
    };
    if s.tlp == 0
        && let Some(h) = &held
    {
        s.tlp = h.tlp as i32;
    }
    // A sighting of an incident takes its flag; the caller may only agree.
    let exercise = match (&held, req.exercise) {
        (Some(h), Some(asked)) if asked != h.exercise => {
            return Err(IncidentError::FailedPrecondition(
                crate::domain::exercise::crossing(
                    "sighting",
                    asked,
                    "join",
                    &s.incident_id,
                    h.exercise,
                )
                .unwrap_or_default(),
            ));
        }
        (Some(h), _) => h.exercise,
        (None, asked) => asked.unwrap_or(false),
    };
    validate_sighting(&s, now)?;
    let tlp = Tlp::try_from(s.tlp).unwrap_or(Tlp::Unspecified);
    let recipients = match (&held, req.recipients.is_empty()) {
        (Some(h), true) if !h.recipients.is_empty() || crate::domain::policy::requires_e2e(tlp) => {
            let to = h.recipients_but(&node.id);
            if to.is_empty() && crate::domain::policy::requires_e2e(tlp) {
                return Err(InvalidArgument::new(
                    "recipients",
                    format!(
                        "{} needs named recipients: name them with --to",
                        tlp_label(tlp)
                    ),
                )
                .into());
            }
            to
        }
        _ => req.recipients,
    };
    check_distribution(tlp, &recipients).map_err(|e| InvalidArgument::new("recipients", e))?;
    node.check_members(&recipients)?;
    if let Some(h) = &held
        && let Some(reason) = refusal(
            &s.incident_id,
            &h.audience(),
            &node.id,
            MessageKind::Sighting,
            tlp,
            &recipients,
            h.exercise,
        )
    {
        return Err(IncidentError::FailedPrecondition(reason));
    }
    let incident = s.incident_id.clone();
    contribute(
        node,
        MessageKind::Sighting,
        &incident,
        tlp,
        recipients,
        s.encode_to_vec(),
        message_id,
        now,
        exercise,
        attached,
    )
    .await
}

/// The TLP a sighting will carry: its own, or its incident's when it names
/// one held here and sets none (as [`sight`] decides it).
pub async fn sighting_tlp(node: &Node, req: &ReportSightingRequest) -> Result<Tlp, IncidentError> {
    let Some(s) = &req.sighting else {
        return Err(InvalidArgument::new(
            "sighting",
            "required: what was observed (incident or indicators, country, time, count)",
        )
        .into());
    };
    if s.tlp != 0 || s.incident_id.is_empty() {
        return Ok(Tlp::try_from(s.tlp).unwrap_or(Tlp::Unspecified));
    }
    let h = held(node, "sighting.incident_id", &s.incident_id).await?;
    Ok(h.tlp)
}

/// Links a message into an incident as this node; returns the link's id.
pub async fn link(node: &Node, req: LinkToIncidentRequest) -> Result<String, IncidentError> {
    let client = req.request_id.clone();
    let body = LinkToIncidentRequest {
        request_id: String::new(),
        ..req
    };
    once(
        node,
        "LinkToIncident",
        &client,
        &body.encode_to_vec(),
        |message_id| link_as(node, body, message_id),
    )
    .await
}

async fn link_as(
    node: &Node,
    req: LinkToIncidentRequest,
    message_id: String,
) -> Result<String, IncidentError> {
    let l = IncidentLink {
        incident_id: req.incident_id,
        message_id: req.message_id,
        note: req.note,
    };
    check_id("message_id", &l.message_id, "message id")?;
    validate_link(&l)?;
    let inc = held(node, "incident_id", &l.incident_id).await?;
    match node.store.get_message(&l.message_id).await? {
        None => {
            return Err(IncidentError::NotFound(format!(
                "message_id: no message {} on this node; link what this node holds",
                l.message_id
            )));
        }
        Some(m)
            if ![
                MessageKind::Alert,
                MessageKind::Sighting,
                MessageKind::AssistanceRequest,
            ]
            .iter()
            .any(|k| *k as i32 == m.kind) =>
        {
            return Err(IncidentError::FailedPrecondition(format!(
                "message_id: {} is not an alert, a sighting or an assistance request",
                l.message_id
            )));
        }
        Some(_) => {}
    }
    let tlp = inc.tlp;
    let to = inc.recipients_but(&node.id);
    let now = now_ms();
    check_in_picture(
        node,
        draft(
            node,
            &message_id,
            MessageKind::IncidentLink,
            &l.incident_id,
            tlp,
            &to,
            now,
            Body::Link(l.clone()),
            inc.exercise,
        ),
    )
    .await?;
    contribute(
        node,
        MessageKind::IncidentLink,
        &l.incident_id,
        tlp,
        to,
        l.encode_to_vec(),
        message_id,
        now,
        inc.exercise,
        None,
    )
    .await
}

/// Changes an incident's status as its opener; returns the message id.
pub async fn set_status(
    node: &Node,
    req: SetIncidentStatusRequest,
) -> Result<String, IncidentError> {
    let client = req.request_id.clone();
    let body = SetIncidentStatusRequest {
        request_id: String::new(),
        ..req
    };
    once(
        node,
        "SetIncidentStatus",
        &client,
        &body.encode_to_vec(),
        |message_id| status_as(node, body, message_id),
    )
    .await
}

async fn status_as(
    node: &Node,
    req: SetIncidentStatusRequest,
    message_id: String,
) -> Result<String, IncidentError> {
    let st = IncidentStatusChange {
        incident_id: req.incident_id,
        status: req.status,
        note: req.note,
    };
    check_id("incident_id", &st.incident_id, "incident id")?;
    validate_status(&st)?;
    let inc = held(node, "incident_id", &st.incident_id).await?;
    if inc.opener != node.id {
        return Err(IncidentError::PermissionDenied(format!(
            "only the opener {} changes the status of incident {}; this node is {}",
            inc.opener, st.incident_id, node.id
        )));
    }
    let to = inc.recipients_but(&node.id);
    contribute(
        node,
        MessageKind::IncidentStatus,
        &st.incident_id,
        inc.tlp,
        to,
        st.encode_to_vec(),
        message_id,
        now_ms(),
        inc.exercise,
        None,
    )
    .await
}

/// Says, as the opener of `incident_id`, that it and `other_incident_id` are
/// one; returns the message id and whether the merge is now in effect.
pub async fn merge(
    node: &Node,
    req: MergeIncidentsRequest,
) -> Result<(String, bool), IncidentError> {
    let client = req.request_id.clone();
    let body = MergeIncidentsRequest {
        request_id: String::new(),
        ..req
    };
    let key = RequestKey::parse(
        "request_id",
        &client,
        "MergeIncidents",
        &body.encode_to_vec(),
    )?;
    let answer = requests::once(
        &node.store,
        &node.requests,
        key,
        |message_id| async move { merge_as(node, body, message_id).await },
        |message_id| async move {
            Ok(MergeIncidentsResponse {
                message_id,
                merged: false,
            })
        },
    )
    .await?;
    Ok((answer.message_id, answer.merged))
}

async fn merge_as(
    node: &Node,
    req: MergeIncidentsRequest,
    message_id: String,
) -> Result<MergeIncidentsResponse, IncidentError> {
    let m = IncidentMerge {
        incident_id: req.incident_id,
        other_incident_id: req.other_incident_id,
        note: req.note,
    };
    check_id("incident_id", &m.incident_id, "incident id")?;
    check_id("other_incident_id", &m.other_incident_id, "incident id")?;
    validate_merge(&m)?;
    let inc = held(node, "incident_id", &m.incident_id).await?;
    if inc.opener != node.id {
        return Err(IncidentError::PermissionDenied(format!(
            "only the opener {} merges incident {}; this node is {} (the opener of the other incident merges from its side)",
            inc.opener, m.incident_id, node.id
        )));
    }
    let other = held(node, "other_incident_id", &m.other_incident_id).await?;
    if !inc.audience().includes(&other.opener) {
        return Err(IncidentError::FailedPrecondition(format!(
            "the opener of {}, {}, is not among the recipients of incident {} and could never agree to the merge",
            m.other_incident_id, other.opener, m.incident_id
        )));
    }
    let to = inc.recipients_but(&node.id);
    let now = now_ms();
    let s = check_in_picture(
        node,
        draft(
            node,
            &message_id,
            MessageKind::IncidentMerge,
            &m.incident_id,
            inc.tlp,
            &to,
            now,
            Body::Merge(m.clone()),
            inc.exercise,
        ),
    )
    .await?;
    let merged = s.merged.contains(&m.other_incident_id) || s.merged.contains(&m.incident_id);
    let id = contribute(
        node,
        MessageKind::IncidentMerge,
        &m.incident_id,
        inc.tlp,
        to,
        m.encode_to_vec(),
        message_id,
        now,
        inc.exercise,
        None,
    )
    .await?;
    Ok(MergeIncidentsResponse {
        message_id: id,
        merged,
    })
}

/// Follows what the node stores until it stops: for each arriving incident
/// contribution that the picture refuses, and each correlation match, counts
/// it (`certfed_incident_refusals_total{rule}`, `certfed_incident_matches_total`)
/// and logs it. Takes what each commit hands over (`service::arrivals`: no
/// store read, no payload decode per message), the store by cursor where that
/// breaks; never scans history.
pub async fn run(node: Arc<Node>) {
    let notes = node.stored.subscribe();
    let cursor = match node.store.last_cursor().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "incidents: cannot read the store; correlation counting is off");
            return;
        }
    };
    let mut follow = Follower::new(notes, cursor, |a| &a.incidents);
    while let Some(batch) = follow
        .next(&node.store, &node.arrivals, &node.shutdown)
        .await
    {
        let from_others: Vec<&Arrival> = batch
            .iter()
            .map(|a| a.as_ref())
            .filter(|a| a.origin != node.id)
            .collect();
        for a in &from_others {
            // A contribution to an incident (rare): its rules need the
            // message's header.
            if a.incident_id.as_ref().is_some_and(|i| *i != a.message_id) {
                match node.store.get_message(&a.message_id).await {
                    Ok(Some(m)) => arrived(&node, &m).await,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "incidents: cannot read an arriving contribution")
                    }
                }
            }
        }
        let keyed: Vec<Keyed<'_>> = from_others
            .iter()
            .map(|a| Keyed {
                own: a.incident_id.as_deref().unwrap_or(""),
                exercise: a.exercise,
                keys: a.indicator_keys().map(member_key).collect(),
            })
            .collect();
        match keyed_matches(&node, &keyed).await {
            Ok(found) => {
                for (a, f) in from_others.iter().zip(found) {
                    for (_, incident_id) in f {
                        node.metrics.count_incident_match(a.exercise);
                        tracing::info!(message_id = %a.message_id, from = %a.origin, %incident_id, "correlation: shares an indicator with an incident held here; link it with `certfed incident link`");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "incidents: correlation lookup failed"),
        }
    }
}

/// The metric label of a refusal reason (a bounded set).
pub fn refusal_rule(reason: &str) -> &'static str {
    if reason.contains("exercise and real traffic are kept apart") {
        "exercise"
    } else if reason.contains("cannot read it") {
        "not_recipient"
    } else if reason.contains("only the opener") {
        "not_opener"
    } else if reason.contains("cycle") {
        "cycle"
    } else {
        "marking"
    }
}

async fn arrived(node: &Node, m: &StoredMessage) {
    let h = header(m);
    if !h.incident_id.is_empty()
        && h.incident_id != m.message_id
        && let Ok(Some(op)) = node.store.get_message(&h.incident_id).await
    {
        let oh = header(&op);
        let aud = Audience {
            opener: &op.origin,
            tlp: Tlp::try_from(op.tlp).unwrap_or(Tlp::Unspecified),
            recipients: &oh.recipients,
            exercise: oh.exercise,
        };
        let kind = MessageKind::try_from(m.kind).unwrap_or(MessageKind::Unspecified);
        let tlp = Tlp::try_from(m.tlp).unwrap_or(Tlp::Unspecified);
        let reason = match refusal(
            &h.incident_id,
            &aud,
            &m.origin,
            kind,
            tlp,
            &h.recipients,
            h.exercise,
        ) {
            Some(reason) => Some(reason),
            // A cycle relates one link to others: the picture decides it
            // (links are rare; the load is bounded like any picture's).
            None if kind == MessageKind::IncidentLink && m.readable => {
                match load(node, &h.incident_id).await {
                    Ok(held) => picture(&h.incident_id, &held).and_then(|s| {
                        s.refused
                            .into_iter()
                            .find(|r| r.message_id == m.message_id)
                            .map(|r| r.reason)
                    }),
                    Err(e) => {
                        tracing::warn!(error = %e, "incidents: cannot load the picture of an arriving link");
                        None
                    }
                }
            }
            None => None,
        };
        if let Some(reason) = reason {
            node.metrics
                .incident_refused(refusal_rule(&reason), h.exercise);
            tracing::warn!(message_id = %m.message_id, from = %m.origin, incident_id = %h.incident_id, %reason, "incident contribution refused: left out of the picture");
        }
    }
}
