//! The proto view of a replayed request ([`Assistance::to_view`]) for the Operator API.
//!
//! A read-only projection: it copies the replayed state, offers and full history
//! (ignored steps included, their action starting with "ignored: ") and adds only what
//! depends on the caller's clock, `overdue`. It decides nothing and changes nothing.
//! [`fit_view`] trims a view that would not fit in one answer (many or large offers):
//! offer contents and history notes go, ids, donors, states and actions stay.
use prost::Message;
use prost_types::Timestamp;

use super::machine::{Assistance, overdue};
use crate::proto::v1::{AssistanceEvent, AssistanceView, OfferView};

/// Unix ms as a proto timestamp (nanos always in 0..1e9, also before 1970).
pub(super) fn ms_timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        // rem_euclid(1000) * 1e6 < 1e9 fits in i32
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

impl Assistance {
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
            truncated: false,
            exercise: self.exercise,
        }
    }
}

/// Trims `v` to at most `max_bytes` encoded if it is larger: first the history notes,
/// then the offers' contents (`OfferView.offer`, decision notes), and marks it
/// `truncated`. What remains (the request, ids, donors, states, actions) is what an
/// operator needs to see the request's state; a view that is still larger is returned
/// as it is (only a request with hundreds of thousands of steps gets there).
pub fn fit_view(v: &mut AssistanceView, max_bytes: usize) {
    if v.encoded_len() <= max_bytes {
        return;
    }
    v.truncated = true;
    for h in &mut v.history {
        h.note.clear();
    }
    if v.encoded_len() <= max_bytes {
        return;
    }
    for o in &mut v.offers {
        o.offer = None;
        o.decision_note.clear();
    }
}
