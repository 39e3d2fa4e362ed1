//! Content validation of requests ([`validate_request`]) and offers ([`validate_offer`]):
//! by the node before it signs them, by every node that receives them, and again in the
//! replay (an invalid request replays to nothing, an invalid offer is ignored).
//!
//! Content only: who may take a step, and whether the request's state allows it, is the
//! state machine's business. Checks run in a fixed order and stop at the first failure,
//! an [`AssistanceError::Invalid`] naming the proto field and the rule broken. Required
//! fields must be set; optional enums may be unset but never unknown; service lists hold
//! no UNSPECIFIED or repeated entry, and no list holds an empty one. Nothing is rewritten.
//!
//! Free text (titles, descriptions, skills, contacts, conditions, notes, reports) goes
//! through [`crate::domain::text::check`]: [`validate_request`], [`validate_offer`],
//! [`validate_decision`] and [`validate_status`] refuse control, bidi-override and
//! invisible formatting characters, naming the field. They are what a node runs before
//! signing and what admission runs on every step a partner sends. The replay checks
//! content only ([`request_content`], [`offer_content`]): a step stored before the text
//! rules existed still replays (and is shown escaped by the command line), so no node's
//! view of a request changes with an upgrade.
use super::error::{AssistanceError, invalid};
use crate::domain::alert::validate_indicator;
use crate::domain::policy::tlp_from_wire;
use crate::domain::text::{self, Kind, TextError};
use crate::proto::v1::{
    AssistanceRequest, AssistanceService, AssistanceState, Contact, DecisionMessage,
    EntityCategory, FundingChannel, Indicator, IndicatorType, Nis2Sector, Offer, RsitClass,
    Severity, StatusMessage,
};

impl From<TextError> for AssistanceError {
    fn from(e: TextError) -> Self {
        let rule = e.to_string();
        let rule = rule
            .strip_prefix(&format!("{}: ", e.field))
            .unwrap_or(&rule)
            .to_string();
        AssistanceError::Invalid {
            field: e.field,
            rule,
        }
    }
}
use prost_types::Timestamp;

/// Longest request title or offer summary, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// A timestamp in unix ms; `field` names it in the error when its nanos are out of
/// range or it overflows.
pub(super) fn timestamp_ms(ts: &Timestamp, field: &str) -> Result<i64, AssistanceError> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(invalid(
            field,
            format!(
                "invalid timestamp: nanos {} is outside 0..999999999",
                ts.nanos
            ),
        ));
    }
    ts.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(ts.nanos / 1_000_000)))
        .ok_or_else(|| invalid(field, format!("timestamp {} s is out of range", ts.seconds)))
}

