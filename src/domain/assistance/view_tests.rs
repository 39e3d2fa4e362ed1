//! Unit tests of the Operator API view: state, offers, history and `overdue` carried over.
use super::fixtures::*;
use super::view::ms_timestamp;
use crate::proto::v1::{AssistanceState as S, OfferState};
use prost_types::Timestamp;

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
fn a_view_too_large_for_one_answer_is_trimmed_not_refused() {
    use prost::Message;
    let mut sim = Sim::new();
    for i in 0..40 {
        let mut o = offer("big offer", 3);
        o.conditions = "c".repeat(10_000);
        sim.act(
            &format!("node-d{i}"),
            super::Step::Offer(crate::proto::v1::OfferMessage {
                request_id: RID.into(),
                offer: Some(o),
            }),
        )
        .unwrap();
    }
    let full = sim.state().to_view(T0);
    assert!(full.encoded_len() > 400_000);
    let mut v = full.clone();
    super::fit_view(&mut v, 1_000_000);
    assert_eq!(v, full, "a view that fits is untouched");
    super::fit_view(&mut v, 100_000);
    assert!(v.truncated);
    assert!(v.encoded_len() <= 100_000, "{}", v.encoded_len());
    assert_eq!(v.offers.len(), 40, "every offer still listed");
    assert!(
        v.offers
            .iter()
            .all(|o| !o.offer_id.is_empty() && o.offer.is_none())
    );
    assert_eq!(v.history.len(), full.history.len());
    assert_eq!(v.state, full.state);
}
