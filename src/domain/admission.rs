//! Admission: the one decision every envelope goes through before it is stored,
//! as a pure function. Given a verified envelope (or the reason verification
//! failed), the chain of custody the sending peer reported, a read-only
//! [`View`] of what this node knows (its identity and keys, the members' keys,
//! its peers and their policy) and `now`, [`admit`] says: store this row and
//! queue it for these peers and owe this receipt, or refuse for this reason
//! (and owe this rejection receipt).
//!
//! Invariants (unit-tested here and by the property test in `admission_tests.rs`):
//! - AMBER, AMBER+STRICT and RED are never admitted without named recipients or
//!   without end-to-end encryption, and are forwarded in clear only to a peer
//!   that is a named recipient; a non-recipient peer gets them only as
//!   ciphertext and only over a relay link.
//! - Nothing is forwarded to a peer above its `max_tlp`, back to the origin, to
//!   a node already on the path, or beyond the signed hop limit.
//! - A relay that forwards a message signs a hop record naming exactly the peers
//!   it forwards to.
//! - A payload this node can read is decoded and validated according to its
//!   kind, by the same domain validators the origin ran before signing
//!   (free text included: a partner's control characters are refused with the
//!   field named); one it cannot read is routed on the signed header alone.
//! - Incident messages and the incident id in the header are checked by
//!   `domain::incident::facts` (content of what this node can read, the header
//!   alone otherwise); relations between messages are the picture's business.
//! - Receipts are owed only by a named recipient (or any member of a
//!   broadcast) that is not the origin, never for a receipt.
//!
//! - A roster message (kind ROSTER) is admitted only if it follows the
//!   roster this node holds (`domain::roster::check`); a member the roster
//!   marks exercise-only has its real (non-exercise) traffic refused; a node
//!   with `exercise.accept = false` refuses every exercise envelope (final:
//!   neither stored nor relayed, the origin gets a rejection receipt).
//! - A refusal for a cause that can pass ([`deferrable`]: a creation time
//!   ahead of this node's clock, a signing key not pinned yet, a roster that
//!   skips a version this node has not received yet) is temporary:
//!   the sending peer keeps the envelope and retries it; every other refusal
//!   is final.
//!
//! Nothing here does I/O: the caller looks up what the store knows (the
//! reverse route of a receipt) before calling, and performs the decision after.
use crate::domain::alert::{Limits, validate_alert};
use crate::domain::attachment;
use crate::domain::custody::{SignaturesChecked, path_of, sign_hop, verify_chain_checked};
use crate::domain::envelope::{Rejection, Verified, checked_ts_to_ms, ms_to_ts};
use crate::domain::keys::{KeyRegistry, Signer};
use crate::domain::policy::{Outbound, PeerPolicy, Route, requires_e2e, route_to_peer, tlp_label};
use crate::proto::v1::{
    Alert, AssistanceRequest, AttachmentList, DecisionMessage, EnvelopeHeader, HopChain, HopRecord,
    MessageKind, OfferMessage, Receipt, ReceiptState, SignedEnvelope, SignedHop, StatusMessage,
    Tlp,
};
use prost::Message;

/// Most message ids one receipt may cover.
pub const MAX_RECEIPT_IDS: usize = 4096;

/// One direct peer and the policy of the link to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub policy: PeerPolicy,
}

/// What admission may read of the node's state.
pub struct View<'a> {
    /// This node's member id.
    pub me: &'a str,
    /// This node's signing key: opens payloads sealed for it, signs hop records.
    pub signer: &'a Signer,
    /// The members' pinned signing keys (to verify chains of custody).
    pub keys: &'a KeyRegistry,
    /// The direct peers and their policy.
    pub peers: &'a [Peer],
    /// Largest accepted serialized envelope.
    pub max_message_bytes: usize,
    /// The federation roster this node holds (or the stewards it pins while
    /// it holds none); `None` with a static `[[members]]` list. Used for
    /// roster messages and for exercise-only members.
    pub roster: Option<&'a crate::domain::roster::Anchor>,
    /// `exercise.accept`: false refuses exercise envelopes (neither stored
    /// nor relayed; `domain::exercise::refuse_exercise`).
    pub accept_exercise: bool,
}

