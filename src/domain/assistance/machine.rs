//! The pure replay state machine of one assistance request; the convergence rule it
//! implements is stated in [`crate::domain::assistance`].
//!
//! One function, `apply`, decides every step, both for [`check`] (before signing) and for
//! [`replay`] (mirroring), and leaves the state untouched when it refuses. The replay
//! order is `(created_ms, message_id)`, then actor and payload bytes, so even conflicting
//! copies of one message id (which honest nodes never produce) resolve the same way
//! everywhere. Roles: the requester alone decides on offers and sets DEPLOYED, COMPLETED,
//! CLOSED and WITHDRAWN, and never offers on its own request; a donor alone withdraws its
//! own offer. REQUESTED, OFFERED and ACCEPTED follow from offers, decisions and
//! withdrawals; CLOSED and WITHDRAWN are terminal. Without a valid request step there is
//! no state. No I/O and no clock: times come in as arguments.
use std::collections::HashSet;

use prost::Message;

use super::error::{AssistanceError, invalid};
use super::validate::{
    offer_content, request_content, timestamp_ms, validate_decision, validate_offer,
    validate_request, validate_status,
};
use crate::domain::exercise::crossing;
use crate::proto::v1::{
    AssistanceRequest, AssistanceState, DecisionMessage, Offer, OfferMessage, OfferState,
    StatusMessage,
};

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
    /// The signed envelope's exercise flag: a step answers only a request of
    /// the same flag (`domain::exercise`).
    pub exercise: bool,
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
    /// Whether the request is exercise traffic (its envelope's flag).
    pub exercise: bool,
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
            offer_content(offer)?;
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
/// of the replay order. Refuses: content and free-text errors ([`AssistanceError::Invalid`]), the wrong
/// party ([`AssistanceError::PermissionDenied`]), an unknown request or offer
/// ([`AssistanceError::NotFound`]), an invalid transition or an out-of-order time
/// ([`AssistanceError::FailedPrecondition`]).
pub fn check(
    a: &Assistance,
    actor: &str,
    step: &Step,
    created_ms: i64,
) -> Result<(), AssistanceError> {
    validate_step(step, created_ms)?;
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

/// The content and free-text rules of a step about to be signed (what admission checks
/// on every node that receives it). The replay itself checks content only, so that steps
/// stored before the free-text rules existed still count.
fn validate_step(step: &Step, created_ms: i64) -> Result<(), AssistanceError> {
    match step {
        Step::Request(r) => validate_request(r, created_ms),
        Step::Offer(m) => m.offer.as_ref().map_or(Ok(()), validate_offer),
        Step::Decision(d) => validate_decision(d),
        Step::Status(s) => validate_status(s),
    }
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
    request_content(r, req.created_ms).ok()?;

    let mut a = Assistance {
        request_id: request_id.to_string(),
        requester: req.actor.clone(),
        state: AssistanceState::Requested,
        request: r.clone(),
        offers: Vec::new(),
        history: Vec::new(),
        created_ms: req.created_ms,
        exercise: req.exercise,
    };
    for (s, _) in &mine {
        let (action, applied) = if std::ptr::eq(*s, req) {
            (
                format!("{} requested assistance: {}", s.actor, r.title),
                true,
            )
        } else if let Some(reason) = crossing(
            s.step.noun(),
            s.exercise,
            "answer",
            &req.message_id,
            req.exercise,
        ) {
            (format!("ignored: {reason}"), false)
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
