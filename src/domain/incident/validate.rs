//! Content rules of the incident messages ([`validate`]): ids are UUIDs, a
//! sighting's count and times are plausible, free text is clean
//! (`domain::text`), enum values are known. Each failure names the proto field
//! and the rule, like `domain::alert::ValidationError`. The same checks run at
//! the origin before signing and at every node that can read the message.
use crate::domain::alert::{validate_country, validate_indicator};
use crate::domain::envelope::checked_ts_to_ms;
use crate::domain::text::{self, Kind};
use crate::proto::v1::{
    IncidentLink, IncidentMerge, IncidentStatus, IncidentStatusChange, MessageKind, Nis2Sector,
    Severity, Sighting, Tlp,
};
use prost::Message;

/// Most indicators in one sighting (a sighting is small on purpose).
pub const MAX_SIGHTING_INDICATORS: usize = 100;
/// Largest count a sighting may report.
pub const MAX_SIGHTING_COUNT: u64 = 1_000_000_000;
/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 4096;
/// A sighting may be observed at most this long after its message was signed.
const OBSERVED_SKEW_MS: i64 = 5 * 60 * 1000;
/// Nothing is observed before 1990-01-01 (unix ms).
const EARLIEST_OBSERVED_MS: i64 = 631_152_000_000;

/// A content rule broken: the field (proto path) and the rule, in words an
/// operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct IncidentError {
    pub field: String,
    pub rule: String,
}

fn err(field: impl Into<String>, rule: impl Into<String>) -> IncidentError {
    IncidentError {
        field: field.into(),
        rule: rule.into(),
    }
}

impl From<text::TextError> for IncidentError {
    fn from(e: text::TextError) -> Self {
        let rule = e.to_string();
        let rule = rule
            .strip_prefix(&format!("{}: ", e.field))
            .unwrap_or(&rule)
            .to_string();
        IncidentError {
            field: e.field,
            rule,
        }
    }
}

fn uuid(field: &str, v: &str, what: &str) -> Result<(), IncidentError> {
    if uuid::Uuid::parse_str(v).is_err() {
        return Err(err(
            field,
            format!("{} is not {what} (a UUID)", text::quote(v)),
        ));
    }
    Ok(())
}

fn note(field: &str, v: &str) -> Result<(), IncidentError> {
    let n = v.chars().count();
    if n > MAX_NOTE_CHARS {
        return Err(err(
            field,
            format!("{n} characters, over the limit of {MAX_NOTE_CHARS}; shorten it"),
        ));
    }
    text::check(field, v, Kind::MultiLine)?;
    Ok(())
}

/// Lower-case word of an incident status.
pub fn status_label(s: IncidentStatus) -> &'static str {
    match s {
        IncidentStatus::Unspecified => "unspecified",
        IncidentStatus::Open => "open",
        IncidentStatus::Investigating => "investigating",
        IncidentStatus::Contained => "contained",
        IncidentStatus::Resolved => "resolved",
    }
}

/// Checks a sighting signed at `created_ms`.
pub fn validate_sighting(s: &Sighting, created_ms: i64) -> Result<(), IncidentError> {
    if !s.incident_id.is_empty() {
        uuid("sighting.incident_id", &s.incident_id, "an incident id")?;
    }
    if s.indicators.len() > MAX_SIGHTING_INDICATORS {
        return Err(err(
            "sighting.indicators",
            format!(
                "{} indicators, over the limit of {MAX_SIGHTING_INDICATORS} per sighting; send several sightings or an alert",
                s.indicators.len()
            ),
        ));
    }
    if s.incident_id.is_empty() && s.indicators.is_empty() {
        return Err(err(
            "sighting.indicators",
            "a sighting names an incident, or at least one indicator; give one of them",
        ));
    }
    for (i, ind) in s.indicators.iter().enumerate() {
        validate_indicator(ind).map_err(|r| err(format!("sighting.indicators[{i}].value"), r))?;
        text::check(
            &format!("sighting.indicators[{i}].comment"),
            &ind.comment,
            Kind::MultiLine,
        )?;
    }
    if s.country.is_empty() {
        return Err(err(
            "sighting.country",
            "required: where it was observed, an ISO 3166-1 alpha-2 code (e.g. \"EE\")",
        ));
    }
    validate_country(&s.country).map_err(|r| err("sighting.country", r))?;
    if s.sector != 0
        && !matches!(Nis2Sector::try_from(s.sector), Ok(x) if x != Nis2Sector::Unspecified)
    {
        return Err(err(
            "sighting.sector",
            format!("unknown sector value {}", s.sector),
        ));
    }
    if s.severity != 0
        && !matches!(Severity::try_from(s.severity), Ok(x) if x != Severity::Unspecified)
    {
        return Err(err(
            "sighting.severity",
            format!("unknown severity value {}", s.severity),
        ));
    }
    let Some(observed) = s.observed.as_ref() else {
        return Err(err("sighting.observed", "required: when it was observed"));
    };
    let Some(at) = checked_ts_to_ms(observed) else {
        return Err(err("sighting.observed", "out of range"));
    };
    if at < EARLIEST_OBSERVED_MS {
        return Err(err(
            "sighting.observed",
            "before 1990: not a plausible observation time; give when it was seen",
        ));
    }
    if at > created_ms.saturating_add(OBSERVED_SKEW_MS) {
        return Err(err(
            "sighting.observed",
            "in the future: a sighting reports what was already observed",
        ));
    }
    if s.count == 0 || s.count > MAX_SIGHTING_COUNT {
        return Err(err(
            "sighting.count",
            format!(
                "{} is not a plausible count; give 1 to {MAX_SIGHTING_COUNT}",
                s.count
            ),
        ));
    }
    match Tlp::try_from(s.tlp) {
        Ok(Tlp::Unspecified) | Err(_) => {
            return Err(err(
                "sighting.tlp",
                "required: clear, green, amber, amber+strict or red",
            ));
        }
        Ok(_) => {}
    }
    note("sighting.note", &s.note)
}