/// Where a receipt goes next from this node (found in the store by the caller
/// from the first message the receipt reports on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptRoute {
    /// This node originated the messages: the receipt has arrived.
    Destination,
    /// Back to the peer this node received the messages from.
    Next(String),
}

/// A receipt this node owes an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptOwed {
    pub origin: String,
    pub message_id: String,
    pub state: ReceiptState,
    pub reason: String,
}

/// Receipt facts to record: for each of `ids` that this node (`me`) originated,
/// member `from` reported `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts {
    pub me: String,
    pub from: String,
    pub ids: Vec<String>,
    pub state: i32,
    pub reason: String,
    pub at_ms: i64,
}

/// A message admitted for storage, with everything to store alongside it.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub message_id: String,
    pub origin: String,
    pub kind: i32,
    pub tlp: Tlp,
    pub severity: i32,
    pub sectors_mask: i64,
    pub exercise: bool,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub received_ms: i64,
    /// The direct peer it came from; `None` for this node's own messages.
    pub from_peer: Option<String>,
    /// The path it took, origin first: (node, time it was received there).
    pub path: Vec<(String, i64)>,
    pub header: Vec<u8>,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
    /// Peers to queue it for.
    pub forward_to: Vec<String>,
    /// For alert updates and retractions: the message id superseded.
    pub supersedes: Option<String>,
    /// Whether this node can read the payload.
    pub readable: bool,
    /// The decrypted payload, when this node is a recipient of an encrypted one.
    pub plain: Option<Vec<u8>>,
    /// For assistance messages: the request they belong to.
    pub request_id: Option<String>,
    /// For a receipt addressed to this node: the facts to record.
    pub receipt_facts: Option<ReceiptFacts>,
    /// Serialized `HopChain`: the verified chain received, plus this node's
    /// own signed record when it forwards the message.
    pub hops: Vec<u8>,
    /// The audiences it is reconciled under (`reconcile::audiences`; empty:
    /// this node is not a party to it).
    pub sync_audiences: Vec<String>,
    /// The DELIVERED receipt this node owes the origin once the message is
    /// stored (not owed for a duplicate).
    pub receipt_owed: Option<ReceiptOwed>,
    /// The incident it belongs to and its correlation keys (`domain::incident::facts`).
    pub incident: crate::domain::incident::IncidentFacts,
    /// Its signed header lists attachments.
    pub attachments: bool,
    /// The signed header, decoded (`header` holds its bytes): verified, and
    /// handed on so that the caller need not decode it again.
    pub signed_header: EnvelopeHeader,
}

/// The outcome of admission for one envelope.
#[derive(Debug, Clone)]
pub enum Decision {
    Admit(Box<Admitted>),
    Refuse {
        reason: Rejection,
        /// The REJECTED receipt owed to the origin, if any.
        receipt: Option<ReceiptOwed>,
    },
}

/// One envelope to decide on.
pub struct Input<'a> {
    pub envelope: SignedEnvelope,
    /// The outcome of signature verification (`envelope::verify_batch`).
    pub verdict: Result<Verified, Rejection>,
    /// The peer that sent it; `None` when this node originated it.
    pub from_peer: Option<&'a str>,
    /// The chain of custody the peer reported (empty for own messages).
    pub chain: Vec<SignedHop>,
    /// Proof that the chain's signatures verified in a batch
    /// (`custody::verify_signatures`); `None`: they are checked here (one
    /// batch per chain, `custody::verify_chain`). Bound to the chain's bytes:
    /// a proof for another chain is ignored.
    pub chain_checked: Option<SignaturesChecked>,
    /// For a receipt: where it goes next, if this node holds a message it reports on.
    pub receipt_route: Option<ReceiptRoute>,
    /// The peer sends it back because this node held it before (it is the
    /// origin, or its own signed record is on the chain) and lost it
    /// (reconciliation after a restore). Such a message is stored but never
    /// forwarded and owes no receipt; without this flag it is a loop.
    pub returning: bool,
}

