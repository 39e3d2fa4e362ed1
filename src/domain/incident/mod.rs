//! Incidents across partners: one campaign seen by several partners, tied together
//! by signed contributions (alerts, sightings, status changes, links, merges), and
//! the shared picture every node derives from what it holds.
//!
//! **Convergence rule.** The picture ([`picture`]) is a pure function of the *set*
//! of contributions a node holds, like `domain::assistance::replay`: duplicates are
//! dropped, the rest ordered by `(created_ms, message_id)`, and every rule that
//! relates one message to another (may this sender contribute? is this sighting
//! wider than the incident? is this status change by the opener? is this merge
//! agreed by both openers? would this link close a cycle?) is decided inside the
//! fold, so two nodes holding the same contributions show the same picture in
//! any delivery order. A contribution that breaks a rule stays out of the
//! picture and is listed with its reason ([`refusal`] is the same rule the
//! origin's node applies before it signs).
//!
//! **Exercise.** An exercise contribution never joins a real incident, and a
//! real one never an exercise incident; links and merges never cross the flag
//! either (`domain::exercise::crossing`, refused with the reason like any
//! other rule).
//!
//! **Marking.** A contribution may be more restricted than its incident, never
//! wider: its TLP is at least the incident's, and when the incident has named
//! recipients, the contribution's are among them ([`check_contribution`]). What
//! a node cannot read it counts, by origin, kind and TLP, from the signed
//! header (which carries the incident id in clear), and never shows.
//!
//! Content rules (absurd counts or times, free text, ids) are checked on every
//! message by [`validate`], at the origin and at every node that can read it
//! (`domain::admission`). No I/O and no clock here: times come in as arguments.
//!
//! - `validate`: content of sightings, status changes, links and merges; labels.
//! - `keys`: correlation keys of indicators and of alerts named by assistance requests.
//! - `picture`: the pure picture and the marking rules.
mod keys;
mod picture;
mod validate;

#[cfg(test)]
mod picture_proptest;
#[cfg(test)]
mod picture_tests;
#[cfg(test)]
mod validate_tests;

pub use keys::{
    IncidentFacts, alert_keys, assistance_key, facts, facts_keyed, indicator_key, member_key,
    message_keys, naming_key, stored_keys,
};
pub use picture::{
    Audience, Body, Contribution, check_contribution, digest, picture, refusal, related_ids,
};
pub use validate::{
    IncidentError, MAX_NOTE_CHARS, MAX_SIGHTING_COUNT, MAX_SIGHTING_INDICATORS, status_label,
    validate, validate_link, validate_merge, validate_sighting, validate_status,
};
