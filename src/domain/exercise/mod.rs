//! Exercise segregation: the rules that keep exercise traffic (scenario
//! injects, signed with `EnvelopeHeader.exercise` set) and real traffic apart.
//!
//! Invariants (every rule that relates two messages calls [`crossing`], so the
//! wording and the rule are the same everywhere):
//! - An exercise message never supersedes, retracts, links to, merges with,
//!   contributes to or answers a real one, and the reverse. The alert rules
//!   (`service::alerts` before signing; the store's supersede mark, which
//!   applies only between messages of the same flag), the assistance replay
//!   (`domain::assistance::replay`/`check`) and the incident picture
//!   (`domain::incident::picture`/`refusal`) all refuse such a relation with
//!   the reason [`crossing`] gives, for peers' messages and local ones alike.
//! - A node with `exercise.accept = false` refuses exercise envelopes in
//!   admission ([`refuse_exercise`]): it neither stores nor relays them, and
//!   owes the origin a rejection receipt naming the reason, so the exercise
//!   lead sees in the delivery status which partners opted out.
//! - Views, listings, Watch, exports and metric labels show real traffic only
//!   unless exercise traffic is asked for by name (`include_exercise`).
//!
//! Submodules: `scenario` (the TOML scenario format, parsed once into typed
//! values and validated before anything is sent, errors naming the line) and
//! `score` (the report of a run as a pure function of what was recorded).
//!
//! No I/O here.

pub mod scenario;
pub mod score;

/// "exercise" or "real".
pub fn label(exercise: bool) -> &'static str {
    if exercise { "exercise" } else { "real" }
}

/// Why a `what` (e.g. "update", "offer", "link") marked `own` may not relate
/// to message `other_id` marked `other`; `None` when both have the same flag.
pub fn crossing(
    what: &str,
    own: bool,
    relation: &str,
    other_id: &str,
    other: bool,
) -> Option<String> {
    (own != other).then(|| {
        format!(
            "{} {} {what} cannot {relation} {} message {other_id}: exercise and real traffic are kept apart; {}",
            if own { "an" } else { "a" },
            label(own),
            label(other),
            if own {
                "use an exercise message of the same scenario"
            } else {
                "real traffic never refers to exercise injects"
            }
        )
    })
}

/// Why this node refuses an exercise envelope, if it does (`accept` is
/// `exercise.accept` of its configuration).
pub fn refuse_exercise(accept: bool, exercise: bool, me: &str) -> Option<String> {
    (exercise && !accept).then(|| {
        format!(
            "{me} does not take part in exercises (exercise.accept = false): exercise traffic is neither stored nor relayed there"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_flag_relates_and_crossing_is_refused_both_ways() {
        assert_eq!(crossing("update", true, "supersede", "m1", true), None);
        assert_eq!(crossing("update", false, "supersede", "m1", false), None);
        let r = crossing("update", true, "supersede", "m1", false).unwrap();
        assert!(
            r.contains("exercise update cannot supersede real message m1"),
            "{r}"
        );
        let r = crossing("offer", false, "answer", "m2", true).unwrap();
        assert!(
            r.contains("real offer cannot answer exercise message m2"),
            "{r}"
        );
    }

    #[test]
    fn a_node_that_opts_out_refuses_exercise_only() {
        assert_eq!(refuse_exercise(true, true, "a"), None);
        assert_eq!(refuse_exercise(false, false, "a"), None);
        let r = refuse_exercise(false, true, "node-a").unwrap();
        assert!(r.contains("exercise.accept = false"), "{r}");
    }
}
