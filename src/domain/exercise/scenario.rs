//! The exercise scenario format (TOML), parsed once into typed values.
//!
//! ```toml
//! [scenario]
//! name = "Northern grid"            # required
//! description = "…"
//! links = [["cert-ee", "cert-no"]]  # local runs: bilateral links (default: full mesh)
//! exercise = true                   # sign every inject as exercise traffic (default);
//!                                   # false: real traffic, local runs only (`certfed demo`)
//!
//! [[participants]]
//! id = "cert-ee"                    # member id (node id); required
//! name = "CERT-EE (Estonia)"        # display name
//! ack_after = "2m"                  # local runs: the simulated duty officer acknowledges
//!                                   # each inject it receives this long after (unset: never)
//!
//! [[injects]]
//! id = "first-alert"                # unique; later injects and expectations refer to it
//! at = "0s"                         # offset from the start: 90s, 5m, 1h30m (non-decreasing)
//! from = "cert-ee"                  # the participant whose node sends it
//! kind = "alert"                    # alert | sighting | incident_status | assistance_request
//!                                   # | offer | decision | assistance_status | link
//! …fields of the kind…               # alert: title, description, tlp, severity, rsit,
//!                                   #   sectors, countries, indicators ("ip:…"),
//!                                   #   open_incident | incident = "id" | update = "id"
//!                                   # sighting: incident, country, sector, count, …
//!                                   # link: incident = "id", message = "id", note
//!                                   # assistance_request: title, services, sector,
//!                                   #   entity (essential|important), rsit, severity,
//!                                   #   cross_border, person_days, on_site, skills, alerts
//!                                   # offer: request, summary, services, person_days,
//!                                   #   funding (bilateral|cybersecurity-reserve|…)
//!
//! [[expect]]
//! id = "aware-5m"
//! what = "aware"                    # aware | acknowledged | assistance_accepted
//! inject = "first-alert"
//! within = "5m"
//! ```
//!
//! Invariants:
//! - Every error names the line of the table it is about (`line N: …`) and
//!   says what to write instead; nothing is sent before the whole file passes
//!   ([`parse`] runs every content validator a node would run: the alert,
//!   sighting, status, request and offer validators of the domain).
//! - Unknown keys are refused; participants are unique; injects refer only to
//!   known participants and to earlier injects of the right kind; offsets
//!   never go backwards; recipients are participants.
//! - Every inject is exercise traffic unless the scenario says
//!   `exercise = false` ([`Scenario::exercise`]); such a scenario is played
//!   only on a local federation the runner starts (`certfed demo`), never on
//!   a live one (`cli::exercise` refuses it before connecting).
//!
//! No I/O: the caller reads the file and passes its text and `now_ms` in.
use crate::domain::alert::{
    Limits, parse_rsit, parse_sector, parse_severity, parse_tlp, validate_alert,
};
use crate::domain::assistance::{validate_offer, validate_request};
use crate::domain::incident::{validate_link, validate_sighting, validate_status};
use crate::proto::v1::{
    Alert, AssistanceRequest, AssistanceService, AssistanceState, EntityCategory, EstimatedNeeds,
    FundingChannel, IncidentLink, IncidentStatus, IncidentStatusChange, Indicator, IndicatorType,
    Offer, Revision, RsitClass, Sighting, Tlp,
};
use prost::Message;
use serde::Deserialize;
use std::collections::HashMap;
use toml::Spanned;

/// Largest scenario file accepted, in bytes.
pub const MAX_SCENARIO_BYTES: usize = 1 << 20;
/// Most injects in one scenario.
pub const MAX_INJECTS: usize = 1000;
/// Longest scenario (7 days).
pub const MAX_OFFSET_MS: u64 = 7 * 24 * 3_600_000;