/// Decides on one envelope. See the module documentation for the invariants.
pub fn admit(view: &View<'_>, input: Input<'_>, now_ms: i64) -> Decision {
    let Input {
        envelope,
        verdict,
        from_peer,
        chain,
        chain_checked,
        receipt_route,
        returning,
    } = input;
    let verified = match verdict {
        Ok(v) => v,
        Err(reason) => {
            return Decision::Refuse {
                reason,
                receipt: None,
            };
        }
    };
    let owed = |state: ReceiptState, reason: String| {
        (from_peer.is_some() && !returning && owes_receipt(view.me, &verified.header)).then(|| {
            ReceiptOwed {
                origin: verified.header.origin.clone(),
                message_id: verified.header.message_id.clone(),
                state,
                reason,
            }
        })
    };
    match decide(
        view,
        envelope,
        &verified,
        from_peer,
        (chain, chain_checked.as_ref()),
        receipt_route.as_ref(),
        returning,
        now_ms,
    ) {
        Ok(mut row) => {
            row.receipt_owed =
                owed(ReceiptState::Delivered, String::new()).filter(|_| row.readable);
            row.signed_header = verified.header;
            Decision::Admit(Box::new(row))
        }
        Err(reason) => {
            let receipt = match &reason {
                Rejection::Policy(_) | Rejection::InvalidPayload(_) => {
                    owed(ReceiptState::Rejected, reason.to_string())
                }
                _ => None,
            };
            Decision::Refuse { reason, receipt }
        }
    }
}

/// Margin added to a clock-skew retry hint, so that the retry lands after the
/// creation time is within the allowed skew even with coarse clocks.
const SKEW_RETRY_MARGIN_MS: u64 = 1_000;

/// Whether a refusal of a peer's envelope is temporary, and if so, in how many
/// milliseconds a retry can succeed (0: unknown, leave it to the sender's
/// backoff). Temporary: a creation time ahead of this node's clock (it passes
/// with time, or when the clocks are fixed), a signing key this node has
/// not pinned (it is pinned in a key rotation once every node has reloaded,
/// or by a roster this node has not received yet), and a roster that skips
/// a version this node has not received yet. Every other refusal (bad signature, altered, policy, invalid payload,
/// expired, too large) is final: retrying the same bytes cannot succeed.
pub fn deferrable(reason: &Rejection) -> Option<u64> {
    match reason {
        Rejection::ClockSkew { ahead_ms, limit_ms } => Some(
            u64::try_from(ahead_ms.saturating_sub(*limit_ms))
                .unwrap_or(0)
                .saturating_add(SKEW_RETRY_MARGIN_MS),
        ),
        Rejection::UnknownSigner(_) => Some(0),
        // A roster two versions ahead: the one between may still arrive.
        Rejection::RosterBehind(_) => Some(0),
        _ => None,
    }
}

/// Whether this node owes the origin a receipt for a verified message: it is
/// addressed to this node (or to everyone), it is not this node's own, and it
/// is not itself a receipt.
pub fn owes_receipt(me: &str, h: &EnvelopeHeader) -> bool {
    h.origin != me
        && h.kind != MessageKind::Receipt as i32
        && (h.recipients.is_empty() || h.recipients.iter().any(|r| r == me))
}

/// The peers a message goes to from this node. Nothing is forwarded once the
/// next hop would exceed the signed hop limit.
pub fn targets(
    view: &View<'_>,
    origin: &str,
    tlp: Tlp,
    recipients: &[String],
    path: &[String],
    hop_limit: u32,
    end_to_end: bool,
) -> Vec<String> {
    // The path the next node will see ends with this node.
    let next_len = if origin == view.me {
        path.len()
    } else {
        path.len() + 1
    };
    if next_len as u64 > u64::from(hop_limit) {
        return Vec::new();
    }
    let msg = Outbound {
        tlp,
        origin,
        recipients,
        path,
        end_to_end,
    };
    view.peers
        .iter()
        .filter(|p| route_to_peer(&msg, view.me, &p.id, &p.policy) == Route::Send)
        .map(|p| p.id.clone())
        .collect()
}

