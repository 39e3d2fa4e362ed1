//! Property tests of the convergence rule: any delivery order, with duplicates and
//! foreign steps, replays to the same state; exactly the steps the authority accepted
//! are applied; the offer states agree with the request state.
use super::fixtures::*;
use super::*;
use crate::proto::v1::{AssistanceState as S, OfferState};
use proptest::prelude::*;

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