/// A scenario, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub participants: Vec<Participant>,
    /// Bilateral links for a local run, as participant indexes.
    pub links: Vec<(usize, usize)>,
    /// In offset order (stable: the file's order among equal offsets).
    pub injects: Vec<Inject>,
    pub expects: Vec<Expect>,
    /// Whether injects are signed as exercise traffic (`[scenario] exercise`,
    /// default true).
    pub exercise: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Participant {
    pub id: String,
    pub name: String,
    /// Local runs: the simulated duty officer acknowledges after this long.
    pub ack_after_ms: Option<u64>,
    pub line: usize,
}

/// One inject: at `at_ms` after the start, participant `from` does `action`.
#[derive(Debug, Clone, PartialEq)]
pub struct Inject {
    pub id: String,
    pub line: usize,
    pub at_ms: u64,
    /// Index into `Scenario::participants`.
    pub from: usize,
    /// Named recipients (member ids); empty: the whole federation, or the
    /// incident's or request's audience.
    pub to: Vec<String>,
    pub action: Action,
}

/// What an inject does. References to other injects are by inject id; the
/// runner maps them to the message ids it got back.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Alert {
        alert: Alert,
        open_incident: bool,
        /// Joins the incident opened by this inject.
        incident: Option<String>,
        /// An update of this earlier alert inject of the same sender
        /// (`update = "id"`); it stays in that alert's incident.
        supersedes: Option<String>,
    },
    Sighting {
        sighting: Sighting,
        incident: String,
    },
    IncidentStatus {
        incident: String,
        status: IncidentStatus,
        note: String,
    },
    AssistanceRequest {
        request: AssistanceRequest,
        /// Alerts (inject ids) the request names.
        alerts: Vec<String>,
    },
    Offer {
        request: String,
        offer: Offer,
    },
    Decision {
        offer: String,
        accept: bool,
        note: String,
    },
    AssistanceStatus {
        request: String,
        state: AssistanceState,
        note: String,
    },
    /// The incident's opener links an earlier alert inject into it (e.g. a
    /// partner's alert the correlation matched).
    Link {
        incident: String,
        message: String,
        note: String,
    },
}

impl Action {
    /// The kind, as written in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Alert { .. } => "alert",
            Action::Sighting { .. } => "sighting",
            Action::IncidentStatus { .. } => "incident_status",
            Action::AssistanceRequest { .. } => "assistance_request",
            Action::Offer { .. } => "offer",
            Action::Decision { .. } => "decision",
            Action::AssistanceStatus { .. } => "assistance_status",
            Action::Link { .. } => "link",
        }
    }

    /// A one-line summary for timelines.
    pub fn summary(&self) -> String {
        match self {
            Action::Alert { alert, .. } => alert.title.clone(),
            Action::Sighting { sighting, .. } => {
                format!("sighting in {} ({}×)", sighting.country, sighting.count)
            }
            Action::IncidentStatus { status, .. } => {
                format!(
                    "incident status {}",
                    crate::domain::incident::status_label(*status)
                )
            }
            Action::AssistanceRequest { request, .. } => request.title.clone(),
            Action::Offer { offer, .. } => offer.summary.clone(),
            Action::Decision { accept, .. } => if *accept {
                "offer accepted"
            } else {
                "offer declined"
            }
            .to_string(),
            Action::AssistanceStatus { state, .. } => {
                format!("request {}", crate::domain::assistance::state_label(*state))
            }
            Action::Link { message, .. } => format!("links inject {message} into the incident"),
        }
    }
}

/// What an expectation measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectKind {
    /// Every eligible partner stored the inject.
    Aware,
    /// Every eligible partner's operator acknowledged it.
    Acknowledged,
    /// The request (an assistance_request inject) reached ACCEPTED.
    AssistanceAccepted,
}

impl ExpectKind {
    pub fn word(self) -> &'static str {
        match self {
            ExpectKind::Aware => "aware",
            ExpectKind::Acknowledged => "acknowledged",
            ExpectKind::AssistanceAccepted => "assistance_accepted",
        }
    }
}

/// An expected outcome to score: `what` of inject `inject` within `within_ms`
/// of the inject's offset.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    pub id: String,
    pub line: usize,
    pub what: ExpectKind,
    pub inject: String,
    pub within_ms: u64,
    pub text: String,
}

