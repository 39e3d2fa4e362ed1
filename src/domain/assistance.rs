//! The assistance workflow (Tallinn Mechanism / EU Cybersecurity Reserve pattern) as a
//! pure state machine: a partner under attack requests help, donors offer, the requester
//! accepts or declines, then moves its request to DEPLOYED, COMPLETED and CLOSED (or
//! WITHDRAWN at any point before completion).
//!
//! A request is identified by the message id of its signed request envelope; its
//! requester is that envelope's origin node. Every later step is a signed message too
//! ([`SignedStep`]). The requester's node is the authority on its request: it runs
//! [`check`] before signing a step; donors run [`check`] before signing theirs; every node
//! mirrors the state with [`replay`].
//!
//! **Convergence rule.** The state is a pure function of the *set* of signed steps:
//! [`replay`] drops duplicates, sorts the steps by `(created_ms, message_id)` and folds
//! them, applying each step only if it is valid at that point. An invalid step stays in
//! the history, marked as ignored with the reason, and has no effect. Messages may arrive
//! in any order and may cross (a donor withdraws its offer while the requester accepts
//! it; a donor offers after a closure it has not heard of yet): every node holding the
//! same set shows the same state. [`check`] only accepts a step created after every step
//! already known (see [`next_created_ms`]), so a step it accepts is also applied by
//! [`replay`] at its place in the order.
//!
//! Content errors are [`AssistanceError::Invalid`] naming the proto field (e.g.
//! `request.contacts[1].email`), as in [`crate::domain::alert`]. No I/O here.
use std::collections::HashSet;

use prost::Message;
use prost_types::Timestamp;

use crate::domain::alert::validate_indicator;
use crate::domain::policy::tlp_from_wire;
use crate::proto::v1::{
    AssistanceEvent, AssistanceRequest, AssistanceService, AssistanceState, AssistanceView,
    Contact, DecisionMessage, EntityCategory, FundingChannel, Indicator, IndicatorType, Nis2Sector,
    Offer, OfferMessage, OfferState, OfferView, RsitClass, Severity, StatusMessage,
};

/// Longest request title or offer summary, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// The payload of one signed message in an assistance workflow.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Opens the request; the request id is this step's message id.
    Request(AssistanceRequest),
    /// A donor's offer; the offer id is this step's message id.
    Offer(OfferMessage),
    /// The requester accepts or declines a pending offer.
    Decision(DecisionMessage),
    /// The requester moves its request (`state` set), or a donor withdraws its own offer
    /// (`withdraw_offer_id` set, `state` unset).
    Status(StatusMessage),
}

impl Step {
    /// The request this step belongs to (`message_id` is the id of the message carrying
    /// the step, which is the request id for a [`Step::Request`]).
    pub fn request_id<'a>(&'a self, message_id: &'a str) -> &'a str {
        match self {
            Step::Request(_) => message_id,
            Step::Offer(m) => &m.request_id,
            Step::Decision(m) => &m.request_id,
            Step::Status(m) => &m.request_id,
        }
    }

    /// What the step is, in words ("offer", "decision", …).
    fn noun(&self) -> &'static str {
        match self {
            Step::Request(_) => "request",
            Step::Offer(_) => "offer",
            Step::Decision(_) => "decision",
            Step::Status(m) if !m.withdraw_offer_id.is_empty() => "offer withdrawal",
            Step::Status(_) => "status update",
        }
    }

    /// The free-text note the step carries, for the history.
    fn note(&self) -> String {
        match self {
            Step::Request(_) => String::new(),
            Step::Offer(m) => m
                .offer
                .as_ref()
                .map(|o| o.conditions.clone())
                .unwrap_or_default(),
            Step::Decision(m) => m.note.clone(),
            Step::Status(m) => {
                if m.summary_report.is_empty() {
                    m.note.clone()
                } else if m.note.is_empty() {
                    format!("summary report: {}", m.summary_report)
                } else {
                    format!("{}\nsummary report: {}", m.note, m.summary_report)
                }
            }
        }
    }

    /// Deterministic bytes of the payload, to order conflicting copies of one message id.
    fn key_bytes(&self) -> (u8, Vec<u8>) {
        match self {
            Step::Request(m) => (0, m.encode_to_vec()),
            Step::Offer(m) => (1, m.encode_to_vec()),
            Step::Decision(m) => (2, m.encode_to_vec()),
            Step::Status(m) => (3, m.encode_to_vec()),
        }
    }
}

/// One signed message of the workflow: who signed it (member id of the origin node), when
/// (unix ms) and its globally unique message id.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedStep {
    pub message_id: String,
    pub actor: String,
    pub created_ms: i64,
    pub step: Step,
}

/// One offer on a request.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferEntry {
    /// Message id of the offer step.
    pub offer_id: String,
    /// Member id of the donor (the offer step's actor).
    pub donor: String,
    pub state: OfferState,
    pub offer: Offer,
    /// Note given with the requester's decision, if any.
    pub decision_note: String,
    pub created_ms: i64,
}

/// One step in the history of a request, applied or ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub message_id: String,
    pub actor: String,
    pub at_ms: i64,
    /// What happened, in words; starts with "ignored: " and gives the reason when the
    /// step was not applied.
    pub action: String,
    pub note: String,
    /// False when the step was ignored (invalid at its place in the order).
    pub applied: bool,
}

/// The state of one assistance request, as replayed from its signed steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Assistance {
    pub request_id: String,
    pub requester: String,
    pub state: AssistanceState,
    pub request: AssistanceRequest,
    /// Offers in the order they were applied.
    pub offers: Vec<OfferEntry>,
    /// Every step of the request (after dedup), in replay order, applied or ignored.
    pub history: Vec<HistoryEntry>,
    pub created_ms: i64,
}

/// Why a step is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssistanceError {
    /// Wrong party: the message names who may take the step.
    #[error("{0}")]
    PermissionDenied(String),
    /// Invalid transition: the message names the current state and the allowed moves.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Unknown request or offer.
    #[error("{0}")]
    NotFound(String),
    /// Bad content: the proto field and the rule broken.
    #[error("{field}: {rule}")]
    Invalid { field: String, rule: String },
}

fn invalid(field: impl Into<String>, rule: impl Into<String>) -> AssistanceError {
    AssistanceError::Invalid {
        field: field.into(),
        rule: rule.into(),
    }
}

/// Display label of a request state: `REQUESTED`, `OFFERED`, …
pub fn state_label(s: AssistanceState) -> &'static str {
    match s {
        AssistanceState::Unspecified => "UNSPECIFIED",
        AssistanceState::Requested => "REQUESTED",
        AssistanceState::Offered => "OFFERED",
        AssistanceState::Accepted => "ACCEPTED",
        AssistanceState::Deployed => "DEPLOYED",
        AssistanceState::Completed => "COMPLETED",
        AssistanceState::Closed => "CLOSED",
        AssistanceState::Withdrawn => "WITHDRAWN",
    }
}

/// Display label of an offer state: `PENDING`, `ACCEPTED`, …
pub fn offer_state_label(s: OfferState) -> &'static str {
    match s {
        OfferState::Unspecified => "UNSPECIFIED",
        OfferState::Pending => "PENDING",
        OfferState::Accepted => "ACCEPTED",
        OfferState::Declined => "DECLINED",
        OfferState::Withdrawn => "WITHDRAWN",
    }
}

/// The allowed moves from a state. REQUESTED ↔ OFFERED ↔ ACCEPTED follow from offers,
/// decisions and offer withdrawals; DEPLOYED, COMPLETED, CLOSED and WITHDRAWN are set by
/// the requester with a status message. CLOSED and WITHDRAWN are terminal.
pub fn allowed_moves(state: AssistanceState) -> &'static [AssistanceState] {
    use AssistanceState::*;
    match state {
        Requested => &[Offered, Withdrawn],
        Offered => &[Accepted, Requested, Withdrawn],
        Accepted => &[Deployed, Offered, Requested, Withdrawn],
        Deployed => &[Completed, Withdrawn],
        Completed => &[Closed],
        Closed | Withdrawn | Unspecified => &[],
    }
}

/// True for CLOSED and WITHDRAWN: every later step is refused.
pub fn is_terminal(state: AssistanceState) -> bool {
    matches!(state, AssistanceState::Closed | AssistanceState::Withdrawn)
}