/// Whether this node (`me`) may send a message it holds to `peer` found
/// lacking it by reconciliation: the message is the peer's own (it is the
/// origin), or the same rules as forwarding allow it ([`targets`]:
/// `policy::route_to_peer` and the hop limit), except that a peer which
/// already carried it (on its path) may get it back. Returns why not.
#[allow(clippy::too_many_arguments)]
pub fn entitled(
    me: &str,
    peer: &Peer,
    origin: &str,
    tlp: Tlp,
    recipients: &[String],
    path: &[String],
    hop_limit: u32,
    end_to_end: bool,
) -> Result<(), String> {
    if peer.id == origin {
        return Ok(());
    }
    let carried = path.contains(&peer.id);
    if !carried {
        let next_len = if origin == me {
            path.len()
        } else {
            path.len() + 1
        };
        if next_len as u64 > u64::from(hop_limit) {
            return Err(format!(
                "hop limit: the origin allowed {hop_limit} hops, {next_len} would be taken"
            ));
        }
    }
    let rest: Vec<String> = path.iter().filter(|p| **p != peer.id).cloned().collect();
    let msg = Outbound {
        tlp,
        origin,
        recipients,
        path: &rest,
        end_to_end,
    };
    match route_to_peer(&msg, me, &peer.id, &peer.policy) {
        Route::Send => Ok(()),
        Route::Skip(why) => Err(why),
    }
}

/// Checks the chain of custody a peer sends with a message (see
/// `custody::verify_chain`), that this node is not already on it (a loop,
/// unless the peer sends it back as `returning`: then the path is returned
/// with `true`, and the hop limit does not matter since it goes no further)
/// and that it is within the signed hop limit; returns the path it proves.
fn check_chain(
    view: &View<'_>,
    h: &EnvelopeHeader,
    created: i64,
    from_peer: &str,
    (hops, checked): (&[SignedHop], Option<&SignaturesChecked>),
    returning: bool,
) -> Result<(Vec<(String, i64)>, bool), Rejection> {
    let records = verify_chain_checked(
        view.keys,
        &h.origin,
        &h.message_id,
        from_peer,
        hops,
        checked,
    )
    .map_err(|e| Rejection::Malformed(format!("{CHAIN_REFUSED}{e}")))?;
    let path = path_of(&h.origin, created, &records);
    if path.iter().any(|(node, _)| node == view.me) {
        if returning {
            return Ok((path, true));
        }
        return Err(Rejection::Policy(format!(
            "{LOOP_REFUSED}{} is already on the path",
            view.me
        )));
    }
    if path.len() as u64 > u64::from(h.hop_limit) {
        return Err(Rejection::Policy(format!(
            "{HOP_LIMIT_REFUSED}{} hops taken, the origin allowed {}",
            path.len(),
            h.hop_limit
        )));
    }
    Ok((path, false))
}

/// How [`check_chain`]'s refusals begin (one constant for the text and for
/// [`refuses_the_chain`], so that rewording one cannot silently break the other).
const CHAIN_REFUSED: &str = "chain of custody: ";
const LOOP_REFUSED: &str = "loop: ";
const HOP_LIMIT_REFUSED: &str = "hop limit exceeded: ";

/// Whether `reason`, refusing a verified envelope, is about the chain of
/// custody the peer sent with it ([`check_chain`]'s refusals): another copy
/// of the same message, over another way, may be admitted.
pub fn refuses_the_chain(reason: &Rejection) -> bool {
    match reason {
        Rejection::Malformed(m) => m.starts_with(CHAIN_REFUSED),
        Rejection::Policy(m) => m.starts_with(LOOP_REFUSED) || m.starts_with(HOP_LIMIT_REFUSED),
        _ => false,
    }
}

