//! The picture of an incident ([`picture`]) as a pure function of the set of
//! contributions a node holds, and the marking rules ([`check_contribution`],
//! [`refusal`]) the origin applies before signing and the picture applies
//! again. The convergence rule is stated in [`crate::domain::incident`].
//!
//! Invariants (tested in `picture_tests.rs` and `picture_proptest.rs`):
//! - The result depends only on the set: order and duplicates change nothing;
//!   conflicting copies of one message id (which honest nodes never produce)
//!   resolve the same way everywhere.
//! - Nothing unreadable is shown: a contribution without a body only counts in
//!   `restricted` (origin, kind, TLP).
//! - A contribution that breaks a marking rule, a status change or merge not
//!   by the opener, and a link that would close a cycle stay out and are listed
//!   in `refused` with the reason; a merge counts only once both openers said it.
//! - Every list in the result is sorted, so equal pictures encode to equal
//!   bytes ([`digest`]).
use crate::domain::alert::sector_label;
use crate::domain::envelope::{ms_to_ts, ts_to_ms};
use crate::domain::exercise::crossing;
use crate::domain::policy::tlp_label;
use crate::proto::v1::{
    Alert, AssistanceRequest, AssistanceState, IncidentLink, IncidentMatch, IncidentMerge,
    IncidentStatus, IncidentStatusChange, IndicatorSeen, LinkedAssistance, MessageKind, Nis2Sector,
    PartnerImpact, PendingMerge, RefusedContribution, RestrictedCount, Revision, Severity,
    Sighting, Situation, TimelinePoint, Tlp,
};
use prost::Message;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

use super::keys::indicator_key;
use super::validate::status_label;

/// The readable content of a contribution.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Alert(Alert),
    Sighting(Sighting),
    Status(IncidentStatusChange),
    Link(IncidentLink),
    Merge(IncidentMerge),
    /// An assistance request, with its state as replayed from its thread
    /// (`domain::assistance::replay`).
    Assistance {
        request: AssistanceRequest,
        state: AssistanceState,
    },
}

/// What a node holds of one message, as the picture needs it: the signed
/// header's facts, and the body when this node can read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub message_id: String,
    pub origin: String,
    pub kind: MessageKind,
    pub tlp: Tlp,
    /// Named recipients (empty: the whole federation).
    pub recipients: Vec<String>,
    pub created_ms: i64,
    /// `EnvelopeHeader.incident_id` (equal to `message_id` for an opening alert).
    pub incident_id: String,
    /// `None`: this node cannot read it (end-to-end encrypted for others).
    pub body: Option<Body>,
    /// The signed header's exercise flag (`domain::exercise`).
    pub exercise: bool,
}

/// Who may read an incident: its opener and named recipients, or everyone.
#[derive(Debug, Clone, Copy)]
pub struct Audience<'a> {
    pub opener: &'a str,
    pub tlp: Tlp,
    /// Empty: a broadcast (CLEAR or GREEN) incident.
    pub recipients: &'a [String],
    /// Whether the incident is an exercise one (its opening alert's flag).
    pub exercise: bool,
}

impl Audience<'_> {
    fn broadcast(&self) -> bool {
        self.recipients.is_empty()
    }

    /// Whether `member` may read the incident.
    pub fn includes(&self, member: &str) -> bool {
        self.broadcast() || member == self.opener || self.recipients.iter().any(|r| r == member)
    }
}

/// The marking rules: `origin` may contribute to the incident only if it can
/// read it, and only under a TLP at least the incident's and, for an incident
/// with named recipients, to recipients among them.
pub fn check_contribution(
    incident_id: &str,
    inc: &Audience<'_>,
    origin: &str,
    tlp: Tlp,
    recipients: &[String],
) -> Result<(), String> {
    if !inc.includes(origin) {
        return Err(format!(
            "{origin} is not among the recipients of incident {incident_id} ({}) and cannot read it",
            tlp_label(inc.tlp)
        ));
    }
    if (tlp as i32) < (inc.tlp as i32) {
        return Err(format!(
            "marked {}, wider than the {} of incident {incident_id}: a contribution may be more restricted than its incident, never less",
            tlp_label(tlp),
            tlp_label(inc.tlp)
        ));
    }
    if !inc.broadcast() {
        if recipients.is_empty() {
            return Err(format!(
                "sent to the whole federation, but incident {incident_id} goes only to its named recipients"
            ));
        }
        if let Some(r) = recipients.iter().find(|r| !inc.includes(r)) {
            return Err(format!(
                "sent to {r}, who is not among the recipients of incident {incident_id}"
            ));
        }
    }
    Ok(())
}