/// "request is CLOSED; allowed moves from CLOSED: none".
fn state_and_moves(state: AssistanceState) -> String {
    let s = state_label(state);
    let moves = allowed_moves(state);
    let list = if moves.is_empty() {
        "none".to_string()
    } else {
        moves
            .iter()
            .map(|m| state_label(*m))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("request is {s}; allowed moves from {s}: {list}")
}

fn precondition(state: AssistanceState, why: &str) -> AssistanceError {
    AssistanceError::FailedPrecondition(format!("{}; {why}", state_and_moves(state)))
}

/// States a requester may set with a status message.
const STATUS_TARGETS: [AssistanceState; 4] = [
    AssistanceState::Deployed,
    AssistanceState::Completed,
    AssistanceState::Closed,
    AssistanceState::Withdrawn,
];

/// States in which offers are taken and may be withdrawn.
fn open_for_offers(state: AssistanceState) -> bool {
    matches!(
        state,
        AssistanceState::Requested | AssistanceState::Offered | AssistanceState::Accepted
    )
}

fn timestamp_ms(ts: &Timestamp, field: &str) -> Result<i64, AssistanceError> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(invalid(
            field,
            format!(
                "invalid timestamp: nanos {} is outside 0..999999999",
                ts.nanos
            ),
        ));
    }
    ts.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(ts.nanos / 1_000_000)))
        .ok_or_else(|| invalid(field, format!("timestamp {} s is out of range", ts.seconds)))
}