/// What this node learns from a payload it can read.
#[derive(Default)]
struct Parsed {
    severity: i32,
    sectors: i64,
    supersedes: Option<String>,
    request_id: Option<String>,
    receipt: Option<Receipt>,
    /// The correlation keys of an alert, from its one decode here.
    keys: Option<Vec<String>>,
}

/// Sector bitmask for listing filters.
pub fn sectors_mask(sectors: &[i32]) -> i64 {
    sectors
        .iter()
        .filter(|s| (1..63).contains(*s))
        .fold(0i64, |m, s| m | (1i64 << s))
}

fn invalid(what: &str, e: impl std::fmt::Display) -> Rejection {
    Rejection::InvalidPayload(format!("{what} does not decode: {e}"))
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// The kinds whose payload may list attachments (field 50, `AttachmentList`):
/// alerts, the assistance steps and sightings.
pub fn carries_attachments(kind: i32) -> bool {
    [
        MessageKind::Alert,
        MessageKind::Sighting,
        MessageKind::AssistanceRequest,
        MessageKind::Offer,
        MessageKind::Decision,
        MessageKind::Status,
    ]
    .iter()
    .any(|k| *k as i32 == kind)
}

/// Checks the attachment framing a relay can check without reading the
/// payload: only alerts, assistance steps and sightings carry attachments, each blob's numbers are sane and
/// its chunk size is the one of its encryption mode.
fn check_blobs(h: &EnvelopeHeader) -> Result<(), Rejection> {
    if h.attachments.is_empty() {
        return Ok(());
    }
    if !carries_attachments(h.kind) {
        return Err(Rejection::Malformed(
            "only alerts, assistance steps (request, offer, decision, status) and sightings carry attachments"
                .into(),
        ));
    }
    if h.attachments.len() > attachment::MAX_ATTACHMENTS {
        return Err(Rejection::Malformed(format!(
            "{} attachments, at most {}",
            h.attachments.len(),
            attachment::MAX_ATTACHMENTS
        )));
    }
    let chunk = attachment::CHUNK + if h.encrypted { attachment::TAG } else { 0 };
    for (i, b) in h.attachments.iter().enumerate() {
        attachment::Layout::of(b)
            .map_err(|e| Rejection::Malformed(format!("attachments[{i}]: {e}")))?;
        if b.chunk_size != chunk {
            return Err(Rejection::Malformed(format!(
                "attachments[{i}]: chunk size {} where {chunk} is used",
                b.chunk_size
            )));
        }
    }
    Ok(())
}

/// Decodes and validates a readable payload according to its kind.
fn parse_body(
    view: &View<'_>,
    h: &EnvelopeHeader,
    body: &[u8],
    created: i64,
    now: i64,
) -> Result<Parsed, Rejection> {
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
            let limits = Limits {
                max_message_bytes: view.max_message_bytes,
                ..Limits::default()
            };
            validate_alert(&alert, created, body.len(), &limits)
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
                keys: Some(crate::domain::incident::alert_keys(&alert)),
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
            let Some(offer) = &o.offer else {
                return Err(Rejection::InvalidPayload("offer: required".into()));
            };
            crate::domain::assistance::validate_offer(offer)
                .map_err(|e| Rejection::InvalidPayload(e.to_string()))?;
            Ok(Parsed {
                request_id: request_ref(&o.request_id)?,
                ..Parsed::default()
            })
        }
        Ok(MessageKind::Decision) => {
            let d = DecisionMessage::decode(body).map_err(|e| invalid("decision", e))?;
            crate::domain::assistance::validate_decision(&d)
                .map_err(|e| Rejection::InvalidPayload(e.to_string()))?;
            Ok(Parsed {
                request_id: request_ref(&d.request_id)?,
                ..Parsed::default()
            })
        }
        Ok(MessageKind::Status) => {
            let st = StatusMessage::decode(body).map_err(|e| invalid("status", e))?;
            crate::domain::assistance::validate_status(&st)
                .map_err(|e| Rejection::InvalidPayload(e.to_string()))?;
            Ok(Parsed {
                request_id: request_ref(&st.request_id)?,
                ..Parsed::default()
            })
        }
        Ok(MessageKind::Receipt) => {
            let r = Receipt::decode(body).map_err(|e| invalid("receipt", e))?;
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
            crate::domain::text::check(
                "receipt.reason",
                &r.reason,
                crate::domain::text::Kind::MultiLine,
            )
            .map_err(|e| Rejection::InvalidPayload(e.to_string()))?;
            match ReceiptState::try_from(r.state) {
                Ok(ReceiptState::Unspecified) | Err(_) => {
                    return Err(Rejection::InvalidPayload("receipt.state: unknown".into()));
                }
                Ok(_) => {}
            }
            Ok(Parsed {
                receipt: Some(r),
                ..Parsed::default()
            })
        }
        // Incident messages: checked by `domain::incident::facts` in `decide`.
        Ok(
            MessageKind::Sighting
            | MessageKind::IncidentStatus
            | MessageKind::IncidentLink
            | MessageKind::IncidentMerge,
        ) => Ok(Parsed::default()),
        // A new roster: it must follow the held one (`domain::roster`); the
        // service applies it once the message is stored.
        Ok(MessageKind::Roster) => {
            crate::domain::roster::admit_message(view.roster, h, body, now)?;
            Ok(Parsed::default())
        }
        _ => Err(Rejection::Policy(format!(
            "message kind {} is not accepted by this node version",
            h.kind
        ))),
    }
}