/// Why a contribution of `kind` from `origin` (marked `exercise`) to the
/// incident is refused, if it is: exercise and real stay apart, the marking
/// rules, and only the opener changes the status or merges.
#[allow(clippy::too_many_arguments)]
pub fn refusal(
    incident_id: &str,
    inc: &Audience<'_>,
    origin: &str,
    kind: MessageKind,
    tlp: Tlp,
    recipients: &[String],
    exercise: bool,
) -> Option<String> {
    if let Some(r) = crossing(noun(kind), exercise, "join", incident_id, inc.exercise) {
        return Some(r);
    }
    if let Err(e) = check_contribution(incident_id, inc, origin, tlp, recipients) {
        return Some(e);
    }
    let what = match kind {
        MessageKind::IncidentStatus => "change the status of",
        MessageKind::IncidentMerge => "merge",
        _ => return None,
    };
    (origin != inc.opener).then(|| {
        format!(
            "only the opener {} may {what} incident {incident_id}; {origin} is not its opener",
            inc.opener
        )
    })
}

/// A contribution of `kind`, in words.
fn noun(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Alert => "alert",
        MessageKind::Sighting => "sighting",
        MessageKind::IncidentStatus => "status change",
        MessageKind::IncidentLink => "link",
        MessageKind::IncidentMerge => "merge",
        _ => "contribution",
    }
}

/// The other messages a contribution names (a link's target, a merge's other
/// incident): what a node loads next to complete the picture.
pub fn related_ids(c: &Contribution) -> Vec<String> {
    match &c.body {
        Some(Body::Link(l)) => vec![l.message_id.clone()],
        Some(Body::Merge(m)) => vec![m.other_incident_id.clone()],
        _ => Vec::new(),
    }
}

/// SHA-256 (hex) of a picture without its matches and digest.
pub fn digest(s: &Situation) -> String {
    let mut s = s.clone();
    s.matches.clear();
    s.digest.clear();
    Sha256::digest(s.encode_to_vec())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Which of two copies of one message id to keep: a total order on content.
fn prefer(a: &Contribution, b: &Contribution) -> bool {
    (a.created_ms, format!("{a:?}")) < (b.created_ms, format!("{b:?}"))
}

fn severity_of(v: i32) -> Severity {
    Severity::try_from(v).unwrap_or(Severity::Unspecified)
}

/// A multiset with a maximum (severities) or a count of distinct keys (partners).
#[derive(Default)]
struct Tally<K: Ord>(BTreeMap<K, u32>);

impl<K: Ord> Tally<K> {
    fn add(&mut self, k: K) {
        *self.0.entry(k).or_default() += 1;
    }
    fn remove(&mut self, k: &K) {
        if let Some(n) = self.0.get_mut(k) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(k);
            }
        }
    }
    fn max(&self) -> Option<&K> {
        self.0.keys().next_back()
    }
    fn distinct(&self) -> usize {
        self.0.len()
    }
}

struct IndicatorAgg {
    seen: IndicatorSeen,
    partners: BTreeSet<String>,
    first: i64,
    last: i64,
}