fn ms_timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        // rem_euclid(1000) * 1e6 < 1e9 fits in i32
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn validate_service(v: i32, field: String) -> Result<(), AssistanceError> {
    match AssistanceService::try_from(v) {
        Ok(AssistanceService::Unspecified) => Err(invalid(
            field,
            "ASSISTANCE_SERVICE_UNSPECIFIED is not a service; name the service or remove the entry",
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(invalid(
            field,
            format!("unknown service value {v}; use one of the ASSISTANCE_SERVICE_* values"),
        )),
    }
}

fn validate_services(list: &[i32], prefix: &str) -> Result<(), AssistanceError> {
    for (i, &s) in list.iter().enumerate() {
        let field = format!("{prefix}[{i}]");
        validate_service(s, field.clone())?;
        if list[..i].contains(&s) {
            let name = AssistanceService::try_from(s)
                .map(|v| v.as_str_name())
                .unwrap_or("?");
            return Err(invalid(
                field,
                format!("{name} is listed twice; list each service once"),
            ));
        }
    }
    Ok(())
}

fn validate_contacts(contacts: &[Contact], prefix: &str) -> Result<(), AssistanceError> {
    for (i, c) in contacts.iter().enumerate() {
        if c.name.trim().is_empty() && c.email.trim().is_empty() && c.phone.trim().is_empty() {
            return Err(invalid(
                format!("{prefix}[{i}]"),
                "empty contact; give at least a name, e-mail or phone, or remove the entry",
            ));
        }
        if !c.email.is_empty() {
            let ind = Indicator {
                r#type: IndicatorType::Email as i32,
                value: c.email.clone(),
                comment: String::new(),
            };
            validate_indicator(&ind)
                .map_err(|rule| invalid(format!("{prefix}[{i}].email"), rule))?;
        }
    }
    Ok(())
}

fn known_enum<T>(
    v: i32,
    parse: impl Fn(i32) -> Result<T, prost::UnknownEnumValue>,
    field: &str,
    what: &str,
    prefix: &str,
) -> Result<(), AssistanceError> {
    parse(v).map(|_| ()).map_err(|_| {
        invalid(
            field,
            format!(
                "unknown {what} value {v}; use one of the {prefix}* values (or leave it unset)"
            ),
        )
    })
}

/// Validates request content before the requester signs it and when any node receives
/// it: title required (≤ 200 characters), description required, TLP set, at least one
/// service and no UNSPECIFIED/unknown or repeated services, known sector, entity category,
/// RSIT class and severity values (unset allowed), deadline (if set) after `created_ms`,
/// contacts not empty with plausible e-mails, linked alerts are UUIDs.
pub fn validate_request(r: &AssistanceRequest, created_ms: i64) -> Result<(), AssistanceError> {
    if r.title.trim().is_empty() {
        return Err(invalid(
            "request.title",
            "required: give the request a short headline (not only spaces)",
        ));
    }
    let n = r.title.chars().count();
    if n > MAX_TITLE_CHARS {
        return Err(invalid(
            "request.title",
            format!(
                "title is {n} characters, over the limit of {MAX_TITLE_CHARS}; shorten it and put details in the description"
            ),
        ));
    }
    if r.description.trim().is_empty() {
        return Err(invalid(
            "request.description",
            "required: say what happened and what help is needed",
        ));
    }
    tlp_from_wire(r.tlp).map_err(|rule| invalid("request.tlp", rule))?;
    if r.services.is_empty() {
        return Err(invalid(
            "request.services",
            "required: ask for at least one service (e.g. ASSISTANCE_SERVICE_INCIDENT_RESPONSE)",
        ));
    }
    validate_services(&r.services, "request.services")?;
    known_enum(
        r.sector,
        Nis2Sector::try_from,
        "request.sector",
        "NIS2 sector",
        "NIS2_SECTOR_",
    )?;
    known_enum(
        r.entity_category,
        EntityCategory::try_from,
        "request.entity_category",
        "entity category",
        "ENTITY_CATEGORY_",
    )?;
    known_enum(
        r.rsit_class,
        RsitClass::try_from,
        "request.rsit_class",
        "RSIT class",
        "RSIT_CLASS_",
    )?;
    known_enum(
        r.severity,
        Severity::try_from,
        "request.severity",
        "severity",
        "SEVERITY_",
    )?;
    if let Some(needs) = &r.needs {
        for (i, s) in needs.skills.iter().enumerate() {
            if s.trim().is_empty() {
                return Err(invalid(
                    format!("request.needs.skills[{i}]"),
                    "empty skill; name the skill or remove the entry",
                ));
            }
        }
    }
    if let Some(ts) = &r.deadline {
        let d = timestamp_ms(ts, "request.deadline")?;
        if d <= created_ms {
            return Err(invalid(
                "request.deadline",
                format!(
                    "deadline ({d} ms since the epoch) is not after the creation time ({created_ms} ms); set a later deadline or leave it unset"
                ),
            ));
        }
    }
    validate_contacts(&r.contacts, "request.contacts")?;
    for (i, id) in r.linked_alerts.iter().enumerate() {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(invalid(
                format!("request.linked_alerts[{i}]"),
                format!("{id:?} is not an alert message id (a UUID)"),
            ));
        }
    }
    Ok(())
}

/// Validates an offer's content: summary required (≤ 200 characters), capabilities known
/// and not repeated, known funding channel (unset allowed), availability window ordered,
/// contacts plausible.
pub fn validate_offer(o: &Offer) -> Result<(), AssistanceError> {
    if o.summary.trim().is_empty() {
        return Err(invalid(
            "offer.summary",
            "required: summarise the offer in one line (not only spaces)",
        ));
    }
    let n = o.summary.chars().count();
    if n > MAX_TITLE_CHARS {
        return Err(invalid(
            "offer.summary",
            format!(
                "summary is {n} characters, over the limit of {MAX_TITLE_CHARS}; put details in the conditions"
            ),
        ));
    }
    validate_services(&o.capabilities, "offer.capabilities")?;
    known_enum(
        o.funding,
        FundingChannel::try_from,
        "offer.funding",
        "funding channel",
        "FUNDING_CHANNEL_",
    )?;
    let from = o
        .available_from
        .as_ref()
        .map(|t| timestamp_ms(t, "offer.available_from"))
        .transpose()?;
    let until = o
        .available_until
        .as_ref()
        .map(|t| timestamp_ms(t, "offer.available_until"))
        .transpose()?;
    if let (Some(f), Some(u)) = (from, until)
        && u <= f
    {
        return Err(invalid(
            "offer.available_until",
            format!(
                "available_until ({u} ms since the epoch) is not after available_from ({f} ms); swap them or fix the window"
            ),
        ));
    }
    validate_contacts(&o.contacts, "offer.contacts")?;
    Ok(())
}

impl Assistance {
    fn offer_index(&self, offer_id: &str) -> Result<usize, AssistanceError> {
        self.offers
            .iter()
            .position(|o| o.offer_id == offer_id)
            .ok_or_else(|| {
                AssistanceError::NotFound(format!(
                    "offer {offer_id} not found on request {}",
                    self.request_id
                ))
            })
    }

    fn any_offer(&self, state: OfferState) -> bool {
        self.offers.iter().any(|o| o.state == state)
    }

    /// After a decline or withdrawal: ACCEPTED while an offer is accepted, else OFFERED
    /// while one is pending, else REQUESTED. Only moves between those three states.
    fn settle(&mut self) -> Option<AssistanceState> {
        if !matches!(
            self.state,
            AssistanceState::Offered | AssistanceState::Accepted
        ) {
            return None;
        }
        let next = if self.any_offer(OfferState::Accepted) {
            AssistanceState::Accepted
        } else if self.any_offer(OfferState::Pending) {
            AssistanceState::Offered
        } else {
            AssistanceState::Requested
        };
        let changed = next != self.state;
        self.state = next;
        changed.then_some(next)
    }

    /// Time of the latest known step (applied or ignored), unix ms.
    pub fn latest_ms(&self) -> i64 {
        self.history
            .iter()
            .map(|h| h.at_ms)
            .max()
            .unwrap_or(self.created_ms)
    }

    /// The proto view for the Operator API. The history includes ignored steps (their
    /// action starts with "ignored: ").
    pub fn to_view(&self, now_ms: i64) -> AssistanceView {
        AssistanceView {
            request_id: self.request_id.clone(),
            requester: self.requester.clone(),
            state: self.state as i32,
            request: Some(self.request.clone()),
            offers: self
                .offers
                .iter()
                .map(|o| OfferView {
                    offer_id: o.offer_id.clone(),
                    donor: o.donor.clone(),
                    state: o.state as i32,
                    offer: Some(o.offer.clone()),
                    decision_note: o.decision_note.clone(),
                })
                .collect(),
            overdue: overdue(self, now_ms),
            history: self
                .history
                .iter()
                .map(|h| AssistanceEvent {
                    message_id: h.message_id.clone(),
                    actor: h.actor.clone(),
                    at: Some(ms_timestamp(h.at_ms)),
                    action: h.action.clone(),
                    note: h.note.clone(),
                })
                .collect(),
        }
    }
}

fn moved(change: Option<AssistanceState>) -> String {
    change
        .map(|s| format!("; request back to {}", state_label(s)))
        .unwrap_or_default()
}

/// Validates `step` by `actor` against `a` and applies it, returning the history action.
/// `a` is left unchanged on error.
fn apply(
    a: &mut Assistance,
    actor: &str,
    step: &Step,
    message_id: &str,
    created_ms: i64,
) -> Result<String, AssistanceError> {
    match step {
        Step::Request(_) => Err(AssistanceError::FailedPrecondition(format!(
            "request {} already exists (requested by {}); a request is opened once",
            a.request_id, a.requester
        ))),
        Step::Offer(m) => {
            let offer = m.offer.as_ref().ok_or_else(|| {
                invalid(
                    "offer",
                    "required: the offer (summary, capabilities, capacity …)",
                )
            })?;
            validate_offer(offer)?;
            if actor == a.requester {
                return Err(AssistanceError::PermissionDenied(
                    "the requester cannot offer on its own request; offers come from other nodes"
                        .to_string(),
                ));
            }
            if !open_for_offers(a.state) {
                return Err(precondition(
                    a.state,
                    "offers are taken while REQUESTED, OFFERED or ACCEPTED",
                ));
            }
            a.offers.push(OfferEntry {
                offer_id: message_id.to_string(),
                donor: actor.to_string(),
                state: OfferState::Pending,
                offer: offer.clone(),
                decision_note: String::new(),
                created_ms,
            });
            let mut change = "";
            if a.state == AssistanceState::Requested {
                a.state = AssistanceState::Offered;
                change = "; request now OFFERED";
            }
            let what = if offer.capacity_person_days > 0 {
                format!("{} person-days", offer.capacity_person_days)
            } else {
                "assistance".to_string()
            };
            Ok(format!(
                "{actor} offered {what} (offer {message_id}): {}{change}",
                offer.summary
            ))
        }
        Step::Decision(d) => {
            if d.offer_id.is_empty() {
                return Err(invalid(
                    "decision.offer_id",
                    "required: the message id of the offer decided on",
                ));
            }
            if actor != a.requester {
                return Err(AssistanceError::PermissionDenied(format!(
                    "only the requester {} may accept or decline offers on request {}; {actor} is not the requester",
                    a.requester, a.request_id
                )));
            }
            let i = a.offer_index(&d.offer_id)?;
            if is_terminal(a.state) {
                return Err(precondition(a.state, "no more decisions"));
            }
            let o = &a.offers[i];
            if o.state != OfferState::Pending {
                return Err(AssistanceError::FailedPrecondition(format!(
                    "offer {} from {} is {}; only a PENDING offer can be accepted or declined",
                    o.offer_id,
                    o.donor,
                    offer_state_label(o.state)
                )));
            }
            let donor = o.donor.clone();
            if d.accept {
                if !matches!(
                    a.state,
                    AssistanceState::Offered | AssistanceState::Accepted
                ) {
                    return Err(precondition(
                        a.state,
                        "offers can be accepted while the request is OFFERED or ACCEPTED",
                    ));
                }
                a.offers[i].state = OfferState::Accepted;
                a.offers[i].decision_note = d.note.clone();
                let change = if a.state == AssistanceState::Accepted {
                    ""
                } else {
                    "; request now ACCEPTED"
                };
                a.state = AssistanceState::Accepted;
                Ok(format!(
                    "{actor} accepted offer {} from {donor}{change}",
                    d.offer_id
                ))
            } else {
                a.offers[i].state = OfferState::Declined;
                a.offers[i].decision_note = d.note.clone();
                let change = a.settle();
                Ok(format!(
                    "{actor} declined offer {} from {donor}{}",
                    d.offer_id,
                    moved(change)
                ))
            }
        }
        Step::Status(s) => {
            let to = AssistanceState::try_from(s.state).map_err(|_| {
                invalid(
                    "status.state",
                    format!(
                        "unknown state value {}; use ASSISTANCE_STATE_DEPLOYED, _COMPLETED, _CLOSED or _WITHDRAWN",
                        s.state
                    ),
                )
            })?;
            if !s.withdraw_offer_id.is_empty() {
                if to != AssistanceState::Unspecified {
                    return Err(invalid(
                        "status.state",
                        "leave the state unset when withdrawing an offer (withdraw_offer_id is set)",
                    ));
                }
                let i = a.offer_index(&s.withdraw_offer_id)?;
                let o = &a.offers[i];
                if actor != o.donor {
                    return Err(AssistanceError::PermissionDenied(format!(
                        "only the donor {} may withdraw offer {}; {actor} is not its donor",
                        o.donor, o.offer_id
                    )));
                }
                if !open_for_offers(a.state) {
                    return Err(precondition(
                        a.state,
                        "offers can be withdrawn only while the request is REQUESTED, OFFERED or ACCEPTED",
                    ));
                }
                if !matches!(o.state, OfferState::Pending | OfferState::Accepted) {
                    return Err(AssistanceError::FailedPrecondition(format!(
                        "offer {} is {}; only a PENDING or ACCEPTED offer can be withdrawn",
                        o.offer_id,
                        offer_state_label(o.state)
                    )));
                }
                let was = offer_state_label(o.state);
                a.offers[i].state = OfferState::Withdrawn;
                let change = a.settle();
                return Ok(format!(
                    "{actor} withdrew offer {} (was {was}){}",
                    s.withdraw_offer_id,
                    moved(change)
                ));
            }
            if to == AssistanceState::Unspecified {
                return Err(invalid(
                    "status.state",
                    "required: set the new state (ASSISTANCE_STATE_DEPLOYED, _COMPLETED, _CLOSED or _WITHDRAWN), or withdraw_offer_id to withdraw an offer",
                ));
            }
            if actor != a.requester {
                return Err(AssistanceError::PermissionDenied(format!(
                    "only the requester {} may change the state of request {}; {actor} is not the requester",
                    a.requester, a.request_id
                )));
            }
            if !allowed_moves(a.state).contains(&to) {
                return Err(precondition(
                    a.state,
                    &format!("cannot move to {}", state_label(to)),
                ));
            }
            if !STATUS_TARGETS.contains(&to) {
                return Err(precondition(
                    a.state,
                    &format!(
                        "{} follows from offers and decisions and cannot be set with a status message",
                        state_label(to)
                    ),
                ));
            }
            let from = a.state;
            a.state = to;
            Ok(format!(
                "{actor} moved the request from {} to {}",
                state_label(from),
                state_label(to)
            ))
        }
    }
}

/// Would `actor` be allowed to take `step` now? Run on the node taking the action, before
/// signing, against its replayed state `a`. `created_ms` must be later than every step
/// already known (use [`next_created_ms`]) so that the step takes its place at the end
/// of the replay order. Refuses: content errors ([`AssistanceError::Invalid`]), the wrong
/// party ([`AssistanceError::PermissionDenied`]), an unknown request or offer
/// ([`AssistanceError::NotFound`]), an invalid transition or an out-of-order time
/// ([`AssistanceError::FailedPrecondition`]).
pub fn check(
    a: &Assistance,
    actor: &str,
    step: &Step,
    created_ms: i64,
) -> Result<(), AssistanceError> {
    if let Step::Request(_) = step {
        return apply(&mut a.clone(), actor, step, "", created_ms).map(|_| ());
    }
    let rid = step.request_id("");
    if rid != a.request_id {
        return Err(AssistanceError::NotFound(format!(
            "request {rid:?} not found; this is request {}",
            a.request_id
        )));
    }
    apply(&mut a.clone(), actor, step, "(unsigned)", created_ms)?;
    let latest = a.latest_ms();
    if created_ms <= latest {
        return Err(AssistanceError::FailedPrecondition(format!(
            "step time {created_ms} ms is not after the latest step of request {} ({latest} ms); sign it with a later time",
            a.request_id
        )));
    }
    Ok(())
}

/// The creation time to sign the next step with: `now_ms`, or just after the latest known
/// step if that is later (a clock behind a peer's).
pub fn next_created_ms(a: &Assistance, now_ms: i64) -> i64 {
    now_ms.max(a.latest_ms().saturating_add(1))
}

/// Replays a set of steps (any order; duplicates by message id ignored) into the state of
/// request `request_id`. Steps for other requests are skipped. `None` if the set holds no
/// valid request step (the one whose message id is `request_id`). Steps sorting before
/// the request step, and steps invalid at their place in the `(created_ms, message_id)`
/// order, are kept in the history as ignored.
pub fn replay(request_id: &str, steps: &[SignedStep]) -> Option<Assistance> {
    let mut mine: Vec<(&SignedStep, (u8, Vec<u8>))> = steps
        .iter()
        .filter(|s| s.step.request_id(&s.message_id) == request_id)
        .map(|s| (s, s.step.key_bytes()))
        .collect();
    // A total order on the contents, so that conflicting copies of one message id (which
    // honest nodes never produce) still resolve the same way everywhere.
    mine.sort_by(|(a, ka), (b, kb)| {
        (a.created_ms, &a.message_id, &a.actor, ka).cmp(&(
            b.created_ms,
            &b.message_id,
            &b.actor,
            kb,
        ))
    });
    let mut seen = HashSet::new();
    mine.retain(|(s, _)| seen.insert(s.message_id.as_str()));

    let req = mine
        .iter()
        .map(|(s, _)| *s)
        .find(|s| s.message_id == request_id && matches!(s.step, Step::Request(_)))?;
    let Step::Request(r) = &req.step else {
        return None;
    };
    validate_request(r, req.created_ms).ok()?;

    let mut a = Assistance {
        request_id: request_id.to_string(),
        requester: req.actor.clone(),
        state: AssistanceState::Requested,
        request: r.clone(),
        offers: Vec::new(),
        history: Vec::new(),
        created_ms: req.created_ms,
    };
    for (s, _) in &mine {
        let (action, applied) = if std::ptr::eq(*s, req) {
            (
                format!("{} requested assistance: {}", s.actor, r.title),
                true,
            )
        } else if (s.created_ms, &s.message_id) < (req.created_ms, &req.message_id) {
            (
                format!("ignored: {} created before the request", s.step.noun()),
                false,
            )
        } else {
            match apply(&mut a, &s.actor, &s.step, &s.message_id, s.created_ms) {
                Ok(action) => (action, true),
                Err(_) if is_terminal(a.state) => (
                    format!(
                        "ignored: {} created after the request was {}",
                        s.step.noun(),
                        state_label(a.state)
                    ),
                    false,
                ),
                Err(e) => (format!("ignored: {e}"), false),
            }
        };
        a.history.push(HistoryEntry {
            message_id: s.message_id.clone(),
            actor: s.actor.clone(),
            at_ms: s.created_ms,
            action,
            note: s.step.note(),
            applied,
        });
    }
    Some(a)
}

/// True when the deadline has passed with no accepted offer and the request is still
/// REQUESTED or OFFERED.
pub fn overdue(a: &Assistance, now_ms: i64) -> bool {
    let Some(deadline) = a
        .request
        .deadline
        .as_ref()
        .and_then(|t| timestamp_ms(t, "request.deadline").ok())
    else {
        return false;
    };
    now_ms > deadline
        && matches!(
            a.state,
            AssistanceState::Requested | AssistanceState::Offered
        )
        && !a.any_offer(OfferState::Accepted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{Contact, EstimatedNeeds, Tlp};
    use AssistanceState as S;
    use proptest::prelude::*;

    const T0: i64 = 1_700_000_000_000;
    const REQ: &str = "node-req";
    const RID: &str = "req-0001";

    fn request() -> AssistanceRequest {
        AssistanceRequest {
            title: "Ransomware at a regional hospital group".into(),
            description: "Encrypted PACS and EHR; need forensics and recovery".into(),
            tlp: Tlp::Amber as i32,
            services: vec![
                AssistanceService::Forensics as i32,
                AssistanceService::Recovery as i32,
            ],
            sector: Nis2Sector::Health as i32,
            entity_category: EntityCategory::Essential as i32,
            rsit_class: RsitClass::MaliciousCode as i32,
            severity: Severity::Critical as i32,
            cross_border: true,
            needs: Some(EstimatedNeeds {
                skills: vec!["Windows forensics".into()],
                person_days: 20,
                on_site: true,
            }),
            mitigation_done: "network isolated".into(),
            deadline: Some(ms_timestamp(T0 + 86_400_000)),
            contacts: vec![Contact {
                name: "Duty officer".into(),
                role: "IR lead".into(),
                email: "duty@cert.example".into(),
                phone: "+372 600 0000".into(),
            }],
            linked_alerts: vec!["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into()],
        }
    }

    fn offer(summary: &str, days: u32) -> Offer {
        Offer {
            summary: summary.into(),
            capabilities: vec![AssistanceService::Forensics as i32],
            capacity_person_days: days,
            available_from: Some(ms_timestamp(T0)),
            available_until: Some(ms_timestamp(T0 + 7 * 86_400_000)),
            conditions: "remote first".into(),
            funding: FundingChannel::CybersecurityReserve as i32,
            contacts: vec![],
        }
    }

    fn offer_step(days: u32) -> Step {
        Step::Offer(OfferMessage {
            request_id: RID.into(),
            offer: Some(offer("forensics team", days)),
        })
    }

    fn decision_step(offer_id: &str, accept: bool) -> Step {
        Step::Decision(DecisionMessage {
            request_id: RID.into(),
            offer_id: offer_id.into(),
            accept,
            note: "thanks".into(),
        })
    }

    fn status_step(state: S) -> Step {
        Step::Status(StatusMessage {
            request_id: RID.into(),
            state: state as i32,
            note: String::new(),
            withdraw_offer_id: String::new(),
            summary_report: String::new(),
        })
    }

    fn withdraw_step(offer_id: &str) -> Step {
        Step::Status(StatusMessage {
            request_id: RID.into(),
            state: S::Unspecified as i32,
            note: "team reassigned".into(),
            withdraw_offer_id: offer_id.into(),
            summary_report: String::new(),
        })
    }

    fn signed(id: &str, actor: &str, t: i64, step: Step) -> SignedStep {
        SignedStep {
            message_id: id.into(),
            actor: actor.into(),
            created_ms: t,
            step,
        }
    }

    fn request_step() -> SignedStep {
        signed(RID, REQ, T0, Step::Request(request()))
    }

    /// A tiny federation: every action is checked against the replayed state and, if
    /// accepted, signed with the next time and message id.
    struct Sim {
        steps: Vec<SignedStep>,
        t: i64,
        n: u32,
    }

    impl Sim {
        fn new() -> Self {
            Sim {
                steps: vec![request_step()],
                t: T0,
                n: 0,
            }
        }
        fn state(&self) -> Assistance {
            replay(RID, &self.steps).expect("request replays")
        }
        fn act(&mut self, actor: &str, step: Step) -> Result<String, AssistanceError> {
            let a = self.state();
            let t = next_created_ms(&a, self.t + 1);
            check(&a, actor, &step, t)?;
            self.t = t;
            self.n += 1;
            let id = format!("m-{:04}", self.n);
            self.steps.push(signed(&id, actor, t, step));
            let after = self.state();
            let last = after.history.last().unwrap();
            assert!(last.applied, "check accepted but replay ignored: {last:?}");
            Ok(id)
        }
        fn offer(&mut self, donor: &str) -> Result<String, AssistanceError> {
            self.act(donor, offer_step(10))
        }
        fn decide(&mut self, who: &str, id: &str, accept: bool) -> Result<String, AssistanceError> {
            self.act(who, decision_step(id, accept))
        }
        fn status(&mut self, who: &str, s: S) -> Result<String, AssistanceError> {
            self.act(who, status_step(s))
        }
        fn withdraw(&mut self, who: &str, id: &str) -> Result<String, AssistanceError> {
            self.act(who, withdraw_step(id))
        }
        fn offer_state(&self, id: &str) -> OfferState {
            self.state()
                .offers
                .iter()
                .find(|o| o.offer_id == id)
                .unwrap()
                .state
        }
    }

    fn perm(e: Result<String, AssistanceError>, words: &[&str]) {
        match e {
            Err(AssistanceError::PermissionDenied(m)) => {
                for w in words {
                    assert!(m.contains(w), "{m:?} lacks {w:?}");
                }
            }
            other => panic!("expected PermissionDenied, got {other:?}"),
        }
    }

    fn precond(e: Result<String, AssistanceError>, words: &[&str]) {
        match e {
            Err(AssistanceError::FailedPrecondition(m)) => {
                for w in words {
                    assert!(m.contains(w), "{m:?} lacks {w:?}");
                }
            }
            other => panic!("expected FailedPrecondition, got {other:?}"),
        }
    }

    fn field_of(e: Result<(), AssistanceError>) -> String {
        match e {
            Err(AssistanceError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    // ---- content validation ----

    type Mutation<T> = Box<dyn Fn(&mut T)>;

    #[test]
    fn valid_request_and_offer() {
        validate_request(&request(), T0).unwrap();
        validate_offer(&offer("team", 5)).unwrap();
        // optional enums may be unset
        let mut r = request();
        r.sector = 0;
        r.entity_category = 0;
        r.rsit_class = 0;
        r.severity = 0;
        r.deadline = None;
        r.needs = None;
        r.contacts.clear();
        r.linked_alerts.clear();
        validate_request(&r, T0).unwrap();
    }

    #[test]
    fn invalid_requests_name_the_field() {
        let cases: Vec<(&str, Mutation<AssistanceRequest>)> = vec![
            ("request.title", Box::new(|r| r.title = "  ".into())),
            ("request.title", Box::new(|r| r.title = "x".repeat(201))),
            ("request.description", Box::new(|r| r.description.clear())),
            ("request.tlp", Box::new(|r| r.tlp = 0)),
            ("request.tlp", Box::new(|r| r.tlp = 99)),
            ("request.services", Box::new(|r| r.services.clear())),
            ("request.services[1]", Box::new(|r| r.services[1] = 0)),
            ("request.services[0]", Box::new(|r| r.services[0] = 42)),
            (
                "request.services[1]",
                Box::new(|r| r.services[1] = r.services[0]),
            ),
            ("request.sector", Box::new(|r| r.sector = 99)),
            (
                "request.entity_category",
                Box::new(|r| r.entity_category = 9),
            ),
            ("request.rsit_class", Box::new(|r| r.rsit_class = 99)),
            ("request.severity", Box::new(|r| r.severity = 99)),
            (
                "request.needs.skills[0]",
                Box::new(|r| r.needs.as_mut().unwrap().skills[0] = " ".into()),
            ),
            (
                "request.deadline",
                Box::new(|r| r.deadline = Some(ms_timestamp(T0))),
            ),
            (
                "request.deadline",
                Box::new(|r| r.deadline.as_mut().unwrap().nanos = -1),
            ),
            (
                "request.contacts[0].email",
                Box::new(|r| r.contacts[0].email = "duty.cert.example".into()),
            ),
            (
                "request.contacts[1]",
                Box::new(|r| r.contacts.push(Contact::default())),
            ),
            (
                "request.linked_alerts[0]",
                Box::new(|r| r.linked_alerts[0] = "alert-7".into()),
            ),
        ];
        for (field, mutate) in cases {
            let mut r = request();
            mutate(&mut r);
            assert_eq!(field_of(validate_request(&r, T0)), field);
        }
        let e = validate_request(
            &AssistanceRequest {
                title: "x".repeat(201),
                ..request()
            },
            T0,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("request.title: title is 201 characters")
        );
    }

    #[test]
    fn invalid_offers_name_the_field() {
        let cases: Vec<(&str, Mutation<Offer>)> = vec![
            ("offer.summary", Box::new(|o| o.summary = " ".into())),
            ("offer.summary", Box::new(|o| o.summary = "y".repeat(201))),
            ("offer.capabilities[0]", Box::new(|o| o.capabilities[0] = 0)),
            (
                "offer.capabilities[0]",
                Box::new(|o| o.capabilities[0] = 77),
            ),
            ("offer.funding", Box::new(|o| o.funding = 9)),
            (
                "offer.available_until",
                Box::new(|o| o.available_until = Some(ms_timestamp(T0 - 1))),
            ),
            (
                "offer.available_from",
                Box::new(|o| o.available_from.as_mut().unwrap().nanos = 2_000_000_000),
            ),
            (
                "offer.contacts[0].email",
                Box::new(|o| {
                    o.contacts.push(Contact {
                        email: "a@".into(),
                        ..Contact::default()
                    })
                }),
            ),
        ];
        for (field, mutate) in cases {
            let mut o = offer("team", 3);
            mutate(&mut o);
            assert_eq!(field_of(validate_offer(&o)), field);
        }
        // open-ended windows are fine
        let mut o = offer("team", 3);
        o.available_until = None;
        validate_offer(&o).unwrap();
    }

    #[test]
    fn invalid_step_content_is_refused_by_check() {
        let mut sim = Sim::new();
        let no_offer = Step::Offer(OfferMessage {
            request_id: RID.into(),
            offer: None,
        });
        assert!(matches!(
            sim.act("node-a", no_offer),
            Err(AssistanceError::Invalid { field, .. }) if field == "offer"
        ));
        let bad = Step::Offer(OfferMessage {
            request_id: RID.into(),
            offer: Some(offer("", 1)),
        });
        assert!(matches!(
            sim.act("node-a", bad),
            Err(AssistanceError::Invalid { field, .. }) if field == "offer.summary"
        ));
        assert!(matches!(
            sim.decide(REQ, "", true),
            Err(AssistanceError::Invalid { field, .. }) if field == "decision.offer_id"
        ));
        assert!(matches!(
            sim.status(REQ, S::Unspecified),
            Err(AssistanceError::Invalid { field, .. }) if field == "status.state"
        ));
        let o = sim.offer("node-a").unwrap();
        let mut both = withdraw_step(&o);
        if let Step::Status(s) = &mut both {
            s.state = S::Withdrawn as i32;
        }
        assert!(matches!(
            sim.act("node-a", both),
            Err(AssistanceError::Invalid { field, .. }) if field == "status.state"
        ));
        let mut unknown = status_step(S::Closed);
        if let Step::Status(s) = &mut unknown {
            s.state = 42;
        }
        assert!(matches!(
            sim.act(REQ, unknown),
            Err(AssistanceError::Invalid { field, .. }) if field == "status.state"
        ));
    }

    // ---- transitions ----

    #[test]
    fn full_lifecycle() {
        let mut sim = Sim::new();
        assert_eq!(sim.state().state, S::Requested);
        assert_eq!(sim.state().requester, REQ);
        let o = sim.offer("node-a").unwrap();
        assert_eq!(sim.state().state, S::Offered);
        assert_eq!(sim.offer_state(&o), OfferState::Pending);
        sim.decide(REQ, &o, true).unwrap();
        assert_eq!(sim.state().state, S::Accepted);
        assert_eq!(sim.offer_state(&o), OfferState::Accepted);
        sim.status(REQ, S::Deployed).unwrap();
        assert_eq!(sim.state().state, S::Deployed);
        sim.status(REQ, S::Completed).unwrap();
        assert_eq!(sim.state().state, S::Completed);
        let mut close = status_step(S::Closed);
        if let Step::Status(s) = &mut close {
            s.summary_report = "PACS restored in 4 days".into();
        }
        sim.act(REQ, close).unwrap();
        let a = sim.state();
        assert_eq!(a.state, S::Closed);
        let actions: Vec<&str> = a.history.iter().map(|h| h.action.as_str()).collect();
        assert_eq!(
            actions,
            vec![
                "node-req requested assistance: Ransomware at a regional hospital group",
                "node-a offered 10 person-days (offer m-0001): forensics team; request now OFFERED",
                "node-req accepted offer m-0001 from node-a; request now ACCEPTED",
                "node-req moved the request from ACCEPTED to DEPLOYED",
                "node-req moved the request from DEPLOYED to COMPLETED",
                "node-req moved the request from COMPLETED to CLOSED",
            ]
        );
        assert!(a.history.iter().all(|h| h.applied));
        assert_eq!(a.history[2].note, "thanks");
        assert_eq!(a.history[5].note, "summary report: PACS restored in 4 days");
        assert_eq!(a.offers[0].decision_note, "thanks");
        // terminal: nothing more
        precond(
            sim.offer("node-b"),
            &["request is CLOSED", "allowed moves from CLOSED: none"],
        );
        precond(sim.decide(REQ, &o, false), &["request is CLOSED"]);
        precond(sim.withdraw("node-a", &o), &["request is CLOSED"]);
    }

    #[test]
    fn requester_cannot_offer_on_its_own_request() {
        let mut sim = Sim::new();
        perm(
            sim.offer(REQ),
            &["requester cannot offer on its own request"],
        );
    }

    #[test]
    fn several_offers_and_offers_while_accepted() {
        let mut sim = Sim::new();
        let a1 = sim.offer("node-a").unwrap();
        let a2 = sim.offer("node-a").unwrap();
        sim.decide(REQ, &a1, true).unwrap();
        let b = sim.offer("node-b").unwrap();
        assert_eq!(sim.state().state, S::Accepted);
        sim.decide(REQ, &b, true).unwrap();
        assert_eq!(sim.state().state, S::Accepted);
        sim.decide(REQ, &a2, false).unwrap();
        assert_eq!(sim.state().state, S::Accepted);
        assert_eq!(sim.state().offers.len(), 3);
        sim.status(REQ, S::Deployed).unwrap();
        precond(
            sim.offer("node-c"),
            &[
                "request is DEPLOYED",
                "allowed moves from DEPLOYED: COMPLETED, WITHDRAWN",
            ],
        );
    }

    #[test]
    fn donor_deciding_on_its_own_offer_is_denied() {
        let mut sim = Sim::new();
        let o = sim.offer("node-a").unwrap();
        perm(
            sim.decide("node-a", &o, true),
            &["only the requester node-req", "node-a"],
        );
        perm(
            sim.decide("node-b", &o, false),
            &["only the requester node-req"],
        );
    }

    #[test]
    fn decisions_need_a_known_pending_offer() {
        let mut sim = Sim::new();
        assert!(matches!(
            sim.decide(REQ, "m-9999", true),
            Err(AssistanceError::NotFound(m)) if m.contains("m-9999")
        ));
        let o = sim.offer("node-a").unwrap();
        sim.decide(REQ, &o, false).unwrap();
        precond(
            sim.decide(REQ, &o, true),
            &[&o, "DECLINED", "only a PENDING offer"],
        );
        let p = sim.offer("node-b").unwrap();
        sim.decide(REQ, &p, true).unwrap();
        precond(sim.decide(REQ, &p, false), &["is ACCEPTED"]);
    }

    #[test]
    fn decline_goes_back_to_requested_only_without_live_offers() {
        let mut sim = Sim::new();
        let a = sim.offer("node-a").unwrap();
        let b = sim.offer("node-b").unwrap();
        sim.decide(REQ, &a, false).unwrap();
        assert_eq!(sim.state().state, S::Offered);
        sim.decide(REQ, &b, false).unwrap();
        let st = sim.state();
        assert_eq!(st.state, S::Requested);
        assert!(
            st.history
                .last()
                .unwrap()
                .action
                .ends_with("request back to REQUESTED")
        );
        // an offer can come again
        sim.offer("node-c").unwrap();
        assert_eq!(sim.state().state, S::Offered);
    }

    #[test]
    fn accept_needs_offered_or_accepted() {
        let mut sim = Sim::new();
        let a = sim.offer("node-a").unwrap();
        let b = sim.offer("node-b").unwrap();
        sim.decide(REQ, &a, true).unwrap();
        sim.status(REQ, S::Deployed).unwrap();
        precond(
            sim.decide(REQ, &b, true),
            &[
                "request is DEPLOYED",
                "accepted while the request is OFFERED or ACCEPTED",
            ],
        );
        // declining a late pending offer is still possible
        sim.decide(REQ, &b, false).unwrap();
        assert_eq!(sim.state().state, S::Deployed);
    }

    #[test]
    fn status_moves_and_refusals() {
        let mut sim = Sim::new();
        perm(
            sim.status("node-a", S::Withdrawn),
            &["only the requester node-req"],
        );
        precond(
            sim.status(REQ, S::Deployed),
            &[
                "request is REQUESTED",
                "allowed moves from REQUESTED: OFFERED, WITHDRAWN",
                "cannot move to DEPLOYED",
            ],
        );
        precond(
            sim.status(REQ, S::Offered),
            &["OFFERED follows from offers"],
        );
        let o = sim.offer("node-a").unwrap();
        precond(
            sim.status(REQ, S::Accepted),
            &["ACCEPTED follows from offers"],
        );
        precond(sim.status(REQ, S::Completed), &["request is OFFERED"]);
        sim.decide(REQ, &o, true).unwrap();
        precond(
            sim.status(REQ, S::Closed),
            &["request is ACCEPTED", "DEPLOYED"],
        );
        sim.status(REQ, S::Deployed).unwrap();
        precond(sim.status(REQ, S::Closed), &["request is DEPLOYED"]);
        sim.status(REQ, S::Completed).unwrap();
        precond(
            sim.status(REQ, S::Withdrawn),
            &[
                "request is COMPLETED",
                "allowed moves from COMPLETED: CLOSED",
            ],
        );
        perm(sim.status("node-a", S::Closed), &["node-req"]);
        sim.status(REQ, S::Closed).unwrap();
        // closed -> open
        for s in [
            S::Requested,
            S::Offered,
            S::Deployed,
            S::Withdrawn,
            S::Closed,
        ] {
            precond(
                sim.status(REQ, s),
                &["request is CLOSED; allowed moves from CLOSED: none"],
            );
        }
    }

    #[test]
    fn requester_can_withdraw_until_completed() {
        for stop in 0..4 {
            let mut sim = Sim::new();
            if stop >= 1 {
                let o = sim.offer("node-a").unwrap();
                if stop >= 2 {
                    sim.decide(REQ, &o, true).unwrap();
                }
            }
            if stop >= 3 {
                sim.status(REQ, S::Deployed).unwrap();
            }
            sim.status(REQ, S::Withdrawn).unwrap();
            assert_eq!(sim.state().state, S::Withdrawn);
            precond(
                sim.offer("node-b"),
                &["request is WITHDRAWN; allowed moves from WITHDRAWN: none"],
            );
            precond(sim.status(REQ, S::Deployed), &["request is WITHDRAWN"]);
        }
    }

    #[test]
    fn offer_withdrawal() {
        let mut sim = Sim::new();
        assert!(matches!(
            sim.withdraw("node-a", "m-0404"),
            Err(AssistanceError::NotFound(_))
        ));
        let a = sim.offer("node-a").unwrap();
        let b = sim.offer("node-b").unwrap();
        perm(
            sim.withdraw("node-b", &a),
            &["only the donor node-a", "node-b"],
        );
        perm(sim.withdraw(REQ, &a), &["only the donor node-a"]);
        sim.decide(REQ, &a, true).unwrap();
        // accepted offer withdrawn, another still pending: back to OFFERED
        sim.withdraw("node-a", &a).unwrap();
        let st = sim.state();
        assert_eq!(st.state, S::Offered);
        assert_eq!(sim.offer_state(&a), OfferState::Withdrawn);
        assert!(
            st.history
                .last()
                .unwrap()
                .action
                .contains("request back to OFFERED")
        );
        precond(
            sim.withdraw("node-a", &a),
            &["is WITHDRAWN", "PENDING or ACCEPTED"],
        );
        // last pending offer withdrawn: back to REQUESTED
        sim.withdraw("node-b", &b).unwrap();
        assert_eq!(sim.state().state, S::Requested);

        // accepted, then the accepted offer withdrawn with nothing pending: REQUESTED
        let c = sim.offer("node-c").unwrap();
        let d = sim.offer("node-c").unwrap();
        sim.decide(REQ, &c, true).unwrap();
        sim.decide(REQ, &d, false).unwrap();
        precond(sim.withdraw("node-c", &d), &["is DECLINED"]);
        sim.withdraw("node-c", &c).unwrap();
        assert_eq!(sim.state().state, S::Requested);

        // no withdrawal once deployed
        let e = sim.offer("node-a").unwrap();
        sim.decide(REQ, &e, true).unwrap();
        sim.status(REQ, S::Deployed).unwrap();
        precond(
            sim.withdraw("node-a", &e),
            &["request is DEPLOYED", "allowed moves from DEPLOYED"],
        );
    }

    #[test]
    fn check_refuses_other_requests_new_requests_and_old_times() {
        let sim = Sim::new();
        let a = sim.state();
        let mut other = offer_step(1);
        if let Step::Offer(m) = &mut other {
            m.request_id = "req-other".into();
        }
        assert!(matches!(
            check(&a, "node-a", &other, T0 + 5),
            Err(AssistanceError::NotFound(m)) if m.contains("req-other")
        ));
        assert!(matches!(
            check(&a, REQ, &Step::Request(request()), T0 + 5),
            Err(AssistanceError::FailedPrecondition(m)) if m.contains("already exists")
        ));
        assert!(matches!(
            check(&a, "node-a", &offer_step(1), T0),
            Err(AssistanceError::FailedPrecondition(m)) if m.contains("not after the latest step")
        ));
        check(&a, "node-a", &offer_step(1), T0 + 1).unwrap();
        assert_eq!(next_created_ms(&a, T0 - 50), T0 + 1);
        assert_eq!(next_created_ms(&a, T0 + 50), T0 + 50);
    }

    // ---- replay ----

    #[test]
    fn replay_needs_a_valid_request() {
        assert!(replay(RID, &[]).is_none());
        let o = signed("m-1", "node-a", T0 + 1, offer_step(1));
        assert!(replay(RID, std::slice::from_ref(&o)).is_none());
        let mut bad = request_step();
        if let Step::Request(r) = &mut bad.step {
            r.title.clear();
        }
        assert!(replay(RID, &[bad, o.clone()]).is_none());
        // a request under another id is another request
        let mut elsewhere = request_step();
        elsewhere.message_id = "req-9".into();
        assert!(replay(RID, &[elsewhere.clone(), o.clone()]).is_none());
        let a = replay("req-9", &[elsewhere, o]).unwrap();
        assert_eq!(a.history.len(), 1, "offer for {RID} is not part of req-9");
    }

    #[test]
    fn replay_ignores_duplicates_and_steps_before_the_request() {
        let early = signed("m-0", "node-a", T0 - 1, offer_step(1));
        let o = signed("m-1", "node-a", T0 + 1, offer_step(1));
        let a = replay(RID, &[o.clone(), request_step(), o.clone(), early, o]).unwrap();
        assert_eq!(a.offers.len(), 1);
        assert_eq!(a.history.len(), 3);
        assert!(!a.history[0].applied);
        assert_eq!(
            a.history[0].action,
            "ignored: offer created before the request"
        );
        assert!(a.history[2].applied);
        assert_eq!(a.state, S::Offered);
    }

    #[test]
    fn offer_created_after_closure_is_ignored() {
        let mut sim = Sim::new();
        let o = sim.offer("node-a").unwrap();
        sim.decide(REQ, &o, true).unwrap();
        sim.status(REQ, S::Deployed).unwrap();
        sim.status(REQ, S::Completed).unwrap();
        sim.status(REQ, S::Closed).unwrap();
        let closed = sim.state();
        // node-b had not heard of anything since the request: its offer passed its own
        // check, but it was created after the closure.
        let stale_view = replay(RID, &[request_step()]).unwrap();
        let t = sim.t + 10;
        check(&stale_view, "node-b", &offer_step(3), t).unwrap();
        let mut steps = sim.steps.clone();
        steps.insert(0, signed("m-late", "node-b", t, offer_step(3)));
        let a = replay(RID, &steps).unwrap();
        assert_eq!(a.state, S::Closed);
        assert_eq!(a.offers, closed.offers);
        let last = a.history.last().unwrap();
        assert!(!last.applied);
        assert_eq!(
            last.action,
            "ignored: offer created after the request was CLOSED"
        );
        assert_eq!(last.message_id, "m-late");
    }

    #[test]
    fn crossing_withdraw_and_accept_resolve_by_time() {
        let offer = signed("m-1", "node-a", T0 + 10, offer_step(5));
        let view = replay(RID, &[request_step(), offer.clone()]).unwrap();
        // Both sides act on the same view: each passes its own check.
        check(&view, "node-a", &withdraw_step("m-1"), T0 + 20).unwrap();
        check(&view, REQ, &decision_step("m-1", true), T0 + 21).unwrap();

        // withdraw first, accept second: the accept finds a withdrawn offer
        let w = signed("m-w", "node-a", T0 + 20, withdraw_step("m-1"));
        let d = signed("m-d", REQ, T0 + 21, decision_step("m-1", true));
        let x = replay(RID, &[request_step(), offer.clone(), w.clone(), d.clone()]).unwrap();
        let y = replay(RID, &[d, w, offer.clone(), request_step()]).unwrap();
        assert_eq!(x, y);
        assert_eq!(x.state, S::Requested);
        assert_eq!(x.offers[0].state, OfferState::Withdrawn);
        let last = x.history.last().unwrap();
        assert!(!last.applied);
        assert!(
            last.action.contains("offer m-1 from node-a is WITHDRAWN"),
            "{last:?}"
        );

        // accept first, withdraw second: the donor withdraws an accepted offer
        let d = signed("m-d", REQ, T0 + 20, decision_step("m-1", true));
        let w = signed("m-w", "node-a", T0 + 21, withdraw_step("m-1"));
        let x = replay(RID, &[request_step(), offer.clone(), d.clone(), w.clone()]).unwrap();
        let y = replay(RID, &[w, offer, request_step(), d]).unwrap();
        assert_eq!(x, y);
        assert_eq!(x.state, S::Requested);
        assert!(x.history.iter().all(|h| h.applied));

        // same millisecond: the message id decides, the same way everywhere
        let offer = signed("m-1", "node-a", T0 + 10, offer_step(5));
        let w = signed("m-b", "node-a", T0 + 20, withdraw_step("m-1"));
        let d = signed("m-a", REQ, T0 + 20, decision_step("m-1", true));
        let x = replay(RID, &[request_step(), offer.clone(), w.clone(), d.clone()]).unwrap();
        let y = replay(RID, &[w, d, offer, request_step()]).unwrap();
        assert_eq!(x, y);
        assert_eq!(x.history[2].message_id, "m-a");
    }

    #[test]
    fn overdue_after_deadline_without_accepted_offer() {
        let deadline = T0 + 86_400_000;
        let mut sim = Sim::new();
        let a = sim.state();
        assert!(!overdue(&a, deadline));
        assert!(overdue(&a, deadline + 1));
        let o = sim.offer("node-a").unwrap();
        assert!(overdue(&sim.state(), deadline + 1));
        sim.decide(REQ, &o, true).unwrap();
        assert!(!overdue(&sim.state(), deadline + 1));
        let mut sim = Sim::new();
        sim.status(REQ, S::Withdrawn).unwrap();
        assert!(!overdue(&sim.state(), deadline + 1));
        let mut no_deadline = sim.state();
        no_deadline.state = S::Requested;
        no_deadline.request.deadline = None;
        assert!(!overdue(&no_deadline, i64::MAX));
    }

    #[test]
    fn view_carries_state_offers_and_history() {
        let mut sim = Sim::new();
        let o = sim.offer("node-a").unwrap();
        let a = sim.state();
        let v = a.to_view(T0 + 86_400_001);
        assert_eq!(v.request_id, RID);
        assert_eq!(v.requester, REQ);
        assert_eq!(v.state, S::Offered as i32);
        assert!(v.overdue);
        assert_eq!(v.request.as_ref(), Some(&request()));
        assert_eq!(v.offers.len(), 1);
        assert_eq!(v.offers[0].offer_id, o);
        assert_eq!(v.offers[0].donor, "node-a");
        assert_eq!(v.offers[0].state, OfferState::Pending as i32);
        assert_eq!(v.history.len(), 2);
        assert_eq!(v.history[1].at, Some(ms_timestamp(T0 + 1)));
        assert_eq!(v.history[1].action, a.history[1].action);
        assert_eq!(v.history[1].note, "remote first");
        assert_eq!(
            ms_timestamp(-1),
            Timestamp {
                seconds: -1,
                nanos: 999_000_000
            }
        );
    }

    #[test]
    fn allowed_moves_graph() {
        assert_eq!(allowed_moves(S::Closed), &[] as &[S]);
        assert_eq!(allowed_moves(S::Withdrawn), &[] as &[S]);
        assert_eq!(allowed_moves(S::Completed), &[S::Closed]);
        for s in [S::Requested, S::Offered, S::Accepted, S::Deployed] {
            assert!(allowed_moves(s).contains(&S::Withdrawn));
        }
    }

    // ---- convergence ----

    const DONORS: [&str; 3] = ["node-a", "node-b", "node-c"];

    /// One attempted action: (kind, actor, target, flag, time step, stale view).
    type Attempt = (u8, usize, usize, bool, i64, u8);

    fn attempt_step(kind: u8, target: usize, flag: bool, offers: &[String]) -> Step {
        let offer_id = if offers.is_empty() {
            "m-none".to_string()
        } else {
            offers[target % offers.len()].clone()
        };
        match kind {
            0 => offer_step(target as u32),
            1 => decision_step(&offer_id, flag),
            2 => status_step(
                [
                    S::Deployed,
                    S::Completed,
                    S::Closed,
                    S::Withdrawn,
                    S::Offered,
                    S::Requested,
                ][target % 6],
            ),
            _ => withdraw_step(&offer_id),
        }
    }

    /// Builds a scenario: returns (all signed steps, steps the authority accepted).
    /// Accepted steps passed `check` against the state of everything signed so far;
    /// other steps come from nodes with a stale view (they passed `check` on an older
    /// prefix) or are refused steps a faulty node signed anyway.
    fn scenario(n_donors: usize, attempts: &[Attempt]) -> (Vec<SignedStep>, Vec<SignedStep>) {
        let mut all = vec![request_step()];
        let mut accepted = vec![request_step()];
        let mut offers: Vec<String> = Vec::new();
        let mut t = T0;
        for (i, &(kind, who, target, flag, dt, stale)) in attempts.iter().enumerate() {
            t += dt;
            // requester most of the time for decisions and status changes
            let actor = if who == 0 || (kind == 1 || kind == 2) && who < 3 {
                REQ
            } else {
                DONORS[(who - 1) % n_donors]
            };
            let actor = if kind == 3 && who == 1 {
                // a withdrawal by the donor of the offer
                let st = replay(RID, &all).unwrap();
                let id = offers.get(target % offers.len().max(1)).cloned();
                id.and_then(|id| st.offers.iter().find(|o| o.offer_id == id))
                    .map(|o| o.donor.clone())
                    .unwrap_or_else(|| actor.to_string())
            } else {
                actor.to_string()
            };
            let current = replay(RID, &all).unwrap();
            let step = if kind == 2 && flag {
                // half the status changes try the natural next move
                status_step(match current.state {
                    S::Accepted => S::Deployed,
                    S::Deployed => S::Completed,
                    _ => S::Closed,
                })
            } else if let (1, true, Some(p)) = (
                kind,
                flag,
                current
                    .offers
                    .iter()
                    .find(|o| o.state == OfferState::Pending),
            ) {
                // half the decisions accept a pending offer
                decision_step(&p.offer_id, true)
            } else {
                attempt_step(kind, target, flag, &offers)
            };
            let id = format!("m-{i:04}");
            let s = signed(&id, &actor, t, step.clone());
            if check(&current, &actor, &step, t).is_ok() {
                accepted.push(s.clone());
                all.push(s);
            } else {
                let keep = match stale {
                    0 => true, // faulty or careless node signs anyway
                    1 => {
                        // a node that has seen only a prefix of the steps
                        let seen = replay(RID, &all[..=target % all.len()]).unwrap();
                        check(&seen, &actor, &step, t).is_ok()
                    }
                    _ => false,
                };
                if keep {
                    all.push(s);
                }
            }
            if kind == 0 {
                offers.push(id);
            }
        }
        (all, accepted)
    }

    fn shuffled(steps: &[SignedStep], keys: &[u64], dups: &[usize]) -> Vec<SignedStep> {
        let mut idx: Vec<usize> = (0..steps.len()).collect();
        idx.sort_by_key(|&i| (keys[i % keys.len()].wrapping_mul(i as u64 + 1), i));
        let mut out: Vec<SignedStep> = idx.iter().map(|&i| steps[i].clone()).collect();
        for (k, &d) in dups.iter().enumerate() {
            let s = steps[d % steps.len()].clone();
            let at = (d / 7 + k) % (out.len() + 1);
            out.insert(at, s);
        }
        out
    }

    fn applied_only(mut a: Assistance) -> Assistance {
        a.history.retain(|h| h.applied);
        a
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn replay_is_a_function_of_the_set(
            n_donors in 2usize..=3,
            attempts in prop::collection::vec(
                (0u8..4, 0usize..4, 0usize..8, any::<bool>(), 1i64..4, 0u8..4), 0..40),
            keys in prop::collection::vec(any::<u64>(), 1..40),
            dups in prop::collection::vec(0usize..1000, 0..8),
        ) {
            let (all, accepted) = scenario(n_donors, &attempts);
            let reference = replay(RID, &all).unwrap();

            // any delivery order, with duplicates, gives the same state
            let mixed = shuffled(&all, &keys, &dups);
            prop_assert_eq!(&replay(RID, &mixed).unwrap(), &reference);
            let mut reversed = all.clone();
            reversed.reverse();
            prop_assert_eq!(&replay(RID, &reversed).unwrap(), &reference);

            // steps of other requests change nothing
            let mut foreign = mixed.clone();
            let mut other = request_step();
            other.message_id = "req-other".into();
            foreign.push(other);
            let mut o = signed("m-x", "node-a", T0 + 1, offer_step(1));
            if let Step::Offer(m) = &mut o.step { m.request_id = "req-other".into(); }
            foreign.push(o);
            prop_assert_eq!(&replay(RID, &foreign).unwrap(), &reference);

            // exactly the steps the authority accepted are applied
            let applied: Vec<&str> = reference.history.iter()
                .filter(|h| h.applied).map(|h| h.message_id.as_str()).collect();
            let expected: Vec<&str> = accepted.iter().map(|s| s.message_id.as_str()).collect();
            prop_assert_eq!(applied, expected);

            // and the authority's own state equals the mirrored one
            let authority = replay(RID, &accepted).unwrap();
            prop_assert!(authority.history.iter().all(|h| h.applied));
            prop_assert_eq!(applied_only(reference.clone()), authority);

            // invariants
            let has = |s: OfferState| reference.offers.iter().any(|o| o.state == s);
            match reference.state {
                S::Requested => prop_assert!(!has(OfferState::Pending) && !has(OfferState::Accepted)),
                S::Offered => prop_assert!(has(OfferState::Pending) && !has(OfferState::Accepted)),
                S::Accepted => prop_assert!(has(OfferState::Accepted)),
                _ => {}
            }
        }

        #[test]
        fn replay_converges_for_arbitrary_sets(
            raw in prop::collection::vec(
                (0u8..4, 0usize..4, 0usize..8, any::<bool>(), 0i64..12, 0u16..24), 0..25),
            keys in prop::collection::vec(any::<u64>(), 1..40),
            dups in prop::collection::vec(0usize..1000, 0..8),
        ) {
            // arbitrary times (including before the request and equal times) and message
            // ids that may collide: the replay is still a function of the set
            let offers: Vec<String> = (0..8).map(|i| format!("m-{i:04}")).collect();
            let mut steps = vec![request_step()];
            for &(kind, who, target, flag, dt, id) in &raw {
                let actor = if who == 0 { REQ } else { DONORS[who - 1] };
                steps.push(signed(
                    &format!("m-{id:04}"),
                    actor,
                    T0 - 2 + dt,
                    attempt_step(kind, target, flag, &offers),
                ));
            }
            let reference = replay(RID, &steps);
            let mixed = shuffled(&steps, &keys, &dups);
            prop_assert_eq!(replay(RID, &mixed), reference.clone());
            let mut reversed = steps.clone();
            reversed.reverse();
            prop_assert_eq!(replay(RID, &reversed), reference);
        }
    }
}