/// Why a scenario is refused: the line (1-based; 0 when not about one place)
/// and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for ScenarioError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    scenario: Spanned<RawHead>,
    #[serde(default)]
    participants: Vec<Spanned<RawParticipant>>,
    #[serde(default)]
    injects: Vec<Spanned<RawInject>>,
    #[serde(default)]
    expect: Vec<Spanned<RawExpect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHead {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    links: Option<Vec<(String, String)>>,
    #[serde(default)]
    exercise: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParticipant {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    ack_after: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInject {
    id: String,
    at: String,
    from: String,
    kind: String,
    #[serde(default)]
    to: Vec<String>,
    // alert
    title: Option<String>,
    description: Option<String>,
    tlp: Option<String>,
    severity: Option<String>,
    rsit: Option<String>,
    #[serde(default)]
    sectors: Vec<String>,
    #[serde(default)]
    countries: Vec<String>,
    #[serde(default)]
    indicators: Vec<String>,
    open_incident: Option<bool>,
    incident: Option<String>,
    // sighting
    country: Option<String>,
    sector: Option<String>,
    count: Option<u64>,
    // incident_status, assistance_status, decision
    status: Option<String>,
    state: Option<String>,
    note: Option<String>,
    // assistance request / offer / decision
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    alerts: Vec<String>,
    cross_border: Option<bool>,
    person_days: Option<u32>,
    on_site: Option<bool>,
    request: Option<String>,
    summary: Option<String>,
    offer: Option<String>,
    accept: Option<bool>,
    // alert update, link
    update: Option<String>,
    message: Option<String>,
    // assistance request / offer extras
    entity: Option<String>,
    #[serde(default)]
    skills: Vec<String>,
    funding: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    id: String,
    what: String,
    inject: String,
    within: String,
    #[serde(default)]
    text: String,
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Parses a duration written `90s`, `5m`, `1h30m`, `2h` or `0` (milliseconds
/// `250ms` too).
pub fn parse_offset(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    let bad = || format!("{s:?} is not a duration; write it like 0s, 90s, 5m, 1h30m or 250ms");
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut chars = t.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit_ms: u64 = match c {
            'h' => 3_600_000,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            'm' => 60_000,
            's' => 1_000,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total = n
            .checked_mul(unit_ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(bad());
    }
    Ok(total)
}

/// Words such as `forensics` or `incident-response` to a proto enum by its
/// name with `prefix` (e.g. `ASSISTANCE_SERVICE_`).
fn enum_word<T>(
    word: &str,
    prefix: &str,
    what: &str,
    from: impl Fn(&str) -> Option<T>,
) -> Result<T, String> {
    let name = format!(
        "{prefix}{}",
        word.trim().to_ascii_uppercase().replace(['-', ' '], "_")
    );
    from(&name)
        .filter(|_| !word.trim().is_empty())
        .ok_or_else(|| format!("unknown {what} {word:?}"))
}

/// A placeholder id for references resolved at run time (validators check
/// ids for shape).
const PLACEHOLDER_ID: &str = "00000000-0000-7000-8000-000000000000";

/// Parses and validates a scenario. `now_ms` stands for the signing time of
/// every inject (content validators check times against it).
pub fn parse(text: &str, now_ms: i64) -> Result<Scenario, ScenarioError> {
    if text.len() > MAX_SCENARIO_BYTES {
        return Err(ScenarioError {
            line: 0,
            message: format!(
                "the scenario is {} bytes; at most {MAX_SCENARIO_BYTES} are accepted",
                text.len()
            ),
        });
    }
    let raw: RawFile = toml::from_str(text).map_err(|e| ScenarioError {
        line: e.span().map_or(0, |s| line_of(text, s.start)),
        message: e.message().trim().to_string(),
    })?;
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);
    let err = |line: usize, message: String| ScenarioError { line, message };

    let head_line = at(raw.scenario.span());
    let head = raw.scenario.into_inner();
    let exercise = head.exercise.unwrap_or(true);
    if head.name.trim().is_empty() {
        return Err(err(
            head_line,
            "scenario.name is empty; give the exercise a name".into(),
        ));
    }

    // Participants.
    if raw.participants.len() < 2 {
        return Err(err(
            head_line,
            "a scenario needs at least two [[participants]] (member ids of the partners taking part)"
                .into(),
        ));
    }
    let mut participants: Vec<Participant> = Vec::new();
    for p in raw.participants {
        let line = at(p.span());
        let p = p.into_inner();
        if p.id.trim().is_empty() || p.id.len() > 64 || p.id.chars().any(|c| c.is_control()) {
            return Err(err(
                line,
                format!("participant id {:?} is not a member id", p.id),
            ));
        }
        if participants.iter().any(|q| q.id == p.id) {
            return Err(err(line, format!("participant {} is listed twice", p.id)));
        }
        let ack_after_ms = p
            .ack_after
            .as_deref()
            .map(parse_offset)
            .transpose()
            .map_err(|e| err(line, format!("ack_after: {e}")))?;
        participants.push(Participant {
            name: if p.name.is_empty() {
                p.id.clone()
            } else {
                p.name
            },
            id: p.id,
            ack_after_ms,
            line,
        });
    }
    let index = |id: &str| participants.iter().position(|p| p.id == id);
    let known = participants
        .iter()
        .map(|p| p.id.as_str())
        .collect::<Vec<_>>()
        .join(", ");

    let links = match head.links {
        None => {
            let n = participants.len();
            (0..n)
                .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
                .collect()
        }
        Some(l) => {
            let mut out = Vec::new();
            for (a, b) in l {
                let (Some(x), Some(y)) = (index(&a), index(&b)) else {
                    return Err(err(
                        head_line,
                        format!("scenario.links names {a:?}–{b:?}, not two participants ({known})"),
                    ));
                };
                if x == y {
                    return Err(err(
                        head_line,
                        format!("scenario.links links {a} to itself"),
                    ));
                }
                out.push((x.min(y), x.max(y)));
            }
            out.sort();
            out.dedup();
            out
        }
    };

    // Injects.
    if raw.injects.is_empty() {
        return Err(err(head_line, "the scenario has no [[injects]]".into()));
    }
    if raw.injects.len() > MAX_INJECTS {
        return Err(err(
            head_line,
            format!("{} injects; at most {MAX_INJECTS}", raw.injects.len()),
        ));
    }
    let mut injects: Vec<Inject> = Vec::new();
    let mut kinds: HashMap<String, (&'static str, usize)> = HashMap::new();
    let mut last_at = 0u64;
    for raw_inject in raw.injects {
        let line = at(raw_inject.span());
        let r = raw_inject.into_inner();
        let e = |m: String| err(line, format!("inject {:?}: {m}", r.id));
        if r.id.trim().is_empty() {
            return Err(err(
                line,
                "inject id is empty; give every inject a short unique id".into(),
            ));
        }
        if kinds.contains_key(&r.id) {
            return Err(e("the id is used twice; inject ids are unique".into()));
        }
        let at_ms = parse_offset(&r.at).map_err(|m| e(format!("at: {m}")))?;
        if at_ms > MAX_OFFSET_MS {
            return Err(e("at: beyond 7 days; split the exercise".into()));
        }
        if at_ms < last_at {
            return Err(e(format!(
                "at {} comes before the previous inject's offset; injects are listed in time order",
                r.at
            )));
        }
        last_at = at_ms;
        let from = index(&r.from)
            .ok_or_else(|| e(format!("from: {:?} is not a participant ({known})", r.from)))?;
        for t in &r.to {
            if index(t).is_none() {
                return Err(e(format!("to: {t:?} is not a participant ({known})")));
            }
            if *t == r.from {
                return Err(e(format!("to: {t} is the sender itself")));
            }
        }
        let refer = |field: &str,
                     id: &Option<String>,
                     want: &[&str]|
         -> Result<String, ScenarioError> {
            let id = id.as_deref().unwrap_or("");
            match kinds.get(id) {
                Some((k, _)) if want.contains(k) => Ok(id.to_string()),
                Some((k, l)) => Err(e(format!(
                    "{field}: inject {id:?} (line {l}) is a {k}, not a {}",
                    want.join(" or ")
                ))),
                None if id.is_empty() => Err(e(format!(
                    "{field} is required for a {}: the id of an earlier {} inject",
                    r.kind,
                    want.join(" or ")
                ))),
                None => Err(e(format!(
                    "{field}: no earlier inject {id:?}; refer to an inject listed above this one"
                ))),
            }
        };
        let tlp = r
            .tlp
            .as_deref()
            .map(parse_tlp)
            .transpose()
            .map_err(|m| e(format!("tlp: {m}")))?;
        let severity = r
            .severity
            .as_deref()
            .map(parse_severity)
            .transpose()
            .map_err(|m| e(format!("severity: {m}")))?;
        let note = r.note.clone().unwrap_or_default();
        let action = match r.kind.as_str() {
            "alert" => {
                let title = r
                    .title
                    .clone()
                    .ok_or_else(|| e("title is required for an alert".into()))?;
                let mut alert = Alert {
                    title,
                    description: r.description.clone().unwrap_or_default(),
                    tlp: tlp.unwrap_or(Tlp::Green) as i32,
                    severity: severity.ok_or_else(|| {
                        e("severity is required for an alert (low|medium|high|critical)".into())
                    })? as i32,
                    rsit_class: r
                        .rsit
                        .as_deref()
                        .map(parse_rsit)
                        .transpose()
                        .map_err(|m| e(format!("rsit: {m}")))?
                        .unwrap_or(RsitClass::Unspecified) as i32,
                    affected_countries: r.countries.clone(),
                    exercise,
                    ..Default::default()
                };
                for s in &r.sectors {
                    alert
                        .sectors
                        .push(parse_sector(s).map_err(|m| e(format!("sectors: {m}")))? as i32);
                }
                for i in &r.indicators {
                    alert
                        .indicators
                        .push(indicator(i).map_err(|m| e(format!("indicators: {m}")))?);
                }
                let supersedes = match &r.update {
                    None => None,
                    Some(_) => {
                        let id = refer("update", &r.update, &["alert"])?;
                        if injects.iter().find(|i| i.id == id).map(|i| i.from) != Some(from) {
                            return Err(e(format!(
                                "update: only the participant that sent alert {id:?} updates it"
                            )));
                        }
                        if r.open_incident.is_some() || r.incident.is_some() {
                            return Err(e("update with open_incident or incident: an update stays in the incident of the alert it updates".into()));
                        }
                        alert.revision = Revision::Update as i32;
                        alert.supersedes = PLACEHOLDER_ID.into();
                        Some(id)
                    }
                };
                let payload = alert.encode_to_vec().len();
                validate_alert(&alert, now_ms, payload, &Limits::default())
                    .map_err(|v| e(format!("{}: {}", v.field, v.rule)))?;
                alert.supersedes.clear();
                let open_incident = r.open_incident.unwrap_or(false);
                let incident = match &r.incident {
                    None => None,
                    Some(_) if open_incident => {
                        return Err(e("open_incident and incident together: an alert opens an incident or joins one".into()));
                    }
                    Some(_) => Some(refer("incident", &r.incident, &["alert"])?),
                };
                if let Some(i) = &incident
                    && !opens_incident(&injects, i)
                {
                    return Err(e(format!(
                        "incident: inject {i:?} does not open an incident (set open_incident = true on it)"
                    )));
                }
                Action::Alert {
                    alert,
                    open_incident,
                    incident,
                    supersedes,
                }
            }
            "sighting" => {
                let incident = refer("incident", &r.incident, &["alert"])?;
                if !opens_incident(&injects, &incident) {
                    return Err(e(format!(
                        "incident: inject {incident:?} does not open an incident (set open_incident = true on it)"
                    )));
                }
                let mut sighting = Sighting {
                    incident_id: PLACEHOLDER_ID.into(),
                    country: r.country.clone().ok_or_else(|| {
                        e(
                            "country is required for a sighting (ISO 3166-1 alpha-2, e.g. NO)"
                                .into(),
                        )
                    })?,
                    sector: r
                        .sector
                        .as_deref()
                        .map(parse_sector)
                        .transpose()
                        .map_err(|m| e(format!("sector: {m}")))?
                        .map_or(0, |s| s as i32),
                    count: r.count.unwrap_or(1),
                    severity: severity.map_or(0, |s| s as i32),
                    note: note.clone(),
                    tlp: tlp.map_or(0, |t| t as i32),
                    observed: Some(crate::domain::envelope::ms_to_ts(now_ms)),
                    ..Default::default()
                };
                for i in &r.indicators {
                    sighting
                        .indicators
                        .push(indicator(i).map_err(|m| e(format!("indicators: {m}")))?);
                }
                // Unset: the incident's TLP (the node fills it in).
                let own_tlp = sighting.tlp;
                if own_tlp == 0 {
                    sighting.tlp = Tlp::Green as i32;
                }
                validate_sighting(&sighting, now_ms).map_err(|v| e(v.to_string()))?;
                sighting.tlp = own_tlp;
                sighting.incident_id.clear();
                sighting.observed = None;
                Action::Sighting { sighting, incident }
            }
            "incident_status" => {
                let incident = refer("incident", &r.incident, &["alert"])?;
                if injects.iter().find(|i| i.id == incident).map(|i| i.from) != Some(from) {
                    return Err(e(format!(
                        "from: only the participant that opened incident {incident:?} changes its status"
                    )));
                }
                let word = r.status.clone().ok_or_else(|| {
                    e("status is required (investigating|contained|resolved …)".into())
                })?;
                let status = enum_word(
                    &word,
                    "INCIDENT_STATUS_",
                    "incident status",
                    IncidentStatus::from_str_name,
                )
                .map_err(|m| e(format!("status: {m}")))?;
                validate_status(&IncidentStatusChange {
                    incident_id: PLACEHOLDER_ID.into(),
                    status: status as i32,
                    note: note.clone(),
                })
                .map_err(|v| e(v.to_string()))?;
                Action::IncidentStatus {
                    incident,
                    status,
                    note,
                }
            }
            "assistance_request" => {
                let mut services = Vec::new();
                for s in &r.services {
                    services.push(
                        enum_word(
                            s,
                            "ASSISTANCE_SERVICE_",
                            "assistance service",
                            AssistanceService::from_str_name,
                        )
                        .map_err(|m| e(format!("services: {m}")))? as i32,
                    );
                }
                let mut alerts = Vec::new();
                for a in &r.alerts {
                    alerts.push(refer("alerts", &Some(a.clone()), &["alert"])?);
                }
                let request = AssistanceRequest {
                    title: r
                        .title
                        .clone()
                        .ok_or_else(|| e("title is required for an assistance_request".into()))?,
                    description: r.description.clone().unwrap_or_default(),
                    tlp: tlp.unwrap_or(Tlp::Green) as i32,
                    services,
                    sector: r
                        .sector
                        .as_deref()
                        .map(parse_sector)
                        .transpose()
                        .map_err(|m| e(format!("sector: {m}")))?
                        .map_or(0, |s| s as i32),
                    severity: severity.map_or(0, |s| s as i32),
                    rsit_class: r
                        .rsit
                        .as_deref()
                        .map(parse_rsit)
                        .transpose()
                        .map_err(|m| e(format!("rsit: {m}")))?
                        .map_or(0, |c| c as i32),
                    entity_category: r
                        .entity
                        .as_deref()
                        .map(|w| {
                            enum_word(
                                w,
                                "ENTITY_CATEGORY_",
                                "entity category (essential|important)",
                                EntityCategory::from_str_name,
                            )
                        })
                        .transpose()
                        .map_err(|m| e(format!("entity: {m}")))?
                        .map_or(0, |c| c as i32),
                    cross_border: r.cross_border.unwrap_or(false),
                    needs: r.person_days.map(|d| EstimatedNeeds {
                        skills: r.skills.clone(),
                        person_days: d,
                        on_site: r.on_site.unwrap_or(false),
                    }),
                    linked_alerts: alerts.iter().map(|_| PLACEHOLDER_ID.to_string()).collect(),
                    ..Default::default()
                };
                validate_request(&request, now_ms).map_err(|v| e(v.to_string()))?;
                let request = AssistanceRequest {
                    linked_alerts: Vec::new(),
                    ..request
                };
                Action::AssistanceRequest { request, alerts }
            }
            "offer" => {
                let request = refer("request", &r.request, &["assistance_request"])?;
                if injects.iter().find(|i| i.id == request).map(|i| i.from) == Some(from) {
                    return Err(e(
                        "from: a participant does not offer on its own request".into()
                    ));
                }
                let mut capabilities = Vec::new();
                for s in &r.services {
                    capabilities.push(
                        enum_word(
                            s,
                            "ASSISTANCE_SERVICE_",
                            "assistance service",
                            AssistanceService::from_str_name,
                        )
                        .map_err(|m| e(format!("services: {m}")))? as i32,
                    );
                }
                let offer = Offer {
                    summary: r
                        .summary
                        .clone()
                        .ok_or_else(|| e("summary is required for an offer".into()))?,
                    capabilities,
                    capacity_person_days: r.person_days.unwrap_or(0),
                    funding: r
                        .funding
                        .as_deref()
                        .map(|w| {
                            enum_word(
                                w,
                                "FUNDING_CHANNEL_",
                                "funding channel (bilateral|cybersecurity-reserve|donor-coalition)",
                                FundingChannel::from_str_name,
                            )
                        })
                        .transpose()
                        .map_err(|m| e(format!("funding: {m}")))?
                        .map_or(0, |c| c as i32),
                    conditions: note.clone(),
                    ..Default::default()
                };
                validate_offer(&offer).map_err(|v| e(v.to_string()))?;
                Action::Offer { request, offer }
            }
            "decision" => {
                let offer = refer("offer", &r.offer, &["offer"])?;
                let requester = injects
                    .iter()
                    .find(|i| i.id == offer)
                    .and_then(|i| match &i.action {
                        Action::Offer { request, .. } => injects.iter().find(|j| j.id == *request),
                        _ => None,
                    })
                    .map(|j| j.from);
                if requester != Some(from) {
                    return Err(e(format!(
                        "from: only the requester decides on offer {offer:?}"
                    )));
                }
                let accept = r
                    .accept
                    .ok_or_else(|| e("accept = true or false is required for a decision".into()))?;
                Action::Decision {
                    offer,
                    accept,
                    note,
                }
            }
            "assistance_status" => {
                let request = refer("request", &r.request, &["assistance_request"])?;
                if injects.iter().find(|i| i.id == request).map(|i| i.from) != Some(from) {
                    return Err(e(format!(
                        "from: only the requester moves request {request:?}"
                    )));
                }
                let word = r.state.clone().ok_or_else(|| {
                    e("state is required (deployed|completed|closed|withdrawn)".into())
                })?;
                let state = enum_word(
                    &word,
                    "ASSISTANCE_STATE_",
                    "assistance state",
                    AssistanceState::from_str_name,
                )
                .map_err(|m| e(format!("state: {m}")))?;
                if !matches!(
                    state,
                    AssistanceState::Deployed
                        | AssistanceState::Completed
                        | AssistanceState::Closed
                        | AssistanceState::Withdrawn
                ) {
                    return Err(e(format!(
                        "state: {word} is not a move the requester makes; use deployed, completed, closed or withdrawn"
                    )));
                }
                Action::AssistanceStatus {
                    request,
                    state,
                    note,
                }
            }
            "link" => {
                let incident = refer("incident", &r.incident, &["alert"])?;
                if !opens_incident(&injects, &incident) {
                    return Err(e(format!(
                        "incident: inject {incident:?} does not open an incident (set open_incident = true on it)"
                    )));
                }
                if injects.iter().find(|i| i.id == incident).map(|i| i.from) != Some(from) {
                    return Err(e(format!(
                        "from: only the participant that opened incident {incident:?} links into it"
                    )));
                }
                let message = refer("message", &r.message, &["alert"])?;
                if message == incident {
                    return Err(e(
                        "message: the incident's own opening alert is already in it".into(),
                    ));
                }
                validate_link(&IncidentLink {
                    incident_id: PLACEHOLDER_ID.into(),
                    message_id: "00000000-0000-7000-8000-000000000001".into(),
                    note: note.clone(),
                })
                .map_err(|v| e(v.to_string()))?;
                Action::Link {
                    incident,
                    message,
                    note,
                }
            }
            other => {
                return Err(e(format!(
                    "kind {other:?} is unknown; use alert, sighting, incident_status, assistance_request, offer, decision, assistance_status or link"
                )));
            }
        };
        kinds.insert(r.id.clone(), (action.kind(), line));
        injects.push(Inject {
            id: r.id,
            line,
            at_ms,
            from,
            to: r.to,
            action,
        });
    }

    // Expectations.
    let mut expects: Vec<Expect> = Vec::new();
    for x in raw.expect {
        let line = at(x.span());
        let x = x.into_inner();
        let e = |m: String| err(line, format!("expect {:?}: {m}", x.id));
        if expects.iter().any(|y| y.id == x.id) {
            return Err(e("the id is used twice".into()));
        }
        let what = match x.what.as_str() {
            "aware" => ExpectKind::Aware,
            "acknowledged" => ExpectKind::Acknowledged,
            "assistance_accepted" => ExpectKind::AssistanceAccepted,
            w => {
                return Err(e(format!(
                    "what {w:?} is unknown; use aware, acknowledged or assistance_accepted"
                )));
            }
        };
        let Some((kind, _)) = kinds.get(&x.inject) else {
            return Err(e(format!(
                "inject: no inject {:?} in this scenario",
                x.inject
            )));
        };
        if what == ExpectKind::AssistanceAccepted && *kind != "assistance_request" {
            return Err(e(format!(
                "inject: assistance_accepted is about an assistance_request, and {:?} is a {kind}",
                x.inject
            )));
        }
        let within_ms = parse_offset(&x.within).map_err(|m| e(format!("within: {m}")))?;
        expects.push(Expect {
            id: x.id,
            line,
            what,
            inject: x.inject,
            within_ms,
            text: x.text,
        });
    }

    Ok(Scenario {
        name: head.name,
        description: head.description,
        participants,
        links,
        injects,
        expects,
        exercise,
    })
}

fn opens_incident(injects: &[Inject], id: &str) -> bool {
    injects.iter().any(|i| {
        i.id == id
            && matches!(
                i.action,
                Action::Alert {
                    open_incident: true,
                    ..
                }
            )
    })
}

/// `type:value`, e.g. `domain:evil.example`, `ip:192.0.2.7`.
fn indicator(s: &str) -> Result<Indicator, String> {
    let (t, v) = s.split_once(':').ok_or_else(|| {
        format!("{s:?} is not type:value (e.g. ip:192.0.2.7, domain:evil.example, sha256:…)")
    })?;
    let ty = enum_word(
        t,
        "INDICATOR_TYPE_",
        "indicator type",
        IndicatorType::from_str_name,
    )?;
    Ok(Indicator {
        r#type: ty as i32,
        value: v.to_string(),
        comment: String::new(),
    })
}

#[cfg(test)]
#[path = "scenario_tests.rs"]
mod tests;
