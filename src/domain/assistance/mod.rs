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
//!
//! - `machine`: the steps, the replayed state and the rules ([`replay`], [`check`]).
//! - `validate`: request, offer, decision and status content and free text
//!   ([`validate_request`], [`validate_offer`], [`validate_decision`], [`validate_status`]).
//! - `view`: the proto view of a replayed request for the Operator API.
//! - `error`: [`AssistanceError`], shared by all of them.
//!
//! The submodules are private: every public item is re-exported here, and
//! `domain::assistance::X` is its only path.
mod error;
mod machine;
mod validate;
mod view;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod machine_proptest;
#[cfg(test)]
mod machine_tests;
#[cfg(test)]
mod validate_tests;
#[cfg(test)]
mod view_tests;

pub use error::AssistanceError;
pub use machine::{
    Assistance, HistoryEntry, OfferEntry, SignedStep, Step, allowed_moves, check, is_terminal,
    next_created_ms, offer_state_label, overdue, replay, state_label,
};
pub use validate::{
    MAX_TITLE_CHARS, offer_content, request_content, validate_decision, validate_offer,
    validate_request, validate_status,
};
pub use view::fit_view;
