//! Correlation keys: what the store indexes so that an arriving alert or
//! sighting is matched against the incidents a node holds without scanning
//! its history, and so that the assistance requests naming an alert are found.
//!
//! Invariants: a key is at most 80 bytes (long values are keyed by their
//! SHA-256); values that differ only in letter case where case carries no
//! meaning (addresses, domains, digests, CVE ids) get the same key; free text
//! and URLs are keyed exactly as given.
use crate::proto::v1::{
    Alert, AssistanceRequest, IncidentLink, IncidentMerge, Indicator, IndicatorType, MessageKind,
    Sighting,
};
use prost::Message;
use sha2::{Digest, Sha256};

/// Longest key stored as is.
const MAX_PLAIN_KEY: usize = 80;

/// The correlation key of an indicator: `i:<type>:<value>`, the value in
/// its normal form (upper-case CVE ids, the rest of the case-blind types
/// lower-case, an ASN without its `as` prefix), or `i:<type>#<SHA-256 of
/// that form>` when the plain key would pass [`MAX_PLAIN_KEY`]. Built in
/// one string (every arriving alert's indicators go through here).
pub fn indicator_key(ind: &Indicator) -> String {
    use std::fmt::Write;
    let v = ind.value.as_str();
    let mut key = String::with_capacity(v.len() + 8);
    // Writing to a String cannot fail.
    let _ = write!(key, "i:{}:", ind.r#type);
    let start = key.len();
    key.push_str(v);
    match IndicatorType::try_from(ind.r#type) {
        Ok(IndicatorType::Text | IndicatorType::Url) => {}
        Ok(IndicatorType::Cve) => key[start..].make_ascii_uppercase(),
        Ok(IndicatorType::Asn) => {
            key[start..].make_ascii_lowercase();
            if key[start..].starts_with("as") {
                key.replace_range(start..start + 2, "");
            }
        }
        _ => key[start..].make_ascii_lowercase(),
    }
    if key.len() <= MAX_PLAIN_KEY {
        return key;
    }
    let d = Sha256::digest(&key.as_bytes()[start..]);
    key.truncate(start - 1);
    key.push('#');
    for b in d {
        let _ = write!(key, "{b:02x}");
    }
    key
}

/// The key under which a member of an incident (an alert or a sighting whose
/// signed header names one) is also indexed, by the key of one of its
/// indicators (`indicator_key`): correlation of an arrival reads these rows
/// only (`Storage::keyed_incidents`), so an indicator that thousands of loose
/// alerts carry costs nothing and hides no incident.
pub fn member_key(indicator_key: &str) -> String {
    prefixed("m:", indicator_key)
}

/// `prefix` then `rest`, in one allocation (these keys are built for every
/// arrival; `format!` costs a formatting pass more).
fn prefixed(prefix: &str, rest: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + rest.len());
    key.push_str(prefix);
    key.push_str(rest);
    key
}

/// The key under which an assistance request naming alert `alert_id` is found.
pub fn assistance_key(alert_id: &str) -> String {
    prefixed("a:", alert_id)
}

/// The key under which links and merges naming message (or incident) `id` are
/// found, so that the other side of a merge and the part of a link see them.
pub fn naming_key(id: &str) -> String {
    prefixed("n:", id)
}

