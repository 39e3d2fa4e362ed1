//! Validation of a whole alert ([`validate_alert`]) against the node's [`Limits`].
//!
//! The checks run in a fixed order (size, title, description, TLP, severity, RSIT class
//! and type, sectors and subsectors, countries, indicators, references, expiry, revision) and stop at the first failure,
//! whose [`ValidationError`] names the field by its proto path. Title, TLP and severity
//! are required; the RSIT class and type may be unset, but a type needs its class
//! (the type must belong to it); a subsector needs its sector listed; an UNSPECIFIED entry inside a list is
//! refused, as is a value the proto does not know. The alert is only read, never
//! rewritten: what is signed and relayed is exactly what was validated.
//!
//! Every free-text field (title, description, text indicators, indicator comments,
//! references) goes through [`crate::domain::text::check`]: control, bidi-override and
//! invisible formatting characters are refused, here at publish time and again at every
//! node that receives the alert. The title and references are single lines; the
//! description, comments and text indicators may hold line breaks.
use super::indicators::{indicator_type_rule, validate_indicator};
use super::vocab::{
    rsit_label, rsit_type_class, rsit_type_label, sector_label, subsector_label, subsector_sector,
    validate_country,
};
use crate::domain::policy::tlp_from_wire;
use crate::domain::text::{self, Kind, TextError};
use crate::proto::v1::{
    Alert, IndicatorType, Nis2Sector, Nis2Subsector, Revision, RsitClass, RsitType, Severity,
};

/// Size and count limits applied to alerts (from the node's configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest serialized alert accepted, in bytes.
    pub max_message_bytes: usize,
    /// Most indicators in one alert.
    pub max_indicators: usize,
    /// Longest title, in characters.
    pub max_title_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 256 * 1024,
            max_indicators: 10_000,
            max_title_chars: 200,
        }
    }
}

/// A validation failure naming the field (proto path like `alert.indicators[3].value`)
/// and the rule broken, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct ValidationError {
    /// Proto path of the offending field.
    pub field: String,
    /// The rule broken and how to fix it.
    pub rule: String,
}

impl From<TextError> for ValidationError {
    fn from(e: TextError) -> Self {
        let rule = e.to_string();
        let rule = rule
            .strip_prefix(&format!("{}: ", e.field))
            .unwrap_or(&rule)
            .to_string();
        ValidationError {
            field: e.field,
            rule,
        }
    }
}

