//! Unit tests of the state machine: every transition and refusal (with the party, state
//! and allowed moves named), and the replay rules (dedup, order, ignored steps).
use super::fixtures::*;
use super::*;
use crate::proto::v1::{AssistanceState as S, OfferMessage, OfferState};

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
fn allowed_moves_graph() {
    assert_eq!(allowed_moves(S::Closed), &[] as &[S]);
    assert_eq!(allowed_moves(S::Withdrawn), &[] as &[S]);
    assert_eq!(allowed_moves(S::Completed), &[S::Closed]);
    for s in [S::Requested, S::Offered, S::Accepted, S::Deployed] {
        assert!(allowed_moves(s).contains(&S::Withdrawn));
    }
}

#[test]
fn exercise_and_real_steps_never_answer_each_other() {
    // A real request: an exercise offer (and an exercise decision on a real
    // offer) are ignored with the reason; the real ones apply.
    let mut ex_offer = signed("o-ex", "donor-x", T0 + 10, offer_step(3));
    ex_offer.exercise = true;
    let real_offer = signed("o-real", "donor-y", T0 + 20, offer_step(3));
    let mut ex_accept = signed("d-ex", REQ, T0 + 30, decision_step("o-real", true));
    ex_accept.exercise = true;
    let a = replay(RID, &[request_step(), ex_offer, real_offer, ex_accept]).unwrap();
    assert!(!a.exercise);
    assert_eq!(a.state, S::Offered, "only the real offer counts");
    assert_eq!(a.offers.len(), 1);
    assert_eq!(a.offers[0].offer_id, "o-real");
    let ignored: Vec<&HistoryEntry> = a.history.iter().filter(|h| !h.applied).collect();
    assert_eq!(ignored.len(), 2, "{:?}", a.history);
    for h in ignored {
        assert!(
            h.action.contains("exercise")
                && h.action
                    .contains(&format!("cannot answer real message {RID}")),
            "{}",
            h.action
        );
    }

    // The reverse: an exercise request is not answered by a real offer.
    let mut req = request_step();
    req.exercise = true;
    let mut ex_offer = signed("o-ex", "donor-x", T0 + 10, offer_step(3));
    ex_offer.exercise = true;
    let real_offer = signed("o-real", "donor-y", T0 + 20, offer_step(3));
    let a = replay(RID, &[req, real_offer, ex_offer]).unwrap();
    assert!(a.exercise);
    assert_eq!(a.offers.len(), 1);
    assert_eq!(a.offers[0].offer_id, "o-ex");
    assert!(
        a.history.iter().any(|h| !h.applied
            && h.action
                .contains("real offer cannot answer exercise message")),
        "{:?}",
        a.history
    );
}