/// Checks a status change.
pub fn validate_status(s: &IncidentStatusChange) -> Result<(), IncidentError> {
    uuid("status.incident_id", &s.incident_id, "an incident id")?;
    match IncidentStatus::try_from(s.status) {
        Ok(
            IncidentStatus::Investigating | IncidentStatus::Contained | IncidentStatus::Resolved,
        ) => {}
        _ => {
            return Err(err(
                "status.status",
                "must be INVESTIGATING, CONTAINED or RESOLVED",
            ));
        }
    }
    note("status.note", &s.note)
}

/// Checks a link.
pub fn validate_link(l: &IncidentLink) -> Result<(), IncidentError> {
    uuid("link.incident_id", &l.incident_id, "an incident id")?;
    uuid("link.message_id", &l.message_id, "a message id")?;
    if l.message_id == l.incident_id {
        return Err(err(
            "link.message_id",
            "an incident cannot be linked into itself",
        ));
    }
    note("link.note", &l.note)
}

/// Checks a merge.
pub fn validate_merge(m: &IncidentMerge) -> Result<(), IncidentError> {
    uuid("merge.incident_id", &m.incident_id, "an incident id")?;
    uuid(
        "merge.other_incident_id",
        &m.other_incident_id,
        "an incident id",
    )?;
    if m.incident_id == m.other_incident_id {
        return Err(err(
            "merge.other_incident_id",
            "an incident cannot be merged with itself",
        ));
    }
    note("merge.note", &m.note)
}

/// Decodes and checks the payload of an incident message of `kind` signed at
/// `created_ms` under marking `tlp`; returns the incident id it names (empty
/// for a sighting of indicators alone). `Ok(None)` for kinds that are not
/// incident messages.
pub fn validate(
    kind: MessageKind,
    body: &[u8],
    tlp: i32,
    created_ms: i64,
) -> Result<Option<String>, IncidentError> {
    let bad = |what: &str, e: prost::DecodeError| err(what, format!("does not decode: {e}"));
    Ok(Some(match kind {
        MessageKind::Sighting => {
            let s = Sighting::decode(body).map_err(|e| bad("sighting", e))?;
            validate_sighting(&s, created_ms)?;
            if s.tlp != tlp {
                return Err(err(
                    "sighting.tlp",
                    "differs from the signed envelope's TLP",
                ));
            }
            s.incident_id
        }
        MessageKind::IncidentStatus => {
            let s = IncidentStatusChange::decode(body).map_err(|e| bad("status", e))?;
            validate_status(&s)?;
            s.incident_id
        }
        MessageKind::IncidentLink => {
            let l = IncidentLink::decode(body).map_err(|e| bad("link", e))?;
            validate_link(&l)?;
            l.incident_id
        }
        MessageKind::IncidentMerge => {
            let m = IncidentMerge::decode(body).map_err(|e| bad("merge", e))?;
            validate_merge(&m)?;
            m.incident_id
        }
        _ => return Ok(None),
    }))
}