fn validate_service(v: i32, field: String) -> Result<(), AssistanceError> {
    match AssistanceService::try_from(v) {
        Ok(AssistanceService::Unspecified) => Err(invalid(
            field,
            "ASSISTANCE_SERVICE_UNSPECIFIED is not a service; name the service or remove the entry",
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(invalid(
            field,
            format!("unknown service value {v}; use one of the ASSISTANCE_SERVICE_* values"),
        )),
    }
}

fn validate_services(list: &[i32], prefix: &str) -> Result<(), AssistanceError> {
    for (i, &s) in list.iter().enumerate() {
        let field = format!("{prefix}[{i}]");
        validate_service(s, field.clone())?;
        if list[..i].contains(&s) {
            let name = AssistanceService::try_from(s)
                .map(|v| v.as_str_name())
                .unwrap_or("?");
            return Err(invalid(
                field,
                format!("{name} is listed twice; list each service once"),
            ));
        }
    }
    Ok(())
}

fn validate_contacts(contacts: &[Contact], prefix: &str) -> Result<(), AssistanceError> {
    for (i, c) in contacts.iter().enumerate() {
        if c.name.trim().is_empty() && c.email.trim().is_empty() && c.phone.trim().is_empty() {
            return Err(invalid(
                format!("{prefix}[{i}]"),
                "empty contact; give at least a name, e-mail or phone, or remove the entry",
            ));
        }
        if !c.email.is_empty() {
            let ind = Indicator {
                r#type: IndicatorType::Email as i32,
                value: c.email.clone(),
                comment: String::new(),
            };
            validate_indicator(&ind)
                .map_err(|rule| invalid(format!("{prefix}[{i}].email"), rule))?;
        }
    }
    Ok(())
}

fn known_enum<T>(
    v: i32,
    parse: impl Fn(i32) -> Result<T, prost::UnknownEnumValue>,
    field: &str,
    what: &str,
    prefix: &str,
) -> Result<(), AssistanceError> {
    parse(v).map(|_| ()).map_err(|_| {
        invalid(
            field,
            format!(
                "unknown {what} value {v}; use one of the {prefix}* values (or leave it unset)"
            ),
        )
    })
}

/// The free-text fields of contacts: single lines.
fn contacts_text(contacts: &[Contact], prefix: &str) -> Result<(), AssistanceError> {
    for (i, c) in contacts.iter().enumerate() {
        for (name, v) in [
            ("name", &c.name),
            ("role", &c.role),
            ("email", &c.email),
            ("phone", &c.phone),
        ] {
            text::check(&format!("{prefix}[{i}].{name}"), v, Kind::SingleLine)?;
        }
    }
    Ok(())
}

/// Validates request content before the requester signs it and when any node receives
/// it: [`request_content`] and the free-text rules of [`crate::domain::text`] on the
/// title, skills and contacts (single lines), description and mitigation (multi-line).
pub fn validate_request(r: &AssistanceRequest, created_ms: i64) -> Result<(), AssistanceError> {
    text::check("request.title", &r.title, Kind::SingleLine)?;
    text::check("request.description", &r.description, Kind::MultiLine)?;
    text::check(
        "request.mitigation_done",
        &r.mitigation_done,
        Kind::MultiLine,
    )?;
    if let Some(needs) = &r.needs {
        text::check_all("request.needs.skills", &needs.skills, Kind::SingleLine)?;
    }
    contacts_text(&r.contacts, "request.contacts")?;
    request_content(r, created_ms)
}

/// Request content without the free-text rules (the replay's check): title required (≤ 200 characters), description required, TLP set, at least one
/// service and no UNSPECIFIED/unknown or repeated services, known sector, entity category,
/// RSIT class and severity values (unset allowed), deadline (if set) after `created_ms`,
/// contacts not empty with plausible e-mails, linked alerts are UUIDs.
pub fn request_content(r: &AssistanceRequest, created_ms: i64) -> Result<(), AssistanceError> {
    if r.title.trim().is_empty() {
        return Err(invalid(
            "request.title",
            "required: give the request a short headline (not only spaces)",
        ));
    }
    let n = r.title.chars().count();
    if n > MAX_TITLE_CHARS {
        return Err(invalid(
            "request.title",
            format!(
                "title is {n} characters, over the limit of {MAX_TITLE_CHARS}; shorten it and put details in the description"
            ),
        ));
    }
    if r.description.trim().is_empty() {
        return Err(invalid(
            "request.description",
            "required: say what happened and what help is needed",
        ));
    }
    tlp_from_wire(r.tlp).map_err(|rule| invalid("request.tlp", rule))?;
    if r.services.is_empty() {
        return Err(invalid(
            "request.services",
            "required: ask for at least one service (e.g. ASSISTANCE_SERVICE_INCIDENT_RESPONSE)",
        ));
    }
    validate_services(&r.services, "request.services")?;
    known_enum(
        r.sector,
        Nis2Sector::try_from,
        "request.sector",
        "NIS2 sector",
        "NIS2_SECTOR_",
    )?;
    known_enum(
        r.entity_category,
        EntityCategory::try_from,
        "request.entity_category",
        "entity category",
        "ENTITY_CATEGORY_",
    )?;
    known_enum(
        r.rsit_class,
        RsitClass::try_from,
        "request.rsit_class",
        "RSIT class",
        "RSIT_CLASS_",
    )?;
    known_enum(
        r.severity,
        Severity::try_from,
        "request.severity",
        "severity",
        "SEVERITY_",
    )?;
    if let Some(needs) = &r.needs {
        for (i, s) in needs.skills.iter().enumerate() {
            if s.trim().is_empty() {
                return Err(invalid(
                    format!("request.needs.skills[{i}]"),
                    "empty skill; name the skill or remove the entry",
                ));
            }
        }
    }
    if let Some(ts) = &r.deadline {
        let d = timestamp_ms(ts, "request.deadline")?;
        if d <= created_ms {
            return Err(invalid(
                "request.deadline",
                format!(
                    "deadline ({d} ms since the epoch) is not after the creation time ({created_ms} ms); set a later deadline or leave it unset"
                ),
            ));
        }
    }
    validate_contacts(&r.contacts, "request.contacts")?;
    for (i, id) in r.linked_alerts.iter().enumerate() {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(invalid(
                format!("request.linked_alerts[{i}]"),
                format!("{} is not an alert message id (a UUID)", text::quote(id)),
            ));
        }
    }
    Ok(())
}

/// Validates an offer before the donor signs it and when any node receives it:
/// [`offer_content`] and the free-text rules on the summary and contacts (single
/// lines) and the conditions (multi-line).
pub fn validate_offer(o: &Offer) -> Result<(), AssistanceError> {
    text::check("offer.summary", &o.summary, Kind::SingleLine)?;
    text::check("offer.conditions", &o.conditions, Kind::MultiLine)?;
    contacts_text(&o.contacts, "offer.contacts")?;
    offer_content(o)
}

/// An offer's content without the free-text rules (the replay's check): summary
/// required (≤ 200 characters), capabilities known and not repeated, known funding
/// channel (unset allowed), availability window ordered, contacts plausible.
pub fn offer_content(o: &Offer) -> Result<(), AssistanceError> {
    if o.summary.trim().is_empty() {
        return Err(invalid(
            "offer.summary",
            "required: summarise the offer in one line (not only spaces)",
        ));
    }
    let n = o.summary.chars().count();
    if n > MAX_TITLE_CHARS {
        return Err(invalid(
            "offer.summary",
            format!(
                "summary is {n} characters, over the limit of {MAX_TITLE_CHARS}; put details in the conditions"
            ),
        ));
    }
    validate_services(&o.capabilities, "offer.capabilities")?;
    known_enum(
        o.funding,
        FundingChannel::try_from,
        "offer.funding",
        "funding channel",
        "FUNDING_CHANNEL_",
    )?;
    let from = o
        .available_from
        .as_ref()
        .map(|t| timestamp_ms(t, "offer.available_from"))
        .transpose()?;
    let until = o
        .available_until
        .as_ref()
        .map(|t| timestamp_ms(t, "offer.available_until"))
        .transpose()?;
    if let (Some(f), Some(u)) = (from, until)
        && u <= f
    {
        return Err(invalid(
            "offer.available_until",
            format!(
                "available_until ({u} ms since the epoch) is not after available_from ({f} ms); swap them or fix the window"
            ),
        ));
    }
    validate_contacts(&o.contacts, "offer.contacts")?;
    Ok(())
}

/// Validates a decision's free text before the requester signs it and when any node
/// receives it: the note is multi-line text. (Which offer, and whether it may be
/// decided, is the state machine's business.)
pub fn validate_decision(d: &DecisionMessage) -> Result<(), AssistanceError> {
    text::check("decision.note", &d.note, Kind::MultiLine)?;
    Ok(())
}

/// Validates a status step before it is signed and when any node receives it: the
/// state is a known value, the note and summary report are multi-line text.
pub fn validate_status(s: &StatusMessage) -> Result<(), AssistanceError> {
    if AssistanceState::try_from(s.state).is_err() {
        return Err(invalid(
            "status.state",
            format!(
                "unknown state value {}; use ASSISTANCE_STATE_DEPLOYED, _COMPLETED, _CLOSED or _WITHDRAWN",
                s.state
            ),
        ));
    }
    text::check("status.note", &s.note, Kind::MultiLine)?;
    text::check("status.summary_report", &s.summary_report, Kind::MultiLine)?;
    Ok(())
}
