//! Alerts: validation and the operator vocabularies (severity, NIS2 sectors and
//! subsectors, RSIT classes and types, TLP machine tags, countries; the TLP words
//! live in [`crate::domain::policy`] and are re-exported here).
//!
//! [`validate_alert`] is applied to an alert before the origin signs it and again by
//! every node that receives it. Every failure is a [`ValidationError`] naming the proto
//! field (e.g. `alert.indicators[3].value`) and the rule broken, in words an operator
//! can act on. Pure functions: no I/O.
//!
//! - `validate`: the alert as a whole ([`validate_alert`], [`Limits`]).
//! - `indicators`: one indicator value against the syntax of its type
//!   ([`validate_indicator`]).
//! - `vocab`: labels and parsers of the enums operators type (the values of the MISP
//!   `tlp`, `rsit` and `nis2` taxonomies), machine tags, and the ISO 3166 list.
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
    ALL_RSIT, ALL_RSIT_TYPES, ALL_SECTORS, ALL_SEVERITIES, ALL_SUBSECTORS, ISO_3166_ALPHA2,
    VocabTag, parse_rsit, parse_rsit_type, parse_sector, parse_severity, parse_subsector,
    parse_tlp_tag, parse_vocab_tag, rsit_label, rsit_tag, rsit_type_class, rsit_type_label,
    sector_label, sector_legacy_labels, sector_tag, severity_label, split_machine_tag,
    subsector_label, subsector_sector, subsector_tag, tlp_tag, validate_country,
};
