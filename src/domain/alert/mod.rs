//! Alerts: validation and the operator vocabularies (severity, NIS2 sectors, RSIT,
//! countries; the TLP vocabulary lives in [`crate::domain::policy`] and is re-exported
//! here).
//!
//! [`validate_alert`] is applied to an alert before the origin signs it and again by
//! every node that receives it. Every failure is a [`ValidationError`] naming the proto
//! field (e.g. `alert.indicators[3].value`) and the rule broken, in words an operator
//! can act on. Pure functions: no I/O.
//!
//! - `validate`: the alert as a whole ([`validate_alert`], [`Limits`]).
//! - `indicators`: one indicator value against the syntax of its type
//!   ([`validate_indicator`]).
//! - `vocab`: labels and parsers of the enums operators type, and the ISO 3166 list.
//!
//! The submodules are private: every public item is re-exported here, and
//! `domain::alert::X` is its only path.
mod indicators;
mod validate;
mod vocab;

#[cfg(test)]
mod indicators_tests;
#[cfg(test)]
mod validate_tests;
#[cfg(test)]
mod vocab_tests;

pub use crate::domain::policy::{ALL_TLPS, parse_tlp, tlp_label};
pub use indicators::{MAX_TEXT_INDICATOR_CHARS, MAX_URL_CHARS, URL_SCHEMES, validate_indicator};
pub use validate::{Limits, MAX_REFERENCE_CHARS, ValidationError, validate_alert};
pub use vocab::{
    ALL_RSIT, ALL_SECTORS, ALL_SEVERITIES, ISO_3166_ALPHA2, parse_rsit, parse_sector,
    parse_severity, rsit_label, sector_label, severity_label, validate_country,
};