/// Checks a verified envelope against this node's right to hold it and, where
/// this node can read it, its payload; builds the row to store.
#[allow(clippy::too_many_arguments)]
fn decide(
    view: &View<'_>,
    env: SignedEnvelope,
    v: &Verified,
    from_peer: Option<&str>,
    (mut hops, checked): (Vec<SignedHop>, Option<&SignaturesChecked>),
    reverse: Option<&ReceiptRoute>,
    returning: bool,
    now: i64,
) -> Result<Admitted, Rejection> {
    let h = &v.header;
    let tlp = Tlp::try_from(h.tlp).map_err(|_| Rejection::Malformed("unknown TLP".into()))?;
    let label = tlp_label(tlp);
    if requires_e2e(tlp) && h.recipients.is_empty() {
        return Err(Rejection::Policy(format!(
            "{label} may not be broadcast; it needs named recipients"
        )));
    }
    if requires_e2e(tlp) && !h.encrypted {
        return Err(Rejection::Policy(format!(
            "{label} payloads must be end-to-end encrypted for their recipients"
        )));
    }
    if let Some(reason) =
        crate::domain::exercise::refuse_exercise(view.accept_exercise, h.exercise, view.me)
    {
        return Err(Rejection::Policy(reason));
    }
    check_blobs(h)?;
    // A member the roster marks exercise-only sends exercise traffic only
    // (its receipts, which carry no content of their own and are never
    // flagged, still reach the origins of what it received).
    if let Some(r) = view.roster.and_then(|a| a.current())
        && r.exercise_only(&h.origin)
        && !h.exercise
        && h.kind != MessageKind::Receipt as i32
    {
        return Err(Rejection::Policy(format!(
            "{} is an exercise-only member in roster v{}: only exercise traffic is accepted from it",
            h.origin,
            r.version()
        )));
    }
    let named = h.recipients.iter().any(|r| r == view.me);
    let is_recipient = h.origin == view.me || named;
    // The origin's own sealed message, sent back to it: sealed for the
    // recipients only, so the origin keeps it as ciphertext.
    let own_sealed = h.encrypted && h.origin == view.me && !named && from_peer.is_some();
    let plain = if h.encrypted && is_recipient && !own_sealed {
        Some(
            crate::domain::e2e::open(&env.payload, &h.message_id, view.signer)
                .map_err(|e| Rejection::InvalidPayload(format!("cannot decrypt: {e}")))?,
        )
    } else {
        None
    };
    let readable = !h.encrypted || plain.is_some();
    let created = h.created.as_ref().and_then(checked_ts_to_ms).unwrap_or(now);
    let body = readable.then(|| plain.as_deref().unwrap_or(&env.payload));
    let mut parsed = match body {
        Some(body) => {
            let parsed = parse_body(view, h, body, created, now)?;
            if carries_attachments(h.kind) {
                // The manifests share the payload's field space (field 50).
                let list = AttachmentList::decode(body).map_err(|e| invalid("attachments", e))?;
                // The size limit is the fetching node's (limits.max_attachment_bytes):
                // a message is never refused for the size of its evidence.
                attachment::check_manifests(
                    &list.attachments,
                    &h.attachments,
                    h.encrypted,
                    u64::MAX,
                )
                .map_err(|e| Rejection::InvalidPayload(e.to_string()))?;
            }
            parsed
        }
        // A relay for a message it cannot read: route on the signed header only.
        None => Parsed::default(),
    };
    let incident = crate::domain::incident::facts_keyed(
        h.kind,
        &h.incident_id,
        body,
        parsed.keys.take(),
        h.tlp,
        created,
    )
    .map_err(Rejection::InvalidPayload)?;
    let (path, returned) = match from_peer {
        Some(peer) => check_chain(view, h, created, peer, (&hops, checked), returning)?,
        None => (vec![(h.origin.clone(), created)], false),
    };
    let path_ids: Vec<String> = path.iter().map(|(n, _)| n.clone()).collect();
    let forward_to = match reverse {
        // Sent back to a node that held it before: kept, never forwarded.
        _ if returned => Vec::new(),
        // Receipts go back the way the messages came, not by flooding.
        Some(ReceiptRoute::Destination) => Vec::new(),
        Some(ReceiptRoute::Next(peer)) if !path_ids.contains(peer) => vec![peer.clone()],
        _ => targets(
            view,
            &h.origin,
            tlp,
            &h.recipients,
            &path_ids,
            h.hop_limit,
            h.encrypted,
        ),
    };
    if let Some(peer) = from_peer
        && !forward_to.is_empty()
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
            view.signer,
            HopRecord {
                message_id: h.message_id.clone(),
                received_from: peer.to_string(),
                received_at: Some(ms_to_ts(now)),
                forwarded_to: forward_to.clone(),
                decision,
                ..Default::default()
            },
        ));
    }
    let receipt_facts = parsed
        .receipt
        .filter(|_| h.recipients.iter().any(|r| r == view.me))
        .map(|r| ReceiptFacts {
            me: view.me.to_string(),
            from: h.origin.clone(),
            ids: r.message_ids,
            state: r.state,
            reason: r.reason,
            at_ms: created,
        });
    Ok(Admitted {
        message_id: h.message_id.clone(),
        origin: h.origin.clone(),
        kind: h.kind,
        tlp,
        severity: parsed.severity,
        sectors_mask: parsed.sectors,
        exercise: h.exercise,
        created_ms: created,
        expires_ms: h.expires.as_ref().and_then(checked_ts_to_ms),
        received_ms: now,
        from_peer: from_peer.map(str::to_string),
        path,
        header: env.header,
        payload: env.payload,
        signature: env.signature,
        forward_to,
        supersedes: parsed.supersedes,
        readable,
        plain,
        request_id: parsed.request_id,
        receipt_facts,
        hops: HopChain { hops }.encode_to_vec(),
        sync_audiences: crate::domain::reconcile::audiences(
            view.me,
            &h.origin,
            &h.recipients,
            Tlp::try_from(h.tlp).unwrap_or(Tlp::Unspecified),
            h.encrypted,
            // Receipts go back along their message's path, never flooded.
            h.kind != MessageKind::Receipt as i32,
        ),
        receipt_owed: None,
        incident,
        attachments: !h.attachments.is_empty(),
        // Moved in by `admit` (the header is borrowed here).
        signed_header: EnvelopeHeader::default(),
    })
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