impl ValidationError {
    fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// Longest reference, in characters.
pub const MAX_REFERENCE_CHARS: usize = 2048;

/// [`text::check`] of a field whose name is built only when the text is
/// refused (a list's entries, checked in every arriving alert).
fn check_named(field: impl FnOnce() -> String, s: &str, kind: Kind) -> Result<(), TextError> {
    text::check("", s, kind).map_err(|mut e| {
        e.field = field();
        e
    })
}

/// Validates an alert about to be signed or just received. `created_unix_ms` is the
/// envelope creation time; `encoded_len` the size of the serialized alert.
pub fn validate_alert(
    alert: &Alert,
    created_unix_ms: i64,
    encoded_len: usize,
    limits: &Limits,
) -> Result<(), ValidationError> {
    if encoded_len > limits.max_message_bytes {
        return Err(ValidationError::new(
            "alert",
            format!(
                "alert is {encoded_len} bytes, over the node's limit of {} bytes (limits.max_message_bytes); split it or raise the limit",
                limits.max_message_bytes
            ),
        ));
    }

    // title
    if alert.title.trim().is_empty() {
        return Err(ValidationError::new(
            "alert.title",
            "required: give the alert a short headline (not only spaces)",
        ));
    }
    let title_chars = alert.title.chars().count();
    if title_chars > limits.max_title_chars {
        return Err(ValidationError::new(
            "alert.title",
            format!(
                "title is {title_chars} characters, over the limit of {}; shorten it and put details in the description",
                limits.max_title_chars
            ),
        ));
    }
    text::check("alert.title", &alert.title, Kind::SingleLine)?;

    // description
    text::check("alert.description", &alert.description, Kind::MultiLine)?;

    // tlp
    tlp_from_wire(alert.tlp).map_err(|rule| ValidationError::new("alert.tlp", rule))?;

    // severity
    match Severity::try_from(alert.severity) {
        Ok(Severity::Unspecified) => {
            return Err(ValidationError::new(
                "alert.severity",
                "required: set the severity to SEVERITY_LOW, SEVERITY_MEDIUM, SEVERITY_HIGH or SEVERITY_CRITICAL",
            ));
        }
        Ok(_) => {}
        Err(_) => {
            return Err(ValidationError::new(
                "alert.severity",
                format!(
                    "unknown severity value {}; use SEVERITY_LOW, SEVERITY_MEDIUM, SEVERITY_HIGH or SEVERITY_CRITICAL",
                    alert.severity
                ),
            ));
        }
    }

    // rsit_class (unspecified allowed)
    if RsitClass::try_from(alert.rsit_class).is_err() {
        return Err(ValidationError::new(
            "alert.rsit_class",
            format!(
                "unknown RSIT class value {}; use one of the RSIT_CLASS_* values (or leave it unset if the class is not known yet)",
                alert.rsit_class
            ),
        ));
    }

    // rsit_type (unspecified allowed; otherwise it must belong to rsit_class)
    match RsitType::try_from(alert.rsit_type) {
        Ok(RsitType::Unspecified) => {}
        Ok(t) => {
            let class = rsit_type_class(t);
            if alert.rsit_class != class as i32 {
                let set = RsitClass::try_from(alert.rsit_class).unwrap_or(RsitClass::Unspecified);
                return Err(ValidationError::new(
                    "alert.rsit_type",
                    if set == RsitClass::Unspecified {
                        format!(
                            "RSIT type {} needs its class: set rsit_class to {} ({})",
                            rsit_type_label(t),
                            class.as_str_name(),
                            rsit_label(class)
                        )
                    } else {
                        format!(
                            "RSIT type {} belongs to class {}, not {}; fix the class or the type",
                            rsit_type_label(t),
                            rsit_label(class),
                            rsit_label(set)
                        )
                    },
                ));
            }
        }
        Err(_) => {
            return Err(ValidationError::new(
                "alert.rsit_type",
                format!(
                    "unknown RSIT type value {}; use one of the RSIT_TYPE_* values (or leave it unset)",
                    alert.rsit_type
                ),
            ));
        }
    }

    // sectors
    for (i, &s) in alert.sectors.iter().enumerate() {
        // Each list entry is named only when refused (every arriving alert
        // passes here).
        let field = || format!("alert.sectors[{i}]");
        match Nis2Sector::try_from(s) {
            Ok(Nis2Sector::Unspecified) => {
                return Err(ValidationError::new(
                    field(),
                    "NIS2_SECTOR_UNSPECIFIED is not a sector; name the affected sector or remove the entry",
                ));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(ValidationError::new(
                    field(),
                    format!("unknown NIS2 sector value {s}; use one of the NIS2_SECTOR_* values"),
                ));
            }
        }
        if alert.sectors[..i].contains(&s) {
            return Err(ValidationError::new(
                field(),
                format!(
                    "sector {} is listed twice; list each sector once",
                    Nis2Sector::try_from(s).map(sector_label).unwrap_or("?")
                ),
            ));
        }
    }

    // subsectors
    for (i, &s) in alert.subsectors.iter().enumerate() {
        let field = || format!("alert.subsectors[{i}]");
        let sub = match Nis2Subsector::try_from(s) {
            Ok(Nis2Subsector::Unspecified) => {
                return Err(ValidationError::new(
                    field(),
                    "NIS2_SUBSECTOR_UNSPECIFIED is not a subsector; name the affected subsector or remove the entry",
                ));
            }
            Ok(sub) => sub,
            Err(_) => {
                return Err(ValidationError::new(
                    field(),
                    format!(
                        "unknown NIS2 subsector value {s}; use one of the NIS2_SUBSECTOR_* values"
                    ),
                ));
            }
        };
        if alert.subsectors[..i].contains(&s) {
            return Err(ValidationError::new(
                field(),
                format!(
                    "subsector {} is listed twice; list each subsector once",
                    subsector_label(sub)
                ),
            ));
        }
        let sector = subsector_sector(sub);
        if !alert.sectors.contains(&(sector as i32)) {
            return Err(ValidationError::new(
                field(),
                format!(
                    "subsector {} belongs to sector {}; list {} in sectors too",
                    subsector_label(sub),
                    sector_label(sector),
                    sector.as_str_name()
                ),
            ));
        }
    }

    // affected_countries
    for (i, c) in alert.affected_countries.iter().enumerate() {
        validate_country(c)
            .map_err(|rule| ValidationError::new(format!("alert.affected_countries[{i}]"), rule))?;
    }

    // indicators
    if alert.indicators.len() > limits.max_indicators {
        return Err(ValidationError::new(
            "alert.indicators",
            format!(
                "{} indicators, over the node's limit of {} (limits.max_indicators); split them over several alerts",
                alert.indicators.len(),
                limits.max_indicators
            ),
        ));
    }
    for (i, ind) in alert.indicators.iter().enumerate() {
        match IndicatorType::try_from(ind.r#type) {
            Ok(IndicatorType::Unspecified) | Err(_) => {
                return Err(ValidationError::new(
                    format!("alert.indicators[{i}].type"),
                    indicator_type_rule(ind.r#type),
                ));
            }
            Ok(_) => {}
        }
        if ind.r#type == IndicatorType::Text as i32 {
            check_named(
                || format!("alert.indicators[{i}].value"),
                &ind.value,
                Kind::MultiLine,
            )?;
        }
        validate_indicator(ind)
            .map_err(|rule| ValidationError::new(format!("alert.indicators[{i}].value"), rule))?;
        check_named(
            || format!("alert.indicators[{i}].comment"),
            &ind.comment,
            Kind::MultiLine,
        )?;
    }

    // references
    for (i, r) in alert.references.iter().enumerate() {
        let field = || format!("alert.references[{i}]");
        if r.trim().is_empty() {
            return Err(ValidationError::new(
                field(),
                "empty reference; give a URL or document identifier, or remove the entry",
            ));
        }
        let n = r.chars().count();
        if n > MAX_REFERENCE_CHARS {
            return Err(ValidationError::new(
                field(),
                format!("reference is {n} characters, over the limit of {MAX_REFERENCE_CHARS}"),
            ));
        }
        check_named(field, r, Kind::SingleLine)?;
    }

    // expires
    if let Some(ts) = &alert.expires {
        if !(0..1_000_000_000).contains(&ts.nanos) {
            return Err(ValidationError::new(
                "alert.expires",
                format!(
                    "invalid timestamp: nanos {} is outside 0..999999999",
                    ts.nanos
                ),
            ));
        }
        if crate::domain::envelope::checked_ts_to_ms(ts).is_none() {
            return Err(ValidationError::new(
                "alert.expires",
                format!(
                    "timestamp {} s is outside years 0001 to 9999; set a real expiry or leave it unset",
                    ts.seconds
                ),
            ));
        }
        let expires_ms = i128::from(ts.seconds) * 1000 + i128::from(ts.nanos) / 1_000_000;
        if expires_ms <= i128::from(created_unix_ms) {
            return Err(ValidationError::new(
                "alert.expires",
                format!(
                    "expires ({expires_ms} ms since the epoch) is not after the creation time ({created_unix_ms} ms); set a later expiry or leave it unset"
                ),
            ));
        }
    }

    // revision / supersedes
    match Revision::try_from(alert.revision) {
        Ok(Revision::Original) => {
            if !alert.supersedes.is_empty() {
                return Err(ValidationError::new(
                    "alert.supersedes",
                    "an ORIGINAL alert supersedes nothing; leave supersedes empty, or set revision to REVISION_UPDATE or REVISION_RETRACTION",
                ));
            }
        }
        Ok(rev @ (Revision::Update | Revision::Retraction)) => {
            if alert.supersedes.trim().is_empty() {
                return Err(ValidationError::new(
                    "alert.supersedes",
                    format!(
                        "required for {}: give the message id of the alert this one {}",
                        rev.as_str_name(),
                        if rev == Revision::Update {
                            "updates"
                        } else {
                            "retracts"
                        }
                    ),
                ));
            }
            if uuid::Uuid::parse_str(&alert.supersedes).is_err() {
                return Err(ValidationError::new(
                    "alert.supersedes",
                    format!(
                        "{} is not a message id (a UUID such as the message_id PublishAlert returned)",
                        text::quote(&alert.supersedes)
                    ),
                ));
            }
        }
        Err(_) => {
            return Err(ValidationError::new(
                "alert.revision",
                format!(
                    "unknown revision value {}; use REVISION_ORIGINAL, REVISION_UPDATE or REVISION_RETRACTION",
                    alert.revision
                ),
            ));
        }
    }
    Ok(())
}