/// The keys of a readable message of `kind` (deduplicated, sorted): its
/// indicators for an alert or a sighting, the alerts it names for an
/// assistance request, the message or incident a link or merge names; none
/// for the rest or a payload that does not decode.
pub fn message_keys(kind: i32, body: &[u8]) -> Vec<String> {
    let mut keys: Vec<String> = match MessageKind::try_from(kind) {
        Ok(MessageKind::Alert) => Alert::decode(body)
            .map(|a| alert_keys(&a))
            .unwrap_or_default(),
        Ok(MessageKind::Sighting) => Sighting::decode(body)
            .map(|s| s.indicators.iter().map(indicator_key).collect())
            .unwrap_or_default(),
        Ok(MessageKind::AssistanceRequest) => AssistanceRequest::decode(body)
            .map(|r| r.linked_alerts.iter().map(|a| assistance_key(a)).collect())
            .unwrap_or_default(),
        Ok(MessageKind::IncidentLink) => IncidentLink::decode(body)
            .map(|l| vec![naming_key(&l.message_id)])
            .unwrap_or_default(),
        Ok(MessageKind::IncidentMerge) => IncidentMerge::decode(body)
            .map(|m| vec![naming_key(&m.other_incident_id)])
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    keys.sort();
    keys.dedup();
    keys
}

/// The keys of a decoded alert: its indicators (deduplicated, sorted), as
/// [`message_keys`] gives them for its payload.
pub fn alert_keys(alert: &Alert) -> Vec<String> {
    let mut keys: Vec<String> = alert.indicators.iter().map(indicator_key).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// What admission records of a message for incidents: the incident it belongs
/// to (from the signed header) and its correlation keys ([`message_keys`], and
/// for a member of an incident the [`member_key`] of each indicator).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentFacts {
    pub incident_id: Option<String>,
    pub keys: Vec<String>,
}

/// Checks the incident side of a verified message of `kind` (a wire value)
/// whose signed header names `header_incident`: the id is a UUID; an incident
/// message (sighting, status, link, merge) is valid (`validate`) and names the
/// same incident in its payload as in its header; no other kind but an alert
/// belongs to an incident. `body` is the payload when this node can read it
/// (otherwise only the header is checked). Returns what to record.
pub fn facts(
    kind: i32,
    header_incident: &str,
    body: Option<&[u8]>,
    tlp: i32,
    created_ms: i64,
) -> Result<IncidentFacts, String> {
    facts_keyed(kind, header_incident, body, None, tlp, created_ms)
}

/// [`facts`], with the payload's [`message_keys`] when the caller decoded
/// them already (`None`: taken from `body`).
pub fn facts_keyed(
    kind: i32,
    header_incident: &str,
    body: Option<&[u8]>,
    body_keys: Option<Vec<String>>,
    tlp: i32,
    created_ms: i64,
) -> Result<IncidentFacts, String> {
    if !header_incident.is_empty() && uuid::Uuid::parse_str(header_incident).is_err() {
        return Err(format!(
            "header incident_id {} is not an incident id (a UUID)",
            crate::domain::text::quote(header_incident)
        ));
    }
    let kind_enum = MessageKind::try_from(kind).unwrap_or(MessageKind::Unspecified);
    let incident_kind = matches!(
        kind_enum,
        MessageKind::Sighting
            | MessageKind::IncidentStatus
            | MessageKind::IncidentLink
            | MessageKind::IncidentMerge
    );
    if !incident_kind && kind_enum != MessageKind::Alert && !header_incident.is_empty() {
        return Err(format!(
            "a message of kind {} cannot belong to an incident (header incident_id is set)",
            kind_enum.as_str_name()
        ));
    }
    if let Some(b) = body
        && incident_kind
    {
        let named = super::validate::validate(kind_enum, b, tlp, created_ms)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        if named != header_incident {
            return Err(format!(
                "the payload names incident {} but the signed header names {}",
                crate::domain::text::quote(&named),
                crate::domain::text::quote(header_incident)
            ));
        }
    }
    Ok(IncidentFacts {
        incident_id: (!header_incident.is_empty()).then(|| header_incident.to_string()),
        keys: keys_with(kind, header_incident, body, body_keys),
    })
}

/// The correlation keys admission records for a message of `kind` whose
/// signed header names `header_incident` and whose readable payload is
/// `body` (`None`: this node cannot read it, no keys): the payload's
/// [`message_keys`] (`body_keys` when the caller decoded them already) and,
/// for a member of an incident, the [`member_key`] of each; sorted.
fn keys_with(
    kind: i32,
    header_incident: &str,
    body: Option<&[u8]>,
    body_keys: Option<Vec<String>>,
) -> Vec<String> {
    let mut keys = match (body_keys, body) {
        (Some(k), Some(_)) => k,
        (_, b) => b.map(|b| message_keys(kind, b)).unwrap_or_default(),
    };
    if !header_incident.is_empty()
        && (kind == MessageKind::Alert as i32 || kind == MessageKind::Sighting as i32)
    {
        let members: Vec<String> = keys.iter().map(|k| member_key(k)).collect();
        keys.extend(members);
        keys.sort();
    }
    keys
}

/// The keys admission recorded for a stored message, found again from what
/// its row keeps: `kind`, the signed `header` (its incident) and the readable
/// `body` (`None` when this node cannot read it). The same keys as
/// [`facts`] gave when the message was admitted (a test checks it), so
/// the store needs no index of keys by message: the retention purge deletes
/// exactly these rows. A header that does not decode names no incident.
pub fn stored_keys(kind: i32, header: &[u8], body: Option<&[u8]>) -> Vec<String> {
    let incident = crate::proto::v1::EnvelopeHeader::decode(header)
        .map(|h| h.incident_id)
        .unwrap_or_default();
    keys_with(kind, &incident, body, None)
}