/// The picture of incident `root` from the contributions held (`items`, in any
/// order, duplicates allowed); `None` when the opening alert of `root` is not
/// among them. After a merge the picture is the merged incident's, under the
/// older incident's id.
pub fn picture(root: &str, items: &[Contribution]) -> Option<Situation> {
    // One copy per message id, in (created, id) order.
    let mut unique: BTreeMap<&str, &Contribution> = BTreeMap::new();
    for c in items {
        unique
            .entry(c.message_id.as_str())
            .and_modify(|e| {
                if prefer(c, e) {
                    *e = c;
                }
            })
            .or_insert(c);
    }
    let by_id = unique;
    let mut list: Vec<&Contribution> = by_id.values().copied().collect();
    list.sort_by(|a, b| (a.created_ms, &a.message_id).cmp(&(b.created_ms, &b.message_id)));

    let openers: BTreeMap<&str, &Contribution> = list
        .iter()
        .filter(|c| c.kind == MessageKind::Alert && c.incident_id == c.message_id)
        .map(|c| (c.message_id.as_str(), *c))
        .collect();
    openers.get(root)?;
    let audience = |id: &str| {
        openers.get(id).map(|o| Audience {
            opener: &o.origin,
            tlp: o.tlp,
            recipients: &o.recipients,
            exercise: o.exercise,
        })
    };

    // Marking and role rules, per contribution. Contributions to an incident
    // whose opening alert is not held are pending: neither shown nor refused.
    let mut refused: BTreeMap<&str, String> = BTreeMap::new();
    let mut valid: BTreeSet<&str> = openers.keys().copied().collect();
    for c in &list {
        if c.incident_id.is_empty() || c.incident_id == c.message_id {
            continue;
        }
        let Some(aud) = audience(&c.incident_id) else {
            continue;
        };
        match refusal(
            &c.incident_id,
            &aud,
            &c.origin,
            c.kind,
            c.tlp,
            &c.recipients,
            c.exercise,
        ) {
            Some(r) => {
                refused.insert(&c.message_id, r);
            }
            None => {
                valid.insert(&c.message_id);
            }
        }
    }

    // A merge with, or a link to, a message of the other flag is refused
    // (exercise and real stay apart).
    for c in &list {
        if !valid.contains(c.message_id.as_str()) {
            continue;
        }
        let (what, relation, target) = match &c.body {
            Some(Body::Merge(m)) => ("merge", "merge with", m.other_incident_id.as_str()),
            Some(Body::Link(l)) => ("link", "link to", l.message_id.as_str()),
            _ => continue,
        };
        if let Some(t) = by_id.get(target)
            && let Some(r) = crossing(what, c.exercise, relation, target, t.exercise)
        {
            refused.insert(&c.message_id, r);
            valid.remove(c.message_id.as_str());
        }
    }

    // Merges: effective once each opener said it of the other.
    let merges: Vec<(&Contribution, &IncidentMerge)> = list
        .iter()
        .filter(|c| valid.contains(c.message_id.as_str()))
        .filter_map(|c| match &c.body {
            Some(Body::Merge(m)) if m.incident_id == c.incident_id => Some((*c, m)),
            _ => None,
        })
        .collect();
    let claims: BTreeSet<(&str, &str)> = merges
        .iter()
        .map(|(_, m)| (m.incident_id.as_str(), m.other_incident_id.as_str()))
        .collect();
    let order = |id: &str| {
        openers
            .get(id)
            .map(|o| (o.created_ms, o.message_id.clone()))
    };
    let mut rep: BTreeMap<&str, &str> = openers.keys().map(|k| (*k, *k)).collect();
    for &(a, b) in &claims {
        if !claims.contains(&(b, a)) || !openers.contains_key(b) {
            continue;
        }
        if openers.get(a).map(|o| o.exercise) != openers.get(b).map(|o| o.exercise) {
            continue;
        }
        let (ra, rb) = (rep[a], rep[b]);
        if ra == rb {
            continue;
        }
        let (keep, drop) = if order(ra) <= order(rb) {
            (ra, rb)
        } else {
            (rb, ra)
        };
        for v in rep.values_mut() {
            if *v == drop {
                *v = keep;
            }
        }
    }
    let rep_of = |id: &str| rep.get(id).copied();

    // Links between incidents (parent -> part), in order; one that would close
    // a cycle is refused.
    let mut edges: BTreeSet<(&str, &str)> = BTreeSet::new();
    for c in &list {
        if !valid.contains(c.message_id.as_str()) {
            continue;
        }
        let Some(Body::Link(l)) = &c.body else {
            continue;
        };
        let (Some(parent), Some(part)) = (rep_of(&c.incident_id), rep_of(&l.message_id)) else {
            continue;
        };
        if parent == part || reaches(&edges, part, parent) {
            refused.insert(
                &c.message_id,
                format!(
                    "linking incident {} into {} would form a cycle: it already contains it",
                    l.message_id, c.incident_id
                ),
            );
            valid.remove(c.message_id.as_str());
        } else {
            edges.insert((parent, part));
        }
    }

    // The incidents in this picture: the root's merged set and its parts.
    let top = rep_of(root)?;
    let mut reps: BTreeSet<&str> = BTreeSet::from([top]);
    let mut todo = vec![top];
    while let Some(r) = todo.pop() {
        for &(p, ch) in &edges {
            if p == r && reps.insert(ch) {
                todo.push(ch);
            }
        }
    }
    let members: BTreeSet<&str> = rep
        .iter()
        .filter(|(_, r)| reps.contains(*r))
        .map(|(id, _)| *id)
        .collect();
    let merged: Vec<String> = rep
        .iter()
        .filter(|(id, r)| **r == top && **id != top)
        .map(|(id, _)| id.to_string())
        .collect();
    let parts: Vec<String> = edges
        .iter()
        .filter(|(p, _)| *p == top)
        .map(|(_, ch)| ch.to_string())
        .collect();
    let part_of: Vec<String> = edges
        .iter()
        .filter(|(_, ch)| *ch == top)
        .map(|(p, _)| p.to_string())
        .collect();

    // What the picture holds: valid contributions to its incidents, and the
    // messages linked into them.
    let mut included: BTreeSet<&str> = list
        .iter()
        .filter(|c| {
            valid.contains(c.message_id.as_str()) && members.contains(c.incident_id.as_str())
        })
        .map(|c| c.message_id.as_str())
        .collect();
    let mut linked_requests: BTreeSet<&str> = BTreeSet::new();
    for id in included.clone() {
        if let Some(Body::Link(l)) = &by_id[id].body
            && let Some(t) = by_id.get(l.message_id.as_str())
            && !refused.contains_key(t.message_id.as_str())
            && !openers.contains_key(t.message_id.as_str())
            && t.exercise == by_id[id].exercise
        {
            if t.kind == MessageKind::AssistanceRequest {
                linked_requests.insert(&t.message_id);
            } else if matches!(t.kind, MessageKind::Alert | MessageKind::Sighting) {
                included.insert(&t.message_id);
            }
        }
    }
    let alert_ids: BTreeSet<&str> = included
        .iter()
        .copied()
        .filter(|id| by_id[id].kind == MessageKind::Alert)
        .collect();
    for c in &list {
        if let Some(Body::Assistance { request, .. }) = &c.body
            && c.exercise == openers[top].exercise
            && request
                .linked_alerts
                .iter()
                .any(|a| alert_ids.contains(a.as_str()))
        {
            linked_requests.insert(&c.message_id);
        }
    }

    // The fold, in (created, id) order.
    let opener = openers[top];
    let mut current: BTreeMap<&str, (&Contribution, &Alert)> = BTreeMap::new();
    let mut replaced: BTreeMap<&str, &str> = BTreeMap::new();
    let mut sightings: Vec<(&Contribution, &Sighting)> = Vec::new();
    let mut severities: Tally<i32> = Tally::default();
    let mut affected: Tally<String> = Tally::default();
    let mut restricted: BTreeMap<(String, i32, i32), u32> = BTreeMap::new();
    let mut reporting: BTreeSet<String> = BTreeSet::new();
    let mut timeline = Vec::new();
    let (mut status, mut status_note) = (IncidentStatus::Open, String::new());
    let mut updated = opener.created_ms;
    let mut contributions = 0u32;
    for c in list
        .iter()
        .filter(|c| included.contains(c.message_id.as_str()))
    {
        let Some(body) = &c.body else {
            *restricted
                .entry((c.origin.clone(), c.kind as i32, c.tlp as i32))
                .or_default() += 1;
            continue;
        };
        contributions += 1;
        reporting.insert(c.origin.clone());
        updated = updated.max(c.created_ms);
        let (severity, summary) = match body {
            Body::Alert(a) => {
                if !a.supersedes.is_empty()
                    && let Some((old, old_alert)) = current.get(a.supersedes.as_str()).copied()
                    && old.origin == c.origin
                {
                    current.remove(a.supersedes.as_str());
                    severities.remove(&old_alert.severity);
                    affected.remove(&old.origin);
                    replaced.insert(&old.message_id, &c.message_id);
                }
                let retraction = a.revision == Revision::Retraction as i32;
                if !retraction {
                    current.insert(&c.message_id, (c, a));
                    severities.add(a.severity);
                    affected.add(c.origin.clone());
                }
                let verb = if retraction { "retracted: " } else { "" };
                (a.severity, format!("{verb}{}", a.title))
            }
            Body::Sighting(s) => {
                sightings.push((c, s));
                if s.severity != 0 {
                    severities.add(s.severity);
                }
                affected.add(c.origin.clone());
                let sector = Nis2Sector::try_from(s.sector)
                    .ok()
                    .filter(|x| *x != Nis2Sector::Unspecified)
                    .map(|x| format!(" ({})", sector_label(x)))
                    .unwrap_or_default();
                (
                    s.severity,
                    format!("sighting in {}{sector}, {} observed", s.country, s.count),
                )
            }
            Body::Status(s) => {
                let st = IncidentStatus::try_from(s.status).unwrap_or(IncidentStatus::Open);
                if rep_of(&c.incident_id) == Some(top) {
                    status = st;
                    status_note.clone_from(&s.note);
                }
                (0, format!("status: {}", status_label(st)))
            }
            Body::Link(l) => (0, format!("linked {}", l.message_id)),
            Body::Merge(m) => (0, format!("merge with {}", m.other_incident_id)),
            Body::Assistance { .. } => continue,
        };
        timeline.push(TimelinePoint {
            at: Some(ms_to_ts(c.created_ms)),
            partner: c.origin.clone(),
            kind: c.kind as i32,
            message_id: c.message_id.clone(),
            severity: severity_of(severity) as i32,
            severity_now: severities.max().copied().unwrap_or(0),
            affected_partners: affected.distinct() as u32,
            tlp: c.tlp as i32,
            summary,
        });
    }

    // What the current alerts and the sightings say.
    let mut countries: BTreeSet<String> = BTreeSet::new();
    let mut sectors: BTreeSet<i32> = BTreeSet::new();
    let mut impact: BTreeMap<String, (BTreeSet<i32>, BTreeSet<String>, u32)> = BTreeMap::new();
    let mut indicators: BTreeMap<String, IndicatorAgg> = BTreeMap::new();
    let mut see = |ind: &crate::proto::v1::Indicator, who: &str, at: i64, n: u64| {
        let agg = indicators
            .entry(indicator_key(ind))
            .or_insert_with(|| IndicatorAgg {
                seen: IndicatorSeen {
                    indicator: Some(ind.clone()),
                    ..Default::default()
                },
                partners: BTreeSet::new(),
                first: at,
                last: at,
            });
        agg.partners.insert(who.to_string());
        agg.first = agg.first.min(at);
        agg.last = agg.last.max(at);
        agg.seen.observations = agg.seen.observations.saturating_add(n);
    };
    for (c, a) in current.values() {
        let e = impact.entry(c.origin.clone()).or_default();
        e.2 += 1;
        for s in a.sectors.iter().filter(|s| **s != 0) {
            sectors.insert(*s);
            e.0.insert(*s);
        }
        for k in &a.affected_countries {
            countries.insert(k.clone());
            e.1.insert(k.clone());
        }
        for ind in &a.indicators {
            see(ind, &c.origin, c.created_ms, 1);
        }
    }
    for (c, s) in &sightings {
        let e = impact.entry(c.origin.clone()).or_default();
        e.2 += 1;
        if s.sector != 0 {
            sectors.insert(s.sector);
            e.0.insert(s.sector);
        }
        countries.insert(s.country.clone());
        e.1.insert(s.country.clone());
        let at = s.observed.as_ref().map_or(c.created_ms, ts_to_ms);
        for ind in &s.indicators {
            see(ind, &c.origin, at, s.count);
        }
    }
    let mut indicators: Vec<(String, IndicatorAgg)> = indicators.into_iter().collect();
    indicators.sort_by(|(ka, a), (kb, b)| {
        (std::cmp::Reverse(a.partners.len()), a.first, ka).cmp(&(
            std::cmp::Reverse(b.partners.len()),
            b.first,
            kb,
        ))
    });

    // The opener's current title: follow its updates.
    let mut head = top;
    while let Some(next) = replaced.get(head) {
        head = next;
    }
    let title = match by_id.get(head).and_then(|c| c.body.as_ref()) {
        Some(Body::Alert(a)) => a.title.clone(),
        _ => String::new(),
    };

    let pending_merges = merges
        .iter()
        .filter(|(c, m)| {
            (members.contains(c.incident_id.as_str())
                || members.contains(m.other_incident_id.as_str()))
                && rep_of(&m.other_incident_id) != rep_of(&c.incident_id)
        })
        .map(|(c, m)| PendingMerge {
            message_id: c.message_id.clone(),
            incident_id: m.incident_id.clone(),
            other_incident_id: m.other_incident_id.clone(),
            proposed_by: c.origin.clone(),
        })
        .collect();
    let refused = refused
        .iter()
        .filter(|(id, _)| members.contains(by_id[**id].incident_id.as_str()))
        .map(|(id, reason)| RefusedContribution {
            message_id: id.to_string(),
            origin: by_id[id].origin.clone(),
            kind: by_id[id].kind as i32,
            reason: reason.clone(),
        })
        .collect();
    let assistance = linked_requests
        .iter()
        .map(|id| {
            let c = by_id[id];
            let (title, state) = match &c.body {
                Some(Body::Assistance { request, state }) => (request.title.clone(), *state as i32),
                _ => (String::new(), 0),
            };
            LinkedAssistance {
                request_id: c.message_id.clone(),
                requester: c.origin.clone(),
                title,
                state,
            }
        })
        .collect();

    let mut s = Situation {
        exercise: opener.exercise,
        incident_id: top.to_string(),
        opener: opener.origin.clone(),
        title,
        tlp: opener.tlp as i32,
        status: status as i32,
        status_note,
        severity: severities.max().copied().unwrap_or(0),
        opened: Some(ms_to_ts(opener.created_ms)),
        updated: Some(ms_to_ts(updated)),
        partners_reporting: reporting.into_iter().collect(),
        partners_affected: affected.0.keys().cloned().collect(),
        countries: countries.into_iter().collect(),
        sectors: sectors.into_iter().collect(),
        timeline,
        indicators: indicators
            .into_iter()
            .map(|(_, mut a)| {
                a.seen.partners = a.partners.into_iter().collect();
                a.seen.first_seen = Some(ms_to_ts(a.first));
                a.seen.last_seen = Some(ms_to_ts(a.last));
                a.seen
            })
            .collect(),
        partners: impact
            .into_iter()
            .map(|(partner, (sectors, countries, n))| PartnerImpact {
                partner,
                sectors: sectors.into_iter().collect(),
                countries: countries.into_iter().collect(),
                contributions: n,
            })
            .collect(),
        assistance,
        restricted: restricted
            .into_iter()
            .map(|((origin, kind, tlp), count)| RestrictedCount {
                origin,
                kind,
                tlp,
                count,
            })
            .collect(),
        refused,
        merged,
        pending_merges,
        parts,
        part_of,
        matches: Vec::<IncidentMatch>::new(),
        digest: String::new(),
        contributions,
        truncated: false,
    };
    s.digest = digest(&s);
    Some(s)
}

/// Whether `to` is reachable from `from` over `edges`.
fn reaches(edges: &BTreeSet<(&str, &str)>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::from([from]);
    let mut todo = vec![from];
    while let Some(n) = todo.pop() {
        if n == to {
            return true;
        }
        for &(p, ch) in edges {
            if p == n && seen.insert(ch) {
                todo.push(ch);
            }
        }
    }
    false
}
